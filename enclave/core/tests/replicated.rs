//! The decision state as a replicated state machine (SPEC §16, cluster): members that apply the
//! same committed proposals in the same order hold the same state, so a grant keeps its limits,
//! its request ids and its revocations whichever member leads, and a member that catches up from
//! a snapshot continues where the others are. The log here is an in-memory stand-in for the Raft
//! log (the daemon's openraft); what is tested is the core's half: proposals, apply, snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use common::*;
use enclave_core::enclave::RevokeTarget;
use enclave_core::enclave::replicated::{Command, Decided, Effect, Proposal, Replicator};
use enclave_core::policy::Rule;
use enclave_core::{Enclave, EnclaveError, EnclaveId, ErrorCode, Pubkey};

/// A log every member applies in order; each commit is applied everywhere at once and the
/// outcomes compared, so a nondeterministic apply fails the test that triggers it.
#[derive(Default)]
struct SharedLog {
    members: Mutex<Vec<Arc<Enclave>>>,
    entries: Mutex<Vec<Proposal>>,
}

impl Replicator for SharedLog {
    fn commit(&self, proposal: Proposal) -> Result<Decided, EnclaveError> {
        let members = self.members.lock().unwrap().clone();
        self.entries.lock().unwrap().push(proposal.clone());
        let outcomes: Vec<Result<Decided, EnclaveError>> =
            members.iter().map(|m| m.apply_committed(&proposal)).collect();
        // Effects may differ only in what each member had opened in memory; receipts not at
        // all (every member writes the same chain).
        let comparable = |r: &Result<Decided, EnclaveError>| match r {
            Ok(Decided { effect: Effect::Revoked { .. }, receipt }) => {
                Ok(Decided { effect: Effect::Revoked { dropped: 0 }, receipt: receipt.clone() })
            }
            other => other.clone(),
        };
        for (i, o) in outcomes.iter().enumerate() {
            assert_eq!(
                comparable(o),
                comparable(&outcomes[0]),
                "member {i} applied {:?} differently",
                proposal.command
            );
        }
        outcomes.into_iter().next().unwrap_or(Err(EnclaveError::Internal("no member".into())))
    }
}

struct Cluster {
    id: EnclaveId,
    log: Arc<SharedLog>,
    members: Vec<Fixture>,
}

/// `n` members on one clock, each a fresh instance of the same image, in one cluster.
fn cluster(n: usize) -> Cluster {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let members: Vec<Fixture> = (0..n)
        .map(|_| fixture_on(config(), Arc::clone(&clock), 0x10, Some(&fresh_recipient())))
        .collect();
    let founders: Vec<EnclaveId> = members.iter().map(|m| m.enclave.id()).collect();
    let id = EnclaveId(enclave_core::cluster::member::cluster_id(&founders).unwrap());
    let log = Arc::new(SharedLog::default());
    for m in &members {
        log.members.lock().unwrap().push(Arc::clone(&m.enclave));
        m.enclave.join_cluster(id, log.clone()).unwrap();
    }
    log.commit(Proposal { time: T0, command: Command::Genesis { cluster_id: id, founders } })
        .unwrap();
    Cluster { id, log, members }
}

fn transfer(s: &Setup, lamports: u64) -> Vec<u8> {
    let a = s.agent.agent_pubkey;
    legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), lamports)])
}

fn code<T: std::fmt::Debug>(r: Result<T, EnclaveError>) -> ErrorCode {
    r.expect_err("must be refused").code()
}

#[test]
fn records_and_messages_name_the_cluster_and_every_member_answers_for_it() {
    let c = cluster(3);
    let s = c.members[0].setup(1, policy());
    assert_eq!(s.grant.enclave_id, c.id);
    let auth = c.members[1]
        .enclave
        .authorize_grant(&c.members[1].terms(s.wallet, s.agent.agent_pubkey, policy(), 60))
        .unwrap();
    assert!(auth.message.contains(&format!("urn:signer:enclave:{}", c.id)), "{}", auth.message);
    for m in &c.members {
        assert_eq!(m.enclave.answers_for(), vec![c.id]);
        assert_eq!(m.enclave.decider(), c.id);
        assert_ne!(m.enclave.id(), c.id);
    }
}

