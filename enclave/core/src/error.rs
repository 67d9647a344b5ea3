//! Typed errors. Messages name the cause and carry expected/actual values, never secret bytes.
//! [`EnclaveError::code`] maps each to the stable API code of SPEC §6.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::policy::Denial;

/// The randomness source failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("random number generator failed: {0}")]
pub struct RandomError(pub String);

/// Stable error codes shared with the parent's HTTP API (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    RecordInvalid,
    GrantExpired,
    GrantRevoked,
    KillSwitch,
    PolicyDenied,
    ReplayedRequest,
    /// The enclave cannot take more work right now (a bounded store is full of live entries).
    EnclaveUnavailable,
    /// A record did not open with the key its KMS envelope carried (one answer for every such
    /// failure: SPEC §3 invariant 8).
    EnvelopeRejected,
    Internal,
}

impl ErrorCode {
    /// The code as it appears in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::RecordInvalid => "record_invalid",
            Self::GrantExpired => "grant_expired",
            Self::GrantRevoked => "grant_revoked",
            Self::KillSwitch => "kill_switch",
            Self::PolicyDenied => "policy_denied",
            Self::ReplayedRequest => "replayed_request",
            Self::EnclaveUnavailable => "enclave_unavailable",
            Self::EnvelopeRejected => "envelope_rejected",
            Self::Internal => "internal",
        }
    }
}

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
    #[error("internal error: {0}")]
    Internal(String),
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
            Self::Envelope(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<RandomError> for EnclaveError {
    fn from(e: RandomError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A record (grant, agent key, scheduled key) could not be decoded or opened.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("{what} is {actual} bytes; expected {expected}")]
    Length { what: &'static str, expected: String, actual: usize },
    #[error("unsupported record version {0} (expected 1)")]
    Version(u32),
    #[error("record type {actual} where {expected} was expected")]
    Type { expected: &'static str, actual: u8 },
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: u64 },
    #[error("{0}")]
    Invalid(String),
    /// Authentication failed: wrong key, tampered bytes, or a forged envelope. Deliberately
    /// carries no detail so that it cannot be used as an oracle.
    #[error("record does not open with the supplied key (tampered, swapped, or wrong key)")]
    Open,
    #[error("decrypted agent key derives public key {derived}, but the record binds {bound}")]
    PublicKeyMismatch { derived: String, bound: String },
}

impl From<RecordError> for EnclaveError {
    fn from(e: RecordError) -> Self {
        Self::RecordInvalid(e.to_string())
    }
}
