//! Limits that hold against the host (SPEC §16), over the real binaries: a planned handover under
//! load loses and double-charges nothing, an upgrade hands over to a new image the key policy
//! admits, a successor image the key policy does not admit gets nothing, and a grant is usable on
//! exactly one enclave instance. (Crash-restarts orphaning grants: `faults.rs`; forged and
//! replayed handovers: `enclave/daemon/tests/daemon.rs` and `enclave/core/tests/handover.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
mod extra_parent;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{first_signature, verify};
use extra_parent::ExtraParent;
use serde_json::{Value, json};
use signer_e2e::*;

const DAY_LIMIT: u64 = 1_000_000_000_000;

fn sign(api: &Api, body: &Value) -> (u16, String, String) {
    let r = api.post("/v1/sign", body).unwrap();
    if r.status == 200 {
        let signed = verify(&r.str("transaction"));
        assert_eq!(first_signature(&signed), r.str("signature"));
        (200, r.str("signature"), String::new())
    } else {
        (r.status, String::new(), r.code().unwrap_or("").to_string())
    }
}

/// The day's SOL used by `w`, as the enclave reports it in a denial.
fn used_today(api: &Api, w: &Wallet) -> u64 {
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(DAY_LIMIT), &request_id())).unwrap();
    assert_eq!(r.body["rule"], "max_lamports_per_day", "{}", r.body);
    r.body["used"].as_u64().unwrap()
}

