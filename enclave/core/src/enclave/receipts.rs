//! Decision receipts (`docs/receipts.md`): every decision appends one receipt to the decider's
//! hash chain, in the order decisions are applied (a cluster's log order, so every member
//! writes the same chain), and a bounded ring keeps the latest for `GET /v1/receipts`.
//!
//! The hot path pays one encoding and one SHA-256 per receipt ([`signer_receipts::Chain`]), under
//! the state lock the decision already holds; signatures are only on checkpoints, made by this
//! instance's per-boot [`CheckpointKey`] (bound in every document `attest_for_caller` returns).
//!
//! What is written where:
//!
//! | decision | receipt | written by |
//! |---|---|---|
//! | boot (standalone), genesis (cluster) | `chain_start` | `Enclave::new`, the genesis entry |
//! | vault created or imported, agent created | `vault_created`, `agent_created` | [`Command::Note`] |
//! | grant created | `grant_created` | the nonce's use ([`NonceDecision::note`]) |
//! | signature charged (grant) or record used (scheduled) | `signed` | the apply step |
//! | signature refused by policy or limits | `refused` | the apply step (limits), [`Command::Note`] (policy) |
//! | revocation, kill switch | `revoked`, `kill_switch` | the apply step |
//! | handover | `handover_out` / `handover_in` | export / finish |
//!
//! An identical retry (`Effect::Repeated`) writes nothing: its receipt was written the first
//! time. A receipt that cannot be encoded (a policy over the receipt's bound: it was accepted
//! in a grant record of the same bound, so this does not happen) is counted as dropped, never a
//! reason to refuse the decision.
//!
//! [`Command::Note`]: super::replicated::Command::Note
//! [`NonceDecision::note`]: super::replicated::NonceDecision

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use signer_receipts::{Appended, Body, Chain, Charge, Counters, Refused, TokenAmount};

use crate::policy::{Spend, SpendKey};
use crate::pubkey::Pubkey;

pub use signer_receipts::{CheckpointKey, SignedCheckpoint};

/// A receipt's bytes: the answer that carries it owns them; the ring keeps a copy.
pub type Receipt = Vec<u8>;

/// Receipts kept for `GET /v1/receipts` unless configured otherwise.
pub const DEFAULT_RING_CAPACITY: usize = 65_536;
/// Most bytes of receipts one page returns (so a reply fits one protocol frame).
pub const MAX_PAGE_BYTES: usize = 192 * 1024;

/// A decision a receipt records that changes no decision state (so it is a command of its own,
/// [`super::replicated::Command::Note`], or rides on one that does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Note {
    VaultCreated {
        wallet: Pubkey,
        imported: bool,
    },
    AgentCreated {
        wallet: Pubkey,
        agent: Pubkey,
    },
    GrantCreated {
        grant_id: [u8; 16],
        wallet: Pubkey,
        bot_id: [u8; 16],
        agent: Pubkey,
        message_sha256: [u8; 32],
        expires_at: u64,
        #[serde(with = "serde_bytes")]
        policy: Vec<u8>,
    },
    Refused {
        request_id: [u8; 16],
        grant_id: [u8; 16],
        code: String,
        rule: String,
    },
}

impl Note {
    pub(super) fn body(&self) -> Body {
        match self {
            Self::VaultCreated { wallet, imported } => {
                Body::VaultCreated { wallet: *wallet, imported: *imported }
            }
            Self::AgentCreated { wallet, agent } => {
                Body::AgentCreated { wallet: *wallet, agent: *agent }
            }
            Self::GrantCreated {
                grant_id,
                wallet,
                bot_id,
                agent,
                message_sha256,
                expires_at,
                policy,
            } => Body::GrantCreated(signer_receipts::GrantCreated {
                grant_id: *grant_id,
                wallet: *wallet,
                bot_id: *bot_id,
                agent: *agent,
                message_sha256: *message_sha256,
                expires_at: *expires_at,
                policy: policy.clone(),
            }),
            Self::Refused { request_id, grant_id, code, rule } => {
                Body::Refused(Refused::new(*request_id, *grant_id, code, rule))
            }
        }
    }
}

/// What a `signed` receipt says was charged: transfers, the fee the daily limit counts (0 when
/// the agent does not pay it), notional and tokens.
pub(super) fn charge(spend: &Spend) -> Charge {
    Charge {
        lamports: spend.lamports,
        fee_lamports: spend.daily_lamports().saturating_sub(spend.lamports),
        notional_cents: spend.notional_cents,
        tokens: spend
            .tokens
            .iter()
            .map(|(mint, amount)| TokenAmount { mint: *mint, amount: *amount })
            .collect(),
    }
}

