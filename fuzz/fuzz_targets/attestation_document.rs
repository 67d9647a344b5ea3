//! Attestation document parser and verifier: any input must give Ok or a typed error, never a
//! panic, hang or unbounded allocation. Verification runs against the AWS root at a fixed time
//! inside the seed documents' validity, so the chain and signature code is reached too.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use nitro_attestation::{AttestationDocument, AttestationPolicy, TrustAnchor, verify_parsed};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = AttestationDocument::parse(data) else { return };
    let _ = doc.is_debug_mode();
    let _ = nitro_attestation::chain::summarize(&doc.certificate, &doc.cabundle);
    let at = UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms);
    if let Ok(verified) = verify_parsed(doc, &TrustAnchor::aws_nitro_root_g1(), at) {
        let _ = AttestationPolicy::default().check(&verified, at);
    }
});
