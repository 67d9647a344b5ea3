//! Regressions for the third independent review: the bounded spend ledger, nonces only from the
//! enclave, revocations ordered by the enclave's own events, a handover that can be resumed or
//! aborted and never strands or doubles the decider, the per-transaction SOL limit counting the
//! fee the message says it counts, and the agent's one role in a `TransferChecked`. Each test
//! fails on the code before the fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use common::*;
use enclave_core::enclave::handover::{ImportProgress, seal_chunks};
use enclave_core::enclave::{AuthorizeGrant, CreateGrant, RevokeTarget, SignRequest, VaultProof};
use enclave_core::policy::Rule;
use enclave_core::records::{WrapAlg, WrappedKey};
use enclave_core::{EnclaveError, ErrorCode, OsRandom, Pubkey, Secret32, SignOutcome};

fn code<T: std::fmt::Debug>(r: Result<T, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

fn one_sol_transfer(s: &Setup, lamports: u64) -> Vec<u8> {
    let a = s.agent.agent_pubkey;
    legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), lamports)])
}

/// A grant for another bot of the same wallet, vault and agent.
fn grant_for_bot(f: &Fixture, s: &Setup, bot: u8) -> Setup {
    let mut terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 3600);
    terms.bot_id = [bot; 16];
    let grant = f.try_grant(&s.user, &s.vault, terms).unwrap();
    Fixture::with_grant(s, grant)
}

fn sign_as_bot(f: &Fixture, s: &Setup, bot: u8, request_id: u8) -> Result<(), EnclaveError> {
    let tx = one_sol_transfer(s, 1);
    f.sign(SignRequest { bot_id: [bot; 16], ..request(s, &tx, request_id) }).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// The spend ledger is bounded per wallet and in total; at capacity new counters are refused and
// existing ones keep working.

#[test]
fn the_spend_ledger_is_bounded_per_wallet_then_in_total_and_existing_counters_keep_signing() {
    let mut c = config();
    c.spend_counter_capacity = 4;
    c.spend_counters_per_wallet = 2;
    let f = fixture_with(c);
    let a = f.setup(0x31, policy());
    let (a1, a2, a3) =
        (grant_for_bot(&f, &a, 1), grant_for_bot(&f, &a, 2), grant_for_bot(&f, &a, 3));
    sign_as_bot(&f, &a1, 1, 1).unwrap();
    sign_as_bot(&f, &a2, 2, 2).unwrap();
    // The wallet's third counter is refused, naming the wallet and its limit; nothing signed.
    let signatures = f.enclave.status().signatures;
    let err = sign_as_bot(&f, &a3, 3, 3).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EnclaveUnavailable, "{err}");
    assert!(
        err.to_string().contains(&a.wallet.to_string())
            && err.to_string().contains("2 spend counters"),
        "{err}"
    );
    assert_eq!(f.enclave.status().signatures, signatures);
    // Another tenant is not affected by the first one's wallet being full…
    let b = f.setup(0x32, policy());
    let (b1, b2) = (grant_for_bot(&f, &b, 1), grant_for_bot(&f, &b, 2));
    sign_as_bot(&f, &b1, 1, 4).unwrap();
    sign_as_bot(&f, &b2, 2, 5).unwrap();
    assert_eq!(f.enclave.status().spend_counters, 4);
    // …until the whole ledger is full: then a new counter is refused for everyone…
    let c = f.setup(0x33, policy());
    let c1 = grant_for_bot(&f, &c, 1);
    let err = sign_as_bot(&f, &c1, 1, 6).unwrap_err();
    assert_eq!(err.code(), ErrorCode::EnclaveUnavailable);
    assert!(err.to_string().contains("holds 4 live counters"), "{err}");
    // …while every existing counter keeps signing (and is never forgotten: limits hold).
    sign_as_bot(&f, &a1, 1, 7).unwrap();
    sign_as_bot(&f, &b2, 2, 8).unwrap();
    // Counters age out after the day after their last use; then there is room again.
    f.clock.advance(2 * 86_400);
    let c1 = grant_for_bot(&f, &c, 1);
    sign_as_bot(&f, &c1, 1, 9).unwrap();
    assert_eq!(f.enclave.status().spend_counters, 1);
}

// ---------------------------------------------------------------------------------------------
// Nonces come from the enclave.

