//! Maps protocol operations onto enclave-core. Synchronous; the server decides what runs on the
//! async workers and what on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::relay::ClusterRuntime;
use enclave_core::authorization::RevokeScope;
use enclave_core::enclave::handover::{ImportProgress, PredecessorStage};
use enclave_core::enclave::{
    Authorization, AuthorizeGrant, CreateAgent, CreateGrant, ExportRequest, ExportSubject,
    ImportVault, NewAgentKind, RevokeTarget, SignRequest, SignScheduledRequest, Unlocked,
    VaultProof, WalletRevoke,
};
use enclave_core::error::ErrorCode;
use enclave_core::{Enclave, EnclaveError, EnclaveId, SecureRandom, SignOutcome};
use signer_protocol::{
    AgentKindMsg, ErrorReply, ExportSubjectMsg, GrantFields, HandoverStage, HandoverSummary, Op,
    Outcome, PROTOCOL_VERSION, Reply, RevokeMsg, RevokeScopeMsg, StatusReply,
};

/// The enclave's request handler.
pub struct Handler {
    pub enclave: Arc<Enclave>,
    /// Membership of a cluster (SPEC §16), once the parent asks for a card.
    pub cluster: ClusterRuntime,
    pub in_flight: AtomicU64,
    pub connections: AtomicU64,
}

/// A refusal: the stable code, the error's text, and for policy denials the rule and numbers.
pub fn error_reply(e: &EnclaveError) -> ErrorReply {
    let denial = match e {
        EnclaveError::PolicyDenied(d) => Some(d.clone()),
        _ => None,
    };
    ErrorReply { code: e.code(), message: e.to_string(), denial }
}

fn need_key_reply(n: enclave_core::enclave::NeedKey) -> Reply {
    Reply::NeedKey {
        record_id: n.record_id,
        wrap_alg: n.wrapped.alg,
        wrapped_key: n.wrapped.ciphertext,
        encryption_context: n.wrapped.encryption_context,
    }
}

fn signed_or_need_key(outcome: SignOutcome) -> Reply {
    match outcome {
        SignOutcome::Signed(s) => Reply::Signed {
            signature: s.signature,
            transaction: s.transaction,
            record_id: s.record_id,
            receipt: s.receipt,
        },
        SignOutcome::NeedKey(n) => need_key_reply(n),
    }
}

fn unlocked<T>(outcome: Unlocked<T>, done: impl FnOnce(T) -> Reply) -> Reply {
    match outcome {
        Unlocked::Done(value) => done(value),
        Unlocked::NeedKey(n) => need_key_reply(n),
    }
}

fn authorization_reply(a: Authorization) -> Reply {
    Reply::Authorization {
        message: a.message,
        nonce: a.nonce,
        issued_at: a.issued_at,
        expires_at: a.expires_at,
        enclave_id: a.enclave_id,
    }
}

fn revoke_scope(scope: RevokeScopeMsg) -> RevokeScope {
    match scope {
        RevokeScopeMsg::Record(id) => RevokeScope::Record(id),
        RevokeScopeMsg::All => RevokeScope::All,
    }
}

fn export_subject(x: &ExportSubjectMsg) -> ExportSubject<'_> {
    ExportSubject {
        wallet: x.wallet,
        vault: VaultProof { record: &x.vault_record, provenance: &x.vault_provenance },
        agent_record: x.agent_key_record.as_deref(),
        recipient: x.recipient,
    }
}

fn grant_request(g: GrantFields) -> AuthorizeGrant {
    AuthorizeGrant {
        wallet: g.wallet,
        bot_id: g.bot_id,
        agent_pubkey: g.agent_pubkey,
        ttl_seconds: g.ttl_seconds,
        policy: g.policy,
    }
}

