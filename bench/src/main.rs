//! `signer-bench`: drives `POST /v1/sign` with C concurrent keep-alive clients for T seconds and
//! reports throughput, latency percentiles, errors by code, KMS calls, the daemons' CPU time and
//! peak RSS, and — measured in the same run on the same machine — the raw single-core
//! ed25519-dalek signing rate and the ratio end-to-end / raw.
//!
//! It starts the simulation stack from the built binaries (or attaches to a running parent with
//! `--attach URL --token T`), creates `--grants` grants and opens each with one request first
//! (one KMS call per grant), then measures. `--sweep` varies concurrency (1, 4, 16, 64, 256) and
//! distinct grants (1, 100, 10 000) on a fresh stack per point and writes a table and an SVG plot.
//! `--requests N` stops after N distinct request ids instead of after T seconds (memory runs).
//! With `--json` the last stdout line is one JSON object.
//!
//! The closed loop is followed, on the same stack, by the **floor** (`against_floor.rs`): the
//! same trip through both daemons without signing, saturated and at 50 % of the maximum signing
//! rate, so every run says what a signature costs beyond what the machine charges for any
//! request, in raw signatures (`beyond_floor_x_raw`). `--no-floor` skips it.
//!
//! `--rate R` runs an **open loop** instead (`open_loop.rs`): requests fall due at R per second
//! and latency counts from the due time (coordinated omission corrected). `--rate max` first
//! finds the sustainable maximum rate; `--curve` measures at 10/25/50/75/90 % of it and plots the
//! latency curve. Every mode reports CPU time per signed request for the enclave and the parent,
//! against the raw signature's cost measured in the same run.
//!
//! `--cluster N` measures a single instance and then a cluster of N enclave/parent pairs behind
//! HAProxy (the simulation's, `signer_sim::cluster`) with the same closed-loop load, back to
//! back, and compares them: throughput, p50/p99, CPU per request over every process of each
//! setup (the cluster's: all enclaves, all parents and HAProxy) and the cluster's Raft batching
//! (log entries per replication message, from the members' `GET /v1/cluster`).

mod against_floor;
mod open_loop;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use ed25519_dalek::Signer as _;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use signer_sim::cluster::{Cluster, member_addrs};
use signer_sim::user::{Agent, GrantTerms, User, Vault};
use signer_sim::{Api, Options, Stack};

#[derive(Parser, Clone)]
#[command(
    name = "signer-bench",
    version,
    about = "Load generator and benchmark for the signing stack"
)]
struct Cli {
    /// Measurement time per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Distinct grants (requests round-robin over them).
    #[arg(long, default_value_t = 100)]
    grants: usize,
    /// Stop after this many signed requests (warm-up included) instead of after --seconds.
    #[arg(long)]
    requests: Option<u64>,
    /// Run the sweep (concurrency 1..256, grants 1..10 000) and write a table and a plot.
    #[arg(long)]
    sweep: bool,
    /// Where the sweep's SVG plot goes.
    #[arg(long, default_value = "docs/bench-sweep.svg")]
    plot: PathBuf,
    /// Attach to a running parent instead of starting a stack.
    #[arg(long)]
    attach: Option<String>,
    /// API token when attaching.
    #[arg(long, env = "SIGNER_API_TOKEN")]
    token: Option<String>,
    /// Enclave and parent process ids when attaching (for CPU and RSS figures).
    #[arg(long)]
    enclave_pid: Option<u32>,
    #[arg(long)]
    parent_pid: Option<u32>,
    /// Print the final summary as one JSON object on the last stdout line.
    #[arg(long)]
    json: bool,
    /// How long to measure the raw ed25519 rate.
    #[arg(long, default_value_t = 3)]
    raw_seconds: u64,
    /// Open loop at this many requests per second, or `max` to find the sustainable maximum
    /// first and run at it.
    #[arg(long, value_name = "R|max")]
    rate: Option<String>,
    /// Connections of the open loop (each carries one request at a time).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Find the maximum rate, then measure the open loop at 10/25/50/75/90 % of it.
    #[arg(long, conflicts_with_all = ["rate", "sweep"])]
    curve: bool,
    /// Where the curve's SVG plot goes.
    #[arg(long, default_value = "docs/bench-rate-curve.svg")]
    curve_plot: PathBuf,
    /// Drive `GET /v1/enclave` instead of signing: the same trip through both daemons (HTTP,
    /// authentication, framing, CBOR, one enclave operation) without the signature, the policy
    /// or the transaction: the floor under the cost of every signed request.
    #[arg(long, conflicts_with_all = ["sweep", "curve"])]
    floor: bool,
    /// The closed loop alone: skip the comparison with the floor that follows it on the same
    /// stack (the floor's closed loop, the maximum rate, and both at 50 % of it).
    #[arg(long)]
    no_floor: bool,
    /// Measure a single instance, then a cluster of N enclave/parent pairs (odd) behind HAProxy
    /// with the same closed-loop load, and compare them.
    #[arg(
        long,
        value_name = "N",
        value_parser = cluster_size,
        conflicts_with_all = ["sweep", "curve", "rate", "attach", "requests", "floor"]
    )]
    cluster: Option<usize>,
}

/// `--cluster N`: an odd number of members (a majority must survive), at most 15.
fn cluster_size(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|_| format!("`{text}` is not a number of members"))?;
    if n == 0 || n.is_multiple_of(2) || n > 15 {
        return Err(format!("a cluster has an odd number of members, 1 to 15; {n} given"));
    }
    Ok(n)
}

/// Per-process figures from /proc.
#[derive(Clone, Copy, Debug, Default)]
struct ProcStats {
    cpu_seconds: f64,
    /// Voluntary and involuntary context switches of every live thread.
    context_switches: u64,
    rss_mib: f64,
    peak_rss_mib: f64,
}

/// Clock ticks per second, asked of `getconf` once.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn proc_stats(pid: Option<u32>) -> ProcStats {
    let Some(pid) = pid else { return ProcStats::default() };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let fields: Vec<&str> =
        stat.rsplit_once(") ").map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat, i.e. 11 and 12 after the name.
    ProcStats {
        cpu_seconds: (ticks(11) + ticks(12)) / clock_ticks(),
        context_switches: context_switches(pid),
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
    }
}

/// Context switches of every thread of `pid` so far (a thread that has exited takes its count
/// with it; the daemons' worker threads live as long as the process).
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// CPU seconds this process has used so far.
fn own_cpu_seconds() -> f64 {
    proc_stats(Some(std::process::id())).cpu_seconds
}

