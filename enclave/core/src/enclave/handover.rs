//! Live handover of the decision state from a running enclave (the predecessor, P) to a new one
//! (the successor, S) for planned restarts and upgrades (SPEC §16). The parent relays every step;
//! it learns nothing and can forge nothing.
//!
//! ```text
//! 1. S  offer    → doc_S   user_data = "signer/handover/successor/v1" ‖ nonce_S[32]
//! 2. P  prepare(doc_S)     doc_S verified (AWS chain, ≤ 5 min old, not debug); S = id(doc_S.public_key)
//!                          K ← 32 random bytes; wrapped = RSA-OAEP-SHA-256(pinned KMS key, K)
//!               → doc_P, wrapped
//!                          doc_P.user_data = SHA-256("signer/handover/predecessor/v1" ‖ P ‖ S
//!                                                    ‖ SHA-256(doc_S) ‖ SHA-256(wrapped))
//!                                            ‖ HMAC-SHA256(K, "signer/handover/key-commit/v1" ‖ P ‖ S)
//!    parent: KMS Decrypt(wrapped, Recipient = doc_S) → envelope for S   (the key policy decides
//!            whether S's image may have it: KMS refuses any image it does not trust)
//! 3. S  accept(doc_P, wrapped, envelope)
//!                          doc_P verified (AWS chain, ≤ 5 min, not debug, PCRs in S's trusted set:
//!                          its own image and configured predecessors; user_data's first half as
//!                          above); K ← envelope, accepted only if it opens the key commitment
//!                          (user_data's second half: an envelope is unauthenticated, so without
//!                          it the host could hand S a key of its own and forge the state)
//!                          proof = HMAC-SHA256(K, "signer/handover/accept/v1" ‖ P ‖ S)
//!               → proof
//! 4. P  export(proof)      proof checked in constant time; P stops deciding (every later decision
//!                          is `enclave_handed_over`) and snapshots its state, atomically
//!               → n chunks: chunk_i = AES-256-GCM(K_state, nonce = i as 96-bit big-endian,
//!                          aad = "signer/handover/state/v1" ‖ P ‖ S ‖ i u32 ‖ n u32, state[i])
//!                          K_state = HMAC-SHA256(K, "signer/handover/state-key/v1" ‖ P ‖ S)
//! 5. S  import(i, n, chunk_i) for every i: each chunk is authenticated before anything is sized
//!                          from it; once all are in, S decodes the state and holds it, undecided
//!               → imported = HMAC-SHA256(K, "signer/handover/imported/v1" ‖ P ‖ S)
//! 6. P  commit(imported)   checked in constant time; from here P is handed over for good
//!               → token = HMAC-SHA256(K, "signer/handover/commit/v1" ‖ P ‖ S)
//! 7. S  finish(token)      checked in constant time; S merges the state and answers for P's
//!                          instances as well as its own.
//! ```
//!
//! **Interrupted handovers** leave exactly one enclave deciding. Between export and commit P is
//! frozen and S holds nothing it may use: every step is repeatable (export, chunk, import,
//! commit, finish), so the parent resumes to the same successor; or P aborts, unfreezes and
//! forgets K, after which no commit token can ever exist, so S can never take the state over.
//! After commit P never unfreezes; S takes over on the token, which P repeats on request. The
//! one case left is S dying after P committed: that is a crash of the deciding enclave (its
//! records are orphaned, SPEC §16), not two deciders.
//!
//! P trusts S because only an image the KMS key policy admits can turn `wrapped` into K (no
//! enclave's measured config can name images built after it), and the proof shows S holds K.
//! S trusts P because doc_P is AWS-signed, from an image in S's trusted set, and binds K's wrap,
//! K itself (the commitment), S's offer and both ids; `user_data` of a document is only ever
//! chosen by the enclave (callers of `Attest` cannot set it). K is fresh per handover and reaches only S, so a recorded handover
//! replayed later, or to another enclave, opens nothing. State plaintext format:
//!
//! ```text
//! "signer/state/v3" ‖ kill_switch u8 ‖ time_floor u64 ‖ n u16 ‖ n × enclave_id[16] (answers_for)
//! requests         n u32 ‖ n × (request_id[16] ‖ digest[32] ‖ expires u64)
//! scheduled marks  n u32 ‖ n × (schedule_id[16] ‖ agent[32] ‖ request_id[16] ‖ expires u64)
//! used nonces      n u32 ‖ n × (nonce[16] ‖ expires u64)
//! revoked records  n u32 ‖ n × (record_id[16] ‖ expires u64)
//! revoked wallets  n u32 ‖ n × (wallet[32] ‖ cutoff u64 ‖ last_issued u64 ‖ expires u64)
//! ledger           n u32 ‖ n × (wallet[32] ‖ bot[16] ‖ agent[32] ‖ day u64 ‖ lamports u64
//!                  ‖ notional u64 ‖ last_seen u64 ‖ t u16 ‖ t × (mint[32] ‖ amount u64)
//!                  ‖ r u16 ‖ r × timestamp u64)
//! receipts         0 u8 (no chain) | 1 u8 ‖ decider[16] ‖ seq u64 ‖ head[32] (the predecessor's
//!                  chain after its `handover_out`: the successor's `handover_in` goes on from it)
//! ```
//!
//! A `signer/state/v2` state (an image from before receipts) is the same without the receipts
//! section; the successor's chain then names no predecessor.
//!
//! All integers little-endian except the GCM nonce. A chunk holds at most [`CHUNK_LEN`] bytes of
//! state, so each message fits the 256 KiB frame; a state is at most [`MAX_CHUNKS`] chunks.

