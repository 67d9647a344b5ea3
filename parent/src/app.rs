//! The parent's operations: each HTTP route becomes one or two enclave calls, with KMS in
//! between when the enclave needs a record's key.
//!
//! Envelope prefetch: the parent can read a grant's public header (id, expiry, wrapped key)
//! itself, so for a grant it has not seen on the current enclave connection it calls KMS first
//! and sends the envelope with the first request — one round trip instead of two. Concurrent
//! first requests for one grant share a single KMS call. A grant seen once is remembered until it
//! expires, so each grant costs one KMS call per lifetime on a healthy enclave. If the enclave
//! still answers `need_key` (it restarted, or evicted the grant), the parent fetches a fresh
//! envelope and retries once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use signer_api::HttpCode;
use signer_protocol::{ClientError, EnclaveClient, ErrorReply, Op, Outcome, Reply, SignOp};
use signer_types::error::ErrorCode;
use signer_types::ids::EnclaveId;
use signer_types::policy::Denial;
use signer_types::pubkey::Pubkey;
use signer_types::records::{SealedGrant, WrapAlg};
use tokio::sync::OnceCell;

use crate::attestation::Attestation;
use crate::config::Settings;
use crate::kms::{KmsClient, KmsError, Unwrap};
use crate::metrics::Metrics;

/// An API error: HTTP status, stable code, detail; the denial for `policy_denied`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub denial: Option<Box<Denial>>,
}

impl ApiError {
    /// An error the parent itself raises (codes of the HTTP layer and of KMS).
    pub fn http(code: HttpCode, detail: impl Into<String>) -> Self {
        Self {
            status: code.http_status(),
            code: code.as_str(),
            title: code.title(),
            detail: detail.into(),
            denial: None,
        }
    }

    /// An error with one of the shared codes.
    pub fn coded(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status: code.http_status(),
            code: code.as_str(),
            title: code.title(),
            detail: detail.into(),
            denial: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::coded(ErrorCode::BadRequest, detail)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::coded(ErrorCode::EnclaveUnavailable, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::coded(ErrorCode::Internal, detail)
    }
}

impl From<ErrorReply> for ApiError {
    fn from(e: ErrorReply) -> Self {
        let mut error = Self::coded(e.code, e.message);
        error.denial = e.denial.map(Box::new);
        error
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        Self::unavailable(format!("the enclave is unavailable: {e}"))
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::AccessDenied { .. } | KmsError::Disabled(_) => {
                Self::http(HttpCode::KmsAccessDenied, e.to_string())
            }
            KmsError::InvalidCiphertext(_) => Self::coded(ErrorCode::RecordInvalid, e.to_string()),
            KmsError::Unavailable(_) => Self::unavailable(e.to_string()),
            KmsError::PlaintextReturned | KmsError::Rejected(_) => Self::internal(e.to_string()),
        }
    }
}

type Prefetch = Arc<OnceCell<Result<Vec<u8>, ApiError>>>;

/// What the parent reads from a grant's public header (parsed once per request; the header is
/// the record's cleartext AAD, so none of this is secret).
pub struct GrantInfo {
    pub id: [u8; 16],
    pub enclave_id: EnclaveId,
    pub expires_at: u64,
    pub wallet: Pubkey,
    pub bot_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub wrapped: signer_types::records::WrappedKey,
}

impl GrantInfo {
    pub fn parse(grant_record: &[u8]) -> Result<Self, ApiError> {
        let grant = SealedGrant::parse(grant_record)
            .map_err(|e| ApiError::coded(ErrorCode::RecordInvalid, format!("grant_record: {e}")))?;
        Ok(Self {
            id: grant.header.grant_id,
            enclave_id: grant.header.enclave_id,
            expires_at: grant.header.expires_at,
            wallet: grant.header.wallet,
            bot_id: grant.header.bot_id,
            agent_pubkey: grant.header.agent_pubkey,
            wrapped: grant.wrapped,
        })
    }
}

pub use signer_api::HandoverReport;

