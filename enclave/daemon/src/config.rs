//! The measured configuration (TOML), baked into the enclave image so PCR0 covers it.
//!
//! ```toml
//! kms_key_id = "arn:aws:kms:eu-west-1:111122223333:key/…"   # informational
//! kms_public_key = "MIIBojANBgkqhkiG9w0BAQEFAAOCAY8AMIIBigKCAYEA…" # base64 SPKI DER (RSA 3072/4096)
//! max_grant_ttl_seconds = 3600          # 60..=2592000 (30 days; long lifetimes are for clusters)
//! max_schedule_window_seconds = 172800  # longest [not_before, not_after] of a scheduled record
//! max_schedule_horizon_seconds = 2592000 # longest created_at → not_after of a scheduled record
//! clock_skew_seconds = 60               # how far ahead of this clock a record or message may be
//! request_store_capacity = 1000000
//! schedule_store_capacity = 100000
//! grant_cache_capacity = 100000
//! revocation_capacity = 100000
//! nonce_store_capacity = 100000           # nonces issued in messages, until they expire
//! spend_counter_capacity = 250000        # (wallet, bot, agent) counters; ~580 B each
//! spend_counters_per_wallet = 1024       # one wallet's counters
//! vault_cache_capacity = 10000
//! vault_cache_seconds = 600
//! receipt_ring_capacity = 65536         # receipts kept for GET /v1/receipts, in a buffer of
//!                                       # 512 B per receipt (32 MiB; larger receipts take the
//!                                       # room of several; 0 keeps none: answers still carry theirs)
//! recipient_key_bits = 2048             # 2048, 3072 or 4096
//! max_connections = 64
//! max_in_flight = 4096
//!
//! [authorization]                       # where users' signed messages are valid (SPEC §15)
//! domain = "app.example.com"            # the origin the wallet checks
//! uri = "https://app.example.com"
//! chain_id = "mainnet"                  # mainnet | devnet | testnet | localnet | solana:…
//! validity_seconds = 600                # Expiration Time − Issued At, at most 600
//!
//! [[predecessors]]                      # images this one succeeds (upgrades): nitro-cli PCRs
//! PCR0 = "…"                            # required (the image hash); PCR1, PCR2 compared when listed
//! PCR1 = "…"
//! PCR2 = "…"
//! ```
//!
//! Unknown keys are refused (a typo must not silently fall back to a default). The file is at
//! most 64 KiB.

use std::path::Path;

use std::collections::BTreeMap;

use base64::Engine as _;
use enclave_core::authorization::MessageDomain;
use enclave_core::enclave::{EnclaveConfig, Image, MAX_MAX_GRANT_TTL, MIN_MAX_GRANT_TTL};
use enclave_core::policy::{KnownProgram, KnownToken, Registry};
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
fn default_horizon() -> u64 {
    enclave_core::enclave::DEFAULT_MAX_SCHEDULE_HORIZON
}
fn default_skew() -> u64 {
    60
}
fn default_10k() -> usize {
    10_000
}
fn default_receipt_ring() -> usize {
    enclave_core::enclave::receipts::DEFAULT_RING_CAPACITY
}
fn default_vault_seconds() -> u64 {
    600
}
fn default_validity() -> u64 {
    enclave_core::authorization::MAX_VALIDITY_SECONDS
}

/// Where users' signed authorization messages are valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    pub domain: String,
    pub uri: String,
    pub chain_id: String,
    #[serde(default = "default_validity")]
    pub validity_seconds: u64,
    /// Mints users read as symbols with decimals (`[[authorization.tokens]]`: mint, symbol,
    /// decimals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<KnownToken>,
    /// Programs users read by name (`[[authorization.programs]]`: id, name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<KnownProgram>,
}

impl AuthorizationConfig {
    pub fn message_domain(&self) -> MessageDomain {
        MessageDomain {
            domain: self.domain.clone(),
            uri: self.uri.clone(),
            chain_id: self.chain_id.clone(),
            validity_seconds: self.validity_seconds,
            registry: Registry { tokens: self.tokens.clone(), programs: self.programs.clone() },
        }
    }
}

/// A predecessor image: hex PCR values by name (`PCR0`…), as `nitro-cli` prints them.
pub type ImageConfig = BTreeMap<String, String>;

