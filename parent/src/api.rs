//! The HTTP API (SPEC §6): JSON bodies; bytes as standard padded base64; Solana keys and
//! signatures as base58; 16-byte ids as UUID text. Errors are `application/problem+json` with
//! `type`, `title`, `status`, `detail` and a stable `code` (plus `rule`, `limit`, `requested`,
//! `used`, `subject` for `policy_denied`). `Authorization: Bearer <token>` on every `/v1` route;
//! the kill switch, handover and an unsigned revoke need the admin token (a revoke the wallet
//! signed needs only the API token). Bodies above the limit (64 KiB) get 413 before they are
//! read; unknown fields, wrong types and malformed JSON get 400. No body carries a secret in
//! the clear: master keys leave the enclave only in a wallet-signed export, HPKE-sealed to the
//! user's browser key.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use signer_api::{
    ApiBody, CreateAgentRequest, CreateGrantRequest, CreateVaultRequest,
    ExportAuthorizationRequest, ExportRequest, GrantAuthorizationRequest,
    ImportAuthorizationRequest, ImportVaultRequest, KillSwitchRequest, RevokeAuthorizationRequest,
    RevokeRequest, RevokeTarget, ScheduledSignRequest, SignRequest, SignResponse,
    WalletRevokeScope,
};
use signer_protocol::{
    AgentKindMsg, CreateAgentOp, CreateGrantOp, ExportOp, ExportSubjectMsg, GrantFields,
    ImportVaultOp, Op, Reply, RevokeMsg, RevokeScopeMsg, RevokeSignedOp, SignOp, SignScheduledOp,
};
use signer_types::ids::EnclaveId;
use signer_types::pubkey::signature_base58;
use signer_types::records::SealedScheduled;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::app::{ApiError, GrantInfo, KmsKeyState, Parent, unexpected};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
}

type Body = Full<Bytes>;

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON response from any serializable value (no intermediate `Value` tree).
fn json_body<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn problem(e: &ApiError) -> Response<Body> {
    let p = Problem {
        kind: format!("urn:signer:error:{}", e.code),
        title: e.title,
        status: e.status,
        detail: &e.detail,
        code: e.code,
        rule: e.denial.as_ref().map(|d| d.rule.as_str()),
        limit: e.denial.as_ref().and_then(|d| d.limit),
        requested: e.denial.as_ref().and_then(|d| d.requested),
        used: e.denial.as_ref().and_then(|d| d.used),
        subject: e.denial.as_ref().and_then(|d| d.subject.as_deref()),
    };
    let mut r = json_response(e.status, &serde_json::to_value(&p).unwrap_or_default());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if e.status == 401 {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Which token a route needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Api,
    Admin,
}

/// The route table: path → (method, access, metric label).
fn route(path: &str) -> Option<(Method, Access, &'static str)> {
    Some(match path {
        "/v1/attestation" => (Method::GET, Access::Api, "attestation"),
        "/v1/enclave" => (Method::GET, Access::Api, "enclave"),
        "/v1/vaults" => (Method::POST, Access::Api, "vaults"),
        "/v1/authorizations/import" => (Method::POST, Access::Api, "authorize_import"),
        "/v1/vaults/import" => (Method::POST, Access::Api, "import_vault"),
        "/v1/agents" => (Method::POST, Access::Api, "agents"),
        "/v1/authorizations/grant" => (Method::POST, Access::Api, "authorize_grant"),
        "/v1/grants" => (Method::POST, Access::Api, "grants"),
        "/v1/sign" => (Method::POST, Access::Api, "sign"),
        "/v1/scheduled/sign" => (Method::POST, Access::Api, "scheduled_sign"),
        // Unsigned revocations need the admin token; the handler checks (a wallet-signed one
        // needs only the API token).
        "/v1/grants/revoke" => (Method::POST, Access::Api, "revoke"),
        "/v1/authorizations/revoke" => (Method::POST, Access::Api, "authorize_revoke"),
        "/v1/authorizations/export" => (Method::POST, Access::Api, "authorize_export"),
        "/v1/export" => (Method::POST, Access::Api, "export"),
        "/v1/kill-switch" => (Method::POST, Access::Admin, "kill_switch"),
        "/v1/admin/handover" => (Method::POST, Access::Admin, "handover"),
        "/v1/admin/handover/abort" => (Method::POST, Access::Admin, "handover_abort"),
        "/healthz" => (Method::GET, Access::Public, "healthz"),
        "/readyz" => (Method::GET, Access::Public, "readyz"),
        "/metrics" => (Method::GET, Access::Public, "metrics"),
        _ => return None,
    })
}

/// Compares a presented token with every configured one in constant time (hashing first so
/// lengths do not leak either).
fn token_matches(presented: &str, tokens: &[String]) -> bool {
    let p = Sha256::digest(presented.as_bytes());
    tokens
        .iter()
        .fold(subtle::Choice::from(0), |acc, t| acc | Sha256::digest(t.as_bytes()).ct_eq(&p))
        .into()
}

/// Whether the request carries an admin token (for routes whose access depends on the body).
fn presented_admin_token(parent: &Parent, req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token_matches(token, &parent.settings.admin_tokens))
}

