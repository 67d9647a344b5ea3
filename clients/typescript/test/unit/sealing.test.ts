// Sealing, byte for byte against the worked examples of docs/records.md (which the Rust tests
// check against the enclave's code): fixed record key and IV through the injectable random
// source, a throwaway RSA-3072 key standing in for the KMS key so the test can unwrap what it sealed.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";

import {
  type RandomSource,
  RecordError,

  fromHex,
  importKmsPublicKey,
  intentBytes,
  intentHash,
  parseRecordHeader,
  sealImportedVault,
  sealScheduledRecord,
  toHex,
} from "@signing-enclave/client";

import { repoRoot } from "../support/paths.js";

/** The hex blocks of docs/records.md, by their `<!-- name -->` marker. */
function docBlocks(): Map<string, Uint8Array> {
  const text = readFileSync(path.join(repoRoot, "docs/records.md"), "utf8");
  const out = new Map<string, Uint8Array>();
  for (const m of text.matchAll(/<!-- ([a-z-]+) -->\n```text\n([\s\S]*?)```/g)) {
    out.set(m[1]!, fromHex(m[2]!.replace(/\s+/g, "")));
  }
  return out;
}

const range = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i);

/** Hands out the given chunks in order (fresh copies: the sealer zeroes what it is given). */
function fixedRandom(...chunks: Uint8Array[]): RandomSource {
  const queue = [...chunks];
  return (n) => {
    const next = queue.shift();
    if (next === undefined || next.length !== n) throw new Error(`unexpected random(${n})`);
    return Uint8Array.from(next);
  };
}

let kms: CryptoKeyPair;
let spki: Uint8Array;

const own = (b: Uint8Array) => new Uint8Array(b);

async function unwrap(wrapped: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.decrypt({ name: "RSA-OAEP" }, kms.privateKey, own(wrapped)));
}

async function open(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", own(key), "AES-GCM", false, ["decrypt"]);
  return new Uint8Array(
    await crypto.subtle.decrypt({ name: "AES-GCM", iv: own(iv), additionalData: own(aad) }, k, own(sealed)),
  );
}

const doc = docBlocks();
const WALLET = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T";

/** A valid scheduled record's parameters (the KMS key is generated before the tests). */
const scheduledParams = () => ({
  kmsPublicKey: spki,
  wallet: WALLET,
  agentSeed: new Uint8Array(32).fill(7),
  not_before: 1_767_268_800,
  not_after: 1_767_268_800 + 3600,
  max_fee_lamports: 5000,
  intent: { destination: WALLET, amount: 1 },
  created_at: 1_767_268_800,
  enclave_id: "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
});

