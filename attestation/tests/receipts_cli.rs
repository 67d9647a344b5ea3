//! `attest receipts` over the real binary: a genuine history (a handover, several pages that
//! overlap, documents given as the API's JSON and as inline base64) verifies and reconciles; a
//! tampered, dropped, reordered or duplicated receipt, a forged checkpoint, a document of another
//! image or binding another key, and a signature over its policy's limits each fail (exit 1)
//! with the right report; an incomplete history fails unless `--allow-partial`; malformed input
//! exits 2 with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::{image, measurements_json, unix_ms};
use nitro_attestation::Pcrs;
use nitro_attestation::sim::{SimCa, SimDocument, SimLeaf};
use rand::Rng as _;
use serde_json::{Value, json};
use signer_receipts::{
    Body, Chain, Charge, CheckpointKey, Counters, GrantCreated, Receipt, Refused, Signed,
    SignedCheckpoint, TokenAmount,
};
use signer_types::EnclaveId;
use signer_types::ids::uuid_text;
use signer_types::policy::{Policy, TokenLimit};
use signer_types::pubkey::Pubkey;

/// 2025-01-01T00:00:00Z.
const T0: u64 = 1_735_689_600;
const DAY: u64 = 86_400;
const GRANT: [u8; 16] = [0x0a; 16];
const BOT: [u8; 16] = [0x0b; 16];
const WALLET: Pubkey = Pubkey([0x11; 32]);
const AGENT: Pubkey = Pubkey([0x22; 32]);
const USDC: Pubkey = Pubkey([0x33; 32]);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest")).args(args).output().expect("attest runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

fn policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1_000_000,
        max_lamports_per_day: 2_500_000,
        max_fee_lamports: 10_000,
        tokens: vec![TokenLimit { mint: USDC, max_per_tx: 50_000_000, max_per_day: 80_000_000 }],
        allowed_programs: vec![],
        max_notional_cents_per_tx: 0,
        max_notional_cents_per_day: 0,
        destinations: None,
        max_tx_per_minute: Some(5),
    }
}

fn grant_body() -> Body {
    let mut cbor = Vec::new();
    ciborium::into_writer(&policy(), &mut cbor).unwrap();
    Body::GrantCreated(GrantCreated {
        grant_id: GRANT,
        wallet: WALLET,
        bot_id: BOT,
        agent: AGENT,
        message_sha256: [0x5e; 32],
        expires_at: T0 + 7 * DAY,
        policy: cbor,
    })
}

/// An enclave instance: its recipient key (which names it) and its per-boot checkpoint key.
struct Enclave {
    spki: Vec<u8>,
    id: [u8; 16],
    key: CheckpointKey,
}

impl Enclave {
    fn new() -> Self {
        let mut spki = vec![0u8; 294];
        rand::rng().fill_bytes(&mut spki);
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let id = EnclaveId::from_recipient_key(&spki).0;
        Self { spki, id, key: CheckpointKey::from_bytes(&seed) }
    }

    fn checkpoint(&self, chain: &Chain, time: u64) -> SignedCheckpoint {
        self.key.sign(&chain.checkpoint(self.id, time))
    }
}

/// The daily counters the enclave keeps for the one spend key of these tests.
#[derive(Default)]
struct Ledger {
    day: u64,
    lamports: u64,
    usdc: u64,
    n: u8,
}

impl Ledger {
    /// A `signed` receipt with honest counters.
    fn sign(
        &mut self,
        chain: &mut Chain,
        time: u64,
        lamports: u64,
        fee: u64,
        usdc: u64,
    ) -> Vec<u8> {
        if time / DAY > self.day {
            *self = Self { day: time / DAY, n: self.n, ..Self::default() };
        }
        self.lamports += lamports + fee;
        self.usdc += usdc;
        self.n += 1;
        let tokens = if usdc > 0 { vec![TokenAmount { mint: USDC, amount: usdc }] } else { vec![] };
        let after_tokens = if self.usdc > 0 {
            vec![TokenAmount { mint: USDC, amount: self.usdc }]
        } else {
            vec![]
        };
        let body = Body::Signed(Signed {
            request_id: [self.n; 16],
            grant_id: GRANT,
            bot_id: BOT,
            agent: AGENT,
            message_sha256: [self.n; 32],
            charged: Charge { lamports, fee_lamports: fee, notional_cents: 0, tokens },
            after: Counters {
                day: self.day,
                lamports: self.lamports,
                notional_cents: 0,
                tokens: after_tokens,
            },
        });
        chain.append(time, &body).unwrap().bytes
    }
}

