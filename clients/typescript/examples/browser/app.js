// The browser side of the flow, with @signing-enclave/client. What to copy:
// - check every provenance document against the PINNED root and images before trusting a record;
// - re-render every message from what the user chose before the wallet signs it;
// - seal secrets (a scheduled transfer's agent seed, an imported master key) to the PINNED KMS key;
// - take a secret out only to an X25519 key this page generated (exportWithWallet), and let the
//   wallet revoke its grants itself (revokeWithWallet).
// The backend (/app/*, see server.mjs) holds the API token and relays to the signing enclave.

import {
  checkAuthorizationMessage,
  exportWithWallet,
  fromBase58,
  fromBase64,
  grantId,
  imageFromMeasurements,
  pemToDer,
  randomUuid,
  revokeWithWallet,
  sealImportedVault,
  sealScheduledRecord,
  signAuthorizationWithWallet,
  toBase58,
  toBase64,
  verifyEd25519Strict,
  verifyProvenance,
} from "@signing-enclave/client";
import { TestWallet } from "@signing-enclave/client/testing";
import { sha256 } from "@noble/hashes/sha2.js";

// Build-time pins (production: the AWS root via awsNitroRootG1(), your image's measurements,
// the key from `aws kms get-public-key`, your [authorization] domain).
import { DOMAIN, KMS_PUBLIC_KEY_BASE64, MEASUREMENTS, TRUST_ROOT_PEM } from "./config.js";

const trust = { root: pemToDer(TRUST_ROOT_PEM), images: [imageFromMeasurements(MEASUREMENTS)] };
const kmsPublicKey = fromBase64(KMS_PUBLIC_KEY_BASE64);

const POLICY = {
  max_lamports_per_tx: 1_000_000_000,
  max_lamports_per_day: 5_000_000_000,
  max_fee_lamports: 100_000,
  tokens: [],
  allowed_programs: [],
  max_notional_cents_per_tx: 0,
  max_notional_cents_per_day: 0,
};

/** The integrator's backend, as the `api` of revokeWithWallet and exportWithWallet. */
const relay = {
  authorizeRevoke: (b) => backend("revoke/authorize", b),
  revokeSigned: (b) => backend("revoke", b),
  authorizeExport: (b) => backend("export/authorize", b),
  exportSecret: (b) => backend("export", b),
};

/** The integrator's backend. */
async function backend(route, body) {
  const r = await fetch(`/app/${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${route}: ${json.code}: ${json.detail}`);
  return json;
}

const steps = document.getElementById("steps");
const short = (s) => (s.length > 24 ? `${s.slice(0, 12)}…${s.slice(-8)}` : s);

async function step(title, fn) {
  const li = document.createElement("li");
  li.innerHTML = `<span class="mark">…</span><span class="title"></span><div class="detail"></div>`;
  li.querySelector(".title").textContent = title;
  steps.append(li);
  try {
    const { detail, value } = await fn();
    li.className = "ok";
    li.querySelector(".mark").textContent = "✓";
    li.querySelector(".detail").textContent = detail;
    return value;
  } catch (e) {
    li.className = "fail";
    li.querySelector(".mark").textContent = "✗";
    li.querySelector(".detail").textContent = String(e);
    throw e;
  }
}

