//! The caller's expectations of a verified document: PCRs, debug mode, freshness and the three
//! caller-chosen fields.
//!
//! Expected PCRs come from `nitro-cli build-enclave` / `describe-eif` measurement JSON
//! (`{"Measurements": {"HashAlgorithm": "…", "PCR0": "<hex>", …}}`) or explicit pairs; only the
//! listed indexes are compared. Hex comparisons are case-insensitive.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use thiserror::Error;

use crate::document::{MAX_PCR_INDEX, PCR_LENGTHS};
use crate::error::PolicyError;
use crate::verify::VerifiedDocument;

/// How far a document's timestamp may lie ahead of the verifier's clock before it is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a verified document must also satisfy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationPolicy {
    /// PCR index → expected value. Indexes not listed are not compared.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// Accept documents from enclaves started with `--debug-mode` (PCR0–2 zero).
    pub allow_debug: bool,
    /// Refuse documents older than this (by their own timestamp).
    pub max_age: Option<Duration>,
    /// When set, the document must carry exactly these bytes.
    pub nonce: Option<Vec<u8>>,
    /// When set, the document must carry exactly these bytes.
    pub user_data: Option<Vec<u8>>,
    /// When set, the document must carry exactly these bytes.
    pub public_key: Option<Vec<u8>>,
}

impl AttestationPolicy {
    /// Checks `verified` against the policy at time `now`.
    pub fn check(&self, verified: &VerifiedDocument, now: SystemTime) -> Result<(), PolicyError> {
        let doc = &verified.document;
        if doc.is_debug_mode() && !self.allow_debug {
            return Err(PolicyError::DebugMode);
        }
        for (index, expected) in &self.pcrs {
            let actual = doc.pcrs.get(index).ok_or_else(|| PolicyError::PcrMissing {
                index: *index,
                expected: hex::encode(expected),
            })?;
            if actual != expected {
                return Err(PolicyError::PcrMismatch {
                    index: *index,
                    expected: hex::encode(expected),
                    actual: hex::encode(actual),
                });
            }
        }
        if let Some(max_age) = self.max_age {
            let now_ms = unix_millis(now);
            if doc.timestamp_ms > now_ms.saturating_add(duration_millis(MAX_CLOCK_SKEW)) {
                return Err(PolicyError::FromTheFuture {
                    timestamp_ms: doc.timestamp_ms,
                    ahead_ms: doc.timestamp_ms - now_ms,
                });
            }
            let age_ms = now_ms.saturating_sub(doc.timestamp_ms);
            if age_ms > duration_millis(max_age) {
                return Err(PolicyError::TooOld { age_ms, max_age_ms: duration_millis(max_age) });
            }
        }
        check_field("nonce", self.nonce.as_deref(), doc.nonce.as_deref())?;
        check_field("user_data", self.user_data.as_deref(), doc.user_data.as_deref())?;
        check_field("public_key", self.public_key.as_deref(), doc.public_key.as_deref())?;
        Ok(())
    }
}

fn check_field(
    field: &'static str,
    expected: Option<&[u8]>,
    actual: Option<&[u8]>,
) -> Result<(), PolicyError> {
    let Some(expected) = expected else { return Ok(()) };
    if actual == Some(expected) {
        return Ok(());
    }
    Err(PolicyError::FieldMismatch {
        field,
        expected: hex::encode(expected),
        actual: actual.map(hex::encode).unwrap_or_else(|| "none".into()),
    })
}

pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(duration_millis).unwrap_or(0)
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A PCR specification that could not be read.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PcrSpecError {
    #[error("measurements JSON: {0}")]
    Json(String),
    #[error("`{0}` is not a PCR name (expected PCR0..PCR31)")]
    Name(String),
    #[error("PCR{index}: {reason}")]
    Value { index: u8, reason: String },
    #[error("`{0}` is not of the form N=HEX")]
    Pair(String),
    #[error("PCR{index} is given twice with different values")]
    Conflict { index: u8 },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MeasurementsFile {
    measurements: BTreeMap<String, String>,
}

/// Reads `nitro-cli` measurement JSON: every `PCR<n>` entry of `Measurements`; other entries
/// (`HashAlgorithm`) are ignored.
pub fn pcrs_from_measurements_json(json: &str) -> Result<BTreeMap<u8, Vec<u8>>, PcrSpecError> {
    let file: MeasurementsFile =
        serde_json::from_str(json).map_err(|e| PcrSpecError::Json(e.to_string()))?;
    let mut pcrs = BTreeMap::new();
    for (name, value) in file.measurements {
        let Some(index) = name.strip_prefix("PCR") else { continue };
        let index = parse_pcr_index(index).ok_or_else(|| PcrSpecError::Name(name.clone()))?;
        pcrs.insert(index, parse_pcr_value(index, &value)?);
    }
    if pcrs.is_empty() {
        return Err(PcrSpecError::Json("no PCR<n> entries under \"Measurements\"".into()));
    }
    Ok(pcrs)
}

/// Renders PCRs as `nitro-cli` measurement JSON (the sim enclave's `measure` output).
pub fn measurements_json(pcrs: &BTreeMap<u8, Vec<u8>>) -> String {
    let mut measurements = serde_json::Map::new();
    measurements.insert("HashAlgorithm".into(), "Sha384 { ... }".into());
    for (index, value) in pcrs {
        measurements.insert(format!("PCR{index}"), hex::encode(value).into());
    }
    let mut root = serde_json::Map::new();
    root.insert("Measurements".into(), measurements.into());
    serde_json::to_string_pretty(&serde_json::Value::Object(root)).unwrap_or_default()
}

/// Parses `N=HEX` (as given to `--pcr`).
pub fn parse_pcr_pair(pair: &str) -> Result<(u8, Vec<u8>), PcrSpecError> {
    let (index, value) = pair.split_once('=').ok_or_else(|| PcrSpecError::Pair(pair.into()))?;
    let index = parse_pcr_index(index.trim_start_matches("PCR"))
        .ok_or_else(|| PcrSpecError::Name(index.into()))?;
    Ok((index, parse_pcr_value(index, value)?))
}

/// Adds `(index, value)` to `pcrs`, refusing a second, different value for the same index.
pub fn merge_pcr(
    pcrs: &mut BTreeMap<u8, Vec<u8>>,
    index: u8,
    value: Vec<u8>,
) -> Result<(), PcrSpecError> {
    match pcrs.get(&index) {
        Some(existing) if *existing != value => Err(PcrSpecError::Conflict { index }),
        _ => {
            pcrs.insert(index, value);
            Ok(())
        }
    }
}

fn parse_pcr_index(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|i| *i <= MAX_PCR_INDEX)
}

fn parse_pcr_value(index: u8, value: &str) -> Result<Vec<u8>, PcrSpecError> {
    let bytes = hex::decode(value.trim())
        .map_err(|e| PcrSpecError::Value { index, reason: format!("not hex: {e}") })?;
    if !PCR_LENGTHS.contains(&bytes.len()) {
        return Err(PcrSpecError::Value {
            index,
            reason: format!("{} bytes; expected 32, 48 or 64", bytes.len()),
        });
    }
    Ok(bytes)
}
