//! One member of a cluster: its Raft instance, its attested channel to every other member, and
//! the admission of members (genesis, joining, admitting a newcomer).
//!
//! **Messages.** Raft's RPCs travel as [`Envelope`]s (CBOR) inside the channel of
//! `enclave_core::cluster::channel` (HPKE Auth mode, per-sender replay window), one sealed
//! message per request or response, moved by a [`Transport`] that is trusted for nothing: the
//! hosts' relays may drop, delay, duplicate, reorder or replay them. A response is matched to its
//! request by a correlation number; one that never comes is a timeout, and Raft retries.
//!
//! **Admission.** A member's identity is its card (`enclave_core::cluster::member`): the attested
//! enclave id and channel key. Genesis verifies every founder's card (AWS chain, freshness, not
//! debug, trusted image, binding) and derives the cluster id from the founders' ids, which are
//! generated at their boots, so a new genesis can never reuse an old id. A newcomer is admitted
//! by the current leader after its card verifies (fresh) and joins as a learner, then as a voter,
//! by membership changes the majority commits. Only admitted members' channel keys open messages.
//!
//! **Decisions.** [`RaftReplicator`] commits the enclave's proposals: only on the leader (others
//! answer [`EnclaveError::NotLeader`]), waiting at most [`COMMIT_TIMEOUT`] for a majority (a
//! minority side answers `Unavailable` and never signs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enclave_core::cluster::channel::{ChannelError, Opener, Sealer};
use enclave_core::cluster::member::{
    Candidate, MemberCard, MemberKey, VerifiedMember, cluster_id, verify_candidate, verify_member,
    verify_member_at_own_time,
};
use enclave_core::enclave::replicated::{Command, Decided, Proposal, Replicator};
use enclave_core::{Enclave, EnclaveError, EnclaveId, SecureRandom};
use openraft::ChangeMembers;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::raft::{LogStore, Member, NodeId, Raft, StateMachine, TypeConfig};

/// Raft heartbeats (and the deadline of a replication RPC).
pub const HEARTBEAT_MS: u64 = 250;
/// A leader that has not heard from a majority for this long (an election's worth) refuses to
/// decide at once.
pub const QUORUM_SILENCE_MS: u64 = 4 * HEARTBEAT_MS;
/// How long a decision waits for a majority before the caller is told the cluster is unavailable.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a newcomer is given to catch up before it becomes a voter (within the parent's
/// 10 s call deadline).
pub const ADMIT_CATCH_UP: Duration = Duration::from_secs(6);
/// How old a newcomer's card may be (its document is made for the admission).
pub const CARD_MAX_AGE: Duration = Duration::from_secs(300);
/// Snapshot chunks: a sealed message stays under the parents' 64 KiB body limit.
pub const SNAPSHOT_CHUNK: u64 = 32 * 1024;
/// Appends of several entries are split above this many bytes of message (same reason).
pub const MAX_APPEND_BYTES: usize = 40 * 1024;
/// Entries per append: each proposal is well under 1 KiB of CBOR.
pub const MAX_ENTRIES_PER_APPEND: u64 = 128;

/// Moves sealed messages to a member (by its relay address); delivery is not promised.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, to: &Member, message: Vec<u8>);
}

/// What a sealed message carries: the sender's cluster (a member drops messages of any other
/// cluster, so one enclave cannot be drawn into two groups) and a request or a response.
#[derive(Serialize, Deserialize)]
struct Envelope {
    cluster: EnclaveId,
    body: Body,
}

#[derive(Serialize, Deserialize)]
enum Body {
    Request { correlation: u64, request: Request },
    Response { correlation: u64, response: Response },
}

#[derive(Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(SnapshotChunk),
}

/// A snapshot chunk with its data as one CBOR byte string (openraft's own request would write
/// it as an array of integers, twice the size).
#[derive(Serialize, Deserialize)]
struct SnapshotChunk {
    vote: openraft::Vote<NodeId>,
    meta: openraft::SnapshotMeta<NodeId, Member>,
    offset: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        Self { vote: r.vote, meta: r.meta, offset: r.offset, data: r.data, done: r.done }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> Self {
        Self { vote: c.vote, meta: c.meta, offset: c.offset, data: c.data, done: c.done }
    }
}

