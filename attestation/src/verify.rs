//! Authenticity: parse, chain to the trust anchor, check the COSE signature.
//!
//! This layer answers "was this document produced by a Nitro hypervisor whose CA chains to the
//! anchor?". Whether it is the *right* enclave is the [`crate::policy`] layer's question.

use std::time::SystemTime;

use p384::ecdsa::Signature;
use p384::ecdsa::signature::Verifier as _;

use crate::chain::{CertificateSummary, TrustAnchor, verify_chain};
use crate::document::AttestationDocument;
use crate::error::VerifyError;

/// A document whose chain and signature verified at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedDocument {
    pub document: AttestationDocument,
    /// Leaf first, trust anchor last.
    pub chain: Vec<CertificateSummary>,
}

/// Parses `bytes` and verifies the certificate chain (to `anchor`, at `at`) and the ES384
/// signature over the original payload bytes.
pub fn verify(
    bytes: &[u8],
    anchor: &TrustAnchor,
    at: SystemTime,
) -> Result<VerifiedDocument, VerifyError> {
    let document = AttestationDocument::parse(bytes)?;
    verify_parsed(document, anchor, at)
}

/// As [`verify`], for an already parsed document.
pub fn verify_parsed(
    document: AttestationDocument,
    anchor: &TrustAnchor,
    at: SystemTime,
) -> Result<VerifiedDocument, VerifyError> {
    let (leaf_key, chain) = verify_chain(&document.certificate, &document.cabundle, anchor, at)?;
    // High-S signatures are legal here: real AWS documents carry them.
    let signature =
        Signature::from_slice(&document.cose.signature).map_err(|_| VerifyError::Signature)?;
    leaf_key
        .verify(&document.cose.signed_bytes(), &signature)
        .map_err(|_| VerifyError::Signature)?;
    Ok(VerifiedDocument { document, chain })
}
