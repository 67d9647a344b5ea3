//! Differential test: over generated and mutated transactions, the hand-written parser accepts
//! exactly what the independent implementation (`solana-transaction`, strict bincode, then
//! `sanitize`) accepts, restricted to what SPEC §7 admits on top (legacy or v0, ≤ 1232 bytes, no
//! duplicate static keys). For accepted inputs the parsed fields must agree too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use bincode::Options as _;
use common::{address, blockhash};
use enclave_core::Pubkey;
use enclave_core::solana::{Transaction, Version};
use rand_core::{Rng as _, SeedableRng as _};
use solana_instruction::{AccountMeta, Instruction};
use solana_message::{AddressLookupTableAccount, VersionedMessage};
use solana_signature::Signature;
use solana_transaction::versioned::VersionedTransaction;

type Rng = chacha20::ChaCha20Rng;

fn oracle(bytes: &[u8]) -> Option<VersionedTransaction> {
    if bytes.len() > 1232 {
        return None;
    }
    let tx: VersionedTransaction = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(bytes)
        .ok()?;
    tx.sanitize().ok()?;
    if !matches!(tx.message, VersionedMessage::Legacy(_) | VersionedMessage::V0(_)) {
        return None;
    }
    let keys = tx.message.static_account_keys();
    if (0..keys.len()).any(|i| keys[i + 1..].contains(&keys[i])) {
        return None; // the runtime's AccountLoadedTwice
    }
    Some(tx)
}

fn key(rng: &mut Rng, pool: u8) -> Pubkey {
    Pubkey([(rng.next_u32() % u32::from(pool)) as u8 + 1; 32])
}

/// A valid transaction built by the independent implementation.
fn generate(rng: &mut Rng) -> Vec<u8> {
    let payer = key(rng, 40);
    let n_ix = rng.next_u32() % 4;
    let mut ixs = Vec::new();
    for _ in 0..n_ix {
        let program = Pubkey([200 + (rng.next_u32() % 5) as u8; 32]);
        let n_acc = rng.next_u32() % 4;
        let accounts = (0..n_acc)
            .map(|_| {
                let k = address(&key(rng, 40));
                match rng.next_u32() % 4 {
                    0 => AccountMeta::new(k, true),
                    1 => AccountMeta::new_readonly(k, true),
                    2 => AccountMeta::new(k, false),
                    _ => AccountMeta::new_readonly(k, false),
                }
            })
            .collect();
        let data: Vec<u8> = (0..rng.next_u32() % 20).map(|_| rng.next_u32() as u8).collect();
        ixs.push(Instruction::new_with_bytes(address(&program), &data, accounts));
    }
    let message = if rng.next_u32().is_multiple_of(2) {
        VersionedMessage::Legacy(solana_message::Message::new_with_blockhash(
            &ixs,
            Some(&address(&payer)),
            &blockhash(),
        ))
    } else {
        let tables: Vec<AddressLookupTableAccount> = (0..rng.next_u32() % 3)
            .map(|t| AddressLookupTableAccount {
                key: address(&Pubkey([150 + t as u8; 32])),
                addresses: (0..6).map(|_| address(&key(rng, 40))).collect(),
            })
            .collect();
        match solana_message::v0::Message::try_compile(&address(&payer), &ixs, &tables, blockhash())
        {
            Ok(m) => VersionedMessage::V0(m),
            Err(_) => VersionedMessage::V0(
                solana_message::v0::Message::try_compile(&address(&payer), &ixs, &[], blockhash())
                    .unwrap(),
            ),
        }
    };
    let n = usize::from(message.header().num_required_signatures);
    let signatures = (0..n).map(|_| Signature::from([rng.next_u32() as u8; 64])).collect();
    bincode::serialize(&VersionedTransaction { signatures, message }).unwrap()
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut t = base.to_vec();
    let pos = |rng: &mut Rng, len: usize| if len == 0 { 0 } else { rng.next_u32() as usize % len };
    for _ in 0..=(rng.next_u32() % 3) {
        let p = pos(rng, t.len());
        match rng.next_u32() % 9 {
            0 if !t.is_empty() => t[p] ^= 1 << (rng.next_u32() % 8),
            1 if !t.is_empty() => t[p] = rng.next_u32() as u8,
            2 => t.insert(p, rng.next_u32() as u8),
            3 if !t.is_empty() => {
                t.remove(p);
            }
            4 => t.truncate(p),
            5 => t.push(rng.next_u32() as u8),
            // Header and count bytes are where the interesting rules live.
            6 => {
                let sigs = usize::from(t.first().copied().unwrap_or(0) & 0x7f);
                let header = 1
                    + sigs * 64
                    + usize::from(t.get(1 + sigs * 64).is_some_and(|b| *b & 0x80 != 0));
                let q = header + (rng.next_u32() % 4) as usize;
                if let Some(b) = t.get_mut(q) {
                    *b = [0, 1, 2, 3, 0x7f, 0x80, 0x81, 0xff][(rng.next_u32() % 8) as usize];
                }
            }
            7 => {
                // Duplicate a static key over another.
                let sigs = usize::from(t.first().copied().unwrap_or(0) & 0x7f);
                let prefix = t.get(1 + sigs * 64).map(|b| usize::from(*b & 0x80 != 0)).unwrap_or(0);
                let start = 1 + sigs * 64 + 4 + prefix;
                if let Some(k) = t.get(start..start + 32).map(<[u8]>::to_vec)
                    && let Some(dst) = t.get_mut(start + 32..start + 64)
                {
                    dst.copy_from_slice(&k);
                }
            }
            _ => t.extend(std::iter::repeat_n(0u8, (rng.next_u32() % 1300) as usize)),
        }
    }
    t
}