/// A reply that does not answer the operation: the enclave misbehaves.
pub fn unexpected(op: &str, reply: &Reply) -> ApiError {
    let name = match reply {
        Reply::NeedKey { .. } => "need_key",
        Reply::Signed { .. } => "signed",
        _ => "another operation's reply",
    };
    ApiError::internal(format!("unexpected enclave reply to {op}: {name}"))
}

/// Shared state behind every route.
pub struct Parent {
    pub settings: Settings,
    pub enclave: EnclaveClient,
    pub kms: KmsClient,
    pub attestation: Attestation,
    pub metrics: Arc<Metrics>,
    /// Grants known to be open in the enclave: id → (expires_at, connection generation).
    pub(crate) seen: Mutex<HashMap<[u8; 16], (u64, u64)>>,
    /// Envelopes being fetched, by SHA-256 of the whole grant record (the enclave's own cache
    /// key), so a forged record that borrows a grant's id or wrapped key shares nothing with it.
    pub(crate) prefetches: Mutex<HashMap<[u8; 32], Prefetch>>,
    /// One handover at a time.
    pub(crate) handover_lock: tokio::sync::Mutex<()>,
    /// Completed switches to a successor enclave (requests answered `enclave_handed_over` wait
    /// for the next one and retry there).
    pub(crate) switches: tokio::sync::watch::Sender<u64>,
    /// The instances the enclave answers for, by connection generation (asked once per
    /// connection): a record naming another instance gets no KMS call.
    answers_for: Mutex<Option<(u64, Vec<EnclaveId>)>>,
    /// The execution key's state at the last check.
    kms_key: Mutex<Option<(KmsKeyState, std::time::Instant)>>,
    /// Member traffic and forwarding, when the enclave is a member of a cluster (SPEC §16).
    pub cluster: crate::cluster::ClusterRelay,
}

/// Whether the KMS execution key can open records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KmsKeyState {
    Enabled,
    /// Disabled (the operator's hard stop) or pending deletion: no new grant can open.
    Disabled,
    /// KMS did not answer.
    Unreachable,
}

impl KmsKeyState {
    /// What a KMS call's result says about the key, if anything (a refusal of one record says
    /// nothing about the key).
    fn learned_from<T>(result: &Result<T, KmsError>) -> Option<Self> {
        match result {
            Ok(_) => Some(Self::Enabled),
            Err(KmsError::Disabled(_)) => Some(Self::Disabled),
            Err(KmsError::Unavailable(_)) => Some(Self::Unreachable),
            Err(_) => None,
        }
    }
}

/// How long a request answered `enclave_handed_over` waits for the switch to the successor.
const HANDOVER_WAIT: Duration = Duration::from_secs(30);

/// Most envelope fetches shared at once (beyond this, requests go without a prefetch and the
/// enclave's `need_key` answer fetches their envelope).
const MAX_PREFETCHES: usize = 10_000;

/// Removes a shared prefetch when its request is done, even if the request is cancelled (its
/// client went away) while waiting for KMS or the enclave.
struct PrefetchGuard<'a> {
    prefetches: &'a Mutex<HashMap<[u8; 32], Prefetch>>,
    key: [u8; 32],
}

impl Drop for PrefetchGuard<'_> {
    fn drop(&mut self) {
        self.prefetches.lock().remove(&self.key);
    }
}

