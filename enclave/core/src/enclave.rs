//! The enclave's decisions: create agents and grants, sign (with or without a KMS envelope),
//! sign scheduled transfers, revoke, kill switch. Thread-safe; no I/O; clock and randomness are
//! injected.
//!
//! Order of checks for `sign` (SPEC §5, §3): kill switch → grant header (type, bot, lifetime,
//! revocation, expiry on the enclave clock) → opened grant (cache, or the KMS envelope, which
//! only helps if it opens the AEAD) → agent key (bound wallet and public key, AEAD, derived key
//! equals the bound key) → transaction (parse, agent is a signer) → idempotency → policy → record
//! spend and request id atomically → sign. Everything before the signature can refuse.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use parking_lot::{Mutex, RwLock};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest, Sha256};

use crate::agent_key::{AgentKind, signing_key};
use crate::envelope::{self, RecipientKey};
use crate::error::{EnclaveError, RecordError};
use crate::policy::{Denial, Ledger, Policy, Rule, SpendKey, check_intent, evaluate_transaction};
use crate::pubkey::Pubkey;
use crate::records::{
    AgentKeyHeader, GrantContents, GrantHeader, KeyWrap, SealedAgentKey, SealedGrant,
    SealedScheduled, WrappedKey, seal_agent_key, seal_grant,
};
use crate::secret::{Secret32, SecureRandom, random_array};
use crate::solana::Transaction;
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

/// Enclave settings (from the measured config).
#[derive(Clone, Debug)]
pub struct EnclaveConfig {
    /// The pinned KMS RSA public key: the only key new secrets are sealed to.
    pub kms_public_key: RsaPublicKey,
    /// Longest grant lifetime accepted or issued, seconds (default 3600, at least 60).
    pub max_grant_ttl: u64,
    /// Longest `[not_before, not_after]` window of a scheduled record, seconds (default 48 h).
    pub max_schedule_window: u64,
    /// How far in the future a grant's `issued_at` may be (other enclaves' clocks), seconds.
    pub clock_skew: u64,
    pub request_store_capacity: usize,
    pub schedule_store_capacity: usize,
    pub grant_cache_capacity: usize,
    pub revocation_capacity: usize,
    /// Content keys of envelopes that failed to open, refused thereafter (see [`Enclave::sign`]).
    pub envelope_refusal_capacity: usize,
}

pub const DEFAULT_MAX_GRANT_TTL: u64 = 3600;
pub const MIN_MAX_GRANT_TTL: u64 = 60;
pub const DEFAULT_MAX_SCHEDULE_WINDOW: u64 = 48 * 3600;
pub const DEFAULT_REQUEST_STORE_CAPACITY: usize = 1_000_000;
/// How long a failed envelope's content key stays refused. Opening the same envelope again can
/// only repeat the answer it got; an adaptive attack needs fresh guesses under the same key, and
/// gets one per KMS call, or one more per key each week.
pub const ENVELOPE_REFUSAL_SECONDS: u64 = 7 * 86_400;

impl EnclaveConfig {
    /// Defaults (SPEC §14) around the pinned KMS key's SPKI DER.
    pub fn new(kms_public_key_spki_der: &[u8]) -> Result<Self, EnclaveError> {
        let kms_public_key = RsaPublicKey::from_public_key_der(kms_public_key_spki_der)
            .map_err(|e| EnclaveError::Internal(format!("pinned KMS public key: {e}")))?;
        let bits = kms_public_key.size() * 8;
        if bits != 3072 && bits != 4096 {
            return Err(EnclaveError::Internal(format!(
                "pinned KMS public key is {bits} bits; the execution key must be RSA_3072 or RSA_4096"
            )));
        }
        Ok(Self {
            kms_public_key,
            max_grant_ttl: DEFAULT_MAX_GRANT_TTL,
            max_schedule_window: DEFAULT_MAX_SCHEDULE_WINDOW,
            clock_skew: 60,
            request_store_capacity: DEFAULT_REQUEST_STORE_CAPACITY,
            schedule_store_capacity: 100_000,
            grant_cache_capacity: 100_000,
            revocation_capacity: 100_000,
            envelope_refusal_capacity: 100_000,
        })
    }
}

