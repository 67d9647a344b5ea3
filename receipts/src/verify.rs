//! The verifier: receipts in any order as delivered, signed checkpoints and the checkpoint keys
//! the caller trusts (each bound to its signer by an attestation document the caller checked) in;
//! a [`Report`] of everything found out.
//!
//! 1. Every receipt is decoded; undecodable ones are reported by position. Identical bytes
//!    delivered twice are one receipt and a **duplicate**.
//! 2. Receipts are grouped by decider (groups in the order their first receipt was delivered) and
//!    ordered by seq. Walking each group: a seq held by different receipts is a **fork**; a seq
//!    step larger than one is a **gap** ("after X, next seen Y"); a receipt whose `prev` is not
//!    the hash of receipt seq − 1 is a **fork** (a tampered, replaced or foreign receipt); a
//!    receipt after the decider's `handover_out` is a **fork** (it decides no more); a receipt
//!    delivered before the one preceding it in the chain is a **reorder**.
//! 3. Each `handover_in` is linked to its predecessor's `handover_out` (same seq and hash, naming
//!    this successor) when the predecessor's receipts were delivered; each `handover_out` whose
//!    successor was not delivered is listed too.
//! 4. Each checkpoint's signature is checked with the keys given for its signer (unknown signer
//!    or bad signature: reported, not trusted), then its (seq, head) against the receipts. A
//!    matching checkpoint **vouches** for its head and, following `prev` links back (across a
//!    handover), every receipt before it; a link that does not hold ends what it vouches for.
//! 5. Each chain's summary says how it starts (a chain start: a restart that names no
//!    predecessor; a handover-in; or mid-chain, earlier receipts not delivered) and which seqs
//!    are vouched and which are not (those after the last checkpoint).
//!
//! [`Report::ok`] is true only when nothing is wrong and every chain has a vouched receipt.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use signer_types::uuid_text;

use crate::checkpoint::SignedCheckpoint;
use crate::receipt::{Body, Receipt, receipt_hash, ser};

/// What the verifier found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Receipts delivered (byte strings).
    pub delivered: usize,
    /// Distinct receipts that decode.
    pub distinct: usize,
    pub undecodable: Vec<Undecodable>,
    pub duplicates: Vec<Duplicate>,
    pub reorders: Vec<Reorder>,
    pub gaps: Vec<Gap>,
    pub forks: Vec<Fork>,
    pub handovers: Vec<Handover>,
    pub checkpoints: Vec<CheckpointReport>,
    pub chains: Vec<ChainSummary>,
}

/// A receipt that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Undecodable {
    /// Its position in the delivered list.
    pub index: usize,
    /// [`crate::ReceiptError::code`].
    pub code: &'static str,
    pub error: String,
}

/// The same receipt (same bytes) delivered more than once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    /// Every position it was delivered at, the first one kept.
    pub positions: Vec<usize>,
}

/// Receipt `seq` (at `position`) was delivered before receipt `previous_seq` (at
/// `previous_position`), which precedes it in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reorder {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    pub position: usize,
    pub previous_seq: u64,
    pub previous_position: usize,
}

/// Receipts `after + 1 ..= next − 1` of the decider are missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub after: u64,
    pub next: u64,
}

/// Why the chain forks at a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkReason {
    /// Different receipts carry the same seq.
    SameSeq,
    /// The receipt's prev is not the hash of receipt seq − 1.
    PrevMismatch,
    /// The decider wrote it after its handover-out.
    AfterHandoverOut,
}

/// The chain is not one line at `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fork {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    pub reason: ForkReason,
    /// The delivered positions of the receipts concerned.
    pub positions: Vec<usize>,
}

/// How a handover between two deciders checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverStatus {
    /// The successor's handover-in names the hash of the predecessor's handover-out, which
    /// names the successor.
    Linked,
    /// The predecessor's receipt `predecessor_seq` was not delivered (nothing to check).
    PredecessorNotDelivered,
    /// The successor's receipts were not delivered (seen from the predecessor's handover-out).
    SuccessorNotDelivered,
    /// The predecessor's receipt at `predecessor_seq` is not the one the handover-in names.
    HeadMismatch,
    /// The receipt the handover-in names is not a handover-out to this successor.
    NotHandedOut,
}

impl HandoverStatus {
    pub fn is_problem(self) -> bool {
        matches!(self, Self::HeadMismatch | Self::NotHandedOut)
    }
}

/// One handover: `successor` continues `predecessor`'s chain after its receipt
/// `predecessor_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handover {
    #[serde(serialize_with = "ser::id")]
    pub predecessor: [u8; 16],
    #[serde(serialize_with = "ser::id")]
    pub successor: [u8; 16],
    pub predecessor_seq: u64,
    pub status: HandoverStatus,
}

