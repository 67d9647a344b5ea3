//! The parent's side of a live handover (SPEC §16): it relays every step between the current
//! enclave (the predecessor, P) and a successor (S), asks KMS for S's envelope of the handover
//! key, and switches to S once S has taken the state over. It learns nothing and can forge
//! nothing; what it decides is only whether to start, resume or abort.
//!
//! ```text
//! offer(S) → prepare(P) → KMS Decrypt(Recipient = S) → accept(S) → export(P: frozen)
//!   → chunk(P) / import(S) for every chunk → commit(P: for good) → finish(S: decides) → switch
//! ```
//!
//! **Resume.** If the relay stops after P froze, `POST /v1/admin/handover` to the same successor
//! resumes from P's exported chunks (P's `status` says where it stands); every step from export
//! on is repeatable. **Abort.** `POST /v1/admin/handover/abort` takes an uncommitted export back:
//! P decides again and forgets the handover key, so S can never take the state over. After
//! commit only finishing is possible.
//!
//! **Waiting for the successor.** A successor started a moment ago may not listen yet: the parent
//! retries connecting for up to [`SUCCESSOR_WAIT`] before refusing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use signer_protocol::{EnclaveClient, Endpoint, HandoverStage, Op, Outcome, Reply};
use signer_types::error::ErrorCode;
use signer_types::ids::EnclaveId;
use signer_types::records::WrapAlg;

use crate::app::{ApiError, HandoverReport, Parent, unexpected};
use crate::kms::Unwrap;

/// How long the parent waits for a successor to start listening.
pub const SUCCESSOR_WAIT: Duration = Duration::from_secs(10);

fn refused(detail: impl Into<String>) -> ApiError {
    ApiError::coded(ErrorCode::HandoverRefused, detail)
}

pub use signer_api::AbortReport;

impl Parent {
    async fn on(&self, enclave: &EnclaveClient, op: Op) -> Result<Reply, ApiError> {
        match enclave.call(&op, self.timeout()).await {
            Ok(Outcome::Ok(reply)) => Ok(reply),
            Ok(Outcome::Err(e)) => Err(ApiError::from(e)),
            Err(e) => Err(refused(format!("the successor is unreachable: {e}"))),
        }
    }