/// Agent kinds a caller may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewAgentKind {
    Seed,
    Mnemonic { account: u32 },
}

/// `create_agent` input.
#[derive(Debug)]
pub struct CreateAgent {
    pub wallet: Pubkey,
    pub umk: Secret32,
    pub kind: NewAgentKind,
}

/// `create_agent` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedAgent {
    pub agent_pubkey: Pubkey,
    pub agent_id: [u8; 16],
    pub record: Vec<u8>,
}

/// `create_grant` input.
#[derive(Debug)]
pub struct CreateGrant {
    pub wallet: Pubkey,
    pub bot_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub umk: Secret32,
    pub policy: Policy,
    pub ttl_seconds: u64,
}

/// `create_grant` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedGrant {
    pub grant_id: [u8; 16],
    pub issued_at: u64,
    pub expires_at: u64,
    pub record: Vec<u8>,
}

/// `sign` input.
#[derive(Clone, Copy, Debug)]
pub struct SignRequest<'a> {
    pub grant_record: &'a [u8],
    pub agent_key_record: &'a [u8],
    pub bot_id: [u8; 16],
    pub transaction: &'a [u8],
    pub request_id: [u8; 16],
    pub declared_notional_cents: Option<u64>,
    /// KMS `CiphertextForRecipient` for the grant's wrapped key, after a `NeedKey`.
    pub envelope: Option<&'a [u8]>,
}

/// `sign_scheduled` input.
#[derive(Clone, Copy, Debug)]
pub struct SignScheduledRequest<'a> {
    pub scheduled_record: &'a [u8],
    pub transaction: &'a [u8],
    pub request_id: [u8; 16],
    pub envelope: Option<&'a [u8]>,
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub signature: [u8; 64],
    pub transaction: Vec<u8>,
    /// The grant or scheduled record used.
    pub record_id: [u8; 16],
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

/// What to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A grant (or scheduled record) id.
    Record([u8; 16]),
    /// Every grant and scheduled record of a wallet issued up to now.
    Wallet(Pubkey),
}

/// Counts for `status` (never contents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub kill_switch: bool,
    pub cached_grants: usize,
    pub request_ids: usize,
    pub request_id_capacity: usize,
    pub scheduled_ids: usize,
    pub revocations: usize,
    pub spend_counters: usize,
    pub signatures: u64,
    pub need_key: u64,
    pub denials: u64,
    /// Envelopes whose content did not open a record (each is refused from then on).
    pub envelope_failures: u64,
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

/// Everything a signing decision reads and writes, under one lock so that revocation, the kill
/// switch, idempotency, limits and recording are one atomic step.
struct DecisionState {
    kill_switch: bool,
    ledger: Ledger,
    requests: TtlMap<[u8; 16], [u8; 32]>,
    /// Used scheduled records: (schedule id, agent public key) → the request that used it. The
    /// agent key is part of the mark because only the holder of that agent's seed can make a
    /// record that opens with it; a forged record reusing a victim's id cannot burn it.
    scheduled: TtlMap<[u8; 48], [u8; 16]>,
    revoked_records: TtlMap<[u8; 16], ()>,
    revoked_wallets: TtlMap<[u8; 32], u64>,
}

/// How a request id stands.
enum Seen {
    New,
    SameRequest,
}

impl DecisionState {
    fn check_request(
        &self,
        request_id: &[u8; 16],
        digest: &[u8; 32],
        now: u64,
    ) -> Result<Seen, EnclaveError> {
        match self.requests.get(request_id, now) {
            None => Ok(Seen::New),
            Some(d) if d == digest => Ok(Seen::SameRequest),
            Some(_) => Err(EnclaveError::ReplayedRequest { request_id: uuid_text(request_id) }),
        }
    }

    fn check_revoked(
        &self,
        record_id: &[u8; 16],
        wallet: &Pubkey,
        issued_at: Option<u64>,
        now: u64,
    ) -> Result<(), EnclaveError> {
        if self.kill_switch {
            return Err(EnclaveError::KillSwitch);
        }
        if self.revoked_records.get(record_id, now).is_some() {
            return Err(EnclaveError::GrantRevoked(format!("record {}", uuid_text(record_id))));
        }
        if let Some(revoked_at) = self.revoked_wallets.get(&wallet.0, now) {
            // Grants issued at or before the revocation; scheduled records (no issue time) always.
            if issued_at.is_none_or(|t| t <= *revoked_at) {
                return Err(EnclaveError::GrantRevoked(format!("every record of wallet {wallet}")));
            }
        }
        Ok(())
    }
}

