// A grant's policy (SPEC §7) as the API takes it, its validation, its canonical bytes (what the
// user's signature binds by SHA-256) and its one-line summary (what the user reads in the message,
// in the units of the enclave's token and program `Registry`). Mirrors `types/src/policy.rs`; the
// golden vectors check both byte for byte.
//
// Canonical bytes (integers little-endian, lists in the given order):
//   "signer/policy/v1"
//   max_lamports_per_tx u64 ‖ max_lamports_per_day u64 ‖ max_fee_lamports u64
//   n_tokens u16 ‖ n × (mint[32] ‖ max_per_tx u64 ‖ max_per_day u64)
//   n_programs u16 ‖ n × program[32]
//   max_notional_cents_per_tx u64 ‖ max_notional_cents_per_day u64
//   has_destinations u8 (0/1) [‖ n u16 ‖ n × destination[32]]
//   has_max_tx_per_minute u8 (0/1) [‖ max_tx_per_minute u32]

import { sha256 } from "@noble/hashes/sha2.js";

import {
  type Bytes,
  type U64,
  U64_MAX,
  concat,
  le16,
  le32,
  le64,
  pubkeyBytes,
  toBase58,
  toHex,
  u64,
  utf8,
} from "./bytes.js";

/** Per-mint limits, in the token's base units. */
export interface TokenLimit {
  /** The mint, base58. */
  mint: string;
  max_per_tx: U64;
  max_per_day: U64;
}

/**
 * A grant's limits, with the field names of the JSON API. Amounts are u64: pass a `bigint` for
 * values above 2^53 − 1 (`U64_MAX` means unlimited).
 */
export interface Policy {
  max_lamports_per_tx: U64;
  max_lamports_per_day: U64;
  max_fee_lamports: U64;
  tokens: TokenLimit[];
  /** Program ids (base58) allowed with a declared notional. */
  allowed_programs: string[];
  max_notional_cents_per_tx: U64;
  max_notional_cents_per_day: U64;
  /** Absent or `null`: any destination. */
  destinations?: string[] | null;
  /** Absent or `null`: no rate limit. */
  max_tx_per_minute?: number | null;
}

export const MAX_TOKENS = 64;
export const MAX_PROGRAMS = 64;
export const MAX_DESTINATIONS = 1024;
/** Destinations written out in a summary; longer allowlists are counted (the hash binds them). */
export const SUMMARY_DESTINATIONS = 8;
export const POLICY_DOMAIN = "signer/policy/v1";

/** Well-known program ids. */
export const PROGRAMS = {
  SYSTEM: "11111111111111111111111111111111",
  TOKEN: "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
  TOKEN_2022: "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
  COMPUTE_BUDGET: "ComputeBudget111111111111111111111111111111",
  ED25519_PRECOMPILE: "Ed25519SigVerify111111111111111111111111111",
  SECP256K1_PRECOMPILE: "KeccakSecp256k1SigVerify1111111111111111111",
  SECP256R1_PRECOMPILE: "Secp256r1SigVerify1111111111111111111111111",
} as const;

/** A mint the registry names: its amounts read as `USDC 100.5` rather than base units. */
export interface KnownToken {
  /** The mint, base58. */
  mint: string;
  /** 1..=10 characters of `A-Za-z0-9`. */
  symbol: string;
  /** 0..=19. */
  decimals: number;
}

/** A program the registry names: it reads as `Jupiter v6 (JUP6…)`. */
export interface KnownProgram {
  /** The program id, base58. */
  id: string;
  /** 1..=24 characters of `A-Za-z0-9`, space, `.` and `-`, no leading or trailing space. */
  name: string;
}

/**
 * What the enclave's measured config (`[[authorization.tokens]]`, `[[authorization.programs]]`)
 * calls mints and programs in the messages users read. `GET /v1/enclave` returns it as `registry`;
 * a production frontend pins its own copy with the rest of the `[authorization]` table.
 */
export interface Registry {
  tokens?: KnownToken[];
  programs?: KnownProgram[];
}

/** Most registry entries of each kind. */
export const MAX_REGISTRY_ENTRIES = 256;

/** Thrown for a policy the enclave would refuse (`400 bad_request`). */
export class PolicyError extends Error {
  override name = "PolicyError";
}

