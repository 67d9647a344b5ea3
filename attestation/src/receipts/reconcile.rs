//! Reconciliation: every `signed` receipt against the policy of its grant (from the grant's
//! `grant_created` receipt), per transaction and per spend key and UTC day, as the enclave's
//! policy engine counts (`enclave/core/src/policy.rs`):
//!
//! - per transaction: `lamports + fee_lamports ≤ max_lamports_per_tx` (the fee the agent pays
//!   counts, as the authorization message says; the receipt records that fee, 0 when the agent
//!   does not pay it), `fee_lamports ≤ max_fee_lamports`, each token's amount ≤ its mint's
//!   `max_per_tx` (0 for a mint the policy does not list), `notional_cents ≤
//!   max_notional_cents_per_tx`; the receipt's bot and agent are the grant's.
//! - per spend key (the grant's wallet, the bot, the agent) and UTC day (`after.day`): the running
//!   sums of the delivered receipts' `lamports + fee_lamports`, `notional_cents` and each token
//!   stay within `max_lamports_per_day`, `max_notional_cents_per_day` and the mint's
//!   `max_per_day`; so does the receipt's own `after` counter, which also counts receipts not
//!   delivered; and at most `max_tx_per_minute` signatures of the spend key in any 60 s.
//! - the `after` counters: where every receipt of the chain since its start is delivered, they
//!   must equal the totals recomputed from the charges (a later UTC day starts from zero; an
//!   earlier one — a clock that stepped back — is charged to the day already counted). After a
//!   gap, a spend key's first counter is only checked to include its own charge, and from there
//!   on each step must add up.
//!
//! Counters belong to a chain: a handover carries them to the successor; a chain that names no
//! predecessor (a restart) starts with none, like the enclave.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use signer_receipts::{Body, Charge, Counters, Receipt, Signed};
use signer_types::Pubkey;
use signer_types::policy::{Policy, Rule};

use super::ser;

const SECONDS_PER_DAY: u64 = 86_400;
const VELOCITY_WINDOW: u64 = 60;

/// A `grant_created` receipt and how many signatures were reconciled with its policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantSummary {
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    pub wallet: Pubkey,
    #[serde(serialize_with = "ser::id")]
    pub bot_id: [u8; 16],
    pub agent: Pubkey,
    pub expires_at: u64,
    /// The decoded policy (keys base58), or null with `policy_error`.
    pub policy: Option<Policy>,
    pub policy_error: Option<String>,
    /// `signed` receipts that name this grant.
    pub signatures: usize,
}

/// Why signatures were not reconciled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreconciledReason {
    /// The grant's `grant_created` receipt is not in the input (created before the first
    /// delivered receipt, evicted, or the id is a scheduled record's): incomplete, not wrong.
    NoGrantReceipt,
    /// The grant's policy does not decode: a problem.
    PolicyInvalid,
}

/// Signatures of one grant that could not be checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreconciled {
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    pub reason: UnreconciledReason,
    pub signatures: usize,
    /// The seqs of those `signed` receipts.
    pub seqs: Vec<u64>,
}

/// What a violation's actual value was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The receipt's own charge.
    Transaction,
    /// The running total of the delivered receipts.
    Receipts,
    /// The receipt's `after` counter (which counts receipts not delivered too).
    RecordedCounter,
    /// The grant's own fields.
    Grant,
}

/// A signature its grant's policy does not allow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    /// The policy rule (`max_lamports_per_tx`, `token_max_per_day`, … as the API names them), or
    /// `grant_mismatch`.
    pub rule: String,
    pub limit: Option<u64>,
    pub actual: Option<u64>,
    /// The mint for token rules; `bot_id` or `agent` for `grant_mismatch`.
    pub subject: Option<String>,
    /// The UTC day of a daily rule.
    pub day: Option<u64>,
    pub basis: Basis,
    pub message: String,
}

