//! The enclave's decisions, as a library without I/O: create vaults, agents and (from a user's
//! signed authorization) grants; sign under a grant or a scheduled record; revoke; kill switch;
//! hand the decision state to a successor. Thread-safe; clock, randomness and the NSM's
//! attestation are injected ([`Clock`], [`SecureRandom`], [`Attester`]), and the trust anchor that
//! documents must chain to is an input, so simulation runs the same verification as production.
//!
//! Order of checks for `sign` (SPEC §5, §3): grant header (type, bot, enclave instance, lifetime,
//! clock, revocation, expiry) → opened grant (cache, or the KMS envelope, whose key only helps if
//! it opens the grant's AEAD and the user's authorization inside verifies) → agent key (bound
//! wallet and public key, AEAD, derived key equal to the bound key) → transaction (parse, agent
//! is a signer) → under one lock, at one clock reading: kill switch, handover, revocation, expiry,
//! idempotency, policy, then spend and request id recorded → sign.

mod custody;
pub mod handover;
pub mod receipts;
pub mod replicated;
mod signing;
mod state;
pub mod upgrade;
pub mod user;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use nitro_attestation::TrustAnchor;
use parking_lot::{Mutex, RwLock};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest, Sha256};
use signer_types::ids::{EnclaveId, uuid_text};

pub use self::custody::{
    Authorization, AuthorizeGrant, CreateAgent, CreateGrant, CreatedAgent, CreatedGrant,
    CreatedVault, ImportVault, ImportedVault, NewAgentKind, VaultProof,
};
pub use self::signing::{SignRequest, SignScheduledRequest, Signed};
use self::state::DecisionState;
pub use self::state::{NonceUse, RecordTime, RevokeTarget, Status};
pub use self::user::{ExportRequest, ExportSubject, Exported, WalletRevoke};
use crate::authorization::MessageDomain;
use crate::envelope::{self, RecipientKey};
use crate::error::{EnclaveError, RecordError};
use crate::records::{GrantContents, GrantHeader, WrappedKey};
use crate::secret::{Secret32, SecureRandom, seeded_rng};
use crate::store::TtlMap;

