//! Sealed record decoders (SPEC §4): grant, agent key, scheduled and vault records, the
//! provenance binding, plus the CBOR of opened grant contents (reached directly, since the fuzzer
//! cannot forge AES-GCM tags). Every input must parse or give a typed error; opening with a wrong
//! key must always fail.
#![no_main]

use enclave_core::Secret32;
use enclave_core::provenance::Subject;
use enclave_core::records::{
    RecordType, SealedAgentKey, SealedGrant, SealedScheduled, SealedVault, decode_grant_contents,
    open_agent_key, open_grant, open_scheduled, open_vault, peek_type,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = Secret32::new([0x5a; 32]);
    let kind = peek_type(data);
    if let Ok(grant) = SealedGrant::parse(data) {
        assert_eq!(kind, Some(RecordType::ExecutionGrant as u8));
        assert!(grant.header.expires_at > grant.header.issued_at);
        assert!(open_grant(&grant, &key).is_err());
    }
    if let Ok(agent) = SealedAgentKey::parse(data) {
        assert_eq!(kind, Some(RecordType::AgentKey as u8));
        assert!(open_agent_key(&agent, &key).is_err());
        assert!(Subject::agent(data, [1; 16]).is_ok());
    }
    if let Ok(scheduled) = SealedScheduled::parse(data) {
        assert_eq!(kind, Some(RecordType::ScheduledKey as u8));
        assert!(open_scheduled(&scheduled, &key).is_err());
    }
    if let Ok(vault) = SealedVault::parse(data) {
        assert_eq!(kind, Some(RecordType::Vault as u8));
        assert!(open_vault(&vault, &key).is_err());
        assert_eq!(Subject::vault(data).map(|s| s.binding().len()), Ok(101));
    }
    if let Ok(contents) = decode_grant_contents(data) {
        assert!(contents.policy.validate().is_ok());
    }
});
