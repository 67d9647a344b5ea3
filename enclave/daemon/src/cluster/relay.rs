//! The member's side of the parent relay: sealed messages wait in an outbox that the parent
//! drains (`cluster_outbox`, a long poll) and sends to the other members' parents, which hand
//! them in with `cluster_deliver`. The parents see only sealed bytes and where they go.
//!
//! The outbox is bounded ([`OUTBOX_CAPACITY`] messages): when the parent does not drain it, the
//! oldest messages give way (Raft resends what matters). One drain returns at most
//! [`DRAIN_BYTES`] of messages, so the reply fits one 256 KiB frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use enclave_core::{Enclave, EnclaveError, EnclaveId, SecureRandom};
use parking_lot::Mutex;
use signer_protocol::{
    ClusterMemberInfo, ClusterPeer, ClusterStatusReply, Op, RelayedMessage, Reply,
};
use tokio::sync::Notify;

use super::node::{ClusterError, Node, Transport};
use super::raft::Member;

/// Messages waiting for the parent.
pub const OUTBOX_CAPACITY: usize = 4096;
/// Bytes of messages in one drain (a message is at most 240 KiB + 89 bytes).
pub const DRAIN_BYTES: usize = 240 * 1024;
/// Longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Sealed messages on their way out.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<VecDeque<RelayedMessage>>,
    notify: Notify,
    dropped: AtomicU64,
}

