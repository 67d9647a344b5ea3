//! Messages: CBOR (externally tagged serde enums) inside frames.
//!
//! ```text
//! Request  = { "id": u64, "op": Op }          parent → enclave
//! Response = { "id": u64, "outcome": {"ok": Reply} / {"err": ErrorReply} }
//! ```
//!
//! The first request on a connection must be `hello` with [`PROTOCOL_VERSION`]; anything else is
//! answered with an error and the connection is closed. Ids are chosen by the client and echoed
//! so that responses can arrive in any order; a request whose id cannot be read is answered with
//! id 0. Byte fields are CBOR byte strings; public keys 32-byte strings; ids 16-byte strings.

use serde::{Deserialize, Serialize};
use signer_types::error::ErrorCode;
use signer_types::ids::EnclaveId;
use signer_types::policy::{Denial, Policy};
use signer_types::pubkey::Pubkey;
use signer_types::records::WrapAlg;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bumped on any incompatible change to these messages.
pub const PROTOCOL_VERSION: u32 = 5;

/// A request from the parent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: Op,
}

/// Agent kinds for `create_agent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKindMsg {
    Seed,
    Mnemonic { account: u32 },
}

/// What `revoke` targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeMsg {
    Record(#[serde(with = "serde_bytes")] [u8; 16]),
    Wallet(Pubkey),
}

/// What a wallet revokes on its own signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeScopeMsg {
    /// One of its records, by id.
    Record(#[serde(with = "serde_bytes")] [u8; 16]),
    /// Every record it made up to now.
    All,
}

/// `revoke_signed` arguments: the fields of the revoke message the wallet signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeSignedOp {
    pub wallet: Pubkey,
    pub scope: RevokeScopeMsg,
    pub nonce: String,
    pub issued_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// What an export takes out, and to whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSubjectMsg {
    pub wallet: Pubkey,
    #[serde(with = "serde_bytes")]
    pub vault_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub vault_provenance: Vec<u8>,
    /// The agent whose secret is exported; none for the vault's master key.
    #[serde(default, with = "serde_bytes")]
    pub agent_key_record: Option<Vec<u8>>,
    /// The X25519 public key the user's browser generated (HPKE recipient).
    #[serde(with = "serde_bytes")]
    pub recipient: [u8; 32],
}

/// `export` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportOp {
    pub subject: ExportSubjectMsg,
    pub nonce: String,
    pub issued_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// `sign` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOp {
    #[serde(with = "serde_bytes")]
    pub grant_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub agent_key_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub bot_id: [u8; 16],
    #[serde(with = "serde_bytes")]
    pub transaction: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub request_id: [u8; 16],
    #[serde(default)]
    pub declared_notional_cents: Option<u64>,
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// `sign_scheduled` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignScheduledOp {
    #[serde(with = "serde_bytes")]
    pub scheduled_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub transaction: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub request_id: [u8; 16],
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// `import_vault` arguments: a browser-sealed vault and the wallet's signed authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportVaultOp {
    pub wallet: Pubkey,
    #[serde(with = "serde_bytes")]
    pub vault_record: Vec<u8>,
    pub nonce: String,
    pub issued_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// `create_agent` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAgentOp {
    pub wallet: Pubkey,
    #[serde(with = "serde_bytes")]
    pub vault_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub vault_provenance: Vec<u8>,
    pub kind: AgentKindMsg,
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// What an execution grant authorizes (`authorize_grant`, and part of `create_grant`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFields {
    pub wallet: Pubkey,
    #[serde(with = "serde_bytes")]
    pub bot_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub ttl_seconds: u64,
    pub policy: Policy,
}

/// `create_grant` arguments: the fields, the signed message's nonce and time, the wallet's
/// signature, and the proven vault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGrantOp {
    pub grant: GrantFields,
    pub nonce: String,
    pub issued_at: u64,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    #[serde(with = "serde_bytes")]
    pub vault_record: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub vault_provenance: Vec<u8>,
    #[serde(default, with = "serde_bytes")]
    pub envelope: Option<Vec<u8>>,
}

