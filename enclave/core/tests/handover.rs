//! Live handover of the decision state (SPEC §16) between two enclave instances: the successor
//! answers for the predecessor's grants with identical results, counters continue, single-use
//! marks and revocations travel, and no forged, replayed or misdirected handover opens anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use enclave_core::enclave::RevokeTarget;
use enclave_core::enclave::handover::{
    ImportProgress, MAX_CHUNKS, StateSnapshot, open_chunk, seal_chunks,
};
use enclave_core::policy::{Intent, Rule};
use enclave_core::records::{WrapAlg, WrappedKey};
use enclave_core::{EnclaveError, ErrorCode, OsRandom, Pubkey, Secret32, SignOutcome};

/// A predecessor and a successor of `image` on one clock.
fn pair(successor_image: u8, predecessors: &[u8]) -> (Fixture, Fixture) {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let p = fixture_on(config(), Arc::clone(&clock), 0x10, None);
    let mut successor_config = config();
    for image in predecessors {
        let nsm = TestNsm::new(Arc::clone(&clock), *image);
        successor_config.predecessor_images.push(nsm.image());
    }
    let s = fixture_on(successor_config, clock, successor_image, Some(&fresh_recipient()));
    (p, s)
}

/// The handover key as the parent hands it to KMS (RSA-OAEP to the execution key).
fn kms_wrap(prepared: &enclave_core::enclave::handover::Prepared) -> WrappedKey {
    WrappedKey {
        alg: WrapAlg::RsaesOaepSha256,
        ciphertext: prepared.wrapped_key.clone(),
        encryption_context: None,
    }
}

/// Runs the whole protocol as the parent would; the test plays KMS.
fn hand_over(
    p: &Fixture,
    s: &Fixture,
) -> Result<enclave_core::enclave::handover::Imported, EnclaveError> {
    let offer = s.enclave.handover_offer()?;
    let prepared = p.enclave.handover_prepare(&offer)?;
    assert_eq!(prepared.successor, s.enclave.id());
    let envelope = s.kms_envelope(&kms_wrap(&prepared));
    let proof = s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &envelope)?;
    let total = p.enclave.handover_export(&proof)?;
    let imported = transfer_chunks(p, s, total)?;
    let token = p.enclave.handover_commit(&imported)?;
    s.enclave.handover_finish(&token)
}

/// Steps 5: every chunk from `p` to `s`; returns the import proof.
fn transfer_chunks(p: &Fixture, s: &Fixture, total: u32) -> Result<[u8; 32], EnclaveError> {
    let mut done = None;
    for i in 0..total {
        match s.enclave.handover_import(i, total, &p.enclave.handover_chunk(i)?)? {
            ImportProgress::Imported { proof } => done = Some(proof),
            ImportProgress::Partial { .. } => assert!(done.is_none()),
        }
    }
    Ok(done.expect("the last chunk completes the import"))
}

fn scheduled_for(f: &Fixture, seed: u8, amount: u64) -> (Vec<u8>, Pubkey, Pubkey) {
    let dest = Pubkey([0x61; 32]);
    let intent = Intent { destination: dest.0, mint: [0; 32], amount };
    let (record, agent) = f.scheduled_record([seed; 32], &intent, |h| {
        h.wallet = Pubkey([0x60; 32]);
        h.created_at = T0 - 10;
    });
    (record, agent, dest)
}