impl Handler {
    pub fn new(enclave: Enclave, rng: Arc<dyn SecureRandom>) -> Self {
        let enclave = Arc::new(enclave);
        Self {
            cluster: ClusterRuntime::new(Arc::clone(&enclave), rng),
            enclave,
            in_flight: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    /// Whether `op` must run on the blocking pool: heavy work, or any decision of a cluster
    /// member (it waits for a majority).
    pub fn runs_blocking(&self, op: &Op) -> bool {
        Self::is_heavy(op) || self.cluster.is_member()
    }

    /// Operations that cost milliseconds (RSA private-key work, P-384 signing and verification,
    /// ed25519 verification, key generation) and go to the blocking pool so they never stall the
    /// connection loops.
    pub fn is_heavy(op: &Op) -> bool {
        match op {
            Op::Sign(_) | Op::SignScheduled(_) => op.has_envelope(),
            Op::Attest { .. }
            | Op::CreateVault { .. }
            | Op::ImportVault(_)
            | Op::CreateAgent(_)
            | Op::CreateGrant(_)
            | Op::HandoverOffer
            | Op::HandoverPrepare { .. }
            | Op::HandoverAccept { .. }
            | Op::HandoverExport { .. }
            | Op::HandoverImport { .. }
            | Op::HandoverFinish { .. }
            | Op::RevokeSigned(_)
            | Op::AuthorizeExport(_)
            | Op::Export(_) => true,
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
            op => self.handle_operation(op).map_err(|e| error_reply(&e)),
        };
        match result {
            Ok(reply) => Outcome::Ok(reply),
            Err(e) => Outcome::Err(e),
        }
    }

    fn handle_operation(&self, op: Op) -> Result<Reply, EnclaveError> {
        let e = &self.enclave;
        Ok(match op {
            Op::Hello { .. } => {
                return Err(EnclaveError::BadRequest("hello is answered on its own".into()));
            }
            Op::Attest { nonce } => Reply::Attestation {
                document: e.attest_for_caller(nonce.as_deref())?,
                public_key: e.recipient_public_key().to_vec(),
            },
            Op::Identity => Reply::Identity {
                enclave_id: e.id(),
                answers_for: e.answers_for(),
                started_at: e.started_at(),
                kms_public_key: e.config().kms_public_key_der.clone(),
                registry: e.config().message_domain.registry.clone(),
                checkpoint_key: Some(e.checkpoint_public_key()),
            },
            Op::Receipts { after } => {
                let (page, checkpoint) = e.receipts_with_checkpoint(
                    after,
                    enclave_core::enclave::receipts::MAX_PAGE_BYTES,
                );
                let (written, dropped) = e.receipt_counts();
                Reply::Receipts(signer_protocol::ReceiptsReply {
                    enclave_id: e.id(),
                    decider: EnclaveId(page.decider),
                    checkpoint_key: e.checkpoint_public_key(),
                    document: e.attest_for_caller(None)?,
                    receipts: page.receipts.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    checkpoint: checkpoint.map(|c| c.encode().to_vec()),
                    gap: page.gap,
                    next_after: page.next_after,
                    more: page.more,
                    written,
                    dropped,
                })
            }
            Op::CreateVault { wallet } => {
                let v = e.create_vault(wallet)?;
                Reply::VaultCreated {
                    vault_id: v.vault_id,
                    record: v.record,
                    provenance: v.provenance,
                }
            }
            Op::AuthorizeImport { wallet, vault_record } => {
                authorization_reply(e.authorize_import(wallet, &vault_record)?)
            }
            Op::ImportVault(i) => {
                let outcome = e.import_vault(&ImportVault {
                    wallet: i.wallet,
                    vault_record: &i.vault_record,
                    nonce: &i.nonce,
                    issued_at: i.issued_at,
                    signature: i.signature,
                    envelope: i.envelope.as_deref(),
                })?;
                unlocked(outcome, |v| Reply::VaultImported {
                    vault_id: v.vault_id,
                    provenance: v.provenance,
                })
            }
            Op::CreateAgent(a) => {
                let kind = match a.kind {
                    AgentKindMsg::Seed => NewAgentKind::Seed,
                    AgentKindMsg::Mnemonic { account } => NewAgentKind::Mnemonic { account },
                };
                let outcome = e.create_agent(&CreateAgent {
                    wallet: a.wallet,
                    vault: VaultProof { record: &a.vault_record, provenance: &a.vault_provenance },
                    kind,
                    envelope: a.envelope.as_deref(),
                })?;
                unlocked(outcome, |c| Reply::AgentCreated {
                    agent_pubkey: c.agent_pubkey,
                    agent_id: c.agent_id,
                    record: c.record,
                    provenance: c.provenance,
                })
            }
            Op::AuthorizeGrant(g) => authorization_reply(e.authorize_grant(&grant_request(g))?),
            Op::CreateGrant(g) => {
                let outcome = e.create_grant(&CreateGrant {
                    grant: grant_request(g.grant),
                    nonce: &g.nonce,
                    issued_at: g.issued_at,
                    signature: g.signature,
                    vault: VaultProof { record: &g.vault_record, provenance: &g.vault_provenance },
                    envelope: g.envelope.as_deref(),
                })?;
                unlocked(outcome, |c| Reply::GrantCreated {
                    grant_id: c.grant_id,
                    issued_at: c.issued_at,
                    expires_at: c.expires_at,
                    record: c.record,
                    enclave_id: c.enclave_id,
                    receipt: c.receipt,
                })
            }
            Op::Sign(s) => signed_or_need_key(e.sign(&SignRequest {
                grant_record: &s.grant_record,
                agent_key_record: &s.agent_key_record,
                bot_id: s.bot_id,
                transaction: &s.transaction,
                request_id: s.request_id,
                declared_notional_cents: s.declared_notional_cents,
                envelope: s.envelope.as_deref(),
            })?),
            Op::SignScheduled(s) => {
                signed_or_need_key(e.sign_scheduled(&SignScheduledRequest {
                    scheduled_record: &s.scheduled_record,
                    transaction: &s.transaction,
                    request_id: s.request_id,
                    envelope: s.envelope.as_deref(),
                })?)
            }
            Op::Revoke { target } => {
                let target = match target {
                    RevokeMsg::Record(id) => RevokeTarget::Record(id),
                    RevokeMsg::Wallet(w) => RevokeTarget::Wallet(w),
                };
                Reply::Revoked { dropped: e.revoke(target)? as u64 }
            }
            Op::KillSwitch { engaged } => {
                Reply::KillSwitch { engaged: e.set_kill_switch(engaged)? }
            }
            Op::HandoverOffer => Reply::HandoverOffer { document: e.handover_offer()? },
            Op::HandoverPrepare { successor_document } => {
                let p = e.handover_prepare(&successor_document)?;
                Reply::HandoverPrepared {
                    document: p.document,
                    wrapped_key: p.wrapped_key,
                    successor: p.successor,
                }
            }
            Op::HandoverAccept { predecessor_document, wrapped_key, envelope } => {
                Reply::HandoverAccepted {
                    proof: e.handover_accept(&predecessor_document, &wrapped_key, &envelope)?,
                }
            }
            Op::HandoverExport { proof } => {
                Reply::HandoverExported { chunks: e.handover_export(&proof)? }
            }
            Op::HandoverChunk { index } => Reply::HandoverChunk { chunk: e.handover_chunk(index)? },
            Op::HandoverImport { index, total, chunk } => {
                match e.handover_import(index, total, &chunk)? {
                    ImportProgress::Partial { received, total } => {
                        Reply::HandoverImported { received, total, imported: None }
                    }
                    ImportProgress::Imported { proof } => {
                        Reply::HandoverImported { received: total, total, imported: Some(proof) }
                    }
                }
            }
            Op::HandoverCommit { imported } => {
                Reply::HandoverCommitted { token: e.handover_commit(&imported)? }
            }
            Op::HandoverFinish { token } => {
                let d = e.handover_finish(&token)?;
                Reply::HandoverFinished(HandoverSummary {
                    predecessor: d.predecessor,
                    answers_for: d.answers_for,
                    request_ids: d.request_ids as u64,
                    counters: d.counters as u64,
                })
            }
            Op::HandoverAbort => Reply::HandoverAborted { successor: e.handover_abort()? },
            Op::AuthorizeRevoke { wallet, scope } => {
                authorization_reply(e.authorize_revoke(wallet, revoke_scope(scope))?)
            }
            Op::RevokeSigned(r) => Reply::Revoked {
                dropped: e.revoke_signed(&WalletRevoke {
                    wallet: r.wallet,
                    scope: revoke_scope(r.scope),
                    nonce: &r.nonce,
                    issued_at: r.issued_at,
                    signature: r.signature,
                })? as u64,
            },
            Op::AuthorizeExport(x) => authorization_reply(e.authorize_export(&export_subject(&x))?),
            Op::Export(x) => unlocked(
                e.export(&ExportRequest {
                    subject: export_subject(&x.subject),
                    nonce: &x.nonce,
                    issued_at: x.issued_at,
                    signature: x.signature,
                    envelope: x.envelope.as_deref(),
                })?,
                |d| Reply::Exported {
                    enc: d.enc,
                    ciphertext: d.ciphertext,
                    kind: d.kind.to_string(),
                    record_id: d.record_id,
                },
            ),
            Op::Status => {
                let s = e.status();
                Reply::Status(StatusReply {
                    enclave_id: s.enclave_id,
                    kill_switch: s.kill_switch,
                    cached_grants: s.cached_grants as u64,
                    cached_vaults: s.cached_vaults as u64,
                    request_ids: s.request_ids as u64,
                    request_id_capacity: s.request_id_capacity as u64,
                    scheduled_ids: s.scheduled_ids as u64,
                    nonces: s.nonces as u64,
                    revocations: s.revocations as u64,
                    spend_counters: s.spend_counters as u64,
                    signatures: s.signatures,
                    need_key: s.need_key,
                    denials: s.denials,
                    envelope_failures: s.envelope_failures,
                    exports: s.exports,
                    handed_over_to: s.handed_over_to,
                    handover: e.handover_stage().map(|stage| match stage {
                        PredecessorStage::Prepared { successor } => {
                            HandoverStage { successor, stage: "prepared".into(), chunks: 0 }
                        }
                        PredecessorStage::Exported { successor, chunks } => {
                            HandoverStage { successor, stage: "exported".into(), chunks }
                        }
                        PredecessorStage::Committed { successor, chunks } => {
                            HandoverStage { successor, stage: "committed".into(), chunks }
                        }
                    }),
                    in_flight: self.in_flight.load(Ordering::Relaxed),
                    connections: self.connections.load(Ordering::Relaxed),
                })
            }
            op @ (Op::ClusterCard { .. }
            | Op::ClusterFound { .. }
            | Op::ClusterJoin { .. }
            | Op::ClusterAdmit { .. }
            | Op::ClusterChallenge { .. }
            | Op::ClusterProve { .. }
            | Op::ClusterDeliver { .. }
            | Op::ClusterOutbox { .. }
            | Op::ClusterStatus) => {
                return Err(EnclaveError::Internal(format!(
                    "{} is served by the cluster runtime, not here",
                    op.name()
                )));
            }
        })
    }
}
