// The user's own powers against the real simulation stack, browser half driven as a frontend
// would (message re-rendered and checked, Wallet Standard test wallet signing raw bytes) and
// backend half through SignerClient: a wallet revokes its own grant and signing then fails with
// `grant_revoked`, another wallet cannot revoke it; secrets exported to a WebCrypto X25519 key and
// opened with HPKE, checked by independent oracles: @solana/web3.js `Keypair.fromSeed` for a seed
// agent, and for a mnemonic agent the words through PBKDF2 (node:crypto) and the SLIP-0010 path
// m/44'/501'/0'/0' of ed25519-hd-key, as Phantom derives it.

import assert from "node:assert/strict";
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";
import { validateMnemonic } from "@scure/bip39";
import { wordlist as english } from "@scure/bip39/wordlists/english.js";
import { Keypair, PublicKey, SystemProgram, Transaction } from "@solana/web3.js";
import { derivePath } from "ed25519-hd-key";

import {
  type Policy,
  SignerApiError,
  SignerClient,
  checkAuthorizationMessage,
  exportWithWallet,
  generateExportKey,
  openExport,
  randomUuid,
  revokeWithWallet,
  signAuthorizationWithWallet,
  toHex,
  utf8,
} from "@signing-enclave/client";
import { TestWallet } from "@signing-enclave/client/testing";

import { SIM_DOMAIN, type Sim, startSim } from "../support/sim.js";

let sim: Sim;
let api: SignerClient;

const USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const JUPITER = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4";

/** Known token and program: the enclave's statement reads them in the registry's units. */
const policy: Policy = {
  max_lamports_per_tx: 1_000_000_000,
  max_lamports_per_day: 5_000_000_000n,
  max_fee_lamports: 100_000,
  tokens: [{ mint: USDC, max_per_tx: 100_500_000, max_per_day: 500_000_000 }],
  allowed_programs: [JUPITER],
  max_notional_cents_per_tx: 50_000,
  max_notional_cents_per_day: 200_000,
};

function transfer(from: string, lamports: number): Uint8Array {
  const tx = new Transaction({ feePayer: new PublicKey(from), recentBlockhash: new PublicKey(randomBytes(32)).toBase58() });
  tx.add(SystemProgram.transfer({ fromPubkey: new PublicKey(from), toPubkey: Keypair.generate().publicKey, lamports }));
  return new Uint8Array(tx.serialize({ requireAllSignatures: false, verifySignatures: false }));
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SignerApiError) return e.code;
    throw e;
  }
  throw new Error("expected a refusal");
}

interface Owner {
  wallet: TestWallet;
  vault: { vault_id: string; vault_record: string; provenance: string };
  agent: { agent_pubkey: string; agent_key_record: string };
}

async function owner(seed?: Uint8Array): Promise<Owner> {
  const wallet = new TestWallet(seed);
  const vault = await api.createVault(wallet.address);
  const agent = await api.createAgent({ wallet: wallet.address, vault_record: vault.vault_record, vault_provenance: vault.provenance });
  return { wallet, vault, agent };
}

/** A grant made the browser's way: the message checked against the pinned domain and registry. */
async function grant(o: Owner): Promise<{ grant_id: string; grant_record: string; bot_id: string; message: string }> {
  const terms = { wallet: o.wallet.address, bot_id: randomUuid(), agent_pubkey: o.agent.agent_pubkey, ttl_seconds: 900, policy };
  const auth = await api.authorizeGrant(terms);
  const message = checkAuthorizationMessage(SIM_DOMAIN, { wallet: o.wallet.address, purpose: { kind: "grant", ...terms } }, auth);
  const signed = await signAuthorizationWithWallet(o.wallet, message);
  const g = await api.createGrant({
    ...terms,
    nonce: auth.nonce,
    issued_at: auth.issued_at,
    signature: signed.signature,
    vault_record: o.vault.vault_record,
    vault_provenance: o.vault.provenance,
  });
  return { ...g, bot_id: terms.bot_id, message };
}

const signUnder = (o: Owner, g: { grant_record: string; bot_id: string }) =>
  api.sign({ grant_record: g.grant_record, agent_key_record: o.agent.agent_key_record, bot_id: g.bot_id, transaction: transfer(o.agent.agent_pubkey, 1_000_000) });

