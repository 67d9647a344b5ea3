//! Builds the production enclave image without Docker or nitro-cli.
//!
//! The EIF has the layout `nitro-cli build-enclave` gives a Docker image, written with the same
//! crate (`aws-nitro-enclaves-image-format`):
//!
//! * kernel, kernel command line (from nitro-cli's blobs);
//! * ramdisk 1, the boot environment: `dev/`, `init` and `nsm.ko` (from nitro-cli's blobs);
//! * ramdisk 2, the application: `cmd` and `env` (read by `init`: one argument, resp. one
//!   `NAME=value`, per line), and `rootfs/` holding the static `signer-enclave` at
//!   `/usr/bin/signer-enclave`, the measured config at `/etc/signer/enclave.toml`, and the empty
//!   directories `init` mounts on (`dev`, `proc`, `run`, `sys`, `tmp`, `var`).
//!
//! Both ramdisks are deterministic cpio archives ([`cpio`]); the metadata section's build time is
//! `SOURCE_DATE_EPOCH`. The same inputs give the same bytes, hence the same PCRs.
#![forbid(unsafe_code)]

pub mod cpio;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use sha2_010::{Digest as _, Sha256, Sha384};

use cpio::{Archive, CpioError};

/// Where Amazon Linux's `aws-nitro-enclaves-cli` package installs the kernel, its config, its
/// command line, `init` and `nsm.ko`.
pub const DEFAULT_BLOBS_DIR: &str = "/usr/share/nitro_enclaves/blobs";

/// The enclave's command (as Dockerfile.enclave's ENTRYPOINT): `init` runs it in `/rootfs`.
pub const CMD: &[&str] = &[
    "/usr/bin/signer-enclave",
    "--listen",
    "vsock:5000",
    "--nsm",
    "nitro",
    "--config",
    "/etc/signer/enclave.toml",
    "--log-format",
    "json",
];

/// The enclave's environment (what a Docker `scratch` image gives `nitro-cli`).
pub const ENV: &[&str] = &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];

/// `HashAlgorithm` in measurements.json, as nitro-cli prints it.
pub const HASH_ALGORITHM: &str = "Sha384 { ... }";

/// File names written to the output directory.
pub const EIF_NAME: &str = "signer-enclave.eif";
pub const MEASUREMENTS_NAME: &str = "measurements.json";
pub const SUMS_NAME: &str = "SHA256SUMS";

/// Why the image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("ramdisk: {0}")]
    Cpio(#[from] CpioError),
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("SOURCE_DATE_EPOCH {0} is not a valid time")]
    Epoch(i64),
    #[error("measurements: {0}")]
    Measurements(String),
}

/// The kernel, its config, its command line, `init` and `nsm.ko`.
#[derive(Clone, Debug)]
pub struct Blobs {
    pub kernel: PathBuf,
    pub kernel_config: PathBuf,
    pub cmdline: PathBuf,
    pub init: PathBuf,
    pub nsm: PathBuf,
}

impl Blobs {
    /// The blobs as nitro-cli's package lays them out in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            kernel: dir.join("bzImage"),
            kernel_config: dir.join("bzImage.config"),
            cmdline: dir.join("cmdline"),
            init: dir.join("init"),
            nsm: dir.join("nsm.ko"),
        }
    }
}

/// Everything the image is made of.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The static `signer-enclave` binary.
    pub binary: PathBuf,
    /// The measured config (deploy/enclave.toml).
    pub config: PathBuf,
    pub blobs: Blobs,
    /// Seconds since the epoch: the commit time (goes into the unmeasured metadata section).
    pub source_date_epoch: i64,
    /// Image version for the metadata section (the commit).
    pub image_version: String,
}

/// What [`build`] wrote.
#[derive(Clone, Debug)]
pub struct Built {
    pub eif: PathBuf,
    /// "HashAlgorithm", "PCR0", "PCR1", "PCR2" as `nitro-cli` reports them.
    pub measurements: BTreeMap<String, String>,
    /// The JSON written to `measurements.json`.
    pub measurements_json: String,
    /// File name → SHA-256 (hex) of what `SHA256SUMS` lists.
    pub sums: BTreeMap<String, String>,
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|source| BuildError::Read { path: path.into(), source })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    fs::write(path, bytes).map_err(|source| BuildError::Write { path: path.into(), source })
}

fn lines(items: &[&str]) -> Vec<u8> {
    items.iter().flat_map(|l| l.bytes().chain(std::iter::once(b'\n'))).collect()
}

/// Ramdisk 1: what nitro-cli puts in the boot ramdisk.
pub fn bootstrap_ramdisk(init: Vec<u8>, nsm: Vec<u8>) -> Result<Vec<u8>, CpioError> {
    let mut a = Archive::new();
    a.dir("dev", 0o755)?.file("init", 0o755, init)?.file("nsm.ko", 0o755, nsm)?;
    a.to_bytes()
}

/// Ramdisk 2: the application, its config, `cmd`, `env`, and the directories `init` needs.
pub fn app_ramdisk(binary: Vec<u8>, config: Vec<u8>) -> Result<Vec<u8>, CpioError> {
    let mut a = Archive::new();
    a.file("cmd", 0o644, lines(CMD))?.file("env", 0o644, lines(ENV))?.dir("rootfs", 0o755)?;
    for d in ["dev", "proc", "run", "sys", "tmp", "var", "etc", "etc/signer", "usr", "usr/bin"] {
        a.dir(&format!("rootfs/{d}"), 0o755)?;
    }
    a.file("rootfs/etc/signer/enclave.toml", 0o444, config)?;
    a.file("rootfs/usr/bin/signer-enclave", 0o555, binary)?;
    a.to_bytes()
}