describe("sealing (docs/records.md worked examples)", () => {
  before(async () => {
    kms = await crypto.subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["encrypt", "decrypt"],
    );
    spki = new Uint8Array(await crypto.subtle.exportKey("spki", kms.publicKey));
  });

  it("reads every block of the document", () => {
    for (const name of ["agent-pubkey", "intent", "intent-hash", "aad", "gcm", "vault-aad", "vault-gcm"]) {
      assert.ok(doc.has(name), name);
    }
  });

  it("builds the canonical intent and its hash", () => {
    const intent = { destination: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", amount: 1_000_000_000 };
    assert.equal(toHex(intentBytes(intent)), toHex(doc.get("intent")!));
    assert.equal(toHex(intentHash(intent)), toHex(doc.get("intent-hash")!));
    assert.equal(toHex(intentBytes({ ...intent, mint: null })), toHex(doc.get("intent")!));
  });

  it("seals the scheduled-key example byte for byte", async () => {
    const ephemeral = range(0x00, 32);
    const iv = range(0xa0, 12);
    const sealed = await sealScheduledRecord(
      {
        kmsPublicKey: spki,
        wallet: WALLET,
        agentSeed: new Uint8Array(32).fill(0x42),
        schedule_id: "00112233-4455-6677-8899-aabbccddeeff",
        not_before: 1767268800,
        not_after: 1767355200,
        max_fee_lamports: 10000,
        intent: { destination: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", amount: 1_000_000_000n },
        created_at: 1767265200,
        enclave_id: "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
      },
      { random: fixedRandom(ephemeral, iv) },
    );
    const r = sealed.record;
    assert.equal(toHex(r.subarray(0, 165)), toHex(doc.get("aad")!));
    assert.equal(toHex(sealed.aad), toHex(doc.get("aad")!));
    assert.equal(r[165], 1, "wrap_alg 1");
    assert.deepEqual([...r.subarray(166, 168)], [0x80, 0x01], "len 384, u16 LE");
    const wrapped = r.subarray(168, 168 + 384);
    assert.equal(toHex(await unwrap(wrapped)), toHex(ephemeral));
    assert.equal(toHex(r.subarray(552, 564)), toHex(iv));
    assert.equal(toHex(r.subarray(564)), toHex(doc.get("gcm")!));
    assert.equal(r.length, 165 + 3 + 384 + 12 + 48);
    // It opens, and the header reads back.
    const seed = await open(ephemeral, iv, r.subarray(564), r.subarray(0, 165));
    assert.equal(toHex(seed), "42".repeat(32));
    const h = parseRecordHeader(r);
    assert.equal(h.type, 3);
    if (h.type !== 3) return;
    assert.equal(h.wallet, WALLET);
    assert.equal(h.record_id, "00112233-4455-6677-8899-aabbccddeeff");
    assert.equal(h.enclave_id, "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef");
    assert.equal(h.not_after - h.not_before, 86_400n);
    assert.equal(toHex(h.intent_hash), toHex(doc.get("intent-hash")!));
    // The agent public key derived from the seed.
    assert.equal(toHex(r.subarray(53, 85)), toHex(doc.get("agent-pubkey")!));
    assert.equal(sealed.schedule_id, "00112233-4455-6677-8899-aabbccddeeff");
  });

  it("seals the imported-vault example byte for byte", async () => {
    const dek = range(0x20, 32);
    const iv = range(0xb0, 12);
    const sealed = await sealImportedVault(
      {
        kmsPublicKey: await importKmsPublicKey(spki),
        wallet: WALLET,
        umk: new Uint8Array(32).fill(0x5c),
        vault_id: "f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f",
        created_at: 1767268800,
      },
      { random: fixedRandom(dek, iv) },
    );
    const r = sealed.record;
    assert.equal(toHex(r.subarray(0, 62)), toHex(doc.get("vault-aad")!));
    assert.equal(r[62], 1);
    assert.deepEqual([...r.subarray(63, 65)], [0x80, 0x01]);
    assert.equal(toHex(await unwrap(r.subarray(65, 449))), toHex(dek));
    assert.equal(toHex(r.subarray(449, 461)), toHex(iv));
    assert.equal(toHex(r.subarray(461)), toHex(doc.get("vault-gcm")!));
    assert.equal(toHex(await open(dek, iv, r.subarray(461), r.subarray(0, 62))), "5c".repeat(32));
    const h = parseRecordHeader(r);
    assert.ok(h.type === 4 && h.origin === 1 && h.record_id === sealed.vault_id);
  });

  it("draws fresh keys, IVs and ids by default", async () => {
    const params = scheduledParams();
    const a = await sealScheduledRecord(params);
    const b = await sealScheduledRecord(params);
    assert.notEqual(a.schedule_id, b.schedule_id);
    assert.notEqual(toHex(a.record.subarray(552)), toHex(b.record.subarray(552)));
  });

  it("refuses windows and keys the enclave would refuse", async () => {
    const base = scheduledParams();
    await assert.rejects(sealScheduledRecord({ ...base, not_after: base.not_before + 48 * 3600 + 1 }), RecordError);
    await assert.rejects(sealScheduledRecord({ ...base, not_after: base.not_before - 1 }), RecordError);
    await assert.rejects(
      sealScheduledRecord({ ...base, created_at: base.not_before - 31 * 86_400 }),
      RecordError,
    );
    await assert.rejects(sealScheduledRecord({ ...base, agentSeed: new Uint8Array(31) }), RecordError);
    await assert.rejects(sealScheduledRecord({ ...base, enclave_id: "not-an-id" }), TypeError);
    const small = await crypto.subtle.generateKey(
      { name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["encrypt", "decrypt"],
    );
    const smallSpki = new Uint8Array(await crypto.subtle.exportKey("spki", small.publicKey));
    await assert.rejects(sealScheduledRecord({ ...base, kmsPublicKey: smallSpki }), /RSA-2048/);
    const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign"]);
    const ecSpki = new Uint8Array(await crypto.subtle.exportKey("spki", ec.publicKey));
    await assert.rejects(sealScheduledRecord({ ...base, kmsPublicKey: ecSpki }), RecordError);
    await assert.rejects(sealImportedVault({ kmsPublicKey: spki, wallet: WALLET, umk: new Uint8Array(16) }), RecordError);
  });
});