/// Wall-clock time in unix seconds (the enclave's own clock; injectable for tests).
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The NSM's attestation: a document signed by the Nitro hypervisor (or the sim CA) carrying this
/// enclave's measurements and the given fields.
pub trait Attester: Send + Sync {
    fn attest(
        &self,
        public_key: &[u8],
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>, String>;
}

/// PCR index → value; only the listed indexes of an image are compared.
pub type Image = BTreeMap<u8, Vec<u8>>;

/// The PCRs that identify an image: its kernel, its filesystem and its application.
pub const IMAGE_PCRS: [u8; 3] = [0, 1, 2];

/// Enclave settings (from the measured config).
#[derive(Clone, Debug)]
pub struct EnclaveConfig {
    /// The pinned KMS RSA public key: the only key new secrets are sealed to.
    pub kms_public_key: RsaPublicKey,
    /// Its SubjectPublicKeyInfo DER, as pinned (what clients seal records to).
    pub kms_public_key_der: Vec<u8>,
    /// Longest grant lifetime accepted or issued, seconds (default 3600, at least 60).
    pub max_grant_ttl: u64,
    /// Longest `[not_before, not_after]` window of a scheduled record, seconds (default 48 h).
    pub max_schedule_window: u64,
    /// Longest life of a scheduled record from its `created_at` to its `not_after` (default
    /// 30 days): what lets a revocation outlive every record it could match.
    pub max_schedule_horizon: u64,
    /// How far ahead of this enclave's clock a record's or message's time may be, seconds.
    pub clock_skew: u64,
    pub request_store_capacity: usize,
    pub schedule_store_capacity: usize,
    pub grant_cache_capacity: usize,
    pub revocation_capacity: usize,
    /// Content keys of envelopes that failed to open, refused thereafter.
    pub envelope_refusal_capacity: usize,
    /// Authorization nonces this enclave issued, remembered until their message expires.
    pub nonce_store_capacity: usize,
    /// Spend counters (one per wallet, bot and agent that signed today or yesterday).
    pub spend_counter_capacity: usize,
    /// Spend counters one wallet may hold.
    pub spend_counters_per_wallet: u32,
    /// Opened vaults kept in memory (zeroized when they leave).
    pub vault_cache_capacity: usize,
    pub vault_cache_seconds: u64,
    /// Receipts kept for `GET /v1/receipts` (the oldest give way, reported as a gap).
    pub receipt_ring_capacity: usize,
    /// Where user authorization messages are valid (domain, URI, chain, validity).
    pub message_domain: MessageDomain,
    /// Images, besides this enclave's own, whose provenance documents and handovers it trusts:
    /// the images it succeeds during an upgrade.
    pub predecessor_images: Vec<Image>,
}

pub const DEFAULT_MAX_GRANT_TTL: u64 = 3600;
pub const MIN_MAX_GRANT_TTL: u64 = 60;
/// Grants may be configured to live up to 30 days (SPEC §16): daily limits hold across restarts,
/// and in a cluster a grant survives any minority of crashes. A standalone enclave's crash still
/// orphans its grants, so long lifetimes are for clusters (`docs/deploy.md` §13).
pub const MAX_MAX_GRANT_TTL: u64 = 30 * 86_400;
pub const DEFAULT_MAX_SCHEDULE_WINDOW: u64 = 48 * 3600;
pub const DEFAULT_MAX_SCHEDULE_HORIZON: u64 = 30 * 86_400;
pub const DEFAULT_REQUEST_STORE_CAPACITY: usize = 1_000_000;
/// How long a failed envelope's content key stays refused. Opening the same envelope again can
/// only repeat the answer it got; an adaptive attack needs fresh guesses under the same key, and
/// gets one per KMS call, or one more per key each week.
pub const ENVELOPE_REFUSAL_SECONDS: u64 = 7 * 86_400;

impl EnclaveConfig {
    /// Defaults (SPEC §14) around the pinned KMS key's SPKI DER and the authorization domain.
    pub fn new(
        kms_public_key_spki_der: &[u8],
        message_domain: MessageDomain,
    ) -> Result<Self, EnclaveError> {
        let kms_public_key = RsaPublicKey::from_public_key_der(kms_public_key_spki_der)
            .map_err(|e| EnclaveError::Internal(format!("pinned KMS public key: {e}")))?;
        let bits = kms_public_key.size() * 8;
        if bits != 3072 && bits != 4096 {
            return Err(EnclaveError::Internal(format!(
                "pinned KMS public key is {bits} bits; the execution key must be RSA_3072 or RSA_4096"
            )));
        }
        message_domain.validate().map_err(EnclaveError::Internal)?;
        Ok(Self {
            kms_public_key,
            kms_public_key_der: kms_public_key_spki_der.to_vec(),
            max_grant_ttl: DEFAULT_MAX_GRANT_TTL,
            max_schedule_window: DEFAULT_MAX_SCHEDULE_WINDOW,
            max_schedule_horizon: DEFAULT_MAX_SCHEDULE_HORIZON,
            clock_skew: 60,
            request_store_capacity: DEFAULT_REQUEST_STORE_CAPACITY,
            schedule_store_capacity: 100_000,
            grant_cache_capacity: 100_000,
            revocation_capacity: 100_000,
            envelope_refusal_capacity: 100_000,
            nonce_store_capacity: 100_000,
            spend_counter_capacity: crate::policy::DEFAULT_SPEND_COUNTER_CAPACITY,
            spend_counters_per_wallet: crate::policy::DEFAULT_SPEND_COUNTERS_PER_WALLET,
            vault_cache_capacity: 10_000,
            vault_cache_seconds: 600,
            receipt_ring_capacity: receipts::DEFAULT_RING_CAPACITY,
            message_domain,
            predecessor_images: Vec::new(),
        })
    }
}

/// The record's key must be unwrapped by KMS first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedKey {
    pub record_id: [u8; 16],
    pub wrapped: WrappedKey,
}

/// Result of a signing operation that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignOutcome {
    Signed(Signed),
    NeedKey(NeedKey),
}

/// Result of an operation that opens a vault and did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlocked<T> {
    Done(T),
    NeedKey(NeedKey),
}

struct CachedAgent {
    /// The sealed record it was opened from (compared byte for byte; not secret).
    record: Box<[u8]>,
    key: Arc<SigningKey>,
}

/// A grant opened in enclave memory, together with the agent key it authorizes. Cached only once
/// both opened, keyed by the SHA-256 of the grant record's bytes, so a record that merely carries
/// a victim's grant id can neither use nor displace the victim's entry. Dropping it zeroizes the
/// UMK and the agent key.
struct OpenedGrant {
    header: GrantHeader,
    contents: GrantContents,
    agent: CachedAgent,
}

/// An opened vault's UMK, until `expires_at`.
struct OpenedVault {
    umk: Arc<Secret32>,
    expires_at: u64,
}

