//! Upgrades of a cluster (SPEC §16): a member of a new image joins only when KMS vouches for its
//! image, proven by the newcomer itself; every refusal after the cryptographic step is one answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use enclave_core::cluster::{Candidate, MemberCard, MemberError, MemberKey, verify_candidate};
use enclave_core::enclave::upgrade::CHALLENGE_SECONDS;
use enclave_core::envelope::{self, ContentForm};
use enclave_core::records::{WrapAlg, WrappedKey};
use enclave_core::{EnclaveError, ErrorCode, OsRandom};

const MAX_AGE: Duration = Duration::from_secs(300);

/// A leader of image 0x10 and a newcomer of image 0x50 (which lists 0x10 as its predecessor).
fn leader_and_newcomer() -> (Fixture, Fixture) {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let leader = fixture_on(config(), Arc::clone(&clock), 0x10, None);
    let mut newer = config();
    newer.predecessor_images.push(TestNsm::new(Arc::clone(&clock), 0x10).image());
    let newcomer = fixture_on(newer, clock, 0x50, Some(&fresh_recipient()));
    (leader, newcomer)
}

fn card_of(f: &Fixture) -> (Vec<u8>, [u8; 32]) {
    let key = MemberKey::generate(&OsRandom).unwrap();
    let id = f.enclave.id();
    let document = f.enclave.attest_member(&key.binding(&id)).unwrap();
    let card =
        MemberCard { enclave_id: id, channel_public: *key.public(), document }.encode().unwrap();
    (card, *key.public())
}

fn candidate(leader: &Fixture, card: &[u8]) -> Result<Candidate, MemberError> {
    verify_candidate(
        card,
        &leader.enclave.anchor().clone(),
        leader.enclave.trusted_images(),
        UNIX_EPOCH + Duration::from_secs(leader.enclave.now()),
        MAX_AGE,
    )
}

fn new_image(leader: &Fixture, card: &[u8]) -> enclave_core::cluster::NewImageMember {
    match candidate(leader, card).unwrap() {
        Candidate::NewImage(m) => m,
        Candidate::Trusted(m) => panic!("{} is of a trusted image", m.enclave_id),
    }
}

fn rsa_wrapped(ciphertext: Vec<u8>) -> WrappedKey {
    WrappedKey { alg: WrapAlg::RsaesOaepSha256, ciphertext, encryption_context: None }
}

fn refused_text(err: &EnclaveError) -> String {
    assert_eq!(err.code(), ErrorCode::BadRequest, "{err}");
    err.to_string()
}

#[test]
fn a_new_image_vouched_for_by_kms_is_admitted_with_its_own_channel_key() {
    let (leader, newcomer) = leader_and_newcomer();
    let (card, channel) = card_of(&newcomer);
    let m = new_image(&leader, &card);
    assert_eq!(m.enclave_id(), newcomer.enclave.id());
    assert_eq!(m.pcr0(), hex::encode([0x50; 48]));
    assert_eq!(m.document(), MemberCard::decode(&card).unwrap().document.as_slice());

    let wrapped = leader.enclave.upgrade_challenge(&m).unwrap();
    // The test plays KMS, whose key policy admits the new image.
    let envelope = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let proof = newcomer.enclave.upgrade_prove(leader.enclave.id(), &channel, &envelope).unwrap();
    let member = leader.enclave.upgrade_vouch(m, &proof).unwrap();
    assert_eq!(member.enclave_id, newcomer.enclave.id());
    assert_eq!(member.channel_public, channel);

    // The newcomer trusts the leader's image (its predecessor): no vouching needed that way.
    let (leader_card, _) = card_of(&leader);
    let seen_by_newcomer = verify_candidate(
        &leader_card,
        &newcomer.enclave.anchor().clone(),
        newcomer.enclave.trusted_images(),
        UNIX_EPOCH + Duration::from_secs(newcomer.enclave.now()),
        MAX_AGE,
    )
    .unwrap();
    assert!(matches!(seen_by_newcomer, Candidate::Trusted(_)));
    // And a member of the leader's own image is trusted as before.
    let peer = fixture_on(config(), Arc::clone(&leader.clock), 0x10, Some(&fresh_recipient()));
    assert!(matches!(candidate(&leader, &card_of(&peer).0).unwrap(), Candidate::Trusted(_)));
}

