//! AWS Nitro Enclaves attestation: parse and verify documents, check them against a PCR policy,
//! and generate or evaluate KMS key policies bound to enclave measurements.
//!
//! Three layers, each usable alone:
//! 1. [`document`] — parse the COSE_Sign1 document (strict: duplicate keys, trailing bytes, sizes).
//! 2. [`verify()`] — authenticity: certificate chain to an injected [`TrustAnchor`] at an explicit
//!    time, and the ES384 signature over the original payload bytes.
//! 3. [`policy`] — the caller's expectations: PCRs, debug mode, freshness, nonce / user_data /
//!    public_key.
//!
//! [`receipts`] builds on them for `attest receipts`: checkpoint keys bound by documents, the
//! decision-receipt chain verifier, and the reconciliation of signatures with their policies.
//!
//! Production code passes [`TrustAnchor::aws_nitro_root_g1`]; simulation passes the sim CA's root
//! (feature `sim`, [`sim::SimCa`]). There is no other difference between the two paths.
#![forbid(unsafe_code)]

pub mod chain;
pub mod document;
pub mod eif;
pub mod error;
pub mod key_policy;
pub mod policy;
pub mod receipts;
pub mod record;
#[cfg(feature = "sim")]
pub mod sim;
pub mod verify;

pub use chain::{CertificateSummary, TrustAnchor};
pub use document::{AttestationDocument, Pcrs};
pub use error::{ChainError, ParseError, PolicyError, VerifyError};
pub use policy::AttestationPolicy;
pub use record::{image_matches, verify_at_document_time, verify_image_at_document_time};
pub use verify::{VerifiedDocument, verify, verify_parsed};

use std::time::SystemTime;

/// Verifies `bytes` against `anchor` at `now`, then checks `policy`: the whole decision a parent
/// daemon or KMS makes.
pub fn verify_with_policy(
    bytes: &[u8],
    anchor: &TrustAnchor,
    policy: &AttestationPolicy,
    now: SystemTime,
) -> Result<VerifiedDocument, VerifyError> {
    let verified = verify(bytes, anchor, now)?;
    policy.check(&verified, now)?;
    Ok(verified)
}