fn authorize(parent: &Parent, req: &Request<Incoming>, access: Access) -> Result<(), ApiError> {
    if access == Access::Public {
        return Ok(());
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(401, "unauthorized", "missing `Authorization: Bearer <token>`")
        })?;
    let admin = token_matches(token, &parent.settings.admin_tokens);
    match access {
        Access::Admin if admin => Ok(()),
        Access::Admin => {
            Err(ApiError::new(401, "unauthorized", "this route needs the admin token"))
        }
        _ if admin || token_matches(token, &parent.settings.api_tokens) => Ok(()),
        _ => Err(ApiError::new(401, "unauthorized", "invalid bearer token")),
    }
}

/// When the request being handled must have arrived in full (`request_read_timeout`), counted
/// from when its connection started waiting for it; `serve` sets it on every request.
#[derive(Clone, Copy, Debug)]
struct ReadDeadline(tokio::time::Instant);

async fn read_body(
    parent: &Parent,
    req: Request<Incoming>,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let limit = parent.settings.body_limit_bytes;
    let too_large =
        || ApiError::new(413, "payload_too_large", format!("request body exceeds {limit} bytes"));
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let deadline = req.extensions().get::<ReadDeadline>().copied();
    let collect = Limited::new(req.into_body(), limit).collect();
    let collected = match deadline {
        None => collect.await,
        Some(ReadDeadline(at)) => tokio::time::timeout_at(at, collect).await.map_err(|_| {
            parent.metrics.http_read_timeouts.with_label_values(&["body"]).inc();
            ApiError::new(
                408,
                "request_timeout",
                format!(
                    "the request did not arrive within {} ms",
                    parent.settings.request_read_timeout.as_millis()
                ),
            )
        })?,
    }
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            too_large()
        } else {
            ApiError::bad_request(format!("reading the body: {e}"))
        }
    })?;
    Ok(Zeroizing::new(collected.to_bytes().to_vec()))
}

fn parse<T: ApiBody>(body: &[u8]) -> Result<T, ApiError> {
    signer_api::parse(body).map_err(|e| ApiError::bad_request(e.0))
}

/// The routing key a load balancer uses (SPEC §13, §16): the id of the enclave instance that
/// holds a record's decision state. Grant, sign and scheduled-sign responses carry it; a request
/// that carries it must name its record's enclave.
pub const ROUTE_HEADER: &str = "x-signer-route";

fn b64_id(id: &[u8; 16]) -> String {
    Uuid::from_bytes(*id).to_string()
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

fn with_route(mut response: Response<Body>, owner: EnclaveId) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(&owner.to_string()) {
        response.headers_mut().insert(ROUTE_HEADER, v);
    }
    response
}