/// The enclave.
pub struct Enclave {
    config: EnclaveConfig,
    recipient: RecipientKey,
    rng: Arc<dyn SecureRandom>,
    clock: Arc<dyn Clock>,
    /// Opened grants by SHA-256 of the grant record.
    grants: RwLock<HashMap<[u8; 32], Arc<OpenedGrant>>>,
    state: Mutex<DecisionState>,
    /// SHA-256 of the RSA-wrapped content keys of envelopes that failed to open.
    refused_envelopes: Mutex<TtlMap<[u8; 32], ()>>,
    kill_switch: AtomicBool,
    signatures: AtomicU64,
    need_key: AtomicU64,
    denials: AtomicU64,
    envelope_failures: AtomicU64,
}

/// Parses a transaction the agent must sign: any parse failure, or the agent not being a
/// required signer, is the caller's `bad_request`.
fn parse_for_agent<'a>(raw: &'a [u8], agent: &Pubkey) -> Result<Transaction<'a>, EnclaveError> {
    let tx = Transaction::parse(raw).map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
    if tx.signer_index(&agent.0).is_none() {
        return Err(EnclaveError::BadRequest(format!(
            "agent {agent} is not a required signer of this transaction"
        )));
    }
    Ok(tx)
}

/// The agent-key record must belong to the grant's wallet and be the agent the grant names.
fn check_agent_binding(grant: &GrantHeader, agent: &AgentKeyHeader) -> Result<(), EnclaveError> {
    if agent.wallet != grant.wallet {
        return Err(EnclaveError::RecordInvalid(format!(
            "agent key belongs to wallet {}, the grant to wallet {}",
            agent.wallet, grant.wallet
        )));
    }
    if agent.agent_pubkey != grant.agent_pubkey {
        return Err(EnclaveError::RecordInvalid(format!(
            "agent key is {}, the grant authorizes {}",
            agent.agent_pubkey, grant.agent_pubkey
        )));
    }
    Ok(())
}

/// 16-byte ids as UUID text (how the API shows them).
pub fn uuid_text(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    )
}

impl Enclave {
    pub fn new(
        config: EnclaveConfig,
        recipient: RecipientKey,
        rng: Arc<dyn SecureRandom>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let state = DecisionState {
            kill_switch: false,
            ledger: Ledger::default(),
            requests: TtlMap::new("request_id", config.request_store_capacity),
            scheduled: TtlMap::new("scheduled record", config.schedule_store_capacity),
            revoked_records: TtlMap::new("revoked record", config.revocation_capacity),
            revoked_wallets: TtlMap::new("revoked wallet", config.revocation_capacity),
        };
        Self {
            recipient,
            rng,
            clock,
            grants: RwLock::new(HashMap::new()),
            refused_envelopes: Mutex::new(TtlMap::new(
                "refused envelope",
                config.envelope_refusal_capacity,
            )),
            state: Mutex::new(state),
            kill_switch: AtomicBool::new(false),
            signatures: AtomicU64::new(0),
            need_key: AtomicU64::new(0),
            denials: AtomicU64::new(0),
            envelope_failures: AtomicU64::new(0),
            config,
        }
    }

    /// The recipient key's SPKI DER (goes into attestation documents as `public_key`).
    pub fn recipient_public_key(&self) -> &[u8] {
        self.recipient.spki_der()
    }

    pub fn config(&self) -> &EnclaveConfig {
        &self.config
    }

    /// Generates an agent secret and returns its sealed record.
    pub fn create_agent(&self, req: CreateAgent) -> Result<CreatedAgent, EnclaveError> {
        let (kind, secret) = match req.kind {
            NewAgentKind::Seed => (AgentKind::Seed, Secret32::random(&*self.rng)?),
            NewAgentKind::Mnemonic { account } => {
                (AgentKind::Mnemonic { account }, Secret32::random(&*self.rng)?)
            }
        };
        let key = signing_key(kind, secret.expose())
            .map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
        let agent_pubkey = Pubkey(key.verifying_key().to_bytes());
        let agent_id = random_array(&*self.rng)?;
        let header = AgentKeyHeader { wallet: req.wallet, agent_id, agent_pubkey, kind };
        let record = seal_agent_key(&header, secret.expose(), &req.umk, &*self.rng)?;
        Ok(CreatedAgent { agent_pubkey, agent_id, record })
    }