/// What a checkpoint proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStatus {
    /// Signature valid; the receipt at its seq is its head: it vouches for the chain up to there.
    Matches,
    /// Signature valid, but the delivered receipt(s) at its seq have another hash.
    HeadMismatch,
    /// Signature valid, and its seq is beyond the last delivered receipt: receipts were withheld.
    BeyondDelivered,
    /// Signature valid; its seq precedes the delivered receipts (nothing to check).
    BeforeDelivered,
    /// Signature valid; its seq falls in a gap (reported as such).
    InGap,
    /// Signature valid; no receipt of its decider was delivered.
    NoReceipts,
    /// No key was given for its signer: not trusted.
    UnknownSigner,
    /// The signature does not verify with any key given for its signer: not trusted.
    BadSignature,
}

impl CheckpointStatus {
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            Self::HeadMismatch | Self::BeyondDelivered | Self::UnknownSigner | Self::BadSignature
        )
    }
}

/// One checkpoint and what it proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// Its position in the checkpoints given.
    pub index: usize,
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    #[serde(serialize_with = "ser::id")]
    pub signer: [u8; 16],
    pub seq: u64,
    #[serde(serialize_with = "ser::hash")]
    pub head: [u8; 32],
    pub time: u64,
    pub status: CheckpointStatus,
}

/// How a decider's delivered receipts begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainStartKind {
    /// A new chain at seq 0: a restart (or first boot) that names no predecessor.
    ChainStart,
    /// A handover-in: it continues the predecessor's chain.
    HandoverIn,
    /// Mid-chain: the receipts before were not delivered.
    Continues,
}

/// Consecutive seqs `first ..= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

/// One decider's delivered receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub first_seq: u64,
    pub last_seq: u64,
    /// Distinct receipts.
    pub receipts: usize,
    pub start: ChainStartKind,
    /// The predecessor named by a handover-in start.
    #[serde(serialize_with = "ser::opt_id")]
    pub predecessor: Option<[u8; 16]>,
    /// Seqs vouched for by a matching checkpoint.
    pub vouched: Vec<SeqRange>,
    /// Delivered seqs no checkpoint vouches for (those after the last checkpoint, and any cut off
    /// by a gap or fork).
    pub unvouched: Vec<SeqRange>,
}

impl Report {
    /// Nothing undecodable, duplicated, reordered, missing or forked; every handover links;
    /// every checkpoint is trusted and consistent; every chain has a vouched receipt.
    pub fn ok(&self) -> bool {
        self.undecodable.is_empty()
            && self.duplicates.is_empty()
            && self.reorders.is_empty()
            && self.gaps.is_empty()
            && self.forks.is_empty()
            && self.handovers.iter().all(|h| !h.status.is_problem())
            && self.checkpoints.iter().all(|c| !c.status.is_problem())
            && self.chains.iter().all(|c| !c.vouched.is_empty())
    }
}

struct Item {
    pos: usize,
    receipt: Receipt,
    hash: [u8; 32],
    dups: Vec<usize>,
}

/// The receipts of one seq (more than one: a fork), by delivery position.
struct Level {
    seq: u64,
    items: Vec<usize>,
}

struct Group {
    decider: [u8; 16],
    levels: Vec<Level>,
}

impl Group {
    fn level(&self, seq: u64) -> Option<&Level> {
        self.levels.binary_search_by_key(&seq, |l| l.seq).ok().and_then(|i| self.levels.get(i))
    }
}