#[test]
fn a_grants_daily_limit_holds_whichever_member_leads() {
    let c = cluster(3);
    // 5 SOL a day; each transfer is 1.9 SOL (plus the fee the agent pays).
    let s = c.members[0].setup(1, policy());
    let tx = |n: u64| transfer(&s, 1_900_000_000 - n);
    c.members[0].sign(request(&s, &tx(1), 1)).unwrap();
    // The leader crashes; another member leads and opens the grant with its own KMS envelope.
    c.members[1].sign(request(&s, &tx(2), 2)).unwrap();
    let denied = c.members[2].sign(request(&s, &tx(3), 3)).unwrap_err();
    match denied {
        EnclaveError::PolicyDenied(d) => assert_eq!(d.rule, Rule::MaxLamportsPerDay),
        other => panic!("expected the daily limit, got {other:?}"),
    }
    // A retry of request 1 on the new leader gets the same signature, charged once.
    let first = c.members[0].sign(request(&s, &tx(1), 1)).unwrap();
    let again = c.members[2].sign(request(&s, &tx(1), 1)).unwrap();
    assert_eq!(first.signature, again.signature);
    // Request id 2 with another transaction is a replay on every member.
    assert_eq!(code(c.members[0].sign(request(&s, &tx(7), 2))), ErrorCode::ReplayedRequest);
}

#[test]
fn a_message_issued_by_one_leader_makes_a_grant_on_the_next_exactly_once() {
    let c = cluster(3);
    let user = User::new(4);
    let vault = c.members[0].vault(user.wallet);
    let agent = c.members[0].agent(user.wallet, &vault, enclave_core::enclave::NewAgentKind::Seed);
    let terms = c.members[0].terms(user.wallet, agent.agent_pubkey, policy(), 600);
    let auth = c.members[0].enclave.authorize_grant(&terms).unwrap();
    let signature = user.sign(&auth.message);
    let create = |f: &Fixture| {
        f.unlocked(|envelope| {
            f.enclave.create_grant(&enclave_core::enclave::CreateGrant {
                grant: terms.clone(),
                nonce: &auth.nonce,
                issued_at: auth.issued_at,
                signature,
                vault: enclave_core::enclave::VaultProof {
                    record: &vault.record,
                    provenance: &vault.provenance,
                },
                envelope,
            })
        })
    };
    let grant = create(&c.members[1]).unwrap();
    // The lost reply, asked again of a third member: the same grant.
    let again = create(&c.members[2]).unwrap();
    assert_eq!(grant.grant_id, again.grant_id);
    assert_eq!(grant.enclave_id, c.id);
}

#[test]
fn a_revocation_or_kill_switch_decided_by_one_member_holds_on_all() {
    let c = cluster(3);
    let s = c.members[0].setup(1, policy());
    c.members[0].sign(request(&s, &transfer(&s, 1), 1)).unwrap();
    c.members[1].enclave.revoke(RevokeTarget::Record(s.grant.grant_id)).unwrap();
    for (i, m) in c.members.iter().enumerate() {
        let r = m.sign(request(&s, &transfer(&s, 2), 10 + i as u8));
        assert_eq!(code(r), ErrorCode::GrantRevoked, "member {i}");
    }
    let t = c.members[0].setup(2, policy());
    c.members[2].enclave.set_kill_switch(true).unwrap();
    assert_eq!(code(c.members[0].sign(request(&t, &transfer(&t, 1), 20))), ErrorCode::KillSwitch);
    c.members[1].enclave.set_kill_switch(false).unwrap();
    c.members[0].sign(request(&t, &transfer(&t, 1), 21)).unwrap();
}

