// Record headers (SPEC §4, docs/records.md): every record is `AAD ‖ body`, the AAD being the fixed
// binary header exactly as stored; integers little-endian. Building the headers a browser seals
// (scheduled key, imported vault), reading the header of any record, enclave ids and the
// provenance binding. Mirrors `types/src/records.rs`, `types/src/ids.rs`, `types/src/provenance.rs`.
//
//   common     version u32 (=1) ‖ record_type u8 ‖ wallet[32] ‖ record_id[16]          53 bytes
//   grant (1)      ‖ bot_id[16] ‖ agent_pubkey[32] ‖ issued_at u64 ‖ expires_at u64
//                  ‖ enclave_id[16]                                               AAD 133
//   agent key (2)  ‖ agent_pubkey[32] ‖ kind u8 [‖ account u32 if kind = 1]       AAD 86 / 90
//   scheduled (3)  ‖ agent_pubkey[32] ‖ not_before u64 ‖ not_after u64 ‖ max_fee_lamports u64
//                  ‖ intent_hash[32] ‖ created_at u64 ‖ enclave_id[16]             AAD 165
//   vault (4)      ‖ created_at u64 ‖ origin u8 (0 generated, 1 imported)         AAD 62

import { sha256 } from "@noble/hashes/sha2.js";

import {
  type Bytes,
  type U64,
  concat,
  idBytes,
  le32,
  le64,
  pubkeyBytes,
  readLe64,
  toBase58,
  u64,
  utf8,
  uuidText,
} from "./bytes.js";

export const RECORD_VERSION = 1;
export const COMMON_HEADER_LEN = 53;
export const GRANT_AAD_LEN = 133;
export const AGENT_KEY_AAD_LEN = 86;
export const AGENT_KEY_MNEMONIC_AAD_LEN = 90;
export const SCHEDULED_AAD_LEN = 165;
export const VAULT_AAD_LEN = 62;
export const IV_LEN = 12;
export const TAG_LEN = 16;
export const MAX_WRAPPED_KEY_LEN = 1024;
export const MAX_RECORD_LEN = 16 * 1024;
/** The longest window of a scheduled record (`not_after − not_before`). */
export const MAX_SCHEDULE_WINDOW_SECONDS = 48 * 3600;
/** The longest life of a scheduled record (`not_after − created_at`). */
export const MAX_SCHEDULE_LIFETIME_SECONDS = 30 * 86_400;

