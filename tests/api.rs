//! Every route of the parent's HTTP API (SPEC §6), end to end against the real enclave daemon
//! over a Unix socket and the KMS emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use signer_e2e::*;

mod common;
use common::{first_signature as bs58_sig, verify};

fn kms_decrypts(stack: &Stack) -> f64 {
    let (_, text) = stack.api().get_text("/metrics").unwrap();
    metric(&text, r#"signer_kms_calls_total{operation="Decrypt",outcome="ok"}"#)
}

fn enclave_calls(stack: &Stack, outcome: &str) -> f64 {
    let (_, text) = stack.api().get_text("/metrics").unwrap();
    metric(&text, &format!(r#"signer_enclave_calls_total{{op="sign",outcome="{outcome}"}}"#))
}

#[test]
fn health_readiness_metrics_and_attestation() {
    let stack = start("health").unwrap();
    let api = stack.api();
    let r = api.get("/healthz").unwrap();
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = api.get("/readyz").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["enclave_attested"], true);
    assert_eq!(r.body["kms_reachable"], true);

    // A fresh document with the caller's nonce, verifiable by a security team with `attest`.
    let r = api.get("/v1/attestation?nonce=00112233").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = unb64(&r.str("document"));
    let root = std::fs::read(&stack.paths.sim_root).unwrap();
    let pcrs = nitro_attestation::policy::pcrs_from_measurements_json(
        &std::fs::read_to_string(&stack.paths.measurements).unwrap(),
    )
    .unwrap();
    let policy = nitro_attestation::AttestationPolicy {
        pcrs: pcrs.clone(),
        nonce: Some(vec![0x00, 0x11, 0x22, 0x33]),
        public_key: Some(unb64(&r.str("public_key"))),
        max_age: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    nitro_attestation::verify_with_policy(
        &doc,
        &nitro_attestation::TrustAnchor::from_pem(&root).unwrap(),
        &policy,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(r.body["pcrs"]["0"], hex::encode(&pcrs[&0]));
    assert!(r.body["timestamp_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(api.get("/v1/attestation?nonce=zz").unwrap().code(), Some("bad_request"));

    let (status, text) = api.get_text("/metrics").unwrap();
    assert_eq!(status, 200);
    for family in [
        "signer_http_requests_total",
        "signer_http_request_duration_seconds",
        "signer_enclave_attested 1",
        "signer_kms_reachable 1",
    ] {
        assert!(text.contains(family), "metrics lack {family}");
    }
}

#[test]
fn agents_grants_sign_and_the_need_key_round_trip() {
    // Prefetch off: the first request sees `need_key`, so the round trip is observable.
    let stack = start_with("needkey", |o| o.prefetch_envelopes = false).unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    assert!(uuid::Uuid::parse_str(&w.grant_id).is_ok());

    let tx = w.transfer(5_000);
    let r = api.post("/v1/sign", &w.sign_body(&tx, &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("grant_id"), w.grant_id);
    let signed = verify(&r.str("transaction"));
    assert_eq!(bs58_sig(&signed), r.str("signature"));
    assert_eq!((kms_decrypts(&stack), enclave_calls(&stack, "need_key")), (1.0, 1.0));

    // The routing key for the load balancer (the enclave instance that holds the grant) is
    // exposed, and checked when sent.
    let route = w.enclave_id.clone();
    assert_eq!(r.header("x-signer-route"), Some(route.as_str()));
    let ok = api
        .post_with(
            "/v1/sign",
            &w.sign_body(&w.transfer(5_001), &request_id()),
            &[("x-signer-route", &route)],
        )
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let wrong = api
        .post_with(
            "/v1/sign",
            &w.sign_body(&w.transfer(5_002), &request_id()),
            &[("x-signer-route", "00000000-0000-0000-0000-000000000000")],
        )
        .unwrap();
    assert_eq!((wrong.status, wrong.code()), (400, Some("bad_request")));
    assert!(wrong.str("detail").contains("wrong enclave"), "{}", wrong.body);
    let r = api.get("/v1/enclave").unwrap();
    assert_eq!(r.str("enclave_id"), route);
    assert_eq!(r.body["answers_for"], json!([route]));
    assert_eq!(unb64(&r.str("kms_public_key")), stack.kms_public_key().unwrap());

    // Cache hit: no KMS call, one enclave call.
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(6_000), &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    verify(&r.str("transaction"));
    assert_eq!((kms_decrypts(&stack), enclave_calls(&stack, "need_key")), (1.0, 1.0));

    // Mnemonic agents, account index.
    let agent = |extra: Value| {
        let mut body = json!({"wallet": w.wallet, "vault_record": w.vault.record, "vault_provenance": w.vault.provenance});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        api.post("/v1/agents", &body).unwrap()
    };
    let r = agent(json!({"kind": "mnemonic", "account": 7}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.str("agent_pubkey"), w.agent_pubkey);
    assert!(!r.str("provenance").is_empty());
    let r = agent(json!({"kind": "seed", "account": 7}));
    assert_eq!(r.code(), Some("bad_request"));
    // A grant longer than the enclave allows: refused when asking for the message.
    let r = api.post(
        "/v1/authorizations/grant",
        &json!({"wallet": w.wallet, "bot_id": w.bot_id, "agent_pubkey": w.agent_pubkey, "ttl_seconds": 86_400, "policy": policy(1, 1)}),
    )
    .unwrap();
    assert_eq!((r.status, r.code()), (400, Some("bad_request")));
    assert!(r.str("detail").contains("ttl_seconds"), "{}", r.body);
}

#[test]
fn prefetch_makes_first_requests_one_round_trip_with_one_kms_call() {
    let stack = start("prefetch").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    // Ten concurrent first requests for one grant share one KMS call.
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let (api, w) = (api.clone(), w.clone());
            std::thread::spawn(move || {
                api.post("/v1/sign", &w.sign_body(&w.transfer(1_000 + i), &request_id())).unwrap()
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(kms_decrypts(&stack), 1.0);
    assert_eq!(enclave_calls(&stack, "need_key"), 0.0, "no request needed a second round trip");
    for _ in 0..5 {
        assert_eq!(
            api.post("/v1/sign", &w.sign_body(&w.transfer(7), &request_id())).unwrap().status,
            200
        );
    }
    assert_eq!(kms_decrypts(&stack), 1.0, "one KMS call per grant");
}

#[test]
fn denials_replays_revocation_kill_switch_and_expiry() {
    let stack = start("denials").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let w = Wallet::create(&api, policy(1_000_000_000, 1_500_000_000), 600).unwrap();

    // Over the per-transaction limit (the agent's 5 000-lamport fee included, as the signed
    // message says): 403 naming the rule and the numbers.
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(999_995_001), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("policy_denied")), "{}", r.body);
    assert_eq!(r.body["rule"], "max_lamports_per_tx");
    assert_eq!(
        (r.body["limit"].as_u64(), r.body["requested"].as_u64()),
        (Some(1_000_000_000), Some(1_000_000_001))
    );
    assert_eq!(r.body["type"], "urn:signer:error:policy_denied");
    // Daily limit, with what was already used (the agent's 5 000-lamport fee included).
    assert_eq!(
        api.post("/v1/sign", &w.sign_body(&w.transfer(999_995_000), &request_id())).unwrap().status,
        200
    );
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(600_000_000), &request_id())).unwrap();
    assert_eq!(
        (r.body["rule"].as_str(), r.body["used"].as_u64(), r.body["requested"].as_u64()),
        (Some("max_lamports_per_day"), Some(1_000_000_000), Some(600_005_000))
    );

    // Replay: same id, different transaction → 409; same request → the same signed result.
    let id = request_id();
    let tx = w.transfer(10);
    let first = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!(first.status, 200);
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(11), &id)).unwrap();
    assert_eq!((r.status, r.code()), (409, Some("replayed_request")));
    let again = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!((again.status, again.str("signature")), (200, first.str("signature")));

    // Kill switch (admin only), then release.
    assert_eq!(
        api.post("/v1/kill-switch", &json!({"engaged": true})).unwrap().code(),
        Some("unauthorized")
    );
    let r = admin.post("/v1/kill-switch", &json!({"engaged": true})).unwrap();
    assert_eq!((r.status, r.body["engaged"].as_bool()), (200, Some(true)));
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("kill_switch")));
    assert_eq!(
        admin.post("/v1/kill-switch", &json!({"engaged": false})).unwrap().body["engaged"],
        false
    );
    assert_eq!(
        api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap().status,
        200
    );

    // Revoke the grant (admin): refused at once.
    let r = admin.post("/v1/grants/revoke", &json!({"grant_id": w.grant_id})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["revoked"]["grant_id"].as_str(), r.body["dropped_from_memory"].as_u64()),
        (Some(w.grant_id.as_str()), Some(1))
    );
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("grant_revoked")));
    // Revoke a whole wallet.
    let w2 = Wallet::create(&api, policy(1_000_000_000, 1_500_000_000), 600).unwrap();
    assert_eq!(admin.post("/v1/grants/revoke", &json!({"wallet": w2.wallet})).unwrap().status, 200);
    assert_eq!(
        api.post("/v1/sign", &w2.sign_body(&w2.transfer(1), &request_id())).unwrap().code(),
        Some("grant_revoked")
    );
    assert_eq!(admin.post("/v1/grants/revoke", &json!({})).unwrap().code(), Some("bad_request"));
    assert_eq!(
        admin
            .post("/v1/grants/revoke", &json!({"grant_id": w.grant_id, "wallet": w2.wallet}))
            .unwrap()
            .code(),
        Some("bad_request")
    );

    // An expired grant.
    let w3 = Wallet::create(&api, policy(1_000_000_000, 1_500_000_000), 1).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let r = api.post("/v1/sign", &w3.sign_body(&w3.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("grant_expired")), "{}", r.body);
}

