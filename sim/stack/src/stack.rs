//! The simulation stack: kms-sim, the enclave (sim NSM, Unix socket) and the parent, wired the
//! way a real deployment is.
//!
//! 1. A sim CA in the data directory (its root is what the parent and kms-sim trust).
//! 2. kms-sim; on first run an `RSA_3072` execution key is created and remembered.
//! 3. The enclave's measured config is written with that key's public key; `signer-enclave
//!    measure` gives the PCRs; `attest key-policy` writes a key policy pinned to them, which is
//!    applied with `PutKeyPolicy`.
//! 4. The enclave, then the parent (expected PCRs = the measurements), until `/readyz` is 200.
//!
//! Data directory layout: `sim-ca.pem`, `sim-root.pem`, `kms/keys.json`, `kms-key.json`,
//! `enclave.toml`, `measurements.json`, `key-policy.json`, `parent.toml`, `tokens.json`,
//! `run/enclave.sock`, `logs/*.log`. Everything but the sockets and logs persists across runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use enclave_core::SecureRandom;
use serde::{Deserialize, Serialize};
use signer_enclave::config::{AuthorizationConfig, FileConfig};

use crate::StackError;
use crate::client::Api;
use crate::process::{Proc, binary, wait_until};

/// Where the simulation's authorization messages are valid (the enclave's measured config).
pub const SIM_DOMAIN: &str = "localhost";
pub const SIM_URI: &str = "http://localhost";
pub const SIM_CHAIN_ID: &str = "localnet";

/// The principal kms-sim attributes every call to (and the key policy names).
pub const CALLER_ARN: &str = "arn:aws:iam::111122223333:role/signer-parent";
const REGION: &str = "us-east-1";

/// How to run the stack.
#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub kms_addr: SocketAddr,
    pub api_token: Option<String>,
    pub admin_token: Option<String>,
    pub prefetch_envelopes: bool,
    /// `RUST_LOG` for the daemons.
    pub log_level: String,
}

impl Options {
    /// From `SIGNER_DATA_DIR`, `SIGNER_HTTP_ADDR`, `SIGNER_KMS_ADDR`, `SIGNER_API_TOKEN`,
    /// `SIGNER_ADMIN_TOKEN` (defaults: `./.sim-data`, 127.0.0.1:8787, 127.0.0.1:4566, generated).
    pub fn from_env() -> Result<Self, StackError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let addr = |n: &str, default: &str| -> Result<SocketAddr, StackError> {
            let v = var(n).unwrap_or_else(|| default.to_string());
            v.parse().map_err(|_| {
                StackError::Setup(format!("{n}={v} is not an address like 127.0.0.1:8787"))
            })
        };
        Ok(Self {
            data_dir: var("SIGNER_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".sim-data")),
            http_addr: addr("SIGNER_HTTP_ADDR", "127.0.0.1:8787")?,
            kms_addr: addr("SIGNER_KMS_ADDR", "127.0.0.1:4566")?,
            api_token: var("SIGNER_API_TOKEN"),
            admin_token: var("SIGNER_ADMIN_TOKEN"),
            prefetch_envelopes: true,
            log_level: var("RUST_LOG").unwrap_or_else(|| "info".into()),
        })
    }

    /// Options for tests: a fresh directory and free ports.
    pub fn for_test(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            http_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            kms_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            api_token: Some("test-api-token-0123456789".into()),
            admin_token: Some("test-admin-token-0123456789".into()),
            prefetch_envelopes: true,
            log_level: "info,signer_enclave=debug,signer_parent=debug".into(),
        }
    }
}