/// A genuine history: enclave A boots, creates a vault, an agent and a grant, signs and refuses,
/// then hands over to B, which signs on (into the next UTC day).
struct History {
    a: Enclave,
    b: Enclave,
    /// A's receipts 0..=7 (7 is the handover-out), B's 8..=11.
    receipts: Vec<Vec<u8>>,
    a_checkpoint: SignedCheckpoint,
    b_early: SignedCheckpoint,
    b_checkpoint: SignedCheckpoint,
}

impl History {
    fn new() -> Self {
        let (a, b) = (Enclave::new(), Enclave::new());
        let mut ledger = Ledger::default();
        let (mut chain, first) = Chain::start(a.id, T0).unwrap();
        let mut receipts = vec![first.bytes];
        let push =
            |chain: &mut Chain, time: u64, body: &Body| chain.append(time, body).unwrap().bytes;
        receipts.push(push(
            &mut chain,
            T0 + 1,
            &Body::VaultCreated { wallet: WALLET, imported: false },
        ));
        receipts.push(push(
            &mut chain,
            T0 + 2,
            &Body::AgentCreated { wallet: WALLET, agent: AGENT },
        ));
        receipts.push(push(&mut chain, T0 + 3, &grant_body()));
        receipts.push(ledger.sign(&mut chain, T0 + 10, 900_000, 5_000, 0));
        receipts.push(ledger.sign(&mut chain, T0 + 20, 0, 5_000, 50_000_000));
        let refused = Refused::new(
            [0x77; 16],
            GRANT,
            "policy_denied",
            "max_lamports_per_tx: 2000000 exceeds the per-transaction limit 1000000",
        );
        receipts.push(push(&mut chain, T0 + 30, &Body::Refused(refused)));
        receipts.push(push(&mut chain, T0 + 40, &Body::HandoverOut { successor: b.id }));
        let a_checkpoint = a.checkpoint(&chain, T0 + 41);
        let (mut next, first) =
            Chain::handover_in(b.id, T0 + 42, a.id, chain.seq(), chain.head()).unwrap();
        receipts.push(first.bytes);
        receipts.push(ledger.sign(&mut next, T0 + 100, 995_000, 5_000, 30_000_000));
        let b_early = b.checkpoint(&next, T0 + 101);
        receipts.push(ledger.sign(&mut next, T0 + DAY + 5, 1_000_000, 0, 50_000_000));
        receipts.push(ledger.sign(&mut next, T0 + DAY + 6, 995_000, 5_000, 0));
        let b_checkpoint = b.checkpoint(&next, T0 + DAY + 7);
        Self { a, b, receipts, a_checkpoint, b_early, b_checkpoint }
    }

    /// A's page, B's first page (up to receipt 9, `more`) and B's second, overlapping page.
    fn pages(&self) -> Value {
        let r = &self.receipts;
        json!([
            page(&self.a, self.a.id, &r[0..8], Some(&self.a_checkpoint), None),
            page(&self.b, self.b.id, &r[8..10], Some(&self.b_early), None),
            page(&self.b, self.b.id, &r[9..12], Some(&self.b_checkpoint), None),
        ])
    }
}

fn page(
    e: &Enclave,
    decider: [u8; 16],
    receipts: &[Vec<u8>],
    checkpoint: Option<&SignedCheckpoint>,
    gap: Option<(u64, u64)>,
) -> Value {
    let last = receipts.last().map(|b| Receipt::decode(b).unwrap().seq).unwrap_or(0);
    json!({
        "enclave_id": uuid_text(&e.id),
        "decider": uuid_text(&decider),
        "checkpoint_key": b64(&e.key.public()),
        "receipts": receipts.iter().map(|b| b64(b)).collect::<Vec<_>>(),
        "checkpoint": checkpoint.map(|c| b64(&c.encode())),
        "gap": gap.map(|(after, oldest)| json!({"after": after, "oldest": oldest})),
        "next_after": last,
        "more": false,
    })
}

