// A small strict CBOR reader (RFC 8949) for attestation documents. It decodes into a tree whose
// byte strings are views of the input, so a COSE payload keeps its ORIGINAL bytes (the signature
// covers them; real documents use indefinite-length maps, so re-encoding would break it).
// Definite and indefinite lengths are read; reserved encodings, a `break` out of place, chunks of
// the wrong type, truncation, excessive nesting and trailing bytes are refused. Nothing is ever
// encoded here.

export type CborValue =
  | { type: "uint"; value: bigint }
  | { type: "negint"; value: bigint }
  | { type: "bytes"; value: Uint8Array }
  | { type: "text"; value: string }
  | { type: "array"; value: CborValue[] }
  | { type: "map"; value: [CborValue, CborValue][] }
  | { type: "tag"; tag: bigint; value: CborValue }
  | { type: "simple"; value: false | true | null | undefined | number }
  | { type: "float"; value: number };

export class CborError extends Error {
  override name = "CborError";
}

const MAX_DEPTH = 32;
const BREAK = Symbol("break");

class Reader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  fail(what: string): never {
    throw new CborError(`${what} at offset ${this.pos}`);
  }

  take(n: number): Uint8Array {
    if (n > this.bytes.length - this.pos) this.fail(`truncated: ${n} bytes declared`);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  byte(): number {
    if (this.pos >= this.bytes.length) this.fail("truncated");
    return this.bytes[this.pos++]!;
  }

  /** The argument of a head with additional info `info`; `null` for indefinite length. */
  argument(info: number): bigint | null {
    if (info < 24) return BigInt(info);
    const width = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
    if (width !== undefined) {
      let v = 0n;
      for (const b of this.take(width)) v = (v << 8n) | BigInt(b);
      return v;
    }
    if (info === 31) return null;
    return this.fail(`reserved additional information ${info}`);
  }

  length(arg: bigint): number {
    if (arg > BigInt(this.bytes.length - this.pos)) this.fail(`length ${arg} exceeds the input`);
    return Number(arg);
  }

  item(depth: number): CborValue | typeof BREAK {
    if (depth > MAX_DEPTH) this.fail("nesting too deep");
    const head = this.byte();
    const major = head >> 5;
    const info = head & 31;
    if (head === 0xff) return BREAK;
    const arg = this.argument(info);
    switch (major) {
      case 0:
        if (arg === null) return this.fail("indefinite integer");
        return { type: "uint", value: arg };
      case 1:
        if (arg === null) return this.fail("indefinite integer");
        return { type: "negint", value: -1n - arg };
      case 2:
      case 3: {
        let raw: Uint8Array;
        if (arg === null) {
          const chunks: Uint8Array[] = [];
          for (;;) {
            const next = this.bytes[this.pos];
            if (next !== undefined && next !== 0xff && (next & 31) === 31) this.fail("nested indefinite string chunk");
            const chunk = this.item(depth + 1);
            if (chunk === BREAK) break;
            if (chunk.type !== (major === 2 ? "bytes" : "text")) this.fail("indefinite string chunk of another type");
            chunks.push(chunk.type === "bytes" ? chunk.value : new TextEncoder().encode(chunk.value));
          }
          raw = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
          let o = 0;
          for (const c of chunks) {
            raw.set(c, o);
            o += c.length;
          }
        } else {
          raw = this.take(this.length(arg));
        }
        if (major === 2) return { type: "bytes", value: raw };
        try {
          return { type: "text", value: new TextDecoder("utf-8", { fatal: true }).decode(raw) };
        } catch {
          return this.fail("text string is not UTF-8");
        }
      }
      case 4: {
        const out: CborValue[] = [];
        if (arg === null) {
          for (;;) {
            const v = this.item(depth + 1);
            if (v === BREAK) return { type: "array", value: out };
            out.push(v);
          }
        }
        const n = this.length(arg);
        for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
        return { type: "array", value: out };
      }
      case 5: {
        const out: [CborValue, CborValue][] = [];
        if (arg === null) {
          for (;;) {
            const k = this.item(depth + 1);
            if (k === BREAK) return { type: "map", value: out };
            out.push([k, this.value(depth + 1)]);
          }
        }
        const n = this.length(arg * 2n) / 2;
        for (let i = 0; i < n; i++) out.push([this.value(depth + 1), this.value(depth + 1)]);
        return { type: "map", value: out };
      }
      case 6:
        if (arg === null) return this.fail("indefinite tag");
        return { type: "tag", tag: arg, value: this.value(depth + 1) };
      default: {
        // major 7: simple values and floats
        if (arg === null) return this.fail("break outside an indefinite item");
        if (info === 20) return { type: "simple", value: false };
        if (info === 21) return { type: "simple", value: true };
        if (info === 22) return { type: "simple", value: null };
        if (info === 23) return { type: "simple", value: undefined };
        if (info < 24) return { type: "simple", value: info };
        if (info === 24) {
          if (arg < 32n) this.fail("simple value in two bytes below 32");
          return { type: "simple", value: Number(arg) };
        }
        const raw = this.bytes.subarray(this.pos - (info === 25 ? 2 : info === 26 ? 4 : 8), this.pos);
        const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
        if (info === 25) return { type: "float", value: half(view.getUint16(0)) };
        if (info === 26) return { type: "float", value: view.getFloat32(0) };
        return { type: "float", value: view.getFloat64(0) };
      }
    }
  }

  value(depth: number): CborValue {
    const v = this.item(depth);
    if (v === BREAK) this.fail("unexpected break");
    return v;
  }
}

function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/** Decodes exactly one CBOR item; trailing bytes are an error. */
export function decodeCbor(bytes: Uint8Array, what = "CBOR"): CborValue {
  const r = new Reader(bytes);
  let v: CborValue;
  try {
    v = r.value(0);
  } catch (e) {
    if (e instanceof CborError) throw new CborError(`${what}: ${e.message}`);
    throw e;
  }
  if (r.pos !== bytes.length) throw new CborError(`${what}: ${bytes.length - r.pos} trailing bytes`);
  return v;
}

/** Equality of two decoded values (for duplicate-key detection). */
export function cborEqual(a: CborValue, b: CborValue): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case "bytes": {
      const bv = (b as typeof a).value;
      return a.value.length === bv.length && a.value.every((x, i) => x === bv[i]);
    }
    case "array":
      return a.value.length === (b as typeof a).value.length && a.value.every((x, i) => cborEqual(x, (b as typeof a).value[i]!));
    case "map":
      return (
        a.value.length === (b as typeof a).value.length &&
        a.value.every(([k, v], i) => {
          const [bk, bv] = (b as typeof a).value[i]!;
          return cborEqual(k, bk) && cborEqual(v, bv);
        })
      );
    case "tag":
      return a.tag === (b as typeof a).tag && cborEqual(a.value, (b as typeof a).value);
    case "float":
      return Object.is(a.value, (b as typeof a).value);
    default:
      return a.value === (b as typeof a).value;
  }
}
