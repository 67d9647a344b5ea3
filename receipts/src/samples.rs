//! Fixed sample contents shared by the unit tests and the golden-vector generator
//! (`tests/vectors.rs` includes this file), so both build the same receipts.
#![allow(dead_code)]

use signer_types::Pubkey;
use signer_types::policy::{Policy, TokenLimit};

use crate::{
    Body, Chain, Charge, CheckpointKey, Counters, GrantCreated, Refused, RevokeTarget, Signed,
    TokenAmount,
};

/// A standalone enclave, the one it hands over to, and one that restarted after a crash.
pub const ENCLAVE_A: [u8; 16] = [0xa1; 16];
pub const ENCLAVE_B: [u8; 16] = [0xb2; 16];
pub const ENCLAVE_C: [u8; 16] = [0xc3; 16];
/// Checkpoint key seeds of A, B and an impostor.
pub const SEED_A: [u8; 32] = [0x5a; 32];
pub const SEED_B: [u8; 32] = [0x5b; 32];
pub const SEED_OTHER: [u8; 32] = [0x66; 32];

/// 2025-01-01T00:00:00Z.
pub const T0: u64 = 1_735_689_600;

pub const WALLET: Pubkey = Pubkey([0x11; 32]);
pub const AGENT: Pubkey = Pubkey([0x22; 32]);
pub const USDC: Pubkey = Pubkey([0x33; 32]);
pub const BONK: Pubkey = Pubkey([0x44; 32]);
pub const GRANT_ID: [u8; 16] = [0x0a; 16];
pub const BOT_ID: [u8; 16] = [0x0b; 16];
pub const REQUEST_1: [u8; 16] = [0x01; 16];
pub const REQUEST_2: [u8; 16] = [0x02; 16];

pub fn key_a() -> CheckpointKey {
    CheckpointKey::from_bytes(&SEED_A)
}

pub fn key_b() -> CheckpointKey {
    CheckpointKey::from_bytes(&SEED_B)
}

pub fn key_other() -> CheckpointKey {
    CheckpointKey::from_bytes(&SEED_OTHER)
}

/// The policy of the sample grant, as the CBOR a sealed grant carries.
pub fn policy_cbor() -> Vec<u8> {
    let policy = Policy {
        max_lamports_per_tx: 1_000_000_000,
        max_lamports_per_day: 5_000_000_000,
        max_fee_lamports: 100_000,
        tokens: vec![TokenLimit { mint: USDC, max_per_tx: 100_000_000, max_per_day: 500_000_000 }],
        allowed_programs: vec![],
        max_notional_cents_per_tx: 0,
        max_notional_cents_per_day: 0,
        destinations: None,
        max_tx_per_minute: Some(10),
    };
    let mut out = Vec::new();
    ciborium::into_writer(&policy, &mut out).unwrap();
    out
}

pub fn vault_created() -> Body {
    Body::VaultCreated { wallet: WALLET, imported: false }
}

pub fn vault_imported() -> Body {
    Body::VaultCreated { wallet: WALLET, imported: true }
}

pub fn agent_created() -> Body {
    Body::AgentCreated { wallet: WALLET, agent: AGENT }
}

pub fn grant_created() -> Body {
    Body::GrantCreated(GrantCreated {
        grant_id: GRANT_ID,
        wallet: WALLET,
        bot_id: BOT_ID,
        agent: AGENT,
        message_sha256: [0x4d; 32],
        expires_at: T0 + 86_400,
        policy: policy_cbor(),
    })
}

/// A SOL transfer of 0.25 SOL and 10 USDC on day 20089, after a first one.
pub fn signed() -> Body {
    Body::Signed(Signed {
        request_id: REQUEST_1,
        grant_id: GRANT_ID,
        bot_id: BOT_ID,
        agent: AGENT,
        message_sha256: [0x5e; 32],
        charged: Charge {
            lamports: 250_000_000,
            fee_lamports: 5_000,
            notional_cents: 0,
            tokens: vec![TokenAmount { mint: USDC, amount: 10_000_000 }],
        },
        after: Counters {
            day: T0 / 86_400,
            lamports: 500_010_000,
            notional_cents: 0,
            tokens: vec![
                TokenAmount { mint: USDC, amount: 20_000_000 },
                TokenAmount { mint: BONK, amount: 7 },
            ],
        },
    })
}

pub fn refused() -> Body {
    Body::Refused(Refused {
        request_id: REQUEST_2,
        grant_id: GRANT_ID,
        code: "policy_denied".into(),
        rule: "max_lamports_per_tx: 2000000000 exceeds the per-transaction limit 1000000000 — é"
            .into(),
    })
}

pub fn revoked_one() -> Body {
    Body::Revoked { wallet: WALLET, target: RevokeTarget::Record { record_id: GRANT_ID } }
}

pub fn revoked_all() -> Body {
    Body::Revoked { wallet: WALLET, target: RevokeTarget::IssuedBefore { cutoff: T0 + 3_600 } }
}

pub fn kill_switch(on: bool) -> Body {
    Body::KillSwitch { on }
}

/// Every appendable body (all kinds but chain start and handover in).
pub fn appendable() -> Vec<Body> {
    vec![
        vault_created(),
        vault_imported(),
        agent_created(),
        grant_created(),
        signed(),
        refused(),
        revoked_one(),
        revoked_all(),
        kill_switch(true),
        kill_switch(false),
    ]
}

/// A's chain: start, vault, agent, grant, signed, refused (seqs 0..=5), receipt bytes in order.
pub fn chain_a() -> (Chain, Vec<Vec<u8>>) {
    let (mut chain, start) = Chain::start(ENCLAVE_A, T0).unwrap();
    let mut out = vec![start.bytes];
    for (i, body) in
        [vault_created(), agent_created(), grant_created(), signed(), refused()].iter().enumerate()
    {
        out.push(chain.append(T0 + 1 + i as u64, body).unwrap().bytes);
    }
    (chain, out)
}

/// A's chain, then A hands over to B: A's `handover_out` at 6, B's `handover_in` at 7, then B
/// signs (8) and engages the kill switch (9). Returns both chains and all receipts in order.
pub fn chain_handover() -> (Chain, Chain, Vec<Vec<u8>>) {
    let (mut a, mut out) = chain_a();
    out.push(a.append(T0 + 10, &Body::HandoverOut { successor: ENCLAVE_B }).unwrap().bytes);
    let (mut b, first) =
        Chain::handover_in(ENCLAVE_B, T0 + 11, ENCLAVE_A, a.seq(), a.head()).unwrap();
    out.push(first.bytes);
    out.push(b.append(T0 + 12, &signed()).unwrap().bytes);
    out.push(b.append(T0 + 13, &kill_switch(true)).unwrap().bytes);
    (a, b, out)
}