/// Verifies `receipts` (in any order) against `checkpoints`, trusting `keys` (signer enclave id,
/// ed25519 public key). Module docs.
pub fn verify<B: AsRef<[u8]>>(
    receipts: &[B],
    checkpoints: &[SignedCheckpoint],
    keys: &[([u8; 16], [u8; 32])],
) -> Report {
    let mut report = Report { delivered: receipts.len(), ..Report::default() };

    // 1. Decode, dedupe.
    let mut items: Vec<Item> = Vec::new();
    let mut by_hash: HashMap<[u8; 32], usize> = HashMap::new();
    for (pos, bytes) in receipts.iter().enumerate() {
        let bytes = bytes.as_ref();
        match Receipt::decode(bytes) {
            Err(e) => report.undecodable.push(Undecodable {
                index: pos,
                code: e.code(),
                error: e.to_string(),
            }),
            Ok(receipt) => {
                let hash = receipt_hash(bytes);
                if let Some(item) = by_hash.get(&hash).and_then(|&i| items.get_mut(i)) {
                    item.dups.push(pos);
                } else {
                    by_hash.insert(hash, items.len());
                    items.push(Item { pos, receipt, hash, dups: Vec::new() });
                }
            }
        }
    }
    report.distinct = items.len();

    // 2. Group by decider, order by seq.
    let mut group_of: HashMap<[u8; 16], usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut deciders: Vec<[u8; 16]> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let g = *group_of.entry(item.receipt.decider).or_insert_with(|| {
            members.push(Vec::new());
            deciders.push(item.receipt.decider);
            members.len() - 1
        });
        if let Some(m) = members.get_mut(g) {
            m.push(i);
        }
    }
    let groups: Vec<Group> = deciders
        .into_iter()
        .zip(members)
        .map(|(decider, mut m)| {
            // Items are in delivery order, so a stable sort by seq keeps positions ascending.
            m.sort_by_key(|&i| items.get(i).map_or(0, |it| it.receipt.seq));
            let mut levels: Vec<Level> = Vec::new();
            for i in m {
                let seq = items.get(i).map_or(0, |it| it.receipt.seq);
                match levels.last_mut() {
                    Some(l) if l.seq == seq => l.items.push(i),
                    _ => levels.push(Level { seq, items: vec![i] }),
                }
            }
            Group { decider, levels }
        })
        .collect();
    let item = |i: usize| items.get(i);
    let pos_of = |l: &Level| l.items.first().and_then(|&i| item(i)).map_or(0, |it| it.pos);

    // Handover-ins by (predecessor, predecessor_seq, successor), to tell a handover-out whose
    // successor was delivered.
    let handover_ins: HashSet<([u8; 16], u64, [u8; 16])> = items
        .iter()
        .filter_map(|it| match it.receipt.body {
            Body::HandoverIn { predecessor, predecessor_seq, .. } => {
                Some((predecessor, predecessor_seq, it.receipt.decider))
            }
            _ => None,
        })
        .collect();

    // 3. Walk each group.
    for group in &groups {
        let decider = group.decider;
        let mut previous: Option<&Level> = None;
        let mut handed_out = false;
        let mut after_out_reported = false;
        for level in &group.levels {
            let seq = level.seq;
            let positions: Vec<usize> =
                level.items.iter().filter_map(|&i| item(i)).map(|it| it.pos).collect();
            for it in level.items.iter().filter_map(|&i| item(i)) {
                if !it.dups.is_empty() {
                    let mut positions = vec![it.pos];
                    positions.extend_from_slice(&it.dups);
                    report.duplicates.push(Duplicate { decider, seq, positions });
                }
            }
            if level.items.len() > 1 {
                report.forks.push(Fork {
                    decider,
                    seq,
                    reason: ForkReason::SameSeq,
                    positions: positions.clone(),
                });
            }
            if let Some(p) = previous {
                if pos_of(level) < pos_of(p) {
                    report.reorders.push(Reorder {
                        decider,
                        seq,
                        position: pos_of(level),
                        previous_seq: p.seq,
                        previous_position: pos_of(p),
                    });
                }
                if p.seq.checked_add(1) != Some(seq) {
                    report.gaps.push(Gap { decider, after: p.seq, next: seq });
                } else {
                    for it in level.items.iter().filter_map(|&i| item(i)) {
                        let linked = p
                            .items
                            .iter()
                            .filter_map(|&j| item(j))
                            .any(|pv| pv.hash == it.receipt.prev);
                        if !linked {
                            report.forks.push(Fork {
                                decider,
                                seq,
                                reason: ForkReason::PrevMismatch,
                                positions: vec![it.pos],
                            });
                        }
                    }
                }
            }
            if handed_out && !after_out_reported {
                report.forks.push(Fork {
                    decider,
                    seq,
                    reason: ForkReason::AfterHandoverOut,
                    positions: positions.clone(),
                });
                after_out_reported = true;
            }
            for it in level.items.iter().filter_map(|&i| item(i)) {
                match it.receipt.body {
                    Body::HandoverIn { predecessor, predecessor_seq, predecessor_head } => {
                        let mut status = HandoverStatus::PredecessorNotDelivered;
                        let out = group_of
                            .get(&predecessor)
                            .and_then(|&g| groups.get(g))
                            .and_then(|g| g.level(predecessor_seq));
                        if let Some(out) = out {
                            let found = out
                                .items
                                .iter()
                                .filter_map(|&j| item(j))
                                .find(|o| o.hash == predecessor_head);
                            status = match found {
                                None => HandoverStatus::HeadMismatch,
                                Some(o) => match o.receipt.body {
                                    Body::HandoverOut { successor } if successor == decider => {
                                        if predecessor != decider && it.pos < o.pos {
                                            report.reorders.push(Reorder {
                                                decider,
                                                seq,
                                                position: it.pos,
                                                previous_seq: predecessor_seq,
                                                previous_position: o.pos,
                                            });
                                        }
                                        HandoverStatus::Linked
                                    }
                                    _ => HandoverStatus::NotHandedOut,
                                },
                            };
                        }
                        report.handovers.push(Handover {
                            predecessor,
                            successor: decider,
                            predecessor_seq,
                            status,
                        });
                    }
                    Body::HandoverOut { successor } => {
                        handed_out = true;
                        if !handover_ins.contains(&(decider, seq, successor)) {
                            report.handovers.push(Handover {
                                predecessor: decider,
                                successor,
                                predecessor_seq: seq,
                                status: HandoverStatus::SuccessorNotDelivered,
                            });
                        }
                    }
                    _ => {}
                }
            }
            previous = Some(level);
        }
    }

    // 4. Checkpoints.
    let mut vouched = vec![false; items.len()];
    for (index, signed) in checkpoints.iter().enumerate() {
        let c = &signed.checkpoint;
        let mut candidates = keys.iter().filter(|(id, _)| *id == c.signer).peekable();
        let status = if candidates.peek().is_none() {
            CheckpointStatus::UnknownSigner
        } else if !candidates.any(|(_, public)| signed.verify(public).is_ok()) {
            CheckpointStatus::BadSignature
        } else {
            match group_of.get(&c.decider).and_then(|&g| groups.get(g)) {
                None => CheckpointStatus::NoReceipts,
                Some(group) => match group.level(c.seq) {
                    Some(level) => {
                        let head = level
                            .items
                            .iter()
                            .copied()
                            .find(|&i| item(i).is_some_and(|it| it.hash == c.head));
                        match head {
                            Some(i) => {
                                vouch(&items, &by_hash, &mut vouched, i);
                                CheckpointStatus::Matches
                            }
                            None => CheckpointStatus::HeadMismatch,
                        }
                    }
                    None => {
                        let first = group.levels.first().map_or(0, |l| l.seq);
                        let last = group.levels.last().map_or(0, |l| l.seq);
                        if c.seq > last {
                            CheckpointStatus::BeyondDelivered
                        } else if c.seq < first {
                            CheckpointStatus::BeforeDelivered
                        } else {
                            CheckpointStatus::InGap
                        }
                    }
                },
            }
        };
        report.checkpoints.push(CheckpointReport {
            index,
            decider: c.decider,
            signer: c.signer,
            seq: c.seq,
            head: c.head,
            time: c.time,
            status,
        });
    }

    // 5. Chain summaries.
    for group in &groups {
        let first = group.levels.first();
        let start_item = first.and_then(|l| l.items.first()).and_then(|&i| item(i));
        let (start, predecessor) = match start_item.map(|it| &it.receipt.body) {
            Some(Body::ChainStart) => (ChainStartKind::ChainStart, None),
            Some(Body::HandoverIn { predecessor, .. }) => {
                (ChainStartKind::HandoverIn, Some(*predecessor))
            }
            _ => (ChainStartKind::Continues, None),
        };
        let mut summary = ChainSummary {
            decider: group.decider,
            first_seq: first.map_or(0, |l| l.seq),
            last_seq: group.levels.last().map_or(0, |l| l.seq),
            receipts: group.levels.iter().map(|l| l.items.len()).sum(),
            start,
            predecessor,
            vouched: Vec::new(),
            unvouched: Vec::new(),
        };
        let mut previous: Option<(u64, bool)> = None;
        for level in &group.levels {
            let v = level.items.iter().any(|&i| vouched.get(i).copied().unwrap_or(false));
            let list = if v { &mut summary.vouched } else { &mut summary.unvouched };
            match (previous, list.last_mut()) {
                (Some((p, pv)), Some(range)) if pv == v && p.checked_add(1) == Some(level.seq) => {
                    range.last = level.seq;
                }
                _ => list.push(SeqRange { first: level.seq, last: level.seq }),
            }
            previous = Some((level.seq, v));
        }
        report.chains.push(summary);
    }
    report
}