/// Longest relay address a member may announce (it is in every membership entry).
pub const MAX_RELAY_LEN: usize = 255;

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// Why a cluster operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("member card refused: {0}")]
    Card(#[from] enclave_core::cluster::member::MemberError),
    #[error("this enclave is not among the founders it was given")]
    NotAFounder,
    #[error("this enclave is already a member of cluster {0}")]
    AlreadyMember(EnclaveId),
    #[error("this enclave is not a member of a cluster")]
    NotMember,
    #[error("a relay address is 1..={MAX_RELAY_LEN} bytes; {0} given")]
    Relay(usize),
    #[error("the enclave cannot join: {0}")]
    Enclave(#[from] EnclaveError),
    #[error("members {0} and {1} share a Raft node id (the first 8 bytes of their ids)")]
    NodeIdCollision(EnclaveId, EnclaveId),
    #[error("raft: {0}")]
    Raft(String),
    #[error("attestation: {0}")]
    Attestation(String),
    #[error(
        "the newcomer's image (PCR0 {pcr0}) is not this member's own: KMS must vouch for it \
         (admit through the leader's parent, which runs the challenge)"
    )]
    UpgradeUnproven { pcr0: String },
    #[error("only the leader admits members; this member is not the leader")]
    NotLeader,
    #[error("enclave {0} is already a member")]
    MemberExists(EnclaveId),
}

/// What the leader's parent needs to have KMS vouch for a newcomer's image (`challenge`).
pub struct Challenge {
    pub newcomer: EnclaveId,
    /// Absent when the newcomer's image is trusted: nothing to vouch for.
    pub wrapped_key: Option<Vec<u8>>,
    pub document: Vec<u8>,
    pub pcr0: String,
}

/// One member.
pub struct Node {
    enclave: Arc<Enclave>,
    id: EnclaveId,
    key: Arc<MemberKey>,
    rng: Arc<dyn SecureRandom>,
    transport: Arc<dyn Transport>,
    /// Admitted members' channel keys (founders, the bundle a newcomer was given, and every
    /// member the committed membership names).
    admitted: RwLock<BTreeMap<EnclaveId, Member>>,
    sealers: Mutex<HashMap<EnclaveId, Arc<Sealer>>>,
    opener: Mutex<Opener>,
    /// Requests waiting for their response: the member asked, and where to hand it.
    pending: Mutex<HashMap<u64, (EnclaveId, oneshot::Sender<Response>)>>,
    /// One membership change at a time (each builds on the committed one).
    admitting: tokio::sync::Mutex<()>,
    next_correlation: AtomicU64,
    /// Appends with entries sent to other members, and the entries they carried.
    appends_sent: AtomicU64,
    entries_sent: AtomicU64,
    raft: OnceLock<Raft>,
    cluster: OnceLock<EnclaveId>,
    relay: String,
}

fn check_relay(relay: &str) -> Result<(), ClusterError> {
    if relay.is_empty() || relay.len() > MAX_RELAY_LEN {
        return Err(ClusterError::Relay(relay.len()));
    }
    Ok(())
}

fn node_id(id: &EnclaveId) -> NodeId {
    enclave_core::cluster::member::node_id(id)
}

fn member_of(v: &VerifiedMember, relay: String) -> Member {
    Member { enclave_id: v.enclave_id.0, channel_public: v.channel_public, relay }
}

impl Node {
    /// A member-to-be: a fresh channel key (this boot's), not yet in a cluster. `relay` is where
    /// this member's parent receives member traffic.
    pub fn new(
        enclave: Arc<Enclave>,
        rng: Arc<dyn SecureRandom>,
        transport: Arc<dyn Transport>,
        relay: String,
    ) -> Result<Arc<Self>, ClusterError> {
        check_relay(&relay)?;
        let key = Arc::new(
            MemberKey::generate(&*rng).map_err(|e| ClusterError::Attestation(e.to_string()))?,
        );
        let id = enclave.id();
        Ok(Arc::new(Self {
            opener: Mutex::new(Opener::new(Arc::clone(&key), id)),
            enclave,
            id,
            key,
            rng,
            transport,
            admitted: RwLock::new(BTreeMap::new()),
            sealers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            admitting: tokio::sync::Mutex::new(()),
            next_correlation: AtomicU64::new(1),
            appends_sent: AtomicU64::new(0),
            entries_sent: AtomicU64::new(0),
            raft: OnceLock::new(),
            cluster: OnceLock::new(),
            relay,
        }))
    }

