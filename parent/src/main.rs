//! `signer-parent`: the HTTP API in front of the signing enclave.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use nitro_attestation::TrustAnchor;
use signer_parent::app::Parent;
use signer_parent::attestation::Attestation;
use signer_parent::config::{ENVIRONMENT, Settings};
use signer_parent::kms::KmsClient;
use signer_parent::metrics::Metrics;
use signer_protocol::EnclaveClient;
use tokio_util::sync::CancellationToken;

fn environment_help() -> String {
    let mut s = String::from(
        "Backend services call this daemon over HTTP; it forwards to the enclave over vsock, fetches \
         KMS envelopes for the enclave with its attestation document, and refuses to work with an \
         enclave whose attestation does not verify against the expected PCRs.\n\n\
         Settings come from --config (TOML) and these environment variables, which win:\n",
    );
    for (name, help) in ENVIRONMENT {
        s.push_str(&format!("  {name:<28} {help}\n"));
    }
    s.push_str("\nAWS credentials come from the standard chain (instance role on EC2).\nRoutes: see README.md (\"HTTP API\").");
    s
}

#[derive(Parser)]
#[command(name = "signer-parent", version, about = "HTTP API for the signing enclave", long_about = None, after_long_help = environment_help())]
struct Cli {
    /// Configuration file (TOML). Optional when every required setting comes from the environment.
    #[arg(long, env = "SIGNER_PARENT_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cli.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signer-parent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let settings = Settings::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    let anchor = match &settings.attestation_root_pem {
        None => TrustAnchor::aws_nitro_root_g1(),
        Some(pem) => TrustAnchor::from_pem(pem).map_err(|e| format!("attestation root: {e}"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let kms = KmsClient::new(&settings, Arc::clone(&metrics)).await;
        let attestation = Attestation::new(
            anchor,
            settings.expected_pcrs.clone(),
            settings.attestation.allow_debug,
            Duration::from_secs(settings.attestation.max_age_seconds),
        );
        let enclave = EnclaveClient::new(settings.enclave.clone(), Duration::from_secs(3));
        let listener = tokio::net::TcpListener::bind(settings.listen).await.map_err(|e| format!("listening on {}: {e}", settings.listen))?;
        tracing::info!(listen = %settings.listen, enclave = %settings.enclave, kms_key = %settings.kms_key_id, "signer-parent serving");
        let parent = Arc::new(Parent::new(settings, enclave, kms, attestation, metrics));
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                tracing::info!("shutting down: finishing in-flight requests");
            }
            signal_token.cancel();
        });
        let maintainer = tokio::spawn(Arc::clone(&parent).maintain(shutdown.clone()));
        signer_parent::cluster::ClusterRelay::spawn(Arc::clone(&parent), shutdown.clone());
        signer_parent::api::serve(listener, parent, shutdown).await;
        let _ = maintainer.await;
        tracing::info!("signer-parent stopped");
        Ok(())
    })
}
