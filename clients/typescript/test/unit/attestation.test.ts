// Attestation documents and provenance against real AWS Nitro documents
// (../shared/vectors/attestation, read at test time) and tampered copies of them.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import { p384 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";

import {
  AWS_NITRO_ROOT_G1_SHA256,
  AttestationError,
  CborError,
  awsNitroRootG1,
  awsTrust,
  coseSigStructure,
  decodeCbor,
  equalBytes,
  fromHex,
  imageFromMeasurements,
  imageMatches,
  isDebugMode,
  parseAttestationDocument,
  parseCertificate,
  pemToDer,
  toHex,
  verifyAtDocumentTime,
  verifyAttestationDocument,
  type Pcrs,
} from "@signing-enclave/client";

import { readVector, repoRoot, vectorsDir } from "../support/paths.js";

interface Entry {
  file: string;
  expected: string;
  module_id?: string;
  timestamp_ms?: number;
  chain_valid_from_unix?: number;
  chain_valid_until_unix?: number;
  pcrs_nonzero?: Record<string, string>;
  public_key?: string | null;
  user_data?: string | null;
  nonce?: string | null;
  payload_map_encoding?: string;
  signature_high_s?: boolean;
}

const manifest: Entry[] = JSON.parse(readFileSync(path.join(vectorsDir(), "attestation/manifest.json"), "utf8"));
const valid = manifest.filter((e) => e.expected === "valid");
const root = awsNitroRootG1();

function kind(e: unknown): string {
  return e instanceof AttestationError ? e.kind : `not an AttestationError: ${String(e)}`;
}

