//! The measured configuration (TOML), baked into the enclave image so PCR0 covers it.
//!
//! ```toml
//! kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/…"   # informational
//! kms_public_key = "MIIBojANBgkqhkiG9w0BAQEFAAOCAY8AMIIBigKCAYEA…" # base64 SPKI DER (RSA 3072/4096)
//! max_grant_ttl_seconds = 3600          # 60..=86400
//! max_schedule_window_seconds = 172800
//! request_store_capacity = 1000000
//! schedule_store_capacity = 100000
//! grant_cache_capacity = 100000
//! revocation_capacity = 100000
//! recipient_key_bits = 2048             # 2048, 3072 or 4096
//! max_connections = 64
//! max_in_flight = 4096
//! ```
//!
//! Unknown keys are refused (a typo must not silently fall back to a default). The file is at
//! most 64 KiB.

use std::path::Path;

use base64::Engine as _;
use enclave_core::enclave::{EnclaveConfig, MIN_MAX_GRANT_TTL};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config: {0}")]
    Invalid(String),
}

fn default_ttl() -> u64 {
    enclave_core::enclave::DEFAULT_MAX_GRANT_TTL
}
fn default_window() -> u64 {
    enclave_core::enclave::DEFAULT_MAX_SCHEDULE_WINDOW
}
fn default_requests() -> usize {
    enclave_core::enclave::DEFAULT_REQUEST_STORE_CAPACITY
}
fn default_100k() -> usize {
    100_000
}
fn default_bits() -> usize {
    2048
}
fn default_connections() -> usize {
    64
}
fn default_in_flight() -> usize {
    4096
}

/// The file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Base64 (standard) SubjectPublicKeyInfo DER of the KMS RSA key.
    pub kms_public_key: String,
    #[serde(default = "default_ttl")]
    pub max_grant_ttl_seconds: u64,
    #[serde(default = "default_window")]
    pub max_schedule_window_seconds: u64,
    #[serde(default = "default_requests")]
    pub request_store_capacity: usize,
    #[serde(default = "default_100k")]
    pub schedule_store_capacity: usize,
    #[serde(default = "default_100k")]
    pub grant_cache_capacity: usize,
    #[serde(default = "default_100k")]
    pub revocation_capacity: usize,
    #[serde(default = "default_bits")]
    pub recipient_key_bits: usize,
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

/// A loaded, validated configuration with the exact bytes it came from (they are measured).
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub file: FileConfig,
    pub bytes: Vec<u8>,
    pub core: EnclaveConfig,
}

impl FileConfig {
    /// A config around a KMS public key (SPKI DER), everything else default.
    pub fn new(kms_public_key_der: &[u8], kms_key_id: Option<String>) -> Self {
        Self {
            kms_key_id,
            kms_public_key: base64::engine::general_purpose::STANDARD.encode(kms_public_key_der),
            max_grant_ttl_seconds: default_ttl(),
            max_schedule_window_seconds: default_window(),
            request_store_capacity: default_requests(),
            schedule_store_capacity: default_100k(),
            grant_cache_capacity: default_100k(),
            revocation_capacity: default_100k(),
            recipient_key_bits: default_bits(),
            max_connections: default_connections(),
            max_in_flight: default_in_flight(),
        }
    }

    /// TOML text, with a header comment.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let body = toml::to_string(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(format!(
            "# Measured enclave configuration: baked into the enclave image, so PCR0 covers it.\n{body}"
        ))
    }
}

pub const MAX_CONFIG_LEN: usize = 64 * 1024;

/// Parses and validates config bytes.
pub fn parse(bytes: &[u8]) -> Result<LoadedConfig, ConfigError> {
    if bytes.len() > MAX_CONFIG_LEN {
        return Err(ConfigError::Invalid(format!(
            "{} bytes; at most {MAX_CONFIG_LEN}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::Invalid("not UTF-8".into()))?;
    let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(file.kms_public_key.trim())
        .map_err(|e| ConfigError::Invalid(format!("kms_public_key is not base64: {e}")))?;
    let mut core = EnclaveConfig::new(&der).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if !(MIN_MAX_GRANT_TTL..=86_400).contains(&file.max_grant_ttl_seconds) {
        return Err(ConfigError::Invalid(format!(
            "max_grant_ttl_seconds {} must be between {MIN_MAX_GRANT_TTL} and 86400",
            file.max_grant_ttl_seconds
        )));
    }
    if ![2048, 3072, 4096].contains(&file.recipient_key_bits) {
        return Err(ConfigError::Invalid(format!(
            "recipient_key_bits {} must be 2048, 3072 or 4096",
            file.recipient_key_bits
        )));
    }
    for (name, value) in [
        ("request_store_capacity", file.request_store_capacity),
        ("schedule_store_capacity", file.schedule_store_capacity),
        ("grant_cache_capacity", file.grant_cache_capacity),
        ("revocation_capacity", file.revocation_capacity),
        ("max_connections", file.max_connections),
        ("max_in_flight", file.max_in_flight),
    ] {
        if value == 0 {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
    }
    core.max_grant_ttl = file.max_grant_ttl_seconds;
    core.max_schedule_window = file.max_schedule_window_seconds;
    core.request_store_capacity = file.request_store_capacity;
    core.schedule_store_capacity = file.schedule_store_capacity;
    core.grant_cache_capacity = file.grant_cache_capacity;
    core.revocation_capacity = file.revocation_capacity;
    Ok(LoadedConfig { file, bytes: bytes.to_vec(), core })
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let read_err = |reason: String| ConfigError::Read { path: path.display().to_string(), reason };
    let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
    if meta.len() > MAX_CONFIG_LEN as u64 {
        return Err(read_err(format!("{} bytes; at most {MAX_CONFIG_LEN}", meta.len())));
    }
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    parse(&bytes).map_err(|e| read_err(e.to_string()))
}
