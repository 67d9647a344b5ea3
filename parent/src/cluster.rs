//! The parent's part in a cluster of enclaves (SPEC §16, cluster): it relays the members'
//! sealed messages and sends each request to the member that decides. It can read none of what
//! it relays and forge nothing: the enclaves authenticate every message (attested channel keys)
//! and refuse anything that does not open.
//!
//! - **Pump**: drains this enclave's outbox (`cluster_outbox`, a long poll) and POSTs each message
//!   to the addressed member's parent at `{relay}/v1/cluster/relay` (admin bearer token, body =
//!   the sealed bytes, at most [`MAX_RELAYED`]). Failures are dropped: Raft resends.
//! - **Relay route**: hands a received message to this enclave (`cluster_deliver`).
//! - **View**: this member's cluster status (`cluster_status`), refreshed every
//!   [`REFRESH`] and after any `enclave_unavailable` answer.
//! - **Forwarding**: a decision reaching a member that is not the leader is sent on, as received,
//!   to the leader's parent (`{leader relay}{path}`), once: a forwarded request
//!   (`X-Signer-Forwarded`) is answered where it lands.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;
use signer_protocol::{ClusterStatusReply, EnclaveClient, Op, Outcome, Reply};
use tokio_util::sync::CancellationToken;

/// How often the view of the cluster is refreshed.
pub const REFRESH: Duration = Duration::from_millis(250);
/// The largest member message a relay route accepts (a sealed message is at most 240 KiB + 89).
pub const MAX_RELAYED: usize = 256 * 1024;
/// A request forwarded to the leader once carries this header and is not forwarded again.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-signer-forwarded");
/// The largest answer to a proof request read (a proof is 44 bytes of base64 in JSON; an error
/// is a problem document).
const MAX_PROOF_ANSWER: usize = 8 * 1024;
/// Deadline of one relayed message or forwarded request.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const ENCLAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a forwarded request got no answer from the leader's parent.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the leader's parent at {relay} did not answer: {reason}")]
    Unreachable { relay: String, reason: String },
    #[error("the leader's relay address {0:?} is not a valid URL")]
    BadRelay(String),
}

/// This parent's cluster relay.
pub struct ClusterRelay {
    http: Client<HttpConnector, Full<Bytes>>,
    /// The bearer token parents present to each other's relay route.
    peer_token: String,
    /// The enclave's latest cluster status (None: not asked yet, or the enclave did not answer).
    view: RwLock<Option<ClusterStatusReply>>,
    relayed: std::sync::atomic::AtomicU64,
    relay_failures: std::sync::atomic::AtomicU64,
}

