//! The layers around the handlers: bearer tokens, the concurrency and body limits, request ids,
//! the tracing span, and [`observe`] (metrics, the decision log, closing connections that still
//! hold an unread body).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use signer_api::HttpCode;
use subtle::ConstantTimeEq;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};
use utoipa_axum::router::OpenApiRouter;

use super::extract::{Caller, payload_too_large};
use crate::app::{ApiError, Parent};
use crate::config::Settings;

/// SHA-256 of every configured token, computed once: a presented token is hashed once and
/// compared with each in constant time (equal-length digests, so lengths do not leak either).
#[derive(Debug, Default)]
pub struct Tokens {
    api: Vec<[u8; 32]>,
    admin: Vec<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn any_matches(presented: &[u8; 32], tokens: &[[u8; 32]]) -> bool {
    tokens.iter().fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(presented)).into()
}

impl Tokens {
    pub fn new(settings: &Settings) -> Self {
        Self {
            api: settings.api_tokens.iter().map(|t| digest(t)).collect(),
            admin: settings.admin_tokens.iter().map(|t| digest(t)).collect(),
        }
    }

    /// Who presents `headers`' bearer token, if a route needing `needed` lets them in.
    pub fn check(
        &self,
        headers: &axum::http::HeaderMap,
        needed: Caller,
    ) -> Result<Caller, ApiError> {
        let unauthorized = |detail: &str| ApiError::http(HttpCode::Unauthorized, detail);
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>`"))?;
        let presented = digest(token);
        let admin = any_matches(&presented, &self.admin);
        match needed {
            Caller::Admin if admin => Ok(Caller::Admin),
            Caller::Admin => Err(unauthorized("this route needs the admin token")),
            Caller::Api if admin => Ok(Caller::Admin),
            Caller::Api if any_matches(&presented, &self.api) => Ok(Caller::Api),
            Caller::Api => Err(unauthorized("invalid bearer token")),
        }
    }
}

/// The token check of a route group (tower-http `ValidateRequestHeader`): `401 unauthorized`
/// before anything else runs; lets the handler know the [`Caller`].
#[derive(Clone)]
pub struct RequireToken {
    tokens: Arc<Tokens>,
    needed: Caller,
}

impl<B> ValidateRequest<B> for RequireToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response> {
        match self.tokens.check(request.headers(), self.needed) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The per-group layers, built once from the settings.
pub struct Guards {
    tokens: Arc<Tokens>,
    body_limit: usize,
    max_concurrent: usize,
    /// Shared by every `/v1` route: the limit is on the whole API, not per route.
    concurrency: GlobalConcurrencyLimitLayer,
}

impl Guards {
    pub fn new(settings: &Settings) -> Self {
        Self {
            tokens: Arc::new(Tokens::new(settings)),
            body_limit: settings.body_limit_bytes,
            max_concurrent: settings.max_concurrent_requests,
            concurrency: GlobalConcurrencyLimitLayer::new(settings.max_concurrent_requests),
        }
    }

    /// No tokens (every request refused): only the document of the routes is wanted.
    pub fn for_documentation() -> Self {
        Self {
            tokens: Arc::new(Tokens::default()),
            body_limit: 64 * 1024,
            max_concurrent: 1,
            concurrency: GlobalConcurrencyLimitLayer::new(1),
        }
    }

    /// Puts `router`'s routes behind the token `needed`, the concurrency limit and the body
    /// limit, in that order (`route_layer`: a path or method that matches no route is answered
    /// `404`/`405` before any of them).
    pub fn guard<S>(&self, router: OpenApiRouter<S>, needed: Caller) -> OpenApiRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let limit = self.body_limit;
        let max = self.max_concurrent;
        // tower-http answers a declared length over the limit itself, as text: make it a problem.
        let body_limit = ServiceBuilder::new()
            .map_response(move |r: Response<tower_http::limit::ResponseBody<Body>>| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE
                    && r.extensions().get::<ApiError>().is_none()
                {
                    payload_too_large(limit).into_response()
                } else {
                    r.map(Body::new)
                }
            })
            .layer(RequestBodyLimitLayer::new(limit));
        let concurrency = ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                if e.is::<tower::load_shed::error::Overloaded>() {
                    ApiError::unavailable(format!(
                        "the parent is handling its limit of {max} requests at once; retry later"
                    ))
                } else {
                    ApiError::internal(format!("request limit: {e}"))
                }
            }))
            .layer(LoadShedLayer::new())
            .layer(self.concurrency.clone());
        let token = ValidateRequestHeaderLayer::custom(RequireToken {
            tokens: Arc::clone(&self.tokens),
            needed,
        });
        // One `route_layer` for the three: each `route_layer` boxes its service, and a boxed
        // route is cloned (with everything under it) on every request.
        router.route_layer(ServiceBuilder::new().layer(token).layer(concurrency).layer(body_limit))
    }
}

/// What the parent knows of each route: its metric label (the operation id in the OpenAPI
/// document) and method, by path (no route has path parameters).
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<RouteInfo>>,
}

#[derive(Debug)]
pub struct RouteInfo {
    /// `signer_http_requests_total{route}` and the log's `route`.
    pub label: String,
    pub method: Method,
    /// Whether its outcome is a decision (one `decision` log line each).
    pub decision: bool,
}

/// The routes whose outcome is a decision (something signed, sealed, refused, revoked or
/// switched): each request gets exactly one `decision` log line, whatever refused it.
pub const DECISION_ROUTES: [&str; 11] = [
    "vaults",
    "import_vault",
    "agents",
    "grants",
    "sign",
    "scheduled_sign",
    "revoke",
    "kill_switch",
    "handover",
    "handover_abort",
    "export",
];

impl RouteTable {
    pub fn from_openapi(openapi: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = HashMap::new();
        for (path, item) in &openapi.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                if let Some(label) = operation.as_ref().and_then(|o| o.operation_id.clone()) {
                    let decision = DECISION_ROUTES.contains(&label.as_str());
                    routes.insert(path.clone(), Arc::new(RouteInfo { label, method, decision }));
                }
            }
        }
        Self { routes }
    }

    pub fn get(&self, path: &str) -> Option<&Arc<RouteInfo>> {
        self.routes.get(path)
    }
}

/// Request ids for requests that come without `x-request-id`: a random prefix per process
/// start and a counter (no system call per request).
#[derive(Clone)]
pub struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        Self { prefix: hex::encode(random).into(), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).ok().map(RequestId::new)
    }
}

/// Longest request id the logs repeat (a client's own id can be any header value).
const MAX_LOGGED_REQUEST_ID: usize = 64;

fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_LOGGED_REQUEST_ID).collect())
}

/// The request's tracing span (`debug`: free unless debug logging is on).
pub fn span<B>(req: &Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "http",
        method = %req.method(),
        path = req.uri().path(),
        request_id = request_id(req.headers()).as_deref(),
    )
}

/// The state of [`observe`].
pub struct Observer {
    parent: Arc<Parent>,
    routes: Arc<RouteTable>,
}

impl Observer {
    pub fn new(parent: Arc<Parent>, routes: Arc<RouteTable>) -> Self {
        Self { parent, routes }
    }
}

/// What a decision route learnt about its request, for its one `decision` log line: ids, public
/// keys and the routing key, all public (records' headers are cleartext AAD). Never a record, a
/// transaction, a token or a secret. Handlers return it in the response's extensions.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub request_id: Option<String>,
    pub grant_id: Option<String>,
    pub schedule_id: Option<String>,
    pub vault_id: Option<String>,
    pub wallet: Option<String>,
    pub bot_id: Option<String>,
    pub agent: Option<String>,
    pub enclave: Option<String>,
    pub engaged: Option<bool>,
    pub successor: Option<String>,
}

impl Decision {
    /// The vault id from a vault record's cleartext header (nothing if it does not parse: the
    /// enclave's refusal says why).
    pub fn vault(&mut self, record: &[u8]) {
        if let Ok(vault) = signer_types::records::SealedVault::parse(record) {
            self.vault_id = Some(uuid::Uuid::from_bytes(vault.header.vault_id).to_string());
        }
    }

    /// The agent's public key from an agent-key record's cleartext header.
    pub fn agent(&mut self, record: &[u8]) {
        if let Ok(agent) = signer_types::records::SealedAgentKey::parse(record) {
            self.agent = Some(agent.header.agent_pubkey.to_string());
        }
    }
}

/// A decision route's answer: the response or refusal, and what the request was about.
pub struct Decided(pub Decision, pub Result<Response, ApiError>);

impl IntoResponse for Decided {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        response.extensions_mut().insert(self.0);
        response
    }
}

/// The outcome label of a response: `ok`, or the stable error code it carries.
pub fn outcome(status: StatusCode, error: Option<&ApiError>) -> &'static str {
    match error {
        Some(e) => e.code,
        None if status.as_u16() < 400 => "ok",
        // `/readyz` answers 503 without an error: the enclave or KMS is unavailable.
        None if status == StatusCode::SERVICE_UNAVAILABLE => {
            signer_types::ErrorCode::EnclaveUnavailable.as_str()
        }
        None => signer_types::ErrorCode::Internal.as_str(),
    }
}

/// Counts and logs every request once it is answered: `signer_http_requests_total` and
/// `signer_http_request_duration_seconds` by route and outcome code; one `decision` line per
/// decision route; a warning for other server-side failures. A refusal sent before the body was
/// read leaves unread bytes on the connection, which then cannot be reused: such a response says
/// `Connection: close` (clients would otherwise send the next request into a closing socket).
///
/// A plain tower service around the whole router (not a `Router::layer`, which would box it
/// once per route and clone the boxes on every request).
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    observer: Arc<Observer>,
}

/// Wraps a service in [`Observe`].
#[derive(Clone)]
pub struct ObserveLayer(pub Arc<Observer>);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, observer: Arc::clone(&self.0) }
    }
}

impl<S, B> tower::Service<axum::http::Request<B>> for Observe<S>
where
    S: tower::Service<
            axum::http::Request<B>,
            Response = Response,
            Error = std::convert::Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let route = self.observer.routes.get(req.uri().path()).cloned();
        let has_body =
            req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
                || req.headers().contains_key(header::TRANSFER_ENCODING);
        // Kept as the header value (no copy); made text only if a line is written.
        let http_request_id = route
            .as_ref()
            .filter(|r| r.decision)
            .and_then(|_| req.headers().get("x-request-id").cloned());
        let observer = Arc::clone(&self.observer);
        let answer = self.inner.call(req);
        Box::pin(async move {
            let Ok(response) = answer.await;
            let finished = Finished { started, has_body, http_request_id };
            Ok(observer.finish(route.as_deref(), finished, response))
        })
    }
}

/// What [`Observe`] noted of a request before passing it on.
struct Finished {
    started: Instant,
    has_body: bool,
    http_request_id: Option<HeaderValue>,
}

impl Observer {
    fn finish(&self, route: Option<&RouteInfo>, f: Finished, mut response: Response) -> Response {
        let label = route.map_or("unknown", |r| r.label.as_str());
        let status = response.status();
        let error = response.extensions_mut().remove::<ApiError>();
        let code = outcome(status, error.as_ref());
        if f.has_body && matches!(status.as_u16(), 401 | 404 | 405 | 408 | 413) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let metrics = &self.parent.metrics;
        let elapsed = f.started.elapsed();
        metrics.http_requests.with_label_values(&[label, code]).inc();
        metrics.http_duration.with_label_values(&[label, code]).observe(elapsed.as_secs_f64());
        let micros = elapsed.as_micros() as u64;
        let status = status.as_u16();
        if route.is_some_and(|r| r.decision) {
            let decision = response.extensions_mut().remove::<Decision>().unwrap_or_default();
            let http_request_id = f.http_request_id;
            let line =
                DecisionLine { route: label, outcome: code, status, micros, http_request_id };
            log_decision(&line, &decision, error.as_ref());
        } else if status >= 500 && label != "readyz" {
            tracing::warn!(route = label, status, code, "request failed");
        } else {
            tracing::debug!(route = label, status, code, micros, "request");
        }
        response
    }
}

/// The request-level fields of a `decision` line.
pub struct DecisionLine<'a> {
    pub route: &'a str,
    pub outcome: &'a str,
    pub status: u16,
    pub micros: u64,
    /// The request's `x-request-id` (the client's, or the one the parent gave it).
    pub http_request_id: Option<HeaderValue>,
}

/// One structured line per decision (target `decision`): route, outcome, status and what is
/// known of the request; the rule and its numbers for `policy_denied`. Server-side failures are
/// warnings, everything else (refusals included) information.
pub fn log_decision(line: &DecisionLine<'_>, decision: &Decision, error: Option<&ApiError>) {
    let denial = error.and_then(|e| e.denial.as_deref());
    let DecisionLine { route, outcome, status, micros, .. } = *line;
    let http_request_id: Option<String> = line
        .http_request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_LOGGED_REQUEST_ID).collect());
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
                http_request_id = http_request_id.as_deref(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use std::collections::BTreeMap;
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use serde_json::Value;
    use signer_types::ErrorCode;
    use signer_types::policy::{Denial, Rule};
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::{AttestationSettings, KmsSettings};

    #[test]
    fn the_outcome_label_is_the_error_code_not_the_status() {
        for code in ErrorCode::ALL {
            let e = ApiError::coded(code, "x");
            let status = StatusCode::from_u16(e.status).unwrap();
            assert_eq!(outcome(status, Some(&e)), code.as_str(), "{code:?}");
        }
        for code in HttpCode::ALL {
            let e = ApiError::http(code, "x");
            assert_eq!(outcome(StatusCode::from_u16(e.status).unwrap(), Some(&e)), code.as_str());
        }
        assert_eq!(outcome(StatusCode::OK, None), "ok");
        assert_eq!(outcome(StatusCode::SERVICE_UNAVAILABLE, None), "enclave_unavailable");
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

    fn line<'a>(route: &'a str, outcome: &'a str, status: u16) -> DecisionLine<'a> {
        DecisionLine {
            route,
            outcome,
            status,
            micros: 12,
            http_request_id: Some(HeaderValue::from_static("ab-1")),
        }
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
            log_decision(&line("sign", "ok", 200), &decision, None);
            log_decision(&line("sign", "policy_denied", 403), &decision, Some(&denied));
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
            assert_eq!(f["http_request_id"], "ab-1");
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
            log_decision(&line("grants", "internal", 500), &Decision::default(), Some(&e));
        });
        assert_eq!(lines[0]["level"], "WARN");
    }

    const API: &str = "api-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";

    /// The router of a parent whose enclave and KMS are nowhere: everything up to the handlers.
    type App = tower::util::BoxCloneService<Request, Response, std::convert::Infallible>;

    async fn router(max_concurrent: usize) -> App {
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            enclave: "unix:/nonexistent/enclave.sock".parse().unwrap(),
            api_tokens: vec![API.into()],
            admin_tokens: vec![ADMIN.into()],
            body_limit_bytes: 1024,
            enclave_timeout_ms: 100,
            header_read_timeout: Duration::from_secs(1),
            request_read_timeout: Duration::from_secs(2),
            max_concurrent_requests: max_concurrent,
            prefetch_envelopes: false,
            kms: KmsSettings {
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:9".into()),
                ..KmsSettings::default()
            },
            kms_key_id: "k".into(),
            attestation: AttestationSettings::default(),
            expected_pcrs: BTreeMap::from([(0, vec![0; 48])]),
            attestation_root_pem: None,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
        let kms = crate::kms::KmsClient::new(&settings, Arc::clone(&metrics)).await;
        let attestation = crate::attestation::Attestation::new(
            nitro_attestation::TrustAnchor::aws_nitro_root_g1(),
            settings.expected_pcrs.clone(),
            false,
            Duration::from_secs(300),
        );
        let enclave = signer_protocol::EnclaveClient::new(
            settings.enclave.clone(),
            Duration::from_millis(50),
        );
        let parent = Parent::new(settings, enclave, kms, attestation, metrics);
        let app = crate::api::app(Arc::new(parent));
        tower::util::BoxCloneService::new(
            tower::ServiceBuilder::new()
                .map_response(|r: axum::http::Response<_>| r.map(Body::new))
                .service(app),
        )
    }

    struct Answer {
        status: u16,
        headers: axum::http::HeaderMap,
        body: Value,
    }

    async fn send(router: &App, req: Request) -> Answer {
        let response = router.clone().oneshot(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> Request {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            r = r.header(header::CONTENT_LENGTH, body.len());
        }
        r.body(Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn routes_tokens_and_limits_answer_problems_before_any_handler_runs() {
        let router = router(16).await;
        let wallet = r#"{"wallet":"4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"}"#;
        let cases = [
            // (method, path, token, body) → (status, code, connection: close)
            (("GET", "/v1/nothing", Some(API), ""), (404, "not_found", false)),
            (("POST", "/v1/nothing", None, wallet), (404, "not_found", true)),
            (("GET", "/v1/sign", Some(API), ""), (405, "method_not_allowed", false)),
            (("POST", "/v1/vaults", None, wallet), (401, "unauthorized", true)),
            (
                ("POST", "/v1/vaults", Some("wrong-token-0123456789"), wallet),
                (401, "unauthorized", true),
            ),
            (
                ("POST", "/v1/kill-switch", Some(API), r#"{"engaged":true}"#),
                (401, "unauthorized", true),
            ),
            (("GET", "/v1/enclave", None, ""), (401, "unauthorized", false)),
            (
                ("POST", "/v1/vaults", Some(API), &"x".repeat(2000)),
                (413, "payload_too_large", true),
            ),
            (("POST", "/v1/vaults", Some(API), r#"{"wallet":"x"}"#), (400, "bad_request", false)),
            (
                (
                    "POST",
                    "/v1/grants/revoke",
                    Some(API),
                    r#"{"wallet":"4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"}"#,
                ),
                (401, "unauthorized", true),
            ),
        ];
        for ((method, path, token, body), (status, code, close)) in cases {
            let a = send(&router, request(method, path, token, body)).await;
            let what = format!("{method} {path} {token:?}");
            assert_eq!(
                (a.status, a.body["code"].as_str()),
                (status, Some(code)),
                "{what}: {}",
                a.body
            );
            assert_eq!(a.headers[header::CONTENT_TYPE], "application/problem+json", "{what}");
            assert_eq!(a.body["type"], format!("urn:signer:error:{code}"), "{what}");
            assert_eq!(a.body["status"], status, "{what}");
            let closes = a.headers.get(header::CONNECTION).is_some_and(|v| v == "close");
            assert_eq!(closes, close, "{what}");
            assert!(a.headers.contains_key("x-request-id"), "{what}");
            if status == 401 {
                assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
            }
        }
        let a = send(&router, request("GET", "/v1/sign", Some(API), "")).await;
        assert_eq!(
            (a.headers[header::ALLOW].to_str().unwrap(), a.body["detail"].as_str()),
            ("POST", Some("/v1/sign accepts POST only"))
        );

        // A streamed body (no length) over the limit.
        let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 400])));
        let req = Request::builder()
            .method("POST")
            .uri("/v1/vaults")
            .header(header::AUTHORIZATION, format!("Bearer {API}"))
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let a = send(&router, req).await;
        assert_eq!((a.status, a.body["code"].as_str()), (413, Some("payload_too_large")));

        // Open routes, and the document with a client's request id echoed.
        let a = send(&router, request("GET", "/healthz", None, "")).await;
        assert_eq!((a.status, a.body["status"].as_str()), (200, Some("ok")));
        let mut req = request("GET", "/v1/openapi.json", None, "");
        req.headers_mut().insert("x-request-id", HeaderValue::from_static("abc"));
        let a = send(&router, req).await;
        assert_eq!((a.status, a.body["openapi"].as_str()), (200, Some("3.1.0")));
        assert_eq!(a.headers["x-request-id"], "abc");

        // Everything was counted under its route and code.
        let text = {
            let a = router.clone().oneshot(request("GET", "/metrics", None, "")).await.unwrap();
            String::from_utf8(a.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        for series in [
            r#"signer_http_requests_total{code="not_found",route="unknown"} 2"#,
            r#"signer_http_requests_total{code="method_not_allowed",route="sign"} 2"#,
            r#"signer_http_requests_total{code="unauthorized",route="kill_switch"} 1"#,
            r#"signer_http_requests_total{code="payload_too_large",route="vaults"} 2"#,
            r#"signer_http_requests_total{code="ok",route="openapi"} 1"#,
        ] {
            assert!(text.contains(series), "{series} not in\n{text}");
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_concurrency_limit_are_refused_at_once() {
        let router = router(1).await;
        // One request holds the only slot, waiting for a body that never comes.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
        let stalled = Request::builder()
            .method("POST")
            .uri("/v1/vaults")
            .header(header::AUTHORIZATION, format!("Bearer {API}"))
            .body(Body::from_stream(tokio_stream_from(rx)))
            .unwrap();
        let held = tokio::spawn({
            let router = router.clone();
            async move { router.oneshot(stalled).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let a = send(&router, request("GET", "/v1/enclave", Some(API), "")).await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (503, Some("enclave_unavailable")),
            "{}",
            a.body
        );
        assert!(a.body["detail"].as_str().unwrap().contains("limit of 1 requests"));
        // The probes are not counted.
        assert_eq!(send(&router, request("GET", "/healthz", None, "")).await.status, 200);
        held.abort();
    }

    /// A body stream from a channel (pending while the sender is alive and silent).
    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