/// Operations (SPEC §8).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Hello {
        version: u32,
    },
    /// A fresh attestation document carrying the caller's nonce. The caller cannot choose
    /// `user_data`: the enclave alone fills it, with the bindings of provenance and handover
    /// documents, so no caller can obtain a document that vouches for a record or a handover.
    Attest {
        #[serde(default, with = "serde_bytes")]
        nonce: Option<Vec<u8>>,
    },
    /// Which instance this is and which instances it answers for.
    Identity,
    CreateVault {
        wallet: Pubkey,
    },
    AuthorizeImport {
        wallet: Pubkey,
        #[serde(with = "serde_bytes")]
        vault_record: Vec<u8>,
    },
    ImportVault(ImportVaultOp),
    CreateAgent(CreateAgentOp),
    AuthorizeGrant(GrantFields),
    CreateGrant(CreateGrantOp),
    Sign(SignOp),
    SignScheduled(SignScheduledOp),
    Revoke {
        target: RevokeMsg,
    },
    KillSwitch {
        engaged: bool,
    },
    Status,
    /// Handover step 1, to the successor: announce yourself.
    HandoverOffer,
    /// Step 2, to the predecessor: the successor's offer document.
    HandoverPrepare {
        #[serde(with = "serde_bytes")]
        successor_document: Vec<u8>,
    },
    /// Step 3, to the successor: the predecessor's document, the wrapped handover key, and the
    /// KMS envelope of that key made for the successor.
    HandoverAccept {
        #[serde(with = "serde_bytes")]
        predecessor_document: Vec<u8>,
        #[serde(with = "serde_bytes")]
        wrapped_key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
    },
    /// Step 4, to the predecessor: the successor's proof; stop deciding and export.
    HandoverExport {
        #[serde(with = "serde_bytes")]
        proof: [u8; 32],
    },
    /// One exported chunk, from the predecessor.
    HandoverChunk {
        index: u32,
    },
    /// Step 5, to the successor: one chunk of the state.
    HandoverImport {
        index: u32,
        total: u32,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// Step 6, to the predecessor: the successor's import proof; commit for good.
    HandoverCommit {
        #[serde(with = "serde_bytes")]
        imported: [u8; 32],
    },
    /// Step 7, to the successor: the predecessor's commit token; take the state over.
    HandoverFinish {
        #[serde(with = "serde_bytes")]
        token: [u8; 32],
    },
    /// To the predecessor: abandon a handover that was not committed (decide again).
    HandoverAbort,
    /// The message a wallet signs to revoke its own grants.
    AuthorizeRevoke {
        wallet: Pubkey,
        scope: RevokeScopeMsg,
    },
    /// A revocation the wallet signed.
    RevokeSigned(RevokeSignedOp),
    /// The message a wallet signs to export a secret to its browser's key.
    AuthorizeExport(ExportSubjectMsg),
    /// An export the wallet signed.
    Export(ExportOp),
    /// Cluster (SPEC §16): this member's card — a fresh document binding its per-boot channel
    /// key — announcing `relay`, where its parent receives member traffic.
    ClusterCard {
        relay: String,
    },
    /// Cluster genesis, on every founder: all founders' cards (this one's included).
    ClusterFound {
        founders: Vec<ClusterPeer>,
    },
    /// A newcomer waiting for admission: the cluster and its current members' cards.
    ClusterJoin {
        cluster_id: EnclaveId,
        members: Vec<ClusterPeer>,
    },
    /// To the leader: admit a newcomer (optionally in place of a dead member). `proof` is the
    /// newcomer's answer to this leader's upgrade challenge, for a member of a new image.
    ClusterAdmit {
        peer: ClusterPeer,
        replacing: Option<EnclaveId>,
        #[serde(default, with = "serde_bytes")]
        proof: Option<[u8; 32]>,
    },
    /// To the leader, before admitting `card`: whether its image needs KMS to vouch for it
    /// (an upgrade), and if so a fresh challenge key wrapped to the pinned KMS key.
    ClusterChallenge {
        #[serde(with = "serde_bytes")]
        card: Vec<u8>,
    },
    /// To a newcomer of a new image: the KMS envelope of `leader`'s challenge key, made for
    /// this enclave; answers the proof.
    ClusterProve {
        leader: EnclaveId,
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
    },
    /// A sealed message from another member, relayed by the parents (opaque to them).
    ClusterDeliver {
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
    /// Sealed messages this member sends, for its parent to relay; waits up to `wait_ms` for
    /// the first.
    ClusterOutbox {
        wait_ms: u32,
    },
    /// Membership, leader and log position.
    ClusterStatus,
    /// Decision receipts after `after` (every one kept when absent) and a checkpoint of the
    /// chain's head (`docs/receipts.md`).
    Receipts {
        after: Option<u64>,
    },
}

/// A member's card and where its parent relays (SPEC §16, cluster).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPeer {
    #[serde(with = "serde_bytes")]
    pub card: Vec<u8>,
    pub relay: String,
}