fn create(
    f: &Fixture,
    s: &Setup,
    terms: &AuthorizeGrant,
    nonce: &str,
    issued_at: u64,
) -> Result<enclave_core::enclave::CreatedGrant, EnclaveError> {
    let message = f.grant_message(&domain(), terms, nonce, issued_at);
    let signature = s.user.sign(&message);
    f.unlocked(|envelope| {
        f.enclave.create_grant(&CreateGrant {
            grant: terms.clone(),
            nonce,
            issued_at,
            signature,
            vault: VaultProof { record: &s.vault.record, provenance: &s.vault.provenance },
            envelope,
        })
    })
}

#[test]
fn a_nonce_the_enclave_did_not_issue_for_this_wallet_purpose_and_time_is_refused() {
    let f = fixture();
    let s = f.setup(0x40, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    let other = f.setup(0x41, policy());
    let used_before = f.enclave.status().nonces_used;
    // A nonce the client made up, correctly signed by the wallet.
    let err = create(&f, &s, &terms, "00112233445566778899aabbccddeeff", T0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationNonceUnknown, "{err}");
    assert!(err.to_string().contains("not issued by this enclave"), "{err}");
    // A nonce issued to another wallet.
    let theirs = f
        .enclave
        .authorize_grant(&f.terms(other.wallet, other.agent.agent_pubkey, policy(), 600))
        .unwrap();
    assert_eq!(
        code(create(&f, &s, &terms, &theirs.nonce, theirs.issued_at)),
        ErrorCode::AuthorizationNonceUnknown
    );
    // A nonce issued for an import, used for a grant.
    let import = f.enclave.authorize_import(s.wallet, &origin1_vault(&f, &s)).unwrap();
    assert_eq!(
        code(create(&f, &s, &terms, &import.nonce, import.issued_at)),
        ErrorCode::AuthorizationNonceUnknown
    );
    // The enclave's nonce with another `Issued At` (the client rendered its own message).
    let auth = f.enclave.authorize_grant(&terms).unwrap();
    assert_eq!(
        code(create(&f, &s, &terms, &auth.nonce, auth.issued_at - 1)),
        ErrorCode::AuthorizationNonceUnknown
    );
    assert_eq!(f.enclave.status().nonces_used, used_before, "nothing consumed");
    // The message as issued works; the same signature again is the same grant, the nonce under
    // another signed message is a replay.
    let first = create(&f, &s, &terms, &auth.nonce, auth.issued_at).unwrap();
    assert_eq!(
        create(&f, &s, &terms, &auth.nonce, auth.issued_at).unwrap().grant_id,
        first.grant_id
    );
    let mut longer = terms.clone();
    longer.ttl_seconds += 1;
    assert_eq!(
        code(create(&f, &s, &longer, &auth.nonce, auth.issued_at)),
        ErrorCode::AuthorizationReplayed
    );
    // Past its validity the nonce is forgotten.
    let late = f.enclave.authorize_grant(&terms).unwrap();
    f.clock.advance(600);
    assert_eq!(
        code(create(&f, &s, &terms, &late.nonce, late.issued_at)),
        ErrorCode::AuthorizationExpired
    );
}

/// A browser-sealed (origin 1) vault record for `s`'s wallet.
fn origin1_vault(f: &Fixture, s: &Setup) -> Vec<u8> {
    use enclave_core::records::{KeyWrap, seal_vault};
    use signer_types::records::{VaultHeader, VaultOrigin};
    let header = VaultHeader {
        wallet: s.wallet,
        vault_id: [0x42; 16],
        created_at: T0,
        origin: VaultOrigin::Imported,
    };
    let public = rsa::RsaPublicKey::from(&f.kms);
    seal_vault(&header, &Secret32::new([0x43; 32]), KeyWrap::Rsa(&public), &OsRandom).unwrap()
}

#[test]
fn a_full_nonce_store_gives_up_the_oldest_message_not_every_new_one() {
    let mut c = config();
    c.nonce_store_capacity = 2;
    let f = fixture_with(c);
    let s = f.setup(0x44, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    let first = f.enclave.authorize_grant(&terms).unwrap();
    f.clock.advance(1);
    let second = f.enclave.authorize_grant(&terms).unwrap();
    f.clock.advance(1);
    let third = f.enclave.authorize_grant(&terms).unwrap();
    assert_eq!(
        code(create(&f, &s, &terms, &first.nonce, first.issued_at)),
        ErrorCode::AuthorizationNonceUnknown
    );
    create(&f, &s, &terms, &second.nonce, second.issued_at).unwrap();
    create(&f, &s, &terms, &third.nonce, third.issued_at).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Revocations and grants are ordered by the enclave's events.

#[test]
fn a_wallet_revocation_is_ordered_by_the_enclaves_events_not_by_message_times() {
    let f = fixture();
    let s = f.setup(0x50, policy());
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    // Rendered before the revocation, created before it: revoked with it, whatever the second.
    let before = f.try_grant(&s.user, &s.vault, terms.clone()).unwrap();
    // Rendered before the revocation, not yet used: the revocation voids it.
    let pending = f.enclave.authorize_grant(&terms).unwrap();
    f.enclave.revoke(RevokeTarget::Wallet(s.wallet)).unwrap();
    let tx = one_sol_transfer(&s, 1);
    let revoked = Fixture::with_grant(&s, before);
    assert_eq!(code(f.sign(request(&revoked, &tx, 1))), ErrorCode::GrantRevoked);
    let err = create(&f, &s, &terms, &pending.nonce, pending.issued_at).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthorizationNonceUnknown, "{err}");
    // Created in the same second after the revocation: alive (issued just after the cutoff).
    let after = f.try_grant(&s.user, &s.vault, terms.clone()).unwrap();
    assert_eq!(after.issued_at, T0 + 1, "issued one second after the cutoff, within the skew");
    let alive = Fixture::with_grant(&s, after.clone());
    f.sign(request(&alive, &tx, 2)).unwrap();
    // A second revocation in the same second still covers that grant…
    f.enclave.revoke(RevokeTarget::Wallet(s.wallet)).unwrap();
    assert_eq!(code(f.sign(request(&alive, &tx, 3))), ErrorCode::GrantRevoked);
    // …and the next grant is again issued after it.
    let next = f.try_grant(&s.user, &s.vault, terms.clone()).unwrap();
    assert_eq!(next.issued_at, T0 + 2);
    f.sign(request(&Fixture::with_grant(&s, next), &tx, 4)).unwrap();
    // Another wallet is untouched.
    let other = f.setup(0x51, policy());
    f.sign(request(&other, &one_sol_transfer(&other, 1), 5)).unwrap();
}

#[test]
fn a_scheduled_record_dated_ahead_by_its_creator_does_not_escape_a_revocation() {
    use enclave_core::policy::Intent;
    let f = fixture();
    let dest = Pubkey([0x52; 32]);
    let intent = Intent { destination: dest.0, mint: [0; 32], amount: 5 };
    // Created (by a browser) just before the revocation, dated the full skew ahead.
    let (record, agent) = f.scheduled_record([0x53; 32], &intent, |h| {
        h.wallet = Pubkey([0x54; 32]);
        h.created_at = T0 + 60;
        h.not_before = T0;
    });
    f.enclave.revoke(RevokeTarget::Wallet(Pubkey([0x54; 32]))).unwrap();
    let tx = legacy_tx(&agent, &[sol_transfer(&agent, &dest, 5)]);
    assert_eq!(code(f.sign_scheduled(&record, &tx, 1)), ErrorCode::GrantRevoked);
}

// ---------------------------------------------------------------------------------------------
// Handover: authenticated before sizing; resumable or abortable; a frozen enclave is no
// successor.

fn instance(clock: &Arc<ManualClock>) -> Fixture {
    fixture_on(config(), Arc::clone(clock), 0x10, Some(&fresh_recipient()))
}

/// Offer, prepare, KMS, accept, export: returns the chunk count (the predecessor is frozen).
fn export(p: &Fixture, s: &Fixture) -> Result<u32, EnclaveError> {
    let offer = s.enclave.handover_offer()?;
    let prepared = p.enclave.handover_prepare(&offer)?;
    let wrapped = WrappedKey {
        alg: WrapAlg::RsaesOaepSha256,
        ciphertext: prepared.wrapped_key.clone(),
        encryption_context: None,
    };
    let envelope = s.kms_envelope(&wrapped);
    let proof = s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &envelope)?;
    p.enclave.handover_export(&proof)
}

fn import_all(p: &Fixture, s: &Fixture, total: u32) -> Result<[u8; 32], EnclaveError> {
    let mut proof = None;
    for i in 0..total {
        if let ImportProgress::Imported { proof: p } =
            s.enclave.handover_import(i, total, &p.enclave.handover_chunk(i)?)?
        {
            proof = Some(p);
        }
    }
    Ok(proof.expect("complete"))
}

fn finish(p: &Fixture, s: &Fixture, total: u32) -> Result<(), EnclaveError> {
    let imported = import_all(p, s, total)?;
    let token = p.enclave.handover_commit(&imported)?;
    s.enclave.handover_finish(&token).map(|_| ())
}

#[test]
fn a_forged_first_chunk_sizes_nothing_and_the_genuine_import_completes() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s) = (instance(&clock), instance(&clock));
    let setup = p.setup(0x60, policy());
    p.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
    let total = export(&p, &s).unwrap();
    assert_eq!(total, 1);
    // The host sends a frame claiming 7 chunks, sealed under a key of its own, first.
    let bogus =
        seal_chunks(&Secret32::new([0x66; 32]), p.enclave.id(), s.enclave.id(), &[0; 16]).unwrap();
    for index in [0, 3, 6] {
        assert_eq!(
            code(s.enclave.handover_import(index, 7, &bogus[0])),
            ErrorCode::HandoverRefused
        );
    }
    // The genuine chunk still completes the import.
    finish(&p, &s, total).unwrap();
    assert_eq!(s.enclave.answers_for(), vec![s.enclave.id(), p.enclave.id()]);
    s.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
}

