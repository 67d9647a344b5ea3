//! Golden vectors shared with the TypeScript client (`receipts/vectors/receipts-v1.json`): one
//! receipt of every kind in a chain that spans a handover, signed checkpoints with their keys and
//! bindings, invalid receipts and checkpoints with the error code each must fail with, and
//! delivery scenarios (complete, tampered, dropped, reordered, duplicated, forked, forged
//! checkpoints, restart, trimmed, …) with the exact report the verifier gives.
//!
//! `SIGNER_UPDATE_VECTORS=1 cargo nextest run -p signer-receipts --test vectors` rewrites the
//! file from the code; review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use serde_json::{Value, json};
use signer_receipts::*;

#[path = "../src/samples.rs"]
mod samples;
use samples::*;

const SEED_C: [u8; 32] = [0x5c; 32];

fn key_c() -> CheckpointKey {
    CheckpointKey::from_bytes(&SEED_C)
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/receipts-v1.json")
}

/// The main chain: A writes one receipt of every kind but handover-in (seqs 0..=11, the last its
/// handover-out to B); B continues with its handover-in (12), a signature (13) and the kill
/// switch (14).
fn main_chain() -> (Vec<(&'static str, Vec<u8>)>, Chain, Chain) {
    let (mut a, start) = Chain::start(ENCLAVE_A, T0).unwrap();
    let mut out = vec![("chain_start", start.bytes)];
    let bodies = [
        ("vault_created", vault_created()),
        ("vault_imported", vault_imported()),
        ("agent_created", agent_created()),
        ("grant_created", grant_created()),
        ("signed", signed()),
        ("refused", refused()),
        ("revoked_record", revoked_one()),
        ("revoked_issued_before", revoked_all()),
        ("kill_switch_on", kill_switch(true)),
        ("kill_switch_off", kill_switch(false)),
        ("handover_out", Body::HandoverOut { successor: ENCLAVE_B }),
    ];
    for (i, (name, body)) in bodies.into_iter().enumerate() {
        out.push((name, a.append(T0 + 1 + i as u64, &body).unwrap().bytes));
    }
    let (mut b, first) =
        Chain::handover_in(ENCLAVE_B, T0 + 20, ENCLAVE_A, a.seq(), a.head()).unwrap();
    out.push(("handover_in", first.bytes));
    let Body::Signed(mut second) = signed() else { unreachable!() };
    second.request_id = [0x03; 16];
    second.charged.tokens.clear();
    second.after.lamports += second.charged.lamports + second.charged.fee_lamports;
    out.push(("signed_after_handover", b.append(T0 + 21, &Body::Signed(second)).unwrap().bytes));
    out.push(("kill_switch_after_handover", b.append(T0 + 22, &kill_switch(true)).unwrap().bytes));
    (out, a, b)
}

fn hex_list(list: &[Vec<u8>]) -> Vec<String> {
    list.iter().map(hex::encode).collect()
}

fn cp(
    key: &CheckpointKey,
    decider: [u8; 16],
    signer: [u8; 16],
    seq: u64,
    head: [u8; 32],
) -> SignedCheckpoint {
    key.sign(&Checkpoint { decider, signer, seq, head, time: T0 + 100 + seq })
}

/// A receipt's bytes from a kind and a raw body, bypassing the encoder's checks.
fn raw(kind: u8, seq: u64, prev: [u8; 32], body: &[u8]) -> Vec<u8> {
    let mut out = vec![1, kind];
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ENCLAVE_A);
    out.extend_from_slice(&T0.to_le_bytes());
    out.extend_from_slice(&prev);
    out.extend_from_slice(body);
    out
}

fn refused_raw(code: &[u8], rule: &[u8]) -> Vec<u8> {
    let mut body = vec![0x01; 32];
    body.extend_from_slice(&(code.len() as u16).to_le_bytes());
    body.extend_from_slice(code);
    body.extend_from_slice(&(rule.len() as u16).to_le_bytes());
    body.extend_from_slice(rule);
    raw(receipt::kind::REFUSED, 3, [0x77; 32], &body)
}

