//! `docs/records.md` carries worked examples (a scheduled key and an imported vault, both built
//! in a browser); their deterministic bytes are recomputed here so the document cannot drift from
//! the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use enclave_core::policy::Intent;
use enclave_core::records::{
    ScheduledHeader, SealedScheduled, SealedVault, VaultHeader, VaultOrigin, open_scheduled,
    open_vault,
};
use enclave_core::{EnclaveId, Pubkey, Secret32};

pub struct Example {
    pub header: ScheduledHeader,
    pub intent: Intent,
    pub seed: [u8; 32],
    pub ephemeral: [u8; 32],
    pub iv: [u8; 12],
}

pub fn example() -> Example {
    let seed = [0x42u8; 32];
    let agent = Pubkey(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    let intent = Intent {
        destination: "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM".parse::<Pubkey>().unwrap().0,
        mint: [0; 32],
        amount: 1_000_000_000,
    };
    let header = ScheduledHeader {
        wallet: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T".parse().unwrap(),
        schedule_id: hex::decode("00112233445566778899aabbccddeeff").unwrap().try_into().unwrap(),
        agent_pubkey: agent,
        not_before: 1_767_268_800,
        not_after: 1_767_355_200,
        max_fee_lamports: 10_000,
        intent_hash: intent.hash(),
        created_at: 1_767_265_200,
        enclave_id: EnclaveId(core::array::from_fn(|i| 0xe0 + i as u8)),
    };
    let ephemeral: [u8; 32] = core::array::from_fn(|i| i as u8);
    let iv: [u8; 12] = core::array::from_fn(|i| 0xa0 + i as u8);
    Example { header, intent, seed, ephemeral, iv }
}

fn gcm(e: &Example) -> Vec<u8> {
    let mut buf = e.seed.to_vec();
    let tag = Aes256Gcm::new((&e.ephemeral).into())
        .encrypt_inout_detached(&Nonce::from(e.iv), &e.header.aad(), buf.as_mut_slice().into())
        .unwrap();
    [buf, tag.to_vec()].concat()
}

pub struct VaultExample {
    pub header: VaultHeader,
    pub umk: [u8; 32],
    pub dek: [u8; 32],
    pub iv: [u8; 12],
}

pub fn vault_example() -> VaultExample {
    VaultExample {
        header: VaultHeader {
            wallet: "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T".parse().unwrap(),
            vault_id: hex::decode("f0e1d2c3b4a5968778695a4b3c2d1e0f").unwrap().try_into().unwrap(),
            created_at: 1_767_268_800,
            origin: VaultOrigin::Imported,
        },
        umk: [0x5c; 32],
        dek: core::array::from_fn(|i| 0x20 + i as u8),
        iv: core::array::from_fn(|i| 0xb0 + i as u8),
    }
}

fn vault_gcm(v: &VaultExample) -> Vec<u8> {
    let mut buf = v.umk.to_vec();
    let tag = Aes256Gcm::new((&v.dek).into())
        .encrypt_inout_detached(&Nonce::from(v.iv), &v.header.aad(), buf.as_mut_slice().into())
        .unwrap();
    [buf, tag.to_vec()].concat()
}

/// The hex in the first ```text block after `<!-- name -->`.
fn doc_hex(doc: &str, name: &str) -> String {
    let marker = format!("<!-- {name} -->");
    let start = doc.find(&marker).unwrap_or_else(|| panic!("docs/records.md lacks {marker}"));
    let block = &doc[start..];
    let open = block.find("```text\n").unwrap() + 8;
    let close = block[open..].find("```").unwrap();
    block[open..open + close].chars().filter(|c| c.is_ascii_hexdigit()).collect()
}

#[test]
fn worked_example_in_docs_matches_the_code() {
    let e = example();
    let v = vault_example();
    let doc = std::fs::read_to_string(testkit::repo_root().join("docs/records.md")).unwrap();
    let expect = [
        ("agent-pubkey", hex::encode(e.header.agent_pubkey.0)),
        ("intent", hex::encode(e.intent.canonical_bytes())),
        ("intent-hash", hex::encode(e.intent.hash())),
        ("aad", hex::encode(e.header.aad())),
        ("gcm", hex::encode(gcm(&e))),
        ("vault-aad", hex::encode(v.header.aad())),
        ("vault-gcm", hex::encode(vault_gcm(&v))),
    ];
    for (name, value) in &expect {
        assert_eq!(
            &doc_hex(&doc, name),
            value,
            "docs/records.md block `{name}` is stale:\n{value}"
        );
    }
}

#[test]
fn worked_example_opens_with_the_library() {
    // A record assembled exactly as the document describes (with an arbitrary wrapped key) opens
    // with the ephemeral key and yields the agent's key.
    let e = example();
    let wrapped = vec![0x5a; 384];
    let record = [
        e.header.aad(),
        vec![1],
        (wrapped.len() as u16).to_le_bytes().to_vec(),
        wrapped.clone(),
        e.iv.to_vec(),
        gcm(&e),
    ]
    .concat();
    let sealed = SealedScheduled::parse(&record).unwrap();
    assert_eq!(sealed.header, e.header);
    let key = open_scheduled(&sealed, &Secret32::new(e.ephemeral)).unwrap();
    assert_eq!(key.verifying_key().to_bytes(), e.header.agent_pubkey.0);

    let v = vault_example();
    let record = [
        v.header.aad(),
        vec![1],
        (wrapped.len() as u16).to_le_bytes().to_vec(),
        wrapped.clone(),
        v.iv.to_vec(),
        vault_gcm(&v),
    ]
    .concat();
    let sealed = SealedVault::parse(&record).unwrap();
    assert_eq!(sealed.header, v.header);
    assert_eq!(open_vault(&sealed, &Secret32::new(v.dek)).unwrap(), Secret32::new(v.umk));
}
