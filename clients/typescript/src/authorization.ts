// User authorization messages (SPEC §15, docs/authorization.md): the exact Sign In With Solana
// text the enclave renders from structured fields and verifies the wallet's signature over.
// Mirrors `enclave/core/src/authorization.rs` byte for byte (the golden vectors check both).
//
//   {domain} wants you to sign in with your Solana account:
//   {wallet, base58}
//
//   {statement}
//
//   URI: {uri}
//   Version: 1
//   Chain ID: {chain_id}
//   Nonce: {32 lower-case hex digits}
//   Issued At: {RFC 3339 UTC, to the second}
//   Expiration Time: {Issued At + validity}
//   Resources:
//   - urn:signer:purpose:{grant | import-vault | revoke | export}
//   - urn:signer:enclave:{enclave id}
//   - …purpose-specific resources
//
// Printable ASCII and LF only, no trailing newline. A grant's statement reads the policy in the
// units of the domain's `registry` (the enclave's measured `[[authorization.tokens]]` and
// `[[authorization.programs]]`).

import { sha256 } from "@noble/hashes/sha2.js";

import {
  type Bytes,
  type U64,
  concat,
  fromBase58,
  idBytes,
  pubkeyBytes,
  toBase58,
  toHex,
  u64,
  utf8,
  uuidText,
} from "./bytes.js";
import {
  type Policy,
  type Registry,
  EMPTY_REGISTRY,
  policySha256Hex,
  policySummary,
  validateRegistry,
} from "./policy.js";

/** Where messages are valid: the enclave's measured `[authorization]` config. */
export interface MessageDomain {
  /** RFC 3986 authority the wallet checks against the requesting origin (`app.example.com`). */
  domain: string;
  /** The URI the user is authorizing (`https://app.example.com`). */
  uri: string;
  /** The Solana cluster (`mainnet`, `devnet`, `testnet`, `localnet`, or `solana:…`). */
  chain_id: string;
  /** `Expiration Time − Issued At`, seconds (1..=600). */
  validity_seconds: number;
  /**
   * What the enclave's statements call tokens and programs (`GET /v1/enclave` `registry`, or the
   * frontend's pinned copy of the measured config). Absent: the empty registry, as an enclave
   * configured without one renders.
   */
  registry?: Registry;
}

/** The longest validity of a message. */
export const MAX_VALIDITY_SECONDS = 600;
/** Nonce length in hex digits (128 bits). */
export const NONCE_HEX_LEN = 32;
/** The latest time a message may carry (keeps every rendered year at four digits). */
const MAX_TIME = 253_402_300_799n; // 9999-12-31T23:59:59Z

/** A grant: `bot_id` may sign with `agent_pubkey` under `policy` for `ttl_seconds`. */
export interface GrantPurpose {
  kind: "grant";
  bot_id: string | Bytes;
  agent_pubkey: string | Bytes;
  ttl_seconds: U64;
  policy: Policy;
}

/** A vault sealed by the user's browser becomes usable in the enclave. */
export interface ImportVaultPurpose {
  kind: "import-vault";
  vault_id: string | Bytes;
  /** SHA-256 of the whole vault record (32 bytes or hex). */
  vault_record_sha256: string | Bytes;
}

/** The wallet revokes one of its own grants (or scheduled records), by id. */
export interface RevokeGrantPurpose {
  kind: "revoke";
  /** UUID text or 16 bytes. */
  grant_id: string | Bytes;
  all?: undefined;
}

/** The wallet revokes every grant and scheduled record it made up to now. */
export interface RevokeAllPurpose {
  kind: "revoke";
  all: true;
  grant_id?: undefined;
}

export type RevokePurpose = RevokeGrantPurpose | RevokeAllPurpose;

/** The wallet exports a vault's master key to an X25519 key its browser holds. */
export interface ExportVaultPurpose {
  kind: "export";
  vault_id: string | Bytes;
  /** SHA-256 of the vault record (32 bytes or hex). */
  record_sha256: string | Bytes;
  /** The browser's X25519 public key (32 bytes or hex): the HPKE recipient. */
  recipient: string | Bytes;
  agent_pubkey?: undefined;
}

