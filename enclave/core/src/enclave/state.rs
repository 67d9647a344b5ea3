//! Decision state (SPEC §16): limits, request ids, single-use marks, nonces, revocations and the
//! kill switch, all behind one lock so that a decision and its record are one atomic step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use signer_types::ids::{EnclaveId, uuid_text};

use super::replicated::{Command, Effect};
use super::{Enclave, EnclaveConfig};
use crate::error::EnclaveError;
use crate::policy::{Denial, Ledger};
use crate::pubkey::Pubkey;
use crate::store::TtlMap;

/// What to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RevokeTarget {
    /// A grant (or scheduled record) id.
    Record([u8; 16]),
    /// Every grant and scheduled record of a wallet issued (created) up to now.
    Wallet(Pubkey),
}

/// Counts for `status` (never contents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub enclave_id: EnclaveId,
    pub kill_switch: bool,
    pub cached_grants: usize,
    pub cached_vaults: usize,
    pub request_ids: usize,
    pub request_id_capacity: usize,
    pub scheduled_ids: usize,
    /// Nonces issued in messages and not yet expired (used or not).
    pub nonces: usize,
    /// Of those, the ones a signed authorization used.
    pub nonces_used: usize,
    pub revocations: usize,
    pub spend_counters: usize,
    pub signatures: u64,
    pub need_key: u64,
    pub denials: u64,
    /// Envelopes whose content did not open a record (each is refused from then on).
    pub envelope_failures: u64,
    /// Secrets exported on a wallet's signature.
    pub exports: u64,
    /// Set once this enclave handed its state to a successor.
    pub handed_over_to: Option<EnclaveId>,
}

/// Everything a signing decision reads and writes.
pub(super) struct DecisionState {
    pub(super) kill_switch: bool,
    pub(super) ledger: Ledger,
    pub(super) requests: TtlMap<[u8; 16], [u8; 32]>,
    /// Used scheduled records: (schedule id, agent public key) → the request that used it. The
    /// agent key is part of the mark because only the holder of that agent's seed can make a
    /// record that opens with it; a forged record reusing a victim's id cannot burn it.
    pub(super) scheduled: TtlMap<[u8; 48], [u8; 16]>,
    /// Nonces this enclave put in authorization messages, until the message expires: a signed
    /// authorization counts only with a nonce found here for its wallet, purpose and time
    /// (SPEC §15), and marks it used.
    pub(super) nonces: TtlMap<[u8; 16], IssuedNonce>,
    pub(super) revoked_records: TtlMap<[u8; 16], ()>,
    /// Wallet → its revocation: grants issued at or before the cutoff are revoked. The cutoff is
    /// at least every `Issued At` this enclave gave the wallet (its monotonic decision time, and
    /// the wallet's `last_issued`), and messages rendered for the wallet afterwards are issued
    /// after it, so revocations and grants are ordered by this enclave's own events.
    pub(super) revoked_wallets: TtlMap<[u8; 32], WalletRevocation>,
    /// A wallet's messages not yet used, oldest first, at most [`MAX_PENDING_PER_WALLET`]: a
    /// wallet asking for more gives up its own oldest, never another wallet's.
    pub(super) pending: HashMap<[u8; 32], VecDeque<[u8; 16]>>,
    /// Set when the state went to a successor: no decision is made here again.
    pub(super) handed_over_to: Option<EnclaveId>,
    /// The time of the latest applied decision: replicated (decisions are applied at
    /// `max(their time, this)`, on every member alike), never a member's own clock.
    pub(super) applied_time: u64,
    /// The cluster this state belongs to, from its genesis entry (None: standalone, or a member
    /// that has not applied its cluster's genesis yet).
    pub(super) cluster: Option<EnclaveId>,
    /// The receipt chain and its ring (`receipts`): written in apply order.
    pub(super) receipts: super::receipts::ReceiptLog,
}

/// Unused messages one wallet may have outstanding.
pub const MAX_PENDING_PER_WALLET: usize = 16;