export const RecordType = {
  ExecutionGrant: 1,
  AgentKey: 2,
  ScheduledKey: 3,
  Vault: 4,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

/** A record that is not what it claims to be. */
export class RecordError extends Error {
  override name = "RecordError";
}

function common(type: RecordType, wallet: string | Bytes, recordId: string | Bytes): Bytes {
  return concat(
    le32(RECORD_VERSION),
    Uint8Array.of(type),
    pubkeyBytes(wallet, "wallet"),
    idBytes(recordId, "record id"),
  );
}

/** The transfer a scheduled record allows. */
export interface Intent {
  /** The instruction's destination account: the recipient for SOL, the destination token account for SPL. */
  destination: string | Bytes;
  /** The mint; absent (all zeros) for SOL. */
  mint?: string | Bytes | null;
  /** Lamports, or token base units. */
  amount: U64;
}

/** Canonical intent bytes: `destination[32] ‖ mint[32] (zeros = SOL) ‖ amount u64` (72 bytes). */
export function intentBytes(intent: Intent): Bytes {
  const mint = intent.mint == null ? new Uint8Array(32) : pubkeyBytes(intent.mint, "mint");
  return concat(pubkeyBytes(intent.destination, "destination"), mint, le64(intent.amount, "amount"));
}

/** `intent_hash = SHA-256(intentBytes)`. */
export function intentHash(intent: Intent): Bytes {
  return sha256(intentBytes(intent));
}

/** The bound fields of a scheduled-key record. */
export interface ScheduledHeaderFields {
  wallet: string | Bytes;
  schedule_id: string | Bytes;
  agent_pubkey: string | Bytes;
  /** Unix seconds. */
  not_before: U64;
  /** Unix seconds; at most 48 h after `not_before`. */
  not_after: U64;
  max_fee_lamports: U64;
  intent: Intent;
  /** Unix seconds; `not_after` at most 30 days later. */
  created_at: U64;
  /** The enclave instance that will sign it (`GET /v1/enclave`). */
  enclave_id: string | Bytes;
}

/** The scheduled-key AAD (165 bytes); refuses windows the enclave would refuse. */
export function scheduledAad(f: ScheduledHeaderFields): Bytes {
  const notBefore = u64(f.not_before, "not_before");
  const notAfter = u64(f.not_after, "not_after");
  const createdAt = u64(f.created_at, "created_at");
  if (notAfter < notBefore) throw new RecordError(`not_after ${notAfter} is before not_before ${notBefore}`);
  if (notAfter - notBefore > BigInt(MAX_SCHEDULE_WINDOW_SECONDS)) {
    throw new RecordError(`the window ${notAfter - notBefore} s is longer than 48 h`);
  }
  if (notAfter < createdAt || notAfter - createdAt > BigInt(MAX_SCHEDULE_LIFETIME_SECONDS)) {
    throw new RecordError(`not_after must be within 30 days after created_at`);
  }
  const aad = concat(
    common(RecordType.ScheduledKey, f.wallet, f.schedule_id),
    pubkeyBytes(f.agent_pubkey, "agent_pubkey"),
    le64(notBefore),
    le64(notAfter),
    le64(f.max_fee_lamports, "max_fee_lamports"),
    intentHash(f.intent),
    le64(createdAt),
    idBytes(f.enclave_id, "enclave_id"),
  );
  return aad;
}

/** The bound fields of a vault record. */
export interface VaultHeaderFields {
  wallet: string | Bytes;
  vault_id: string | Bytes;
  /** Unix seconds. */
  created_at: U64;
  /** 0 generated in an enclave, 1 sealed by the user's browser. */
  origin: 0 | 1;
}

/** The vault AAD (62 bytes). */
export function vaultAad(f: VaultHeaderFields): Bytes {
  return concat(
    common(RecordType.Vault, f.wallet, f.vault_id),
    le64(f.created_at, "created_at"),
    Uint8Array.of(f.origin),
  );
}

interface CommonFields {
  /** Base58. */
  wallet: string;
  /** UUID text. */
  record_id: string;
  /** The header exactly as stored (the AAD). */
  aad: Bytes;
}

/** A record's header, read without opening anything. */
export type RecordHeader =
  | (CommonFields & {
      type: 1;
      bot_id: string;
      agent_pubkey: string;
      issued_at: bigint;
      expires_at: bigint;
      enclave_id: string;
    })
  | (CommonFields & { type: 2; agent_pubkey: string; kind: 0 | 1; account?: number })
  | (CommonFields & {
      type: 3;
      agent_pubkey: string;
      not_before: bigint;
      not_after: bigint;
      max_fee_lamports: bigint;
      intent_hash: Bytes;
      created_at: bigint;
      enclave_id: string;
    })
  | (CommonFields & { type: 4; created_at: bigint; origin: 0 | 1 });

/** Reads the header of a record (any type); throws a `RecordError` for a malformed one. */
export function parseRecordHeader(record: Bytes): RecordHeader {
  if (record.length > MAX_RECORD_LEN) throw new RecordError(`record is ${record.length} bytes; at most ${MAX_RECORD_LEN}`);
  const need = (n: number, what: string) => {
    if (record.length < n) throw new RecordError(`${what}: record is ${record.length} bytes; need ${n}`);
  };
  need(COMMON_HEADER_LEN, "header");
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const version = view.getUint32(0, true);
  if (version !== RECORD_VERSION) throw new RecordError(`unsupported record version ${version}`);
  const type = record[4]!;
  const base = {
    wallet: toBase58(record.subarray(5, 37)),
    record_id: uuidText(record.subarray(37, 53)),
  };
  const key = (o: number) => toBase58(record.subarray(o, o + 32));
  const id = (o: number) => uuidText(record.subarray(o, o + 16));
  switch (type) {
    case 1:
      need(GRANT_AAD_LEN, "grant");
      return {
        ...base,
        type,
        aad: record.subarray(0, GRANT_AAD_LEN),
        bot_id: id(53),
        agent_pubkey: key(69),
        issued_at: readLe64(record, 101),
        expires_at: readLe64(record, 109),
        enclave_id: id(117),
      };
    case 2: {
      need(AGENT_KEY_AAD_LEN, "agent key");
      const kind = record[85]!;
      if (kind === 0) return { ...base, type, aad: record.subarray(0, 86), agent_pubkey: key(53), kind };
      if (kind === 1) {
        need(AGENT_KEY_MNEMONIC_AAD_LEN, "agent key");
        return {
          ...base,
          type,
          aad: record.subarray(0, 90),
          agent_pubkey: key(53),
          kind,
          account: view.getUint32(86, true),
        };
      }
      throw new RecordError(`unknown agent key kind ${kind}`);
    }
    case 3:
      need(SCHEDULED_AAD_LEN, "scheduled key");
      return {
        ...base,
        type,
        aad: record.subarray(0, SCHEDULED_AAD_LEN),
        agent_pubkey: key(53),
        not_before: readLe64(record, 85),
        not_after: readLe64(record, 93),
        max_fee_lamports: readLe64(record, 101),
        intent_hash: record.slice(109, 141),
        created_at: readLe64(record, 141),
        enclave_id: id(149),
      };
    case 4: {
      need(VAULT_AAD_LEN, "vault");
      const origin = record[61]!;
      if (origin !== 0 && origin !== 1) throw new RecordError(`unknown vault origin ${origin}`);
      return { ...base, type, aad: record.subarray(0, VAULT_AAD_LEN), created_at: readLe64(record, 53), origin };
    }
    default:
      throw new RecordError(`unknown record type ${type}`);
  }
}

/** `SHA-256("signer/enclave-id/v1" ‖ recipient SPKI DER)[..16]`, UUID text. */
export function enclaveIdFromRecipientKey(spkiDer: Bytes): string {
  return uuidText(sha256(concat(utf8("signer/enclave-id/v1"), spkiDer)).slice(0, 16));
}

export const PROVENANCE_DOMAIN = "signer/provenance/v1";

/**
 * The provenance binding of a vault record, or of an agent-key record made from vault `vaultId`:
 * `"signer/provenance/v1" ‖ record_type ‖ wallet ‖ record_id ‖ SHA-256(record)
 * [‖ agent_pubkey ‖ vault_id]`. The document's `user_data` is its SHA-256.
 */
export function provenanceBinding(record: Bytes, vaultId?: string | Bytes): Bytes {
  const header = parseRecordHeader(record);
  const prefix = concat(utf8(PROVENANCE_DOMAIN), Uint8Array.of(header.type), record.subarray(5, 53), sha256(record));
  if (header.type === 4) {
    if (vaultId !== undefined) throw new RecordError("a vault's provenance binds no other vault id");
    return prefix;
  }
  if (header.type === 2) {
    if (vaultId === undefined) {
      throw new RecordError(
        "an agent key's provenance binds the id of the vault it was made from: give it",
      );
    }
    return concat(prefix, record.subarray(53, 85), idBytes(vaultId, "vault id"));
  }
  throw new RecordError(
    `provenance covers vaults (type 4) and agent keys (type 2), not type ${header.type}`,
  );
}

/** SHA-256 of the provenance binding: the `user_data` a provenance document must carry. */
export function provenanceUserData(record: Bytes, vaultId?: string | Bytes): Bytes {
  return sha256(provenanceBinding(record, vaultId));
}