/// The enclave.
pub struct Enclave {
    config: EnclaveConfig,
    recipient: RecipientKey,
    rng: Arc<dyn SecureRandom>,
    clock: Arc<dyn Clock>,
    attester: Arc<dyn Attester>,
    anchor: TrustAnchor,
    /// This instance: derived from the recipient key, so attested and gone with the process.
    id: EnclaveId,
    started_at: u64,
    /// This image, then the configured predecessors.
    trusted_images: Vec<Image>,
    /// Instances this one answers for: itself, and those whose state it received in handovers.
    answers_for: RwLock<Vec<EnclaveId>>,
    /// Opened grants by SHA-256 of the grant record.
    grants: RwLock<HashMap<[u8; 32], Arc<OpenedGrant>>>,
    /// Opened vaults by SHA-256 of the vault record.
    vaults: Mutex<HashMap<[u8; 32], OpenedVault>>,
    state: Mutex<DecisionState>,
    /// SHA-256 of the RSA-wrapped content keys of envelopes that failed to open.
    refused_envelopes: Mutex<TtlMap<[u8; 32], ()>>,
    /// Handover sessions, as predecessor or successor.
    handover: Mutex<handover::Sessions>,
    /// Upgrade challenges by newcomer, while this enclave leads a cluster (`upgrade`).
    upgrade_keys: Mutex<TtlMap<EnclaveId, upgrade::Challenge>>,
    kill_switch: AtomicBool,
    signatures: AtomicU64,
    need_key: AtomicU64,
    denials: AtomicU64,
    envelope_failures: AtomicU64,
    /// Secrets exported on a wallet's signature.
    exports: AtomicU64,
    /// The latest decision time (see `Enclave::decision_now`).
    time_floor: AtomicU64,
    /// Set when this enclave is a member of a cluster: decisions go through its log.
    replicator: RwLock<Option<Arc<dyn replicated::Replicator>>>,
    /// The id records and messages made here name: this instance, or its cluster.
    decider: RwLock<EnclaveId>,
    /// Signs receipt checkpoints; per boot, bound in this instance's documents.
    checkpoint_key: receipts::CheckpointKey,
    /// The latest checkpoint signed, reused while the chain has not moved.
    checkpoint: Mutex<Option<receipts::SignedCheckpoint>>,
}

/// What this enclave's own attestation says about it, checked once at start.
const SELF_CHECK: &[u8] = b"signer/self-measurement/v1";

impl Enclave {
    /// Builds the enclave. Attests once to learn (and check) its own measurements: the document
    /// must chain to `anchor` at the enclave clock's time, carry the recipient key, and not be
    /// from a debug-mode enclave.
    pub fn new(
        config: EnclaveConfig,
        recipient: RecipientKey,
        rng: Arc<dyn SecureRandom>,
        clock: Arc<dyn Clock>,
        attester: Arc<dyn Attester>,
        anchor: TrustAnchor,
    ) -> Result<Self, EnclaveError> {
        let document = attester
            .attest(recipient.spki_der(), Some(SELF_CHECK), None)
            .map_err(|e| EnclaveError::Internal(format!("attesting this enclave: {e}")))?;
        let policy = nitro_attestation::AttestationPolicy {
            user_data: Some(SELF_CHECK.to_vec()),
            public_key: Some(recipient.spki_der().to_vec()),
            ..Default::default()
        };
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(clock.now());
        let verified = nitro_attestation::verify_with_policy(&document, &anchor, &policy, now)
            .map_err(|e| {
                EnclaveError::Internal(format!(
                    "this enclave's own attestation does not verify with the configured root: {e}"
                ))
            })?;
        let own_image: Image = IMAGE_PCRS
            .iter()
            .filter_map(|i| verified.document.pcrs.get(i).map(|v| (*i, v.clone())))
            .collect();
        let mut trusted_images = vec![own_image];
        trusted_images.extend(config.predecessor_images.iter().cloned());
        let id = EnclaveId::from_recipient_key(recipient.spki_der());
        let started_at = clock.now();
        let checkpoint_key = receipts::CheckpointKey::generate(&mut seeded_rng(&*rng)?);
        let mut state = DecisionState::new(&config);
        state.receipts.start(id.0, started_at);
        Ok(Self {
            state: Mutex::new(state),
            checkpoint_key,
            checkpoint: Mutex::new(None),
            refused_envelopes: Mutex::new(TtlMap::new(
                "refused envelope",
                config.envelope_refusal_capacity,
            )),
            recipient,
            rng,
            clock,
            attester,
            anchor,
            id,
            started_at,
            trusted_images,
            answers_for: RwLock::new(vec![id]),
            grants: RwLock::new(HashMap::new()),
            vaults: Mutex::new(HashMap::new()),
            handover: Mutex::new(handover::Sessions::default()),
            upgrade_keys: Mutex::new(TtlMap::new("upgrade challenge", upgrade::MAX_CHALLENGES)),
            kill_switch: AtomicBool::new(false),
            signatures: AtomicU64::new(0),
            need_key: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            envelope_failures: AtomicU64::new(0),
            exports: AtomicU64::new(0),
            time_floor: AtomicU64::new(0),
            replicator: RwLock::new(None),
            decider: RwLock::new(id),
            config,
        })
    }