use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use rsa::Oaep;
use sha2::{Digest, Sha256};
use signer_types::ids::EnclaveId;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::Enclave;
use super::state::{DecisionState, IssuedNonce, WalletRevocation};
use crate::error::EnclaveError;
use crate::policy::{SpendKey, SpendRecord};
use crate::pubkey::Pubkey;
use crate::secret::{Secret32, random_array, seeded_rng};

/// State bytes per chunk.
pub const CHUNK_LEN: usize = 192 * 1024;
/// Most chunks a state may have (192 MiB).
pub const MAX_CHUNKS: u32 = 1024;
/// The documents of a handover must be this fresh.
pub const DOCUMENT_MAX_AGE: Duration = Duration::from_secs(300);

const OFFER_DOMAIN: &[u8] = b"signer/handover/successor/v1";
const PREPARE_DOMAIN: &[u8] = b"signer/handover/predecessor/v1";
const ACCEPT_DOMAIN: &[u8] = b"signer/handover/accept/v1";
const IMPORTED_DOMAIN: &[u8] = b"signer/handover/imported/v1";
const COMMIT_DOMAIN: &[u8] = b"signer/handover/commit/v1";
const KEY_COMMIT_DOMAIN: &[u8] = b"signer/handover/key-commit/v1";
const STATE_KEY_DOMAIN: &[u8] = b"signer/handover/state-key/v1";
const CHUNK_DOMAIN: &[u8] = b"signer/handover/state/v1";
const STATE_MAGIC: &[u8] = b"signer/state/v3";
/// The format before receipts: read (an upgrade from an image that wrote it), never written.
const STATE_MAGIC_V2: &[u8] = b"signer/state/v2";

/// The public part of the predecessor's binding (module docs, step 2).
fn prepare_binding(
    predecessor: EnclaveId,
    successor: EnclaveId,
    offer_sha256: &[u8; 32],
    wrapped_key: &[u8],
) -> [u8; 32] {
    Sha256::new()
        .chain_update(PREPARE_DOMAIN)
        .chain_update(predecessor.0)
        .chain_update(successor.0)
        .chain_update(offer_sha256)
        .chain_update(Sha256::digest(wrapped_key))
        .finalize()
        .into()
}

/// The predecessor's commitment to the handover key, in its document.
fn key_commitment(key: &Secret32, predecessor: EnclaveId, successor: EnclaveId) -> [u8; 32] {
    keyed(key, KEY_COMMIT_DOMAIN, predecessor, successor)
}

fn refused(why: impl Into<String>) -> EnclaveError {
    EnclaveError::Handover(why.into())
}

/// The decision state as a handover carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateSnapshot {
    pub kill_switch: bool,
    /// The predecessor's decision time: the successor's never goes below it.
    pub time_floor: u64,
    pub answers_for: Vec<EnclaveId>,
    /// (request id, digest, expires_at)
    pub requests: Vec<([u8; 16], [u8; 32], u64)>,
    /// (schedule id ‖ agent, request id, expires_at)
    pub scheduled: Vec<([u8; 48], [u8; 16], u64)>,
    /// (nonce, expires_at)
    pub nonces: Vec<([u8; 16], u64)>,
    /// (record id, expires_at)
    pub revoked_records: Vec<([u8; 16], u64)>,
    /// (wallet, cutoff, last_issued, expires_at)
    pub revoked_wallets: Vec<([u8; 32], u64, u64, u64)>,
    pub ledger: Vec<SpendRecord>,
    /// The predecessor's receipt chain after its `handover_out`: decider, seq, head (v3; a v2
    /// state has none, and the successor's chain then names no predecessor).
    pub receipts: Option<([u8; 16], u64, [u8; 32])>,
}

fn count(n: usize, what: &str) -> Result<u32, EnclaveError> {
    u32::try_from(n).map_err(|_| refused(format!("too many {what} to hand over")))
}

fn count16(n: usize, what: &str) -> Result<u16, EnclaveError> {
    u16::try_from(n).map_err(|_| refused(format!("too many {what} to hand over")))
}