/** A key in its canonical base58 form (the bytes re-encoded), as the enclave prints it. */
function key(text: string, what: string): string {
  return toBase58(pubkeyBytes(text, what));
}

function destinationsOf(policy: Policy): string[] | undefined {
  return policy.destinations === null ? undefined : policy.destinations;
}

function rateOf(policy: Policy): number | undefined {
  return policy.max_tx_per_minute === null ? undefined : policy.max_tx_per_minute;
}

/** Checks what the enclave checks (`Policy::validate`); throws a `PolicyError` saying what is wrong. */
export function validatePolicy(policy: Policy): void {
  if (policy.tokens.length > MAX_TOKENS) {
    throw new PolicyError(`${policy.tokens.length} tokens; at most ${MAX_TOKENS}`);
  }
  if (policy.allowed_programs.length > MAX_PROGRAMS) {
    throw new PolicyError(
      `${policy.allowed_programs.length} allowed_programs; at most ${MAX_PROGRAMS}`,
    );
  }
  const mints = policy.tokens.map((t) => key(t.mint, "mint"));
  mints.forEach((m, i) => {
    if (mints.indexOf(m) !== i) throw new PolicyError(`mint ${m} is listed twice`);
  });
  const programs = policy.allowed_programs.map((p) => key(p, "program"));
  const own: string[] = [PROGRAMS.SYSTEM, PROGRAMS.TOKEN, PROGRAMS.TOKEN_2022, PROGRAMS.COMPUTE_BUDGET];
  const precompiles: string[] = [
    PROGRAMS.ED25519_PRECOMPILE,
    PROGRAMS.SECP256K1_PRECOMPILE,
    PROGRAMS.SECP256R1_PRECOMPILE,
  ];
  programs.forEach((p, i) => {
    if (own.includes(p)) {
      throw new PolicyError(`${p} has its own rules and cannot be in allowed_programs`);
    }
    if (precompiles.includes(p)) {
      throw new PolicyError(
        `${p} is a signature-verification precompile: the signatures it checks cost fees the fee limit cannot see, so it cannot be in allowed_programs`,
      );
    }
    if (programs.indexOf(p) !== i) throw new PolicyError(`program ${p} is listed twice`);
  });
  const destinations = destinationsOf(policy);
  if (destinations !== undefined) {
    if (destinations.length > MAX_DESTINATIONS) {
      throw new PolicyError(`${destinations.length} destinations; at most ${MAX_DESTINATIONS}`);
    }
    destinations.forEach((d) => key(d, "destination"));
  }
  const rate = rateOf(policy);
  if (rate !== undefined) {
    if (!Number.isInteger(rate) || rate < 0 || rate > 0xffffffff) {
      throw new PolicyError(`max_tx_per_minute ${rate} is not a u32`);
    }
    if (rate === 0) {
      throw new PolicyError("max_tx_per_minute must be at least 1 (omit it for no limit)");
    }
  }
  for (const field of [
    "max_lamports_per_tx",
    "max_lamports_per_day",
    "max_fee_lamports",
    "max_notional_cents_per_tx",
    "max_notional_cents_per_day",
  ] as const) {
    u64(policy[field], field);
  }
  policy.tokens.forEach((t) => {
    u64(t.max_per_tx, "tokens[].max_per_tx");
    u64(t.max_per_day, "tokens[].max_per_day");
  });
}

/** The canonical bytes (module comment): what a user's authorization binds by SHA-256. */
export function policyCanonicalBytes(policy: Policy): Bytes {
  validatePolicy(policy);
  const parts: Bytes[] = [
    utf8(POLICY_DOMAIN),
    le64(policy.max_lamports_per_tx),
    le64(policy.max_lamports_per_day),
    le64(policy.max_fee_lamports),
    le16(policy.tokens.length),
  ];
  for (const t of policy.tokens) {
    parts.push(pubkeyBytes(t.mint, "mint"), le64(t.max_per_tx), le64(t.max_per_day));
  }
  parts.push(le16(policy.allowed_programs.length));
  for (const p of policy.allowed_programs) parts.push(pubkeyBytes(p, "program"));
  parts.push(le64(policy.max_notional_cents_per_tx), le64(policy.max_notional_cents_per_day));
  const destinations = destinationsOf(policy);
  if (destinations === undefined) {
    parts.push(Uint8Array.of(0));
  } else {
    parts.push(Uint8Array.of(1), le16(destinations.length));
    for (const d of destinations) parts.push(pubkeyBytes(d, "destination"));
  }
  const rate = rateOf(policy);
  parts.push(rate === undefined ? Uint8Array.of(0) : concat(Uint8Array.of(1), le32(rate)));
  return concat(...parts);
}