    /// The recipient key's SPKI DER (goes into attestation documents as `public_key`).
    pub fn recipient_public_key(&self) -> &[u8] {
        self.recipient.spki_der()
    }

    /// This enclave instance.
    pub fn id(&self) -> EnclaveId {
        self.id
    }

    /// The id that grants, scheduled records and messages made here name: this instance's own,
    /// or, once it is a member of a cluster, the cluster's (SPEC §16).
    pub fn decider(&self) -> EnclaveId {
        *self.decider.read()
    }

    /// The instances this enclave answers for (itself first).
    pub fn answers_for(&self) -> Vec<EnclaveId> {
        self.answers_for.read().clone()
    }

    /// Unix time this instance started.
    pub fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The images whose documents this enclave trusts: its own, then its predecessors.
    pub fn trusted_images(&self) -> &[Image] {
        &self.trusted_images
    }

    pub fn config(&self) -> &EnclaveConfig {
        &self.config
    }

    /// This enclave's clock (unix seconds).
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The root documents must chain to (AWS Nitro's, or the sim CA's).
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// A document announcing this enclave as a cluster member: `user_data` is the binding of
    /// its id and its per-boot channel key (`cluster::member::member_binding`), which only the
    /// member's own code computes.
    pub fn attest_member(&self, binding: &[u8; 32]) -> Result<Vec<u8>, EnclaveError> {
        self.attest(Some(binding), None)
    }

    /// A fresh document for a caller (the parent, a security team): the caller's `nonce`, and
    /// `user_data` binding this boot's checkpoint key to this instance
    /// (`signer_receipts::checkpoint_key_binding`), so a document vouches for the checkpoints
    /// of the receipts it signs.
    pub fn attest_for_caller(&self, nonce: Option<&[u8]>) -> Result<Vec<u8>, EnclaveError> {
        let binding = self.checkpoint_key.binding(&self.id.0);
        self.attest(Some(&binding), nonce)
    }

    /// This boot's checkpoint key (ed25519 public key).
    pub fn checkpoint_public_key(&self) -> [u8; 32] {
        self.checkpoint_key.public()
    }

    /// Receipts after `after` (every one kept when None), at most `max_bytes` of them.
    pub fn receipts(&self, after: Option<u64>, max_bytes: usize) -> receipts::ReceiptPage {
        self.state.lock().receipts.page(after, max_bytes)
    }

    /// A page of receipts and a checkpoint of the chain's head, taken together (no decision in
    /// between), so the last page of a fetch ends exactly at the head its checkpoint vouches for.
    pub fn receipts_with_checkpoint(
        &self,
        after: Option<u64>,
        max_bytes: usize,
    ) -> (receipts::ReceiptPage, Option<receipts::SignedCheckpoint>) {
        let state = self.state.lock();
        let page = state.receipts.page(after, max_bytes);
        let checkpoint = state.receipts.chain().map(|chain| self.sign_checkpoint(chain));
        (page, checkpoint)
    }

    /// Receipts written, and those that could not be.
    pub fn receipt_counts(&self) -> (u64, u64) {
        self.state.lock().receipts.counts()
    }

    /// A checkpoint of the chain's head signed with this boot's key: the last one again when
    /// the chain has not moved since, a fresh one otherwise. None before the first receipt.
    pub fn checkpoint(&self) -> Option<receipts::SignedCheckpoint> {
        let chain = *self.state.lock().receipts.chain()?;
        Some(self.sign_checkpoint(&chain))
    }

