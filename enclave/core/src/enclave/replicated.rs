//! Decisions as commands: every change to the decision state (SPEC §16) is a [`Command`] applied
//! at a decision time, so the same code decides in a standalone enclave and in a cluster.
//!
//! - **Standalone** (a cluster of one): `Enclave::commit` reads the decision time under the
//!   state lock and applies the command there — one atomic step, as invariant 5 requires.
//! - **Cluster**: the leader proposes `Proposal { time, command }` through its [`Replicator`]
//!   (a Raft log); every member applies committed proposals in log order with
//!   [`Enclave::apply_committed`], and the leader releases a signature, grant or acknowledgement
//!   only after its proposal is committed and applied. The apply step *is* the decision: it
//!   re-checks liveness, expiry, idempotency and limits against the replicated state at the
//!   proposal's time, so two leaders' proposals, stale pre-checks or reordered batches can never
//!   charge past a limit — whatever is appended, the log order decides.
//!
//! Apply is deterministic: it reads only the command, the proposal's time (never a member's
//! clock) and the replicated state, and it never fails on a member where it succeeded on another
//! (stores take what apply inserts; the leader checks room before it proposes). Time never goes
//! back: a proposal is applied at `max(time, every earlier applied time)`.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use signer_types::EnclaveId;
use signer_types::ids::uuid_text;

use super::Enclave;
use super::receipts::{self, Note};
use super::state::{DecisionState, IssuedNonce, NonceUse, RecordTime, RevokeTarget, Seen};
use crate::error::{AuthorizationError, EnclaveError};
use crate::policy::{DailyLimits, Spend, SpendKey};
use crate::pubkey::Pubkey;

/// A command and the leader's decision time (unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub time: u64,
    pub command: Command,
}

/// A record a decision depends on staying live (not revoked, not handed over).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRecord {
    pub id: [u8; 16],
    pub wallet: Pubkey,
    pub time: RecordTime,
}

/// A signature under a grant, to be charged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignDecision {
    pub request_id: [u8; 16],
    /// What the request was (an identical retry re-signs, anything else is a replay).
    pub request_digest: [u8; 32],
    pub grant: LiveRecord,
    pub expires_at: u64,
    pub spend_key: SpendKey,
    pub spend: Spend,
    pub limits: DailyLimits,
    /// SHA-256 of the Solana message signed (for its receipt).
    #[serde(default)]
    pub message_sha256: [u8; 32],
}

/// The one signature a scheduled record allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledDecision {
    pub request_id: [u8; 16],
    pub request_digest: [u8; 32],
    pub record: LiveRecord,
    pub not_after: u64,
    /// (schedule id, agent public key): the single-use mark.
    #[serde(with = "serde_bytes")]
    pub used_mark: [u8; 48],
    /// For its receipt: the message signed and the one transfer it makes (a mint of zeros is
    /// SOL, in lamports).
    #[serde(default)]
    pub message_sha256: [u8; 32],
    #[serde(default)]
    pub mint: Pubkey,
    #[serde(default)]
    pub amount: u64,
}

/// A signed authorization's nonce, to be marked used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceDecision {
    pub nonce: [u8; 16],
    pub wallet: Pubkey,
    pub issued_at: u64,
    pub purpose: u8,
    /// `signature_tag` of the signature that uses it.
    pub signature_tag: [u8; 16],
    /// A revocation recorded in the same step (a wallet-signed revocation): both or neither.
    pub then_revoke: Option<RevokeTarget>,
    /// The receipt of what the nonce's first use creates (a grant).
    #[serde(default)]
    pub note: Option<Note>,
}

