//! The HTTP API (SPEC §6): JSON bodies; bytes as standard padded base64; Solana keys and
//! signatures as base58; 16-byte ids as UUID text. Errors are `application/problem+json` with
//! `type`, `title`, `status`, `detail` and a stable `code` (plus `rule`, `limit`, `requested`,
//! `used`, `subject` for `policy_denied`). `Authorization: Bearer <token>` on every `/v1` route;
//! revoke and kill switch need the admin token. Bodies above the limit (64 KiB) get 413 before
//! they are read; unknown fields, wrong types and malformed JSON get 400. No body carries a
//! secret: master keys never leave the enclave.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use signer_api::{
    ApiBody, CreateAgentRequest, CreateGrantRequest, CreateVaultRequest, GrantAuthorizationRequest,
    ImportAuthorizationRequest, ImportVaultRequest, KillSwitchRequest, RevokeRequest, RevokeTarget,
    ScheduledSignRequest, SignRequest, SignResponse,
};
use signer_protocol::{
    AgentKindMsg, CreateAgentOp, CreateGrantOp, GrantFields, ImportVaultOp, Op, Reply, RevokeMsg,
    SignOp, SignScheduledOp,
};
use signer_types::ids::EnclaveId;
use signer_types::pubkey::signature_base58;
use signer_types::records::SealedScheduled;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::app::{ApiError, GrantInfo, Parent, unexpected};

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
        "/v1/grants/revoke" => (Method::POST, Access::Admin, "revoke"),
        "/v1/kill-switch" => (Method::POST, Access::Admin, "kill_switch"),
        "/v1/admin/handover" => (Method::POST, Access::Admin, "handover"),
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
    let collected = Limited::new(req.into_body(), limit).collect().await.map_err(|e| {
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
            let kms = parent.kms_reachable.load(Ordering::Relaxed);
            let ready = attested && connected && kms;
            Ok(json_response(
                if ready { 200 } else { 503 },
                &json!({
                    "ready": ready,
                    "enclave_connected": connected,
                    "enclave_attested": attested,
                    "attestation_error": parent.attestation.last_error(),
                    "kms_reachable": kms,
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
            let Reply::Identity { enclave_id, answers_for, started_at, kms_public_key } = reply
            else {
                return Err(unexpected("identity", &reply));
            };
            let answers_for: Vec<String> = answers_for.iter().map(ToString::to_string).collect();
            Ok(json_response(
                200,
                &json!({"enclave_id": enclave_id.to_string(), "answers_for": answers_for, "started_at": started_at, "kms_public_key": b64(&kms_public_key)}),
            ))
        }
        "vaults" => {
            let b: CreateVaultRequest = parse(&read_body(parent, req).await?)?;
            parent.attested().await?;
            let reply = parent.call_routed(&Op::CreateVault { wallet: b.wallet }).await?;
            let Reply::VaultCreated { vault_id, record, provenance } = reply else {
                return Err(unexpected("create_vault", &reply));
            };
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
            Ok(json_response(
                200,
                &json!({"vault_id": b64_id(&vault_id), "provenance": b64(&provenance)}),
            ))
        }
        "agents" => {
            let b: CreateAgentRequest = parse(&read_body(parent, req).await?)?;
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
            let body = json!({"grant_id": b64_id(&grant_id), "issued_at": issued_at, "expires_at": expires_at, "grant_record": b64(&record), "enclave_id": enclave_id.to_string()});
            Ok(with_route(json_response(200, &body), enclave_id))
        }
        "sign" => {
            let route_header =
                req.headers().get(ROUTE_HEADER).map(|v| v.to_str().unwrap_or("").to_string());
            let b: SignRequest = parse(&read_body(parent, req).await?)?;
            let grant = GrantInfo::parse(&b.grant_record.0)?;
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
            let sealed = SealedScheduled::parse(&b.scheduled_record.0).map_err(|e| {
                ApiError::coded(
                    signer_types::ErrorCode::RecordInvalid,
                    format!("scheduled_record: {e}"),
                )
            })?;
            let (owner, wrapped) = (sealed.header.enclave_id, sealed.wrapped);
            check_route(route_header, owner)?;
            let op = SignScheduledOp {
                scheduled_record: b.scheduled_record.0,
                transaction: b.transaction.0,
                request_id: *b.request_id.as_bytes(),
                envelope: None,
            };
            let reply = parent.sign_scheduled(op, &wrapped).await?;
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
            let body = read_body(parent, req).await?;
            let b: RevokeRequest = parse(&body)?;
            let (target, echo) = match b.target().map_err(|e| ApiError::bad_request(e.0))? {
                RevokeTarget::Grant(id) => {
                    (RevokeMsg::Record(*id.as_bytes()), json!({"grant_id": id.to_string()}))
                }
                RevokeTarget::Wallet(w) => (RevokeMsg::Wallet(w), json!({"wallet": w.to_string()})),
            };
            let reply = parent.call_routed(&Op::Revoke { target }).await?;
            let Reply::Revoked { dropped } = reply else {
                return Err(unexpected("revoke", &reply));
            };
            Ok(json_response(200, &json!({"revoked": echo, "dropped_from_memory": dropped})))
        }
        "kill_switch" => {
            let body = read_body(parent, req).await?;
            let b: KillSwitchRequest = parse(&body)?;
            let reply = parent.call_routed(&Op::KillSwitch { engaged: b.engaged }).await?;
            let Reply::KillSwitch { engaged } = reply else {
                return Err(unexpected("kill_switch", &reply));
            };
            tracing::warn!(engaged, "kill switch changed");
            Ok(json_response(200, &json!({"engaged": engaged})))
        }
        "handover" => {
            let b: signer_api::HandoverRequest = parse(&read_body(parent, req).await?)?;
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
            Ok(json_body(200, &report))
        }
        _ => Err(ApiError::new(404, "not_found", "no such route")),
    }
}

async fn handle(parent: Arc<Parent>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    // Refusals sent before the body is read leave unread bytes on the connection: it cannot be
    // reused, so say so (clients would otherwise send the next request into a closing socket).
    let has_body = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let (label, response) = match route(&path) {
        None => ("unknown", problem(&ApiError::new(404, "not_found", format!("no route {path}")))),
        Some((method, _, label)) if method != req.method() => {
            let mut r = problem(&ApiError::new(
                405,
                "method_not_allowed",
                format!("{path} accepts {method} only"),
            ));
            if let Ok(v) = HeaderValue::from_str(method.as_str()) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            (label, r)
        }
        Some((_, access, label)) => {
            let result = match authorize(&parent, &req, access) {
                Ok(()) => dispatch(&parent, label, req).await,
                Err(e) => Err(e),
            };
            (label, result.unwrap_or_else(|e| problem(&e)))
        }
    };
    let mut response = response;
    let status = response.status().as_u16();
    if has_body && matches!(status, 401 | 404 | 405 | 413) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let code = if status < 400 { "ok" } else { code_of(status) };
    parent.metrics.http_requests.with_label_values(&[label, code]).inc();
    parent
        .metrics
        .http_duration
        .with_label_values(&[label, code])
        .observe(started.elapsed().as_secs_f64());
    if status >= 500 && label != "readyz" {
        tracing::warn!(route = label, status, "request failed");
    } else {
        tracing::debug!(
            route = label,
            status,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
    Ok(response)
}

/// A coarse outcome label from the status (the exact code is in the response body).
fn code_of(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "replayed_request",
        413 => "payload_too_large",
        502 => "kms_access_denied",
        503 => "enclave_unavailable",
        _ => "internal",
    }
}

/// Serves HTTP/1.1 until `shutdown`, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, parent: Arc<Parent>, shutdown: CancellationToken) {
    let tracker = tokio_util::task::TaskTracker::new();
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
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&parent), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
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