/** The wallet exports an agent's seed, or its recovery phrase (`mnemonic`), to its browser's key. */
export interface ExportAgentPurpose {
  kind: "export";
  agent_pubkey: string | Bytes;
  /** True for a BIP39 agent (the statement says "recovery phrase"), false for a seed agent. */
  mnemonic: boolean;
  /** SHA-256 of the agent key record. */
  record_sha256: string | Bytes;
  recipient: string | Bytes;
  vault_id?: undefined;
}

export type ExportPurpose = ExportVaultPurpose | ExportAgentPurpose;

export type Purpose = GrantPurpose | ImportVaultPurpose | RevokePurpose | ExportPurpose;

/** Everything a message is rendered from, besides the domain. */
export interface MessageFields {
  /** The wallet, base58 or 32 bytes. */
  wallet: string | Bytes;
  /** The enclave instance that will hold the authorization's effect (UUID text or 16 bytes). */
  enclave_id: string | Bytes;
  /** 32 lower-case hex digits, from the enclave. */
  nonce: string;
  /** Unix seconds. */
  issued_at: U64;
  purpose: Purpose;
}

/** Thrown when a message cannot be rendered as specified (the enclave would refuse it too). */
export class AuthorizationError extends Error {
  override name = "AuthorizationError";
}

/** Checks a nonce: exactly 32 lower-case hex digits. */
export function checkNonce(nonce: string): void {
  if (!/^[0-9a-f]{32}$/.test(nonce)) {
    throw new AuthorizationError(`nonce must be ${NONCE_HEX_LEN} lower-case hex digits (128 bits)`);
  }
}

