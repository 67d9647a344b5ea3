//! The HTTP API (SPEC §6): JSON bodies; bytes as standard padded base64; Solana keys and
//! signatures as base58; 16-byte ids as UUID text. Errors are `application/problem+json` with
//! `type`, `title`, `status`, `detail` and a stable `code` (plus `rule`, `limit`, `requested`,
//! `used`, `subject` for `policy_denied`). `Authorization: Bearer <token>` on every `/v1` route
//! but `GET /v1/openapi.json`; the kill switch, handover and an unsigned revoke need the admin
//! token (a revoke the wallet signed needs only the API token). No body carries a secret in the
//! clear: master keys leave the enclave only in a wallet-signed export, HPKE-sealed to the user's
//! browser key.
//!
//! The OpenAPI 3.1 document is generated from this code ([`openapi`]): each handler in
//! [`routes`] carries its `#[utoipa::path]`, the bodies their `ToSchema` (in `signer-api`), and
//! [`doc`] adds the security schemes, the error responses and the examples. It is served at
//! `GET /v1/openapi.json` and committed as `docs/openapi.json` (`tests/openapi.rs` fails when
//! the two differ; `SIGNER_UPDATE_OPENAPI=1` rewrites the file).
//!
//! The stack, outermost first ([`app`]; [`serve`] adds the per-connection clock):
//!
//! | layer | what | limit |
//! |---|---|---|
//! | `SetRequestId` / `PropagateRequestId` (tower-http) | `x-request-id`: kept if sent, else `<boot>-<n>`; echoed on the response | |
//! | `Trace` (tower-http) | a `debug` span `http` per request (method, path, request id) | |
//! | [`layers::Observe`] | metrics by route and code, the `decision` log line, `Connection: close` after an early refusal | |
//! | axum `Router` | one handler per route; `404 not_found`, `405 method_not_allowed` (with `Allow`) | |
//! | [`layers::RequireToken`] (tower-http `ValidateRequestHeader`) | bearer token, API or admin, per route group; `401` before anything is read | constant time |
//! | `LoadShed` + `GlobalConcurrencyLimit` (tower) | `/v1` requests in progress at once; beyond, `503 enclave_unavailable` at once | `max_concurrent_requests`, 4096 |
//! | `RequestBodyLimit` (tower-http) | `413 payload_too_large` on a declared length over the limit before reading, or when a streamed body passes it | `body_limit_bytes`, 64 KiB |
//! | [`extract::JsonBody`] | reads the body by the request's deadline (`408 request_timeout`), parses strictly (`400`) | `request_read_timeout_ms`, 30 s |
//!
//! Slow clients cannot hold connections ([`serve`]): a request's headers must arrive within
//! `header_read_timeout` (10 s; hyper's header timer) and the whole request within
//! `request_read_timeout` (30 s), both counted from when the connection starts waiting for that
//! request (accept, then the end of the previous response). tower-http's body timeout restarts
//! with every chunk (a body trickled a byte at a time would never trip it) and its request
//! timeout would also bound the handler (a handover may take longer), so neither is used.

pub mod cluster;
pub mod doc;
pub mod examples;
pub mod extract;
pub mod layers;
pub mod problem;
pub mod routes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::app::Parent;
use extract::{Caller, ReadDeadline};
use layers::{Guards, ObserveLayer, Observer, RouteTable};

/// The routing key a load balancer uses (SPEC §13, §16): the id of the enclave instance that
/// holds a record's decision state. Grant, sign and scheduled-sign responses carry it; a request
/// that carries it must name its record's enclave.
pub const ROUTE_HEADER: &str = "x-signer-route";