#[test]
fn without_a_proof_of_the_challenge_key_no_new_image_is_admitted_and_every_refusal_reads_the_same()
{
    let (leader, newcomer) = leader_and_newcomer();
    let (card, ch) = card_of(&newcomer);
    let leader_id = leader.enclave.id();
    let mut answers = Vec::new();

    // No challenge was ever made for it.
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &[7; 32]).unwrap_err();
    answers.push(refused_text(&err));

    // A host that seals a key of its own to the newcomer: the proof is under the host's key.
    leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let forged = envelope::seal(
        &[0x42; 32],
        newcomer.enclave.recipient_public_key(),
        &OsRandom,
        ContentForm::Chunked,
    )
    .unwrap();
    let proof = newcomer.enclave.upgrade_prove(leader_id, &ch, &forged).unwrap();
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    // Another enclave KMS admits opens the key for itself: its proof names itself, not the
    // newcomer whose channel key the card binds.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let other = fixture_on(config(), Arc::clone(&leader.clock), 0x50, Some(&fresh_recipient()));
    let envelope = other.kms_envelope(&rsa_wrapped(wrapped.clone()));
    let proof = other.enclave.upgrade_prove(leader_id, &ch, &envelope).unwrap();
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    // A proof for another leader.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let envelope = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let proof = newcomer.enclave.upgrade_prove(other.enclave.id(), &ch, &envelope).unwrap();
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    // A right proof after the challenge expired.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let envelope = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let proof = newcomer.enclave.upgrade_prove(leader_id, &ch, &envelope).unwrap();
    leader.clock.advance(CHALLENGE_SECONDS + 1);
    let (card, ch) = card_of(&newcomer);
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    // A right proof, used twice: the challenge is one use.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let envelope = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let proof = newcomer.enclave.upgrade_prove(leader_id, &ch, &envelope).unwrap();
    leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap();
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    // A wrong guess consumes the challenge: the right proof afterwards opens nothing.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let envelope = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let proof = newcomer.enclave.upgrade_prove(leader_id, &ch, &envelope).unwrap();
    leader.enclave.upgrade_vouch(new_image(&leader, &card), &[0; 32]).unwrap_err();
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
    answers.push(refused_text(&err));

    answers.dedup();
    assert_eq!(answers.len(), 1, "one answer for every refusal: {answers:?}");
}

#[test]
fn an_envelope_for_another_enclave_or_a_damaged_one_proves_nothing() {
    let (leader, newcomer) = leader_and_newcomer();
    let (card, _) = card_of(&newcomer);
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &card)).unwrap();
    let other = fixture_on(config(), Arc::clone(&leader.clock), 0x50, Some(&fresh_recipient()));
    let for_other = other.kms_envelope(&rsa_wrapped(wrapped.clone()));
    let err =
        newcomer.enclave.upgrade_prove(leader.enclave.id(), &[0; 32], &for_other).unwrap_err();
    assert!(err.to_string().contains("addressed to another enclave"), "{err}");
    let mut damaged = newcomer.kms_envelope(&rsa_wrapped(wrapped));
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(newcomer.enclave.upgrade_prove(leader.enclave.id(), &[0; 32], &damaged).is_err());
    for truncated in [&[][..], &damaged[..10]] {
        assert!(newcomer.enclave.upgrade_prove(leader.enclave.id(), &[0; 32], truncated).is_err());
    }
}

