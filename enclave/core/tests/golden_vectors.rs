//! Golden vectors shared with the TypeScript client (`clients/vectors/golden.json`): the exact
//! authorization messages the enclave renders (SPEC §15), the canonical policy bytes and their
//! hash, grant ids from signatures, enclave ids from recipient keys, and provenance bindings.
//! Both test suites check every vector byte for byte, so the two renderers cannot drift.
//!
//! `SIGNER_UPDATE_GOLDEN=1 cargo test -p enclave-core --test golden_vectors` rewrites the file
//! from this code (review the diff: a change here is a change every client must make).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use ed25519_dalek::{Signer as _, SigningKey};
use enclave_core::authorization::{
    self, ExportTarget, MessageDomain, MessageFields, Purpose, RevokeScope,
};
use enclave_core::policy::{KnownProgram, KnownToken, Policy, Registry, TokenLimit};
use enclave_core::provenance::Subject;
use enclave_core::records::{
    AgentKeyHeader, AgentKind, VaultHeader, VaultOrigin, WrapAlg, write_wrapped,
};
use enclave_core::{EnclaveId, Pubkey};
use serde_json::{Value, json};

fn domain() -> MessageDomain {
    MessageDomain {
        domain: "app.example.com".into(),
        uri: "https://app.example.com/bots".into(),
        chain_id: "mainnet".into(),
        validity_seconds: 600,
        registry: registry(),
    }
}

/// The registry the vectors render with: USDC (6 decimals) and Jupiter are known; the
/// unknown-token vector uses another mint.
fn registry() -> Registry {
    Registry {
        tokens: vec![KnownToken {
            mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".parse().unwrap(),
            symbol: "USDC".into(),
            decimals: 6,
        }],
        programs: vec![KnownProgram {
            id: "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4".parse().unwrap(),
            name: "Jupiter v6".into(),
        }],
    }
}

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

fn pk(byte: u8) -> Pubkey {
    Pubkey(key(byte).verifying_key().to_bytes())
}

fn full_policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1_000_000_000,
        max_lamports_per_day: 5_000_000_000,
        max_fee_lamports: 100_000,
        tokens: vec![TokenLimit {
            mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".parse().unwrap(),
            max_per_tx: 100_000_000,
            max_per_day: 500_000_000,
        }],
        allowed_programs: vec!["JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4".parse().unwrap()],
        max_notional_cents_per_tx: 50_000,
        max_notional_cents_per_day: 200_000,
        destinations: Some(vec![pk(0x31), pk(0x32)]),
        max_tx_per_minute: Some(30),
    }
}

fn bare_policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1,
        max_lamports_per_day: u64::MAX,
        max_fee_lamports: 5_000,
        tokens: vec![],
        allowed_programs: vec![],
        max_notional_cents_per_tx: 0,
        max_notional_cents_per_day: 0,
        destinations: None,
        max_tx_per_minute: None,
    }
}

fn unknown_token() -> Policy {
    Policy {
        tokens: vec![TokenLimit { mint: pk(0x50), max_per_tx: 1_234_567, max_per_day: 9_000_000 }],
        allowed_programs: vec![pk(0x51)],
        max_notional_cents_per_tx: 1_000,
        max_notional_cents_per_day: 5_000,
        ..bare_policy()
    }
}

fn many_destinations() -> Policy {
    Policy { destinations: Some((0..9).map(|i| pk(0x40 + i)).collect()), ..bare_policy() }
}

fn message_vector(name: &str, fields: &MessageFields<'_>, signer: &SigningKey) -> Value {
    let message = authorization::render(&domain(), fields).unwrap();
    let signature = signer.sign(message.as_bytes()).to_bytes();
    authorization::verify_strict(&fields.wallet, message.as_bytes(), &signature).unwrap();
    let purpose = match fields.purpose {
        Purpose::Grant { bot_id, agent, ttl_seconds, policy } => json!({
            "kind": "grant",
            "bot_id": enclave_core::ids::uuid_text(&bot_id),
            "agent_pubkey": agent.to_string(),
            "ttl_seconds": ttl_seconds,
            "policy": serde_json::to_value(policy).unwrap(),
            "policy_canonical_hex": hex::encode(policy.canonical_bytes()),
            "policy_sha256": hex::encode(policy.sha256()),
            "policy_summary": policy.summary(&domain().registry),
            "grant_id": enclave_core::ids::uuid_text(&authorization::grant_id(&signature)),
        }),
        Purpose::ImportVault { vault_id, record_sha256 } => json!({
            "kind": "import-vault",
            "vault_id": enclave_core::ids::uuid_text(&vault_id),
            "vault_record_sha256": hex::encode(record_sha256),
        }),
        Purpose::Revoke { scope } => match scope {
            RevokeScope::Record(id) => {
                json!({"kind": "revoke", "grant_id": enclave_core::ids::uuid_text(&id)})
            }
            RevokeScope::All => json!({"kind": "revoke", "all": true}),
        },
        Purpose::Export { target, record_sha256, recipient } => {
            let mut v = json!({
                "kind": "export",
                "record_sha256": hex::encode(record_sha256),
                "recipient_hex": hex::encode(recipient),
            });
            match target {
                ExportTarget::Vault { vault_id } => {
                    v["vault_id"] = json!(enclave_core::ids::uuid_text(&vault_id));
                }
                ExportTarget::Agent { agent, mnemonic } => {
                    v["agent_pubkey"] = json!(agent.to_string());
                    v["mnemonic"] = json!(mnemonic);
                }
            }
            v
        }
    };
    json!({
        "name": name,
        "wallet": fields.wallet.to_string(),
        "wallet_seed_hex": hex::encode(signer.to_bytes()),
        "enclave_id": fields.enclave.to_string(),
        "nonce": fields.nonce,
        "issued_at": fields.issued_at,
        "purpose": purpose,
        "message": message,
        "signature_base58": bs58::encode(signature).into_string(),
    })
}

