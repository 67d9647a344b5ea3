//! Cluster routes (SPEC §16, cluster) and forwarding to the leader.
//!
//! | route | token | what |
//! |---|---|---|
//! | `GET /v1/cluster` | API | this member's view: cluster id, role, leader, members |
//! | `POST /v1/cluster/relay` | admin (parents) | a sealed member message for this enclave (octets, ≤ the body limit) |
//! | `POST /v1/admin/cluster/card` | admin | this member's card, announcing its relay address |
//! | `POST /v1/admin/cluster/found` | admin | genesis: every founder's card, sent to each founder |
//! | `POST /v1/admin/cluster/join` | admin | a new or restarted enclave: the current members' cards |
//! | `POST /v1/admin/cluster/admit` | admin | to the leader's parent: admit a newcomer (replacing a dead member, or an old image's) |
//! | `POST /v1/admin/cluster/prove` | admin (parents) | to a newcomer's parent during an upgrade: its enclave's proof that KMS admits its image |
//!
//! [`forward`]: a `/v1` decision reaching a member that is not the leader goes on, unchanged, to
//! the leader's parent (once: the forwarded copy carries `X-Signer-Forwarded` and is answered
//! where it lands). Reads (`/v1/attestation`, `/v1/enclave`, `/v1/cluster`, OpenAPI) and the
//! cluster routes are answered locally.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use signer_api::B64;
use signer_api::cluster::{
    Accepted, AdmitRequest, Card, CardRequest, ClusterJoined, ClusterMember, ClusterView,
    FoundRequest, JoinRequest, Peer, Proof, ProveRequest,
};
use signer_protocol::{ClusterPeer, Op, Reply};

use super::doc::{ClusterErrors, ClusterKmsErrors, EnclaveErrors};
use super::extract::JsonBody;
use crate::app::{ApiError, Parent, unexpected};
use crate::cluster::{FORWARDED, MAX_RELAYED};
use crate::kms::Unwrap;
use signer_types::records::WrapAlg;

type Ctx = State<Arc<Parent>>;

fn peers(list: Vec<Peer>) -> Vec<ClusterPeer> {
    list.into_iter().map(|p| ClusterPeer { card: p.card.0, relay: p.relay }).collect()
}

#[utoipa::path(
    get, path = "/v1/cluster", operation_id = "cluster", tag = "cluster",
    summary = "This member's view of its cluster",
    description = "Cluster id (the routing key of the records the cluster makes), this member's \
        role, the leader and the members. `ready` once the member applied its cluster's genesis \
        and knows a leader.",
    responses((status = 200, description = "The view.", body = ClusterView), EnclaveErrors),
    security(("api_token" = []), ("admin_token" = [])),
)]
pub async fn cluster_view(State(parent): Ctx) -> Result<Json<ClusterView>, ApiError> {
    let reply = parent.call(&Op::ClusterStatus).await?;
    let Reply::ClusterStatus(s) = reply else {
        return Err(unexpected("cluster_status", &reply));
    };
    Ok(Json(ClusterView {
        ready: s.genesis_applied && s.leader.is_some(),
        enclave_id: s.enclave_id,
        cluster_id: s.cluster_id,
        role: s.role,
        leader: s.leader,
        leader_relay: s.leader_relay,
        term: s.term,
        last_applied: s.last_applied,
        appends_sent: s.appends_sent,
        entries_sent: s.entries_sent,
        members: s
            .members
            .into_iter()
            .map(|m| ClusterMember { enclave_id: m.enclave_id, relay: m.relay, voter: m.voter })
            .collect(),
    }))
}

#[utoipa::path(
    post, path = "/v1/cluster/relay", operation_id = "cluster_relay", tag = "cluster",
    summary = "A sealed message from another member (parents only)",
    description = "The body is a member message sealed to this enclave (HPKE, opaque to every \
        parent). Always accepted: what does not open is dropped inside the enclave.",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Handed to the enclave.", body = Accepted), ClusterErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_relay(State(parent): Ctx, body: Bytes) -> Result<Json<Accepted>, ApiError> {
    if body.is_empty() || body.len() > MAX_RELAYED {
        return Err(ApiError::bad_request(format!(
            "a member message is 1..={MAX_RELAYED} bytes, got {}",
            body.len()
        )));
    }
    parent.cluster.deliver(&parent.enclave, body.to_vec()).await.map_err(ApiError::unavailable)?;
    Ok(Json(Accepted { accepted: true }))
}

