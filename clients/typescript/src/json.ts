// JSON with exact 64-bit integers. The API's limits are u64 (`u64::MAX` means "unlimited"), and
// `JSON.parse` would silently round 18446744073709551615 to 18446744073709552000: a different
// policy, a different hash, a signature that does not verify. So integers that do not fit a
// double exactly are read as `bigint`, and `bigint` values are written as plain JSON numbers.

/** A parsed JSON value; integers beyond ±(2^53 − 1) are `bigint`. */
export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** `JSON.stringify` that writes `bigint` as a number and drops `undefined` object fields. */
export function stringifyJson(value: unknown): string {
  const out = write(value);
  if (out === undefined) throw new TypeError("nothing to serialize");
  return out;
}

function write(value: unknown): string | undefined {
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
  }
  if (value === null) return "null";
  if (Array.isArray(value)) return `[${value.map((v) => write(v) ?? "null").join(",")}]`;
  if (value instanceof Uint8Array) {
    throw new TypeError("encode bytes (base64, base58) before serializing them");
  }
  const parts: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const w = write(v);
    if (w !== undefined) parts.push(`${JSON.stringify(k)}:${w}`);
  }
  return `{${parts.join(",")}}`;
}

/** `JSON.parse` that keeps integers outside the safe range exact, as `bigint`. */
export function parseJson(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value();
  p.ws();
  if (p.i !== text.length) p.fail("trailing characters");
  return v;
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  fail(what: string): never {
    throw new SyntaxError(`invalid JSON at offset ${this.i}: ${what}`);
  }

  ws(): void {
    while (this.i < this.s.length && " \t\n\r".includes(this.s[this.i]!)) this.i++;
  }

  value(): JsonValue {
    const c = this.s[this.i];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.fail("unexpected character");
  }

  object(): { [key: string]: JsonValue } {
    const out: { [key: string]: JsonValue } = {};
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a key");
      const key = this.string();
      this.ws();
      if (this.s[this.i++] !== ":") this.fail("expected ':'");
      this.ws();
      Object.defineProperty(out, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }

  array(): JsonValue[] {
    const out: JsonValue[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value());
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }

  string(): string {
    const start = this.i++;
    while (this.i < this.s.length) {
      const c = this.s[this.i++];
      if (c === "\\") this.i++;
      else if (c === '"') return JSON.parse(this.s.slice(start, this.i)) as string;
    }
    return this.fail("unterminated string");
  }

  number(): number | bigint {
    const m = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) return this.fail("malformed number");
    this.i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    return Number(m[0]);
  }
}
