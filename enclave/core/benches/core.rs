//! Costs of the enclave's work: raw ed25519 signing, transaction parsing, KMS envelope opening
//! (RSA-2048 OAEP + AES-CBC), and the whole hot path (cached grant → cached agent key → policy →
//! sign), plus the cold path that opens a grant from its envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use enclave_core::enclave::SignRequest;
use enclave_core::envelope::{self, ContentForm, RecipientKey};
use enclave_core::solana::Transaction;
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

criterion_group!(core, benches);
criterion_main!(core);
