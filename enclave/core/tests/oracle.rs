//! Signed transactions verify with an independent implementation (`solana-transaction`):
//! legacy and v0, one and several signers, seed and mnemonic agents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use enclave_core::Pubkey;
use enclave_core::enclave::NewAgentKind;
use solana_keypair::Keypair;
use solana_signer::Signer;

#[test]
fn legacy_single_signer_transfer_verifies() {
    let f = fixture();
    let s = f.setup(1, policy());
    let agent = s.agent.agent_pubkey;
    let tx = legacy_tx(&agent, &[sol_transfer(&agent, &Pubkey([9; 32]), 1_000_000)]);
    let signed = f.sign(request(&s, &tx, 1)).unwrap();
    let parsed = verify_independently(&signed.transaction);
    assert_eq!(parsed.signatures[0].as_ref(), signed.signature.as_slice());
    assert_eq!(signed.record_id, s.grant.grant_id);
    // Only the signature slot changed.
    assert_eq!(signed.transaction[65..], tx[65..]);
}

#[test]
fn v0_with_compute_budget_verifies() {
    let f = fixture();
    let s = f.setup(2, policy());
    let agent = s.agent.agent_pubkey;
    let tx = v0_tx(
        &agent,
        &[compute_limit(10_000), compute_price(1_000), sol_transfer(&agent, &Pubkey([9; 32]), 5)],
    );
    assert_eq!(tx[65], 0x80, "v0 message prefix");
    let signed = f.sign(request(&s, &tx, 1)).unwrap();
    verify_independently(&signed.transaction);
}

#[test]
fn several_signers_agent_not_fee_payer() {
    let f = fixture();
    let s = f.setup(3, policy());
    let agent = s.agent.agent_pubkey;
    let payer = Keypair::new();
    let cosigner = Keypair::new();
    let payer_key = Pubkey(payer.pubkey().to_bytes());
    let cosigner_key = Pubkey(cosigner.pubkey().to_bytes());
    for v0 in [false, true] {
        let ixs = [
            sol_transfer(&agent, &Pubkey([9; 32]), 7),
            program_call(&Pubkey([0x77; 32]), &cosigner_key, b"swap"),
        ];
        let tx = if v0 { v0_tx(&payer_key, &ixs) } else { legacy_tx(&payer_key, &ixs) };
        let mut req = request(&s, &tx, 10 + v0 as u8);
        req.declared_notional_cents = Some(500);
        let signed = f.sign(req).unwrap();
        // The other two signers sign the same message independently.
        let mut parsed: solana_transaction::versioned::VersionedTransaction =
            bincode::deserialize(&signed.transaction).unwrap();
        let message = parsed.message.serialize();
        let keys = parsed.message.static_account_keys().to_vec();
        for kp in [&payer, &cosigner] {
            let slot = keys.iter().position(|k| *k == kp.pubkey()).unwrap();
            parsed.signatures[slot] = kp.sign_message(&message);
        }
        assert_eq!(parsed.signatures.len(), 3);
        parsed.verify_and_hash_message().expect("all three signatures verify");
    }
}

#[test]
fn mnemonic_agent_signs_verifiably() {
    let f = fixture();
    let user = User::new(4);
    let wallet = user.wallet;
    let vault = f.vault(wallet);
    let agent = f.agent(wallet, &vault, NewAgentKind::Mnemonic { account: 3 });
    let grant = f.grant(&user, &vault, agent.agent_pubkey, policy(), 600);
    let s = Setup { user, wallet, vault, agent, grant };
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(&a, &[sol_transfer(&a, &Pubkey([8; 32]), 1)]);
    verify_independently(&f.sign(request(&s, &tx, 1)).unwrap().transaction);
}

#[test]
fn token_transfer_checked_verifies_for_both_token_programs() {
    let f = fixture();
    let s = f.setup(5, policy());
    let a = s.agent.agent_pubkey;
    for (i, program) in
        [enclave_core::pubkey::programs::TOKEN, enclave_core::pubkey::programs::TOKEN_2022]
            .iter()
            .enumerate()
    {
        let ix = token_transfer(
            program,
            &Pubkey([0x10; 32]),
            &Pubkey([0x55; 32]),
            &Pubkey([0x11; 32]),
            &a,
            100,
        );
        let tx = legacy_tx(&a, &[ix]);
        verify_independently(&f.sign(request(&s, &tx, i as u8 + 1)).unwrap().transaction);
    }
}