#[test]
fn a_member_that_installs_a_snapshot_continues_where_the_cluster_is() {
    let c = cluster(2);
    let s = c.members[0].setup(1, policy());
    c.members[0].sign(request(&s, &transfer(&s, 1_900_000_000), 1)).unwrap();
    c.members[1].sign(request(&s, &transfer(&s, 1_899_999_999), 2)).unwrap();
    c.members[0].enclave.revoke(RevokeTarget::Record([0x42; 16])).unwrap();
    let snapshot = c.members[1].enclave.replicated_state().unwrap();

    // A restarted enclave comes back as a new member: fresh identity, empty state.
    let clock = Arc::clone(&c.members[0].clock);
    let newcomer = fixture_on(config(), clock, 0x10, Some(&fresh_recipient()));
    newcomer.enclave.join_cluster(c.id, c.log.clone()).unwrap();
    newcomer.enclave.install_replicated_state(&snapshot).unwrap();
    assert_eq!(newcomer.enclave.replicated_cluster(), Some(c.id));
    c.log.members.lock().unwrap().push(Arc::clone(&newcomer.enclave));
    // Its state is the cluster's: the same snapshot bytes (maps are written in their own order,
    // so compare what they hold).
    assert_eq!(newcomer.enclave.status().request_ids, c.members[0].enclave.status().request_ids);
    assert_eq!(newcomer.enclave.status().revocations, c.members[0].enclave.status().revocations);
    let denied = newcomer.sign(request(&s, &transfer(&s, 1_500_000_000), 3)).unwrap_err();
    assert!(
        matches!(denied, EnclaveError::PolicyDenied(ref d) if d.rule == Rule::MaxLamportsPerDay)
    );
    let retry = newcomer.sign(request(&s, &transfer(&s, 1_900_000_000), 1)).unwrap();
    let original = c.members[0].sign(request(&s, &transfer(&s, 1_900_000_000), 1)).unwrap();
    assert_eq!(retry.signature, original.signature);
    assert_eq!(code(newcomer.sign(request(&s, &transfer(&s, 5), 2))), ErrorCode::ReplayedRequest);
}

#[test]
fn a_snapshot_that_is_not_a_replicated_state_changes_nothing() {
    let c = cluster(1);
    let s = c.members[0].setup(1, policy());
    c.members[0].sign(request(&s, &transfer(&s, 1), 1)).unwrap();
    let before = c.members[0].enclave.status();
    for bad in [&b""[..], b"\xa1\x63tag\x61x", b"garbage"] {
        assert!(c.members[0].enclave.install_replicated_state(bad).is_err());
    }
    assert_eq!(c.members[0].enclave.status().request_ids, before.request_ids);
}

#[test]
fn decision_time_never_goes_back_when_a_member_with_a_slower_clock_leads() {
    // Two members, the second's clock 100 s behind.
    let fast = Arc::new(ManualClock(AtomicU64::new(T0 + 100), AtomicU64::new(0)));
    let slow = Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0)));
    let a = fixture_on(config(), fast, 0x10, Some(&fresh_recipient()));
    let b = fixture_on(config(), slow, 0x10, Some(&fresh_recipient()));
    let log = Arc::new(SharedLog::default());
    let founders = vec![a.enclave.id(), b.enclave.id()];
    let id = EnclaveId(enclave_core::cluster::member::cluster_id(&founders).unwrap());
    for m in [&a, &b] {
        log.members.lock().unwrap().push(Arc::clone(&m.enclave));
        m.enclave.join_cluster(id, log.clone()).unwrap();
    }
    log.commit(Proposal { time: T0, command: Command::Genesis { cluster_id: id, founders } })
        .unwrap();
    let user = User::new(3);
    let terms = a.terms(user.wallet, Pubkey([5; 32]), policy(), 60);
    let first = a.enclave.authorize_grant(&terms).unwrap();
    let second = b.enclave.authorize_grant(&terms).unwrap();
    assert_eq!(first.issued_at, T0 + 100);
    assert!(second.issued_at >= first.issued_at, "{} < {}", second.issued_at, first.issued_at);
    // A wallet revocation decided by the slow member still covers the fast member's message.
    b.enclave.revoke(RevokeTarget::Wallet(user.wallet)).unwrap();
    let third = a.enclave.authorize_grant(&terms).unwrap();
    assert!(third.issued_at > second.issued_at);
}

#[test]
fn sweeping_is_a_decision_every_member_applies_at_the_same_time() {
    let c = cluster(2);
    let s = c.members[0].setup(1, policy());
    c.members[0].sign(request(&s, &transfer(&s, 1), 1)).unwrap();
    // Past the grant's expiry and the request id's lifetime.
    c.members[0].clock.advance(2 * 86_400);
    c.members[1].enclave.sweep();
    for m in &c.members {
        assert_eq!(m.enclave.status().request_ids, 0);
    }
    assert!(
        c.log
            .entries
            .lock()
            .unwrap()
            .iter()
            .any(|p| matches!(p.command, enclave_core::enclave::replicated::Command::Sweep))
    );
}

