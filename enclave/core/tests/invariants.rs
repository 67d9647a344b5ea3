//! One test group per SPEC §3 invariant; each fails if its invariant breaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use common::*;
use enclave_core::enclave::{RevokeTarget, SignRequest, SignScheduledRequest};
use enclave_core::envelope::{self, ContentForm};
use enclave_core::policy::Intent;
use enclave_core::records::{
    AgentKeyHeader, GrantContents, KeyWrap, ScheduledHeader, SealedAgentKey, SealedGrant,
    SealedVault, key_privkey, open_agent_key, open_grant, seal_scheduled,
};
use enclave_core::{EnclaveError, ErrorCode, OsRandom, Pubkey, Secret32, SignOutcome};
use rsa::Oaep;
use rsa::pkcs8::DecodePublicKey;
use sha2::Sha256;

fn code(r: Result<impl std::fmt::Debug, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

// ---- Invariant 1: no secret leaves the enclave --------------------------------------------

/// Every textual form a secret could leak in.
fn forms(secret: &[u8]) -> Vec<String> {
    vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        bs58::encode(secret).into_string(),
        format!("{secret:?}"),
        String::from_utf8_lossy(secret).into_owned(),
    ]
}

fn assert_no_secret(haystack: &str, secret: &[u8], what: &str) {
    for form in forms(secret) {
        assert!(!haystack.contains(&form), "{what} contains a secret ({form})");
    }
}

fn assert_bytes_free_of(haystack: &[u8], secret: &[u8], what: &str) {
    assert!(!haystack.windows(secret.len()).any(|w| w == secret), "{what} contains secret bytes");
}

#[test]
fn no_secret_in_any_output_debug_or_error() {
    let f = fixture();
    let s = f.setup(1, policy());
    let (agent, grant, vault) = (s.agent.clone(), s.grant.clone(), s.vault.clone());
    let umk = f.umk_of(&vault.record);
    let seed =
        open_agent_key(&SealedAgentKey::parse(&agent.record).unwrap(), &umk).unwrap().to_bytes();
    let sealed = SealedGrant::parse(&grant.record).unwrap();
    let dek = f.kms.decrypt(Oaep::<Sha256>::new(), &sealed.wrapped.ciphertext).unwrap();
    assert_eq!(dek.len(), 32);
    let sealed_vault = SealedVault::parse(&vault.record).unwrap();
    let vault_dek = f.kms.decrypt(Oaep::<Sha256>::new(), &sealed_vault.wrapped.ciphertext).unwrap();
    let privkey = key_privkey(&umk, SealedAgentKey::parse(&agent.record).unwrap().aad);
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("UMK", umk.expose().to_vec()),
        ("agent seed", seed.to_vec()),
        ("grant DEK", dek),
        ("vault DEK", vault_dek),
        ("key_privkey", privkey.expose().to_vec()),
    ];

    let a = agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 10)]);
    let need = f.enclave.sign(&request(&s, &tx, 1)).unwrap();
    let signed = f.sign(request(&s, &tx, 1)).unwrap();

    // Failures of every kind, after the grant is open in memory.
    let mut errors: Vec<EnclaveError> = Vec::new();
    let big = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 3_000_000_000)]);
    errors.push(f.sign(request(&s, &big, 2)).unwrap_err());
    errors.push(
        f.sign(SignRequest { agent_key_record: &agent.record[..50], ..request(&s, &tx, 3) })
            .unwrap_err(),
    );
    let mut bad_agent = agent.record.clone();
    *bad_agent.last_mut().unwrap() ^= 1;
    errors.push(
        f.sign(SignRequest { agent_key_record: &bad_agent, ..request(&s, &tx, 4) }).unwrap_err(),
    );
    errors.push(f.sign(request(&s, &tx[..20], 5)).unwrap_err());
    errors.push(f.sign(SignRequest { transaction: &big, ..request(&s, &tx, 1) }).unwrap_err());
    f.enclave.set_kill_switch(true).unwrap();
    errors.push(f.sign(request(&s, &tx, 6)).unwrap_err());
    f.enclave.set_kill_switch(false).unwrap();
    let mut tampered = grant.record.clone();
    *tampered.last_mut().unwrap() ^= 1;
    errors
        .push(f.sign(SignRequest { grant_record: &tampered, ..request(&s, &tx, 7) }).unwrap_err());

    let contents = f.grant_contents(&grant.record);
    let mut texts = vec![
        format!("{agent:?}"),
        format!("{grant:?}"),
        format!("{vault:?}"),
        format!("{need:?}"),
        format!("{signed:?}"),
        format!("{:?}", f.enclave.status()),
        format!("{umk:?}"),
        format!("{contents:?}"),
        format!("{sealed:?}"),
        format!("{sealed_vault:?}"),
        format!("{:?}", SealedAgentKey::parse(&agent.record).unwrap()),
        format!("{privkey:?}"),
    ];
    for e in &errors {
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
    }
    for (name, secret) in &secrets {
        for t in &texts {
            assert_no_secret(t, secret, &format!("{name} in {t}"));
        }
        assert_bytes_free_of(&agent.record, secret, "agent record");
        assert_bytes_free_of(&agent.provenance, secret, "agent provenance");
        assert_bytes_free_of(&vault.record, secret, "vault record");
        assert_bytes_free_of(&vault.provenance, secret, "vault provenance");
        assert_bytes_free_of(&grant.record, secret, "grant record");
        assert_bytes_free_of(&signed.transaction, secret, "signed transaction");
    }
    assert_eq!(format!("{umk:?}"), "Secret32(<redacted>)");
}

