// The whole flow against the real simulation stack, the way a backend (SignerClient) and a browser
// (message check, wallet, sealing, provenance) use it: vault → agent, both with provenance
// checked → grant message checked and signed by a Wallet Standard test wallet → grant → sign →
// scheduled record sealed here with WebCrypto → sign scheduled; an imported vault; refusals with
// their codes. Signed transactions are verified with @solana/web3.js.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { sha256 } from "@noble/hashes/sha2.js";
import { parseSignInMessage } from "@solana/wallet-standard-util";
import { PublicKey, SystemProgram, Transaction } from "@solana/web3.js";

import {
  AttestationError,
  type GrantPurpose,
  type Policy,
  SignerApiError,
  SignerClient,
  awsTrust,
  checkAuthorizationMessage,
  checkpointKeyBinding,
  decodeReceipt,
  decodeSignedCheckpoint,
  enclaveIdFromRecipientKey,
  fromBase58,
  fromBase64,
  grantId,
  parseRecordHeader,
  randomUuid,
  sealImportedVault,
  sealScheduledRecord,
  signAuthorizationWithWallet,
  toBase64,
  toHex,
  utf8,
  verifyAttestationDocument,
  verifyChain,
  verifyCheckpoint,
  verifyProvenance,
} from "@signing-enclave/client";
import { TestWallet } from "@signing-enclave/client/testing";

import { SIM_DOMAIN, type Sim, startSim } from "../support/sim.js";

let sim: Sim;
let api: SignerClient;

const policy: Policy = {
  max_lamports_per_tx: 1_000_000_000,
  max_lamports_per_day: 5_000_000_000n,
  max_fee_lamports: 100_000,
  tokens: [],
  allowed_programs: [],
  max_notional_cents_per_tx: 0,
  max_notional_cents_per_day: 0,
};

/** An unsigned SOL transfer built with @solana/web3.js, signature slots zero. */
function transfer(from: string, to: string, lamports: number): Uint8Array {
  const tx = new Transaction({ feePayer: new PublicKey(from), recentBlockhash: new PublicKey(randomBytes(32)).toBase58() });
  tx.add(SystemProgram.transfer({ fromPubkey: new PublicKey(from), toPubkey: new PublicKey(to), lamports }));
  return new Uint8Array(tx.serialize({ requireAllSignatures: false, verifySignatures: false }));
}

/** Checks a signed transaction with @solana/web3.js: every signature present and valid. */
function verifySigned(signedBase64: string, signer: string, signature: string, unsigned: Uint8Array): void {
  const tx = Transaction.from(Buffer.from(signedBase64, "base64"));
  assert.ok(tx.verifySignatures(true), "web3.js verifies every signature");
  assert.equal(tx.signatures.length, 1);
  assert.equal(tx.signatures[0]!.publicKey.toBase58(), signer);
  assert.equal(toHex(new Uint8Array(tx.signatures[0]!.signature!)), toHex(fromBase58(signature, 64)));
  // The message (everything after the signatures) is exactly what was sent.
  assert.equal(toHex(new Uint8Array(tx.serializeMessage())), toHex(unsigned.subarray(1 + 64)));
}

const now = () => Math.floor(Date.now() / 1000);

async function code(p: Promise<unknown>): Promise<[number, string]> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SignerApiError) return [e.status, e.code];
    throw e;
  }
  throw new Error("expected a refusal");
}