impl StateSnapshot {
    /// The plaintext format (module docs).
    pub fn encode(&self) -> Result<Vec<u8>, EnclaveError> {
        let mut out = Vec::with_capacity(
            64 + self.requests.len() * 56
                + self.scheduled.len() * 72
                + self.nonces.len() * 24
                + self.ledger.len() * 140,
        );
        out.extend_from_slice(STATE_MAGIC);
        out.push(u8::from(self.kill_switch));
        out.extend_from_slice(&self.time_floor.to_le_bytes());
        out.extend_from_slice(&count16(self.answers_for.len(), "instances")?.to_le_bytes());
        for id in &self.answers_for {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&count(self.requests.len(), "request ids")?.to_le_bytes());
        for (id, digest, expires) in &self.requests {
            out.extend_from_slice(id);
            out.extend_from_slice(digest);
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out.extend_from_slice(&count(self.scheduled.len(), "scheduled marks")?.to_le_bytes());
        for (mark, request, expires) in &self.scheduled {
            out.extend_from_slice(mark);
            out.extend_from_slice(request);
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out.extend_from_slice(&count(self.nonces.len(), "nonces")?.to_le_bytes());
        for (nonce, expires) in &self.nonces {
            out.extend_from_slice(nonce);
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out.extend_from_slice(&count(self.revoked_records.len(), "revocations")?.to_le_bytes());
        for (id, expires) in &self.revoked_records {
            out.extend_from_slice(id);
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out.extend_from_slice(&count(self.revoked_wallets.len(), "revocations")?.to_le_bytes());
        for (wallet, cutoff, last_issued, expires) in &self.revoked_wallets {
            out.extend_from_slice(wallet);
            out.extend_from_slice(&cutoff.to_le_bytes());
            out.extend_from_slice(&last_issued.to_le_bytes());
            out.extend_from_slice(&expires.to_le_bytes());
        }
        out.extend_from_slice(&count(self.ledger.len(), "counters")?.to_le_bytes());
        for r in &self.ledger {
            let key =
                r.key.unwrap_or(SpendKey { wallet: [0; 32], bot_id: [0; 16], agent: [0; 32] });
            out.extend_from_slice(&key.wallet);
            out.extend_from_slice(&key.bot_id);
            out.extend_from_slice(&key.agent);
            for v in [r.day, r.lamports, r.notional_cents, r.last_seen] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&count16(r.tokens.len(), "token counters")?.to_le_bytes());
            for (mint, amount) in &r.tokens {
                out.extend_from_slice(&mint.0);
                out.extend_from_slice(&amount.to_le_bytes());
            }
            out.extend_from_slice(&count16(r.recent.len(), "velocity entries")?.to_le_bytes());
            for t in &r.recent {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        match &self.receipts {
            None => out.push(0),
            Some((decider, seq, head)) => {
                out.push(1);
                out.extend_from_slice(decider);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(head);
            }
        }
        Ok(out)
    }

    /// Parses the plaintext format; refuses anything malformed, truncated or trailing.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnclaveError> {
        let mut r = Cursor { data: bytes, pos: 0 };
        let v3 = match r.take(STATE_MAGIC.len())? {
            tag if tag == STATE_MAGIC => true,
            tag if tag == STATE_MAGIC_V2 => false,
            _ => return Err(refused("the state does not start with its format tag")),
        };
        let kill_switch = match r.u8()? {
            0 => false,
            1 => true,
            other => return Err(refused(format!("kill switch byte {other}"))),
        };
        let mut s = Self { kill_switch, time_floor: r.u64()?, ..Self::default() };
        for _ in 0..r.u16()? {
            s.answers_for.push(EnclaveId(r.array()?));
        }
        for _ in 0..r.len(56)? {
            s.requests.push((r.array()?, r.array()?, r.u64()?));
        }
        for _ in 0..r.len(72)? {
            s.scheduled.push((r.array()?, r.array()?, r.u64()?));
        }
        for _ in 0..r.len(24)? {
            s.nonces.push((r.array()?, r.u64()?));
        }
        for _ in 0..r.len(24)? {
            s.revoked_records.push((r.array()?, r.u64()?));
        }
        for _ in 0..r.len(56)? {
            s.revoked_wallets.push((r.array()?, r.u64()?, r.u64()?, r.u64()?));
        }
        for _ in 0..r.len(116)? {
            let key = SpendKey { wallet: r.array()?, bot_id: r.array()?, agent: r.array()? };
            let (day, lamports, notional_cents, last_seen) =
                (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let mut tokens = Vec::new();
            for _ in 0..r.u16()? {
                tokens.push((Pubkey(r.array()?), r.u64()?));
            }
            let mut recent = Vec::new();
            for _ in 0..r.u16()? {
                recent.push(r.u64()?);
            }
            s.ledger.push(SpendRecord {
                key: Some(key),
                day,
                lamports,
                tokens,
                notional_cents,
                recent,
                last_seen,
            });
        }
        if v3 {
            s.receipts = match r.u8()? {
                0 => None,
                1 => Some((r.array()?, r.u64()?, r.array()?)),
                other => return Err(refused(format!("receipt chain byte {other}"))),
            };
        }
        if r.pos != bytes.len() {
            return Err(refused(format!("{} trailing bytes after the state", bytes.len() - r.pos)));
        }
        Ok(s)
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnclaveError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len());
        let slice = end.and_then(|e| self.data.get(self.pos..e));
        let slice =
            slice.ok_or_else(|| refused(format!("the state is truncated at {}", self.pos)))?;
        self.pos += n;
        Ok(slice)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnclaveError> {
        self.take(N)?.try_into().map_err(|_| refused("bad length"))
    }
    fn u8(&mut self) -> Result<u8, EnclaveError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, EnclaveError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, EnclaveError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A list length that the remaining bytes can hold at `min` bytes per entry.
    fn len(&mut self, min: usize) -> Result<u32, EnclaveError> {
        let n = u32::from_le_bytes(self.array()?);
        let remaining = self.data.len() - self.pos;
        if (n as usize).saturating_mul(min) > remaining {
            return Err(refused(format!("a list of {n} entries does not fit the state")));
        }
        Ok(n)
    }
}

fn chunk_cipher_inputs(
    predecessor: EnclaveId,
    successor: EnclaveId,
    index: u32,
    total: u32,
) -> ([u8; 12], Vec<u8>) {
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&index.to_be_bytes());
    let mut aad = Vec::with_capacity(CHUNK_DOMAIN.len() + 40);
    aad.extend_from_slice(CHUNK_DOMAIN);
    aad.extend_from_slice(&predecessor.0);
    aad.extend_from_slice(&successor.0);
    aad.extend_from_slice(&index.to_le_bytes());
    aad.extend_from_slice(&total.to_le_bytes());
    (nonce, aad)
}

/// Encrypts a state for its successor (module docs).
pub fn seal_chunks(
    key: &Secret32,
    predecessor: EnclaveId,
    successor: EnclaveId,
    state: &[u8],
) -> Result<Vec<Vec<u8>>, EnclaveError> {
    let pieces: Vec<&[u8]> =
        if state.is_empty() { vec![&[]] } else { state.chunks(CHUNK_LEN).collect() };
    let total = u32::try_from(pieces.len())
        .ok()
        .filter(|n| *n <= MAX_CHUNKS)
        .ok_or_else(|| refused("the state is too large to hand over"))?;
    let state_key = state_key(key, predecessor, successor);
    let cipher = Aes256Gcm::new((&*state_key).into());
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let (nonce, aad) = chunk_cipher_inputs(predecessor, successor, i as u32, total);
            cipher
                .encrypt(&Nonce::from(nonce), aes_gcm::aead::Payload { msg: piece, aad: &aad })
                .map_err(|_| refused("encrypting the state failed"))
        })
        .collect()
}

/// Decrypts one chunk; any failure is the same refusal.
pub fn open_chunk(
    key: &Secret32,
    predecessor: EnclaveId,
    successor: EnclaveId,
    index: u32,
    total: u32,
    chunk: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnclaveError> {
    let (nonce, aad) = chunk_cipher_inputs(predecessor, successor, index, total);
    let state_key = state_key(key, predecessor, successor);
    Aes256Gcm::new((&*state_key).into())
        .decrypt(&Nonce::from(nonce), aes_gcm::aead::Payload { msg: chunk, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| refused(format!("state chunk {index} of {total} does not open")))
}

/// The AES-256-GCM key of the state chunks, derived from the handover key (which itself is
/// used only as an HMAC key: commitment, proof, this derivation).
fn state_key(key: &Secret32, predecessor: EnclaveId, successor: EnclaveId) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(keyed(key, STATE_KEY_DOMAIN, predecessor, successor))
}

fn accept_proof(key: &Secret32, predecessor: EnclaveId, successor: EnclaveId) -> [u8; 32] {
    keyed(key, ACCEPT_DOMAIN, predecessor, successor)
}

/// HMAC-SHA256(key, domain ‖ predecessor ‖ successor).
pub(super) fn keyed(
    key: &Secret32,
    domain: &[u8],
    predecessor: EnclaveId,
    successor: EnclaveId,
) -> [u8; 32] {
    keyed_parts(key, &[domain, &predecessor.0, &successor.0])
}

/// HMAC-SHA256(key, parts concatenated).
pub(super) fn keyed_parts(key: &Secret32, parts: &[&[u8]]) -> [u8; 32] {
    // HMAC pads a key shorter than the hash's block with zeros: doing it here gives the fixed-size
    // constructor, which cannot fail.
    let mut block = Zeroizing::new([0u8; 64]);
    if let Some(head) = block.get_mut(..32) {
        head.copy_from_slice(key.expose());
    }
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new(&(*block).into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// What a successor holds between its offer and the end of the import.
pub(super) struct SuccessorSession {
    offer_sha256: [u8; 32],
    accepted: Option<(EnclaveId, Secret32)>,
    chunks: Vec<Option<Zeroizing<Vec<u8>>>>,
    /// The whole state, decoded, waiting for the predecessor's commit token.
    pending: Option<StateSnapshot>,
}

/// What a predecessor holds from `prepare` on.
pub(super) struct PredecessorSession {
    successor: EnclaveId,
    key: Secret32,
    exported: Option<Vec<Vec<u8>>>,
    /// Set by `commit`: the successor may take the state over; this enclave never decides again.
    committed: bool,
    /// The `handover_out` receipt the export's state names as the chain's head, written at
    /// commit (an aborted handover leaves no receipt).
    handover_out: Option<(signer_receipts::Chain, signer_receipts::Appended)>,
}

/// Where this enclave stands as a predecessor (for `status` and the parent's resume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PredecessorStage {
    /// Prepared for `successor`; still deciding.
    Prepared { successor: EnclaveId },
    /// Frozen and exported in `chunks` chunks; not committed (resumable, or abortable).
    Exported { successor: EnclaveId, chunks: u32 },
    /// Committed: the successor decides from now on.
    Committed { successor: EnclaveId, chunks: u32 },
}

/// What an import step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportProgress {
    /// More chunks are needed.
    Partial { received: u32, total: u32 },
    /// Every chunk is in and the state decodes: the proof for the predecessor's commit.
    Imported { proof: [u8; 32] },
}

#[derive(Default)]
pub(super) struct Sessions {
    pub(super) successor: Option<SuccessorSession>,
    pub(super) predecessor: Option<PredecessorSession>,
    /// Set once a state was imported: an enclave takes over one predecessor, once.
    pub(super) imported_from: Option<EnclaveId>,
    /// What the finished import was, with its key: a repeated `import` or `finish` (a lost
    /// reply) is answered again.
    pub(super) finished: Option<FinishedImport>,
}

/// A completed take-over, kept so its last steps can be answered again.
pub(super) struct FinishedImport {
    predecessor: EnclaveId,
    key: Secret32,
    imported: Imported,
}

impl Enclave {
    /// A frozen enclave (it gave its state away, or is giving it) takes no state in.
    /// A cluster member is replaced by membership changes, never by a handover: exporting its
    /// state would make a second decider of the cluster, importing one would fork it.
    fn refuse_if_in_cluster(&self) -> Result<(), EnclaveError> {
        if self.in_cluster() {
            return Err(refused(
                "this enclave is a member of a cluster: replace members by admitting new ones",
            ));
        }
        Ok(())
    }

    fn refuse_if_frozen(&self, sessions: &Sessions) -> Result<(), EnclaveError> {
        if let Some(successor) = self.state.lock().handed_over_to {
            return Err(refused(format!(
                "this enclave handed its state to {successor} and cannot be a successor"
            )));
        }
        if sessions.predecessor.as_ref().is_some_and(|p| p.exported.is_some()) {
            return Err(refused(
                "this enclave is handing its state over and cannot be a successor",
            ));
        }
        Ok(())
    }
}

/// `prepare` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub document: Vec<u8>,
    /// The handover key, RSA-OAEP-wrapped to the pinned KMS key.
    pub wrapped_key: Vec<u8>,
    pub successor: EnclaveId,
}

/// What an import took over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub predecessor: EnclaveId,
    pub answers_for: Vec<EnclaveId>,
    pub request_ids: usize,
    pub counters: usize,
}

impl Enclave {
    fn verify_peer(
        &self,
        document: &[u8],
        check_image: bool,
    ) -> Result<(EnclaveId, nitro_attestation::VerifiedDocument), EnclaveError> {
        let now = UNIX_EPOCH + Duration::from_secs(self.clock.now());
        let policy = nitro_attestation::AttestationPolicy {
            max_age: Some(DOCUMENT_MAX_AGE),
            ..Default::default()
        };
        let verified = nitro_attestation::verify_with_policy(document, &self.anchor, &policy, now)
            .map_err(|e| refused(format!("the other enclave's document: {e}")))?;
        if check_image {
            let pcrs = &verified.document.pcrs;
            let trusted = self
                .trusted_images
                .iter()
                .any(|image| nitro_attestation::image_matches(image, pcrs));
            if !trusted {
                return Err(refused(format!(
                    "the predecessor's image (PCR0 {}) is not in this enclave's trusted set",
                    pcrs.get(&0).map(hex::encode).unwrap_or_default()
                )));
            }
        }
        let key = verified
            .document
            .public_key
            .as_deref()
            .ok_or_else(|| refused("the other enclave's document carries no public key"))?;
        let id = EnclaveId::from_recipient_key(key);
        if id == self.id {
            return Err(refused("an enclave cannot hand over to itself"));
        }
        Ok((id, verified))
    }