#[test]
fn bad_input_auth_and_routing() {
    let stack = start("badinput").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 1_500_000_000), 600).unwrap();

    // Malformed JSON, wrong types, unknown fields, missing fields, bad encodings.
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"grant_record\": ".to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
        ("empty", b"".to_vec()),
    ];
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["declared_notional_cents"] = json!("ten");
    cases.push(("wrong type", body.to_string().into_bytes()));
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["priority"] = json!("high");
    cases.push(("unknown field", body.to_string().into_bytes()));
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body.as_object_mut().unwrap().remove("bot_id");
    cases.push(("missing field", body.to_string().into_bytes()));
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["transaction"] = json!("not base64!");
    cases.push(("bad base64", body.to_string().into_bytes()));
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["request_id"] = json!("12345");
    cases.push(("bad uuid", body.to_string().into_bytes()));
    for (name, bytes) in &cases {
        let r = api.post_raw("/v1/sign", bytes, "application/json").unwrap();
        assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{name}: {}", r.body);
        assert_eq!(r.body["status"], 400);
        assert!(!r.str("detail").is_empty() && !r.str("title").is_empty(), "{name}");
    }
    // No route takes a master key: a `umk` field is an unknown field.
    let r = api
        .post(
            "/v1/agents",
            &json!({"wallet": w.wallet, "vault_record": w.vault.record, "vault_provenance": w.vault.provenance, "umk": b64(&[1; 32])}),
        )
        .unwrap();
    assert_eq!(r.code(), Some("bad_request"), "{}", r.body);
    assert!(r.str("detail").contains("unknown field `umk`"), "{}", r.body);
    let r = api
        .post(
            "/v1/agents",
            &json!({"wallet": "not-a-key", "vault_record": w.vault.record, "vault_provenance": w.vault.provenance}),
        )
        .unwrap();
    assert_eq!(r.code(), Some("bad_request"));
    // Records that are not records.
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["grant_record"] = json!(b64(b"garbage"));
    assert_eq!(api.post("/v1/sign", &body).unwrap().code(), Some("record_invalid"));
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["transaction"] = json!(b64(&[1, 2, 3]));
    assert_eq!(api.post("/v1/sign", &body).unwrap().code(), Some("bad_request"));
    // A grant altered at rest: it parses, KMS unwraps its key, the AEAD fails. One answer for
    // every failure after the envelope's RSA step, and the parent counts it.
    let mut altered = unb64(&w.grant_record);
    *altered.last_mut().unwrap() ^= 1;
    let mut body = w.sign_body(&w.transfer(1), &request_id());
    body["grant_record"] = json!(b64(&altered));
    let r = api.post("/v1/sign", &body).unwrap();
    assert_eq!((r.status, r.code()), (502, Some("envelope_rejected")), "{}", r.body);
    assert!(r.str("detail").contains("nothing was signed"), "{}", r.body);
    let (_, text) = api.get_text("/metrics").unwrap();
    assert_eq!(metric(&text, "signer_envelope_failures_total"), 1.0);

    // Oversized body: 413 (declared, and streamed without a length).
    let big = vec![b' '; 70 * 1024];
    let r = api.post_raw("/v1/sign", &big, "application/json").unwrap();
    assert_eq!((r.status, r.code()), (413, Some("payload_too_large")));

    // Tokens.
    let r =
        api.with_token("").post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (401, Some("unauthorized")));
    let r = api
        .with_token("not-the-right-token-at-all")
        .post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id()))
        .unwrap();
    assert_eq!((r.status, r.code()), (401, Some("unauthorized")));
    let r = api
        .with_token(&stack.admin_token)
        .post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id()))
        .unwrap();
    assert_eq!(r.status, 200, "the admin token also works on API routes");
    assert_eq!(
        api.post("/v1/grants/revoke", &json!({"grant_id": w.grant_id})).unwrap().status,
        401
    );

    // Routing.
    let r = api.get("/v1/nothing").unwrap();
    assert_eq!((r.status, r.code()), (404, Some("not_found")));
    let r = api.get("/v1/sign").unwrap();
    assert_eq!((r.status, r.code()), (405, Some("method_not_allowed")));

    // The daemon kept serving through all of that.
    assert_eq!(
        api.post("/v1/sign", &w.sign_body(&w.transfer(2), &request_id())).unwrap().status,
        200
    );
}