/// How a recorded counter compares with what was recomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The counter must equal the recomputed total.
    Equal,
    /// Earlier receipts are missing: the counter must be at least the recomputed value.
    AtLeast,
}

/// A receipt's `after` counter that does not add up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterMismatch {
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    pub seq: u64,
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    /// `day`, `lamports`, `notional_cents` or `tokens[<mint>]`.
    pub field: String,
    pub relation: Relation,
    pub recomputed: u64,
    pub recorded: u64,
}

/// What reconciliation found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub grants: Vec<GrantSummary>,
    /// `signed` receipts.
    pub signatures: usize,
    /// Of those, checked against their grant's policy.
    pub reconciled: usize,
    /// Of those, whose `after` counters were compared with exact recomputed totals.
    pub counters_checked: usize,
    pub unreconciled: Vec<Unreconciled>,
    pub violations: Vec<Violation>,
    pub counter_mismatches: Vec<CounterMismatch>,
}

impl Reconciliation {
    /// Signatures left unreconciled for `reason`.
    pub fn unreconciled_signatures(&self, reason: UnreconciledReason) -> usize {
        self.unreconciled.iter().filter(|u| u.reason == reason).map(|u| u.signatures).sum()
    }
}

/// Whose counters: the chain (its first decider, through handovers) and the spend key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    lineage: [u8; 16],
    wallet: Pubkey,
    bot_id: [u8; 16],
    agent: Pubkey,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Totals {
    lamports: u64,
    notional_cents: u64,
    tokens: Vec<(Pubkey, u64)>,
}

impl Totals {
    fn add(&mut self, charge: &Charge) {
        self.lamports = self.lamports.saturating_add(daily_lamports(charge));
        self.notional_cents = self.notional_cents.saturating_add(charge.notional_cents);
        for t in &charge.tokens {
            match self.tokens.iter_mut().find(|(m, _)| *m == t.mint) {
                Some((_, v)) => *v = v.saturating_add(t.amount),
                None => self.tokens.push((t.mint, t.amount)),
            }
        }
    }

    fn token(&self, mint: &Pubkey) -> u64 {
        self.tokens.iter().find(|(m, _)| m == mint).map_or(0, |(_, v)| *v)
    }
}

/// SOL the daily limit counts: transfers plus the fee the agent pays (the receipt's
/// `fee_lamports` is 0 when the agent does not pay).
fn daily_lamports(charge: &Charge) -> u64 {
    charge.lamports.saturating_add(charge.fee_lamports)
}

fn recorded_token(after: &Counters, mint: &Pubkey) -> Option<u64> {
    after.tokens.iter().find(|t| t.mint == *mint).map(|t| t.amount)
}

/// Disjoint sets of deciders joined by handovers.
#[derive(Default)]
struct Lineages {
    parent: HashMap<[u8; 16], [u8; 16]>,
}

impl Lineages {
    fn find(&self, mut id: [u8; 16]) -> [u8; 16] {
        // Roots are linked to roots only, so this ends; the bound is a belt and braces.
        for _ in 0..=self.parent.len() {
            match self.parent.get(&id) {
                Some(p) if *p != id => id = *p,
                _ => break,
            }
        }
        id
    }

    fn union(&mut self, a: [u8; 16], b: [u8; 16]) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }
}