/// A wallet's revocation (see `DecisionState::revoked_wallets`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct WalletRevocation {
    pub(super) cutoff: u64,
    /// The latest `Issued At` given to the wallet since (messages after the cutoff).
    pub(super) last_issued: u64,
}

/// A nonce this enclave issued, and for what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct IssuedNonce {
    pub(super) wallet: [u8; 32],
    pub(super) issued_at: u64,
    /// [`crate::authorization::Purpose::code`].
    pub(super) purpose: u8,
    pub(super) used: bool,
    /// Once used: the first 16 bytes of SHA-256 of the signature that used it, so the identical
    /// request can be answered again (a lost reply) while any other reuse is a replay.
    pub(super) used_by: [u8; 16],
}

/// How a verified authorization's nonce stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceUse {
    /// Not used yet.
    Fresh,
    /// Used by this very signature: the same request again.
    Retry,
}

/// [`IssuedNonce::used_by`] of a signature.
pub(super) fn signature_tag(signature: &[u8; 64]) -> [u8; 16] {
    crate::authorization::sha256_16(&[signature])
}

/// What a record is, for revocation: grants carry the enclave's own issue time; scheduled
/// records a `created_at` their creator chose (up to the clock skew ahead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RecordTime {
    GrantIssued(u64),
    ScheduledCreated(u64),
}

/// How a request id stands.
pub(super) enum Seen {
    New,
    SameRequest,
}

impl DecisionState {
    pub(super) fn new(config: &EnclaveConfig) -> Self {
        Self {
            kill_switch: false,
            ledger: Ledger::new(config.spend_counter_capacity, config.spend_counters_per_wallet),
            requests: TtlMap::new("request_id", config.request_store_capacity),
            scheduled: TtlMap::new("scheduled record", config.schedule_store_capacity),
            nonces: TtlMap::new("authorization nonce", config.nonce_store_capacity),
            revoked_records: TtlMap::new("revoked record", config.revocation_capacity),
            revoked_wallets: TtlMap::new("revoked wallet", config.revocation_capacity),
            pending: HashMap::new(),
            handed_over_to: None,
            applied_time: 0,
            cluster: None,
            receipts: super::receipts::ReceiptLog::new(config.receipt_ring_capacity),
        }
    }

