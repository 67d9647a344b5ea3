//! Solana transaction parser (legacy and v0) and everything the enclave runs on a parsed
//! transaction: policy evaluation under an open and a tight policy, the scheduled-intent check,
//! and signing. Any input must give Ok or a typed refusal; a signature, when produced, must
//! verify and land in the agent's slot without changing any other byte.
#![no_main]

use ed25519_dalek::{Signature, SigningKey, Verifier};
use enclave_core::Pubkey;
use enclave_core::policy::{Policy, TokenLimit, check_intent, evaluate_transaction};
use enclave_core::solana::{SIGNATURE_LEN, Transaction};
use libfuzzer_sys::fuzz_target;

fn policy(limit: u64, programs: Vec<Pubkey>, destinations: Option<Vec<Pubkey>>) -> Policy {
    Policy {
        max_lamports_per_tx: limit,
        max_lamports_per_day: limit,
        max_fee_lamports: limit,
        tokens: vec![TokenLimit { mint: Pubkey([7; 32]), max_per_tx: limit, max_per_day: limit }],
        allowed_programs: programs,
        max_notional_cents_per_tx: limit,
        max_notional_cents_per_day: limit,
        destinations,
        max_tx_per_minute: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = Transaction::parse(data) else { return };
    let keys: Vec<Pubkey> = tx.static_keys().map(|k| Pubkey(*k)).collect();
    let open = policy(u64::MAX, keys.iter().take(4).copied().collect(), None);
    let tight = policy(10_000, Vec::new(), Some(keys.iter().skip(1).take(2).copied().collect()));
    let payer = tx.fee_payer().map(|k| Pubkey(*k)).unwrap_or_default();
    for p in [&open, &tight] {
        let _ = evaluate_transaction(&tx, p, &payer, None);
        let _ = evaluate_transaction(&tx, p, &payer, Some(500));
    }
    let agent = SigningKey::from_bytes(&[9; 32]);
    let agent_pubkey = Pubkey(agent.verifying_key().to_bytes());
    let _ = check_intent(&tx, &agent_pubkey, &[0; 32], 50_000);
    if let Some(fee_payer) = tx.fee_payer() {
        let _ = check_intent(&tx, &Pubkey(*fee_payer), &[0; 32], u64::MAX);
    }
    if let Ok((signature, signed)) = tx.sign(&agent) {
        assert_eq!(signed.len(), data.len());
        assert!(tx.signer_index(&agent_pubkey.0).is_some());
        let reparsed = Transaction::parse(&signed).unwrap();
        assert_eq!(reparsed.message, tx.message);
        let differing = signed.iter().zip(data).filter(|(a, b)| a != b).count();
        assert!(differing <= SIGNATURE_LEN);
        assert!(signed.windows(SIGNATURE_LEN).any(|w| w == signature));
        agent.verifying_key().verify(tx.message, &Signature::from_bytes(&signature)).unwrap();
    }
});