describe("the whole flow against the simulation stack", { timeout: 300_000 }, () => {
  before(async () => {
    sim = await startSim("flow");
    api = new SignerClient({ baseUrl: sim.baseUrl, apiToken: sim.apiToken, adminToken: sim.adminToken });
  });
  after(async () => {
    await sim?.stop();
  });

  // State carried from one step to the next, as a backend would store it.
  const wallet = new TestWallet();
  let enclaveId: string;
  let vault: { vault_id: string; vault_record: string; provenance: string };
  let agent: { agent_pubkey: string; agent_key_record: string; provenance: string };
  let purpose: GrantPurpose;
  let grant: { grant_id: string; grant_record: string };

  it("GET /v1/enclave: the instance and the KMS key its config pins", async () => {
    const info = await api.enclave();
    enclaveId = info.enclave_id;
    assert.ok(info.answers_for.includes(enclaveId), "an instance answers for its own id");
    assert.equal(toBase64(sim.pinnedKmsPublicKey), info.kms_public_key);
    // The registry the enclave's messages use is the one this frontend pins.
    assert.deepEqual(info.registry, SIM_DOMAIN.registry);
    const ready = await api.ready();
    assert.equal(ready.ready, true);
    assert.equal(ready.kill_switch, false);
    assert.equal(ready.kms_key, "enabled");
    assert.equal(ready.handover, null);
    assert.deepEqual(await api.health(), { status: "ok" });
    assert.match(await api.metrics(), /# TYPE/);
  });

  it("GET /v1/attestation: a document that verifies to the sim root and names this enclave", async () => {
    const nonce = toHex(randomBytes(16));
    const a = await api.attestation(nonce);
    const v = verifyAttestationDocument(fromBase64(a.document), sim.trust.root, now());
    assert.equal(toHex(v.document.nonce!), nonce);
    assert.equal(enclaveIdFromRecipientKey(fromBase64(a.public_key)), enclaveId);
    assert.equal(a.enclave_id, enclaveId);
    // Not to the AWS root.
    assert.throws(() => verifyAttestationDocument(fromBase64(a.document), awsTrust([]).root, now()), AttestationError);
  });

  it("POST /v1/vaults: a vault whose provenance verifies, and only for this record", async () => {
    vault = await api.createVault(wallet.address);
    const v = verifyProvenance({ document: vault.provenance, record: vault.vault_record, trust: sim.trust });
    assert.ok(v.chain.length >= 2);
    const h = parseRecordHeader(fromBase64(vault.vault_record));
    assert.ok(h.type === 4 && h.origin === 0 && h.wallet === wallet.address && h.record_id === vault.vault_id);
    const other = await api.createVault(wallet.address);
    assert.throws(() => verifyProvenance({ document: vault.provenance, record: other.vault_record, trust: sim.trust }), { kind: "user_data" });
    const otherImage = new Map(sim.trust.images[0] as Map<number, Uint8Array>);
    otherImage.set(0, new Uint8Array(48).fill(7));
    assert.throws(
      () => verifyProvenance({ document: vault.provenance, record: vault.vault_record, trust: { ...sim.trust, images: [otherImage] } }),
      { kind: "untrusted_image" },
    );
    assert.throws(() => verifyProvenance({ document: vault.provenance, record: vault.vault_record, trust: awsTrust(sim.trust.images) }), { kind: "chain" });
  });

  it("POST /v1/agents: an agent made from the vault, its provenance bound to that vault", async () => {
    agent = await api.createAgent({ wallet: wallet.address, vault_record: vault.vault_record, vault_provenance: vault.provenance });
    verifyProvenance({ document: agent.provenance, record: agent.agent_key_record, vault: { vault_record: vault.vault_record }, trust: sim.trust });
    verifyProvenance({ document: agent.provenance, record: agent.agent_key_record, vault: vault.vault_id, trust: sim.trust });
    assert.throws(
      () => verifyProvenance({ document: agent.provenance, record: agent.agent_key_record, vault: randomUuid(), trust: sim.trust }),
      { kind: "user_data" },
    );
    const h = parseRecordHeader(fromBase64(agent.agent_key_record));
    assert.ok(h.type === 2 && h.agent_pubkey === agent.agent_pubkey);
    // A mnemonic agent too.
    const m = await api.createAgent({ wallet: wallet.address, vault_record: vault.vault_record, vault_provenance: vault.provenance, kind: "mnemonic", account: 3 });
    const mh = parseRecordHeader(fromBase64(m.agent_key_record));
    assert.ok(mh.type === 2 && mh.kind === 1 && mh.account === 3);
    // The enclave refuses a vault with another vault's provenance.
    const other = await api.createVault(wallet.address);
    assert.deepEqual(await code(api.createAgent({ wallet: wallet.address, vault_record: other.vault_record, vault_provenance: vault.provenance })), [403, "provenance_invalid"]);
  });

  it("grant: the message is checked, the test wallet signs it, the grant id follows from the signature", async () => {
    purpose = { kind: "grant", bot_id: randomUuid(), agent_pubkey: agent.agent_pubkey, ttl_seconds: 900, policy };
    const terms = { wallet: wallet.address, bot_id: purpose.bot_id as string, agent_pubkey: agent.agent_pubkey, ttl_seconds: 900, policy };
    const auth = await api.authorizeGrant(terms);
    assert.equal(auth.enclave_id, enclaveId);
    const message = checkAuthorizationMessage(SIM_DOMAIN, { wallet: wallet.address, purpose }, auth);
    const siws = parseSignInMessage(utf8(message));
    assert.equal(siws?.domain, "localhost");
    assert.equal(siws?.chainId, "localnet");
    const signed = await signAuthorizationWithWallet(wallet, message);
    const g = await api.createGrant({ ...terms, nonce: auth.nonce, issued_at: auth.issued_at, signature: signed.signature_base58, vault_record: vault.vault_record, vault_provenance: vault.provenance });
    assert.equal(g.grant_id, grantId(signed.signature));
    assert.equal(g.enclave_id, enclaveId);
    assert.equal(g.expires_at - g.issued_at, 900);
    const h = parseRecordHeader(fromBase64(g.grant_record));
    assert.ok(h.type === 1 && h.record_id === g.grant_id && h.enclave_id === enclaveId && h.agent_pubkey === agent.agent_pubkey);
    grant = g;
    // The same signature again (a lost reply): the same grant, not a second one.
    const again = await api.createGrant({ ...terms, nonce: auth.nonce, issued_at: auth.issued_at, signature: signed.signature, vault_record: vault.vault_record, vault_provenance: vault.provenance });
    assert.equal(again.grant_id, g.grant_id);
    assert.equal(again.expires_at, g.expires_at);
    // Other terms than the ones signed: the signature does not verify over them.
    const auth2 = await api.authorizeGrant(terms);
    const msg2 = checkAuthorizationMessage(SIM_DOMAIN, { wallet: wallet.address, purpose }, auth2);
    const sig2 = await signAuthorizationWithWallet(wallet, msg2);
    assert.deepEqual(
      await code(api.createGrant({ ...terms, ttl_seconds: 901, nonce: auth2.nonce, issued_at: auth2.issued_at, signature: sig2.signature, vault_record: vault.vault_record, vault_provenance: vault.provenance })),
      [403, "authorization_signature_invalid"],
    );
  });

  it("POST /v1/sign: a transfer signed by the agent, verified by web3.js; retries are idempotent", async () => {
    const to = new PublicKey(randomBytes(32)).toBase58();
    const tx = transfer(agent.agent_pubkey, to, 10_000_000);
    const bot = purpose.bot_id as string;
    const r = await api.sign({ grant_record: grant.grant_record, agent_key_record: agent.agent_key_record, bot_id: bot, transaction: tx });
    assert.equal(r.grant_id, grant.grant_id);
    assert.equal(r.route, enclaveId);
    verifySigned(r.transaction, agent.agent_pubkey, r.signature, tx);
    // The same request id and request: the same signature (and no second charge).
    const again = await api.sign({ grant_record: grant.grant_record, agent_key_record: agent.agent_key_record, bot_id: bot, transaction: tx, request_id: r.request_id });
    assert.equal(again.signature, r.signature);
    // The same id with another request: refused, final.
    const other = transfer(agent.agent_pubkey, to, 10_000_001);
    assert.deepEqual(
      await code(api.sign({ grant_record: grant.grant_record, agent_key_record: agent.agent_key_record, bot_id: bot, transaction: other, request_id: r.request_id })),
      [409, "replayed_request"],
    );
    // Over the per-transaction limit (the agent's 5 000-lamport fee included, as the signed
    // message says): denied with the rule and the numbers.
    try {
      await api.sign({ grant_record: grant.grant_record, agent_key_record: agent.agent_key_record, bot_id: bot, transaction: transfer(agent.agent_pubkey, to, 1_999_995_000) });
      assert.fail("expected a denial");
    } catch (e) {
      assert.ok(e instanceof SignerApiError);
      assert.equal(e.code, "policy_denied");
      assert.equal(e.rule, "max_lamports_per_tx");
      assert.equal(e.limit, 1_000_000_000);
      assert.equal(e.requested, 2_000_000_000);
    }
  });

  it("GET /v1/receipts: the sign answer's receipt is in a chain a checkpoint vouches for, under the key the document binds", async () => {
    const page = await api.receipts();
    const receipts = page.receipts.map(fromBase64);
    assert.ok(receipts.some((r) => decodeReceipt(r).body.kind === "signed"));
    const document = verifyAttestationDocument(fromBase64(page.document), sim.trust.root, now());
    const key = fromBase64(page.checkpoint_key);
    assert.equal(toHex(document.document.user_data!), toHex(checkpointKeyBinding(page.enclave_id, key)));
    assert.equal(enclaveIdFromRecipientKey(document.document.public_key!), page.enclave_id);
    const checkpoint = decodeSignedCheckpoint(fromBase64(page.checkpoint!));
    assert.ok(verifyCheckpoint(checkpoint, key));
    const report = verifyChain(receipts, [checkpoint], [{ signer: page.enclave_id, publicKey: key }]);
    assert.ok(report.ok, JSON.stringify(report, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
    // Continuing after the last one: nothing new.
    const rest = await api.receipts(page.next_after);
    assert.deepEqual(rest.receipts, []);
    await assert.rejects(api.receipts(-1), TypeError);
  });

  it("POST /v1/scheduled/sign: a record sealed here with WebCrypto signs its one transfer, once", async () => {
    const agentSeed = new Uint8Array(randomBytes(32)); // held by the user's browser
    const destination = new PublicKey(randomBytes(32)).toBase58();
    const t = now();
    const sealed = await sealScheduledRecord({
      kmsPublicKey: sim.pinnedKmsPublicKey,
      wallet: wallet.address,
      agentSeed,
      not_before: t - 10,
      not_after: t + 3600,
      max_fee_lamports: 10_000,
      intent: { destination, amount: 123_456 },
      enclave_id: enclaveId,
    });
    const tx = transfer(sealed.agent_pubkey, destination, 123_456);
    const r = await api.signScheduled({ scheduled_record: sealed.record, transaction: tx });
    assert.equal(r.route, enclaveId);
    verifySigned(r.transaction, sealed.agent_pubkey, r.signature, tx);
    assert.deepEqual(await code(api.signScheduled({ scheduled_record: sealed.record, transaction: tx })), [409, "replayed_request"]);
    // Another record; a transaction that is not its intent.
    const second = await sealScheduledRecord({
      kmsPublicKey: sim.pinnedKmsPublicKey,
      wallet: wallet.address,
      agentSeed: new Uint8Array(randomBytes(32)),
      not_before: t - 10,
      not_after: t + 3600,
      max_fee_lamports: 10_000,
      intent: { destination, amount: 123_456 },
      enclave_id: enclaveId,
    });
    try {
      await api.signScheduled({ scheduled_record: second.record, transaction: transfer(second.agent_pubkey, destination, 123_457) });
      assert.fail("expected a denial");
    } catch (e) {
      assert.ok(e instanceof SignerApiError && e.code === "policy_denied" && e.rule === "intent_mismatch", String(e));
    }
  });

  it("imported vault: sealed here, import message checked and signed, provenance verified, agent made from it", async () => {
    const umk = new Uint8Array(randomBytes(32));
    const sealed = await sealImportedVault({ kmsPublicKey: sim.pinnedKmsPublicKey, wallet: wallet.address, umk });
    const auth = await api.authorizeImport({ wallet: wallet.address, vault_record: sealed.record });
    const message = checkAuthorizationMessage(
      SIM_DOMAIN,
      { wallet: wallet.address, purpose: { kind: "import-vault", vault_id: sealed.vault_id, vault_record_sha256: sha256(sealed.record) } },
      auth,
    );
    const signed = await signAuthorizationWithWallet(wallet, message);
    const imported = await api.importVault({ wallet: wallet.address, vault_record: sealed.record, nonce: auth.nonce, issued_at: auth.issued_at, signature: signed.signature });
    assert.equal(imported.vault_id, sealed.vault_id);
    verifyProvenance({ document: imported.provenance, record: sealed.record, trust: sim.trust });
    const a = await api.createAgent({ wallet: wallet.address, vault_record: sealed.record, vault_provenance: imported.provenance });
    verifyProvenance({ document: a.provenance, record: a.agent_key_record, vault: sealed.vault_id, trust: sim.trust });
  });

  it("revocation, the kill switch and a wrong token answer with their codes", async () => {
    const bot = purpose.bot_id as string;
    const sign = () =>
      api.sign({ grant_record: grant.grant_record, agent_key_record: agent.agent_key_record, bot_id: bot, transaction: transfer(agent.agent_pubkey, new PublicKey(randomBytes(32)).toBase58(), 1) });
    assert.deepEqual(await api.setKillSwitch(true), { engaged: true });
    try {
      assert.deepEqual(await code(sign()), [403, "kill_switch"]);
    } finally {
      await api.setKillSwitch(false);
    }
    await sign();
    const revoked = await api.revokeGrant(grant.grant_id);
    assert.equal(revoked.revoked.grant_id, grant.grant_id);
    assert.deepEqual(await code(sign()), [403, "grant_revoked"]);
    await api.revokeWallet(wallet.address);
    const stranger = new SignerClient({ baseUrl: sim.baseUrl, apiToken: "not-the-token" });
    assert.deepEqual(await code(stranger.enclave()), [401, "unauthorized"]);
    assert.deepEqual(await code(api.revokeGrant(grant.grant_id).then(() => new SignerClient({ baseUrl: sim.baseUrl, apiToken: sim.apiToken, adminToken: sim.apiToken }).setKillSwitch(true))), [401, "unauthorized"]);
  });
});
