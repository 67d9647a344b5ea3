// Verifiable decision receipts (docs/receipts.md): decoding receipts and signed checkpoints,
// receipt hashes, checkpoint signatures and key bindings, and the chain verifier with the same
// report as the Rust verifier (`receipts/src/verify.rs`), so a browser can check the history of
// its own grants. Golden vectors: `receipts/vectors/receipts-v1.json`.
//
//   receipt     version u8 = 1 ‖ kind u8 ‖ seq u64 ‖ decider[16] ‖ time u64 ‖ prev[32] ‖ body
//   hash        SHA-256("signer/receipt/v1" ‖ receipt)
//   checkpoint  version u8 = 1 ‖ decider[16] ‖ signer[16] ‖ seq u64 ‖ head[32] ‖ time u64   (81)
//   signed      checkpoint ‖ ed25519 over "signer/receipt-checkpoint/v1" ‖ checkpoint        (145)
//   binding     SHA-256("signer/receipt-key/v1" ‖ signer[16] ‖ public key[32])

import { sha256 } from "@noble/hashes/sha2.js";

import { type Bytes, concat, idBytes, toBase58, toHex, utf8, uuidText } from "./bytes.js";
import { verifyEd25519Strict } from "./wallet.js";

export const RECEIPT_VERSION = 1;
export const RECEIPT_HEADER_LEN = 66;
export const MAX_RECEIPT_LEN = 64 * 1024;
/** A policy lives inside a sealed grant record (at most 16 KiB). */
export const MAX_POLICY_LEN = 16 * 1024;
export const MAX_TOKEN_ENTRIES = 64;
export const MAX_CODE_LEN = 64;
export const MAX_RULE_LEN = 256;
export const RECEIPT_DOMAIN = "signer/receipt/v1";
export const CHECKPOINT_VERSION = 1;
export const CHECKPOINT_LEN = 81;
export const SIGNED_CHECKPOINT_LEN = 145;
export const CHECKPOINT_DOMAIN = "signer/receipt-checkpoint/v1";
export const CHECKPOINT_KEY_DOMAIN = "signer/receipt-key/v1";

/** Kind bytes. */
export const ReceiptKind = {
  chain_start: 1,
  vault_created: 2,
  agent_created: 3,
  grant_created: 4,
  signed: 5,
  refused: 6,
  revoked: 7,
  kill_switch: 8,
  handover_out: 9,
  handover_in: 10,
} as const;

/** A receipt or checkpoint that does not decode; `code` is the Rust error's stable code. */
export class ReceiptError extends Error {
  override name = "ReceiptError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A token amount; `mint` base58. */
export interface TokenAmount {
  mint: string;
  amount: bigint;
}

/** A receipt's body. Ids are UUID text, keys base58, hashes lower-case hex. */
export type ReceiptBody =
  | { kind: "chain_start" }
  | { kind: "vault_created"; wallet: string; imported: boolean }
  | { kind: "agent_created"; wallet: string; agent: string }
  | {
      kind: "grant_created";
      grant_id: string;
      wallet: string;
      bot_id: string;
      agent: string;
      /** SHA-256 of the authorization message the wallet signed. */
      message_sha256: string;
      expires_at: bigint;
      /** The policy as CBOR (SPEC §7): `decodeCbor` reads it. */
      policy: Bytes;
    }
  | {
      kind: "signed";
      request_id: string;
      grant_id: string;
      bot_id: string;
      agent: string;
      /** SHA-256 of the Solana message bytes signed. */
      message_sha256: string;
      charged: { lamports: bigint; fee_lamports: bigint; notional_cents: bigint; tokens: TokenAmount[] };
      after: { day: bigint; lamports: bigint; notional_cents: bigint; tokens: TokenAmount[] };
    }
  | { kind: "refused"; request_id: string; grant_id: string; code: string; rule: string }
  | {
      kind: "revoked";
      wallet: string;
      target: { scope: "record"; record_id: string } | { scope: "issued_before"; cutoff: bigint };
    }
  | { kind: "kill_switch"; on: boolean }
  | { kind: "handover_out"; successor: string }
  | { kind: "handover_in"; predecessor: string; predecessor_seq: bigint; predecessor_head: string };

/** One decision of `decider` (enclave id or cluster id), number `seq` of its chain. */
export interface Receipt {
  seq: bigint;
  decider: string;
  /** Unix seconds. */
  time: bigint;
  /** Hex of the previous receipt's hash; all zeros only on a chain start. */
  prev: string;
  body: ReceiptBody;
}

/** `SHA-256("signer/receipt/v1" ‖ receipt)`. */
export function receiptHash(encoded: Bytes): Bytes {
  return sha256(concat(utf8(RECEIPT_DOMAIN), encoded));
}

const ZERO_HASH = "0".repeat(64);

class Reader {
  pos = 0;
  constructor(readonly bytes: Bytes) {}