    /// Step 1, on the successor: a document announcing this enclave as a successor.
    pub fn handover_offer(&self) -> Result<Vec<u8>, EnclaveError> {
        self.refuse_if_in_cluster()?;
        let mut sessions = self.handover.lock();
        if let Some(from) = sessions.imported_from {
            return Err(refused(format!("this enclave already took over {from}")));
        }
        // A frozen enclave has given its state away (or may still have to resume giving it):
        // taking a state back would freeze its new predecessor with nobody able to decide.
        self.refuse_if_frozen(&sessions)?;
        // An accepted handover stays until it finishes or its predecessor aborts: a new offer
        // must not discard a state a committed predecessor is waiting to hand over.
        // (A session whose import is not complete can go: its predecessor cannot have
        // committed, since it commits only on the proof a complete import answers.)
        if sessions.successor.as_ref().is_some_and(|s| s.pending.is_some()) {
            return Err(refused(
                "this enclave holds another enclave's whole state, waiting for its commit; \
                 start a new successor",
            ));
        }
        let nonce: [u8; 32] = random_array(&*self.rng)?;
        let user_data = [OFFER_DOMAIN, &nonce].concat();
        let document = self.attest(Some(&user_data), None)?;
        sessions.successor = Some(SuccessorSession {
            offer_sha256: Sha256::digest(&document).into(),
            accepted: None,
            chunks: Vec::new(),
            pending: None,
        });
        Ok(document)
    }