/// A change to the decision state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Sign(SignDecision),
    SignScheduled(ScheduledDecision),
    /// A fresh nonce for a message to `wallet`, valid `validity` seconds from its `Issued At`.
    IssueNonce {
        wallet: Pubkey,
        nonce: [u8; 16],
        purpose: u8,
        validity: u64,
    },
    UseNonce(NonceDecision),
    Revoke(RevokeTarget),
    KillSwitch(bool),
    /// Forget expired entries and stale counters (at the proposal's time, on every member).
    Sweep,
    /// The first entry of a cluster's log: which cluster this state is, derived from its
    /// founders. Every member takes the id it answers for from here (never from its host), and
    /// a state that already belongs to another cluster refuses it.
    Genesis {
        cluster_id: EnclaveId,
        founders: Vec<EnclaveId>,
    },
    /// A decision that changes no state but has a receipt (vaults, agents, policy refusals).
    Note(Note),
}

/// What an applied command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A new request, charged (or a scheduled record marked used).
    Charged,
    /// The identical request again: nothing charged, the same signature is given.
    Repeated,
    /// A nonce issued, with its message's `Issued At`.
    Issued {
        issued_at: u64,
    },
    /// A nonce marked used (or found used by this very signature).
    Nonce(NonceUse),
    /// A revocation recorded; `dropped` opened grants were zeroized on this member.
    Revoked {
        dropped: usize,
    },
    Done,
}

/// An applied command's effect and the receipt it wrote, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub effect: Effect,
    pub receipt: Option<receipts::Receipt>,
}

/// Where decisions are committed when this enclave is a member of a cluster: the proposal is
/// appended to the replicated log and returns once a majority has it and this member applied
/// it (with the outcome of that apply).
pub trait Replicator: Send + Sync {
    fn commit(&self, proposal: Proposal) -> Result<Decided, EnclaveError>;
}

impl Enclave {
    /// Commits a decision: in a cluster through its replicated log, standalone at once under the
    /// state lock (the time read under that lock).
    pub(super) fn commit(&self, command: Command) -> Result<Decided, EnclaveError> {
        let replicator = self.replicator.read().clone();
        if let Some(replicator) = replicator {
            let (applied_time, cluster) = {
                let state = self.state.lock();
                (state.applied_time, state.cluster)
            };
            // A member decides only for the cluster its replicated state is (from the log's
            // genesis), never for an id its host named.
            let decider = self.decider();
            if cluster != Some(decider) {
                return Err(EnclaveError::Unavailable(format!(
                    "this member answers for cluster {decider} but its replicated state is {}",
                    cluster.map_or_else(|| "not yet a cluster's".to_string(), |c| c.to_string())
                )));
            }
            return replicator
                .commit(Proposal { time: self.decision_now().max(applied_time), command });
        }
        let decided = {
            let mut state = self.state.lock();
            let time = self.decision_now();
            self.apply_locked(&mut state, time, &command)?
        };
        Ok(self.after_apply(&command, decided))
    }

    /// Joins cluster `cluster_id`: from now on decisions are committed through `replicator`,
    /// and records and messages made here name the cluster, which is all this member answers
    /// for (a member decides nothing of its own).
    ///
    /// Only an enclave that has decided nothing yet can join (its state must be exactly what the
    /// cluster's log makes of it), and only once.
    pub fn join_cluster(
        &self,
        cluster_id: EnclaveId,
        replicator: std::sync::Arc<dyn Replicator>,
    ) -> Result<(), EnclaveError> {
        let mut current = self.replicator.write();
        if current.is_some() {
            return Err(EnclaveError::BadRequest("this enclave is already in a cluster".into()));
        }
        if !self.state.lock().is_pristine() || self.answers_for.read().len() != 1 {
            return Err(EnclaveError::BadRequest(
                "only an enclave that has decided nothing (no grant, message, revocation, \
                 handover or kill switch) can found or join a cluster: start a fresh one"
                    .into(),
            ));
        }
        *current = Some(replicator);
        *self.decider.write() = cluster_id;
        *self.answers_for.write() = vec![cluster_id];
        Ok(())
    }

    /// Whether this enclave is a member of a cluster (handover is then refused: members are
    /// replaced by membership changes).
    pub fn in_cluster(&self) -> bool {
        self.replicator.read().is_some()
    }

