//! Regression tests for the findings of the independent security review (policy holes, ledger
//! races, cache poisoning, single-use namespaces). Each failed on the code before its fix; the
//! padding-oracle finding has its own file (`padding_oracle.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use enclave_core::enclave::{NewAgentKind, RevokeTarget};
use enclave_core::policy::{Denial, Intent, Rule};
use enclave_core::pubkey::programs;
use enclave_core::records::{GrantContents, ScheduledHeader};
use enclave_core::{EnclaveError, ErrorCode, Pubkey, Secret32, SignOutcome};
use solana_instruction::AccountMeta;

const DEST: Pubkey = Pubkey([9; 32]);
const MINT: Pubkey = Pubkey([0x55; 32]);
const DEX: Pubkey = Pubkey([0x77; 32]);

fn denial(r: Result<impl std::fmt::Debug, EnclaveError>) -> Denial {
    match r {
        Err(EnclaveError::PolicyDenied(d)) => d,
        other => panic!("expected a policy denial, got {other:?}"),
    }
}

/// A second signer (fee payer or counterparty) that is not the agent.
const OTHER: Pubkey = Pubkey([0x3c; 32]);

// ---- High: the agent's role in System and token instructions --------------------------------

#[test]
fn create_account_cannot_make_the_agent_the_new_account() {
    let f = fixture();
    let s = f.setup(0x80, policy());
    let a = s.agent.agent_pubkey;
    // Someone else funds it, the zero-balance agent becomes an account owned by any program.
    let hijack = solana_system_interface::instruction::create_account(
        &address(&OTHER),
        &address(&a),
        1_000_000,
        0,
        &address(&DEX),
    );
    let d = denial(f.sign(request(&s, &legacy_tx(&OTHER, &[hijack]), 1)));
    assert_eq!(d.rule, Rule::AgentRole);
    assert!(d.message.contains("funding account"), "{}", d.message);
    // Funding itself into itself is refused too.
    let into_self = solana_system_interface::instruction::create_account(
        &address(&a),
        &address(&a),
        1_000_000,
        0,
        &address(&DEX),
    );
    let d = denial(f.sign(request(&s, &legacy_tx(&a, &[into_self]), 2)));
    assert_eq!(d.rule, Rule::AgentRole);
    assert!(d.message.contains("cannot be the account CreateAccount creates"), "{}", d.message);
    assert_eq!(f.enclave.status().signatures, 0);
}

#[test]
fn counted_transfers_come_from_the_agent_and_the_agent_stands_nowhere_else() {
    let f = fixture();
    let s = f.setup(0x81, policy());
    let a = s.agent.agent_pubkey;
    // A transfer whose source is a co-signer is not the agent's outflow: refused, not counted.
    let d = denial(f.sign(request(
        &s,
        &legacy_tx(&OTHER, &[sol_transfer(&OTHER, &DEST, 10), sol_transfer(&a, &DEST, 1)]),
        1,
    )));
    assert_eq!(d.rule, Rule::AgentRole);
    assert!(d.message.contains("transfer source"), "{}", d.message);
    // Paying the agent from a co-signer: the agent is the destination, not the source.
    let pay_agent = [sol_transfer(&OTHER, &a, 10), sol_transfer(&a, &DEST, 1)];
    let d = denial(f.sign(request(&s, &legacy_tx(&OTHER, &pay_agent), 2)));
    assert_eq!(d.rule, Rule::AgentRole);
    // The agent appended as an extra account of its own transfer.
    let mut extra = sol_transfer(&a, &DEST, 10);
    extra.accounts.push(AccountMeta::new(address(&a), true));
    let d = denial(f.sign(request(&s, &legacy_tx(&a, &[extra]), 3)));
    assert_eq!(d.rule, Rule::AgentRole);
    assert!(d.message.contains("position 2"), "{}", d.message);
    // The honest transfer still signs.
    verify_independently(
        &f.sign(request(&s, &legacy_tx(&a, &[sol_transfer(&a, &DEST, 10)]), 4))
            .unwrap()
            .transaction,
    );
}

