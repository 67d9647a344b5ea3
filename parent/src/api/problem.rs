//! Errors as `application/problem+json` (RFC 9457): [`ApiError`] is every handler's, extractor's
//! and layer's rejection; its response carries the error itself too, for the metrics and the
//! decision log ([`super::layers::observe`]).

use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use signer_api::Problem;

use crate::app::ApiError;

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self;
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
        let body = serde_json::to_vec(&p).unwrap_or_default();
        let mut r = Response::new(axum::body::Body::from(Bytes::from(body)));
        *r.status_mut() = axum::http::StatusCode::from_u16(e.status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if e.status == 401 {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r.extensions_mut().insert(self);
        r
    }
}
