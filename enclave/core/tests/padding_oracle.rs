//! The adaptive CBC padding-oracle attack (Vaudenay 2002) on KMS envelopes, run for real against
//! the enclave's public `sign` and `sign_scheduled` entry points (SPEC §3 invariant 8).
//!
//! A compromised host holds a genuine `CiphertextForRecipient` for a victim's record. It keeps the
//! RSA-wrapped content key and replaces the IV and the content blocks, one guess at a time, and
//! watches the enclave's answers. If any two failures after the RSA step can be told apart (code,
//! text, or the length of what decrypted), the attacker recovers the record's 32-byte data key —
//! and with it the grant's UMK or a scheduled record's agent seed — byte by byte.
//!
//! The attacker here is generic: it does not know which answer means "good padding"; for every
//! byte it tries all 256 values and takes the value whose answer differs from the others. The
//! test holds the KMS private key only to know the right answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;

use common::*;
use enclave_core::enclave::{SignRequest, SignScheduledRequest};
use enclave_core::envelope::{self, ContentForm, EnvelopeParts};
use enclave_core::policy::Intent;
use enclave_core::records::{SealedGrant, SealedScheduled, WrappedKey};
use enclave_core::{EnclaveError, Pubkey, SignOutcome};
use rsa::Oaep;
use sha2::Sha256;

/// Everything the attacker can observe about one query.
fn observe(r: Result<SignOutcome, EnclaveError>) -> String {
    match r {
        Ok(SignOutcome::Signed(_)) => "signed".into(),
        Ok(SignOutcome::NeedKey(_)) => "need_key".into(),
        Err(e) => format!("{} | {e}", e.code().as_str()),
    }
}

/// The result of one attack.
struct Outcome {
    recovered: [u8; 32],
    queries: usize,
    /// Every distinct answer seen, with how often.
    answers: BTreeMap<String, usize>,
}

/// Vaudenay's attack on the two blocks of the 32-byte key inside `genuine`, asking `oracle`.
fn attack(genuine: &[u8], oracle: &mut dyn FnMut(&[u8]) -> String) -> Outcome {
    let parsed = envelope::parse(genuine).unwrap();
    let rid: [u8; 32] = parsed.rid.try_into().unwrap();
    let iv: [u8; 16] = parsed.iv.try_into().unwrap();
    assert_eq!(parsed.ciphertext.len(), 48, "KMS's shape for a 32-byte key");
    let blocks: Vec<[u8; 16]> = std::iter::once(iv)
        .chain(parsed.ciphertext.chunks(16).map(|c| c.try_into().unwrap()))
        .collect();
    let mut answers = BTreeMap::new();
    let mut queries = 0;
    // KMS's shape, so every query passes the length check and its padding block is the one the
    // attacker steers: content = any block ‖ crafted ‖ target (48 bytes), whose last block
    // decrypts to AES-decrypt(target) XOR crafted. (Sending `crafted` as the IV of a 16-byte
    // content would fail the length check every time and never reach the padding.)
    let mut ask = |crafted: &[u8; 16], target: &[u8; 16]| {
        let content = [[0u8; 16], *crafted, *target].concat();
        let forged = envelope::encode(
            &EnvelopeParts {
                rid: &rid,
                encrypted_key: parsed.encrypted_key,
                iv: &iv,
                content: &content,
            },
            ContentForm::Chunked,
        );
        let answer = oracle(&forged);
        *answers.entry(answer.clone()).or_insert(0) += 1;
        queries += 1;
        answer
    };
    let mut recovered = [0u8; 32];
    for block in 1..=2 {
        let (previous, target) = (blocks[block - 1], blocks[block]);
        // intermediate[j] = AES-decrypt(target)[j]; plaintext = intermediate ^ previous.
        let mut intermediate = [0u8; 16];
        for j in (0..16).rev() {
            let pad = (16 - j) as u8;
            let mut crafted = [0u8; 16];
            for k in j + 1..16 {
                crafted[k] = intermediate[k] ^ pad;
            }
            let replies: Vec<String> = (0..=255u8)
                .map(|guess| {
                    crafted[j] = guess;
                    ask(&crafted, &target)
                })
                .collect();
            // The usual answer is "bad padding"; the odd one out is the hit.
            let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
            for r in &replies {
                *counts.entry(r).or_insert(0) += 1;
            }
            let usual = counts.iter().max_by_key(|(_, n)| **n).map(|(r, _)| *r).unwrap().clone();
            let mut hits: Vec<u8> =
                (0..=255u8).filter(|g| replies[usize::from(*g)] != usual).collect();
            if j == 15 && hits.len() > 1 {
                // A hit may have ended in 02 02: disturb the byte before and keep what survives.
                hits.retain(|g| {
                    crafted[15] = *g;
                    crafted[14] ^= 0xff;
                    let survives = ask(&crafted, &target) != usual;
                    crafted[14] ^= 0xff;
                    survives
                });
            }
            let guess = hits.first().copied().unwrap_or(0);
            intermediate[j] = guess ^ pad;
        }
        for j in 0..16 {
            recovered[(block - 1) * 16 + j] = intermediate[j] ^ previous[j];
        }
    }
    Outcome { recovered, queries, answers }
}