    pub fn enclave_id(&self) -> EnclaveId {
        self.id
    }

    pub fn enclave(&self) -> Arc<Enclave> {
        Arc::clone(&self.enclave)
    }

    /// Where this member's parent receives member traffic.
    pub fn relay(&self) -> &str {
        &self.relay
    }

    pub fn raft(&self) -> Option<&Raft> {
        self.raft.get()
    }

    pub fn cluster_id(&self) -> Option<EnclaveId> {
        self.cluster.get().copied()
    }

    /// Appends with entries this member sent (as leader) and the entries they carried.
    pub fn appends_sent(&self) -> (u64, u64) {
        (self.appends_sent.load(Ordering::Relaxed), self.entries_sent.load(Ordering::Relaxed))
    }

    /// This member's card: a fresh attestation document binding its channel key.
    /// This member's channel key (what its cards bind).
    pub fn channel_public(&self) -> [u8; 32] {
        *self.key.public()
    }

    pub fn card(&self) -> Result<Vec<u8>, ClusterError> {
        let document = self
            .enclave
            .attest_member(&self.key.binding(&self.id))
            .map_err(|e| ClusterError::Attestation(e.to_string()))?;
        MemberCard { enclave_id: self.id, channel_public: *self.key.public(), document }
            .encode()
            .map_err(ClusterError::Card)
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.enclave.now())
    }

    /// A founder's card, verified fresh: founders are of this member's own image (a cluster
    /// of another image, or of a predecessor the key policy may have dropped, is founded by
    /// enclaves of that image; other images join by an upgrade, which KMS vouches for).
    fn verify_fresh(&self, card: &[u8]) -> Result<VerifiedMember, ClusterError> {
        let own_image = self.enclave.trusted_images().get(..1).unwrap_or_default();
        Ok(verify_member(card, self.enclave.anchor(), own_image, self.now(), CARD_MAX_AGE)?)
    }

    fn raft_config() -> Result<Arc<openraft::Config>, ClusterError> {
        let config = openraft::Config {
            cluster_name: "signer".into(),
            // Member traffic crosses two parents and a network each way (and each RPC must
            // answer within a heartbeat): generous timeouts keep leaders stable under a slow
            // relay, at the cost of a failover of a second or two.
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: 4 * HEARTBEAT_MS,
            election_timeout_max: 8 * HEARTBEAT_MS,
            max_payload_entries: MAX_ENTRIES_PER_APPEND,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            ..Default::default()
        };
        Ok(Arc::new(config.validate().map_err(|e| ClusterError::Raft(e.to_string()))?))
    }

    async fn start_raft(self: &Arc<Self>, cluster: EnclaveId) -> Result<&Raft, ClusterError> {
        if let Some(existing) = self.cluster.get() {
            return Err(ClusterError::AlreadyMember(*existing));
        }
        let raft = Raft::new(
            node_id(&self.id),
            Self::raft_config()?,
            Network { node: Arc::clone(self) },
            LogStore::default(),
            StateMachine::new(Arc::clone(&self.enclave)),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        self.enclave.join_cluster(
            cluster,
            Arc::new(RaftReplicator {
                raft: raft.clone(),
                runtime: tokio::runtime::Handle::current(),
            }),
        )?;
        let raft = self.raft.get_or_init(|| raft);
        let _ = self.cluster.set(cluster);
        self.spawn_membership_watch();
        Ok(raft)
    }

    /// Genesis, on every founder: `founders` are all founders' cards (this one's included) with
    /// their relay addresses, each fresh. The founder with the lowest node id initializes Raft.
    /// Returns the cluster id.
    pub async fn found(
        self: &Arc<Self>,
        founders: &[(Vec<u8>, String)],
    ) -> Result<EnclaveId, ClusterError> {
        if let Some(existing) = self.cluster.get() {
            return Err(ClusterError::AlreadyMember(*existing));
        }
        let mut verified = Vec::new();
        for (card, relay) in founders {
            check_relay(relay)?;
            let v = self.verify_fresh(card)?;
            verified.push(member_of(&v, relay.clone()));
        }
        if !verified.iter().any(|m| m.enclave_id == self.id.0) {
            return Err(ClusterError::NotAFounder);
        }
        let ids: Vec<EnclaveId> = verified.iter().map(|m| EnclaveId(m.enclave_id)).collect();
        let cluster = EnclaveId(cluster_id(&ids)?);
        self.check_node_ids(&verified)?;
        self.admit_keys(verified.iter().cloned());
        let raft = self.start_raft(cluster).await?;
        let members: BTreeMap<NodeId, Member> =
            verified.into_iter().map(|m| (node_id(&EnclaveId(m.enclave_id)), m)).collect();
        if members.keys().next() == Some(&node_id(&self.id)) {
            raft.initialize(members).await.map_err(|e| ClusterError::Raft(e.to_string()))?;
            // The log's first decision says which cluster it is; every member takes its id
            // from there (and decides nothing before it is applied). The other founders may
            // not be up yet: keep proposing until a majority commits it.
            let genesis = Proposal {
                time: self.enclave.now(),
                command: Command::Genesis { cluster_id: cluster, founders: ids },
            };
            let raft = raft.clone();
            tokio::spawn(async move {
                loop {
                    match raft.client_write(genesis.clone()).await {
                        Ok(_) => break,
                        Err(RaftError::Fatal(e)) => {
                            tracing::error!(error = %e, "the genesis entry cannot be written");
                            break;
                        }
                        Err(e) => tracing::debug!(error = %e, "genesis entry not yet committed"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        Ok(cluster)
    }

    /// A newcomer, before it is admitted: `members` are the current members' cards (checked at
    /// their own time: members run long) and relays; it waits for the leader's messages.
    pub async fn join(
        self: &Arc<Self>,
        cluster: EnclaveId,
        members: &[(Vec<u8>, String)],
    ) -> Result<(), ClusterError> {
        if let Some(existing) = self.cluster.get() {
            return Err(ClusterError::AlreadyMember(*existing));
        }
        let mut verified = Vec::new();
        for (card, relay) in members {
            check_relay(relay)?;
            let v = verify_member_at_own_time(
                card,
                self.enclave.anchor(),
                self.enclave.trusted_images(),
                self.now(),
            )?;
            verified.push(member_of(&v, relay.clone()));
        }
        self.check_node_ids(&verified)?;
        self.admit_keys(verified);
        self.start_raft(cluster).await?;
        Ok(())
    }

    /// A newcomer's card, verified fresh. For admission only this member's own image is
    /// trusted as such: any other (a new image, or a predecessor the key policy may have dropped
    /// since) is admitted only when KMS vouches for it (`enclave_core::enclave::upgrade`).
    fn candidate(&self, card: &[u8]) -> Result<Candidate, ClusterError> {
        let own_image = self.enclave.trusted_images().get(..1).unwrap_or_default();
        Ok(verify_candidate(card, self.enclave.anchor(), own_image, self.now(), CARD_MAX_AGE)?)
    }

    fn check_leader(&self, raft: &Raft) -> Result<(), ClusterError> {
        let leader = raft.metrics().borrow().current_leader;
        if leader == Some(node_id(&self.id)) { Ok(()) } else { Err(ClusterError::NotLeader) }
    }

    /// On the leader, before admitting `card`: a challenge for KMS when its image is not this
    /// member's own (an upgrade, `enclave_core::enclave::upgrade`).
    pub fn challenge(&self, card: &[u8]) -> Result<Challenge, ClusterError> {
        let raft = self.raft.get().ok_or(ClusterError::NotMember)?;
        self.check_leader(raft)?;
        Ok(match self.candidate(card)? {
            Candidate::Trusted(v) => Challenge {
                newcomer: v.enclave_id,
                wrapped_key: None,
                document: Vec::new(),
                pcr0: String::new(),
            },
            Candidate::NewImage(m) => Challenge {
                newcomer: m.enclave_id(),
                wrapped_key: Some(self.enclave.upgrade_challenge(&m)?),
                document: m.document().to_vec(),
                pcr0: m.pcr0(),
            },
        })
    }

    /// On the leader: admits a newcomer whose fresh card verifies — as a learner (it catches up
    /// by snapshot), then as a voter — and removes `replacing` (a dead member) in the same change.
    /// A newcomer of an image outside the trusted set needs `proof`, its answer to this
    /// member's challenge.
    pub async fn admit(
        self: &Arc<Self>,
        card: &[u8],
        relay: String,
        replacing: Option<EnclaveId>,
        proof: Option<[u8; 32]>,
    ) -> Result<(), ClusterError> {
        let raft = self.raft.get().ok_or(ClusterError::NotMember)?;
        self.check_leader(raft)?;
        check_relay(&relay)?;
        let v = match self.candidate(card)? {
            Candidate::Trusted(v) => v,
            Candidate::NewImage(m) => match proof {
                Some(proof) => self.enclave.upgrade_vouch(m, &proof)?,
                None => return Err(ClusterError::UpgradeUnproven { pcr0: m.pcr0() }),
            },
        };
        let member = member_of(&v, relay);
        let id = node_id(&v.enclave_id);
        let _one_at_a_time = self.admitting.lock().await;
        if raft.metrics().borrow().membership_config.membership().get_node(&id).is_some() {
            return Err(ClusterError::MemberExists(v.enclave_id));
        }
        self.check_node_ids([&member])?;
        self.admit_keys([member.clone()]);
        let result = self.change_to_admit(raft, id, member, replacing).await;
        if result.is_err() {
            // Its key goes with it unless the membership took it in after all.
            let committed =
                raft.metrics().borrow().membership_config.membership().get_node(&id).is_some();
            if !committed {
                self.admitted.write().remove(&v.enclave_id);
            }
        }
        result
    }

    /// The membership changes of an admission (see [`Node::admit`]).
    async fn change_to_admit(
        &self,
        raft: &Raft,
        id: NodeId,
        member: Member,
        replacing: Option<EnclaveId>,
    ) -> Result<(), ClusterError> {
        let raft_error = |e: &dyn std::fmt::Display| ClusterError::Raft(e.to_string());
        // The dead member goes first: while it counts, a majority would need the newcomer, which
        // has yet to catch up.
        if let Some(gone) = replacing {
            raft.change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id(&gone)])),
                false,
            )
            .await
            .map_err(|e| raft_error(&e))?;
        }
        raft.add_learner(id, member, false).await.map_err(|e| raft_error(&e))?;
        // Let it catch up (log or snapshot) before it votes, within the deadline; a voter still
        // behind is safe, only slower to count.
        let deadline = tokio::time::Instant::now() + ADMIT_CATCH_UP;
        while tokio::time::Instant::now() < deadline {
            let m = raft.metrics().borrow().clone();
            let caught_up = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).copied().flatten())
                .zip(m.last_log_index)
                .is_some_and(|(matched, last)| matched.index.saturating_add(16) >= last);
            if caught_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| raft_error(&e))?;
        Ok(())
    }

    /// Two members whose ids share their first 8 bytes cannot both be Raft nodes.
    fn check_node_ids<'a>(
        &self,
        members: impl IntoIterator<Item = &'a Member>,
    ) -> Result<(), ClusterError> {
        let admitted = self.admitted.read();
        let mut seen: BTreeMap<NodeId, EnclaveId> =
            admitted.keys().map(|id| (node_id(id), *id)).collect();
        for m in members {
            let id = EnclaveId(m.enclave_id);
            match seen.insert(node_id(&id), id) {
                Some(other) if other != id => return Err(ClusterError::NodeIdCollision(other, id)),
                _ => {}
            }
        }
        Ok(())
    }

    fn admit_keys(&self, members: impl IntoIterator<Item = Member>) {
        let mut admitted = self.admitted.write();
        for m in members {
            admitted.insert(EnclaveId(m.enclave_id), m);
        }
    }

    /// Keeps the admitted keys equal to the committed membership once this member has one: a
    /// removed member's key opens nothing from then on.
    fn spawn_membership_watch(self: &Arc<Self>) {
        let Some(raft) = self.raft.get() else { return };
        let mut metrics = raft.metrics();
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            while metrics.changed().await.is_ok() {
                let Some(node) = node.upgrade() else { break };
                let members: Vec<Member> = metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(_, m)| m.clone())
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let mut admitted = node.admitted.write();
                let keep: BTreeSet<[u8; 16]> = members.iter().map(|m| m.enclave_id).collect();
                let removed: Vec<EnclaveId> =
                    admitted.keys().filter(|id| !keep.contains(&id.0)).copied().collect();
                for m in members {
                    admitted.insert(EnclaveId(m.enclave_id), m);
                }
                drop(admitted);
                // Sealers stay for the life of the peer's key: a new one would start its numbers
                // again and the peer would refuse them as replays.
                for id in removed {
                    node.admitted.write().remove(&id);
                }
            }
        });
    }

    fn sealer(&self, to: &Member) -> Result<Arc<Sealer>, ChannelError> {
        let id = EnclaveId(to.enclave_id);
        let mut sealers = self.sealers.lock();
        if let Some(s) = sealers.get(&id) {
            return Ok(Arc::clone(s));
        }
        let sealer = Arc::new(Sealer::new(Arc::clone(&self.key), self.id, id, &to.channel_public)?);
        sealers.insert(id, Arc::clone(&sealer));
        Ok(sealer)
    }

    /// Seals and sends `body`; with `max_payload`, a payload longer than that is not sent
    /// ([`CallError::TooLarge`]), so an append can be split without being encoded twice.
    fn send(&self, to: &Member, body: Body, max_payload: Option<usize>) -> Result<(), CallError> {
        let cluster =
            self.cluster.get().copied().ok_or(CallError::Failed("not in a cluster".into()))?;
        let mut payload = Vec::new();
        ciborium::into_writer(&Envelope { cluster, body }, &mut payload)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        if max_payload.is_some_and(|max| payload.len() > max) {
            return Err(CallError::TooLarge);
        }
        let sealed = self
            .sealer(to)
            .and_then(|s| s.seal(&*self.rng, &payload))
            .map_err(|e| CallError::Failed(e.to_string()))?;
        self.transport.send(to, sealed);
        Ok(())
    }

    async fn call(
        &self,
        to: &Member,
        request: Request,
        ttl: Duration,
        max_payload: Option<usize>,
    ) -> Result<Response, CallError> {
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(correlation, (EnclaveId(to.enclave_id), tx));
        let sent = self.send(to, Body::Request { correlation, request }, max_payload);
        let outcome = match sent {
            Ok(()) => match tokio::time::timeout(ttl, rx).await {
                Ok(Ok(response)) => Ok(response),
                _ => Err(CallError::Failed(format!(
                    "no answer from member {} within {ttl:?}",
                    hex::encode(to.enclave_id)
                ))),
            },
            Err(e) => Err(e),
        };
        self.pending.lock().remove(&correlation);
        outcome
    }

    /// A message from another member, relayed by the parent. Anything that does not open, or
    /// does not decode, is dropped (and says why in the error, for the log): the relay learns
    /// nothing it did not already see.
    pub fn deliver(self: &Arc<Self>, message: &[u8]) -> Result<(), String> {
        let opened = {
            let admitted = self.admitted.read();
            let keys = |id: &EnclaveId| admitted.get(id).map(|m| m.channel_public);
            self.opener.lock().open(message, &keys).map_err(|e| e.to_string())?
        };
        let envelope: Envelope =
            ciborium::from_reader(opened.payload.as_slice()).map_err(|e| e.to_string())?;
        if Some(envelope.cluster) != self.cluster.get().copied() {
            return Err(format!("a message of cluster {}", envelope.cluster));
        }
        match envelope.body {
            Body::Response { correlation, response } => {
                let mut pending = self.pending.lock();
                // Only the member that was asked answers.
                if pending.get(&correlation).is_some_and(|(asked, _)| *asked == opened.sender)
                    && let Some((_, waiting)) = pending.remove(&correlation)
                {
                    let _ = waiting.send(response);
                }
                Ok(())
            }
            Body::Request { correlation, request } => {
                let from = self.admitted.read().get(&opened.sender).cloned();
                let (Some(from), Some(raft)) = (from, self.raft.get().cloned()) else {
                    return Err("a request before this member joined a cluster".into());
                };
                // A member speaks only for itself: the leader or candidate a request names is
                // the member whose key sealed it.
                let claimed = match &request {
                    Request::Append(r) => r.vote.leader_id().voted_for(),
                    Request::Vote(r) => r.vote.leader_id().voted_for(),
                    Request::Snapshot(c) => c.vote.leader_id().voted_for(),
                };
                if claimed != Some(node_id(&opened.sender)) {
                    return Err(format!(
                        "a request from {} in the name of node {claimed:?}",
                        opened.sender
                    ));
                }
                let node = Arc::clone(self);
                tokio::spawn(async move {
                    let response = match request {
                        Request::Append(r) => Response::Append(raft.append_entries(r).await),
                        Request::Vote(r) => Response::Vote(raft.vote(r).await),
                        Request::Snapshot(c) => {
                            Response::Snapshot(raft.install_snapshot(c.into()).await)
                        }
                    };
                    if let Err(e) = node.send(&from, Body::Response { correlation, response }, None)
                    {
                        tracing::warn!(error = %e, "answering a member");
                    }
                });
                Ok(())
            }
        }
    }
}