#[test]
fn the_successor_continues_exactly_where_the_predecessor_stopped() {
    let (p, s) = pair(0x10, &[]);
    let setup = p.setup(0x70, policy());
    let a = setup.agent.agent_pubkey;
    let tx =
        |lamports: u64, id: u8| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([id; 32]), lamports)]);
    // Spend 4 SOL of the 5 SOL day on the predecessor (fees included).
    let first = p.sign(request(&setup, &tx(1_999_995_000, 1), 1)).unwrap();
    p.sign(request(&setup, &tx(1_999_995_000, 2), 2)).unwrap();
    // A revocation, the kill switch's state, a used scheduled record, a used nonce.
    let revoked = p.setup(0x71, policy());
    p.enclave.revoke(RevokeTarget::Record(revoked.grant.grant_id)).unwrap();
    let (sched, sagent, dest) = scheduled_for(&p, 0x72, 77);
    let stx = legacy_tx(&sagent, &[sol_transfer(&sagent, &dest, 77)]);
    assert!(matches!(p.sign_scheduled(&sched, &stx, 9).unwrap(), SignOutcome::Signed(_)));
    assert!(p.enclave.status().nonces >= 2);

    let imported = hand_over(&p, &s).unwrap();
    assert_eq!(imported.predecessor, p.enclave.id());
    assert_eq!(imported.answers_for, vec![s.enclave.id(), p.enclave.id()]);
    assert_eq!(s.enclave.answers_for(), imported.answers_for);
    // The used nonces travel (issued, unused ones name the predecessor and die with it).
    assert!(s.enclave.status().nonces >= 2);

    // The predecessor decides nothing more.
    let err = p.sign(request(&setup, &tx(1, 3), 3)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EnclaveHandedOver, "{err}");
    assert!(err.to_string().contains(&s.enclave.id().to_string()), "{err}");
    assert_eq!(code(p.enclave.set_kill_switch(true)), ErrorCode::EnclaveHandedOver);

    // The successor: an identical retry is the identical signature, with no second charge…
    let again = s.sign(request(&setup, &tx(1_999_995_000, 1), 1)).unwrap();
    assert_retry_of(&again, &first);
    // …a request id reused for another transaction is still a replay…
    assert_eq!(code(s.sign(request(&setup, &tx(5, 4), 1))), ErrorCode::ReplayedRequest);
    // …the day's counters continue: 1 SOL left.
    let d = s.sign(request(&setup, &tx(1_000_000_000, 5), 5)).unwrap_err();
    let EnclaveError::PolicyDenied(d) = d else { panic!("{d:?}") };
    assert_eq!((d.rule, d.used), (Rule::MaxLamportsPerDay, Some(4_000_000_000)));
    s.sign(request(&setup, &tx(999_995_000, 6), 6)).unwrap();
    // …the revocation holds, the scheduled record stays used, the predecessor's grants work.
    assert_eq!(code(s.sign(request(&revoked, &tx(1, 7), 7))), ErrorCode::GrantRevoked);
    assert_eq!(code(s.sign_scheduled(&sched, &stx, 10)), ErrorCode::ReplayedRequest);
    // New grants can be made on the successor for its own id.
    let fresh = s.grant(&setup.user, &setup.vault, a, policy(), 600);
    assert_eq!(fresh.enclave_id, s.enclave.id());
}

fn code<T: std::fmt::Debug>(r: Result<T, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

#[test]
fn an_upgrade_hands_over_only_from_a_configured_predecessor_image() {
    // A successor of another image that does not list the predecessor's image refuses it.
    let (p, s) = pair(0x50, &[]);
    let err = hand_over(&p, &s).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HandoverRefused);
    assert!(err.to_string().contains("not in this enclave's trusted set"), "{err}");
    // The predecessor keeps deciding: nothing was exported.
    let setup = p.setup(0x73, policy());
    let a = setup.agent.agent_pubkey;
    p.sign(request(&setup, &legacy_tx(&a, &[sol_transfer(&a, &Pubkey([1; 32]), 1)]), 1)).unwrap();
    // An entry that does not name an image hash (PCR0) trusts nothing, not every image.
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let p = fixture_on(config(), Arc::clone(&clock), 0x10, None);
    let mut loose = config();
    loose.predecessor_images.push([(8u8, vec![0u8; 48])].into_iter().collect());
    let mut without_pcr0 = TestNsm::new(Arc::clone(&clock), 0x10).image();
    without_pcr0.remove(&0);
    loose.predecessor_images.push(without_pcr0);
    let s = fixture_on(loose, clock, 0x50, Some(&fresh_recipient()));
    let err = hand_over(&p, &s).unwrap_err();
    assert!(err.to_string().contains("not in this enclave's trusted set"), "{err}");
    // The same upgrade with the predecessor configured goes through.
    let (p, s) = pair(0x50, &[0x10]);
    hand_over(&p, &s).unwrap();
}

