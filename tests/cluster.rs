//! A cluster of three enclave/parent pairs behind HAProxy, on the real binaries, under a
//! nemesis (Jepsen-style): clients sign through the load balancer and record every answer while
//! the nemesis kills the leader's enclave (SIGKILL) and brings a fresh one back as a new member,
//! isolates a member, and drops, delays, duplicates, reorders and replays member traffic; the
//! checker (`signer_sim::history`) then verifies the whole history: one signature per request
//! id, daily limits never exceeded, acknowledged revocations and kill switches never undone, and
//! no signature from a member cut off from the majority. Seeds are fixed and the runs bounded;
//! `SIGNER_JEPSEN_SECONDS` lengthens them (the README's longer run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use serde_json::json;
use signer_e2e::*;
use signer_sim::cluster::{Cluster, member_addrs};
use signer_sim::history::{Event, Op, Outcome, check};
use signer_sim::nemesis::Nemesis;

/// Lamports a test transfer moves; the fee the agent pays (one signature) comes on top.
const FEE: u64 = 5_000;

struct Harness {
    stack: Stack,
    cluster: Option<Cluster>,
    nemesis: Option<Nemesis>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.shutdown();
        }
        if let Some(n) = self.nemesis.take() {
            n.shutdown();
        }
    }
}

fn harness(name: &str, seed: u64) -> Harness {
    let stack = Stack::prepare(Options::for_test(data_dir(name))).unwrap();
    let addrs = member_addrs(3, &[stack.options.http_addr, stack.options.kms_addr]);
    let reserved = [stack.options.http_addr, stack.options.kms_addr];
    let nemesis = Nemesis::start(&addrs, &reserved, seed).unwrap();
    let mut cluster = stack.start_cluster(&addrs, Some(&nemesis.relays)).unwrap();
    stack.start_load_balancer(&mut cluster, stack.options.http_addr).unwrap();
    Harness { stack, cluster: Some(cluster), nemesis: Some(nemesis) }
}

fn day() -> u64 {
    now() / 86_400
}

struct Recorder {
    started: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn record(&self, op: Op, invoked: u64, outcome: Outcome) {
        let completed = self.ms();
        self.events.lock().unwrap().push(Event { op, invoked, completed, outcome });
    }
}

fn outcome_of(r: Result<signer_sim::client::Reply, String>) -> Outcome {
    match r {
        Ok(r) if r.status == 200 => match r.body.get("signature").and_then(|s| s.as_str()) {
            Some(s) => Outcome::Signed { signature: s.to_string() },
            None => Outcome::Ok,
        },
        // A definite refusal: the enclave decided (or nothing reached it).
        Ok(r) if r.status < 500 => Outcome::Refused { code: r.code().unwrap_or("").to_string() },
        Ok(r) => Outcome::Unknown { error: format!("{} {}", r.status, r.code().unwrap_or("")) },
        Err(e) => Outcome::Unknown { error: e },
    }
}

