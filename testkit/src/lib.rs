//! Test-only helpers shared by the workspace's test suites.
//!
//! The real test data lives outside the repository, in `../shared/vectors/` relative to the
//! repository root; tests read it from there at run time. `SIGNER_VECTORS_DIR` overrides the
//! location.
#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::panic)] // test support: failing loudly is the point

use std::path::{Path, PathBuf};

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the repository root")
        .to_path_buf()
}

/// `../shared/vectors` relative to the repository root, or `$SIGNER_VECTORS_DIR`.
pub fn vectors_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNER_VECTORS_DIR") {
        return PathBuf::from(dir);
    }
    let dir = repo_root().join("../shared/vectors");
    assert!(dir.is_dir(), "test vectors not found at {} (set SIGNER_VECTORS_DIR)", dir.display());
    dir
}

/// Reads a file below the vectors directory.
pub fn read_vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One entry of `attestation/manifest.json`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct AttestationVector {
    pub file: String,
    pub expected: String,
    #[serde(default)]
    pub timestamp_ms: Option<u64>,
    #[serde(default)]
    pub chain_valid_from_unix: Option<i64>,
    #[serde(default)]
    pub chain_valid_until_unix: Option<i64>,
    #[serde(default)]
    pub pcrs_nonzero: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub module_id: Option<String>,
    #[serde(default)]
    pub payload_map_encoding: Option<String>,
    #[serde(default)]
    pub signature_high_s: Option<bool>,
}

impl AttestationVector {
    pub fn is_valid(&self) -> bool {
        self.expected == "valid"
    }

    /// The document bytes.
    pub fn bytes(&self) -> Vec<u8> {
        read_vector(&format!("attestation/{}", self.file))
    }

    /// A unix time inside the chain's validity window.
    pub fn valid_at(&self) -> i64 {
        let from = self.chain_valid_from_unix.expect("valid vectors have a window");
        let until = self.chain_valid_until_unix.expect("valid vectors have a window");
        from + (until - from) / 2
    }

    /// PCR0–2 all zero (debug mode), according to the manifest.
    pub fn is_debug(&self) -> bool {
        !["0", "1", "2"].iter().any(|i| self.pcrs_nonzero.contains_key(*i))
    }
}

/// All entries of `attestation/manifest.json`.
pub fn attestation_vectors() -> Vec<AttestationVector> {
    serde_json::from_slice(&read_vector("attestation/manifest.json")).expect("manifest.json parses")
}

/// Decodes hex, panicking on bad input (test data only).
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex in test data")
}