struct Ctx<'a> {
    receipt: &'a Receipt,
    signed: &'a Signed,
    out: &'a mut Vec<Violation>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn violation(
        &mut self,
        rule: &str,
        limit: Option<u64>,
        actual: Option<u64>,
        subject: Option<String>,
        day: Option<u64>,
        basis: Basis,
        message: String,
    ) {
        self.out.push(Violation {
            decider: self.receipt.decider,
            seq: self.receipt.seq,
            grant_id: self.signed.grant_id,
            rule: rule.to_string(),
            limit,
            actual,
            subject,
            day,
            basis,
            message,
        });
    }

    fn per_tx(&mut self, rule: Rule, limit: u64, actual: u64, subject: Option<String>) {
        if actual > limit {
            let of = subject.as_deref().map(|s| format!(" of {s}")).unwrap_or_default();
            self.violation(
                rule.as_str(),
                Some(limit),
                Some(actual),
                subject,
                None,
                Basis::Transaction,
                format!(
                    "{actual}{of} in one transaction exceeds the per-transaction limit {limit}"
                ),
            );
        }
    }

    /// A daily limit: the running total of the delivered receipts, then the recorded counter.
    fn per_day(
        &mut self,
        rule: Rule,
        limit: u64,
        running: u64,
        recorded: Option<u64>,
        subject: Option<String>,
    ) {
        let day = self.signed.after.day;
        let of = subject.as_deref().map(|s| format!(" of {s}")).unwrap_or_default();
        let (actual, basis, what) = if running > limit {
            (running, Basis::Receipts, "the delivered receipts add up to")
        } else {
            match recorded {
                Some(r) if r > limit => (r, Basis::RecordedCounter, "the receipt's counter says"),
                _ => return,
            }
        };
        self.violation(
            rule.as_str(),
            Some(limit),
            Some(actual),
            subject,
            Some(day),
            basis,
            format!("on UTC day {day} {what} {actual}{of}, over the daily limit {limit}"),
        );
    }
}

