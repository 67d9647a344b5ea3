//! Signing under an execution grant, and under a scheduled record.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use signer_types::ids::uuid_text;

use super::receipts::Note;
use super::replicated::{Command, LiveRecord, ScheduledDecision, SignDecision, scheduled_use};
use super::state::RecordTime;
use super::{CachedAgent, Enclave, NeedKey, OpenedGrant, SignOutcome};
use crate::authorization::{self, MessageFields, Purpose};
use crate::error::{EnclaveError, RecordError};
use crate::policy::{DailyLimits, Denial, Rule, SpendKey, check_intent, evaluate_transaction};
use crate::pubkey::Pubkey;
use crate::records::{
    AgentKeyHeader, GrantContents, GrantHeader, SealedAgentKey, SealedGrant, SealedScheduled,
    open_agent_key, open_grant, open_scheduled,
};
use crate::solana::Transaction;

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
    /// This decision's receipt (none for an identical retry: it was given the first time).
    pub receipt: Option<super::receipts::Receipt>,
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

impl Enclave {
    /// Header checks that need no key: bot, enclave instance, lifetime, clock, revocation,
    /// expiry.
    fn check_grant_header(
        &self,
        h: &GrantHeader,
        bot_id: &[u8; 16],
        now: u64,
    ) -> Result<(), EnclaveError> {
        if h.bot_id != *bot_id {
            return Err(EnclaveError::RecordInvalid(format!(
                "the grant is for bot {}, the request names bot {}",
                uuid_text(&h.bot_id),
                uuid_text(bot_id)
            )));
        }
        self.check_owner("grant", &h.grant_id, h.enclave_id, h.issued_at)?;
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
        self.state.lock().check_grant_live(h, self.config.clock_skew, now)?;
        if now >= h.expires_at {
            return Err(EnclaveError::GrantExpired {
                grant_id: uuid_text(&h.grant_id),
                expires_at: h.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// The user's authorization inside an opened grant must be a valid signature, by the
    /// grant's wallet, over the message this enclave renders from the grant (its header, policy
    /// and nonce), and must name the grant's id: a grant sealed by anyone else confers nothing.
    fn check_grant_authorization(
        &self,
        h: &GrantHeader,
        contents: &GrantContents,
    ) -> Result<(), RecordError> {
        let signature = &contents.authorization.signature;
        if authorization::grant_id(signature) != h.grant_id {
            return Err(RecordError::Invalid("the grant id is not its authorization's".into()));
        }
        let message = authorization::render(
            &self.config.message_domain,
            &MessageFields {
                wallet: h.wallet,
                enclave: h.enclave_id,
                nonce: &contents.authorization.nonce,
                issued_at: h.issued_at,
                purpose: Purpose::Grant {
                    bot_id: h.bot_id,
                    agent: h.agent_pubkey,
                    ttl_seconds: h.expires_at - h.issued_at,
                    policy: &contents.policy,
                },
            },
        )
        .map_err(RecordError::Invalid)?;
        authorization::verify_strict(&h.wallet, message.as_bytes(), signature)
            .map_err(|e| RecordError::Invalid(e.to_string()))
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
        let key = open_agent_key(&sealed, &contents.umk)?;
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
        self.check_grant_header(&h, &req.bot_id, self.clock.now())?;
        let digest: [u8; 32] = Sha256::digest(req.grant_record).into();
        let cached = self.grants.read().get(&digest).cloned();
        let (grant, key) = match (cached, req.envelope) {
            (Some(grant), _) => {
                let key = Self::agent_key(&grant, req.agent_key_record)?;
                (grant, key)
            }
            (None, Some(env)) => {
                let opened = self.open_with_envelope(env, |dek| {
                    let contents = open_grant(&sealed, dek)?;
                    self.check_grant_authorization(&h, &contents)?;
                    Ok(contents)
                })?;
                let Some(contents) = opened else {
                    return Ok(SignOutcome::NeedKey(self.need_key(h.grant_id, sealed.wrapped)));
                };
                let agent = Self::open_agent(&h, &contents, req.agent_key_record)?;
                let key = Arc::clone(&agent.key);
                let grant = Arc::new(OpenedGrant { header: h, contents, agent });
                self.cache_grant(digest, Arc::clone(&grant), self.clock.now());
                (grant, key)
            }
            (None, None) => {
                return Ok(SignOutcome::NeedKey(self.need_key(h.grant_id, sealed.wrapped)));
            }
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
        let grant_live = LiveRecord {
            id: h.grant_id,
            wallet: h.wallet,
            time: RecordTime::GrantIssued(h.issued_at),
        };
        // Judged here first on the state as it stands (so what was refused before a policy
        // denial keeps its answer); the decision itself is the command's apply, at one time
        // under one lock (in a cluster: in log order), which judges all of it again.
        {
            let state = self.state.lock();
            let now = self.decision_now();
            state.check_grant_live(&h, self.config.clock_skew, now)?;
            if now >= h.expires_at {
                return Err(EnclaveError::GrantExpired {
                    grant_id: uuid_text(&h.grant_id),
                    expires_at: h.expires_at,
                    now,
                });
            }
            state.check_request(&req.request_id, &request_digest, now)?;
        }
        let spend = match spend {
            Ok(spend) => spend,
            Err(denial) => {
                // The refusal has its receipt; whether it could be written changes no answer.
                let _ = self.commit(Command::Note(Note::Refused {
                    request_id: req.request_id,
                    grant_id: h.grant_id,
                    code: "policy_denied".into(),
                    rule: denial.rule.as_str().into(),
                }));
                return Err(self.deny(denial));
            }
        };
        // An identical retry re-signs without charging again (`Effect::Repeated`): ed25519 is
        // deterministic, so it gets the very same signature.
        let decided = self.commit(Command::Sign(SignDecision {
            request_id: req.request_id,
            request_digest,
            grant: grant_live,
            expires_at: h.expires_at,
            spend_key,
            limits: DailyLimits::of(policy, &spend),
            spend,
            message_sha256: Sha256::digest(tx.message).into(),
        }))?;
        let (signature, transaction) =
            tx.sign(&key).map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignOutcome::Signed(Signed {
            signature,
            transaction,
            record_id: h.grant_id,
            receipt: decided.receipt,
        }))
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
        self.check_owner("scheduled record", &h.schedule_id, h.enclave_id, h.created_at)?;
        let window = h.not_after - h.not_before;
        if window > self.config.max_schedule_window {
            return Err(EnclaveError::RecordInvalid(format!(
                "scheduled window {window} s exceeds the enclave's maximum {} s",
                self.config.max_schedule_window
            )));
        }
        let now = self.clock.now();
        if h.created_at > now.saturating_add(self.config.clock_skew) {
            return Err(EnclaveError::RecordInvalid(format!(
                "scheduled record created_at {} is ahead of the enclave clock {now}",
                h.created_at
            )));
        }
        let horizon = h.not_after.saturating_sub(h.created_at);
        if h.not_after < h.created_at || horizon > self.config.max_schedule_horizon {
            return Err(EnclaveError::RecordInvalid(format!(
                "scheduled record lives from created_at {} to not_after {}; at most {} s is \
                 accepted",
                h.created_at, h.not_after, self.config.max_schedule_horizon
            )));
        }
        self.state.lock().check_scheduled_live(&h, self.config.clock_skew, now)?;
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
        let intent = check_intent(&tx, &h.agent_pubkey, &h.intent_hash, h.max_fee_lamports)
            .map_err(|d| self.deny(d))?;
        let request_digest = {
            let mut d = Sha256::new();
            d.update(b"sign_scheduled/v1");
            d.update(h.schedule_id);
            d.update(tx.message);
            <[u8; 32]>::from(d.finalize())
        };
        let mut used_mark = [0u8; 48];
        used_mark[..16].copy_from_slice(&h.schedule_id);
        used_mark[16..].copy_from_slice(&h.agent_pubkey.0);
        let decision = ScheduledDecision {
            request_id: req.request_id,
            request_digest,
            record: LiveRecord {
                id: h.schedule_id,
                wallet: h.wallet,
                time: RecordTime::ScheduledCreated(h.created_at),
            },
            not_after: h.not_after,
            used_mark,
            message_sha256: Sha256::digest(tx.message).into(),
            mint: Pubkey(intent.mint),
            amount: intent.amount,
        };
        // A used record is refused before its key is asked for (no KMS call for a replay).
        scheduled_use(&self.state.lock(), &decision, now)?;
        let need_key =
            |enclave: &Self| -> NeedKey { enclave.need_key(h.schedule_id, sealed.wrapped.clone()) };
        let Some(env) = req.envelope else {
            return Ok(SignOutcome::NeedKey(need_key(self)));
        };
        let Some(key) =
            self.open_with_envelope(env, |ephemeral| open_scheduled(&sealed, ephemeral))?
        else {
            return Ok(SignOutcome::NeedKey(need_key(self)));
        };
        let decided = self.commit(Command::SignScheduled(decision))?;
        let (signature, transaction) =
            tx.sign(&key).map_err(|e| EnclaveError::BadRequest(e.to_string()))?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignOutcome::Signed(Signed {
            signature,
            transaction,
            record_id: h.schedule_id,
            receipt: decided.receipt,
        }))
    }
}
