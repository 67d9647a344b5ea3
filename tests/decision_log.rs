//! Every decision the parent relays is one structured log line (target `decision`) naming the
//! route, the outcome (`ok` or the error code), the request id, the grant or schedule, the wallet,
//! the bot and the agent (and the rule of a policy denial), and never a record, a transaction or
//! a token; and the request metrics are labelled by the same error code. The real binaries, the
//! parent logging JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::{Value, json};
use signer_e2e::*;

mod extra_parent;
use extra_parent::ExtraParent;

/// The decision lines' fields for `route`.
fn decisions(parent: &ExtraParent, route: &str) -> Vec<Value> {
    parent
        .log_lines("decision")
        .into_iter()
        .map(|l| l["fields"].clone())
        .filter(|f| f["route"] == route)
        .collect()
}

/// The one decision line with `request_id`.
fn decision_for(parent: &ExtraParent, request_id: &str) -> Value {
    let lines: Vec<Value> = parent
        .log_lines("decision")
        .into_iter()
        .map(|l| l["fields"].clone())
        .filter(|f| f["request_id"] == request_id)
        .collect();
    assert_eq!(lines.len(), 1, "decision lines for request {request_id}: {lines:?}");
    lines[0].clone()
}

fn requests(parent: &ExtraParent, route: &str, code: &str) -> f64 {
    parent.metric(&format!(r#"signer_http_requests_total{{code="{code}",route="{route}"}}"#))
}

#[test]
fn every_decision_is_one_structured_log_line_and_metrics_carry_its_code() {
    let stack = start("decision-log").unwrap();
    let parent = ExtraParent::start(&stack, "logging-parent", "");
    let api = &parent.api;

    // Vault, agent and grant creation: one line each, with what each knows.
    let w = Wallet::create(api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let vault = decisions(&parent, "vaults");
    assert_eq!(vault.len(), 1, "{vault:?}");
    assert_eq!(
        (vault[0]["outcome"].as_str(), vault[0]["wallet"].as_str()),
        (Some("ok"), Some(w.wallet.as_str()))
    );
    assert_eq!(vault[0]["vault_id"], w.vault.vault_id.as_str());
    let agent = decisions(&parent, "agents");
    assert_eq!(agent.len(), 1, "{agent:?}");
    assert_eq!(agent[0]["outcome"], "ok");
    assert_eq!(agent[0]["agent"], w.agent_pubkey.as_str());
    assert_eq!(agent[0]["vault_id"], w.vault.vault_id.as_str());
    let grant = decisions(&parent, "grants");
    assert_eq!(grant.len(), 1, "{grant:?}");
    for (field, value) in [
        ("outcome", "ok"),
        ("grant_id", w.grant_id.as_str()),
        ("wallet", w.wallet.as_str()),
        ("bot_id", w.bot_id.as_str()),
        ("agent", w.agent_pubkey.as_str()),
        ("enclave", w.enclave_id.as_str()),
    ] {
        assert_eq!(grant[0][field], value, "{field}: {}", grant[0]);
    }
    // Issuing an authorization message decides nothing: no line.
    assert!(decisions(&parent, "authorize_grant").is_empty());

    // A signature and a policy denial.
    let (signed_id, denied_id) = (request_id(), request_id());
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(5_000), &signed_id)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(2_000_000_000), &denied_id)).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("policy_denied")), "{}", r.body);
    let (ok, denied) = (decision_for(&parent, &signed_id), decision_for(&parent, &denied_id));
    for line in [&ok, &denied] {
        assert_eq!(line["route"], "sign");
        assert_eq!(line["grant_id"], w.grant_id.as_str());
        assert_eq!(line["wallet"], w.wallet.as_str());
        assert_eq!(line["bot_id"], w.bot_id.as_str());
        assert_eq!(line["agent"], w.agent_pubkey.as_str());
        assert_eq!(line["enclave"], w.enclave_id.as_str());
    }
    assert_eq!((ok["outcome"].as_str(), ok["status"].as_u64()), (Some("ok"), Some(200)));
    assert!(ok.get("rule").is_none(), "{ok}");
    assert_eq!(
        (denied["outcome"].as_str(), denied["status"].as_u64()),
        (Some("policy_denied"), Some(403))
    );
    assert_eq!(denied["rule"], "max_lamports_per_tx");
    assert_eq!(denied["limit"].as_u64(), Some(1_000_000_000));
    // The transfer plus its fee.
    assert!(denied["requested"].as_u64().is_some_and(|r| r >= 2_000_000_000), "{denied}");

    // 421 wrong_enclave (a scheduled record bound to another instance) is counted as such, not
    // as `internal`, and logged with the schedule.
    let kms_spki = stack.kms_public_key().unwrap();
    // Made after this enclave started, so a routing mistake rather than an orphan.
    let schedule = Schedule {
        not_before: now() - 10,
        not_after: now() + 3600,
        max_fee: 10_000,
        created_at: now(),
        enclave_id: enclave_core::EnclaveId::from_recipient_key(b"another enclave"),
    };
    let foreign = ScheduledTransfer::new(&kms_spki, 1_000, schedule).unwrap();
    let foreign_id = request_id();
    let r =
        api.post("/v1/scheduled/sign", &foreign.body(&foreign.transaction, &foreign_id)).unwrap();
    assert_eq!((r.status, r.code()), (421, Some("wrong_enclave")), "{}", r.body);
    assert_eq!(requests(&parent, "scheduled_sign", "wrong_enclave"), 1.0);
    assert_eq!(requests(&parent, "scheduled_sign", "internal"), 0.0);
    let line = decision_for(&parent, &foreign_id);
    assert_eq!(
        (line["outcome"].as_str(), line["status"].as_u64()),
        (Some("wrong_enclave"), Some(421))
    );
    assert!(
        line["schedule_id"].as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
        "{line}"
    );
    assert!(line["wallet"].is_string() && line["agent"].is_string(), "{line}");

    // 409 handover_refused (an unreachable successor) is counted as such, not as
    // `replayed_request`.
    let r = parent
        .admin
        .post("/v1/admin/handover", &json!({"successor": "unix:/nonexistent/successor.sock"}))
        .unwrap();
    assert_eq!((r.status, r.code()), (409, Some("handover_refused")), "{}", r.body);
    assert_eq!(requests(&parent, "handover", "handover_refused"), 1.0);
    assert_eq!(requests(&parent, "handover", "replayed_request"), 0.0);
    let handover = decisions(&parent, "handover");
    assert_eq!(handover.len(), 1, "{handover:?}");
    assert_eq!(handover[0]["outcome"], "handover_refused");
    assert_eq!(handover[0]["successor"], "unix:/nonexistent/successor.sock");

    // Kill switch and revocation.
    for engaged in [true, false] {
        let r = parent.admin.post("/v1/kill-switch", &json!({"engaged": engaged})).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let kill = decisions(&parent, "kill_switch");
    let states: Vec<(&str, Option<bool>)> =
        kill.iter().map(|f| (f["outcome"].as_str().unwrap(), f["engaged"].as_bool())).collect();
    assert_eq!(states, [("ok", Some(true)), ("ok", Some(false))]);
    let r = parent.admin.post("/v1/grants/revoke", &json!({"grant_id": w.grant_id})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let revoke = decisions(&parent, "revoke");
    assert_eq!(revoke.len(), 1, "{revoke:?}");
    assert_eq!(
        (revoke[0]["outcome"].as_str(), revoke[0]["grant_id"].as_str()),
        (Some("ok"), Some(w.grant_id.as_str()))
    );
    // The revoked grant's refusal names it too.
    let revoked_id = request_id();
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(5_000), &revoked_id)).unwrap();
    assert_eq!(r.code(), Some("grant_revoked"), "{}", r.body);
    let line = decision_for(&parent, &revoked_id);
    assert_eq!(
        (line["outcome"].as_str(), line["grant_id"].as_str()),
        (Some("grant_revoked"), Some(w.grant_id.as_str()))
    );
    assert_eq!(requests(&parent, "sign", "grant_revoked"), 1.0);

    // One line per decision request, and nothing secret or bulky in any of them.
    let all = parent.log_lines("decision");
    assert_eq!(all.len(), 1 + 1 + 1 + 2 + 1 + 1 + 2 + 1 + 1, "{all:#?}");
    let text = parent.log_text();
    for (what, secret) in [
        ("the grant record", w.grant_record.as_str()),
        ("the agent key record", w.agent_key_record.as_str()),
        ("the vault record", w.vault.record.as_str()),
        ("the API token", stack.api_token.as_str()),
        ("the admin token", stack.admin_token.as_str()),
    ] {
        assert!(!text.contains(secret), "the parent's log contains {what}");
    }
    for line in &all {
        for key in ["grant_record", "agent_key_record", "vault_record", "transaction", "signature"]
        {
            assert!(line["fields"].get(key).is_none(), "{key} in {line}");
        }
    }
}