fn invalid_receipts(chain: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>)> {
    let start = &chain[0];
    let signed = &chain[5];
    let mut v2 = start.clone();
    v2[0] = 2;
    let mut kind0 = start.clone();
    kind0[1] = 0;
    let mut kind11 = start.clone();
    kind11[1] = 11;
    let mut imported2 = chain[2].clone();
    *imported2.last_mut().unwrap() = 2;
    let mut scope3 = chain[8].clone();
    scope3[66 + 32] = 3;
    let mut trailing = start.clone();
    trailing.push(0);
    let mut policy_long = vec![0u8; 136];
    policy_long.extend_from_slice(&16385u16.to_le_bytes());
    let mut tokens_65 = vec![0u8; 136];
    tokens_65.extend_from_slice(&65u16.to_le_bytes());
    // The signed receipt's `after.tokens` lists USDC then BONK: make the second USDC too.
    let mut duplicate = signed.clone();
    let at = duplicate.len() - 40;
    duplicate[at..at + 32].copy_from_slice(&USDC.0);
    let chain_start_seq1 = raw(receipt::kind::CHAIN_START, 1, [0; 32], &[]);
    let mut handover_prev = ENCLAVE_B.to_vec();
    handover_prev.extend_from_slice(&7u64.to_le_bytes());
    handover_prev.extend_from_slice(&[0x78; 32]);
    vec![
        ("empty", vec![]),
        ("truncated_header", start[..65].to_vec()),
        ("truncated_body", signed[..signed.len() - 1].to_vec()),
        ("trailing_byte", trailing),
        ("version_2", v2),
        ("kind_0", kind0),
        ("kind_11", kind11),
        ("flag_2", imported2),
        ("revoke_scope_3", scope3),
        ("policy_too_long", raw(receipt::kind::GRANT_CREATED, 4, [0x77; 32], &policy_long)),
        ("code_too_long", refused_raw(&[b'a'; 65], b"")),
        ("code_empty", refused_raw(b"", b"")),
        ("code_not_ascii", refused_raw(b"policy denied", b"")),
        ("rule_too_long", refused_raw(b"x", &[b'a'; 257])),
        ("rule_not_utf8", refused_raw(b"x", &[b'o', b'k', 0xff])),
        ("tokens_65", raw(receipt::kind::SIGNED, 5, [0x77; 32], &tokens_65)),
        ("duplicate_mint", duplicate),
        ("chain_start_seq_1", chain_start_seq1),
        ("chain_start_with_prev", raw(receipt::kind::CHAIN_START, 0, [0x77; 32], &[])),
        ("zero_prev", raw(receipt::kind::KILL_SWITCH, 5, [0; 32], &[1])),
        (
            "handover_in_prev_not_head",
            raw(receipt::kind::HANDOVER_IN, 8, [0x77; 32], &handover_prev),
        ),
    ]
}