/// A sealed member message and the relay it goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedMessage {
    pub relay: String,
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

/// One member as the cluster's committed membership lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMemberInfo {
    pub enclave_id: EnclaveId,
    pub relay: String,
    pub voter: bool,
}

/// A page of decision receipts (`docs/receipts.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptsReply {
    /// The instance that answered and signed the checkpoint.
    pub enclave_id: EnclaveId,
    /// The chain's decider: this instance, or its cluster.
    pub decider: EnclaveId,
    /// This boot's checkpoint key (ed25519), bound in the instance's attestation documents.
    #[serde(with = "serde_bytes")]
    pub checkpoint_key: [u8; 32],
    /// A fresh attestation document of the instance: its `user_data` binds `checkpoint_key`.
    #[serde(with = "serde_bytes")]
    pub document: Vec<u8>,
    /// Receipts after the asked seq, ascending.
    pub receipts: Vec<serde_bytes::ByteBuf>,
    /// The latest signed checkpoint (145 bytes).
    #[serde(default, with = "serde_bytes")]
    pub checkpoint: Option<Vec<u8>>,
    /// Receipts after `.0` and before `.1` were evicted from the ring.
    pub gap: Option<(u64, u64)>,
    /// The seq to ask after next.
    pub next_after: u64,
    /// The page was full: more follow.
    pub more: bool,
    /// Receipts written since this instance started, and those that could not be.
    pub written: u64,
    pub dropped: u64,
}

/// Where a member stands in its cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatusReply {
    /// This member.
    pub enclave_id: EnclaveId,
    /// None until the member founded or joined a cluster.
    pub cluster_id: Option<EnclaveId>,
    /// `leader`, `follower`, `candidate`, `learner` or `none`.
    pub role: String,
    pub leader: Option<EnclaveId>,
    pub leader_relay: Option<String>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub members: Vec<ClusterMemberInfo>,
    /// The member applied its cluster's genesis entry: it can decide (as leader) or follow.
    pub genesis_applied: bool,
    /// Replication messages (Raft appends) carrying log entries this member has sent since it
    /// started, as leader, to all followers together; heartbeats without entries not counted.
    #[serde(default)]
    pub appends_sent: u64,
    /// Log entries those messages carried (`entries_sent / appends_sent` is the batching).
    #[serde(default)]
    pub entries_sent: u64,
}