#[test]
fn token_transfers_need_the_agent_as_single_signer_authority() {
    let f = fixture();
    let s = f.setup(0x82, policy());
    let a = s.agent.agent_pubkey;
    let source = Pubkey([0x10; 32]);
    // Another authority: the agent only co-signs, the amount is not its own to spend.
    let other_authority = token_transfer(&programs::TOKEN, &source, &MINT, &DEST, &OTHER, 10);
    let tx = legacy_tx(&a, &[other_authority]);
    let d = denial(f.sign(request(&s, &tx, 1)));
    assert_eq!(d.rule, Rule::AgentRole);
    assert!(d.message.contains("authority"), "{}", d.message);
    // Multisig signer accounts after the authority.
    let mut multisig = token_transfer(&programs::TOKEN, &source, &MINT, &DEST, &a, 10);
    multisig.accounts.push(AccountMeta::new_readonly(address(&OTHER), true));
    let d = denial(f.sign(request(&s, &legacy_tx(&a, &[multisig]), 2)));
    assert_eq!(d.rule, Rule::AgentRole);
    // The agent's own transfer signs, whoever owns the source account (the token program
    // enforces owner-or-delegate; the amount is charged to the agent either way).
    let own = token_transfer(&programs::TOKEN_2022, &source, &MINT, &DEST, &a, 10);
    verify_independently(&f.sign(request(&s, &legacy_tx(&a, &[own]), 3)).unwrap().transaction);
}

// ---- Medium 1: the midnight race -----------------------------------------------------------

#[test]
fn days_only_move_forward_so_a_late_request_cannot_wipe_the_new_day() {
    let f = fixture();
    let midnight = T0 + 12 * 3600;
    f.clock.set(midnight - 100);
    let s = f.setup(0x83, policy());
    let a = s.agent.agent_pubkey;
    let send = |lamports: u64, id: u8| {
        let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([id; 32]), lamports)]);
        f.sign(request(&s, &tx, id))
    };
    f.clock.set(midnight + 10);
    send(1_999_995_000, 1).unwrap();
    send(1_999_995_000, 2).unwrap();
    // A request timed just before midnight arrives at the ledger after the new day began.
    f.clock.set(midnight - 1);
    let d = denial(send(1_999_995_000, 3));
    assert_eq!((d.rule, d.used), (Rule::MaxLamportsPerDay, Some(4_000_000_000)));
    // And the new day's spend is intact afterwards.
    f.clock.set(midnight + 20);
    let d = denial(send(1_999_995_000, 4));
    assert_eq!((d.rule, d.used), (Rule::MaxLamportsPerDay, Some(4_000_000_000)));
    send(999_995_000, 5).unwrap();
}

#[test]
fn expiry_is_judged_at_the_instant_the_decision_is_recorded() {
    let f = fixture();
    let s = f.setup(0x84, policy());
    let a = s.agent.agent_pubkey;
    let tx = |id: u8| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([id; 32]), 10)]);
    f.sign(request(&s, &tx(1), 1)).unwrap();
    // The request starts one second before expiry and its clock moves on while it is handled.
    f.clock.set(s.grant.expires_at - 1);
    f.clock.set_step(1);
    let err = f.sign(request(&s, &tx(2), 2)).unwrap_err();
    f.clock.set_step(0);
    assert_eq!(err.code(), ErrorCode::GrantExpired, "{err}");
    assert_eq!(f.enclave.status().signatures, 1);
}

// ---- Medium 2: fees in the daily outflow ----------------------------------------------------

#[test]
fn fees_count_in_the_daily_outflow_when_the_agent_pays_them() {
    let mut tight = policy();
    tight.max_lamports_per_day = 20_000;
    tight.max_fee_lamports = 20_000;
    let f = fixture();
    let s = f.setup(0x85, tight);
    let a = s.agent.agent_pubkey;
    // Zero-lamport transfers with a 10 000-lamport priority fee: pure fee burning.
    let burn = |payer: &Pubkey| {
        legacy_tx(
            payer,
            &[compute_limit(10_000), compute_price(1_000_000), sol_transfer(&a, &DEST, 0)],
        )
    };
    f.sign(request(&s, &burn(&a), 1)).unwrap();
    let d = denial(f.sign(request(&s, &burn(&a), 2)));
    assert_eq!(
        (d.rule, d.limit, d.requested, d.used),
        (Rule::MaxLamportsPerDay, Some(20_000), Some(15_000), Some(15_000))
    );
    // When someone else pays the fee, it is not the agent's outflow.
    for id in 3..6 {
        f.sign(request(&s, &burn(&OTHER), id)).unwrap();
    }
}

// ---- Medium 3: counters another tenant cannot exhaust ----------------------------------------

#[test]
fn spend_counters_belong_to_the_agent_not_just_wallet_and_bot() {
    let f = fixture();
    let victim = f.setup(0x86, policy());
    let v = victim.agent.agent_pubkey;
    // A second agent of the same wallet, used by the same bot under its own grant: its spending
    // is its own (before the fix both shared the (wallet, bot) counters, so one agent — or a
    // record naming another agent — could exhaust the other's day).
    let other = f.agent(victim.wallet, &victim.vault, NewAgentKind::Seed);
    let other_grant = f.grant(&victim.user, &victim.vault, other.agent_pubkey, policy(), 3600);
    let other_setup = Setup {
        user: User::new(0x86),
        wallet: victim.wallet,
        vault: victim.vault.clone(),
        agent: other,
        grant: other_grant,
    };
    let x = other_setup.agent.agent_pubkey;
    for id in 1..=2 {
        let tx = legacy_tx(&x, &[sol_transfer(&x, &DEST, 1_999_995_000)]);
        f.sign(request(&other_setup, &tx, id)).unwrap();
    }
    // The victim's day is untouched.
    let tx = legacy_tx(&v, &[sol_transfer(&v, &DEST, 1_999_995_000)]);
    f.sign(request(&victim, &tx, 10)).unwrap();
    f.sign(request(&victim, &legacy_tx(&v, &[sol_transfer(&v, &DEST, 1_999_995_000)]), 11))
        .unwrap();
}