#[test]
fn a_members_own_clock_never_enters_what_it_applies() {
    // B's clock is a day ahead and B judges a request (refused before any commit), which moves
    // B's own decision time; what B applies afterwards is still at the leader's time.
    let c = cluster(2);
    let s = c.members[0].setup(1, policy());
    let b_clock = Arc::new(ManualClock(AtomicU64::new(T0 + 86_400), AtomicU64::new(0)));
    let b = fixture_on(config(), b_clock, 0x10, Some(&fresh_recipient()));
    b.enclave.join_cluster(c.id, c.log.clone()).unwrap();
    b.enclave.install_replicated_state(&c.members[0].enclave.replicated_state().unwrap()).unwrap();
    c.log.members.lock().unwrap().push(Arc::clone(&b.enclave));
    let terms = b.terms(s.wallet, s.agent.agent_pubkey, policy(), 60);
    let auth = c.members[0].enclave.authorize_grant(&terms).unwrap();
    let refused = b.enclave.create_grant(&enclave_core::enclave::CreateGrant {
        grant: terms,
        nonce: &auth.nonce,
        issued_at: auth.issued_at,
        signature: [7u8; 64],
        vault: enclave_core::enclave::VaultProof {
            record: &s.vault.record,
            provenance: &s.vault.provenance,
        },
        envelope: None,
    });
    assert!(refused.is_err());
    c.members[0].sign(request(&s, &transfer(&s, 1), 1)).unwrap();
    let leader_time = c.members[0].enclave.applied_time();
    assert!(leader_time < T0 + 86_400);
    for m in [&c.members[1].enclave, &b.enclave] {
        assert_eq!(m.applied_time(), leader_time);
    }
}

#[test]
fn a_genesis_of_another_cluster_or_with_the_wrong_founders_is_refused() {
    let c = cluster(1);
    let me = c.members[0].enclave.id();
    let stranger = EnclaveId([1; 16]);
    let other = EnclaveId(enclave_core::cluster::member::cluster_id(&[stranger]).unwrap());
    let foreign = Proposal {
        time: T0,
        command: Command::Genesis { cluster_id: other, founders: vec![stranger] },
    };
    assert!(c.members[0].enclave.apply_committed(&foreign).is_err());
    let lying = Proposal {
        time: T0,
        command: Command::Genesis { cluster_id: c.id, founders: vec![me, EnclaveId([2; 16])] },
    };
    assert!(c.members[0].enclave.apply_committed(&lying).is_err());
    assert_eq!(c.members[0].enclave.replicated_cluster(), Some(c.id));
}

#[test]
fn a_member_whose_log_is_another_clusters_decides_nothing() {
    // Its host says "cluster X", but the log it was given is cluster c's.
    let c = cluster(1);
    let stray =
        fixture_on(config(), Arc::clone(&c.members[0].clock), 0x10, Some(&fresh_recipient()));
    stray.enclave.join_cluster(EnclaveId([0xee; 16]), c.log.clone()).unwrap();
    stray
        .enclave
        .install_replicated_state(&c.members[0].enclave.replicated_state().unwrap())
        .unwrap();
    let user = User::new(8);
    let r = stray.enclave.authorize_grant(&stray.terms(user.wallet, Pubkey([5; 32]), policy(), 60));
    assert_eq!(code(r), ErrorCode::EnclaveUnavailable);
}

#[test]
fn only_an_enclave_that_decided_nothing_joins_and_a_member_refuses_handover() {
    let f = fixture_on(
        config(),
        Arc::new(ManualClock(AtomicU64::new(T0), AtomicU64::new(0))),
        0x10,
        Some(&fresh_recipient()),
    );
    let user = User::new(9);
    f.enclave.authorize_grant(&f.terms(user.wallet, Pubkey([5; 32]), policy(), 60)).unwrap();
    let log = Arc::new(SharedLog::default());
    let refused = f.enclave.join_cluster(EnclaveId([3; 16]), log.clone()).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::BadRequest);
    let c = cluster(1);
    assert_eq!(code(c.members[0].enclave.handover_offer()), ErrorCode::HandoverRefused);
    assert_eq!(
        code(c.members[0].enclave.handover_prepare(b"any document")),
        ErrorCode::HandoverRefused
    );
    assert_eq!(code(c.members[0].enclave.join_cluster(c.id, log)), ErrorCode::BadRequest);
}
