// A small DER reader for the X.509 certificates of a Nitro attestation chain: the fields the
// verification needs (raw TBS bytes, algorithms, names as raw DER, validity, the P-384 key,
// basicConstraints, keyUsage, critical extensions, the signature) and nothing else. DER only:
// definite, minimally encoded lengths; trailing bytes refused.

import { toHex } from "./bytes.js";

export class CertificateError extends Error {
  override name = "CertificateError";
}

interface Tlv {
  tag: number;
  /** The whole element (tag, length, content). */
  raw: Uint8Array;
  content: Uint8Array;
}

function readTlv(bytes: Uint8Array, pos: number): { tlv: Tlv; next: number } {
  const start = pos;
  const fail = (what: string): never => {
    throw new CertificateError(`DER: ${what} at offset ${start}`);
  };
  if (pos + 2 > bytes.length) fail("truncated");
  const tag = bytes[pos++]!;
  if ((tag & 0x1f) === 0x1f) fail("multi-byte tags are not used in certificates");
  let len = bytes[pos++]!;
  if (len === 0x80) fail("indefinite length");
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4 || pos + n > bytes.length) fail("bad length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + bytes[pos++]!;
    if (len < 0x80 || bytes[pos - n] === 0) fail("non-minimal length");
  }
  if (pos + len > bytes.length) fail("truncated content");
  return {
    tlv: { tag, raw: bytes.subarray(start, pos + len), content: bytes.subarray(pos, pos + len) },
    next: pos + len,
  };
}

/** The elements of a constructed value's content. */
function children(content: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let pos = 0;
  while (pos < content.length) {
    const { tlv, next } = readTlv(content, pos);
    out.push(tlv);
    pos = next;
  }
  return out;
}

function expect(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (tlv === undefined || tlv.tag !== tag) {
    throw new CertificateError(`${what}: expected tag 0x${tag.toString(16)}, found ${tlv ? `0x${tlv.tag.toString(16)}` : "nothing"}`);
  }
  return tlv;
}

const SEQUENCE = 0x30;
const SET = 0x31;
const OID = 0x06;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const BOOLEAN = 0x01;
const INTEGER = 0x02;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

/** Dotted text of an OID's content bytes. */
function oidText(content: Uint8Array): string {
  const arcs: number[] = [];
  let v = 0;
  for (const b of content) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(v);
      v = 0;
    }
  }
  const first = arcs.shift() ?? 0;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs].join(".");
}

export const OIDS = {
  ecdsaWithSha384: "1.2.840.10045.4.3.3",
  ecPublicKey: "1.2.840.10045.2.1",
  secp384r1: "1.3.132.0.34",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
} as const;

const NAME_ATTRS: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
};

/** A Name for messages: `CN=…, O=…`. */
function nameText(name: Tlv): string {
  try {
    const parts: string[] = [];
    for (const rdn of children(name.content)) {
      for (const atv of children(rdn.content)) {
        const [type, value] = children(atv.content);
        if (type === undefined || value === undefined) continue;
        const oid = oidText(type.content);
        parts.push(`${NAME_ATTRS[oid] ?? oid}=${new TextDecoder().decode(value.content)}`);
      }
    }
    return parts.join(", ");
  } catch {
    return `<${toHex(name.raw).slice(0, 40)}…>`;
  }
}

function parseTime(t: Tlv): number {
  const s = new TextDecoder().decode(t.content);
  const m =
    t.tag === UTC_TIME
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
      : t.tag === GENERALIZED_TIME
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
        : null;
  if (!m) throw new CertificateError(`unsupported time ${s}`);
  let year = Number(m[1]);
  if (t.tag === UTC_TIME) year += year >= 50 ? 1900 : 2000;
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return ms / 1000;
}

function algorithmOid(alg: Tlv, what: string): string {
  const [oid, ...rest] = children(expect(alg, SEQUENCE, what).content);
  if (rest.length > 1) throw new CertificateError(`${what}: unexpected parameters`);
  return oidText(expect(oid, OID, what).content);
}

