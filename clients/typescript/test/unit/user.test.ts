// The browser half of the user's powers, without the enclave: the X25519 key from WebCrypto,
// HPKE replies sealed by an independent sender (@hpke/core's own sender side) opened only with the
// right key, wallet and record; SLIP-0010 and BIP39 on the shared Solana derivation vectors;
// exported secrets checked against their records; the revoke and export flows refusing a message
// that names anything else.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";

import {
  type AuthorizationMessage,
  type ExportApi,
  type MessageDomain,
  type RevokeApi,
  ExportError,
  MessageMismatchError,
  exportInfo,
  exportPurpose,
  exportWithWallet,
  fromBase58,
  fromHex,
  generateExportKey,
  openExport,
  readExportedSecret,
  renderMessage,
  revokeWithWallet,
  slip10Ed25519,
  solanaPath,
  toBase64,
  toHex,
  utf8,
  agentPublicKey,
} from "@signing-enclave/client";
import { TestWallet } from "@signing-enclave/client/testing";

import { golden, readVector } from "../support/paths.js";

const g = golden();
const domain: MessageDomain = g.domain;
const ENCLAVE = "af9fb434-417b-914a-7149-b91854847fa5";

const pk = (w: TestWallet) => fromBase58(w.address, 32);

/** A vault record (type 4, docs/records.md) of `wallet`, id 0f…0f; the body is not read. */
function vaultRecord(wallet: Uint8Array): Uint8Array {
  const out = new Uint8Array(62 + 80);
  new DataView(out.buffer).setUint32(0, 1, true);
  out[4] = 4;
  out.set(wallet, 5);
  out.fill(0x0f, 37, 53);
  return out;
}

/** An agent key record (type 2): seed kind, or mnemonic with `account`. */
function agentRecord(wallet: Uint8Array, agent: Uint8Array, account?: number): Uint8Array {
  const aad = account === undefined ? 86 : 90;
  const out = new Uint8Array(aad + 80);
  const view = new DataView(out.buffer);
  view.setUint32(0, 1, true);
  out[4] = 2;
  out.set(wallet, 5);
  out.fill(0x3c, 37, 53);
  out.set(agent, 53);
  out[85] = account === undefined ? 0 : 1;
  if (account !== undefined) view.setUint32(86, account, true);
  return out;
}

/** Seals like the enclave (`enclave/core/src/enclave/user.rs`), with @hpke/core's sender. */
async function sealTo(recipient: Uint8Array, info: Uint8Array, plaintext: Uint8Array) {
  const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });
  const recipientPublicKey = await suite.kem.deserializePublicKey(recipient.slice().buffer);
  const { ct: ciphertext, enc } = await suite.seal({ recipientPublicKey, info: info.slice().buffer }, plaintext.slice().buffer);
  return { enc: new Uint8Array(enc), ciphertext: new Uint8Array(ciphertext) };
}

describe("export: the browser's X25519 key and HPKE", () => {
  it("generates a WebCrypto X25519 key whose private half cannot be exported", async () => {
    const key = await generateExportKey();
    assert.equal(key.publicKey.length, 32);
    assert.equal(key.keyPair.privateKey.extractable, false);
    assert.equal((key.keyPair.privateKey.algorithm as { name: string }).name, "X25519");
    await assert.rejects(crypto.subtle.exportKey("pkcs8", key.keyPair.privateKey));
    const other = await generateExportKey();
    assert.notEqual(toHex(key.publicKey), toHex(other.publicKey));
  });

  it("opens a reply sealed to it for this wallet and record, and nothing else", async () => {
    const wallet = new TestWallet();
    const record = vaultRecord(pk(wallet));
    const info = exportInfo(wallet.address, record);
    assert.equal(toHex(info), toHex(new Uint8Array([...utf8("signer/export/v1"), ...pk(wallet), ...sha256(record)])));
    const key = await generateExportKey();
    const umk = crypto.getRandomValues(new Uint8Array(32));
    const { enc, ciphertext } = await sealTo(key.publicKey, info, umk);
    assert.equal(ciphertext.length, 32 + 16);
    const opened = await openExport({ key, wallet: wallet.address, record, enc: toBase64(enc), ciphertext: toBase64(ciphertext) });
    assert.equal(toHex(opened), toHex(umk));
    // Another key, wallet, record, or a changed byte: refused.
    const otherRecord = record.slice();
    otherRecord[100]! ^= 1;
    const bad = ciphertext.slice();
    bad[0]! ^= 1;
    for (const params of [
      { key: await generateExportKey(), wallet: wallet.address, record, enc, ciphertext },
      { key, wallet: new TestWallet().address, record, enc, ciphertext },
      { key, wallet: wallet.address, record: otherRecord, enc, ciphertext },
      { key, wallet: wallet.address, record, enc, ciphertext: bad },
      { key, wallet: wallet.address, record, enc: enc.subarray(1), ciphertext },
    ]) {
      await assert.rejects(openExport(params), ExportError);
    }
  });
});

