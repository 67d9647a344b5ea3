//! The HTTP API (SPEC §6): JSON bodies; bytes as standard padded base64; Solana keys and
//! signatures as base58; 16-byte ids as UUID text. Errors are `application/problem+json` with
//! `type`, `title`, `status`, `detail` and a stable `code` (plus `rule`, `limit`, `requested`,
//! `used`, `subject` for `policy_denied`). `Authorization: Bearer <token>` on every `/v1` route;
//! revoke and kill switch need the admin token. Bodies above the limit (64 KiB) get 413 before
//! they are read; unknown fields, wrong types and malformed JSON get 400. Request bodies are
//! zeroized after parsing (they can carry a UMK).

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
    ApiBody, CreateAgentRequest, CreateGrantRequest, KillSwitchRequest, RevokeRequest,
    RevokeTarget, ScheduledSignRequest, SignRequest, SignResponse,
};
use signer_protocol::{AgentKindMsg, Op, Reply, RevokeMsg, SignOp, SignScheduledOp};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::app::{ApiError, GrantInfo, Parent};

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
        title: e.title(),
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
        "/v1/agents" => (Method::POST, Access::Api, "agents"),
        "/v1/grants" => (Method::POST, Access::Api, "grants"),
        "/v1/sign" => (Method::POST, Access::Api, "sign"),
        "/v1/scheduled/sign" => (Method::POST, Access::Api, "scheduled_sign"),
        "/v1/grants/revoke" => (Method::POST, Access::Admin, "revoke"),
        "/v1/kill-switch" => (Method::POST, Access::Admin, "kill_switch"),
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

/// The routing key a load balancer hashes on (SPEC §13): `<wallet base58>/<bot_id uuid>`. Sign
/// responses carry it; a request that carries it must match its grant.
pub const ROUTE_HEADER: &str = "x-signer-route";

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
            let Reply::Attestation { document, public_key } =
                parent.call(&Op::Attest { nonce, user_data: None }).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to attest"));
            };
            let doc = nitro_attestation::AttestationDocument::parse(&document).map_err(|e| {
                ApiError::new(
                    500,
                    "internal",
                    format!("the enclave returned a malformed document: {e}"),
                )
            })?;
            let pcrs: BTreeMap<String, String> =
                doc.pcrs.iter().map(|(i, v)| (i.to_string(), hex::encode(v))).collect();
            Ok(json_response(
                200,
                &json!({"document": b64(&document), "public_key": b64(&public_key), "pcrs": pcrs, "timestamp_ms": doc.timestamp_ms}),
            ))
        }
        "agents" => {
            let body = read_body(parent, req).await?;
            let b: CreateAgentRequest = parse(&body)?;
            let kind = match b.mnemonic_account().map_err(|e| ApiError::bad_request(e.0))? {
                None => AgentKindMsg::Seed,
                Some(account) => AgentKindMsg::Mnemonic { account },
            };
            parent.attested().await?;
            let Reply::AgentCreated { agent_pubkey, agent_id, record } =
                parent.call(&Op::CreateAgent { wallet: b.wallet, umk: b.umk, kind }).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to create_agent"));
            };
            Ok(json_response(
                200,
                &json!({"agent_pubkey": agent_pubkey.to_string(), "agent_key_record": b64(&record), "agent_id": Uuid::from_bytes(agent_id).to_string()}),
            ))
        }
        "grants" => {
            let body = read_body(parent, req).await?;
            let b: CreateGrantRequest = parse(&body)?;
            parent.attested().await?;
            let op = Op::CreateGrant {
                wallet: b.wallet,
                bot_id: *b.bot_id.as_bytes(),
                agent_pubkey: b.agent_pubkey,
                umk: b.umk,
                policy: b.policy,
                ttl_seconds: b.ttl_seconds,
            };
            let Reply::GrantCreated { grant_id, issued_at, expires_at, record } =
                parent.call(&op).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to create_grant"));
            };
            Ok(json_response(
                200,
                &json!({"grant_id": Uuid::from_bytes(grant_id).to_string(), "issued_at": issued_at, "expires_at": expires_at, "grant_record": b64(&record)}),
            ))
        }
        "sign" => {
            let route_header =
                req.headers().get(ROUTE_HEADER).map(|v| v.to_str().unwrap_or("").to_string());
            let body = read_body(parent, req).await?;
            let b: SignRequest = parse(&body)?;
            let grant = GrantInfo::parse(&b.grant_record.0)?;
            let route = format!("{}/{}", grant.wallet, b.bot_id);
            if let Some(given) = route_header
                && given != route
            {
                return Err(ApiError::bad_request(format!(
                    "{ROUTE_HEADER} is `{given}` but this grant belongs to `{route}`: the load balancer would route it to the wrong enclave"
                )));
            }
            let op = SignOp {
                grant_record: b.grant_record.0,
                agent_key_record: b.agent_key_record.0,
                bot_id: *b.bot_id.as_bytes(),
                transaction: b.transaction.0,
                request_id: *b.request_id.as_bytes(),
                declared_notional_cents: b.declared_notional_cents,
                envelope: None,
            };
            let Reply::Signed { signature, transaction, record_id } =
                parent.sign(&grant, op).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to sign"));
            };
            let mut r = json_body(
                200,
                &SignResponse {
                    signature: enclave_core::pubkey::signature_base58(&signature),
                    transaction: b64(&transaction),
                    grant_id: Some(Uuid::from_bytes(record_id).to_string()),
                },
            );
            if let Ok(v) = HeaderValue::from_str(&route) {
                r.headers_mut().insert(ROUTE_HEADER, v);
            }
            Ok(r)
        }
        "scheduled_sign" => {
            let body = read_body(parent, req).await?;
            let b: ScheduledSignRequest = parse(&body)?;
            let op = SignScheduledOp {
                scheduled_record: b.scheduled_record.0,
                transaction: b.transaction.0,
                request_id: *b.request_id.as_bytes(),
                envelope: None,
            };
            let Reply::Signed { signature, transaction, .. } = parent.sign_scheduled(op).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to sign_scheduled"));
            };
            Ok(json_body(
                200,
                &SignResponse {
                    signature: enclave_core::pubkey::signature_base58(&signature),
                    transaction: b64(&transaction),
                    grant_id: None,
                },
            ))
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
            let Reply::Revoked { dropped } = parent.call(&Op::Revoke { target }).await? else {
                return Err(ApiError::new(500, "internal", "unexpected reply to revoke"));
            };
            Ok(json_response(200, &json!({"revoked": echo, "dropped_from_memory": dropped})))
        }
        "kill_switch" => {
            let body = read_body(parent, req).await?;
            let b: KillSwitchRequest = parse(&body)?;
            let Reply::KillSwitch { engaged } =
                parent.call(&Op::KillSwitch { engaged: b.engaged }).await?
            else {
                return Err(ApiError::new(500, "internal", "unexpected reply to kill_switch"));
            };
            tracing::warn!(engaged, "kill switch changed");
            Ok(json_response(200, &json!({"engaged": engaged})))
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
