//! Writes well-formed starting inputs for every fuzz target into `<dir>/<target>/`, made with
//! the project's own encoders so the fuzzers begin past the first length check. Keys are fixed
//! and match the ones the fuzz targets use where that unlocks deeper code (the Solana target
//! signs with the seed `[9; 32]`).
//!
//!   cargo run --example fuzz_seeds -- fuzz/corpus
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::Path;

use enclave_core::agent_key::AgentKind;
use enclave_core::envelope::{self, ContentForm, RecipientKey};
use enclave_core::policy::{Policy, TokenLimit};
use enclave_core::records::{
    AgentKeyHeader, GrantContents, GrantHeader, KeyWrap, ScheduledHeader, SignedAuthorization,
    VaultHeader, VaultOrigin, WrapAlg, encryption_context, seal_agent_key, seal_grant,
    seal_scheduled, seal_vault,
};
use enclave_core::{EnclaveId, OsRandom, Pubkey, Secret32};
use signer_protocol::messages::{
    AgentKindMsg, CreateAgentOp, CreateGrantOp, ErrorReply, GrantFields, ImportVaultOp, Op,
    Outcome, Reply, Request, Response, RevokeMsg, SignOp, SignScheduledOp, encode,
};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1_000_000,
        max_lamports_per_day: 5_000_000,
        max_fee_lamports: 100_000,
        tokens: vec![TokenLimit { mint: Pubkey([7; 32]), max_per_tx: 10, max_per_day: 100 }],
        allowed_programs: vec![Pubkey([8; 32])],
        max_notional_cents_per_tx: 10_000,
        max_notional_cents_per_day: 50_000,
        destinations: Some(vec![Pubkey([2; 32])]),
        max_tx_per_minute: Some(60),
    }
}

fn pubkey_of(seed: [u8; 32]) -> Pubkey {
    Pubkey(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes())
}