// ---- Medium 4: grant-cache poisoning ---------------------------------------------------------

#[test]
fn a_forged_grant_with_a_victims_id_neither_uses_nor_displaces_the_victims_grant() {
    let f = fixture();
    let victim = f.setup(0x87, policy());
    let v = victim.agent.agent_pubkey;
    let header = enclave_core::records::SealedGrant::parse(&victim.grant.record).unwrap().header;
    // Same header, the user's own policy and signature (the backend saw them go by), the
    // attacker's UMK.
    let real = f.grant_contents(&victim.grant.record);
    let forged = f
        .forge_grant(
            header,
            &GrantContents {
                umk: Secret32::new([0x66; 32]),
                policy: real.policy.clone(),
                authorization: real.authorization.clone(),
            },
        )
        .record;
    let tx = legacy_tx(&v, &[sol_transfer(&v, &DEST, 10)]);
    // The forgery opens (KMS unwraps any key sealed to it, and the user's signature covers its
    // header and policy) but the victim's agent key does not open under its UMK: refused, and
    // nothing of it is kept.
    let r = f.sign(enclave_core::enclave::SignRequest {
        grant_record: &forged,
        ..request(&victim, &tx, 1)
    });
    assert_eq!(r.unwrap_err().code(), ErrorCode::RecordInvalid);
    assert_eq!(f.enclave.status().cached_grants, 0);
    // The victim's grant works, and once open, the forgery does not dislodge it.
    let calls = f.kms_calls.load(std::sync::atomic::Ordering::SeqCst);
    verify_independently(&f.sign(request(&victim, &tx, 2)).unwrap().transaction);
    let _ = f.sign(enclave_core::enclave::SignRequest {
        grant_record: &forged,
        ..request(&victim, &tx, 3)
    });
    verify_independently(&f.sign(request(&victim, &tx, 4)).unwrap().transaction);
    assert_eq!(
        f.kms_calls.load(std::sync::atomic::Ordering::SeqCst),
        calls + 2,
        "one KMS call for the victim's grant, one for the forgery; the victim's stays open"
    );
}

// ---- Low: scheduled ids, notional, precompiles ----------------------------------------------

fn scheduled(
    f: &Fixture,
    seed: [u8; 32],
    schedule_id: [u8; 16],
    dest: Pubkey,
    amount: u64,
) -> (Vec<u8>, Pubkey) {
    scheduled_with(f, seed, schedule_id, dest, amount, |_| {})
}

/// A scheduled record as [`scheduled`] makes it, after `edit` changes its header.
fn scheduled_with(
    f: &Fixture,
    seed: [u8; 32],
    schedule_id: [u8; 16],
    dest: Pubkey,
    amount: u64,
    edit: impl FnOnce(&mut ScheduledHeader),
) -> (Vec<u8>, Pubkey) {
    let intent = Intent { destination: dest.0, mint: [0; 32], amount };
    f.scheduled_record(seed, &intent, |h| {
        h.schedule_id = schedule_id;
        edit(h);
    })
}

#[test]
fn a_forged_scheduled_record_cannot_burn_a_victims_schedule_id() {
    let f = fixture();
    let id = [0x89; 16];
    let (victim, v) = scheduled(&f, [0x8a; 32], id, DEST, 500);
    // The attacker seals its own record (its own seed) under the victim's schedule id, and
    // uses it first.
    let (forged, x) = scheduled(&f, [0x8b; 32], id, DEST, 1);
    let tx = legacy_tx(&x, &[sol_transfer(&x, &DEST, 1)]);
    assert!(matches!(f.sign_scheduled(&forged, &tx, 1).unwrap(), SignOutcome::Signed(_)));
    let tx = legacy_tx(&v, &[sol_transfer(&v, &DEST, 500)]);
    let SignOutcome::Signed(s) = f.sign_scheduled(&victim, &tx, 2).unwrap() else { panic!() };
    verify_independently(&s.transaction);
    // And the victim's record is still single-use.
    assert_eq!(f.sign_scheduled(&victim, &tx, 3).unwrap_err().code(), ErrorCode::ReplayedRequest);
}

