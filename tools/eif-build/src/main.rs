//! `eif-build` — build the production enclave image (EIF) from the static `signer-enclave`, the
//! measured config and nitro-cli's kernel blobs, without Docker. scripts/build-eif.sh builds the
//! binary and calls this.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eif_build::{Blobs, DEFAULT_BLOBS_DIR, Inputs, build};

#[derive(Parser)]
#[command(name = "eif-build", version, about = "Build the signer enclave's EIF without Docker")]
struct Cli {
    /// The static signer-enclave binary.
    #[arg(long)]
    binary: PathBuf,
    /// The measured config.
    #[arg(long, default_value = "deploy/enclave.toml")]
    config: PathBuf,
    /// Directory holding bzImage, bzImage.config, cmdline, init and nsm.ko (the
    /// aws-nitro-enclaves-cli package's location by default).
    #[arg(long, default_value = DEFAULT_BLOBS_DIR)]
    blobs: PathBuf,
    /// The kernel (default: BLOBS/bzImage).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// The kernel's config (default: BLOBS/bzImage.config).
    #[arg(long)]
    kernel_config: Option<PathBuf>,
    /// The kernel command line file (default: BLOBS/cmdline).
    #[arg(long)]
    cmdline: Option<PathBuf>,
    /// init (default: BLOBS/init).
    #[arg(long)]
    init: Option<PathBuf>,
    /// The NSM driver (default: BLOBS/nsm.ko).
    #[arg(long)]
    nsm: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "build")]
    out: PathBuf,
    /// Build time for the (unmeasured) metadata section: the commit's time.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: i64,
    /// Image version for the metadata section (the commit).
    #[arg(long, default_value = "unknown")]
    image_version: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let defaults = Blobs::in_dir(&cli.blobs);
    let inputs = Inputs {
        binary: cli.binary,
        config: cli.config,
        blobs: Blobs {
            kernel: cli.kernel.unwrap_or(defaults.kernel),
            kernel_config: cli.kernel_config.unwrap_or(defaults.kernel_config),
            cmdline: cli.cmdline.unwrap_or(defaults.cmdline),
            init: cli.init.unwrap_or(defaults.init),
            nsm: cli.nsm.unwrap_or(defaults.nsm),
        },
        source_date_epoch: cli.source_date_epoch,
        image_version: cli.image_version,
    };
    if let Err(e) = std::fs::create_dir_all(&cli.out) {
        eprintln!("eif-build: {}: {e}", cli.out.display());
        return ExitCode::from(2);
    }
    match build(&inputs, &cli.out) {
        Ok(built) => {
            eprintln!("eif-build: wrote {}", built.eif.display());
            print!("{}", built.measurements_json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eif-build: {e}");
            ExitCode::FAILURE
        }
    }
}