#[test]
fn a_new_image_card_must_still_be_authentic_bound_and_fresh() {
    let (leader, newcomer) = leader_and_newcomer();
    // A document binding another channel key.
    let key = MemberKey::generate(&OsRandom).unwrap();
    let other_key = MemberKey::generate(&OsRandom).unwrap();
    let id = newcomer.enclave.id();
    let document = newcomer.enclave.attest_member(&other_key.binding(&id)).unwrap();
    let card =
        MemberCard { enclave_id: id, channel_public: *key.public(), document }.encode().unwrap();
    assert!(matches!(candidate(&leader, &card), Err(MemberError::BindingMismatch { .. })));
    // A stale card.
    let (card, _) = card_of(&newcomer);
    leader.clock.advance(MAX_AGE.as_secs() + 1);
    assert!(matches!(candidate(&leader, &card), Err(MemberError::Document(_))));
}

/// A card of an image KMS does not admit (0x70), whose document names the recipient key of an
/// enclave KMS does admit (the NSM puts any public key in a document), so that the admitted
/// enclave answers the challenge.
fn borrowing_card(clock: &Arc<ManualClock>, lender: &Fixture, channel: &[u8; 32]) -> Vec<u8> {
    use enclave_core::enclave::Attester;
    let id = lender.enclave.id();
    let document = TestNsm::new(Arc::clone(clock), 0x70)
        .attest(
            lender.enclave.recipient_public_key(),
            Some(&enclave_core::cluster::member_binding(&id, channel)),
            None,
        )
        .unwrap();
    MemberCard { enclave_id: id, channel_public: *channel, document }.encode().unwrap()
}

#[test]
fn a_card_borrowing_an_admitted_enclaves_id_is_not_vouched_for_by_that_enclaves_proof() {
    let (leader, lender) = leader_and_newcomer();
    let (lender_card, lender_channel) = card_of(&lender);
    let evil_channel = *MemberKey::generate(&OsRandom).unwrap().public();
    // With its own channel key, or with the lender's: the proof names the lender's channel key
    // and image, the card another image (and, in the first case, another key).
    for channel in [evil_channel, lender_channel] {
        let card = borrowing_card(&leader.clock, &lender, &channel);
        let m = new_image(&leader, &card);
        assert_eq!((m.enclave_id(), m.pcr0()), (lender.enclave.id(), hex::encode([0x70; 48])));
        let wrapped = leader.enclave.upgrade_challenge(&m).unwrap();
        let envelope = lender.kms_envelope(&rsa_wrapped(wrapped));
        let proof =
            lender.enclave.upgrade_prove(leader.enclave.id(), &lender_channel, &envelope).unwrap();
        let err = leader.enclave.upgrade_vouch(new_image(&leader, &card), &proof).unwrap_err();
        refused_text(&err);
    }
    // A challenge made for the lender's genuine card does not admit the borrowing card either.
    let wrapped = leader.enclave.upgrade_challenge(&new_image(&leader, &lender_card)).unwrap();
    let envelope = lender.kms_envelope(&rsa_wrapped(wrapped));
    let proof =
        lender.enclave.upgrade_prove(leader.enclave.id(), &lender_channel, &envelope).unwrap();
    let swapped = borrowing_card(&leader.clock, &lender, &evil_channel);
    let err = leader.enclave.upgrade_vouch(new_image(&leader, &swapped), &proof).unwrap_err();
    refused_text(&err);
}

#[test]
fn the_proof_binds_the_image_digest_of_every_image_pcr() {
    use enclave_core::enclave::upgrade::image_digest;
    let image = |b: u8| {
        TestNsm::new(Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0))), b).image()
    };
    assert_eq!(image_digest(&image(0x10)), image_digest(&image(0x10)));
    assert_ne!(image_digest(&image(0x10)), image_digest(&image(0x50)));
    let mut one_changed = image(0x10);
    one_changed.insert(2, vec![0; 48]);
    assert_ne!(image_digest(&image(0x10)), image_digest(&one_changed));
}