#[test]
fn allowed_programs_need_a_declared_notional_of_at_least_one_cent() {
    let f = fixture();
    let s = f.setup(0x8c, policy());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[program_call(&DEX, &a, b"swap")]);
    let mut req = request(&s, &tx, 1);
    req.declared_notional_cents = Some(0);
    let d = denial(f.sign(req));
    assert_eq!(d.rule, Rule::NotionalRequired);
    assert!(d.message.contains("at least 1"), "{}", d.message);
    req.declared_notional_cents = Some(1);
    req.request_id = [2; 16];
    verify_independently(&f.sign(req).unwrap().transaction);
}

#[test]
fn signature_precompiles_cannot_be_allowed_programs() {
    for precompile in programs::PRECOMPILES {
        let mut p = policy();
        p.allowed_programs.push(precompile);
        let err = p.validate().unwrap_err();
        assert!(err.contains("precompile"), "{err}");
    }
}

// ---- Medium 5: a revocation outlives every record it covers ---------------------------------

#[test]
fn a_revoked_scheduled_transfer_stays_revoked_until_its_window_and_far_windows_are_refused() {
    let f = fixture();
    const DAY: u64 = 86_400;
    // A transfer sealed now for a window twenty days away (inside the 30-day horizon).
    let far = |h: &mut ScheduledHeader| {
        h.created_at = T0;
        h.not_before = T0 + 20 * DAY;
        h.not_after = T0 + 20 * DAY + 3600;
    };
    let (by_id, a) = scheduled_with(&f, [0x8c; 32], [0x8d; 16], DEST, 700, far);
    let (by_wallet, b) = scheduled_with(&f, [0x8e; 32], [0x8f; 16], DEST, 700, |h| {
        far(h);
        h.wallet = Pubkey([0x90; 32]);
    });
    f.enclave.revoke(RevokeTarget::Record([0x8d; 16])).unwrap();
    f.enclave.revoke(RevokeTarget::Wallet(Pubkey([0x90; 32]))).unwrap();
    // Twenty days later (the old store forgot revocations after 48 h): still revoked.
    f.clock.advance(20 * DAY + 10);
    let tx = legacy_tx(&a, &[sol_transfer(&a, &DEST, 700)]);
    assert_eq!(f.sign_scheduled(&by_id, &tx, 1).unwrap_err().code(), ErrorCode::GrantRevoked);
    let tx = legacy_tx(&b, &[sol_transfer(&b, &DEST, 700)]);
    assert_eq!(f.sign_scheduled(&by_wallet, &tx, 2).unwrap_err().code(), ErrorCode::GrantRevoked);

    // A record whose window ends beyond the horizon from its creation is refused outright, so no
    // record outlives the revocations that could cover it.
    let now = T0 + 20 * DAY + 10;
    let (beyond, c) = scheduled_with(&f, [0x91; 32], [0x92; 16], DEST, 700, |h| {
        h.created_at = now - 30 * DAY;
        h.not_before = now - 10;
        h.not_after = now + 3600;
    });
    let tx = legacy_tx(&c, &[sol_transfer(&c, &DEST, 700)]);
    let err = f.sign_scheduled(&beyond, &tx, 3).unwrap_err();
    assert_eq!(err.code(), ErrorCode::RecordInvalid, "{err}");
    assert!(err.to_string().contains("at most"), "{err}");
    assert_eq!(f.enclave.status().signatures, 0);
}

// ---- Found in review: the refused-envelope store must not become a denial of service ---------

#[test]
fn filling_the_refused_envelope_store_does_not_stop_key_opening() {
    let mut c = config();
    c.envelope_refusal_capacity = 2;
    let f = fixture_with(c);
    let s = f.setup(0x94, policy());
    let a = s.agent.agent_pubkey;
    // Anyone with the API token can make envelopes fail: a grant altered at rest, a fresh KMS
    // envelope each time. Many more failures than the store holds…
    let mut altered = s.grant.record.clone();
    *altered.last_mut().unwrap() ^= 1;
    for i in 0..5u8 {
        let tx = legacy_tx(&a, &[sol_transfer(&a, &DEST, 1)]);
        let r = f.sign(enclave_core::enclave::SignRequest {
            grant_record: &altered,
            ..request(&s, &tx, 0x40 + i)
        });
        assert_eq!(r.unwrap_err().code(), ErrorCode::EnvelopeRejected);
    }
    // …and the honest grant still opens (the oldest refusals gave way; nothing is refused
    // wholesale with enclave_unavailable).
    let tx = legacy_tx(&a, &[sol_transfer(&a, &DEST, 2)]);
    f.sign(request(&s, &tx, 0x50)).unwrap();
}