/// CPU microseconds of one message hop between two threads over a Unix socket pair when the
/// receiver is asleep waiting for it: the write, the wake-up and the read. A lone request crosses
/// four such hops (client → parent → enclave → parent → client), so this is the floor of what the
/// machine charges per request before any work is done.
fn socket_hop_us(duration: Duration) -> Result<f64, String> {
    let mut echo = open_loop::Echo::start()?;
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let mut round_trips = 0u64;
    while started.elapsed() < duration {
        echo.round_trip()?;
        round_trips += 1;
    }
    let cpu = own_cpu_seconds() - cpu_before;
    drop(echo);
    Ok(cpu * 1e6 / (2 * round_trips.max(1)) as f64)
}

/// Single-core ed25519-dalek signing rate over a 232-byte message (a typical transfer message).
fn raw_sign_rate(duration: Duration) -> f64 {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let message = [0x5au8; 232];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        for _ in 0..100 {
            std::hint::black_box(key.sign(std::hint::black_box(&message)));
        }
        n += 100;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// One prepared request.
enum Prepared {
    /// `POST /v1/sign` for one grant: the request body around the request id, and the record's
    /// routing key when requests carry `X-Signer-Route` (`--cluster`).
    Sign { prefix: String, suffix: &'static str, route: Option<String> },
    /// `GET /v1/enclave` (`--floor`).
    Identity,
}

fn unlimited_policy() -> Value {
    json!({
        "max_lamports_per_tx": u64::MAX, "max_lamports_per_day": u64::MAX, "max_fee_lamports": 1_000_000,
        "tokens": [], "allowed_programs": [], "max_notional_cents_per_tx": 0, "max_notional_cents_per_day": 0
    })
}

/// Creates `grants` grants (one agent per 100) with a few threads; returns the request bodies
/// (with `route`, each with its record's routing key for `X-Signer-Route`).
fn prepare(api: &Api, grants: usize, route: bool) -> Result<Vec<Prepared>, String> {
    let threads = 8.min(grants.max(1));
    let per_thread = grants.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let api = api.clone();
            let count = per_thread.min(grants.saturating_sub(t * per_thread));
            std::thread::spawn(move || -> Result<Vec<Prepared>, String> {
                let mut out = Vec::with_capacity(count);
                // One user (wallet, vault, agent) per 100 grants; each grant is authorized by the
                // user's wallet signature over the enclave's message, as in production.
                let mut agent: Option<(User, Vault, Agent, enclave_core::Pubkey)> = None;
                for i in 0..count {
                    if i % 100 == 0 {
                        let user = User::random()?;
                        let vault = user.create_vault(&api)?;
                        let created = user.create_agent(&api, &vault, None)?;
                        let pubkey: enclave_core::Pubkey =
                            created.agent_pubkey.parse().map_err(|e| format!("{e}"))?;
                        agent = Some((user, vault, created, pubkey));
                    }
                    let Some((user, vault, created, pubkey)) = agent.as_ref() else { continue };
                    let bot_id = uuid::Uuid::new_v4().to_string();
                    let terms = GrantTerms {
                        bot_id: bot_id.clone(),
                        agent_pubkey: created.agent_pubkey.clone(),
                        ttl_seconds: 3600,
                        policy: unlimited_policy(),
                    };
                    let grant = user.create_grant(&api, vault, &terms)?;
                    let agent_record = &created.record;
                    let tx = signer_sim::tx::legacy_transfer(pubkey, &enclave_core::Pubkey(random_bytes()), 1_000 + i as u64, random_bytes());
                    let tx = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tx);
                    out.push(Prepared::Sign {
                        prefix: format!(
                            r#"{{"grant_record":"{}","agent_key_record":"{agent_record}","bot_id":"{bot_id}","transaction":"{tx}","request_id":""#,
                            grant.record
                        ),
                        suffix: r#""}"#,
                        route: route.then(|| grant.enclave_id.clone()),
                    });
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(grants);
    for h in handles {
        all.extend(h.join().map_err(|_| "a setup thread panicked".to_string())??);
    }
    Ok(all)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = enclave_core::SecureRandom::fill(&enclave_core::OsRandom, &mut b);
    b
}

/// Every load run on a stack gets its own number, in its request ids, so no run replays
/// another's ids (the enclave would answer them from its request-id store).
static RUN_NUMBER: AtomicU64 = AtomicU64::new(0);

/// The request id of request `n` of client `client` in run `run` (UUID text).
fn request_id(run: u64, client: usize, n: u64) -> String {
    format!("{client:08x}-{:04x}-4000-8000-{n:012x}", run & 0xffff)
}

/// What one load run measured.
#[derive(Clone, Debug, Default)]
struct Run {
    /// Open loop: the offered rate (requests per second); closed loop: none.
    offered_rate: Option<f64>,
    concurrency: usize,
    grants: usize,
    seconds: f64,
    requests: u64,
    throughput: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    errors: BTreeMap<String, u64>,
    kms_calls: u64,
    enclave: ProcStats,
    parent: ProcStats,
    enclave_cpu: f64,
    parent_cpu: f64,
    enclave_switches: u64,
    parent_switches: u64,
    /// `--floor`: identity requests, not signatures.
    floor: bool,
    enclave_rss_growth_mib: f64,
    /// A cluster's run (`--cluster`): its members, HAProxy's and each member's CPU seconds and
    /// the replication counters' growth; none for a single instance.
    cluster: Option<ClusterRun>,
}

/// What a cluster run measured besides the load and the totals.
#[derive(Clone, Debug, Default)]
struct ClusterRun {
    members: usize,
    lb_cpu: f64,
    /// Name (with the role at the end of the run), enclave and parent CPU seconds.
    per_member: Vec<(String, f64, f64)>,
    /// Replication messages with entries sent, and the entries they carried, during the run.
    appends: u64,
    entries: u64,
}

impl ClusterRun {
    fn entries_per_append(&self) -> Option<f64> {
        (self.appends > 0).then(|| self.entries as f64 / self.appends as f64)
    }
}

struct Shared {
    histogram: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
    sent: AtomicU64,
}

async fn client_task(
    addr: std::net::SocketAddr,
    token: Arc<String>,
    bodies: Arc<Vec<Prepared>>,
    id: usize,
    stop: Stop,
    shared: Arc<Shared>,
) {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        *shared
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry("connect".into())
            .or_default() += 1;
        return;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return;
    };
    tokio::spawn(conn);
    let Ok(mut local) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) else {
        return;
    };
    let mut local_errors: BTreeMap<String, u64> = BTreeMap::new();
    let authorization = format!("Bearer {token}");
    let run = RUN_NUMBER.fetch_add(1, Ordering::Relaxed);
    let mut n: u64 = 0;
    loop {
        if stop.done(&shared.sent) {
            break;
        }
        let Some(prepared) = bodies.get((id + n as usize * 7919) % bodies.len().max(1)) else {
            break;
        };
        n += 1;
        let request = match prepared {
            Prepared::Sign { prefix, suffix, route } => {
                let mut request = hyper::Request::post("/v1/sign")
                    .header("host", "bench")
                    .header("authorization", &authorization)
                    .header("content-type", "application/json");
                if let Some(route) = route {
                    request = request.header("x-signer-route", route);
                }
                request.body(Full::new(Bytes::from(format!(
                    "{prefix}{}{suffix}",
                    request_id(run, id, n)
                ))))
            }
            Prepared::Identity => hyper::Request::get("/v1/enclave")
                .header("host", "bench")
                .header("authorization", &authorization)
                .body(Full::new(Bytes::new())),
        };
        let Ok(request) = request else { break };
        let started = Instant::now();
        let response = sender.send_request(request).await;
        let (status, body) = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                (status, body)
            }
            Err(_) => {
                *local_errors.entry("transport".into()).or_default() += 1;
                break;
            }
        };
        let _ = local.record(started.elapsed().as_micros() as u64);
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if status != 200 {
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_string));
            *local_errors.entry(code.unwrap_or_else(|| format!("http_{status}"))).or_default() += 1;
        }
    }
    let _ = shared.histogram.lock().unwrap_or_else(|e| e.into_inner()).add(&local);
    let mut errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner());
    for (k, v) in local_errors {
        *errors.entry(k).or_default() += v;
    }
}