/// What KMS would unwrap for `wrapped`: the key the attack is after.
fn true_key(f: &Fixture, wrapped: &WrappedKey) -> [u8; 32] {
    f.kms.decrypt(Oaep::<Sha256>::new(), &wrapped.ciphertext).unwrap().try_into().unwrap()
}

fn assert_attack_failed(outcome: &Outcome, key: &[u8; 32], door: &str) {
    assert_ne!(&outcome.recovered, key, "{door}: the padding oracle recovered the data key");
    let matching = outcome.recovered.iter().zip(key).filter(|(a, b)| a == b).count();
    assert!(matching <= 4, "{door}: {matching} of 32 key bytes recovered");
    assert_eq!(
        outcome.answers.len(),
        1,
        "{door}: every failure after the RSA step must look the same, saw {:?}",
        outcome.answers
    );
    assert!(outcome.queries >= 32 * 256, "{door}: the attack ran ({} queries)", outcome.queries);
}

#[test]
fn padding_oracle_attack_through_sign_recovers_nothing() {
    let f = fixture();
    let s = f.setup(0x70, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 10)]);
    let wrapped = SealedGrant::parse(&s.grant.record).unwrap().wrapped;
    let genuine = f.kms_envelope(&wrapped);
    let key = true_key(&f, &wrapped);

    let mut oracle = |forged: &[u8]| {
        observe(f.enclave.sign(&SignRequest { envelope: Some(forged), ..request(&s, &tx, 1) }))
    };
    let outcome = attack(&genuine, &mut oracle);
    assert_attack_failed(&outcome, &key, "sign");
    assert_eq!(f.enclave.status().signatures, 0);

    // An envelope whose content failed is never tried again, not even the genuine one: the
    // attacker gets one query per KMS call. A fresh KMS envelope still signs.
    let r = f.enclave.sign(&SignRequest { envelope: Some(&genuine), ..request(&s, &tx, 1) });
    assert_eq!(observe(r), *outcome.answers.keys().next().unwrap());
    verify_independently(&f.sign(request(&s, &tx, 1)).unwrap().transaction);
}

#[test]
fn padding_oracle_attack_through_sign_scheduled_recovers_nothing() {
    let f = fixture();
    let dest = Pubkey([0x72; 32]);
    let intent = Intent { destination: dest.0, mint: [0; 32], amount: 1_000 };
    let (record, agent) = f.scheduled_record([0x71; 32], &intent, |h| {
        h.wallet = Pubkey([0x73; 32]);
        h.schedule_id = [0x74; 16];
    });
    let wrapped = SealedScheduled::parse(&record).unwrap().wrapped;
    let genuine = f.kms_envelope(&wrapped);
    let key = true_key(&f, &wrapped);
    let tx = legacy_tx(&agent, &[sol_transfer(&agent, &dest, 1_000)]);
    fn request<'a>(
        record: &'a [u8],
        tx: &'a [u8],
        envelope: Option<&'a [u8]>,
    ) -> SignScheduledRequest<'a> {
        SignScheduledRequest {
            scheduled_record: record,
            transaction: tx,
            request_id: [1; 16],
            envelope,
        }
    }

    let mut oracle =
        |forged: &[u8]| observe(f.enclave.sign_scheduled(&request(&record, &tx, Some(forged))));
    let outcome = attack(&genuine, &mut oracle);
    assert_attack_failed(&outcome, &key, "sign_scheduled");
    assert_eq!(f.enclave.status().signatures, 0);

    // The record is not burnt by the attack: a fresh envelope signs it, once.
    let fresh = f.kms_envelope(&wrapped);
    match f.enclave.sign_scheduled(&request(&record, &tx, Some(&fresh))).unwrap() {
        SignOutcome::Signed(s) => {
            verify_independently(&s.transaction);
        }
        SignOutcome::NeedKey(_) => panic!("a fresh envelope must open"),
    }
}