fn compare(bytes: &[u8], stats: &mut (usize, usize)) {
    let ours = Transaction::parse(bytes);
    let theirs = oracle(bytes);
    match (&ours, &theirs) {
        (Ok(tx), Some(o)) => {
            stats.0 += 1;
            assert_eq!(tx.num_signatures, o.signatures.len());
            assert_eq!(tx.message, o.message.serialize().as_slice(), "signed bytes");
            assert_eq!(tx.version == Version::V0, matches!(o.message, VersionedMessage::V0(_)));
            let keys: Vec<[u8; 32]> = tx.static_keys().copied().collect();
            let oracle_keys: Vec<[u8; 32]> =
                o.message.static_account_keys().iter().map(|k| k.to_bytes()).collect();
            assert_eq!(keys, oracle_keys);
            assert_eq!(tx.instructions.len(), o.message.instructions().len());
            for (a, b) in tx.instructions.iter().zip(o.message.instructions()) {
                assert_eq!(
                    (a.program_id_index, a.accounts, a.data),
                    (b.program_id_index, b.accounts.as_slice(), b.data.as_slice())
                );
            }
            assert_eq!(tx.lookups.len(), o.message.address_table_lookups().map_or(0, |l| l.len()));
        }
        (Err(_), None) => stats.1 += 1,
        _ => panic!(
            "disagreement on {} ({} bytes): ours {:?}, oracle {}",
            hex::encode(bytes),
            bytes.len(),
            ours.as_ref().map(|_| "accept"),
            if theirs.is_some() { "accept" } else { "reject" }
        ),
    }
}

#[test]
fn parser_agrees_with_the_independent_implementation() {
    let mut rng = Rng::seed_from_u64(0x5eed);
    let mut stats = (0usize, 0usize);
    for _ in 0..1000 {
        let base = generate(&mut rng);
        compare(&base, &mut stats);
        for _ in 0..100 {
            let m = mutate(&mut rng, &base);
            compare(&m, &mut stats);
        }
    }
    // Both sides must be well exercised.
    assert!(stats.0 > 1_000 && stats.1 > 10_000, "accepted {} rejected {}", stats.0, stats.1);
    eprintln!("differential: {} accepted, {} rejected, all agreeing", stats.0, stats.1);
}

#[test]
fn hand_picked_edge_cases_agree() {
    let mut rng = Rng::seed_from_u64(7);
    let base = generate(&mut rng);
    let mut stats = (0, 0);
    let mut cases = vec![vec![], vec![0], vec![0x80], vec![1; 1232], vec![0; 1233]];
    // Non-canonical compact-u16 signature counts.
    for prefix in [[0x81u8, 0x00], [0x80, 0x00], [0xff, 0x7f]] {
        let mut t = prefix.to_vec();
        t.extend_from_slice(&base[1..]);
        cases.push(t);
    }
    // Version bytes 0x81 (v1), 0xff and 0x80 (v0) spliced into a legacy message.
    for v in [0x80u8, 0x81, 0xff] {
        let mut t = base.clone();
        let sigs = usize::from(t[0]);
        if t[1 + sigs * 64] & 0x80 == 0 {
            t.insert(1 + sigs * 64, v);
        }
        cases.push(t);
    }
    for c in &cases {
        compare(c, &mut stats);
    }
}