/// When a run stops: after a deadline or after a number of requests.
#[derive(Clone, Copy)]
enum Stop {
    At(Instant),
    After(u64),
}

impl Stop {
    fn done(&self, sent: &AtomicU64) -> bool {
        match self {
            Self::At(deadline) => Instant::now() >= *deadline,
            Self::After(n) => sent.load(Ordering::Relaxed) >= *n,
        }
    }
}

fn kms_calls(api: &Api) -> u64 {
    let text = api.get_text("/metrics").map(|(_, t)| t).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("signer_kms_calls_total{operation=\"Decrypt\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// One member of a cluster under test: its parent's API and its processes.
struct MemberTarget {
    name: String,
    api: Api,
    enclave_pid: Option<u32>,
    parent_pid: Option<u32>,
}

impl MemberTarget {
    /// `GET /v1/cluster` of this member.
    fn view(&self) -> Option<Value> {
        self.api.get("/v1/cluster").ok().filter(|r| r.status == 200).map(|r| r.body)
    }
}

struct Target {
    api: Api,
    addr: std::net::SocketAddr,
    enclave_pid: Option<u32>,
    parent_pid: Option<u32>,
    /// `--cluster`: the members (the API above is HAProxy's address) and HAProxy's process.
    members: Vec<MemberTarget>,
    lb_pid: Option<u32>,
    // Dropped first: the cluster's processes stop before the stack's kms-sim.
    _cluster: Option<Cluster>,
    _stack: Option<Stack>,
}

impl Target {
    /// KMS `Decrypt` calls of every parent of this setup.
    fn kms_calls(&self) -> u64 {
        if self.members.is_empty() {
            return kms_calls(&self.api);
        }
        self.members.iter().map(|m| kms_calls(&m.api)).sum()
    }

    /// Replication messages with entries and the entries they carried, summed over the members
    /// (only a leader sends them); none for a single instance.
    fn append_counters(&self) -> Option<(u64, u64)> {
        if self.members.is_empty() {
            return None;
        }
        let mut total = (0, 0);
        for view in self.members.iter().filter_map(MemberTarget::view) {
            let count = |key: &str| view.get(key).and_then(Value::as_u64).unwrap_or(0);
            total.0 += count("appends_sent");
            total.1 += count("entries_sent");
        }
        Some(total)
    }

    /// Every enclave process and every parent process of this setup.
    fn enclave_pids(&self) -> Vec<u32> {
        if self.members.is_empty() {
            return self.enclave_pid.into_iter().collect();
        }
        self.members.iter().filter_map(|m| m.enclave_pid).collect()
    }

    fn parent_pids(&self) -> Vec<u32> {
        if self.members.is_empty() {
            return self.parent_pid.into_iter().collect();
        }
        self.members.iter().filter_map(|m| m.parent_pid).collect()
    }
}

/// [`proc_stats`] summed over `pids` (CPU, switches and memory of all of them together).
fn procs_stats(pids: &[u32]) -> ProcStats {
    pids.iter().map(|pid| proc_stats(Some(*pid))).fold(ProcStats::default(), |a, b| ProcStats {
        cpu_seconds: a.cpu_seconds + b.cpu_seconds,
        context_switches: a.context_switches + b.context_switches,
        rss_mib: a.rss_mib + b.rss_mib,
        peak_rss_mib: a.peak_rss_mib + b.peak_rss_mib,
    })
}

/// A fresh data directory for a stack of this process.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn target(cli: &Cli) -> Result<Target, String> {
    if let Some(url) = &cli.attach {
        let token = cli.token.clone().ok_or("--attach needs --token (or SIGNER_API_TOKEN)")?;
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|_| format!("--attach {url}: expected http://HOST:PORT"))?;
        return Ok(Target {
            api: Api::new(url.clone(), token),
            addr,
            enclave_pid: cli.enclave_pid,
            parent_pid: cli.parent_pid,
            members: Vec::new(),
            lb_pid: None,
            _cluster: None,
            _stack: None,
        });
    }
    let mut options = Options::for_test(data_dir("signer-bench"));
    options.log_level = "warn".into();
    let stack = Stack::start(options).map_err(|e| e.to_string())?;
    Ok(Target {
        api: stack.api(),
        addr: stack.options.http_addr,
        enclave_pid: stack.enclave.as_ref().and_then(|p| p.pid()),
        parent_pid: stack.parent.as_ref().and_then(|p| p.pid()),
        members: Vec::new(),
        lb_pid: None,
        _cluster: None,
        _stack: Some(stack),
    })
}

