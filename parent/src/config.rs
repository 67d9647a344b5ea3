//! Parent configuration: a TOML file, every key overridable by an environment variable.
//!
//! ```toml
//! listen = "127.0.0.1:8787"                 # SIGNER_HTTP_ADDR
//! enclave = "vsock:16:5000"                 # SIGNER_ENCLAVE   (unix:/path in simulation)
//! api_tokens = ["…"]                        # SIGNER_API_TOKEN   (one token; ≥ 16 characters)
//! admin_tokens = ["…"]                      # SIGNER_ADMIN_TOKEN (revoke and kill switch)
//! body_limit_bytes = 65536
//! enclave_timeout_ms = 10000
//! header_read_timeout_ms = 10000            # a request's headers, from when the connection waits for it
//! request_read_timeout_ms = 30000           # the whole request, body included, from the same instant
//! max_concurrent_requests = 4096            # /v1 requests handled at once; beyond, 503 at once
//! prefetch_envelopes = true                 # fetch the KMS envelope before the first request of a grant
//!
//! [kms]
//! region = "eu-west-1"                      # SIGNER_KMS_REGION (else the standard AWS chain)
//! key_id = "arn:aws:kms:…:key/…"            # SIGNER_KMS_KEY_ID: the RSA execution key
//! symmetric_key_id = "arn:aws:kms:…"        # SIGNER_KMS_SYMMETRIC_KEY_ID (optional, wrap_alg 2)
//! endpoint = "http://127.0.0.1:4566"        # SIGNER_KMS_ENDPOINT (simulation only)
//! timeout_ms = 5000                         # whole-call deadline, retries included
//! max_attempts = 4
//!
//! [attestation]
//! root = "aws"                              # SIGNER_ATTESTATION_ROOT: "aws" or a PEM file (sim root)
//! expected_pcrs = "/etc/signer/measurements.json"  # SIGNER_EXPECTED_PCRS: nitro-cli JSON
//! pin = [0, 1, 2]                           # PCRs of that file to compare (default: all)
//! refresh_seconds = 240
//! max_age_seconds = 300
//! allow_debug = false
//! ```
//!
//! Credentials come from the standard AWS chain (instance role on EC2; `AWS_ACCESS_KEY_ID` …).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signer_protocol::Endpoint;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