impl Op {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Attest { .. } => "attest",
            Self::Identity => "identity",
            Self::CreateVault { .. } => "create_vault",
            Self::AuthorizeImport { .. } => "authorize_import",
            Self::ImportVault(_) => "import_vault",
            Self::CreateAgent(_) => "create_agent",
            Self::AuthorizeGrant(_) => "authorize_grant",
            Self::CreateGrant(_) => "create_grant",
            Self::Sign(_) => "sign",
            Self::SignScheduled(_) => "sign_scheduled",
            Self::Revoke { .. } => "revoke",
            Self::KillSwitch { .. } => "kill_switch",
            Self::Status => "status",
            Self::HandoverOffer => "handover_offer",
            Self::HandoverPrepare { .. } => "handover_prepare",
            Self::HandoverAccept { .. } => "handover_accept",
            Self::HandoverExport { .. } => "handover_export",
            Self::HandoverChunk { .. } => "handover_chunk",
            Self::HandoverImport { .. } => "handover_import",
            Self::HandoverCommit { .. } => "handover_commit",
            Self::HandoverFinish { .. } => "handover_finish",
            Self::HandoverAbort => "handover_abort",
            Self::AuthorizeRevoke { .. } => "authorize_revoke",
            Self::RevokeSigned(_) => "revoke_signed",
            Self::AuthorizeExport(_) => "authorize_export",
            Self::Export(_) => "export",
            Self::ClusterCard { .. } => "cluster_card",
            Self::ClusterFound { .. } => "cluster_found",
            Self::ClusterJoin { .. } => "cluster_join",
            Self::ClusterAdmit { .. } => "cluster_admit",
            Self::ClusterChallenge { .. } => "cluster_challenge",
            Self::ClusterProve { .. } => "cluster_prove",
            Self::Receipts { .. } => "receipts",
            Self::ClusterDeliver { .. } => "cluster_deliver",
            Self::ClusterOutbox { .. } => "cluster_outbox",
            Self::ClusterStatus => "cluster_status",
        }
    }

    /// Sets the KMS envelope of an operation that opens a record (after `need_key`); false for
    /// operations that take none.
    pub fn set_envelope(&mut self, envelope: Vec<u8>) -> bool {
        let slot = match self {
            Self::Sign(s) => &mut s.envelope,
            Self::SignScheduled(s) => &mut s.envelope,
            Self::ImportVault(s) => &mut s.envelope,
            Self::CreateAgent(s) => &mut s.envelope,
            Self::CreateGrant(s) => &mut s.envelope,
            Self::Export(s) => &mut s.envelope,
            _ => return false,
        };
        *slot = Some(envelope);
        true
    }

    /// Whether the operation carries a KMS envelope.
    pub fn has_envelope(&self) -> bool {
        match self {
            Self::Sign(s) => s.envelope.is_some(),
            Self::SignScheduled(s) => s.envelope.is_some(),
            Self::ImportVault(s) => s.envelope.is_some(),
            Self::CreateAgent(s) => s.envelope.is_some(),
            Self::CreateGrant(s) => s.envelope.is_some(),
            Self::Export(s) => s.envelope.is_some(),
            _ => false,
        }
    }
}

/// Counts reported by `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub enclave_id: EnclaveId,
    pub kill_switch: bool,
    pub cached_grants: u64,
    pub cached_vaults: u64,
    pub request_ids: u64,
    pub request_id_capacity: u64,
    pub scheduled_ids: u64,
    pub nonces: u64,
    pub revocations: u64,
    pub spend_counters: u64,
    pub signatures: u64,
    pub need_key: u64,
    pub denials: u64,
    pub envelope_failures: u64,
    #[serde(default)]
    pub exports: u64,
    pub handed_over_to: Option<EnclaveId>,
    #[serde(default)]
    pub handover: Option<HandoverStage>,
    pub in_flight: u64,
    pub connections: u64,
}

