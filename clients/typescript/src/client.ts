// A typed client of the parent's HTTP API (SPEC §6), for backends (Node ≥ 20, or any runtime with
// `fetch`). Every route has a method; failures are `SignerApiError` (the problem+json answer, with
// its stable `code`) or `SignerTransportError` (no answer).
//
// Retries are safe by construction:
// - only routes whose repetition cannot do anything twice are retried: reads, authorization
//   requests (they only render a message), revocation, the kill switch, and signing, which carries
//   a `request_id` the enclave remembers (the same id with the same request returns the same
//   signature without charging the limits again; ed25519 is deterministic);
// - the body is serialized ONCE, before the first attempt, and every attempt sends those exact
//   bytes: an attempt cannot change the request behind the same `request_id`;
// - only a network failure or `503 enclave_unavailable` is retried; every other answer is final
//   (`409 replayed_request` in particular: the id was used for another request).
// Creating vaults, agents and grants and importing vaults is never retried automatically. An export
// is: the same signed export is answered again, sealed to the key the signature names.

import { type Bytes, fromBase58, randomUuid, toBase58, toBase64 } from "./bytes.js";
import { type JsonValue, parseJson, stringifyJson } from "./json.js";
import { type Policy, type Registry, policyJson } from "./policy.js";
import { parseRecordHeader } from "./records.js";