fn generate() -> Value {
    let (named, a, b) = main_chain();
    let chain: Vec<Vec<u8>> = named.iter().map(|(_, r)| r.clone()).collect();
    let head = |seq: usize| receipt_hash(&chain[seq]);
    let keys = [("a", ENCLAVE_A, key_a()), ("b", ENCLAVE_B, key_b()), ("c", ENCLAVE_C, key_c())];
    let trusted = |names: &[&str]| -> Vec<([u8; 16], [u8; 32])> {
        keys.iter()
            .filter(|(n, _, _)| names.contains(n))
            .map(|(_, id, k)| (*id, k.public()))
            .collect()
    };

    let receipts: Vec<Value> = named
        .iter()
        .map(|(name, bytes)| {
            json!({
                "name": name,
                "hex": hex::encode(bytes),
                "hash": hex::encode(receipt_hash(bytes)),
                "receipt": Receipt::decode(bytes).unwrap(),
            })
        })
        .collect();

    let cp_a5 = cp(&key_a(), ENCLAVE_A, ENCLAVE_A, 5, head(5));
    let cp_b14 = cp(&key_b(), ENCLAVE_B, ENCLAVE_B, b.seq(), b.head());
    let cp_b13 = cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 13, head(13));
    assert_eq!(a.seq(), 11);
    let checkpoints: Vec<Value> =
        [("a_at_5", "a", &cp_a5), ("b_at_14", "b", &cp_b14), ("b_at_13", "b", &cp_b13)]
            .iter()
            .map(|(name, key, c)| {
                json!({
                    "name": name,
                    "key": key,
                    "hex": hex::encode(c.encode()),
                    "signed_message_hex": hex::encode(c.checkpoint.signed_message()),
                    "checkpoint": c,
                })
            })
            .collect();

    let mut moved = cp_a5;
    moved.checkpoint.seq = 6;
    let mut flipped = cp_a5;
    flipped.signature[0] ^= 1;
    let mut v2 = cp_a5.encode();
    v2[0] = 2;
    let invalid_checkpoints = json!([
        {"name": "short", "key": "a", "hex": hex::encode(&cp_a5.encode()[..144]), "code": "length"},
        {"name": "long", "key": "a", "hex": hex::encode([&cp_a5.encode()[..], &[0]].concat()), "code": "length"},
        {"name": "version_2", "key": "a", "hex": hex::encode(v2), "code": "unsupported_version"},
        {"name": "another_key", "key": "a", "hex": hex::encode(cp(&key_other(), ENCLAVE_A, ENCLAVE_A, 5, head(5)).encode()), "code": "bad_signature"},
        {"name": "seq_moved", "key": "a", "hex": hex::encode(moved.encode()), "code": "bad_signature"},
        {"name": "signature_flipped", "key": "a", "hex": hex::encode(flipped.encode()), "code": "bad_signature"},
    ]);
    // Every invalid checkpoint fails as stated.
    for v in invalid_checkpoints.as_array().unwrap() {
        let bytes = hex::decode(v["hex"].as_str().unwrap()).unwrap();
        let code = match SignedCheckpoint::decode(&bytes) {
            Err(e) => e.code(),
            Ok(c) => c.verify(&key_a().public()).unwrap_err().code(),
        };
        assert_eq!(code, v["code"], "{}", v["name"]);
    }

    let invalid: Vec<Value> = invalid_receipts(&chain)
        .into_iter()
        .map(|(name, bytes)| {
            let e = Receipt::decode(&bytes).unwrap_err();
            json!({"name": name, "hex": hex::encode(&bytes), "code": e.code(), "error": e.to_string()})
        })
        .collect();

    // Delivery scenarios.
    let mut scenarios = Vec::new();
    let mut scenario = |name: &str,
                        description: &str,
                        receipts: Vec<Vec<u8>>,
                        cps: Vec<SignedCheckpoint>,
                        key_names: &[&str]| {
        let report = verify(&receipts, &cps, &trusted(key_names));
        scenarios.push(json!({
            "name": name,
            "description": description,
            "receipts": hex_list(&receipts),
            "checkpoints": cps.iter().map(|c| hex::encode(c.encode())).collect::<Vec<_>>(),
            "keys": key_names,
            "ok": report.ok(),
            "report": report,
            "text": report.to_string(),
        }));
    };
    let both = vec![cp_a5, cp_b14];
    scenario(
        "complete",
        "the whole chain in order, checkpoints of A at 5 and B at 14",
        chain.clone(),
        both.clone(),
        &["a", "b"],
    );
    scenario(
        "unvouched_tail",
        "B's latest checkpoint is at 13: receipt 14 is after it (not vouched, still ok)",
        chain.clone(),
        vec![cp_a5, cp_b13],
        &["a", "b"],
    );
    let mut tampered = chain.clone();
    {
        let mut r = Receipt::decode(&tampered[5]).unwrap();
        let Body::Signed(s) = &mut r.body else { unreachable!() };
        s.charged.lamports = 1;
        tampered[5] = r.encode().unwrap();
    }
    scenario(
        "tampered",
        "receipt 5 re-encoded with a smaller charge: 6's prev no longer matches",
        tampered,
        both.clone(),
        &["a", "b"],
    );
    let mut dropped = chain.clone();
    dropped.remove(7);
    scenario("dropped", "receipt 7 withheld", dropped, both.clone(), &["a", "b"]);
    let mut reordered = chain.clone();
    reordered.swap(3, 4);
    scenario(
        "reordered",
        "receipts 3 and 4 delivered swapped",
        reordered,
        both.clone(),
        &["a", "b"],
    );
    let mut duplicated = chain.clone();
    duplicated.insert(6, chain[5].clone());
    scenario("duplicated", "receipt 5 delivered twice", duplicated, both.clone(), &["a", "b"]);
    let mut forked = chain.clone();
    {
        let mut other = Chain::resume(ENCLAVE_A, 9, head(9));
        forked.push(other.append(T0 + 50, &kill_switch(true)).unwrap().bytes);
    }
    scenario(
        "forked",
        "a second receipt 10 that continues 9 differently",
        forked,
        both.clone(),
        &["a", "b"],
    );
    scenario(
        "forged_checkpoints",
        "checkpoints by another key as A, by an unknown signer, over a wrong head, and beyond the delivered receipts",
        chain.clone(),
        vec![
            cp(&key_other(), ENCLAVE_A, ENCLAVE_A, 11, head(11)),
            cp(&key_other(), ENCLAVE_B, ENCLAVE_C, 14, head(14)),
            cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 14, [0xee; 32]),
            cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 20, [0xee; 32]),
        ],
        &["a", "b"],
    );
    scenario(
        "trimmed",
        "receipts after 12 withheld; B's checkpoint at 14 shows it",
        chain[..13].to_vec(),
        both.clone(),
        &["a", "b"],
    );
    let mut after_out = chain[..12].to_vec();
    {
        let mut cont = Chain::resume(ENCLAVE_A, 11, head(11));
        after_out.push(cont.append(T0 + 30, &signed()).unwrap().bytes);
    }
    after_out.extend_from_slice(&chain[12..]);
    scenario(
        "after_handover_out",
        "A writes receipt 12 after handing over to B",
        after_out,
        both.clone(),
        &["a", "b"],
    );
    let mut restart = chain.clone();
    let (mut c, start) = Chain::start(ENCLAVE_C, T0 + 1000).unwrap();
    restart.push(start.bytes);
    restart.push(c.append(T0 + 1001, &vault_created()).unwrap().bytes);
    let mut cps = both.clone();
    cps.push(cp(&key_c(), ENCLAVE_C, ENCLAVE_C, 1, c.head()));
    scenario(
        "restart",
        "C crashed and restarted: a new chain that names no predecessor",
        restart,
        cps,
        &["a", "b", "c"],
    );
    scenario(
        "successor_only",
        "B's receipts alone: the handover's predecessor was not delivered",
        chain[12..].to_vec(),
        both.clone(),
        &["a", "b"],
    );
    let mut undecodable = chain.clone();
    undecodable.insert(2, vec![1, 99, 0]);
    scenario(
        "undecodable",
        "a receipt of unknown kind at position 2",
        undecodable,
        both.clone(),
        &["a", "b"],
    );

    json!({
        "description": "Golden vectors of signer-receipts (docs/receipts.md), generated by receipts/tests/vectors.rs; the TypeScript client must reproduce every decoding, hash, signature check and report (compare reports without the `error` and `text` fields, which are Rust's wording).",
        "domains": {
            "receipt": "signer/receipt/v1",
            "checkpoint": "signer/receipt-checkpoint/v1",
            "key_binding": "signer/receipt-key/v1",
        },
        "limits": {
            "max_receipt_len": receipt::MAX_RECEIPT_LEN,
            "max_policy_len": receipt::MAX_POLICY_LEN,
            "max_token_entries": receipt::MAX_TOKEN_ENTRIES,
            "max_code_len": receipt::MAX_CODE_LEN,
            "max_rule_len": receipt::MAX_RULE_LEN,
        },
        "keys": keys.iter().map(|(name, id, k)| json!({
            "name": name,
            "signer": signer_types::uuid_text(id),
            "public_hex": hex::encode(k.public()),
            "binding_hex": hex::encode(k.binding(id)),
        })).collect::<Vec<_>>(),
        "receipts": receipts,
        "checkpoints": checkpoints,
        "invalid_receipts": invalid,
        "oversize_receipt": {"byte": 1, "len": receipt::MAX_RECEIPT_LEN + 1, "code": "oversize"},
        "invalid_checkpoints": invalid_checkpoints,
        "scenarios": scenarios,
    })
}