/// Successful replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        enclave_version: String,
    },
    Attestation {
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
    },
    Identity {
        enclave_id: EnclaveId,
        answers_for: Vec<EnclaveId>,
        started_at: u64,
        /// The KMS execution key pinned in the enclave's measured config (SPKI DER).
        #[serde(with = "serde_bytes")]
        kms_public_key: Vec<u8>,
        /// What the measured config calls mints and programs in the messages users sign.
        #[serde(default)]
        registry: signer_types::policy::Registry,
        /// This boot's receipt checkpoint key (ed25519), bound in its attestation documents.
        #[serde(default, with = "serde_bytes")]
        checkpoint_key: Option<[u8; 32]>,
    },
    VaultCreated {
        #[serde(with = "serde_bytes")]
        vault_id: [u8; 16],
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        #[serde(with = "serde_bytes")]
        provenance: Vec<u8>,
    },
    VaultImported {
        #[serde(with = "serde_bytes")]
        vault_id: [u8; 16],
        #[serde(with = "serde_bytes")]
        provenance: Vec<u8>,
    },
    AgentCreated {
        agent_pubkey: Pubkey,
        #[serde(with = "serde_bytes")]
        agent_id: [u8; 16],
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        #[serde(with = "serde_bytes")]
        provenance: Vec<u8>,
    },
    Authorization {
        message: String,
        nonce: String,
        issued_at: u64,
        expires_at: u64,
        enclave_id: EnclaveId,
    },
    GrantCreated {
        #[serde(with = "serde_bytes")]
        grant_id: [u8; 16],
        issued_at: u64,
        expires_at: u64,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        enclave_id: EnclaveId,
        /// Its `grant_created` receipt (absent when the same signature came again).
        #[serde(default, with = "serde_bytes")]
        receipt: Option<Vec<u8>>,
    },
    Signed {
        #[serde(with = "serde_bytes")]
        signature: [u8; 64],
        #[serde(with = "serde_bytes")]
        transaction: Vec<u8>,
        #[serde(with = "serde_bytes")]
        record_id: [u8; 16],
        /// Its `signed` receipt (absent for an identical retry).
        #[serde(default, with = "serde_bytes")]
        receipt: Option<Vec<u8>>,
    },
    NeedKey {
        #[serde(with = "serde_bytes")]
        record_id: [u8; 16],
        wrap_alg: WrapAlg,
        #[serde(with = "serde_bytes")]
        wrapped_key: Vec<u8>,
        #[serde(default)]
        encryption_context: Option<(String, String)>,
    },
    Revoked {
        dropped: u64,
    },
    KillSwitch {
        engaged: bool,
    },
    Status(StatusReply),
    HandoverOffer {
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
    },
    HandoverPrepared {
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
        #[serde(with = "serde_bytes")]
        wrapped_key: Vec<u8>,
        successor: EnclaveId,
    },
    HandoverAccepted {
        #[serde(with = "serde_bytes")]
        proof: [u8; 32],
    },
    HandoverExported {
        chunks: u32,
    },
    HandoverChunk {
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// A chunk was taken; `imported` (the proof for the predecessor's commit) once all were.
    HandoverImported {
        received: u32,
        total: u32,
        #[serde(default, with = "serde_bytes")]
        imported: Option<[u8; 32]>,
    },
    HandoverCommitted {
        #[serde(with = "serde_bytes")]
        token: [u8; 32],
    },
    HandoverFinished(HandoverSummary),
    HandoverAborted {
        successor: Option<EnclaveId>,
    },
    ClusterCard {
        #[serde(with = "serde_bytes")]
        card: Vec<u8>,
    },
    ClusterJoined {
        cluster_id: EnclaveId,
    },
    /// `wrapped_key` is absent when the card's image is trusted (no challenge); otherwise the
    /// parent asks KMS to decrypt it for `document` (the card's attestation document).
    ClusterChallenge {
        leader: EnclaveId,
        newcomer: EnclaveId,
        #[serde(default, with = "serde_bytes")]
        wrapped_key: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        document: Vec<u8>,
        /// The newcomer image's PCR0, hex (for the KMS call's log).
        pcr0: String,
    },
    ClusterProof {
        #[serde(with = "serde_bytes")]
        proof: [u8; 32],
    },
    ClusterOutbox {
        messages: Vec<RelayedMessage>,
    },
    ClusterStatus(ClusterStatusReply),
    Receipts(ReceiptsReply),
    /// Done, nothing to report.
    Accepted,
    /// A secret, HPKE-sealed to the recipient the wallet's signed message names.
    Exported {
        #[serde(with = "serde_bytes")]
        enc: [u8; 32],
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
        /// `vault`, `seed` or `mnemonic`.
        kind: String,
        #[serde(with = "serde_bytes")]
        record_id: [u8; 16],
    },
}

/// Where an enclave stands as a handover's predecessor (`status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverStage {
    pub successor: EnclaveId,
    /// `prepared` (still deciding), `exported` (frozen, resumable or abortable) or `committed`.
    pub stage: String,
    pub chunks: u32,
}

/// What a successor took over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverSummary {
    pub predecessor: EnclaveId,
    pub answers_for: Vec<EnclaveId>,
    pub request_ids: u64,
    pub counters: u64,
}

/// A refusal: the stable code, a message naming the cause, and for policy denials the rule and
/// numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub denial: Option<Denial>,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), denial: None }
    }
}

/// The result of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Err(ErrorReply),
}