#[test]
fn forged_replayed_or_misdirected_handovers_open_nothing() {
    let (p, s) = pair(0x10, &[]);
    let setup = p.setup(0x74, policy());
    let a = setup.agent.agent_pubkey;
    p.sign(request(&setup, &legacy_tx(&a, &[sol_transfer(&a, &Pubkey([1; 32]), 1)]), 1)).unwrap();

    let offer = s.enclave.handover_offer().unwrap();
    let prepared = p.enclave.handover_prepare(&offer).unwrap();
    let wrapped = kms_wrap(&prepared);
    // Another fresh enclave presented with the predecessor's document and an envelope for
    // itself: the document binds the offer and the successor it was made for.
    let thief = fixture_on(config(), Arc::clone(&p.clock), 0x10, Some(&fresh_recipient()));
    thief.enclave.handover_offer().unwrap();
    let stolen_env = thief.kms_envelope(&wrapped);
    let err = thief
        .enclave
        .handover_accept(&prepared.document, &prepared.wrapped_key, &stolen_env)
        .unwrap_err();
    assert!(err.to_string().contains("does not bind"), "{err}");
    // The right successor with an envelope made for someone else cannot take the key either.
    let err = s
        .enclave
        .handover_accept(&prepared.document, &prepared.wrapped_key, &stolen_env)
        .unwrap_err();
    assert!(err.to_string().contains("addressed to another enclave"), "{err}");
    // The host seals a key of its own to the right successor (an envelope is unauthenticated,
    // and the successor's public key is in its offer): the predecessor's document commits to
    // the real key, so the successor refuses it with the one post-decryption answer, accepts
    // nothing, and state sealed under the host's key opens nowhere.
    let hosts_key = Secret32::new([0x42; 32]);
    let forged_env = enclave_core::envelope::seal(
        hosts_key.expose(),
        s.enclave.recipient_public_key(),
        &OsRandom,
        enclave_core::envelope::ContentForm::Chunked,
    )
    .unwrap();
    assert_eq!(
        code(s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &forged_env)),
        ErrorCode::EnvelopeRejected
    );
    let forged_state = StateSnapshot {
        kill_switch: false,
        time_floor: 0,
        answers_for: vec![p.enclave.id(), enclave_core::EnclaveId([0x66; 16])],
        requests: vec![],
        scheduled: vec![],
        nonces: vec![],
        revoked_records: vec![],
        revoked_wallets: vec![],
        ledger: vec![],
        receipts: None,
    };
    let forged_chunks =
        seal_chunks(&hosts_key, p.enclave.id(), s.enclave.id(), &forged_state.encode().unwrap())
            .unwrap();
    assert_eq!(
        code(s.enclave.handover_import(0, forged_chunks.len() as u32, &forged_chunks[0])),
        ErrorCode::HandoverRefused
    );
    assert_eq!(s.enclave.answers_for(), vec![s.enclave.id()]);
    // A wrong proof abandons the handover on the predecessor, which keeps deciding.
    assert_eq!(code(p.enclave.handover_export(&[0; 32])), ErrorCode::HandoverRefused);
    p.sign(request(&setup, &legacy_tx(&a, &[sol_transfer(&a, &Pubkey([2; 32]), 1)]), 2)).unwrap();

    // A complete, genuine handover, recorded by the host…
    let offer = s.enclave.handover_offer().unwrap();
    let prepared = p.enclave.handover_prepare(&offer).unwrap();
    let wrapped = kms_wrap(&prepared);
    let envelope = s.kms_envelope(&wrapped);
    let proof =
        s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &envelope).unwrap();
    let total = p.enclave.handover_export(&proof).unwrap();
    let chunks: Vec<Vec<u8>> = (0..total).map(|i| p.enclave.handover_chunk(i).unwrap()).collect();
    // …a tampered chunk does not open…
    let mut tampered = chunks[0].clone();
    tampered[3] ^= 1;
    assert_eq!(code(s.enclave.handover_import(0, total, &tampered)), ErrorCode::HandoverRefused);
    let mut imported = None;
    for (i, c) in chunks.iter().enumerate() {
        if let ImportProgress::Imported { proof } =
            s.enclave.handover_import(i as u32, total, c).unwrap()
        {
            imported = Some(proof);
        }
    }
    // …the successor takes nothing over without the predecessor's commit token…
    assert_eq!(code(s.enclave.handover_finish(&[0; 32])), ErrorCode::HandoverRefused);
    assert_eq!(code(p.enclave.handover_commit(&[0; 32])), ErrorCode::HandoverRefused);
    assert_eq!(s.enclave.answers_for(), vec![s.enclave.id()]);
    let token = p.enclave.handover_commit(&imported.unwrap()).unwrap();
    s.enclave.handover_finish(&token).unwrap();
    // …replayed to the successor later, it is only answered again (a lost reply) and changes
    // nothing; to another enclave, it opens nothing.
    let answers = s.enclave.answers_for();
    assert!(matches!(
        s.enclave.handover_import(0, total, &chunks[0]),
        Ok(ImportProgress::Imported { .. })
    ));
    s.enclave.handover_finish(&token).unwrap();
    assert_eq!(s.enclave.answers_for(), answers);
    assert_eq!(code(s.enclave.handover_import(0, total, &tampered)), ErrorCode::HandoverRefused);
    let other = fixture_on(config(), Arc::clone(&p.clock), 0x10, Some(&fresh_recipient()));
    other.enclave.handover_offer().unwrap();
    assert_eq!(
        code(other.enclave.handover_import(0, total, &chunks[0])),
        ErrorCode::HandoverRefused
    );
    assert_eq!(other.enclave.answers_for(), vec![other.enclave.id()]);
    // And a successor takes over once.
    assert_eq!(code(s.enclave.handover_offer()), ErrorCode::HandoverRefused);
}