/// A free TCP port on 127.0.0.1 (best effort).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Files in the data directory.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub sim_ca: PathBuf,
    pub sim_root: PathBuf,
    pub kms_dir: PathBuf,
    pub kms_key: PathBuf,
    pub enclave_config: PathBuf,
    pub measurements: PathBuf,
    pub key_policy: PathBuf,
    pub parent_config: PathBuf,
    pub tokens: PathBuf,
    pub socket: PathBuf,
    pub logs: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            sim_ca: root.join("sim-ca.pem"),
            sim_root: root.join("sim-root.pem"),
            kms_dir: root.join("kms"),
            kms_key: root.join("kms-key.json"),
            enclave_config: root.join("enclave.toml"),
            measurements: root.join("measurements.json"),
            key_policy: root.join("key-policy.json"),
            parent_config: root.join("parent.toml"),
            tokens: root.join("tokens.json"),
            socket: root.join("run/enclave.sock"),
            logs: root.join("logs"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Tokens {
    api: String,
    admin: String,
}

#[derive(Serialize, Deserialize)]
struct KmsKeyFile {
    key_arn: String,
}

/// A running stack. Dropping it kills every process.
pub struct Stack {
    pub options: Options,
    pub paths: Paths,
    /// `None` while stopped by [`Stack::stop_kms`].
    pub kms: Option<Proc>,
    pub enclave: Option<Proc>,
    pub parent: Option<Proc>,
    pub key_arn: String,
    pub api_token: String,
    pub admin_token: String,
    runtime: tokio::runtime::Runtime,
    kms_client: aws_sdk_kms::Client,
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StackError + '_ {
    move |e| StackError::Setup(format!("{what}: {e}"))
}

/// Maps a KMS SDK error to a setup error naming the operation, with the whole cause chain.
fn kms_failed<E: std::error::Error>(operation: &str) -> impl FnOnce(E) -> StackError + '_ {
    move |e| {
        StackError::Setup(format!("{operation}: {}", aws_sdk_kms::error::DisplayErrorContext(e)))
    }
}

fn random_token() -> Result<String, StackError> {
    let mut b = [0u8; 24];
    enclave_core::OsRandom.fill(&mut b).map_err(setup("random token"))?;
    Ok(hex::encode(b))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), StackError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| StackError::Setup(format!("{}: {e}", path.display())))
}

impl Stack {
    /// Starts everything; returns once `/readyz` is 200.
    pub fn start(options: Options) -> Result<Self, StackError> {
        let mut stack = Self::prepare(options)?;
        stack.start_enclave()?;
        stack.start_parent()?;
        stack.wait_ready(Duration::from_secs(60))?;
        Ok(stack)
    }

