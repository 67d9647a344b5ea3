// The repository README's walk-through, run as written against the real simulation stack started
// the way scripts/sim.sh starts it, with SIGNER_DATA_DIR and SIGNER_HTTP_ADDR set (as a user with
// a second stack, or CI, has them): the launcher's printed `export` lines, the README's token
// commands, its `attest` commands against the sim root and measurements, and the scheduled-transfer
// example. README blocks are found by their `<!-- readme-sim: NAME -->` marker.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import { repoRoot } from "../support/paths.js";
import { type Sim, binDir, startSim } from "../support/sim.js";

let sim: Sim;

before(async () => {
  sim = await startSim("readme");
});

after(async () => {
  await sim?.stop();
});

/** The shell block after `<!-- readme-sim: name -->` in README.md, comment lines dropped. */
function readmeBlock(name: string): string {
  const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
  const marker = `<!-- readme-sim: ${name} -->\n\`\`\`sh\n`;
  const start = readme.indexOf(marker);
  assert.ok(start >= 0, `README.md has no block marked readme-sim: ${name}`);
  const body = readme.slice(start + marker.length, readme.indexOf("\n```", start + marker.length));
  return body
    .split("\n")
    .filter((line) => !line.startsWith("#"))
    .join("\n");
}

/** Runs `script` with bash from the repository root, in the simulation's environment. */
function bash(script: string): { status: number | null; stdout: string; stderr: string } {
  const http = new URL(sim.baseUrl).host;
  const r = spawnSync("bash", ["-c", `set -euo pipefail\n${script}`], {
    cwd: repoRoot,
    env: {
      ...process.env,
      SIGNER_DATA_DIR: sim.dataDir,
      SIGNER_HTTP_ADDR: http,
      SIGNER_API_TOKEN: "",
      SIGNER_ADMIN_TOKEN: "",
      API: "",
      TOKEN: "",
      ADMIN: "",
    },
    encoding: "utf8",
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The README's `target/debug/…` binaries, wherever this build put them. */
const withBinaries = (script: string) => script.replaceAll("target/debug/", `${binDir()}/`);

describe("the README against the simulation stack", () => {
  it("the launcher prints export lines for the API, the API token and the admin token", () => {
    const lines = sim.output().split("\n").map((l) => l.trim());
    assert.ok(lines.includes(`export API=${sim.baseUrl}`), sim.output());
    assert.ok(lines.includes(`export TOKEN=${sim.apiToken}`), sim.output());
    assert.ok(lines.includes(`export ADMIN=${sim.adminToken}`), sim.output());
  });

  it("the token commands read the data directory SIGNER_DATA_DIR names", () => {
    const r = bash(`${readmeBlock("tokens")}\necho "$API $TOKEN $ADMIN $DATA"`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${sim.baseUrl} ${sim.apiToken} ${sim.adminToken} ${sim.dataDir}`);
    // And the admin token works where the README uses it.
    const kill = bash(`${readmeBlock("tokens")}
curl -sf -X POST $API/v1/kill-switch -H "Authorization: Bearer $ADMIN" -d '{"engaged":false}'`);
    assert.equal(kill.status, 0, kill.stderr);
    assert.deepEqual(JSON.parse(kill.stdout), { engaged: false });
  });

  it("the attest commands verify provenance, the live attestation and the key policy", () => {
    const r = bash(withBinaries(`${readmeBlock("tokens")}\n${readmeBlock("attest")}`));
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const valid = r.stdout.split("\n").filter((l) => l === "valid");
    assert.equal(valid.length, 3, r.stdout);
    assert.match(r.stdout, /record {6}vault /);
    assert.match(r.stdout, /record {6}agent_key /);
    assert.match(r.stdout, /^verdict {5}ALLOW by statement AttestedEnclaveDecrypt$/m);
  });

  it("the receipts commands fetch a page and attest receipts verifies it", () => {
    const r = bash(withBinaries(`${readmeBlock("tokens")}\n${readmeBlock("receipts")}`));
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /checkpoints?: OK/, r.stdout);
  });

  it("the scheduled-transfer example seals, signs once and is refused a second time", () => {
    const r = bash(readmeBlock("scheduled"));
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^signed {6}\w+ \(verified: ed25519 by \w+\)$/m);
    assert.match(r.stdout, /^again {7}refused: 409 replayed_request$/m);
  });
});