    fn sign_checkpoint(&self, chain: &signer_receipts::Chain) -> receipts::SignedCheckpoint {
        let mut last = self.checkpoint.lock();
        if let Some(signed) = last.as_ref()
            && signed.checkpoint.seq == chain.seq()
            && signed.checkpoint.head == chain.head()
            && signed.checkpoint.decider == chain.decider()
        {
            return *signed;
        }
        let signed = self.checkpoint_key.sign(&chain.checkpoint(self.id.0, self.clock.now()));
        *last = Some(signed);
        signed
    }

    /// A document with `user_data` chosen by this enclave: the binding of a provenance or
    /// handover document. Never reachable with caller-chosen bytes (a document is only as good
    /// as the enclave's reason to sign its `user_data`).
    pub(super) fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
    ) -> Result<Vec<u8>, EnclaveError> {
        self.attester
            .attest(self.recipient.spki_der(), user_data, nonce)
            .map_err(|e| EnclaveError::Internal(format!("attestation: {e}")))
    }

    /// Refuses a record that names an instance this enclave does not answer for: `WrongEnclave`
    /// if it was issued while this enclave ran (a routing mistake), `Orphaned` if before (its
    /// enclave is gone and no handover brought its state here).
    fn check_owner(
        &self,
        what: &'static str,
        record_id: &[u8; 16],
        owner: EnclaveId,
        issued_at: u64,
    ) -> Result<(), EnclaveError> {
        let answers_for = self.answers_for.read();
        if answers_for.contains(&owner) {
            return Ok(());
        }
        let id = uuid_text(record_id);
        if issued_at < self.started_at {
            return Err(EnclaveError::Orphaned { what, id, owner });
        }
        let serving: Vec<String> = answers_for.iter().map(ToString::to_string).collect();
        Err(EnclaveError::WrongEnclave { what, id, owner, serving: serving.join(", ") })
    }

    /// Opens a record's key from its KMS envelope and the record with it, in one constant flow
    /// (SPEC §3 invariant 8).
    ///
    /// `Ok(None)`: the envelope is addressed to another enclave key (made for this enclave's
    /// predecessor before a restart); the caller answers `NeedKey`. A malformed envelope (before
    /// any cryptography) is [`EnclaveError::Envelope`]. Everything from the RSA step on — RSA-OAEP,
    /// the content's length and padding, the record's AEAD and what it decrypts to — ends in one
    /// answer, [`EnclaveError::EnvelopeRejected`], after the same work, and the envelope's
    /// wrapped content key is refused for 7 days (while the bounded store has room for it), so
    /// an adaptive attacker gets one guess per KMS call.
    fn open_with_envelope<T>(
        &self,
        bytes: &[u8],
        open: impl FnOnce(&Secret32) -> Result<T, RecordError>,
    ) -> Result<Option<T>, EnclaveError> {
        let parsed = envelope::parse(bytes).map_err(|e| EnclaveError::Envelope(e.to_string()))?;
        if parsed.rid != self.recipient.rid() {
            return Ok(None);
        }
        let wrapped_key: [u8; 32] = Sha256::digest(parsed.encrypted_key).into();
        let now = self.clock.now();
        if self.refused_envelopes.lock().get(&wrapped_key, now).is_some() {
            return Err(EnclaveError::EnvelopeRejected);
        }
        let mut blinding = crate::secret::seeded_rng(&*self.rng)?;
        let (key, unwrapped) = envelope::unwrap_key32(&parsed, &self.recipient, &mut blinding);
        let opened = open(&key);
        if bool::from(unwrapped)
            && let Ok(value) = opened
        {
            return Ok(Some(value));
        }
        self.envelope_failures.fetch_add(1, Ordering::Relaxed);
        // Remembering a failure only rations an attacker's guesses (the constant flow is what
        // denies the oracle), so a full store gives up its oldest refusal rather than refusing
        // every envelope: filling it must not stop all key opening.
        self.refused_envelopes.lock().insert_evicting(
            wrapped_key,
            (),
            now.saturating_add(ENVELOPE_REFUSAL_SECONDS),
            now,
        );
        Err(EnclaveError::EnvelopeRejected)
    }

    fn need_key(&self, record_id: [u8; 16], wrapped: WrappedKey) -> NeedKey {
        self.need_key.fetch_add(1, Ordering::Relaxed);
        NeedKey { record_id, wrapped }
    }
}

impl From<crate::policy::LedgerFull> for EnclaveError {
    fn from(e: crate::policy::LedgerFull) -> Self {
        Self::Capacity(e.to_string())
    }
}

impl From<crate::store::StoreFull> for EnclaveError {
    fn from(e: crate::store::StoreFull) -> Self {
        Self::Capacity(e.to_string())
    }
}