/// The same attack, but no query can be answered from the refused-envelope store: every forged
/// envelope carries a fresh RSA-OAEP wrapping of the same content key, so each one runs the
/// whole constant flow (RSA, length and padding judged together, the record's AEAD). This is
/// the flow's own test; the attacks above mostly meet the refusal store after their first query.
#[test]
fn padding_oracle_attack_with_a_fresh_wrapped_key_per_query_takes_the_full_path_and_recovers_nothing()
 {
    use aes::cipher::{BlockModeEncrypt as _, KeyIvInit as _};
    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey as _;

    let f = fixture();
    let s = f.setup(0x75, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), 10)]);
    let wrapped = SealedGrant::parse(&s.grant.record).unwrap().wrapped;
    let key = true_key(&f, &wrapped);

    // The genuine envelope, with a content key the test knows (KMS's shape: 48 bytes of CBC).
    let recipient = RsaPublicKey::from_public_key_der(f.enclave.recipient_public_key()).unwrap();
    let cek = [0x5a_u8; 32];
    let iv = [0x3c_u8; 16];
    let mut content = [0u8; 48];
    content[..32].copy_from_slice(&key);
    content[32..].fill(16);
    cbc::Encryptor::<aes::Aes256>::new(&cek.into(), &iv.into())
        .encrypt_padded::<aes::cipher::block_padding::NoPadding>(&mut content, 48)
        .unwrap();
    let rid: [u8; 32] = <Sha256 as sha2::Digest>::digest(f.enclave.recipient_public_key()).into();
    let mut rng = enclave_core::secret::seeded_rng(&enclave_core::OsRandom).unwrap();
    let mut fresh_wrap = || recipient.encrypt(&mut rng, Oaep::<Sha256>::new(), &cek).unwrap();
    let genuine = envelope::encode(
        &EnvelopeParts { rid: &rid, encrypted_key: &fresh_wrap(), iv: &iv, content: &content },
        ContentForm::Chunked,
    );

    let failures_before = f.enclave.status().envelope_failures;
    // The same IV and content under a freshly wrapped copy of the same content key.
    let mut rewrap = |envelope_bytes: &[u8]| {
        let p = envelope::parse(envelope_bytes).unwrap();
        envelope::encode(
            &EnvelopeParts {
                rid: &rid,
                encrypted_key: &fresh_wrap(),
                iv: p.iv.try_into().unwrap(),
                content: p.ciphertext.as_slice(),
            },
            ContentForm::Chunked,
        )
    };
    let mut oracle = |forged: &[u8]| {
        let rewrapped = rewrap(forged);
        observe(f.enclave.sign(&SignRequest { envelope: Some(&rewrapped), ..request(&s, &tx, 1) }))
    };
    let outcome = attack(&genuine, &mut oracle);
    assert_attack_failed(&outcome, &key, "sign, full path");
    assert_eq!(
        f.enclave.status().envelope_failures - failures_before,
        outcome.queries as u64,
        "every query ran the constant flow to its end (none was answered from the refusal store)"
    );
    assert_eq!(f.enclave.status().signatures, 0);
    // The genuine envelope, freshly wrapped, still opens: the key was right all along.
    let fresh = rewrap(&genuine);
    match f.enclave.sign(&SignRequest { envelope: Some(&fresh), ..request(&s, &tx, 1) }).unwrap() {
        SignOutcome::Signed(signed) => {
            verify_independently(&signed.transaction);
        }
        SignOutcome::NeedKey(_) => panic!("the genuine content key must open the grant"),
    }
}