/** The fields of a certificate a chain check uses. */
export interface Certificate {
  der: Uint8Array;
  /** The TBSCertificate element exactly as encoded (what the issuer signed). */
  tbs: Uint8Array;
  /** signatureAlgorithm (outer) and signature (inside the TBS). */
  signatureAlgorithm: string;
  tbsSignatureAlgorithm: string;
  /** DER ECDSA signature (the BIT STRING's content). */
  signature: Uint8Array;
  issuerRaw: Uint8Array;
  subjectRaw: Uint8Array;
  issuer: string;
  subject: string;
  /** Unix seconds. */
  notBefore: number;
  notAfter: number;
  keyAlgorithm: string;
  keyCurve: string | undefined;
  /** SEC1 point. */
  publicKey: Uint8Array;
  basicConstraints?: { ca: boolean; pathLen?: number };
  keyUsage?: { digitalSignature: boolean; keyCertSign: boolean };
  /** OIDs of the critical extensions. */
  critical: string[];
}

function bitString(t: Tlv, what: string): Uint8Array {
  expect(t, BIT_STRING, what);
  if (t.content.length < 1) throw new CertificateError(`${what}: empty BIT STRING`);
  return t.content.subarray(1);
}

/** Parses a DER certificate. */
export function parseCertificate(der: Uint8Array, position = "certificate"): Certificate {
  try {
    const { tlv: cert, next } = readTlv(der, 0);
    if (next !== der.length) throw new CertificateError(`${der.length - next} trailing bytes`);
    const [tbs, sigAlg, sigValue, ...extra] = children(expect(cert, SEQUENCE, "Certificate").content);
    if (extra.length > 0) throw new CertificateError("Certificate has extra elements");
    const fields = children(expect(tbs, SEQUENCE, "TBSCertificate").content);
    let i = 0;
    if (fields[i]?.tag === 0xa0) i++; // [0] EXPLICIT version
    expect(fields[i++], INTEGER, "serialNumber");
    const tbsSigAlg = algorithmOid(fields[i++]!, "TBS signature");
    const issuer = expect(fields[i++], SEQUENCE, "issuer");
    const [nb, na] = children(expect(fields[i++], SEQUENCE, "validity").content);
    const subject = expect(fields[i++], SEQUENCE, "subject");
    const [spkiAlg, spkiKey] = children(expect(fields[i++], SEQUENCE, "subjectPublicKeyInfo").content);
    const [keyOid, curveOid] = children(expect(spkiAlg, SEQUENCE, "SPKI algorithm").content);
    const out: Certificate = {
      der,
      tbs: tbs!.raw,
      signatureAlgorithm: algorithmOid(sigAlg!, "signatureAlgorithm"),
      tbsSignatureAlgorithm: tbsSigAlg,
      signature: bitString(sigValue!, "signatureValue"),
      issuerRaw: issuer.raw,
      subjectRaw: subject.raw,
      issuer: nameText(issuer),
      subject: nameText(subject),
      notBefore: parseTime(nb!),
      notAfter: parseTime(na!),
      keyAlgorithm: oidText(expect(keyOid, OID, "key algorithm").content),
      keyCurve: curveOid?.tag === OID ? oidText(curveOid.content) : undefined,
      publicKey: bitString(spkiKey!, "subjectPublicKey"),
      critical: [],
    };
    for (; i < fields.length; i++) {
      const f = fields[i]!;
      if (f.tag !== 0xa3) continue; // issuerUniqueID / subjectUniqueID
      const [exts] = children(f.content);
      for (const ext of children(expect(exts, SEQUENCE, "extensions").content)) {
        const parts = children(expect(ext, SEQUENCE, "extension").content);
        const oid = oidText(expect(parts[0], OID, "extnID").content);
        let critical = false;
        let value = parts[1];
        if (value?.tag === BOOLEAN) {
          critical = value.content[0] !== 0;
          value = parts[2];
        }
        const inner = expect(value, OCTET_STRING, "extnValue").content;
        if (critical) out.critical.push(oid);
        if (oid === OIDS.basicConstraints) {
          const { tlv } = readTlv(inner, 0);
          const items = children(expect(tlv, SEQUENCE, "basicConstraints").content);
          let ca = false;
          let pathLen: number | undefined;
          for (const item of items) {
            if (item.tag === BOOLEAN) ca = item.content[0] !== 0;
            else if (item.tag === INTEGER) pathLen = item.content.reduce((v, b) => v * 256 + b, 0);
          }
          out.basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
        } else if (oid === OIDS.keyUsage) {
          const { tlv } = readTlv(inner, 0);
          const bits = bitString(tlv, "keyUsage");
          const first = bits[0] ?? 0;
          out.keyUsage = { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0 };
        }
      }
    }
    return out;
  } catch (e) {
    throw new CertificateError(`${position}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
