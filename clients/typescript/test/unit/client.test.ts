// The API client against a scripted local HTTP server: typed problem+json errors, retries that
// resend the same bytes with the same request id, and only where a repeat cannot do anything twice.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";

import {
  ERROR_CODES,
  SignerApiError,
  SignerClient,
  SignerTransportError,
  U64_MAX,
  concat,
  le32,
  le64,
  randomUuid,
  toBase64,
} from "@signing-enclave/client";

import { repoRoot } from "../support/paths.js";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Reply = { status: number; body?: string; type?: string; headers?: Record<string, string> } | "drop";

let server: http.Server;
let base: string;
let seen: Seen[] = [];
let script: Reply[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      const reply = script.shift() ?? { status: 200, body: "{}" };
      if (reply === "drop") {
        req.socket.destroy();
        return;
      }
      res.writeHead(reply.status, { "content-type": reply.type ?? "application/json", ...(reply.headers ?? {}) });
      res.end(reply.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

beforeEach(() => {
  seen = [];
  script = [];
});

function client(extra: Partial<ConstructorParameters<typeof SignerClient>[0]> = {}) {
  return new SignerClient({
    baseUrl: base,
    apiToken: "api-token",
    adminToken: "admin-token",
    retry: { attempts: 4, baseDelayMs: 1, maxDelayMs: 5 },
    ...extra,
  });
}

const problem = (status: number, code: string, extra: Record<string, unknown> = {}) => ({
  status,
  type: "application/problem+json",
  body: JSON.stringify({ type: `urn:signer:error:${code}`, title: code, status, detail: `detail of ${code}`, code, ...extra }),
});

const ENCLAVE = "514a9f24-c508-0e08-9116-41159a1c0196";

/** A grant record header (the client reads the routing key from it) with a dummy body. */
function grantRecord(): string {
  const id = (hex: string) => Uint8Array.from(hex.replaceAll("-", "").match(/../g)!.map((h) => parseInt(h, 16)));
  return toBase64(
    concat(le32(1), Uint8Array.of(1), new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), new Uint8Array(16).fill(3), new Uint8Array(32).fill(4), le64(10), le64(20), id(ENCLAVE), new Uint8Array(40)),
  );
}

const signRequest = () => ({
  grant_record: grantRecord(),
  agent_key_record: "AAAA",
  bot_id: "7a7a7a7a-7a7a-7a7a-7a7a-7a7a7a7a7a7a",
  transaction: Uint8Array.of(1, 2, 3),
});

describe("SignerClient", () => {
  it("sends the bearer token, the JSON body and the route header, and returns the route", async () => {
    script = [{ status: 200, body: '{"signature":"sig","transaction":"dHg=","grant_id":"g"}', headers: { "x-signer-route": ENCLAVE } }];
    const r = await client().sign({ ...signRequest(), declared_notional_cents: 125 });
    assert.equal(seen.length, 1);
    const s = seen[0]!;
    assert.equal(s.method, "POST");
    assert.equal(s.url, "/v1/sign");
    assert.equal(s.headers.authorization, "Bearer api-token");
    assert.equal(s.headers["content-type"], "application/json");
    assert.equal(s.headers["x-signer-route"], ENCLAVE);
    const body = JSON.parse(s.body);
    assert.equal(body.transaction, "AQID");
    assert.equal(body.request_id, r.request_id);
    assert.equal(body.declared_notional_cents, 125);
    assert.match(r.request_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(r.route, ENCLAVE);
    assert.equal(r.signature, "sig");
  });

  it("retries signing on 503 enclave_unavailable with the same bytes and request id", async () => {
    script = [problem(503, "enclave_unavailable"), "drop", problem(503, "enclave_unavailable"), { status: 200, body: '{"signature":"s","transaction":"dA=="}' }];
    const requestId = randomUuid();
    const r = await client().signScheduled({ scheduled_record: "AAAA", transaction: "dA==", request_id: requestId });
    assert.equal(r.request_id, requestId);
    assert.equal(seen.length, 4);
    assert.ok(seen.every((s) => s.body === seen[0]!.body), "every attempt sends the same bytes");
    assert.equal(JSON.parse(seen[0]!.body).request_id, requestId);
  });

  it("treats 409 and every other refusal as final", async () => {
    script = [problem(409, "replayed_request")];
    const requestId = randomUuid();
    await assert.rejects(client().sign({ ...signRequest(), request_id: requestId }), (e: unknown) => {
      assert.ok(e instanceof SignerApiError);
      assert.equal(e.status, 409);
      assert.equal(e.code, "replayed_request");
      assert.equal(e.requestId, requestId);
      return true;
    });
    assert.equal(seen.length, 1);
    script = [problem(503, "enclave_handed_over")];
    await assert.rejects(client().sign(signRequest()), { code: "enclave_handed_over" });
    assert.equal(seen.length, 2);
  });

  it("never retries routes that create something", async () => {
    script = [problem(503, "enclave_unavailable")];
    await assert.rejects(client().createVault("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"), { code: "enclave_unavailable" });
    assert.equal(seen.length, 1);
    script = ["drop"];
    await assert.rejects(
      client().createAgent({ wallet: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T", vault_record: "AAAA", vault_provenance: "AAAA" }),
      SignerTransportError,
    );
    assert.equal(seen.length, 2);
  });

  it("gives up after the allowed attempts with the request id to retry with later", async () => {
    script = ["drop", "drop", "drop", "drop"];
    const requestId = randomUuid();
    await assert.rejects(client().sign({ ...signRequest(), request_id: requestId }), (e: unknown) => {
      assert.ok(e instanceof SignerTransportError);
      assert.equal(e.attempts, 4);
      assert.equal(e.requestId, requestId);
      return true;
    });
    assert.equal(seen.length, 4);
  });

  it("reads policy denials with their rule and exact numbers", async () => {
    script = [{ ...problem(403, "policy_denied"), body: problem(403, "policy_denied").body.replace(/}$/, ',"rule":"max_lamports_per_tx","limit":1000000000,"requested":18446744073709551615,"subject":"SOL"}') }];
    await assert.rejects(client().sign(signRequest()), (e: unknown) => {
      assert.ok(e instanceof SignerApiError);
      assert.equal(e.code, "policy_denied");
      assert.equal(e.rule, "max_lamports_per_tx");
      assert.equal(e.limit, 1_000_000_000);
      assert.equal(e.requested, U64_MAX);
      assert.equal(e.subject, "SOL");
      return true;
    });
  });

  it("reports a non-problem answer (a proxy's page) as unexpected_response", async () => {
    script = [{ status: 502, type: "text/html", body: "<html>bad gateway</html>" }];
    await assert.rejects(client().enclave(), { code: "unexpected_response", status: 502 });
  });

  it("writes u64 limits exactly and uses the admin token for admin routes", async () => {
    script = [{ status: 200, body: '{"message":"m","nonce":"n","issued_at":1,"expires_at":2,"enclave_id":"e","policy_sha256":"h"}' }];
    await client().authorizeGrant({
      wallet: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
      bot_id: "7a7a7a7a-7a7a-7a7a-7a7a-7a7a7a7a7a7a",
      agent_pubkey: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
      ttl_seconds: 600,
      policy: {
        max_lamports_per_tx: 1,
        max_lamports_per_day: U64_MAX,
        max_fee_lamports: 5000,
        tokens: [],
        allowed_programs: [],
        max_notional_cents_per_tx: 0,
        max_notional_cents_per_day: 0,
      },
    });
    assert.match(seen[0]!.body, /"max_lamports_per_day":18446744073709551615,/);
    assert.doesNotMatch(seen[0]!.body, /destinations/);
    script = [{ status: 200, body: '{"engaged":true}' }];
    assert.deepEqual(await client().setKillSwitch(true), { engaged: true });
    assert.equal(seen[1]!.headers.authorization, "Bearer admin-token");
    await assert.rejects(new SignerClient({ baseUrl: base, apiToken: "x" }).revokeGrant("x"), /admin token/);
  });

  it("knows every error code the Rust side defines", () => {
    const rust = readFileSync(path.join(repoRoot, "types/src/error.rs"), "utf8");
    const asStr = rust.slice(rust.indexOf("pub fn as_str"), rust.indexOf("pub fn http_status"));
    const codes = [...asStr.matchAll(/=> "([a-z_]+)"/g)].map((m) => m[1]);
    // As many as the Rust side's exhaustive list, so a new code cannot slip past this test.
    const all = rust.match(/pub const ALL: \[ErrorCode; (\d+)\]/);
    assert.ok(all, "ErrorCode::ALL not found");
    assert.equal(codes.length, Number(all[1]));
    for (const c of codes) assert.ok((ERROR_CODES as readonly string[]).includes(c!), c);
    // The parent's own codes (`api/src/responses.rs` `HttpCode`).
    const responses = readFileSync(path.join(repoRoot, "api/src/responses.rs"), "utf8");
    const parentCodes = [...responses.matchAll(/Self::\w+ => "([a-z_]+)"/g)].map((m) => m[1]!);
    assert.ok(parentCodes.length >= 6, `HttpCode codes not found: ${parentCodes}`);
    for (const c of parentCodes) {
      assert.ok((ERROR_CODES as readonly string[]).includes(c));
    }
  });
});
