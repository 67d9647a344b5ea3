//! Decision receipts (`docs/receipts.md`): every decision writes one receipt to the decider's
//! chain, a checkpoint signed with the boot's key vouches for the head, and the key is bound in
//! the documents this enclave gives callers. Checked with the receipts crate's verifier.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::*;
use enclave_core::enclave::RevokeTarget;
use enclave_core::enclave::receipts::MAX_PAGE_BYTES;
use enclave_core::{ErrorCode, Pubkey};
use signer_receipts::{Body, Receipt, checkpoint_key_binding, verify};

fn kinds(receipts: &[Vec<u8>]) -> Vec<&'static str> {
    receipts.iter().map(|r| Receipt::decode(r).unwrap().body.kind_name()).collect()
}

#[test]
fn every_decision_writes_one_linked_receipt_and_a_checkpoint_vouches_for_the_head() {
    let f = fixture();
    let s = f.setup(0x61, policy());
    let a = s.agent.agent_pubkey;
    let tx = |lamports| legacy_tx(&a, &[sol_transfer(&a, &Pubkey([9; 32]), lamports)]);
    let first = f.sign(request(&s, &tx(1_000), 1)).unwrap();
    // A retry writes nothing; a policy refusal (over the per-transaction limit) and a limit
    // refusal are receipts too.
    f.sign(request(&s, &tx(1_000), 1)).unwrap();
    let err = f.sign(request(&s, &tx(3_000_000_000), 2)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PolicyDenied);
    f.enclave.revoke(RevokeTarget::Record(s.grant.grant_id)).unwrap();
    f.enclave.set_kill_switch(true).unwrap();

    let page = f.enclave.receipts(None, MAX_PAGE_BYTES);
    assert_eq!(
        kinds(&page.receipts),
        [
            "chain_start",
            "vault_created",
            "agent_created",
            "grant_created",
            "signed",
            "refused",
            "revoked",
            "kill_switch"
        ]
    );
    assert_eq!(page.decider, f.enclave.id().0);
    // The sign answer carried the very receipt in the chain.
    assert_eq!(first.receipt.as_deref(), Some(&page.receipts[4][..]));
    let Body::Signed(signed) = Receipt::decode(&page.receipts[4]).unwrap().body else { panic!() };
    assert_eq!(signed.grant_id, s.grant.grant_id);
    assert_eq!(signed.request_id, [1; 16]);
    assert_eq!(signed.charged.lamports, 1_000);
    assert_eq!(signed.charged.fee_lamports, 5_000, "the agent pays the fee");
    assert_eq!(signed.after.lamports, 6_000);
    let Body::Refused(refused) = Receipt::decode(&page.receipts[5]).unwrap().body else { panic!() };
    assert_eq!(
        (refused.code.as_str(), refused.rule.as_str()),
        ("policy_denied", "max_lamports_per_tx")
    );
    let Body::GrantCreated(grant) = Receipt::decode(&page.receipts[3]).unwrap().body else {
        panic!()
    };
    let policy: enclave_core::policy::Policy = ciborium::from_reader(&grant.policy[..]).unwrap();
    assert_eq!(policy, common::policy(), "the policy in full");

    // The checkpoint, signed with the key the caller's document binds.
    let checkpoint = f.enclave.checkpoint().unwrap();
    assert_eq!(checkpoint.checkpoint.seq, 7);
    assert_eq!(f.enclave.checkpoint().unwrap(), checkpoint, "the same head, the same checkpoint");
    let key = f.enclave.checkpoint_public_key();
    let report = verify(&page.receipts, &[checkpoint], &[(f.enclave.id().0, key)]);
    assert!(report.ok(), "{report:?}");
    let document = f.enclave.attest_for_caller(Some(b"nonce")).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(f.enclave.now());
    let verified = nitro_attestation::verify_with_policy(
        &document,
        f.enclave.anchor(),
        &Default::default(),
        at,
    )
    .unwrap();
    assert_eq!(
        verified.document.user_data.as_deref(),
        Some(&checkpoint_key_binding(&f.enclave.id().0, &key)[..])
    );

    // Another key vouches for nothing.
    let other = signer_receipts::CheckpointKey::from_bytes(&[3; 32]);
    let forged = other.sign(&checkpoint.checkpoint);
    let report = verify(&page.receipts, &[forged], &[(f.enclave.id().0, key)]);
    assert!(!report.ok(), "{report:?}");

    // Pages continue where the last one stopped.
    let rest = f.enclave.receipts(Some(4), MAX_PAGE_BYTES);
    assert_eq!(kinds(&rest.receipts), ["refused", "revoked", "kill_switch"]);
    assert_eq!((rest.next_after, rest.more, rest.gap), (7, false, None));
    assert_eq!(f.enclave.receipt_counts(), (8, 0));
}

#[test]
fn a_full_ring_reports_what_it_evicted_as_a_gap() {
    let mut config = config();
    config.receipt_ring_capacity = 3;
    let f = fixture_with(config);
    for engaged in [true, false, true, false, true] {
        f.enclave.set_kill_switch(engaged).unwrap();
    }
    // Six receipts written (chain start and five kill switches), three kept.
    let page = f.enclave.receipts(Some(0), MAX_PAGE_BYTES);
    assert_eq!(page.gap, Some((0, 3)));
    assert_eq!(page.receipts.len(), 3);
    let report = verify(&page.receipts, &[], &[]);
    assert!(report.forks.is_empty(), "{report:?}");
}

#[test]
fn a_signed_receipt_names_the_counters_of_the_mints_it_moves_only() {
    use enclave_core::policy::{Policy, TokenLimit};
    use enclave_core::pubkey::programs::TOKEN;
    let f = fixture();
    // Two grants for the same wallet, bot and agent (one spend key), each listing 40 mints of
    // its own: the key's counters span 80 mints, more than one receipt may list (64).
    let limits = |base: u8| -> Vec<TokenLimit> {
        (0..40u8)
            .map(|i| TokenLimit {
                mint: Pubkey([base.wrapping_add(i); 32]),
                max_per_tx: 10,
                max_per_day: 100,
            })
            .collect()
    };
    let s = f.setup(0x62, Policy { tokens: limits(0x80), ..policy() });
    let second = f.grant(
        &s.user,
        &s.vault,
        s.agent.agent_pubkey,
        Policy { tokens: limits(0x20), ..policy() },
        3600,
    );
    let s2 = Fixture::with_grant(&s, second);
    let a = s.agent.agent_pubkey;
    let mut request_byte = 0u8;
    for (setup, base) in [(&s, 0x80u8), (&s2, 0x20u8)] {
        for i in 0..40u8 {
            let mint = Pubkey([base.wrapping_add(i); 32]);
            let ix = token_transfer(&TOKEN, &Pubkey([0x10; 32]), &mint, &Pubkey([0x11; 32]), &a, 1);
            request_byte = request_byte.wrapping_add(1);
            let signed = f.sign(request(setup, &legacy_tx(&a, &[ix]), request_byte)).unwrap();
            let receipt = signed.receipt.expect("every signature has its receipt");
            let Body::Signed(body) = Receipt::decode(&receipt).unwrap().body else { panic!() };
            assert_eq!(body.after.tokens.len(), 1, "the counters of the mint it moves");
            assert_eq!((body.after.tokens[0].mint, body.after.tokens[0].amount), (mint, 1));
        }
    }
    assert_eq!(f.enclave.receipt_counts(), (1 + 3 + 1 + 80, 0), "none dropped");
}