fn default_listen() -> String {
    "127.0.0.1:8787".into()
}
fn default_body_limit() -> usize {
    64 * 1024
}
fn default_enclave_timeout() -> u64 {
    10_000
}
fn default_header_read_timeout() -> u64 {
    10_000
}
fn default_request_read_timeout() -> u64 {
    30_000
}
fn default_max_concurrent() -> usize {
    4096
}
fn default_true() -> bool {
    true
}
fn default_kms_timeout() -> u64 {
    5_000
}
fn default_attempts() -> u32 {
    4
}
fn default_refresh() -> u64 {
    240
}
fn default_max_age() -> u64 {
    300
}
fn default_root() -> String {
    "aws".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSettings {
    pub region: Option<String>,
    pub key_id: Option<String>,
    pub symmetric_key_id: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default = "default_kms_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

impl Default for KmsSettings {
    fn default() -> Self {
        Self {
            region: None,
            key_id: None,
            symmetric_key_id: None,
            endpoint: None,
            timeout_ms: default_kms_timeout(),
            max_attempts: default_attempts(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSettings {
    #[serde(default = "default_root")]
    pub root: String,
    pub expected_pcrs: Option<PathBuf>,
    #[serde(default)]
    pub pin: Option<Vec<u8>>,
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    #[serde(default)]
    pub allow_debug: bool,
}

impl Default for AttestationSettings {
    fn default() -> Self {
        Self {
            root: default_root(),
            expected_pcrs: None,
            pin: None,
            refresh_seconds: default_refresh(),
            max_age_seconds: default_max_age(),
            allow_debug: false,
        }
    }
}

/// The file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    #[serde(default = "default_listen")]
    pub listen: String,
    pub enclave: Option<String>,
    #[serde(default)]
    pub api_tokens: Vec<String>,
    #[serde(default)]
    pub admin_tokens: Vec<String>,
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    #[serde(default = "default_enclave_timeout")]
    pub enclave_timeout_ms: u64,
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    #[serde(default = "default_request_read_timeout")]
    pub request_read_timeout_ms: u64,
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    #[serde(default = "default_true")]
    pub prefetch_envelopes: bool,
    #[serde(default)]
    pub kms: KmsSettings,
    #[serde(default)]
    pub attestation: AttestationSettings,
}

impl Default for FileSettings {
    fn default() -> Self {
        match toml::from_str("") {
            Ok(s) => s,
            Err(_) => Self {
                listen: default_listen(),
                enclave: None,
                api_tokens: vec![],
                admin_tokens: vec![],
                body_limit_bytes: default_body_limit(),
                enclave_timeout_ms: default_enclave_timeout(),
                header_read_timeout_ms: default_header_read_timeout(),
                request_read_timeout_ms: default_request_read_timeout(),
                max_concurrent_requests: default_max_concurrent(),
                prefetch_envelopes: true,
                kms: KmsSettings::default(),
                attestation: AttestationSettings::default(),
            },
        }
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub enclave: Endpoint,
    pub api_tokens: Vec<String>,
    pub admin_tokens: Vec<String>,
    pub body_limit_bytes: usize,
    pub enclave_timeout_ms: u64,
    /// How long a connection may take to send a request's headers, counted from when it starts
    /// waiting for that request (accept, or the previous response): slow or silent clients, and
    /// idle keep-alive connections, are closed after it.
    pub header_read_timeout: Duration,
    /// How long a connection may take to send a whole request, body included, counted from the
    /// same instant; a body still incomplete then is answered `408 request_timeout`.
    pub request_read_timeout: Duration,
    /// Most `/v1` requests handled at once (the probes and metrics are not counted); a request
    /// beyond it is answered `503 enclave_unavailable` at once rather than queued.
    pub max_concurrent_requests: usize,
    pub prefetch_envelopes: bool,
    pub kms: KmsSettings,
    pub kms_key_id: String,
    pub attestation: AttestationSettings,
    pub expected_pcrs: BTreeMap<u8, Vec<u8>>,
    /// PEM of the trust anchor, or `None` for the pinned AWS root.
    pub attestation_root_pem: Option<Vec<u8>>,
}

/// The environment variables that override file settings, for `--help`.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("SIGNER_HTTP_ADDR", "listen address (default 127.0.0.1:8787)"),
    ("SIGNER_ENCLAVE", "enclave endpoint: vsock:CID:PORT, or unix:/path in simulation"),
    ("SIGNER_API_TOKEN", "bearer token for the API (at least 16 characters)"),
    ("SIGNER_ADMIN_TOKEN", "bearer token for revoke and kill switch (at least 16 characters)"),
    ("SIGNER_KMS_KEY_ID", "the KMS RSA execution key (id or ARN)"),
    ("SIGNER_KMS_SYMMETRIC_KEY_ID", "optional symmetric KMS key for wrap_alg 2 grants"),
    ("SIGNER_KMS_REGION", "AWS region (else AWS_REGION / the standard chain)"),
    ("SIGNER_KMS_ENDPOINT", "KMS endpoint override (simulation only)"),
    ("SIGNER_ATTESTATION_ROOT", "\"aws\" (default) or a PEM root (the sim CA root in simulation)"),
    ("SIGNER_EXPECTED_PCRS", "nitro-cli measurement JSON with the enclave's expected PCRs"),
];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads the file (if any), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut file = match path {
            None => FileSettings::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?
            }
        };
        if let Some(v) = env("SIGNER_HTTP_ADDR") {
            file.listen = v;
        }
        if let Some(v) = env("SIGNER_ENCLAVE") {
            file.enclave = Some(v);
        }
        if let Some(v) = env("SIGNER_API_TOKEN") {
            file.api_tokens = vec![v];
        }
        if let Some(v) = env("SIGNER_ADMIN_TOKEN") {
            file.admin_tokens = vec![v];
        }
        if let Some(v) = env("SIGNER_KMS_KEY_ID") {
            file.kms.key_id = Some(v);
        }
        if let Some(v) = env("SIGNER_KMS_SYMMETRIC_KEY_ID") {
            file.kms.symmetric_key_id = Some(v);
        }
        if let Some(v) = env("SIGNER_KMS_REGION") {
            file.kms.region = Some(v);
        }
        if let Some(v) = env("SIGNER_KMS_ENDPOINT") {
            file.kms.endpoint = Some(v);
        }
        if let Some(v) = env("SIGNER_ATTESTATION_ROOT") {
            file.attestation.root = v;
        }
        if let Some(v) = env("SIGNER_EXPECTED_PCRS") {
            file.attestation.expected_pcrs = Some(PathBuf::from(v));
        }
        Self::validate(file)
    }

    fn validate(file: FileSettings) -> Result<Self, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let listen: SocketAddr = file.listen.parse().map_err(|_| {
            invalid(format!("listen `{}` is not an address like 127.0.0.1:8787", file.listen))
        })?;
        let enclave = file
            .enclave
            .as_deref()
            .ok_or_else(|| invalid("no enclave endpoint (set `enclave` or SIGNER_ENCLAVE)".into()))?
            .parse::<Endpoint>()
            .map_err(|e| invalid(e.to_string()))?;
        for (name, tokens) in [("API", &file.api_tokens), ("admin", &file.admin_tokens)] {
            if tokens.is_empty() {
                return Err(invalid(format!("no {name} token configured")));
            }
            if tokens.iter().any(|t| t.len() < 16) {
                return Err(invalid(format!("{name} tokens must be at least 16 characters")));
            }
        }
        if file.api_tokens.iter().any(|t| file.admin_tokens.contains(t)) {
            return Err(invalid("API and admin tokens must differ".into()));
        }
        if !(1024..=16 * 1024 * 1024).contains(&file.body_limit_bytes) {
            return Err(invalid("body_limit_bytes must be between 1 KiB and 16 MiB".into()));
        }
        let (header_ms, request_ms) = (file.header_read_timeout_ms, file.request_read_timeout_ms);
        if !(100..=600_000).contains(&header_ms) || !(100..=600_000).contains(&request_ms) {
            return Err(invalid(
                "header_read_timeout_ms and request_read_timeout_ms must be between 100 and 600000"
                    .into(),
            ));
        }
        if request_ms < header_ms {
            return Err(invalid(
                "request_read_timeout_ms must be at least header_read_timeout_ms (it includes the \
                 headers)"
                    .into(),
            ));
        }
        if !(1..=1_000_000).contains(&file.max_concurrent_requests) {
            return Err(invalid("max_concurrent_requests must be between 1 and 1000000".into()));
        }
        let kms_key_id =
            file.kms.key_id.clone().ok_or_else(|| {
                invalid("no KMS key (set kms.key_id or SIGNER_KMS_KEY_ID)".into())
            })?;
        let pcr_path = file.attestation.expected_pcrs.clone().ok_or_else(|| {
            invalid(
                "no expected PCRs (set attestation.expected_pcrs or SIGNER_EXPECTED_PCRS)".into(),
            )
        })?;
        let json = std::fs::read_to_string(&pcr_path).map_err(|e| ConfigError::File {
            path: pcr_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut expected_pcrs =
            nitro_attestation::policy::pcrs_from_measurements_json(&json).map_err(|e| {
                ConfigError::File { path: pcr_path.display().to_string(), reason: e.to_string() }
            })?;
        if let Some(pin) = &file.attestation.pin {
            for index in pin {
                if !expected_pcrs.contains_key(index) {
                    return Err(invalid(format!(
                        "attestation.pin names PCR{index}, which {} does not contain",
                        pcr_path.display()
                    )));
                }
            }
            expected_pcrs.retain(|i, _| pin.contains(i));
        }
        if !expected_pcrs.contains_key(&0) {
            return Err(invalid("the expected PCRs must include PCR0".into()));
        }
        if file.attestation.refresh_seconds == 0
            || file.attestation.refresh_seconds >= file.attestation.max_age_seconds
        {
            return Err(invalid(
                "attestation.refresh_seconds must be positive and below max_age_seconds".into(),
            ));
        }
        let attestation_root_pem = match file.attestation.root.as_str() {
            "aws" => None,
            path => Some(
                std::fs::read(path)
                    .map_err(|e| ConfigError::File { path: path.into(), reason: e.to_string() })?,
            ),
        };
        Ok(Self {
            listen,
            enclave,
            api_tokens: file.api_tokens,
            admin_tokens: file.admin_tokens,
            body_limit_bytes: file.body_limit_bytes,
            enclave_timeout_ms: file.enclave_timeout_ms,
            header_read_timeout: Duration::from_millis(header_ms),
            request_read_timeout: Duration::from_millis(request_ms),
            max_concurrent_requests: file.max_concurrent_requests,
            prefetch_envelopes: file.prefetch_envelopes,
            kms_key_id,
            kms: file.kms,
            attestation: file.attestation,
            expected_pcrs,
            attestation_root_pem,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    fn file(extra: &str) -> FileSettings {
        let dir = std::env::temp_dir().join(format!("signer-parent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pcrs: BTreeMap<u8, Vec<u8>> = (0u8..3).map(|i| (i, vec![i; 48])).collect();
        let path = dir.join("measurements.json");
        std::fs::write(&path, nitro_attestation::policy::measurements_json(&pcrs)).unwrap();
        let text = format!(
            "enclave = \"unix:/tmp/none.sock\"\napi_tokens = [\"api-token-0123456789\"]\n\
             admin_tokens = [\"admin-token-0123456789\"]\n{extra}\n[kms]\nkey_id = \"k\"\n\
             [attestation]\nexpected_pcrs = \"{}\"\n",
            path.display()
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn http_read_timeouts_default_to_10_and_30_seconds_and_are_validated() {
        let s = Settings::validate(file("")).unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.request_read_timeout, Duration::from_secs(30));
        let s = Settings::validate(file(
            "header_read_timeout_ms = 1500\nrequest_read_timeout_ms = 2500",
        ))
        .unwrap();
        assert_eq!(
            (s.header_read_timeout, s.request_read_timeout),
            (Duration::from_millis(1500), Duration::from_millis(2500))
        );
        for bad in [
            "header_read_timeout_ms = 0",
            "request_read_timeout_ms = 700000",
            "header_read_timeout_ms = 5000\nrequest_read_timeout_ms = 4000",
        ] {
            let e = Settings::validate(file(bad)).unwrap_err().to_string();
            assert!(e.contains("timeout_ms"), "{bad}: {e}");
        }
    }
}