fn vault_record() -> Vec<u8> {
    let header = VaultHeader {
        wallet: pk(1),
        vault_id: [0x0f; 16],
        created_at: 1_796_122_800,
        origin: VaultOrigin::Generated,
    };
    let mut record = header.aad();
    write_wrapped(&mut record, WrapAlg::RsaesOaepSha256, &[0xa5; 384]).unwrap();
    record.extend_from_slice(&[0x5a; 12 + 32 + 16]);
    record
}

fn agent_record() -> Vec<u8> {
    let header = AgentKeyHeader {
        wallet: pk(1),
        agent_id: [0x0a; 16],
        agent_pubkey: pk(2),
        kind: AgentKind::Mnemonic { account: 7 },
    };
    let mut record = header.aad();
    record.extend_from_slice(&[0x5b; 12 + 32 + 16]);
    record
}

fn golden() -> Value {
    let enclave = EnclaveId::from_recipient_key(b"example recipient SPKI DER");
    let wallet = pk(1);
    let grant = |name, policy: &Policy, ttl| {
        message_vector(
            name,
            &MessageFields {
                wallet,
                enclave,
                nonce: "5f0c1e9a2b3d4c5e6f708192a3b4c5d6",
                issued_at: 1_796_129_406,
                purpose: Purpose::Grant {
                    bot_id: [0x7a; 16],
                    agent: pk(2),
                    ttl_seconds: ttl,
                    policy,
                },
            },
            &key(1),
        )
    };
    let vault = vault_record();
    let agent = agent_record();
    let import = message_vector(
        "import vault",
        &MessageFields {
            wallet,
            enclave,
            nonce: "00112233445566778899aabbccddeeff",
            issued_at: 1_796_129_406,
            purpose: Purpose::ImportVault {
                vault_id: [0x0f; 16],
                record_sha256: sha2::Digest::finalize(sha2::Digest::chain_update(
                    <sha2::Sha256 as sha2::Digest>::new(),
                    &vault,
                ))
                .into(),
            },
        },
        &key(1),
    );
    let sha256 = |bytes: &[u8]| -> [u8; 32] {
        sha2::Digest::finalize(sha2::Digest::chain_update(
            <sha2::Sha256 as sha2::Digest>::new(),
            bytes,
        ))
        .into()
    };
    let other = |name, nonce, purpose| {
        message_vector(
            name,
            &MessageFields { wallet, enclave, nonce, issued_at: 1_796_129_406, purpose },
            &key(1),
        )
    };
    let revoke_one = other(
        "revoke one grant",
        "0123456789abcdef0123456789abcdef",
        Purpose::Revoke { scope: RevokeScope::Record([0x3c; 16]) },
    );
    let revoke_all = other(
        "revoke every grant",
        "fedcba9876543210fedcba9876543210",
        Purpose::Revoke { scope: RevokeScope::All },
    );
    let export_vault = other(
        "export a vault's master key",
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        Purpose::Export {
            target: ExportTarget::Vault { vault_id: [0x0f; 16] },
            record_sha256: sha256(&vault),
            recipient: [0x99; 32],
        },
    );
    let export_agent = other(
        "export an agent's recovery phrase",
        "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
        Purpose::Export {
            target: ExportTarget::Agent { agent: pk(2), mnemonic: true },
            record_sha256: sha256(&agent),
            recipient: [0x98; 32],
        },
    );
    json!({
        "domain": {
            "domain": domain().domain,
            "uri": domain().uri,
            "chain_id": domain().chain_id,
            "validity_seconds": domain().validity_seconds,
            "registry": serde_json::to_value(&domain().registry).unwrap(),
        },
        "messages": [
            grant("grant with every kind of limit", &full_policy(), 3600),
            grant("grant with no tokens, programs or destinations", &bare_policy(), 90),
            grant("grant with a long destination allowlist", &many_destinations(), 7 * 86_400),
            grant("grant with a token and a program the registry does not know", &unknown_token(), 600),
            import,
            revoke_one,
            revoke_all,
            export_vault,
            export_agent,
        ],
        "enclave_ids": [{
            "recipient_spki_hex": hex::encode(b"example recipient SPKI DER"),
            "enclave_id": enclave.to_string(),
        }],
        "provenance": [
            {
                "record_hex": hex::encode(&vault),
                "vault_id": null,
                "binding_hex": hex::encode(Subject::vault(&vault).unwrap().binding()),
                "user_data_hex": hex::encode(Subject::vault(&vault).unwrap().user_data()),
            },
            {
                "record_hex": hex::encode(&agent),
                "vault_id": enclave_core::ids::uuid_text(&[0x0f; 16]),
                "binding_hex": hex::encode(Subject::agent(&agent, [0x0f; 16]).unwrap().binding()),
                "user_data_hex": hex::encode(Subject::agent(&agent, [0x0f; 16]).unwrap().user_data()),
            },
        ],
    })
}

#[test]
fn golden_vectors_match_the_code() {
    let path = testkit::repo_root().join("clients/vectors/golden.json");
    let expected = golden();
    if std::env::var_os("SIGNER_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&expected).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        stored, expected,
        "clients/vectors/golden.json is stale: rerun with SIGNER_UPDATE_GOLDEN=1 and review"
    );
}
