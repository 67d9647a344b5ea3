//! Fault injection over the real binaries: the enclave killed under load, the parent restarted
//! under load, KMS down, slow, answering garbage or `Plaintext` to a `Recipient` request, and a
//! data directory that cannot be written. The contract (SPEC §3.6): every request gets exactly
//! one definite answer, nothing is signed twice (one request id, at most one signature), the
//! daemons keep serving, and the stack recovers when the fault goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{first_signature, verify};
use serde_json::Value;
use signer_e2e::*;

/// What one HTTP request got.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Signed(String),
    Refused {
        status: u16,
        code: String,
    },
    /// No HTTP response at all (connection refused or dropped).
    NoResponse(String),
}

#[derive(Clone, Debug)]
struct Sent {
    body: Value,
    answer: Answer,
}

fn send(api: &Api, body: &Value) -> Answer {
    match api.post("/v1/sign", body) {
        Ok(r) if r.status == 200 => {
            let signed = verify(&r.str("transaction"));
            assert_eq!(first_signature(&signed), r.str("signature"));
            Answer::Signed(r.str("signature"))
        }
        Ok(r) => Answer::Refused { status: r.status, code: r.code().unwrap_or("").to_string() },
        Err(e) => Answer::NoResponse(e),
    }
}

/// `threads` clients signing fresh transfers until `stop`; `fault` runs meanwhile.
fn under_load(
    api: &Api,
    wallets: &[Wallet],
    threads: usize,
    fault: impl FnOnce(&AtomicBool),
) -> Vec<Sent> {
    let stop = AtomicBool::new(false);
    let log = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (api, log, stop) = (api.clone(), &log, &stop);
            let w = &wallets[t % wallets.len()];
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let body = w.sign_body(&w.transfer(1_000), &request_id());
                    let answer = send(&api, &body);
                    let refused = !matches!(answer, Answer::Signed(_));
                    log.lock().unwrap().push(Sent { body, answer });
                    if refused {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        }
        fault(&stop);
        stop.store(true, Ordering::Relaxed);
    });
    log.into_inner().unwrap()
}

/// Waits (at most a minute) until `done` holds; the load keeps running.
fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs load until `done` holds for the answers so far (or a minute passes).
fn keep_going_until(stop: &AtomicBool, done: impl Fn() -> bool) {
    wait_until(done);
    stop.store(true, Ordering::Relaxed);
}

/// Re-sends every request with its own request id once the stack is healthy: each must now sign,
/// and a request that was signed before must get the very same signature (nothing signed twice
/// with different results, whatever the fault did).
fn every_request_settles_to_one_signature(api: &Api, sent: &[Sent]) {
    let mut signatures: HashMap<String, String> = HashMap::new();
    for s in sent {
        let id = s.body["request_id"].as_str().unwrap().to_string();
        let again = send(api, &s.body);
        let Answer::Signed(sig) = again else {
            panic!("request {id} ({:?} under the fault) did not settle: {again:?}", s.answer);
        };
        if let Answer::Signed(before) = &s.answer {
            assert_eq!(&sig, before, "request {id} was signed twice with different results");
        }
        assert!(signatures.insert(id, sig).is_none(), "request ids are unique in this test");
    }
}

fn count(sent: &[Sent], pred: impl Fn(&Answer) -> bool) -> usize {
    sent.iter().filter(|s| pred(&s.answer)).count()
}

/// A wallet with an agent and a one-hour grant whose limits the tests never reach.
fn wallet(api: &Api) -> Wallet {
    Wallet::create(api, policy(1_000_000_000, 1_000_000_000_000), 3600).unwrap()
}

fn wallets(api: &Api, n: usize) -> Vec<Wallet> {
    (0..n).map(|_| wallet(api)).collect()
}