fn authorization_json(reply: Reply, extra: Option<(&str, Value)>) -> Result<Value, ApiError> {
    let Reply::Authorization { message, nonce, issued_at, expires_at, enclave_id } = reply else {
        return Err(unexpected("authorize", &reply));
    };
    let mut body = json!({
        "message": message,
        "nonce": nonce,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "enclave_id": enclave_id.to_string(),
    });
    if let (Some((key, value)), Some(map)) = (extra, body.as_object_mut()) {
        map.insert(key.to_string(), value);
    }
    Ok(body)
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn dispatch(
    parent: &Parent,
    label: &str,
    req: Request<Incoming>,
    decision: &mut Decision,
) -> Result<Response<Body>, ApiError> {
    match label {
        "healthz" => Ok(json_response(200, &json!({"status": "ok"}))),
        "metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(parent.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        "readyz" => {
            let attested = parent.attestation.current(parent.enclave.connections_made()).is_some();
            let connected = parent.enclave.is_connected();
            let kms_key = parent.kms_key_state(std::time::Duration::from_secs(5)).await;
            // A frozen enclave (handed over, or mid-handover) decides nothing; an engaged kill
            // switch signs nothing; a disabled key opens no new grant: not ready, each said.
            let (kill_switch, handed_over_to, handover) = match parent.call(&Op::Status).await {
                Ok(Reply::Status(s)) => (Some(s.kill_switch), s.handed_over_to, s.handover),
                _ => (None, None, None),
            };
            let handover_under_way = handover.as_ref().is_some_and(|h| h.stage != "prepared");
            let ready = attested
                && connected
                && kms_key == KmsKeyState::Enabled
                && kill_switch == Some(false)
                && handed_over_to.is_none()
                && !handover_under_way;
            Ok(json_response(
                if ready { 200 } else { 503 },
                &json!({
                    "ready": ready,
                    "enclave_connected": connected,
                    "enclave_attested": attested,
                    "attestation_error": parent.attestation.last_error(),
                    "kms_reachable": kms_key != KmsKeyState::Unreachable,
                    "kms_key": kms_key,
                    "kill_switch": kill_switch,
                    "handed_over_to": handed_over_to.map(|id| id.to_string()),
                    "handover": handover.map(|h| json!({
                        "successor": h.successor.to_string(),
                        "stage": h.stage,
                        "chunks": h.chunks,
                    })),
                }),
            ))
        }
        "attestation" => {
            let nonce = match query_param(&req, "nonce") {
                None => None,
                Some(n) => {
                    Some(hex::decode(n).map_err(|_| ApiError::bad_request("nonce must be hex"))?)
                }
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
            Ok(json_response(
                200,
                &json!({"document": b64(&document), "public_key": b64(&public_key), "pcrs": pcrs, "timestamp_ms": doc.timestamp_ms, "enclave_id": EnclaveId::from_recipient_key(&public_key).to_string()}),
            ))
        }
        "enclave" => {
            let reply = parent.call(&Op::Identity).await?;
            let Reply::Identity { enclave_id, answers_for, started_at, kms_public_key, registry } =
                reply
            else {
                return Err(unexpected("identity", &reply));
            };
            let answers_for: Vec<String> = answers_for.iter().map(ToString::to_string).collect();
            Ok(json_response(
                200,
                &json!({
                    "enclave_id": enclave_id.to_string(),
                    "answers_for": answers_for,
                    "started_at": started_at,
                    "kms_public_key": b64(&kms_public_key),
                    "registry": registry,
                }),
            ))
        }
        "vaults" => {
            let b: CreateVaultRequest = parse(&read_body(parent, req).await?)?;
            decision.wallet = Some(b.wallet.to_string());
            parent.attested().await?;
            let reply = parent.call_routed(&Op::CreateVault { wallet: b.wallet }).await?;
            let Reply::VaultCreated { vault_id, record, provenance } = reply else {
                return Err(unexpected("create_vault", &reply));
            };
            decision.vault_id = Some(b64_id(&vault_id));
            Ok(json_response(
                200,
                &json!({"vault_id": b64_id(&vault_id), "vault_record": b64(&record), "provenance": b64(&provenance)}),
            ))
        }
        "authorize_import" => {
            let b: ImportAuthorizationRequest = parse(&read_body(parent, req).await?)?;
            parent.attested().await?;
            let op = Op::AuthorizeImport { wallet: b.wallet, vault_record: b.vault_record.0 };
            Ok(json_response(200, &authorization_json(parent.call_routed(&op).await?, None)?))
        }
        "import_vault" => {
            let b: ImportVaultRequest = parse(&read_body(parent, req).await?)?;
            decision.wallet = Some(b.wallet.to_string());
            decision.vault(&b.vault_record.0);
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
            decision.vault_id = Some(b64_id(&vault_id));
            Ok(json_response(
                200,
                &json!({"vault_id": b64_id(&vault_id), "provenance": b64(&provenance)}),
            ))
        }
        "agents" => {
            let b: CreateAgentRequest = parse(&read_body(parent, req).await?)?;
            decision.wallet = Some(b.wallet.to_string());
            decision.vault(&b.vault_record.0);
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
            decision.agent = Some(agent_pubkey.to_string());
            Ok(json_response(
                200,
                &json!({"agent_pubkey": agent_pubkey.to_string(), "agent_key_record": b64(&record), "agent_id": b64_id(&agent_id), "provenance": b64(&provenance)}),
            ))
        }
        "authorize_grant" => {
            let b: GrantAuthorizationRequest = parse(&read_body(parent, req).await?)?;
            parent.attested().await?;
            let policy_sha256 = hex::encode(b.policy.sha256());
            let op = Op::AuthorizeGrant(GrantFields {
                wallet: b.wallet,
                bot_id: *b.bot_id.as_bytes(),
                agent_pubkey: b.agent_pubkey,
                ttl_seconds: b.ttl_seconds,
                policy: b.policy,
            });
            let body = authorization_json(
                parent.call(&op).await?,
                Some(("policy_sha256", json!(policy_sha256))),
            )?;
            Ok(json_response(200, &body))
        }
        "grants" => {
            let b: CreateGrantRequest = parse(&read_body(parent, req).await?)?;
            decision.wallet = Some(b.wallet.to_string());
            decision.bot_id = Some(b.bot_id.to_string());
            decision.agent = Some(b.agent_pubkey.to_string());
            decision.vault(&b.vault_record.0);
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
            let Reply::GrantCreated { grant_id, issued_at, expires_at, record, enclave_id } = reply
            else {
                return Err(unexpected("create_grant", &reply));
            };
            decision.grant_id = Some(b64_id(&grant_id));
            decision.enclave = Some(enclave_id.to_string());
            let body = json!({"grant_id": b64_id(&grant_id), "issued_at": issued_at, "expires_at": expires_at, "grant_record": b64(&record), "enclave_id": enclave_id.to_string()});
            Ok(with_route(json_response(200, &body), enclave_id))
        }
        "sign" => {
            let route_header =
                req.headers().get(ROUTE_HEADER).map(|v| v.to_str().unwrap_or("").to_string());
            let b: SignRequest = parse(&read_body(parent, req).await?)?;
            decision.request_id = Some(b.request_id.to_string());
            decision.bot_id = Some(b.bot_id.to_string());
            let grant = GrantInfo::parse(&b.grant_record.0)?;
            decision.grant_id = Some(b64_id(&grant.id));
            decision.wallet = Some(grant.wallet.to_string());
            decision.agent = Some(grant.agent_pubkey.to_string());
            decision.enclave = Some(grant.enclave_id.to_string());
            check_route(route_header, grant.enclave_id)?;
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
            let Reply::Signed { signature, transaction, record_id } = reply else {
                return Err(unexpected("sign", &reply));
            };
            let body = SignResponse {
                signature: signature_base58(&signature),
                transaction: b64(&transaction),
                grant_id: Some(b64_id(&record_id)),
            };
            Ok(with_route(json_body(200, &body), grant.enclave_id))
        }
        "scheduled_sign" => {
            let route_header =
                req.headers().get(ROUTE_HEADER).map(|v| v.to_str().unwrap_or("").to_string());
            let b: ScheduledSignRequest = parse(&read_body(parent, req).await?)?;
            decision.request_id = Some(b.request_id.to_string());
            let sealed = SealedScheduled::parse(&b.scheduled_record.0).map_err(|e| {
                ApiError::coded(
                    signer_types::ErrorCode::RecordInvalid,
                    format!("scheduled_record: {e}"),
                )
            })?;
            decision.schedule_id = Some(b64_id(&sealed.header.schedule_id));
            decision.wallet = Some(sealed.header.wallet.to_string());
            decision.agent = Some(sealed.header.agent_pubkey.to_string());
            decision.enclave = Some(sealed.header.enclave_id.to_string());
            let owner = sealed.header.enclave_id;
            check_route(route_header, owner)?;
            let op = SignScheduledOp {
                scheduled_record: b.scheduled_record.0,
                transaction: b.transaction.0,
                request_id: *b.request_id.as_bytes(),
                envelope: None,
            };
            let reply = parent.sign_scheduled(op).await?;
            let Reply::Signed { signature, transaction, .. } = reply else {
                return Err(unexpected("sign_scheduled", &reply));
            };
            let body = SignResponse {
                signature: signature_base58(&signature),
                transaction: b64(&transaction),
                grant_id: None,
            };
            Ok(with_route(json_body(200, &body), owner))
        }
        "revoke" => {
            let admin = presented_admin_token(parent, &req);
            let body = read_body(parent, req).await?;
            let b: RevokeRequest = parse(&body)?;
            let (op, echo) = match b.target().map_err(|e| ApiError::bad_request(e.0))? {
                RevokeTarget::Signed { wallet, scope, nonce, issued_at, signature } => {
                    decision.wallet = Some(wallet.to_string());
                    let (scope, echo) = match scope {
                        WalletRevokeScope::Grant(id) => {
                            decision.grant_id = Some(id.to_string());
                            (
                                RevokeScopeMsg::Record(*id.as_bytes()),
                                json!({"wallet": wallet.to_string(), "grant_id": id.to_string()}),
                            )
                        }
                        WalletRevokeScope::All => (
                            RevokeScopeMsg::All,
                            json!({"wallet": wallet.to_string(), "all": true}),
                        ),
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
                _ if !admin => {
                    return Err(ApiError::new(
                        401,
                        "unauthorized",
                        "revoking without the wallet's signature needs the admin token",
                    ));
                }
                RevokeTarget::Grant(id) => {
                    decision.grant_id = Some(id.to_string());
                    let target = RevokeMsg::Record(*id.as_bytes());
                    (Op::Revoke { target }, json!({"grant_id": id.to_string()}))
                }
                RevokeTarget::Wallet(w) => {
                    decision.wallet = Some(w.to_string());
                    (Op::Revoke { target: RevokeMsg::Wallet(w) }, json!({"wallet": w.to_string()}))
                }
            };
            let reply = parent.call_routed(&op).await?;
            let Reply::Revoked { dropped } = reply else {
                return Err(unexpected("revoke", &reply));
            };
            Ok(json_response(200, &json!({"revoked": echo, "dropped_from_memory": dropped})))
        }
        "authorize_revoke" => {
            let b: RevokeAuthorizationRequest = parse(&read_body(parent, req).await?)?;
            let scope = match b.scope().map_err(|e| ApiError::bad_request(e.0))? {
                WalletRevokeScope::Grant(id) => RevokeScopeMsg::Record(*id.as_bytes()),
                WalletRevokeScope::All => RevokeScopeMsg::All,
            };
            parent.attested().await?;
            let op = Op::AuthorizeRevoke { wallet: b.wallet, scope };
            Ok(json_response(200, &authorization_json(parent.call_routed(&op).await?, None)?))
        }
        "authorize_export" => {
            let b: ExportAuthorizationRequest = parse(&read_body(parent, req).await?)?;
            let recipient = b.recipient_key().map_err(|e| ApiError::bad_request(e.0))?;
            parent.attested().await?;
            let op = Op::AuthorizeExport(ExportSubjectMsg {
                wallet: b.wallet,
                vault_record: b.vault_record.0,
                vault_provenance: b.vault_provenance.0,
                agent_key_record: b.agent_key_record.map(|r| r.0),
                recipient,
            });
            Ok(json_response(200, &authorization_json(parent.call_routed(&op).await?, None)?))
        }
        "export" => {
            let b: ExportRequest = parse(&read_body(parent, req).await?)?;
            let recipient = b.recipient_key().map_err(|e| ApiError::bad_request(e.0))?;
            decision.wallet = Some(b.wallet.to_string());
            decision.vault(&b.vault_record.0);
            if let Some(agent) = &b.agent_key_record {
                decision.agent(&agent.0);
            }
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
            Ok(json_response(
                200,
                &json!({
                    "kind": kind,
                    "record_id": b64_id(&record_id),
                    "recipient": b64(&recipient),
                    "enc": b64(&enc),
                    "ciphertext": b64(&ciphertext),
                    "hpke": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; info = \"signer/export/v1\" ‖ wallet ‖ SHA-256(record); aad empty",
                }),
            ))
        }
        "kill_switch" => {
            let body = read_body(parent, req).await?;
            let b: KillSwitchRequest = parse(&body)?;
            decision.engaged = Some(b.engaged);
            let reply = parent.call_routed(&Op::KillSwitch { engaged: b.engaged }).await?;
            let Reply::KillSwitch { engaged } = reply else {
                return Err(unexpected("kill_switch", &reply));
            };
            tracing::warn!(engaged, "kill switch changed");
            Ok(json_response(200, &json!({"engaged": engaged})))
        }
        "handover" => {
            let b: signer_api::HandoverRequest = parse(&read_body(parent, req).await?)?;
            decision.successor = Some(b.successor.chars().take(200).collect());
            let successor: signer_protocol::Endpoint = b
                .successor
                .parse()
                .map_err(|e| ApiError::bad_request(format!("successor: {e}")))?;
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
            decision.enclave = Some(report.successor.to_string());
            Ok(json_body(200, &report))
        }
        "handover_abort" => Ok(json_body(200, &parent.abort_handover().await?)),
        _ => Err(ApiError::new(404, "not_found", "no such route")),
    }
}

/// What a decision route learnt about its request, for its one `decision` log line: ids, public
/// keys and the routing key, all public (records' headers are cleartext AAD). Never a record, a
/// transaction, a token or a secret.
#[derive(Debug, Default)]
struct Decision {
    request_id: Option<String>,
    grant_id: Option<String>,
    schedule_id: Option<String>,
    vault_id: Option<String>,
    wallet: Option<String>,
    bot_id: Option<String>,
    agent: Option<String>,
    enclave: Option<String>,
    engaged: Option<bool>,
    successor: Option<String>,
}

impl Decision {
    /// The vault id from a vault record's cleartext header (nothing if it does not parse: the
    /// enclave's refusal says why).
    fn vault(&mut self, record: &[u8]) {
        if let Ok(vault) = signer_types::records::SealedVault::parse(record) {
            self.vault_id = Some(b64_id(&vault.header.vault_id));
        }
    }

    /// The agent's public key from an agent-key record's cleartext header.
    fn agent(&mut self, record: &[u8]) {
        if let Ok(agent) = signer_types::records::SealedAgentKey::parse(record) {
            self.agent = Some(agent.header.agent_pubkey.to_string());
        }
    }
}

/// The routes whose outcome is a decision (something signed, sealed, refused, revoked or
/// switched): each gets exactly one `decision` log line.
fn is_decision(label: &str) -> bool {
    matches!(
        label,
        "vaults"
            | "import_vault"
            | "agents"
            | "grants"
            | "sign"
            | "scheduled_sign"
            | "revoke"
            | "kill_switch"
            | "handover"
            | "handover_abort"
            | "export"
    )
}

/// The outcome label of a request: `ok`, or the stable error code the response carries.
fn outcome(result: &Result<Response<Body>, ApiError>) -> &'static str {
    match result {
        Ok(r) if r.status().as_u16() < 400 => "ok",
        // `/readyz` answers 503 without an error: the enclave or KMS is unavailable.
        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
            signer_types::ErrorCode::EnclaveUnavailable.as_str()
        }
        Ok(_) => signer_types::ErrorCode::Internal.as_str(),
        Err(e) => e.code,
    }
}

/// One structured line per decision (target `decision`): route, outcome, status and what is
/// known of the request; the rule and its numbers for `policy_denied`. Server-side failures are
/// warnings, everything else (refusals included) information.
fn log_decision(
    route: &str,
    outcome: &str,
    status: u16,
    decision: &Decision,
    error: Option<&ApiError>,
    micros: u64,
) {
    let denial = error.and_then(|e| e.denial.as_deref());
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "decision",
                $level,
                route,
                outcome,
                status,
                request_id = decision.request_id.as_deref(),
                grant_id = decision.grant_id.as_deref(),
                schedule_id = decision.schedule_id.as_deref(),
                vault_id = decision.vault_id.as_deref(),
                wallet = decision.wallet.as_deref(),
                bot_id = decision.bot_id.as_deref(),
                agent = decision.agent.as_deref(),
                enclave = decision.enclave.as_deref(),
                engaged = decision.engaged,
                successor = decision.successor.as_deref(),
                rule = denial.map(|d| d.rule.as_str()),
                limit = denial.and_then(|d| d.limit),
                requested = denial.and_then(|d| d.requested),
                used = denial.and_then(|d| d.used),
                detail = error.map(|e| e.detail.as_str()),
                micros,
                "decision"
            )
        };
    }
    if status >= 500 {
        emit!(tracing::Level::WARN);
    } else {
        emit!(tracing::Level::INFO);
    }
}