async function run() {
  const results = {};
  // A real app asks the user's wallet (Wallet Standard, e.g. through @wallet-standard/app).
  const wallet = new TestWallet();
  results.wallet = wallet.address;

  const vault = await step("Vault created in the enclave; provenance verified", async () => {
    const v = await backend("vaults", { wallet: wallet.address });
    verifyProvenance({ document: v.provenance, record: v.vault_record, trust });
    return { value: v, detail: `vault ${v.vault_id}` };
  });

  const agent = await step("Agent made from the vault; provenance verified (bound to that vault)", async () => {
    const a = await backend("agents", {
      wallet: wallet.address,
      vault_record: vault.vault_record,
      vault_provenance: vault.provenance,
    });
    verifyProvenance({ document: a.provenance, record: a.agent_key_record, vault: vault.vault_id, trust });
    return { value: a, detail: `agent ${a.agent_pubkey}` };
  });
  results.agent_pubkey = agent.agent_pubkey;

  const terms = { wallet: wallet.address, bot_id: randomUuid(), agent_pubkey: agent.agent_pubkey, ttl_seconds: 900, policy: POLICY };
  const grant = await step("Grant message re-rendered and checked, signed by the wallet, grant created", async () => {
    const auth = await backend("grants/authorize", terms);
    const purpose = { kind: "grant", bot_id: terms.bot_id, agent_pubkey: terms.agent_pubkey, ttl_seconds: terms.ttl_seconds, policy: POLICY };
    const message = checkAuthorizationMessage(DOMAIN, { wallet: wallet.address, purpose }, auth);
    document.getElementById("message").textContent = message;
    const signed = await signAuthorizationWithWallet(wallet, message);
    const g = await backend("grants", {
      ...terms,
      nonce: auth.nonce,
      issued_at: auth.issued_at,
      signature: signed.signature_base58,
      vault_record: vault.vault_record,
      vault_provenance: vault.provenance,
    });
    if (g.grant_id !== grantId(signed.signature)) throw new Error("the grant id is not the one the signature determines");
    results.message = message;
    return { value: g, detail: `grant ${g.grant_id} on enclave ${g.enclave_id}` };
  });

  results.sign = await step("Backend had a 0.01 SOL transfer signed under the grant", async () => {
    const to = toBase58(crypto.getRandomValues(new Uint8Array(32)));
    const s = await backend("sign", {
      grant_record: grant.grant_record,
      agent_key_record: agent.agent_key_record,
      bot_id: terms.bot_id,
      agent_pubkey: agent.agent_pubkey,
      to,
      lamports: 10_000_000,
    });
    const unsigned = fromBase64(s.unsigned);
    const ok = verifyEd25519Strict(fromBase58(agent.agent_pubkey, 32), unsigned.subarray(65), fromBase58(s.signature, 64));
    if (!ok) throw new Error("the agent's signature does not verify");
    return { value: s, detail: `signature ${short(s.signature)}` };
  });

  results.scheduled = await step("Scheduled transfer sealed here (WebCrypto, pinned KMS key) and signed once", async () => {
    const agentSeed = crypto.getRandomValues(new Uint8Array(32)); // the user's agent key, in the browser
    const destination = toBase58(crypto.getRandomValues(new Uint8Array(32)));
    const now = Math.floor(Date.now() / 1000);
    const { enclave_id } = grant; // the instance that will sign it (GET /v1/enclave)
    const sealed = await sealScheduledRecord({
      kmsPublicKey,
      wallet: wallet.address,
      agentSeed,
      not_before: now - 10,
      not_after: now + 3600,
      max_fee_lamports: 10_000,
      intent: { destination, amount: 123_456 },
      enclave_id,
    });
    agentSeed.fill(0);
    const s = await backend("scheduled", {
      scheduled_record: toBase64(sealed.record),
      agent_pubkey: sealed.agent_pubkey,
      destination,
      lamports: 123_456,
    });
    return { value: { ...s, agent_pubkey: sealed.agent_pubkey }, detail: `record ${sealed.record.length} bytes, signature ${short(s.signature)}` };
  });

  results.imported = await step("Master key imported: vault sealed here, import message checked and signed, provenance verified", async () => {
    const umk = crypto.getRandomValues(new Uint8Array(32));
    const sealed = await sealImportedVault({ kmsPublicKey, wallet: wallet.address, umk });
    umk.fill(0);
    const record = toBase64(sealed.record);
    const auth = await backend("import/authorize", { wallet: wallet.address, vault_record: record });
    const purpose = { kind: "import-vault", vault_id: sealed.vault_id, vault_record_sha256: sha256(sealed.record) };
    const message = checkAuthorizationMessage(DOMAIN, { wallet: wallet.address, purpose }, auth);
    const signed = await signAuthorizationWithWallet(wallet, message);
    const imported = await backend("import", { wallet: wallet.address, vault_record: record, nonce: auth.nonce, issued_at: auth.issued_at, signature: signed.signature_base58 });
    verifyProvenance({ document: imported.provenance, record: sealed.record, trust });
    return { value: { vault_id: imported.vault_id }, detail: `vault ${imported.vault_id}` };
  });

  results.exported = await step("Recovery phrase exported: WebCrypto X25519 key made here, message checked and signed, HPKE reply opened here", async () => {
    const m = await backend("agents", {
      wallet: wallet.address,
      vault_record: vault.vault_record,
      vault_provenance: vault.provenance,
      kind: "mnemonic",
      account: 0,
    });
    verifyProvenance({ document: m.provenance, record: m.agent_key_record, vault: vault.vault_id, trust });
    const r = await exportWithWallet({
      domain: DOMAIN,
      wallet,
      address: wallet.address,
      vault_record: vault.vault_record,
      vault_provenance: vault.provenance,
      agent_key_record: m.agent_key_record,
      api: relay,
    });
    // A real page shows the words to the user once and forgets them; the demo hands them to the test.
    const words = r.words.split(" ");
    return {
      value: { agent_pubkey: m.agent_pubkey, words: r.words, derived: r.agent_pubkey, path: r.path, message: r.message },
      detail: `${words.length} words (${words[0]} … ${words[words.length - 1]}), ${r.path} derives ${r.agent_pubkey}`,
    };
  });

  results.revoked = await step("Grant revoked by the wallet: revoke message checked and signed; the backend's next signature is refused", async () => {
    const r = await revokeWithWallet({ domain: DOMAIN, wallet, address: wallet.address, scope: { grant_id: grant.grant_id }, api: relay });
    let refusal = "signed";
    try {
      await backend("sign", {
        grant_record: grant.grant_record,
        agent_key_record: agent.agent_key_record,
        bot_id: terms.bot_id,
        agent_pubkey: agent.agent_pubkey,
        to: toBase58(crypto.getRandomValues(new Uint8Array(32))),
        lamports: 10_000_000,
      });
    } catch (e) {
      refusal = String(e.message);
    }
    if (!refusal.includes("grant_revoked")) throw new Error(`signing after the revocation: ${refusal}`);
    return { value: { grant_id: grant.grant_id, message: r.message, refusal }, detail: `grant ${grant.grant_id}: ${refusal}` };
  });
  return results;
}

const button = document.getElementById("run");
const status = document.getElementById("status");
window.__flow = { status: "idle" };
button.addEventListener("click", async () => {
  button.disabled = true;
  steps.replaceChildren();
  window.__flow = { status: "running" };
  status.textContent = "running…";
  try {
    const results = await run();
    window.__flow = { status: "done", results };
    status.textContent = "done: every check passed";
  } catch (e) {
    window.__flow = { status: "error", error: String(e && e.stack ? e.stack : e) };
    status.textContent = "failed";
  } finally {
    button.disabled = false;
  }
});
