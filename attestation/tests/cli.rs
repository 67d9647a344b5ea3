//! Tests of the real `attest` binary: exit codes, input formats, policy flags, key policies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use base64::Engine as _;
use nitro_attestation::sim::{SimCa, SimDocument};
use serde_json::Value;
use testkit::{AttestationVector, attestation_vectors, vectors_dir};

fn attest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attest")).args(args).output().expect("attest runs")
}

fn attest_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attest"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn path(v: &AttestationVector) -> String {
    vectors_dir().join("attestation").join(&v.file).display().to_string()
}

fn vector(prefix: &str) -> AttestationVector {
    attestation_vectors().into_iter().find(|v| v.file.starts_with(prefix)).unwrap()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("attest-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, contents: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn measurements(v: &AttestationVector) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("HashAlgorithm".into(), "Sha384 { ... }".into());
    for i in ["0", "1", "2"] {
        m.insert(format!("PCR{i}"), v.pcrs_nonzero[i].clone().into());
    }
    serde_json::to_vec(&serde_json::json!({"Measurements": m})).unwrap()
}

#[test]
fn verifies_every_real_document_inside_its_window_only() {
    for v in attestation_vectors().into_iter().filter(|v| v.is_valid()) {
        let from = v.chain_valid_from_unix.unwrap();
        let until = v.chain_valid_until_unix.unwrap();
        let debug = if v.is_debug() { vec!["--allow-debug"] } else { vec![] };
        for t in [from, until] {
            let mut args = vec!["verify", &*Box::leak(path(&v).into_boxed_str()), "--at"];
            let t = t.to_string();
            args.push(&t);
            args.extend(&debug);
            let o = attest(&args);
            assert_eq!(code(&o), 0, "{} at {t}: {}", v.file, stderr(&o));
        }
        let p = path(&v);
        let early = (from - 1).to_string();
        let o = attest(&["verify", &p, "--at", &early, "--allow-debug", "--json"]);
        assert_eq!(code(&o), 1);
        assert_eq!(json(&o)["error"]["kind"], "certificate_not_yet_valid", "{}", v.file);
        let late = (until + 1).to_string();
        let o = attest(&["verify", &p, "--at", &late, "--allow-debug"]);
        assert_eq!(code(&o), 1);
        assert!(stderr(&o).contains("expired at"), "{}: {}", v.file, stderr(&o));
    }
}

#[test]
fn rfc3339_time_and_json_output() {
    let v = vector("base_nitro_validator_2024-11-30");
    let o = attest(&["verify", &path(&v), "--at", "2024-11-30T17:00:00Z", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = json(&o);
    assert_eq!(out["valid"], true);
    assert_eq!(out["module_id"], v.module_id.clone().unwrap());
    assert_eq!(out["pcrs"]["0"], v.pcrs_nonzero["0"]);
    assert_eq!(out["chain"].as_array().unwrap().len(), 5);
    assert_eq!(out["root_sha256"], nitro_attestation::chain::AWS_NITRO_ROOT_G1_SHA256);
}

#[test]
fn the_invalid_vector_is_malformed() {
    let v = vector("INVALID_");
    let o = attest(&["verify", &path(&v), "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "malformed");
    let o = attest(&["inspect", &path(&v)]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("malformed"), "{}", stderr(&o));
}

#[test]
fn base64_hex_and_stdin_inputs_are_detected() {
    let v = vector("base_nitro_validator_2024-11-30");
    let raw = v.bytes();
    let at = v.valid_at().to_string();
    let dir = TempDir::new("formats");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let wrapped: String =
        b64.as_bytes().chunks(76).map(|c| format!("{}\n", String::from_utf8_lossy(c))).collect();
    for (name, contents) in [
        ("doc.b64", wrapped.into_bytes()),
        ("doc.hex", format!("{}\n", hex::encode(&raw)).into_bytes()),
        ("doc.b64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw).into_bytes()),
    ] {
        let o = attest(&["verify", &dir.write(name, &contents), "--at", &at]);
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
    }
    let o = attest_stdin(&["verify", "-", "--at", &at], &raw);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = attest_stdin(&["verify", "-", "--json"], b"%%% not a document %%%");
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "malformed");
    let o = attest_stdin(&["verify", "-"], b"");
    assert_eq!(code(&o), 1);
}

#[test]
fn tampered_signature_is_rejected() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut raw = v.bytes();
    let n = raw.len();
    raw[n - 5] ^= 0x10;
    let dir = TempDir::new("tampered");
    let o = attest(&[
        "verify",
        &dir.write("t.cbor", &raw),
        "--at",
        &v.valid_at().to_string(),
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "bad_signature");
}

#[test]
fn debug_documents_need_allow_debug() {
    let v = vector("evervault_beta_debug");
    let at = v.valid_at().to_string();
    let o = attest(&["verify", &path(&v), "--at", &at]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("debug-mode"), "{}", stderr(&o));
    let o = attest(&["verify", &path(&v), "--at", &at, "--allow-debug"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn pcr_expectations_from_measurements_and_pairs() {
    let v = vector("evervault_beta_valid");
    let at = v.valid_at().to_string();
    let dir = TempDir::new("pcrs");
    let m = dir.write("measurements.json", &measurements(&v));
    let o = attest(&["verify", &path(&v), "--at", &at, "--pcrs", &m]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let pcr8 = format!("8={}", v.pcrs_nonzero["8"]);
    let o = attest(&["verify", &path(&v), "--at", &at, "--pcrs", &m, "--pcr", &pcr8]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let other = vector("base_nitro_validator_2024-11-30");
    let wrong = dir.write("wrong.json", &measurements(&other));
    let o = attest(&["verify", &path(&v), "--at", &at, "--pcrs", &wrong, "--json"]);
    assert_eq!(code(&o), 1);
    let out = json(&o);
    assert_eq!(out["error"]["kind"], "pcr_mismatch");
    assert!(out["error"]["message"].as_str().unwrap().contains(&v.pcrs_nonzero["0"]));

    // Conflicting values for one index are a usage error, as are malformed pairs.
    let conflict = format!("0={}", other.pcrs_nonzero["0"]);
    assert_eq!(code(&attest(&["verify", &path(&v), "--pcrs", &m, "--pcr", &conflict])), 2);
    assert_eq!(code(&attest(&["verify", &path(&v), "--pcr", "0=zz"])), 2);
    assert_eq!(code(&attest(&["verify", &path(&v), "--pcr", "40=00"])), 2);
    let bad = dir.write("bad.json", b"{\"Measurements\": {}}");
    assert_eq!(code(&attest(&["verify", &path(&v), "--pcrs", &bad])), 2);
}

#[test]
fn freshness_and_field_flags() {
    let v = vector("evervault_beta_valid");
    let ts = v.timestamp_ms.unwrap() / 1000;
    let p = path(&v);
    let soon = (ts + 60).to_string();
    let later = (ts + 600).to_string();
    assert_eq!(code(&attest(&["verify", &p, "--at", &soon, "--max-age", "5m"])), 0);
    let o = attest(&["verify", &p, "--at", &later, "--max-age", "5m", "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "stale");
    assert_eq!(code(&attest(&["verify", &p, "--max-age", "five minutes"])), 2);

    let nonce = v.nonce.clone().unwrap();
    assert_eq!(code(&attest(&["verify", &p, "--at", &soon, "--nonce", &nonce])), 0);
    let o = attest(&["verify", &p, "--at", &soon, "--nonce", "00", "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "field_mismatch");
    let o = attest(&["verify", &p, "--at", &soon, "--user-data", "00"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("user_data mismatch"), "{}", stderr(&o));
    let pk = vector("base_op_enclave_sample_attestation_2024");
    let o = attest(&[
        "verify",
        &path(&pk),
        "--at",
        &pk.valid_at().to_string(),
        "--public-key",
        pk.public_key.as_deref().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(code(&attest(&["verify", &p, "--nonce", "xyz"])), 2);
}

#[test]
fn sim_document_verifies_only_with_the_sim_root() {
    let now = SystemTime::now();
    let ca = SimCa::generate(&mut rand::rng(), now).unwrap();
    let leaf = ca.issue_leaf("i-sim-enc01", &mut rand::rng(), now).unwrap();
    let pcrs = (0u8..16).map(|i| (i, vec![i + 1; 48])).collect();
    let doc = ca.issue_document(
        &leaf,
        &SimDocument {
            module_id: "i-sim-enc01",
            timestamp_ms: now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64,
            pcrs: &pcrs,
            public_key: None,
            user_data: None,
            nonce: Some(b"abc"),
        },
    );
    let dir = TempDir::new("sim");
    let doc_path = dir.write("sim.cbor", &doc);
    let root = dir.write("root.pem", ca.root_pem().as_bytes());
    let o = attest(&["verify", &doc_path, "--root", &root, "--nonce", "616263", "--max-age", "1m"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = attest(&["verify", &doc_path, "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["error"]["kind"], "untrusted_root");
    let not_pem = dir.write("root.txt", b"hello");
    assert_eq!(code(&attest(&["verify", &doc_path, "--root", &not_pem])), 2);
}

#[test]
fn inspect_shows_fields_and_chain() {
    let v = vector("evervault_beta_valid");
    let o = attest(&["inspect", &path(&v), "--json"]);
    assert_eq!(code(&o), 0);
    let out = json(&o);
    assert_eq!(out["verified"], false);
    assert_eq!(out["nonce"], v.nonce.clone().unwrap());
    assert_eq!(out["user_data"], Value::Null);
    assert_eq!(out["pcrs"]["8"], v.pcrs_nonzero["8"]);
    let chain = out["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 5);
    assert!(chain[0]["subject"].as_str().unwrap().contains(v.module_id.as_deref().unwrap()));
    let o = attest(&["inspect", &path(&v)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("NOT VERIFIED")
            && text.contains("chain (leaf first)")
            && text.contains("nonce")
    );
}

fn key_policy(dir: &TempDir, v: &AttestationVector, pin: &str) -> String {
    let m = dir.write(&format!("m-{pin}.json"), &measurements(v));
    let o = attest(&[
        "key-policy",
        "--pcrs",
        &m,
        "--role-arn",
        "arn:aws:iam::111122223333:role/parent",
        "--pin",
        pin,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    dir.write(&format!("policy-{pin}.json"), &o.stdout)
}

#[test]
fn key_policy_and_explain() {
    let v = vector("evervault_cert_embedded_nondebug");
    let dir = TempDir::new("policy");
    let policy_path = key_policy(&dir, &v, "0,1,2");
    let policy: Value = serde_json::from_slice(&std::fs::read(&policy_path).unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    let decrypt = statements.iter().find(|s| s["Sid"] == "AttestedEnclaveDecrypt").unwrap();
    assert_eq!(
        decrypt["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"],
        v.pcrs_nonzero["0"]
    );
    assert_eq!(
        decrypt["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR2"],
        v.pcrs_nonzero["2"]
    );
    assert!(statements.iter().any(|s| s["Effect"] == "Deny"
        && s["Condition"]["Null"]["kms:RecipientAttestation:ImageSha384"] == "true"));

    let at = v.valid_at().to_string();
    let o = attest(&[
        "explain",
        &path(&v),
        "--policy",
        &policy_path,
        "--at",
        &at,
        "--principal",
        "arn:aws:iam::111122223333:role/parent",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ALLOW by statement AttestedEnclaveDecrypt"), "{text}");
    assert!(text.contains(&format!("document {}", v.pcrs_nonzero["0"])), "{text}");

    // Another enclave's document under this policy: denied, with the mismatching values shown.
    let other = vector("evervault_cert_embedded_debug");
    let o = attest(&[
        "explain",
        &path(&other),
        "--policy",
        &policy_path,
        "--at",
        &other.valid_at().to_string(),
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    let out = json(&o);
    assert_eq!(out["allowed"], false);
    assert!(out["verdict"].as_str().unwrap().contains("DenyDecryptForOtherPcr0"), "{out}");
    let allow = out["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sid"] == "AttestedEnclaveDecrypt")
        .unwrap();
    let cond = allow["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "kms:RecipientAttestation:ImageSha384")
        .unwrap();
    assert_eq!(cond["matches"], false);
    assert_eq!(cond["document_value"], "0".repeat(96));

    // The right document at a time its chain has expired: KMS rejects the document itself.
    let o = attest(&["explain", &path(&v), "--policy", &policy_path, "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["document_verified"], false);

    // Wrong principal: implicit deny.
    let o = attest(&[
        "explain",
        &path(&v),
        "--policy",
        &policy_path,
        "--at",
        &at,
        "--principal",
        "arn:aws:iam::999999999999:role/x",
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    assert!(json(&o)["verdict"].as_str().unwrap().contains("no Allow statement"));
}

#[test]
fn key_policy_allows_several_images_during_a_rotation() {
    let old = vector("evervault_cert_embedded_nondebug");
    let new = vector("base_nitro_validator_2024-11-30");
    let dir = TempDir::new("policy-rotation");
    let m_old = dir.write("old.json", &measurements(&old));
    let m_new = dir.write("new.json", &measurements(&new));
    let role = "arn:aws:iam::111122223333:role/parent";
    let o = attest(&["key-policy", "--pcrs", &m_old, "--pcrs", &m_new, "--role-arn", role]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let policy_path = dir.write("policy.json", &o.stdout);
    let policy: Value = serde_json::from_slice(&o.stdout).unwrap();
    let allowed = &policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "AttestedEnclaveDecrypt")
        .unwrap()["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"];
    assert_eq!(allowed, &serde_json::json!([old.pcrs_nonzero["0"], new.pcrs_nonzero["0"]]));
    for v in [&old, &new] {
        let o = attest(&[
            "explain",
            &path(v),
            "--policy",
            &policy_path,
            "--at",
            &v.valid_at().to_string(),
            "--principal",
            role,
        ]);
        assert_eq!(code(&o), 0, "{}: {}", v.file, String::from_utf8_lossy(&o.stdout));
    }
    let third = vector("evervault_ga");
    let o = attest(&[
        "explain",
        &path(&third),
        "--policy",
        &policy_path,
        "--at",
        &third.valid_at().to_string(),
        "--allow-debug",
    ]);
    assert_eq!(code(&o), 2, "explain has no --allow-debug flag");
    let o = attest(&[
        "explain",
        &path(&third),
        "--policy",
        &policy_path,
        "--at",
        &third.valid_at().to_string(),
    ]);
    assert_eq!(code(&o), 1, "a third image is denied");
}

#[test]
fn key_policy_usage_errors() {
    let v = vector("evervault_cert_embedded_nondebug");
    let dir = TempDir::new("policy-errors");
    let m = dir.write("m.json", &measurements(&v));
    let role = "arn:aws:iam::111122223333:role/parent";
    let o = attest(&["key-policy", "--pcrs", &m, "--role-arn", role, "--pin", "0,8"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("PCR8"), "{}", stderr(&o));
    assert_eq!(code(&attest(&["key-policy", "--pcrs", &m, "--role-arn", "parent"])), 2);
    assert_eq!(code(&attest(&["key-policy", "--pcrs", &m, "--role-arn", role, "--pin", "1"])), 2);
    assert_eq!(
        code(&attest(&["key-policy", "--pcrs", "/nonexistent.json", "--role-arn", role])),
        2
    );
    let bad_policy = dir.write("bad.json", br#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"ArnLike":{"a":"b"}}}]}"#);
    let o = attest(&["explain", &path(&v), "--policy", &bad_policy]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("ArnLike"));
    assert_eq!(code(&attest(&[])), 2);
    assert_eq!(code(&attest(&["verify"])), 2);
    assert_eq!(code(&attest(&["verify", "x", "--at", "yesterday"])), 2);
    assert!(Path::new(env!("CARGO_BIN_EXE_attest")).exists());
}

#[test]
fn key_policy_break_glass_role() {
    let v = vector("evervault_cert_embedded_nondebug");
    let dir = TempDir::new("policy-break-glass");
    let m = dir.write("m.json", &measurements(&v));
    let role = "arn:aws:iam::111122223333:role/parent";
    let glass = "arn:aws:iam::111122223333:role/signer-break-glass";
    let deny = |policy: &Value| {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Effect"] == "Deny" && s["Action"][0] == "kms:ScheduleKeyDeletion")
            .cloned()
            .unwrap()
    };
    for interim in [false, true] {
        let mut args = vec!["key-policy", "--role-arn", role];
        if interim {
            args.push("--interim");
        } else {
            args.extend(["--pcrs", &m]);
        }
        // Without the role: deletion denied to everyone, and said so.
        let o = attest(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("--break-glass-role-arn"), "{}", stderr(&o));
        let policy: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(deny(&policy)["Sid"], "DenyKeyDeletionToEveryone");
        assert!(deny(&policy).get("Condition").is_none());
        // With it: everyone but that role.
        let mut with = args.clone();
        with.extend(["--break-glass-role-arn", glass]);
        let o = attest(&with);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let policy: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(deny(&policy)["Condition"]["ArnNotEquals"]["aws:PrincipalArn"], glass);
        let admin = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "KeyAdministrationWithoutPlaintext")
            .unwrap();
        assert!(
            !admin["Action"].as_array().unwrap().iter().any(|a| a == "kms:ScheduleKeyDeletion")
        );
        // Not a role, a wildcard, or the parent's role itself: refused.
        for bad in ["arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:role/*", role] {
            let mut args = args.clone();
            args.extend(["--break-glass-role-arn", bad]);
            let o = attest(&args);
            assert_eq!(code(&o), 2, "{bad}");
            assert!(stderr(&o).contains("break-glass"), "{}", stderr(&o));
        }
    }
}