async fn handle(parent: Arc<Parent>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    // Refusals sent before the body is read leave unread bytes on the connection: it cannot be
    // reused, so say so (clients would otherwise send the next request into a closing socket).
    let has_body = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut decision = Decision::default();
    let mut allow = None;
    let (label, decided, result) = match route(&path) {
        None => {
            ("unknown", false, Err(ApiError::new(404, "not_found", format!("no route {path}"))))
        }
        Some((method, _, label)) if method != req.method() => {
            let e =
                ApiError::new(405, "method_not_allowed", format!("{path} accepts {method} only"));
            allow = Some(method);
            (label, false, Err(e))
        }
        Some((_, access, label)) => {
            let result = match authorize(&parent, &req, access) {
                Ok(()) => dispatch(&parent, label, req, &mut decision).await,
                Err(e) => Err(e),
            };
            (label, is_decision(label), result)
        }
    };
    let code = outcome(&result);
    let (mut response, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (problem(&e), Some(e)),
    };
    if let Some(v) = allow.and_then(|m| HeaderValue::from_str(m.as_str()).ok()) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    let status = response.status().as_u16();
    if has_body && matches!(status, 401 | 404 | 405 | 408 | 413) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let elapsed = started.elapsed();
    parent.metrics.http_requests.with_label_values(&[label, code]).inc();
    parent.metrics.http_duration.with_label_values(&[label, code]).observe(elapsed.as_secs_f64());
    let micros = elapsed.as_micros() as u64;
    if decided {
        log_decision(label, code, status, &decision, error.as_ref(), micros);
    } else if status >= 500 && label != "readyz" {
        tracing::warn!(route = label, status, code, "request failed");
    } else {
        tracing::debug!(route = label, status, code, micros, "request");
    }
    Ok(response)
}