/// A v0 message: compute budget, a token transfer and a lookup-table account, agent signs.
fn v0_transaction(agent: &Pubkey) -> Vec<u8> {
    let compute_budget =
        bs58::decode("ComputeBudget111111111111111111111111111111").into_vec().unwrap();
    let token_program =
        bs58::decode("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA").into_vec().unwrap();
    let mut tx = vec![1];
    tx.extend_from_slice(&[0; 64]);
    tx.push(0x80);
    tx.extend_from_slice(&[1, 0, 2, 5]);
    for key in [&agent.0[..], &[3; 32], &[4; 32], &compute_budget, &token_program] {
        tx.extend_from_slice(key);
    }
    tx.extend_from_slice(&[5; 32]);
    tx.push(3);
    // SetComputeUnitLimit(200_000), SetComputeUnitPrice(1000).
    tx.extend_from_slice(&[3, 0, 5, 2, 0x40, 0x0d, 0x03, 0x00]);
    tx.extend_from_slice(&[3, 0, 9, 3]);
    tx.extend_from_slice(&1000u64.to_le_bytes());
    // TransferChecked(amount 5, decimals 6): source, mint (from the lookup table), dest, owner.
    tx.extend_from_slice(&[4, 4, 1, 5, 2, 0, 10, 12]);
    tx.extend_from_slice(&5u64.to_le_bytes());
    tx.push(6);
    tx.push(1);
    tx.extend_from_slice(&[6; 32]);
    tx.extend_from_slice(&[1, 0, 0]);
    tx
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds <corpus dir>");
    let dir = Path::new(&dir);
    let rng = OsRandom;
    let wallet = Pubkey([1; 32]);
    let agent_seed = [9u8; 32];
    let agent = pubkey_of(agent_seed);
    let umk = Secret32::new([0x11; 32]);

    // records
    let kms = RecipientKey::generate(&rng, 2048).unwrap();
    let kms_public =
        <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(kms.spki_der())
            .unwrap();
    let header = GrantHeader {
        wallet,
        grant_id: [2; 16],
        bot_id: [3; 16],
        agent_pubkey: agent,
        issued_at: 1_767_268_800,
        expires_at: 1_767_272_400,
        enclave_id: EnclaveId([0xe0; 16]),
    };
    let contents = GrantContents {
        umk: umk.clone(),
        policy: policy(),
        authorization: SignedAuthorization { nonce: "0".repeat(32), signature: [0x5e; 64] },
    };
    let grant = seal_grant(&header, &contents, KeyWrap::Rsa(&kms_public), &rng).unwrap();
    write(dir, "records", "grant_rsa", &grant);
    let dek = Secret32::new([0x22; 32]);
    let context = encryption_context(&header.aad());
    let symmetric = seal_grant(
        &header,
        &contents,
        KeyWrap::KmsSymmetric { key: &dek, kms_ciphertext: &[0x55; 184] },
        &rng,
    )
    .unwrap();
    write(dir, "records", "grant_kms_symmetric", &symmetric);
    for (name, kind, secret) in [
        ("agent_seed", AgentKind::Seed, agent_seed.to_vec()),
        ("agent_mnemonic", AgentKind::Mnemonic { account: 3 }, vec![0x33; 16]),
    ] {
        let key = enclave_core::agent_key::signing_key(kind, &secret).unwrap();
        let header = AgentKeyHeader {
            wallet,
            agent_id: [4; 16],
            agent_pubkey: Pubkey(key.verifying_key().to_bytes()),
            kind,
        };
        write(dir, "records", name, &seal_agent_key(&header, &secret, &umk, &rng).unwrap());
    }
    let scheduled = ScheduledHeader {
        wallet,
        schedule_id: [5; 16],
        agent_pubkey: agent,
        not_before: 1_767_268_800,
        not_after: 1_767_272_400,
        max_fee_lamports: 10_000,
        intent_hash: [6; 32],
        created_at: 1_767_265_200,
        enclave_id: EnclaveId([0xe0; 16]),
    };
    let record =
        seal_scheduled(&scheduled, &Secret32::new(agent_seed), KeyWrap::Rsa(&kms_public), &rng)
            .unwrap();
    write(dir, "records", "scheduled", &record);
    let vault_header = VaultHeader {
        wallet,
        vault_id: [0x0e; 16],
        created_at: 1_767_268_800,
        origin: VaultOrigin::Imported,
    };
    let vault = seal_vault(&vault_header, &umk, KeyWrap::Rsa(&kms_public), &rng).unwrap();
    write(dir, "records", "vault", &vault);
    let mut cbor = Vec::new();
    ciborium::into_writer(&contents, &mut cbor).unwrap();
    write(dir, "records", "grant_contents_cbor", &cbor);

    // ber_envelope
    for (name, form) in [("chunked", ContentForm::Chunked), ("primitive", ContentForm::Primitive)] {
        let sealed = envelope::seal(&[0x44; 32], kms.spki_der(), &rng, form).unwrap();
        write(dir, "ber_envelope", name, &sealed);
    }

    // solana_tx
    let legacy = signer_sim::tx::legacy_transfer(&agent, &Pubkey([2; 32]), 1000, [5; 32]);
    write(dir, "solana_tx", "legacy_transfer", &legacy);
    write(dir, "solana_tx", "v0_token_transfer", &v0_transaction(&agent));

    // messages
    let sign = SignOp {
        grant_record: grant.clone(),
        agent_key_record: vec![1, 2, 3],
        bot_id: [3; 16],
        transaction: legacy.clone(),
        request_id: [7; 16],
        declared_notional_cents: Some(100),
        envelope: Some(vec![0x30, 0x80, 0, 0]),
    };
    let ops = [
        Op::Hello { version: 1 },
        Op::Attest { nonce: Some(vec![1; 8]) },
        Op::Identity,
        Op::CreateVault { wallet },
        Op::AuthorizeImport { wallet, vault_record: vault.clone() },
        Op::ImportVault(ImportVaultOp {
            wallet,
            vault_record: vault.clone(),
            nonce: "0".repeat(32),
            issued_at: 1_767_268_800,
            signature: [0x5e; 64],
            envelope: None,
        }),
        Op::CreateAgent(CreateAgentOp {
            wallet,
            vault_record: vault.clone(),
            vault_provenance: vec![0xd2, 0x84],
            kind: AgentKindMsg::Mnemonic { account: 1 },
            envelope: None,
        }),
        Op::AuthorizeGrant(GrantFields {
            wallet,
            bot_id: [3; 16],
            agent_pubkey: agent,
            ttl_seconds: 3600,
            policy: policy(),
        }),
        Op::CreateGrant(CreateGrantOp {
            grant: GrantFields {
                wallet,
                bot_id: [3; 16],
                agent_pubkey: agent,
                ttl_seconds: 3600,
                policy: policy(),
            },
            nonce: "0".repeat(32),
            issued_at: 1_767_268_800,
            signature: [0x5e; 64],
            vault_record: vault.clone(),
            vault_provenance: vec![0xd2, 0x84],
            envelope: Some(vec![0x30, 0x80, 0, 0]),
        }),
        Op::Sign(sign),
        Op::SignScheduled(SignScheduledOp {
            scheduled_record: record,
            transaction: legacy.clone(),
            request_id: [8; 16],
            envelope: None,
        }),
        Op::Revoke { target: RevokeMsg::Wallet(wallet) },
        Op::Revoke { target: RevokeMsg::Record([2; 16]) },
        Op::KillSwitch { engaged: true },
        Op::Status,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let name = format!("request_{i}_{}", op.name());
        write(dir, "messages", &name, &encode(&Request { id: i as u64 + 1, op }, 0).unwrap());
    }
    let replies = [
        Outcome::Ok(Reply::NeedKey {
            record_id: [2; 16],
            wrap_alg: WrapAlg::KmsSymmetric,
            wrapped_key: vec![9; 64],
            encryption_context: Some(context),
        }),
        Outcome::Ok(Reply::Signed {
            signature: [1; 64],
            transaction: legacy,
            record_id: [2; 16],
            receipt: Some(vec![3; 120]),
        }),
        Outcome::Err(ErrorReply::new(enclave_core::ErrorCode::PolicyDenied, "over the limit")),
        Outcome::Ok(Reply::Authorization {
            message: "app.example.com wants you to sign in with your Solana account:".into(),
            nonce: "0".repeat(32),
            issued_at: 1_767_268_800,
            expires_at: 1_767_269_400,
            enclave_id: EnclaveId([0xe0; 16]),
        }),
    ];
    for (i, outcome) in replies.into_iter().enumerate() {
        let response = Response { id: i as u64, outcome };
        write(dir, "messages", &format!("response_{i}"), &encode(&response, 0).unwrap());
    }

    // http_bodies: first byte selects the route (see the target).
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let policy_json = serde_json::to_string(&policy()).unwrap();
    let signature = bs58::encode([0x5e; 64]).into_string();
    let nonce = "0".repeat(32);
    let bodies = [
        (0u8, format!(r#"{{"wallet":"{wallet}","vault_record":"{}","vault_provenance":"0oQ=","kind":"mnemonic","account":2}}"#, b64(&vault))),
        (1, format!(r#"{{"wallet":"{wallet}","bot_id":"00000000-0000-4000-8000-000000000003","agent_pubkey":"{agent}","ttl_seconds":3600,"policy":{policy_json},"nonce":"{nonce}","issued_at":1767268800,"signature":"{signature}","vault_record":"{}","vault_provenance":"0oQ="}}"#, b64(&vault))),
        (2, format!(r#"{{"grant_record":"{}","agent_key_record":"AAAA","bot_id":"00000000-0000-4000-8000-000000000003","transaction":"AQ==","request_id":"6f1c2d3e-0000-4000-8000-000000000001","declared_notional_cents":100}}"#, b64(&grant))),
        (3, r#"{"scheduled_record":"AAAA","transaction":"AQ==","request_id":"6f1c2d3e-0000-4000-8000-000000000002"}"#.to_string()),
        (4, format!(r#"{{"wallet":"{wallet}"}}"#)),
        (4, r#"{"grant_id":"6f1c2d3e-0000-4000-8000-000000000003"}"#.to_string()),
        (5, r#"{"engaged":false}"#.to_string()),
        (7, format!(r#"{{"wallet":"{wallet}"}}"#)),
        (8, format!(r#"{{"wallet":"{wallet}","vault_record":"{}"}}"#, b64(&vault))),
        (9, format!(r#"{{"wallet":"{wallet}","vault_record":"{}","nonce":"{nonce}","issued_at":1767268800,"signature":"{signature}"}}"#, b64(&vault))),
        (10, format!(r#"{{"wallet":"{wallet}","bot_id":"00000000-0000-4000-8000-000000000003","agent_pubkey":"{agent}","ttl_seconds":3600,"policy":{policy_json}}}"#)),
        (11, r#"{"successor":"unix:/tmp/successor.sock"}"#.to_string()),
    ];
    for (i, (selector, body)) in bodies.into_iter().enumerate() {
        let mut bytes = vec![selector];
        bytes.extend_from_slice(body.as_bytes());
        write(dir, "http_bodies", &format!("body_{i}"), &bytes);
    }

    // frame_decoder: first byte is the read size; two frames of a real request.
    let payload = encode(&Request { id: 1, op: Op::Status }, 0).unwrap();
    let mut stream = vec![7];
    for _ in 0..2 {
        stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        stream.extend_from_slice(&payload);
    }
    write(dir, "frame_decoder", "two_frames", &stream);
    println!("seeds written to {}", dir.display());
}