#[test]
fn secrets_survive_json_only_as_intended_and_compare_in_constant_time() {
    // Secret32's serde form is what the API accepts; it must round-trip and nothing else.
    let s = Secret32::new([7; 32]);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Secret32>(&json).unwrap(), s);
    assert!(serde_json::from_str::<Secret32>("\"AAAA\"").is_err());
    assert!(serde_json::from_str::<Secret32>("\"!!!\"").is_err());
    assert_ne!(Secret32::new([7; 32]), Secret32::new([8; 32]));
}

// ---- Invariant 2: a KMS envelope proves nothing --------------------------------------------

#[test]
fn forged_envelope_cannot_make_the_enclave_sign_with_a_real_agent_key() {
    let f = fixture();
    let s = f.setup(2, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 10)]);

    // The attacker encrypts a key of their choice to the enclave's (public) recipient key.
    for form in [ContentForm::Chunked, ContentForm::Primitive] {
        let forged =
            envelope::seal(&[0xaa; 32], f.enclave.recipient_public_key(), &OsRandom, form).unwrap();
        let r = f.enclave.sign(&SignRequest { envelope: Some(&forged), ..request(&s, &tx, 1) });
        assert_eq!(code(r), ErrorCode::EnvelopeRejected);
    }
    // Wrong length plaintexts too.
    let forged = envelope::seal(
        &[0xaa; 16],
        f.enclave.recipient_public_key(),
        &OsRandom,
        ContentForm::Chunked,
    )
    .unwrap();
    assert_eq!(
        code(f.enclave.sign(&SignRequest { envelope: Some(&forged), ..request(&s, &tx, 1) })),
        ErrorCode::EnvelopeRejected
    );

    // The attacker builds their own grant (anyone can encrypt to the KMS key) with their own UMK
    // and a generous policy, and sends it with the victim's real agent-key record. It names the
    // victim's real grant and authorization, but the user's signature does not cover this policy.
    let real = f.grant_contents(&s.grant.record);
    let header = SealedGrant::parse(&s.grant.record).unwrap().header;
    let mut generous = policy();
    generous.max_lamports_per_tx = u64::MAX;
    generous.max_lamports_per_day = u64::MAX;
    let evil = f.forge_grant(
        header,
        &GrantContents {
            umk: Secret32::new([0x66; 32]),
            policy: generous,
            authorization: real.authorization.clone(),
        },
    );
    let r = f.sign(SignRequest { grant_record: &evil.record, ..request(&s, &tx, 2) });
    assert_eq!(code(r), ErrorCode::EnvelopeRejected, "the authorization is over another policy");
    // With the user's own policy and authorization but the attacker's UMK, the grant is
    // authentic as far as the user's signature goes; the victim's agent key still does not
    // open under the attacker's UMK.
    let evil = f.forge_grant(
        header,
        &GrantContents {
            umk: Secret32::new([0x66; 32]),
            policy: real.policy.clone(),
            authorization: real.authorization.clone(),
        },
    );
    let r = f.sign(SignRequest { grant_record: &evil.record, ..request(&s, &tx, 2) });
    assert_eq!(
        code(r),
        ErrorCode::RecordInvalid,
        "the victim's agent key must not open under an attacker UMK"
    );
    assert_eq!(f.enclave.status().signatures, 0);

    // The legitimate request still works afterwards.
    verify_independently(&f.sign(request(&s, &tx, 3)).unwrap().transaction);
}