/// Serves HTTP/1.1 until `shutdown`, then lets in-flight requests finish.
///
/// Slow clients cannot hold connections: a request's headers must arrive within
/// `header_read_timeout` and the whole request within `request_read_timeout`, both counted from
/// when the connection starts waiting for that request (accept, then the end of the previous
/// response). A connection that sends nothing, trickles its headers, or stays idle between
/// requests is closed after the header timeout; a body still incomplete at the request timeout is
/// answered `408 request_timeout` and the connection closed.
pub async fn serve(listener: TcpListener, parent: Arc<Parent>, shutdown: CancellationToken) {
    let tracker = tokio_util::task::TaskTracker::new();
    let (header_timeout, request_timeout) =
        (parent.settings.header_read_timeout, parent.settings.request_read_timeout);
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (parent, shutdown) = (Arc::clone(&parent), shutdown.clone());
        tracker.spawn(async move {
            // When the connection started waiting for its current request.
            let waiting_since = Arc::new(parking_lot::Mutex::new(tokio::time::Instant::now()));
            // Whether a request arrived: a header timeout after one is an idle keep-alive close.
            let served = Arc::new(AtomicBool::new(false));
            let (metrics, idle) = (Arc::clone(&parent.metrics), Arc::clone(&served));
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (parent, waiting_since) = (Arc::clone(&parent), Arc::clone(&waiting_since));
                served.store(true, Ordering::Relaxed);
                async move {
                    let deadline = *waiting_since.lock() + request_timeout;
                    req.extensions_mut().insert(ReadDeadline(deadline));
                    let response = handle(parent, req).await;
                    *waiting_since.lock() = tokio::time::Instant::now();
                    response
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        if e.is_timeout() {
                            let phase =
                                if idle.load(Ordering::Relaxed) { "idle" } else { "headers" };
                            metrics.http_read_timeouts.with_label_values(&[phase]).inc();
                        }
                        tracing::debug!(error = %e, "connection error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::io::Write;
    use std::sync::Mutex;

    use signer_types::ErrorCode;
    use signer_types::policy::{Denial, Rule};

    use super::*;

    #[test]
    fn the_outcome_label_is_the_error_code_not_the_status() {
        for code in ErrorCode::ALL {
            assert_eq!(outcome(&Err(ApiError::coded(code, "x"))), code.as_str(), "{code:?}");
        }
        // Codes that share a status with another code keep their own label.
        for (code, label) in [
            (ErrorCode::WrongEnclave, "wrong_enclave"),
            (ErrorCode::AuthorizationReplayed, "authorization_replayed"),
            (ErrorCode::HandoverRefused, "handover_refused"),
            (ErrorCode::EnvelopeRejected, "envelope_rejected"),
            (ErrorCode::EnclaveHandedOver, "enclave_handed_over"),
            (ErrorCode::RecordInvalid, "record_invalid"),
            (ErrorCode::PolicyDenied, "policy_denied"),
        ] {
            assert_eq!(outcome(&Err(ApiError::coded(code, "x"))), label);
        }
        for (status, code) in [
            (401, "unauthorized"),
            (405, "method_not_allowed"),
            (408, "request_timeout"),
            (413, "payload_too_large"),
            (502, "kms_access_denied"),
        ] {
            assert_eq!(outcome(&Err(ApiError::new(status, code, "x"))), code);
        }
        assert_eq!(outcome(&Ok(json_response(200, &json!({})))), "ok");
        assert_eq!(outcome(&Ok(json_response(503, &json!({})))), "enclave_unavailable");
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured_json(f: impl FnOnce()) -> Vec<Value> {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn a_decision_is_one_structured_line_with_its_ids_and_rule() {
        let decision = Decision {
            request_id: Some("6f1c1b1e-0000-4000-8000-000000000001".into()),
            grant_id: Some("6f1c1b1e-0000-4000-8000-000000000002".into()),
            wallet: Some("11111111111111111111111111111111".into()),
            bot_id: Some("6f1c1b1e-0000-4000-8000-000000000003".into()),
            agent: Some("22222222222222222222222222222222".into()),
            ..Decision::default()
        };
        let mut denied = ApiError::coded(ErrorCode::PolicyDenied, "over the daily limit");
        denied.denial = Some(Box::new(Denial {
            rule: Rule::MaxLamportsPerDay,
            limit: Some(10),
            requested: Some(7),
            used: Some(5),
            subject: None,
            message: "over the daily limit".into(),
        }));
        let lines = captured_json(|| {
            log_decision("sign", "ok", 200, &decision, None, 12);
            log_decision("sign", "policy_denied", 403, &decision, Some(&denied), 34);
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["target"], "decision");
            assert_eq!(line["level"], "INFO");
            let f = &line["fields"];
            assert_eq!(f["route"], "sign");
            assert_eq!(f["request_id"], "6f1c1b1e-0000-4000-8000-000000000001");
            assert_eq!(f["grant_id"], "6f1c1b1e-0000-4000-8000-000000000002");
            assert_eq!(f["wallet"], "11111111111111111111111111111111");
            assert_eq!(f["bot_id"], "6f1c1b1e-0000-4000-8000-000000000003");
            assert_eq!(f["agent"], "22222222222222222222222222222222");
            assert!(f.get("schedule_id").is_none() && f.get("engaged").is_none(), "{f}");
        }
        let (ok, refused) = (&lines[0]["fields"], &lines[1]["fields"]);
        assert_eq!((ok["outcome"].as_str(), ok["status"].as_u64()), (Some("ok"), Some(200)));
        assert!(ok.get("rule").is_none() && ok.get("detail").is_none(), "{ok}");
        assert_eq!(refused["outcome"], "policy_denied");
        assert_eq!(refused["rule"], "max_lamports_per_day");
        assert_eq!((refused["limit"].as_u64(), refused["used"].as_u64()), (Some(10), Some(5)));
        assert_eq!(refused["detail"], "over the daily limit");

        // Server-side failures are warnings.
        let lines = captured_json(|| {
            let e = ApiError::coded(ErrorCode::Internal, "bug");
            log_decision("grants", "internal", 500, &Decision::default(), Some(&e), 1);
        });
        assert_eq!(lines[0]["level"], "WARN");
    }
}