fn parse_image(image: &ImageConfig) -> Result<Image, ConfigError> {
    let mut out = Image::new();
    for (name, value) in image {
        let index = name
            .strip_prefix("PCR")
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|i| *i < 32)
            .ok_or_else(|| {
                ConfigError::Invalid(format!("predecessors: `{name}` is not PCR0..PCR31"))
            })?;
        let bytes = hex::decode(value.trim())
            .map_err(|_| ConfigError::Invalid(format!("predecessors: {name} is not hex")))?;
        if ![32, 48, 64].contains(&bytes.len()) {
            return Err(ConfigError::Invalid(format!(
                "predecessors: {name} is {} bytes; PCRs are 32, 48 or 64",
                bytes.len()
            )));
        }
        out.insert(index, bytes);
    }
    if !out.contains_key(&0) {
        return Err(ConfigError::Invalid(
            "predecessors: an image is named by its PCR0 (the image hash); give PCR0 (PCR1 and \
             PCR2 are compared too when listed)"
                .into(),
        ));
    }
    Ok(out)
}
fn default_requests() -> usize {
    enclave_core::enclave::DEFAULT_REQUEST_STORE_CAPACITY
}
fn default_100k() -> usize {
    100_000
}
fn default_spend_counters() -> usize {
    enclave_core::policy::DEFAULT_SPEND_COUNTER_CAPACITY
}
fn default_spend_counters_per_wallet() -> u32 {
    enclave_core::policy::DEFAULT_SPEND_COUNTERS_PER_WALLET
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
    #[serde(default = "default_horizon")]
    pub max_schedule_horizon_seconds: u64,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default = "default_requests")]
    pub request_store_capacity: usize,
    #[serde(default = "default_100k")]
    pub schedule_store_capacity: usize,
    #[serde(default = "default_100k")]
    pub grant_cache_capacity: usize,
    #[serde(default = "default_100k")]
    pub revocation_capacity: usize,
    #[serde(default = "default_100k")]
    pub nonce_store_capacity: usize,
    #[serde(default = "default_spend_counters")]
    pub spend_counter_capacity: usize,
    #[serde(default = "default_spend_counters_per_wallet")]
    pub spend_counters_per_wallet: u32,
    #[serde(default = "default_10k")]
    pub vault_cache_capacity: usize,
    #[serde(default = "default_vault_seconds")]
    pub vault_cache_seconds: u64,
    #[serde(default = "default_receipt_ring")]
    pub receipt_ring_capacity: usize,
    #[serde(default = "default_bits")]
    pub recipient_key_bits: usize,
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    pub authorization: AuthorizationConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predecessors: Vec<ImageConfig>,
}

/// A loaded, validated configuration with the exact bytes it came from (they are measured).
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub file: FileConfig,
    pub bytes: Vec<u8>,
    pub core: EnclaveConfig,
}

impl FileConfig {
    /// A config around a KMS public key (SPKI DER) and the authorization domain, everything
    /// else default.
    pub fn new(
        kms_public_key_der: &[u8],
        kms_key_id: Option<String>,
        authorization: AuthorizationConfig,
    ) -> Self {
        Self {
            kms_key_id,
            kms_public_key: base64::engine::general_purpose::STANDARD.encode(kms_public_key_der),
            max_grant_ttl_seconds: default_ttl(),
            max_schedule_window_seconds: default_window(),
            max_schedule_horizon_seconds: default_horizon(),
            clock_skew_seconds: default_skew(),
            request_store_capacity: default_requests(),
            schedule_store_capacity: default_100k(),
            grant_cache_capacity: default_100k(),
            revocation_capacity: default_100k(),
            nonce_store_capacity: default_100k(),
            spend_counter_capacity: default_spend_counters(),
            spend_counters_per_wallet: default_spend_counters_per_wallet(),
            vault_cache_capacity: default_10k(),
            vault_cache_seconds: default_vault_seconds(),
            receipt_ring_capacity: default_receipt_ring(),
            recipient_key_bits: default_bits(),
            max_connections: default_connections(),
            max_in_flight: default_in_flight(),
            authorization,
            predecessors: Vec::new(),
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
    let mut core = EnclaveConfig::new(&der, file.authorization.message_domain())
        .map_err(|e| ConfigError::Invalid(format!("authorization: {e}")))?;
    if !(MIN_MAX_GRANT_TTL..=MAX_MAX_GRANT_TTL).contains(&file.max_grant_ttl_seconds) {
        return Err(ConfigError::Invalid(format!(
            "max_grant_ttl_seconds {} must be between {MIN_MAX_GRANT_TTL} and {MAX_MAX_GRANT_TTL}",
            file.max_grant_ttl_seconds
        )));
    }
    if file.max_schedule_window_seconds > file.max_schedule_horizon_seconds {
        return Err(ConfigError::Invalid(format!(
            "max_schedule_window_seconds {} exceeds max_schedule_horizon_seconds {}",
            file.max_schedule_window_seconds, file.max_schedule_horizon_seconds
        )));
    }
    // At least 1: a message rendered in the second of a wallet's revocation is dated one second
    // after it (enclave/core `revoked_wallets`).
    if !(1..=600).contains(&file.clock_skew_seconds) {
        return Err(ConfigError::Invalid(format!(
            "clock_skew_seconds {} must be between 1 and 600",
            file.clock_skew_seconds
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
        ("nonce_store_capacity", file.nonce_store_capacity),
        ("spend_counter_capacity", file.spend_counter_capacity),
        ("spend_counters_per_wallet", file.spend_counters_per_wallet as usize),
        ("vault_cache_capacity", file.vault_cache_capacity),
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
    core.max_schedule_horizon = file.max_schedule_horizon_seconds;
    core.clock_skew = file.clock_skew_seconds;
    core.nonce_store_capacity = file.nonce_store_capacity;
    core.spend_counter_capacity = file.spend_counter_capacity;
    core.spend_counters_per_wallet = file.spend_counters_per_wallet;
    core.vault_cache_capacity = file.vault_cache_capacity;
    core.vault_cache_seconds = file.vault_cache_seconds;
    core.receipt_ring_capacity = file.receipt_ring_capacity;
    core.predecessor_images =
        file.predecessors.iter().map(parse_image).collect::<Result<_, _>>()?;
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
