//! Stable error codes (SPEC §6) with their HTTP status, and record decoding errors.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Stable error codes shared by the enclave, the protocol and the parent's HTTP API.
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
    /// The wallet's signature does not verify over the message the enclave rendered from the
    /// request's fields: another wallet signed, or a field differs from what was signed.
    AuthorizationSignatureInvalid,
    /// The signature or the wallet key is not in canonical form (malleated signature, small-order
    /// point): refused before any verification.
    AuthorizationSignatureNoncanonical,
    /// The message's `Expiration Time` has passed on the enclave clock.
    AuthorizationExpired,
    /// The message's `Issued At` is further ahead of the enclave clock than the allowed skew.
    AuthorizationNotYetValid,
    /// The message's nonce was already used.
    AuthorizationReplayed,
    /// The message's nonce was not issued by this enclave for this wallet, purpose and time (or
    /// its message expired, or a revocation of the wallet made it void): ask for a new message.
    AuthorizationNonceUnknown,
    /// A vault's provenance document is missing, does not verify, comes from an image outside the
    /// trusted set, or is about another record.
    ProvenanceInvalid,
    /// The record belongs to another enclave instance (route by `X-Signer-Route`).
    WrongEnclave,
    /// The record belongs to an enclave instance that is gone (it was issued before this enclave
    /// started and no handover brought its state here): the user must authorize again.
    GrantOrphaned,
    /// This enclave handed its state to a successor and signs no more.
    EnclaveHandedOver,
    /// A step of a live handover was refused (documents, proof, session or state).
    HandoverRefused,
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 21] = [
        Self::BadRequest,
        Self::RecordInvalid,
        Self::GrantExpired,
        Self::GrantRevoked,
        Self::KillSwitch,
        Self::PolicyDenied,
        Self::ReplayedRequest,
        Self::EnclaveUnavailable,
        Self::EnvelopeRejected,
        Self::AuthorizationSignatureInvalid,
        Self::AuthorizationSignatureNoncanonical,
        Self::AuthorizationExpired,
        Self::AuthorizationNotYetValid,
        Self::AuthorizationReplayed,
        Self::AuthorizationNonceUnknown,
        Self::ProvenanceInvalid,
        Self::WrongEnclave,
        Self::GrantOrphaned,
        Self::EnclaveHandedOver,
        Self::HandoverRefused,
        Self::Internal,
    ];

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
            Self::AuthorizationSignatureInvalid => "authorization_signature_invalid",
            Self::AuthorizationSignatureNoncanonical => "authorization_signature_noncanonical",
            Self::AuthorizationExpired => "authorization_expired",
            Self::AuthorizationNotYetValid => "authorization_not_yet_valid",
            Self::AuthorizationReplayed => "authorization_replayed",
            Self::AuthorizationNonceUnknown => "authorization_nonce_unknown",
            Self::ProvenanceInvalid => "provenance_invalid",
            Self::WrongEnclave => "wrong_enclave",
            Self::GrantOrphaned => "grant_orphaned",
            Self::EnclaveHandedOver => "enclave_handed_over",
            Self::HandoverRefused => "handover_refused",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status the parent answers with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest | Self::RecordInvalid | Self::AuthorizationSignatureNoncanonical => {
                400
            }
            Self::GrantExpired
            | Self::GrantRevoked
            | Self::KillSwitch
            | Self::PolicyDenied
            | Self::AuthorizationSignatureInvalid
            | Self::AuthorizationExpired
            | Self::AuthorizationNotYetValid
            | Self::AuthorizationNonceUnknown
            | Self::ProvenanceInvalid
            | Self::GrantOrphaned => 403,
            Self::ReplayedRequest | Self::AuthorizationReplayed | Self::HandoverRefused => 409,
            Self::WrongEnclave => 421,
            Self::EnvelopeRejected => 502,
            Self::EnclaveUnavailable | Self::EnclaveHandedOver => 503,
            Self::Internal => 500,
        }
    }

    /// A short human title (problem+json `title`).
    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::RecordInvalid => "Record invalid",
            Self::GrantExpired => "Grant expired",
            Self::GrantRevoked => "Grant revoked",
            Self::KillSwitch => "Kill switch engaged",
            Self::PolicyDenied => "Denied by policy",
            Self::ReplayedRequest => "Replayed request",
            Self::EnclaveUnavailable => "Enclave unavailable",
            Self::EnvelopeRejected => "Record did not open with its KMS envelope",
            Self::AuthorizationSignatureInvalid => "Authorization signature does not verify",
            Self::AuthorizationSignatureNoncanonical => "Authorization signature not canonical",
            Self::AuthorizationExpired => "Authorization expired",
            Self::AuthorizationNotYetValid => "Authorization not yet valid",
            Self::AuthorizationReplayed => "Authorization already used",
            Self::AuthorizationNonceUnknown => "Authorization nonce not issued here",
            Self::ProvenanceInvalid => "Provenance invalid",
            Self::WrongEnclave => "Record belongs to another enclave",
            Self::GrantOrphaned => "Grant orphaned: authorize again",
            Self::EnclaveHandedOver => "Enclave handed over to its successor",
            Self::HandoverRefused => "Handover refused",
            Self::Internal => "Internal error",
        }
    }
}

/// A record (grant, agent key, scheduled key, vault) could not be decoded or opened.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_name_and_a_4xx_or_5xx_status() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!((400..600).contains(&code.http_status()), "{code:?}");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