#[test]
fn the_state_format_round_trips_and_refuses_damage() {
    let snapshot = StateSnapshot {
        kill_switch: true,
        time_floor: 27,
        answers_for: vec![enclave_core::EnclaveId([1; 16]), enclave_core::EnclaveId([2; 16])],
        requests: vec![([3; 16], [4; 32], 5)],
        scheduled: vec![([6; 48], [7; 16], 8)],
        nonces: vec![([9; 16], 10)],
        revoked_records: vec![([11; 16], 12)],
        revoked_wallets: vec![([13; 32], 14, 28, 15)],
        ledger: vec![enclave_core::policy::SpendRecord {
            key: Some(enclave_core::policy::SpendKey {
                wallet: [16; 32],
                bot_id: [17; 16],
                agent: [18; 32],
            }),
            day: 19,
            lamports: 20,
            tokens: vec![(Pubkey([21; 32]), 22)],
            notional_cents: 23,
            recent: vec![24, 25],
            last_seen: 26,
        }],
        receipts: Some(([29; 16], 30, [31; 32])),
    };
    let bytes = snapshot.encode().unwrap();
    assert_eq!(StateSnapshot::decode(&bytes).unwrap(), snapshot);
    // A state of an image from before receipts (v2: no receipts section) is still read.
    let mut v2 = bytes[..bytes.len() - (1 + 16 + 8 + 32)].to_vec();
    v2[..b"signer/state/v2".len()].copy_from_slice(b"signer/state/v2");
    assert_eq!(
        StateSnapshot::decode(&v2).unwrap(),
        StateSnapshot { receipts: None, ..snapshot.clone() }
    );
    let mut bad_flag = bytes.clone();
    bad_flag[bytes.len() - (1 + 16 + 8 + 32)] = 2;
    assert!(StateSnapshot::decode(&bad_flag).is_err(), "an unknown receipts byte");
    for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(StateSnapshot::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    assert!(StateSnapshot::decode(&[bytes.clone(), vec![0]].concat()).is_err(), "trailing");
    let mut huge = bytes.clone();
    let at = b"signer/state/v2".len() + 1 + 8 + 2 + 32;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(StateSnapshot::decode(&huge).is_err(), "an impossible count");
    // Chunks: bound to both ids, their index and their count.
    let key = Secret32::new([7; 32]);
    let (a, b) = (enclave_core::EnclaveId([1; 16]), enclave_core::EnclaveId([2; 16]));
    let chunks = seal_chunks(&key, a, b, &bytes).unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(*open_chunk(&key, a, b, 0, 1, &chunks[0]).unwrap(), bytes);
    assert!(open_chunk(&key, b, a, 0, 1, &chunks[0]).is_err());
    assert!(open_chunk(&key, a, b, 0, 2, &chunks[0]).is_err());
    let big = vec![0x5a; 192 * 1024 * 3 + 1];
    assert_eq!(seal_chunks(&key, a, b, &big).unwrap().len(), 4);
    assert!(seal_chunks(&key, a, b, &vec![0; 192 * 1024 * MAX_CHUNKS as usize + 1]).is_err());
}

/// Found in review: an import that could fail halfway (a successor configured smaller, or one
/// that had already decided something) stranded both enclaves, the predecessor already stopped.
/// Now every store makes room first and the states merge, as strictly as either side.
#[test]
fn a_smaller_or_busy_successor_still_takes_over_and_keeps_the_stricter_state() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let p = fixture_on(config(), Arc::clone(&clock), 0x10, None);
    let mut small = config();
    small.request_store_capacity = 1;
    let s = fixture_on(small, clock, 0x10, Some(&fresh_recipient()));
    let setup = p.setup(0x75, policy());
    let a = setup.agent.agent_pubkey;
    let tx = |id: u8| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([id; 32]), 1)]);
    for id in 1..=3 {
        p.sign(request(&setup, &tx(id), id)).unwrap();
    }
    // The successor already decided something of its own, and engaged its kill switch.
    let own = s.setup(0x76, policy());
    let b = own.agent.agent_pubkey;
    s.sign(request(&own, &legacy_tx(&b, &[sol_transfer(&b, &Pubkey([9; 32]), 1)]), 0x30)).unwrap();
    s.enclave.set_kill_switch(true).unwrap();

    let imported = hand_over(&p, &s).unwrap();
    assert_eq!(imported.request_ids, 3);
    // The kill switch engaged on either side stays engaged.
    assert_eq!(code(s.sign(request(&setup, &tx(7), 1))), ErrorCode::KillSwitch);
    s.enclave.set_kill_switch(false).unwrap();
    // Every request id arrived although the store was configured for one…
    for id in 1..=3 {
        assert_eq!(code(s.sign(request(&setup, &tx(7), id))), ErrorCode::ReplayedRequest);
    }
    // …and the successor's own bound still holds for new work: full of live ids, it refuses
    // rather than forgets.
    assert_eq!(code(s.sign(request(&setup, &tx(4), 4))), ErrorCode::EnclaveUnavailable);
}

