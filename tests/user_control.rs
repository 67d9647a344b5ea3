//! The user's own powers over HTTP, on the real binaries: revoke with the wallet's signature and
//! the API token (own grants only), export to a key only the browser holds, safe retries of a
//! lost grant reply, and a `/readyz` that says why the instance cannot sign new grants. Bad
//! input to every new route gets a typed error and revokes or exports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signer_e2e::*;

fn sign(api: &Api, w: &Wallet) -> (u16, Option<String>) {
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1_000), &request_id())).unwrap();
    (r.status, r.code().map(str::to_string))
}

#[test]
fn a_wallet_revokes_its_own_grants_with_the_api_token_and_never_anothers() {
    let stack = start("user-revoke").unwrap();
    let api = stack.api();
    let victim = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let attacker = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    assert_eq!(sign(&api, &victim).0, 200);

    // Without the wallet's signature the API token cannot revoke.
    let r = api.post("/v1/grants/revoke", &json!({"grant_id": victim.grant_id})).unwrap();
    assert_eq!((r.status, r.code()), (401, Some("unauthorized")), "{}", r.body);
    // The attacker's wallet names the victim's grant: nothing of the victim's is revoked.
    let r = attacker.user.revoke(&api, Some(&victim.grant_id)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sign(&api, &victim).0, 200);
    // Bad input: typed errors, nothing revoked.
    for (body, why) in [
        (json!({"wallet": victim.wallet, "all": true, "grant_id": victim.grant_id}), "both"),
        (json!({"wallet": victim.wallet}), "neither"),
        (json!({"wallet": victim.wallet, "all": false}), "all false"),
        (json!({"wallet": "not-base58!", "all": true}), "bad wallet"),
        (json!({"wallet": victim.wallet, "all": true, "extra": 1}), "unknown field"),
    ] {
        let r = api.post("/v1/authorizations/revoke", &body).unwrap();
        assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{why}: {}", r.body);
    }
    let r = api
        .post("/v1/grants/revoke", &json!({"wallet": victim.wallet, "all": true, "nonce": "00"}))
        .unwrap();
    assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{}", r.body);
    let m = api
        .post("/v1/authorizations/revoke", &json!({"wallet": victim.wallet, "all": true}))
        .unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    let forged = json!({
        "wallet": victim.wallet, "all": true, "nonce": m.str("nonce"),
        "issued_at": m.u64("issued_at"), "signature": attacker.user.sign_message(&m.str("message")),
    });
    let r = api.post("/v1/grants/revoke", &forged).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("authorization_signature_invalid")), "{}", r.body);
    assert_eq!(sign(&api, &victim).0, 200);
    // The victim revokes its own grant; the same signed request again is answered again.
    let r = victim.user.revoke(&api, Some(&victim.grant_id)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"]["grant_id"], victim.grant_id.as_str());
    assert_eq!(sign(&api, &victim), (403, Some("grant_revoked".into())));
    assert_eq!(sign(&api, &attacker).0, 200);
    // And all of them.
    let r = attacker.user.revoke(&api, None).unwrap();
    assert_eq!((r.status, &r.body["revoked"]["all"]), (200, &json!(true)), "{}", r.body);
    assert_eq!(sign(&api, &attacker), (403, Some("grant_revoked".into())));
    // The admin route stays.
    let mut w = victim.clone();
    w.new_grant(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let r = stack.admin().post("/v1/grants/revoke", &json!({"grant_id": w.grant_id})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sign(&api, &w), (403, Some("grant_revoked".into())));
}

#[test]
fn an_export_goes_only_to_the_key_the_wallet_signed_for_and_bad_input_exports_nothing() {
    let stack = start("user-export").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let (message, seed) = w.user.export(&api, &w.vault, Some(&w.agent_key_record)).unwrap();
    assert!(message.contains("Export the seed of agent"), "{message}");
    assert_eq!(seed.agent_pubkey(0).unwrap().unwrap().to_string(), w.agent_pubkey);
    let (_, umk) = w.user.export(&api, &w.vault, None).unwrap();
    assert_eq!((umk.kind.as_str(), umk.secret.len()), ("vault", 32));
    // A mnemonic agent: the words derive the agent (Phantom's path, account 0).
    let agent = w.user.create_agent(&api, &w.vault, Some(0)).unwrap();
    let (_, words) = w.user.export(&api, &w.vault, Some(&agent.record)).unwrap();
    assert_eq!(words.words().unwrap().split(' ').count(), 24);
    assert_eq!(words.agent_pubkey(0).unwrap().unwrap().to_string(), agent.agent_pubkey);

    let base = json!({
        "wallet": w.wallet,
        "vault_record": w.vault.record,
        "vault_provenance": w.vault.provenance,
        "recipient": b64(&[7; 32]),
    });
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        b[key] = value;
        b
    };
    for (body, why) in [
        (with("recipient", json!(b64(&[7; 31]))), "31-byte recipient"),
        (with("recipient", json!("%%%")), "recipient not base64"),
        (with("vault_record", json!(b64(b"garbage"))), "vault record garbage"),
        (with("extra", json!(1)), "unknown field"),
    ] {
        let r = api.post("/v1/authorizations/export", &body).unwrap();
        assert!(matches!(r.code(), Some("bad_request" | "record_invalid")), "{why}: {}", r.body);
        assert_eq!(r.status, 400, "{why}: {}", r.body);
    }
    // The host swaps the recipient for its own key after the wallet signed: refused.
    let m = api.post("/v1/authorizations/export", &base).unwrap();
    assert_eq!(m.status, 200, "{}", m.body);
    let mut body = with("recipient", json!(b64(&[8; 32])));
    body["nonce"] = json!(m.str("nonce"));
    body["issued_at"] = json!(m.u64("issued_at"));
    body["signature"] = json!(w.user.sign_message(&m.str("message")));
    let r = api.post("/v1/export", &body).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("authorization_signature_invalid")), "{}", r.body);
    assert!(r.body.get("ciphertext").is_none());
    // A made-up nonce.
    body["recipient"] = json!(b64(&[7; 32]));
    body["nonce"] = json!("00112233445566778899aabbccddeeff");
    let r = api.post("/v1/export", &body).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.get("ciphertext").is_none());
}

