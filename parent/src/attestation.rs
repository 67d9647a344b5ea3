//! The parent's view of the enclave's identity.
//!
//! On every new enclave connection and every `refresh_seconds` (default 240), the parent asks
//! the enclave for a document with a fresh random nonce and verifies it with
//! `nitro-attestation`: chain to the configured root (AWS, or the sim root in simulation), the
//! expected PCRs, not debug mode, fresh, our nonce, and a `public_key` equal to the recipient key
//! the enclave reports. Until a document verifies, nothing carrying a secret is sent to the
//! enclave and `/readyz` is false. The current document is also the `Recipient` given to KMS, so
//! it must stay younger than KMS's limit: it is used only while younger than `max_age − 30 s`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nitro_attestation::{AttestationPolicy, TrustAnchor};
use parking_lot::{Mutex, RwLock};
use signer_protocol::{EnclaveClient, Op, Outcome, Reply};

/// A verified document and what it says.
#[derive(Clone, Debug)]
pub struct Attested {
    pub document: Vec<u8>,
    /// The enclave's recipient key (SPKI DER).
    pub public_key: Vec<u8>,
    /// The instance, derived from the recipient key.
    pub enclave_id: signer_types::EnclaveId,
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    pub timestamp_ms: u64,
    pub verified_at: Instant,
    /// The enclave connection it was obtained on (a new connection may be a new enclave).
    pub generation: u64,
}

pub struct Attestation {
    anchor: TrustAnchor,
    expected_pcrs: RwLock<BTreeMap<u8, Vec<u8>>>,
    allow_debug: bool,
    max_age: Duration,
    usable_for: Duration,
    current: RwLock<Option<Arc<Attested>>>,
    last_error: Mutex<Option<String>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Attestation {
    pub fn new(
        anchor: TrustAnchor,
        expected_pcrs: BTreeMap<u8, Vec<u8>>,
        allow_debug: bool,
        max_age: Duration,
    ) -> Self {
        Self {
            anchor,
            expected_pcrs: RwLock::new(expected_pcrs),
            allow_debug,
            max_age,
            usable_for: max_age.saturating_sub(Duration::from_secs(30)),
            current: RwLock::new(None),
            last_error: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The current document if it is still usable for connection `generation`.
    pub fn current(&self, generation: u64) -> Option<Arc<Attested>> {
        self.current
            .read()
            .as_ref()
            .filter(|a| a.generation == generation && a.verified_at.elapsed() < self.usable_for)
            .cloned()
    }

    /// The reason the last attempt failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// Age of the current document, if any.
    pub fn age(&self) -> Option<Duration> {
        self.current.read().as_ref().map(|a| a.verified_at.elapsed())
    }

    /// Drops the current document (e.g. when the enclave is known to have changed).
    pub fn invalidate(&self) {
        *self.current.write() = None;
    }

    /// A usable document, fetching and verifying a new one if needed (one fetch at a time).
    pub async fn ensure(
        &self,
        enclave: &EnclaveClient,
        timeout: Duration,
    ) -> Result<Arc<Attested>, String> {
        if let Some(a) = self.current(enclave.connections_made()) {
            return Ok(a);
        }
        let _guard = self.refreshing.lock().await;
        if let Some(a) = self.current(enclave.connections_made()) {
            return Ok(a);
        }
        self.refresh(enclave, timeout).await
    }

    /// Fetches and verifies a new document now.
    pub async fn refresh(
        &self,
        enclave: &EnclaveClient,
        timeout: Duration,
    ) -> Result<Arc<Attested>, String> {
        let result = self.fetch_and_verify(enclave, timeout).await;
        match &result {
            Ok(a) => {
                *self.current.write() = Some(Arc::clone(a));
                *self.last_error.lock() = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "enclave attestation failed");
                *self.last_error.lock() = Some(e.clone());
                // A failed verification must not leave an older document in use.
                if !e.starts_with("enclave unreachable") {
                    *self.current.write() = None;
                }
            }
        }
        result
    }

    /// The PCRs enclaves must have.
    pub fn expected_pcrs(&self) -> BTreeMap<u8, Vec<u8>> {
        self.expected_pcrs.read().clone()
    }

    /// After a handover to an enclave of another image: expect its PCRs from now on.
    pub fn set_expected_pcrs(&self, pcrs: BTreeMap<u8, Vec<u8>>) {
        *self.expected_pcrs.write() = pcrs;
        self.invalidate();
    }

    /// Attests an enclave other than the current one (a handover successor) against `pcrs`.
    pub async fn verify_other(
        &self,
        enclave: &EnclaveClient,
        pcrs: &BTreeMap<u8, Vec<u8>>,
        timeout: Duration,
    ) -> Result<Arc<Attested>, String> {
        self.fetch_and_verify_with(enclave, pcrs.clone(), timeout).await
    }

    async fn fetch_and_verify(
        &self,
        enclave: &EnclaveClient,
        timeout: Duration,
    ) -> Result<Arc<Attested>, String> {
        let pcrs = self.expected_pcrs();
        self.fetch_and_verify_with(enclave, pcrs, timeout).await
    }

    async fn fetch_and_verify_with(
        &self,
        enclave: &EnclaveClient,
        pcrs: BTreeMap<u8, Vec<u8>>,
        timeout: Duration,
    ) -> Result<Arc<Attested>, String> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| format!("randomness: {e}"))?;
        let outcome = enclave
            .call(&Op::Attest { nonce: Some(nonce.to_vec()) }, timeout)
            .await
            .map_err(|e| format!("enclave unreachable: {e}"))?;
        let generation = enclave.connections_made();
        let (document, public_key) = match outcome {
            Outcome::Ok(Reply::Attestation { document, public_key }) => (document, public_key),
            Outcome::Ok(other) => return Err(format!("unexpected reply to attest: {other:?}")),
            Outcome::Err(e) => return Err(format!("the enclave refused to attest: {}", e.message)),
        };
        let policy = AttestationPolicy {
            pcrs,
            allow_debug: self.allow_debug,
            max_age: Some(self.max_age),
            nonce: Some(nonce.to_vec()),
            user_data: None,
            public_key: Some(public_key.clone()),
        };
        let verified = nitro_attestation::verify_with_policy(
            &document,
            &self.anchor,
            &policy,
            SystemTime::now(),
        )
        .map_err(|e| format!("the enclave's attestation document does not verify: {e}"))?;
        tracing::info!(module = %verified.document.module_id, pcr0 = %hex::encode(verified.document.pcrs.get(&0).cloned().unwrap_or_default()), "enclave attested");
        Ok(Arc::new(Attested {
            pcrs: verified.document.pcrs.clone(),
            timestamp_ms: verified.document.timestamp_ms,
            document,
            enclave_id: signer_types::EnclaveId::from_recipient_key(&public_key),
            public_key,
            verified_at: Instant::now(),
            generation,
        }))
    }
}