describe("export: reading the secret", () => {
  it("derives SLIP-0010 ed25519 keys as the specification's vectors", () => {
    const v = JSON.parse(new TextDecoder().decode(readVector("solana/derivation.json")));
    const seed = fromHex(v.slip10_ed25519.seed);
    for (const c of v.slip10_ed25519.chains) {
      const path = c.chain === "m" ? [] : c.chain.slice(2).split("/").map((p: string) => Number(p.replace("'", "")));
      assert.equal(toHex(slip10Ed25519(seed, path)), c.private, c.chain);
    }
    assert.deepEqual(solanaPath(3), [44, 501, 3, 0]);
    assert.throws(() => solanaPath(2 ** 31), ExportError);
  });

  it("reads a recovery phrase into the words and the key Phantom derives", async () => {
    const v = JSON.parse(new TextDecoder().decode(readVector("solana/derivation.json")));
    const abandon = v.bip39_solana[0];
    assert.equal(abandon.passphrase, "");
    const wallet = new TestWallet();
    for (const account of [0, 1]) {
      const expected = abandon.paths.find((p: any) => p.path === `m/44'/501'/${account}'/0'`);
      const agent = agentRecord(pk(wallet), fromBase58(expected.address, 32), account);
      const read = await readExportedSecret("mnemonic", new Uint8Array(16), { vault_record: vaultRecord(pk(wallet)), agent_key_record: agent });
      assert.equal(read.kind, "mnemonic");
      if (read.kind !== "mnemonic") return;
      assert.equal(read.words, abandon.mnemonic);
      assert.equal(read.agent_pubkey, expected.address);
      assert.equal(read.path, expected.path);
    }
    // Words that do not derive the record's agent are refused.
    const agent = agentRecord(pk(wallet), new Uint8Array(32).fill(7), 0);
    await assert.rejects(
      readExportedSecret("mnemonic", new Uint8Array(16), { vault_record: vaultRecord(pk(wallet)), agent_key_record: agent }),
      ExportError,
    );
  });

  it("reads a seed and a master key, refusing a secret of the wrong kind or agent", async () => {
    const wallet = new TestWallet();
    const vault = vaultRecord(pk(wallet));
    const seed = new Uint8Array(32).fill(0x42);
    const agent = agentRecord(pk(wallet), fromBase58(agentPublicKey(seed), 32));
    const read = await readExportedSecret("seed", seed, { vault_record: vault, agent_key_record: agent });
    assert.equal(read.kind === "seed" && read.agent_pubkey, agentPublicKey(seed));
    await assert.rejects(readExportedSecret("seed", new Uint8Array(32), { vault_record: vault, agent_key_record: agent }), ExportError);
    await assert.rejects(readExportedSecret("mnemonic", seed, { vault_record: vault, agent_key_record: agent }), ExportError);
    const umk = await readExportedSecret("vault", seed, { vault_record: vault });
    assert.equal(umk.kind === "vault" && umk.vault_id, "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0f");
    await assert.rejects(readExportedSecret("seed", seed, { vault_record: vault }), ExportError);
  });
});

/** A scripted backend: renders messages as the enclave would, and seals with @hpke/core. */
function scripted(wallet: TestWallet, tamper: (m: string) => string = (m) => m) {
  let n = 0;
  const issued = () => ({ nonce: (++n).toString(16).padStart(32, "0"), issued_at: 1_796_129_406 + n });
  const answer = (purpose: any, at: { nonce: string; issued_at: number }): AuthorizationMessage => ({
    message: tamper(renderMessage(domain, { wallet: wallet.address, enclave_id: ENCLAVE, ...at, purpose })),
    ...at,
    expires_at: at.issued_at + domain.validity_seconds,
    enclave_id: ENCLAVE,
  });
  const calls: string[] = [];
  const revoke: RevokeApi = {
    async authorizeRevoke(req) {
      calls.push("authorizeRevoke");
      return answer("all" in req ? { kind: "revoke", all: true } : { kind: "revoke", grant_id: req.grant_id }, issued());
    },
    async revokeSigned(req) {
      calls.push("revokeSigned");
      return { revoked: req, dropped_from_memory: 1 };
    },
  };
  const exporter: ExportApi = {
    async authorizeExport(req) {
      calls.push("authorizeExport");
      const purpose = exportPurpose(req.wallet, {
        vault_record: req.vault_record,
        ...(req.agent_key_record === undefined ? {} : { agent_key_record: req.agent_key_record }),
        recipient: new Uint8Array(Buffer.from(req.recipient, "base64")),
      });
      return answer(purpose, issued());
    },
    async exportSecret(req) {
      calls.push("exportSecret");
      const record = req.agent_key_record ?? req.vault_record;
      const sealed = await sealTo(new Uint8Array(Buffer.from(req.recipient, "base64")), exportInfo(req.wallet, record), new Uint8Array(32).fill(0x42));
      return { kind: req.agent_key_record ? "seed" : "vault", enc: toBase64(sealed.enc), ciphertext: toBase64(sealed.ciphertext), recipient: req.recipient };
    },
  };
  return { revoke, exporter, calls };
}

