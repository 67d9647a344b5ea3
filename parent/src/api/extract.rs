//! Extractors: a request's JSON body (by its deadline, within the body limit, parsed strictly),
//! its routing header, and which token it came with.

use std::error::Error as _;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::BodyExt as _;
use signer_api::ApiBody;
use signer_api::HttpCode;
use zeroize::Zeroizing;

use super::ROUTE_HEADER;
use crate::app::{ApiError, Parent};

/// When the request being handled must have arrived in full (`request_read_timeout`), counted
/// from when its connection started waiting for it; [`super::serve`] sets it on every request.
#[derive(Clone, Copy, Debug)]
pub struct ReadDeadline(pub tokio::time::Instant);

/// A JSON body, parsed and checked as `signer_api::parse` does (`400 bad_request` with why).
/// Read by the request's [`ReadDeadline`] (`408 request_timeout`, counted as a `body` read
/// timeout); the body limit (`413 payload_too_large`) is the `RequestBodyLimit` layer's, which
/// makes the body end with `LengthLimitError` past it.
pub struct JsonBody<T>(pub T);

impl<T: ApiBody> FromRequest<Arc<Parent>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, parent: &Arc<Parent>) -> Result<Self, ApiError> {
        let body = read_body(parent, req).await?;
        signer_api::parse(&body).map(JsonBody).map_err(|e| ApiError::bad_request(e.0))
    }
}

/// Whether a body error is the body limit's.
fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn read_body(parent: &Parent, req: Request) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let deadline = req.extensions().get::<ReadDeadline>().copied();
    let collect = req.into_body().collect();
    let collected = match deadline {
        None => collect.await,
        Some(ReadDeadline(at)) => tokio::time::timeout_at(at, collect).await.map_err(|_| {
            parent.metrics.http_read_timeouts.with_label_values(&["body"]).inc();
            ApiError::http(
                HttpCode::RequestTimeout,
                format!(
                    "the request did not arrive within {} ms",
                    parent.settings.request_read_timeout.as_millis()
                ),
            )
        })?,
    }
    .map_err(|e| {
        if over_limit(&e) {
            payload_too_large(parent.settings.body_limit_bytes)
        } else {
            ApiError::bad_request(format!("reading the body: {e}"))
        }
    })?;
    Ok(Zeroizing::new(collected.to_bytes().to_vec()))
}

/// `413 payload_too_large` for a body over `limit` bytes.
pub fn payload_too_large(limit: usize) -> ApiError {
    ApiError::http(HttpCode::PayloadTooLarge, format!("request body exceeds {limit} bytes"))
}

/// The `X-Signer-Route` request header, if sent (a value that is not text is kept as empty, so
/// it names no enclave and is refused).
pub struct RouteHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RouteHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(ROUTE_HEADER).map(|v| v.to_str().unwrap_or("").to_string())))
    }
}

/// Which token the request came with; the token layer ([`super::layers::RequireToken`]) sets
/// it. A request without it counts as the API token's (it never grants admin rights).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Api,
    Admin,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().copied().unwrap_or(Caller::Api))
    }
}