    /// Seals a grant to the pinned KMS key (never to anything received in a request).
    pub fn create_grant(&self, req: CreateGrant) -> Result<CreatedGrant, EnclaveError> {
        if req.ttl_seconds == 0 || req.ttl_seconds > self.config.max_grant_ttl {
            return Err(EnclaveError::BadRequest(format!(
                "ttl_seconds {} must be between 1 and the enclave's maximum {}",
                req.ttl_seconds, self.config.max_grant_ttl
            )));
        }
        req.policy.validate().map_err(|e| EnclaveError::BadRequest(format!("policy: {e}")))?;
        let issued_at = self.clock.now();
        let header = GrantHeader {
            wallet: req.wallet,
            grant_id: random_array(&*self.rng)?,
            bot_id: req.bot_id,
            agent_pubkey: req.agent_pubkey,
            issued_at,
            expires_at: issued_at.saturating_add(req.ttl_seconds),
        };
        let contents = GrantContents { umk: req.umk, policy: req.policy };
        let record =
            seal_grant(&header, &contents, KeyWrap::Rsa(&self.config.kms_public_key), &*self.rng)?;
        Ok(CreatedGrant {
            grant_id: header.grant_id,
            issued_at,
            expires_at: header.expires_at,
            record,
        })
    }

    fn deny(&self, d: Denial) -> EnclaveError {
        self.denials.fetch_add(1, Ordering::Relaxed);
        EnclaveError::PolicyDenied(d)
    }