impl ClusterRelay {
    pub fn new(peer_token: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            peer_token,
            view: RwLock::new(None),
            relayed: Default::default(),
            relay_failures: Default::default(),
        }
    }

    /// Whether this parent's enclave is a member of a cluster, as last seen.
    fn is_member(&self) -> bool {
        self.view.read().as_ref().is_some_and(|v| v.cluster_id.is_some())
    }

    /// Whether the member can serve: not in a cluster (standalone), or it applied its cluster's
    /// genesis and knows a leader (it decides as the leader, or forwards to it).
    pub fn ready(&self) -> bool {
        self.view
            .read()
            .as_ref()
            .filter(|v| v.cluster_id.is_some())
            .is_none_or(|v| v.genesis_applied && v.leader.is_some())
    }

    /// Messages relayed to other members, and those that could not be.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.relayed.load(Relaxed), self.relay_failures.load(Relaxed))
    }

    /// Where to forward a decision: the leader's parent, when this member is in a cluster and
    /// is not the leader.
    pub fn forward_target(&self) -> Option<String> {
        // Read in place: this runs on every request.
        let view = self.view.read();
        let v = view.as_ref().filter(|v| v.cluster_id.is_some())?;
        if v.leader == Some(v.enclave_id) {
            return None;
        }
        v.leader_relay.clone()
    }

    /// Asks the enclave for its cluster status now; the view is cleared when it cannot answer
    /// (a dead enclave leads nothing).
    pub async fn refresh(&self, enclave: &EnclaveClient) -> Option<ClusterStatusReply> {
        match enclave.call(&Op::ClusterStatus, ENCLAVE_TIMEOUT).await {
            Ok(Outcome::Ok(Reply::ClusterStatus(status))) => {
                *self.view.write() = Some(status.clone());
                Some(status)
            }
            _ => {
                *self.view.write() = None;
                None
            }
        }
    }

    /// Hands a message from another member's parent to this enclave.
    pub async fn deliver(&self, enclave: &EnclaveClient, message: Vec<u8>) -> Result<(), String> {
        match enclave.call(&Op::ClusterDeliver { message }, ENCLAVE_TIMEOUT).await {
            Ok(Outcome::Ok(_)) => Ok(()),
            Ok(Outcome::Err(e)) => Err(e.message),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs the pump and the view refresh for `parent` until `shutdown`.
    pub fn spawn(parent: Arc<crate::app::Parent>, shutdown: CancellationToken) {
        let p = Arc::clone(&parent);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => { p.cluster.refresh(&p.enclave).await; }
                }
            }
        });
        tokio::spawn(async move {
            let outbox = Op::ClusterOutbox { wait_ms: 1000 };
            loop {
                // Only a member has an outbox worth polling.
                if !parent.cluster.is_member() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(REFRESH) => continue,
                    }
                }
                let drained = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = parent.enclave.call(&outbox, ENCLAVE_TIMEOUT) => r,
                };
                match drained {
                    Ok(Outcome::Ok(Reply::ClusterOutbox { messages })) => {
                        for m in messages {
                            let p = Arc::clone(&parent);
                            tokio::spawn(async move { p.cluster.send(m.relay, m.message).await });
                        }
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }

    async fn send(&self, relay: String, message: Vec<u8>) {
        use std::sync::atomic::Ordering::Relaxed;
        let url = format!("{}/v1/cluster/relay", relay.trim_end_matches('/'));
        let request = hyper::Request::post(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.peer_token))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::from(message)));
        let Ok(request) = request else {
            self.relay_failures.fetch_add(1, Relaxed);
            return;
        };
        match tokio::time::timeout(SEND_TIMEOUT, self.http.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                self.relayed.fetch_add(1, Relaxed);
                let _ = response.into_body().collect().await;
            }
            other => {
                self.relay_failures.fetch_add(1, Relaxed);
                tracing::debug!(%relay, ok = other.is_ok(), "member message not relayed");
            }
        }
    }

    /// Upgrade admission, on the leader's parent: asks the newcomer's parent (at `relay`) for
    /// its enclave's proof that it opened `envelope` (`POST {relay}/v1/admin/cluster/prove`).
    pub async fn ask_proof(
        &self,
        relay: &str,
        leader: signer_types::ids::EnclaveId,
        envelope: Vec<u8>,
    ) -> Result<[u8; 32], ForwardError> {
        let unreachable =
            |reason: String| ForwardError::Unreachable { relay: relay.to_string(), reason };
        let url = format!("{}/v1/admin/cluster/prove", relay.trim_end_matches('/'));
        let uri: hyper::Uri = url.parse().map_err(|_| ForwardError::BadRelay(relay.to_string()))?;
        let body = serde_json::to_vec(&signer_api::cluster::ProveRequest {
            leader,
            envelope: signer_api::B64(envelope),
        })
        .map_err(|e| unreachable(e.to_string()))?;
        let request = hyper::Request::post(uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.peer_token))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        // One deadline for the whole exchange, and a bounded answer: the newcomer's parent is
        // whatever host the admit request named.
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_PROOF_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(SEND_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(unreachable)?;
        if !status.is_success() {
            return Err(unreachable(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).chars().take(512).collect::<String>()
            )));
        }
        let proof: signer_api::cluster::Proof =
            serde_json::from_slice(&body).map_err(|e| unreachable(format!("its answer: {e}")))?;
        proof
            .proof
            .0
            .as_slice()
            .try_into()
            .map_err(|_| unreachable(format!("its proof is {} bytes, not 32", proof.proof.0.len())))
    }

    /// Sends a request, as received, to the leader's parent and returns its answer.
    pub async fn forward(
        &self,
        relay: &str,
        method: hyper::Method,
        path_and_query: &str,
        headers: &hyper::HeaderMap,
        body: Bytes,
    ) -> Result<hyper::Response<Bytes>, ForwardError> {
        let url = format!("{}{}", relay.trim_end_matches('/'), path_and_query);
        let uri: hyper::Uri = url.parse().map_err(|_| ForwardError::BadRelay(relay.to_string()))?;
        let mut request = hyper::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            // Hop-by-hop and length headers are the client's business with this hop only.
            if name == hyper::header::HOST
                || name == hyper::header::CONNECTION
                || name == hyper::header::CONTENT_LENGTH
                || name == hyper::header::TRANSFER_ENCODING
            {
                continue;
            }
            request = request.header(name, value);
        }
        request = request.header(FORWARDED, HeaderValue::from_static("1"));
        let unreachable =
            |reason: String| ForwardError::Unreachable { relay: relay.to_string(), reason };
        let request = request.body(Full::new(body)).map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(SEND_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        Ok(hyper::Response::from_parts(parts, body))
    }
}