/// A response to the parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("malformed CBOR message: {0}")]
    Decode(String),
    #[error("encoding: {0}")]
    Encode(String),
}

/// Scratch buffer for decoding: holds map keys, public keys and secrets (≤ 32 bytes each); long
/// byte and text strings stream through it in chunks.
const SCRATCH: usize = 4096;

/// Decodes a message, which must be in canonical form: exactly the bytes [`encode`] produces for
/// the decoded value.
///
/// ciborium's typed decoding trusts visitors to consume whole items, and some stop early: a
/// fixed-size byte field given as a 19-element array, or a unit variant given a value, leave the
/// rest to be read as the next map keys, so the typed reading and any standard CBOR reading of
/// the same bytes can disagree. Re-encoding and comparing closes that whole class: the accepted
/// bytes are then the standard encoding of exactly what was decoded. The scratch buffer is
/// zeroized (replies carry nothing secret, but a scratch buffer should never linger).
pub fn decode<T: serde::de::DeserializeOwned + Serialize>(payload: &[u8]) -> Result<T, CodecError> {
    let value: T = decode_lenient(payload)?;
    // Re-encode into a comparing sink: no second copy, no allocation.
    let mut sink = CanonicalCheck { expected: payload, matched: 0 };
    let agrees = ciborium::into_writer(&value, &mut sink).is_ok() && sink.matched == payload.len();
    if !agrees {
        return Err(CodecError::Decode(format!(
            "not in canonical form ({} bytes; the canonical encoding of what they decode to \
             diverges at byte {})",
            payload.len(),
            sink.matched
        )));
    }
    Ok(value)
}

/// A writer that accepts exactly the bytes of `expected`, in order, and fails at the first
/// difference (or at any byte past its end).
struct CanonicalCheck<'a> {
    expected: &'a [u8],
    matched: usize,
}

