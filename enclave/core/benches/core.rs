//! Costs of the enclave's work: raw ed25519 signing, transaction parsing, KMS envelope opening
//! (RSA-2048 OAEP + AES-CBC), and the whole hot path (cached grant → cached agent key → policy →
//! sign, its receipt included), what the receipt alone adds, plus the cold path that opens a
//! grant from its envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use enclave_core::enclave::SignRequest;
use enclave_core::enclave::handover::{StateSnapshot, open_chunk, seal_chunks};
use enclave_core::envelope::{self, ContentForm, RecipientKey};
use enclave_core::policy::{Ledger, SpendKey, SpendRecord};
use enclave_core::solana::Transaction;
use enclave_core::store::TtlMap;
use enclave_core::{OsRandom, Pubkey};

fn unlimited() -> enclave_core::policy::Policy {
    let mut p = policy();
    p.max_lamports_per_tx = u64::MAX;
    p.max_lamports_per_day = u64::MAX;
    p
}

fn benches(c: &mut Criterion) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let agent = Pubkey(key.verifying_key().to_bytes());
    let legacy = legacy_tx(
        &agent,
        &[compute_limit(10_000), compute_price(1_000), sol_transfer(&agent, &Pubkey([9; 32]), 1)],
    );
    let v0 = v0_tx(&agent, &[sol_transfer(&agent, &Pubkey([9; 32]), 1)]);
    let message = Transaction::parse(&legacy).unwrap().message.to_vec();

    c.bench_function("ed25519_sign_raw", |b| b.iter(|| key.sign(black_box(&message))));
    c.bench_function("parse_legacy_transfer", |b| {
        b.iter(|| Transaction::parse(black_box(&legacy)).unwrap().instructions.len())
    });
    c.bench_function("parse_v0_transfer", |b| {
        b.iter(|| Transaction::parse(black_box(&v0)).unwrap().instructions.len())
    });

    let recipient = RecipientKey::generate(&OsRandom, 2048).unwrap();
    let env =
        envelope::seal(&[1; 32], recipient.spki_der(), &OsRandom, ContentForm::Chunked).unwrap();
    c.bench_function("envelope_open_rsa2048", |b| {
        b.iter(|| envelope::open(black_box(&env), &recipient).unwrap())
    });

    // The default request-id store (1,000,000 ids, reserved up front) is far larger than the
    // iterations criterion runs here.
    let f = fixture_with(config());
    let s = f.setup(1, unlimited());
    let a = s.agent.agent_pubkey;
    let tx = legacy_tx(
        &a,
        &[compute_limit(10_000), compute_price(1_000), sol_transfer(&a, &Pubkey([9; 32]), 1)],
    );
    f.sign(request(&s, &tx, 0)).unwrap();
    let mut n: u128 = 1;
    c.bench_function("hot_path_sign_cached_grant", |b| {
        b.iter(|| {
            n += 1;
            let req = SignRequest { request_id: n.to_le_bytes(), ..request(&s, &tx, 0) };
            match f.enclave.sign(&req).unwrap() {
                enclave_core::SignOutcome::Signed(signed) => signed.signature,
                enclave_core::SignOutcome::NeedKey(_) => panic!("grant not cached"),
            }
        })
    });

    // What a receipt adds to each signature (docs/receipts.md): the `signed` body built, encoded
    // and hashed into the chain (the ring then copies its ~250 bytes into its buffer).
    let mut chain = signer_receipts::Chain::resume([1; 16], 41, [2; 32]);
    let body = signer_receipts::Body::Signed(signer_receipts::Signed {
        request_id: [3; 16],
        grant_id: [4; 16],
        bot_id: [5; 16],
        agent: Pubkey([6; 32]),
        message_sha256: [7; 32],
        charged: signer_receipts::Charge { lamports: 1, fee_lamports: 5_000, ..Default::default() },
        after: signer_receipts::Counters { day: 20_000, lamports: 5_001, ..Default::default() },
    });
    c.bench_function("receipt_append_signed", |b| {
        b.iter(|| chain.append(black_box(1_767_268_800), black_box(&body)).unwrap().bytes)
    });

    // Cold: a fresh grant every iteration, opened from its envelope (KMS work itself excluded).
    let mut group = c.benchmark_group("cold");
    group.sample_size(20);
    group.bench_function("sign_with_envelope_open", |b| {
        b.iter_batched(
            || {
                let g = f.grant(&s.user, &s.vault, a, unlimited(), 600);
                let sealed = enclave_core::records::SealedGrant::parse(&g.record).unwrap();
                let env = f.kms_envelope(&sealed.wrapped);
                (g, env)
            },
            |(g, env)| {
                n += 1;
                let req = SignRequest {
                    grant_record: &g.record,
                    envelope: Some(&env),
                    request_id: n.to_le_bytes(),
                    ..request(&s, &tx, 0)
                };
                f.enclave.sign(&req).unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The decision state of `grants` grants as a handover carries it: one counter per grant (with a
/// token and a minute of velocity), three request ids and a nonce per grant.
fn state_of(grants: usize) -> StateSnapshot {
    let id = |i: usize, tag: u8| {
        let mut b = [tag; 16];
        b[..8].copy_from_slice(&(i as u64).to_le_bytes());
        b
    };
    let mut s = StateSnapshot {
        answers_for: vec![enclave_core::EnclaveId([1; 16])],
        ..StateSnapshot::default()
    };
    for i in 0..grants {
        for r in 0..3u8 {
            s.requests.push((id(i, r), [r; 32], 1_767_272_400));
        }
        s.nonces.push((id(i, 9), 1_767_269_400));
        let mut wallet = [2u8; 32];
        wallet[..8].copy_from_slice(&(i as u64).to_le_bytes());
        s.ledger.push(SpendRecord {
            key: Some(SpendKey { wallet, bot_id: id(i, 3), agent: [4; 32] }),
            day: 20_454,
            lamports: 1_000_000,
            tokens: vec![(Pubkey([5; 32]), 10)],
            notional_cents: 100,
            recent: vec![1_767_268_800, 1_767_268_801],
            last_seen: 1_767_268_801,
        });
    }
    s
}

/// A live handover of 100 000 grants' decision state: what the predecessor does (encode, encrypt
/// in chunks) and what the successor does (decrypt, decode, build its stores).
fn handover(c: &mut Criterion) {
    let snapshot = state_of(100_000);
    let key = enclave_core::Secret32::new([7; 32]);
    let (p, s) = (enclave_core::EnclaveId([1; 16]), enclave_core::EnclaveId([2; 16]));
    let bytes = snapshot.encode().unwrap();
    let chunks = seal_chunks(&key, p, s, &bytes).unwrap();
    eprintln!(
        "handover of 100000 grants: {} bytes of state in {} chunks of at most {} bytes",
        bytes.len(),
        chunks.len(),
        enclave_core::enclave::handover::CHUNK_LEN
    );
    let mut group = c.benchmark_group("handover_100k_grants");
    group.sample_size(10);
    group.bench_function("predecessor_encode_and_encrypt", |b| {
        b.iter(|| seal_chunks(&key, p, s, &snapshot.encode().unwrap()).unwrap().len())
    });
    group.bench_function("successor_decrypt_decode_and_store", |b| {
        b.iter(|| {
            let total = chunks.len() as u32;
            let mut plain = Vec::with_capacity(bytes.len());
            for (i, c) in chunks.iter().enumerate() {
                plain.extend_from_slice(&open_chunk(&key, p, s, i as u32, total, c).unwrap());
            }
            let decoded = StateSnapshot::decode(&plain).unwrap();
            let mut requests = TtlMap::new("request_id", 1_000_000);
            for (id, digest, expires) in &decoded.requests {
                requests.insert(*id, *digest, *expires, 1_767_268_800).unwrap();
            }
            let mut ledger = Ledger::default();
            ledger.import(decoded.ledger);
            (requests.len(), ledger.len())
        })
    });
    group.finish();
}

criterion_group!(core, benches, handover);
criterion_main!(core);