#[utoipa::path(
    post, path = "/v1/admin/cluster/card", operation_id = "cluster_card", tag = "cluster",
    summary = "This member's card",
    description = "A fresh attestation document of this enclave binding its per-boot channel \
        key, with the relay address its parent serves member traffic on. Give it to the founders \
        (genesis) or to the leader (admission).",
    request_body = CardRequest,
    responses((status = 200, description = "The card.", body = Card), ClusterErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_card(
    State(parent): Ctx,
    JsonBody(b): JsonBody<CardRequest>,
) -> Result<Json<Card>, ApiError> {
    let reply = parent.call(&Op::ClusterCard { relay: b.relay }).await?;
    let Reply::ClusterCard { card } = reply else {
        return Err(unexpected("cluster_card", &reply));
    };
    let enclave_id = match parent.call(&Op::ClusterStatus).await? {
        Reply::ClusterStatus(s) => s.enclave_id,
        other => return Err(unexpected("cluster_status", &other)),
    };
    Ok(Json(Card { card: B64(card), enclave_id }))
}

#[utoipa::path(
    post, path = "/v1/admin/cluster/found", operation_id = "cluster_found", tag = "cluster",
    summary = "Found a cluster (send to every founder)",
    description = "Every founder's card, fresh. Each founder verifies every card (AWS chain, \
        freshness, not debug, trusted image, key binding); the cluster id follows from the \
        founders' ids, so no genesis can reuse an old one.",
    request_body = FoundRequest,
    responses((status = 200, description = "The cluster.", body = ClusterJoined), ClusterErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_found(
    State(parent): Ctx,
    JsonBody(b): JsonBody<FoundRequest>,
) -> Result<Json<ClusterJoined>, ApiError> {
    let reply = parent.call(&Op::ClusterFound { founders: peers(b.founders) }).await?;
    let Reply::ClusterJoined { cluster_id } = reply else {
        return Err(unexpected("cluster_found", &reply));
    };
    parent.cluster.refresh(&parent.enclave).await;
    Ok(Json(ClusterJoined { cluster_id }))
}

#[utoipa::path(
    post, path = "/v1/admin/cluster/join", operation_id = "cluster_join", tag = "cluster",
    summary = "Wait to be admitted (a new or restarted enclave)",
    description = "The current members' cards. The enclave then follows the leader that admits \
        it, and decides only for the cluster its replicated state names.",
    request_body = JoinRequest,
    responses((status = 200, description = "Waiting for admission.", body = ClusterJoined), ClusterErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_join(
    State(parent): Ctx,
    JsonBody(b): JsonBody<JoinRequest>,
) -> Result<Json<ClusterJoined>, ApiError> {
    let op = Op::ClusterJoin { cluster_id: b.cluster_id, members: peers(b.members) };
    let reply = parent.call(&op).await?;
    let Reply::ClusterJoined { cluster_id } = reply else {
        return Err(unexpected("cluster_join", &reply));
    };
    parent.cluster.refresh(&parent.enclave).await;
    Ok(Json(ClusterJoined { cluster_id }))
}

#[utoipa::path(
    post, path = "/v1/admin/cluster/admit", operation_id = "cluster_admit", tag = "cluster",
    summary = "Admit a member (to the leader's parent)",
    description = "The newcomer's fresh card. It joins as a learner, catches up, becomes a voter, \
        and `replacing` (a dead member, or the old image's member during an upgrade) is \
        removed, each a membership change the majority commits. A newcomer of an image the \
        leader does not trust (an upgrade) is admitted only if KMS makes the leader's \
        challenge key for it (the key policy admits its image) and the newcomer proves it \
        opened it (this parent asks the newcomer's parent, `/v1/admin/cluster/prove`).",
    request_body = AdmitRequest,
    responses((status = 200, description = "Admitted.", body = Accepted), ClusterKmsErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_admit(
    State(parent): Ctx,
    JsonBody(b): JsonBody<AdmitRequest>,
) -> Result<Json<Accepted>, ApiError> {
    let reply = parent.call(&Op::ClusterChallenge { card: b.card.0.clone() }).await?;
    let Reply::ClusterChallenge { leader, newcomer, wrapped_key, document, pcr0 } = reply else {
        return Err(unexpected("cluster_challenge", &reply));
    };
    let proof = match wrapped_key {
        None => None,
        Some(wrapped) => {
            // An upgrade: KMS decides whether the new image may decide (its key policy), by
            // making the challenge key's envelope for the newcomer or refusing.
            let unwrap = Unwrap {
                alg: WrapAlg::RsaesOaepSha256,
                ciphertext: &wrapped,
                encryption_context: None,
            };
            let envelope = parent.kms.decrypt_for_recipient(&unwrap, &document, &pcr0).await?;
            let proof =
                parent.cluster.ask_proof(&b.relay, leader, envelope).await.map_err(|e| {
                    ApiError::unavailable(format!("the newcomer's proof of its image: {e}"))
                })?;
            tracing::warn!(%newcomer, %pcr0, "KMS vouched for a new image: admitting its member");
            Some(proof)
        }
    };
    let op = Op::ClusterAdmit {
        peer: ClusterPeer { card: b.card.0, relay: b.relay },
        replacing: b.replacing,
        proof,
    };
    let reply = parent.call(&op).await?;
    let Reply::Accepted = reply else {
        return Err(unexpected("cluster_admit", &reply));
    };
    Ok(Json(Accepted { accepted: true }))
}

#[utoipa::path(
    post, path = "/v1/admin/cluster/prove", operation_id = "cluster_prove", tag = "cluster",
    summary = "Prove this enclave's image to a leader (upgrades; parents only)",
    description = "Sent by the leader's parent while admitting this enclave as a member of a \
        new image: the KMS envelope of the leader's challenge key, which KMS makes only for an \
        image its key policy admits. The enclave answers an HMAC under that key naming itself \
        and the leader.",
    request_body = ProveRequest,
    responses((status = 200, description = "The proof.", body = Proof), ClusterKmsErrors),
    security(("admin_token" = [])),
)]
pub async fn cluster_prove(
    State(parent): Ctx,
    JsonBody(b): JsonBody<ProveRequest>,
) -> Result<Json<Proof>, ApiError> {
    let reply = parent.call(&Op::ClusterProve { leader: b.leader, envelope: b.envelope.0 }).await?;
    let Reply::ClusterProof { proof } = reply else {
        return Err(unexpected("cluster_prove", &reply));
    };
    Ok(Json(Proof { proof: B64(proof.to_vec()) }))
}

/// Answered by every member itself, never forwarded.
fn local(path: &str) -> bool {
    !path.starts_with("/v1/")
        || path.starts_with("/v1/cluster")
        || path.starts_with("/v1/admin/cluster/")
        || path == "/v1/attestation"
        || path == "/v1/enclave"
        || path == "/v1/openapi.json"
}

/// Sends a decision that reached a member which is not the leader to the leader's parent.
pub async fn forward(State(parent): Ctx, request: Request, next: Next) -> Response {
    let target = parent.cluster.forward_target();
    let Some(relay) = target
        .filter(|_| !local(request.uri().path()) && !request.headers().contains_key(FORWARDED))
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let limit = parent.settings.body_limit_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::http(
                signer_api::HttpCode::PayloadTooLarge,
                format!("the body exceeds {limit} bytes"),
            )
            .into_response();
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match parent.cluster.forward(&relay, parts.method, path, &parts.headers, body).await {
        Ok(response) => response.map(Body::from),
        Err(e) => ApiError::unavailable(format!(
            "this member is not the cluster's leader, and the leader could not be reached: {e}"
        ))
        .into_response(),
    }
}
