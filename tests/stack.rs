//! The simulation stack from the built binaries: the launcher `scripts/sim.sh` runs, persistence
//! across restarts, and the flows of SPEC §5 over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use signer_e2e::*;

fn launcher() -> std::path::PathBuf {
    signer_sim::process::binary("signer-sim").unwrap()
}

fn launcher_env(cmd: &mut Command, name: &str) -> Options {
    let options = Options::for_test(data_dir(name));
    cmd.env("SIGNER_DATA_DIR", &options.data_dir)
        .env("SIGNER_HTTP_ADDR", options.http_addr.to_string())
        .env("SIGNER_KMS_ADDR", options.kms_addr.to_string())
        .env_remove("SIGNER_API_TOKEN")
        .env_remove("SIGNER_ADMIN_TOKEN");
    options
}

#[test]
fn launcher_demo_prints_a_verified_signature() {
    let mut cmd = Command::new(launcher());
    cmd.args(["run", "--demo-only"]);
    let options = launcher_env(&mut cmd, "launcher-demo");
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("simulation stack is up"), "{stdout}");
    assert!(stdout.contains(&format!("http://{}", options.http_addr)), "{stdout}");
    assert!(stdout.contains("verified      yes"), "{stdout}");
    // The run's receipts were fetched and `attest receipts` accepted them.
    assert!(stdout.contains("verified with `attest receipts`"), "{stdout}");
    assert!(options.data_dir.join("receipts.json").is_file());
    let signature =
        stdout.lines().find_map(|l| l.trim().strip_prefix("signature")).unwrap().trim().to_string();
    assert_eq!(bs58::decode(&signature).into_vec().unwrap().len(), 64);
    // Tokens were generated and persisted privately.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(options.data_dir.join("tokens.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn launcher_serves_the_printed_curl_examples_until_ctrl_c() {
    let mut cmd = Command::new(launcher());
    cmd.arg("run").stdout(Stdio::piped()).stderr(Stdio::null());
    let options = launcher_env(&mut cmd, "launcher-serve");
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("press Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("press Ctrl-C"), "{text}");
    // Re-assemble the printed shell commands (continued lines end with a backslash) and run them.
    let export = printed
        .iter()
        .find(|l| l.trim_start().starts_with("export TOKEN="))
        .unwrap()
        .trim()
        .to_string();
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in printed.iter().map(|l| l.trim()) {
        if line.starts_with("curl") || !current.is_empty() {
            current.push_str(line.trim_end_matches('\\'));
            current.push(' ');
            if !line.ends_with('\\') {
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    assert_eq!(commands.len(), 3, "{text}");
    for (i, c) in commands.iter().enumerate() {
        let out = Command::new("bash")
            .args(["-c", &format!("{export}; {c} -w '\\n%{{http_code}}'")])
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.trim_end().ends_with("200"), "command {i} `{c}` answered:\n{body}");
        let json: serde_json::Value =
            serde_json::from_str(body.trim_end().rsplit_once('\n').unwrap().0).unwrap();
        match i {
            0 => assert_eq!(json["ready"], true),
            1 => assert!(json["vault_record"].is_string() && json["provenance"].is_string()),
            _ => assert!(json["signature"].is_string()),
        }
    }
    // Ctrl-C: everything stops cleanly.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(std::net::TcpStream::connect(options.http_addr).is_err(), "the parent is gone");
    assert!(std::net::TcpStream::connect(options.kms_addr).is_err(), "kms-sim is gone");
    assert!(!options.data_dir.join("run/enclave.sock").exists(), "the enclave removed its socket");
    let enclave_log = std::fs::read_to_string(options.data_dir.join("logs/enclave.log")).unwrap();
    assert!(enclave_log.contains("shutdown complete"), "{enclave_log}");
}

#[test]
fn restarting_the_stack_keeps_the_kms_key_so_earlier_records_still_open() {
    let stack = start("restart").unwrap();
    let (dir, key, api_token) =
        (stack.options.data_dir.clone(), stack.key_arn.clone(), stack.api_token.clone());
    let w = Wallet::create(&stack.api(), policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    assert_eq!(
        stack.api().post("/v1/sign", &w.sign_body(&w.transfer(1), &request_id())).unwrap().status,
        200
    );
    stack.shutdown();
    // Whole seconds: the new instance starts after the second the grant was issued in.
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let mut options = Options::for_test(dir);
    options.api_token = Some(api_token);
    let stack = Stack::start(options).unwrap();
    assert_eq!(stack.key_arn, key, "the same KMS key");
    // A new enclave instance holds none of the old grant's state: the grant is orphaned.
    let r = stack.api().post("/v1/sign", &w.sign_body(&w.transfer(2), &request_id())).unwrap();
    assert_eq!((r.status, r.code()), (403, Some("grant_orphaned")), "{}", r.body);
    // The vault and the agent are records sealed to the KMS key with provenance from this image:
    // the new enclave opens them through KMS, and the user's new authorization signs again.
    let mut w = w;
    w.new_grant(&stack.api(), policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    let r = stack.api().post("/v1/sign", &w.sign_body(&w.transfer(3), &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn spec_flows_end_to_end() {
    let stack = start("flows").unwrap();
    let (api, admin) = (stack.api(), stack.admin());

    // Boot: attested, ready.
    assert_eq!(api.get("/readyz").unwrap().status, 200);

    // Create agent, create grant, sign (one KMS call), idempotent retry, different request → 409.
    let w = Wallet::create(&api, policy(500_000_000, 2_000_000_000), 900).unwrap();
    let tx = w.transfer(249_995_000);
    let id = request_id();
    let first = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!(retry.str("transaction"), first.str("transaction"));
    assert_eq!(api.post("/v1/sign", &w.sign_body(&w.transfer(1), &id)).unwrap().status, 409);

    // Policy is enforced with the enclave's own counters: 2 SOL per day, fees included.
    for _ in 0..7 {
        assert_eq!(
            api.post("/v1/sign", &w.sign_body(&w.transfer(249_995_000), &request_id()))
                .unwrap()
                .status,
            200
        );
    }
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(250_000_000), &request_id())).unwrap();
    assert_eq!(r.body["rule"], "max_lamports_per_day", "{}", r.body);

    // A second grant of the same wallet, for another bot (the user signs again).
    let mut w2 = w.clone();
    w2.bot_id = uuid::Uuid::new_v4().to_string();
    w2.new_grant(&api, policy(1_000_000_000, 10_000_000_000), 600).unwrap();
    let r = api.post("/v1/sign", &w2.sign_body(&w2.transfer(5), &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("grant_id"), w2.grant_id);

    // Revoke the whole wallet: both grants stop at once.
    assert_eq!(admin.post("/v1/grants/revoke", &json!({"wallet": w.wallet})).unwrap().status, 200);
    assert_eq!(
        api.post("/v1/sign", &w2.sign_body(&w2.transfer(5), &request_id())).unwrap().code(),
        Some("grant_revoked")
    );

    // The kill switch stops everything, including scheduled transfers.
    assert_eq!(admin.post("/v1/kill-switch", &json!({"engaged": true})).unwrap().status, 200);
    let kms_spki = stack.kms_public_key().unwrap();
    let schedule = Schedule {
        not_before: now() - 1,
        not_after: now() + 60,
        max_fee: 5_000,
        created_at: now() - 1,
        enclave_id: enclave_id(&api).unwrap(),
    };
    let scheduled = ScheduledTransfer::new(&kms_spki, 9, schedule).unwrap();
    let body = scheduled.body(&scheduled.transaction, &request_id());
    assert_eq!(api.post("/v1/scheduled/sign", &body).unwrap().code(), Some("kill_switch"));
    assert_eq!(admin.post("/v1/kill-switch", &json!({"engaged": false})).unwrap().status, 200);
    assert_eq!(api.post("/v1/scheduled/sign", &body).unwrap().status, 200);
}

/// Runs `signer-bench` with `args`, which must succeed; its last stdout line as JSON.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(signer_sim::process::binary("signer-bench").unwrap())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn bench_reports_the_documented_json() {
    // Structure only: performance is measured by scripts/bench.sh, never asserted in tests.
    let last = bench_json(&[
        "--seconds",
        "1",
        "--concurrency",
        "4",
        "--grants",
        "3",
        "--raw-seconds",
        "1",
        "--json",
    ]);
    for key in [
        "throughput_per_s",
        "raw_sign_per_s",
        "ratio",
        "p50_ms",
        "p99_ms",
        "errors",
        "kms_calls",
        "grants",
    ] {
        assert!(last[key].is_number(), "missing {key} in {last}");
    }
    assert_eq!(last["errors"], 0, "{last}");
    assert_eq!(last["grants"], 3);
    assert_eq!(last["kms_calls"], 3, "one KMS call per grant: {last}");
    assert!(last["requests"].as_u64().unwrap() > 0);
    for key in [
        "raw_sign_us",
        "enclave_cpu_us_per_request",
        "parent_cpu_us_per_request",
        "cpu_us_per_request",
        "enclave_switches_per_request",
        "parent_switches_per_request",
        "socket_hop_us",
        "socket_probe_p50_ms",
        "socket_probe_p99_ms",
        "socket_probe_p999_ms",
        "socket_probe_max_ms",
    ] {
        assert!(last[key].is_number(), "missing {key} in {last}");
    }
    assert_eq!(last["workload"], "sign");
    // Against the floor, measured on the same stack after the closed loop (docs/performance.md).
    for key in [
        "sign_cpu_us_per_request",
        "floor_cpu_us_per_request",
        "beyond_floor_us",
        "beyond_floor_x_raw",
        "max_rate",
    ] {
        assert!(last[key].is_number(), "missing {key} in {last}");
    }
    let half = &last["half_max"];
    for key in [
        "rate",
        "sign_cpu_us_per_request",
        "floor_cpu_us_per_request",
        "beyond_floor_us",
        "beyond_floor_x_raw",
        "p99_ms",
        "floor_p99_ms",
        "p99_to_floor",
    ] {
        assert!(half[key].is_number(), "missing half_max.{key} in {last}");
    }
    for key in ["saturated_met", "half_max_met", "p99_met"] {
        assert!(last["targets"][key].is_boolean(), "missing targets.{key} in {last}");
    }
    assert_eq!(last["floor_errors"], 0, "{last}");

    // The open loop at a fixed rate: its documented keys (max_rate is null unless --rate max).
    // One second at 200 requests/s over four connections.
    let open_loop = |extra: &[&str]| {
        let mut args =
            vec!["--rate", "200", "--seconds", "1", "--connections", "4", "--raw-seconds", "1"];
        args.extend_from_slice(extra);
        args.push("--json");
        bench_json(&args)
    };
    let last = open_loop(&["--grants", "2"]);
    for key in [
        "offered_rate",
        "achieved_rate",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "errors",
        "kms_calls",
        "grants",
        "raw_sign_per_s",
        "raw_sign_us",
        "enclave_cpu_us_per_request",
        "parent_cpu_us_per_request",
        "cpu_us_per_request",
    ] {
        assert!(last[key].is_number(), "missing {key} in {last}");
    }
    assert!(last.get("max_rate").is_some_and(serde_json::Value::is_null), "{last}");
    assert_eq!(last["mode"], "open_loop");
    assert_eq!(last["offered_rate"], 200.0);
    assert_eq!((last["errors"].as_u64(), last["kms_calls"].as_u64()), (Some(0), Some(2)), "{last}");
    assert_eq!(last["requests"], 200, "rate × seconds requests: {last}");

    // The floor: identity requests through both daemons, no grant, no KMS call, no signature.
    // At 200 requests/s each one finds both daemons asleep, so each wakes both at least once.
    let floor = open_loop(&["--floor"]);
    assert_eq!(floor["workload"], "floor", "{floor}");
    assert_eq!(
        (floor["errors"].as_u64(), floor["kms_calls"].as_u64()),
        (Some(0), Some(0)),
        "{floor}"
    );
    assert_eq!(
        (floor["grants"].as_u64(), floor["requests"].as_u64()),
        (Some(0), Some(200)),
        "{floor}"
    );
    for key in ["enclave_switches_per_request", "parent_switches_per_request", "socket_hop_us"] {
        assert!(floor[key].as_f64().is_some_and(|v| v > 0.0), "{key} must be measured: {floor}");
    }
    // Bad rates are usage errors.
    let out = Command::new(signer_sim::process::binary("signer-bench").unwrap())
        .args(["--rate", "fast", "--raw-seconds", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate fast"));
}