/// A cluster of `n` enclave/parent pairs founded as one, behind HAProxy on the stack's usual
/// address (as `signer-sim run --cluster N` starts it).
fn cluster_target(n: usize) -> Result<Target, String> {
    let mut options = Options::for_test(data_dir("signer-bench-cluster"));
    options.log_level = "warn".into();
    let stack = Stack::prepare(options).map_err(|e| e.to_string())?;
    let addrs = member_addrs(n, &[stack.options.http_addr, stack.options.kms_addr]);
    let mut cluster = stack.start_cluster(&addrs, None).map_err(|e| e.to_string())?;
    stack.start_load_balancer(&mut cluster, stack.options.http_addr).map_err(|e| e.to_string())?;
    let members = cluster
        .members
        .iter()
        .map(|m| MemberTarget {
            name: m.name.clone(),
            api: m.api.clone(),
            enclave_pid: m.enclave.as_ref().and_then(|p| p.pid()),
            parent_pid: m.parent.pid(),
        })
        .collect::<Vec<_>>();
    // Every member must know the leader before the load starts (a follower's parent forwards
    // decisions to the leader's, which it learns from its enclave's view, read every 250 ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !members
        .iter()
        .all(|m| m.view().is_some_and(|v| v.get("ready").and_then(Value::as_bool) == Some(true)))
    {
        if Instant::now() > deadline {
            return Err("the cluster's members did not all know a leader within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    Ok(Target {
        api: stack.api(),
        addr: stack.options.http_addr,
        enclave_pid: None,
        parent_pid: None,
        members,
        lb_pid: cluster.lb.as_ref().and_then(|p| p.pid()),
        _cluster: Some(cluster),
        _stack: Some(stack),
    })
}

/// Requests sent, seconds elapsed, latencies (µs), errors by code.
struct Load {
    sent: u64,
    elapsed: f64,
    histogram: hdrhistogram::Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

fn run_load(
    t: &Target,
    concurrency: usize,
    bodies: &Arc<Vec<Prepared>>,
    stop: Stop,
) -> Result<Load, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        histogram: std::sync::Mutex::new(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| e.to_string())?,
        ),
        errors: std::sync::Mutex::new(BTreeMap::new()),
        sent: AtomicU64::new(0),
    });
    let token = Arc::new(t.api.token.clone());
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..concurrency {
            tasks.spawn(client_task(
                t.addr,
                Arc::clone(&token),
                Arc::clone(bodies),
                id,
                stop,
                Arc::clone(&shared),
            ));
        }
        while tasks.join_next().await.is_some() {}
    });
    let elapsed = started.elapsed().as_secs_f64();
    let histogram = shared.histogram.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Load { sent: shared.sent.load(Ordering::Relaxed), elapsed, histogram, errors })
}

/// A stack (or attached parent) with `grants` grants created and opened.
struct Prepped {
    target: Target,
    bodies: Arc<Vec<Prepared>>,
    warmup_requests: u64,
}

fn prep(cli: &Cli, concurrency: usize, grants: usize) -> Result<Prepped, String> {
    prep_on(cli, target(cli)?, concurrency, grants)
}

/// [`prep`] on a given target (grants created through its API: a cluster's load balancer).
fn prep_on(
    cli: &Cli,
    target: Target,
    concurrency: usize,
    grants: usize,
) -> Result<Prepped, String> {
    let route = cli.cluster.is_some();
    let bodies = Arc::new(if cli.floor {
        vec![Prepared::Identity]
    } else {
        prepare(&target.api, grants, route)?
    });
    // Warm-up: open every grant (one KMS call each) and settle the connections.
    let warmup_requests = grants.max(concurrency) as u64 * 2;
    let warm = run_load(&target, concurrency.clamp(1, 64), &bodies, Stop::After(warmup_requests))?;
    if !warm.errors.is_empty() {
        return Err(format!("warm-up failed: {:?}", warm.errors));
    }
    Ok(Prepped { target, bodies, warmup_requests: warm.sent })
}

/// Printed on stderr as each measured load starts.
const LOAD_MARKER: &str = "signer-bench: measured load starts";

/// Runs `load` and turns what it measured, with the daemons' CPU and RSS, into a [`Run`].
fn observe(
    p: &Prepped,
    concurrency: usize,
    offered_rate: Option<f64>,
    load: impl FnOnce() -> Result<Load, String>,
) -> Result<Run, String> {
    let t = &p.target;
    let (enclave_pids, parent_pids) = (t.enclave_pids(), t.parent_pids());
    let member_cpu = || -> Vec<(f64, f64)> {
        t.members
            .iter()
            .map(|m| (proc_stats(m.enclave_pid).cpu_seconds, proc_stats(m.parent_pid).cpu_seconds))
            .collect()
    };
    let appends_before = t.append_counters();
    let lb_before = proc_stats(t.lb_pid);
    let members_before = member_cpu();
    let enclave_before = procs_stats(&enclave_pids);
    let parent_before = procs_stats(&parent_pids);
    // A marker for tools that attach to the daemons for the measured load only
    // (scripts/profile-stages.sh): the stack's start and the warm-up are behind it.
    eprintln!("{LOAD_MARKER}");
    let Load { sent, elapsed, histogram: h, errors } = load()?;
    let enclave = procs_stats(&enclave_pids);
    let parent = procs_stats(&parent_pids);
    let members_after = member_cpu();
    let lb = proc_stats(t.lb_pid);
    let appends_after = t.append_counters();
    let cluster = (!t.members.is_empty()).then(|| {
        let (appends_before, entries_before) = appends_before.unwrap_or_default();
        let (appends, entries) = appends_after.unwrap_or_default();
        ClusterRun {
            members: t.members.len(),
            lb_cpu: lb.cpu_seconds - lb_before.cpu_seconds,
            per_member: t
                .members
                .iter()
                .zip(members_before.iter().zip(&members_after))
                .map(|(m, ((e0, p0), (e1, p1)))| {
                    let role = m
                        .view()
                        .and_then(|v| v.get("role").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| "unknown".into());
                    (format!("{} ({role})", m.name), e1 - e0, p1 - p0)
                })
                .collect(),
            appends: appends.saturating_sub(appends_before),
            entries: entries.saturating_sub(entries_before),
        }
    });
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Run {
        offered_rate,
        concurrency,
        grants: p.bodies.iter().filter(|b| matches!(b, Prepared::Sign { .. })).count(),
        seconds: elapsed,
        requests: sent,
        throughput: sent as f64 / elapsed.max(1e-9),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
        errors,
        kms_calls: t.kms_calls(),
        enclave_cpu: enclave.cpu_seconds - enclave_before.cpu_seconds,
        enclave_switches: enclave.context_switches.saturating_sub(enclave_before.context_switches),
        parent_switches: parent.context_switches.saturating_sub(parent_before.context_switches),
        floor: p.bodies.iter().all(|b| matches!(b, Prepared::Identity)),
        parent_cpu: parent.cpu_seconds - parent_before.cpu_seconds,
        enclave_rss_growth_mib: enclave.rss_mib - enclave_before.rss_mib,
        enclave,
        parent,
        cluster,
    })
}

fn measure(cli: &Cli, concurrency: usize, grants: usize) -> Result<Run, String> {
    measure_on(cli, target(cli)?, concurrency, grants)
}