/// An envelope to another enclave key: the one in the published KMS vector.
fn predecessor_envelope(f: &Fixture) -> Vec<u8> {
    let pem = String::from_utf8(testkit::read_vector("kms/recipient_key.pem")).unwrap();
    let predecessor = envelope::RecipientKey::from_pkcs8_pem(&pem).unwrap();
    assert_ne!(predecessor.spki_der(), f.enclave.recipient_public_key());
    envelope::seal(&[0xaa; 32], predecessor.spki_der(), &OsRandom, ContentForm::Chunked).unwrap()
}

/// An envelope made for another enclave key (the predecessor of a restarted enclave, whose
/// attestation the parent used moments before) is a stale relay, not a bad record: the enclave
/// asks for a fresh one with `NeedKey`. Garbage in the envelope is an upstream fault
/// (`envelope_rejected`, 502), never the caller's record's, and never `internal`.
#[test]
fn envelopes_for_another_enclave_key_ask_for_a_fresh_one() {
    let f = fixture();
    let s = f.setup(3, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 10)]);
    let stale = predecessor_envelope(&f);
    match f.enclave.sign(&SignRequest { envelope: Some(&stale), ..request(&s, &tx, 1) }) {
        Ok(SignOutcome::NeedKey(need)) => assert_eq!(need.record_id, s.grant.grant_id),
        other => panic!("expected NeedKey, got {:?}", other.map(|_| ())),
    }
    let garbage: &[u8] = &[0x30, 0x80, 0xde, 0xad];
    let r = f.enclave.sign(&SignRequest { envelope: Some(garbage), ..request(&s, &tx, 1) });
    assert_eq!(code(r), ErrorCode::EnvelopeRejected);
    assert_eq!(f.enclave.status().signatures, 0);
    // The fresh envelope signs.
    verify_independently(&f.sign(request(&s, &tx, 1)).unwrap().transaction);
}

#[test]
fn new_secrets_are_sealed_only_to_the_pinned_kms_key() {
    let f = fixture();
    let s = f.setup(3, policy());
    // The grant's key is RSA-OAEP to the pinned KMS key: the KMS private key unwraps it and it
    // opens the grant; the enclave's recipient key plays no part.
    let sealed = SealedGrant::parse(&s.grant.record).unwrap();
    let dek = f.kms.decrypt(Oaep::<Sha256>::new(), &sealed.wrapped.ciphertext).unwrap();
    let contents = open_grant(&sealed, &Secret32::from_slice(&dek).unwrap()).unwrap();
    assert_eq!(contents.umk, f.umk_of(&s.vault.record));
    // So is the vault's: the enclave generated the UMK and sealed it to the pinned key only.
    let vault = SealedVault::parse(&s.vault.record).unwrap();
    assert!(f.kms.decrypt(Oaep::<Sha256>::new(), &vault.wrapped.ciphertext).is_ok());
    // Opening a grant through a (legitimate) envelope does not re-seal anything: the records the
    // enclave returns later are still sealed to the same KMS key.
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    f.sign(request(&s, &tx, 1)).unwrap();
    let later = f.grant(&s.user, &s.vault, a, policy(), 60);
    let sealed = SealedGrant::parse(&later.record).unwrap();
    assert!(f.kms.decrypt(Oaep::<Sha256>::new(), &sealed.wrapped.ciphertext).is_ok());
}

/// An agent-key record whose header binds one public key but whose ciphertext holds another
/// key's seed (built by hand: the library refuses to seal such a thing).
fn mismatched_agent_record(
    umk: &Secret32,
    wallet: Pubkey,
    bound: Pubkey,
    seed: [u8; 32],
) -> Vec<u8> {
    let header = AgentKeyHeader {
        wallet,
        agent_id: [0x0a; 16],
        agent_pubkey: bound,
        kind: enclave_core::agent_key::AgentKind::Seed,
    };
    let aad = header.aad();
    let key = key_privkey(umk, &aad);
    let iv = [1u8; 12];
    let mut buf = seed.to_vec();
    let tag = Aes256Gcm::new(key.expose().into())
        .encrypt_inout_detached(&Nonce::from(iv), &aad, buf.as_mut_slice().into())
        .unwrap();
    [aad, iv.to_vec(), buf, tag.to_vec()].concat()
}