    /// Header checks that need no key: lifetime, clock, revocation, expiry.
    fn check_grant_header(&self, h: &GrantHeader, now: u64) -> Result<(), EnclaveError> {
        if self.kill_switch.load(Ordering::Acquire) {
            return Err(EnclaveError::KillSwitch);
        }
        let lifetime = h.expires_at - h.issued_at;
        if lifetime > self.config.max_grant_ttl {
            return Err(EnclaveError::RecordInvalid(format!(
                "grant lifetime {lifetime} s exceeds the enclave's maximum {} s",
                self.config.max_grant_ttl
            )));
        }
        if h.issued_at > now.saturating_add(self.config.clock_skew) {
            return Err(EnclaveError::RecordInvalid(format!(
                "grant issued_at {} is ahead of the enclave clock {now}",
                h.issued_at
            )));
        }
        self.state.lock().check_revoked(&h.grant_id, &h.wallet, Some(h.issued_at), now)?;
        if now >= h.expires_at {
            return Err(EnclaveError::GrantExpired {
                grant_id: uuid_text(&h.grant_id),
                expires_at: h.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// Opens a record's key from its KMS envelope and the record with it, in one constant flow
    /// (SPEC §3 invariant 8).
    ///
    /// `Ok(None)`: the envelope is addressed to another enclave key (made for this enclave's
    /// predecessor before a restart); the caller answers `NeedKey`. A malformed envelope (before
    /// any cryptography) is [`EnclaveError::Envelope`]. Everything from the RSA step on — RSA-OAEP,
    /// the content's length and padding, the record's AEAD and what it decrypts to — ends in one
    /// answer, [`EnclaveError::EnvelopeRejected`], after the same work, and the envelope's
    /// wrapped content key is refused from then on, so an adaptive attacker gets one guess per
    /// KMS call.
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
        {
            let mut refused = self.refused_envelopes.lock();
            if refused.get(&wrapped_key, now).is_some() {
                return Err(EnclaveError::EnvelopeRejected);
            }
            // Fail closed before any work if a failure could not be remembered.
            refused.ensure_room(now)?;
        }
        let (key, unwrapped) = envelope::unwrap_key32(&parsed, &self.recipient);
        let opened = open(&key);
        if bool::from(unwrapped)
            && let Ok(value) = opened
        {
            return Ok(Some(value));
        }
        self.envelope_failures.fetch_add(1, Ordering::Relaxed);
        self.refused_envelopes.lock().insert(
            wrapped_key,
            (),
            now.saturating_add(ENVELOPE_REFUSAL_SECONDS),
            now,
        )?;
        Err(EnclaveError::EnvelopeRejected)
    }

    /// Opens the agent key a grant authorizes (bound wallet and public key, AEAD under the
    /// grant's UMK, derived key equal to the bound key).
    fn open_agent(
        header: &GrantHeader,
        contents: &GrantContents,
        record: &[u8],
    ) -> Result<CachedAgent, EnclaveError> {
        let sealed = SealedAgentKey::parse(record)?;
        check_agent_binding(header, &sealed.header)?;
        let key = sealed.open(&contents.umk)?;
        Ok(CachedAgent { record: record.into(), key: Arc::new(key) })
    }

    fn cache_grant(&self, digest: [u8; 32], opened: Arc<OpenedGrant>, now: u64) {
        let mut grants = self.grants.write();
        if grants.len() >= self.config.grant_cache_capacity && !grants.contains_key(&digest) {
            grants.retain(|_, g| g.header.expires_at > now);
            if grants.len() >= self.config.grant_cache_capacity {
                // Drop the grant closest to expiry; it will need one more KMS round trip.
                if let Some(d) =
                    grants.iter().min_by_key(|(_, g)| g.header.expires_at).map(|(d, _)| *d)
                {
                    grants.remove(&d);
                }
            }
        }
        grants.insert(digest, opened);
    }

    /// The agent's signing key for this request: the cached one when the same agent record is
    /// presented again, else opened afresh (and checked) under the grant's UMK.
    fn agent_key(grant: &OpenedGrant, record: &[u8]) -> Result<Arc<SigningKey>, EnclaveError> {
        if *grant.agent.record == *record {
            return Ok(Arc::clone(&grant.agent.key));
        }
        Ok(Self::open_agent(&grant.header, &grant.contents, record)?.key)
    }

    /// Signs a transaction under an execution grant, or answers `NeedKey`.
    pub fn sign(&self, req: &SignRequest<'_>) -> Result<SignOutcome, EnclaveError> {
        let sealed = SealedGrant::parse(req.grant_record)?;
        let h = sealed.header;
        if h.bot_id != req.bot_id {
            return Err(EnclaveError::RecordInvalid(format!(
                "the grant is for bot {}, the request names bot {}",
                uuid_text(&h.bot_id),
                uuid_text(&req.bot_id)
            )));
        }
        self.check_grant_header(&h, self.clock.now())?;
        let digest: [u8; 32] = Sha256::digest(req.grant_record).into();
        let cached = self.grants.read().get(&digest).cloned();
        let (grant, key) = match (cached, req.envelope) {
            (Some(grant), _) => {
                let key = Self::agent_key(&grant, req.agent_key_record)?;
                (grant, key)
            }
            (None, Some(env)) => {
                let Some(contents) = self.open_with_envelope(env, |dek| sealed.open(dek))? else {
                    return Ok(self.need_key(h.grant_id, sealed.wrapped));
                };
                let agent = Self::open_agent(&h, &contents, req.agent_key_record)?;
                let key = Arc::clone(&agent.key);
                let grant = Arc::new(OpenedGrant { header: h, contents, agent });
                self.cache_grant(digest, Arc::clone(&grant), self.clock.now());
                (grant, key)
            }
            (None, None) => return Ok(self.need_key(h.grant_id, sealed.wrapped)),
        };
        let tx = parse_for_agent(req.transaction, &h.agent_pubkey)?;
        let request_digest = {
            let mut d = Sha256::new();
            d.update(b"sign/v1");
            d.update(h.grant_id);
            d.update(req.bot_id);
            d.update(req.declared_notional_cents.map(|n| n.to_le_bytes()).unwrap_or([0xff; 8]));
            d.update(tx.message);
            <[u8; 32]>::from(d.finalize())
        };
        let policy = &grant.contents.policy;
        let spend = evaluate_transaction(&tx, policy, &h.agent_pubkey, req.declared_notional_cents);
        let spend_key = SpendKey { wallet: h.wallet.0, bot_id: h.bot_id, agent: h.agent_pubkey.0 };
        {
            let mut state = self.state.lock();
            // The decision's instant is read under the lock that records it, so the order of
            // decisions is the order of their clock readings (no late pre-midnight request
            // charged after a post-midnight one), and expiry is judged at that instant.
            let now = self.clock.now();
            state.check_revoked(&h.grant_id, &h.wallet, Some(h.issued_at), now)?;
            if now >= h.expires_at {
                return Err(EnclaveError::GrantExpired {
                    grant_id: uuid_text(&h.grant_id),
                    expires_at: h.expires_at,
                    now,
                });
            }
            if let Seen::New = state.check_request(&req.request_id, &request_digest, now)? {
                let spend = spend.map_err(|d| self.deny(d))?;
                state.ledger.check(&spend_key, &spend, policy, now).map_err(|d| self.deny(d))?;
                state.requests.insert(req.request_id, request_digest, h.expires_at, now)?;
                state.ledger.record(spend_key, &spend, now);
            }
            // An identical retry re-signs without charging again: ed25519 is deterministic, so
            // it gets the very same signature.
        }
        let (signature, transaction) =
            tx.sign(&key).map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignOutcome::Signed(Signed { signature, transaction, record_id: h.grant_id }))
    }

    fn need_key(&self, record_id: [u8; 16], wrapped: WrappedKey) -> SignOutcome {
        self.need_key.fetch_add(1, Ordering::Relaxed);
        SignOutcome::NeedKey(NeedKey { record_id, wrapped })
    }

    /// Signs the one transfer a scheduled record allows, once.
    pub fn sign_scheduled(
        &self,
        req: &SignScheduledRequest<'_>,
    ) -> Result<SignOutcome, EnclaveError> {
        if self.kill_switch.load(Ordering::Acquire) {
            return Err(EnclaveError::KillSwitch);
        }
        let sealed = SealedScheduled::parse(req.scheduled_record)?;
        let h = sealed.header;
        let window = h.not_after - h.not_before;
        if window > self.config.max_schedule_window {
            return Err(EnclaveError::RecordInvalid(format!(
                "scheduled window {window} s exceeds the enclave's maximum {} s",
                self.config.max_schedule_window
            )));
        }
        let now = self.clock.now();
        self.state.lock().check_revoked(&h.schedule_id, &h.wallet, None, now)?;
        if now < h.not_before {
            return Err(self.deny(Denial {
                rule: Rule::ScheduleWindow,
                limit: Some(h.not_before),
                requested: Some(now),
                used: None,
                subject: Some(uuid_text(&h.schedule_id)),
                message: format!("not valid before {} (enclave time {now})", h.not_before),
            }));
        }
        if now > h.not_after {
            return Err(EnclaveError::GrantExpired {
                grant_id: uuid_text(&h.schedule_id),
                expires_at: h.not_after,
                now,
            });
        }
        let tx = parse_for_agent(req.transaction, &h.agent_pubkey)?;
        check_intent(&tx, &h.agent_pubkey, &h.intent_hash, h.max_fee_lamports)
            .map_err(|d| self.deny(d))?;
        let request_digest = {
            let mut d = Sha256::new();
            d.update(b"sign_scheduled/v1");
            d.update(h.schedule_id);
            d.update(tx.message);
            <[u8; 32]>::from(d.finalize())
        };
        let expires_at = h.not_after.saturating_add(1);
        let mut used_mark = [0u8; 48];
        used_mark[..16].copy_from_slice(&h.schedule_id);
        used_mark[16..].copy_from_slice(&h.agent_pubkey.0);
        let check_unused = |state: &DecisionState, now: u64| -> Result<Seen, EnclaveError> {
            let seen = state.check_request(&req.request_id, &request_digest, now)?;
            match state.scheduled.get(&used_mark, now) {
                Some(used_by) if *used_by != req.request_id => Err(EnclaveError::ReplayedRequest {
                    request_id: format!(
                        "{} (scheduled record {} was already used by request {})",
                        uuid_text(&req.request_id),
                        uuid_text(&h.schedule_id),
                        uuid_text(used_by)
                    ),
                }),
                _ => Ok(seen),
            }
        };
        check_unused(&self.state.lock(), now)?;
        let Some(env) = req.envelope else {
            return Ok(self.need_key(h.schedule_id, sealed.wrapped));
        };
        let Some(key) = self.open_with_envelope(env, |ephemeral| sealed.open(ephemeral))? else {
            return Ok(self.need_key(h.schedule_id, sealed.wrapped));
        };
        {
            let mut state = self.state.lock();
            let now = self.clock.now();
            state.check_revoked(&h.schedule_id, &h.wallet, None, now)?;
            if now > h.not_after {
                return Err(EnclaveError::GrantExpired {
                    grant_id: uuid_text(&h.schedule_id),
                    expires_at: h.not_after,
                    now,
                });
            }
            if let Seen::New = check_unused(&state, now)? {
                // Both marks or neither: a record marked used without its request id (or the
                // reverse) would either burn the record or let it be used twice.
                state.scheduled.ensure_room(now)?;
                state.requests.ensure_room(now)?;
                state.scheduled.insert(used_mark, req.request_id, expires_at, now)?;
                state.requests.insert(req.request_id, request_digest, expires_at, now)?;
            }
        }
        let (signature, transaction) =
            tx.sign(&key).map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignOutcome::Signed(Signed { signature, transaction, record_id: h.schedule_id }))
    }

    /// Revokes a record id or a whole wallet, effective for every decision after this returns.
    /// Returns how many opened grants were dropped (and zeroized) from memory.
    pub fn revoke(&self, target: RevokeTarget) -> Result<usize, EnclaveError> {
        let now = self.clock.now();
        // Anything revoked now expires within the longest lifetime we accept.
        let remember_until = now
            .saturating_add(self.config.max_grant_ttl.max(self.config.max_schedule_window))
            .saturating_add(self.config.clock_skew)
            .saturating_add(1);
        {
            let mut state = self.state.lock();
            let result = match target {
                RevokeTarget::Record(id) => {
                    state.revoked_records.insert(id, (), remember_until, now)
                }
                RevokeTarget::Wallet(wallet) => {
                    state.revoked_wallets.insert(wallet.0, now, remember_until, now)
                }
            };
            result?;
        }
        let mut grants = self.grants.write();
        let before = grants.len();
        grants.retain(|_, g| match target {
            RevokeTarget::Record(r) => g.header.grant_id != r,
            RevokeTarget::Wallet(w) => g.header.wallet != w,
        });
        Ok(before - grants.len())
    }

    /// Engages or releases the kill switch; returns the new state.
    pub fn set_kill_switch(&self, engaged: bool) -> bool {
        let mut state = self.state.lock();
        state.kill_switch = engaged;
        self.kill_switch.store(engaged, Ordering::Release);
        engaged
    }

    /// Drops expired grants (zeroizing them), expired store entries and stale counters.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut grants = self.grants.write();
        let before = grants.len();
        grants.retain(|_, g| g.header.expires_at > now);
        let dropped = before - grants.len();
        drop(grants);
        let mut state = self.state.lock();
        state.requests.evict_expired(now);
        state.scheduled.evict_expired(now);
        state.revoked_records.evict_expired(now);
        state.revoked_wallets.evict_expired(now);
        state.ledger.prune(now);
        drop(state);
        self.refused_envelopes.lock().evict_expired(now);
        dropped
    }

    /// Drops every opened grant (zeroizing it); for shutdown.
    pub fn clear(&self) {
        self.grants.write().clear();
    }

    pub fn status(&self) -> Status {
        let state = self.state.lock();
        Status {
            kill_switch: state.kill_switch,
            cached_grants: self.grants.read().len(),
            request_ids: state.requests.len(),
            request_id_capacity: state.requests.capacity(),
            scheduled_ids: state.scheduled.len(),
            revocations: state.revoked_records.len() + state.revoked_wallets.len(),
            spend_counters: state.ledger.len(),
            signatures: self.signatures.load(Ordering::Relaxed),
            need_key: self.need_key.load(Ordering::Relaxed),
            denials: self.denials.load(Ordering::Relaxed),
            envelope_failures: self.envelope_failures.load(Ordering::Relaxed),
        }
    }
}

impl From<crate::store::StoreFull> for EnclaveError {
    fn from(e: crate::store::StoreFull) -> Self {
        Self::Capacity(e.to_string())
    }
}
