//! Sealed record decoders (SPEC §4): grant, agent key and scheduled records, plus the CBOR of
//! opened grant contents (reached directly, since the fuzzer cannot forge AES-GCM tags). Every
//! input must parse or give a typed error; opening with a wrong key must always fail.
#![no_main]

use enclave_core::Secret32;
use enclave_core::records::{
    RecordType, SealedAgentKey, SealedGrant, SealedScheduled, decode_grant_contents, peek_type,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Secret32::new([0x5a; 32]);
    let kind = peek_type(data);
    if let Ok(grant) = SealedGrant::parse(data) {
        assert_eq!(kind, Some(RecordType::ExecutionGrant as u8));
        assert!(grant.header.expires_at > grant.header.issued_at);
        assert!(grant.open(&key).is_err());
    }
    if let Ok(agent) = SealedAgentKey::parse(data) {
        assert_eq!(kind, Some(RecordType::AgentKey as u8));
        assert!(agent.open(&key).is_err());
    }
    if let Ok(scheduled) = SealedScheduled::parse(data) {
        assert_eq!(kind, Some(RecordType::ScheduledKey as u8));
        assert!(scheduled.open(&key).is_err());
    }
    if let Ok(contents) = decode_grant_contents(data) {
        assert!(contents.policy.validate().is_ok());
    }
});