#[test]
fn planned_handover_under_load_loses_nothing_and_charges_once() {
    let stack = start("handover-load").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let ws: Vec<Wallet> = (0..4)
        .map(|_| Wallet::create(&api, policy(2 * DAY_LIMIT, DAY_LIMIT), 3600).unwrap())
        .collect();
    let predecessor = enclave_id(&api).unwrap();
    let socket = stack.paths.root.join("run/successor.sock");
    let _successor =
        stack.spawn_enclave(&socket, &stack.paths.enclave_config, "successor").unwrap();

    let stop = AtomicBool::new(false);
    type Answer = (u16, String, String);
    let log: Mutex<Vec<(usize, Value, Answer)>> = Mutex::new(Vec::new());
    let report = std::thread::scope(|scope| {
        for t in 0..8 {
            let (api, log, stop, ws) = (api.clone(), &log, &stop, &ws);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let w = &ws[t % ws.len()];
                    let body = w.sign_body(&w.transfer(1_000), &request_id());
                    let answer = sign(&api, &body);
                    log.lock().unwrap().push((t % ws.len(), body, answer));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let r = admin
            .post("/v1/admin/handover", &json!({"successor": format!("unix:{}", socket.display())}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        r
    });
    assert_eq!(report.status, 200, "{}", report.body);
    let successor = enclave_id(&api).unwrap();
    assert_ne!(successor, predecessor);
    assert_eq!(report.body["predecessor"], predecessor.to_string());
    assert_eq!(report.body["successor"], successor.to_string());
    assert_eq!(report.body["counters"], 4, "{}", report.body);
    assert!(report.body["request_ids"].as_u64().unwrap() > 0);
    let r = api.get("/v1/enclave").unwrap();
    assert_eq!(r.body["answers_for"], json!([successor.to_string(), predecessor.to_string()]));

    // Every request was signed: those that reached the predecessor after it stopped deciding
    // waited for the switch and were signed by the successor.
    let log = log.into_inner().unwrap();
    let refused: Vec<_> = log.iter().filter(|(_, _, a)| a.0 != 200).collect();
    assert!(
        refused.is_empty(),
        "{} of {} refused: {:?}",
        refused.len(),
        log.len(),
        &refused[..refused.len().min(3)]
    );
    assert!(log.len() > 20, "the load ran: {} requests", log.len());

    // Counters continue exactly: each wallet's day holds every signed transfer once (1 000
    // lamports and the agent's 5 000-lamport fee), across both enclaves.
    let mut per_wallet: HashMap<usize, u64> = HashMap::new();
    for (w, _, _) in &log {
        *per_wallet.entry(*w).or_default() += 6_000;
    }
    for (i, w) in ws.iter().enumerate() {
        assert_eq!(used_today(&api, w), per_wallet.get(&i).copied().unwrap_or(0), "wallet {i}");
    }
    // Identical retries, now all answered by the successor, are identical signatures and are
    // not charged again.
    for (_, body, (_, signature, _)) in &log {
        let (status, again, code) = sign(&api, body);
        assert_eq!((status, &again), (200, signature), "{code}");
    }
    for (i, w) in ws.iter().enumerate() {
        assert_eq!(used_today(&api, w), per_wallet.get(&i).copied().unwrap_or(0));
    }
    // New grants are made on the successor.
    let mut w = ws[0].clone();
    w.new_grant(&api, policy(2 * DAY_LIMIT, DAY_LIMIT), 600).unwrap();
    assert_eq!(w.enclave_id, successor.to_string());
    let (_, text) = api.get_text("/metrics").unwrap();
    assert_eq!(metric(&text, "signer_handovers_total"), 1.0);
}

#[test]
fn an_upgrade_hands_over_to_the_new_image_the_key_policy_admits_and_no_other() {
    let mut stack = start("handover-upgrade").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    assert_eq!(sign(&api, &w.sign_body(&w.transfer(1_000), &request_id())).0, 200);

    // A new image (another measured config: another PCR0) that the key policy does not admit:
    // KMS refuses it the handover key, and the running enclave keeps deciding.
    let (new_config, new_measurements) = stack.write_successor_image().unwrap();
    let socket = stack.paths.root.join("run/v2.sock");
    let successor = stack.spawn_enclave(&socket, &new_config, "v2").unwrap();
    let measurements: Value =
        serde_json::from_str(&std::fs::read_to_string(&new_measurements).unwrap()).unwrap();
    let body =
        json!({"successor": format!("unix:{}", socket.display()), "measurements": measurements});
    let r = admin.post("/v1/admin/handover", &body).unwrap();
    assert_eq!((r.status, r.code()), (502, Some("kms_access_denied")), "{}", r.body);
    assert_eq!(sign(&api, &w.sign_body(&w.transfer(1_001), &request_id())).0, 200);
    drop(successor);

    // The upgrade runbook: the key policy admits both images, then the handover goes through
    // and the old image's grants keep signing on the new one.
    stack
        .apply_key_policy_for(&[stack.paths.measurements.clone(), new_measurements.clone()])
        .unwrap();
    let _ = std::fs::remove_file(&socket);
    let _successor = stack.spawn_enclave(&socket, &new_config, "v2-again").unwrap();
    let r = admin.post("/v1/admin/handover", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let id = request_id();
    let tx = w.transfer(1_002);
    let (status, first, code) = sign(&api, &w.sign_body(&tx, &id));
    assert_eq!(status, 200, "{code}");
    assert_eq!(sign(&api, &w.sign_body(&tx, &id)), (200, first, String::new()));
    // The old enclave is gone from service; stopping it loses nothing.
    stack.kill_enclave();
    assert_eq!(sign(&api, &w.sign_body(&w.transfer(1_003), &request_id())).0, 200);
}

#[test]
fn a_grant_is_usable_on_exactly_one_enclave() {
    let stack = start("one-enclave").unwrap();
    // A second instance (enclave and parent) behind the same KMS key, started first.
    let (_enclave_b, _parent_b, api_b) = stack.spawn_instance("second", free_addr()).unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    assert_eq!(sign(&api, &w.sign_body(&w.transfer(1), &request_id())).0, 200);
    // The same grant on the other instance: refused, whatever the host does with it.
    let r = api_b.post("/v1/sign", &w.sign_body(&w.transfer(2), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (421, Some("wrong_enclave")), "{}", r.body);
    assert!(r.str("detail").contains(&w.enclave_id), "{}", r.body);
    // Its message named instance A: B refuses to mint a grant from the same signature.
    let b_id = enclave_id(&api_b).unwrap();
    assert_ne!(b_id.to_string(), w.enclave_id);
    // And a scheduled record for A is single-use on A only.
    let kms_spki = stack.kms_public_key().unwrap();
    let schedule = Schedule {
        not_before: now() - 10,
        not_after: now() + 600,
        max_fee: 10_000,
        created_at: now(),
        enclave_id: enclave_id(&api).unwrap(),
    };
    let scheduled = ScheduledTransfer::new(&kms_spki, 5, schedule).unwrap();
    let body = scheduled.body(&scheduled.transaction, &request_id());
    let r = api_b.post("/v1/scheduled/sign", &body).unwrap();
    assert_eq!((r.status, r.code()), (421, Some("wrong_enclave")), "{}", r.body);
    let r = api.post("/v1/scheduled/sign", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-signer-route"), Some(schedule.enclave_id.to_string().as_str()));
}

fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], signer_sim::stack::free_port()))
}

/// The first handover right after the successor starts waits for it to listen; the frozen
/// predecessor reports not ready; and a handover back to it (A → S1 → S2 → A) is refused before
/// anything moves, so the state is never frozen on both sides.
#[test]
fn handovers_wait_for_a_new_successor_and_never_go_back_to_a_frozen_enclave() {
    let stack = start("handover-frozen").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let w = Wallet::create(&api, policy(2 * DAY_LIMIT, DAY_LIMIT), 3600).unwrap();
    let a = enclave_id(&api).unwrap();
    // A second parent that stays on A after the stack's parent moves on.
    let watcher = ExtraParent::start(&stack, "watcher", "");
    let s1_socket = stack.paths.root.join("run/s1.sock");
    let _s1 = stack.spawn_enclave_unready(&s1_socket, &stack.paths.enclave_config, "s1").unwrap();
    let r = admin
        .post("/v1/admin/handover", &json!({"successor": format!("unix:{}", s1_socket.display())}))
        .unwrap();
    assert_eq!(r.status, 200, "the parent waits for a successor started a moment ago: {}", r.body);
    let s1 = enclave_id(&api).unwrap();
    // A is frozen: not ready, and says to whom it handed over.
    let r = watcher.api.get("/readyz").unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["handed_over_to"], s1.to_string(), "{}", r.body);
    // S1 → S2.
    let s2_socket = stack.paths.root.join("run/s2.sock");
    let _s2 = stack.spawn_enclave(&s2_socket, &stack.paths.enclave_config, "s2").unwrap();
    let r = admin
        .post("/v1/admin/handover", &json!({"successor": format!("unix:{}", s2_socket.display())}))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let s2 = enclave_id(&api).unwrap();
    // S2 → A: refused (S2 answers for A), and S2 keeps deciding.
    let r = admin
        .post(
            "/v1/admin/handover",
            &json!({"successor": format!("unix:{}", stack.paths.socket.display())}),
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (409, Some("handover_refused")), "{}", r.body);
    assert!(r.str("detail").contains(&format!("already answers for {a}")), "{}", r.body);
    assert_eq!(enclave_id(&api).unwrap(), s2);
    let (status, _, code) = sign(&api, &w.sign_body(&w.transfer(1_000), &request_id()));
    assert_eq!(status, 200, "{code}");
    let r = api.get("/readyz").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Nothing to abort on S2.
    let r = admin.post("/v1/admin/handover/abort", &json!({})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["abandoned_successor"], Value::Null, "{}", r.body);
}