/// A `signed` receipt's body.
pub(super) fn signed(
    request_id: [u8; 16],
    grant_id: [u8; 16],
    key: &SpendKey,
    message_sha256: [u8; 32],
    charged: Charge,
    after: Counters,
) -> Body {
    Body::Signed(signer_receipts::Signed {
        request_id,
        grant_id,
        bot_id: key.bot_id,
        agent: Pubkey(key.agent),
        message_sha256,
        charged,
        after,
    })
}

/// A page of receipts (see [`ReceiptLog::page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptPage {
    /// The chain's decider (this enclave, or its cluster).
    pub decider: [u8; 16],
    /// Receipts after the asked seq, ascending.
    pub receipts: Vec<Receipt>,
    /// Receipts after `after` that were evicted from the ring: (after, the oldest kept).
    pub gap: Option<(u64, u64)>,
    /// The seq of the last receipt returned (or the asked one when none was).
    pub next_after: u64,
    /// More receipts follow (the page was full).
    pub more: bool,
}

/// Bytes of buffer the ring may use per receipt it keeps: a `signed` receipt is ~250 bytes, so
/// the default ring holds its 65 536 of those in 32 MiB; larger receipts (a grant's, with its
/// whole policy) take the room of several.
pub const RING_BYTES_PER_RECEIPT: usize = 512;

/// The latest receipts, at most `capacity` of them and `capacity × RING_BYTES_PER_RECEIPT` bytes
/// (one at least, whatever its size), back to back in one buffer reserved up front: appending
/// copies a receipt's bytes in and evicting drops the oldest's from the front, so the hot path
/// neither allocates nor frees, and the buffer never grows past its budget (pages of it that
/// were never written are not committed).
#[derive(Debug)]
struct Ring {
    /// (seq, absolute offset of its first byte, length) of each receipt kept, oldest first; the
    /// oldest's offset is that of `bytes[0]`.
    index: VecDeque<(u64, u64, usize)>,
    /// Their bytes, back to back in the same order.
    bytes: VecDeque<u8>,
    capacity: usize,
    budget: usize,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        let budget = capacity.saturating_mul(RING_BYTES_PER_RECEIPT);
        Self {
            index: VecDeque::with_capacity(capacity),
            bytes: VecDeque::with_capacity(budget),
            capacity,
            budget,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.bytes.clear();
    }

    fn push(&mut self, seq: u64, receipt: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        while self.index.len() >= self.capacity
            || (!self.index.is_empty()
                && self.bytes.len().saturating_add(receipt.len()) > self.budget)
        {
            let Some((_, _, len)) = self.index.pop_front() else { break };
            self.bytes.drain(..len.min(self.bytes.len()));
        }
        let at = self.index.back().map_or(0, |(_, at, len)| at.saturating_add(*len as u64));
        self.index.push_back((seq, at, receipt.len()));
        self.bytes.extend(receipt);
    }

    fn oldest(&self) -> Option<u64> {
        self.index.front().map(|(seq, _, _)| *seq)
    }

    /// A copy of the receipt at absolute offset `at`, `len` bytes long (copied a slice at a
    /// time from the buffer's two halves).
    fn copy(&self, at: u64, len: usize) -> Vec<u8> {
        let base = self.index.front().map_or(0, |(_, oldest, _)| *oldest);
        let from = usize::try_from(at.saturating_sub(base)).unwrap_or(usize::MAX);
        let to = from.saturating_add(len);
        let (head, tail) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(len);
        if let Some(part) = head.get(from.min(head.len())..to.min(head.len())) {
            out.extend_from_slice(part);
        }
        let (from, to) = (from.saturating_sub(head.len()), to.saturating_sub(head.len()));
        if let Some(part) = tail.get(from.min(tail.len())..to.min(tail.len())) {
            out.extend_from_slice(part);
        }
        out
    }
}

/// The chain and the ring of its latest receipts.
#[derive(Debug)]
pub(super) struct ReceiptLog {
    chain: Option<Chain>,
    ring: Ring,
    written: u64,
    dropped: u64,
}