/** SHA-256 of the canonical bytes. */
export function policySha256(policy: Policy): Bytes {
  return sha256(policyCanonicalBytes(policy));
}

/** SHA-256 of the canonical bytes, lower-case hex (the message's `policy-sha256` resource). */
export function policySha256Hex(policy: Policy): string {
  return toHex(policySha256(policy));
}

/** Lamports as SOL, exactly (no floating point); `unlimited` for `U64_MAX`. */
export function formatSol(lamports: U64): string {
  return decimal(lamports, 9);
}

/** USD cents as `$d.cc`; `unlimited` for `U64_MAX`. */
export function formatUsd(cents: U64): string {
  const v = u64(cents, "cents");
  if (v === U64_MAX) return "unlimited";
  return `$${v / 100n}.${(v % 100n).toString().padStart(2, "0")}`;
}

function amount(units: U64): string {
  const v = u64(units, "amount");
  return v === U64_MAX ? "unlimited" : v.toString();
}

/**
 * Base units as an exact decimal with `decimals` places (trailing zeros dropped), `unlimited` for
 * `U64_MAX`: `decimal(100_500_000, 6)` is `100.5`.
 */
export function decimal(units: U64, decimals: number): string {
  const v = u64(units, "amount");
  if (v === U64_MAX) return "unlimited";
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 255) {
    throw new PolicyError(`decimals ${decimals} is not a u8`);
  }
  const scale = 10n ** BigInt(decimals);
  // Where the enclave's `10u64.checked_pow` overflows (decimals > 19), it prints base units.
  if (scale > U64_MAX) return v.toString();
  const whole = v / scale;
  const frac = v % scale;
  if (frac === 0n) return whole.toString();
  return `${whole}.${frac.toString().padStart(decimals, "0").replace(/0+$/, "")}`;
}

/** The empty registry: every token in base units, every program by its address. */
export const EMPTY_REGISTRY: Registry = Object.freeze({ tokens: [], programs: [] });

/**
 * Checks what the enclave's config loader checks (`Registry::validate`): bounds, symbols and
 * names that cannot be mistaken for an address or break the summary's punctuation, no mint,
 * symbol, program id or name listed twice. Throws a `PolicyError`.
 */
export function validateRegistry(registry: Registry): void {
  const tokens = registry.tokens ?? [];
  const programs = registry.programs ?? [];
  if (tokens.length > MAX_REGISTRY_ENTRIES || programs.length > MAX_REGISTRY_ENTRIES) {
    throw new PolicyError(`at most ${MAX_REGISTRY_ENTRIES} tokens and programs each`);
  }
  tokens.forEach((t, i) => {
    if (typeof t.symbol !== "string" || !/^[A-Za-z0-9]{1,10}$/.test(t.symbol)) {
      throw new PolicyError(`token symbol \`${t.symbol}\` must be 1..=10 of A-Za-z0-9`);
    }
    if (!Number.isInteger(t.decimals) || t.decimals < 0 || t.decimals > 19) {
      throw new PolicyError(`token ${t.symbol} has ${t.decimals} decimals; at most 19`);
    }
    const mint = key(t.mint, "registry mint");
    if (tokens.slice(0, i).some((o) => key(o.mint, "registry mint") === mint || o.symbol === t.symbol)) {
      throw new PolicyError(`token ${t.symbol} (${mint}) is listed twice`);
    }
  });
  programs.forEach((p, i) => {
    if (
      typeof p.name !== "string" ||
      !/^[A-Za-z0-9 .\-]{1,24}$/.test(p.name) ||
      p.name.startsWith(" ") ||
      p.name.endsWith(" ")
    ) {
      throw new PolicyError(`program name \`${p.name}\` must be 1..=24 of A-Za-z0-9 . - and inner spaces`);
    }
    const id = key(p.id, "registry program");
    if (programs.slice(0, i).some((o) => key(o.id, "registry program") === id || o.name === p.name)) {
      throw new PolicyError(`program ${p.name} (${id}) is listed twice`);
    }
  });
}

