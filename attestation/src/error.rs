//! Typed errors. Each names the failing check and, where there is one, the expected and actual
//! values; [`VerifyError::kind`] gives a stable machine-readable name for JSON output.

use thiserror::Error;

/// The document is not a well-formed Nitro attestation document.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("document is {actual} bytes; the limit is {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("malformed CBOR in {what}: {reason}")]
    Cbor { what: &'static str, reason: String },
    #[error("{count} trailing byte(s) after the {what}")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("unexpected CBOR tag {0} (expected no tag or 18, COSE_Sign1)")]
    UnexpectedTag(u64),
    #[error("malformed document: {0}")]
    Malformed(String),
    #[error("protected header must be {expected} ({{1: -35}}, ES384); found {actual}")]
    ProtectedHeader { expected: String, actual: String },
    #[error("`{field}` has length {actual}; expected {expected}")]
    FieldLength { field: &'static str, expected: &'static str, actual: usize },
    #[error("`{field}` must be a {expected}")]
    FieldType { field: &'static str, expected: &'static str },
    #[error("duplicate key `{key}` in {map}")]
    DuplicateKey { map: &'static str, key: String },
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("digest must be \"SHA384\"; found {0:?}")]
    Digest(String),
    #[error("PCR index {0} is outside 0..=31")]
    PcrIndex(u64),
}

/// The certificate chain does not lead from the document's leaf to the trust anchor.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("cabundle[0] is not the pinned root: expected SHA-256 {expected}, found {actual}")]
    UntrustedRoot { expected: String, actual: String },
    #[error("{position} is not a valid DER X.509 certificate: {reason}")]
    Certificate { position: String, reason: String },
    #[error("certificate `{subject}` expired at {not_after} (checked at {at})")]
    Expired { subject: String, not_after: String, at: String },
    #[error("certificate `{subject}` is not valid before {not_before} (checked at {at})")]
    NotYetValid { subject: String, not_before: String, at: String },
    #[error(
        "certificate `{subject}` names issuer `{issuer}`, but the next certificate is `{next}`"
    )]
    IssuerMismatch { subject: String, issuer: String, next: String },
    #[error("signature on `{subject}` does not verify with the key of `{issuer}`")]
    LinkSignature { subject: String, issuer: String },
    #[error("certificate `{subject}`: {reason}")]
    Constraint { subject: String, reason: String },
    #[error("certificate `{subject}`: expected {expected}, found {actual}")]
    Algorithm { subject: String, expected: &'static str, actual: String },
}

/// The document does not meet the caller's policy.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("PCR{index} mismatch: expected {expected}, document has {actual}")]
    PcrMismatch { index: u8, expected: String, actual: String },
    #[error("PCR{index} expected {expected}, but the document has no PCR{index}")]
    PcrMissing { index: u8, expected: String },
    #[error("debug-mode document (PCR0, PCR1 and PCR2 are all zero); pass --allow-debug to accept")]
    DebugMode,
    #[error("document is {age_ms} ms old; the maximum age is {max_age_ms} ms")]
    TooOld { age_ms: u64, max_age_ms: u64 },
    #[error("document timestamp {timestamp_ms} is {ahead_ms} ms ahead of the verification time")]
    FromTheFuture { timestamp_ms: u64, ahead_ms: u64 },
    #[error("{field} mismatch: expected {expected}, document has {actual}")]
    FieldMismatch { field: &'static str, expected: String, actual: String },
    #[error("the document's image (PCR0 {pcr0}) is none of the {trusted} trusted images")]
    UntrustedImage { pcr0: String, trusted: usize },
}

/// Any reason a document is not accepted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed: {0}")]
    Parse(#[from] ParseError),
    #[error("certificate chain: {0}")]
    Chain(#[from] ChainError),
    #[error("COSE_Sign1 signature does not verify with the leaf certificate's key")]
    Signature,
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
}

impl VerifyError {
    /// A stable, machine-readable name for the failed check.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Parse(_) => "malformed",
            Self::Chain(ChainError::Expired { .. }) => "certificate_expired",
            Self::Chain(ChainError::NotYetValid { .. }) => "certificate_not_yet_valid",
            Self::Chain(ChainError::UntrustedRoot { .. }) => "untrusted_root",
            Self::Chain(_) => "invalid_chain",
            Self::Signature => "bad_signature",
            Self::Policy(
                PolicyError::PcrMismatch { .. }
                | PolicyError::PcrMissing { .. }
                | PolicyError::UntrustedImage { .. },
            ) => "pcr_mismatch",
            Self::Policy(PolicyError::DebugMode) => "debug_mode",
            Self::Policy(PolicyError::TooOld { .. } | PolicyError::FromTheFuture { .. }) => "stale",
            Self::Policy(PolicyError::FieldMismatch { .. }) => "field_mismatch",
        }
    }
}