/// A crashed enclave takes its grants' decision state with it, so a restarted enclave (a new
/// instance) refuses them as orphaned — a definite refusal, never a fresh daily budget — until
/// the users authorize again. Under load: every request gets one definite answer (signed, 503
/// while the enclave is gone, 403 `grant_orphaned` once it is back), and after the users
/// re-authorize, every request id settles to one signature, the same one if it was signed before.
#[test]
fn kill_9_of_the_enclave_under_load() {
    let mut stack = start("fault-kill-enclave").unwrap();
    let api = stack.api();
    let ws = wallets(&api, 4);
    let orphaned_after_restart = AtomicBool::new(false);
    let sent = under_load(&api, &ws, 8, |stop| {
        std::thread::sleep(Duration::from_millis(1500));
        stack.kill_enclave();
        std::thread::sleep(Duration::from_millis(1500));
        let restarting = Instant::now();
        stack.start_enclave().unwrap();
        eprintln!("enclave restarted in {:?}", restarting.elapsed());
        let probe = &ws[0];
        wait_until(|| {
            let answer = send(&api, &probe.sign_body(&probe.transfer(1), &request_id()));
            let orphaned =
                answer == Answer::Refused { status: 403, code: "grant_orphaned".to_string() };
            orphaned_after_restart.store(orphaned, Ordering::Relaxed);
            orphaned
        });
        eprintln!("definite answers again {:?} after the restart began", restarting.elapsed());
        // The load keeps going a little, so its clients meet the restarted enclave too.
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(orphaned_after_restart.load(Ordering::Relaxed), "the enclave answered again");

    let no_response: Vec<_> =
        sent.iter().filter(|s| matches!(s.answer, Answer::NoResponse(_))).collect();
    assert!(no_response.is_empty(), "{no_response:?}");
    let unexpected: Vec<_> = sent
        .iter()
        .filter(|s| match &s.answer {
            Answer::Signed(_) => false,
            Answer::Refused { status, code } => !matches!(
                (*status, code.as_str()),
                (503, "enclave_unavailable") | (403, "grant_orphaned")
            ),
            Answer::NoResponse(_) => true,
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let signed = count(&sent, |a| matches!(a, Answer::Signed(_)));
    let unavailable = count(&sent, |a| matches!(a, Answer::Refused { status: 503, .. }));
    let orphaned = count(&sent, |a| matches!(a, Answer::Refused { status: 403, .. }));
    assert!(
        signed > 0 && unavailable > 0 && orphaned > 0,
        "the fault was exercised: {signed} signed, {unavailable} unavailable, {orphaned} orphaned"
    );
    stack.parent.as_mut().unwrap().check_running().unwrap();

    // The users authorize again; each request, re-sent with its request id under its wallet's
    // new grant, signs — with the very signature it got before, if it got one.
    let mut renewed: HashMap<String, Wallet> = HashMap::new();
    for w in &ws {
        let mut w = w.clone();
        w.new_grant(&api, policy(1_000_000_000, 1_000_000_000_000), 3600).unwrap();
        renewed.insert(w.wallet.clone(), w);
    }
    let resent: Vec<Sent> = sent
        .iter()
        .map(|s| {
            let owner = ws
                .iter()
                .find(|w| w.grant_record == s.body["grant_record"].as_str().unwrap())
                .unwrap();
            let mut body = s.body.clone();
            body["grant_record"] = Value::String(renewed[&owner.wallet].grant_record.clone());
            Sent { body, answer: s.answer.clone() }
        })
        .collect();
    every_request_settles_to_one_signature(&api, &resent);
    eprintln!(
        "kill -9 under load: {} requests, {signed} signed, {unavailable} answered 503, \
         {orphaned} answered grant_orphaned",
        sent.len()
    );
}

/// Every KMS `Decrypt` the parent made, whatever its outcome.
fn decrypt_calls(stack: &Stack) -> f64 {
    let (_, text) = stack.api().get_text("/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with(r#"signer_kms_calls_total{operation="Decrypt""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A record of an enclave that is gone (or of another live instance) is refused from its
/// cleartext header, before any envelope is asked for: bots retrying on orphaned grants after a
/// crash must not spend the account's KMS quota (before: 320 such requests made 121 calls).
#[test]
fn orphaned_grants_are_refused_without_a_kms_call() {
    let mut stack = start("fault-orphan-kms").unwrap();
    let api = stack.api();
    let ws = wallets(&api, 3);
    // Restart after the grants' issue second: they are then orphaned (issued before the new
    // instance started), not misrouted.
    std::thread::sleep(Duration::from_millis(1100));
    stack.kill_enclave();
    stack.start_enclave().unwrap();
    let probe = &ws[0];
    wait_until(|| {
        send(&api, &probe.sign_body(&probe.transfer(1), &request_id()))
            == Answer::Refused { status: 403, code: "grant_orphaned".to_string() }
    });
    let before = decrypt_calls(&stack);
    let mut refused = 0;
    for _ in 0..40 {
        for w in &ws {
            let answer = send(&api, &w.sign_body(&w.transfer(1), &request_id()));
            assert_eq!(
                answer,
                Answer::Refused { status: 403, code: "grant_orphaned".to_string() },
                "an orphaned grant is a definite refusal"
            );
            refused += 1;
        }
    }
    assert_eq!(
        decrypt_calls(&stack),
        before,
        "{refused} requests on orphaned grants made no KMS Decrypt call"
    );
}

#[test]
fn parent_restart_under_load() {
    let mut stack = start("fault-restart-parent").unwrap();
    let api = stack.api();
    let ws = wallets(&api, 4);
    let sent = under_load(&api, &ws, 8, |stop| {
        std::thread::sleep(Duration::from_millis(1500));
        let status = stack.stop_parent().unwrap();
        assert!(status.success(), "graceful stop: {status}");
        std::thread::sleep(Duration::from_millis(500));
        stack.start_parent().unwrap();
        stack.wait_ready(Duration::from_secs(60)).unwrap();
        keep_going_until(stop, || true);
        std::thread::sleep(Duration::from_millis(1500));
    });
    // While the parent was down requests found no listener; everything it accepted, it answered
    // (graceful shutdown drains in-flight requests), and only with a signature.
    let refused: Vec<_> =
        sent.iter().filter(|s| matches!(s.answer, Answer::Refused { .. })).collect();
    assert!(refused.is_empty(), "{refused:?}");
    let dropped = count(&sent, |a| matches!(a, Answer::NoResponse(_)));
    let signed = count(&sent, |a| matches!(a, Answer::Signed(_)));
    assert!(
        dropped > 0 && signed > 0,
        "the fault was exercised: {signed} signed, {dropped} unanswered"
    );
    // A client retrying with the same request id gets exactly one signature per request.
    every_request_settles_to_one_signature(&api, &sent);
    eprintln!(
        "parent restart under load: {} requests, {signed} signed, {dropped} unanswered",
        sent.len()
    );
}

fn kms_metric(stack: &Stack, outcome: &str) -> f64 {
    let (_, text) = stack.api().get_text("/metrics").unwrap();
    metric(&text, &format!(r#"signer_kms_calls_total{{operation="Decrypt",outcome="{outcome}"}}"#))
}

fn enclave_signatures(stack: &Stack) -> f64 {
    let (_, text) = stack.api().get_text("/metrics").unwrap();
    metric(&text, r#"signer_enclave_calls_total{op="sign",outcome="ok"}"#)
}

#[test]
fn kms_down_open_grants_keep_signing_new_ones_wait_for_kms() {
    let mut stack = start("fault-kms-down").unwrap();
    let api = stack.api();
    let open = wallet(&api);
    assert!(matches!(
        send(&api, &open.sign_body(&open.transfer(1), &request_id())),
        Answer::Signed(_)
    ));
    let fresh = wallet(&api);

    stack.stop_kms();
    // The enclave holds the open grant: signing goes on without KMS.
    assert!(matches!(
        send(&api, &open.sign_body(&open.transfer(2), &request_id())),
        Answer::Signed(_)
    ));
    // Creating records needs no KMS either (they are sealed to the pinned public key).
    let created_meanwhile = wallet(&api);
    // A grant the enclave has not opened needs KMS: a definite 503, promptly.
    let body = fresh.sign_body(&fresh.transfer(3), &request_id());
    let started = Instant::now();
    let r = api.post("/v1/sign", &body).unwrap();
    assert_eq!((r.status, r.code()), (503, Some("enclave_unavailable")), "{}", r.body);
    assert!(r.str("detail").starts_with("KMS unreachable"), "{}", r.body);
    // The SDK's internals (its error debug text, the KMS endpoint) stay in the parent's log.
    let kms_port = stack.options.kms_addr.port().to_string();
    for internal in
        [kms_port.as_str(), "DispatchFailure", "TimeoutError", "ConnectorError", "source:"]
    {
        assert!(!r.str("detail").contains(internal), "detail leaks `{internal}`: {}", r.body);
    }
    assert!(started.elapsed() < Duration::from_secs(30), "bounded by the KMS deadline");
    let ready = api.get("/readyz").unwrap();
    assert_eq!((ready.status, &ready.body["kms_reachable"]), (503, &Value::Bool(false)));

    stack.start_kms().unwrap();
    assert!(
        matches!(send(&api, &body), Answer::Signed(_)),
        "the same request signs once KMS is back"
    );
    assert!(matches!(
        send(&api, &created_meanwhile.sign_body(&created_meanwhile.transfer(4), &request_id())),
        Answer::Signed(_)
    ));
    stack.wait_ready(Duration::from_secs(30)).unwrap();
}

#[test]
fn kms_slow_errors_garbage_and_plaintext_are_definite_refusals() {
    let stack = start("fault-kms-misbehaves").unwrap();
    let api = stack.api();
    let open = wallet(&api);
    assert!(matches!(
        send(&api, &open.sign_body(&open.transfer(1), &request_id())),
        Answer::Signed(_)
    ));

    // Slow: every KMS call takes 8 s, past the parent's 5 s deadline (retries included).
    stack.kms_fault("none", 8_000).unwrap();
    let slow = wallet(&api);
    let slow_body = slow.sign_body(&slow.transfer(2), &request_id());
    let started = Instant::now();
    let (slow_answer, open_answer) = std::thread::scope(|scope| {
        let pending = scope.spawn(|| api.post("/v1/sign", &slow_body).unwrap());
        // Meanwhile an open grant signs: a stuck KMS call holds up nobody else.
        std::thread::sleep(Duration::from_millis(500));
        let open_answer = send(&api, &open.sign_body(&open.transfer(3), &request_id()));
        (pending.join().unwrap(), open_answer)
    });
    assert!(matches!(open_answer, Answer::Signed(_)), "{open_answer:?}");
    assert_eq!(
        (slow_answer.status, slow_answer.code()),
        (503, Some("enclave_unavailable")),
        "{}",
        slow_answer.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 5 s deadline holds: {:?}",
        started.elapsed()
    );

    // KMS answering 5xx: retried, then a 503.
    stack.kms_fault("internal_error", 0).unwrap();
    let r = api.post("/v1/sign", &slow_body).unwrap();
    assert_eq!((r.status, r.code()), (503, Some("enclave_unavailable")), "{}", r.body);

    // Garbage instead of an envelope: the enclave refuses it; an upstream fault, neither the
    // caller's nor a bug here (502 envelope_rejected, as the threat model says).
    let signatures_before = enclave_signatures(&stack);
    stack.kms_fault("garbage_envelope", 0).unwrap();
    let r = api.post("/v1/sign", &slow_body).unwrap();
    assert_eq!((r.status, r.code()), (502, Some("envelope_rejected")), "{}", r.body);
    assert!(r.str("detail").contains("envelope"), "{}", r.body);
    assert!(r.body.get("signature").is_none());

    // Plaintext next to CiphertextForRecipient: the parent fails closed and never forwards it.
    stack.kms_fault("plaintext_with_recipient", 0).unwrap();
    let refused_before = kms_metric(&stack, "plaintext_refused");
    let r = api.post("/v1/sign", &slow_body).unwrap();
    assert_eq!((r.status, r.code()), (500, Some("internal")), "{}", r.body);
    assert!(r.str("detail").contains("fail closed"), "{}", r.body);
    assert_eq!(kms_metric(&stack, "plaintext_refused"), refused_before + 1.0);
    assert_eq!(
        enclave_signatures(&stack),
        signatures_before,
        "nothing was signed under the faults"
    );

    // KMS behaves again: the very same request signs, and the daemons never stopped serving.
    stack.kms_fault("none", 0).unwrap();
    assert!(matches!(send(&api, &slow_body), Answer::Signed(_)));
    let parent_log = std::fs::read_to_string(stack.paths.logs.join("parent.log")).unwrap();
    assert!(parent_log.contains("refused"), "the fail-closed refusal is logged");
}

#[test]
fn kms_sim_keeps_serving_when_its_data_directory_cannot_be_written() {
    let stack = start("fault-unwritable").unwrap();
    let api = stack.api();
    // Block the store's temporary file with a directory: every write fails (as root too).
    let blocker = stack.paths.kms_dir.join("keys.json.tmp");
    std::fs::create_dir_all(blocker.join("x")).unwrap();

    let err = stack.create_symmetric_key().unwrap_err().to_string();
    assert!(err.contains("cannot persist the key store") && err.contains("keys.json"), "{err}");
    // A failed write changes nothing, not even in memory: disabling the key fails and the key
    // stays enabled, so signing goes on.
    let err = stack.set_key_enabled(false).unwrap_err().to_string();
    assert!(err.contains("cannot persist"), "{err}");
    let w = wallet(&api);
    assert!(matches!(send(&api, &w.sign_body(&w.transfer(1), &request_id())), Answer::Signed(_)));

    std::fs::remove_dir_all(&blocker).unwrap();
    stack.create_symmetric_key().unwrap();
}

#[test]
fn unusable_paths_stop_the_daemons_at_start_with_errors_that_name_them() {
    let dir = data_dir("fault-paths");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    // The launcher, with its data directory a regular file.
    let launcher = signer_sim::process::binary("signer-sim").unwrap();
    let stderr = run(std::process::Command::new(launcher)
        .args(["run", "--demo-only"])
        .env("SIGNER_DATA_DIR", &file)
        .env("SIGNER_HTTP_ADDR", "127.0.0.1:0")
        .env("SIGNER_KMS_ADDR", "127.0.0.1:0"));
    assert!(stderr.contains("cannot use") && stderr.contains("a-file"), "{stderr}");

    // kms-sim, with its key store path a directory.
    std::fs::create_dir_all(dir.join("kms/keys.json")).unwrap();
    let stderr = run(std::process::Command::new(signer_sim::process::binary("kms-sim").unwrap())
        .args(["--listen", "127.0.0.1:0", "--caller-arn", "arn:aws:iam::111122223333:role/x"])
        .arg("--data-dir")
        .arg(dir.join("kms"))
        .arg("--attestation-root")
        .arg(testkit::vectors_dir().join("attestation/root.pem")));
    assert!(stderr.contains("keys.json") && stderr.contains("directory"), "{stderr}");

    // The enclave, with its socket under a regular file; the error names the socket path.
    let stack = start("fault-paths-enclave").unwrap();
    let socket = file.join("enclave.sock");
    let stderr =
        run(std::process::Command::new(signer_sim::process::binary("signer-enclave").unwrap())
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(["--nsm", "sim", "--config"])
            .arg(&stack.paths.enclave_config)
            .arg("--sim-ca")
            .arg(&stack.paths.sim_ca));
    assert!(stderr.contains("enclave.sock"), "{stderr}");
}
