//! Documents that attest long-lived records (provenance of vaults and agent keys): verified at the
//! document's **own** timestamp, against a set of trusted images.
//!
//! AWS Nitro leaf certificates live about three hours; a record lives months. A document signed
//! while its leaf was valid stays evidence of what that enclave said at that time, so the chain
//! is checked at the document's timestamp (which the NSM writes, not the requester), the COSE
//! signature as always, and then: not debug mode, PCRs equal to one of the trusted images (only
//! the listed indexes compared), `user_data` equal to the expected binding. A timestamp ahead of
//! the verifier's clock (beyond [`crate::policy::MAX_CLOCK_SKEW`]) is refused.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::chain::TrustAnchor;
use crate::document::AttestationDocument;
use crate::error::{PolicyError, VerifyError};
use crate::policy::{MAX_CLOCK_SKEW, unix_millis};
use crate::verify::{VerifiedDocument, verify_parsed};

/// Whether a document's `pcrs` are those of `image`: every PCR the image lists is equal, and the
/// image lists PCR0 (the image hash). An entry without PCR0 matches nothing: otherwise one that
/// lists, say, only PCR8 would match every image signed with that certificate.
pub fn image_matches(image: &BTreeMap<u8, Vec<u8>>, pcrs: &crate::Pcrs) -> bool {
    image.contains_key(&0) && image.iter().all(|(i, v)| pcrs.get(i) == Some(v))
}

/// Verifies `bytes` as evidence about a record (module docs).
pub fn verify_at_document_time(
    bytes: &[u8],
    anchor: &TrustAnchor,
    trusted_images: &[BTreeMap<u8, Vec<u8>>],
    user_data: &[u8],
    now: SystemTime,
) -> Result<VerifiedDocument, VerifyError> {
    let verified = verify_image_at_document_time(bytes, anchor, trusted_images, now)?;
    let doc = &verified.document;
    if doc.user_data.as_deref() != Some(user_data) {
        return Err(PolicyError::FieldMismatch {
            field: "user_data",
            expected: hex::encode(user_data),
            actual: doc.user_data.as_deref().map(hex::encode).unwrap_or_else(|| "none".into()),
        }
        .into());
    }
    Ok(verified)
}

/// As [`verify_at_document_time`] without the `user_data` check: the chain at the document's
/// own timestamp, the signature, not debug mode, a trusted image, not from the future. For a
/// caller that reads the binding from the document (e.g. a checkpoint key's, `attest receipts`).
pub fn verify_image_at_document_time(
    bytes: &[u8],
    anchor: &TrustAnchor,
    trusted_images: &[BTreeMap<u8, Vec<u8>>],
    now: SystemTime,
) -> Result<VerifiedDocument, VerifyError> {
    let document = AttestationDocument::parse(bytes)?;
    let timestamp_ms = document.timestamp_ms;
    let now_ms = unix_millis(now);
    let skew_ms = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if timestamp_ms > now_ms.saturating_add(skew_ms) {
        return Err(
            PolicyError::FromTheFuture { timestamp_ms, ahead_ms: timestamp_ms - now_ms }.into()
        );
    }
    let at = UNIX_EPOCH + Duration::from_millis(timestamp_ms);
    let verified = verify_parsed(document, anchor, at)?;
    let doc = &verified.document;
    if doc.is_debug_mode() {
        return Err(PolicyError::DebugMode.into());
    }
    if !trusted_images.iter().any(|image| image_matches(image, &doc.pcrs)) {
        return Err(PolicyError::UntrustedImage {
            pcr0: doc.pcrs.get(&0).map(hex::encode).unwrap_or_else(|| "absent".into()),
            trusted: trusted_images.len(),
        }
        .into());
    }
    Ok(verified)
}