    /// The replicated decision time: that of the latest applied decision.
    pub fn applied_time(&self) -> u64 {
        self.state.lock().applied_time
    }

    /// The cluster the replicated state names (from its genesis entry), once applied.
    pub fn replicated_cluster(&self) -> Option<EnclaveId> {
        self.state.lock().cluster
    }

    /// Applies a committed proposal (every member, in log order). A refusal is part of the
    /// deterministic outcome (the same on every member), not a failure of the log.
    pub fn apply_committed(&self, proposal: &Proposal) -> Result<Decided, EnclaveError> {
        let decided = {
            let mut state = self.state.lock();
            self.apply_locked(&mut state, proposal.time, &proposal.command)?
        };
        Ok(self.after_apply(&proposal.command, decided))
    }

    /// Memory that follows a decision: a revoked grant's opened keys are dropped (zeroized), and
    /// the effect says how many.
    fn after_apply(&self, command: &Command, decided: Decided) -> Decided {
        let target = match (command, decided.effect) {
            (Command::Revoke(target), _) => *target,
            (Command::UseNonce(d), Effect::Nonce(NonceUse::Fresh)) => match d.then_revoke {
                Some(target) => target,
                None => return decided,
            },
            _ => return decided,
        };
        let dropped = self.drop_opened(|h| match target {
            RevokeTarget::Record(r) => {
                h.grant_id == r || super::user::wallet_record_key(&h.wallet, &h.grant_id) == r
            }
            RevokeTarget::Wallet(w) => h.wallet == w,
        });
        Decided { effect: Effect::Revoked { dropped }, receipt: decided.receipt }
    }

    /// The decision itself, under the state lock, at `max(time, the last applied time)`: the
    /// replicated time, the same on every member whatever their clocks. Its receipt is written
    /// in the same step, so the chain is in apply order.
    fn apply_locked(
        &self,
        state: &mut DecisionState,
        time: u64,
        command: &Command,
    ) -> Result<Decided, EnclaveError> {
        if let Some(successor) = state.handed_over_to {
            return Err(EnclaveError::HandedOver { successor });
        }
        let now = time.max(state.applied_time);
        state.applied_time = now;
        // This member's own later decisions (messages it renders) come after it, too.
        self.time_floor.fetch_max(now, Ordering::AcqRel);
        let outcome = self.decide_locked(state, now, command);
        let receipt = receipt_of(state, now, command, &outcome)
            .and_then(|body| state.receipts.append(now, &body));
        outcome.map(|effect| Decided { effect, receipt })
    }