#[test]
fn a_lost_grant_reply_is_retried_with_the_same_signature_and_gets_the_same_grant() {
    let stack = start("user-retry").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let terms = w.terms(policy(1_000_000_000, 10_000_000_000), 600);
    let message = w.user.grant_message(&api, &terms).unwrap();
    let signature = w.user.sign_message(&message.message);
    let body = w.user.grant_body(&terms, &message, &signature, &w.vault);
    let first = api.post("/v1/grants", &body).unwrap();
    let again = api.post("/v1/grants", &body).unwrap();
    assert_eq!((first.status, again.status), (200, 200), "{}", again.body);
    assert_eq!(first.str("grant_id"), again.str("grant_id"));
    assert_eq!(first.u64("expires_at"), again.u64("expires_at"));
    // Any other use of the nonce is still a replay (another bot, same nonce, signed anew).
    let mut other = terms.clone();
    other.bot_id = uuid::Uuid::new_v4().to_string();
    let mut changed = w.user.grant_body(&other, &message, &signature, &w.vault);
    let r = api.post("/v1/grants", &changed).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("authorization_signature_invalid")), "{}", r.body);
    changed["signature"] = json!(w.user.sign_message("another message entirely"));
    let r = api.post("/v1/grants", &changed).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
}

fn readyz(api: &Api) -> (u16, Value) {
    let r = api.get("/readyz").unwrap();
    (r.status, r.body)
}

fn wait_for(api: &Api, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(api);
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_says_why_the_instance_cannot_sign_new_grants_and_the_kill_switch_stops_grant_messages() {
    let stack = start("user-readyz").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let (status, body) = readyz(&api);
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["kill_switch"], &body["kms_key"]), (&json!(false), &json!("enabled")));

    // Kill switch: not ready, said so; no new grant message is issued.
    admin.post("/v1/kill-switch", &json!({"engaged": true})).unwrap();
    let (status, body) = readyz(&api);
    assert_eq!((status, &body["kill_switch"]), (503, &json!(true)), "{body}");
    let r = api
        .post("/v1/authorizations/grant", &{
            let mut t =
                json!({"wallet": w.wallet, "bot_id": w.bot_id, "agent_pubkey": w.agent_pubkey});
            t["ttl_seconds"] = json!(600);
            t["policy"] = policy(1, 1);
            t
        })
        .unwrap();
    assert_eq!((r.status, r.code()), (403, Some("kill_switch")), "{}", r.body);
    admin.post("/v1/kill-switch", &json!({"engaged": false})).unwrap();
    assert_eq!(readyz(&api).0, 200);

    // A disabled key: not ready, `kms_key: disabled`, until it is enabled again.
    stack.set_key_enabled(false).unwrap();
    let body = wait_for(&api, "disabled key", |s, b| s == 503 && b["kms_key"] == "disabled");
    assert_eq!(body["kill_switch"], json!(false), "{body}");
    stack.set_key_enabled(true).unwrap();
    wait_for(&api, "enabled key", |s, b| s == 200 && b["kms_key"] == "enabled");
}