    /// Waits (bounded) until the successor answers at all.
    async fn wait_for(&self, next: &EnclaveClient) -> Result<(), ApiError> {
        let deadline = Instant::now() + SUCCESSOR_WAIT;
        loop {
            match next.call(&Op::Identity, self.timeout()).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(refused(format!(
                        "the successor did not answer within {} s: {e}",
                        SUCCESSOR_WAIT.as_secs()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Where the current enclave stands: the instances it answers for, and its handover stage.
    async fn current_state(&self) -> Result<(Vec<EnclaveId>, Option<HandoverStage>), ApiError> {
        let reply = self.call(&Op::Identity).await?;
        let Reply::Identity { answers_for, .. } = reply else {
            return Err(unexpected("identity", &reply));
        };
        let reply = self.call(&Op::Status).await?;
        let Reply::Status(status) = reply else {
            return Err(unexpected("status", &reply));
        };
        Ok((answers_for, status.handover))
    }

    /// A live handover from the current enclave to `successor`, or the resumption of one that
    /// was interrupted after the export; afterwards this parent talks to the successor.
    /// Requests keep flowing: those that reach the predecessor after it froze wait for the
    /// switch and go to the successor.
    pub async fn handover(
        &self,
        successor: Endpoint,
        measurements: Option<BTreeMap<u8, Vec<u8>>>,
    ) -> Result<HandoverReport, ApiError> {
        let Ok(_one_at_a_time) = self.handover_lock.try_lock() else {
            return Err(refused("a handover is already running"));
        };
        let started = Instant::now();
        let current = self.attested().await?;
        let next = EnclaveClient::new(successor.clone(), Duration::from_secs(3));
        self.wait_for(&next).await?;
        let pcrs = measurements.unwrap_or_else(|| self.attestation.expected_pcrs());
        let verified = self
            .attestation
            .verify_other(&next, &pcrs, self.timeout())
            .await
            .map_err(|e| refused(format!("the successor: {e}")))?;
        let (answers_for, stage) = self.current_state().await?;
        if answers_for.contains(&verified.enclave_id) {
            return Err(refused(format!(
                "the current enclave {} already answers for {}: handing the state back would \
                 leave nobody able to decide",
                current.enclave_id, verified.enclave_id
            )));
        }
        let chunks = match stage {
            Some(HandoverStage { successor: s, stage, chunks })
                if s == verified.enclave_id && stage != "prepared" =>
            {
                tracing::warn!(successor = %s, %stage, chunks, "resuming an interrupted handover");
                chunks
            }
            Some(HandoverStage { successor: s, stage, .. }) if stage != "prepared" => {
                return Err(refused(format!(
                    "the current enclave is {stage} toward {s}: resume that handover, or abort \
                     it with POST /v1/admin/handover/abort"
                )));
            }
            _ => self.start(&next, &verified).await?,
        };
        // A successor that already answers for the current enclave finished before its reply
        // was lost: only the switch is left.
        let reply = self.on(&next, Op::Identity).await?;
        let already_finished = matches!(
            &reply,
            Reply::Identity { answers_for, .. } if answers_for.contains(&current.enclave_id)
        );
        let mut bytes = 0usize;
        let mut imported = None;
        for index in (0..chunks).filter(|_| !already_finished) {
            let reply = self.call(&Op::HandoverChunk { index }).await?;
            let Reply::HandoverChunk { chunk } = reply else {
                return Err(unexpected("handover_chunk", &reply));
            };
            bytes += chunk.len();
            let reply = self.on(&next, Op::HandoverImport { index, total: chunks, chunk }).await?;
            let Reply::HandoverImported { imported: proof, .. } = reply else {
                return Err(unexpected("handover_import", &reply));
            };
            imported = proof;
        }
        let summary = if already_finished {
            let Reply::Identity { answers_for, .. } = reply else {
                return Err(unexpected("identity", &reply));
            };
            signer_protocol::HandoverSummary {
                predecessor: current.enclave_id,
                answers_for,
                request_ids: 0,
                counters: 0,
            }
        } else {
            let imported = imported
                .ok_or_else(|| ApiError::internal("the successor did not complete the import"))?;
            // From here the predecessor never decides again.
            let reply = self.call(&Op::HandoverCommit { imported }).await?;
            let Reply::HandoverCommitted { token } = reply else {
                return Err(unexpected("handover_commit", &reply));
            };
            let reply = self.on(&next, Op::HandoverFinish { token }).await?;
            let Reply::HandoverFinished(summary) = reply else {
                return Err(unexpected("handover_finish", &reply));
            };
            summary
        };
        drop(next);
        self.enclave.switch_to(successor).await;
        self.attestation.set_expected_pcrs(pcrs);
        self.seen.lock().clear();
        self.prefetches.lock().clear();
        self.switches.send_modify(|n| *n += 1);
        self.metrics.handovers.inc();
        let report = HandoverReport {
            predecessor: current.enclave_id,
            successor: verified.enclave_id,
            answers_for: summary.answers_for,
            request_ids: summary.request_ids,
            counters: summary.counters,
            chunks,
            bytes,
            millis: started.elapsed().as_millis() as u64,
        };
        tracing::warn!(
            predecessor = %report.predecessor,
            successor = %verified.enclave_id,
            chunks,
            bytes,
            millis = report.millis,
            "handover complete: now serving from the successor"
        );
        Ok(report)
    }

    /// Steps 1–4: offer, prepare, KMS, accept, export. Returns the number of chunks.
    async fn start(
        &self,
        next: &EnclaveClient,
        verified: &crate::attestation::Attested,
    ) -> Result<u32, ApiError> {
        let Reply::HandoverOffer { document: offer } = self.on(next, Op::HandoverOffer).await?
        else {
            return Err(ApiError::internal("unexpected reply to handover_offer"));
        };
        let reply = self.call(&Op::HandoverPrepare { successor_document: offer.clone() }).await?;
        let Reply::HandoverPrepared { document, wrapped_key, successor: named } = reply else {
            return Err(unexpected("handover_prepare", &reply));
        };
        if named != verified.enclave_id {
            return Err(ApiError::internal("the predecessor named another successor"));
        }
        // Only an image the key policy admits gets the handover key: this is where KMS decides
        // whether the successor may hold the state.
        let pcr0 = verified.pcrs.get(&0).map(hex::encode).unwrap_or_default();
        let envelope = self
            .kms
            .decrypt_for_recipient(
                &Unwrap {
                    alg: WrapAlg::RsaesOaepSha256,
                    ciphertext: &wrapped_key,
                    encryption_context: None,
                },
                &offer,
                &pcr0,
            )
            .await?;
        let reply = self
            .on(next, Op::HandoverAccept { predecessor_document: document, wrapped_key, envelope })
            .await?;
        let Reply::HandoverAccepted { proof } = reply else {
            return Err(ApiError::internal("unexpected reply to handover_accept"));
        };
        // From here the predecessor is frozen until commit (or an abort).
        let reply = self.call(&Op::HandoverExport { proof }).await?;
        let Reply::HandoverExported { chunks } = reply else {
            return Err(unexpected("handover_export", &reply));
        };
        Ok(chunks)
    }

    /// Abandons a handover that was not committed: the current enclave decides again.
    pub async fn abort_handover(&self) -> Result<AbortReport, ApiError> {
        let Ok(_one_at_a_time) = self.handover_lock.try_lock() else {
            return Err(refused("a handover is running; abort it once it stops"));
        };
        let current = self.attested().await?;
        let reply = self.call(&Op::HandoverAbort).await?;
        let Reply::HandoverAborted { successor } = reply else {
            return Err(unexpected("handover_abort", &reply));
        };
        if let Some(s) = successor {
            tracing::warn!(enclave = %current.enclave_id, successor = %s, "handover aborted");
        }
        Ok(AbortReport { enclave_id: current.enclave_id, abandoned_successor: successor })
    }
}