#[test]
fn the_committed_vectors_are_what_the_code_generates() {
    let generated = generate();
    let path = path();
    if std::env::var_os("SIGNER_UPDATE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&generated).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .expect("receipts/vectors/receipts-v1.json is missing: run with SIGNER_UPDATE_VECTORS=1");
    assert!(
        stored == generated,
        "receipts/vectors/receipts-v1.json is stale: rerun with SIGNER_UPDATE_VECTORS=1 and review the diff"
    );
}

fn stored() -> Value {
    serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn every_stored_vector_decodes_verifies_or_fails_as_stated() {
    let v = stored();
    let mut kinds = std::collections::BTreeSet::new();
    let mut previous: Option<[u8; 32]> = None;
    for r in v["receipts"].as_array().unwrap() {
        let b = bytes(&r["hex"]);
        let receipt = Receipt::decode(&b).unwrap();
        assert_eq!(serde_json::to_value(&receipt).unwrap(), r["receipt"], "{}", r["name"]);
        assert_eq!(hex::encode(receipt_hash(&b)), r["hash"]);
        assert_eq!(receipt.encode().unwrap(), b);
        if let Some(p) = previous {
            assert_eq!(receipt.prev, p, "the stored receipts form one chain");
        }
        previous = Some(receipt_hash(&b));
        kinds.insert(receipt.body.kind());
    }
    assert_eq!(kinds.len(), 10, "one receipt of every kind");

    let key = |name: &Value| -> [u8; 32] {
        let k = v["keys"].as_array().unwrap().iter().find(|k| k["name"] == *name).unwrap();
        bytes(&k["public_hex"]).try_into().unwrap()
    };
    for k in v["keys"].as_array().unwrap() {
        let id = signer_types::ids::parse_uuid(k["signer"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(checkpoint_key_binding(&id, &key(&k["name"]))), k["binding_hex"]);
    }
    for c in v["checkpoints"].as_array().unwrap() {
        let signed = SignedCheckpoint::decode(&bytes(&c["hex"])).unwrap();
        signed.verify(&key(&c["key"])).unwrap();
        assert_eq!(hex::encode(signed.checkpoint.signed_message()), c["signed_message_hex"]);
        assert_eq!(serde_json::to_value(signed).unwrap(), c["checkpoint"]);
    }
    for c in v["invalid_checkpoints"].as_array().unwrap() {
        let code = match SignedCheckpoint::decode(&bytes(&c["hex"])) {
            Err(e) => e.code(),
            Ok(s) => s.verify(&key(&c["key"])).unwrap_err().code(),
        };
        assert_eq!(code, c["code"], "{}", c["name"]);
    }
    for r in v["invalid_receipts"].as_array().unwrap() {
        let e = Receipt::decode(&bytes(&r["hex"])).unwrap_err();
        assert_eq!(e.code(), r["code"], "{}", r["name"]);
    }
    let o = &v["oversize_receipt"];
    let big = vec![o["byte"].as_u64().unwrap() as u8; o["len"].as_u64().unwrap() as usize];
    assert_eq!(Receipt::decode(&big).unwrap_err().code(), o["code"]);

    let mut outcomes = Vec::new();
    for s in v["scenarios"].as_array().unwrap() {
        let receipts: Vec<Vec<u8>> = s["receipts"].as_array().unwrap().iter().map(bytes).collect();
        let cps: Vec<SignedCheckpoint> = s["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| SignedCheckpoint::decode(&bytes(c)).unwrap())
            .collect();
        let keys: Vec<([u8; 16], [u8; 32])> = s["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let k = v["keys"].as_array().unwrap().iter().find(|k| k["name"] == *n).unwrap();
                (signer_types::ids::parse_uuid(k["signer"].as_str().unwrap()).unwrap(), key(n))
            })
            .collect();
        let report = verify(&receipts, &cps, &keys);
        assert_eq!(serde_json::to_value(&report).unwrap(), s["report"], "{}", s["name"]);
        assert_eq!(report.ok(), s["ok"], "{}", s["name"]);
        outcomes.push((s["name"].as_str().unwrap().to_string(), report.ok()));
    }
    // The scenarios that must pass, and those that must not.
    let passing: Vec<&str> =
        outcomes.iter().filter(|(_, ok)| *ok).map(|(n, _)| n.as_str()).collect();
    assert_eq!(passing, ["complete", "unvouched_tail", "restart", "successor_only"]);
}

#[test]
fn the_worked_example_of_docs_receipts_md_is_the_code_s() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/receipts.md"),
    )
    .unwrap();
    let compact: String = doc.chars().filter(|c| !c.is_whitespace()).collect();
    let v = generate();
    for name in ["chain_start", "vault_created"] {
        let r = v["receipts"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap();
        for field in ["hex", "hash"] {
            let value = r[field].as_str().unwrap();
            assert!(compact.contains(value), "docs/receipts.md lacks {name}'s {field} {value}");
        }
        assert_eq!(r["receipt"]["decider"], "a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1");
    }
    assert!(compact.contains(&WALLET.to_string()));
    let a = &v["keys"][0];
    for field in ["public_hex", "binding_hex"] {
        assert!(
            compact.contains(a[field].as_str().unwrap()),
            "docs/receipts.md lacks key a's {field}"
        );
    }
    assert_eq!(T0, 0x6774_8580);
}