    /// Everything but the enclave and the parent: the sim CA, kms-sim with the execution key,
    /// the measured config, the measurements and the key policy (what a cluster's members share).
    pub fn prepare(options: Options) -> Result<Self, StackError> {
        let paths = Paths::new(&options.data_dir);
        for dir in [&paths.root, &paths.kms_dir, &paths.logs] {
            std::fs::create_dir_all(dir).map_err(|e| {
                StackError::Setup(format!(
                    "cannot use {} as a data directory ({e}); set SIGNER_DATA_DIR to a writable directory",
                    dir.display()
                ))
            })?;
        }
        let _ = std::fs::remove_file(&paths.socket);
        let (api_token, admin_token) = Self::tokens(&options, &paths)?;

        // 1. The sim CA (the enclave loads the same file).
        let ca = nitro_attestation::sim::SimCa::load_or_create(
            &paths.sim_ca,
            &mut rand::rng(),
            SystemTime::now(),
        )
        .map_err(setup("sim CA"))?;
        std::fs::write(&paths.sim_root, ca.root_pem()).map_err(setup("sim root"))?;

        // 2. kms-sim.
        let kms = spawn_kms(&options, &paths)?;
        let kms_url = format!("http://{}", options.kms_addr);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(setup("runtime"))?;
        let kms_client = {
            let config = aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new(REGION))
                .endpoint_url(&kms_url)
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    "sim",
                    "sim",
                    None,
                    None,
                    "signer-sim",
                ))
                .build();
            aws_sdk_kms::Client::from_conf(config)
        };
        let mut stack = Self {
            options,
            paths,
            kms: Some(kms),
            enclave: None,
            parent: None,
            key_arn: String::new(),
            api_token,
            admin_token,
            runtime,
            kms_client,
        };
        stack.key_arn = stack.ensure_key()?;

        // 3. Measured config, measurements, key policy.
        stack.write_enclave_config(|_| {})?;
        stack.measure()?;
        stack.apply_key_policy()?;
        Ok(stack)
    }

    fn tokens(options: &Options, paths: &Paths) -> Result<(String, String), StackError> {
        let saved: Option<Tokens> =
            std::fs::read(&paths.tokens).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let api = match (&options.api_token, &saved) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => s.api.clone(),
            (None, None) => random_token()?,
        };
        let admin = match (&options.admin_token, &saved) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => s.admin.clone(),
            (None, None) => random_token()?,
        };
        if api.len() < 16 || admin.len() < 16 || api == admin {
            return Err(StackError::Setup(
                "SIGNER_API_TOKEN and SIGNER_ADMIN_TOKEN must differ and be at least 16 characters"
                    .into(),
            ));
        }
        let json = serde_json::to_vec_pretty(&Tokens { api: api.clone(), admin: admin.clone() })
            .map_err(setup("tokens"))?;
        write_private(&paths.tokens, &json)?;
        Ok((api, admin))
    }

    /// The execution key: reused from an earlier run if kms-sim still has it, else created.
    fn ensure_key(&self) -> Result<String, StackError> {
        let saved: Option<KmsKeyFile> =
            std::fs::read(&self.paths.kms_key).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(saved) = saved {
            let exists = self
                .runtime
                .block_on(self.kms_client.describe_key().key_id(&saved.key_arn).send())
                .is_ok();
            if exists {
                return Ok(saved.key_arn);
            }
        }
        let created = self
            .runtime
            .block_on(
                self.kms_client
                    .create_key()
                    .key_spec(KeySpec::Rsa3072)
                    .key_usage(KeyUsageType::EncryptDecrypt)
                    .description("signer-sim execution key")
                    .send(),
            )
            .map_err(kms_failed("CreateKey"))?;
        let arn = created
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| StackError::Setup("CreateKey returned no ARN".into()))?
            .to_string();
        let json = serde_json::to_vec_pretty(&KmsKeyFile { key_arn: arn.clone() })
            .map_err(setup("kms-key.json"))?;
        std::fs::write(&self.paths.kms_key, json).map_err(setup("kms-key.json"))?;
        Ok(arn)
    }

    /// The execution key's SPKI DER.
    pub fn kms_public_key(&self) -> Result<Vec<u8>, StackError> {
        let out = self
            .runtime
            .block_on(self.kms_client.get_public_key().key_id(&self.key_arn).send())
            .map_err(kms_failed("GetPublicKey"))?;
        Ok(out.public_key().map(|b| b.as_ref().to_vec()).unwrap_or_default())
    }

    /// Writes the enclave's measured config around the KMS public key; `edit` may change it
    /// (a different config is a different image: different PCR0).
    pub fn write_enclave_config(
        &self,
        edit: impl FnOnce(&mut FileConfig),
    ) -> Result<(), StackError> {
        self.write_enclave_config_to(&self.paths.enclave_config, edit)
    }

    /// The measured config, edited, written to `path` (another image: its own PCR0).
    pub fn write_enclave_config_to(
        &self,
        path: &Path,
        edit: impl FnOnce(&mut FileConfig),
    ) -> Result<(), StackError> {
        let mut config = FileConfig::new(
            &self.kms_public_key()?,
            Some(self.key_arn.clone()),
            AuthorizationConfig {
                domain: SIM_DOMAIN.into(),
                uri: SIM_URI.into(),
                chain_id: SIM_CHAIN_ID.into(),
                validity_seconds: 600,
                tokens: sim_registry().tokens,
                programs: sim_registry().programs,
            },
        );
        config.max_in_flight = 8192;
        edit(&mut config);
        let text = config.to_toml().map_err(setup("enclave config"))?;
        std::fs::write(path, text).map_err(setup("enclave.toml"))
    }

    /// `signer-enclave measure` → `measurements.json` (what the parent expects).
    pub fn measure(&self) -> Result<(), StackError> {
        self.measure_to(&self.paths.enclave_config, &self.paths.measurements)
    }

    /// An image that succeeds this stack's (another measured config, so another PCR0: a longer
    /// `max_grant_ttl_seconds`), naming the stack's image as its predecessor, written and
    /// measured as `enclave-v2.toml` and `measurements-v2.json`; their paths.
    pub fn write_successor_image(&self) -> Result<(PathBuf, PathBuf), StackError> {
        let config = self.paths.root.join("enclave-v2.toml");
        let measurements = self.paths.root.join("measurements-v2.json");
        let current =
            std::fs::read_to_string(&self.paths.measurements).map_err(setup("measurements"))?;
        let image: std::collections::BTreeMap<String, String> =
            nitro_attestation::policy::pcrs_from_measurements_json(&current)
                .map_err(setup("measurements"))?
                .into_iter()
                .filter(|(i, _)| *i < 3)
                .map(|(i, v)| (format!("PCR{i}"), hex::encode(v)))
                .collect();
        self.write_enclave_config_to(&config, |c| {
            c.max_grant_ttl_seconds = 7200;
            c.predecessors = vec![image];
        })?;
        self.measure_to(&config, &measurements)?;
        Ok((config, measurements))
    }

    /// `signer-enclave measure --config <config>` → `out` (nitro-cli measurement JSON).
    pub fn measure_to(&self, config: &Path, out_path: &Path) -> Result<(), StackError> {
        let out = Command::new(binary("signer-enclave")?)
            .args(["measure", "--config"])
            .arg(config)
            .output()
            .map_err(setup("signer-enclave measure"))?;
        if !out.status.success() {
            return Err(StackError::Setup(format!(
                "signer-enclave measure: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        std::fs::write(out_path, &out.stdout).map_err(setup("measurements.json"))
    }

    /// `attest key-policy` from the current measurements → `key-policy.json` → `PutKeyPolicy`.
    pub fn apply_key_policy(&self) -> Result<(), StackError> {
        self.apply_key_policy_for(std::slice::from_ref(&self.paths.measurements))
    }

    /// A key policy admitting every image in `measurements` (an upgrade admits old and new).
    pub fn apply_key_policy_for(&self, measurements: &[PathBuf]) -> Result<(), StackError> {
        let mut command = Command::new(binary("attest")?);
        command.args(["key-policy", "--role-arn", CALLER_ARN, "--pin", "0,1,2"]);
        for m in measurements {
            command.arg("--pcrs").arg(m);
        }
        let out = command.output().map_err(setup("attest key-policy"))?;
        if !out.status.success() {
            return Err(StackError::Setup(format!(
                "attest key-policy: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        std::fs::write(&self.paths.key_policy, &out.stdout).map_err(setup("key-policy.json"))?;
        let policy = String::from_utf8_lossy(&out.stdout).into_owned();
        self.runtime
            .block_on(
                self.kms_client
                    .put_key_policy()
                    .key_id(&self.key_arn)
                    .policy_name("default")
                    .policy(policy)
                    .send(),
            )
            .map_err(kms_failed("PutKeyPolicy"))?;
        Ok(())
    }

    /// Creates a `SYMMETRIC_DEFAULT` key with the same attested policy (plus `kms:Encrypt` for
    /// the caller), for backend-made grants (wrap_alg 2). Returns its ARN.
    pub fn create_symmetric_key(&self) -> Result<String, StackError> {
        let created = self
            .runtime
            .block_on(
                self.kms_client
                    .create_key()
                    .key_spec(KeySpec::SymmetricDefault)
                    .description("signer-sim grant key")
                    .send(),
            )
            .map_err(kms_failed("CreateKey"))?;
        let arn = created.key_metadata().and_then(|m| m.arn()).unwrap_or_default().to_string();
        let out = Command::new(binary("attest")?)
            .args([
                "key-policy",
                "--role-arn",
                CALLER_ARN,
                "--encrypt-role-arn",
                CALLER_ARN,
                "--pin",
                "0,1,2",
                "--pcrs",
            ])
            .arg(&self.paths.measurements)
            .output()
            .map_err(setup("attest key-policy"))?;
        let policy = String::from_utf8_lossy(&out.stdout).into_owned();
        self.runtime
            .block_on(self.kms_client.put_key_policy().key_id(&arn).policy(policy).send())
            .map_err(kms_failed("PutKeyPolicy"))?;
        Ok(arn)
    }

    /// `Encrypt` under `key` with one encryption-context pair (what a backend does for a
    /// wrap_alg 2 grant).
    pub fn kms_encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        context: (&str, &str),
    ) -> Result<Vec<u8>, StackError> {
        let out = self
            .runtime
            .block_on(
                self.kms_client
                    .encrypt()
                    .key_id(key)
                    .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext.to_vec()))
                    .encryption_context(context.0, context.1)
                    .send(),
            )
            .map_err(kms_failed("Encrypt"))?;
        Ok(out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default())
    }

    /// Disables or enables the execution key in kms-sim (the hard stop).
    pub fn set_key_enabled(&self, enabled: bool) -> Result<(), StackError> {
        if enabled {
            self.runtime
                .block_on(self.kms_client.enable_key().key_id(&self.key_arn).send())
                .map_err(kms_failed("EnableKey"))?;
        } else {
            self.runtime
                .block_on(self.kms_client.disable_key().key_id(&self.key_arn).send())
                .map_err(kms_failed("DisableKey"))?;
        }
        Ok(())
    }

    /// Starts kms-sim again (same address and data directory, so the same keys).
    pub fn start_kms(&mut self) -> Result<(), StackError> {
        if self.kms.is_none() {
            self.kms = Some(spawn_kms(&self.options, &self.paths)?);
        }
        Ok(())
    }

    /// Stops kms-sim (KMS unreachable until [`Stack::start_kms`]).
    pub fn stop_kms(&mut self) {
        if let Some(mut p) = self.kms.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    pub fn start_enclave(&mut self) -> Result<(), StackError> {
        let _ = std::fs::remove_file(&self.paths.socket);
        let enclave =
            self.spawn_enclave(&self.paths.socket, &self.paths.enclave_config, "enclave")?;
        self.enclave = Some(enclave);
        Ok(())
    }

    /// Starts an enclave process with `config` listening on `socket` (another instance: a
    /// handover successor, or a second instance behind the same KMS key); waits for its socket.
    pub fn spawn_enclave(
        &self,
        socket: &Path,
        config: &Path,
        name: &str,
    ) -> Result<Proc, StackError> {
        let mut enclave = self.spawn_enclave_unready(socket, config, name)?;
        let socket = socket.to_path_buf();
        wait_until(&mut enclave, Duration::from_secs(60), "the enclave socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        })?;
        Ok(enclave)
    }

    /// Like [`Stack::spawn_enclave`], but returns as soon as the process runs, before it
    /// listens (what a handover started right after the successor meets).
    pub fn spawn_enclave_unready(
        &self,
        socket: &Path,
        config: &Path,
        name: &str,
    ) -> Result<Proc, StackError> {
        let mut command = Command::new(binary("signer-enclave")?);
        command
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(["--nsm", "sim", "--config"])
            .arg(config)
            .arg("--sim-ca")
            .arg(&self.paths.sim_ca)
            .env("RUST_LOG", &self.options.log_level);
        Proc::spawn("signer-enclave", command, &self.paths.logs.join(format!("{name}.log")))
    }

    /// A second instance behind the same KMS key (SPEC §13): its own enclave (same image) on
    /// `run/<name>.sock` and its own parent on `http_addr`.
    pub fn spawn_instance(
        &self,
        name: &str,
        http_addr: SocketAddr,
    ) -> Result<(Proc, Proc, Api), StackError> {
        let socket = self.paths.root.join(format!("run/{name}.sock"));
        let _ = std::fs::remove_file(&socket);
        let enclave =
            self.spawn_enclave(&socket, &self.paths.enclave_config, &format!("{name}-enclave"))?;
        let mut parent = self.spawn_parent(&socket, http_addr, &format!("{name}-parent"))?;
        let api = Api::new(format!("http://{http_addr}"), self.api_token.clone());
        wait_until(&mut parent, Duration::from_secs(60), "the second parent to be ready", || {
            api.get("/readyz").is_ok_and(|r| r.status == 200)
        })?;
        Ok((enclave, parent, api))
    }

    /// SIGTERM to the enclave (graceful).
    pub fn stop_enclave(&mut self) -> Option<std::process::ExitStatus> {
        self.enclave.take().and_then(|mut p| p.stop(Duration::from_secs(15)))
    }

    /// SIGKILL to the enclave (a crash).
    pub fn kill_enclave(&mut self) {
        if let Some(mut p) = self.enclave.take() {
            p.kill();
        }
    }

    pub fn start_parent(&mut self) -> Result<(), StackError> {
        let mut parent = self.spawn_parent(&self.paths.socket, self.options.http_addr, "parent")?;
        let api = self.api();
        wait_until(&mut parent, Duration::from_secs(30), "the parent to answer /healthz", || {
            api.get("/healthz").is_ok_and(|r| r.status == 200)
        })?;
        self.parent = Some(parent);
        Ok(())
    }

    /// Starts a parent for the enclave on `socket`, serving `http_addr`.
    pub fn spawn_parent(
        &self,
        socket: &Path,
        http_addr: SocketAddr,
        name: &str,
    ) -> Result<Proc, StackError> {
        self.spawn_parent_expecting(socket, http_addr, name, &self.paths.measurements)
    }

    /// [`Stack::spawn_parent`] for an enclave of the image `measurements` describes (a host
    /// after an upgrade: its parent expects the new image).
    pub fn spawn_parent_expecting(
        &self,
        socket: &Path,
        http_addr: SocketAddr,
        name: &str,
        measurements: &Path,
    ) -> Result<Proc, StackError> {
        std::fs::write(
            &self.paths.parent_config,
            format!("prefetch_envelopes = {}\n", self.options.prefetch_envelopes),
        )
        .map_err(setup("parent.toml"))?;
        let mut command = Command::new(binary("signer-parent")?);
        command
            .arg("--config")
            .arg(&self.paths.parent_config)
            .env("SIGNER_HTTP_ADDR", http_addr.to_string())
            .env("SIGNER_ENCLAVE", format!("unix:{}", socket.display()))
            .env("SIGNER_API_TOKEN", &self.api_token)
            .env("SIGNER_ADMIN_TOKEN", &self.admin_token)
            .env("SIGNER_KMS_KEY_ID", &self.key_arn)
            .env("SIGNER_KMS_ENDPOINT", format!("http://{}", self.options.kms_addr))
            .env("SIGNER_KMS_REGION", REGION)
            .env("SIGNER_ATTESTATION_ROOT", &self.paths.sim_root)
            .env("SIGNER_EXPECTED_PCRS", measurements)
            .env("AWS_ACCESS_KEY_ID", "sim")
            .env("AWS_SECRET_ACCESS_KEY", "sim")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("RUST_LOG", &self.options.log_level);
        Proc::spawn("signer-parent", command, &self.paths.logs.join(format!("{name}.log")))
    }

    pub fn stop_parent(&mut self) -> Option<std::process::ExitStatus> {
        self.parent.take().and_then(|mut p| p.stop(Duration::from_secs(15)))
    }

    pub fn kill_parent(&mut self) {
        if let Some(mut p) = self.parent.take() {
            p.kill();
        }
    }

    /// Waits until `/readyz` answers 200 (enclave attested and reachable, KMS reachable).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), StackError> {
        let api = self.api();
        let parent = self
            .parent
            .as_mut()
            .ok_or_else(|| StackError::Setup("the parent is not running".into()))?;
        let mut last = String::new();
        wait_until(parent, timeout, "/readyz to be 200", || match api.get("/readyz") {
            Ok(r) if r.status == 200 => true,
            Ok(r) => {
                last = r.body.to_string();
                false
            }
            Err(e) => {
                last = e;
                false
            }
        })
        .map_err(|e| match e {
            StackError::Timeout { what, log } => {
                StackError::Timeout { what: format!("{what} (last: {last})"), log }
            }
            other => other,
        })
    }

    /// The parent's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.options.http_addr)
    }

    /// An API client with the API token.
    pub fn api(&self) -> Api {
        Api::new(self.base_url(), self.api_token.clone())
    }

    /// An API client with the admin token.
    pub fn admin(&self) -> Api {
        Api::new(self.base_url(), self.admin_token.clone())
    }

    /// Stops everything gracefully (parent, enclave, kms-sim).
    pub fn shutdown(mut self) {
        self.stop_parent();
        self.stop_enclave();
        self.stop_kms();
    }

    /// What provenance documents of this stack's enclave verify against: the sim root and the
    /// measured image.
    pub fn trust(&self) -> Result<crate::demo::Trust, StackError> {
        let root = std::fs::read(&self.paths.sim_root).map_err(setup("sim root"))?;
        let anchor = nitro_attestation::TrustAnchor::from_pem(&root).map_err(setup("sim root"))?;
        let json =
            std::fs::read_to_string(&self.paths.measurements).map_err(setup("measurements"))?;
        let image = nitro_attestation::policy::pcrs_from_measurements_json(&json)
            .map_err(setup("measurements"))?
            .into_iter()
            .filter(|(i, _)| [0, 1, 2].contains(i))
            .collect();
        Ok(crate::demo::Trust { anchor, image })
    }

    /// Sends a KMS-emulator fault instruction (`/_sim/fault`).
    pub fn kms_fault(&self, fault: &str, delay_ms: u64) -> Result<(), StackError> {
        let api = Api::new(format!("http://{}", self.options.kms_addr), "");
        let r = api
            .post("/_sim/fault", &serde_json::json!({"fault": fault, "delay_ms": delay_ms}))
            .map_err(StackError::Setup)?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(StackError::Setup(format!("kms fault: {}", r.body)))
        }
    }
}

/// Starts kms-sim and waits until it answers.
fn spawn_kms(options: &Options, paths: &Paths) -> Result<Proc, StackError> {
    let mut command = Command::new(binary("kms-sim")?);
    command
        .args([
            "--listen",
            &options.kms_addr.to_string(),
            "--caller-arn",
            CALLER_ARN,
            "--region",
            REGION,
        ])
        .arg("--data-dir")
        .arg(&paths.kms_dir)
        .arg("--attestation-root")
        .arg(&paths.sim_root)
        .env("RUST_LOG", &options.log_level);
    let mut kms = Proc::spawn("kms-sim", command, &paths.logs.join("kms-sim.log"))?;
    let health = Api::new(format!("http://{}", options.kms_addr), "");
    wait_until(&mut kms, Duration::from_secs(30), "kms-sim to answer", || {
        health.get("/_sim/health").is_ok_and(|r| r.status == 200)
    })?;
    Ok(kms)
}

/// The simulation's registry: two stablecoins and a swap program by their mainnet addresses, so
/// messages read in real units.
pub fn sim_registry() -> enclave_core::policy::Registry {
    use enclave_core::policy::{KnownProgram, KnownToken, Registry};
    let key = |s: &str| s.parse().unwrap_or_default();
    Registry {
        tokens: vec![
            KnownToken {
                mint: key("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
                symbol: "USDC".into(),
                decimals: 6,
            },
            KnownToken {
                mint: key("Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"),
                symbol: "USDT".into(),
                decimals: 6,
            },
        ],
        programs: vec![KnownProgram {
            id: key("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"),
            name: "Jupiter v6".into(),
        }],
    }
}
