//! HTTP front end: `POST /` with `X-Amz-Target: TrentService.<Op>` and an awsJson1.1 body, as
//! the AWS SDKs send it (SigV4 signatures are accepted without checking). Errors carry KMS's
//! shape: `{"__type": "<Kind>", "message": "…"}` plus the `x-amzn-ErrorType` header. Bodies are
//! limited to 1 MiB.
//!
//! Simulation-only control routes: `GET /_sim/health`, and `POST /_sim/fault` with
//! `{"fault": "none" | "plaintext_with_recipient" | "garbage_envelope" | "internal_error",
//! "delay_ms": N}` to make the emulator misbehave in fault-injection tests.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::{Fault, Kms, KmsError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

fn respond(status: u16, body: serde_json::Value, error: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string());
    if let Some(kind) = error {
        builder = builder.header("x-amzn-errortype", kind);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn error(e: &KmsError) -> Response<Full<Bytes>> {
    respond(e.status, json!({"__type": e.kind, "message": e.message}), Some(e.kind))
}

async fn handle(
    kms: Arc<Kms>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error(&KmsError::new(
                "ValidationException",
                format!("request body exceeds {MAX_BODY} bytes"),
            )));
        }
    };
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/_sim/health") => return Ok(respond(200, json!({"ok": true}), None)),
        (&Method::POST, "/_sim/fault") => {
            #[derive(serde::Deserialize)]
            struct FaultRequest {
                fault: Fault,
                #[serde(default)]
                delay_ms: u64,
            }
            return Ok(match serde_json::from_slice::<FaultRequest>(&body) {
                Ok(f) => {
                    kms.set_fault(f.fault);
                    kms.set_delay(Duration::from_millis(f.delay_ms));
                    tracing::warn!(fault = ?f.fault, delay_ms = f.delay_ms, "fault injection changed");
                    respond(200, json!({"fault": f.fault, "delay_ms": f.delay_ms}), None)
                }
                Err(e) => error(&KmsError::new("ValidationException", e.to_string())),
            });
        }
        (&Method::POST, "/") => {}
        _ => {
            return Ok(error(&KmsError::new(
                "UnknownOperationException",
                format!("{} {} is not a KMS route", parts.method, parts.uri.path()),
            )));
        }
    }
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let delay = kms.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let started = std::time::Instant::now();
    // Key generation and RSA work take milliseconds: keep them off the accept loop.
    let result = tokio::task::spawn_blocking({
        let kms = Arc::clone(&kms);
        let target = target.clone();
        move || kms.handle(&target, &body)
    })
    .await
    .unwrap_or_else(|_| Err(KmsError::new("KMSInternalException", "handler panicked")));
    match &result {
        Ok(_) => tracing::info!(%target, micros = started.elapsed().as_micros() as u64, "ok"),
        Err(e) => tracing::info!(%target, kind = e.kind, message = %e.message, "error"),
    }
    Ok(match result {
        Ok(body) => respond(200, body, None),
        Err(e) => error(&e),
    })
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, kms: Arc<Kms>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let kms = Arc::clone(&kms);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&kms), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection error");
            }
        });
    }
}