#[test]
fn decrypted_seed_must_derive_the_bound_public_key() {
    let f = fixture();
    let s = f.setup(4, policy());
    let a = s.agent.agent_pubkey;
    // A valid AEAD under the right UMK, bound to the grant's agent, holding another seed.
    let forged = mismatched_agent_record(&f.umk_of(&s.vault.record), s.wallet, a, [0x99; 32]);
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let err = f.sign(SignRequest { agent_key_record: &forged, ..request(&s, &tx, 1) }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::RecordInvalid);
    assert!(err.to_string().contains("derives public key"), "{err}");

    // Same for scheduled records: the seed inside must be the bound agent's.
    let other = ed25519_dalek::SigningKey::from_bytes(&[0x98; 32]);
    let intent = Intent { destination: [9; 32], mint: [0; 32], amount: 5 };
    let header = ScheduledHeader {
        wallet: s.wallet,
        schedule_id: [0x5c; 16],
        agent_pubkey: Pubkey(other.verifying_key().to_bytes()),
        not_before: T0,
        not_after: T0 + 600,
        max_fee_lamports: 10_000,
        intent_hash: intent.hash(),
        created_at: T0 - 3600,
        enclave_id: f.enclave.id(),
    };
    // The library refuses to seal a mismatched pair…
    let kms_pub = rsa::RsaPublicKey::from_public_key_der(&f.kms_spki).unwrap();
    assert!(
        seal_scheduled(&header, &Secret32::new([0x97; 32]), KeyWrap::Rsa(&kms_pub), &OsRandom)
            .is_err()
    );
    // …and the enclave refuses one built by hand: wrap_alg 1, the ephemeral key to the KMS key,
    // GCM(eph, a seed of another key) under the right AAD.
    let eph = [0x44u8; 32];
    let aad = header.aad();
    let mut oaep_rng = enclave_core::secret::seeded_rng(&OsRandom).unwrap();
    let wrapped = kms_pub.encrypt(&mut oaep_rng, Oaep::<Sha256>::new(), &eph).unwrap();
    let iv = [2u8; 12];
    let mut body = [0x97u8; 32].to_vec();
    let tag = Aes256Gcm::new((&eph).into())
        .encrypt_inout_detached(&Nonce::from(iv), &aad, body.as_mut_slice().into())
        .unwrap();
    let record = [
        aad,
        vec![1],
        (wrapped.len() as u16).to_le_bytes().to_vec(),
        wrapped,
        iv.to_vec(),
        body,
        tag.to_vec(),
    ]
    .concat();
    let a = header.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 5)]);
    let req = SignScheduledRequest {
        scheduled_record: &record,
        transaction: &tx,
        request_id: [3; 16],
        envelope: None,
    };
    let SignOutcome::NeedKey(need) = f.enclave.sign_scheduled(&req).unwrap() else {
        panic!("expected NeedKey")
    };
    let env = f.kms_envelope(&need.wrapped);
    // The seed check follows the envelope's RSA step, so it fails with the one answer every
    // such failure gets (invariant 8).
    let err = f
        .enclave
        .sign_scheduled(&SignScheduledRequest { envelope: Some(&env), ..req })
        .unwrap_err();
    assert_eq!(err, EnclaveError::EnvelopeRejected);
    assert_eq!(f.enclave.status().envelope_failures, 1);
    assert_eq!(
        f.enclave.status().scheduled_ids,
        0,
        "nothing recorded for an unauthenticated record"
    );
}

// ---- Invariant 3: everything is bound ------------------------------------------------------

#[test]
fn grant_of_wallet_a_with_agent_key_of_wallet_b_is_rejected() {
    let f = fixture();
    let a = f.setup(10, policy());
    let b = f.setup(11, policy());
    let tx = legacy_tx(
        &a.agent.agent_pubkey,
        &[sol_transfer(&a.agent.agent_pubkey, &Pubkey([9; 32]), 1)],
    );
    let err = f
        .sign(SignRequest { agent_key_record: &b.agent.record, ..request(&a, &tx, 1) })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::RecordInvalid);
    assert!(err.to_string().contains("wallet"), "{err}");

    // Same wallet, another agent: the grant authorizes one agent only.
    let other_agent = f.agent(a.wallet, &a.vault, enclave_core::enclave::NewAgentKind::Seed);
    let err = f
        .sign(SignRequest { agent_key_record: &other_agent.record, ..request(&a, &tx, 2) })
        .unwrap_err();
    assert!(err.to_string().contains("authorizes"), "{err}");
}