impl std::io::Write for CanonicalCheck<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.matched.saturating_add(buf.len());
        match self.expected.get(self.matched..end) {
            Some(want) if want == buf => {
                self.matched = end;
                Ok(buf.len())
            }
            _ => {
                let same = self
                    .expected
                    .get(self.matched..)
                    .unwrap_or_default()
                    .iter()
                    .zip(buf)
                    .take_while(|(a, b)| a == b)
                    .count();
                self.matched += same;
                Err(std::io::Error::other("differs from the canonical encoding"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Typed decoding without the canonical-form check (only for best-effort peeking).
fn decode_lenient<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let mut scratch = Zeroizing::new([0u8; SCRATCH]);
    let mut reader = payload;
    let value = ciborium::de::from_reader_with_buffer(&mut reader, scratch.as_mut_slice())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::Decode(format!("{} trailing bytes", reader.len())));
    }
    Ok(value)
}

/// Best effort: the id of a request that did not decode as a whole (0 if even that fails).
pub fn request_id_of(payload: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    decode_lenient::<IdOnly>(payload).map(|r| r.id).unwrap_or(0)
}

/// Encodes a message into a zeroizing buffer sized to avoid reallocations.
pub fn encode<T: Serialize>(
    message: &T,
    size_hint: usize,
) -> Result<Zeroizing<Vec<u8>>, CodecError> {
    let mut out = Zeroizing::new(Vec::with_capacity(size_hint.max(256)));
    ciborium::into_writer(message, &mut *out).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let op = Op::CreateAgent(CreateAgentOp {
            wallet: Pubkey([1; 32]),
            vault_record: vec![4; 200],
            vault_provenance: vec![5; 300],
            kind: AgentKindMsg::Mnemonic { account: 2 },
            envelope: None,
        });
        let bytes = encode(&Request { id: 7, op }, 256).unwrap();
        let back: Request = decode(&bytes).unwrap();
        assert_eq!(back.id, 7);
        match back.op {
            Op::CreateAgent(a) => {
                assert_eq!(a.kind, AgentKindMsg::Mnemonic { account: 2 });
                assert_eq!((a.vault_record.len(), a.vault_provenance.len()), (200, 300));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_ops_still_reveal_the_request_id() {
        let mut bytes = Vec::new();
        use ciborium::Value;
        let text = |s: &str| Value::Text(s.into());
        let unknown = Value::Map(vec![
            (text("id"), Value::Integer(42.into())),
            (text("op"), Value::Map(vec![(text("format_disk"), Value::Map(vec![]))])),
        ]);
        ciborium::into_writer(&unknown, &mut bytes).unwrap();
        assert!(decode::<Request>(&bytes).is_err());
        assert_eq!(request_id_of(&bytes), 42);
        assert_eq!(request_id_of(b"\xff\x00garbage"), 0);
        let mut trailing = encode(&Request { id: 1, op: Op::Status }, 0).unwrap().to_vec();
        trailing.push(0);
        assert!(decode::<Request>(&trailing).is_err());
    }

    /// Found by the `messages` fuzz target: ciborium let a fixed-size byte field read 16 elements
    /// of a longer array and left the rest to be parsed as map entries, so a message that is
    /// truncated to any standard CBOR reader decoded as a complete `sign` request.
    #[test]
    fn byte_fields_given_as_longer_arrays_are_refused() {
        use ciborium::Value;
        let item = |v: Value| {
            let mut out = Vec::new();
            ciborium::into_writer(&v, &mut out).unwrap();
            out
        };
        let text = |s: &str| item(Value::Text(s.into()));
        let mut bytes = vec![0xa2];
        bytes.extend(text("id"));
        bytes.push(0x05);
        bytes.extend(text("op"));
        bytes.push(0xa1);
        bytes.extend(text("sign"));
        bytes.push(0xa6);
        bytes.extend(text("grant_record"));
        bytes.extend(item(Value::Bytes(vec![1; 8])));
        bytes.extend(text("agent_key_record"));
        bytes.extend(item(Value::Bytes(vec![2; 8])));
        bytes.extend(text("bot_id"));
        bytes.push(0x80 | 18);
        bytes.extend([0x03; 16]);
        bytes.extend(text("request_id"));
        bytes.extend(item(Value::Bytes(vec![7; 16])));
        bytes.extend(text("transaction"));
        bytes.extend(item(Value::Bytes(vec![1, 2, 3])));
        bytes.extend(text("declared_notional_cents"));
        bytes.push(0xf6);

        assert!(ciborium::from_reader::<Value, _>(bytes.as_slice()).is_err(), "truncated");
        let Request { id: 5, op: Op::Sign(op) } = decode_lenient::<Request>(&bytes).unwrap() else {
            panic!("the lenient reading should accept it");
        };
        assert_eq!((op.bot_id, op.request_id), ([3; 16], [7; 16]));
        assert!(decode::<Request>(&bytes).unwrap_err().to_string().contains("canonical"));
    }

    /// A unit variant given a value: ciborium leaves the value to be read as the next key.
    #[test]
    fn unit_variants_with_values_are_refused() {
        // {_ "op": {"status": "id"}, 7, break}: read leniently, op is Status and id is 7.
        let mut bytes = vec![0xbf, 0x62, b'o', b'p', 0xa1, 0x66];
        bytes.extend_from_slice(b"status");
        bytes.extend_from_slice(&[0x62, b'i', b'd', 0x07, 0xff]);
        let lenient = decode_lenient::<Request>(&bytes).unwrap();
        assert!(matches!(lenient, Request { id: 7, op: Op::Status }));
        assert!(decode::<Request>(&bytes).unwrap_err().to_string().contains("canonical"));
    }

    #[test]
    fn responses_round_trip() {
        for outcome in [
            Outcome::Ok(Reply::Signed {
                signature: [3; 64],
                transaction: vec![1, 2],
                record_id: [4; 16],
                receipt: Some(vec![5; 20]),
            }),
            Outcome::Ok(Reply::NeedKey {
                record_id: [5; 16],
                wrap_alg: WrapAlg::KmsSymmetric,
                wrapped_key: vec![9; 10],
                encryption_context: Some(("aad_sha256".into(), "00".into())),
            }),
            Outcome::Err(ErrorReply::new(ErrorCode::KillSwitch, "engaged")),
        ] {
            let r = Response { id: 9, outcome };
            let bytes = encode(&r, 0).unwrap();
            assert_eq!(decode::<Response>(&bytes).unwrap(), r);
        }
    }
}
