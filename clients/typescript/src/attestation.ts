// Nitro attestation documents and provenance (SPEC §10, docs/records.md "Provenance documents"):
// parse the COSE_Sign1, verify the certificate chain to a pinned root and the ES384 signature over
// the ORIGINAL payload bytes, then the policy a provenance document must meet: chain valid at the
// document's own timestamp, not debug mode, PCRs equal to one of the trusted images, `user_data`
// equal to SHA-256 of the binding recomputed from the record. Mirrors `attestation/src/document.rs`,
// `chain.rs`, `verify.rs` and `record.rs`.
//
// ECDSA P-384 runs in @noble/curves with high-S signatures accepted (real AWS documents carry
// them), so the same code verifies in browsers and Node without WebCrypto's async API.

import { p384 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { awsNitroRootG1 } from "./aws-root.js";
import { type Bytes, concat, equalBytes, fromBase64, fromHex, toHex, utf8 } from "./bytes.js";
import { type CborValue, CborError, cborEqual, decodeCbor } from "./cbor.js";
import { RecordError, parseRecordHeader, provenanceUserData } from "./records.js";
import { type Certificate, CertificateError, OIDS, parseCertificate } from "./x509.js";

export const MAX_DOCUMENT_LEN = 32 * 1024;
export const MAX_OPTIONAL_FIELD_LEN = 1024;
/** `{1: -35}`: alg = ES384, the only protected header a Nitro document carries. */
export const ES384_PROTECTED_HEADER = Uint8Array.of(0xa1, 0x01, 0x38, 0x22);
/** How far a document's timestamp may be ahead of the verifier's clock. */
export const MAX_CLOCK_SKEW_MS = 60_000;

/** Why a document was refused; `kind` says which check failed. */
export class AttestationError extends Error {
  override name = "AttestationError";
  constructor(
    readonly kind:
      | "malformed"
      | "chain"
      | "signature"
      | "debug_mode"
      | "untrusted_image"
      | "user_data"
      | "from_the_future",
    message: string,
  ) {
    super(message);
  }
}

/** PCR index → value. */
export type Pcrs = Map<number, Bytes>;

/** A parsed, not yet verified, attestation document. */
export interface AttestationDocument {
  protectedHeader: Bytes;
  /** The payload exactly as received: the signature covers these bytes. */
  payload: Bytes;
  /** `r ‖ s`, 96 bytes. */
  signature: Bytes;
  module_id: string;
  /** Milliseconds since the Unix epoch, written by the NSM. */
  timestamp_ms: number;
  pcrs: Pcrs;
  certificate: Bytes;
  /** `[root, intermediate…]`. */
  cabundle: Bytes[];
  /** `null` when absent or CBOR null; an empty array is legal and distinct. */
  public_key: Bytes | null;
  user_data: Bytes | null;
  nonce: Bytes | null;
}

const malformed = (message: string) => new AttestationError("malformed", message);

function bytesOf(v: CborValue | undefined, field: string): Bytes {
  if (v?.type !== "bytes") throw malformed(`${field} is not a byte string`);
  return v.value;
}

function rejectDuplicates(entries: [CborValue, CborValue][], map: string): void {
  entries.forEach(([k], i) => {
    if (entries.slice(i + 1).some(([o]) => cborEqual(k, o))) {
      throw malformed(`duplicate key in ${map}: ${k.type === "text" || k.type === "uint" ? String(k.value) : k.type}`);
    }
  });
}

function optionalBytes(v: CborValue, field: string): Bytes | null {
  if (v.type === "simple" && v.value === null) return null;
  if (v.type !== "bytes") throw malformed(`${field} is not a byte string or null`);
  if (v.value.length > MAX_OPTIONAL_FIELD_LEN) throw malformed(`${field} is ${v.value.length} bytes; at most 1024`);
  return v.value;
}

/** Parses a document (COSE_Sign1, tag 18 or untagged) without trusting anything in it. */
export function parseAttestationDocument(bytes: Bytes): AttestationDocument {
  if (bytes.length > MAX_DOCUMENT_LEN) throw malformed(`document is ${bytes.length} bytes; at most ${MAX_DOCUMENT_LEN}`);
  let top: CborValue;
  try {
    top = decodeCbor(bytes, "COSE_Sign1");
  } catch (e) {
    throw malformed(e instanceof CborError ? e.message : String(e));
  }
  if (top.type === "tag") {
    if (top.tag !== 18n) throw malformed(`unexpected CBOR tag ${top.tag}`);
    top = top.value;
  }
  if (top.type !== "array") throw malformed("COSE_Sign1 is not an array");
  if (top.value.length !== 4) throw malformed(`COSE_Sign1 has ${top.value.length} elements, expected 4`);
  const [protectedHeader, unprotected, payload, signature] = top.value as [CborValue, CborValue, CborValue, CborValue];
  const prot = bytesOf(protectedHeader, "protected header");
  if (!equalBytes(prot, ES384_PROTECTED_HEADER)) {
    throw malformed(`protected header is ${toHex(prot)}; expected a1013822 ({1: -35}, ES384)`);
  }
  if (unprotected.type !== "map") throw malformed("unprotected header is not a map");
  rejectDuplicates(unprotected.value, "unprotected header");
  if (payload.type === "simple" && payload.value === null) throw malformed("detached payload");
  const payloadBytes = bytesOf(payload, "payload");
  const sig = bytesOf(signature, "signature");
  if (sig.length !== 96) throw malformed(`signature is ${sig.length} bytes; expected 96`);

  let body: CborValue;
  try {
    body = decodeCbor(payloadBytes, "payload");
  } catch (e) {
    throw malformed(e instanceof CborError ? e.message : String(e));
  }
  if (body.type !== "map") throw malformed("payload is not a map");
  rejectDuplicates(body.value, "payload");
  const f: Partial<Record<string, CborValue>> = {};
  for (const [k, v] of body.value) {
    if (k.type !== "text") throw malformed("payload key is not a text string");
    f[k.value] = v;
  }
  const text = (name: string): string => {
    const v = f[name];
    if (v === undefined) throw malformed(`missing ${name}`);
    if (v.type !== "text") throw malformed(`${name} is not a text string`);
    return v.value;
  };
  const module_id = text("module_id");
  if (module_id.length === 0) throw malformed("module_id is empty");
  const digest = text("digest");
  if (digest !== "SHA384") throw malformed(`digest is ${digest}; expected SHA384`);
  const ts = f["timestamp"];
  if (ts === undefined) throw malformed("missing timestamp");
  if (ts.type !== "uint" || ts.value > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed("timestamp is not an unsigned integer");
  const pcrsValue = f["pcrs"];
  if (pcrsValue === undefined) throw malformed("missing pcrs");
  if (pcrsValue.type !== "map") throw malformed("pcrs is not a map");
  if (pcrsValue.value.length === 0 || pcrsValue.value.length > 32) throw malformed(`pcrs has ${pcrsValue.value.length} entries; expected 1..=32`);
  const pcrs: Pcrs = new Map();
  for (const [k, v] of pcrsValue.value) {
    if (k.type !== "uint") throw malformed("pcr index is not an unsigned integer");
    if (k.value > 31n) throw malformed(`pcr index ${k.value} is above 31`);
    const value = bytesOf(v, "pcr value");
    if (![32, 48, 64].includes(value.length)) throw malformed(`pcr value is ${value.length} bytes; expected 32, 48 or 64`);
    if (pcrs.has(Number(k.value))) throw malformed(`duplicate pcr ${k.value}`);
    pcrs.set(Number(k.value), value);
  }
  if (f["certificate"] === undefined) throw malformed("missing certificate");
  const certificate = bytesOf(f["certificate"], "certificate");
  if (certificate.length === 0) throw malformed("certificate is empty");
  const bundle = f["cabundle"];
  if (bundle === undefined) throw malformed("missing cabundle");
  if (bundle.type !== "array") throw malformed("cabundle is not an array");
  if (bundle.value.length === 0) throw malformed("cabundle is empty");
  const cabundle = bundle.value.map((c) => {
    const der = bytesOf(c, "cabundle entry");
    if (der.length === 0) throw malformed("cabundle entry is empty");
    return der;
  });
  const opt = (name: string) => (f[name] === undefined ? null : optionalBytes(f[name]!, name));
  return {
    protectedHeader: prot,
    payload: payloadBytes,
    signature: sig,
    module_id,
    timestamp_ms: Number(ts.value),
    pcrs,
    certificate,
    cabundle,
    public_key: opt("public_key"),
    user_data: opt("user_data"),
    nonce: opt("nonce"),
  };
}

function cborHead(major: number, len: number): Bytes {
  const m = major << 5;
  if (len < 24) return Uint8Array.of(m | len);
  if (len < 0x100) return Uint8Array.of(m | 24, len);
  if (len < 0x10000) return Uint8Array.of(m | 25, len >> 8, len & 0xff);
  return Uint8Array.of(m | 26, len >>> 24, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff);
}

/** `["Signature1", protected, h'', payload]` (RFC 9052 §4.4): what the ES384 signature covers. */
export function coseSigStructure(protectedHeader: Bytes, payload: Bytes): Bytes {
  const context = utf8("Signature1");
  return concat(
    Uint8Array.of(0x84),
    cborHead(3, context.length),
    context,
    cborHead(2, protectedHeader.length),
    protectedHeader,
    cborHead(2, 0),
    cborHead(2, payload.length),
    payload,
  );
}

/** A certificate of a verified chain, for display. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  /** Unix seconds. */
  not_before: number;
  not_after: number;
}

const chainError = (message: string) => new AttestationError("chain", message);

function p384Key(cert: Certificate): Bytes {
  if (cert.keyAlgorithm !== OIDS.ecPublicKey || cert.keyCurve !== OIDS.secp384r1) {
    throw chainError(`${cert.subject}: expected an EC P-384 public key, found ${cert.keyAlgorithm} (${cert.keyCurve ?? "no curve"})`);
  }
  try {
    p384.Point.fromBytes(cert.publicKey).assertValidity();
  } catch {
    throw chainError(`${cert.subject}: not a valid P-384 point`);
  }
  return cert.publicKey;
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");

/**
 * Verifies `certificate → cabundle[n-1] → … → cabundle[1] → root` at `atSeconds` (unix), where
 * `cabundle[0]` must be byte-identical to the pinned `root`. Returns the leaf's public key and the
 * chain, leaf first.
 */
export function verifyCertificateChain(
  certificate: Bytes,
  cabundle: Bytes[],
  root: Bytes,
  atSeconds: number,
): { leafKey: Bytes; chain: CertificateSummary[] } {
  const bundleRoot = cabundle[0];
  if (bundleRoot === undefined) throw chainError("cabundle is empty");
  if (!equalBytes(bundleRoot, root)) {
    throw chainError(`cabundle[0] (SHA-256 ${toHex(sha256(bundleRoot))}) is not the pinned root (SHA-256 ${toHex(sha256(root))})`);
  }
  const ders: [string, Bytes][] = [["certificate", certificate]];
  for (let i = cabundle.length - 1; i >= 1; i--) ders.push([`cabundle[${i}]`, cabundle[i]!]);
  ders.push(["trust anchor", root]);
  let certs: Certificate[];
  try {
    certs = ders.map(([position, der]) => parseCertificate(der, position));
  } catch (e) {
    throw chainError(e instanceof CertificateError ? e.message : String(e));
  }
  const understood: string[] = [OIDS.basicConstraints, OIDS.keyUsage, OIDS.subjectKeyIdentifier, OIDS.authorityKeyIdentifier];
  certs.forEach((cert, position) => {
    const s = cert.subject;
    if (cert.signatureAlgorithm !== OIDS.ecdsaWithSha384 || cert.tbsSignatureAlgorithm !== cert.signatureAlgorithm) {
      throw chainError(`${s}: signature algorithm ${cert.signatureAlgorithm}; expected ecdsa-with-SHA384`);
    }
    p384Key(cert);
    if (atSeconds < cert.notBefore) throw chainError(`${s}: not valid before ${iso(cert.notBefore)} (checked at ${iso(atSeconds)})`);
    if (atSeconds > cert.notAfter) throw chainError(`${s}: expired at ${iso(cert.notAfter)} (checked at ${iso(atSeconds)})`);
    const unknown = cert.critical.find((oid) => !understood.includes(oid));
    if (unknown !== undefined) throw chainError(`${s}: unrecognised critical extension ${unknown}`);
    if (position === 0) {
      if (cert.basicConstraints?.ca) throw chainError(`${s}: leaf certificate must not be a CA`);
      if (!cert.keyUsage?.digitalSignature) throw chainError(`${s}: leaf certificate lacks the digitalSignature key usage`);
    } else {
      const bc = cert.basicConstraints;
      if (bc === undefined) throw chainError(`${s}: issuer lacks basicConstraints`);
      if (!bc.ca) throw chainError(`${s}: issuer is not a CA (basicConstraints CA:FALSE)`);
      const casBelow = position - 1;
      if (bc.pathLen !== undefined && casBelow > bc.pathLen) {
        throw chainError(`${s}: pathLenConstraint ${bc.pathLen} exceeded: ${casBelow} CA certificate(s) below it`);
      }
      if (!cert.keyUsage?.keyCertSign) throw chainError(`${s}: issuer lacks the keyCertSign key usage`);
    }
    const issuer = certs[position + 1] ?? cert;
    if (!equalBytes(cert.issuerRaw, issuer.subjectRaw)) {
      throw chainError(`${s}: issued by ${cert.issuer}, but the next certificate is ${issuer.subject}`);
    }
    let ok = false;
    try {
      ok = p384.verify(cert.signature, cert.tbs, p384Key(issuer), { lowS: false, format: "der" });
    } catch {
      ok = false;
    }
    if (!ok) throw chainError(`${s}: signature by ${issuer.subject} does not verify`);
  });
  return {
    leafKey: p384Key(certs[0]!),
    chain: certs.map((c) => ({ subject: c.subject, issuer: c.issuer, not_before: c.notBefore, not_after: c.notAfter })),
  };
}

/** A document whose chain and signature verified. */
export interface VerifiedDocument {
  document: AttestationDocument;
  /** Leaf first, root last. */
  chain: CertificateSummary[];
}

/**
 * Parses `bytes`, verifies the chain to `root` at `at` (unix seconds) and the ES384 signature over
 * the original payload bytes. Authenticity only: see `verifyAtDocumentTime` for provenance.
 */
export function verifyAttestationDocument(bytes: Bytes, root: Bytes, atSeconds: number): VerifiedDocument {
  const document = parseAttestationDocument(bytes);
  return verifyParsed(document, root, atSeconds);
}

function verifyParsed(document: AttestationDocument, root: Bytes, atSeconds: number): VerifiedDocument {
  const { leafKey, chain } = verifyCertificateChain(document.certificate, document.cabundle, root, atSeconds);
  let ok = false;
  try {
    ok = p384.verify(document.signature, coseSigStructure(document.protectedHeader, document.payload), leafKey, {
      lowS: false,
      format: "compact",
    });
  } catch {
    ok = false;
  }
  if (!ok) throw new AttestationError("signature", "the document's ES384 signature does not verify");
  return { document, chain };
}

/** True when PCR0, PCR1 and PCR2 are all zero (or absent): a debug-mode enclave. */
export function isDebugMode(pcrs: Pcrs): boolean {
  return [0, 1, 2].every((i) => (pcrs.get(i) ?? new Uint8Array(0)).every((b) => b === 0));
}

/**
 * A trusted enclave image: PCR index → value (only the listed indexes are compared). It must list
 * PCR0, the image hash: an image without it matches no document (as in the Rust verifier).
 */
export type TrustedImage = Pcrs | Record<number | string, string>;

function imagePcrs(image: TrustedImage): Pcrs {
  if (image instanceof Map) return image;
  const out: Pcrs = new Map();
  for (const [k, v] of Object.entries(image)) {
    const index = Number(String(k).replace(/^PCR/, ""));
    if (!Number.isInteger(index) || index < 0 || index > 31) throw new TypeError(`PCR index ${k}`);
    out.set(index, fromHex(v));
  }
  return out;
}

/**
 * Whether a document's `pcrs` are those of `image`: every PCR the image lists is equal, and the
 * image lists PCR0 (the image hash). An image without PCR0 matches nothing: otherwise one that
 * lists, say, only PCR8 would match every image signed with that certificate. Mirrors
 * `image_matches` in `attestation/src/record.rs`.
 */
export function imageMatches(image: Pcrs, pcrs: Pcrs): boolean {
  return (
    image.has(0) &&
    [...image].every(([i, v]) => {
      const actual = pcrs.get(i);
      return actual !== undefined && equalBytes(actual, v);
    })
  );
}

/**
 * The trusted image of a `nitro-cli` measurement JSON (`{"Measurements": {"PCR0": "…", …}}`, as
 * `nitro-cli build-enclave` and the simulation's `measurements.json` write it), keeping `indexes`
 * (PCR0, PCR1, PCR2 by default: the image, the kernel and the application).
 */
export function imageFromMeasurements(json: string | { Measurements: Record<string, string> }, indexes = [0, 1, 2]): Pcrs {
  if (!indexes.includes(0)) {
    throw new TypeError(`PCR0 (the image hash) must be among the indexes kept (${indexes.join(", ")}): an image without it matches no document`);
  }
  const file = typeof json === "string" ? (JSON.parse(json) as { Measurements?: Record<string, string> }) : json;
  const measurements = file.Measurements;
  if (measurements === undefined) throw new TypeError('no "Measurements" object');
  const out: Pcrs = new Map();
  for (const i of indexes) {
    const v = measurements[`PCR${i}`];
    if (v === undefined) throw new TypeError(`PCR${i} is not in the measurements`);
    out.set(i, fromHex(v));
  }
  return out;
}

/** PEM (`-----BEGIN CERTIFICATE-----`) to DER. */
export function pemToDer(pem: string): Bytes {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new TypeError("no CERTIFICATE block in the PEM text");
  return fromBase64(m[1]!.replace(/\s+/g, ""));
}

/** What provenance documents are checked against. */
export interface ProvenanceTrust {
  /** The pinned root, DER: `awsNitroRootG1()` in production, the simulation's `sim-root.pem` in development. */
  root: Bytes;
  /** The enclave images that may have produced the document. */
  images: TrustedImage[];
}

/** The production trust root with the given images. */
export function awsTrust(images: TrustedImage[]): ProvenanceTrust {
  return { root: awsNitroRootG1(), images };
}

/**
 * Verifies `bytes` as evidence about a record: the chain at the document's OWN timestamp (a
 * provenance document outlives its three-hour leaf certificate; the NSM writes the timestamp, not
 * the requester), the signature, not debug mode, PCRs equal to one of `trust.images`, `user_data`
 * equal to `userData`. A timestamp more than a minute ahead of `now` is refused.
 */
export function verifyAtDocumentTime(
  bytes: Bytes,
  trust: ProvenanceTrust,
  userData: Bytes,
  now: Date | number = Date.now(),
): VerifiedDocument {
  const document = parseAttestationDocument(bytes);
  const nowMs = typeof now === "number" ? now : now.getTime();
  if (document.timestamp_ms > nowMs + MAX_CLOCK_SKEW_MS) {
    throw new AttestationError(
      "from_the_future",
      `the document's timestamp is ${document.timestamp_ms - nowMs} ms ahead of this clock`,
    );
  }
  const verified = verifyParsed(document, trust.root, Math.floor(document.timestamp_ms / 1000));
  if (isDebugMode(document.pcrs)) throw new AttestationError("debug_mode", "the document comes from a debug-mode enclave (PCR0-2 are zero)");
  const images = trust.images.map(imagePcrs);
  if (!images.some((image) => imageMatches(image, document.pcrs))) {
    const pcr0 = document.pcrs.get(0);
    const withoutPcr0 = images.filter((image) => !image.has(0)).length;
    throw new AttestationError(
      "untrusted_image",
      `the document's image (PCR0 ${pcr0 ? toHex(pcr0) : "absent"}) is none of the ${images.length} trusted image(s)` +
        (withoutPcr0 > 0
          ? `; ${withoutPcr0} of them list${withoutPcr0 === 1 ? "s" : ""} no PCR0 (the image hash) and match${withoutPcr0 === 1 ? "es" : ""} nothing`
          : ""),
    );
  }
  if (document.user_data === null || !equalBytes(document.user_data, userData)) {
    throw new AttestationError(
      "user_data",
      `user_data is ${document.user_data ? toHex(document.user_data) : "none"}; expected ${toHex(userData)}`,
    );
  }
  return verified;
}

/** A provenance document to check. */
export interface ProvenanceInput {
  /** The attestation document (bytes or base64, as the API returns `provenance`). */
  document: Bytes | string;
  /** The record it is about, exactly as returned (bytes or base64). */
  record: Bytes | string;
  /** For an agent key: the id of the vault it was made from (UUID text, bytes, or the vault record). */
  vault?: string | Bytes | { vault_record: Bytes | string };
  trust: ProvenanceTrust;
  /** Default: now. */
  now?: Date | number;
}

const bytesArg = (v: Bytes | string) => (typeof v === "string" ? fromBase64(v) : v);

/**
 * Verifies a vault's or an agent key's provenance document: it was produced by a trusted enclave
 * image about exactly this record (and, for an agent, the vault it was made from).
 */
export function verifyProvenance(input: ProvenanceInput): VerifiedDocument {
  const record = bytesArg(input.record);
  let vaultId: string | Bytes | undefined;
  if (input.vault !== undefined) {
    if (typeof input.vault === "object" && "vault_record" in input.vault) {
      const vault = parseRecordHeader(bytesArg(input.vault.vault_record));
      if (vault.type !== 4) throw new RecordError(`vault_record is a record of type ${vault.type}, not a vault`);
      vaultId = vault.record_id;
    } else {
      vaultId = input.vault;
    }
  }
  return verifyAtDocumentTime(
    bytesArg(input.document),
    input.trust,
    provenanceUserData(record, vaultId),
    input.now ?? Date.now(),
  );
}