#[test]
fn an_interrupted_handover_resumes_to_the_same_successor() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s) = (instance(&clock), instance(&clock));
    let setup = p.setup(0x61, policy());
    p.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
    let total = export(&p, &s).unwrap();
    // The relay stops after the export: the predecessor is frozen, the successor decides
    // nothing for it yet. Exactly nobody decides the predecessor's grants for a while…
    assert_eq!(
        code(p.sign(request(&setup, &one_sol_transfer(&setup, 1), 2))),
        ErrorCode::EnclaveHandedOver
    );
    assert_eq!(
        code(s.sign(request(&setup, &one_sol_transfer(&setup, 1), 2))),
        ErrorCode::WrongEnclave
    );
    // …then the parent resumes from the predecessor's export (no new offer), twice even.
    let imported = import_all(&p, &s, total).unwrap();
    let token = p.enclave.handover_commit(&imported).unwrap();
    assert_eq!(p.enclave.handover_commit(&imported).unwrap(), token, "commit repeats its token");
    assert_eq!(code(p.enclave.handover_abort()), ErrorCode::HandoverRefused, "committed: no abort");
    s.enclave.handover_finish(&token).unwrap();
    s.sign(request(&setup, &one_sol_transfer(&setup, 1), 2)).unwrap();
    assert_eq!(
        code(p.sign(request(&setup, &one_sol_transfer(&setup, 1), 3))),
        ErrorCode::EnclaveHandedOver
    );
}