  take(field: string, needed: number): Bytes {
    const available = this.bytes.length - this.pos;
    if (available < needed) {
      throw new ReceiptError(
        "truncated",
        `receipt truncated: ${field} at byte ${this.pos} needs ${needed} bytes, ${available} remain`,
      );
    }
    const out = this.bytes.subarray(this.pos, this.pos + needed);
    this.pos += needed;
    return out;
  }
  u8(field: string): number {
    return this.take(field, 1)[0]!;
  }
  u16(field: string): number {
    const b = this.take(field, 2);
    return b[0]! | (b[1]! << 8);
  }
  u64(field: string): bigint {
    const b = this.take(field, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  id(field: string): string {
    return uuidText(this.take(field, 16));
  }
  key(field: string): string {
    return toBase58(this.take(field, 32));
  }
  hash(field: string): string {
    return toHex(this.take(field, 32));
  }
  flag(field: string): boolean {
    const v = this.u8(field);
    if (v > 1) throw new ReceiptError("invalid_value", `${field} is ${v}; expected 0 or 1`);
    return v === 1;
  }
  var(field: string, max: number): Bytes {
    const len = this.u16(field);
    if (len > max) throw new ReceiptError("too_long", `${field} is ${len} bytes; at most ${max}`);
    return this.take(field, len);
  }
  tokens(field: string): TokenAmount[] {
    const n = this.u16(field);
    if (n > MAX_TOKEN_ENTRIES) {
      throw new ReceiptError("too_many", `${field} has ${n} entries; at most ${MAX_TOKEN_ENTRIES}`);
    }
    const out: TokenAmount[] = [];
    for (let i = 0; i < n; i++) out.push({ mint: this.key(field), amount: this.u64(field) });
    const seen = new Set<string>();
    for (const t of out) {
      if (seen.has(t.mint)) throw new ReceiptError("duplicate_mint", `${field} lists mint ${t.mint} twice`);
      seen.add(t.mint);
    }
    return out;
  }
}

/** Strict decoding (docs/receipts.md): throws a `ReceiptError` with the Rust decoder's code. */
export function decodeReceipt(bytes: Bytes): Receipt {
  if (bytes.length > MAX_RECEIPT_LEN) {
    throw new ReceiptError("oversize", `receipt is ${bytes.length} bytes; at most ${MAX_RECEIPT_LEN}`);
  }
  const r = new Reader(bytes);
  const version = r.u8("version");
  if (version !== RECEIPT_VERSION) {
    throw new ReceiptError("unsupported_version", `unsupported receipt version ${version} (expected 1)`);
  }
  const kind = r.u8("kind");
  if (kind < 1 || kind > 10) throw new ReceiptError("unknown_kind", `unknown receipt kind ${kind} (expected 1..=10)`);
  const seq = r.u64("seq");
  const decider = r.id("decider");
  const time = r.u64("time");
  const prev = r.hash("prev");
  let body: ReceiptBody;
  switch (kind) {
    case 1:
      body = { kind: "chain_start" };
      break;
    case 2:
      body = { kind: "vault_created", wallet: r.key("wallet"), imported: r.flag("imported") };
      break;
    case 3:
      body = { kind: "agent_created", wallet: r.key("wallet"), agent: r.key("agent") };
      break;
    case 4:
      body = {
        kind: "grant_created",
        grant_id: r.id("grant_id"),
        wallet: r.key("wallet"),
        bot_id: r.id("bot_id"),
        agent: r.key("agent"),
        message_sha256: r.hash("message_sha256"),
        expires_at: r.u64("expires_at"),
        policy: r.var("policy", MAX_POLICY_LEN).slice(),
      };
      break;
    case 5:
      body = {
        kind: "signed",
        request_id: r.id("request_id"),
        grant_id: r.id("grant_id"),
        bot_id: r.id("bot_id"),
        agent: r.key("agent"),
        message_sha256: r.hash("message_sha256"),
        charged: {
          lamports: r.u64("charged.lamports"),
          fee_lamports: r.u64("charged.fee_lamports"),
          notional_cents: r.u64("charged.notional_cents"),
          tokens: r.tokens("charged.tokens"),
        },
        after: {
          day: r.u64("after.day"),
          lamports: r.u64("after.lamports"),
          notional_cents: r.u64("after.notional_cents"),
          tokens: r.tokens("after.tokens"),
        },
      };
      break;
    case 6: {
      const request_id = r.id("request_id");
      const grant_id = r.id("grant_id");
      const codeLen = r.u16("code");
      if (codeLen > MAX_CODE_LEN) throw new ReceiptError("too_long", `code is ${codeLen} bytes; at most ${MAX_CODE_LEN}`);
      const code = r.take("code", codeLen);
      if (code.length === 0) throw new ReceiptError("empty", "code is empty");
      const bad = code.findIndex((b) => b < 0x21 || b > 0x7e);
      if (bad >= 0) {
        throw new ReceiptError("not_ascii", `code byte ${bad} is ${code[bad]}; expected printable ASCII (0x21..=0x7e)`);
      }
      const ruleBytes = r.var("rule", MAX_RULE_LEN);
      let rule: string;
      try {
        rule = new TextDecoder("utf-8", { fatal: true }).decode(ruleBytes);
      } catch {
        throw new ReceiptError("bad_utf8", "rule is not UTF-8");
      }
      body = { kind: "refused", request_id, grant_id, code: String.fromCharCode(...code), rule };
      break;
    }
    case 7: {
      const wallet = r.key("wallet");
      const scope = r.u8("scope");
      if (scope === 1) body = { kind: "revoked", wallet, target: { scope: "record", record_id: r.id("record_id") } };
      else if (scope === 2) body = { kind: "revoked", wallet, target: { scope: "issued_before", cutoff: r.u64("cutoff") } };
      else throw new ReceiptError("invalid_value", `scope is ${scope}; expected 1 (record) or 2 (issued before)`);
      break;
    }
    case 8:
      body = { kind: "kill_switch", on: r.flag("on") };
      break;
    case 9:
      body = { kind: "handover_out", successor: r.id("successor") };
      break;
    default:
      body = {
        kind: "handover_in",
        predecessor: r.id("predecessor"),
        predecessor_seq: r.u64("predecessor_seq"),
        predecessor_head: r.hash("predecessor_head"),
      };
  }
  if (r.pos !== bytes.length) {
    throw new ReceiptError(
      "trailing_bytes",
      `${bytes.length - r.pos} trailing bytes after the receipt's last field (it ends at byte ${r.pos})`,
    );
  }
  const link = (rule: string) => new ReceiptError("invalid_link", `receipt ${seq} breaks a chain rule: ${rule}`);
  const starts = body.kind === "chain_start";
  if (starts && (seq !== 0n || prev !== ZERO_HASH)) throw link("a chain start must have seq 0 and prev all zeros");
  if (!starts && prev === ZERO_HASH) throw link("only a chain start may have prev all zeros");
  if (body.kind === "handover_in") {
    if (prev !== body.predecessor_head) throw link("a handover-in's prev must be its predecessor_head");
    if (body.predecessor_seq + 1n !== seq) throw link("a handover-in's seq must be predecessor_seq + 1");
  }
  return { seq, decider, time, prev, body };
}

/** A receipt in the JSON shape of the Rust code (`serde_json`), u64 values as bigint. */
export function receiptJson(receipt: Receipt): Record<string, unknown> {
  const body: Record<string, unknown> = { ...receipt.body };
  if (receipt.body.kind === "grant_created") body.policy = toHex(receipt.body.policy);
  return { seq: receipt.seq, decider: receipt.decider, time: receipt.time, prev: receipt.prev, body };
}

/** The head of `decider`'s chain as `signer` (enclave id, UUID text) saw it at `time`. */
export interface Checkpoint {
  decider: string;
  signer: string;
  seq: bigint;
  /** Hex of the head receipt's hash. */
  head: string;
  time: bigint;
}

/** A checkpoint and its ed25519 signature. */
export interface SignedCheckpoint {
  checkpoint: Checkpoint;
  signature: Bytes;
}

/** The 81 bytes of a checkpoint. */
export function encodeCheckpoint(c: Checkpoint): Bytes {
  const out = new Uint8Array(CHECKPOINT_LEN);
  const view = new DataView(out.buffer);
  out[0] = CHECKPOINT_VERSION;
  out.set(idBytes(c.decider, "decider"), 1);
  out.set(idBytes(c.signer, "signer"), 17);
  view.setBigUint64(33, c.seq, true);
  const head = hexBytes(c.head, 32, "head");
  out.set(head, 41);
  view.setBigUint64(73, c.time, true);
  return out;
}

function hexBytes(hex: string, length: number, what: string): Bytes {
  if (!new RegExp(`^[0-9a-f]{${2 * length}}$`).test(hex)) throw new TypeError(`${what} is not ${length} bytes of lower-case hex`);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** What the checkpoint key signs: `"signer/receipt-checkpoint/v1" ‖ checkpoint`. */
export function checkpointSignedMessage(c: Checkpoint): Bytes {
  return concat(utf8(CHECKPOINT_DOMAIN), encodeCheckpoint(c));
}

/** Decodes a signed checkpoint (145 bytes); throws a `ReceiptError` (`length`, `unsupported_version`). */
export function decodeSignedCheckpoint(bytes: Bytes): SignedCheckpoint {
  if (bytes.length !== SIGNED_CHECKPOINT_LEN) {
    throw new ReceiptError("length", `signed checkpoint is ${bytes.length} bytes; expected ${SIGNED_CHECKPOINT_LEN}`);
  }
  if (bytes[0] !== CHECKPOINT_VERSION) {
    throw new ReceiptError("unsupported_version", `unsupported checkpoint version ${bytes[0]} (expected 1)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    checkpoint: {
      decider: uuidText(bytes.subarray(1, 17)),
      signer: uuidText(bytes.subarray(17, 33)),
      seq: view.getBigUint64(33, true),
      head: toHex(bytes.subarray(41, 73)),
      time: view.getBigUint64(73, true),
    },
    signature: bytes.slice(81, 145),
  };
}

/** `checkpoint ‖ signature` (145 bytes). */
export function encodeSignedCheckpoint(signed: SignedCheckpoint): Bytes {
  return concat(encodeCheckpoint(signed.checkpoint), signed.signature);
}

/**
 * Strict ed25519 verification of a checkpoint with `publicKey`, the key bound to
 * `checkpoint.signer` by an attestation document (check that binding with `checkpointKeyBinding`).
 */
export function verifyCheckpoint(signed: SignedCheckpoint, publicKey: Bytes): boolean {
  return verifyEd25519Strict(publicKey, checkpointSignedMessage(signed.checkpoint), signed.signature);
}

/** `SHA-256("signer/receipt-key/v1" ‖ enclave id ‖ public key)`: the attestation `user_data` that binds a checkpoint key. */
export function checkpointKeyBinding(enclaveId: string | Bytes, publicKey: Bytes): Bytes {
  if (publicKey.length !== 32) throw new TypeError(`a public key is 32 bytes, not ${publicKey.length}`);
  return sha256(concat(utf8(CHECKPOINT_KEY_DOMAIN), idBytes(enclaveId, "enclave id"), publicKey));
}

// ---------------------------------------------------------------------------------------------
// The verifier (same semantics and report as `receipts/src/verify.rs`).

export type ForkReason = "same_seq" | "prev_mismatch" | "after_handover_out";
export type HandoverStatus =
  | "linked"
  | "predecessor_not_delivered"
  | "successor_not_delivered"
  | "head_mismatch"
  | "not_handed_out";
export type CheckpointStatus =
  | "matches"
  | "head_mismatch"
  | "beyond_delivered"
  | "before_delivered"
  | "in_gap"
  | "no_receipts"
  | "unknown_signer"
  | "bad_signature";
export type ChainStartKind = "chain_start" | "handover_in" | "continues";

export interface SeqRange {
  first: bigint;
  last: bigint;
}

/** What `verifyChain` found; the Rust `Report` plus `ok`. Ids are UUID text, hashes hex. */
export interface ReceiptReport {
  delivered: number;
  distinct: number;
  undecodable: { index: number; code: string; error: string }[];
  duplicates: { decider: string; seq: bigint; positions: number[] }[];
  reorders: { decider: string; seq: bigint; position: number; previous_seq: bigint; previous_position: number }[];
  gaps: { decider: string; after: bigint; next: bigint }[];
  forks: { decider: string; seq: bigint; reason: ForkReason; positions: number[] }[];
  handovers: { predecessor: string; successor: string; predecessor_seq: bigint; status: HandoverStatus }[];
  checkpoints: {
    index: number;
    decider: string;
    signer: string;
    seq: bigint;
    head: string;
    time: bigint;
    status: CheckpointStatus;
  }[];
  chains: {
    decider: string;
    first_seq: bigint;
    last_seq: bigint;
    receipts: number;
    start: ChainStartKind;
    predecessor: string | null;
    vouched: SeqRange[];
    unvouched: SeqRange[];
  }[];
  /**
   * Nothing undecodable, duplicated, reordered, missing or forked; every handover links; every
   * checkpoint trusted and consistent; every chain has a receipt vouched for by a checkpoint.
   */
  ok: boolean;
}

/** A checkpoint key the caller trusts: the signer's enclave id and its ed25519 public key. */
export interface TrustedCheckpointKey {
  signer: string | Bytes;
  publicKey: Bytes;
}

interface Item {
  pos: number;
  receipt: Receipt;
  hash: string;
  dups: number[];
}

interface Level {
  seq: bigint;
  items: Item[];
}

interface Group {
  decider: string;
  levels: Level[];
}

function levelOf(group: Group, seq: bigint): Level | undefined {
  let lo = 0;
  let hi = group.levels.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const l = group.levels[mid]!;
    if (l.seq === seq) return l;
    if (l.seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return undefined;
}

/**
 * Verifies receipts (in any order as delivered) against signed checkpoints, trusting `keys`
 * (each bound to its signer by an attestation document the caller checked). Reports every
 * undecodable receipt, duplicate, reorder, gap and fork, each handover link, what each checkpoint
 * proves, and per chain how it starts and which seqs a checkpoint vouches for.
 */
export function verifyChain(
  receipts: Bytes[],
  checkpoints: SignedCheckpoint[],
  keys: TrustedCheckpointKey[],
): ReceiptReport {
  const report: ReceiptReport = {
    delivered: receipts.length,
    distinct: 0,
    undecodable: [],
    duplicates: [],
    reorders: [],
    gaps: [],
    forks: [],
    handovers: [],
    checkpoints: [],
    chains: [],
    ok: false,
  };

  // 1. Decode, dedupe.
  const items: Item[] = [];
  const byHash = new Map<string, Item>();
  receipts.forEach((bytes, pos) => {
    let receipt: Receipt;
    try {
      receipt = decodeReceipt(bytes);
    } catch (e) {
      if (!(e instanceof ReceiptError)) throw e;
      report.undecodable.push({ index: pos, code: e.code, error: e.message });
      return;
    }
    const hash = toHex(receiptHash(bytes));
    const seen = byHash.get(hash);
    if (seen) {
      seen.dups.push(pos);
      return;
    }
    const item = { pos, receipt, hash, dups: [] };
    byHash.set(hash, item);
    items.push(item);
  });
  report.distinct = items.length;

  // 2. Group by decider (in order of first delivery), order by seq.
  const groupOf = new Map<string, Group>();
  const groups: Group[] = [];
  const members = new Map<Group, Item[]>();
  for (const item of items) {
    let g = groupOf.get(item.receipt.decider);
    if (!g) {
      g = { decider: item.receipt.decider, levels: [] };
      groupOf.set(g.decider, g);
      groups.push(g);
      members.set(g, []);
    }
    members.get(g)!.push(item);
  }
  for (const g of groups) {
    // Stable sort: within a seq, delivery order.
    const bySeq = (a: Item, b: Item) => (a.receipt.seq < b.receipt.seq ? -1 : a.receipt.seq > b.receipt.seq ? 1 : 0);
    const sorted = [...members.get(g)!].sort(bySeq);
    for (const it of sorted) {
      const last = g.levels[g.levels.length - 1];
      if (last && last.seq === it.receipt.seq) last.items.push(it);
      else g.levels.push({ seq: it.receipt.seq, items: [it] });
    }
  }
  const posOf = (l: Level) => l.items[0]!.pos;
  const handoverIns = new Set<string>();
  for (const it of items) {
    const b = it.receipt.body;
    if (b.kind === "handover_in") handoverIns.add(`${b.predecessor}/${b.predecessor_seq}/${it.receipt.decider}`);
  }

  // 3. Walk each group.
  for (const group of groups) {
    const decider = group.decider;
    let previous: Level | undefined;
    let handedOut = false;
    let afterOutReported = false;
    for (const level of group.levels) {
      const seq = level.seq;
      const positions = level.items.map((it) => it.pos);
      for (const it of level.items) {
        if (it.dups.length > 0) report.duplicates.push({ decider, seq, positions: [it.pos, ...it.dups] });
      }
      if (level.items.length > 1) report.forks.push({ decider, seq, reason: "same_seq", positions: [...positions] });
      if (previous) {
        if (posOf(level) < posOf(previous)) {
          report.reorders.push({
            decider,
            seq,
            position: posOf(level),
            previous_seq: previous.seq,
            previous_position: posOf(previous),
          });
        }
        if (previous.seq + 1n !== seq) {
          report.gaps.push({ decider, after: previous.seq, next: seq });
        } else {
          for (const it of level.items) {
            if (!previous.items.some((p) => p.hash === it.receipt.prev)) {
              report.forks.push({ decider, seq, reason: "prev_mismatch", positions: [it.pos] });
            }
          }
        }
      }
      if (handedOut && !afterOutReported) {
        report.forks.push({ decider, seq, reason: "after_handover_out", positions: [...positions] });
        afterOutReported = true;
      }
      for (const it of level.items) {
        const b = it.receipt.body;
        if (b.kind === "handover_in") {
          let status: HandoverStatus = "predecessor_not_delivered";
          const predGroup = groupOf.get(b.predecessor);
          const out = predGroup && levelOf(predGroup, b.predecessor_seq);
          if (out) {
            const found = out.items.find((o) => o.hash === b.predecessor_head);
            if (!found) status = "head_mismatch";
            else if (found.receipt.body.kind === "handover_out" && found.receipt.body.successor === decider) {
              if (b.predecessor !== decider && it.pos < found.pos) {
                report.reorders.push({
                  decider,
                  seq,
                  position: it.pos,
                  previous_seq: b.predecessor_seq,
                  previous_position: found.pos,
                });
              }
              status = "linked";
            } else status = "not_handed_out";
          }
          report.handovers.push({ predecessor: b.predecessor, successor: decider, predecessor_seq: b.predecessor_seq, status });
        } else if (b.kind === "handover_out") {
          handedOut = true;
          if (!handoverIns.has(`${decider}/${seq}/${b.successor}`)) {
            report.handovers.push({
              predecessor: decider,
              successor: b.successor,
              predecessor_seq: seq,
              status: "successor_not_delivered",
            });
          }
        }
      }
      previous = level;
    }
  }

  // 4. Checkpoints.
  const vouched = new Set<Item>();
  const vouch = (start: Item) => {
    let it: Item | undefined = start;
    while (it && !vouched.has(it)) {
      vouched.add(it);
      const r: Receipt = it.receipt;
      const p = byHash.get(r.prev);
      if (!p || p.receipt.seq + 1n !== r.seq) return;
      if (p.receipt.decider !== r.decider && r.body.kind !== "handover_in") return;
      it = p;
    }
  };
  // Signer ids as lower-case UUID text, whichever form they were given in.
  const trusted = keys.map((k) => ({ signer: uuidText(idBytes(k.signer, "signer")), publicKey: k.publicKey }));
  checkpoints.forEach((signed, index) => {
    const c = signed.checkpoint;
    const candidates = trusted.filter((k) => k.signer === c.signer);
    let status: CheckpointStatus;
    if (candidates.length === 0) status = "unknown_signer";
    else if (!candidates.some((k) => verifyCheckpoint(signed, k.publicKey))) status = "bad_signature";
    else {
      const group = groupOf.get(c.decider);
      if (!group) status = "no_receipts";
      else {
        const level = levelOf(group, c.seq);
        if (level) {
          const head = level.items.find((it) => it.hash === c.head);
          if (head) {
            vouch(head);
            status = "matches";
          } else status = "head_mismatch";
        } else {
          const first = group.levels[0]!.seq;
          const last = group.levels[group.levels.length - 1]!.seq;
          status = c.seq > last ? "beyond_delivered" : c.seq < first ? "before_delivered" : "in_gap";
        }
      }
    }
    report.checkpoints.push({ index, decider: c.decider, signer: c.signer, seq: c.seq, head: c.head, time: c.time, status });
  });

  // 5. Chain summaries.
  for (const group of groups) {
    const first = group.levels[0]!;
    const startItem = first.items[0]!;
    const b = startItem.receipt.body;
    const start: ChainStartKind =
      b.kind === "chain_start" ? "chain_start" : b.kind === "handover_in" ? "handover_in" : "continues";
    const summary = {
      decider: group.decider,
      first_seq: first.seq,
      last_seq: group.levels[group.levels.length - 1]!.seq,
      receipts: group.levels.reduce((n, l) => n + l.items.length, 0),
      start,
      predecessor: b.kind === "handover_in" ? b.predecessor : null,
      vouched: [] as SeqRange[],
      unvouched: [] as SeqRange[],
    };
    let prev: { seq: bigint; v: boolean } | undefined;
    for (const level of group.levels) {
      const v = level.items.some((it) => vouched.has(it));
      const list = v ? summary.vouched : summary.unvouched;
      const last = list[list.length - 1];
      if (prev && last && prev.v === v && prev.seq + 1n === level.seq) last.last = level.seq;
      else list.push({ first: level.seq, last: level.seq });
      prev = { seq: level.seq, v };
    }
    report.chains.push(summary);
  }

  report.ok =
    report.undecodable.length === 0 &&
    report.duplicates.length === 0 &&
    report.reorders.length === 0 &&
    report.gaps.length === 0 &&
    report.forks.length === 0 &&
    report.handovers.every((h) => h.status !== "head_mismatch" && h.status !== "not_handed_out") &&
    report.checkpoints.every(
      (c) => !["head_mismatch", "beyond_delivered", "unknown_signer", "bad_signature"].includes(c.status),
    ) &&
    report.chains.every((c) => c.vouched.length > 0);
  return report;
}

