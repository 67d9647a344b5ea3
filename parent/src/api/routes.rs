//! One handler per route. Each `#[utoipa::path]` is the route's entry in the OpenAPI document
//! and its `operation_id` the route's metric label; the access group it is mounted in
//! ([`super::documented_routes`]) decides its token, and its `security` says the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signer_api::responses::{
    AgentCreated, AttestationResponse, Authorization, EnclaveIdentity, Exported,
    GrantAuthorization, GrantCreated, HandoverProgress, Health, KillSwitchState, KmsKeyStatus,
    Readiness, ReceiptGap, ReceiptsPage, Revoked, RevokedTarget, VaultCreated, VaultImported,
};
use signer_api::schema::EnclaveIdSchema;
use signer_api::{
    AbortReport, B64, CreateAgentRequest, CreateGrantRequest, CreateVaultRequest,
    ExportAuthorizationRequest, ExportRequest, GrantAuthorizationRequest, HandoverReport,
    HandoverRequest, HttpCode, ImportAuthorizationRequest, ImportVaultRequest, KillSwitchRequest,
    RevokeAuthorizationRequest, RevokeRequest, RevokeTarget, ScheduledSignRequest, SignRequest,
    SignResponse, WalletRevokeScope,
};
use signer_protocol::{
    AgentKindMsg, CreateAgentOp, CreateGrantOp, ExportOp, ExportSubjectMsg, GrantFields,
    ImportVaultOp, Op, Reply, RevokeMsg, RevokeScopeMsg, RevokeSignedOp, SignOp, SignScheduledOp,
};
use signer_types::ids::EnclaveId;
use signer_types::pubkey::signature_base58;
use signer_types::records::SealedScheduled;
use uuid::Uuid;

use super::ROUTE_HEADER;
use super::doc::{
    AbortErrors, AttestationErrors, AuthorizeErrors, EnclaveErrors, KillSwitchErrors,
    OpeningErrors, RevokeErrors, SignErrors, SimpleBodyErrors, TakeoverErrors,
};
use super::extract::{Caller, JsonBody, RouteHeader};
use super::layers::{Decided, Decision, RouteTable};
use crate::app::{ApiError, GrantInfo, KmsKeyState, Parent, unexpected};

type Ctx = State<Arc<Parent>>;

/// The HPKE suite and info of an export, as the response states them.
pub(crate) const EXPORT_HPKE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; info = \"signer/export/v1\" ‖ wallet ‖ SHA-256(record); aad empty";

fn uuid(id: [u8; 16]) -> Uuid {
    Uuid::from_bytes(id)
}

/// The routing header of a request, which must name `owner` when present.
fn check_route(header: Option<String>, owner: EnclaveId) -> Result<(), ApiError> {
    match header {
        Some(given) if given.parse::<EnclaveId>().ok() != Some(owner) => {
            Err(ApiError::bad_request(format!(
                "{ROUTE_HEADER} is `{given}` but the record belongs to enclave {owner}: the load \
                 balancer would route it to the wrong enclave"
            )))
        }
        _ => Ok(()),
    }
}

/// A JSON answer with the record's routing key in `X-Signer-Route`.
fn routed(body: impl serde::Serialize, owner: EnclaveId) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&owner.to_string()) {
        response.headers_mut().insert(ROUTE_HEADER, v);
    }
    response
}

fn authorization(reply: Reply) -> Result<Authorization, ApiError> {
    let Reply::Authorization { message, nonce, issued_at, expires_at, enclave_id } = reply else {
        return Err(unexpected("authorize", &reply));
    };
    Ok(Authorization { message, nonce, issued_at, expires_at, enclave_id })
}

/// An unknown path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::http(HttpCode::NotFound, format!("no route {}", uri.path()))
}

/// A known path with another method (axum adds `Allow`).
pub async fn method_not_allowed(routes: Arc<RouteTable>, uri: Uri) -> ApiError {
    let path = uri.path();
    let detail = match routes.get(path) {
        Some(route) => format!("{path} accepts {} only", route.method),
        None => format!("{path} does not accept this method"),
    };
    ApiError::http(HttpCode::MethodNotAllowed, detail)
}