    /// Step 2, on the predecessor: checks the successor's offer, makes the handover key and
    /// wraps it to the KMS key. This enclave keeps deciding until `export`.
    pub fn handover_prepare(&self, successor_document: &[u8]) -> Result<Prepared, EnclaveError> {
        self.refuse_if_in_cluster()?;
        if let Some(successor) = self.state.lock().handed_over_to {
            return Err(EnclaveError::HandedOver { successor });
        }
        if self.handover.lock().successor.as_ref().is_some_and(|s| s.pending.is_some()) {
            return Err(refused("this enclave is taking over a state and cannot hand over now"));
        }
        let (successor, verified) = self.verify_peer(successor_document, false)?;
        let offered = verified
            .document
            .user_data
            .as_deref()
            .is_some_and(|u| u.len() == OFFER_DOMAIN.len() + 32 && u.starts_with(OFFER_DOMAIN));
        if !offered {
            return Err(refused("the successor's document is not a handover offer"));
        }
        let key = Secret32::random(&*self.rng)?;
        let mut oaep_rng = seeded_rng(&*self.rng)?;
        let wrapped_key = self
            .config
            .kms_public_key
            .encrypt(&mut oaep_rng, Oaep::<Sha256>::new(), key.expose())
            .map_err(|e| refused(format!("wrapping the handover key: {e}")))?;
        let binding = prepare_binding(
            self.id,
            successor,
            &Sha256::digest(successor_document).into(),
            wrapped_key.as_slice(),
        );
        let commitment = key_commitment(&key, self.id, successor);
        let document = self.attest(Some(&[binding, commitment].concat()), None)?;
        self.handover.lock().predecessor = Some(PredecessorSession {
            successor,
            key,
            exported: None,
            committed: false,
            handover_out: None,
        });
        Ok(Prepared { document, wrapped_key, successor })
    }