/// [`measure`] on a given target (stopped when the run is over).
fn measure_on(cli: &Cli, target: Target, concurrency: usize, grants: usize) -> Result<Run, String> {
    closed(cli, &prep_on(cli, target, concurrency, grants)?, concurrency)
}

/// One closed-loop run on a prepared stack: `--seconds`, or until `--requests` ids were used.
fn closed(cli: &Cli, p: &Prepped, concurrency: usize) -> Result<Run, String> {
    let stop = match cli.requests {
        Some(n) => Stop::After(n.saturating_sub(p.warmup_requests)),
        None => Stop::At(Instant::now() + Duration::from_secs(cli.seconds)),
    };
    observe(p, concurrency, None, || run_load(&p.target, concurrency, &p.bodies, stop))
}

/// One open-loop run at `rate` for `seconds`.
fn measure_open(cli: &Cli, p: &Prepped, rate: f64, seconds: f64) -> Result<Run, String> {
    observe(p, cli.connections, Some(rate), || {
        open_loop::run(
            p.target.addr,
            &p.target.api.token,
            &p.bodies,
            rate,
            cli.connections,
            Duration::from_secs_f64(seconds),
        )
    })
}

/// Whether an open-loop run kept up with its offered rate: at least 98 % of it completed in
/// time, nothing failed, and no backlog built up (p99 under 20 ms).
fn sustained(run: &Run) -> bool {
    let offered = run.offered_rate.unwrap_or(0.0);
    run.errors.is_empty() && run.throughput >= 0.98 * offered && run.p99_ms < 20.0
}

/// The sustainable maximum rate: the closed loop's saturation throughput (64 clients), then the
/// highest of 100 %, 95 %, 90 %, … of it that an open loop sustains for three seconds.
fn find_max_rate(cli: &Cli, p: &Prepped) -> Result<f64, String> {
    let closed = observe(p, 64, None, || {
        run_load(&p.target, 64, &p.bodies, Stop::At(Instant::now() + Duration::from_secs(3)))
    })?;
    eprintln!("closed loop at 64 clients saturates at {:.0} req/s", closed.throughput);
    search_max_rate(cli, p, closed.throughput)
}

/// The highest of 100 %, 95 %, 90 %, … (down to about half, then halving) of `saturated` (a
/// closed loop's throughput) that an open loop sustains for three seconds (`--seconds` when
/// shorter).
fn search_max_rate(cli: &Cli, p: &Prepped, saturated: f64) -> Result<f64, String> {
    let seconds = (cli.seconds as f64).clamp(1.0, 3.0);
    let mut rate = saturated.floor().max(1.0);
    for step in 0..20 {
        let run = measure_open(cli, p, rate, seconds)?;
        eprintln!(
            "  open loop at {rate:.0} req/s: achieved {:.0}, p99 {:.3} ms, errors {}: {}",
            run.throughput,
            run.p99_ms,
            run.errors.values().sum::<u64>(),
            if sustained(&run) { "sustained" } else { "not sustained" }
        );
        if sustained(&run) {
            return Ok(rate);
        }
        rate = (rate * if step < 13 { 0.95 } else { 0.5 }).floor().max(1.0);
    }
    Err(format!("no rate down to {rate:.0} req/s was sustained"))
}

/// CPU microseconds per signed request.
fn per_request_us(cpu_seconds: f64, requests: u64) -> f64 {
    (cpu_seconds * 1e6 / requests.max(1) as f64 * 10.0).round() / 10.0
}

/// What the machine itself costs, measured in the same run as the load.
#[derive(Clone, Copy)]
struct Baseline {
    /// ed25519-dalek signatures per second on one core.
    raw: f64,
    /// [`socket_hop_us`].
    socket_hop_us: f64,
    /// [`open_loop::socket_probe`] at [`PROBE_RATE`]: p50, p99, p99.9 and max in ms.
    socket_probe_ms: [f64; 4],
}

/// Round trips per second of the socket probe (a rate at which the round trips never queue).
const PROBE_RATE: f64 = 1_000.0;

fn baseline(cli: &Cli) -> Result<Baseline, String> {
    eprintln!("measuring the raw single-core ed25519-dalek signing rate…");
    let raw = raw_sign_rate(Duration::from_secs(cli.raw_seconds.max(1)));
    println!(
        "raw ed25519-dalek signing: {raw:.0} signatures/s on one core ({:.2} µs each)",
        1e6 / raw
    );
    let socket_hop_us = socket_hop_us(Duration::from_secs(1))?;
    println!(
        "one socket hop to a sleeping thread (write, wake-up, read): {socket_hop_us:.1} µs of CPU"
    );
    let h = open_loop::socket_probe(PROBE_RATE, Duration::from_secs(3))?;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let socket_probe_ms = [ms(0.5), ms(0.99), ms(0.999), h.max() as f64 / 1000.0];
    println!(
        "a bare socket round trip between two threads at {PROBE_RATE:.0}/s, no daemon: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        socket_probe_ms[0], socket_probe_ms[1], socket_probe_ms[2], socket_probe_ms[3]
    );
    Ok(Baseline { raw, socket_hop_us, socket_probe_ms })
}

fn summary(run: &Run, base: &Baseline) -> Value {
    let mut out = closed_summary(run, base);
    if let (Some(offered), Value::Object(map)) = (run.offered_rate, &mut out) {
        map.insert("mode".into(), json!("open_loop"));
        map.insert("offered_rate".into(), json!(offered.round()));
        map.insert("achieved_rate".into(), json!((run.throughput * 10.0).round() / 10.0));
        map.insert("connections".into(), json!(run.concurrency));
        map.remove("concurrency");
        map.remove("ratio");
        map.remove("throughput_per_s");
    }
    out
}