#[test]
fn enclave_down_then_back_and_kms_denial() {
    let mut stack = start("enclavedown").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    assert_eq!(
        api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap().status,
        200
    );

    stack.kill_enclave();
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(2), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (503, Some("enclave_unavailable")), "{}", r.body);
    assert_eq!(api.get("/readyz").unwrap().status, 503);

    // It comes back as a new instance (new recipient key, hence a new enclave id, and none of
    // the old decision state): the old grant is orphaned — a definite refusal, never a second
    // budget — until the user authorizes again. Vault and agent still work. (Times are whole
    // seconds: the new instance must start after the second the grant was issued in, or it
    // cannot tell an orphan from a grant of a live instance started in that same second.)
    std::thread::sleep(Duration::from_millis(1100));
    stack.start_enclave().unwrap();
    let mut r = api.post("/v1/sign", &w.sign_body(&w.transfer(3), &request_id())).unwrap();
    for _ in 0..100 {
        if r.status != 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        r = api.post("/v1/sign", &w.sign_body(&w.transfer(3), &request_id())).unwrap();
    }
    assert_eq!((r.status, r.code()), (403, Some("grant_orphaned")), "{}", r.body);
    assert!(r.str("detail").contains("authorize again"), "{}", r.body);
    let mut w = w;
    let old_enclave = w.enclave_id.clone();
    w.new_grant(&api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    assert_ne!(w.enclave_id, old_enclave);
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(4), &request_id())).unwrap();
    assert_eq!(r.status, 200, "signing recovers with a new authorization: {}", r.body);
    stack.wait_ready(Duration::from_secs(30)).unwrap();

    // A new enclave image (different config → different PCR0) that the parent has been told to
    // expect, but that the KMS key policy was not updated for: KMS refuses.
    stack.stop_enclave();
    stack.stop_parent();
    stack.write_enclave_config(|c| c.max_grant_ttl_seconds = 1800).unwrap();
    stack.measure().unwrap();
    stack.start_enclave().unwrap();
    stack.start_parent().unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (502, Some("kms_access_denied")), "{}", r.body);
    assert!(
        r.str("detail").contains("RecipientAttestation")
            && r.str("detail").contains("attest explain"),
        "{}",
        r.body
    );
    // After the policy is updated for the new measurements, it works.
    stack.apply_key_policy().unwrap();
    assert_eq!(
        api.post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap().status,
        200
    );

    // Disabling the KMS key is the hard stop for every enclave.
    stack.set_key_enabled(false).unwrap();
    let w2 = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 600).unwrap();
    let r = api.post("/v1/sign", &w2.sign_body(&w2.transfer(1), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (502, Some("kms_access_denied")), "{}", r.body);
    assert!(r.str("detail").contains("disabled"), "{}", r.body);
    stack.set_key_enabled(true).unwrap();
}