/// Every route with its handler and access group, and the document the handlers describe.
fn documented_routes(guards: &Guards) -> (Router<Arc<Parent>>, utoipa::openapi::OpenApi) {
    use utoipa_axum::routes;
    // Grouped by the token they need (`Guards::guard` puts each group behind its layers).
    let api = OpenApiRouter::new()
        .routes(routes!(routes::attestation))
        .routes(routes!(routes::enclave))
        .routes(routes!(routes::create_vault))
        .routes(routes!(routes::authorize_import))
        .routes(routes!(routes::import_vault))
        .routes(routes!(routes::create_agent))
        .routes(routes!(routes::authorize_grant))
        .routes(routes!(routes::create_grant))
        .routes(routes!(routes::sign))
        .routes(routes!(routes::scheduled_sign))
        .routes(routes!(routes::revoke))
        .routes(routes!(routes::authorize_revoke))
        .routes(routes!(routes::authorize_export))
        .routes(routes!(routes::export))
        .routes(routes!(cluster::cluster_view))
        .routes(routes!(routes::receipts));
    let admin = OpenApiRouter::new()
        .routes(routes!(cluster::cluster_relay))
        .routes(routes!(cluster::cluster_card))
        .routes(routes!(cluster::cluster_found))
        .routes(routes!(cluster::cluster_join))
        .routes(routes!(cluster::cluster_admit))
        .routes(routes!(cluster::cluster_prove))
        .routes(routes!(routes::kill_switch))
        .routes(routes!(routes::handover))
        .routes(routes!(routes::handover_abort));
    let open = OpenApiRouter::new()
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .routes(routes!(routes::openapi_json));
    OpenApiRouter::with_openapi(doc::base())
        .merge(guards.guard(api, Caller::Api))
        .merge(guards.guard(admin, Caller::Admin))
        .merge(open)
        .split_for_parts()
}

/// The OpenAPI document of the API, as the code describes it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = documented_routes(&Guards::for_documentation());
    doc::complete(&mut openapi);
    openapi
}

/// [`openapi`] as pretty JSON with a final newline (the form committed as `docs/openapi.json`).
pub fn openapi_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

/// The whole HTTP service for `parent` ([`serve`] adds the per-connection clock): the router,
/// its fallbacks and state, and around it the outer layers as one plain tower stack (applied
/// with `Router::layer` they would be boxed per route, and every request would clone the boxes).
pub fn app<B>(
    parent: Arc<Parent>,
) -> impl tower::Service<
    Request<B>,
    Response = hyper::Response<
        impl hyper::body::Body<Data = bytes::Bytes, Error = impl Into<tower::BoxError>> + Send + 'static,
    >,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let guards = Guards::new(&parent.settings);
    let (router, mut openapi) = documented_routes(&guards);
    doc::complete(&mut openapi);
    let table = Arc::new(RouteTable::from_openapi(&openapi));
    let not_allowed = Arc::clone(&table);
    let observer = Arc::new(Observer::new(Arc::clone(&parent), table));
    let router = router
        .fallback(routes::not_found)
        .method_not_allowed_fallback(move |uri: axum::http::Uri| {
            routes::method_not_allowed(Arc::clone(&not_allowed), uri)
        })
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&parent), cluster::forward))
        .with_state(parent);
    // Outermost first.
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(layers::RequestIds::new()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(layers::span)
                .on_request(())
                .on_response(())
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(ObserveLayer(observer))
        .service(router)
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
    let app = app(Arc::clone(&parent));
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
        let (metrics, shutdown, app) = (Arc::clone(&parent.metrics), shutdown.clone(), app.clone());
        tracker.spawn(async move {
            // When the connection started waiting for its current request.
            let waiting_since = Arc::new(parking_lot::Mutex::new(tokio::time::Instant::now()));
            // Whether a request arrived: a header timeout after one is an idle keep-alive close.
            let served = Arc::new(AtomicBool::new(false));
            let idle = Arc::clone(&served);
            let clock = Arc::clone(&waiting_since);
            let connection_service = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    served.store(true, Ordering::Relaxed);
                    let deadline = *waiting_since.lock() + request_timeout;
                    req.extensions_mut().insert(ReadDeadline(deadline));
                    req
                })
                .map_response(move |response| {
                    *clock.lock() = tokio::time::Instant::now();
                    response
                })
                .service(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(stream),
                    TowerToHyperService::new(connection_service),
                );
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