#[test]
fn an_aborted_handover_leaves_the_predecessor_deciding_and_the_successor_unable_to_take_over() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s) = (instance(&clock), instance(&clock));
    let setup = p.setup(0x62, policy());
    let total = export(&p, &s).unwrap();
    let imported = import_all(&p, &s, total).unwrap();
    // The successor holds the whole state but has no token; the predecessor aborts.
    assert_eq!(p.enclave.handover_abort().unwrap(), Some(s.enclave.id()));
    p.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
    assert_eq!(code(p.enclave.handover_commit(&imported)), ErrorCode::HandoverRefused);
    assert_eq!(code(s.enclave.handover_finish(&[0; 32])), ErrorCode::HandoverRefused);
    assert_eq!(s.enclave.answers_for(), vec![s.enclave.id()]);
    assert_eq!(
        code(s.sign(request(&setup, &one_sol_transfer(&setup, 1), 2))),
        ErrorCode::WrongEnclave
    );
    // And the predecessor can hand over again, to a new successor.
    let s2 = instance(&clock);
    let total = export(&p, &s2).unwrap();
    finish(&p, &s2, total).unwrap();
    s2.sign(request(&setup, &one_sol_transfer(&setup, 1), 3)).unwrap();
}

#[test]
fn a_handover_back_to_a_frozen_predecessor_is_refused_and_nothing_is_lost() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (a, s1, s2) = (instance(&clock), instance(&clock), instance(&clock));
    let setup = a.setup(0x63, policy());
    let total = export(&a, &s1).unwrap();
    finish(&a, &s1, total).unwrap();
    let total = export(&s1, &s2).unwrap();
    finish(&s1, &s2, total).unwrap();
    // S2 → A: A is frozen (not yet terminated, as the runbook allows) and refuses to be a
    // successor; S2 keeps deciding.
    let err = export(&s2, &a).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HandoverRefused);
    assert!(err.to_string().contains("cannot be a successor"), "{err}");
    assert!(s2.enclave.status().handed_over_to.is_none());
    s2.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
    // A successor mid-import cannot hand over, and an enclave mid-export cannot be a successor.
    let s3 = instance(&clock);
    let total = export(&s2, &s3).unwrap();
    assert!(total >= 1);
    let s4 = instance(&clock);
    assert_eq!(code(export(&s3, &s4)), ErrorCode::HandoverRefused);
    assert_eq!(code(s2.enclave.handover_offer()), ErrorCode::HandoverRefused);
}