/// One signature request, retried with the same request id while the answer is not definite.
fn sign_with_retries(
    rec: &Recorder,
    api: &Api,
    w: &Wallet,
    grant: &str,
    lamports: u64,
    direct_to: Option<usize>,
) -> Outcome {
    let id = request_id();
    let tx = w.transfer(lamports);
    let headers: &[(&str, &str)] =
        if direct_to.is_some() { &[("x-signer-forwarded", "1")] } else { &[] };
    let mut last = Outcome::Unknown { error: "not sent".into() };
    for _ in 0..3 {
        let invoked = rec.ms();
        let op = Op::Sign {
            request_id: id.clone(),
            grant: grant.to_string(),
            charge: lamports + FEE,
            day: day(),
            direct_to,
        };
        last = outcome_of(api.post_with("/v1/sign", &w.sign_body(&tx, &id), headers));
        rec.record(op, invoked, last.clone());
        if !matches!(last, Outcome::Unknown { .. }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

fn jepsen(seed: u64) {
    let seconds: u64 =
        std::env::var("SIGNER_JEPSEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    let mut h = harness(&format!("jepsen-{seed}"), seed);
    let api = h.stack.api();
    let admin = api.with_token(&h.stack.admin_token);
    // Grant A: a tight daily limit the clients run into; grant B: revoked mid-run.
    let limit = 600_000;
    let a = Wallet::create(&api, policy(200_000, limit), 3600).unwrap();
    let b = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 3600).unwrap();
    // Grant C: never revoked, for measuring failovers.
    let c = Wallet::create(&api, policy(1_000_000_000, 100_000_000_000), 3600).unwrap();
    assert_eq!(a.enclave_id, h.cluster.as_ref().unwrap().cluster_id, "records name the cluster");
    let limits = HashMap::from([
        (a.grant_id.clone(), limit),
        (b.grant_id.clone(), 100_000_000_000),
        (c.grant_id.clone(), 100_000_000_000),
    ]);

    let rec = Arc::new(Recorder { started: Instant::now(), events: Mutex::new(Vec::new()) });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..3u64 {
        let (rec, stop, api, a, b) =
            (Arc::clone(&rec), Arc::clone(&stop), api.clone(), a.clone(), b.clone());
        clients.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 100 + c);
            while !stop.load(Ordering::Relaxed) {
                let (w, grant) =
                    if rng.random_range(0..2) == 0 { (&a, &a.grant_id) } else { (&b, &b.grant_id) };
                let lamports = rng.random_range(10_000..=60_000);
                sign_with_retries(&rec, &api, w, grant, lamports, None);
                std::thread::sleep(Duration::from_millis(rng.random_range(20..120)));
            }
        }));
    }

    let nemesis = h.nemesis.as_ref().unwrap();
    nemesis.faults.set(5, 5, 2, 25);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut failovers = Vec::new();
    let mut round = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..2500)));
        let cluster = h.cluster.as_mut().unwrap();
        match round % 4 {
            // Kill -9 the leader's enclave; measure until a signature goes through the LB.
            0 => {
                let leader = cluster.wait_leader(Duration::from_secs(30)).unwrap();
                let killed = Instant::now();
                cluster.kill_enclave(leader);
                let mut signed = false;
                while !signed && killed.elapsed() < Duration::from_secs(30) {
                    signed = matches!(
                        sign_with_retries(&rec, &api, &c, &c.grant_id, 10_000, None),
                        Outcome::Signed { .. }
                    );
                }
                assert!(signed, "signing resumed after the leader's death");
                failovers.push(killed.elapsed());
                cluster.replace(&h.stack, leader).unwrap();
            }
            // Isolate a member; requests sent to it alone (not forwarded) must never be signed.
            1 => {
                let i = rng.random_range(0..3usize);
                let id: [u8; 16] =
                    uuid::Uuid::parse_str(&cluster.members[i].enclave_id).unwrap().into_bytes();
                let invoked = rec.ms();
                nemesis.faults.isolate(i, id);
                rec.record(Op::Isolate { member: i, isolated: true }, invoked, Outcome::Ok);
                // Let an isolated leader notice it lost its majority, then ask it directly.
                std::thread::sleep(Duration::from_millis(1500));
                for _ in 0..3 {
                    sign_with_retries(
                        &rec,
                        &cluster.members[i].api,
                        &b,
                        &b.grant_id,
                        10_000,
                        Some(i),
                    );
                }
                let invoked = rec.ms();
                rec.record(Op::Isolate { member: i, isolated: false }, invoked, Outcome::Ok);
                nemesis.faults.heal();
            }
            // Revoke grant B (admin, through the LB).
            2 if round < 8 => {
                let invoked = rec.ms();
                let r = admin.post("/v1/grants/revoke", &json!({"grant_id": b.grant_id}));
                let outcome = outcome_of(r);
                rec.record(Op::Revoke { grant: b.grant_id.clone() }, invoked, outcome);
            }
            // The kill switch, engaged then released.
            _ => {
                for engaged in [true, false] {
                    let invoked = rec.ms();
                    let r = admin.post("/v1/kill-switch", &json!({"engaged": engaged}));
                    rec.record(Op::KillSwitch { engaged }, invoked, outcome_of(r));
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        round += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let history = rec.events.lock().unwrap().clone();
    let violations = check(&history, &limits);
    let signed = history.iter().filter(|e| matches!(e.outcome, Outcome::Signed { .. })).count();
    let denied = history
        .iter()
        .filter(|e| matches!(&e.outcome, Outcome::Refused { code } if code == "policy_denied"))
        .count();
    let f = &nemesis.faults;
    eprintln!(
        "seed {seed}: {} events, {signed} signed, {denied} denied by limits, failovers {:?}, \
         relay delivered {} dropped {}",
        history.len(),
        failovers,
        f.delivered.load(Ordering::Relaxed),
        f.dropped.load(Ordering::Relaxed),
    );
    assert!(violations.is_empty(), "violations: {violations:#?}");
    // The run exercised what it checks.
    assert!(signed > 10, "too few signatures to mean anything: {signed}");
    assert!(denied > 0, "grant A's daily limit was never reached");
    assert!(!failovers.is_empty());
}

#[test]
fn jepsen_seed_1() {
    jepsen(1);
}

#[test]
fn jepsen_seed_2() {
    jepsen(2);
}

#[test]
fn losing_two_of_three_members_stops_signing_and_admission_refuses_forged_cards() {
    let mut h = harness("cluster-majority", 7);
    let api = h.stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    let sign = |api: &Api| api.post("/v1/sign", &w.sign_body(&w.transfer(1_000), &request_id()));
    assert_eq!(sign(&api).unwrap().status, 200);

    let cluster = h.cluster.as_mut().unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(30)).unwrap();
    // A forged card (one byte of its channel key changed) and a second genesis are refused.
    let admin = &cluster.members[leader].admin;
    let (card, _) = cluster.members[leader].card().unwrap();
    let mut forged = unb64(&card);
    forged[20] ^= 1;
    let r = admin
        .post(
            "/v1/admin/cluster/admit",
            &json!({"card": b64(&forged), "relay": "http://127.0.0.1:9"}),
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{}", r.body);
    let r = admin
        .post(
            "/v1/admin/cluster/found",
            &json!({"founders": [{"card": card, "relay": "http://127.0.0.1:9"}]}),
        )
        .unwrap();
    assert_eq!(r.status, 400, "a member founds no second cluster: {}", r.body);
    for body in
        [json!({}), json!({"relay": ""}), json!({"relay": "x".repeat(300)}), json!({"relay": 5})]
    {
        let r = admin.post("/v1/admin/cluster/card", &body).unwrap();
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let r = cluster.members[leader]
        .api
        .post("/v1/admin/cluster/card", &json!({"relay": "http://a"}))
        .unwrap();
    assert_eq!(r.status, 401, "the API token cannot manage membership");

    // Two of three enclaves die: the survivor is a minority and signs nothing, however asked.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.kill_enclave(others[0]);
    cluster.kill_enclave(leader);
    let survivor = others[1];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        for api in [&api, &cluster.members[survivor].api] {
            let r = sign(api);
            assert!(
                !r.as_ref().is_ok_and(|r| r.status == 200),
                "a minority signed: {:?}",
                r.map(|r| r.body)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = sign(&cluster.members[survivor].api).unwrap();
    assert_eq!((r.status, r.code()), (503, Some("enclave_unavailable")), "{}", r.body);
}

#[test]
fn a_rolling_upgrade_admits_the_new_image_only_when_kms_vouches_and_grants_keep_signing() {
    let stack = Stack::prepare(Options::for_test(data_dir("cluster-upgrade"))).unwrap();
    let addrs = member_addrs(3, &[stack.options.http_addr, stack.options.kms_addr]);
    let mut cluster = stack.start_cluster(&addrs, None).unwrap();
    stack.start_load_balancer(&mut cluster, stack.options.http_addr).unwrap();
    let mut h = Harness { stack, cluster: Some(cluster), nemesis: None };
    let api = h.stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    let signed_once = request_id();
    let tx = w.transfer(1_000);
    let first = api.post("/v1/sign", &w.sign_body(&tx, &signed_once)).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let (config, measurements) = h.stack.write_successor_image().unwrap();
    let cluster = h.cluster.as_mut().unwrap();
    let cluster_id = cluster.cluster_id.clone();
    let founders: Vec<String> = cluster.members.iter().map(|m| m.enclave_id.clone()).collect();

    // The key policy admits only the old image: KMS makes no challenge envelope for the new
    // one, so the leader does not admit it, and the two remaining members keep signing.
    let first_host = (0..3).find(|i| Some(*i) != cluster.leader()).unwrap();
    let refused = cluster.upgrade(&h.stack, first_host, &config, &measurements).unwrap_err();
    assert!(refused.to_string().contains("kms_access_denied"), "{refused}");
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1_001), &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // The runbook: the key policy admits both images; then host by host, the leader last.
    h.stack
        .apply_key_policy_for(&[h.stack.paths.measurements.clone(), measurements.clone()])
        .unwrap();
    let cluster = h.cluster.as_mut().unwrap();
    cluster.upgrade(&h.stack, first_host, &config, &measurements).unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(30)).unwrap();
    let order: Vec<usize> =
        (0..3).filter(|i| *i != first_host && *i != leader).chain([leader]).collect();
    for i in order {
        cluster.upgrade(&h.stack, i, &config, &measurements).unwrap();
        let r = api.post("/v1/sign", &w.sign_body(&w.transfer(1_002), &request_id())).unwrap();
        assert_eq!(r.status, 200, "signing goes on after upgrading host {i}: {}", r.body);
    }

    // Every member now runs the new image; the cluster, its id and its decisions are the same.
    let leader = cluster.wait_leader(Duration::from_secs(30)).unwrap();
    let view = cluster.members[leader].status().unwrap();
    assert_eq!(view["cluster_id"].as_str(), Some(cluster_id.as_str()));
    let members: Vec<&str> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["enclave_id"].as_str())
        .collect();
    assert_eq!(members.len(), 3, "{view}");
    assert!(members.iter().all(|m| !founders.iter().any(|f| f == m)), "{view}");
    let again = api.post("/v1/sign", &w.sign_body(&tx, &signed_once)).unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["signature"], first.body["signature"], "the request id is still known");
}
