// Byte helpers shared by every module: encodings the API uses (standard padded base64, base58,
// lower-case hex, UUID text) and little-endian integers for record headers.

import { base58, base64 } from "@scure/base";

/** Bytes as the API and the records use them. */
export type Bytes = Uint8Array;

/** The largest u64. `Policy` fields use it for "unlimited". */
export const U64_MAX = (1n << 64n) - 1n;

const HEX = "0123456789abcdef";

/** Lower-case hex. */
export function toHex(bytes: Bytes): string {
  let out = "";
  for (const b of bytes) out += HEX[b >> 4]! + HEX[b & 15]!;
  return out;
}

/** Hex (either case) to bytes; throws on odd length or a non-hex digit. */
export function fromHex(hex: string): Bytes {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not hex: ${hex.slice(0, 40)}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Standard padded base64 (RFC 4648), as the API sends bytes. */
export function toBase64(bytes: Bytes): string {
  return base64.encode(bytes);
}

/** Standard padded base64 to bytes; throws on anything else (URL alphabet, missing padding). */
export function fromBase64(text: string): Bytes {
  return base64.decode(text);
}

/** Base58 (Bitcoin alphabet), as Solana writes keys and signatures. */
export function toBase58(bytes: Bytes): string {
  return base58.encode(bytes);
}

/** Base58 to bytes of an exact length (32 for keys, 64 for signatures). */
export function fromBase58(text: string, length: number, what = "base58 value"): Bytes {
  let out: Bytes;
  try {
    out = base58.decode(text);
  } catch {
    throw new TypeError(`${what} is not base58: ${text.slice(0, 100)}`);
  }
  if (out.length !== length) {
    throw new TypeError(`${what} is ${out.length} bytes; expected ${length}`);
  }
  return out;
}

/** A Solana public key (32 bytes) from base58 text or bytes. */
export function pubkeyBytes(key: string | Bytes, what = "public key"): Bytes {
  if (typeof key === "string") return fromBase58(key, 32, what);
  if (key.length !== 32) throw new TypeError(`${what} is ${key.length} bytes; expected 32`);
  return key;
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Bytes {
  return new TextEncoder().encode(text);
}

/** Concatenation. */
export function concat(...parts: Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Byte equality (not constant time: use it on public values only). */
export function equalBytes(a: Bytes, b: Bytes): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A u64 value: bigint, or a number that is a safe non-negative integer. */
export type U64 = bigint | number;

/** Checks and converts a u64 (throws a TypeError naming `what` when out of range). */
export function u64(value: U64, what: string): bigint {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new TypeError(
      `${what} must be an integer (numbers above 2^53 - 1 lose precision: pass a bigint)`,
    );
  }
  const v = BigInt(value);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${what} ${v} is outside 0..2^64-1`);
  return v;
}

/** u16 little-endian. */
export function le16(value: number): Bytes {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new RangeError(`${value} is not a u16`);
  }
  return Uint8Array.of(value & 0xff, value >> 8);
}

/** u32 little-endian. */
export function le32(value: number): Bytes {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${value} is not a u32`);
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

/** u64 little-endian. */
export function le64(value: U64, what = "u64"): Bytes {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, u64(value, what), true);
  return out;
}

/** Reads a little-endian u64 at `offset`. */
export function readLe64(bytes: Bytes, offset: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(offset, true);
}

/** 16-byte ids as UUID text (`8-4-4-4-12`, lower-case). */
export function uuidText(id: Bytes): string {
  if (id.length !== 16) throw new TypeError(`an id is 16 bytes, not ${id.length}`);
  const h = toHex(id);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** UUID text (hyphenated, or 32 hex digits) or 16 bytes to 16 bytes. */
export function idBytes(id: string | Bytes, what = "id"): Bytes {
  if (typeof id !== "string") {
    if (id.length !== 16) throw new TypeError(`${what} is ${id.length} bytes; expected 16`);
    return id;
  }
  const m = /^([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})$/.exec(id);
  const hyphens = (id.match(/-/g) ?? []).length;
  if (!m || (hyphens !== 0 && hyphens !== 4)) {
    throw new TypeError(`${what} is not UUID text: ${id.slice(0, 40)}`);
  }
  return fromHex(m.slice(1).join(""));
}

/** Where randomness comes from; tests inject fixed bytes. Defaults to `crypto.getRandomValues`. */
export type RandomSource = (length: number) => Bytes;

/** Cryptographically secure random bytes (WebCrypto). */
export const secureRandom: RandomSource = (length) => {
  const out = new Uint8Array(length);
  crypto.getRandomValues(out);
  return out;
};

/** A fresh random UUID (v4 layout) as text: request ids, bot ids. */
export function randomUuid(random: RandomSource = secureRandom): string {
  const b = random(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return uuidText(b);
}
