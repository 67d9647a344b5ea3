// A scheduled transfer against the simulation stack, end to end, with the package's own functions:
// seal a scheduled record to the pinned KMS key (WebCrypto, as a browser does), then sign its one
// transfer through the API (as a backend does at the scheduled time), verify the signature, and
// show that the record cannot be used twice.
//
// Where the seed comes from: the record's plaintext is a 32-byte ed25519 seed, and the enclave
// signs as whatever key that seed derives. It is NOT the seed of an agent made by
// `POST /v1/agents`: those are generated in the enclave and never leave it. It is a key the user
// holds: a `solana-keygen` keypair file (AGENT_KEYPAIR; its first 32 bytes are the seed), or, by
// default, a fresh key generated here (on a real cluster, fund its address before the window).
//
//   scripts/sim.sh &                                      # from the repository root
//   (cd clients/typescript && npm ci && npm run build)
//   node clients/typescript/examples/scheduled-transfer.mjs
//
// Environment (all optional): SIGNER_DATA_DIR (default .sim-data; relative to the repository root,
// as scripts/sim.sh runs there), SIGNER_HTTP_ADDR (127.0.0.1:8787), SIGNER_API_TOKEN (default: the
// data directory's tokens.json), AGENT_KEYPAIR (a solana-keygen JSON file), WALLET (the user's
// wallet, base58: the owner a wallet-wide revocation names), DESTINATION (base58; default random),
// LAMPORTS (default 1000000).

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { PublicKey, SystemProgram, Transaction } from "@solana/web3.js";

import { SignerApiError, SignerClient, fromBase64, sealScheduledRecord } from "@signing-enclave/client";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const randomKey = () => new PublicKey(crypto.getRandomValues(new Uint8Array(32))).toBase58();
const env = (name, fallback) => (process.env[name] === undefined || process.env[name] === "" ? fallback : process.env[name]);

const dataDir = path.resolve(repoRoot, env("SIGNER_DATA_DIR", ".sim-data"));
const baseUrl = `http://${env("SIGNER_HTTP_ADDR", "127.0.0.1:8787")}`;
const apiToken = env("SIGNER_API_TOKEN", undefined) ?? JSON.parse(readFileSync(path.join(dataDir, "tokens.json"), "utf8")).api;
const wallet = env("WALLET", "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T");
const destination = env("DESTINATION", randomKey());
const lamports = Number(env("LAMPORTS", "1000000"));

// The key the transfer spends from, held by the user.
let agentSeed;
if (env("AGENT_KEYPAIR", undefined) !== undefined) {
  const keypair = JSON.parse(readFileSync(process.env.AGENT_KEYPAIR, "utf8"));
  if (!Array.isArray(keypair) || keypair.length !== 64) throw new Error("AGENT_KEYPAIR: expected a solana-keygen file (64 numbers)");
  agentSeed = Uint8Array.from(keypair.slice(0, 32));
} else {
  agentSeed = crypto.getRandomValues(new Uint8Array(32));
}

// The KMS key to seal to, as the enclave's measured config pins it. A real frontend pins it at
// build time (`aws kms get-public-key`); the API's copy passes through the host, so it is only
// compared here.
const toml = readFileSync(path.join(dataDir, "enclave.toml"), "utf8");
const pinned = /^kms_public_key = "([A-Za-z0-9+/=]+)"$/m.exec(toml)?.[1];
if (pinned === undefined) throw new Error(`no kms_public_key in ${path.join(dataDir, "enclave.toml")}`);

const signer = new SignerClient({ baseUrl, apiToken });
const enclave = await signer.enclave();
if (enclave.kms_public_key !== pinned) throw new Error("the API's KMS public key is not the pinned one: refusing to seal to it");

// 1. In the browser: seal the record. The window here is open now, for the demo; a real one
//    is the user's chosen time (at most 48 h long, ending within 30 days).
const now = Math.floor(Date.now() / 1000);
const sealed = await sealScheduledRecord({
  kmsPublicKey: fromBase64(pinned),
  wallet,
  agentSeed,
  enclave_id: enclave.enclave_id,
  not_before: now - 60,
  not_after: now + 3600,
  max_fee_lamports: 10_000,
  intent: { destination, amount: BigInt(lamports) },
});
agentSeed.fill(0);
console.log(`sealed      scheduled record ${sealed.schedule_id} (${sealed.record.length} bytes) on enclave ${enclave.enclave_id}`);
console.log(`agent       ${sealed.agent_pubkey} (the key the transfer spends from)`);
console.log(`intent      ${lamports} lamports to ${destination}`);

// 2. At the scheduled time, on the backend: the transfer, exactly the intent, agent as fee payer.
//    (On a real cluster the blockhash is a recent one, fetched at that time.)
const agent = new PublicKey(sealed.agent_pubkey);
const tx = new Transaction({ feePayer: agent, recentBlockhash: randomKey() });
tx.add(SystemProgram.transfer({ fromPubkey: agent, toPubkey: new PublicKey(destination), lamports }));
const unsigned = new Uint8Array(tx.serialize({ requireAllSignatures: false, verifySignatures: false }));
const signed = await signer.signScheduled({ scheduled_record: sealed.record, transaction: unsigned });
const verified = Transaction.from(Buffer.from(signed.transaction, "base64")).verifySignatures(true);
if (!verified) throw new Error("the signed transaction does not verify");
console.log(`signed      ${signed.signature} (verified: ed25519 by ${sealed.agent_pubkey})`);

// 3. Single use: the same record cannot sign again.
try {
  await signer.signScheduled({ scheduled_record: sealed.record, transaction: unsigned });
  throw new Error("the record signed twice");
} catch (e) {
  if (!(e instanceof SignerApiError) || e.code !== "replayed_request") throw e;
  console.log(`again       refused: ${e.status} ${e.code}`);
}

