// The example's two halves in one small Node process:
//
// - the FRONTEND's static files: index.html, app.js, the built package and its dependencies
//   (served for the import map; a bundler would inline them), and config.js, the values a real
//   frontend pins at build time (authorization domain and registry, trust root, enclave images,
//   KMS key);
// - the BACKEND, /app/*: the integrator's server. It alone holds the API token and talks to the
//   signing enclave's parent with SignerClient; the browser never sees the token, a master key
//   or an agent key.
//
//   node examples/browser/server.mjs      (after `npm run build`; needs a running simulation stack)
//   SIGNER_URL=http://127.0.0.1:8787 SIGNER_API_TOKEN=… SIGNER_DATA_DIR=.sim-data (relative to the
//   repository root, as scripts/sim.sh reads it)
//
// The Chromium test starts it with `startExampleServer()`.

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { PublicKey, SystemProgram, Transaction } from "@solana/web3.js";

import { SignerClient, SignerApiError, fromBase64, stringifyJson } from "@signing-enclave/client";

const here = path.dirname(fileURLToPath(import.meta.url));
const packageRoot = path.resolve(here, "../..");

/** URL prefix → directory served under it. */
const STATIC = [
  ["/pkg/", path.join(packageRoot, "dist")],
  ["/vendor/@noble/curves/", path.join(packageRoot, "node_modules/@noble/curves")],
  ["/vendor/@noble/hashes/", path.join(packageRoot, "node_modules/@noble/hashes")],
  ["/vendor/@scure/base/", path.join(packageRoot, "node_modules/@scure/base")],
  ["/vendor/@scure/bip39/", path.join(packageRoot, "node_modules/@scure/bip39")],
  ["/vendor/@hpke/core/", path.join(packageRoot, "node_modules/@hpke/core")],
  ["/vendor/@hpke/common/", path.join(packageRoot, "node_modules/@hpke/common")],
  ["/", here],
];

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".css": "text/css", ".png": "image/png" };