#[test]
fn merged_counters_add_up_on_the_same_day_and_never_loosen() {
    use enclave_core::policy::{Ledger, Spend, SpendKey, SpendRecord};
    let key = SpendKey { wallet: [1; 32], bot_id: [2; 16], agent: [3; 32] };
    let spend = |lamports| Spend {
        lamports,
        tokens: vec![(Pubkey([4; 32]), 10)],
        fee_lamports: 0,
        agent_pays_fee: false,
        notional_cents: 5,
    };
    let mut ledger = Ledger::default();
    ledger.record(key, &spend(100), T0);
    let day = T0 / 86_400;
    let incoming = |day: u64, lamports: u64| SpendRecord {
        key: Some(key),
        day,
        lamports,
        tokens: vec![(Pubkey([4; 32]), 7), (Pubkey([5; 32]), 1)],
        notional_cents: 3,
        recent: vec![T0 - 5],
        last_seen: T0 - 5,
    };
    ledger.import(vec![incoming(day, 50)]);
    let r = ledger.export().into_iter().next().unwrap();
    assert_eq!((r.day, r.lamports, r.notional_cents), (day, 150, 8));
    assert_eq!(r.tokens, vec![(Pubkey([4; 32]), 17), (Pubkey([5; 32]), 1)]);
    assert_eq!(r.recent.len(), 2);
    // An older day's counters change nothing; a newer day's replace the stale ones.
    ledger.import(vec![incoming(day - 1, 1_000)]);
    assert_eq!(ledger.export()[0].lamports, 150);
    ledger.import(vec![incoming(day + 1, 9)]);
    assert_eq!((ledger.export()[0].day, ledger.export()[0].lamports), (day + 1, 9));
}