#[test]
fn grant_for_another_bot_and_swapped_record_types_are_rejected() {
    let f = fixture();
    let s = f.setup(12, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let err = f.sign(SignRequest { bot_id: [0xb1; 16], ..request(&s, &tx, 1) }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::RecordInvalid);
    assert!(err.to_string().contains("bot"), "{err}");
    // Agent key where the grant goes, and the reverse.
    let err = f
        .sign(SignRequest {
            grant_record: &s.agent.record,
            agent_key_record: &s.grant.record,
            ..request(&s, &tx, 2)
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("record type 2 where execution grant (1) was expected"),
        "{err}"
    );
    let err = f
        .sign(SignRequest { agent_key_record: &s.grant.record, ..request(&s, &tx, 3) })
        .unwrap_err();
    assert!(err.to_string().contains("record type 1 where agent key (2) was expected"), "{err}");
}

#[test]
fn tampered_aad_fails_authentication() {
    let f = fixture();
    let s = f.setup(13, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    // Rebind the grant to another bot (and ask as that bot): header checks pass, AEAD must not.
    let mut rebound = s.grant.record.clone();
    rebound[53..69].copy_from_slice(&[0xb7; 16]);
    // The grant's AEAD runs after the envelope's RSA step: one answer (invariant 8).
    let err = f
        .sign(SignRequest { grant_record: &rebound, bot_id: [0xb7; 16], ..request(&s, &tx, 1) })
        .unwrap_err();
    assert_eq!(err, EnclaveError::EnvelopeRejected);
    // Shorten the lifetime (still valid): AEAD fails.
    let mut shifted = s.grant.record.clone();
    let expires = u64::from_le_bytes(shifted[109..117].try_into().unwrap()) - 1;
    shifted[109..117].copy_from_slice(&expires.to_le_bytes());
    assert_eq!(
        code(f.sign(SignRequest { grant_record: &shifted, ..request(&s, &tx, 2) })),
        ErrorCode::EnvelopeRejected
    );
    // Move the agent key record to another wallet id in its header: AEAD (and HKDF info) fail.
    let mut agent = s.agent.record.clone();
    agent[5] ^= 1;
    assert_eq!(
        code(f.sign(SignRequest { agent_key_record: &agent, ..request(&s, &tx, 3) })),
        ErrorCode::RecordInvalid
    );
    // A different grant record under the id of an opened grant is not the opened grant: it
    // needs its own key, and does not open with it.
    f.sign(request(&s, &tx, 4)).unwrap();
    let mut other_body = s.grant.record.clone();
    *other_body.last_mut().unwrap() ^= 1;
    let r = f.enclave.sign(&SignRequest { grant_record: &other_body, ..request(&s, &tx, 5) });
    assert!(matches!(r, Ok(SignOutcome::NeedKey(_))), "{r:?}");
    let err = f.sign(SignRequest { grant_record: &other_body, ..request(&s, &tx, 5) }).unwrap_err();
    assert_eq!(err, EnclaveError::EnvelopeRejected);
}

// ---- Invariant 4: nonces are single-use -----------------------------------------------------

#[test]
fn replayed_request_id_with_a_different_transaction_is_rejected() {
    let f = fixture();
    let s = f.setup(20, policy());
    let a = s.agent.agent_pubkey;
    // 1 SOL of outflow each: the transfer plus the agent's 5 000-lamport fee.
    let tx1 = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 999_995_000)]);
    let tx2 = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([8; 32]), 999_995_000)]);
    let first = f.sign(request(&s, &tx1, 1)).unwrap();
    assert_eq!(code(f.sign(request(&s, &tx2, 1))), ErrorCode::ReplayedRequest);
    // Same request again: the same signed result, not charged twice.
    for _ in 0..5 {
        assert_retry_of(&f.sign(request(&s, &tx1, 1)).unwrap(), &first);
    }
    // Daily limit is 5 SOL: four more distinct 1-SOL requests fit, the fifth does not.
    for id in 2..=5 {
        f.sign(request(&s, &tx1, id)).unwrap();
    }
    let err = f.sign(request(&s, &tx1, 6)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyDenied);
    // A different declared notional is a different request.
    let mut other = request(&s, &tx1, 1);
    other.declared_notional_cents = Some(1);
    assert_eq!(code(f.sign(other)), ErrorCode::ReplayedRequest);
}