impl Transport for Outbox {
    fn send(&self, to: &Member, message: Vec<u8>) {
        let mut queue = self.queue.lock();
        if queue.len() >= OUTBOX_CAPACITY {
            queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(RelayedMessage { relay: to.relay.clone(), message });
        drop(queue);
        self.notify.notify_one();
    }
}

impl Outbox {
    /// Waits up to `wait` for a message, then takes what fits one drain.
    pub async fn drain(&self, wait: Duration) -> Vec<RelayedMessage> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let notified = self.notify.notified();
            {
                let mut queue = self.queue.lock();
                if !queue.is_empty() {
                    let mut out = Vec::new();
                    let mut bytes = 0usize;
                    while let Some(next) = queue.front() {
                        let size = next.message.len().saturating_add(next.relay.len());
                        if !out.is_empty() && bytes.saturating_add(size) > DRAIN_BYTES {
                            break;
                        }
                        bytes = bytes.saturating_add(size);
                        if let Some(m) = queue.pop_front() {
                            out.push(m);
                        }
                    }
                    return out;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Messages given up because the parent did not drain them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// This enclave's cluster membership, once its parent asked for a card.
pub struct ClusterRuntime {
    enclave: Arc<Enclave>,
    rng: Arc<dyn SecureRandom>,
    outbox: Arc<Outbox>,
    node: OnceLock<Arc<Node>>,
}

fn refused(e: ClusterError) -> EnclaveError {
    match e {
        ClusterError::Raft(m) => EnclaveError::Unavailable(m),
        other => EnclaveError::BadRequest(other.to_string()),
    }
}

fn peers(list: &[ClusterPeer]) -> Vec<(Vec<u8>, String)> {
    list.iter().map(|p| (p.card.clone(), p.relay.clone())).collect()
}

impl ClusterRuntime {
    pub fn new(enclave: Arc<Enclave>, rng: Arc<dyn SecureRandom>) -> Self {
        Self { enclave, rng, outbox: Arc::new(Outbox::default()), node: OnceLock::new() }
    }

    /// Whether this enclave founded or joined a cluster (its decisions then wait for a
    /// majority: they run on the blocking pool).
    pub fn is_member(&self) -> bool {
        self.node.get().is_some_and(|n| n.cluster_id().is_some())
    }

    fn node(&self) -> Result<&Arc<Node>, EnclaveError> {
        self.node.get().ok_or_else(|| {
            EnclaveError::BadRequest("ask this enclave for its cluster card first".into())
        })
    }

    /// Handles a cluster operation.
    pub async fn handle(&self, op: Op) -> Result<Reply, EnclaveError> {
        match op {
            Op::ClusterCard { relay } => {
                if relay.is_empty() || relay.len() > 256 {
                    return Err(EnclaveError::BadRequest(
                        "a relay address is 1..=256 characters".into(),
                    ));
                }
                let node = match self.node.get() {
                    Some(node) => node,
                    None => {
                        let transport: Arc<dyn Transport> = self.outbox.clone();
                        let node = Node::new(
                            Arc::clone(&self.enclave),
                            Arc::clone(&self.rng),
                            transport,
                            relay,
                        )
                        .map_err(refused)?;
                        self.node.get_or_init(|| node)
                    }
                };
                Ok(Reply::ClusterCard { card: node.card().map_err(refused)? })
            }
            Op::ClusterFound { founders } => {
                let cluster_id = self.node()?.found(&peers(&founders)).await.map_err(refused)?;
                Ok(Reply::ClusterJoined { cluster_id })
            }
            Op::ClusterJoin { cluster_id, members } => {
                self.node()?.join(cluster_id, &peers(&members)).await.map_err(refused)?;
                Ok(Reply::ClusterJoined { cluster_id })
            }
            Op::ClusterAdmit { peer, replacing, proof } => {
                self.node()?
                    .admit(&peer.card, peer.relay, replacing, proof)
                    .await
                    .map_err(refused)?;
                Ok(Reply::Accepted)
            }
            Op::ClusterChallenge { card } => {
                let node = self.node()?;
                let c = node.challenge(&card).map_err(refused)?;
                Ok(Reply::ClusterChallenge {
                    leader: node.enclave_id(),
                    newcomer: c.newcomer,
                    wrapped_key: c.wrapped_key,
                    document: c.document,
                    pcr0: c.pcr0,
                })
            }
            // A newcomer proves before it is admitted, naming its own channel key (its card's).
            Op::ClusterProve { leader, envelope } => {
                let channel = self.node()?.channel_public();
                Ok(Reply::ClusterProof {
                    proof: self.enclave.upgrade_prove(leader, &channel, &envelope)?,
                })
            }
            Op::ClusterDeliver { message } => {
                // What does not open is dropped, as a relay dropping it would: the sender retries.
                if let Err(e) = self.node()?.deliver(&message) {
                    tracing::debug!(error = %e, "member message dropped");
                }
                Ok(Reply::Accepted)
            }
            Op::ClusterOutbox { wait_ms } => Ok(Reply::ClusterOutbox {
                messages: self.outbox.drain(Duration::from_millis(u64::from(wait_ms))).await,
            }),
            Op::ClusterStatus => Ok(Reply::ClusterStatus(self.status())),
            other => Err(EnclaveError::BadRequest(format!(
                "{} is not a cluster operation",
                other.name()
            ))),
        }
    }

    /// Membership, leader and log position as this member sees them.
    pub fn status(&self) -> ClusterStatusReply {
        let mut status = ClusterStatusReply {
            enclave_id: self.enclave.id(),
            role: "none".into(),
            ..Default::default()
        };
        let Some(node) = self.node.get() else { return status };
        status.cluster_id = node.cluster_id();
        status.genesis_applied =
            status.cluster_id.is_some() && self.enclave.replicated_cluster() == status.cluster_id;
        (status.appends_sent, status.entries_sent) = node.appends_sent();
        let Some(raft) = node.raft() else { return status };
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        status.members = membership
            .nodes()
            .map(|(id, member)| ClusterMemberInfo {
                enclave_id: EnclaveId(member.enclave_id),
                relay: member.relay.clone(),
                voter: voters.contains(id),
            })
            .collect();
        status.role = match m.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Shutdown => "none",
        }
        .into();
        if let Some(leader) = m.current_leader.and_then(|id| membership.get_node(&id)) {
            status.leader = Some(EnclaveId(leader.enclave_id));
            status.leader_relay = Some(leader.relay.clone());
        }
        status.term = m.current_term;
        status.last_applied = m.last_applied.map(|l| l.index);
        status
    }

    pub fn outbox_dropped(&self) -> u64 {
        self.outbox.dropped()
    }
}

/// Whether `op` is handled by the cluster runtime.
pub fn is_cluster_op(op: &Op) -> bool {
    matches!(
        op,
        Op::ClusterCard { .. }
            | Op::ClusterFound { .. }
            | Op::ClusterJoin { .. }
            | Op::ClusterAdmit { .. }
            | Op::ClusterChallenge { .. }
            | Op::ClusterProve { .. }
            | Op::ClusterDeliver { .. }
            | Op::ClusterOutbox { .. }
            | Op::ClusterStatus
    )
}