#[test]
fn scheduled_sign_over_http() {
    let stack = start("scheduled").unwrap();
    let api = stack.api();
    let kms_spki = stack.kms_public_key().unwrap();
    let schedule = Schedule {
        not_before: now() - 10,
        not_after: now() + 3600,
        max_fee: 10_000,
        created_at: now() - 10,
        enclave_id: enclave_id(&api).unwrap(),
    };
    let scheduled = ScheduledTransfer::new(&kms_spki, 123_456, schedule).unwrap();
    let tx = scheduled.transaction.clone();
    let body = |tx: &[u8], id: &str| scheduled.body(tx, id);
    let id = request_id();
    // A routing header naming another enclave is refused before anything is decided.
    let elsewhere = enclave_core::EnclaveId::from_recipient_key(b"another enclave").to_string();
    let r = api
        .post_with("/v1/scheduled/sign", &body(&tx, &id), &[("x-signer-route", &elsewhere)])
        .unwrap();
    assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{}", r.body);
    let r = api.post("/v1/scheduled/sign", &body(&tx, &id)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    verify(&r.str("transaction"));
    // The routing key of the record's enclave (single use holds per enclave, so a load balancer
    // routes every attempt at one record to one enclave).
    let route = schedule.enclave_id.to_string();
    assert_eq!(r.header("x-signer-route"), Some(route.as_str()));
    // A record bound to another enclave instance is refused by this one.
    let foreign = ScheduledTransfer::new(
        &kms_spki,
        123_456,
        Schedule {
            created_at: now(),
            enclave_id: enclave_core::EnclaveId::from_recipient_key(b"another enclave"),
            ..schedule
        },
    )
    .unwrap();
    let r =
        api.post("/v1/scheduled/sign", &foreign.body(&foreign.transaction, &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (421, Some("wrong_enclave")), "{}", r.body);
    // Single use.
    let r = api.post("/v1/scheduled/sign", &body(&tx, &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (409, Some("replayed_request")));
    // Not the intent.
    let second = ScheduledTransfer::new(&kms_spki, 123_456, schedule).unwrap();
    let wrong = signer_sim::tx::legacy_transfer(
        &second.agent,
        &second.destination,
        123_457,
        random::<32>(),
    );
    let r = api.post("/v1/scheduled/sign", &second.body(&wrong, &request_id())).unwrap();
    assert_eq!((r.status, r.body["rule"].as_str()), (403, Some("intent_mismatch")), "{}", r.body);
    let v: Value = r.body;
    assert_eq!(v["code"], "policy_denied");
}