/// Raft's view of the other members: RPCs through [`Node::call`].
#[derive(Clone)]
pub struct Network {
    node: Arc<Node>,
}

pub struct Connection {
    node: Arc<Node>,
    target: NodeId,
    member: Member,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, member: &Member) -> Connection {
        Connection { node: Arc::clone(&self.node), target, member: member.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

/// Why a request to a member got no response.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the request is larger than one message may be")]
    TooLarge,
    #[error("{0}")]
    Failed(String),
}

// openraft's RPC error types are what its network trait returns; boxing them would only move
// the size into every caller.
#[allow(clippy::result_large_err)]
impl Connection {
    async fn rpc<E: std::error::Error>(
        &self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, Member, E>> {
        self.node
            .call(&self.member, request, option.hard_ttl(), None)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    fn unexpected<T, E: std::error::Error>() -> Result<T, RPCError<NodeId, Member, E>> {
        Err(RPCError::Network(NetworkError::new(&Failure("a response of another kind".into()))))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // A batch that would not fit one message is split by Raft on this hint.
        let entries = rpc.entries.len() as u64;
        let max_payload = (entries > 1).then_some(MAX_APPEND_BYTES);
        let response = self
            .node
            .call(&self.member, Request::Append(rpc), option.hard_ttl(), max_payload)
            .await;
        if entries > 0 && !matches!(response, Err(CallError::TooLarge)) {
            self.node.appends_sent.fetch_add(1, Ordering::Relaxed);
            self.node.entries_sent.fetch_add(entries, Ordering::Relaxed);
        }
        let response = response.map_err(|e| match e {
            CallError::TooLarge => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2))
            }
            e @ CallError::Failed(_) => RPCError::Unreachable(Unreachable::new(&e)),
        })?;
        match response {
            Response::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Self::unexpected(),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.rpc(Request::Snapshot(rpc.into()), &option).await? {
            Response::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Self::unexpected(),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        match self.rpc(Request::Vote(rpc), &option).await? {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Self::unexpected(),
        }
    }
}

/// Commits proposals through Raft, on the leader only. Called from a blocking thread (the
/// enclave core is synchronous); it waits for the commit on the runtime.
pub struct RaftReplicator {
    raft: Raft,
    runtime: tokio::runtime::Handle,
}

impl Replicator for RaftReplicator {
    fn commit(&self, proposal: Proposal) -> Result<Decided, EnclaveError> {
        // Fail fast where waiting cannot help: not the leader, or a leader that has not heard
        // from a majority for longer than an election takes (it is on a minority side).
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) {
            let leader = metrics
                .current_leader
                .and_then(|id| metrics.membership_config.membership().get_node(&id).cloned());
            return Err(EnclaveError::NotLeader {
                leader: leader.as_ref().map(|m| EnclaveId(m.enclave_id)),
                relay: leader.map(|m| m.relay),
            });
        }
        if metrics.millis_since_quorum_ack.is_none_or(|ms| ms > QUORUM_SILENCE_MS) {
            return Err(EnclaveError::Unavailable(
                "this leader has not heard from a majority of the cluster recently; nothing \
                 was decided"
                    .into(),
            ));
        }
        let raft = self.raft.clone();
        let written = self
            .runtime
            .block_on(async move {
                tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(proposal)).await
            })
            .map_err(|_| {
                EnclaveError::Unavailable(format!(
                    "no majority of the cluster acknowledged the decision within \
                     {COMMIT_TIMEOUT:?}: its outcome is unknown (nothing was signed or returned; \
                     retrying with the same request id is safe)"
                ))
            })?;
        match written {
            Ok(response) => response.data.outcome.unwrap_or_else(|| {
                Err(EnclaveError::Internal("a committed decision has no outcome".into()))
            }),
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                Err(EnclaveError::NotLeader {
                    leader: f.leader_node.as_ref().map(|m| EnclaveId(m.enclave_id)),
                    relay: f.leader_node.map(|m| m.relay),
                })
            }
            Err(e) => Err(EnclaveError::Unavailable(format!("the cluster cannot decide: {e}"))),
        }
    }
}