fn closed_summary(run: &Run, base: &Baseline) -> Value {
    let raw = base.raw;
    let raw_us = 1e6 / raw.max(1e-9);
    let per_request = |n: u64| (n as f64 / run.requests.max(1) as f64 * 100.0).round() / 100.0;
    let enclave_us = per_request_us(run.enclave_cpu, run.requests);
    let parent_us = per_request_us(run.parent_cpu, run.requests);
    let total_us = ((enclave_us + parent_us) * 10.0).round() / 10.0;
    json!({
        "mode": "closed_loop",
        "raw_sign_us": (raw_us * 100.0).round() / 100.0,
        "enclave_cpu_us_per_request": enclave_us,
        "parent_cpu_us_per_request": parent_us,
        "cpu_us_per_request": total_us,
        "cpu_per_request_to_raw": (total_us / raw_us * 100.0).round() / 100.0,
        "workload": if run.floor { "floor" } else { "sign" },
        "enclave_switches_per_request": per_request(run.enclave_switches),
        "parent_switches_per_request": per_request(run.parent_switches),
        "socket_hop_us": (base.socket_hop_us * 10.0).round() / 10.0,
        "socket_probe_p50_ms": base.socket_probe_ms[0],
        "socket_probe_p99_ms": base.socket_probe_ms[1],
        "socket_probe_p999_ms": base.socket_probe_ms[2],
        "socket_probe_max_ms": base.socket_probe_ms[3],
        "p999_ms": run.p999_ms,
        "throughput_per_s": (run.throughput * 10.0).round() / 10.0,
        "raw_sign_per_s": raw.round(),
        "ratio": (run.throughput / raw * 1000.0).round() / 1000.0,
        "p50_ms": run.p50_ms,
        "p90_ms": run.p90_ms,
        "p99_ms": run.p99_ms,
        "max_ms": run.max_ms,
        "errors": run.errors.values().sum::<u64>(),
        "errors_by_code": run.errors,
        "kms_calls": run.kms_calls,
        "grants": run.grants,
        "concurrency": run.concurrency,
        "requests": run.requests,
        "seconds": (run.seconds * 100.0).round() / 100.0,
        "enclave_cpu_s": (run.enclave_cpu * 100.0).round() / 100.0,
        "parent_cpu_s": (run.parent_cpu * 100.0).round() / 100.0,
        "enclave_peak_rss_mib": (run.enclave.peak_rss_mib * 10.0).round() / 10.0,
        "parent_peak_rss_mib": (run.parent.peak_rss_mib * 10.0).round() / 10.0,
        "enclave_rss_mib": (run.enclave.rss_mib * 10.0).round() / 10.0,
        "enclave_rss_growth_mib": (run.enclave_rss_growth_mib * 10.0).round() / 10.0,
    })
}