describe("revoke and export on the wallet's signature, against the simulation stack", { timeout: 300_000 }, () => {
  let alice: Owner;
  let bob: Owner;
  const bobSeed = new Uint8Array(randomBytes(32));

  before(async () => {
    sim = await startSim("user");
    api = new SignerClient({ baseUrl: sim.baseUrl, apiToken: sim.apiToken });
    alice = await owner();
    bob = await owner(bobSeed);
  });
  after(async () => {
    await sim?.stop();
  });

  it("renders grant messages in the registry the enclave returns", async () => {
    assert.deepEqual((await api.enclave()).registry, SIM_DOMAIN.registry);
    const g = await grant(alice);
    assert.match(
      g.message,
      /tokens: USDC up to 100\.5 per tx and 500 per day; programs: Jupiter v6 \(JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4\), with declared value up to \$500\.00 per tx/,
    );
    // Without the registry the same policy reads differently, and the check refuses the enclave's text.
    const terms = { wallet: alice.wallet.address, bot_id: randomUuid(), agent_pubkey: alice.agent.agent_pubkey, ttl_seconds: 900, policy };
    const auth = await api.authorizeGrant(terms);
    assert.throws(
      () => checkAuthorizationMessage({ ...SIM_DOMAIN, registry: undefined }, { wallet: alice.wallet.address, purpose: { kind: "grant", ...terms } }, auth),
      { name: "MessageMismatchError" },
    );
  });

  it("a second wallet cannot revoke the first wallet's grant", async () => {
    const g = await grant(alice);
    await signUnder(alice, g);
    // Bob signs a revocation naming Alice's grant id: it revokes only Bob's records of that id (none).
    const r = await revokeWithWallet({ domain: SIM_DOMAIN, wallet: bob.wallet, address: bob.wallet.address, scope: { grant_id: g.grant_id }, api });
    assert.match(r.message, new RegExp(`Revoke grant ${g.grant_id} of this wallet`));
    assert.equal(r.result.dropped_from_memory, 0);
    await signUnder(alice, g);
    // Bob's signature over a revoke message for Alice's wallet does not verify.
    const auth = await api.authorizeRevoke({ wallet: alice.wallet.address, grant_id: g.grant_id });
    const forged = ed25519.sign(utf8(auth.message), bobSeed);
    assert.equal(
      await code(api.revokeSigned({ wallet: alice.wallet.address, grant_id: g.grant_id, nonce: auth.nonce, issued_at: auth.issued_at, signature: forged })),
      "authorization_signature_invalid",
    );
    // Nor can Bob revoke everything of Alice's.
    const all = await api.authorizeRevoke({ wallet: alice.wallet.address, all: true });
    assert.equal(
      await code(api.revokeSigned({ wallet: alice.wallet.address, all: true, nonce: all.nonce, issued_at: all.issued_at, signature: ed25519.sign(utf8(all.message), bobSeed) })),
      "authorization_signature_invalid",
    );
    const signed = await signUnder(alice, g);
    assert.equal(signed.grant_id, g.grant_id);
  });

  it("a wallet revokes its own grant: signing under it then fails with grant_revoked", async () => {
    const g = await grant(alice);
    const other = await grant(alice);
    await signUnder(alice, g);
    const r = await revokeWithWallet({ domain: SIM_DOMAIN, wallet: alice.wallet, address: alice.wallet.address, scope: { grant_id: g.grant_id }, api });
    assert.deepEqual(r.result.revoked, { wallet: alice.wallet.address, grant_id: g.grant_id });
    assert.match(r.message, /^localhost wants you to sign in with your Solana account:\n/);
    assert.match(r.message, /- urn:signer:purpose:revoke\n/);
    assert.equal(await code(signUnder(alice, g)), "grant_revoked");
    // Only that one: the wallet's other grant still signs.
    await signUnder(alice, other);
  });

  it("a wallet revokes every grant it made up to now", async () => {
    const g = await grant(alice);
    await signUnder(alice, g);
    const r = await revokeWithWallet({ domain: SIM_DOMAIN, wallet: alice.wallet, address: alice.wallet.address, scope: { all: true }, api });
    assert.deepEqual(r.result.revoked, { wallet: alice.wallet.address, all: true });
    assert.equal(await code(signUnder(alice, g)), "grant_revoked");
    // A grant made afterwards signs.
    await signUnder(alice, await grant(alice));
  });

  it("exports the vault's master key to a non-extractable WebCrypto X25519 key", async () => {
    const key = await generateExportKey();
    assert.equal(key.keyPair.privateKey.extractable, false);
    const r = await exportWithWallet({
      domain: SIM_DOMAIN,
      wallet: alice.wallet,
      address: alice.wallet.address,
      vault_record: alice.vault.vault_record,
      vault_provenance: alice.vault.provenance,
      api,
      key,
    });
    assert.equal(r.kind, "vault");
    if (r.kind !== "vault") return;
    assert.equal(r.master_key.length, 32);
    assert.equal(r.vault_id, alice.vault.vault_id);
    assert.equal(r.recipient_hex, toHex(key.publicKey));
    assert.match(r.message, new RegExp(`Export the master key of vault ${alice.vault.vault_id} to the key ${toHex(key.publicKey)} your browser holds`));
    // Again, to another key: the same master key.
    const again = await exportWithWallet({ domain: SIM_DOMAIN, wallet: alice.wallet, address: alice.wallet.address, vault_record: alice.vault.vault_record, vault_provenance: alice.vault.provenance, api });
    assert.equal(again.kind === "vault" && toHex(again.master_key), toHex(r.master_key));
    assert.notEqual(again.recipient_hex, r.recipient_hex);
  });

  it("exports a seed agent: Keypair.fromSeed(seed) is the agent", async () => {
    const r = await exportWithWallet({
      domain: SIM_DOMAIN,
      wallet: alice.wallet,
      address: alice.wallet.address,
      vault_record: alice.vault.vault_record,
      vault_provenance: alice.vault.provenance,
      agent_key_record: alice.agent.agent_key_record,
      api,
    });
    assert.equal(r.kind, "seed");
    if (r.kind !== "seed") return;
    assert.match(r.message, new RegExp(`Export the seed of agent ${alice.agent.agent_pubkey} to the key ${r.recipient_hex}`));
    assert.equal(Keypair.fromSeed(r.seed).publicKey.toBase58(), alice.agent.agent_pubkey);
  });

  it("exports a mnemonic agent: its words derive the agent on Phantom's path (ed25519-hd-key, web3.js)", async () => {
    const agent = await api.createAgent({
      wallet: alice.wallet.address,
      vault_record: alice.vault.vault_record,
      vault_provenance: alice.vault.provenance,
      kind: "mnemonic",
      account: 0,
    });
    const r = await exportWithWallet({
      domain: SIM_DOMAIN,
      wallet: alice.wallet,
      address: alice.wallet.address,
      vault_record: alice.vault.vault_record,
      vault_provenance: alice.vault.provenance,
      agent_key_record: agent.agent_key_record,
      api,
    });
    assert.equal(r.kind, "mnemonic");
    if (r.kind !== "mnemonic") return;
    assert.match(r.message, new RegExp(`Export the recovery phrase of agent ${agent.agent_pubkey} to the key ${r.recipient_hex}`));
    const words = r.words.split(" ");
    assert.ok([12, 15, 18, 21, 24].includes(words.length), r.words);
    assert.ok(validateMnemonic(r.words, english));
    // The oracle: BIP39 seed by PBKDF2-HMAC-SHA512 (node:crypto), SLIP-0010 by ed25519-hd-key, key by web3.js.
    const seed = pbkdf2Sync(Buffer.from(r.words.normalize("NFKD"), "utf8"), "mnemonic", 2048, 64, "sha512");
    const { key } = derivePath("m/44'/501'/0'/0'", seed.toString("hex"));
    assert.equal(Keypair.fromSeed(key).publicKey.toBase58(), agent.agent_pubkey);
    assert.equal(r.agent_pubkey, agent.agent_pubkey);
    assert.equal(r.path, "m/44'/501'/0'/0'");
  });

  it("refuses what is not the wallet's; a repeated export is sealed to the same key only", async () => {
    // Bob asks for Alice's vault: refused before any message is rendered.
    const key = await generateExportKey();
    const c = await code(
      api.authorizeExport({ wallet: bob.wallet.address, vault_record: alice.vault.vault_record, vault_provenance: alice.vault.provenance, recipient: key.publicKey }),
    );
    assert.ok(["record_invalid", "provenance_invalid"].includes(c), c);
    // The same signed export again (a lost reply) is answered again, sealed to the same key only.
    const body = { wallet: alice.wallet.address, vault_record: alice.vault.vault_record, vault_provenance: alice.vault.provenance, recipient: key.publicKey };
    const auth = await api.authorizeExport(body);
    const signed = await signAuthorizationWithWallet(alice.wallet, auth.message);
    const request = { ...body, nonce: auth.nonce, issued_at: auth.issued_at, signature: signed.signature };
    const first = await api.exportSecret(request);
    const second = await api.exportSecret(request);
    assert.equal(first.kind, "vault");
    assert.notEqual(first.enc, second.enc, "fresh HPKE randomness");
    const open = (reply: { enc: string; ciphertext: string }) =>
      openExport({ key, wallet: alice.wallet.address, record: alice.vault.vault_record, enc: reply.enc, ciphertext: reply.ciphertext });
    assert.equal(toHex(await open(first)), toHex(await open(second)));
    // Not under another wallet's name, nor for another record.
    await assert.rejects(openExport({ key, wallet: bob.wallet.address, record: alice.vault.vault_record, enc: first.enc, ciphertext: first.ciphertext }), { name: "ExportError" });
    // The signed message names the recipient: another key with the same signature does not verify.
    const auth2 = await api.authorizeExport(body);
    const signed2 = await signAuthorizationWithWallet(alice.wallet, auth2.message);
    const other = await generateExportKey();
    assert.equal(
      await code(api.exportSecret({ ...body, recipient: other.publicKey, nonce: auth2.nonce, issued_at: auth2.issued_at, signature: signed2.signature })),
      "authorization_signature_invalid",
    );
  });
});
