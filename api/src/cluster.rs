//! Bodies of the cluster routes (SPEC §16, cluster): member cards, genesis, admission, and a
//! member's view of its cluster. Cards are opaque bytes to everyone but enclaves (base64 here);
//! a relay is an `http://host:port` address where a member's parent receives member traffic
//! (1..=255 bytes).

use serde::{Deserialize, Serialize};
use signer_types::ids::EnclaveId;
use utoipa::ToSchema;

use crate::schema::EnclaveIdSchema;
use crate::{ApiBody, B64, BodyError};

/// Longest relay address (it is in every membership entry).
pub const MAX_RELAY_LEN: usize = 255;
/// Most members a genesis or a join lists.
pub const MAX_MEMBERS: usize = 15;

fn check_relay(relay: &str) -> Result<(), BodyError> {
    if relay.is_empty() || relay.len() > MAX_RELAY_LEN || !relay.starts_with("http://") {
        return Err(BodyError(format!(
            "relay must be an http:// address of 1..={MAX_RELAY_LEN} bytes, got {} bytes",
            relay.len()
        )));
    }
    Ok(())
}

/// `POST /v1/admin/cluster/card`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// Where this member's parent receives member traffic, e.g. `http://10.0.1.5:8787`.
    pub relay: String,
}

impl ApiBody for CardRequest {
    fn check(&self) -> Result<(), BodyError> {
        check_relay(&self.relay)
    }
}

/// A member's card: its enclave id and per-boot channel key, bound by a fresh attestation
/// document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Card {
    /// The card (base64).
    #[schema(value_type = String, format = Byte)]
    pub card: B64,
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
}

/// A member as a genesis or a join lists it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    #[schema(value_type = String, format = Byte)]
    pub card: B64,
    pub relay: String,
}

fn check_peers(peers: &[Peer]) -> Result<(), BodyError> {
    if peers.is_empty() || peers.len() > MAX_MEMBERS {
        return Err(BodyError(format!("1..={MAX_MEMBERS} members, got {}", peers.len())));
    }
    peers.iter().try_for_each(|p| check_relay(&p.relay))
}

/// `POST /v1/admin/cluster/found`: every founder's card (this member's included); sent to each
/// founder.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FoundRequest {
    pub founders: Vec<Peer>,
}

impl ApiBody for FoundRequest {
    fn check(&self) -> Result<(), BodyError> {
        check_peers(&self.founders)
    }
}

/// `POST /v1/admin/cluster/join`: a restarted or new enclave waits to be admitted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    #[schema(value_type = EnclaveIdSchema)]
    pub cluster_id: EnclaveId,
    /// The current members' cards.
    pub members: Vec<Peer>,
}

impl ApiBody for JoinRequest {
    fn check(&self) -> Result<(), BodyError> {
        check_peers(&self.members)
    }
}

/// `POST /v1/admin/cluster/admit`, to the leader's parent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitRequest {
    #[schema(value_type = String, format = Byte)]
    pub card: B64,
    pub relay: String,
    /// A member this one replaces (removed in the same change): a dead one, or the old image's
    /// member on this host during an upgrade.
    #[serde(default)]
    #[schema(value_type = Option<EnclaveIdSchema>)]
    pub replacing: Option<EnclaveId>,
}

impl ApiBody for AdmitRequest {
    fn check(&self) -> Result<(), BodyError> {
        check_relay(&self.relay)
    }
}

/// `POST /v1/admin/cluster/prove`, to a newcomer's parent: sent by the leader's parent while
/// admitting a member of a new image (an upgrade). `envelope` is the KMS
/// `CiphertextForRecipient` of the leader's challenge key, made for the newcomer's enclave.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProveRequest {
    #[schema(value_type = EnclaveIdSchema)]
    pub leader: EnclaveId,
    #[schema(value_type = String, format = Byte)]
    pub envelope: B64,
}

/// Largest KMS envelope a prove request carries.
pub const MAX_ENVELOPE_LEN: usize = 16 * 1024;

impl ApiBody for ProveRequest {
    fn check(&self) -> Result<(), BodyError> {
        let len = self.envelope.0.len();
        if len == 0 || len > MAX_ENVELOPE_LEN {
            return Err(BodyError(format!(
                "envelope must be 1..={MAX_ENVELOPE_LEN} bytes, got {len}"
            )));
        }
        Ok(())
    }
}

/// The newcomer's proof that it opened the challenge key (an HMAC under it: reveals nothing).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Proof {
    #[schema(value_type = String, format = Byte)]
    pub proof: B64,
}

/// The cluster a genesis or a join made.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterJoined {
    #[schema(value_type = EnclaveIdSchema)]
    pub cluster_id: EnclaveId,
}

/// A member of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterMember {
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    pub relay: String,
    pub voter: bool,
}

/// `GET /v1/cluster`: this member's view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// The routing key of every record the cluster makes (`X-Signer-Route`); null before genesis.
    #[schema(value_type = Option<EnclaveIdSchema>)]
    pub cluster_id: Option<EnclaveId>,
    /// `leader`, `follower`, `candidate`, `learner` or `none`.
    pub role: String,
    #[schema(value_type = Option<EnclaveIdSchema>)]
    pub leader: Option<EnclaveId>,
    pub leader_relay: Option<String>,
    pub term: u64,
    pub last_applied: Option<u64>,
    pub members: Vec<ClusterMember>,
    /// The member applied its cluster's genesis and knows a leader: it serves (deciding as the
    /// leader, forwarding otherwise).
    pub ready: bool,
    /// Replication messages carrying log entries this member has sent (as leader, to all
    /// followers together) since its enclave started; heartbeats are not counted.
    pub appends_sent: u64,
    /// Log entries those messages carried: `entries_sent / appends_sent` is how many decisions
    /// one replication message batches.
    pub entries_sent: u64,
}

/// Accepted; nothing to report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: bool,
}