    fn decide_locked(
        &self,
        state: &mut DecisionState,
        now: u64,
        command: &Command,
    ) -> Result<Effect, EnclaveError> {
        let skew = self.config.clock_skew;
        match command {
            Command::Sign(d) => {
                state.check_live(&d.grant.id, &d.grant.wallet, d.grant.time, skew, now)?;
                if now >= d.expires_at {
                    return Err(EnclaveError::GrantExpired {
                        grant_id: uuid_text(&d.grant.id),
                        expires_at: d.expires_at,
                        now,
                    });
                }
                match state.check_request(&d.request_id, &d.request_digest, now)? {
                    Seen::SameRequest => Ok(Effect::Repeated),
                    Seen::New => {
                        state
                            .ledger
                            .check(&d.spend_key, &d.spend, &d.limits, now)
                            .map_err(|denial| self.deny(denial))?;
                        state.ledger.admit(&d.spend_key, now)?;
                        state.requests.insert(d.request_id, d.request_digest, d.expires_at, now)?;
                        state.ledger.record(d.spend_key, &d.spend, now);
                        Ok(Effect::Charged)
                    }
                }
            }
            Command::SignScheduled(d) => {
                state.check_live(&d.record.id, &d.record.wallet, d.record.time, skew, now)?;
                if now > d.not_after {
                    return Err(EnclaveError::GrantExpired {
                        grant_id: uuid_text(&d.record.id),
                        expires_at: d.not_after,
                        now,
                    });
                }
                match scheduled_use(state, d, now)? {
                    Seen::SameRequest => Ok(Effect::Repeated),
                    Seen::New => {
                        // Both marks or neither: a record marked used without its request id
                        // (or the reverse) would either burn the record or let it be used twice.
                        let expires_at = d.not_after.saturating_add(1);
                        state.scheduled.ensure_room(now)?;
                        state.requests.ensure_room(now)?;
                        state.scheduled.insert(d.used_mark, d.request_id, expires_at, now)?;
                        state.requests.insert(d.request_id, d.request_digest, expires_at, now)?;
                        Ok(Effect::Charged)
                    }
                }
            }
            Command::IssueNonce { wallet, nonce, purpose, validity } => {
                let issued_at = state.issue_time(&wallet.0, now);
                let expires_at = issued_at.saturating_add(*validity);
                let entry = IssuedNonce {
                    wallet: wallet.0,
                    issued_at,
                    purpose: *purpose,
                    used: false,
                    used_by: [0; 16],
                };
                state.nonces.insert_evicting(*nonce, entry, expires_at, now);
                state.add_pending(wallet.0, *nonce);
                Ok(Effect::Issued { issued_at })
            }
            Command::UseNonce(d) => {
                // No new signing authority while the kill switch is engaged; a user's own
                // revocations and exports go on.
                if state.kill_switch && d.purpose == GRANT_PURPOSE {
                    return Err(EnclaveError::KillSwitch);
                }
                let used = spend_nonce(state, d, now)?;
                if used == NonceUse::Fresh
                    && let Some(target) = d.then_revoke
                    && let Err(e) = self.record_revocation(state, target, now)
                {
                    // Neither: the signed authorization can be sent again.
                    if let Some(issued) = state.nonces.get_mut(&d.nonce, now) {
                        issued.used = false;
                        issued.used_by = [0; 16];
                    }
                    return Err(e);
                }
                Ok(Effect::Nonce(used))
            }
            Command::Revoke(target) => {
                self.record_revocation(state, *target, now)?;
                Ok(Effect::Done)
            }
            Command::KillSwitch(engaged) => {
                state.kill_switch = *engaged;
                self.kill_switch.store(*engaged, Ordering::Release);
                Ok(Effect::Done)
            }
            Command::Sweep => {
                state.sweep(now);
                Ok(Effect::Done)
            }
            Command::Genesis { cluster_id, founders } => {
                let derived = crate::cluster::member::cluster_id(founders)
                    .map_err(|e| EnclaveError::Internal(format!("genesis entry: {e}")))?;
                if derived != cluster_id.0 {
                    return Err(EnclaveError::Internal(format!(
                        "genesis entry names cluster {cluster_id}, its founders make {}",
                        EnclaveId(derived)
                    )));
                }
                match state.cluster {
                    Some(ours) if ours != *cluster_id => Err(EnclaveError::Internal(format!(
                        "this state belongs to cluster {ours}, not {cluster_id}"
                    ))),
                    Some(_) => Ok(Effect::Done),
                    None => {
                        state.cluster = Some(*cluster_id);
                        // The cluster's chain: what this member wrote before was its own.
                        state.receipts.start(cluster_id.0, now);
                        Ok(Effect::Done)
                    }
                }
            }
            Command::Note(_) => Ok(Effect::Done),
        }
    }
}