#[test]
fn one_receipt_chain_spans_the_handover_and_verifies_end_to_end() {
    use enclave_core::enclave::receipts::MAX_PAGE_BYTES;
    let (p, s) = pair(0x10, &[]);
    let setup = p.setup(0x75, policy());
    let a = setup.agent.agent_pubkey;
    let tx = |n| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([1; 32]), n)]);
    p.sign(request(&setup, &tx(1), 1)).unwrap();
    hand_over(&p, &s).unwrap();
    let after = s.sign(request(&setup, &tx(2), 2)).unwrap();
    assert!(after.receipt.is_some());

    let theirs = p.enclave.receipts(None, MAX_PAGE_BYTES).receipts;
    let ours = s.enclave.receipts(None, MAX_PAGE_BYTES).receipts;
    let kind = |r: &[u8]| signer_receipts::Receipt::decode(r).unwrap().body.kind_name();
    assert_eq!(theirs.last().map(|r| kind(r)), Some("handover_out"));
    assert!(ours.iter().any(|r| kind(r) == "handover_in"));
    let all: Vec<&[u8]> = theirs.iter().chain(ours.iter()).map(|r| &r[..]).collect();
    let checkpoints = [p.enclave.checkpoint().unwrap(), s.enclave.checkpoint().unwrap()];
    let keys = [
        (p.enclave.id().0, p.enclave.checkpoint_public_key()),
        (s.enclave.id().0, s.enclave.checkpoint_public_key()),
    ];
    let report = signer_receipts::verify(&all, &checkpoints, &keys);
    assert_eq!(report.handovers.len(), 1, "{report:?}");
    assert!(report.forks.is_empty() && report.gaps.is_empty(), "{report:?}");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chains.len(), 2, "the predecessor's, continued by the successor's");
}

#[test]
fn an_aborted_handover_leaves_no_receipt_and_the_chain_goes_on() {
    use enclave_core::enclave::receipts::MAX_PAGE_BYTES;
    let (p, s) = pair(0x10, &[]);
    let setup = p.setup(0x76, policy());
    let a = setup.agent.agent_pubkey;
    let tx = |n| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([1; 32]), n)]);
    p.sign(request(&setup, &tx(1), 1)).unwrap();
    // Exported (frozen), then abandoned: the predecessor decides again.
    let offer = s.enclave.handover_offer().unwrap();
    let prepared = p.enclave.handover_prepare(&offer).unwrap();
    let envelope = s.kms_envelope(&kms_wrap(&prepared));
    let proof =
        s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &envelope).unwrap();
    p.enclave.handover_export(&proof).unwrap();
    p.enclave.handover_abort().unwrap();
    p.sign(request(&setup, &tx(2), 2)).unwrap();
    let page = p.enclave.receipts(None, MAX_PAGE_BYTES).receipts;
    let kinds: Vec<&str> = page
        .iter()
        .map(|r| signer_receipts::Receipt::decode(r).unwrap().body.kind_name())
        .collect();
    assert!(!kinds.contains(&"handover_out"), "{kinds:?}");
    let report = signer_receipts::verify(
        &page,
        &[p.enclave.checkpoint().unwrap()],
        &[(p.enclave.id().0, p.enclave.checkpoint_public_key())],
    );
    assert!(report.ok(), "{report:?}");
}
