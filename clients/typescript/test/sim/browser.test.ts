// The browser side in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core over the DevTools protocol): examples/browser/ runs the flow against the
// simulation stack, its signed transactions are verified here with @solana/web3.js, the recovery
// phrase it exported to a WebCrypto X25519 key (opened in the page with HPKE) is checked here with
// an independent derivation (PBKDF2, ed25519-hd-key, web3.js), the grant it revoked refuses to sign,
// and a screenshot is saved under the test output; then the golden vectors (every purpose, with the
// registry), the records.md sealing example and real AWS attestation documents are checked by the
// package inside the page.

import assert from "node:assert/strict";
import { pbkdf2Sync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";

import { Keypair, Transaction } from "@solana/web3.js";
import { derivePath } from "ed25519-hd-key";
import { type BrowserContext, type Page, chromium } from "playwright-core";

import { fromBase58, toHex } from "@signing-enclave/client";

import { outputDir, packageRoot, repoRoot, vectorsDir } from "../support/paths.js";
import { type Sim, startSim } from "../support/sim.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let sim: Sim;
let example: { url: string; close(): Promise<void> };
let context: BrowserContext;
let page: Page;
let profile: string;
const pageErrors: string[] = [];

/** Verifies a signed transaction with @solana/web3.js and that it signs what the backend built. */
function verifySigned(signed: string, unsigned: string, signer: string, signature: string): void {
  const tx = Transaction.from(Buffer.from(signed, "base64"));
  assert.ok(tx.verifySignatures(true), "web3.js verifies every signature");
  assert.equal(tx.signatures[0]!.publicKey.toBase58(), signer);
  assert.equal(toHex(new Uint8Array(tx.signatures[0]!.signature!)), toHex(fromBase58(signature, 64)));
  assert.equal(toHex(new Uint8Array(tx.serializeMessage())), toHex(new Uint8Array(Buffer.from(unsigned, "base64")).subarray(65)));
}

describe("examples/browser in headless Chromium against the simulation stack", { timeout: 300_000 }, () => {
  before(async () => {
    sim = await startSim("browser");
    const server = await import(pathToFileURL(path.join(packageRoot, "examples/browser/server.mjs")).href);
    example = await server.startExampleServer({ signerUrl: sim.baseUrl, apiToken: sim.apiToken, dataDir: sim.dataDir });
    profile = mkdtempSync(path.join(tmpdir(), "signer-ts-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: { width: 1100, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(m.text());
    });
  });

  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await example?.close();
    await sim?.stop();
  });

  it("runs the example's whole flow; web3.js verifies what the enclave signed", async () => {
    const refused: string[] = [];
    const onResponse = (r: { status(): number; url(): string }) => {
      if (r.status() >= 400) refused.push(`${r.status()} ${new URL(r.url()).pathname}`);
    };
    page.on("response", onResponse);
    await page.goto(example.url);
    const secure = await page.evaluate(() => window.isSecureContext && typeof crypto.subtle !== "undefined");
    assert.ok(secure, "the page has WebCrypto");
    await page.click("#run");
    await page.waitForFunction(() => ["done", "error"].includes((window as any).__flow?.status), undefined, { timeout: 120_000 });
    const flow = await page.evaluate(() => (window as any).__flow);
    mkdirSync(outputDir, { recursive: true });
    const shot = path.join(outputDir, "browser-flow.png");
    await page.screenshot({ path: shot, fullPage: true });
    assert.equal(flow.status, "done", `${flow.error ?? ""}\n${pageErrors.join("\n")}`);
    const r = flow.results;
    assert.equal(await page.locator("li.ok").count(), 8);
    assert.equal(await page.locator("li.fail").count(), 0);
    assert.match(r.message, /^localhost wants you to sign in with your Solana account:\n/);
    verifySigned(r.sign.transaction, r.sign.unsigned, r.agent_pubkey, r.sign.signature);
    verifySigned(r.scheduled.transaction, r.scheduled.unsigned, r.scheduled.agent_pubkey, r.scheduled.signature);
    assert.equal(r.sign.route, r.scheduled.route);
    // The recovery phrase opened in Chromium derives the agent, by an independent derivation.
    assert.match(r.exported.message, /^Export the recovery phrase of agent /m);
    const seed = pbkdf2Sync(Buffer.from(r.exported.words, "utf8"), "mnemonic", 2048, 64, "sha512");
    const { key } = derivePath("m/44'/501'/0'/0'", seed.toString("hex"));
    assert.equal(Keypair.fromSeed(key).publicKey.toBase58(), r.exported.agent_pubkey);
    assert.equal(r.exported.derived, r.exported.agent_pubkey);
    // The grant the wallet revoked refuses to sign.
    assert.match(r.revoked.message, /^Revoke grant [0-9a-f-]{36} of this wallet: no bot can sign with it from now on\.$/m);
    assert.match(r.revoked.refusal, /grant_revoked/);
    // The one refused request is that signature after the revocation; Chromium logs it, nothing else.
    page.off("response", onResponse);
    assert.deepEqual(refused, ["403 /app/sign"]);
    const logged403 = /Failed to load resource: the server responded with a status of 403/;
    assert.equal(pageErrors.filter((e) => logged403.test(e)).length, 1);
    pageErrors.splice(0, pageErrors.length, ...pageErrors.filter((e) => !logged403.test(e)));
    assert.deepEqual(pageErrors, []);
    assert.ok(readFileSync(shot).length > 10_000, `screenshot at ${shot}`);
  });

  it("stops before the wallet signs when the backend hands over another message", async () => {
    // A backend (or anything in between) raises the per-transaction limit in the text to sign.
    await page.route("**/app/grants/authorize", async (route) => {
      const response = await route.fetch();
      const json = await response.json();
      json.message = json.message.replace("SOL 1 per tx", "SOL 100 per tx");
      await route.fulfill({ response, json });
    });
    try {
      await page.goto(example.url);
      await page.click("#run");
      await page.waitForFunction(() => ["done", "error"].includes((window as any).__flow?.status), undefined, { timeout: 120_000 });
      const flow = await page.evaluate(() => (window as any).__flow);
      await page.screenshot({ path: path.join(outputDir, "browser-refused-message.png"), fullPage: true });
      assert.equal(flow.status, "error");
      assert.match(flow.error, /MessageMismatchError: the message to sign is not the one these fields render/);
      assert.equal(await page.locator("li.ok").count(), 2, "vault and agent went through");
      assert.equal(await page.locator("li.fail").count(), 1);
      assert.equal(await page.locator("#message").textContent(), "(not yet)", "nothing was shown for signing");
    } finally {
      await page.unroute("**/app/grants/authorize");
    }
  });

  it("checks the golden vectors, the sealing example and real AWS documents inside the page", async () => {
    const golden = readFileSync(path.join(repoRoot, "clients/vectors/golden.json"), "utf8");
    const records = readFileSync(path.join(repoRoot, "docs/records.md"), "utf8");
    const manifest = JSON.parse(readFileSync(path.join(vectorsDir(), "attestation/manifest.json"), "utf8"));
    const docs = manifest
      .filter((e: any) => e.expected === "valid")
      .map((e: any) => ({ ...e, hex: readFileSync(path.join(vectorsDir(), "attestation", e.file)).toString("hex") }));
    const out = await page.evaluate(
      async ({ golden, records, docs }) => {
        const m: any = await import("@signing-enclave/client");
        const failures: string[] = [];
        const check = (ok: boolean, what: string) => {
          if (!ok) failures.push(what);
        };
        // Golden vectors: messages, policy bytes and hashes, grant ids, enclave ids, bindings.
        const g: any = m.parseJson(golden);
        const kinds = new Set<string>();
        for (const v of g.messages) {
          const p = v.purpose;
          const purpose =
            p.kind === "grant"
              ? { kind: "grant", bot_id: p.bot_id, agent_pubkey: p.agent_pubkey, ttl_seconds: p.ttl_seconds, policy: p.policy }
              : p.kind === "import-vault"
                ? { kind: "import-vault", vault_id: p.vault_id, vault_record_sha256: p.vault_record_sha256 }
                : p.kind === "revoke"
                  ? p.all
                    ? { kind: "revoke", all: true }
                    : { kind: "revoke", grant_id: p.grant_id }
                  : p.vault_id !== undefined
                    ? { kind: "export", vault_id: p.vault_id, record_sha256: p.record_sha256, recipient: p.recipient_hex }
                    : { kind: "export", agent_pubkey: p.agent_pubkey, mnemonic: p.mnemonic, record_sha256: p.record_sha256, recipient: p.recipient_hex };
          kinds.add(p.kind);
          const text = m.renderMessage(g.domain, { wallet: v.wallet, enclave_id: v.enclave_id, nonce: v.nonce, issued_at: v.issued_at, purpose });
          check(text === v.message, `message ${v.name}`);
          check(m.verifyEd25519Strict(m.fromBase58(v.wallet, 32), m.utf8(v.message), m.fromBase58(v.signature_base58, 64)), `signature ${v.name}`);
          if (p.kind === "grant") {
            check(m.toHex(m.policyCanonicalBytes(p.policy)) === p.policy_canonical_hex, `policy bytes ${v.name}`);
            check(m.policySummary(p.policy, g.domain.registry) === p.policy_summary, `summary ${v.name}`);
            check(m.grantId(v.signature_base58) === p.grant_id, `grant id ${v.name}`);
          }
        }
        check(kinds.size === 4 && g.messages.length === 9, `every purpose: ${[...kinds].join(", ")}`);
        for (const e of g.enclave_ids) check(m.enclaveIdFromRecipientKey(m.fromHex(e.recipient_spki_hex)) === e.enclave_id, "enclave id");
        for (const p of g.provenance) {
          check(m.toHex(m.provenanceUserData(m.fromHex(p.record_hex), p.vault_id ?? undefined)) === p.user_data_hex, "binding");
        }
        // The records.md scheduled-key example, sealed by WebCrypto in this browser.
        const block = (name: string) => m.fromHex(new RegExp(`<!-- ${name} -->\\n\`\`\`text\\n([\\s\\S]*?)\`\`\``).exec(records)![1]!.replace(/\s+/g, ""));
        const kms = await crypto.subtle.generateKey(
          { name: "RSA-OAEP", modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
          true,
          ["encrypt", "decrypt"],
        );
        const chunks = [Uint8Array.from({ length: 32 }, (_, i) => i), Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i)];
        const sealed = await m.sealScheduledRecord(
          {
            kmsPublicKey: kms.publicKey,
            wallet: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
            agentSeed: new Uint8Array(32).fill(0x42),
            schedule_id: "00112233-4455-6677-8899-aabbccddeeff",
            not_before: 1767268800,
            not_after: 1767355200,
            max_fee_lamports: 10000,
            intent: { destination: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", amount: 1000000000 },
            created_at: 1767265200,
            enclave_id: "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
          },
          { random: (n: number) => chunks.shift()!.slice(0, n) },
        );
        const r = sealed.record;
        check(m.toHex(r.subarray(0, 165)) === m.toHex(block("aad")), "scheduled aad");
        check(m.toHex(r.subarray(564)) === m.toHex(block("gcm")), "scheduled gcm");
        const key = new Uint8Array(await crypto.subtle.decrypt({ name: "RSA-OAEP" }, kms.privateKey, r.slice(168, 552)));
        check(m.toHex(key) === m.toHex(Uint8Array.from({ length: 32 }, (_, i) => i)), "wrapped key");
        // Real AWS documents: chain at their own time, signature over the original payload,
        // provenance policy; a tampered signature is refused.
        const root = m.awsNitroRootG1();
        let verified = 0;
        for (const e of docs) {
          const bytes = m.fromHex(e.hex);
          m.verifyAttestationDocument(bytes, root, e.chain_valid_from_unix);
          verified++;
          const d = m.parseAttestationDocument(bytes);
          if (!m.isDebugMode(d.pcrs) && d.user_data) {
            m.verifyAtDocumentTime(bytes, m.awsTrust([new Map([0, 1, 2].map((i: number) => [i, d.pcrs.get(i)]))]), d.user_data);
          }
          const bad = bytes.slice();
          bad[bad.length - 1] ^= 1;
          try {
            m.verifyAttestationDocument(bad, root, e.chain_valid_from_unix);
            failures.push(`tampered ${e.file} verified`);
          } catch (err: any) {
            check(err.kind === "signature", `tampered ${e.file}: ${err}`);
          }
        }
        return { failures, verified, userAgent: navigator.userAgent };
      },
      { golden, records, docs },
    );
    assert.deepEqual(out.failures, []);
    assert.equal(out.verified, docs.length);
    assert.match(out.userAgent, /Chrome\//);
  });
});