/// Most grants remembered for prefetch decisions (beyond this, prefetch is skipped).
const MAX_SEEN: usize = 1_000_000;

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Parent {
    pub fn new(
        settings: Settings,
        enclave: EnclaveClient,
        kms: KmsClient,
        attestation: Attestation,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Parents present an admin token to each other's relay route.
        let settings_peer_token = settings.admin_tokens.first().cloned();
        Self {
            settings,
            enclave,
            kms,
            attestation,
            metrics,
            seen: Mutex::new(HashMap::new()),
            prefetches: Mutex::new(HashMap::new()),
            handover_lock: tokio::sync::Mutex::new(()),
            switches: tokio::sync::watch::channel(0).0,
            answers_for: Mutex::new(None),
            kms_key: Mutex::new(None),
            cluster: crate::cluster::ClusterRelay::new(settings_peer_token.unwrap_or_default()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.enclave_timeout_ms)
    }

    /// One enclave call; refusals become API errors.
    pub async fn call(&self, op: &Op) -> Result<Reply, ApiError> {
        let result = self.enclave.call(op, self.timeout()).await;
        self.metrics.enclave_connected.set(i64::from(self.enclave.is_connected()));
        let outcome = match result {
            Ok(Outcome::Ok(reply)) => Ok(reply),
            Ok(Outcome::Err(e)) => {
                if let Some(d) = &e.denial {
                    self.metrics.denials.with_label_values(&[d.rule.as_str()]).inc();
                }
                if e.code == ErrorCode::EnvelopeRejected {
                    self.metrics.envelope_failures.inc();
                    tracing::warn!(op = op.name(), "a record did not open with its KMS envelope");
                }
                Err(ApiError::from(e))
            }
            Err(e) => Err(ApiError::from(e)),
        };
        let label = match &outcome {
            Ok(Reply::NeedKey { .. }) => "need_key",
            Ok(_) => "ok",
            Err(e) => e.code,
        };
        self.metrics.enclave_calls.with_label_values(&[op.name(), label]).inc();
        outcome
    }

    /// Counts a sign or grant answer's receipt (`signer_receipts_total`).
    pub fn count_receipt(&self, attached: bool) {
        let delivery = &self.metrics.receipts;
        if attached { delivery.attached.inc() } else { delivery.none.inc() }
    }

    /// Refuses to send secrets to an enclave whose attestation does not verify.
    pub async fn attested(&self) -> Result<Arc<crate::attestation::Attested>, ApiError> {
        let result = self.attestation.ensure(&self.enclave, self.timeout()).await;
        self.metrics.enclave_attested.set(i64::from(result.is_ok()));
        self.metrics.enclave_connected.set(i64::from(self.enclave.is_connected()));
        result.map_err(|e| {
            ApiError::unavailable(format!("signing is refused until the enclave attests: {e}"))
        })
    }

    /// KMS `Decrypt` with the enclave's current attestation as `Recipient`.
    async fn envelope(
        &self,
        alg: WrapAlg,
        ciphertext: &[u8],
        context: Option<&(String, String)>,
    ) -> Result<Vec<u8>, ApiError> {
        let attested = self.attested().await?;
        let pcr0 = attested.pcrs.get(&0).map(hex::encode).unwrap_or_default();
        let result = self
            .kms
            .decrypt_for_recipient(
                &Unwrap { alg, ciphertext, encryption_context: context },
                &attested.document,
                &pcr0,
            )
            .await;
        // What a real call just learned about the key is fresher than the last check.
        if let Some(state) = KmsKeyState::learned_from(&result) {
            self.learn_kms_key(state);
        }
        Ok(result?)
    }

    /// Whether the current enclave answers for `owner`. A record of another instance is refused
    /// by the enclave from its header alone (`grant_orphaned`, `wrong_enclave`), so it must cost
    /// no KMS call: bots retrying on orphaned grants would otherwise spend the account's quota.
    async fn answers_for(&self, owner: &EnclaveId) -> Result<bool, ApiError> {
        let generation = self.enclave.connections_made();
        if let Some((g, ids)) = &*self.answers_for.lock()
            && *g == generation
        {
            return Ok(ids.contains(owner));
        }
        let reply = self.call(&Op::Identity).await?;
        let Reply::Identity { answers_for, .. } = reply else {
            return Err(unexpected("identity", &reply));
        };
        let ours = answers_for.contains(owner);
        *self.answers_for.lock() = Some((generation, answers_for));
        Ok(ours)
    }

    fn grant_is_open(&self, grant_id: &[u8; 16]) -> bool {
        let generation = self.enclave.connections_made();
        let now = now_unix();
        self.seen
            .lock()
            .get(grant_id)
            .is_some_and(|(expires, g)| *g == generation && *expires > now)
    }

    fn mark_open(&self, grant_id: [u8; 16], expires_at: u64) {
        let generation = self.enclave.connections_made();
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_SEEN {
            let now = now_unix();
            seen.retain(|_, (expires, g)| *expires > now && *g == generation);
        }
        if seen.len() < MAX_SEEN {
            seen.insert(grant_id, (expires_at, generation));
        }
    }

    /// A prefetched envelope for a grant, shared by concurrent first requests.
    async fn prefetch(&self, grant: &GrantInfo, id: [u8; 32]) -> Result<Vec<u8>, ApiError> {
        let cell = Arc::clone(self.prefetches.lock().entry(id).or_default());
        let result = cell
            .get_or_init(|| async {
                self.metrics.grant_cache.with_label_values(&["miss"]).inc();
                self.envelope(
                    grant.wrapped.alg,
                    &grant.wrapped.ciphertext,
                    grant.wrapped.encryption_context.as_ref(),
                )
                .await
            })
            .await
            .clone();
        if result.is_err() {
            self.prefetches.lock().remove(&id);
        }
        result
    }

    /// `POST /v1/sign`.
    pub async fn sign(&self, grant: &GrantInfo, op: SignOp) -> Result<Reply, ApiError> {
        self.across_handover(|| async {
            self.attested().await?;
            self.sign_with_grant(grant, op.clone()).await
        })
        .await
    }

    /// Runs `attempt`; if the enclave answered that it handed its state over, waits (bounded) for
    /// the switch to the successor and runs it once more there. The successor holds the
    /// predecessor's request ids and counters, so the second attempt cannot charge twice, and an
    /// identical request gets the identical signature.
    pub async fn across_handover<F, Fut>(&self, attempt: F) -> Result<Reply, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Reply, ApiError>>,
    {
        let mut switches = self.switches.subscribe();
        let before = *switches.borrow_and_update();
        match attempt().await {
            Err(e) if e.code == ErrorCode::EnclaveHandedOver.as_str() => {
                if *switches.borrow() == before {
                    let _ = tokio::time::timeout(HANDOVER_WAIT, switches.changed()).await;
                }
                if *switches.borrow() == before {
                    return Err(e);
                }
                attempt().await
            }
            other => other,
        }
    }

    /// One enclave call, retried on the successor if it reached an enclave that handed over.
    pub async fn call_routed(&self, op: &Op) -> Result<Reply, ApiError> {
        self.across_handover(|| self.call(op)).await
    }

    async fn sign_with_grant(&self, grant: &GrantInfo, mut op: SignOp) -> Result<Reply, ApiError> {
        // An expired grant is refused from its header: no KMS call for it.
        let prefetched = self.settings.prefetch_envelopes
            && grant.expires_at > now_unix()
            && !self.grant_is_open(&grant.id)
            && self.prefetches.lock().len() < MAX_PREFETCHES
            && self.answers_for(&grant.enclave_id).await?;
        // The shared prefetch lives until the grant is known open (or the attempt failed), so
        // concurrent first requests never trigger a second KMS call.
        let _guard = if prefetched {
            let key: [u8; 32] = Sha256::digest(&op.grant_record).into();
            let guard = PrefetchGuard { prefetches: &self.prefetches, key };
            op.envelope = Some(self.prefetch(grant, key).await?);
            Some(guard)
        } else {
            None
        };
        let mut request = Op::Sign(op);
        let first = self.call(&request).await?;
        if !prefetched {
            let outcome = if matches!(first, Reply::NeedKey { .. }) { "miss" } else { "hit" };
            self.metrics.grant_cache.with_label_values(&[outcome]).inc();
        }
        match self.retry_on_need_key(&mut request, first).await? {
            reply @ Reply::Signed { .. } => {
                self.mark_open(grant.id, grant.expires_at);
                Ok(reply)
            }
            other => Err(unexpected("sign", &other)),
        }
    }

    /// After `NeedKey` — the enclave does not hold the key (a vault or record it has not opened,
    /// a restart, an eviction, an envelope made for its predecessor) — a fresh envelope and one
    /// retry; if the request already carried an envelope, the enclave changed under us, so it is
    /// attested again first. Any other reply is returned as it is.
    async fn retry_on_need_key(&self, request: &mut Op, reply: Reply) -> Result<Reply, ApiError> {
        let Reply::NeedKey { wrap_alg, wrapped_key, encryption_context, .. } = &reply else {
            return Ok(reply);
        };
        if request.has_envelope() {
            self.attestation.invalidate();
        }
        let envelope = self.envelope(*wrap_alg, wrapped_key, encryption_context.as_ref()).await?;
        if !request.set_envelope(envelope) {
            return Err(ApiError::internal(format!("{} cannot take an envelope", request.name())));
        }
        match self.call(request).await? {
            Reply::NeedKey { .. } => Err(ApiError::unavailable(
                "the enclave did not accept the KMS envelope twice in a row",
            )),
            other => Ok(other),
        }
    }

    /// An operation that opens a vault or record: sent as it is, then with the KMS envelope the
    /// enclave asks for.
    pub async fn call_unlocking(&self, op: Op) -> Result<Reply, ApiError> {
        self.across_handover(|| async {
            self.attested().await?;
            let mut op = op.clone();
            let first = self.call(&op).await?;
            self.retry_on_need_key(&mut op, first).await
        })
        .await
    }

    /// `POST /v1/scheduled/sign`: first without an envelope, so the enclave refuses a record it
    /// would refuse anyway (another instance's, revoked, used, outside its window) without a KMS
    /// call; then, on `need_key`, with the envelope.
    pub async fn sign_scheduled(
        &self,
        op: signer_protocol::SignScheduledOp,
    ) -> Result<Reply, ApiError> {
        self.across_handover(|| async {
            self.attested().await?;
            let mut request = Op::SignScheduled(op.clone());
            let first = self.call(&request).await?;
            match self.retry_on_need_key(&mut request, first).await? {
                reply @ Reply::Signed { .. } => Ok(reply),
                other => Err(unexpected("sign_scheduled", &other)),
            }
        })
        .await
    }

    /// Asks KMS whether the execution key is usable (`DescribeKey`) and records the answer.
    pub async fn check_kms_key(&self) -> KmsKeyState {
        let result = self.kms.ping().await;
        let state = KmsKeyState::learned_from(&result).unwrap_or(KmsKeyState::Unreachable);
        self.metrics.kms_reachable.set(i64::from(state == KmsKeyState::Enabled));
        self.learn_kms_key(state);
        state
    }

    fn learn_kms_key(&self, state: KmsKeyState) {
        *self.kms_key.lock() = Some((state, std::time::Instant::now()));
    }

    /// The execution key's state, asked again when the last answer is older than `max_age`
    /// (so probes cost at most one `DescribeKey` per `max_age`).
    pub async fn kms_key_state(&self, max_age: Duration) -> KmsKeyState {
        let cached = *self.kms_key.lock();
        match cached {
            Some((state, at)) if at.elapsed() < max_age => state,
            _ => self.check_kms_key().await,
        }
    }

    /// Background: keep the attestation fresh and check KMS, until `shutdown`.
    pub async fn maintain(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let refresh = Duration::from_secs(self.settings.attestation.refresh_seconds);
        let mut last_kms_check: Option<std::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Refresh when due, and immediately after a reconnect (it may be a new enclave).
            let due = self.attestation.age().is_none_or(|age| age >= refresh)
                || self.attestation.current(self.enclave.connections_made()).is_none();
            if due {
                let ok = self.attestation.refresh(&self.enclave, self.timeout()).await.is_ok();
                self.metrics
                    .attestation_refreshes
                    .with_label_values(&[if ok { "ok" } else { "error" }])
                    .inc();
            }
            self.metrics.enclave_attested.set(i64::from(
                self.attestation.current(self.enclave.connections_made()).is_some(),
            ));
            self.metrics.enclave_connected.set(i64::from(self.enclave.is_connected()));
            if last_kms_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(15)) {
                self.check_kms_key().await;
                last_kms_check = Some(std::time::Instant::now());
                let now = now_unix();
                self.seen.lock().retain(|_, (expires, _)| *expires > now);
            }
        }
    }
}