    /// Step 3, on the successor: checks the predecessor's document and takes the handover key
    /// from the KMS envelope made for this enclave; answers the proof that it holds it.
    pub fn handover_accept(
        &self,
        predecessor_document: &[u8],
        wrapped_key: &[u8],
        envelope: &[u8],
    ) -> Result<[u8; 32], EnclaveError> {
        self.refuse_if_in_cluster()?;
        let offer_sha256 = {
            let sessions = self.handover.lock();
            self.refuse_if_frozen(&sessions)?;
            match sessions.successor.as_ref() {
                Some(s) if s.accepted.is_none() => s.offer_sha256,
                _ => return Err(refused("no handover offer of this enclave is waiting")),
            }
        };
        let (predecessor, verified) = self.verify_peer(predecessor_document, true)?;
        let expected = prepare_binding(predecessor, self.id, &offer_sha256, wrapped_key);
        let user_data = verified.document.user_data.as_deref().unwrap_or_default();
        let (binding, commitment) = user_data.split_at_checked(32).unwrap_or_default();
        if binding != expected.as_slice() || commitment.len() != 32 {
            return Err(refused(
                "the predecessor's document does not bind this offer, this enclave and this key",
            ));
        }
        // The envelope proves nothing on its own: its key counts only if it is the key the
        // predecessor committed to. A mismatch is one more failure after the RSA step, so it
        // gets the same single answer as every other one.
        let key = self
            .open_with_envelope(envelope, |key| {
                let ours = key_commitment(key, predecessor, self.id);
                if bool::from(ours.ct_eq(commitment)) {
                    Ok(key.clone())
                } else {
                    Err(crate::error::RecordError::Invalid("handover key commitment".into()))
                }
            })?
            .ok_or_else(|| refused("the KMS envelope is addressed to another enclave"))?;
        let proof = accept_proof(&key, predecessor, self.id);
        let mut sessions = self.handover.lock();
        self.refuse_if_frozen(&sessions)?;
        let session = sessions
            .successor
            .as_mut()
            .filter(|s| s.offer_sha256 == offer_sha256 && s.accepted.is_none())
            .ok_or_else(|| refused("the handover offer changed meanwhile"))?;
        session.accepted = Some((predecessor, key));
        Ok(proof)
    }

    /// Step 4, on the predecessor: checks the successor's proof, stops deciding and encrypts the
    /// whole decision state to the handover key. Returns the number of chunks (see
    /// [`Enclave::handover_chunk`]); repeating it returns the same export.
    pub fn handover_export(&self, proof: &[u8; 32]) -> Result<u32, EnclaveError> {
        self.refuse_if_in_cluster()?;
        let mut sessions = self.handover.lock();
        // An enclave taking a state in does not give its own away at the same time: the state
        // it is receiving would have nowhere to go.
        if sessions.successor.as_ref().is_some_and(|s| s.accepted.is_some()) {
            return Err(refused("this enclave is taking over a state and cannot hand over now"));
        }
        let session =
            sessions.predecessor.as_mut().ok_or_else(|| refused("no handover is prepared"))?;
        let expected = accept_proof(&session.key, self.id, session.successor);
        if !bool::from(expected.ct_eq(proof)) {
            // Before the export nothing was given away: abandon. After it, a forged proof
            // changes nothing (the export stays resumable or abortable).
            if session.exported.is_none() {
                sessions.predecessor = None;
                return Err(refused("the successor's proof does not match: handover abandoned"));
            }
            return Err(refused("the successor's proof does not match"));
        }
        if let Some(chunks) = &session.exported {
            return u32::try_from(chunks.len()).map_err(|_| refused("too many chunks"));
        }
        let snapshot = {
            let mut state = self.state.lock();
            if let Some(other) = state.handed_over_to.filter(|s| *s != session.successor) {
                return Err(EnclaveError::HandedOver { successor: other });
            }
            // The last receipt here, written at commit: its hash is where the successor's
            // chain goes on, so the state carries the head as it will be.
            let now = self.decision_now().max(state.applied_time);
            session.handover_out = state.receipts.prepare(
                now,
                &signer_receipts::Body::HandoverOut { successor: session.successor.0 },
            );
            state.handed_over_to = Some(session.successor);
            let mut snapshot = self.snapshot(&state);
            snapshot.receipts =
                session.handover_out.as_ref().map(|(c, _)| (c.decider(), c.seq(), c.head()));
            snapshot
        };
        // Nothing is decided here any more: drop what was opened.
        self.clear();
        let plaintext = Zeroizing::new(snapshot.encode()?);
        let chunks = seal_chunks(&session.key, self.id, session.successor, &plaintext)?;
        let total = u32::try_from(chunks.len()).map_err(|_| refused("too many chunks"))?;
        session.exported = Some(chunks);
        Ok(total)
    }

    /// One encrypted chunk of an export.
    pub fn handover_chunk(&self, index: u32) -> Result<Vec<u8>, EnclaveError> {
        let sessions = self.handover.lock();
        sessions
            .predecessor
            .as_ref()
            .and_then(|s| s.exported.as_ref())
            .and_then(|chunks| chunks.get(index as usize))
            .cloned()
            .ok_or_else(|| refused(format!("no exported chunk {index}")))
    }