#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "probes",
    summary = "Liveness: the process is up",
    responses((status = 200, description = "The process is up.", body = Health)),
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "probes",
    summary = "Readiness: the enclave attested and reachable, KMS usable, signing allowed",
    description = "Ready only when the enclave is attested and connected, the KMS key enabled, the \
        kill switch off and no handover under way; otherwise 503 with the same body saying why. \
        Asks KMS at most once every 5 s.",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; the body says why.", body = Readiness),
    ),
)]
pub async fn readyz(State(parent): Ctx) -> Response {
    let attested = parent.attestation.current(parent.enclave.connections_made()).is_some();
    let connected = parent.enclave.is_connected();
    let kms_key = parent.kms_key_state(std::time::Duration::from_secs(5)).await;
    // A frozen enclave (handed over, or mid-handover) decides nothing; an engaged kill switch
    // signs nothing; a disabled key opens no new grant: not ready, each said.
    let (kill_switch, handed_over_to, handover) = match parent.call(&Op::Status).await {
        Ok(Reply::Status(s)) => (Some(s.kill_switch), s.handed_over_to, s.handover),
        _ => (None, None, None),
    };
    let handover_under_way = handover.as_ref().is_some_and(|h| h.stage != "prepared");
    // A cluster member serves once it applied its cluster's genesis and knows a leader (it
    // decides as the leader, or forwards to it).
    let cluster_ready = parent.cluster.ready();
    let ready = cluster_ready
        && attested
        && connected
        && kms_key == KmsKeyState::Enabled
        && kill_switch == Some(false)
        && handed_over_to.is_none()
        && !handover_under_way;
    let body = Readiness {
        ready,
        enclave_connected: connected,
        enclave_attested: attested,
        attestation_error: parent.attestation.last_error(),
        kms_reachable: kms_key != KmsKeyState::Unreachable,
        kms_key: match kms_key {
            KmsKeyState::Enabled => KmsKeyStatus::Enabled,
            KmsKeyState::Disabled => KmsKeyStatus::Disabled,
            KmsKeyState::Unreachable => KmsKeyStatus::Unreachable,
        },
        kill_switch,
        handed_over_to,
        handover: handover.map(|h| HandoverProgress {
            successor: h.successor,
            stage: h.stage,
            chunks: h.chunks,
        }),
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "probes",
    summary = "Prometheus metrics",
    description = "Requests and latency by route (the operation ids of this document) and \
        outcome (`ok` or the error code), denials by rule, KMS calls, grant cache, envelope \
        failures, handovers, enclave and KMS state.",
    responses((status = 200, description = "Prometheus text exposition 0.0.4.",
        content_type = "text/plain; version=0.0.4", body = String)),
)]
pub async fn metrics(State(parent): Ctx) -> Response {
    let mut r = parent.metrics.render().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

#[utoipa::path(
    get, path = "/v1/openapi.json", operation_id = "openapi", tag = "probes",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API, generated from the code (also \
        `docs/openapi.json` in the repository). No token needed.",
    responses((status = 200, description = "The document.", content_type = "application/json",
        body = Object)),
)]
pub async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| super::openapi_json().into()).clone();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `GET /v1/attestation` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttestationQuery {
    /// Up to 512 bytes, hex, that the document will carry (freshness for the verifier).
    #[param(example = "00112233")]
    nonce: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/attestation", operation_id = "attestation", tag = "enclave",
    summary = "A fresh attestation document of the enclave",
    description = "Verify it with `attest verify` against the AWS Nitro root (the sim CA root in \
        simulation) and the image's PCRs.",
    params(AttestationQuery),
    responses((status = 200, description = "The document.", body = AttestationResponse),
        AttestationErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn attestation(
    State(parent): Ctx,
    query: Result<Query<AttestationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AttestationResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let nonce = match query.nonce {
        None => None,
        Some(n) => Some(hex::decode(n).map_err(|_| ApiError::bad_request("nonce must be hex"))?),
    };
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(ApiError::bad_request("nonce is at most 512 bytes"));
    }
    let reply = parent.call(&Op::Attest { nonce }).await?;
    let Reply::Attestation { document, public_key } = reply else {
        return Err(unexpected("attest", &reply));
    };
    let doc = nitro_attestation::AttestationDocument::parse(&document).map_err(|e| {
        ApiError::internal(format!("the enclave returned a malformed document: {e}"))
    })?;
    let pcrs: BTreeMap<String, String> =
        doc.pcrs.iter().map(|(i, v)| (i.to_string(), hex::encode(v))).collect();
    Ok(Json(AttestationResponse {
        enclave_id: EnclaveId::from_recipient_key(&public_key),
        document: B64(document),
        public_key: B64(public_key),
        pcrs,
        timestamp_ms: doc.timestamp_ms,
    }))
}

#[utoipa::path(
    get, path = "/v1/enclave", operation_id = "enclave", tag = "enclave",
    summary = "Which enclave instance this is",
    description = "`enclave_id` is the routing key (`X-Signer-Route`); `kms_public_key` the only \
        key a client ever seals to (pin it).",
    responses((status = 200, description = "The enclave's identity.", body = EnclaveIdentity),
        EnclaveErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn enclave(State(parent): Ctx) -> Result<Json<EnclaveIdentity>, ApiError> {
    let reply = parent.call(&Op::Identity).await?;
    let Reply::Identity {
        enclave_id,
        answers_for,
        started_at,
        kms_public_key,
        registry,
        checkpoint_key,
    } = reply
    else {
        return Err(unexpected("identity", &reply));
    };
    Ok(Json(EnclaveIdentity {
        enclave_id,
        answers_for,
        started_at,
        kms_public_key: B64(kms_public_key),
        registry,
        checkpoint_key: checkpoint_key.map(|k| B64(k.to_vec())),
    }))
}

/// `GET /v1/receipts` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReceiptsQuery {
    /// Receipts with a seq above this one (absent: every receipt the ring keeps).
    pub after: Option<u64>,
}

#[utoipa::path(
    get, path = "/v1/receipts", operation_id = "receipts", tag = "enclave",
    summary = "Decision receipts and the latest checkpoint",
    description = "The enclave's receipts after `after` (every one its ring keeps when absent), \
        at most 192 KiB of them (`more` says whether more follow; continue with \
        `after=next_after`), and a checkpoint of the chain's head signed with the boot's key. \
        Receipts the ring no longer keeps are reported as `gap`, never skipped silently. \
        Verify with `attest receipts` (`docs/receipts.md`).",
    params(ReceiptsQuery),
    responses((status = 200, description = "A page of receipts.", body = ReceiptsPage),
        AttestationErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn receipts(
    State(parent): Ctx,
    query: Result<axum::extract::Query<ReceiptsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReceiptsPage>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!("after must be a non-negative integer: {}", e.body_text()))
    })?;
    let reply = parent.call(&Op::Receipts { after: query.after }).await?;
    let Reply::Receipts(page) = reply else {
        return Err(unexpected("receipts", &reply));
    };
    let metrics = &parent.metrics;
    metrics.receipts.paged.inc_by(page.receipts.len() as u64);
    metrics.receipts_written.set(i64::try_from(page.written).unwrap_or(i64::MAX));
    metrics.receipts_dropped.set(i64::try_from(page.dropped).unwrap_or(i64::MAX));
    Ok(Json(ReceiptsPage {
        enclave_id: page.enclave_id,
        decider: page.decider,
        checkpoint_key: B64(page.checkpoint_key.to_vec()),
        document: B64(page.document),
        receipts: page.receipts.into_iter().map(|r| B64(r.into_vec())).collect(),
        checkpoint: page.checkpoint.map(B64),
        gap: page.gap.map(|(after, oldest)| ReceiptGap { after, oldest }),
        next_after: page.next_after,
        more: page.more,
    }))
}