/// Reconciles `receipts` (distinct, decoded, in delivery order) with their grants' policies
/// (module docs).
pub fn reconcile(receipts: &[Receipt]) -> Reconciliation {
    let mut out = Reconciliation::default();

    // Grants, and their policies decoded as the enclave decodes a grant's (CBOR, then validated).
    let mut grant_index: HashMap<[u8; 16], usize> = HashMap::new();
    for r in receipts {
        if let Body::GrantCreated(g) = &r.body {
            if grant_index.contains_key(&g.grant_id) {
                continue;
            }
            let (policy, policy_error) = match decode_policy(&g.policy) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e)),
            };
            grant_index.insert(g.grant_id, out.grants.len());
            out.grants.push(GrantSummary {
                grant_id: g.grant_id,
                decider: r.decider,
                seq: r.seq,
                wallet: g.wallet,
                bot_id: g.bot_id,
                agent: g.agent,
                expires_at: g.expires_at,
                policy,
                policy_error,
                signatures: 0,
            });
        }
    }

    // Chains, through handovers.
    let mut lineages = Lineages::default();
    for r in receipts {
        if let Body::HandoverIn { predecessor, .. } = r.body {
            lineages.union(r.decider, predecessor);
        }
    }
    let mut lineage_order: HashMap<[u8; 16], usize> = HashMap::new();
    for r in receipts {
        let next = lineage_order.len();
        lineage_order.entry(lineages.find(r.decider)).or_insert(next);
    }
    let mut order: Vec<usize> = (0..receipts.len()).collect();
    order.sort_by_key(|&i| {
        receipts.get(i).map_or((usize::MAX, 0, i), |r| {
            let lineage = lineage_order.get(&lineages.find(r.decider)).copied();
            (lineage.unwrap_or(usize::MAX), r.seq, i)
        })
    });

    let mut counters: HashMap<Key, (u64, Totals)> = HashMap::new();
    let mut day_totals: HashMap<(Key, u64), Totals> = HashMap::new();
    let mut recent: HashMap<Key, VecDeque<u64>> = HashMap::new();
    let mut unreconciled: Vec<Unreconciled> = Vec::new();
    let mut current: Option<[u8; 16]> = None;
    let mut last_seq: Option<u64> = None;
    // Every receipt of the current chain since its start was delivered.
    let mut complete = false;

    for r in order.iter().filter_map(|&i| receipts.get(i)) {
        let lineage = lineages.find(r.decider);
        if current != Some(lineage) {
            current = Some(lineage);
            last_seq = None;
            complete = matches!(r.body, Body::ChainStart);
        }
        if let Some(p) = last_seq
            && p.checked_add(1).is_some_and(|next| r.seq > next)
        {
            // Receipts are missing: any counter of this chain may have moved.
            complete = false;
            counters.retain(|k, _| k.lineage != lineage);
        }
        last_seq = Some(r.seq);
        let Body::Signed(s) = &r.body else { continue };
        out.signatures += 1;

        let Some(grant) = grant_index.get(&s.grant_id).and_then(|&g| out.grants.get_mut(g)) else {
            note_unreconciled(
                &mut unreconciled,
                s.grant_id,
                UnreconciledReason::NoGrantReceipt,
                r.seq,
            );
            forget(&mut counters, lineage, s);
            continue;
        };
        grant.signatures += 1;
        let grant: &GrantSummary = grant;
        let Some(policy) = &grant.policy else {
            note_unreconciled(
                &mut unreconciled,
                s.grant_id,
                UnreconciledReason::PolicyInvalid,
                r.seq,
            );
            forget(&mut counters, lineage, s);
            continue;
        };
        out.reconciled += 1;
        let mut ctx = Ctx { receipt: r, signed: s, out: &mut out.violations };

        // The grant names the bot and agent it may sign for.
        if s.bot_id != grant.bot_id {
            ctx.violation(
                "grant_mismatch",
                None,
                None,
                Some("bot_id".into()),
                None,
                Basis::Grant,
                format!(
                    "signed for bot {} under a grant for bot {}",
                    signer_types::uuid_text(&s.bot_id),
                    signer_types::uuid_text(&grant.bot_id)
                ),
            );
        }
        if s.agent != grant.agent {
            ctx.violation(
                "grant_mismatch",
                None,
                None,
                Some("agent".into()),
                None,
                Basis::Grant,
                format!("signed by agent {} under a grant for agent {}", s.agent, grant.agent),
            );
        }

        // Per transaction.
        let c = &s.charged;
        ctx.per_tx(Rule::MaxLamportsPerTx, policy.max_lamports_per_tx, daily_lamports(c), None);
        ctx.per_tx(Rule::MaxFeeLamports, policy.max_fee_lamports, c.fee_lamports, None);
        for t in &c.tokens {
            let limit = policy.token(&t.mint).map_or(0, |l| l.max_per_tx);
            ctx.per_tx(Rule::TokenMaxPerTx, limit, t.amount, Some(t.mint.to_string()));
        }
        ctx.per_tx(
            Rule::MaxNotionalCentsPerTx,
            policy.max_notional_cents_per_tx,
            c.notional_cents,
            None,
        );

        // Per spend key and day.
        let key = Key { lineage, wallet: grant.wallet, bot_id: s.bot_id, agent: s.agent };
        let totals = day_totals.entry((key, s.after.day)).or_default();
        totals.add(c);
        let totals = totals.clone();
        ctx.per_day(
            Rule::MaxLamportsPerDay,
            policy.max_lamports_per_day,
            totals.lamports,
            Some(s.after.lamports),
            None,
        );
        for t in &c.tokens {
            let limit = policy.token(&t.mint).map_or(0, |l| l.max_per_day);
            ctx.per_day(
                Rule::TokenMaxPerDay,
                limit,
                totals.token(&t.mint),
                recorded_token(&s.after, &t.mint),
                Some(t.mint.to_string()),
            );
        }
        ctx.per_day(
            Rule::MaxNotionalCentsPerDay,
            policy.max_notional_cents_per_day,
            totals.notional_cents,
            Some(s.after.notional_cents),
            None,
        );

        // Velocity, as the enclave counts it: earlier signatures less than 60 s before this one.
        let window = recent.entry(key).or_default();
        if let Some(limit) = policy.max_tx_per_minute {
            let before =
                window.iter().filter(|t| t.saturating_add(VELOCITY_WINDOW) > r.time).count();
            let actual = before as u64 + 1;
            if actual > u64::from(limit) {
                ctx.violation(
                    Rule::MaxTxPerMinute.as_str(),
                    Some(u64::from(limit)),
                    Some(actual),
                    None,
                    None,
                    Basis::Receipts,
                    format!("{actual} signatures of this bot and agent within 60 s, over the limit {limit}"),
                );
            }
        }
        while window.front().is_some_and(|t| t.saturating_add(VELOCITY_WINDOW) <= r.time) {
            window.pop_front();
        }
        window.push_back(r.time);

        // The recorded counters.
        let today = r.time / SECONDS_PER_DAY;
        let known = match counters.get(&key) {
            Some(state) => Some(state.clone()),
            None if complete => Some((0, Totals::default())),
            None => None,
        };
        let mismatches = &mut out.counter_mismatches;
        let mut mismatch = |field: String, relation, recomputed: u64, recorded: u64| {
            mismatches.push(CounterMismatch {
                decider: r.decider,
                seq: r.seq,
                grant_id: s.grant_id,
                field,
                relation,
                recomputed,
                recorded,
            });
        };
        let a = &s.after;
        match known {
            Some((mut day, mut state)) => {
                out.counters_checked += 1;
                if today > day {
                    day = today;
                    state = Totals::default();
                }
                state.add(c);
                if a.day != day {
                    mismatch("day".into(), Relation::Equal, day, a.day);
                }
                if a.lamports != state.lamports {
                    mismatch("lamports".into(), Relation::Equal, state.lamports, a.lamports);
                }
                if a.notional_cents != state.notional_cents {
                    mismatch(
                        "notional_cents".into(),
                        Relation::Equal,
                        state.notional_cents,
                        a.notional_cents,
                    );
                }
                // The counters a receipt records are those of the mints it moves (and any it
                // lists): every one must match.
                let mut mints: Vec<Pubkey> = c.tokens.iter().map(|t| t.mint).collect();
                mints.extend(a.tokens.iter().map(|t| t.mint));
                mints.sort();
                mints.dedup();
                for mint in mints {
                    let recorded = recorded_token(a, &mint).unwrap_or(0);
                    if recorded != state.token(&mint) {
                        mismatch(
                            format!("tokens[{mint}]"),
                            Relation::Equal,
                            state.token(&mint),
                            recorded,
                        );
                    }
                }
            }
            None => {
                // Only a lower bound: the counter includes this charge, on today or later.
                if a.day < today {
                    mismatch("day".into(), Relation::AtLeast, today, a.day);
                }
                if a.lamports < daily_lamports(c) {
                    mismatch("lamports".into(), Relation::AtLeast, daily_lamports(c), a.lamports);
                }
                if a.notional_cents < c.notional_cents {
                    mismatch(
                        "notional_cents".into(),
                        Relation::AtLeast,
                        c.notional_cents,
                        a.notional_cents,
                    );
                }
                for t in &c.tokens {
                    let recorded = recorded_token(a, &t.mint).unwrap_or(0);
                    if recorded < t.amount {
                        mismatch(
                            format!("tokens[{}]", t.mint),
                            Relation::AtLeast,
                            t.amount,
                            recorded,
                        );
                    }
                }
            }
        }
        // Go on from what the enclave recorded, so that one wrong step is reported once.
        let recorded = Totals {
            lamports: a.lamports,
            notional_cents: a.notional_cents,
            tokens: a.tokens.iter().map(|t| (t.mint, t.amount)).collect(),
        };
        counters.insert(key, (a.day, recorded));
    }
    out.unreconciled = unreconciled;
    out
}