    fn snapshot(&self, state: &DecisionState) -> StateSnapshot {
        let now = self.clock.now();
        StateSnapshot {
            kill_switch: state.kill_switch,
            time_floor: self.decision_now(),
            answers_for: self.answers_for(),
            requests: state.requests.live(now).map(|(k, v, e)| (*k, *v, e)).collect(),
            scheduled: state.scheduled.live(now).map(|(k, v, e)| (*k, *v, e)).collect(),
            nonces: state
                .nonces
                .live(now)
                .filter(|(_, n, _)| n.used)
                .map(|(k, _, e)| (*k, e))
                .collect(),
            revoked_records: state.revoked_records.live(now).map(|(k, _, e)| (*k, e)).collect(),
            revoked_wallets: state
                .revoked_wallets
                .live(now)
                .map(|(k, r, e)| (*k, r.cutoff, r.last_issued, e))
                .collect(),
            ledger: state.ledger.export(),
            receipts: state.receipts.chain().map(|c| (c.decider(), c.seq(), c.head())),
        }
    }

    /// Step 5, on the successor: one chunk, authenticated (its index and the chunk count are in
    /// its AAD) before anything is sized from it, so a forged chunk changes nothing. Once every
    /// chunk is in, the state is decoded and held until the predecessor's commit token; the
    /// answer is then the proof the predecessor commits on. Repeating any chunk is harmless.
    pub fn handover_import(
        &self,
        index: u32,
        total: u32,
        chunk: &[u8],
    ) -> Result<ImportProgress, EnclaveError> {
        self.refuse_if_in_cluster()?;
        if total == 0 || total > MAX_CHUNKS || index >= total {
            return Err(refused(format!("chunk {index} of {total} is out of range")));
        }
        let mut sessions = self.handover.lock();
        if sessions.successor.is_none()
            && let Some(done) = &sessions.finished
        {
            // A resumed relay after a lost `finish` reply: the chunk still proves itself.
            open_chunk(&done.key, done.predecessor, self.id, index, total, chunk)?;
            let proof = keyed(&done.key, IMPORTED_DOMAIN, done.predecessor, self.id);
            return Ok(ImportProgress::Imported { proof });
        }
        self.refuse_if_frozen(&sessions)?;
        let session =
            sessions.successor.as_mut().ok_or_else(|| refused("no handover is accepted"))?;
        let (predecessor, key) =
            session.accepted.as_ref().ok_or_else(|| refused("no handover is accepted"))?;
        let predecessor = *predecessor;
        let plain = open_chunk(key, predecessor, self.id, index, total, chunk)?;
        let proof = keyed(key, IMPORTED_DOMAIN, predecessor, self.id);
        if session.pending.is_some() {
            return Ok(ImportProgress::Imported { proof });
        }
        if session.chunks.is_empty() {
            session.chunks = (0..total).map(|_| None).collect();
        } else if session.chunks.len() != total as usize {
            // Both counts were authenticated: the predecessor never sends two.
            return Err(refused("the chunk count changed during the import"));
        }
        if let Some(slot) = session.chunks.get_mut(index as usize) {
            *slot = Some(plain);
        }
        let received = session.chunks.iter().filter(|c| c.is_some()).count() as u32;
        if received < total {
            return Ok(ImportProgress::Partial { received, total });
        }
        let mut state_bytes = Zeroizing::new(Vec::new());
        for piece in session.chunks.iter().flatten() {
            state_bytes.extend_from_slice(piece);
        }
        let snapshot = StateSnapshot::decode(&state_bytes)?;
        session.chunks = Vec::new();
        session.pending = Some(snapshot);
        Ok(ImportProgress::Imported { proof })
    }

    /// Step 6, on the predecessor: the successor holds the whole state; from here it decides
    /// and this enclave never will again. Repeating it repeats the token.
    pub fn handover_commit(&self, imported: &[u8; 32]) -> Result<[u8; 32], EnclaveError> {
        let mut sessions = self.handover.lock();
        let session = sessions
            .predecessor
            .as_mut()
            .filter(|s| s.exported.is_some())
            .ok_or_else(|| refused("no handover is exported"))?;
        let expected = keyed(&session.key, IMPORTED_DOMAIN, self.id, session.successor);
        if !bool::from(expected.ct_eq(imported)) {
            return Err(refused("the successor's import proof does not match"));
        }
        if !session.committed
            && let Some((chain, appended)) = session.handover_out.take()
        {
            self.state.lock().receipts.adopt(chain, appended);
        }
        session.committed = true;
        Ok(keyed(&session.key, COMMIT_DOMAIN, self.id, session.successor))
    }

    /// Step 7, on the successor: takes the held state over on the predecessor's commit token.
    /// Repeating it with the same token answers the same take-over (a lost reply).
    pub fn handover_finish(&self, token: &[u8; 32]) -> Result<Imported, EnclaveError> {
        let mut sessions = self.handover.lock();
        if sessions.successor.is_none()
            && let Some(done) = &sessions.finished
        {
            let expected = keyed(&done.key, COMMIT_DOMAIN, done.predecessor, self.id);
            if bool::from(expected.ct_eq(token)) {
                return Ok(done.imported.clone());
            }
            return Err(refused("the predecessor's commit token does not match"));
        }
        self.refuse_if_frozen(&sessions)?;
        let session = sessions
            .successor
            .as_mut()
            .filter(|s| s.pending.is_some())
            .ok_or_else(|| refused("no imported state is waiting for a commit"))?;
        let Some((predecessor, key)) = session.accepted.as_ref() else {
            return Err(refused("no handover is accepted"));
        };
        let predecessor = *predecessor;
        let expected = keyed(key, COMMIT_DOMAIN, predecessor, self.id);
        if !bool::from(expected.ct_eq(token)) {
            return Err(refused("the predecessor's commit token does not match"));
        }
        let key = key.clone();
        let snapshot = session.pending.as_ref().ok_or_else(|| refused("no imported state"))?;
        // The held state goes only once it is merged: a failed merge leaves it to retry.
        let imported = self.take_over(predecessor, snapshot)?;
        sessions.successor = None;
        sessions.imported_from = Some(predecessor);
        sessions.finished = Some(FinishedImport { predecessor, key, imported: imported.clone() });
        Ok(imported)
    }

