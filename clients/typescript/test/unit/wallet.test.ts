// The Wallet Standard signing helper, strict ed25519, exact JSON and record headers.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import type { SolanaSignMessageFeature } from "@solana/wallet-standard-features";
import type { Wallet } from "@wallet-standard/base";

import {
  WalletSignError,
  fromBase58,
  fromHex,
  idBytes,
  parseJson,
  parseRecordHeader,
  signAuthorizationWithWallet,
  stringifyJson,
  toBase58,
  U64_MAX,
  utf8,
  uuidText,
  verifyEd25519Strict,
  type WalletLike,
} from "@signing-enclave/client";
import { TestWallet } from "@signing-enclave/client/testing";

import { golden } from "../support/paths.js";

const message = golden().messages[0].message as string;
const seed = new Uint8Array(32).fill(1); // the golden vectors' wallet

describe("signAuthorizationWithWallet", () => {
  it("gets a signature the enclave accepts from a Wallet Standard wallet", async () => {
    const wallet = new TestWallet(seed);
    // The test wallet's feature has the type real wallets publish.
    const feature: SolanaSignMessageFeature = wallet.features;
    const standard: Wallet = wallet;
    assert.equal(standard.version, "1.0.0");
    assert.equal(feature["solana:signMessage"].version, "1.1.0");
    const r = await signAuthorizationWithWallet(wallet, message);
    assert.equal(r.address, golden().messages[0].wallet);
    assert.equal(r.signature_base58, golden().messages[0].signature_base58, "ed25519 is deterministic");
    assert.deepEqual(wallet.signed, [message]);
  });

  it("refuses a wallet without the account the message names", async () => {
    await assert.rejects(signAuthorizationWithWallet(new TestWallet(), message), WalletSignError);
  });

  it("refuses a wallet that signs something else, or badly", async () => {
    const honest = new TestWallet(seed);
    const account = honest.accounts[0]!;
    const wrap = (signMessage: (m: Uint8Array) => { signedMessage: Uint8Array; signature: Uint8Array }): WalletLike => ({
      accounts: [account],
      features: {
        "solana:signMessage": { version: "1.0.0", signMessage: async (...inputs: { message: Uint8Array }[]) => inputs.map((i) => signMessage(i.message)) },
      },
    });
    const prefixed = wrap((m) => {
      const signed = new Uint8Array([...utf8("\xffsolana offchain"), ...m]);
      return { signedMessage: signed, signature: ed25519.sign(signed, seed) };
    });
    await assert.rejects(signAuthorizationWithWallet(prefixed, message), /other bytes/);
    const wrongKey = wrap((m) => ({ signedMessage: m, signature: ed25519.sign(m, new Uint8Array(32).fill(9)) }));
    await assert.rejects(signAuthorizationWithWallet(wrongKey, message), /does not verify/);
    await assert.rejects(signAuthorizationWithWallet({ accounts: [account], features: {} }, message), /does not support/);
  });
});

describe("verifyEd25519Strict", () => {
  const key = ed25519.getPublicKey(seed);
  const msg = utf8("hello");
  const sig = ed25519.sign(msg, seed);

  it("accepts a canonical signature and refuses malleated ones and small-order keys", () => {
    assert.ok(verifyEd25519Strict(key, msg, sig));
    // S + L: the same signature to a lax verifier.
    const L = fromHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
    const malleated = Uint8Array.from(sig);
    let carry = 0;
    for (let i = 0; i < 32; i++) {
      const v = sig[32 + i]! + L[i]! + carry;
      malleated[32 + i] = v & 0xff;
      carry = v >> 8;
    }
    assert.ok(!verifyEd25519Strict(key, msg, malleated));
    const identity = new Uint8Array(32);
    identity[0] = 1;
    assert.ok(!verifyEd25519Strict(identity, msg, sig));
    const noncanonical = new Uint8Array(32).fill(0xff);
    noncanonical[0] = 0xee;
    noncanonical[31] = 0x7f;
    assert.ok(!verifyEd25519Strict(noncanonical, msg, sig));
    assert.ok(!verifyEd25519Strict(key, utf8("hellp"), sig));
  });
});

describe("exact JSON", () => {
  it("keeps u64 values exact both ways", () => {
    const v = parseJson('{"a":18446744073709551615,"b":[1,2.5,-3e2,"x\\"y\\u00e9"],"c":null,"d":true,"e":9007199254740991}') as any;
    assert.equal(v.a, U64_MAX);
    assert.deepEqual(v.b, [1, 2.5, -300, 'x"yé']);
    assert.equal(v.e, Number.MAX_SAFE_INTEGER);
    assert.equal(stringifyJson(v), '{"a":18446744073709551615,"b":[1,2.5,-300,"x\\"yé"],"c":null,"d":true,"e":9007199254740991}');
    assert.equal(stringifyJson({ x: undefined, y: 1n }), '{"y":1}');
    for (const bad of ["", "{", '{"a":}', "[1,]", "01", "1 2", '{"a":1}x']) assert.throws(() => parseJson(bad), SyntaxError, bad);
    assert.throws(() => stringifyJson({ b: new Uint8Array(1) }), TypeError);
  });
});

describe("ids and record headers", () => {
  it("reads UUID text like the enclave", () => {
    const id = fromHex("7a1c4a9e5d2b4c1e9f3a2b6d8e0f1a2b");
    assert.equal(uuidText(id), "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b");
    assert.deepEqual(idBytes("7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b"), id);
    assert.deepEqual(idBytes("7a1c4a9e5d2b4c1e9f3a2b6d8e0f1a2b"), id);
    for (const bad of ["", "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2", "7a1c4a9e5d2b-4c1e-9f3a-2b6d-8e0f1a2b", "zz1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b"]) {
      assert.throws(() => idBytes(bad), TypeError, bad);
    }
  });

  it("reads the golden records' headers", () => {
    const [vault, agent] = golden().provenance;
    const v = parseRecordHeader(fromHex(vault.record_hex));
    assert.ok(v.type === 4 && v.origin === 0 && v.record_id === "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0f");
    const a = parseRecordHeader(fromHex(agent.record_hex));
    assert.ok(a.type === 2 && a.kind === 1 && a.account === 7 && a.aad.length === 90);
    assert.equal(a.wallet, golden().messages[0].wallet);
    assert.equal(toBase58(fromBase58(a.agent_pubkey, 32)), golden().messages[0].purpose.agent_pubkey);
    assert.throws(() => parseRecordHeader(fromHex(vault.record_hex).subarray(0, 40)), /need 53/);
    const bad = fromHex(vault.record_hex);
    bad[4] = 9;
    assert.throws(() => parseRecordHeader(bad), /unknown record type 9/);
  });
});