/// Marks `i` and, following `prev` links to receipt seq − 1 (of the same decider, or of the
/// predecessor named by a handover-in), everything before it.
fn vouch(items: &[Item], by_hash: &HashMap<[u8; 32], usize>, vouched: &mut [bool], mut i: usize) {
    while let (Some(it), Some(mark)) = (items.get(i), vouched.get_mut(i)) {
        if *mark {
            return;
        }
        *mark = true;
        let r = &it.receipt;
        let Some(&j) = by_hash.get(&r.prev) else { return };
        let Some(p) = items.get(j) else { return };
        let crosses = p.receipt.decider != r.decider;
        if p.receipt.seq.checked_add(1) != Some(r.seq)
            || (crosses && !matches!(r.body, Body::HandoverIn { .. }))
        {
            return;
        }
        i = j;
    }
}

fn ranges(list: &[SeqRange]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}–{}", r.first, r.last)
            }
        })
        .collect();
    parts.join(", ")
}

fn positions(list: &[usize]) -> String {
    let parts: Vec<String> = list.iter().map(usize::to_string).collect();
    parts.join(", ")
}

impl fmt::Display for Report {
    /// One line per finding, for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} receipts delivered ({} distinct), {} chains, {} checkpoints: {}",
            self.delivered,
            self.distinct,
            self.chains.len(),
            self.checkpoints.len(),
            if self.ok() { "OK" } else { "PROBLEMS FOUND" }
        )?;
        for u in &self.undecodable {
            writeln!(f, "receipt #{} does not decode ({}): {}", u.index, u.code, u.error)?;
        }
        for d in &self.duplicates {
            writeln!(
                f,
                "duplicate: receipt {} of {} delivered {} times (positions {})",
                d.seq,
                uuid_text(&d.decider),
                d.positions.len(),
                positions(&d.positions)
            )?;
        }
        for r in &self.reorders {
            writeln!(
                f,
                "reorder: receipt {} of {} (position {}) was delivered before receipt {} \
                 (position {})",
                r.seq,
                uuid_text(&r.decider),
                r.position,
                r.previous_seq,
                r.previous_position
            )?;
        }
        for g in &self.gaps {
            writeln!(
                f,
                "gap in {}: after receipt {}, next seen {} ({} missing)",
                uuid_text(&g.decider),
                g.after,
                g.next,
                g.next.saturating_sub(g.after).saturating_sub(1)
            )?;
        }
        for k in &self.forks {
            let why = match k.reason {
                ForkReason::SameSeq => {
                    format!("{} different receipts carry this seq", k.positions.len())
                }
                ForkReason::PrevMismatch => {
                    format!("its prev is not the hash of receipt {}", k.seq.saturating_sub(1))
                }
                ForkReason::AfterHandoverOut => "written after the decider handed over".into(),
            };
            writeln!(
                f,
                "fork in {} at receipt {} (positions {}): {why}",
                uuid_text(&k.decider),
                k.seq,
                positions(&k.positions)
            )?;
        }
        for h in &self.handovers {
            let (p, s, n) = (uuid_text(&h.predecessor), uuid_text(&h.successor), h.predecessor_seq);
            let what = match h.status {
                HandoverStatus::Linked => format!("linked: {s} continues {p}'s chain after {n}"),
                HandoverStatus::PredecessorNotDelivered => format!(
                    "{s} continues {p}'s chain after {n}; the predecessor's receipt {n} was not \
                     delivered"
                ),
                HandoverStatus::SuccessorNotDelivered => format!(
                    "{p} handed over to {s} at receipt {n}; the successor's receipts were not \
                     delivered"
                ),
                HandoverStatus::HeadMismatch => format!(
                    "{s}'s handover-in names a head that is not the hash of {p}'s receipt {n}"
                ),
                HandoverStatus::NotHandedOut => {
                    format!("{p}'s receipt {n} is not a handover-out to {s}")
                }
            };
            writeln!(f, "handover: {what}")?;
        }
        for c in &self.checkpoints {
            let what = match c.status {
                CheckpointStatus::Matches => "matches the chain",
                CheckpointStatus::HeadMismatch => "names another receipt than the one delivered",
                CheckpointStatus::BeyondDelivered => {
                    "is beyond the last delivered receipt: receipts were withheld"
                }
                CheckpointStatus::BeforeDelivered => "precedes the delivered receipts",
                CheckpointStatus::InGap => "falls in a gap",
                CheckpointStatus::NoReceipts => {
                    "names a chain none of whose receipts was delivered"
                }
                CheckpointStatus::UnknownSigner => "has a signer with no trusted key: not trusted",
                CheckpointStatus::BadSignature => {
                    "has a signature that does not verify: not trusted"
                }
            };
            writeln!(
                f,
                "checkpoint #{} of {} by {} at receipt {} (time {}) {what}",
                c.index,
                uuid_text(&c.decider),
                uuid_text(&c.signer),
                c.seq,
                c.time
            )?;
        }
        for c in &self.chains {
            let start = match (c.start, c.predecessor) {
                (ChainStartKind::ChainStart, _) => {
                    format!("new chain at seq {}: a boot or restart, no predecessor", c.first_seq)
                }
                (ChainStartKind::HandoverIn, Some(p)) => {
                    format!(
                        "continues {}'s chain by handover at seq {}",
                        uuid_text(&p),
                        c.first_seq
                    )
                }
                _ => format!("begins at seq {}; earlier receipts not delivered", c.first_seq),
            };
            let vouched = if c.vouched.is_empty() {
                "no receipt vouched for by a checkpoint".to_string()
            } else {
                format!("vouched for by a checkpoint: {}", ranges(&c.vouched))
            };
            // The last unvouched range is the tail after the last checkpoint when it ends the
            // chain and something before it is vouched.
            let tail = match c.unvouched.split_last() {
                Some((t, rest)) if t.last == c.last_seq && !c.vouched.is_empty() => Some((t, rest)),
                _ => None,
            };
            let unvouched = match tail {
                Some((t, [])) => {
                    format!("; after the last checkpoint: {}", ranges(&[*t]))
                }
                Some((t, rest)) => format!(
                    "; not vouched for: {}; after the last checkpoint: {}",
                    ranges(rest),
                    ranges(&[*t])
                ),
                None if c.unvouched.is_empty() => String::new(),
                None => format!("; not vouched for: {}", ranges(&c.unvouched)),
            };
            writeln!(
                f,
                "chain {}: receipts {} ({}); {start}; {vouched}{unvouched}",
                uuid_text(&c.decider),
                ranges(&[SeqRange { first: c.first_seq, last: c.last_seq }]),
                c.receipts
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::*;
    use crate::{Chain, Checkpoint, CheckpointKey};

    fn keys() -> Vec<([u8; 16], [u8; 32])> {
        vec![(ENCLAVE_A, key_a().public()), (ENCLAVE_B, key_b().public())]
    }

    fn cp(
        key: &CheckpointKey,
        decider: [u8; 16],
        signer: [u8; 16],
        seq: u64,
        head: [u8; 32],
    ) -> SignedCheckpoint {
        key.sign(&Checkpoint { decider, signer, seq, head, time: T0 + 100 + seq })
    }

    fn hash(receipts: &[Vec<u8>], i: usize) -> [u8; 32] {
        receipt_hash(&receipts[i])
    }

    /// The handover chain with a checkpoint of A at 3 and of B at 9.
    fn setup() -> (Vec<Vec<u8>>, Vec<SignedCheckpoint>) {
        let (_, _, r) = chain_handover();
        let cps = vec![
            cp(&key_a(), ENCLAVE_A, ENCLAVE_A, 3, hash(&r, 3)),
            cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 9, hash(&r, 9)),
        ];
        (r, cps)
    }

    fn range(first: u64, last: u64) -> SeqRange {
        SeqRange { first, last }
    }

    fn statuses(report: &Report) -> Vec<CheckpointStatus> {
        report.checkpoints.iter().map(|c| c.status).collect()
    }

    #[test]
    fn a_chain_across_a_handover_verifies_end_to_end() {
        let (r, cps) = setup();
        let report = verify(&r, &cps, &keys());
        assert!(report.ok(), "{report}");
        assert_eq!((report.delivered, report.distinct), (10, 10));
        assert_eq!(
            report.handovers,
            vec![Handover {
                predecessor: ENCLAVE_A,
                successor: ENCLAVE_B,
                predecessor_seq: 6,
                status: HandoverStatus::Linked
            }]
        );
        assert_eq!(statuses(&report), vec![CheckpointStatus::Matches; 2]);
        let [a, b] = &report.chains[..] else { panic!("{report}") };
        assert_eq!((a.decider, a.first_seq, a.last_seq, a.receipts), (ENCLAVE_A, 0, 6, 7));
        assert_eq!((a.start, a.predecessor), (ChainStartKind::ChainStart, None));
        // B's checkpoint vouches for A's receipts through the handover link.
        assert_eq!((a.vouched.clone(), a.unvouched.clone()), (vec![range(0, 6)], vec![]));
        assert_eq!((b.start, b.predecessor), (ChainStartKind::HandoverIn, Some(ENCLAVE_A)));
        assert_eq!((b.vouched.clone(), b.unvouched.clone()), (vec![range(7, 9)], vec![]));
        let text = report.to_string();
        assert!(text.contains("OK"), "{text}");
        assert!(text.contains("new chain at seq 0: a boot or restart, no predecessor"), "{text}");
        assert!(text.contains("handover: linked"), "{text}");
    }

    #[test]
    fn receipts_after_the_last_checkpoint_are_listed_as_unvouched() {
        let (r, cps) = setup();
        let report = verify(&r, &cps[..1], &keys());
        assert_eq!(report.chains[0].vouched, vec![range(0, 3)]);
        assert_eq!(report.chains[0].unvouched, vec![range(4, 6)]);
        // B has no vouched receipt at all: not ok.
        assert_eq!(report.chains[1].vouched, vec![]);
        assert!(!report.ok());
        assert!(report.to_string().contains("no receipt vouched for by a checkpoint"));
        // Without checkpoints nothing is vouched.
        assert!(!verify(&r, &[], &keys()).ok());
    }

    #[test]
    fn a_tampered_receipt_breaks_the_next_link() {
        let (mut r, cps) = setup();
        // Receipt 4 (signed) now claims a smaller charge.
        let mut s = Receipt::decode(&r[4]).unwrap();
        let Body::Signed(signed) = &mut s.body else { panic!() };
        signed.charged.lamports = 1;
        r[4] = s.encode().unwrap();
        let report = verify(&r, &cps, &keys());
        assert!(!report.ok());
        assert_eq!(
            report.forks,
            vec![Fork {
                decider: ENCLAVE_A,
                seq: 5,
                reason: ForkReason::PrevMismatch,
                positions: vec![5]
            }]
        );
        // Checkpoint 9 vouches back to 5 only; checkpoint 3 still matches.
        assert_eq!(report.chains[0].vouched, vec![range(0, 3), range(5, 6)]);
        assert_eq!(report.chains[0].unvouched, vec![range(4, 4)]);
        assert!(report.to_string().contains("its prev is not the hash of receipt 4"));

        // Tampering with the head itself: the checkpoint no longer matches.
        let (mut r, cps) = setup();
        let mut last = Receipt::decode(&r[9]).unwrap();
        last.time += 1;
        r[9] = last.encode().unwrap();
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            statuses(&report),
            vec![CheckpointStatus::Matches, CheckpointStatus::HeadMismatch]
        );
        assert!(!report.ok());
    }

    #[test]
    fn a_dropped_receipt_is_a_gap() {
        let (mut r, cps) = setup();
        r.remove(4);
        let report = verify(&r, &cps, &keys());
        assert_eq!(report.gaps, vec![Gap { decider: ENCLAVE_A, after: 3, next: 5 }]);
        assert!(report.forks.is_empty() && report.reorders.is_empty());
        assert_eq!(report.chains[0].vouched, vec![range(0, 3), range(5, 6)]);
        assert!(!report.ok());
        assert!(report.to_string().contains("after receipt 3, next seen 5 (1 missing)"));
    }

    #[test]
    fn a_reordered_receipt_is_reported_with_its_positions() {
        let (mut r, cps) = setup();
        r.swap(4, 5);
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            report.reorders,
            vec![Reorder {
                decider: ENCLAVE_A,
                seq: 5,
                position: 4,
                previous_seq: 4,
                previous_position: 5
            }]
        );
        assert!(report.gaps.is_empty() && report.forks.is_empty());
        assert_eq!(report.chains[0].vouched, vec![range(0, 6)], "the chain itself is intact");
        assert!(!report.ok());
        // Delivered entirely backwards: one reorder per step, across the handover too.
        let (r, cps) = setup();
        let backwards: Vec<Vec<u8>> = r.iter().rev().cloned().collect();
        let report = verify(&backwards, &cps, &keys());
        assert_eq!(report.reorders.len(), 9);
        assert!(
            report
                .reorders
                .iter()
                .any(|o| o.decider == ENCLAVE_B && o.seq == 7 && o.previous_seq == 6)
        );
        assert_eq!(report.chains[0].decider, ENCLAVE_B, "chains in order of first delivery");
    }

    #[test]
    fn a_duplicated_receipt_is_reported_once_and_counted_once() {
        let (mut r, cps) = setup();
        r.push(r[4].clone());
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            report.duplicates,
            vec![Duplicate { decider: ENCLAVE_A, seq: 4, positions: vec![4, 10] }]
        );
        assert_eq!((report.delivered, report.distinct), (11, 10));
        assert!(report.reorders.is_empty() && report.forks.is_empty() && report.gaps.is_empty());
        assert!(!report.ok());
    }

    #[test]
    fn two_receipts_with_one_seq_are_a_fork() {
        let (chain, mut r) = chain_a();
        let mut other = Chain::resume(ENCLAVE_A, chain.seq(), chain.head());
        let mut again = Chain::resume(ENCLAVE_A, chain.seq(), chain.head());
        r.push(other.append(T0 + 50, &kill_switch(true)).unwrap().bytes);
        r.push(again.append(T0 + 50, &kill_switch(false)).unwrap().bytes);
        let head = again.head();
        let cps = [cp(&key_a(), ENCLAVE_A, ENCLAVE_A, 6, head)];
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            report.forks,
            vec![Fork {
                decider: ENCLAVE_A,
                seq: 6,
                reason: ForkReason::SameSeq,
                positions: vec![6, 7]
            }]
        );
        // The checkpoint names one branch: it vouches for it, not for the other.
        assert_eq!(statuses(&report), vec![CheckpointStatus::Matches]);
        assert_eq!(report.chains[0].vouched, vec![range(0, 6)]);
        assert!(!report.ok());
    }

    #[test]
    fn forged_checkpoints_are_refused() {
        let (r, _) = setup();
        let head = hash(&r, 9);
        let cps = [
            // Another key claiming to be B.
            cp(&key_other(), ENCLAVE_B, ENCLAVE_B, 9, head),
            // A signer nobody vouched for.
            cp(&key_other(), ENCLAVE_B, ENCLAVE_C, 9, head),
            // B's own key over another head.
            cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 9, [0xee; 32]),
            // B's own key, beyond what was delivered: receipts were withheld.
            cp(&key_b(), ENCLAVE_B, ENCLAVE_B, 12, [0xee; 32]),
        ];
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            statuses(&report),
            vec![
                CheckpointStatus::BadSignature,
                CheckpointStatus::UnknownSigner,
                CheckpointStatus::HeadMismatch,
                CheckpointStatus::BeyondDelivered,
            ]
        );
        assert!(report.chains.iter().all(|c| c.vouched.is_empty()), "nothing vouched by them");
        assert!(!report.ok());
        let text = report.to_string();
        assert!(text.contains("not trusted"), "{text}");
        assert!(text.contains("receipts were withheld"), "{text}");
    }

    #[test]
    fn a_trimmed_tail_is_caught_by_a_later_checkpoint() {
        let (r, cps) = setup();
        let report = verify(&r[..8], &cps, &keys());
        assert_eq!(
            statuses(&report),
            vec![CheckpointStatus::Matches, CheckpointStatus::BeyondDelivered]
        );
        assert!(!report.ok());
    }

    #[test]
    fn a_restart_is_a_new_chain_that_names_no_predecessor() {
        let (_, mut r) = chain_a();
        let (mut c, start) = Chain::start(ENCLAVE_C, T0 + 1000).unwrap();
        r.push(start.bytes);
        r.push(c.append(T0 + 1001, &vault_created()).unwrap().bytes);
        let key_c = CheckpointKey::from_bytes(&[0x5c; 32]);
        let cps = [
            cp(&key_a(), ENCLAVE_A, ENCLAVE_A, 5, hash(&r, 5)),
            cp(&key_c, ENCLAVE_C, ENCLAVE_C, 1, c.head()),
        ];
        let mut keys = keys();
        keys.push((ENCLAVE_C, key_c.public()));
        let report = verify(&r, &cps, &keys);
        assert!(report.ok(), "{report}");
        assert_eq!(report.chains.len(), 2);
        assert_eq!(report.chains[1].start, ChainStartKind::ChainStart);
        assert_eq!(report.chains[1].vouched, vec![range(0, 1)]);
        assert!(report.handovers.is_empty());
    }

    #[test]
    fn a_decider_that_keeps_deciding_after_handing_over_forks() {
        let (mut a, _, mut r) = chain_handover();
        // A forged continuation of A's own chain after its handover-out.
        r.push(a.append(T0 + 20, &signed()).unwrap().bytes);
        let (_, cps) = setup();
        let report = verify(&r, &cps, &keys());
        assert_eq!(
            report.forks,
            vec![Fork {
                decider: ENCLAVE_A,
                seq: 7,
                reason: ForkReason::AfterHandoverOut,
                positions: vec![10]
            }]
        );
        assert!(!report.ok());
    }

    #[test]
    fn handover_links_that_do_not_hold_are_reported() {
        let (a, mut r) = chain_a();
        let mut a = a;
        r.push(a.append(T0 + 10, &Body::HandoverOut { successor: ENCLAVE_B }).unwrap().bytes);
        // B names a head A never had.
        let (_, wrong_head) =
            Chain::handover_in(ENCLAVE_B, T0 + 11, ENCLAVE_A, 6, [0x99; 32]).unwrap();
        let report = verify(&[r.clone(), vec![wrong_head.bytes]].concat(), &[], &keys());
        let statuses: Vec<_> = report.handovers.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![HandoverStatus::HeadMismatch]);
        // B names A's receipt 5, which is not a handover-out.
        let (_, not_out) =
            Chain::handover_in(ENCLAVE_B, T0 + 11, ENCLAVE_A, 5, hash(&r, 5)).unwrap();
        let report = verify(&[r.clone(), vec![not_out.bytes]].concat(), &[], &keys());
        let statuses: Vec<_> = report.handovers.iter().map(|h| h.status).collect();
        assert_eq!(
            statuses,
            vec![HandoverStatus::SuccessorNotDelivered, HandoverStatus::NotHandedOut]
        );
        assert!(!report.ok());
    }

    #[test]
    fn partial_deliveries_say_what_was_not_delivered() {
        let (r, cps) = setup();
        // B's receipts alone: the predecessor's were not delivered.
        let report = verify(&r[7..], &cps, &keys());
        assert_eq!(report.handovers[0].status, HandoverStatus::PredecessorNotDelivered);
        assert_eq!(
            statuses(&report),
            vec![CheckpointStatus::NoReceipts, CheckpointStatus::Matches]
        );
        assert!(report.ok(), "{report}");
        // A's receipts 4..=6 (as `?after=3` would return them) and A's checkpoint at 3.
        let report = verify(&r[4..7], &cps, &keys());
        assert_eq!(report.chains[0].start, ChainStartKind::Continues);
        assert_eq!(report.handovers[0].status, HandoverStatus::SuccessorNotDelivered);
        assert_eq!(
            statuses(&report),
            vec![CheckpointStatus::BeforeDelivered, CheckpointStatus::NoReceipts]
        );
        assert!(!report.ok(), "nothing vouches for 4..=6");
        assert!(report.to_string().contains("earlier receipts not delivered"));
        // A checkpoint that falls in a gap proves nothing by itself.
        let sparse = [r[0].clone(), r[1].clone(), r[5].clone(), r[6].clone()];
        let report = verify(&sparse, &cps, &keys());
        assert_eq!(report.checkpoints[0].status, CheckpointStatus::InGap);
        assert_eq!(report.gaps, vec![Gap { decider: ENCLAVE_A, after: 1, next: 5 }]);
    }

    #[test]
    fn undecodable_receipts_are_reported_by_position() {
        let (mut r, cps) = setup();
        r.insert(2, vec![1, 99, 3]);
        let report = verify(&r, &cps, &keys());
        assert_eq!(report.undecodable.len(), 1);
        assert_eq!((report.undecodable[0].index, report.undecodable[0].code), (2, "unknown_kind"));
        assert!(!report.ok());
        assert_eq!(report.distinct, 10);
    }

    #[test]
    fn the_report_serializes_for_json_output() {
        let (r, cps) = setup();
        let json = serde_json::to_value(verify(&r, &cps, &keys())).unwrap();
        assert_eq!(json["handovers"][0]["status"], "linked");
        assert_eq!(json["checkpoints"][0]["status"], "matches");
        assert_eq!(json["chains"][0]["start"], "chain_start");
        assert_eq!(json["chains"][1]["predecessor"], uuid_text(&ENCLAVE_A));
        assert_eq!(json["chains"][0]["predecessor"], serde_json::Value::Null);
        assert_eq!(json["chains"][0]["vouched"], serde_json::json!([{"first": 0, "last": 6}]));
    }

    #[test]
    fn nothing_delivered_is_ok() {
        let report = verify::<Vec<u8>>(&[], &[], &[]);
        assert!(report.ok());
        assert_eq!(report, Report::default());
    }
}