/// The receipt an applied command writes (module `receipts`), if any.
fn receipt_of(
    state: &DecisionState,
    now: u64,
    command: &Command,
    outcome: &Result<Effect, EnclaveError>,
) -> Option<signer_receipts::Body> {
    use signer_receipts::{Body, Charge, Counters};
    match (command, outcome) {
        (Command::Sign(d), Ok(Effect::Charged)) => Some(receipts::signed(
            d.request_id,
            d.grant.id,
            &d.spend_key,
            d.message_sha256,
            receipts::charge(&d.spend),
            state.ledger.counters(&d.spend_key, &d.spend, now),
        )),
        (Command::Sign(d), Err(EnclaveError::PolicyDenied(denial))) => Some(
            Note::Refused {
                request_id: d.request_id,
                grant_id: d.grant.id,
                code: "policy_denied".into(),
                rule: denial.rule.as_str().into(),
            }
            .body(),
        ),
        (Command::SignScheduled(d), Ok(Effect::Charged)) => {
            let mut agent = [0u8; 32];
            if let Some(tail) = d.used_mark.get(16..) {
                agent.copy_from_slice(tail);
            }
            let key = SpendKey { wallet: d.record.wallet.0, bot_id: [0; 16], agent };
            let sol = d.mint.0 == [0; 32];
            let charged = Charge {
                lamports: if sol { d.amount } else { 0 },
                fee_lamports: 0,
                notional_cents: 0,
                tokens: if sol {
                    Vec::new()
                } else {
                    vec![signer_receipts::TokenAmount { mint: d.mint, amount: d.amount }]
                },
            };
            // A scheduled record is its own limit (one transfer, once): no daily counters.
            let after = Counters { day: now / 86_400, ..Default::default() };
            Some(receipts::signed(
                d.request_id,
                d.record.id,
                &key,
                d.message_sha256,
                charged,
                after,
            ))
        }
        (Command::UseNonce(d), Ok(Effect::Nonce(NonceUse::Fresh))) => {
            match (&d.note, d.then_revoke) {
                (Some(note), _) => Some(note.body()),
                (None, Some(target)) => Some(revoked(state, target, now)),
                (None, None) => None,
            }
        }
        (Command::Revoke(target), Ok(_)) => Some(revoked(state, *target, now)),
        (Command::KillSwitch(on), Ok(_)) => Some(Body::KillSwitch { on: *on }),
        (Command::Note(note), Ok(_)) => Some(note.body()),
        _ => None,
    }
}

/// A `revoked` receipt: a record by id (its wallet unknown to an operator's revocation: zeros),
/// or every grant of a wallet issued before its cutoff as recorded.
fn revoked(state: &DecisionState, target: RevokeTarget, now: u64) -> signer_receipts::Body {
    use signer_receipts::{Body, RevokeTarget as Scope};
    match target {
        RevokeTarget::Record(record_id) => {
            Body::Revoked { wallet: Pubkey([0; 32]), target: Scope::Record { record_id } }
        }
        RevokeTarget::Wallet(wallet) => {
            let cutoff = state.revoked_wallets.get(&wallet.0, now).map_or(now, |r| r.cutoff);
            Body::Revoked { wallet, target: Scope::IssuedBefore { cutoff } }
        }
    }
}

/// [`crate::authorization::Purpose::code`] of a grant.
const GRANT_PURPOSE: u8 = 1;

/// How a scheduled record's request stands: its request id, and the record's single-use mark.
pub(super) fn scheduled_use(
    state: &DecisionState,
    d: &ScheduledDecision,
    now: u64,
) -> Result<Seen, EnclaveError> {
    let seen = state.check_request(&d.request_id, &d.request_digest, now)?;
    match state.scheduled.get(&d.used_mark, now) {
        Some(used_by) if *used_by != d.request_id => Err(EnclaveError::ReplayedRequest {
            request_id: format!(
                "{} (scheduled record {} was already used by request {})",
                uuid_text(&d.request_id),
                uuid_text(&d.record.id),
                uuid_text(used_by)
            ),
        }),
        _ => Ok(seen),
    }
}