/// A signature that could not be reconciled may have charged any counter of its bot and agent
/// (its wallet is unknown): those counters are known no more.
fn forget(counters: &mut HashMap<Key, (u64, Totals)>, lineage: [u8; 16], s: &Signed) {
    counters.retain(|k, _| !(k.lineage == lineage && k.bot_id == s.bot_id && k.agent == s.agent));
}

fn note_unreconciled(
    list: &mut Vec<Unreconciled>,
    grant_id: [u8; 16],
    reason: UnreconciledReason,
    seq: u64,
) {
    match list.iter_mut().find(|u| u.grant_id == grant_id) {
        Some(u) => {
            u.signatures += 1;
            u.seqs.push(seq);
        }
        None => list.push(Unreconciled { grant_id, reason, signatures: 1, seqs: vec![seq] }),
    }
}

/// A grant receipt's policy: CBOR of [`Policy`] (the shape inside the sealed grant), decoded and
/// validated as the enclave decodes a grant's contents; nothing may follow it.
pub fn decode_policy(bytes: &[u8]) -> Result<Policy, String> {
    let mut rest = bytes;
    let policy: Policy =
        ciborium::from_reader(&mut rest).map_err(|e| format!("not a policy: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the policy", rest.len()));
    }
    policy.validate()?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use signer_receipts::{Chain, GrantCreated, TokenAmount};
    use signer_types::policy::TokenLimit;

    const T0: u64 = 1_735_689_600;
    const A: [u8; 16] = [0xa1; 16];
    const B: [u8; 16] = [0xb2; 16];
    const GRANT: [u8; 16] = [0x0a; 16];
    const BOT: [u8; 16] = [0x0b; 16];
    const WALLET: Pubkey = Pubkey([0x11; 32]);
    const AGENT: Pubkey = Pubkey([0x22; 32]);
    const USDC: Pubkey = Pubkey([0x33; 32]);

    fn policy() -> Policy {
        Policy {
            max_lamports_per_tx: 1_000,
            max_lamports_per_day: 2_500,
            max_fee_lamports: 100,
            tokens: vec![TokenLimit { mint: USDC, max_per_tx: 50, max_per_day: 80 }],
            allowed_programs: vec![],
            max_notional_cents_per_tx: 0,
            max_notional_cents_per_day: 0,
            destinations: None,
            max_tx_per_minute: Some(3),
        }
    }

    fn grant(p: &Policy) -> Body {
        let mut cbor = Vec::new();
        ciborium::into_writer(p, &mut cbor).unwrap();
        Body::GrantCreated(GrantCreated {
            grant_id: GRANT,
            wallet: WALLET,
            bot_id: BOT,
            agent: AGENT,
            message_sha256: [0; 32],
            expires_at: T0 + 86_400 * 7,
            policy: cbor,
        })
    }

    /// Appends signatures with their honest counters.
    struct Signer {
        day: u64,
        totals: Totals,
        n: u8,
    }

    impl Signer {
        fn new() -> Self {
            Self { day: 0, totals: Totals::default(), n: 0 }
        }

        fn sign(
            &mut self,
            chain: &mut Chain,
            time: u64,
            lamports: u64,
            fee: u64,
            usdc: u64,
        ) -> Receipt {
            let today = time / SECONDS_PER_DAY;
            if today > self.day {
                self.day = today;
                self.totals = Totals::default();
            }
            let tokens =
                if usdc > 0 { vec![TokenAmount { mint: USDC, amount: usdc }] } else { vec![] };
            let charged = Charge { lamports, fee_lamports: fee, notional_cents: 0, tokens };
            self.totals.add(&charged);
            self.n += 1;
            let body = Body::Signed(Signed {
                request_id: [self.n; 16],
                grant_id: GRANT,
                bot_id: BOT,
                agent: AGENT,
                message_sha256: [self.n; 32],
                charged,
                after: Counters {
                    day: self.day,
                    lamports: self.totals.lamports,
                    notional_cents: self.totals.notional_cents,
                    tokens: self
                        .totals
                        .tokens
                        .iter()
                        .map(|(mint, amount)| TokenAmount { mint: *mint, amount: *amount })
                        .collect(),
                },
            });
            Receipt::decode(&chain.append(time, &body).unwrap().bytes).unwrap()
        }
    }

    fn start(decider: [u8; 16]) -> (Chain, Vec<Receipt>) {
        let (chain, first) = Chain::start(decider, T0).unwrap();
        (chain, vec![Receipt::decode(&first.bytes).unwrap()])
    }

    fn append(chain: &mut Chain, time: u64, body: &Body) -> Receipt {
        Receipt::decode(&chain.append(time, body).unwrap().bytes).unwrap()
    }

    fn rules(r: &Reconciliation) -> Vec<(&str, u64)> {
        r.violations.iter().map(|v| (v.rule.as_str(), v.seq)).collect()
    }

    #[test]
    fn an_honest_history_reconciles_across_days_and_a_handover() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        receipts.push(s.sign(&mut a, T0 + 10, 900, 100, 50));
        receipts.push(s.sign(&mut a, T0 + 100, 900, 0, 30));
        receipts.push(append(&mut a, T0 + 101, &Body::HandoverOut { successor: B }));
        let (mut b, first) = Chain::handover_in(B, T0 + 102, A, a.seq(), a.head()).unwrap();
        receipts.push(Receipt::decode(&first.bytes).unwrap());
        receipts.push(s.sign(&mut b, T0 + 200, 500, 0, 0));
        // The next UTC day starts from zero.
        receipts.push(s.sign(&mut b, T0 + 86_400, 1_000, 0, 50));
        let r = reconcile(&receipts);
        assert_eq!(r.violations, vec![]);
        assert_eq!(r.counter_mismatches, vec![]);
        assert_eq!((r.signatures, r.reconciled, r.counters_checked), (4, 4, 4));
        assert_eq!(r.grants[0].signatures, 4);
        assert_eq!(r.grants[0].policy, Some(policy()));
    }

    #[test]
    fn limits_per_transaction_and_per_day_are_enforced() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        receipts.push(s.sign(&mut a, T0 + 10, 950, 100, 0)); // 1050 > 1000 per tx
        receipts.push(s.sign(&mut a, T0 + 20, 0, 150, 60)); // fee 150 > 100, usdc 60 > 50
        receipts.push(s.sign(&mut a, T0 + 100, 1_000, 0, 40)); // day: 2200, usdc 100 > 80
        receipts.push(s.sign(&mut a, T0 + 200, 400, 0, 0)); // day: 2600 > 2500
        let r = reconcile(&receipts);
        assert_eq!(
            rules(&r),
            vec![
                ("max_lamports_per_tx", 2),
                ("max_fee_lamports", 3),
                ("token_max_per_tx", 3),
                ("token_max_per_day", 4),
                ("max_lamports_per_day", 5),
            ]
        );
        let day = &r.violations[4];
        assert_eq!((day.limit, day.actual, day.basis), (Some(2_500), Some(2_600), Basis::Receipts));
        assert_eq!(day.day, Some(T0 / SECONDS_PER_DAY));
        assert_eq!(r.violations[2].subject, Some(USDC.to_string()));
        assert_eq!(r.counter_mismatches, vec![], "the counters themselves add up");
    }

    #[test]
    fn the_velocity_limit_counts_signatures_within_60_seconds() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        for t in [10, 20, 30, 69, 70] {
            receipts.push(s.sign(&mut a, T0 + t, 1, 0, 0));
        }
        let r = reconcile(&receipts);
        // At 69: 10, 20, 30 are within 60 s (4 > 3); at 70: 20, 30, 69 (10 is 60 s before).
        assert_eq!(rules(&r), vec![("max_tx_per_minute", 5), ("max_tx_per_minute", 6)]);
        assert_eq!((r.violations[0].limit, r.violations[0].actual), (Some(3), Some(4)));
    }

    #[test]
    fn counters_that_do_not_add_up_are_reported_once() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        receipts.push(s.sign(&mut a, T0 + 10, 100, 0, 0));
        s.totals.lamports += 7; // the enclave would never: its counter is off by 7 from here
        receipts.push(s.sign(&mut a, T0 + 20, 100, 0, 0));
        receipts.push(s.sign(&mut a, T0 + 30, 100, 0, 0));
        let r = reconcile(&receipts);
        assert_eq!(
            r.counter_mismatches,
            vec![CounterMismatch {
                decider: A,
                seq: 3,
                grant_id: GRANT,
                field: "lamports".into(),
                relation: Relation::Equal,
                recomputed: 200,
                recorded: 207,
            }]
        );
    }

    #[test]
    fn after_a_gap_counters_are_bounds_and_a_missing_grant_is_not_reconciled() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        receipts.push(s.sign(&mut a, T0 + 10, 100, 0, 0));
        let dropped = s.sign(&mut a, T0 + 20, 100, 0, 0);
        receipts.push(s.sign(&mut a, T0 + 30, 100, 0, 0));
        receipts.push(s.sign(&mut a, T0 + 40, 100, 0, 0));
        assert_eq!(dropped.seq, 3);
        let r = reconcile(&receipts);
        assert_eq!(r.counter_mismatches, vec![], "{:?}", r.counter_mismatches);
        assert_eq!((r.signatures, r.counters_checked), (3, 2));

        // Without the grant: nothing reconciled, nothing wrong.
        receipts.remove(1);
        let r = reconcile(&receipts);
        assert_eq!((r.signatures, r.reconciled), (3, 0));
        assert_eq!(
            r.unreconciled,
            vec![Unreconciled {
                grant_id: GRANT,
                reason: UnreconciledReason::NoGrantReceipt,
                signatures: 3,
                seqs: vec![2, 4, 5],
            }]
        );
        assert!(r.violations.is_empty());
    }

    #[test]
    fn a_recorded_counter_over_the_limit_is_a_violation_even_if_earlier_receipts_are_missing() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        s.day = T0 / SECONDS_PER_DAY;
        s.totals.lamports = 2_400; // spent today by receipts not delivered
        let mut late = Chain::resume(A, a.seq() + 5, [9; 32]);
        receipts.push(s.sign(&mut late, T0 + 30, 200, 0, 0));
        let r = reconcile(&receipts);
        assert_eq!(rules(&r), vec![("max_lamports_per_day", 7)]);
        assert_eq!(r.violations[0].basis, Basis::RecordedCounter);
        assert_eq!(r.violations[0].actual, Some(2_600));
    }

    #[test]
    fn a_grant_for_another_bot_or_agent_and_a_bad_policy_are_reported() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        let mut r = s.sign(&mut a, T0 + 10, 1, 0, 0);
        let Body::Signed(signed) = &mut r.body else { unreachable!() };
        signed.agent = Pubkey([0x99; 32]);
        receipts.push(r);
        let out = reconcile(&receipts);
        assert_eq!(out.violations[0].rule, "grant_mismatch");
        assert_eq!(out.violations[0].subject.as_deref(), Some("agent"));

        let Body::GrantCreated(g) = &mut receipts[1].body else { unreachable!() };
        g.policy = vec![0xa0];
        let out = reconcile(&receipts);
        assert!(out.grants[0].policy_error.is_some());
        assert_eq!(out.unreconciled[0].reason, UnreconciledReason::PolicyInvalid);
        assert!(decode_policy(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn a_restart_starts_with_fresh_counters() {
        let (mut a, mut receipts) = start(A);
        receipts.push(append(&mut a, T0 + 1, &grant(&policy())));
        let mut s = Signer::new();
        receipts.push(s.sign(&mut a, T0 + 10, 1_000, 0, 0));
        receipts.push(s.sign(&mut a, T0 + 100, 1_000, 0, 0));
        // B restarted after a crash (no predecessor): its counters start from zero.
        let (mut b, first) = Chain::start(B, T0 + 500).unwrap();
        receipts.push(Receipt::decode(&first.bytes).unwrap());
        let mut s = Signer::new();
        receipts.push(s.sign(&mut b, T0 + 600, 1_000, 0, 0));
        let out = reconcile(&receipts);
        assert_eq!(out.violations, vec![]);
        assert_eq!(out.counter_mismatches, vec![]);
    }
}
