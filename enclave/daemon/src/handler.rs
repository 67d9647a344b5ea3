//! Maps protocol operations onto enclave-core and the NSM. Synchronous; the server decides what
//! runs on the async workers and what on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use enclave_core::enclave::{
    CreateAgent, CreateGrant, NewAgentKind, RevokeTarget, SignRequest, SignScheduledRequest,
};
use enclave_core::error::ErrorCode;
use enclave_core::{Enclave, SignOutcome};
use signer_protocol::{
    AgentKindMsg, ErrorReply, Op, Outcome, PROTOCOL_VERSION, Reply, RevokeMsg, StatusReply,
};

use crate::nsm::{AttestRequest, Nsm};

/// The enclave's request handler.
pub struct Handler {
    pub enclave: Enclave,
    pub nsm: Arc<dyn Nsm>,
    pub in_flight: AtomicU64,
    pub connections: AtomicU64,
}

fn signed_or_need_key(outcome: SignOutcome) -> Reply {
    match outcome {
        SignOutcome::Signed(s) => Reply::Signed {
            signature: s.signature,
            transaction: s.transaction,
            record_id: s.record_id,
        },
        SignOutcome::NeedKey(n) => Reply::NeedKey {
            record_id: n.record_id,
            wrap_alg: n.wrapped.alg,
            wrapped_key: n.wrapped.ciphertext,
            encryption_context: n.wrapped.encryption_context,
        },
    }
}

impl Handler {
    pub fn new(enclave: Enclave, nsm: Arc<dyn Nsm>) -> Self {
        Self { enclave, nsm, in_flight: AtomicU64::new(0), connections: AtomicU64::new(0) }
    }

    /// Operations that cost milliseconds (RSA private-key work, PBKDF2, P-384 signing) and go to
    /// the blocking pool so they never stall the connection loops.
    pub fn is_heavy(op: &Op) -> bool {
        match op {
            Op::Sign(s) => s.envelope.is_some(),
            Op::SignScheduled(s) => s.envelope.is_some(),
            Op::Attest { .. } | Op::CreateAgent { .. } | Op::CreateGrant { .. } => true,
            _ => false,
        }
    }

    /// Handles one operation.
    pub fn handle(&self, op: Op) -> Outcome {
        let result = match op {
            Op::Hello { version } if version == PROTOCOL_VERSION => {
                Ok(Reply::Hello { version, enclave_version: env!("CARGO_PKG_VERSION").to_string() })
            }
            Op::Hello { version } => Err(ErrorReply::new(
                ErrorCode::BadRequest,
                format!(
                    "protocol version {version} is not supported; this enclave speaks {PROTOCOL_VERSION}"
                ),
            )),
            Op::Attest { nonce, user_data } => {
                let public_key = self.enclave.recipient_public_key();
                self.nsm
                    .attest(AttestRequest {
                        public_key,
                        user_data: user_data.as_deref(),
                        nonce: nonce.as_deref(),
                    })
                    .map(|document| Reply::Attestation {
                        document,
                        public_key: public_key.to_vec(),
                    })
                    .map_err(|e| ErrorReply::new(ErrorCode::Internal, e.to_string()))
            }
            Op::CreateAgent { wallet, umk, kind } => {
                let kind = match kind {
                    AgentKindMsg::Seed => NewAgentKind::Seed,
                    AgentKindMsg::Mnemonic { account } => NewAgentKind::Mnemonic { account },
                };
                self.enclave
                    .create_agent(CreateAgent { wallet, umk, kind })
                    .map(|a| Reply::AgentCreated {
                        agent_pubkey: a.agent_pubkey,
                        agent_id: a.agent_id,
                        record: a.record,
                    })
                    .map_err(|e| ErrorReply::from(&e))
            }
            Op::CreateGrant { wallet, bot_id, agent_pubkey, umk, policy, ttl_seconds } => self
                .enclave
                .create_grant(CreateGrant {
                    wallet,
                    bot_id,
                    agent_pubkey,
                    umk,
                    policy,
                    ttl_seconds,
                })
                .map(|g| Reply::GrantCreated {
                    grant_id: g.grant_id,
                    issued_at: g.issued_at,
                    expires_at: g.expires_at,
                    record: g.record,
                })
                .map_err(|e| ErrorReply::from(&e)),
            Op::Sign(s) => self
                .enclave
                .sign(&SignRequest {
                    grant_record: &s.grant_record,
                    agent_key_record: &s.agent_key_record,
                    bot_id: s.bot_id,
                    transaction: &s.transaction,
                    request_id: s.request_id,
                    declared_notional_cents: s.declared_notional_cents,
                    envelope: s.envelope.as_deref(),
                })
                .map(signed_or_need_key)
                .map_err(|e| ErrorReply::from(&e)),
            Op::SignScheduled(s) => self
                .enclave
                .sign_scheduled(&SignScheduledRequest {
                    scheduled_record: &s.scheduled_record,
                    transaction: &s.transaction,
                    request_id: s.request_id,
                    envelope: s.envelope.as_deref(),
                })
                .map(signed_or_need_key)
                .map_err(|e| ErrorReply::from(&e)),
            Op::Revoke { target } => {
                let target = match target {
                    RevokeMsg::Record(id) => RevokeTarget::Record(id),
                    RevokeMsg::Wallet(w) => RevokeTarget::Wallet(w),
                };
                self.enclave
                    .revoke(target)
                    .map(|dropped| Reply::Revoked { dropped: dropped as u64 })
                    .map_err(|e| ErrorReply::from(&e))
            }
            Op::KillSwitch { engaged } => {
                Ok(Reply::KillSwitch { engaged: self.enclave.set_kill_switch(engaged) })
            }
            Op::Status => {
                let s = self.enclave.status();
                Ok(Reply::Status(StatusReply {
                    kill_switch: s.kill_switch,
                    cached_grants: s.cached_grants as u64,
                    request_ids: s.request_ids as u64,
                    request_id_capacity: s.request_id_capacity as u64,
                    scheduled_ids: s.scheduled_ids as u64,
                    revocations: s.revocations as u64,
                    spend_counters: s.spend_counters as u64,
                    signatures: s.signatures,
                    need_key: s.need_key,
                    denials: s.denials,
                    envelope_failures: s.envelope_failures,
                    in_flight: self.in_flight.load(Ordering::Relaxed),
                    connections: self.connections.load(Ordering::Relaxed),
                }))
            }
        };
        match result {
            Ok(reply) => Outcome::Ok(reply),
            Err(e) => Outcome::Err(e),
        }
    }
}
