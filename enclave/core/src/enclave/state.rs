//! Decision state (SPEC §16): limits, request ids, single-use marks, nonces, revocations and the
//! kill switch, all behind one lock so that a decision and its record are one atomic step.

use std::sync::atomic::Ordering;

use signer_types::ids::{EnclaveId, uuid_text};

use super::{Enclave, EnclaveConfig};
use crate::error::EnclaveError;
use crate::policy::{Denial, Ledger};
use crate::pubkey::Pubkey;
use crate::store::TtlMap;

/// What to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub nonces: usize,
    pub revocations: usize,
    pub spend_counters: usize,
    pub signatures: u64,
    pub need_key: u64,
    pub denials: u64,
    /// Envelopes whose content did not open a record (each is refused from then on).
    pub envelope_failures: u64,
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
    /// Used authorization nonces, until their message expires.
    pub(super) nonces: TtlMap<[u8; 16], ()>,
    pub(super) revoked_records: TtlMap<[u8; 16], ()>,
    /// Wallet → the unix second of the revocation (records issued or created up to it).
    pub(super) revoked_wallets: TtlMap<[u8; 32], u64>,
    /// Set when the state went to a successor: no decision is made here again.
    pub(super) handed_over_to: Option<EnclaveId>,
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
            ledger: Ledger::default(),
            requests: TtlMap::new("request_id", config.request_store_capacity),
            scheduled: TtlMap::new("scheduled record", config.schedule_store_capacity),
            nonces: TtlMap::new("authorization nonce", config.nonce_store_capacity),
            revoked_records: TtlMap::new("revoked record", config.revocation_capacity),
            revoked_wallets: TtlMap::new("revoked wallet", config.revocation_capacity),
            handed_over_to: None,
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

    /// Handover, kill switch, revocation of the record or of its wallet (for records issued or
    /// created at or before the wallet's revocation).
    pub(super) fn check_live(
        &self,
        record_id: &[u8; 16],
        wallet: &Pubkey,
        issued_at: u64,
        now: u64,
    ) -> Result<(), EnclaveError> {
        if let Some(successor) = self.handed_over_to {
            return Err(EnclaveError::HandedOver { successor });
        }
        if self.kill_switch {
            return Err(EnclaveError::KillSwitch);
        }
        if self.revoked_records.get(record_id, now).is_some() {
            return Err(EnclaveError::GrantRevoked(format!("record {}", uuid_text(record_id))));
        }
        if let Some(revoked_at) = self.revoked_wallets.get(&wallet.0, now)
            && issued_at <= *revoked_at
        {
            return Err(EnclaveError::GrantRevoked(format!("every record of wallet {wallet}")));
        }
        Ok(())
    }
}

impl Enclave {
    pub(super) fn deny(&self, d: Denial) -> EnclaveError {
        self.denials.fetch_add(1, Ordering::Relaxed);
        EnclaveError::PolicyDenied(d)
    }

    /// Revokes a record id or a whole wallet, effective for every decision after this returns.
    /// Returns how many opened grants were dropped (and zeroized) from memory.
    pub fn revoke(&self, target: RevokeTarget) -> Result<usize, EnclaveError> {
        let now = self.clock.now();
        // Every record a revocation can match is unusable after this: grants live at most
        // max_grant_ttl from their issue time, scheduled records at most max_schedule_horizon
        // from their creation, and neither may claim a time more than clock_skew ahead.
        let remember_until = now
            .saturating_add(self.config.max_grant_ttl.max(self.config.max_schedule_horizon))
            .saturating_add(self.config.clock_skew)
            .saturating_add(1);
        {
            let mut state = self.state.lock();
            if let Some(successor) = state.handed_over_to {
                return Err(EnclaveError::HandedOver { successor });
            }
            match target {
                RevokeTarget::Record(id) => {
                    state.revoked_records.insert(id, (), remember_until, now)?
                }
                RevokeTarget::Wallet(wallet) => {
                    state.revoked_wallets.insert(wallet.0, now, remember_until, now)?
                }
            }
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
    pub fn set_kill_switch(&self, engaged: bool) -> Result<bool, EnclaveError> {
        let mut state = self.state.lock();
        if let Some(successor) = state.handed_over_to {
            return Err(EnclaveError::HandedOver { successor });
        }
        state.kill_switch = engaged;
        self.kill_switch.store(engaged, Ordering::Release);
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
        let mut state = self.state.lock();
        state.requests.evict_expired(now);
        state.scheduled.evict_expired(now);
        state.nonces.evict_expired(now);
        state.revoked_records.evict_expired(now);
        state.revoked_wallets.evict_expired(now);
        state.ledger.prune(now);
        drop(state);
        self.refused_envelopes.lock().evict_expired(now);
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
            revocations: state.revoked_records.len() + state.revoked_wallets.len(),
            spend_counters: state.ledger.len(),
            signatures: self.signatures.load(Ordering::Relaxed),
            need_key: self.need_key.load(Ordering::Relaxed),
            denials: self.denials.load(Ordering::Relaxed),
            envelope_failures: self.envelope_failures.load(Ordering::Relaxed),
            handed_over_to: state.handed_over_to,
        }
    }
}