#[utoipa::path(
    post, path = "/v1/vaults", operation_id = "vaults", tag = "vaults",
    summary = "Create a user's vault",
    description = "The enclave generates the user's master key and returns it sealed, with an \
        AWS-signed provenance document. Once per wallet; store both.",
    request_body = CreateVaultRequest,
    responses((status = 200, description = "The sealed vault.", body = VaultCreated),
        SimpleBodyErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn create_vault(
    State(parent): Ctx,
    JsonBody(b): JsonBody<CreateVaultRequest>,
) -> Decided {
    let mut d = Decision { wallet: Some(b.wallet.to_string()), ..Decision::default() };
    let result = async {
        parent.attested().await?;
        let reply = parent.call_routed(&Op::CreateVault { wallet: b.wallet }).await?;
        let Reply::VaultCreated { vault_id, record, provenance } = reply else {
            return Err(unexpected("create_vault", &reply));
        };
        d.vault_id = Some(uuid(vault_id).to_string());
        Ok(Json(VaultCreated {
            vault_id: uuid(vault_id),
            vault_record: B64(record),
            provenance: B64(provenance),
        })
        .into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/authorizations/import", operation_id = "authorize_import",
    tag = "vaults",
    summary = "The message a wallet signs to import a vault it sealed itself",
    request_body = ImportAuthorizationRequest,
    responses((status = 200, description = "The message to sign.", body = Authorization),
        AuthorizeErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn authorize_import(
    State(parent): Ctx,
    JsonBody(b): JsonBody<ImportAuthorizationRequest>,
) -> Result<Json<Authorization>, ApiError> {
    parent.attested().await?;
    let op = Op::AuthorizeImport { wallet: b.wallet, vault_record: b.vault_record.0 };
    Ok(Json(authorization(parent.call_routed(&op).await?)?))
}

#[utoipa::path(
    post, path = "/v1/vaults/import", operation_id = "import_vault", tag = "vaults",
    summary = "Import a vault sealed by the client, with the wallet's signature",
    description = "The fields of the import message the wallet signed. The same signed request \
        again (a lost reply) is answered again.",
    request_body = ImportVaultRequest,
    responses((status = 200, description = "The vault's id and provenance.", body = VaultImported),
        OpeningErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn import_vault(
    State(parent): Ctx,
    JsonBody(b): JsonBody<ImportVaultRequest>,
) -> Decided {
    let mut d = Decision { wallet: Some(b.wallet.to_string()), ..Decision::default() };
    d.vault(&b.vault_record.0);
    let result = async {
        let op = Op::ImportVault(ImportVaultOp {
            wallet: b.wallet,
            vault_record: b.vault_record.0,
            nonce: b.nonce,
            issued_at: b.issued_at,
            signature: b.signature.0,
            envelope: None,
        });
        let reply = parent.call_unlocking(op).await?;
        let Reply::VaultImported { vault_id, provenance } = reply else {
            return Err(unexpected("import_vault", &reply));
        };
        d.vault_id = Some(uuid(vault_id).to_string());
        Ok(Json(VaultImported { vault_id: uuid(vault_id), provenance: B64(provenance) })
            .into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/agents", operation_id = "agents", tag = "vaults",
    summary = "Create an agent key from a vault",
    description = "`kind` is `seed` (default) or `mnemonic` (BIP39, derived at \
        `m/44'/501'/account'/0'`, the Phantom path; `account` defaults to 0). The response has \
        the agent's public key, its sealed record and a provenance document binding it to the \
        vault.",
    request_body = CreateAgentRequest,
    responses((status = 200, description = "The sealed agent key.", body = AgentCreated),
        OpeningErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn create_agent(
    State(parent): Ctx,
    JsonBody(b): JsonBody<CreateAgentRequest>,
) -> Decided {
    let mut d = Decision { wallet: Some(b.wallet.to_string()), ..Decision::default() };
    d.vault(&b.vault_record.0);
    let result = async {
        let kind = match b.mnemonic_account().map_err(|e| ApiError::bad_request(e.0))? {
            None => AgentKindMsg::Seed,
            Some(account) => AgentKindMsg::Mnemonic { account },
        };
        let op = Op::CreateAgent(CreateAgentOp {
            wallet: b.wallet,
            vault_record: b.vault_record.0,
            vault_provenance: b.vault_provenance.0,
            kind,
            envelope: None,
        });
        let reply = parent.call_unlocking(op).await?;
        let Reply::AgentCreated { agent_pubkey, agent_id, record, provenance } = reply else {
            return Err(unexpected("create_agent", &reply));
        };
        d.agent = Some(agent_pubkey.to_string());
        Ok(Json(AgentCreated {
            agent_pubkey,
            agent_key_record: B64(record),
            agent_id: uuid(agent_id),
            provenance: B64(provenance),
        })
        .into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/authorizations/grant", operation_id = "authorize_grant", tag = "grants",
    summary = "The message a wallet signs to grant a bot signing rights",
    description = "What the grant will allow: one bot, one agent key, a policy and a lifetime (at \
        most the enclave's maximum, 3600 s by default). The user's wallet signs `message`; send \
        the signature with `POST /v1/grants`.",
    request_body = GrantAuthorizationRequest,
    responses((status = 200, description = "The message to sign.", body = GrantAuthorization),
        AuthorizeErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn authorize_grant(
    State(parent): Ctx,
    JsonBody(b): JsonBody<GrantAuthorizationRequest>,
) -> Result<Json<GrantAuthorization>, ApiError> {
    parent.attested().await?;
    let policy_sha256 = hex::encode(b.policy.sha256());
    let op = Op::AuthorizeGrant(GrantFields {
        wallet: b.wallet,
        bot_id: *b.bot_id.as_bytes(),
        agent_pubkey: b.agent_pubkey,
        ttl_seconds: b.ttl_seconds,
        policy: b.policy,
    });
    let a = authorization(parent.call(&op).await?)?;
    Ok(Json(GrantAuthorization {
        message: a.message,
        nonce: a.nonce,
        issued_at: a.issued_at,
        expires_at: a.expires_at,
        enclave_id: a.enclave_id,
        policy_sha256,
    }))
}

#[utoipa::path(
    post, path = "/v1/grants", operation_id = "grants", tag = "grants",
    summary = "Create a grant from the wallet's signature",
    description = "The fields of `POST /v1/authorizations/grant`, the message's `nonce` and \
        `issued_at`, the wallet's signature, and the vault (with its provenance) the grant's key \
        comes from. The grant lives on the enclave instance that made it: route its signing \
        requests by `X-Signer-Route`.",
    request_body = CreateGrantRequest,
    responses((status = 200, description = "The sealed grant.", body = GrantCreated,
            headers(("X-Signer-Route" = EnclaveIdSchema,
                description = "The enclave instance that holds the grant (route by it)."))),
        OpeningErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn create_grant(
    State(parent): Ctx,
    JsonBody(b): JsonBody<CreateGrantRequest>,
) -> Decided {
    let mut d = Decision {
        wallet: Some(b.wallet.to_string()),
        bot_id: Some(b.bot_id.to_string()),
        agent: Some(b.agent_pubkey.to_string()),
        ..Decision::default()
    };
    d.vault(&b.vault_record.0);
    let result = async {
        let op = Op::CreateGrant(CreateGrantOp {
            grant: GrantFields {
                wallet: b.wallet,
                bot_id: *b.bot_id.as_bytes(),
                agent_pubkey: b.agent_pubkey,
                ttl_seconds: b.ttl_seconds,
                policy: b.policy,
            },
            nonce: b.nonce,
            issued_at: b.issued_at,
            signature: b.signature.0,
            vault_record: b.vault_record.0,
            vault_provenance: b.vault_provenance.0,
            envelope: None,
        });
        let reply = parent.call_unlocking(op).await?;
        let Reply::GrantCreated { grant_id, issued_at, expires_at, record, enclave_id, receipt } =
            reply
        else {
            return Err(unexpected("create_grant", &reply));
        };
        parent.count_receipt(receipt.is_some());
        d.grant_id = Some(uuid(grant_id).to_string());
        d.enclave = Some(enclave_id.to_string());
        let body = GrantCreated {
            grant_id: uuid(grant_id),
            issued_at,
            expires_at,
            grant_record: B64(record),
            enclave_id,
            receipt: receipt.map(B64),
        };
        Ok(routed(body, enclave_id))
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/sign", operation_id = "sign", tag = "signing",
    summary = "Sign a transaction under a grant",
    description = "`transaction`: legacy or v0, ≤ 1232 bytes, the agent a required signer \
        (signature slots may be zero); the response fills the agent's slot. Retry with the same \
        `request_id`: one request id never yields two different signatures.",
    params(("X-Signer-Route" = Option<EnclaveIdSchema>, Header,
        description = "The grant's enclave instance; when sent it must be the record's, else \
        `400 bad_request` (a load balancer routing mistake)."),),
    request_body = SignRequest,
    responses((status = 200, description = "Signed.", body = SignResponse,
            headers(("X-Signer-Route" = EnclaveIdSchema,
                description = "The enclave instance that holds the grant."))),
        SignErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn sign(
    State(parent): Ctx,
    RouteHeader(route): RouteHeader,
    JsonBody(b): JsonBody<SignRequest>,
) -> Decided {
    let mut d = Decision {
        request_id: Some(b.request_id.to_string()),
        bot_id: Some(b.bot_id.to_string()),
        ..Decision::default()
    };
    let result = async {
        let grant = GrantInfo::parse(&b.grant_record.0)?;
        d.grant_id = Some(uuid(grant.id).to_string());
        d.wallet = Some(grant.wallet.to_string());
        d.agent = Some(grant.agent_pubkey.to_string());
        d.enclave = Some(grant.enclave_id.to_string());
        check_route(route, grant.enclave_id)?;
        let op = SignOp {
            grant_record: b.grant_record.0,
            agent_key_record: b.agent_key_record.0,
            bot_id: *b.bot_id.as_bytes(),
            transaction: b.transaction.0,
            request_id: *b.request_id.as_bytes(),
            declared_notional_cents: b.declared_notional_cents,
            envelope: None,
        };
        let reply = parent.sign(&grant, op).await?;
        let Reply::Signed { signature, transaction, record_id, receipt } = reply else {
            return Err(unexpected("sign", &reply));
        };
        parent.count_receipt(receipt.is_some());
        let body = SignResponse {
            signature: signature_base58(&signature),
            transaction: B64(transaction),
            grant_id: Some(uuid(record_id)),
            receipt: receipt.map(B64),
        };
        Ok(routed(body, grant.enclave_id))
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/scheduled/sign", operation_id = "scheduled_sign", tag = "signing",
    summary = "Sign the one transfer a scheduled record allows",
    description = "A scheduled record is sealed by the user's browser to the enclave's KMS key \
        (`GET /v1/enclave`): it names one enclave instance, a time window, the fee limit and the \
        exact transfer. Single use.",
    params(("X-Signer-Route" = Option<EnclaveIdSchema>, Header,
        description = "The record's enclave instance; when sent it must be the record's, else \
        `400 bad_request`."),),
    request_body = ScheduledSignRequest,
    responses((status = 200, description = "Signed.", body = SignResponse,
            headers(("X-Signer-Route" = EnclaveIdSchema,
                description = "The enclave instance the record names."))),
        SignErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn scheduled_sign(
    State(parent): Ctx,
    RouteHeader(route): RouteHeader,
    JsonBody(b): JsonBody<ScheduledSignRequest>,
) -> Decided {
    let mut d = Decision { request_id: Some(b.request_id.to_string()), ..Decision::default() };
    let result = async {
        let sealed = SealedScheduled::parse(&b.scheduled_record.0).map_err(|e| {
            ApiError::coded(
                signer_types::ErrorCode::RecordInvalid,
                format!("scheduled_record: {e}"),
            )
        })?;
        d.schedule_id = Some(uuid(sealed.header.schedule_id).to_string());
        d.wallet = Some(sealed.header.wallet.to_string());
        d.agent = Some(sealed.header.agent_pubkey.to_string());
        d.enclave = Some(sealed.header.enclave_id.to_string());
        let owner = sealed.header.enclave_id;
        check_route(route, owner)?;
        let op = SignScheduledOp {
            scheduled_record: b.scheduled_record.0,
            transaction: b.transaction.0,
            request_id: *b.request_id.as_bytes(),
            envelope: None,
        };
        let reply = parent.sign_scheduled(op).await?;
        let Reply::Signed { signature, transaction, receipt, .. } = reply else {
            return Err(unexpected("sign_scheduled", &reply));
        };
        parent.count_receipt(receipt.is_some());
        let body = SignResponse {
            signature: signature_base58(&signature),
            transaction: B64(transaction),
            grant_id: None,
            receipt: receipt.map(B64),
        };
        Ok(routed(body, owner))
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/grants/revoke", operation_id = "revoke", tag = "revocation",
    summary = "Revoke a grant or every grant of a wallet",
    description = "With the admin token: `{grant_id}` or `{wallet}`. With the API token: what the \
        wallet signed (`POST /v1/authorizations/revoke`): `wallet`, `grant_id` or `all: true`, \
        `nonce`, `issued_at`, `signature`. Per enclave: send it to every instance.",
    request_body = RevokeRequest,
    responses((status = 200, description = "Revoked.", body = Revoked), RevokeErrors),
    security(("admin_token" = []), ("api_token" = [])),
)]
pub async fn revoke(
    State(parent): Ctx,
    caller: Caller,
    JsonBody(b): JsonBody<RevokeRequest>,
) -> Decided {
    let mut d = Decision::default();
    let result = async {
        let (op, echo) = match b.target().map_err(|e| ApiError::bad_request(e.0))? {
            RevokeTarget::Signed { wallet, scope, nonce, issued_at, signature } => {
                d.wallet = Some(wallet.to_string());
                let mut echo = RevokedTarget { wallet: Some(wallet), ..RevokedTarget::default() };
                let scope = match scope {
                    WalletRevokeScope::Grant(id) => {
                        d.grant_id = Some(id.to_string());
                        echo.grant_id = Some(id);
                        RevokeScopeMsg::Record(*id.as_bytes())
                    }
                    WalletRevokeScope::All => {
                        echo.all = Some(true);
                        RevokeScopeMsg::All
                    }
                };
                let op = Op::RevokeSigned(RevokeSignedOp {
                    wallet,
                    scope,
                    nonce,
                    issued_at,
                    signature: signature.0,
                });
                (op, echo)
            }
            _ if caller != Caller::Admin => {
                return Err(ApiError::http(
                    HttpCode::Unauthorized,
                    "revoking without the wallet's signature needs the admin token",
                ));
            }
            RevokeTarget::Grant(id) => {
                d.grant_id = Some(id.to_string());
                let target = RevokeMsg::Record(*id.as_bytes());
                let echo = RevokedTarget { grant_id: Some(id), ..RevokedTarget::default() };
                (Op::Revoke { target }, echo)
            }
            RevokeTarget::Wallet(w) => {
                d.wallet = Some(w.to_string());
                let echo = RevokedTarget { wallet: Some(w), ..RevokedTarget::default() };
                (Op::Revoke { target: RevokeMsg::Wallet(w) }, echo)
            }
        };
        let reply = parent.call_routed(&op).await?;
        let Reply::Revoked { dropped } = reply else {
            return Err(unexpected("revoke", &reply));
        };
        Ok(Json(Revoked { revoked: echo, dropped_from_memory: dropped }).into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/authorizations/revoke", operation_id = "authorize_revoke",
    tag = "revocation",
    summary = "The message a wallet signs to revoke its own grants",
    request_body = RevokeAuthorizationRequest,
    responses((status = 200, description = "The message to sign.", body = Authorization),
        AuthorizeErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn authorize_revoke(
    State(parent): Ctx,
    JsonBody(b): JsonBody<RevokeAuthorizationRequest>,
) -> Result<Json<Authorization>, ApiError> {
    let scope = match b.scope().map_err(|e| ApiError::bad_request(e.0))? {
        WalletRevokeScope::Grant(id) => RevokeScopeMsg::Record(*id.as_bytes()),
        WalletRevokeScope::All => RevokeScopeMsg::All,
    };
    parent.attested().await?;
    let op = Op::AuthorizeRevoke { wallet: b.wallet, scope };
    Ok(Json(authorization(parent.call_routed(&op).await?)?))
}

#[utoipa::path(
    post, path = "/v1/authorizations/export", operation_id = "authorize_export", tag = "export",
    summary = "The message a wallet signs to export its master key or an agent's secret",
    description = "What to export (the vault's master key, or with `agent_key_record` that \
        agent's secret) and the X25519 public key the user's browser generated: the secret will \
        be HPKE-sealed to it.",
    request_body = ExportAuthorizationRequest,
    responses((status = 200, description = "The message to sign.", body = Authorization),
        AuthorizeErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn authorize_export(
    State(parent): Ctx,
    JsonBody(b): JsonBody<ExportAuthorizationRequest>,
) -> Result<Json<Authorization>, ApiError> {
    let recipient = b.recipient_key().map_err(|e| ApiError::bad_request(e.0))?;
    parent.attested().await?;
    let op = Op::AuthorizeExport(ExportSubjectMsg {
        wallet: b.wallet,
        vault_record: b.vault_record.0,
        vault_provenance: b.vault_provenance.0,
        agent_key_record: b.agent_key_record.map(|r| r.0),
        recipient,
    });
    Ok(Json(authorization(parent.call_routed(&op).await?)?))
}

#[utoipa::path(
    post, path = "/v1/export", operation_id = "export", tag = "export",
    summary = "Export a secret, HPKE-sealed to the browser's key, with the wallet's signature",
    description = "The fields of `POST /v1/authorizations/export` and the message's `nonce`, \
        `issued_at` and the wallet's `signature`. Only the browser that holds the recipient's \
        private key can open the answer.",
    request_body = ExportRequest,
    responses((status = 200, description = "The sealed secret.", body = Exported), OpeningErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn export(State(parent): Ctx, JsonBody(b): JsonBody<ExportRequest>) -> Decided {
    let mut d = Decision { wallet: Some(b.wallet.to_string()), ..Decision::default() };
    d.vault(&b.vault_record.0);
    if let Some(agent) = &b.agent_key_record {
        d.agent(&agent.0);
    }
    let result = async {
        let recipient = b.recipient_key().map_err(|e| ApiError::bad_request(e.0))?;
        let op = Op::Export(ExportOp {
            subject: ExportSubjectMsg {
                wallet: b.wallet,
                vault_record: b.vault_record.0,
                vault_provenance: b.vault_provenance.0,
                agent_key_record: b.agent_key_record.map(|r| r.0),
                recipient,
            },
            nonce: b.nonce,
            issued_at: b.issued_at,
            signature: b.signature.0,
            envelope: None,
        });
        let reply = parent.call_unlocking(op).await?;
        let Reply::Exported { enc, ciphertext, kind, record_id } = reply else {
            return Err(unexpected("export", &reply));
        };
        Ok(Json(Exported {
            kind,
            record_id: uuid(record_id),
            recipient: B64(recipient.to_vec()),
            enc: B64(enc.to_vec()),
            ciphertext: B64(ciphertext),
            hpke: EXPORT_HPKE,
        })
        .into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/kill-switch", operation_id = "kill_switch", tag = "admin",
    summary = "Engage or release the kill switch",
    description = "While engaged the enclave signs nothing. Per enclave: send it to every \
        instance.",
    request_body = KillSwitchRequest,
    responses((status = 200, description = "The switch's state.", body = KillSwitchState),
        KillSwitchErrors),
    security(("admin_token" = [])),
)]
pub async fn kill_switch(State(parent): Ctx, JsonBody(b): JsonBody<KillSwitchRequest>) -> Decided {
    let d = Decision { engaged: Some(b.engaged), ..Decision::default() };
    let result = async {
        let reply = parent.call_routed(&Op::KillSwitch { engaged: b.engaged }).await?;
        let Reply::KillSwitch { engaged } = reply else {
            return Err(unexpected("kill_switch", &reply));
        };
        tracing::warn!(engaged, "kill switch changed");
        Ok(Json(KillSwitchState { engaged }).into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/admin/handover", operation_id = "handover", tag = "admin",
    summary = "Hand the decision state over to a successor enclave",
    description = "For planned restarts, upgrades and retirements (SPEC §16): the successor as \
        the parent reaches it, and its measurements when its image differs. The same request \
        again resumes an interrupted handover. The parent waits up to 10 s for a successor that \
        does not listen yet.",
    request_body = HandoverRequest,
    responses((status = 200, description = "Handed over.", body = HandoverReport), TakeoverErrors),
    security(("admin_token" = [])),
)]
pub async fn handover(State(parent): Ctx, JsonBody(b): JsonBody<HandoverRequest>) -> Decided {
    let mut d = Decision {
        successor: Some(b.successor.chars().take(200).collect()),
        ..Decision::default()
    };
    let result = async {
        let successor: signer_protocol::Endpoint =
            b.successor.parse().map_err(|e| ApiError::bad_request(format!("successor: {e}")))?;
        let measurements = match b.measurements {
            None => None,
            Some(json) => {
                let mut pcrs =
                    nitro_attestation::policy::pcrs_from_measurements_json(&json.to_string())
                        .map_err(|e| ApiError::bad_request(format!("measurements: {e}")))?;
                let pinned = parent.attestation.expected_pcrs();
                pcrs.retain(|i, _| pinned.contains_key(i));
                Some(pcrs)
            }
        };
        let report = parent.handover(successor, measurements).await?;
        d.enclave = Some(report.successor.to_string());
        Ok(Json(report).into_response())
    }
    .await;
    Decided(d, result)
}

#[utoipa::path(
    post, path = "/v1/admin/handover/abort", operation_id = "handover_abort", tag = "admin",
    summary = "Take back an uncommitted handover",
    description = "The old enclave decides again and the successor can never take the state \
        over. After the old enclave committed, only finishing is possible. No body.",
    responses((status = 200, description = "Aborted (or nothing was under way).",
        body = AbortReport), AbortErrors),
    security(("admin_token" = [])),
)]
pub async fn handover_abort(State(parent): Ctx) -> Decided {
    let result = parent.abort_handover().await.map(|r| Json(r).into_response());
    Decided(Decision::default(), result)
}