/**
 * Every limit in one line of printable ASCII, as the user reads it in the message
 * (`Policy::summary`), in the units of `registry`: a known token as its symbol with exact decimals
 * (`USDC up to 100.5 per tx …`), an unknown one as `token {mint}` in base units; a known program by
 * name with its address; more than `SUMMARY_DESTINATIONS` destinations by count and the SHA-256 of
 * the list. Keys are written in full.
 */
export function policySummary(policy: Policy, registry: Registry = EMPTY_REGISTRY): string {
  validatePolicy(policy);
  validateRegistry(registry);
  const knownTokens = new Map((registry.tokens ?? []).map((t) => [key(t.mint, "registry mint"), t]));
  const knownPrograms = new Map((registry.programs ?? []).map((p) => [key(p.id, "registry program"), p]));
  const parts = [
    `SOL ${formatSol(policy.max_lamports_per_tx)} per tx and ${formatSol(policy.max_lamports_per_day)} per day (fees the agent pays included)`,
    `fees up to ${formatSol(policy.max_fee_lamports)} SOL per tx`,
  ];
  parts.push(
    policy.tokens.length === 0
      ? "tokens: none"
      : `tokens: ${policy.tokens
          .map((t) => {
            const mint = key(t.mint, "mint");
            const known = knownTokens.get(mint);
            return known !== undefined
              ? `${known.symbol} up to ${decimal(t.max_per_tx, known.decimals)} per tx and ${decimal(t.max_per_day, known.decimals)} per day`
              : `token ${mint} up to ${amount(t.max_per_tx)} per tx and ${amount(t.max_per_day)} per day (base units)`;
          })
          .join(", ")}`,
  );
  const programs =
    policy.allowed_programs.length === 0
      ? "none"
      : policy.allowed_programs
          .map((p) => {
            const id = key(p, "program");
            const known = knownPrograms.get(id);
            return known !== undefined ? `${known.name} (${id})` : id;
          })
          .join(", ");
  parts.push(
    `programs: ${programs}, with declared value up to ${formatUsd(policy.max_notional_cents_per_tx)} per tx and ${formatUsd(policy.max_notional_cents_per_day)} per day`,
  );
  const destinations = destinationsOf(policy);
  if (destinations === undefined) parts.push("destinations: any");
  else if (destinations.length === 0) parts.push("destinations: none");
  else if (destinations.length <= SUMMARY_DESTINATIONS) {
    parts.push(`destinations: only ${destinations.map((d) => key(d, "destination")).join(", ")}`);
  } else {
    const list = sha256(concat(...destinations.map((d) => pubkeyBytes(d, "destination"))));
    parts.push(`destinations: only the ${destinations.length} listed in the policy (list sha256 ${toHex(list)})`);
  }
  const rate = rateOf(policy);
  parts.push(rate === undefined ? "rate: unlimited" : `rate: up to ${rate} tx per minute`);
  return parts.join("; ");
}

/** The policy as the API's JSON takes it: keys canonical, optional fields omitted when absent. */
export function policyJson(policy: Policy): Record<string, unknown> {
  validatePolicy(policy);
  const out: Record<string, unknown> = {
    max_lamports_per_tx: u64(policy.max_lamports_per_tx, "max_lamports_per_tx"),
    max_lamports_per_day: u64(policy.max_lamports_per_day, "max_lamports_per_day"),
    max_fee_lamports: u64(policy.max_fee_lamports, "max_fee_lamports"),
    tokens: policy.tokens.map((t) => ({
      mint: key(t.mint, "mint"),
      max_per_tx: u64(t.max_per_tx, "max_per_tx"),
      max_per_day: u64(t.max_per_day, "max_per_day"),
    })),
    allowed_programs: policy.allowed_programs.map((p) => key(p, "program")),
    max_notional_cents_per_tx: u64(policy.max_notional_cents_per_tx, "max_notional_cents_per_tx"),
    max_notional_cents_per_day: u64(policy.max_notional_cents_per_day, "max_notional_cents_per_day"),
  };
  const destinations = destinationsOf(policy);
  if (destinations !== undefined) out.destinations = destinations.map((d) => key(d, "destination"));
  const rate = rateOf(policy);
  if (rate !== undefined) out.max_tx_per_minute = rate;
  return out;
}
