//! Typed errors. Messages name the cause and carry expected/actual values, never secret bytes.
//! [`EnclaveError::code`] maps each to the stable API code of SPEC §6.

use signer_types::EnclaveId;
pub use signer_types::error::{ErrorCode, RecordError};
use thiserror::Error;

use crate::policy::Denial;

/// The randomness source failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("random number generator failed: {0}")]
pub struct RandomError(pub String);

/// Why an enclave operation was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EnclaveError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("record invalid: {0}")]
    RecordInvalid(String),
    #[error("grant {grant_id} expired at {expires_at} (enclave time {now})")]
    GrantExpired { grant_id: String, expires_at: u64, now: u64 },
    #[error("{0} has been revoked")]
    GrantRevoked(String),
    #[error("the kill switch is engaged: all signing is refused")]
    KillSwitch,
    #[error("policy denied: {0}")]
    PolicyDenied(Denial),
    #[error("request_id {request_id} was already used for a different request")]
    ReplayedRequest { request_id: String },
    #[error("enclave at capacity: {0}")]
    Capacity(String),
    /// The KMS envelope relayed by the parent is malformed (found before any cryptography).
    #[error("the KMS envelope is malformed: {0}")]
    Envelope(String),
    /// Anything that failed from the envelope's RSA step on. Deliberately one fixed text with no
    /// detail: which step failed would be an oracle on the key (SPEC §3 invariant 8).
    #[error(
        "the record did not open with the key in its KMS envelope: the record or the envelope \
         was altered (nothing was signed; this envelope is refused from now on)"
    )]
    EnvelopeRejected,
    /// A user authorization (SPEC §15) was refused; nothing was sealed.
    #[error("authorization refused: {0}")]
    Authorization(#[from] AuthorizationError),
    /// A vault's provenance could not be established.
    #[error("provenance invalid: {0}")]
    Provenance(String),
    /// The record names another enclave instance, issued while this one was running.
    #[error(
        "{what} {id} belongs to enclave {owner}; this enclave answers for {serving} (route it by \
         X-Signer-Route)"
    )]
    WrongEnclave { what: &'static str, id: String, owner: EnclaveId, serving: String },
    /// The record names an enclave instance this one does not answer for, and was issued before
    /// this one started: its enclave is gone without a handover.
    #[error(
        "{what} {id} belongs to enclave {owner}, which is gone (issued before this enclave \
         started, and no handover brought its state here): the user must authorize again"
    )]
    Orphaned { what: &'static str, id: String, owner: EnclaveId },
    /// A handover step was refused (documents, proofs, sessions, state).
    #[error("handover refused: {0}")]
    Handover(String),
    /// A member of a new image was not admitted: KMS did not vouch for its image (one answer).
    #[error("upgrade refused: {0}")]
    Upgrade(String),
    /// This enclave handed its decision state to a successor and decides nothing more.
    #[error("this enclave handed its state over to enclave {successor} and signs no more")]
    HandedOver { successor: EnclaveId },
    /// In a cluster, only the leader decides; this member is not it.
    #[error("this member of the cluster is not its leader{}", match leader {
        Some(id) => format!(" (the leader is {id})"),
        None => " (no leader is known yet)".to_string(),
    })]
    NotLeader { leader: Option<EnclaveId>, relay: Option<String> },
    /// The cluster cannot decide right now (no majority reachable).
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a user authorization was refused (each has its own API code).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum AuthorizationError {
    #[error(
        "the signature does not verify for wallet {wallet} over the message rendered from the \
         request (another wallet signed, or a field differs from what was signed)"
    )]
    SignatureInvalid { wallet: String },
    #[error("{0}")]
    Noncanonical(String),
    #[error("the message expired at {expired_at} (enclave time {now})")]
    Expired { expired_at: u64, now: u64 },
    #[error(
        "the message is issued at {issued_at}, ahead of the enclave clock {now} by more than {skew} s"
    )]
    NotYetValid { issued_at: u64, now: u64, skew: u64 },
    #[error("nonce {nonce} was already used")]
    Replayed { nonce: String },
    #[error(
        "nonce {nonce} was not issued by this enclave for this wallet, purpose and Issued At, or \
         its message expired or was voided by a revocation of the wallet: ask for a new message"
    )]
    NonceUnknown { nonce: String },
}

impl AuthorizationError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::SignatureInvalid { .. } => ErrorCode::AuthorizationSignatureInvalid,
            Self::Noncanonical(_) => ErrorCode::AuthorizationSignatureNoncanonical,
            Self::Expired { .. } => ErrorCode::AuthorizationExpired,
            Self::NotYetValid { .. } => ErrorCode::AuthorizationNotYetValid,
            Self::Replayed { .. } => ErrorCode::AuthorizationReplayed,
            Self::NonceUnknown { .. } => ErrorCode::AuthorizationNonceUnknown,
        }
    }
}

impl EnclaveError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::RecordInvalid(_) => ErrorCode::RecordInvalid,
            Self::GrantExpired { .. } => ErrorCode::GrantExpired,
            Self::GrantRevoked(_) => ErrorCode::GrantRevoked,
            Self::KillSwitch => ErrorCode::KillSwitch,
            Self::PolicyDenied(_) => ErrorCode::PolicyDenied,
            Self::ReplayedRequest { .. } => ErrorCode::ReplayedRequest,
            Self::Capacity(_) => ErrorCode::EnclaveUnavailable,
            Self::EnvelopeRejected => ErrorCode::EnvelopeRejected,
            Self::Authorization(a) => a.code(),
            Self::Provenance(_) => ErrorCode::ProvenanceInvalid,
            Self::WrongEnclave { .. } => ErrorCode::WrongEnclave,
            Self::Orphaned { .. } => ErrorCode::GrantOrphaned,
            Self::HandedOver { .. } => ErrorCode::EnclaveHandedOver,
            Self::Handover(_) => ErrorCode::HandoverRefused,
            // Like every other refused admission (cards, relays): the admin's request is refused.
            Self::Upgrade(_) => ErrorCode::BadRequest,
            // A malformed envelope is an upstream fault (KMS or the relay), not a bug here.
            Self::Envelope(_) => ErrorCode::EnvelopeRejected,
            Self::NotLeader { .. } | Self::Unavailable(_) => ErrorCode::EnclaveUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<RandomError> for EnclaveError {
    fn from(e: RandomError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<RecordError> for EnclaveError {
    fn from(e: RecordError) -> Self {
        Self::RecordInvalid(e.to_string())
    }
}
