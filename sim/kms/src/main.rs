//! `kms-sim`: a local KMS emulator (simulation only; never point production at it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kms_sim::{Kms, Settings, Store};
use nitro_attestation::TrustAnchor;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "kms-sim",
    version,
    about = "Local AWS KMS emulator for the signer simulation stack (real JSON protocol, attested Decrypt)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "KMS_SIM_LISTEN", default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Directory for keys.json (created if absent).
    #[arg(long, env = "KMS_SIM_DATA_DIR")]
    data_dir: PathBuf,
    /// Root certificate (PEM) attestation documents must chain to; default the AWS Nitro root.
    #[arg(long, env = "KMS_SIM_ATTESTATION_ROOT")]
    attestation_root: Option<PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "111122223333")]
    account: String,
    /// The principal every call is attributed to (SigV4 is not checked).
    #[arg(long, default_value = "arn:aws:iam::111122223333:role/signer-parent")]
    caller_arn: String,
    /// Oldest attestation document accepted with Recipient.
    #[arg(long, default_value = "300")]
    max_document_age_seconds: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kms-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let attestation_root = match &cli.attestation_root {
        None => TrustAnchor::aws_nitro_root_g1(),
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            TrustAnchor::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?
        }
    };
    let store = Store::open(&cli.data_dir).map_err(|e| e.to_string())?;
    let keys = store.keys.len();
    let kms = Arc::new(Kms::new(
        Settings {
            region: cli.region,
            account: cli.account,
            caller_arn: cli.caller_arn,
            attestation_root,
            max_document_age: Duration::from_secs(cli.max_document_age_seconds),
        },
        store,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", cli.listen))?;
        tracing::info!(listen = %cli.listen, keys, "kms-sim serving");
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            }
            signal_token.cancel();
        });
        kms_sim::server::serve(listener, kms, shutdown).await;
        tracing::info!("kms-sim stopped");
        Ok(())
    })
}