/// The kernel's command line: the file's text without its trailing newline.
pub fn read_cmdline(path: &Path) -> Result<String, BuildError> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned();
    if text.contains('\0') {
        return Err(BuildError::CmdlineNul);
    }
    Ok(text)
}

/// "OperatingSystem" and "KernelVersion" as nitro-cli derives them from the kernel config's
/// third line (`# Linux/x86_64 4.14.177-104.253.amzn2.x86_64 Kernel Configuration`).
fn kernel_identity(config: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(config);
    let line = text.lines().nth(2).unwrap_or_default();
    let words: Vec<&str> = line.split([' ', '/', '-']).collect();
    let word = |i: usize| words.get(i).copied().unwrap_or("Unknown").to_owned();
    (word(1), word(3))
}

fn rfc3339(epoch: i64) -> Result<String, BuildError> {
    let t =
        time::OffsetDateTime::from_unix_timestamp(epoch).map_err(|_| BuildError::Epoch(epoch))?;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    t.format(&format).map_err(|_| BuildError::Epoch(epoch))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds `out_dir/signer-enclave.eif`, `measurements.json` and `SHA256SUMS` (of the EIF, the
/// measurements, and copies of the binary and the config written beside them). The ramdisks are
/// kept in `out_dir/ramdisks/`.
pub fn build(inputs: &Inputs, out_dir: &Path) -> Result<Built, BuildError> {
    let binary = read(&inputs.binary)?;
    let config = read(&inputs.config)?;
    let init = read(&inputs.blobs.init)?;
    let nsm = read(&inputs.blobs.nsm)?;
    let kernel_config = read(&inputs.blobs.kernel_config)?;
    // Read (and so checked to exist) before the EIF crate opens it.
    read(&inputs.blobs.kernel)?;
    let cmdline = read_cmdline(&inputs.blobs.cmdline)?;

    let ramdisk_dir = out_dir.join("ramdisks");
    fs::create_dir_all(&ramdisk_dir)
        .map_err(|source| BuildError::Write { path: ramdisk_dir.clone(), source })?;
    let boot_path = ramdisk_dir.join("bootstrap.cpio");
    let app_path = ramdisk_dir.join("application.cpio");
    write(&boot_path, &bootstrap_ramdisk(init, nsm)?)?;
    write(&app_path, &app_ramdisk(binary.clone(), config.clone())?)?;

    let (img_os, img_kernel) = kernel_identity(&kernel_config);
    let info = EifIdentityInfo {
        img_name: "signer-enclave".into(),
        img_version: inputs.image_version.clone(),
        build_info: EifBuildInfo {
            build_time: rfc3339(inputs.source_date_epoch)?,
            build_tool: env!("CARGO_PKG_NAME").into(),
            build_tool_version: env!("CARGO_PKG_VERSION").into(),
            img_os,
            img_kernel,
        },
        docker_info: serde_json::Value::Null,
        custom_info: serde_json::Value::Null,
    };

    let eif_path = out_dir.join(EIF_NAME);
    let mut builder = EifBuilder::new(&inputs.blobs.kernel, cmdline, None, Sha384::new(), 0, info);
    builder.add_ramdisk(&boot_path);
    builder.add_ramdisk(&app_path);
    let mut file = fs::File::create(&eif_path)
        .map_err(|source| BuildError::Write { path: eif_path.clone(), source })?;
    let mut measurements = builder.write_to(&mut file);
    // The crate names the algorithm by its hasher's Debug text, which depends on the sha2
    // version ("Sha512_48 { .. }" with 0.10.9); nitro-cli releases print this.
    measurements.insert("HashAlgorithm".into(), HASH_ALGORITHM.into());
    file.sync_all().map_err(|source| BuildError::Write { path: eif_path.clone(), source })?;
    drop(file);

    let measurements_json = measurements_json(&measurements)?;
    write(&out_dir.join(MEASUREMENTS_NAME), measurements_json.as_bytes())?;

    // Copies, so that `sha256sum -c SHA256SUMS` checks everything it lists.
    write(&out_dir.join("signer-enclave"), &binary)?;
    write(&out_dir.join("enclave.toml"), &config)?;

    let eif = read(&eif_path)?;
    let mut sums = BTreeMap::new();
    sums.insert(EIF_NAME.to_owned(), sha256_hex(&eif));
    sums.insert(MEASUREMENTS_NAME.to_owned(), sha256_hex(measurements_json.as_bytes()));
    sums.insert("signer-enclave".to_owned(), sha256_hex(&binary));
    sums.insert("enclave.toml".to_owned(), sha256_hex(&config));
    let mut text = Vec::new();
    for (name, sum) in &sums {
        let _ = writeln!(text, "{sum}  {name}");
    }
    write(&out_dir.join(SUMS_NAME), &text)?;

    Ok(Built { eif: eif_path, measurements, measurements_json, sums })
}

/// `nitro-cli build-enclave`'s output: `{"Measurements": {…}}`, pretty-printed, newline-ended.
pub fn measurements_json(m: &BTreeMap<String, String>) -> Result<String, BuildError> {
    let mut root = BTreeMap::new();
    root.insert("Measurements", m);
    let mut text =
        serde_json::to_string_pretty(&root).map_err(|e| BuildError::Measurements(e.to_string()))?;
    text.push('\n');
    Ok(text)
}
