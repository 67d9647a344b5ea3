//! The Nitro Secure Module, behind a trait: the real device (`/dev/nsm`) in production, a
//! simulated one in simulation. Both produce attestation documents verified by the same
//! `nitro-attestation` code; only the trust anchor differs. The simulated NSM is in
//! [`crate::sim_nsm`], compiled only with the `sim` feature (the production image has none).

use std::sync::Arc;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use enclave_core::SecureRandom;
use enclave_core::enclave::Attester;
use enclave_core::error::RandomError;
use nitro_attestation::TrustAnchor;
use parking_lot::Mutex;
use serde_bytes::ByteBuf;
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
    /// The root this provider's documents chain to: AWS's for the real NSM, the sim CA's in
    /// simulation. The enclave verifies other enclaves' documents (provenance, handover) against
    /// it with the same code either way.
    fn trust_anchor(&self) -> Result<TrustAnchor, NsmError>;
    fn kind(&self) -> &'static str;
}

/// The NSM as enclave-core's [`Attester`].
pub struct NsmAttester(pub Arc<dyn Nsm>);

impl Attester for NsmAttester {
    fn attest(
        &self,
        public_key: &[u8],
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        self.0.attest(AttestRequest { public_key, user_data, nonce }).map_err(|e| e.to_string())
    }
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

    fn trust_anchor(&self) -> Result<TrustAnchor, NsmError> {
        Ok(TrustAnchor::aws_nitro_root_g1())
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