/// Marks a verified authorization's nonce used: it must have been issued for this wallet,
/// purpose and `Issued At`, and not used by another signature.
fn spend_nonce(
    state: &mut DecisionState,
    d: &NonceDecision,
    now: u64,
) -> Result<NonceUse, EnclaveError> {
    let unknown = || AuthorizationError::NonceUnknown { nonce: hex::encode(d.nonce) };
    let issued = state.nonces.get_mut(&d.nonce, now).ok_or_else(unknown)?;
    let used = check_issued(issued, d)?;
    issued.used = true;
    issued.used_by = d.signature_tag;
    state.drop_pending(&d.wallet.0, &d.nonce);
    Ok(used)
}

/// The nonce was issued for this message's wallet, purpose and `Issued At`; used already only
/// by this very signature (the same request again) or not at all.
pub(super) fn check_issued(
    issued: &IssuedNonce,
    d: &NonceDecision,
) -> Result<NonceUse, AuthorizationError> {
    use subtle::ConstantTimeEq as _;
    if issued.wallet != d.wallet.0 || issued.issued_at != d.issued_at || issued.purpose != d.purpose
    {
        return Err(AuthorizationError::NonceUnknown { nonce: hex::encode(d.nonce) });
    }
    if !issued.used {
        return Ok(NonceUse::Fresh);
    }
    if bool::from(issued.used_by.ct_eq(&d.signature_tag)) {
        return Ok(NonceUse::Retry);
    }
    Err(AuthorizationError::Replayed { nonce: hex::encode(d.nonce) })
}

/// The whole decision state, as a cluster's snapshot carries it to a member that joins or falls
/// behind: CBOR of `ReplicatedState` (tag `"signer/replicated-state/v1"`), every entry with its
/// expiry — including expired ones not yet swept, so the member that installs it holds exactly
/// the leader's state at that log position. It travels only inside the members' authenticated
/// channel.
#[derive(Serialize, Deserialize)]
struct ReplicatedState {
    tag: String,
    kill_switch: bool,
    applied_time: u64,
    cluster: Option<EnclaveId>,
    requests: Vec<RequestEntry>,
    scheduled: Vec<ScheduledEntry>,
    nonces: Vec<(NonceKey, IssuedNonce, u64)>,
    /// Unused messages per wallet, oldest first.
    pending: Vec<(Pubkey, Vec<NonceKey>)>,
    revoked_records: Vec<([u8; 16], u64)>,
    revoked_wallets: Vec<(Pubkey, super::state::WalletRevocation, u64)>,
    ledger: Vec<crate::policy::SpendRecord>,
    ledger_last_prune: u64,
    /// The receipt chain: decider, seq and hash of its last receipt (absent: none yet).
    #[serde(default)]
    receipts: Option<([u8; 16], u64, [u8; 32])>,
}

type NonceKey = [u8; 16];

#[derive(Serialize, Deserialize)]
struct RequestEntry {
    id: [u8; 16],
    digest: [u8; 32],
    expires_at: u64,
}

#[derive(Serialize, Deserialize)]
struct ScheduledEntry {
    #[serde(with = "serde_bytes")]
    mark: [u8; 48],
    request_id: [u8; 16],
    expires_at: u64,
}

const REPLICATED_STATE_TAG: &str = "signer/replicated-state/v1";