    pub(super) fn check_request(
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

    /// Handover, kill switch, revocation of the record or of its wallet: grants issued at or
    /// before the wallet's cutoff; scheduled records created up to the clock skew after it, since
    /// their creator may date them that far ahead (a record created right after a revocation
    /// may be refused for that long: the safe side).
    pub(super) fn check_live(
        &self,
        record_id: &[u8; 16],
        wallet: &Pubkey,
        time: RecordTime,
        skew: u64,
        now: u64,
    ) -> Result<(), EnclaveError> {
        if let Some(successor) = self.handed_over_to {
            return Err(EnclaveError::HandedOver { successor });
        }
        if self.kill_switch {
            return Err(EnclaveError::KillSwitch);
        }
        if self.revoked_records.get(record_id, now).is_some()
            || self
                .revoked_records
                .get(&super::user::wallet_record_key(wallet, record_id), now)
                .is_some()
        {
            return Err(EnclaveError::GrantRevoked(format!("record {}", uuid_text(record_id))));
        }
        let revoked = self.revoked_wallets.get(&wallet.0, now).is_some_and(|r| match time {
            RecordTime::GrantIssued(at) => at <= r.cutoff,
            RecordTime::ScheduledCreated(at) => at <= r.cutoff.saturating_add(skew),
        });
        if revoked {
            return Err(EnclaveError::GrantRevoked(format!("every record of wallet {wallet}")));
        }
        Ok(())
    }

    /// [`DecisionState::check_live`] for a grant.
    pub(super) fn check_grant_live(
        &self,
        h: &crate::records::GrantHeader,
        skew: u64,
        now: u64,
    ) -> Result<(), EnclaveError> {
        self.check_live(&h.grant_id, &h.wallet, RecordTime::GrantIssued(h.issued_at), skew, now)
    }

    /// [`DecisionState::check_live`] for a scheduled record.
    pub(super) fn check_scheduled_live(
        &self,
        h: &signer_types::records::ScheduledHeader,
        skew: u64,
        now: u64,
    ) -> Result<(), EnclaveError> {
        let time = RecordTime::ScheduledCreated(h.created_at);
        self.check_live(&h.schedule_id, &h.wallet, time, skew, now)
    }

    /// The `Issued At` of a message rendered at decision time `now` for `wallet`: after the
    /// wallet's revocation cutoff, so the grant it makes is not revoked by it (recorded as the
    /// wallet's `last_issued`, which the next revocation's cutoff covers).
    pub(super) fn issue_time(&mut self, wallet: &[u8; 32], now: u64) -> u64 {
        match self.revoked_wallets.get_mut(wallet, now) {
            Some(r) => {
                let at = now.max(r.cutoff.saturating_add(1));
                r.last_issued = r.last_issued.max(at);
                at
            }
            None => now,
        }
    }

    /// Remembers a new unused message of `wallet`; past [`MAX_PENDING_PER_WALLET`] its oldest
    /// unused one is forgotten (that message can no longer be used).
    pub(super) fn add_pending(&mut self, wallet: [u8; 32], nonce: [u8; 16]) {
        let queue = self.pending.entry(wallet).or_default();
        queue.push_back(nonce);
        while queue.len() > MAX_PENDING_PER_WALLET {
            let Some(oldest) = queue.pop_front() else { break };
            if self.nonces.entry_of(&oldest).is_some_and(|(n, _)| !n.used && n.wallet == wallet) {
                self.nonces.remove(&oldest);
            }
        }
    }

    /// Nothing decided yet: what a founder or a newcomer must start from.
    pub(super) fn is_pristine(&self) -> bool {
        !self.kill_switch
            && self.ledger.is_empty()
            && self.requests.is_empty()
            && self.scheduled.is_empty()
            && self.nonces.is_empty()
            && self.revoked_records.is_empty()
            && self.revoked_wallets.is_empty()
            && self.handed_over_to.is_none()
            && self.cluster.is_none()
    }

    /// Forgets expired entries and counters stale at `now`.
    pub(super) fn sweep(&mut self, now: u64) {
        self.requests.evict_expired(now);
        self.scheduled.evict_expired(now);
        self.nonces.evict_expired(now);
        self.revoked_records.evict_expired(now);
        self.revoked_wallets.evict_expired(now);
        let Self { pending, nonces, .. } = self;
        pending.retain(|_, queue| {
            queue.retain(|n| nonces.get(n, now).is_some_and(|e| !e.used));
            !queue.is_empty()
        });
        self.ledger.prune(now);
    }

    /// A message of `wallet` was used (or voided).
    pub(super) fn drop_pending(&mut self, wallet: &[u8; 32], nonce: &[u8; 16]) {
        if let Some(queue) = self.pending.get_mut(wallet) {
            queue.retain(|n| n != nonce);
            if queue.is_empty() {
                self.pending.remove(wallet);
            }
        }
    }
}

impl Enclave {
    pub(super) fn deny(&self, d: Denial) -> EnclaveError {
        self.denials.fetch_add(1, Ordering::Relaxed);
        EnclaveError::PolicyDenied(d)
    }

    /// Revokes a record id or a whole wallet, effective for every decision after this returns.
    /// Returns how many opened grants were dropped (and zeroized) from memory.
    /// Every record a revocation made at `now` can match is unusable after this: grants live at
    /// most max_grant_ttl from their issue time, scheduled records at most max_schedule_horizon
    /// from their creation, and neither may claim a time more than clock_skew ahead.
    fn revocation_lifetime(&self, now: u64) -> u64 {
        now.saturating_add(self.config.max_grant_ttl.max(self.config.max_schedule_horizon))
            .saturating_add(self.config.clock_skew)
            .saturating_add(1)
    }

    /// This enclave's time for ordering revocations and messages: its clock, never going back
    /// (a clock that steps back, or a handover from an enclave whose clock ran ahead, cannot
    /// date a message before a revocation it follows).
    pub(super) fn decision_now(&self) -> u64 {
        let now = self.clock.now();
        self.time_floor.fetch_max(now, Ordering::AcqRel).max(now)
    }

