//! Provenance end to end over the real binaries: the enclave's vault and agent documents verify
//! with `attest provenance` against the stack's measurements and sim root; a vault sealed outside
//! the enclave around a known UMK cannot get an agent (with or without another vault's document)
//! until the wallet signs its import, after which its provenance says "imported".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::{Command, Output};

use enclave_core::records::VaultOrigin;
use serde_json::{Value, json};
use signer_e2e::*;
use signer_sim::process::binary;

/// Runs `attest provenance --json` with the stack's measurements and sim root: (exit code, JSON).
fn attest_provenance(stack: &Stack, record: &str, document: &str, extra: &[&str]) -> (i32, Value) {
    let measurements = stack.paths.measurements.display().to_string();
    let root = stack.paths.sim_root.display().to_string();
    let mut args = vec![
        "provenance",
        "--record",
        record,
        "--document",
        document,
        "--measurements",
        measurements.as_str(),
        "--root",
        root.as_str(),
        "--json",
    ];
    args.extend_from_slice(extra);
    report(&Command::new(binary("attest").unwrap()).args(&args).output().unwrap())
}

fn report(o: &Output) -> (i32, Value) {
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    });
    (o.status.code().unwrap(), json)
}

#[test]
fn enclave_records_verify_offline_and_forged_vaults_need_the_wallets_import_signature() {
    let stack = start("provenance").unwrap();
    let api = stack.api();
    let user = User::random().unwrap();
    let vault = user.create_vault(&api).unwrap();
    let agent = user.create_agent(&api, &vault, None).unwrap();

    // The security team's check, on exactly what the API returned (inline base64).
    let (code, out) = attest_provenance(&stack, &vault.record, &vault.provenance, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["record"]["type"], "vault");
    assert_eq!(out["record"]["id"], vault.vault_id);
    assert_eq!(out["record"]["wallet"], user.wallet.to_string());
    assert_eq!(out["record"]["origin"], "generated");
    let (code, out) = attest_provenance(
        &stack,
        &agent.record,
        &agent.provenance,
        &["--vault-id", &vault.vault_id, "--wallet", &user.wallet.to_string()],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["record"]["agent_pubkey"], agent.agent_pubkey);
    // Another wallet's view, or the agent's document for the vault, is refused.
    let stranger = User::random().unwrap().wallet.to_string();
    let (code, out) =
        attest_provenance(&stack, &vault.record, &vault.provenance, &["--wallet", &stranger]);
    assert_eq!((code, out["error"]["kind"].as_str()), (1, Some("wrong_wallet")));
    let (code, out) = attest_provenance(&stack, &vault.record, &agent.provenance, &[]);
    assert_eq!((code, out["error"]["kind"].as_str()), (1, Some("field_mismatch")));

    // A vault sealed outside the enclave around a UMK the sealer knows.
    let kms = stack.kms_public_key().unwrap();
    let forged = sealed_vault(&kms, user.wallet, [0x42; 32], VaultOrigin::Generated).unwrap();
    let agent_from = |record: &[u8], provenance: &str| {
        api.post(
            "/v1/agents",
            &json!({
                "wallet": user.wallet.to_string(),
                "vault_record": b64(record),
                "vault_provenance": provenance,
            }),
        )
        .unwrap()
    };
    // With an honest vault's document, with the honest agent's, or with garbage: refused alike.
    for provenance in [vault.provenance.as_str(), agent.provenance.as_str(), "AAAA"] {
        let r = agent_from(&forged, provenance);
        assert_eq!((r.status, r.code()), (403, Some("provenance_invalid")), "{}", r.body);
    }
    let (code, _) = attest_provenance(&stack, &b64(&forged), &vault.provenance, &[]);
    assert_eq!(code, 1);
    // A "generated" vault cannot be imported either: only origin 1 asks for the wallet.
    let r = api
        .post(
            "/v1/authorizations/import",
            &json!({"wallet": user.wallet.to_string(), "vault_record": b64(&forged)}),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);

    // A browser-sealed vault (origin "imported"): usable once the wallet signs the import.
    let sealed = sealed_vault(&kms, user.wallet, [0x43; 32], VaultOrigin::Imported).unwrap();
    let r = agent_from(&sealed, &vault.provenance);
    assert_eq!(r.code(), Some("provenance_invalid"), "{}", r.body);
    let auth = api
        .post(
            "/v1/authorizations/import",
            &json!({"wallet": user.wallet.to_string(), "vault_record": b64(&sealed)}),
        )
        .unwrap();
    assert_eq!(auth.status, 200, "{}", auth.body);
    let message = auth.str("message");
    assert!(message.contains("urn:signer:purpose:import-vault"), "{message}");
    let import = |signature: String| {
        api.post(
            "/v1/vaults/import",
            &json!({
                "wallet": user.wallet.to_string(),
                "vault_record": b64(&sealed),
                "nonce": auth.str("nonce"),
                "issued_at": auth.body["issued_at"],
                "signature": signature,
            }),
        )
        .unwrap()
    };
    // Someone else's signature over the same message is not the wallet's.
    let other = User::random().unwrap();
    let r = import(other.sign_message(&message));
    assert_eq!((r.status, r.code()), (403, Some("authorization_signature_invalid")), "{}", r.body);
    let imported = import(user.sign_message(&message));
    assert_eq!(imported.status, 200, "{}", imported.body);
    let import_provenance = imported.str("provenance");
    // The same signed import again (a lost reply) gets the same vault, not a second import.
    let r = import(user.sign_message(&message));
    assert_eq!((r.status, r.str("vault_id")), (200, imported.str("vault_id")), "{}", r.body);

    let (code, out) = attest_provenance(&stack, &b64(&sealed), &import_provenance, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["record"]["origin"], "imported");
    let r = agent_from(&sealed, &import_provenance);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.str("provenance").is_empty());
}
