//! `attest provenance` over the real binary: honest vault and agent records verify; a document
//! for another record, another wallet, an untrusted image, a tampered document or record, a debug
//! document or one from the future is refused (exit 1); an old document whose chain has expired
//! now but was valid at its own timestamp verifies; usage errors exit 2.
//!
//! Records here are well-formed but hold random ciphertext: the CLI only reads their headers and
//! hashes them (opening a record is the enclave's job). The end-to-end test over the simulation
//! stack (`tests/provenance.rs` at the repository root) runs the CLI on records the enclave made.
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
use serde_json::Value;
use signer_types::ids::uuid_text;
use signer_types::provenance::Subject;
use signer_types::pubkey::Pubkey;
use signer_types::records::{
    AgentKeyHeader, AgentKind, VaultHeader, VaultOrigin, WrapAlg, write_wrapped,
};

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest")).args(args).output().expect("attest runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn error_kind(o: &Output) -> String {
    assert_eq!(code(o), 1, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let out = json(o);
    assert_eq!(out["valid"], false);
    out["error"]["kind"].as_str().unwrap().to_string()
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A well-formed record: `aad ‖ wrap_alg ‖ len ‖ wrapped ‖ iv ‖ ciphertext ‖ tag`.
fn record(aad: Vec<u8>, body_len: usize) -> Vec<u8> {
    let mut out = aad;
    write_wrapped(&mut out, WrapAlg::RsaesOaepSha256, &random::<256>()).unwrap();
    let mut body = vec![0u8; body_len];
    rand::rng().fill_bytes(&mut body);
    out.extend_from_slice(&body);
    out
}

fn vault_record(wallet: Pubkey, vault_id: [u8; 16], origin: VaultOrigin) -> Vec<u8> {
    let header = VaultHeader { wallet, vault_id, created_at: 1_790_000_000, origin };
    record(header.aad(), 12 + 32 + 16)
}

fn agent_record(wallet: Pubkey) -> (Vec<u8>, Pubkey) {
    let agent_pubkey = Pubkey(random());
    let header = AgentKeyHeader { wallet, agent_id: random(), agent_pubkey, kind: AgentKind::Seed };
    (record(header.aad(), 12 + 32 + 16), agent_pubkey)
}

/// A simulated AWS CA, one enclave's leaf and a scratch directory.
struct Fixture {
    ca: SimCa,
    leaf: SimLeaf,
    dir: PathBuf,
    root: String,
    issued_at: SystemTime,
}

impl Fixture {
    fn new(name: &str, issued_at: SystemTime) -> Self {
        let ca = SimCa::generate(&mut rand::rng(), issued_at - Duration::from_secs(3600)).unwrap();
        let leaf = ca.issue_leaf("i-sim-enc01", &mut rand::rng(), issued_at).unwrap();
        let dir = std::env::temp_dir().join(format!("attest-prov-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = dir.join("root.pem");
        std::fs::write(&root, ca.root_pem()).unwrap();
        Self { ca, leaf, dir, root: root.display().to_string(), issued_at }
    }

    fn write(&self, name: &str, contents: &[u8]) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// A provenance document from an enclave running `pcrs`, over `user_data`.
    fn document(&self, pcrs: &Pcrs, user_data: &[u8]) -> Vec<u8> {
        self.document_at(pcrs, user_data, self.issued_at)
    }

    fn document_at(&self, pcrs: &Pcrs, user_data: &[u8], at: SystemTime) -> Vec<u8> {
        self.ca.issue_document(
            &self.leaf,
            &SimDocument {
                module_id: "i-sim-enc01",
                timestamp_ms: unix_ms(at),
                pcrs,
                public_key: None,
                user_data: Some(user_data),
                nonce: None,
            },
        )
    }

    /// Runs `attest provenance --json` with the sim root.
    fn check(&self, record: &str, document: &str, extra: &[&str]) -> Output {
        let mut args =
            vec!["provenance", "--record", record, "--document", document, "--root", &self.root];
        args.extend_from_slice(extra);
        args.push("--json");
        attest(&args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn honest_vault_and_agent_records_verify_and_everything_else_is_refused() {
    let f = Fixture::new("cases", SystemTime::now());
    let trusted = image(0x10);
    let m = f.write("trusted.json", &measurements_json(&trusted));
    let wallet = Pubkey(random());
    let vault_id: [u8; 16] = random();
    let vault = vault_record(wallet, vault_id, VaultOrigin::Generated);
    let vault_doc = f.document(&trusted, &Subject::vault(&vault).unwrap().user_data());
    let vault_path = f.write("vault.bin", &vault);
    let vault_doc_path = f.write("vault.doc", &vault_doc);

    // Honest vault: valid, every field of the record reported.
    let o = f.check(&vault_path, &vault_doc_path, &["--measurements", &m]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let out = json(&o);
    assert_eq!(out["valid"], true);
    assert_eq!(out["record"]["type"], "vault");
    assert_eq!(out["record"]["wallet"], wallet.to_string());
    assert_eq!(out["record"]["id"], uuid_text(&vault_id));
    assert_eq!(out["record"]["origin"], "generated");
    assert_eq!(out["image"], m);
    assert_eq!(out["user_data"], hex::encode(Subject::vault(&vault).unwrap().user_data()));

    // The expected wallet matches; another one is refused with both named.
    let o = f.check(
        &vault_path,
        &vault_doc_path,
        &["--measurements", &m, "--wallet", &wallet.to_string()],
    );
    assert_eq!(code(&o), 0);
    let stranger = Pubkey(random()).to_string();
    let o = f.check(&vault_path, &vault_doc_path, &["--measurements", &m, "--wallet", &stranger]);
    assert_eq!(error_kind(&o), "wrong_wallet");
    assert!(json(&o)["error"]["message"].as_str().unwrap().contains(&stranger));

    // Agent key: valid with the id of its vault; the binding covers that id.
    let (agent, agent_pubkey) = agent_record(wallet);
    let agent_doc = f.document(&trusted, &Subject::agent(&agent, vault_id).unwrap().user_data());
    let agent_path = f.write("agent.bin", &agent);
    let agent_doc_path = f.write("agent.doc", &agent_doc);
    let vid = uuid_text(&vault_id);
    let o = f.check(&agent_path, &agent_doc_path, &["--measurements", &m, "--vault-id", &vid]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let out = json(&o);
    assert_eq!(out["record"]["type"], "agent_key");
    assert_eq!(out["record"]["agent_pubkey"], agent_pubkey.to_string());
    assert_eq!(out["record"]["vault_id"], vid);
    let other_vault = uuid_text(&random());
    let o =
        f.check(&agent_path, &agent_doc_path, &["--measurements", &m, "--vault-id", &other_vault]);
    assert_eq!(error_kind(&o), "field_mismatch");

    // A document about another record (the agent's document offered for the vault, and a second
    // vault's document for the first).
    let o = f.check(&vault_path, &agent_doc_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "field_mismatch");
    let second = vault_record(wallet, random(), VaultOrigin::Generated);
    let second_doc =
        f.write("second.doc", &f.document(&trusted, &Subject::vault(&second).unwrap().user_data()));
    let o = f.check(&vault_path, &second_doc, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "field_mismatch");

    // The same vault id and contents under another wallet: the binding differs.
    let foreign = vault_record(Pubkey(random()), vault_id, VaultOrigin::Generated);
    let foreign_path = f.write("foreign.bin", &foreign);
    let o = f.check(&foreign_path, &vault_doc_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "field_mismatch");

    // An untrusted image: refused, unless its measurements are listed (a predecessor).
    let other_image = image(0x70);
    let rogue_doc = f.write(
        "rogue.doc",
        &f.document(&other_image, &Subject::vault(&vault).unwrap().user_data()),
    );
    let o = f.check(&vault_path, &rogue_doc, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "pcr_mismatch");
    let m_other = f.write("other.json", &measurements_json(&other_image));
    let o = f.check(&vault_path, &rogue_doc, &["--measurements", &m, "--measurements", &m_other]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["image"], m_other);

    // Tampered document (signature byte) and tampered record (one ciphertext byte).
    let mut tampered = vault_doc.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered_path = f.write("tampered.doc", &tampered);
    let o = f.check(&vault_path, &tampered_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "bad_signature");
    let mut changed = vault.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let changed_path = f.write("changed.bin", &changed);
    let o = f.check(&changed_path, &vault_doc_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "field_mismatch");

    // The AWS root (the default) does not vouch for the simulated CA.
    let o = attest(&[
        "provenance",
        "--record",
        &vault_path,
        "--document",
        &vault_doc_path,
        "--measurements",
        &m,
        "--json",
    ]);
    assert_eq!(error_kind(&o), "untrusted_root");

    // Not a vault or an agent key.
    let garbage = f.write("garbage.bin", &[1, 0, 0, 0, 9, 1, 2, 3]);
    let o = f.check(&garbage, &vault_doc_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "record_invalid");
    let truncated = f.write("truncated.bin", &vault[..70]);
    let o = f.check(&truncated, &vault_doc_path, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "record_invalid");
}

#[test]
fn an_old_document_verifies_at_its_own_timestamp_and_one_from_the_future_does_not() {
    let thirty_days_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    let f = Fixture::new("old", thirty_days_ago);
    let trusted = image(0x20);
    let m = f.write("trusted.json", &measurements_json(&trusted));
    let vault = vault_record(Pubkey(random()), random(), VaultOrigin::Imported);
    let user_data = Subject::vault(&vault).unwrap().user_data();
    let vault_path = f.write("vault.bin", &vault);
    let doc_path = f.write("vault.doc", &f.document(&trusted, &user_data));

    // Its leaf (3 hours) expired weeks ago: `attest verify` at now says so...
    let o = attest(&["verify", &doc_path, "--root", &f.root, "--json"]);
    assert_eq!(error_kind(&o), "certificate_expired");
    // ...but as provenance it is checked at its timestamp, when the chain was valid.
    let o = f.check(&vault_path, &doc_path, &["--measurements", &m]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(json(&o)["record"]["origin"], "imported");

    // A timestamp outside its leaf's validity is refused even so (the chain is not valid then).
    let late = f.write(
        "late.doc",
        &f.document_at(&trusted, &user_data, thirty_days_ago + Duration::from_secs(4 * 3600)),
    );
    let o = f.check(&vault_path, &late, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "certificate_expired");

    // A document dated ahead of the verifier's clock is refused.
    let o = f.check(&vault_path, &doc_path, &["--measurements", &m, "--at", "1700000000"]);
    assert_eq!(error_kind(&o), "stale");
}

#[test]
fn debug_documents_are_refused_even_when_listed() {
    let f = Fixture::new("debug", SystemTime::now());
    let zeros: Pcrs = (0u8..3).map(|i| (i, vec![0; 48])).collect();
    let m = f.write("zeros.json", &measurements_json(&zeros));
    let vault = vault_record(Pubkey(random()), random(), VaultOrigin::Generated);
    let vault_path = f.write("vault.bin", &vault);
    let doc =
        f.write("debug.doc", &f.document(&zeros, &Subject::vault(&vault).unwrap().user_data()));
    let o = f.check(&vault_path, &doc, &["--measurements", &m]);
    assert_eq!(error_kind(&o), "debug_mode");
}

#[test]
fn inputs_as_files_inline_base64_or_hex_and_usage_errors() {
    let f = Fixture::new("inputs", SystemTime::now());
    let trusted = image(0x30);
    let m = f.write("trusted.json", &measurements_json(&trusted));
    let wallet = Pubkey(random());
    let vault = vault_record(wallet, random(), VaultOrigin::Generated);
    let doc = f.document(&trusted, &Subject::vault(&vault).unwrap().user_data());
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // Inline base64, as the HTTP API returns both.
    let o = f.check(&b64(&vault), &b64(&doc), &["--measurements", &m]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // Files holding base64 or hex text.
    let rec_b64 = f.write("vault.b64", b64(&vault).as_bytes());
    let doc_hex = f.write("doc.hex", hex::encode(&doc).as_bytes());
    let o = f.check(&rec_b64, &doc_hex, &["--measurements", &m]);
    assert_eq!(code(&o), 0);
    // Text output names the record and the image.
    let o = attest(&[
        "provenance",
        "--record",
        &rec_b64,
        "--document",
        &doc_hex,
        "--measurements",
        &m,
        "--root",
        &f.root,
    ]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("valid"), "{text}");
    assert!(text.contains(&wallet.to_string()) && text.contains("generated in the enclave"));

    // Usage errors exit 2: a missing file, no measurements, an agent key without --vault-id, a
    // bad UUID, a bad wallet, a measurements file that is not JSON.
    let rec = f.write("vault.bin", &vault);
    let docp = f.write("vault.doc", &doc);
    assert_eq!(code(&f.check("missing.bin", &docp, &["--measurements", &m])), 2);
    assert_eq!(code(&f.check(&rec, &docp, &[])), 2);
    let (agent, _) = agent_record(wallet);
    let agent_path = f.write("agent.bin", &agent);
    let o = f.check(&agent_path, &docp, &["--measurements", &m]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--vault-id"));
    assert_eq!(code(&f.check(&agent_path, &docp, &["--measurements", &m, "--vault-id", "x"])), 2);
    assert_eq!(code(&f.check(&rec, &docp, &["--measurements", &m, "--wallet", "0OIl"])), 2);
    let not_json = f.write("not.json", b"PCR0=00");
    assert_eq!(code(&f.check(&rec, &docp, &["--measurements", &not_json])), 2);
}