/** The `[authorization]` table and the pinned KMS key of the enclave's measured config. */
function enclaveConfig(dataDir) {
  const toml = readFileSync(path.join(dataDir, "enclave.toml"), "utf8");
  const value = (section, key) => {
    const body = section ? (toml.split(`[${section}]`)[1] ?? "") : toml.split(/^\[/m)[0];
    const m = new RegExp(`^${key} = (?:"([^"]*)"|(\\d+))$`, "m").exec(body);
    if (!m) throw new Error(`${key} not found in enclave.toml`);
    return m[1] ?? Number(m[2]);
  };
  // [[authorization.tokens]] and [[authorization.programs]]: the registry the messages use.
  const tables = (name) =>
    toml
      .split(/^(?=\[)/m)
      .filter((block) => block.startsWith(`[[authorization.${name}]]`))
      .map((block) => Object.fromEntries([...block.matchAll(/^(\w+) = (?:"([^"]*)"|(\d+))$/gm)].map((m) => [m[1], m[2] ?? Number(m[3])])));
  return {
    domain: {
      domain: value("authorization", "domain"),
      uri: value("authorization", "uri"),
      chain_id: value("authorization", "chain_id"),
      validity_seconds: value("authorization", "validity_seconds"),
      registry: { tokens: tables("tokens"), programs: tables("programs") },
    },
    kmsPublicKey: value(null, "kms_public_key"),
  };
}

/** An unsigned SOL transfer (what a bot builds), signature slots zero. */
function transfer(from, to, lamports) {
  const tx = new Transaction({
    feePayer: new PublicKey(from),
    recentBlockhash: new PublicKey(crypto.getRandomValues(new Uint8Array(32))).toBase58(),
  });
  tx.add(SystemProgram.transfer({ fromPubkey: new PublicKey(from), toPubkey: new PublicKey(to), lamports }));
  return new Uint8Array(tx.serialize({ requireAllSignatures: false, verifySignatures: false }));
}

function backend(signer) {
  /** The backend's routes: each is a thin wrapper over one or two SignerClient calls. */
  return {
    "/app/vaults": ({ wallet }) => signer.createVault(wallet),
    "/app/agents": (b) => signer.createAgent(b),
    "/app/grants/authorize": (terms) => signer.authorizeGrant(terms),
    "/app/grants": (b) => signer.createGrant(b),
    "/app/sign": async ({ grant_record, agent_key_record, bot_id, agent_pubkey, to, lamports }) => {
      const unsigned = transfer(agent_pubkey, to, lamports);
      const r = await signer.sign({ grant_record, agent_key_record, bot_id, transaction: unsigned });
      return { ...r, unsigned: Buffer.from(unsigned).toString("base64") };
    },
    "/app/scheduled": async ({ scheduled_record, agent_pubkey, destination, lamports }) => {
      // A real backend stores the record and signs at the scheduled time; the demo signs now.
      const unsigned = transfer(agent_pubkey, destination, lamports);
      const r = await signer.signScheduled({ scheduled_record, transaction: unsigned });
      return { ...r, unsigned: Buffer.from(unsigned).toString("base64") };
    },
    "/app/import/authorize": (b) => signer.authorizeImport(b),
    "/app/import": (b) => signer.importVault(b),
    // The user's powers: the browser checks the message and the wallet signs; the backend relays.
    "/app/revoke/authorize": (b) => signer.authorizeRevoke(b),
    "/app/revoke": (b) => signer.revokeSigned(b),
    "/app/export/authorize": (b) => signer.authorizeExport(b),
    "/app/export": (b) => signer.exportSecret(b),
  };
}

async function readJson(req) {
  let body = "";
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error("body too large");
  }
  return JSON.parse(body || "{}");
}

/**
 * Starts the example on `host:port` (0: any free port) against the parent at `signerUrl`, with
 * the frontend pins read from the simulation's data directory. Returns `{ url, close }`.
 */
export async function startExampleServer({ signerUrl, apiToken, dataDir, host = "127.0.0.1", port = 0 }) {
  const signer = new SignerClient({ baseUrl: signerUrl, apiToken });
  const routes = backend(signer);
  const pins = enclaveConfig(dataDir);
  const configJs =
    `// Values a production frontend pins at build time (never fetched from the backend).\n` +
    `export const DOMAIN = ${JSON.stringify(pins.domain)};\n` +
    `export const KMS_PUBLIC_KEY_BASE64 = ${JSON.stringify(pins.kmsPublicKey)};\n` +
    `export const TRUST_ROOT_PEM = ${JSON.stringify(readFileSync(path.join(dataDir, "sim-root.pem"), "utf8"))};\n` +
    `export const MEASUREMENTS = ${readFileSync(path.join(dataDir, "measurements.json"), "utf8").trim()};\n`;
  fromBase64(pins.kmsPublicKey); // fail early on a malformed config

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    try {
      if (url.pathname.startsWith("/app/")) {
        const handler = routes[url.pathname];
        if (!handler || req.method !== "POST") {
          res.writeHead(404).end();
          return;
        }
        const out = await handler(await readJson(req));
        res.writeHead(200, { "content-type": "application/json" }).end(stringifyJson(out));
        return;
      }
      if (url.pathname === "/config.js") {
        res.writeHead(200, { "content-type": TYPES[".js"], "cache-control": "no-store" }).end(configJs);
        return;
      }
      const rel = url.pathname === "/" ? "/index.html" : url.pathname;
      const [prefix, dir] = STATIC.find(([p]) => rel.startsWith(p));
      const file = path.resolve(dir, "." + rel.slice(prefix.length - 1));
      if (!file.startsWith(dir + path.sep) || file.endsWith("server.mjs")) {
        res.writeHead(404).end();
        return;
      }
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
    } catch (e) {
      if (e instanceof SignerApiError) {
        // Pass the enclave's refusal on with its stable code.
        res.writeHead(e.status, { "content-type": "application/json" }).end(stringifyJson({ code: e.code, detail: e.detail }));
      } else if (e && e.code === "ENOENT") {
        res.writeHead(404).end();
      } else {
        res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ code: "example_error", detail: String(e) }));
      }
    }
  });
  await new Promise((resolve) => server.listen(port, host, resolve));
  const address = server.address();
  return {
    url: `http://${host}:${address.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name, fallback) => {
    const v = process.env[name] ?? fallback;
    if (v === undefined) throw new Error(`set ${name}`);
    return v;
  };
  // Relative to the repository root, as scripts/sim.sh (which runs there) reads SIGNER_DATA_DIR.
  const dataDir = path.resolve(packageRoot, "../..", env("SIGNER_DATA_DIR", ".sim-data"));
  const apiToken =
    process.env.SIGNER_API_TOKEN ?? JSON.parse(readFileSync(path.join(dataDir, "tokens.json"), "utf8")).api;
  const { url } = await startExampleServer({
    signerUrl: env("SIGNER_URL", "http://127.0.0.1:8787"),
    apiToken,
    dataDir,
    port: Number(env("PORT", "8090")),
  });
  console.log(`example: open ${url}`);
}