/** Checks the domain fields as the enclave's config loader does. */
export function validateDomain(domain: MessageDomain): void {
  const token = (name: string, value: string, max: number, allowed: RegExp, chars: string) => {
    if (value.length === 0 || value.length > max || !allowed.test(value)) {
      throw new AuthorizationError(`${name} \`${value}\` must be 1..=${max} characters of [${chars}]`);
    }
  };
  token("domain", domain.domain, 253, /^[A-Za-z0-9.\-:]+$/, "A-Za-z0-9.-:");
  token("uri", domain.uri, 512, /^[\x21-\x7e]+$/, "printable ASCII, no spaces");
  token("chain_id", domain.chain_id, 64, /^[a-z0-9:\-]+$/, "a-z0-9:-");
  try {
    validateRegistry(domain.registry ?? EMPTY_REGISTRY);
  } catch (e) {
    throw new AuthorizationError(`registry: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (
    !Number.isInteger(domain.validity_seconds) ||
    domain.validity_seconds < 1 ||
    domain.validity_seconds > MAX_VALIDITY_SECONDS
  ) {
    throw new AuthorizationError(
      `validity_seconds ${domain.validity_seconds} must be between 1 and ${MAX_VALIDITY_SECONDS}`,
    );
  }
}

/** `1h30m`, `15m`, `2d`, `45s`: exact, largest units first. */
export function durationText(seconds: U64): string {
  let rest = u64(seconds, "seconds");
  if (rest === 0n) return "0s";
  let out = "";
  for (const [unit, size] of [["d", 86_400n], ["h", 3_600n], ["m", 60n], ["s", 1n]] as const) {
    const n = rest / size;
    if (n > 0n) {
      out += `${n}${unit}`;
      rest %= size;
    }
  }
  return out;
}

const pad = (n: bigint, width: number) => n.toString().padStart(width, "0");

/** Unix seconds as RFC 3339 UTC to the second (`2026-12-01T12:50:06Z`), proleptic Gregorian. */
export function rfc3339(unix: U64): string {
  const t = u64(unix, "time");
  const days = t / 86_400n;
  const secs = t % 86_400n;
  // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), as the enclave computes it.
  const z = days + 719_468n;
  const era = z / 146_097n;
  const doe = z - era * 146_097n;
  const yoe = (doe - doe / 1460n + doe / 36_524n - doe / 146_096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const day = doy - (153n * mp + 2n) / 5n + 1n;
  const month = mp < 10n ? mp + 3n : mp - 9n;
  const year = yoe + era * 400n + (month <= 2n ? 1n : 0n);
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}T${pad(secs / 3600n, 2)}:${pad((secs % 3600n) / 60n, 2)}:${pad(secs % 60n, 2)}Z`;
}

function hex32(value: string | Bytes, what: string): string {
  if (typeof value === "string") {
    if (!/^[0-9a-fA-F]{64}$/.test(value)) throw new AuthorizationError(`${what} must be 32 bytes of hex`);
    return value.toLowerCase();
  }
  if (value.length !== 32) throw new AuthorizationError(`${what} must be 32 bytes`);
  return toHex(value);
}

/** Renders the message (module comment); throws an `AuthorizationError` for unrenderable fields. */
export function renderMessage(domain: MessageDomain, fields: MessageFields): string {
  validateDomain(domain);
  checkNonce(fields.nonce);
  const issuedAt = u64(fields.issued_at, "issued_at");
  const expiration = issuedAt + BigInt(domain.validity_seconds);
  const wallet = toBase58(pubkeyBytes(fields.wallet, "wallet"));
  const enclave = uuidText(idBytes(fields.enclave_id, "enclave_id"));
  let statement: string;
  let extra: string[];
  const p = fields.purpose;
  if (p.kind === "grant") {
    const ttl = u64(p.ttl_seconds, "ttl_seconds");
    const until = issuedAt + ttl;
    if (ttl === 0n || until > MAX_TIME) {
      throw new AuthorizationError(`grant lifetime ${ttl} s cannot be rendered`);
    }
    const bot = uuidText(idBytes(p.bot_id, "bot_id"));
    const agent = toBase58(pubkeyBytes(p.agent_pubkey, "agent_pubkey"));
    statement = `Allow bot ${bot} to sign with agent ${agent} until ${rfc3339(until)} (${durationText(ttl)}). Limits: ${policySummary(p.policy, domain.registry ?? EMPTY_REGISTRY)}.`;
    extra = [
      `urn:signer:bot:${bot}`,
      `urn:signer:agent:${agent}`,
      `urn:signer:grant-lifetime:${ttl}`,
      `urn:signer:policy-sha256:${policySha256Hex(p.policy)}`,
    ];
  } else if (p.kind === "import-vault") {
    const vault = uuidText(idBytes(p.vault_id, "vault_id"));
    statement = `Import vault ${vault} as a master key of this wallet. Whoever sealed it knows its master key and can use its agents without any grant: sign only if your own browser sealed it.`;
    extra = [
      `urn:signer:vault:${vault}`,
      `urn:signer:vault-record-sha256:${hex32(p.vault_record_sha256, "vault_record_sha256")}`,
    ];
  } else if (p.kind === "revoke") {
    if (p.all === true && p.grant_id === undefined) {
      statement =
        "Revoke every grant and scheduled transfer of this wallet made up to now: no bot can sign with them from now on.";
      extra = ["urn:signer:revoke:all"];
    } else if (p.grant_id !== undefined && p.all === undefined) {
      const id = uuidText(idBytes(p.grant_id, "grant_id"));
      statement = `Revoke grant ${id} of this wallet: no bot can sign with it from now on.`;
      extra = [`urn:signer:revoke:${id}`];
    } else {
      throw new AuthorizationError("a revocation names exactly one of grant_id or all: true");
    }
  } else if (p.kind === "export") {
    const recipient = hex32(p.recipient, "recipient");
    let what: string;
    if (p.vault_id !== undefined && p.agent_pubkey === undefined) {
      const vault = uuidText(idBytes(p.vault_id, "vault_id"));
      statement = `Export the master key of vault ${vault} to the key ${recipient} your browser holds. Whoever holds it controls every agent made from this vault, outside every limit and grant.`;
      what = `urn:signer:export:vault:${vault}`;
    } else if (p.agent_pubkey !== undefined && p.vault_id === undefined) {
      if (typeof p.mnemonic !== "boolean") throw new AuthorizationError("an agent export says whether it is a mnemonic");
      const agent = toBase58(pubkeyBytes(p.agent_pubkey, "agent_pubkey"));
      statement = `Export the ${p.mnemonic ? "recovery phrase" : "seed"} of agent ${agent} to the key ${recipient} your browser holds. Whoever holds it can move the agent's funds outside every limit and grant.`;
      what = `urn:signer:export:agent:${agent}`;
    } else {
      throw new AuthorizationError("an export names exactly one of vault_id or agent_pubkey");
    }
    extra = [
      what,
      `urn:signer:export-record-sha256:${hex32(p.record_sha256, "record_sha256")}`,
      `urn:signer:export-recipient:x25519:${recipient}`,
    ];
  } else {
    throw new AuthorizationError(`unknown purpose ${(p as { kind: unknown }).kind}`);
  }
  if (expiration > MAX_TIME) throw new AuthorizationError(`issued_at ${issuedAt} cannot be rendered`);
  const lines = [
    `${domain.domain} wants you to sign in with your Solana account:`,
    wallet,
    "",
    statement,
    "",
    `URI: ${domain.uri}`,
    "Version: 1",
    `Chain ID: ${domain.chain_id}`,
    `Nonce: ${fields.nonce}`,
    `Issued At: ${rfc3339(issuedAt)}`,
    `Expiration Time: ${rfc3339(expiration)}`,
    "Resources:",
    `- urn:signer:purpose:${p.kind}`,
    `- urn:signer:enclave:${enclave}`,
    ...extra.map((r) => `- ${r}`),
  ];
  const text = lines.join("\n");
  if (!/^[\n\x20-\x7e]*$/.test(text)) {
    throw new AuthorizationError("the message would contain characters outside printable ASCII");
  }
  return text;
}

/** `grant_id = SHA-256("grant-id/v1" ‖ signature)[..16]`, as UUID text: one signature, one grant. */
export function grantId(signature: string | Bytes): string {
  const sig = typeof signature === "string" ? fromBase58(signature, 64, "signature") : signature;
  if (sig.length !== 64) throw new AuthorizationError(`a signature is 64 bytes, not ${sig.length}`);
  return uuidText(sha256(concat(utf8("grant-id/v1"), sig)).slice(0, 16));
}

/** What `POST /v1/authorizations/{grant,import,revoke,export}` answer. */
export interface AuthorizationMessage {
  message: string;
  nonce: string;
  issued_at: number;
  expires_at: number;
  enclave_id: string;
  policy_sha256?: string;
}

/** Thrown when a message handed to the browser is not the one the user's choices render. */
export class MessageMismatchError extends AuthorizationError {
  override name = "MessageMismatchError";
  constructor(
    readonly expected: string,
    readonly received: string,
  ) {
    const a = expected.split("\n");
    const b = received.split("\n");
    let line = 0;
    while (line < Math.max(a.length, b.length) && a[line] === b[line]) line++;
    super(
      `the message to sign is not the one these fields render (line ${line + 1}: expected ${JSON.stringify(a[line] ?? "")}, received ${JSON.stringify(b[line] ?? "")})`,
    );
  }
}

/**
 * Renders the message for what the user chose (the purpose, in the frontend's own terms) with the
 * nonce, issue time and enclave of the authorization the backend obtained, and checks that it is
 * byte for byte the message the backend handed over. Call it before asking the wallet to sign: a
 * backend (or anything between it and the browser) cannot then slip in another bot, agent, limit,
 * lifetime, grant to revoke, record to export or recipient key. `domain` is the frontend's own
 * pinned copy of the enclave's `[authorization]` config, registry included. Returns the message.
 */
export function checkAuthorizationMessage(
  domain: MessageDomain,
  expected: { wallet: string | Bytes; purpose: Purpose },
  received: AuthorizationMessage,
): string {
  const rendered = renderMessage(domain, {
    wallet: expected.wallet,
    enclave_id: received.enclave_id,
    nonce: received.nonce,
    issued_at: received.issued_at,
    purpose: expected.purpose,
  });
  if (rendered !== received.message) throw new MessageMismatchError(rendered, received.message);
  if (BigInt(received.expires_at) !== BigInt(received.issued_at) + BigInt(domain.validity_seconds)) {
    throw new AuthorizationError(
      `expires_at ${received.expires_at} is not issued_at + ${domain.validity_seconds}`,
    );
  }
  if (
    expected.purpose.kind === "grant" &&
    received.policy_sha256 !== undefined &&
    received.policy_sha256 !== policySha256Hex(expected.purpose.policy)
  ) {
    throw new AuthorizationError("policy_sha256 does not match the policy");
  }
  return rendered;
}
