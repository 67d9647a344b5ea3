//! The Nitro Secure Module, behind a trait: the real device (`/dev/nsm`) in production, a
//! simulated one in simulation. Both produce attestation documents verified by the same
//! `nitro-attestation` code; only the trust anchor differs.
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

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use enclave_core::error::RandomError;
use enclave_core::{OsRandom, SecureRandom};
use nitro_attestation::sim::{SimCa, SimDocument, SimLeaf};
use parking_lot::Mutex;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha384};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NsmError {
    #[error("the Nitro Secure Module is not available (is this running inside a Nitro enclave?)")]
    Unavailable,
    #[error("NSM request failed: {0}")]
    Request(String),
    #[error("simulated NSM: {0}")]
    Sim(String),
}

/// What goes into an attestation document.
#[derive(Clone, Copy, Debug)]
pub struct AttestRequest<'a> {
    /// SPKI DER of the enclave's recipient key: KMS encrypts `CiphertextForRecipient` to it.
    pub public_key: &'a [u8],
    pub user_data: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
}

/// An NSM provider.
pub trait Nsm: Send + Sync {
    fn attest(&self, req: AttestRequest<'_>) -> Result<Vec<u8>, NsmError>;
    /// The randomness every secret is drawn from.
    fn random(&self) -> Arc<dyn SecureRandom>;
    fn kind(&self) -> &'static str;
}

/// The real NSM device.
pub struct NitroNsm {
    fd: i32,
    lock: Arc<Mutex<()>>,
}

impl NitroNsm {
    pub fn open() -> Result<Self, NsmError> {
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(NsmError::Unavailable);
        }
        Ok(Self { fd, lock: Arc::new(Mutex::new(())) })
    }

    fn request(fd: i32, lock: &Mutex<()>, request: Request) -> Response {
        let _guard = lock.lock();
        driver::nsm_process_request(fd, request)
    }
}

impl Drop for NitroNsm {
    fn drop(&mut self) {
        driver::nsm_exit(self.fd);
    }
}

impl Nsm for NitroNsm {
    fn attest(&self, req: AttestRequest<'_>) -> Result<Vec<u8>, NsmError> {
        let request = Request::Attestation {
            user_data: req.user_data.map(ByteBuf::from),
            nonce: req.nonce.map(ByteBuf::from),
            public_key: Some(ByteBuf::from(req.public_key)),
        };
        match Self::request(self.fd, &self.lock, request) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(NsmError::Request(format!("{code:?}"))),
            other => Err(NsmError::Request(format!("unexpected response {other:?}"))),
        }
    }

    fn random(&self) -> Arc<dyn SecureRandom> {
        Arc::new(NsmRandom { fd: self.fd, lock: Arc::clone(&self.lock) })
    }

    fn kind(&self) -> &'static str {
        "nitro"
    }
}

/// Randomness from the NSM's hardware RNG (`GetRandom`).
struct NsmRandom {
    fd: i32,
    lock: Arc<Mutex<()>>,
}

impl SecureRandom for NsmRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let mut filled = 0;
        while filled < buf.len() {
            match NitroNsm::request(self.fd, &self.lock, Request::GetRandom) {
                Response::GetRandom { random } if !random.is_empty() => {
                    let n = random.len().min(buf.len() - filled);
                    if let (Some(dst), Some(src)) =
                        (buf.get_mut(filled..filled + n), random.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                    filled += n;
                }
                other => return Err(RandomError(format!("NSM GetRandom: {other:?}"))),
            }
        }
        Ok(())
    }
}

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

/// The simulated NSM: documents signed by the sim CA, deterministic PCRs, OS randomness.
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

    fn kind(&self) -> &'static str {
        "sim"
    }
}