    pub fn revoke(&self, target: RevokeTarget) -> Result<usize, EnclaveError> {
        match self.commit(Command::Revoke(target))?.effect {
            Effect::Revoked { dropped } => Ok(dropped),
            _ => Ok(0),
        }
    }

    /// Records a revocation in the decision state (the caller holds its lock): a record id (or
    /// a wallet's own record's key), or a wallet's cutoff.
    pub(super) fn record_revocation(
        &self,
        state: &mut DecisionState,
        target: RevokeTarget,
        now: u64,
    ) -> Result<(), EnclaveError> {
        let remember_until = self.revocation_lifetime(now);
        match target {
            RevokeTarget::Record(id) => {
                state.revoked_records.insert(id, (), remember_until, now)?
            }
            RevokeTarget::Wallet(wallet) => {
                // Everything this enclave issued for the wallet so far is at or before the
                // cutoff (module docs of `revoked_wallets`); messages not yet used die here.
                let decided = now;
                let previous = state.revoked_wallets.get(&wallet.0, now).copied();
                let cutoff = previous.map_or(decided, |p| decided.max(p.cutoff).max(p.last_issued));
                let entry = WalletRevocation { cutoff, last_issued: cutoff };
                let remember_until = remember_until.saturating_add(cutoff.saturating_sub(now));
                state.revoked_wallets.insert(wallet.0, entry, remember_until, now)?;
                state.nonces.remove_where(|_, n| n.wallet == wallet.0 && !n.used);
                state.pending.remove(&wallet.0);
            }
        }
        Ok(())
    }

    /// Drops (and zeroizes) the opened grants whose header `revoked` covers; returns how many.
    pub(super) fn drop_opened(
        &self,
        revoked: impl Fn(&crate::records::GrantHeader) -> bool,
    ) -> usize {
        let mut grants = self.grants.write();
        let before = grants.len();
        grants.retain(|_, g| !revoked(&g.header));
        before - grants.len()
    }

    /// Engages or releases the kill switch; returns the new state.
    pub fn set_kill_switch(&self, engaged: bool) -> Result<bool, EnclaveError> {
        self.commit(Command::KillSwitch(engaged))?;
        Ok(engaged)
    }

    /// Drops expired grants and vaults (zeroizing them), expired store entries and stale
    /// counters. Returns how many opened grants were dropped.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut grants = self.grants.write();
        let before = grants.len();
        grants.retain(|_, g| g.header.expires_at > now);
        let dropped = before - grants.len();
        drop(grants);
        self.vaults.lock().retain(|_, v| v.expires_at > now);
        self.refused_envelopes.lock().evict_expired(now);
        // The decision state is swept by a decision, so every member of a cluster forgets the
        // same entries at the same time; a member that is not the leader leaves it to the leader.
        let _ = self.commit(Command::Sweep);
        dropped
    }

    /// Drops every opened grant and vault (zeroizing them); for shutdown.
    pub fn clear(&self) {
        self.grants.write().clear();
        self.vaults.lock().clear();
    }

    pub fn status(&self) -> Status {
        let state = self.state.lock();
        Status {
            enclave_id: self.id,
            kill_switch: state.kill_switch,
            cached_grants: self.grants.read().len(),
            cached_vaults: self.vaults.lock().len(),
            request_ids: state.requests.len(),
            request_id_capacity: state.requests.capacity(),
            scheduled_ids: state.scheduled.len(),
            nonces: state.nonces.len(),
            nonces_used: state.nonces.live(self.clock.now()).filter(|(_, n, _)| n.used).count(),
            revocations: state.revoked_records.len() + state.revoked_wallets.len(),
            spend_counters: state.ledger.len(),
            signatures: self.signatures.load(Ordering::Relaxed),
            need_key: self.need_key.load(Ordering::Relaxed),
            denials: self.denials.load(Ordering::Relaxed),
            envelope_failures: self.envelope_failures.load(Ordering::Relaxed),
            exports: self.exports.load(Ordering::Relaxed),
            handed_over_to: state.handed_over_to,
        }
    }
}