// ---------------------------------------------------------------------------------------------
// Policy: the messages are true.

#[test]
fn the_per_transaction_sol_limit_counts_the_fee_the_agent_pays() {
    let f = fixture();
    let s = f.setup(0x70, policy());
    // 2 SOL per tx; the agent pays 5 000 lamports of fee.
    let d = match f.sign(request(&s, &one_sol_transfer(&s, 2_000_000_000), 1)).unwrap_err() {
        EnclaveError::PolicyDenied(d) => d,
        e => panic!("{e}"),
    };
    assert_eq!((d.rule, d.requested), (Rule::MaxLamportsPerTx, Some(2_000_005_000)));
    f.sign(request(&s, &one_sol_transfer(&s, 1_999_995_000), 2)).unwrap();
}

#[test]
fn the_agent_stands_nowhere_in_a_transfer_checked_but_as_its_authority() {
    use enclave_core::pubkey::programs;
    let f = fixture();
    let mut p = policy();
    let mint = p.tokens[0].mint;
    p.tokens[0].max_per_tx = 1_000_000;
    let s = f.setup(0x71, p);
    let a = s.agent.agent_pubkey;
    let dest = Pubkey([0x72; 32]);
    let source = Pubkey([0x73; 32]);
    for (name, src, m, d) in
        [("source", a, mint, dest), ("mint", source, a, dest), ("destination", source, mint, a)]
    {
        let tx = legacy_tx(&a, &[token_transfer(&programs::TOKEN, &src, &m, &d, &a, 5)]);
        match f.sign(request(&s, &tx, 1)) {
            Err(EnclaveError::PolicyDenied(denial)) => {
                // A mint that is the agent is not a listed mint: refused before the role check.
                if name == "mint" {
                    assert!(
                        matches!(denial.rule, Rule::TokenNotAllowed | Rule::AgentRole),
                        "{denial:?}"
                    );
                } else {
                    assert_eq!(denial.rule, Rule::AgentRole, "{name}: {denial:?}");
                }
            }
            other => panic!("{name}: {:?}", other.map(|_| ())),
        }
    }
    let tx = legacy_tx(&a, &[token_transfer(&programs::TOKEN, &source, &mint, &dest, &a, 5)]);
    match f.enclave.sign(&request(&s, &tx, 2)) {
        Ok(SignOutcome::Signed(signed)) => {
            verify_independently(&signed.transaction);
        }
        Ok(SignOutcome::NeedKey(_)) => {
            f.sign(request(&s, &tx, 2)).unwrap();
        }
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions from the independent review of the fixes above.

#[test]
fn replaying_a_signed_revoke_all_neither_revokes_later_grants_nor_locks_the_wallet_out() {
    use enclave_core::authorization::RevokeScope;
    use enclave_core::enclave::WalletRevoke;
    let f = fixture();
    let s = f.setup(0x64, policy());
    let auth = f.enclave.authorize_revoke(s.wallet, RevokeScope::All).unwrap();
    let req = WalletRevoke {
        wallet: s.wallet,
        scope: RevokeScope::All,
        nonce: &auth.nonce,
        issued_at: auth.issued_at,
        signature: s.user.sign(&auth.message),
    };
    f.enclave.revoke_signed(&req).unwrap();
    f.clock.advance(5);
    let later = f.grant(&s.user, &s.vault, s.agent.agent_pubkey, policy(), 600);
    let later = Fixture::with_grant(&s, later);
    f.sign(request(&later, &one_sol_transfer(&s, 1), 1)).unwrap();
    f.clock.advance(5);
    for _ in 0..100 {
        f.enclave.revoke_signed(&req).unwrap();
    }
    // The replays are answered but change nothing: the later grant signs, and new messages
    // are issued at the enclave's time (not pushed ahead of it).
    f.sign(request(&later, &one_sol_transfer(&s, 1), 2)).unwrap();
    let terms = f.terms(s.wallet, s.agent.agent_pubkey, policy(), 600);
    assert_eq!(f.enclave.authorize_grant(&terms).unwrap().issued_at, T0 + 10);
}

#[test]
fn a_clock_that_steps_back_cannot_date_a_revocation_before_the_grants_it_follows() {
    let f = fixture();
    let s = f.setup(0x65, policy());
    f.clock.set(T0 - 30);
    f.enclave.revoke(RevokeTarget::Wallet(s.wallet)).unwrap();
    assert_eq!(code(f.sign(request(&s, &one_sol_transfer(&s, 1), 1))), ErrorCode::GrantRevoked);
}

#[test]
fn after_a_handover_from_an_enclave_whose_clock_ran_ahead_revocations_still_cover_its_grants() {
    // Two seconds ahead (the sim CA back-dates certificates by a few seconds only; the
    // property is the same for any offset within the clock skew).
    let ahead = Arc::new(ManualClock(AtomicU64::new(T0 + 2), AtomicU64::new(0)));
    let behind = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let p = fixture_on(config(), ahead, 0x10, Some(&fresh_recipient()));
    let s = fixture_on(config(), behind, 0x10, Some(&fresh_recipient()));
    let setup = p.setup(0x66, policy());
    assert_eq!(setup.grant.issued_at, T0 + 2);
    let total = export(&p, &s).unwrap();
    finish(&p, &s, total).unwrap();
    s.enclave.revoke(RevokeTarget::Wallet(setup.wallet)).unwrap();
    assert_eq!(
        code(s.sign(request(&setup, &one_sol_transfer(&setup, 1), 1))),
        ErrorCode::GrantRevoked
    );
    // And a grant the successor makes afterwards is not dead on arrival.
    let after = s.grant(&setup.user, &setup.vault, setup.agent.agent_pubkey, policy(), 600);
    s.sign(request(&Fixture::with_grant(&setup, after), &one_sol_transfer(&setup, 1), 2)).unwrap();
}

#[test]
fn one_wallet_asking_for_many_messages_gives_up_its_own_not_another_wallets() {
    let mut c = config();
    c.nonce_store_capacity = 20;
    let f = fixture_with(c);
    let victim = f.setup(0x67, policy());
    let attacker = f.setup(0x68, policy());
    let terms = f.terms(victim.wallet, victim.agent.agent_pubkey, policy(), 600);
    let pending = f.enclave.authorize_grant(&terms).unwrap();
    let theirs = f.terms(attacker.wallet, attacker.agent.agent_pubkey, policy(), 600);
    let flood: Vec<_> = (0..100).map(|_| f.enclave.authorize_grant(&theirs).unwrap()).collect();
    create(&f, &victim, &terms, &pending.nonce, pending.issued_at).unwrap();
    // The attacker keeps only its 16 newest messages.
    let oldest = &flood[0];
    assert_eq!(
        code(create(&f, &attacker, &theirs, &oldest.nonce, oldest.issued_at)),
        ErrorCode::AuthorizationNonceUnknown
    );
    let newest = &flood[99];
    create(&f, &attacker, &theirs, &newest.nonce, newest.issued_at).unwrap();
}

#[test]
fn a_lost_finish_reply_is_answered_again_and_the_relay_can_resume_after_it() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s) = (instance(&clock), instance(&clock));
    let total = export(&p, &s).unwrap();
    let imported = import_all(&p, &s, total).unwrap();
    let token = p.enclave.handover_commit(&imported).unwrap();
    let first = s.enclave.handover_finish(&token).unwrap();
    // The reply is lost; the parent resumes: the chunks and the finish are answered again.
    assert_eq!(import_all(&p, &s, total).unwrap(), imported);
    assert_eq!(s.enclave.handover_finish(&token).unwrap(), first);
    assert_eq!(code(s.enclave.handover_finish(&[0; 32])), ErrorCode::HandoverRefused);
}