impl Enclave {
    /// The decision state as a snapshot (see `ReplicatedState`).
    pub fn replicated_state(&self) -> Result<Vec<u8>, EnclaveError> {
        let state = self.state.lock();
        let all = 0;
        let snapshot = ReplicatedState {
            tag: REPLICATED_STATE_TAG.into(),
            kill_switch: state.kill_switch,
            applied_time: state.applied_time,
            cluster: state.cluster,
            requests: state
                .requests
                .live(all)
                .map(|(id, digest, expires_at)| RequestEntry {
                    id: *id,
                    digest: *digest,
                    expires_at,
                })
                .collect(),
            scheduled: state
                .scheduled
                .live(all)
                .map(|(mark, request_id, expires_at)| ScheduledEntry {
                    mark: *mark,
                    request_id: *request_id,
                    expires_at,
                })
                .collect(),
            nonces: state.nonces.live(all).map(|(k, n, e)| (*k, *n, e)).collect(),
            pending: state
                .pending
                .iter()
                .map(|(wallet, queue)| (Pubkey(*wallet), queue.iter().copied().collect()))
                .collect(),
            revoked_records: state.revoked_records.live(all).map(|(k, _, e)| (*k, e)).collect(),
            revoked_wallets: state
                .revoked_wallets
                .live(all)
                .map(|(k, r, e)| (Pubkey(*k), *r, e))
                .collect(),
            ledger: state.ledger.export(),
            ledger_last_prune: state.ledger.last_prune(),
            receipts: state.receipts.chain().map(|c| (c.decider(), c.seq(), c.head())),
        };
        drop(state);
        let mut out = Vec::new();
        ciborium::into_writer(&snapshot, &mut out)
            .map_err(|e| EnclaveError::Internal(format!("encoding the replicated state: {e}")))?;
        Ok(out)
    }

    /// Replaces the decision state with a snapshot's (a member catching up). All or nothing:
    /// the snapshot is decoded in full before anything changes. Opened grants are dropped: they
    /// were judged against the state being replaced.
    pub fn install_replicated_state(&self, bytes: &[u8]) -> Result<(), EnclaveError> {
        let snapshot: ReplicatedState = ciborium::from_reader(bytes).map_err(|e| {
            EnclaveError::Internal(format!("a replicated state does not decode: {e}"))
        })?;
        if snapshot.tag != REPLICATED_STATE_TAG {
            return Err(EnclaveError::Internal(format!(
                "a replicated state is tagged {:?}, expected {REPLICATED_STATE_TAG:?}",
                snapshot.tag
            )));
        }
        let mut fresh = DecisionState::new(&self.config);
        // A snapshot is the leader's state: taken whole, whatever this member's bounds (they
        // are the same configuration; entries age out as anywhere).
        fresh.requests.make_room_for(snapshot.requests.len());
        fresh.scheduled.make_room_for(snapshot.scheduled.len());
        fresh.revoked_records.make_room_for(snapshot.revoked_records.len());
        fresh.revoked_wallets.make_room_for(snapshot.revoked_wallets.len());
        fresh.nonces.make_room_for(snapshot.nonces.len());
        let at = 0;
        for r in snapshot.requests {
            fresh.requests.insert(r.id, r.digest, r.expires_at, at)?;
        }
        for s in snapshot.scheduled {
            fresh.scheduled.insert(s.mark, s.request_id, s.expires_at, at)?;
        }
        for (nonce, issued, expires_at) in snapshot.nonces {
            fresh.nonces.insert(nonce, issued, expires_at, at)?;
        }
        for (wallet, queue) in snapshot.pending {
            fresh.pending.insert(wallet.0, queue.into_iter().collect());
        }
        for (id, expires_at) in snapshot.revoked_records {
            fresh.revoked_records.insert(id, (), expires_at, at)?;
        }
        for (wallet, revocation, expires_at) in snapshot.revoked_wallets {
            fresh.revoked_wallets.insert(wallet.0, revocation, expires_at, at)?;
        }
        fresh.ledger.import(snapshot.ledger);
        fresh.ledger.set_last_prune(snapshot.ledger_last_prune);
        fresh.kill_switch = snapshot.kill_switch;
        fresh.applied_time = snapshot.applied_time;
        fresh.cluster = snapshot.cluster;
        if let Some((decider, seq, head)) = snapshot.receipts {
            fresh.receipts.resume(decider, seq, head);
        }
        let mut state = self.state.lock();
        *state = fresh;
        self.kill_switch.store(snapshot.kill_switch, Ordering::Release);
        self.time_floor.fetch_max(snapshot.applied_time, Ordering::AcqRel);
        drop(state);
        self.grants.write().clear();
        Ok(())
    }
}