/// A simulated AWS CA, a trusted image and a scratch directory.
struct Fixture {
    ca: SimCa,
    leaf: SimLeaf,
    dir: PathBuf,
    root: String,
    trusted: Pcrs,
    measurements: String,
    now: SystemTime,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let now = SystemTime::now();
        let ca = SimCa::generate(&mut rand::rng(), now - Duration::from_secs(3600)).unwrap();
        let leaf = ca.issue_leaf("i-sim-enc01", &mut rand::rng(), now).unwrap();
        let dir =
            std::env::temp_dir().join(format!("attest-receipts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("root.pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        let trusted = image(0x10);
        let m = dir.join("measurements.json");
        std::fs::write(&m, measurements_json(&trusted)).unwrap();
        Self {
            ca,
            leaf,
            root: root.display().to_string(),
            measurements: m.display().to_string(),
            dir,
            trusted,
            now,
        }
    }

    fn write(&self, name: &str, contents: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    fn document(&self, pcrs: &Pcrs, public_key: &[u8], user_data: &[u8]) -> Vec<u8> {
        self.ca.issue_document(
            &self.leaf,
            &SimDocument {
                module_id: "i-sim-enc01",
                timestamp_ms: unix_ms(self.now),
                pcrs,
                public_key: Some(public_key),
                user_data: Some(user_data),
                nonce: None,
            },
        )
    }

    /// The document that binds `e`'s checkpoint key, of the trusted image.
    fn binding_document(&self, e: &Enclave) -> Vec<u8> {
        self.document(&self.trusted, &e.spki, &e.key.binding(&e.id))
    }

    /// `GET /v1/attestation`'s response for `document`, as a file.
    fn attestation_response(&self, name: &str, e: &Enclave, document: &[u8]) -> String {
        let body = json!({
            "document": b64(document),
            "public_key": b64(&e.spki),
            "pcrs": {},
            "timestamp_ms": unix_ms(self.now),
            "enclave_id": uuid_text(&e.id),
        });
        self.write(name, &serde_json::to_vec(&body).unwrap())
    }

    /// Runs `attest receipts` with the sim root and the trusted image.
    fn run(&self, pages: &Value, documents: &[String], extra: &[&str]) -> Output {
        let file = self.write("pages.json", &serde_json::to_vec(pages).unwrap());
        self.run_file(&file, documents, extra)
    }

    fn run_file(&self, file: &str, documents: &[String], extra: &[&str]) -> Output {
        let mut args = vec![
            "receipts",
            "--receipts",
            file,
            "--root",
            &self.root,
            "--measurements",
            &self.measurements,
        ];
        for d in documents {
            args.push("--document");
            args.push(d);
        }
        args.extend_from_slice(extra);
        attest(&args)
    }

    /// The documents of the genuine history: A's as the API's JSON, B's as inline base64.
    fn documents(&self, h: &History) -> Vec<String> {
        vec![
            self.attestation_response("a.json", &h.a, &self.binding_document(&h.a)),
            b64(&self.binding_document(&h.b)),
        ]
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn failed(o: &Output) -> Value {
    assert_eq!(code(o), 1, "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    let out = json_out(o);
    assert_eq!(out["ok"], false);
    out
}

/// Re-encodes receipt `i` with `f` applied to its signed body.
fn edit_signed(receipts: &mut [Vec<u8>], i: usize, f: impl FnOnce(&mut Signed)) {
    let mut r = Receipt::decode(&receipts[i]).unwrap();
    let Body::Signed(s) = &mut r.body else { panic!("receipt {i} is not a signature") };
    f(s);
    receipts[i] = r.encode().unwrap();
}

#[test]
fn a_genuine_history_verifies_and_reconciles() {
    let f = Fixture::new("genuine");
    let h = History::new();
    let docs = f.documents(&h);
    let o = f.run(&h.pages(), &docs, &["--json"]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let out = json_out(&o);
    assert_eq!(out["ok"], true);
    assert_eq!(out["complete"], true);
    assert_eq!(out["report_ok"], true);
    assert_eq!(out["problems"], json!([]));
    // Both documents verify and each binds its enclave's pages.
    assert_eq!(out["documents"][0]["valid"], true);
    assert_eq!(out["documents"][0]["enclave_id"], uuid_text(&h.a.id));
    assert_eq!(out["documents"][0]["binds"], json!([0]));
    assert_eq!(out["documents"][1]["binds"], json!([1, 2]));
    assert_eq!(out["documents"][1]["source"], "inline base64");
    assert_eq!(out["documents"][0]["image"], f.measurements);
    assert_eq!(out["keys"].as_array().unwrap().len(), 2);
    assert_eq!(out["keys"][1]["public_key"], hex::encode(h.b.key.public()));
    // The overlapping receipt of B's second page is dropped, not a duplicate.
    assert_eq!(out["pages"][2]["receipts"], 3);
    assert_eq!(out["pages"][2]["added"], 2);
    assert_eq!(out["pages"][0]["key_trusted"], true);
    assert_eq!(out["pages"][0]["binding"], hex::encode(h.a.key.binding(&h.a.id)));
    let report = &out["report"];
    assert_eq!((report["delivered"].as_u64(), report["distinct"].as_u64()), (Some(12), Some(12)));
    assert_eq!(report["duplicates"], json!([]));
    assert_eq!(report["handovers"][0]["status"], "linked");
    assert_eq!(report["chains"][0]["start"], "chain_start");
    assert_eq!(report["chains"][1]["vouched"], json!([{"first": 8, "last": 11}]));
    assert_eq!(report["checkpoints"].as_array().unwrap().len(), 3);
    let rec = &out["reconciliation"];
    assert_eq!(rec["signatures"], 5);
    assert_eq!(rec["reconciled"], 5);
    assert_eq!(rec["counters_checked"], 5);
    assert_eq!(rec["violations"], json!([]));
    assert_eq!(rec["counter_mismatches"], json!([]));
    assert_eq!(rec["unreconciled"], json!([]));
    assert_eq!(rec["grants"][0]["grant_id"], uuid_text(&GRANT));
    assert_eq!(rec["grants"][0]["policy"]["max_lamports_per_tx"], 1_000_000);
    assert_eq!(rec["grants"][0]["policy"]["tokens"][0]["mint"], USDC.to_string());
    assert_eq!(rec["grants"][0]["signatures"], 5);

    // The text report says the same, with the chain's story.
    let o = f.run(&h.pages(), &docs, &[]);
    assert_eq!(code(&o), 0, "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for expected in [
        "new chain at seq 0: a boot or restart, no predecessor",
        "handover: linked",
        "binds the checkpoint key of page #1, #2",
        "5 signature(s): 5 reconciled",
        "OK: every receipt verifies and every signature reconciles",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }

    // One page object (not an array) is accepted too.
    let r = &h.receipts;
    let single = page(&h.a, h.a.id, &r[0..8], Some(&h.a_checkpoint), None);
    let o = f.run(&single, &docs, &["--json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(json_out(&o)["pages"].as_array().unwrap().len(), 1);
}

#[test]
fn a_tampered_receipt_is_a_fork() {
    let f = Fixture::new("tampered");
    let mut h = History::new();
    // Receipt 4 now claims a smaller charge.
    edit_signed(&mut h.receipts, 4, |s| s.charged.lamports = 1);
    let out = failed(&f.run(&h.pages(), &f.documents(&h), &["--json"]));
    let forks = out["report"]["forks"].as_array().unwrap();
    assert_eq!(forks.len(), 1, "{forks:?}");
    assert_eq!(
        (forks[0]["seq"].as_u64(), forks[0]["reason"].as_str()),
        (Some(5), Some("prev_mismatch"))
    );
    assert_eq!(out["report_ok"], false);
    // Its own counter no longer adds up either.
    let m = &out["reconciliation"]["counter_mismatches"][0];
    assert_eq!((m["seq"].as_u64(), m["field"].as_str()), (Some(4), Some("lamports")));

    let o = f.run(&h.pages(), &f.documents(&h), &[]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("its prev is not the hash of receipt 4"), "{}", stdout(&o));
    assert!(stderr(&o).contains("invalid: "), "{}", stderr(&o));
}

#[test]
fn a_dropped_receipt_is_a_gap() {
    let f = Fixture::new("dropped");
    let mut h = History::new();
    h.receipts.remove(5);
    let r = &h.receipts;
    let pages = json!([
        page(&h.a, h.a.id, &r[0..7], Some(&h.a_checkpoint), None),
        page(&h.b, h.b.id, &r[7..11], Some(&h.b_checkpoint), None),
    ]);
    let out = failed(&f.run(&pages, &f.documents(&h), &["--json"]));
    let gaps = &out["report"]["gaps"];
    assert_eq!(gaps, &json!([{"decider": uuid_text(&h.a.id), "after": 4, "next": 6}]));
    assert_eq!(out["report"]["forks"], json!([]));
}

#[test]
fn a_reordered_receipt_is_reported_with_its_page_and_index() {
    let f = Fixture::new("reordered");
    let mut h = History::new();
    h.receipts.swap(4, 5);
    let o = f.run(&h.pages(), &f.documents(&h), &["--json"]);
    let out = failed(&o);
    let reorders = out["report"]["reorders"].as_array().unwrap();
    assert_eq!(reorders.len(), 1);
    assert_eq!(
        (reorders[0]["seq"].as_u64(), reorders[0]["previous_seq"].as_u64()),
        (Some(5), Some(4))
    );
    let position = reorders[0]["position"].as_u64().unwrap() as usize;
    assert_eq!(out["positions"][position], json!({"page": 0, "index": 4}));
    assert_eq!(out["report"]["gaps"], json!([]));
    let o = f.run(&h.pages(), &f.documents(&h), &[]);
    assert!(stdout(&o).contains("reorder: receipt 5"), "{}", stdout(&o));
    assert!(stdout(&o).contains("4 = page #0 receipts[4]"), "{}", stdout(&o));
}

#[test]
fn a_receipt_duplicated_within_a_page_is_reported() {
    let f = Fixture::new("duplicated");
    let h = History::new();
    let r = &h.receipts;
    let mut a = r[0..8].to_vec();
    a.insert(5, r[4].clone());
    let pages = json!([
        page(&h.a, h.a.id, &a, Some(&h.a_checkpoint), None),
        page(&h.b, h.b.id, &r[8..12], Some(&h.b_checkpoint), None),
    ]);
    let out = failed(&f.run(&pages, &f.documents(&h), &["--json"]));
    let dups = &out["report"]["duplicates"];
    assert_eq!(dups, &json!([{"decider": uuid_text(&h.a.id), "seq": 4, "positions": [4, 5]}]));
    // Counted once: the reconciliation is unaffected.
    assert_eq!(out["reconciliation"]["signatures"], 5);
    assert_eq!(out["reconciliation"]["violations"], json!([]));
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let f = Fixture::new("forged-checkpoint");
    let h = History::new();
    let impostor = CheckpointKey::from_bytes(&[0x66; 32]);
    let forged = impostor.sign(&h.b_checkpoint.checkpoint);
    let r = &h.receipts;
    let pages = json!([
        page(&h.a, h.a.id, &r[0..8], Some(&h.a_checkpoint), None),
        page(&h.b, h.b.id, &r[8..12], Some(&forged), None),
    ]);
    let out = failed(&f.run(&pages, &f.documents(&h), &["--json"]));
    let statuses: Vec<&str> = out["report"]["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["matches", "bad_signature"]);
    assert_eq!(out["report"]["chains"][1]["vouched"], json!([]));
}

#[test]
fn a_document_of_another_image_is_refused() {
    let f = Fixture::new("other-image");
    let h = History::new();
    let other = f.document(&image(0x20), &h.b.spki, &h.b.key.binding(&h.b.id));
    let docs = vec![f.attestation_response("a.json", &h.a, &f.binding_document(&h.a)), b64(&other)];
    let out = failed(&f.run(&h.pages(), &docs, &["--json"]));
    assert_eq!(out["documents"][0]["valid"], true);
    assert_eq!(out["documents"][1]["valid"], false);
    assert_eq!(out["documents"][1]["error"]["kind"], "pcr_mismatch");
    assert_eq!(out["pages"][1]["key_trusted"], false);
    assert!(
        out["pages"][1]["key_problem"].as_str().unwrap().contains("no verified document names"),
        "{}",
        out["pages"][1]
    );
    assert_eq!(out["report"]["checkpoints"][1]["status"], "unknown_signer");
    assert_eq!(out["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn a_document_that_binds_another_key_is_refused() {
    let f = Fixture::new("other-key");
    let h = History::new();
    let stranger = CheckpointKey::from_bytes(&[0x42; 32]);
    let doc = f.document(&f.trusted, &h.b.spki, &stranger.binding(&h.b.id));
    let docs = vec![f.attestation_response("a.json", &h.a, &f.binding_document(&h.a)), b64(&doc)];
    let out = failed(&f.run(&h.pages(), &docs, &["--json"]));
    assert_eq!(out["documents"][1]["valid"], true, "the document itself is genuine");
    assert_eq!(out["documents"][1]["binds"], json!([]));
    assert_eq!(out["pages"][1]["key_trusted"], false);
    assert!(out["pages"][1]["key_problem"].as_str().unwrap().contains("user_data"));
    assert_eq!(out["report"]["checkpoints"][1]["status"], "unknown_signer");

    // A document of the right key but for another enclave (another recipient key) binds nothing.
    let doc = f.document(&f.trusted, b"another enclave's key", &h.b.key.binding(&h.b.id));
    let docs = vec![f.attestation_response("a.json", &h.a, &f.binding_document(&h.a)), b64(&doc)];
    let out = failed(&f.run(&h.pages(), &docs, &["--json"]));
    assert_eq!(out["pages"][1]["key_trusted"], false);
}

#[test]
fn signatures_over_their_policys_limits_are_violations() {
    let f = Fixture::new("violations");
    let a = Enclave::new();
    let mut ledger = Ledger::default();
    let (mut chain, first) = Chain::start(a.id, T0).unwrap();
    let mut receipts = vec![first.bytes];
    receipts.push(chain.append(T0 + 1, &grant_body()).unwrap().bytes);
    // Per transaction: 1 000 000 + 5 000 > 1 000 000; USDC 60 > 50.
    receipts.push(ledger.sign(&mut chain, T0 + 10, 1_000_000, 5_000, 60_000_000));
    // Per day: 1 005 000 + 1 000 000 + 600 000 > 2 500 000.
    receipts.push(ledger.sign(&mut chain, T0 + 20, 1_000_000, 0, 0));
    receipts.push(ledger.sign(&mut chain, T0 + 30, 600_000, 0, 0));
    let cp = a.checkpoint(&chain, T0 + 31);
    let pages = page(&a, a.id, &receipts, Some(&cp), None);
    let docs = vec![b64(&f.binding_document(&a))];
    let out = failed(&f.run(&pages, &docs, &["--json"]));
    assert_eq!(out["report_ok"], true, "the chain itself is intact");
    let v = out["reconciliation"]["violations"].as_array().unwrap();
    let found: Vec<(u64, &str, u64, u64)> = v
        .iter()
        .map(|v| {
            (
                v["seq"].as_u64().unwrap(),
                v["rule"].as_str().unwrap(),
                v["limit"].as_u64().unwrap(),
                v["actual"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "max_lamports_per_tx", 1_000_000, 1_005_000),
            (2, "token_max_per_tx", 50_000_000, 60_000_000),
            (4, "max_lamports_per_day", 2_500_000, 2_605_000),
        ]
    );
    assert!(v.iter().all(|v| v["grant_id"] == uuid_text(&GRANT)));
    assert_eq!(v[1]["subject"], USDC.to_string());
    assert_eq!(v[2]["day"], T0 / DAY);
    assert_eq!(out["reconciliation"]["counter_mismatches"], json!([]));

    let o = f.run(&pages, &docs, &[]);
    assert_eq!(code(&o), 1);
    let text = stdout(&o);
    assert!(
        text.contains("VIOLATION: receipt 4 of")
            && text.contains("max_lamports_per_day: limit 2500000, actual 2605000"),
        "{text}"
    );

    // The rate: six signatures within a minute, five allowed.
    let (mut chain, first) = Chain::start(a.id, T0).unwrap();
    let mut receipts = vec![first.bytes];
    receipts.push(chain.append(T0 + 1, &grant_body()).unwrap().bytes);
    let mut ledger = Ledger::default();
    for t in 0..6 {
        receipts.push(ledger.sign(&mut chain, T0 + 10 + t, 1, 0, 0));
    }
    let cp = a.checkpoint(&chain, T0 + 31);
    let out = failed(&f.run(&page(&a, a.id, &receipts, Some(&cp), None), &docs, &["--json"]));
    let v = &out["reconciliation"]["violations"];
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!((v[0]["rule"].as_str(), v[0]["seq"].as_u64()), (Some("max_tx_per_minute"), Some(7)));
    assert_eq!((v[0]["limit"].as_u64(), v[0]["actual"].as_u64()), (Some(5), Some(6)));
}

#[test]
fn an_incomplete_history_fails_unless_partial_is_allowed() {
    let f = Fixture::new("partial");
    let h = History::new();
    let docs = f.documents(&h);
    let r = &h.receipts;
    // `?after=4` on B's side only: the grant's receipt is not there.
    let pages = json!([page(&h.b, h.b.id, &r[8..12], Some(&h.b_checkpoint), None)]);
    let out = failed(&f.run(&pages, &docs, &["--json"]));
    assert_eq!(out["complete"], false);
    assert_eq!(out["problems"], json!([]));
    assert_eq!(
        out["reconciliation"]["unreconciled"],
        json!([{"grant_id": uuid_text(&GRANT), "reason": "no_grant_receipt", "signatures": 3, "seqs": [9, 10, 11]}])
    );
    let o = f.run(&pages, &docs, &[]);
    assert!(
        stdout(&o).contains("policy not in these receipts; 3 signatures not reconciled"),
        "{}",
        stdout(&o)
    );
    let o = f.run(&pages, &docs, &["--json", "--allow-partial"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(json_out(&o)["ok"], true);

    // Receipts 2..=4 evicted from A's ring: reported as a gap, fatal unless another page has them.
    let evicted = json!([page(&h.a, h.a.id, &r[5..8], Some(&h.a_checkpoint), Some((1, 5)))]);
    let out = failed(&f.run(&evicted, &docs, &["--json"]));
    assert_eq!(
        out["evicted"],
        json!([{"page": 0, "decider": uuid_text(&h.a.id), "after": 1, "oldest": 5, "missing": 3, "covered": false}])
    );
    let o = f.run(&evicted, &docs, &[]);
    assert!(stdout(&o).contains("receipts 2–4 of"), "{}", stdout(&o));
    let o = f.run(&evicted, &docs, &["--allow-partial"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    // An earlier page delivered them: covered.
    let covered = json!([
        page(&h.a, h.a.id, &r[0..5], None, None),
        page(&h.a, h.a.id, &r[5..8], Some(&h.a_checkpoint), Some((1, 5))),
    ]);
    let o = f.run(&covered, &docs, &["--json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(json_out(&o)["evicted"][0]["covered"], true);
}

#[test]
fn malformed_input_is_a_usage_error_with_a_clear_message() {
    let f = Fixture::new("malformed");
    let h = History::new();
    let docs = f.documents(&h);
    let good = page(&h.a, h.a.id, &h.receipts[0..8], Some(&h.a_checkpoint), None);
    let mut truncated = good.clone();
    let short = &h.receipts[4][..h.receipts[4].len() - 3];
    truncated["receipts"][4] = b64(short).into();
    let mut bad_b64 = good.clone();
    bad_b64["receipts"][1] = "not base64!".into();
    let mut receipts_string = good.clone();
    receipts_string["receipts"] = "AAAA".into();
    let mut id_number = good.clone();
    id_number["enclave_id"] = 7.into();
    let mut bad_uuid = good.clone();
    bad_uuid["decider"] = "a1a1".into();
    let mut short_key = good.clone();
    short_key["checkpoint_key"] = b64(&[1; 31]).into();
    let mut short_checkpoint = good.clone();
    short_checkpoint["checkpoint"] = b64(&[1; 144]).into();
    let mut bad_gap = good.clone();
    bad_gap["gap"] = json!({"after": -1, "oldest": 3});
    let mut no_receipts = good.clone();
    no_receipts.as_object_mut().unwrap().remove("receipts");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"receipts: yes".to_vec(), "not JSON"),
        ("empty", b"".to_vec(), "not JSON"),
        ("a number", b"42".to_vec(), "found a number"),
        ("no pages", b"[]".to_vec(), "no pages"),
        ("page not an object", b"[1]".to_vec(), "page 0: page: expected an object"),
        (
            "truncated",
            serde_json::to_vec(&truncated).unwrap(),
            "page 0: receipts[4]: not a receipt (truncated)",
        ),
        (
            "bad base64",
            serde_json::to_vec(&json!([good, bad_b64])).unwrap(),
            "page 1: receipts[1]: \"not base64!\" is not standard base64",
        ),
        (
            "receipts not an array",
            serde_json::to_vec(&receipts_string).unwrap(),
            "receipts: expected an array, found a string",
        ),
        (
            "id a number",
            serde_json::to_vec(&id_number).unwrap(),
            "enclave_id: expected a string, found a number",
        ),
        ("bad uuid", serde_json::to_vec(&bad_uuid).unwrap(), "decider: \"a1a1\" is not UUID text"),
        ("short key", serde_json::to_vec(&short_key).unwrap(), "checkpoint_key: 31 bytes"),
        (
            "short checkpoint",
            serde_json::to_vec(&short_checkpoint).unwrap(),
            "checkpoint: not a signed checkpoint (length)",
        ),
        (
            "bad gap",
            serde_json::to_vec(&bad_gap).unwrap(),
            "gap.after: expected an unsigned integer, found -1",
        ),
        ("missing receipts", serde_json::to_vec(&no_receipts).unwrap(), "receipts: missing"),
    ];
    for (name, contents, message) in cases {
        let file = f.write(&format!("{}.json", name.replace(' ', "-")), &contents);
        let o = f.run_file(&file, &docs, &["--json"]);
        assert_eq!(code(&o), 2, "{name}: {}\n{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains(message), "{name}: {message:?} not in {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{name}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{name}: {}", stdout(&o));
    }

    // Usage: no such file, no document, a document that is no file and not base64.
    let o = f.run_file(&f.dir.join("absent.json").display().to_string(), &docs, &[]);
    assert_eq!(code(&o), 2);
    let good_file = f.write("good.json", &serde_json::to_vec(&good).unwrap());
    let o = attest(&["receipts", "--receipts", &good_file, "--measurements", &f.measurements]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = f.run_file(&good_file, &["no-such-doc".to_string()], &[]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--document no-such-doc: no such file"), "{}", stderr(&o));
    // A document that is not one is an invalid document (exit 1), as in `attest provenance`.
    let junk = f.write("junk.doc", b"{\"nothing\": 1}");
    let out = failed(&f.run_file(&good_file, &[junk], &["--json"]));
    assert_eq!(out["documents"][0]["error"]["kind"], "malformed");
}

#[test]
fn receipts_no_checkpoint_vouches_for_are_refused_and_a_trimmed_start_is_incomplete() {
    let f = Fixture::new("unvouched");
    let h = History::new();
    let docs = f.documents(&h);
    let r = &h.receipts;
    // A made-up signature appended after B's last checkpointed receipt, correctly linked.
    let last = Receipt::decode(&r[11]).unwrap();
    let mut forged = Receipt::decode(&r[10]).unwrap();
    forged.seq = last.seq + 1;
    forged.prev = signer_receipts::receipt_hash(&r[11]);
    let mut with_forged = r[9..12].to_vec();
    with_forged.push(forged.encode().unwrap());
    let pages = json!([
        page(&h.a, h.a.id, &r[0..8], Some(&h.a_checkpoint), None),
        page(&h.b, h.b.id, &r[8..10], Some(&h.b_early), None),
        page(&h.b, h.b.id, &with_forged, Some(&h.b_checkpoint), None),
    ]);
    for extra in [&["--json"][..], &["--json", "--allow-partial"][..]] {
        let out = failed(&f.run(&pages, &docs, extra));
        let problems = out["problems"].to_string();
        assert!(problems.contains("no checkpoint vouches for"), "{problems}");
    }

    // A's first receipts left out, with no `gap` said (a page's gap is not signed): the chain
    // begins mid-way, which is incomplete.
    let trimmed = json!([
        page(&h.a, h.a.id, &r[3..8], Some(&h.a_checkpoint), None),
        page(&h.b, h.b.id, &r[8..12], Some(&h.b_checkpoint), None),
    ]);
    let out = failed(&f.run(&trimmed, &docs, &["--json"]));
    assert_eq!(out["complete"], false);
    assert!(out["incomplete"].to_string().contains("begins at receipt 3"), "{}", out["incomplete"]);
}