#[test]
fn request_ids_are_recorded_only_after_authentication() {
    let f = fixture();
    let s = f.setup(21, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let forged =
        envelope::seal(&[1; 32], f.enclave.recipient_public_key(), &OsRandom, ContentForm::Chunked)
            .unwrap();
    assert!(
        f.enclave.sign(&SignRequest { envelope: Some(&forged), ..request(&s, &tx, 7) }).is_err()
    );
    let mut bad_agent = s.agent.record.clone();
    *bad_agent.last_mut().unwrap() ^= 1;
    assert!(f.sign(SignRequest { agent_key_record: &bad_agent, ..request(&s, &tx, 7) }).is_err());
    assert_eq!(f.enclave.status().request_ids, 0);
    // The id is still free for the real request.
    f.sign(request(&s, &tx, 7)).unwrap();
    assert_eq!(f.enclave.status().request_ids, 1);
}

#[test]
fn full_request_store_evicts_expired_first_then_refuses_clearly() {
    let mut config = config();
    config.request_store_capacity = 3;
    let f = fixture_with(config);
    let long_setup = f.setup(22, policy());
    let a = long_setup.agent.agent_pubkey;
    let short = f.grant(&long_setup.user, &long_setup.vault, a, policy(), 60);
    let short_setup = Fixture::with_grant(&long_setup, short);
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    f.sign(request(&short_setup, &tx, 1)).unwrap();
    f.sign(request(&long_setup, &tx, 2)).unwrap();
    f.sign(request(&long_setup, &tx, 3)).unwrap();
    let err = f.sign(request(&long_setup, &tx, 4)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EnclaveUnavailable);
    assert!(err.to_string().contains("request_id store is full"), "{err}");
    // Once the short grant (and with it request 1) has expired, there is room again.
    f.clock.advance(61);
    f.sign(request(&long_setup, &tx, 4)).unwrap();
    assert_eq!(f.enclave.status().request_ids, 3);
}

#[test]
fn scheduled_record_is_single_use() {
    let f = fixture();
    let dest = Pubkey([0x32; 32]);
    let intent = Intent { destination: dest.0, mint: [0; 32], amount: 123 };
    let (record, agent) = f.scheduled_record([0x31; 32], &intent, |h| {
        h.wallet = Pubkey([0x30; 32]);
        h.schedule_id = [0x33; 16];
    });
    let tx = legacy_tx(&agent, &[sol_transfer(&agent, &dest, 123)]);
    let sign = |request_id: u8| f.sign_scheduled(&record, &tx, request_id);
    // A stale envelope neither fails nor burns the record: it asks for a fresh one.
    let stale = predecessor_envelope(&f);
    let r = f.enclave.sign_scheduled(&SignScheduledRequest {
        scheduled_record: &record,
        transaction: &tx,
        request_id: [1; 16],
        envelope: Some(&stale),
    });
    assert!(matches!(r, Ok(SignOutcome::NeedKey(_))));
    let SignOutcome::Signed(first) = sign(1).unwrap() else { panic!() };
    verify_independently(&first.transaction);
    let SignOutcome::Signed(again) = sign(1).unwrap() else { panic!() };
    assert_retry_of(&again, &first);
    let err = sign(2).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReplayedRequest);
    assert!(err.to_string().contains("already used"), "{err}");
}

// ---- Invariant 5: policy before signature ---------------------------------------------------

