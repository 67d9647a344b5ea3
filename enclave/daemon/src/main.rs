//! `signer-enclave`: the daemon that runs inside the Nitro enclave.
//!
//! Serves the parent over vsock (`--listen vsock:5000`) or, in simulation, a Unix socket
//! (`--listen unix:/path`), with the real NSM (`--nsm nitro`) or a simulated one (`--nsm sim
//! --sim-ca <file>`). `signer-enclave measure --config <file>` prints the simulated PCRs of this
//! binary with that config in `nitro-cli` measurement format, so a key policy can be written
//! before the enclave starts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_core::envelope::RecipientKey;
use enclave_core::{Enclave, SystemClock};
use signer_enclave::config;
use signer_enclave::handler::Handler;
use signer_enclave::nsm::{NitroNsm, Nsm, NsmAttester};
use signer_enclave::server::{Limits, serve};
#[cfg(feature = "sim")]
use signer_enclave::sim_nsm::{SimNsm, sim_pcrs};
use signer_protocol::{Endpoint, Listener};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "signer-enclave",
    version,
    about = "Signing enclave daemon: opens grants with KMS envelopes, enforces limits, returns only signed transactions",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum NsmKind {
    /// The Nitro Secure Module (/dev/nsm); production.
    Nitro,
    /// A simulated NSM signing with a local CA; simulation only.
    Sim,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct RunArgs {
    /// Where to listen: vsock:PORT (production) or unix:/path (simulation).
    #[arg(long, env = "SIGNER_ENCLAVE_LISTEN", default_value = "vsock:5000")]
    listen: Endpoint,
    /// NSM provider.
    #[arg(long, env = "SIGNER_ENCLAVE_NSM", value_enum, default_value = "nitro")]
    nsm: NsmKind,
    /// The measured config (TOML): pinned KMS public key, limits, capacities.
    #[arg(long, env = "SIGNER_ENCLAVE_CONFIG", default_value = "/etc/signer/enclave.toml")]
    config: PathBuf,
    /// Simulation CA state (created if absent); required with --nsm sim.
    #[arg(long, env = "SIGNER_SIM_CA")]
    sim_ca: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "SIGNER_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Print a measured config (TOML) for a KMS execution key, every other setting default.
    /// Deployment scripts use this so the file they bake into the image is exactly what the
    /// daemon parses.
    Config {
        /// The KMS key's public key: base64 SubjectPublicKeyInfo DER (`aws kms get-public-key
        /// --query PublicKey --output text`).
        #[arg(long)]
        kms_public_key: String,
        /// The KMS key id or ARN (informational).
        #[arg(long)]
        kms_key_id: Option<String>,
        /// Longest grant lifetime the enclave accepts, seconds.
        #[arg(long)]
        max_grant_ttl_seconds: Option<u64>,
        /// The domain users' wallets see in authorization messages (e.g. app.example.com).
        #[arg(long)]
        domain: String,
        /// The URI in authorization messages (e.g. https://app.example.com).
        #[arg(long)]
        uri: String,
        /// The Solana cluster in authorization messages: mainnet, devnet, testnet, localnet.
        #[arg(long)]
        chain_id: String,
        /// A predecessor image (nitro-cli measurement JSON) whose records and handover this one
        /// accepts; repeat for several.
        #[arg(long = "predecessor")]
        predecessors: Vec<PathBuf>,
    },
    /// Print the simulated PCRs of an enclave binary with a config (nitro-cli measurement JSON).
    Measure {
        #[arg(long)]
        config: PathBuf,
        /// The enclave binary to measure (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Measure { config, binary }) => measure(config, binary),
        Some(Command::Config {
            kms_public_key,
            kms_key_id,
            max_grant_ttl_seconds,
            domain,
            uri,
            chain_id,
            predecessors,
        }) => write_config(
            &kms_public_key,
            kms_key_id,
            max_grant_ttl_seconds,
            config::AuthorizationConfig {
                domain,
                uri,
                chain_id,
                validity_seconds: enclave_core::authorization::MAX_VALIDITY_SECONDS,
                tokens: Vec::new(),
                programs: Vec::new(),
            },
            &predecessors,
        ),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("signer-enclave: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sim")]
fn current_binary(binary: Option<PathBuf>) -> Result<Vec<u8>, String> {
    let path = match binary {
        Some(p) => p,
        None => std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?,
    };
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(feature = "sim")]
fn measure(config_path: PathBuf, binary: Option<PathBuf>) -> Result<(), String> {
    let loaded = config::load(&config_path).map_err(|e| e.to_string())?;
    let pcrs = sim_pcrs(&current_binary(binary)?, &loaded.bytes);
    println!("{}", nitro_attestation::policy::measurements_json(&pcrs));
    Ok(())
}

#[cfg(not(feature = "sim"))]
fn measure(_config_path: PathBuf, _binary: Option<PathBuf>) -> Result<(), String> {
    Err("this build has no simulation support (feature `sim`); measure a real image with \
         `nitro-cli build-enclave`"
        .into())
}

fn write_config(
    kms_public_key: &str,
    kms_key_id: Option<String>,
    max_ttl: Option<u64>,
    authorization: config::AuthorizationConfig,
    predecessors: &[PathBuf],
) -> Result<(), String> {
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(kms_public_key.trim())
        .map_err(|e| format!("--kms-public-key is not base64: {e}"))?;
    let mut file = config::FileConfig::new(&der, kms_key_id, authorization);
    if let Some(ttl) = max_ttl {
        file.max_grant_ttl_seconds = ttl;
    }
    for path in predecessors {
        let json = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let pcrs = nitro_attestation::policy::pcrs_from_measurements_json(&json)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.predecessors.push(
            pcrs.iter()
                .filter(|(i, _)| enclave_core::enclave::IMAGE_PCRS.contains(i))
                .map(|(i, v)| (format!("PCR{i}"), hex::encode(v)))
                .collect(),
        );
    }
    let text = file.to_toml().map_err(|e| e.to_string())?;
    // Refuse to print anything the daemon would not accept.
    config::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    print!("{text}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    init_logging(args.log_format);
    let loaded = config::load(&args.config).map_err(|e| e.to_string())?;
    let nsm: Arc<dyn Nsm> = match args.nsm {
        NsmKind::Nitro => Arc::new(NitroNsm::open().map_err(|e| e.to_string())?),
        NsmKind::Sim => sim_nsm(&args, &loaded.bytes)?,
    };
    let rng = nsm.random();
    let started = std::time::Instant::now();
    let recipient =
        RecipientKey::generate(&*rng, loaded.file.recipient_key_bits).map_err(|e| e.to_string())?;
    tracing::info!(
        bits = loaded.file.recipient_key_bits,
        millis = started.elapsed().as_millis() as u64,
        "recipient key generated"
    );
    let limits = Limits {
        max_connections: loaded.file.max_connections,
        max_in_flight: loaded.file.max_in_flight,
        drain_timeout: Duration::from_secs(10),
    };
    let anchor = nsm.trust_anchor().map_err(|e| e.to_string())?;
    let enclave = Enclave::new(
        loaded.core,
        recipient,
        rng,
        Arc::new(SystemClock),
        Arc::new(NsmAttester(Arc::clone(&nsm))),
        anchor,
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(enclave_id = %enclave.id(), nsm = nsm.kind(), "enclave instance");
    let handler = Arc::new(Handler::new(enclave, Arc::new(enclave_core::OsRandom)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = Listener::bind(&args.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", args.listen))?;
        tracing::info!(listen = %args.listen, "serving");
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        let sweeper = {
            let (handler, shutdown) = (Arc::clone(&handler), shutdown.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                // A checkpoint of the receipt chain every second while receipts are written
                // (signing only when the head moved), so a reader's newest receipts are vouched
                // for within a second even if nobody asks.
                let mut checkpoint = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = checkpoint.tick() => {
                            let _ = handler.enclave.checkpoint();
                        }
                        _ = tick.tick() => {
                            // A cluster member's sweep is a decision that waits for a majority:
                            // never on an async worker.
                            let enclave = Arc::clone(&handler.enclave);
                            let dropped =
                                tokio::task::spawn_blocking(move || enclave.sweep()).await.unwrap_or(0);
                            if dropped > 0 {
                                tracing::info!(dropped, "expired grants zeroized");
                            }
                        }
                    }
                }
            })
        };
        serve(listener, Arc::clone(&handler), limits, shutdown).await;
        let _ = sweeper.await;
        handler.enclave.clear();
        tracing::info!("opened grants zeroized; shutdown complete");
        Ok::<(), String>(())
    })
}

#[cfg(feature = "sim")]
fn sim_nsm(args: &RunArgs, config_bytes: &[u8]) -> Result<Arc<dyn Nsm>, String> {
    let ca = args.sim_ca.as_ref().ok_or("--nsm sim needs --sim-ca <file>")?;
    let sim = SimNsm::new(ca, &current_binary(None)?, config_bytes).map_err(|e| e.to_string())?;
    let pcr0 = sim.pcrs().get(&0).map(hex::encode).unwrap_or_default();
    tracing::warn!(%pcr0, "SIMULATED NSM: attestation documents are signed by a local CA");
    Ok(Arc::new(sim))
}

#[cfg(not(feature = "sim"))]
fn sim_nsm(_args: &RunArgs, _config_bytes: &[u8]) -> Result<Arc<dyn Nsm>, String> {
    Err("this build has no simulated NSM (feature `sim`): it runs only inside a Nitro enclave"
        .into())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
