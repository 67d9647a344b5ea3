// Starts the real simulation stack (`target/debug/signer-sim run`: kms-sim, the enclave with a
// simulated NSM, the parent's HTTP API) for a test, in a fresh data directory on free ports.
// The binaries must be built first (`cargo build --workspace --bins`, as scripts/test.sh does).

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import {
  type MessageDomain,
  type ProvenanceTrust,
  fromBase64,
  imageFromMeasurements,
  pemToDer,
} from "@signing-enclave/client";

import { repoRoot } from "./paths.js";

/** The simulation's measured `[authorization]` config, registry included (sim/stack/src/stack.rs). */
export const SIM_DOMAIN: MessageDomain = {
  domain: "localhost",
  uri: "http://localhost",
  chain_id: "localnet",
  validity_seconds: 600,
  registry: {
    tokens: [
      { mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", symbol: "USDC", decimals: 6 },
      { mint: "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", symbol: "USDT", decimals: 6 },
    ],
    programs: [{ id: "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4", name: "Jupiter v6" }],
  },
};

export interface Sim {
  baseUrl: string;
  apiToken: string;
  adminToken: string;
  dataDir: string;
  /** The sim root and the measured image (PCR0..2 of measurements.json). */
  trust: ProvenanceTrust;
  /** The KMS public key as the enclave's measured config pins it (what a deployer knows). */
  pinnedKmsPublicKey: Uint8Array;
  /** What the launcher printed so far (stdout and stderr). */
  output(): string;
  stop(): Promise<void>;
}

export function binDir(): string {
  if (process.env.SIGNER_BIN_DIR) return process.env.SIGNER_BIN_DIR;
  return path.join(process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, "target"), "debug");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startSim(name: string): Promise<Sim> {
  const bin = path.join(binDir(), "signer-sim");
  if (!existsSync(bin)) {
    throw new Error(`${bin} not found: build the binaries first (cargo build --workspace --bins) or set SIGNER_BIN_DIR`);
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), `signer-ts-${name}-`));
  const [http, kms] = [await freePort(), await freePort()];
  const apiToken = `ts-api-token-${Math.random().toString(16).slice(2)}`;
  const adminToken = `ts-admin-token-${Math.random().toString(16).slice(2)}`;
  const child: ChildProcess = spawn(bin, ["run"], {
    env: {
      ...process.env,
      SIGNER_DATA_DIR: dataDir,
      SIGNER_HTTP_ADDR: `127.0.0.1:${http}`,
      SIGNER_KMS_ADDR: `127.0.0.1:${kms}`,
      SIGNER_API_TOKEN: apiToken,
      SIGNER_ADMIN_TOKEN: adminToken,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  await new Promise<void>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`signer-sim did not start within 120 s:\n${output}`)), 120_000);
    const poll = setInterval(() => {
      if (output.includes("serving; press Ctrl-C to stop")) {
        clearInterval(poll);
        clearTimeout(deadline);
        resolve();
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(poll);
      clearTimeout(deadline);
      reject(new Error(`signer-sim exited (${code}) before serving:\n${output}`));
    });
  });

  const toml = readFileSync(path.join(dataDir, "enclave.toml"), "utf8");
  const pinned = /^kms_public_key = "([A-Za-z0-9+/=]+)"$/m.exec(toml);
  if (!pinned) throw new Error("no kms_public_key in the enclave's config");
  return {
    baseUrl: `http://127.0.0.1:${http}`,
    apiToken,
    adminToken,
    dataDir,
    trust: {
      root: pemToDer(readFileSync(path.join(dataDir, "sim-root.pem"), "utf8")),
      images: [imageFromMeasurements(readFileSync(path.join(dataDir, "measurements.json"), "utf8"))],
    },
    pinnedKmsPublicKey: fromBase64(pinned[1]!),
    output: () => output,
    async stop() {
      process.removeListener("exit", killOnExit);
      if (child.exitCode === null) {
        child.kill("SIGINT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
