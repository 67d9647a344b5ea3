//! `signer-sim`: brings up the whole simulation stack from the built binaries, runs the demo
//! round trip, prints where everything listens and a working `curl`, then serves until Ctrl-C.
//! `scripts/sim.sh` builds the binaries and runs this.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signer_sim::{Options, Stack, demo};

#[derive(Parser)]
#[command(
    name = "signer-sim",
    version,
    about = "Run the signing stack locally: kms-sim + enclave (sim NSM) + parent"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the stack, run the demo, serve until Ctrl-C (the default).
    Run {
        /// Exit after the demo instead of serving.
        #[arg(long)]
        demo_only: bool,
        /// Run a cluster of this many enclave/parent pairs (odd; 3 is the usual) behind HAProxy
        /// on the usual address, instead of one pair.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
        cluster: Option<u8>,
    },
}

fn main() -> ExitCode {
    let (demo_only, cluster) = match Cli::parse().command {
        Some(Cmd::Run { demo_only, cluster }) => (demo_only, cluster),
        None => (false, None),
    };
    if cluster.is_some_and(|n| n % 2 == 0) {
        eprintln!("signer-sim: a cluster has an odd number of members (a majority must survive)");
        return ExitCode::FAILURE;
    }
    match run(demo_only, cluster.map(usize::from)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signer-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(demo_only: bool, cluster: Option<usize>) -> Result<(), String> {
    let options = Options::from_env().map_err(|e| e.to_string())?;
    let data = options.data_dir.display().to_string();
    let (mut stack, mut cluster) = match cluster {
        None => {
            eprintln!(
                "signer-sim: starting kms-sim, the enclave (simulated NSM) and the parent; data in {data}/"
            );
            (Stack::start(options).map_err(|e| e.to_string())?, None)
        }
        Some(n) => {
            eprintln!(
                "signer-sim: starting kms-sim, a cluster of {n} enclave/parent pairs and HAProxy; data in {data}/"
            );
            let stack = Stack::prepare(options).map_err(|e| e.to_string())?;
            let mut cluster = stack
                .start_cluster(
                    &signer_sim::cluster::member_addrs(
                        n,
                        &[stack.options.http_addr, stack.options.kms_addr],
                    ),
                    None,
                )
                .map_err(|e| e.to_string())?;
            stack
                .start_load_balancer(&mut cluster, stack.options.http_addr)
                .map_err(|e| e.to_string())?;
            (stack, Some(cluster))
        }
    };
    let pcr0 = std::fs::read_to_string(&stack.paths.measurements)
        .ok()
        .and_then(|j| nitro_attestation::policy::pcrs_from_measurements_json(&j).ok())
        .and_then(|p| p.get(&0).map(hex::encode))
        .unwrap_or_default();
    println!("simulation stack is up");
    println!("  API           {}   (GET /readyz is 200)", stack.base_url());
    println!("  KMS emulator  http://{}   key {}", stack.options.kms_addr, stack.key_arn);
    if stack.enclave.is_some() {
        println!(
            "  enclave       unix:{}   simulated NSM, PCR0 {}…",
            stack.paths.socket.display(),
            pcr0.get(..16).unwrap_or_default()
        );
    }
    println!(
        "  key policy    {}   (pinned to PCR0-2 by `attest key-policy`)",
        stack.paths.key_policy.display()
    );
    if let Some(cluster) = &cluster {
        println!(
            "  cluster       {}   {} members behind HAProxy (config {}/haproxy.cfg)",
            cluster.cluster_id,
            cluster.members.len(),
            stack.paths.root.display()
        );
        for m in &cluster.members {
            println!("    {}       http://{}   enclave {}", m.name, m.http_addr, m.enclave_id);
        }
    }
    println!("  logs          {}/", stack.paths.logs.display());
    println!("  tokens        {}   (api / admin)", stack.paths.tokens.display());

    println!();
    println!("demo round trip");
    let trust = stack.trust().map_err(|e| e.to_string())?;
    let d = demo::run(&stack.api(), &trust, &mut |step| println!("  - {step}"))?;
    println!("  agent         {}", d.agent_pubkey);
    println!("  grant         {}", d.grant_id);
    println!("  signature     {}", d.signature);
    println!(
        "  verified      yes: ed25519 over the transaction message, by the agent's public key"
    );
    let receipts = signer_sim::receipts::fetch_and_verify(&stack, &stack.api())?;
    println!(
        "  receipts      {} fetched (GET /v1/receipts) and verified with `attest receipts`: \
         chain, checkpoint signature, key binding in the attested document, every signature \
         within its grant's policy",
        receipts.receipts
    );
    for line in receipts.output.lines().filter(|l| !l.trim().is_empty()).take(12) {
        println!("    | {line}");
    }
    println!("  verify again  {}", receipts.command);

    let base = stack.base_url();
    println!();
    println!("try it (the demo's grant is valid for 15 minutes):");
    println!("  export API={base}");
    println!("  export TOKEN={}", stack.api_token);
    println!("  export ADMIN={}", stack.admin_token);
    println!("  curl -s {base}/readyz");
    println!(
        "  curl -s -X POST {base}/v1/vaults -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    -d '{{\"wallet\":\"{}\"}}'",
        d.wallet
    );
    println!(
        "  curl -s -X POST {base}/v1/sign -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' -H 'x-signer-route: {}' \\\n    -d '{{\"grant_record\":\"{}\",\"agent_key_record\":\"{}\",\"bot_id\":\"{}\",\"transaction\":\"{}\",\"request_id\":\"'$(cat /proc/sys/kernel/random/uuid)'\"}}'",
        d.enclave_id, d.grant_record, d.agent_key_record, d.bot_id, d.transaction_b64
    );

    if demo_only {
        if let Some(cluster) = cluster.take() {
            cluster.shutdown();
        }
        stack.shutdown();
        return Ok(());
    }
    println!();
    println!("serving; press Ctrl-C to stop");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut interrupted = false;
    while !interrupted {
        interrupted = runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return true;
            };
            tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            }
        });
        for proc in [stack.kms.as_mut(), stack.enclave.as_mut(), stack.parent.as_mut()]
            .into_iter()
            .flatten()
        {
            proc.check_running().map_err(|e| e.to_string())?;
        }
        if let Some(cluster) = cluster.as_mut() {
            for proc in cluster.members.iter_mut().map(|m| &mut m.parent).chain(cluster.lb.as_mut())
            {
                proc.check_running().map_err(|e| e.to_string())?;
            }
        }
    }
    eprintln!("signer-sim: stopping (parents, enclaves, kms-sim)");
    if let Some(cluster) = cluster.take() {
        cluster.shutdown();
    }
    stack.shutdown();
    eprintln!("signer-sim: stopped");
    Ok(())
}