describe("revoke and export flows against a scripted backend", () => {
  it("revokes with the wallet's signature over exactly the revoke message", async () => {
    const wallet = new TestWallet();
    const { revoke, calls } = scripted(wallet);
    const grant_id = "3c3c3c3c-3c3c-3c3c-3c3c-3c3c3c3c3c3c";
    const one = await revokeWithWallet({ domain, wallet, address: wallet.address, scope: { grant_id }, api: revoke });
    assert.match(one.message, /Revoke grant 3c3c3c3c-3c3c-3c3c-3c3c-3c3c3c3c3c3c of this wallet/);
    assert.ok(ed25519.verify(fromBase58(one.signature_base58, 64), utf8(one.message), pk(wallet)));
    assert.deepEqual((one.result as any).revoked.grant_id, grant_id);
    const all = await revokeWithWallet({ domain, wallet, address: wallet.address, scope: { all: true }, api: revoke });
    assert.match(all.message, /- urn:signer:revoke:all$/);
    assert.deepEqual(calls, ["authorizeRevoke", "revokeSigned", "authorizeRevoke", "revokeSigned"]);
  });

  it("does not sign a revoke message for another grant", async () => {
    const wallet = new TestWallet();
    const { revoke, calls } = scripted(wallet, (m) => m.replaceAll("3c3c3c3c-3c3c-3c3c-3c3c-3c3c3c3c3c3c", "4d4d4d4d-4d4d-4d4d-4d4d-4d4d4d4d4d4d"));
    await assert.rejects(
      revokeWithWallet({ domain, wallet, address: wallet.address, scope: { grant_id: "3c3c3c3c-3c3c-3c3c-3c3c-3c3c3c3c3c3c" }, api: revoke }),
      MessageMismatchError,
    );
    assert.deepEqual(calls, ["authorizeRevoke"]);
  });

  it("exports a seed and a master key to a fresh key and opens them", async () => {
    const wallet = new TestWallet();
    const { exporter } = scripted(wallet);
    const seed = new Uint8Array(32).fill(0x42);
    const vault_record = vaultRecord(pk(wallet));
    const agent_key_record = agentRecord(pk(wallet), fromBase58(agentPublicKey(seed), 32));
    const r = await exportWithWallet({ domain, wallet, address: wallet.address, vault_record, vault_provenance: "AA==", agent_key_record, api: exporter });
    assert.equal(r.kind, "seed");
    assert.equal(r.kind === "seed" && toHex(r.seed), toHex(seed));
    assert.match(r.message, new RegExp(`Export the seed of agent ${agentPublicKey(seed)} to the key ${r.recipient_hex} your browser holds`));
    const v = await exportWithWallet({ domain, wallet, address: wallet.address, vault_record, vault_provenance: "AA==", api: exporter });
    assert.equal(v.kind === "vault" && toHex(v.master_key), toHex(seed));
    assert.match(v.message, /- urn:signer:export:vault:0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0f\n/);
  });

  it("does not sign an export message naming another recipient key or record", async () => {
    const wallet = new TestWallet();
    for (const tamper of [
      (m: string) => m.replace(/x25519:[0-9a-f]{2}/, "x25519:00").replace(/the key [0-9a-f]{2}/, "the key 00"),
      (m: string) => m.replace(/record-sha256:[0-9a-f]{2}/, "record-sha256:00"),
    ]) {
      const { exporter, calls } = scripted(wallet, tamper);
      await assert.rejects(
        exportWithWallet({ domain, wallet, address: wallet.address, vault_record: vaultRecord(pk(wallet)), vault_provenance: "AA==", api: exporter }),
        MessageMismatchError,
      );
      assert.deepEqual(calls, ["authorizeExport"]);
    }
    // A vault of another wallet is not exported under this one.
    const { exporter } = scripted(wallet);
    await assert.rejects(
      exportWithWallet({ domain, wallet, address: wallet.address, vault_record: vaultRecord(pk(new TestWallet())), vault_provenance: "AA==", api: exporter }),
      ExportError,
    );
  });
});