#[test]
fn a_frozen_enclave_accepts_no_state_through_an_earlier_offer() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s, x) = (instance(&clock), instance(&clock), instance(&clock));
    // S offers to P first, then hands its own state to X and freezes.
    let offer_for_p = s.enclave.handover_offer().unwrap();
    let total = export(&s, &x).unwrap();
    assert!(total >= 1);
    // P prepares on S's earlier offer; S, frozen, refuses to accept.
    let prepared = p.enclave.handover_prepare(&offer_for_p).unwrap();
    let wrapped = WrappedKey {
        alg: WrapAlg::RsaesOaepSha256,
        ciphertext: prepared.wrapped_key.clone(),
        encryption_context: None,
    };
    let envelope = s.kms_envelope(&wrapped);
    let err = s
        .enclave
        .handover_accept(&prepared.document, &prepared.wrapped_key, &envelope)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::HandoverRefused, "{err}");
    // P never froze: it still decides.
    let setup = p.setup(0x69, policy());
    p.sign(request(&setup, &one_sol_transfer(&setup, 1), 1)).unwrap();
}

#[test]
fn a_signed_revocation_the_store_refused_is_done_when_sent_again() {
    use enclave_core::authorization::RevokeScope;
    use enclave_core::enclave::WalletRevoke;
    let mut c = config();
    c.revocation_capacity = 1;
    let f = fixture_with(c);
    let a = f.setup(0x6a, policy());
    let b = f.setup(0x6b, policy());
    f.enclave.revoke(RevokeTarget::Wallet(a.wallet)).unwrap();
    let auth = f.enclave.authorize_revoke(b.wallet, RevokeScope::All).unwrap();
    let req = WalletRevoke {
        wallet: b.wallet,
        scope: RevokeScope::All,
        nonce: &auth.nonce,
        issued_at: auth.issued_at,
        signature: b.user.sign(&auth.message),
    };
    // The store is full: refused, and the nonce is not spent, so the same request sent again
    // is tried again (still refused here), never answered as if it had been done.
    assert_eq!(code(f.enclave.revoke_signed(&req)), ErrorCode::EnclaveUnavailable);
    assert_eq!(code(f.enclave.revoke_signed(&req)), ErrorCode::EnclaveUnavailable);
    f.sign(request(&b, &one_sol_transfer(&b, 1), 1)).unwrap();
    assert_eq!(f.enclave.status().nonces_used, 2, "only the two grants' nonces are spent");
}