    /// On the predecessor: abandons a handover that was not committed. An exported state is
    /// taken back (this enclave decides again) and the handover key forgotten, so no commit
    /// token can ever be made for it. Returns the successor it was meant for, if any.
    pub fn handover_abort(&self) -> Result<Option<EnclaveId>, EnclaveError> {
        let mut sessions = self.handover.lock();
        let Some(session) = sessions.predecessor.as_ref() else {
            return Ok(None);
        };
        if session.committed {
            return Err(refused(format!(
                "the handover to {} is committed: the successor decides",
                session.successor
            )));
        }
        let successor = session.successor;
        if session.exported.is_some() {
            let mut state = self.state.lock();
            if state.handed_over_to == Some(successor) {
                state.handed_over_to = None;
            }
        }
        sessions.predecessor = None;
        Ok(Some(successor))
    }

    /// Where this enclave stands as a predecessor.
    pub fn handover_stage(&self) -> Option<PredecessorStage> {
        let sessions = self.handover.lock();
        let session = sessions.predecessor.as_ref()?;
        let successor = session.successor;
        Some(match &session.exported {
            None => PredecessorStage::Prepared { successor },
            Some(chunks) => {
                let chunks = chunks.len() as u32;
                if session.committed {
                    PredecessorStage::Committed { successor, chunks }
                } else {
                    PredecessorStage::Exported { successor, chunks }
                }
            }
        })
    }

    /// Merges the predecessor's state into this enclave's, all of it: every store first makes
    /// room for what arrives (so nothing can fail halfway, with the predecessor already stopped),
    /// then entries join this enclave's own. Joining is as strict as either side: counters of
    /// the same key add up, a kill switch engaged on either side stays engaged, revocations and
    /// single-use marks are united.
    fn take_over(
        &self,
        predecessor: EnclaveId,
        s: &StateSnapshot,
    ) -> Result<Imported, EnclaveError> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.requests.make_room_for(s.requests.len());
        state.scheduled.make_room_for(s.scheduled.len());
        state.revoked_records.make_room_for(s.revoked_records.len());
        state.revoked_wallets.make_room_for(s.revoked_wallets.len());
        let (request_ids, counters) = (s.requests.len(), s.ledger.len());
        for &(id, digest, expires) in &s.requests {
            state.requests.insert(id, digest, expires, now)?;
        }
        for &(mark, request, expires) in &s.scheduled {
            state.scheduled.insert(mark, request, expires, now)?;
        }
        // Used nonces only: a nonce counts only where it was issued (messages name their
        // enclave), so these merely keep reporting a replay as one.
        for &(nonce, expires) in &s.nonces {
            let used = IssuedNonce {
                wallet: [0; 32],
                issued_at: 0,
                purpose: 0,
                used: true,
                used_by: [0; 16],
            };
            state.nonces.insert_evicting(nonce, used, expires, now);
        }
        for &(id, expires) in &s.revoked_records {
            let until = state.revoked_records.expiry_of(&id).map_or(expires, |e| e.max(expires));
            state.revoked_records.insert(id, (), until, now)?;
        }
        for &(wallet, cutoff, last_issued, expires) in &s.revoked_wallets {
            let theirs = WalletRevocation { cutoff, last_issued };
            let (merged, until) = match state.revoked_wallets.entry_of(&wallet) {
                Some((ours, ours_until)) => (
                    WalletRevocation {
                        cutoff: ours.cutoff.max(theirs.cutoff),
                        last_issued: ours.last_issued.max(theirs.last_issued),
                    },
                    expires.max(ours_until),
                ),
                None => (theirs, expires),
            };
            state.revoked_wallets.insert(wallet, merged, until, now)?;
        }
        // Messages issued here from now on come after every one the predecessor issued; a
        // predecessor clock further ahead than the skew is not followed past it (this enclave
        // would otherwise refuse its own messages until its clock caught up).
        let cap = now.saturating_add(self.config.clock_skew);
        self.time_floor.fetch_max(s.time_floor.min(cap), Ordering::AcqRel);
        state.ledger.import(s.ledger.clone());
        let engaged = state.kill_switch || s.kill_switch;
        state.kill_switch = engaged;
        self.kill_switch.store(engaged, Ordering::Release);
        // One chain across the handover: this enclave's continues the predecessor's.
        if let Some((decider, seq, head)) = s.receipts {
            let time = self.decision_now().max(state.applied_time);
            state.receipts.handover_in(self.decider().0, time, decider, seq, head);
        }
        let mut answers = self.answers_for.write();
        for id in s.answers_for.iter().copied().chain(std::iter::once(predecessor)) {
            if !answers.contains(&id) {
                answers.push(id);
            }
        }
        Ok(Imported { predecessor, answers_for: answers.clone(), request_ids, counters })
    }
}