function throwsKind(f: () => unknown, expected: string, hint = ""): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected a ${expected} error ${hint}`);
  assert.equal(kind(caught), expected, `${hint}: ${String(caught)}`);
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[at]! ^= 0x01;
  return out;
}

function image(pcrs: Pcrs): Pcrs {
  return new Map([0, 1, 2].map((i) => [i, pcrs.get(i)!]));
}

describe("the pinned AWS Nitro root", () => {
  it("is the published root, byte for byte with the Rust verifier's copy and the vectors", () => {
    assert.equal(toHex(sha256(root)), AWS_NITRO_ROOT_G1_SHA256);
    assert.ok(equalBytes(root, new Uint8Array(readFileSync(path.join(repoRoot, "attestation/src/aws_nitro_root_g1.der")))));
    assert.ok(equalBytes(root, readVector("attestation/root.der")));
    assert.ok(equalBytes(root, pemToDer(readFileSync(path.join(vectorsDir(), "attestation/root.pem"), "utf8"))));
    const cert = parseCertificate(root);
    assert.match(cert.subject, /CN=aws\.nitro-enclaves/);
    assert.deepEqual(cert.basicConstraints, { ca: true });
    assert.equal(cert.keyUsage?.keyCertSign, true);
  });
});

describe("real AWS attestation documents", () => {
  for (const e of valid) {
    describe(e.file, () => {
      const bytes = readVector(`attestation/${e.file}`);

      it("parses to the manifest's fields", () => {
        const d = parseAttestationDocument(bytes);
        assert.equal(d.module_id, e.module_id);
        assert.equal(d.timestamp_ms, e.timestamp_ms);
        for (const [i, v] of Object.entries(e.pcrs_nonzero ?? {})) assert.equal(toHex(d.pcrs.get(Number(i))!), v);
        for (const f of ["public_key", "user_data", "nonce"] as const) {
          const got = d[f];
          assert.equal(got === null ? null : toHex(got), e[f] ?? null, f);
        }
        assert.equal(d.payload[0] === 0xbf, e.payload_map_encoding === "indefinite");
      });

      it("verifies inside its chain's validity window, and not outside it", () => {
        const from = e.chain_valid_from_unix!;
        const until = e.chain_valid_until_unix!;
        const v = verifyAttestationDocument(bytes, root, from);
        assert.equal(v.chain.length, 5);
        assert.match(v.chain[4]!.subject, /aws\.nitro-enclaves/);
        verifyAttestationDocument(bytes, root, until);
        verifyAttestationDocument(bytes, root, Math.floor(e.timestamp_ms! / 1000));
        throwsKind(() => verifyAttestationDocument(bytes, root, until + 1), "chain", "after the window");
        throwsKind(() => verifyAttestationDocument(bytes, root, from - 1), "chain", "before the window");
      });

      it("is provenance of its own image and user_data at its own time, and of nothing else", () => {
        const d = parseAttestationDocument(bytes);
        const trust = awsTrust([image(d.pcrs)]);
        const userData = d.user_data ?? new Uint8Array(0);
        if (isDebugMode(d.pcrs)) {
          throwsKind(() => verifyAtDocumentTime(bytes, trust, userData), "debug_mode");
          return;
        }
        if (d.user_data === null) {
          throwsKind(() => verifyAtDocumentTime(bytes, trust, userData), "user_data");
        } else {
          // Years after the leaf expired: still evidence of what the enclave said then.
          const v = verifyAtDocumentTime(bytes, trust, d.user_data);
          assert.equal(v.document.module_id, e.module_id);
          throwsKind(() => verifyAtDocumentTime(bytes, trust, flipped(d.user_data!, 0)), "user_data");
        }
        const other = new Map(image(d.pcrs));
        other.set(2, flipped(other.get(2)!, 5));
        throwsKind(() => verifyAtDocumentTime(bytes, awsTrust([other]), userData), "untrusted_image");
        throwsKind(() => verifyAtDocumentTime(bytes, awsTrust([]), userData), "untrusted_image");
        throwsKind(() => verifyAtDocumentTime(bytes, trust, userData, e.timestamp_ms! - 61_000), "from_the_future");
      });

      it("refuses tampered copies", () => {
        const d = parseAttestationDocument(bytes);
        const at = e.chain_valid_from_unix!;
        // A PCR value changed inside the signed payload.
        const pcr = indexOf(bytes, d.pcrs.get(0)!);
        assert.ok(pcr > 0);
        throwsKind(() => verifyAttestationDocument(flipped(bytes, pcr + 3), root, at), "signature", "payload");
        // The signature changed (the last 96 bytes).
        throwsKind(() => verifyAttestationDocument(flipped(bytes, bytes.length - 1), root, at), "signature", "signature");
        throwsKind(() => verifyAttestationDocument(flipped(bytes, bytes.length - 60), root, at), "signature", "signature r");
        // The bundle's root is not the pinned one.
        const bundleRoot = indexOf(bytes, root);
        assert.ok(bundleRoot > 0);
        throwsKind(() => verifyAttestationDocument(flipped(bytes, bundleRoot + 200), root, at), "chain", "root");
        // The leaf certificate's own signature broken.
        const leaf = indexOf(bytes, d.certificate);
        throwsKind(() => verifyAttestationDocument(flipped(bytes, leaf + d.certificate.length - 2), root, at), "chain", "leaf");
        // Another anchor.
        throwsKind(() => verifyAttestationDocument(bytes, d.cabundle[1]!, at), "chain", "anchor");
        // The protected header claims another algorithm.
        const prot = indexOf(bytes, Uint8Array.of(0x44, 0xa1, 0x01, 0x38, 0x22));
        throwsKind(() => verifyAttestationDocument(flipped(bytes, prot + 4), root, at), "malformed", "protected");
        // Trailing bytes, truncation, another tag.
        throwsKind(() => parseAttestationDocument(Uint8Array.of(...bytes, 0)), "malformed", "trailing");
        throwsKind(() => parseAttestationDocument(bytes.subarray(0, bytes.length - 1)), "malformed", "truncated");
        if (bytes[0] === 0xd2) throwsKind(() => parseAttestationDocument(Uint8Array.of(0xd1, ...bytes.subarray(1))), "malformed", "tag");
      });
    });
  }

  it("accepts high-S signatures and indefinite-length payload maps, as real documents have them", () => {
    const highS = valid.filter((e) => e.signature_high_s);
    assert.ok(highS.length > 0);
    for (const e of highS) {
      // A verifier insisting on low S (noble's default) would refuse these genuine documents.
      const d = parseAttestationDocument(readVector(`attestation/${e.file}`));
      const leaf = parseCertificate(d.certificate).publicKey;
      const signed = coseSigStructure(d.protectedHeader, d.payload);
      assert.equal(p384.verify(d.signature, signed, leaf), false, e.file);
      assert.equal(p384.verify(d.signature, signed, leaf, { lowS: false }), true, e.file);
    }
    assert.ok(valid.some((e) => e.payload_map_encoding === "indefinite"));
  });

  it("refuses the truncated document", () => {
    for (const e of manifest.filter((m) => m.expected !== "valid")) {
      throwsKind(() => parseAttestationDocument(readVector(`attestation/${e.file}`)), "malformed", e.file);
    }
  });
});

describe("a trusted image without PCR0 (as the Rust verifier, attestation/src/record.rs image_matches)", () => {
  const usable = valid
    .map((e) => ({ e, bytes: readVector(`attestation/${e.file}`) }))
    .map((v) => ({ ...v, d: parseAttestationDocument(v.bytes) }))
    .filter(({ d }) => !isDebugMode(d.pcrs) && d.user_data !== null);

  it("matches no document, however many of the document's other PCRs it lists", () => {
    assert.ok(usable.length > 0);
    for (const { e, bytes, d } of usable) {
      const withoutPcr0: Pcrs = new Map([...d.pcrs].filter(([i]) => i !== 0));
      assert.ok(withoutPcr0.size > 0, e.file);
      assert.equal(imageMatches(withoutPcr0, d.pcrs), false, e.file);
      assert.equal(imageMatches(image(d.pcrs), d.pcrs), true, e.file);
      const asRecord = Object.fromEntries([1, 2].map((i) => [`PCR${i}`, toHex(d.pcrs.get(i)!)]));
      for (const images of [[withoutPcr0], [asRecord], [new Map([[1, d.pcrs.get(1)!]])], [new Map()]]) {
        let caught: unknown;
        try {
          verifyAtDocumentTime(bytes, awsTrust(images), d.user_data!);
        } catch (err) {
          caught = err;
        }
        assert.ok(caught instanceof AttestationError, `${e.file}: an image without PCR0 was accepted`);
        assert.equal(caught.kind, "untrusted_image", `${e.file}: ${String(caught)}`);
        assert.match(caught.message, /none of the 1 trusted image\(s\); 1 of them lists no PCR0 \(the image hash\) and matches nothing/);
        assert.ok(caught.message.includes(toHex(d.pcrs.get(0)!)), caught.message);
      }
      // Beside an image that does list PCR0, the document is judged by that one.
      verifyAtDocumentTime(bytes, awsTrust([withoutPcr0, image(d.pcrs)]), d.user_data!);
    }
  });

  it("cannot be made from a measurements file", () => {
    const json = JSON.stringify({ Measurements: { PCR0: "00".repeat(48), PCR1: "11".repeat(48), PCR2: "22".repeat(48) } });
    assert.equal(imageFromMeasurements(json).size, 3);
    assert.throws(() => imageFromMeasurements(json, [1, 2]), /PCR0 \(the image hash\) must be among the indexes/);
    assert.throws(() => imageFromMeasurements({ Measurements: { PCR1: "11".repeat(48) } }), /PCR0 is not in the measurements/);
  });
});

describe("the CBOR reader", () => {
  it("reads definite and indefinite items and keeps byte strings as views", () => {
    const v = decodeCbor(fromHex("bf6161" + "5f42010243030405ff" + "6162" + "9f0102ff" + "ff"));
    assert.equal(v.type, "map");
    if (v.type !== "map") return;
    const [[k1, v1], [k2, v2]] = v.value as any;
    assert.equal(k1.value, "a");
    assert.equal(toHex(v1.value), "0102030405");
    assert.equal(k2.value, "b");
    assert.equal(v2.value.length, 2);
    const bytes = fromHex("43aabbcc");
    const b = decodeCbor(bytes);
    assert.ok(b.type === "bytes" && b.value.buffer === bytes.buffer);
  });

  it("refuses malformed input", () => {
    for (const bad of ["", "ff", "1c", "5f4101", "5f5f4101ffff", "9f", "a1", "62c328", "0000", "f818", "5f6161ff", "3f"]) {
      assert.throws(() => decodeCbor(fromHex(bad)), CborError, bad);
    }
  });

  it("refuses duplicate payload keys", () => {
    // A document whose payload repeats a key: parsing fails before any signature check.
    const doc = fromHex("8444a1013822a0" + "47" + "a2" + "6161" + "01" + "6161" + "02" + "5860" + "00".repeat(96));
    throwsKind(() => parseAttestationDocument(doc), "malformed", "duplicates");
  });
});