#[test]
fn an_enclave_taking_a_state_in_gives_none_away_and_an_abandoned_take_over_does_not_trap_it() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let (p, s, x) = (instance(&clock), instance(&clock), instance(&clock));
    // S accepts P's handover…
    let offer = s.enclave.handover_offer().unwrap();
    let prepared = p.enclave.handover_prepare(&offer).unwrap();
    let wrapped = WrappedKey {
        alg: WrapAlg::RsaesOaepSha256,
        ciphertext: prepared.wrapped_key.clone(),
        encryption_context: None,
    };
    let envelope = s.kms_envelope(&wrapped);
    s.enclave.handover_accept(&prepared.document, &prepared.wrapped_key, &envelope).unwrap();
    // …and cannot export its own state to X meanwhile.
    let x_offer = x.enclave.handover_offer().unwrap();
    let to_x = s.enclave.handover_prepare(&x_offer);
    if let Ok(prep) = to_x {
        let wrapped = WrappedKey {
            alg: WrapAlg::RsaesOaepSha256,
            ciphertext: prep.wrapped_key.clone(),
            encryption_context: None,
        };
        let env = x.kms_envelope(&wrapped);
        let proof = x.enclave.handover_accept(&prep.document, &prep.wrapped_key, &env).unwrap();
        assert_eq!(code(s.enclave.handover_export(&proof)), ErrorCode::HandoverRefused);
    }
    // P aborts before exporting: S is not trapped, a new offer works.
    p.enclave.handover_abort().unwrap();
    s.enclave.handover_offer().unwrap();
}
