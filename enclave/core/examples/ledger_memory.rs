//! Memory of the spend ledger: per counter and at capacity (SPEC §14; `docs/performance.md`).
//!
//! `cargo run -p enclave-core --example ledger_memory [-- COUNTERS]` fills a ledger with
//! COUNTERS counters (default: the default capacity), each as a signature leaves it (one token
//! counted, one velocity timestamp), and prints the resident memory it took, from
//! `/proc/self/statm`. Linux only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use enclave_core::policy::{
    DEFAULT_SPEND_COUNTER_CAPACITY, DEFAULT_SPEND_COUNTERS_PER_WALLET, Ledger, Spend, SpendKey,
};
use enclave_core::pubkey::Pubkey;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let counters: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("COUNTERS is a number"))
        .unwrap_or(DEFAULT_SPEND_COUNTER_CAPACITY);
    let mut ledger = Ledger::new(counters, DEFAULT_SPEND_COUNTERS_PER_WALLET);
    let spend = Spend {
        lamports: 1_000,
        tokens: vec![(Pubkey([7; 32]), 5)],
        fee_lamports: 5_000,
        agent_pays_fee: true,
        notional_cents: 0,
    };
    let now = 1_796_000_000;
    let before = resident_bytes();
    for i in 0..counters {
        let mut wallet = [0u8; 32];
        wallet[..8].copy_from_slice(&(i as u64 / 1000).to_le_bytes());
        let mut bot_id = [0u8; 16];
        bot_id[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = SpendKey { wallet, bot_id, agent: [9; 32] };
        ledger.admit(&key, now).unwrap();
        ledger.record(key, &spend, now);
    }
    let after = resident_bytes();
    let total = after.saturating_sub(before);
    println!(
        "{{\"counters\":{},\"resident_bytes\":{total},\"bytes_per_counter\":{:.0}}}",
        ledger.len(),
        total as f64 / counters.max(1) as f64
    );
}