/** Stable error codes (`types/src/error.rs` `ErrorCode`, plus the parent's own). */
export const ERROR_CODES = [
  "bad_request",
  "record_invalid",
  "grant_expired",
  "grant_revoked",
  "kill_switch",
  "policy_denied",
  "replayed_request",
  "enclave_unavailable",
  "envelope_rejected",
  "authorization_signature_invalid",
  "authorization_signature_noncanonical",
  "authorization_expired",
  "authorization_not_yet_valid",
  "authorization_replayed",
  "authorization_nonce_unknown",
  "provenance_invalid",
  "wrong_enclave",
  "grant_orphaned",
  "enclave_handed_over",
  "handover_refused",
  "internal",
  "unauthorized",
  "payload_too_large",
  "not_found",
  "method_not_allowed",
  "request_timeout",
  "kms_access_denied",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The policy rule a `policy_denied` names (`types/src/policy.rs` `Rule`). */
export type PolicyRule =
  | "instruction_not_allowed"
  | "agent_role"
  | "program_not_allowed"
  | "lookup_table_account"
  | "destination_not_allowed"
  | "token_not_allowed"
  | "max_lamports_per_tx"
  | "max_lamports_per_day"
  | "token_max_per_tx"
  | "token_max_per_day"
  | "max_fee_lamports"
  | "notional_required"
  | "max_notional_cents_per_tx"
  | "max_notional_cents_per_day"
  | "max_tx_per_minute"
  | "schedule_window"
  | "intent_mismatch";

/** An `application/problem+json` answer. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  rule?: PolicyRule;
  limit?: number | bigint;
  requested?: number | bigint;
  used?: number | bigint;
  subject?: string;
}

/** The API answered with an error. `code` is stable; branch on it, not on `detail`. */
export class SignerApiError extends Error {
  override name = "SignerApiError";
  readonly status: number;
  /** The stable code; `unexpected_response` when the answer was not problem+json (a proxy's page). */
  readonly code: ErrorCode | "unexpected_response";
  readonly title: string;
  readonly detail: string;
  readonly rule?: PolicyRule;
  readonly limit?: number | bigint;
  readonly requested?: number | bigint;
  readonly used?: number | bigint;
  readonly subject?: string;
  /** The route and the request id (signing routes) of the failed call. */
  readonly route: string;
  readonly requestId?: string;
  readonly problem?: Problem;

  constructor(status: number, problem: Problem | undefined, route: string, requestId?: string, body?: string) {
    const code = problem?.code ?? "unexpected_response";
    const detail = problem?.detail ?? (body ?? "").slice(0, 300);
    super(`${route}: ${status} ${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.title = problem?.title ?? "";
    this.detail = detail;
    this.route = route;
    if (requestId !== undefined) this.requestId = requestId;
    if (problem !== undefined) {
      this.problem = problem;
      if (problem.rule !== undefined) this.rule = problem.rule;
      if (problem.limit !== undefined) this.limit = problem.limit;
      if (problem.requested !== undefined) this.requested = problem.requested;
      if (problem.used !== undefined) this.used = problem.used;
      if (problem.subject !== undefined) this.subject = problem.subject;
    }
  }
}

/** No answer (network failure, timeout) after every allowed attempt. */
export class SignerTransportError extends Error {
  override name = "SignerTransportError";
  constructor(
    readonly route: string,
    readonly attempts: number,
    override readonly cause: unknown,
    /** For signing: retry later with THIS id and the same request. */
    readonly requestId?: string,
  ) {
    super(`${route}: no answer after ${attempts} attempt(s): ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

export interface RetryOptions {
  /** Attempts in all, including the first (default 4). */
  attempts?: number;
  /** First backoff, doubled each time, with full jitter (default 200 ms). */
  baseDelayMs?: number;
  /** Cap on one backoff (default 3000 ms). */
  maxDelayMs?: number;
}

export interface SignerClientOptions {
  /** The parent's base URL, e.g. `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** The API token (`Authorization: Bearer …`). */
  apiToken: string;
  /** The admin token, for revocation and the kill switch. */
  adminToken?: string;
  retry?: RetryOptions;
  /** Per attempt (default 30 s). */
  timeoutMs?: number;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
}

// ------------------------------------------------------------------------------------------------
// Bodies and answers (field names as in the API)

type Key = string | Bytes;
type Id = string;
type RecordArg = string | Bytes;

export interface AttestationResponse {
  document: string;
  public_key: string;
  pcrs: Record<string, string>;
  timestamp_ms: number;
  enclave_id: string;
}

export interface EnclaveInfo {
  enclave_id: string;
  /** Earlier instances whose state this one took over (SPEC §16). */
  answers_for: string[];
  started_at: number;
  /** The KMS execution key, base64 SPKI DER. Pin your own copy in production frontends. */
  kms_public_key: string;
  /**
   * What the enclave's messages call tokens and programs (the measured config's registry): the
   * `registry` of the `MessageDomain` messages are checked with. Pin your own copy in production.
   */
  registry: Registry;
  /** This boot's receipt checkpoint key (ed25519), base64; bound in its attestation documents. */
  checkpoint_key?: string;
}

/** `GET /v1/receipts`: a page of decision receipts (docs/receipts.md), all bytes base64. */
export interface ReceiptsPage {
  /** The instance that answered and signs `checkpoint`. */
  enclave_id: string;
  /** The chain's decider: the instance, or its cluster. */
  decider: string;
  checkpoint_key: string;
  /** A fresh attestation document of the instance; its `user_data` binds `checkpoint_key`. */
  document: string;
  receipts: string[];
  checkpoint: string | null;
  /** Receipts after `after` and before `oldest` were evicted from the enclave's ring. */
  gap: { after: number; oldest: number } | null;
  next_after: number;
  more: boolean;
}

export interface VaultResponse {
  vault_id: string;
  vault_record: string;
  provenance: string;
}

export interface AuthorizationResponse {
  message: string;
  nonce: string;
  issued_at: number;
  expires_at: number;
  enclave_id: string;
}

export interface GrantAuthorizationResponse extends AuthorizationResponse {
  policy_sha256: string;
}

export interface ImportVaultResponse {
  vault_id: string;
  provenance: string;
}

export interface AgentResponse {
  agent_pubkey: string;
  agent_key_record: string;
  agent_id: string;
  provenance: string;
}

export interface GrantTerms {
  wallet: Key;
  bot_id: Id;
  agent_pubkey: Key;
  ttl_seconds: number;
  policy: Policy;
}

export interface SignedAuthorization {
  nonce: string;
  issued_at: number;
  /** The wallet's signature over the message: base58 or 64 bytes. */
  signature: string | Bytes;
}

export interface GrantResponse {
  grant_id: string;
  issued_at: number;
  expires_at: number;
  grant_record: string;
  enclave_id: string;
  /** The grant's receipt (docs/receipts.md), base64: store it beside the grant. */
  receipt?: string;
}

export interface SignRequest {
  grant_record: RecordArg;
  agent_key_record: RecordArg;
  bot_id: Id;
  /** Serialized transaction (legacy or v0), bytes or base64. */
  transaction: RecordArg;
  /** Default: a fresh random id. Store it with the job: a later retry must reuse it. */
  request_id?: Id;
  declared_notional_cents?: number | bigint;
}

export interface ScheduledSignRequest {
  scheduled_record: RecordArg;
  transaction: RecordArg;
  request_id?: Id;
}

export interface SignResponse {
  /** Base58. */
  signature: string;
  /** The signed transaction, base64. */
  transaction: string;
  /** `sign` only. */
  grant_id?: string;
  /** The decision's receipt, base64 (absent for an identical retry: the first answer had it). */
  receipt?: string;
  /** The `X-Signer-Route` the parent answered with: the enclave holding the record's state. */
  route: string | null;
  request_id: string;
}

export interface ReadyResponse {
  ready: boolean;
  enclave_connected: boolean;
  enclave_attested: boolean;
  attestation_error: string | null;
  kms_reachable: boolean;
  /** The KMS key's state as the parent last learned it (`enabled`, `disabled`, `unreachable`, …). */
  kms_key?: string;
  /** Whether the kill switch is engaged; null when the enclave did not answer. */
  kill_switch?: boolean | null;
  /** The successor this enclave handed its state to, if it did. */
  handed_over_to?: string | null;
  /** A handover under way. */
  handover?: { successor: string; stage: string; chunks: number } | null;
}

/** What a wallet revokes on its own signature: one grant (or scheduled record) by id, or all. */
export type RevokeScope = { grant_id: Id; all?: undefined } | { all: true; grant_id?: undefined };

/** `POST /v1/authorizations/revoke`. */
export type RevokeAuthorizationRequest = { wallet: Key } & RevokeScope;

/** `POST /v1/grants/revoke`, signed by the wallet. */
export type SignedRevokeRequest = RevokeAuthorizationRequest & SignedAuthorization;

export interface RevokeResponse {
  revoked: { wallet?: string; grant_id?: string; all?: boolean };
  /** Opened grants dropped from the enclave's memory. */
  dropped_from_memory: number;
}

/** `POST /v1/authorizations/export`: the vault's master key, or with `agent_key_record` that agent's secret. */
export interface ExportAuthorizationRequest {
  wallet: Key;
  vault_record: RecordArg;
  vault_provenance: RecordArg;
  agent_key_record?: RecordArg;
  /** The browser's X25519 public key: 32 bytes, or base64. */
  recipient: RecordArg;
}

/** `POST /v1/export`. */
export type ExportRequest = ExportAuthorizationRequest & SignedAuthorization;

export interface ExportResponse {
  /** What the ciphertext holds: a vault's master key, an agent's seed, or its BIP39 entropy. */
  kind: "vault" | "seed" | "mnemonic";
  /** The id of the exported record (vault or agent), UUID text. */
  record_id: string;
  /** The recipient key, base64. */
  recipient: string;
  /** HPKE `enc` (32 bytes), base64. */
  enc: string;
  /** HPKE ciphertext (the secret and a 16-byte tag), base64. */
  ciphertext: string;
  /** The HPKE suite and `info`, in words. */
  hpke?: string;
}

// ------------------------------------------------------------------------------------------------

const b64 = (v: RecordArg) => (typeof v === "string" ? v : toBase64(v));
const key = (v: Key, what: string) => (typeof v === "string" ? toBase58(fromBase58(v, 32, what)) : toBase58(v));
const sig = (v: string | Bytes) => (typeof v === "string" ? v : toBase58(v));

interface Call {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  token: "api" | "admin" | "none";
  retry: boolean;
  headers?: Record<string, string>;
  requestId?: string;
  /** Return the raw text instead of JSON. */
  text?: boolean;
}

interface Answer {
  status: number;
  body: JsonValue | string;
  headers: Headers;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SignerClient {
  readonly baseUrl: string;
  private readonly apiToken: string;
  private readonly adminToken: string | undefined;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: SignerClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiToken = options.apiToken;
    this.adminToken = options.adminToken;
    this.attempts = Math.max(1, options.retry?.attempts ?? 4);
    this.baseDelayMs = options.retry?.baseDelayMs ?? 200;
    this.maxDelayMs = options.retry?.maxDelayMs ?? 3000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new TypeError("no fetch: pass options.fetch");
    this.fetchImpl = f.bind(globalThis);
  }

  // -- routes ------------------------------------------------------------------------------------

  /** `GET /healthz`. */
  async health(): Promise<{ status: string }> {
    return (await this.json({ method: "GET", path: "/healthz", token: "none", retry: true })) as { status: string };
  }

  /** `GET /readyz` (answers 503 with the same body while not ready: that is returned, not thrown). */
  async ready(): Promise<ReadyResponse> {
    const a = await this.send({ method: "GET", path: "/readyz", token: "none", retry: false });
    if (a.status !== 200 && a.status !== 503) throw this.error(a, "/readyz");
    return a.body as unknown as ReadyResponse;
  }

  /** `GET /metrics`: Prometheus text. */
  async metrics(): Promise<string> {
    const a = await this.send({ method: "GET", path: "/metrics", token: "none", retry: true, text: true });
    if (a.status !== 200) throw this.error(a, "/metrics");
    return a.body as string;
  }

  /** `GET /v1/attestation?nonce=hex`: a fresh attestation document of the enclave. */
  async attestation(nonceHex?: string): Promise<AttestationResponse> {
    if (nonceHex !== undefined && !/^([0-9a-fA-F]{2})*$/.test(nonceHex)) throw new TypeError("nonce must be hex");
    const path = nonceHex === undefined ? "/v1/attestation" : `/v1/attestation?nonce=${nonceHex}`;
    return (await this.json({ method: "GET", path, token: "api", retry: true })) as unknown as AttestationResponse;
  }

  /** `GET /v1/enclave`: the instance, the ids it answers for, and the KMS public key. */
  async enclave(): Promise<EnclaveInfo> {
    return (await this.json({ method: "GET", path: "/v1/enclave", token: "api", retry: true })) as unknown as EnclaveInfo;
  }

  /**
   * `GET /v1/receipts?after=…`: decision receipts with a larger seq (every one the ring keeps
   * when `after` is absent) and the latest checkpoint. Check them with `verifyChain` after
   * verifying `document` and its `checkpointKeyBinding`.
   */
  async receipts(after?: number): Promise<ReceiptsPage> {
    if (after !== undefined && (!Number.isSafeInteger(after) || after < 0)) {
      throw new TypeError("after must be a non-negative integer");
    }
    const path = after === undefined ? "/v1/receipts" : `/v1/receipts?after=${after}`;
    return (await this.json({ method: "GET", path, token: "api", retry: true })) as unknown as ReceiptsPage;
  }

  /** `POST /v1/vaults`: the enclave generates the wallet's master key. Not retried. */
  async createVault(wallet: Key): Promise<VaultResponse> {
    return (await this.post("/v1/vaults", { wallet: key(wallet, "wallet") }, false)) as unknown as VaultResponse;
  }

  /** `POST /v1/authorizations/import`: the message the wallet signs to import a browser-sealed vault. */
  async authorizeImport(req: { wallet: Key; vault_record: RecordArg }): Promise<AuthorizationResponse> {
    return (await this.post(
      "/v1/authorizations/import",
      { wallet: key(req.wallet, "wallet"), vault_record: b64(req.vault_record) },
      true,
    )) as unknown as AuthorizationResponse;
  }

  /** `POST /v1/vaults/import`: the signed import; answers with the vault's provenance. Not retried. */
  async importVault(req: { wallet: Key; vault_record: RecordArg } & SignedAuthorization): Promise<ImportVaultResponse> {
    return (await this.post(
      "/v1/vaults/import",
      {
        wallet: key(req.wallet, "wallet"),
        vault_record: b64(req.vault_record),
        nonce: req.nonce,
        issued_at: req.issued_at,
        signature: sig(req.signature),
      },
      false,
    )) as unknown as ImportVaultResponse;
  }

  /** `POST /v1/agents`: an agent key made from the vault (checked by its provenance). Not retried. */
  async createAgent(req: {
    wallet: Key;
    vault_record: RecordArg;
    vault_provenance: RecordArg;
    kind?: "seed" | "mnemonic";
    account?: number;
  }): Promise<AgentResponse> {
    return (await this.post(
      "/v1/agents",
      {
        wallet: key(req.wallet, "wallet"),
        vault_record: b64(req.vault_record),
        vault_provenance: b64(req.vault_provenance),
        kind: req.kind,
        account: req.account,
      },
      false,
    )) as unknown as AgentResponse;
  }

  /** `POST /v1/authorizations/grant`: the exact message the wallet signs for these terms. */
  async authorizeGrant(terms: GrantTerms): Promise<GrantAuthorizationResponse> {
    return (await this.post("/v1/authorizations/grant", this.terms(terms), true)) as unknown as GrantAuthorizationResponse;
  }

  /**
   * `POST /v1/grants`: the same terms, the signed message's nonce and issue time, the wallet's
   * signature, and the vault with its provenance. Not retried automatically; the same signature
   * sent again (after a lost reply) is answered with the same grant: the grant id is a function of
   * the signature, `grantId()`.
   */
  async createGrant(
    req: GrantTerms & SignedAuthorization & { vault_record: RecordArg; vault_provenance: RecordArg },
  ): Promise<GrantResponse> {
    return (await this.post(
      "/v1/grants",
      {
        ...this.terms(req),
        nonce: req.nonce,
        issued_at: req.issued_at,
        signature: sig(req.signature),
        vault_record: b64(req.vault_record),
        vault_provenance: b64(req.vault_provenance),
      },
      false,
    )) as unknown as GrantResponse;
  }

  /**
   * `POST /v1/sign`. Sends `X-Signer-Route` (the grant's enclave, read from the record's header)
   * so a load balancer routes it to the enclave holding the grant's state. Retried on network
   * failures and `503 enclave_unavailable` with the same bytes.
   */
  async sign(req: SignRequest): Promise<SignResponse> {
    const requestId = req.request_id ?? randomUuid();
    const grant = typeof req.grant_record === "string" ? req.grant_record : toBase64(req.grant_record);
    return this.signCall("/v1/sign", requestId, routeOf(grant), {
      grant_record: grant,
      agent_key_record: b64(req.agent_key_record),
      bot_id: req.bot_id,
      transaction: b64(req.transaction),
      request_id: requestId,
      declared_notional_cents: req.declared_notional_cents,
    });
  }

  /** `POST /v1/scheduled/sign`: signs the one transfer a scheduled record allows. Retried like `sign`. */
  async signScheduled(req: ScheduledSignRequest): Promise<SignResponse> {
    const requestId = req.request_id ?? randomUuid();
    const record = b64(req.scheduled_record);
    return this.signCall("/v1/scheduled/sign", requestId, routeOf(record), {
      scheduled_record: record,
      transaction: b64(req.transaction),
      request_id: requestId,
    });
  }

  /**
   * `POST /v1/authorizations/revoke`: the message the wallet signs to revoke one of its grants
   * (`grant_id`) or all of them (`all: true`). Retried (it only renders a message).
   */
  async authorizeRevoke(req: RevokeAuthorizationRequest): Promise<AuthorizationResponse> {
    return (await this.post("/v1/authorizations/revoke", revokeBody(req), true)) as unknown as AuthorizationResponse;
  }

  /**
   * `POST /v1/grants/revoke` signed by the wallet (API token): the same scope, the revoke
   * message's nonce and issue time, and the wallet's signature. Retried: the enclave answers the
   * same signed revocation again.
   */
  async revokeSigned(req: SignedRevokeRequest): Promise<RevokeResponse> {
    return (await this.post(
      "/v1/grants/revoke",
      { ...revokeBody(req), nonce: req.nonce, issued_at: req.issued_at, signature: sig(req.signature) },
      true,
    )) as unknown as RevokeResponse;
  }

  /**
   * `POST /v1/authorizations/export`: the message the wallet signs to export the vault's master
   * key, or with `agent_key_record` that agent's secret, to the browser's X25519 key `recipient`.
   * Retried (it only renders a message).
   */
  async authorizeExport(req: ExportAuthorizationRequest): Promise<AuthorizationResponse> {
    return (await this.post("/v1/authorizations/export", exportBody(req), true)) as unknown as AuthorizationResponse;
  }

  /**
   * `POST /v1/export`: the signed export; answers with the secret sealed by HPKE to `recipient`
   * (open it in the browser with `openExport`). Retried with the same bytes: the enclave answers
   * the same signature again (a lost reply), sealed again to the recipient the signed message
   * names and to no other key.
   */
  async exportSecret(req: ExportRequest): Promise<ExportResponse> {
    return (await this.post(
      "/v1/export",
      { ...exportBody(req), nonce: req.nonce, issued_at: req.issued_at, signature: sig(req.signature) },
      true,
    )) as unknown as ExportResponse;
  }

  /** `POST /v1/grants/revoke {grant_id}` (admin token). */
  async revokeGrant(grantId: Id): Promise<{ revoked: { grant_id: string }; dropped_from_memory: number }> {
    return (await this.json({
      method: "POST",
      path: "/v1/grants/revoke",
      body: { grant_id: grantId },
      token: "admin",
      retry: true,
    })) as unknown as { revoked: { grant_id: string }; dropped_from_memory: number };
  }

  /** `POST /v1/grants/revoke {wallet}`: every grant of the wallet (admin token). */
  async revokeWallet(wallet: Key): Promise<{ revoked: { wallet: string }; dropped_from_memory: number }> {
    return (await this.json({
      method: "POST",
      path: "/v1/grants/revoke",
      body: { wallet: key(wallet, "wallet") },
      token: "admin",
      retry: true,
    })) as unknown as { revoked: { wallet: string }; dropped_from_memory: number };
  }

  /** `POST /v1/kill-switch` (admin token): refuse all signing, or resume. */
  async setKillSwitch(engaged: boolean): Promise<{ engaged: boolean }> {
    return (await this.json({
      method: "POST",
      path: "/v1/kill-switch",
      body: { engaged },
      token: "admin",
      retry: true,
    })) as unknown as { engaged: boolean };
  }

  // -- machinery ---------------------------------------------------------------------------------

  private terms(t: GrantTerms): Record<string, unknown> {
    return {
      wallet: key(t.wallet, "wallet"),
      bot_id: t.bot_id,
      agent_pubkey: key(t.agent_pubkey, "agent_pubkey"),
      ttl_seconds: t.ttl_seconds,
      policy: policyJson(t.policy),
    };
  }

  private async signCall(path: string, requestId: string, route: string | undefined, body: unknown): Promise<SignResponse> {
    const a = await this.send({
      method: "POST",
      path,
      body,
      token: "api",
      retry: true,
      requestId,
      headers: route === undefined ? {} : { "x-signer-route": route },
    });
    if (a.status !== 200) throw this.error(a, path, requestId);
    const out = a.body as { signature: string; transaction: string; grant_id?: string; receipt?: string };
    return { ...out, route: a.headers.get("x-signer-route"), request_id: requestId };
  }

  private post(path: string, body: unknown, retry: boolean): Promise<JsonValue> {
    return this.json({ method: "POST", path, body, token: "api", retry });
  }

  private async json(call: Call): Promise<JsonValue> {
    const a = await this.send(call);
    if (a.status < 200 || a.status >= 300) throw this.error(a, call.path.split("?")[0]!, call.requestId);
    return a.body as JsonValue;
  }

  private error(a: Answer, route: string, requestId?: string): SignerApiError {
    const body = a.body;
    const problem =
      typeof body === "object" && body !== null && !Array.isArray(body) && typeof body["code"] === "string"
        ? (body as unknown as Problem)
        : undefined;
    return new SignerApiError(a.status, problem, route, requestId, typeof body === "string" ? body : undefined);
  }

  /** One logical request: the body serialized once, the same bytes on every attempt. */
  private async send(call: Call): Promise<Answer> {
    const body = call.body === undefined ? undefined : stringifyJson(call.body);
    const headers: Record<string, string> = { accept: "application/json", ...(call.headers ?? {}) };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (call.token === "api") headers["authorization"] = `Bearer ${this.apiToken}`;
    if (call.token === "admin") {
      if (this.adminToken === undefined) throw new TypeError(`${call.path} needs the admin token (options.adminToken)`);
      headers["authorization"] = `Bearer ${this.adminToken}`;
    }
    const attempts = call.retry ? this.attempts : 1;
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      let response: Response;
      try {
        const init: RequestInit = { method: call.method, headers, signal: AbortSignal.timeout(this.timeoutMs) };
        if (body !== undefined) init.body = body;
        response = await this.fetchImpl(`${this.baseUrl}${call.path}`, init);
      } catch (e) {
        last = e;
        if (attempt < attempts) await sleep(this.backoff(attempt, null));
        continue;
      }
      const text = await response.text().catch((e: unknown) => {
        last = e;
        return undefined;
      });
      if (text === undefined) {
        if (attempt < attempts) await sleep(this.backoff(attempt, null));
        continue;
      }
      let parsed: JsonValue | string = text;
      if (!call.text || response.status >= 400) {
        try {
          parsed = text.length === 0 ? null : parseJson(text);
        } catch {
          parsed = text;
        }
      }
      const answer = { status: response.status, body: parsed, headers: response.headers };
      const unavailable =
        response.status === 503 &&
        typeof parsed === "object" &&
        parsed !== null &&
        !Array.isArray(parsed) &&
        parsed["code"] === "enclave_unavailable";
      if (unavailable && attempt < attempts) {
        last = this.error(answer, call.path, call.requestId);
        await sleep(this.backoff(attempt, response.headers.get("retry-after")));
        continue;
      }
      return answer;
    }
    if (last instanceof SignerApiError) throw last;
    throw new SignerTransportError(call.path, attempts, last, call.requestId);
  }

  private backoff(attempt: number, retryAfter: string | null): number {
    const seconds = retryAfter === null ? NaN : Number(retryAfter);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, this.maxDelayMs);
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    return Math.random() * cap;
  }
}

function revokeBody(req: RevokeAuthorizationRequest): Record<string, unknown> {
  const wallet = key(req.wallet, "wallet");
  if (req.all === true && req.grant_id === undefined) return { wallet, all: true };
  if (typeof req.grant_id === "string" && req.all === undefined) return { wallet, grant_id: req.grant_id };
  throw new TypeError("a revocation names exactly one of grant_id or all: true");
}

function exportBody(req: ExportAuthorizationRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    wallet: key(req.wallet, "wallet"),
    vault_record: b64(req.vault_record),
    vault_provenance: b64(req.vault_provenance),
    recipient: b64(req.recipient),
  };
  if (req.agent_key_record !== undefined) body.agent_key_record = b64(req.agent_key_record);
  return body;
}

/** The enclave id in a grant's or scheduled record's header (their routing key), if readable. */
export function routeOf(record: RecordArg): string | undefined {
  try {
    const bytes = typeof record === "string" ? fromBase64Loose(record) : record;
    const h = parseRecordHeader(bytes);
    return h.type === 1 || h.type === 3 ? h.enclave_id : undefined;
  } catch {
    return undefined;
  }
}

function fromBase64Loose(text: string): Bytes {
  // Only the header is needed: decode the first 165 bytes' worth (220 base64 characters).
  const head = text.slice(0, 220);
  const bin = atob(head);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