/// One side of `--cluster`'s comparison (single instance or cluster) as JSON.
fn comparison_side(run: &Run) -> Value {
    let enclave_us = per_request_us(run.enclave_cpu, run.requests);
    let parent_us = per_request_us(run.parent_cpu, run.requests);
    let c = run.cluster.as_ref();
    let lb_us = c.map(|c| per_request_us(c.lb_cpu, run.requests));
    let total = ((enclave_us + parent_us + lb_us.unwrap_or(0.0)) * 10.0).round() / 10.0;
    let members: Vec<Value> = c
        .map(|c| {
            c.per_member
                .iter()
                .map(|(name, enclave, parent)| {
                    json!({
                        "member": name,
                        "enclave_cpu_us_per_request": per_request_us(*enclave, run.requests),
                        "parent_cpu_us_per_request": per_request_us(*parent, run.requests),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "members": c.map_or(1, |c| c.members),
        "throughput_rps": (run.throughput * 10.0).round() / 10.0,
        "p50_ms": run.p50_ms,
        "p90_ms": run.p90_ms,
        "p99_ms": run.p99_ms,
        "p999_ms": run.p999_ms,
        "max_ms": run.max_ms,
        "cpu_us_per_request": total,
        "enclave_cpu_us_per_request": enclave_us,
        "parent_cpu_us_per_request": parent_us,
        "lb_cpu_us_per_request": lb_us,
        "members_cpu_us_per_request": members,
        "entries_per_append": c
            .and_then(ClusterRun::entries_per_append)
            .map(|v| (v * 100.0).round() / 100.0),
        "appends": c.map(|c| c.appends),
        "entries": c.map(|c| c.entries),
        "requests": run.requests,
        "seconds": (run.seconds * 100.0).round() / 100.0,
        "errors": run.errors.values().sum::<u64>(),
        "errors_by_code": run.errors,
        "kms_calls": run.kms_calls,
    })
}

/// `value[key]` as a number, if it is one.
fn number_at(value: &Value, key: &str) -> Option<f64> {
    value.get(key).and_then(Value::as_f64)
}

/// `--cluster`: the single instance against the cluster, as JSON (the ratios are cluster /
/// single).
fn comparison_summary(single: &Run, cluster: &Run, base: &Baseline) -> Value {
    let (s, c) = (comparison_side(single), comparison_side(cluster));
    let ratio = |key: &str| match (number_at(&s, key), number_at(&c, key)) {
        (Some(a), Some(b)) if a > 0.0 => Some((b / a * 1000.0).round() / 1000.0),
        _ => None,
    };
    json!({
        "mode": "cluster_comparison",
        "concurrency": single.concurrency,
        "grants": single.grants,
        "raw_sign_per_s": base.raw.round(),
        "raw_sign_us": (1e8 / base.raw.max(1e-9)).round() / 100.0,
        "ratio": {
            "throughput": ratio("throughput_rps"),
            "p50": ratio("p50_ms"),
            "p99": ratio("p99_ms"),
            "cpu_per_request": ratio("cpu_us_per_request"),
        },
        "single": s,
        "cluster": c,
    })
}

/// `--cluster`: the comparison as a table.
fn print_comparison(single: &Run, cluster: &Run) {
    let (s, c) = (comparison_side(single), comparison_side(cluster));
    let members = cluster.cluster.as_ref().map_or(0, |c| c.members);
    let number = |v: &Value, key: &str, decimals: usize| {
        number_at(v, key).map_or_else(|| "-".to_string(), |x| format!("{x:.decimals$}"))
    };
    println!();
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "",
        "single",
        format!("cluster of {members}"),
        "cluster/single"
    );
    let rows: [(&str, &str, usize); 8] = [
        ("throughput (req/s)", "throughput_rps", 0),
        ("p50 (ms)", "p50_ms", 3),
        ("p99 (ms)", "p99_ms", 3),
        ("cpu per request (µs)", "cpu_us_per_request", 1),
        ("  enclaves", "enclave_cpu_us_per_request", 1),
        ("  parents", "parent_cpu_us_per_request", 1),
        ("  haproxy", "lb_cpu_us_per_request", 1),
        ("raft entries per append", "entries_per_append", 2),
    ];
    for (label, key, decimals) in rows {
        let ratio = match (number_at(&s, key), number_at(&c, key)) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "-".into(),
        };
        println!(
            "{label:<28} {:>14} {:>14} {ratio:>10}",
            number(&s, key, decimals),
            number(&c, key, decimals)
        );
    }
    println!(
        "{:<28} {:>14} {:>14}",
        "errors",
        single.errors.values().sum::<u64>(),
        cluster.errors.values().sum::<u64>()
    );
}

fn print_run(run: &Run, raw: f64) {
    let load = match run.offered_rate {
        Some(offered) => format!(
            "open loop {offered:>8.0} req/s offered  {:>8.0} achieved  ({} connections)",
            run.throughput, run.concurrency
        ),
        None => format!(
            "concurrency {:>4}  {:>9.0} req/s  ({:.3}× raw)",
            run.concurrency,
            run.throughput,
            run.throughput / raw
        ),
    };
    println!(
        "{load}  grants {:>6}  p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms  errors {}  kms {}",
        run.grants,
        run.p50_ms,
        run.p90_ms,
        run.p99_ms,
        run.p999_ms,
        run.max_ms,
        run.errors.values().sum::<u64>(),
        run.kms_calls
    );
    let enclave_us = per_request_us(run.enclave_cpu, run.requests);
    let parent_us = per_request_us(run.parent_cpu, run.requests);
    if let Some(c) = &run.cluster {
        let lb_us = per_request_us(c.lb_cpu, run.requests);
        let total = enclave_us + parent_us + lb_us;
        println!(
            "    cpu per request: {n} enclaves {enclave_us:.1} µs + {n} parents {parent_us:.1} µs + haproxy {lb_us:.1} µs = {total:.1} µs ({:.2}× the raw signature's {:.1} µs)",
            total * raw / 1e6,
            1e6 / raw,
            n = c.members,
        );
        for (name, enclave, parent) in &c.per_member {
            println!(
                "      {name}: enclave {:.1} µs  parent {:.1} µs",
                per_request_us(*enclave, run.requests),
                per_request_us(*parent, run.requests)
            );
        }
        println!(
            "    raft: {} appends with entries carried {} entries: {} entries per append",
            c.appends,
            c.entries,
            c.entries_per_append().map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
        );
    } else {
        println!(
            "    cpu per request: enclave {enclave_us:.1} µs + parent {parent_us:.1} µs = {:.1} µs ({:.2}× the raw signature's {:.1} µs)",
            enclave_us + parent_us,
            (enclave_us + parent_us) * raw / 1e6,
            1e6 / raw
        );
    }
    let requests = run.requests.max(1) as f64;
    println!(
        "    context switches per request: enclave {:.2}, parent {:.2}{}",
        run.enclave_switches as f64 / requests,
        run.parent_switches as f64 / requests,
        if run.floor { "   (floor: GET /v1/enclave, no signature)" } else { "" }
    );
    println!(
        "    enclave cpu {:.2} s  rss {:.1} MiB (peak {:.1}, +{:.1} in the run)   parent cpu {:.2} s  peak rss {:.1} MiB   over {:.2} s, {} requests",
        run.enclave_cpu,
        run.enclave.rss_mib,
        run.enclave.peak_rss_mib,
        run.enclave_rss_growth_mib,
        run.parent_cpu,
        run.parent.peak_rss_mib,
        run.seconds,
        run.requests
    );
    if !run.errors.is_empty() {
        println!("    errors by code: {:?}", run.errors);
    }
}

/// The latency curve: p50/p99/p99.9 and CPU per request against the offered rate.
fn plot_curve(path: &PathBuf, runs: &[Run], max_rate: f64, raw: f64) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(520);
    let rate = |r: &Run| r.offered_rate.unwrap_or(0.0);
    let x_max = max_rate * 1.0 + 1.0;
    let y_max = runs.iter().map(|r| r.p999_ms).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .caption(format!("latency vs offered rate (max {max_rate:.0} req/s)"), ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, (0.05f64..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("offered req/s")
        .y_desc("ms")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()
        .map_err(|e| e.to_string())?;
    type Line<'a> = (&'a str, fn(&Run) -> f64, RGBColor);
    let lines: [Line<'_>; 3] =
        [("p50", |r| r.p50_ms, BLUE), ("p99", |r| r.p99_ms, RED), ("p99.9", |r| r.p999_ms, BLACK)];
    for (name, y, color) in lines {
        let points: Vec<(f64, f64)> = runs.iter().map(|r| (rate(r), y(r).max(0.05))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(vec![(0.0, 1.0), (x_max, 1.0)], RED.mix(0.4)))
        .map_err(|e| e.to_string())?
        .label("1 ms")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED.mix(0.4)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;

    let raw_us = 1e6 / raw.max(1e-9);
    let cpu = |r: &Run| {
        per_request_us(r.enclave_cpu, r.requests) + per_request_us(r.parent_cpu, r.requests)
    };
    let y_max = runs.iter().map(cpu).fold(2.0 * raw_us, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&right)
        .caption("CPU per signed request (enclave + parent)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("offered req/s")
        .y_desc("µs")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let points: Vec<(f64, f64)> = runs.iter().map(|r| (rate(r), cpu(r))).collect();
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE))
        .map_err(|e| e.to_string())?
        .label("cpu µs / request")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))
        .map_err(|e| e.to_string())?;
    for (factor, label, color) in
        [(1.0, "raw signature", RED.to_rgba()), (2.0, "2 × raw", RED.mix(0.4))]
    {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, factor * raw_us), (x_max, factor * raw_us)],
                color,
            ))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn plot(path: &PathBuf, by_concurrency: &[Run], by_grants: &[Run], raw: f64) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((2, 2));
    let series = |runs: &[Run], x: fn(&Run) -> f64, y: fn(&Run) -> f64| -> Vec<(f64, f64)> {
        runs.iter().map(|r| (x(r), y(r))).collect()
    };
    type Panel<'a> = (&'a str, &'a str, &'a str, &'a [Run], fn(&Run) -> f64, fn(&Run) -> f64, bool);
    let charts: [Panel<'_>; 4] = [
        (
            "throughput vs concurrency (100 grants)",
            "concurrent clients",
            "req/s",
            by_concurrency,
            |r| r.concurrency as f64,
            |r| r.throughput,
            true,
        ),
        (
            "p99 latency vs concurrency (100 grants)",
            "concurrent clients",
            "ms",
            by_concurrency,
            |r| r.concurrency as f64,
            |r| r.p99_ms,
            false,
        ),
        (
            "throughput vs distinct grants (64 clients)",
            "distinct grants",
            "req/s",
            by_grants,
            |r| r.grants as f64,
            |r| r.throughput,
            true,
        ),
        (
            "p99 latency vs distinct grants (64 clients)",
            "distinct grants",
            "ms",
            by_grants,
            |r| r.grants as f64,
            |r| r.p99_ms,
            false,
        ),
    ];
    for (panel, (title, x_desc, unit, runs, x, y, with_raw)) in panels.iter().zip(charts) {
        let points = series(runs, x, y);
        let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.5;
        let y_max =
            points.iter().map(|p| p.1).fold(0.0, f64::max).max(if with_raw { raw } else { 0.0 })
                * if with_raw { 1.45 } else { 1.15 }
                + 1e-9;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d((0.7f64..x_max).log_scale(), 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .y_desc(unit)
            .x_desc(x_desc)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        chart.draw_series(LineSeries::new(points.clone(), &BLUE)).map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
            .map_err(|e| e.to_string())?;
        if with_raw {
            chart
                .draw_series(LineSeries::new(vec![(0.7, raw), (x_max, raw)], RED.stroke_width(1)))
                .map_err(|e| e.to_string())?
                .label("raw single-core ed25519 rate")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
            chart
                .draw_series(LineSeries::new(
                    vec![(0.7, raw / 2.0), (x_max, raw / 2.0)],
                    RED.mix(0.4),
                ))
                .map_err(|e| e.to_string())?
                .label("target: 0.5 × raw")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED.mix(0.4)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signer-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let base = baseline(&cli)?;
    let raw = base.raw;
    if cli.curve {
        let max_rate = find_max_rate(&cli, &prep(&cli, cli.connections, cli.grants)?)?;
        println!("sustainable maximum: {max_rate:.0} req/s");
        let mut runs = Vec::new();
        for percent in [10.0, 25.0, 50.0, 75.0, 90.0] {
            // A fresh stack per point: every point starts from the same state (the request-id
            // store holds a million live ids, and a long series of runs on one stack fills it).
            let p = prep(&cli, cli.connections, cli.grants)?;
            let rate = (max_rate * percent / 100.0).round();
            let run = measure_open(&cli, &p, rate, cli.seconds as f64)?;
            print!("{percent:>3.0} % of max: ");
            print_run(&run, raw);
            runs.push(run);
        }
        plot_curve(&cli.curve_plot, &runs, max_rate, raw)?;
        println!("plot written to {}", cli.curve_plot.display());
        if cli.json {
            let all: Vec<Value> = runs
                .iter()
                .map(|r| {
                    let mut v = summary(r, &base);
                    if let Value::Object(map) = &mut v {
                        map.insert("max_rate".into(), json!(max_rate));
                    }
                    v
                })
                .collect();
            println!(
                "{}",
                json!({"max_rate": max_rate, "raw_sign_per_s": raw.round(), "raw_sign_us": (1e8 / raw).round() / 100.0, "socket_hop_us": (base.socket_hop_us * 10.0).round() / 10.0, "runs": all})
            );
        }
        return Ok(());
    }
    if let Some(rate) = &cli.rate {
        let (rate, max_rate) = if rate == "max" {
            let max = find_max_rate(&cli, &prep(&cli, cli.connections, cli.grants)?)?;
            println!("sustainable maximum: {max:.0} req/s");
            (max, Some(max))
        } else {
            let r =
                rate.parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0).ok_or_else(
                    || format!("--rate {rate}: expected requests per second or `max`"),
                )?;
            (r, None)
        };
        // Measured on a fresh stack (the search fills the request-id store with its own ids).
        let p = prep(&cli, cli.connections, cli.grants)?;
        let run = measure_open(&cli, &p, rate, cli.seconds as f64)?;
        print_run(&run, raw);
        if cli.json {
            let mut v = summary(&run, &base);
            if let Value::Object(map) = &mut v {
                map.insert("max_rate".into(), json!(max_rate));
            }
            println!("{v}");
        }
        return Ok(());
    }
    if let Some(members) = cli.cluster {
        // The same closed loop on each setup, one after the other (each stopped after its run).
        eprintln!("single instance…");
        let single = measure(&cli, cli.concurrency, cli.grants)?;
        print!("single:  ");
        print_run(&single, raw);
        eprintln!("cluster of {members} behind HAProxy…");
        let cluster = measure_on(&cli, cluster_target(members)?, cli.concurrency, cli.grants)?;
        print!("cluster: ");
        print_run(&cluster, raw);
        print_comparison(&single, &cluster);
        if cli.json {
            println!("{}", comparison_summary(&single, &cluster, &base));
        }
        return Ok(());
    }
    if !cli.sweep {
        let mut p = prep(&cli, cli.concurrency, cli.grants)?;
        let run = closed(&cli, &p, cli.concurrency)?;
        print_run(&run, raw);
        // Signing is compared with the floor on the same stack (`against_floor`); a floor run
        // or a memory run (`--requests`) is its own subject.
        let against = if cli.floor || cli.requests.is_some() || cli.no_floor {
            None
        } else {
            let against = against_floor::measure(&cli, &mut p, &run, raw)?;
            against.print(&run, raw);
            Some(against)
        };
        if cli.json {
            let mut v = summary(&run, &base);
            if let (Some(against), Value::Object(map)) = (&against, &mut v)
                && let Value::Object(extra) = against.json(&run, raw)
            {
                map.extend(extra);
            }
            println!("{v}");
        }
        return Ok(());
    }
    let mut by_concurrency = Vec::new();
    for c in [1usize, 4, 16, 64, 256] {
        let run = measure(&cli, c, 100)?;
        print_run(&run, raw);
        by_concurrency.push(run);
    }
    let mut by_grants = Vec::new();
    for g in [1usize, 100, 10_000] {
        let run = if g == 100 {
            by_concurrency.iter().find(|r| r.concurrency == 64).cloned().ok_or("missing run")?
        } else {
            measure(&cli, 64, g)?
        };
        if g != 100 {
            print_run(&run, raw);
        }
        by_grants.push(run);
    }
    plot(&cli.plot, &by_concurrency, &by_grants, raw)?;
    println!("plot written to {}", cli.plot.display());
    if cli.json {
        let all: Vec<Value> =
            by_concurrency.iter().chain(by_grants.iter()).map(|r| summary(r, &base)).collect();
        println!("{}", json!({"raw_sign_per_s": raw.round(), "runs": all}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::Cli;

    #[test]
    fn cluster_takes_an_odd_number_of_members_and_only_the_closed_loop() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("signer-bench").chain(args.iter().copied()))
        };
        let cli = parse(&["--cluster", "3", "--seconds", "5"]).map_err(|e| e.to_string());
        assert_eq!(cli.map(|c| (c.cluster, c.seconds)), Ok((Some(3), 5)));
        assert!(parse(&[]).is_ok_and(|c| c.cluster.is_none()));
        for bad in [
            &["--cluster", "2"][..],
            &["--cluster", "0"],
            &["--cluster", "17"],
            &["--cluster", "three"],
            &["--cluster", "3", "--sweep"],
            &["--cluster", "3", "--rate", "max"],
            &["--cluster", "3", "--curve"],
            &["--cluster", "3", "--floor"],
            &["--cluster", "3", "--attach", "http://127.0.0.1:8787"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