#[test]
fn kill_switch_revocation_and_expiry_refuse_before_signing() {
    let f = fixture();
    let s = f.setup(40, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    f.sign(request(&s, &tx, 1)).unwrap();

    f.enclave.set_kill_switch(true).unwrap();
    assert_eq!(code(f.sign(request(&s, &tx, 2))), ErrorCode::KillSwitch);
    assert_eq!(code(f.sign(request(&s, &tx, 1))), ErrorCode::KillSwitch, "even an identical retry");
    f.enclave.set_kill_switch(false).unwrap();
    f.sign(request(&s, &tx, 2)).unwrap();

    assert_eq!(
        f.enclave.revoke(RevokeTarget::Record(s.grant.grant_id)).unwrap(),
        1,
        "the opened grant is dropped"
    );
    assert_eq!(code(f.sign(request(&s, &tx, 3))), ErrorCode::GrantRevoked);
    assert_eq!(f.enclave.status().cached_grants, 0);

    // Wallet revocation: every grant issued up to now; a grant issued later works.
    let s2 = f.setup(41, policy());
    // Request ids are global: each request below uses a fresh one.
    f.sign(request(
        &s2,
        &legacy_tx(
            &s2.agent.agent_pubkey,
            &[sol_transfer(&s2.agent.agent_pubkey, &Pubkey([9; 32]), 1)],
        ),
        11,
    ))
    .unwrap();
    f.enclave.revoke(RevokeTarget::Wallet(s2.wallet)).unwrap();
    let tx2 = legacy_tx(
        &s2.agent.agent_pubkey,
        &[sol_transfer(&s2.agent.agent_pubkey, &Pubkey([9; 32]), 1)],
    );
    assert_eq!(code(f.sign(request(&s2, &tx2, 12))), ErrorCode::GrantRevoked);
    f.clock.advance(1);
    let fresh = f.grant(&s2.user, &s2.vault, s2.agent.agent_pubkey, policy(), 600);
    let s3 = Fixture::with_grant(&s2, fresh);
    f.sign(request(&s3, &tx2, 13)).unwrap();

    // Expiry on the enclave clock, including for an opened grant.
    f.clock.advance(600);
    let err = f.sign(request(&s3, &tx2, 14)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::GrantExpired);
    assert!(err.to_string().contains("expired at"), "{err}");
    assert_eq!(f.enclave.sweep(), 1, "the expired opened grant is dropped by the sweep");
}

/// The user's message is judged on the enclave's own decision time (its clock, never going
/// back): a message older than its validity has expired, and one the enclave issued stays valid
/// when the clock steps back — so no clock elsewhere (a frontend's, another replica's) can move
/// a grant's window.
#[test]
fn clock_skew_between_enclaves_is_bounded() {
    use enclave_core::enclave::{CreateGrant, VaultProof};
    let f = fixture();
    let s = f.setup(44, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    // The message is issued (its nonce and `Issued At` come from the enclave) when this
    // enclave's clock reads `issued_at`, and submitted when it reads `submitted_at` (a clock
    // that stepped back, or the second instance of a handover, in the second case). The
    // enclave's decision time never goes back, so the issues come in increasing order.
    let attempt = |issued_at: u64, submitted_at: u64| {
        f.clock.set(issued_at);
        let auth = f.enclave.authorize_grant(&terms).unwrap();
        assert_eq!(auth.issued_at, issued_at);
        f.clock.set(submitted_at);
        let signature = s.user.sign(&auth.message);
        f.unlocked(|envelope| {
            f.enclave.create_grant(&CreateGrant {
                grant: terms.clone(),
                nonce: &auth.nonce,
                issued_at: auth.issued_at,
                signature,
                vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
                envelope,
            })
        })
    };
    let err = attempt(T0, T0 + 600).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationExpired, "{err}");
    attempt(T0 + 601, T0 + 1200).unwrap();
    let grant = attempt(T0 + 1300, T0 + 1240).unwrap();
    assert_eq!(grant.issued_at, T0 + 1300);
    // A clock that stepped back further than the skew: the enclave's own message is judged on
    // the decision time that issued it, which never goes back, so it stays valid.
    attempt(T0 + 1400, T0 + 1300).unwrap();
    f.clock.set(T0);

    // A grant record claiming to be issued ahead of this clock (sealed by hand) is refused
    // before any KMS call.
    let real = f.grant_contents(&s.grant.record);
    let mut header = SealedGrant::parse(&s.grant.record).unwrap().header;
    header.issued_at = T0 + 61;
    header.expires_at = T0 + 661;
    let ahead = f.forge_grant(header, &real);
    let calls = f.kms_calls.load(std::sync::atomic::Ordering::SeqCst);
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let err = f.sign(request(&Fixture::with_grant(&s, ahead), &tx, 1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::RecordInvalid);
    assert!(err.to_string().contains("ahead of the enclave clock"), "{err}");
    assert_eq!(f.kms_calls.load(std::sync::atomic::Ordering::SeqCst), calls);
}

#[test]
fn grant_lifetime_is_bounded_by_the_enclave_maximum() {
    let mut config = config();
    config.max_grant_ttl = 600;
    let f = fixture_with(config);
    let s = f.setup_with_ttl(42, policy(), 600);
    let err = f
        .try_grant(&s.user, &s.vault, f.terms(s.wallet, s.agent.agent_pubkey, policy(), 601))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    // A grant made elsewhere with a longer lifetime (anyone can seal to the KMS key) is refused.
    let real = f.grant_contents(&s.grant.record);
    let mut header = SealedGrant::parse(&s.grant.record).unwrap().header;
    header.expires_at = header.issued_at + 86_400;
    let long = f.forge_grant(header, &real);
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let calls = f.kms_calls.load(std::sync::atomic::Ordering::SeqCst);
    let s = Fixture::with_grant(&s, long);
    let err = f.sign(request(&s, &tx, 1)).unwrap_err();
    assert!(err.to_string().contains("exceeds the enclave's maximum"), "{err}");
    assert_eq!(
        f.kms_calls.load(std::sync::atomic::Ordering::SeqCst),
        calls,
        "refused before any KMS call"
    );
}

#[test]
fn a_config_may_allow_grants_of_thirty_days_and_no_longer() {
    const DAY: u64 = 86_400;
    let mut config = config();
    config.max_grant_ttl = enclave_core::enclave::MAX_MAX_GRANT_TTL;
    assert_eq!(config.max_grant_ttl, 30 * DAY);
    let f = fixture_with(config);
    let s = f.setup_with_ttl(44, policy(), 30 * DAY);
    let err = f
        .try_grant(
            &s.user,
            &s.vault,
            f.terms(s.wallet, s.agent.agent_pubkey, policy(), 30 * DAY + 1),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    let a = s.agent.agent_pubkey;
    let tx = |n: u64| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), n)]);
    f.sign(request(&s, &tx(1), 1)).unwrap();
    // Four weeks later the same grant still signs; past its 30 days it is expired.
    f.clock.advance(29 * DAY);
    f.sign(request(&s, &tx(2), 2)).unwrap();
    f.clock.advance(DAY);
    let err = f.sign(request(&s, &tx(3), 3)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::GrantExpired, "{err}");
}

