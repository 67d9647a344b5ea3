//! The simulated NSM (feature `sim`): documents signed by a local CA of AWS's chain shape and
//! verified by the same `nitro-attestation` code as real ones, with the sim root injected.
//!
//! Simulated PCRs are deterministic so a key policy can be computed before the enclave starts:
//!
//! ```text
//! PCR0 = SHA-384("signer-sim/PCR0" ‖ SHA-384(enclave binary) ‖ SHA-384(config bytes))   image
//! PCR1 = SHA-384("signer-sim/PCR1")                                                      kernel
//! PCR2 = SHA-384("signer-sim/PCR2" ‖ SHA-384(enclave binary))                           application
//! PCR3..PCR15 = 48 zero bytes
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use enclave_core::{OsRandom, SecureRandom};
use nitro_attestation::TrustAnchor;
use nitro_attestation::sim::{SimCa, SimDocument, SimLeaf};
use parking_lot::Mutex;
use sha2::{Digest, Sha384};

use crate::nsm::{AttestRequest, Nsm, NsmError};

/// Simulated PCRs for an enclave binary and its config (see the module docs).
pub fn sim_pcrs(binary: &[u8], config: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    let h = |parts: &[&[u8]]| {
        let mut d = Sha384::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    };
    let binary_hash = h(&[binary]);
    let config_hash = h(&[config]);
    let mut pcrs: BTreeMap<u8, Vec<u8>> = (0u8..16).map(|i| (i, vec![0u8; 48])).collect();
    pcrs.insert(0, h(&[b"signer-sim/PCR0", &binary_hash, &config_hash]));
    pcrs.insert(1, h(&[b"signer-sim/PCR1"]));
    pcrs.insert(2, h(&[b"signer-sim/PCR2", &binary_hash]));
    pcrs
}

/// Re-issue the sim leaf when it has less than this left (documents must chain at KMS).
const LEAF_REFRESH: Duration = Duration::from_secs(30 * 60);

/// The simulated NSM: documents signed by the sim CA, deterministic PCRs, OS randomness. Only in
/// builds with the `sim` feature; the production image is built without it.
pub struct SimNsm {
    ca: SimCa,
    leaf: Mutex<SimLeaf>,
    pcrs: BTreeMap<u8, Vec<u8>>,
    module_id: String,
}

impl SimNsm {
    /// Loads (or creates) the sim CA at `ca_path` and measures `binary` + `config`.
    pub fn new(ca_path: &Path, binary: &[u8], config: &[u8]) -> Result<Self, NsmError> {
        let now = SystemTime::now();
        let ca = SimCa::load_or_create(ca_path, &mut rand::rng(), now)
            .map_err(|e| NsmError::Sim(e.to_string()))?;
        let mut id = [0u8; 8];
        OsRandom.fill(&mut id).map_err(|e| NsmError::Sim(e.to_string()))?;
        let module_id = format!("i-sim0000000000000000-enc{}", hex::encode(id));
        let leaf = ca
            .issue_leaf(&module_id, &mut rand::rng(), now)
            .map_err(|e| NsmError::Sim(e.to_string()))?;
        Ok(Self { ca, leaf: Mutex::new(leaf), pcrs: sim_pcrs(binary, config), module_id })
    }

    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.pcrs
    }
}

impl Nsm for SimNsm {
    fn attest(&self, req: AttestRequest<'_>) -> Result<Vec<u8>, NsmError> {
        let now = SystemTime::now();
        let mut leaf = self.leaf.lock();
        if leaf.not_after.duration_since(now).unwrap_or_default() < LEAF_REFRESH {
            *leaf = self
                .ca
                .issue_leaf(&self.module_id, &mut rand::rng(), now)
                .map_err(|e| NsmError::Sim(e.to_string()))?;
        }
        let timestamp_ms =
            now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Ok(self.ca.issue_document(
            &leaf,
            &SimDocument {
                module_id: &self.module_id,
                timestamp_ms,
                pcrs: &self.pcrs,
                public_key: Some(req.public_key),
                user_data: req.user_data,
                nonce: req.nonce,
            },
        ))
    }

    fn random(&self) -> Arc<dyn SecureRandom> {
        Arc::new(OsRandom)
    }

    fn trust_anchor(&self) -> Result<TrustAnchor, NsmError> {
        self.ca.trust_anchor().map_err(|e| NsmError::Sim(e.to_string()))
    }

    fn kind(&self) -> &'static str {
        "sim"
    }
}