impl ReceiptLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self { chain: None, ring: Ring::new(capacity), written: 0, dropped: 0 }
    }

    /// A chain that names no predecessor (this boot, or a cluster's genesis): the ring starts
    /// over with its `chain_start`.
    pub(super) fn start(&mut self, decider: [u8; 16], time: u64) {
        self.ring.clear();
        match Chain::start(decider, time) {
            Ok((chain, first)) => {
                self.chain = Some(chain);
                self.keep(first);
            }
            Err(_) => self.dropped = self.dropped.saturating_add(1),
        }
    }

    /// The chain continued from a snapshot's (a member catching up): what came before is
    /// another member's ring.
    pub(super) fn resume(&mut self, decider: [u8; 16], seq: u64, head: [u8; 32]) {
        self.ring.clear();
        self.chain = Some(Chain::resume(decider, seq, head));
    }

    /// A predecessor's chain continued after a handover (its `handover_in`). The ring starts
    /// over with it: a successor is a fresh instance whose own chain holds only its boot's
    /// `chain_start` (an instance that had decided before taking a state over — a merge — has
    /// its earlier receipts dropped from the ring: they were given with their answers, and a
    /// page asked from before reports them as evicted).
    pub(super) fn handover_in(
        &mut self,
        decider: [u8; 16],
        time: u64,
        predecessor: [u8; 16],
        predecessor_seq: u64,
        predecessor_head: [u8; 32],
    ) -> Option<Receipt> {
        match Chain::handover_in(decider, time, predecessor, predecessor_seq, predecessor_head) {
            Ok((chain, first)) => {
                self.ring.clear();
                self.chain = Some(chain);
                Some(self.keep(first))
            }
            Err(_) => {
                self.dropped = self.dropped.saturating_add(1);
                None
            }
        }
    }

    /// The chain as it would be with `body` appended, and that receipt, without appending it
    /// (a handover's `handover_out`: written only once the handover commits, so an aborted one
    /// leaves no receipt behind).
    pub(super) fn prepare(&self, time: u64, body: &Body) -> Option<(Chain, Appended)> {
        let mut chain = self.chain?;
        chain.append(time, body).ok().map(|appended| (chain, appended))
    }

    /// Writes a receipt [`ReceiptLog::prepare`] made, if the chain has not moved since.
    pub(super) fn adopt(&mut self, chain: Chain, appended: Appended) {
        if self.chain.is_some_and(|c| c.seq().checked_add(1) == Some(appended.seq)) {
            self.chain = Some(chain);
            self.keep(appended);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Appends `body` at `time`; the receipt's bytes.
    pub(super) fn append(&mut self, time: u64, body: &Body) -> Option<Receipt> {
        let appended = self.chain.as_mut().map(|chain| chain.append(time, body));
        match appended {
            Some(Ok(appended)) => Some(self.keep(appended)),
            _ => {
                self.dropped = self.dropped.saturating_add(1);
                None
            }
        }
    }

    fn keep(&mut self, appended: Appended) -> Receipt {
        self.ring.push(appended.seq, &appended.bytes);
        self.written = self.written.saturating_add(1);
        appended.bytes
    }

    pub(super) fn chain(&self) -> Option<&Chain> {
        self.chain.as_ref()
    }

    /// Receipts written and receipts that could not be.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.written, self.dropped)
    }

    /// Receipts with seq > `after` (all kept when None), at most `max_bytes` of them (one at
    /// least), and whether evicted ones lie between `after` and the oldest kept.
    pub(super) fn page(&self, after: Option<u64>, max_bytes: usize) -> ReceiptPage {
        let decider = self.chain.as_ref().map(Chain::decider).unwrap_or_default();
        // Receipts after `after` that this ring does not hold: up to the oldest kept, or, when it
        // keeps none (capacity 0, or a chain resumed from a snapshot), up to the chain's head.
        let oldest = self.ring.oldest().or_else(|| self.chain.map(|c| c.seq().saturating_add(1)));
        let index = &self.ring.index;
        let start = index.partition_point(|(seq, _, _)| after.is_some_and(|a| *seq <= a));
        let gap = match (after, oldest) {
            (Some(a), Some(o)) if o > a.saturating_add(1) => Some((a, o)),
            _ => None,
        };
        let mut page =
            ReceiptPage { decider, gap, next_after: after.unwrap_or(0), ..Default::default() };
        let mut bytes = 0usize;
        for (seq, at, len) in index.range(start..) {
            if !page.receipts.is_empty() && bytes.saturating_add(*len) > max_bytes {
                page.more = true;
                break;
            }
            page.receipts.push(self.ring.copy(*at, *len));
            bytes = bytes.saturating_add(*len);
            page.next_after = *seq;
        }
        page
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn log_of(n: u64, capacity: usize) -> ReceiptLog {
        let mut log = ReceiptLog::new(capacity);
        log.start([1; 16], 100);
        for i in 1..n {
            log.append(100 + i, &Body::KillSwitch { on: i % 2 == 1 }).unwrap();
        }
        log
    }

    #[test]
    fn pages_follow_the_asked_seq_and_report_evicted_receipts_as_a_gap() {
        let log = log_of(10, 4);
        // seqs 6..=9 kept.
        let all = log.page(None, MAX_PAGE_BYTES);
        assert_eq!((all.receipts.len(), all.gap, all.next_after, all.more), (4, None, 9, false));
        let after_two = log.page(Some(2), MAX_PAGE_BYTES);
        assert_eq!(after_two.gap, Some((2, 6)), "3, 4 and 5 were evicted");
        assert_eq!(after_two.receipts.len(), 4);
        let after_five = log.page(Some(5), MAX_PAGE_BYTES);
        assert_eq!((after_five.gap, after_five.receipts.len()), (None, 4));
        let after_seven = log.page(Some(7), MAX_PAGE_BYTES);
        assert_eq!((after_seven.receipts.len(), after_seven.next_after), (2, 9));
        let caught_up = log.page(Some(9), MAX_PAGE_BYTES);
        assert_eq!((caught_up.receipts.len(), caught_up.next_after, caught_up.gap), (0, 9, None));
        // A small page still returns one receipt and says more follow.
        let small = log.page(Some(5), 1);
        assert_eq!((small.receipts.len(), small.next_after, small.more), (1, 6, true));
    }

    #[test]
    fn the_ring_returns_exactly_the_bytes_appended_across_evictions_of_any_size() {
        let mut log = ReceiptLog::new(5);
        log.start([1; 16], 100);
        let mut given = Vec::new();
        for i in 1..40u64 {
            // Receipts of different lengths, so evictions free unequal spans of the buffer.
            let rule = "r".repeat(usize::try_from(i * 7 % 23).unwrap());
            let body = Note::Refused {
                request_id: [2; 16],
                grant_id: [3; 16],
                code: "limit_exceeded".into(),
                rule,
            }
            .body();
            given.push(log.append(100 + i, &body).unwrap());
        }
        let page = log.page(None, MAX_PAGE_BYTES);
        assert_eq!(page.receipts, given[given.len() - 5..]);
        assert_eq!(page.next_after, 39);
        let after = log.page(Some(36), MAX_PAGE_BYTES);
        assert_eq!(after.receipts, given[given.len() - 3..]);
        let kept: usize = page.receipts.iter().map(Vec::len).sum();
        assert_eq!(log.ring.bytes.len(), kept, "evicted receipts leave no bytes behind");
    }

    #[test]
    fn the_ring_stays_within_its_byte_budget_and_keeps_at_least_the_newest() {
        // Two receipts' budget (1 024 bytes): receipts of 600 bytes leave room for one.
        let mut ring = Ring::new(2);
        let reserved = ring.bytes.capacity();
        for seq in 1..6u64 {
            ring.push(seq, &[u8::try_from(seq).unwrap(); 600]);
            assert!(ring.bytes.len() <= ring.budget);
        }
        assert_eq!(ring.index.len(), 1, "only the newest fits");
        assert_eq!((ring.oldest(), ring.copy(ring.index[0].1, 600)), (Some(5), vec![5; 600]));
        // A receipt larger than the whole budget is still kept, alone.
        ring.push(6, &[6; 3_000]);
        assert_eq!((ring.index.len(), ring.bytes.len()), (1, 3_000));
        // Small receipts fill the ring up to its count again, within the reservation.
        for seq in 7..12u64 {
            ring.push(seq, &[u8::try_from(seq).unwrap(); 250]);
        }
        assert_eq!(ring.index.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(ring.copy(ring.index[1].1, 250), vec![11; 250]);
        assert_eq!(ring.bytes.len(), 500);
        assert!(reserved >= ring.budget, "reserved up front: {reserved}");
    }

    #[test]
    fn a_ring_that_holds_nothing_after_a_resume_reports_the_receipts_before_as_a_gap() {
        let mut log = ReceiptLog::new(16);
        log.resume([1; 16], 41, [2; 32]);
        let page = log.page(Some(30), MAX_PAGE_BYTES);
        assert_eq!((page.receipts.len(), page.gap), (0, Some((30, 42))));
        assert_eq!(log.page(Some(41), MAX_PAGE_BYTES).gap, None, "caught up: nothing missing");
        let next = log.append(500, &Body::KillSwitch { on: true }).unwrap();
        let page = log.page(Some(30), MAX_PAGE_BYTES);
        assert_eq!((page.receipts, page.gap), (vec![next], Some((30, 42))));
        let none = log_of(5, 0);
        assert_eq!(none.page(Some(1), MAX_PAGE_BYTES).gap, Some((1, 5)));
    }

    #[test]
    fn the_chain_links_every_receipt_and_a_zero_capacity_ring_keeps_none() {
        let log = log_of(5, 16);
        let page = log.page(None, MAX_PAGE_BYTES);
        let receipts: Vec<&[u8]> = page.receipts.iter().map(|r| &r[..]).collect();
        let report = signer_receipts::verify(&receipts, &[], &[]);
        assert!(report.forks.is_empty() && report.gaps.is_empty(), "{report:?}");
        assert_eq!(log.counts(), (5, 0));
        let none = log_of(5, 0);
        assert!(none.page(None, MAX_PAGE_BYTES).receipts.is_empty());
        assert_eq!(none.chain().map(Chain::seq), Some(4));
    }
}