#[test]
fn concurrent_spend_is_recorded_atomically_with_the_decision() {
    let f = Arc::new(fixture());
    let s = Arc::new(f.setup(43, policy()));
    let a = s.agent.agent_pubkey;
    // Open the grant first so every thread races on the decision, not on KMS.
    f.sign(request(&s, &legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 0)]), 0)).unwrap();
    // 5 SOL per day, the agent's fees included (5 000 lamports so far); 40 threads each try
    // 0.5 SOL minus 500 lamports with its 5 000-lamport fee: exactly 10 may succeed.
    let handles: Vec<_> = (1..=40u8)
        .map(|i| {
            let (f, s) = (Arc::clone(&f), Arc::clone(&s));
            std::thread::spawn(move || {
                let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([i; 32]), 499_994_500)]);
                f.sign(request(&s, &tx, i)).map(|_| ())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == ErrorCode::PolicyDenied)
    );
}

// ---- Invariant 6: bad input gets a typed error ----------------------------------------------

#[test]
fn garbage_in_every_field_is_a_typed_error() {
    let f = fixture();
    let s = f.setup(50, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 1)]);
    let samples: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 7],
        vec![1, 0, 0, 0, 1],
        vec![0x41; 20_000],
        s.grant.record[..100].to_vec(),
    ];
    for g in &samples {
        for (req, envelope_field) in [
            (SignRequest { grant_record: g, ..request(&s, &tx, 1) }, false),
            (SignRequest { agent_key_record: g, ..request(&s, &tx, 1) }, false),
            (SignRequest { transaction: g, ..request(&s, &tx, 1) }, false),
            (SignRequest { envelope: Some(g), ..request(&s, &tx, 1) }, true),
        ] {
            let code = match f.enclave.sign(&req) {
                Err(e) => e.code(),
                Ok(SignOutcome::NeedKey(_)) => continue,
                Ok(SignOutcome::Signed(_)) => panic!("garbage signed"),
            };
            if envelope_field {
                // The envelope comes from KMS via the parent: its garbage is not the caller's.
                assert_eq!(code, ErrorCode::EnvelopeRejected);
            } else {
                assert!(
                    matches!(code, ErrorCode::RecordInvalid | ErrorCode::BadRequest),
                    "{code:?}"
                );
            }
        }
        let r = f.enclave.sign_scheduled(&SignScheduledRequest {
            scheduled_record: g,
            transaction: &tx,
            request_id: [1; 16],
            envelope: None,
        });
        assert_eq!(r.unwrap_err().code(), ErrorCode::RecordInvalid);
    }
}
