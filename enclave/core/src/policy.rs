//! The user's limits (inside each grant) and their enforcement (SPEC §7). Default-deny.
//!
//! A transaction is signed only if every top-level instruction is one of:
//! - System `Transfer` (tag 2) or `CreateAccount` (tag 0): lamports count as SOL outflow;
//! - SPL Token / Token-2022 `TransferChecked` (tag 12) of a mint listed in the policy;
//! - ComputeBudget `SetComputeUnitLimit` (2) / `SetComputeUnitPrice` (3), each at most once;
//! - any instruction of a program in `allowed_programs`, only with a declared notional (USD cents).
//!
//! Destinations and mints must be static keys (not loaded from address lookup tables) and, when
//! the policy has `destinations`, listed there. Fee = `5000 × signatures + ceil(price × limit /
//! 1e6)`, where `limit` defaults to 200 000 per non-ComputeBudget instruction (at most 1 400 000),
//! as the runtime does.
//!
//! The agent's role is fixed: it is the source of every System `Transfer`, the funding account of
//! every `CreateAccount` and never the new account, and the (single-signer) authority of every
//! `TransferChecked`; in those instructions it stands in no other account position. A token source
//! account the agent does not own cannot move under the agent's signature unless the agent is its
//! delegate; either way the amount is charged to the agent's limits.
//!
//! Daily limits are per (wallet, bot, agent) and UTC day, and days only move forward (a request
//! timed before midnight but recorded after it never resets the new day); when the agent pays the
//! fee, the fee counts in the per-transaction and daily SOL outflow. Velocity counts signatures in
//! the last 60 s.
//! Every denial names its rule and the numbers.

use std::collections::{HashMap, VecDeque};

pub use signer_types::policy::*;

use crate::pubkey::{Pubkey, programs};
use crate::solana::{Instruction, Transaction};

/// Lamports per signature (the base fee).
pub const LAMPORTS_PER_SIGNATURE: u64 = 5000;
/// Default compute units per non-ComputeBudget instruction, and the transaction maximum.
pub const DEFAULT_UNITS_PER_INSTRUCTION: u64 = 200_000;
pub const MAX_COMPUTE_UNITS: u64 = 1_400_000;

const SECONDS_PER_DAY: u64 = 86_400;
const VELOCITY_WINDOW: u64 = 60;

/// What a transaction spends, once every instruction passed the static rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spend {
    pub lamports: u64,
    /// Per mint, aggregated over the transaction's instructions.
    pub tokens: Vec<(Pubkey, u64)>,
    pub fee_lamports: u64,
    /// The agent is the fee payer: its fee is SOL outflow for the daily limit.
    pub agent_pays_fee: bool,
    /// Declared notional charged (only when an allowed program is used).
    pub notional_cents: u64,
}

impl Spend {
    /// SOL leaving the agent today because of this transaction: transfers, plus the fee when the
    /// agent pays it.
    pub fn daily_lamports(&self) -> u64 {
        if self.agent_pays_fee {
            self.lamports.saturating_add(self.fee_lamports)
        } else {
            self.lamports
        }
    }
}

/// A recognised instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SolTransfer {
        from: Pubkey,
        to: Pubkey,
        lamports: u64,
    },
    CreateAccount {
        from: Pubkey,
        new_account: Pubkey,
        lamports: u64,
    },
    TokenTransfer {
        program: Pubkey,
        authority: Pubkey,
        mint: Pubkey,
        destination: Pubkey,
        amount: u64,
    },
    ComputeUnitLimit(u32),
    ComputeUnitPrice(u64),
    AllowedProgram(Pubkey),
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    data.get(at..at + 8)?.try_into().ok().map(u64::from_le_bytes)
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes)
}

fn static_account(
    tx: &Transaction<'_>,
    ix: &Instruction<'_>,
    index: usize,
    pos: usize,
    role: &str,
) -> Result<Pubkey, Denial> {
    match ix.accounts.get(pos) {
        None => Err(Denial::new(
            Rule::InstructionNotAllowed,
            format!("instruction {index}: missing the {role} account"),
        )
        .about(format!("instruction {index}"))),
        Some(_) => tx.instruction_static_account(ix, pos).map(|k| Pubkey(*k)).ok_or_else(|| {
            Denial::new(
                Rule::LookupTableAccount,
                format!("instruction {index}: the {role} comes from an address lookup table; it must be a static key"),
            )
            .about(format!("instruction {index}"))
        }),
    }
}

/// What [`classify`] may accept beyond the fixed rules.
#[derive(Clone, Copy)]
pub struct Allowances<'a> {
    /// Mints whose `TransferChecked` is recognised; `None` accepts any mint.
    pub mints: Option<&'a [TokenLimit]>,
    /// Programs accepted as [`Action::AllowedProgram`].
    pub programs: &'a [Pubkey],
}

impl<'a> Allowances<'a> {
    /// What a grant's policy allows.
    pub fn of(policy: &'a Policy) -> Self {
        Self { mints: Some(&policy.tokens), programs: &policy.allowed_programs }
    }
}

/// Classifies one instruction, or refuses it.
pub fn classify(
    tx: &Transaction<'_>,
    index: usize,
    ix: &Instruction<'_>,
    allow: Allowances<'_>,
) -> Result<Action, Denial> {
    let program = Pubkey(*tx.program_id(ix).ok_or_else(|| {
        Denial::new(Rule::ProgramNotAllowed, format!("instruction {index}: program id missing"))
    })?);
    let not_allowed = |what: &str| {
        Denial::new(
            Rule::InstructionNotAllowed,
            format!("instruction {index}: {what} is not allowed"),
        )
        .about(format!("instruction {index}"))
    };
    if program == programs::SYSTEM {
        let tag = le_u32(ix.data, 0);
        return match (tag, ix.data.len()) {
            (Some(2), 12) => Ok(Action::SolTransfer {
                from: static_account(tx, ix, index, 0, "source")?,
                to: static_account(tx, ix, index, 1, "destination")?,
                lamports: le_u64(ix.data, 4).unwrap_or(u64::MAX),
            }),
            (Some(0), 52) => Ok(Action::CreateAccount {
                from: static_account(tx, ix, index, 0, "funding")?,
                new_account: static_account(tx, ix, index, 1, "new account")?,
                lamports: le_u64(ix.data, 4).unwrap_or(u64::MAX),
            }),
            (Some(4), _) => Err(not_allowed("System AdvanceNonceAccount (durable nonce)")),
            (Some(1), _) => Err(not_allowed("System Assign")),
            (Some(t), _) => Err(not_allowed(&format!("System instruction {t}"))),
            (None, _) => Err(not_allowed("a System instruction without a tag")),
        };
    }
    if program == programs::TOKEN || program == programs::TOKEN_2022 {
        return match (ix.data.first(), ix.data.len()) {
            (Some(12), 10) => {
                let mint = static_account(tx, ix, index, 1, "mint")?;
                if allow.mints.is_some_and(|tokens| !tokens.iter().any(|t| t.mint == mint)) {
                    return Err(Denial::new(
                        Rule::TokenNotAllowed,
                        format!("instruction {index}: mint {mint} is not in the policy"),
                    )
                    .about(mint));
                }
                Ok(Action::TokenTransfer {
                    program,
                    authority: static_account(tx, ix, index, 3, "authority")?,
                    mint,
                    destination: static_account(tx, ix, index, 2, "destination")?,
                    amount: le_u64(ix.data, 1).unwrap_or(u64::MAX),
                })
            }
            (Some(3), _) => {
                Err(not_allowed("token Transfer without mint check (use TransferChecked)"))
            }
            (Some(4), _) => Err(not_allowed("token Approve")),
            (Some(6), _) => Err(not_allowed("token SetAuthority")),
            (Some(8), _) => Err(not_allowed("token Burn")),
            (Some(9), _) => Err(not_allowed("token CloseAccount")),
            (Some(t), _) => Err(not_allowed(&format!("token instruction {t}"))),
            (None, _) => Err(not_allowed("an empty token instruction")),
        };
    }
    if program == programs::COMPUTE_BUDGET {
        return match (ix.data.first(), ix.data.len()) {
            (Some(2), 5) => Ok(Action::ComputeUnitLimit(le_u32(ix.data, 1).unwrap_or(u32::MAX))),
            (Some(3), 9) => Ok(Action::ComputeUnitPrice(le_u64(ix.data, 1).unwrap_or(u64::MAX))),
            (Some(t), _) => Err(not_allowed(&format!("ComputeBudget instruction {t}"))),
            (None, _) => Err(not_allowed("an empty ComputeBudget instruction")),
        };
    }
    if allow.programs.contains(&program) {
        return Ok(Action::AllowedProgram(program));
    }
    Err(Denial::new(
        Rule::ProgramNotAllowed,
        format!("instruction {index}: program {program} is not allowed"),
    )
    .about(program))
}

/// The agent's fixed role in the instructions that move its funds (see the module docs).
fn check_agent_role(
    tx: &Transaction<'_>,
    index: usize,
    ix: &Instruction<'_>,
    action: &Action,
    agent: &Pubkey,
) -> Result<(), Denial> {
    let refuse = |what: String| {
        Denial::new(Rule::AgentRole, format!("instruction {index}: {what}"))
            .about(format!("instruction {index}"))
    };
    // The one account position where the agent stands in a System instruction.
    let agent_position = match action {
        Action::SolTransfer { from, .. } => {
            if from != agent {
                return Err(refuse(format!(
                    "the transfer source is {from}, not the agent {agent}"
                )));
            }
            0
        }
        Action::CreateAccount { from, new_account, .. } => {
            if from != agent {
                return Err(refuse(format!(
                    "the funding account is {from}, not the agent {agent}"
                )));
            }
            if new_account == agent {
                return Err(refuse(format!(
                    "the agent {agent} cannot be the account CreateAccount creates"
                )));
            }
            0
        }
        Action::TokenTransfer { authority, .. } => {
            if authority != agent {
                return Err(refuse(format!(
                    "the transfer authority is {authority}, not the agent {agent}"
                )));
            }
            if ix.accounts.len() != 4 {
                return Err(refuse(format!(
                    "TransferChecked with {} accounts: only the agent as single-signer authority \
                     (4 accounts) is accepted",
                    ix.accounts.len()
                )));
            }
            3
        }
        _ => return Ok(()),
    };
    for position in (0..ix.accounts.len()).filter(|p| *p != agent_position) {
        if tx.instruction_static_account(ix, position) == Some(&agent.0) {
            return Err(refuse(format!(
                "the agent {agent} stands in account position {position}, where only its one \
                 role is allowed"
            )));
        }
    }
    Ok(())
}

/// The runtime rejects a transaction with two compute-unit limits or two prices.
fn reject_duplicate_budget(actions: &[Action], rule: Rule) -> Result<(), Denial> {
    let limits = actions.iter().filter(|a| matches!(a, Action::ComputeUnitLimit(_))).count();
    let prices = actions.iter().filter(|a| matches!(a, Action::ComputeUnitPrice(_))).count();
    if limits > 1 || prices > 1 {
        return Err(Denial::new(
            rule,
            "duplicate ComputeBudget instruction (the runtime would reject the transaction)",
        ));
    }
    Ok(())
}

/// The fee formula of SPEC §7 from classified instructions.
pub fn fee_lamports(num_signatures: usize, actions: &[Action]) -> u64 {
    let non_budget = actions
        .iter()
        .filter(|a| !matches!(a, Action::ComputeUnitLimit(_) | Action::ComputeUnitPrice(_)))
        .count() as u64;
    let limit = actions
        .iter()
        .find_map(|a| if let Action::ComputeUnitLimit(l) = a { Some(u64::from(*l)) } else { None })
        .unwrap_or(DEFAULT_UNITS_PER_INSTRUCTION.saturating_mul(non_budget))
        .min(MAX_COMPUTE_UNITS);
    let price = actions
        .iter()
        .find_map(|a| if let Action::ComputeUnitPrice(p) = a { Some(*p) } else { None })
        .unwrap_or(0);
    let priority = (u128::from(price) * u128::from(limit)).div_ceil(1_000_000);
    let base = u128::from(LAMPORTS_PER_SIGNATURE) * num_signatures as u128;
    u64::try_from(base + priority).unwrap_or(u64::MAX)
}

/// Classifies every instruction of a transaction `agent` signs and applies the static
/// (per-transaction) rules.
pub fn evaluate_transaction(
    tx: &Transaction<'_>,
    policy: &Policy,
    agent: &Pubkey,
    declared_notional_cents: Option<u64>,
) -> Result<Spend, Denial> {
    let mut actions = Vec::with_capacity(tx.instructions.len());
    for (index, ix) in tx.instructions.iter().enumerate() {
        let action = classify(tx, index, ix, Allowances::of(policy))?;
        check_agent_role(tx, index, ix, &action, agent)?;
        actions.push(action);
    }
    reject_duplicate_budget(&actions, Rule::InstructionNotAllowed)?;

    let mut spend = Spend::default();
    for action in &actions {
        let destination = match action {
            Action::SolTransfer { to, lamports, .. } => {
                spend.lamports = spend.lamports.saturating_add(*lamports);
                Some(to)
            }
            Action::CreateAccount { new_account, lamports, .. } => {
                spend.lamports = spend.lamports.saturating_add(*lamports);
                Some(new_account)
            }
            Action::TokenTransfer { mint, destination, amount, .. } => {
                match spend.tokens.iter_mut().find(|(m, _)| m == mint) {
                    Some((_, total)) => *total = total.saturating_add(*amount),
                    None => spend.tokens.push((*mint, *amount)),
                }
                Some(destination)
            }
            _ => None,
        };
        if let (Some(dest), Some(allowed)) = (destination, &policy.destinations)
            && !allowed.contains(dest)
        {
            return Err(Denial::new(
                Rule::DestinationNotAllowed,
                format!("destination {dest} is not in the allowlist"),
            )
            .about(dest));
        }
    }

    // The per-transaction SOL limit counts the fee the agent pays, as the message says.
    spend.fee_lamports = fee_lamports(tx.num_signatures, &actions);
    spend.agent_pays_fee = tx.fee_payer() == Some(&agent.0);
    if spend.daily_lamports() > policy.max_lamports_per_tx {
        return Err(Denial::per_tx(
            Rule::MaxLamportsPerTx,
            policy.max_lamports_per_tx,
            spend.daily_lamports(),
            None,
        ));
    }
    for (mint, amount) in &spend.tokens {
        let limit = policy.token(mint).map(|t| t.max_per_tx).unwrap_or(0);
        if *amount > limit {
            return Err(Denial::per_tx(
                Rule::TokenMaxPerTx,
                limit,
                *amount,
                Some(mint.to_string()),
            ));
        }
    }
    if spend.fee_lamports > policy.max_fee_lamports {
        return Err(Denial::per_tx(
            Rule::MaxFeeLamports,
            policy.max_fee_lamports,
            spend.fee_lamports,
            None,
        ));
    }
    if actions.iter().any(|a| matches!(a, Action::AllowedProgram(_))) {
        // The program gets the agent's signature with no accounting of its own: the declared
        // notional is all that is charged, so it must be declared and be at least one cent.
        let notional = declared_notional_cents.filter(|n| *n > 0).ok_or_else(|| {
            Denial::new(
                Rule::NotionalRequired,
                "an allowed program is used: declared_notional_cents of at least 1 is required",
            )
        })?;
        if notional > policy.max_notional_cents_per_tx {
            return Err(Denial::per_tx(
                Rule::MaxNotionalCentsPerTx,
                policy.max_notional_cents_per_tx,
                notional,
                None,
            ));
        }
        spend.notional_cents = notional;
    }
    Ok(spend)
}

/// Whose daily counters a transaction is charged to. The agent's public key is part of it: a
/// record naming a victim's wallet and bot but another agent (which anyone can seal) cannot touch
/// the victim's counters, because only the victim's agent key opens with the victim's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SpendKey {
    pub wallet: [u8; 32],
    pub bot_id: [u8; 16],
    pub agent: [u8; 32],
}

/// The cumulative limits a spend is checked against: the policy's daily maxima (for the mints
/// this spend moves) and its velocity. Per-transaction limits are judged with the transaction
/// ([`evaluate_transaction`]); these need the counters, so they travel with a replicated decision
/// and are judged where the counters are, at the decision's time.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DailyLimits {
    pub lamports: u64,
    /// Per mint of the spend (a mint the policy does not list has limit 0).
    pub tokens: Vec<(Pubkey, u64)>,
    pub notional_cents: u64,
    pub tx_per_minute: Option<u32>,
}

impl DailyLimits {
    /// `policy`'s cumulative limits for what `spend` moves.
    pub fn of(policy: &Policy, spend: &Spend) -> Self {
        Self {
            lamports: policy.max_lamports_per_day,
            tokens: spend
                .tokens
                .iter()
                .map(|(mint, _)| (*mint, policy.token(mint).map(|t| t.max_per_day).unwrap_or(0)))
                .collect(),
            notional_cents: policy.max_notional_cents_per_day,
            tx_per_minute: policy.max_tx_per_minute,
        }
    }

    fn token(&self, mint: &Pubkey) -> u64 {
        self.tokens.iter().find(|(m, _)| m == mint).map(|(_, v)| *v).unwrap_or(0)
    }
}

/// One counter as a handover carries it (SPEC §16): the (wallet, bot, agent) it belongs to, the
/// UTC day it counts, what that day used, and the velocity window's timestamps.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpendRecord {
    pub key: Option<SpendKey>,
    pub day: u64,
    pub lamports: u64,
    pub tokens: Vec<(Pubkey, u64)>,
    pub notional_cents: u64,
    pub recent: Vec<u64>,
    pub last_seen: u64,
}

#[derive(Debug, Default)]
struct SpendState {
    day: u64,
    lamports: u64,
    tokens: Vec<(Pubkey, u64)>,
    notional_cents: u64,
    recent: VecDeque<u64>,
    last_seen: u64,
}

/// Default bound on the counters a ledger holds: about 145 MB of enclave memory when full
/// (~580 bytes a counter, measured by `cargo run -p enclave-core --example ledger_memory`).
pub const DEFAULT_SPEND_COUNTER_CAPACITY: usize = 250_000;
/// Default bound on the counters of one wallet.
pub const DEFAULT_SPEND_COUNTERS_PER_WALLET: u32 = 1024;

/// A new counter cannot be created: the ledger never forgets a live counter (that would reset
/// a limit), so it refuses the signature that would need one.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerFull {
    #[error(
        "wallet {wallet} already has {limit} spend counters (bot and agent pairs) counted today \
         or yesterday; no new bot or agent of this wallet can sign until they age out"
    )]
    Wallet { wallet: Pubkey, limit: u32 },
    #[error(
        "the spend ledger holds {capacity} live counters; no new bot or agent can sign until \
         they age out (existing ones keep signing)"
    )]
    Total { capacity: usize },
}

/// Daily and per-minute counters, per (wallet, bot, agent), bounded in total and per wallet.
///
/// A counter lives until the UTC day after the one it last counted, so limits hold across
/// midnight; a live counter is never evicted. At capacity, a signature that needs a new counter
/// is refused — first for the wallet that holds [`Ledger::per_wallet_capacity`] of them, then
/// for everyone once the whole ledger is full — while every existing counter keeps working:
/// one tenant filling the ledger stops only new bots, never the grants already in use.
#[derive(Debug)]
pub struct Ledger {
    states: HashMap<SpendKey, SpendState>,
    per_wallet: HashMap<[u8; 32], u32>,
    capacity: usize,
    per_wallet_capacity: u32,
    /// The last second a full ledger was swept for stale counters (at most once a second).
    last_prune: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new(DEFAULT_SPEND_COUNTER_CAPACITY, DEFAULT_SPEND_COUNTERS_PER_WALLET)
    }
}

impl Ledger {
    pub fn new(capacity: usize, per_wallet_capacity: u32) -> Self {
        Self {
            states: HashMap::new(),
            per_wallet: HashMap::new(),
            capacity,
            per_wallet_capacity,
            last_prune: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn per_wallet_capacity(&self) -> u32 {
        self.per_wallet_capacity
    }

    /// Room for `key`'s counter: present already, or a new one within both bounds (stale
    /// counters are swept first, at most once a second).
    pub fn admit(&mut self, key: &SpendKey, now: u64) -> Result<(), LedgerFull> {
        if self.states.contains_key(key) {
            return Ok(());
        }
        let wallet_full =
            |l: &Self| l.per_wallet.get(&key.wallet).copied().unwrap_or(0) >= l.per_wallet_capacity;
        if (wallet_full(self) || self.states.len() >= self.capacity) && now > self.last_prune {
            self.last_prune = now;
            self.prune(now);
        }
        if wallet_full(self) {
            return Err(LedgerFull::Wallet {
                wallet: Pubkey(key.wallet),
                limit: self.per_wallet_capacity,
            });
        }
        if self.states.len() >= self.capacity {
            return Err(LedgerFull::Total { capacity: self.capacity });
        }
        Ok(())
    }

    fn state_mut(&mut self, key: SpendKey) -> &mut SpendState {
        let per_wallet = &mut self.per_wallet;
        self.states.entry(key).or_insert_with(|| {
            let n = per_wallet.entry(key.wallet).or_insert(0);
            *n = n.saturating_add(1);
            SpendState::default()
        })
    }

    /// Checks the cumulative limits for `spend` at `now` (unix seconds). Nothing is recorded.
    pub fn check(
        &self,
        key: &SpendKey,
        spend: &Spend,
        limits: &DailyLimits,
        now: u64,
    ) -> Result<(), Denial> {
        let empty = SpendState::default();
        // Days only move forward: a clock that steps back stays on the day already counted.
        let state =
            self.states.get(key).filter(|s| s.day >= now / SECONDS_PER_DAY).unwrap_or(&empty);

        let check = |rule, limit: u64, requested: u64, used: u64, subject: Option<String>| {
            if used.saturating_add(requested) > limit {
                Err(Denial::cumulative(rule, limit, requested, used, "today (UTC)", subject))
            } else {
                Ok(())
            }
        };
        check(
            Rule::MaxLamportsPerDay,
            limits.lamports,
            spend.daily_lamports(),
            state.lamports,
            None,
        )?;
        for (mint, amount) in &spend.tokens {
            let used = state.tokens.iter().find(|(m, _)| m == mint).map(|(_, v)| *v).unwrap_or(0);
            check(Rule::TokenMaxPerDay, limits.token(mint), *amount, used, Some(mint.to_string()))?;
        }
        check(
            Rule::MaxNotionalCentsPerDay,
            limits.notional_cents,
            spend.notional_cents,
            state.notional_cents,
            None,
        )?;
        if let Some(per_minute) = limits.tx_per_minute {
            let full = self
                .states
                .get(key)
                .map(|s| s.recent.iter().filter(|t| **t + VELOCITY_WINDOW > now).count())
                .unwrap_or(0) as u64;
            if full >= u64::from(per_minute) {
                return Err(Denial::cumulative(
                    Rule::MaxTxPerMinute,
                    u64::from(per_minute),
                    1,
                    full,
                    "in the last minute",
                    None,
                ));
            }
        }
        Ok(())
    }

    /// `key`'s counters for the current day at `now` (what a `signed` receipt reports after
    /// the charge), of the mints `spend` moves only: a key's counters span every grant of its
    /// (wallet, bot, agent), so all of its mints could exceed what one receipt holds, while a
    /// spend moves only mints its policy lists. Zeros when it has none yet today.
    pub fn counters(&self, key: &SpendKey, spend: &Spend, now: u64) -> signer_receipts::Counters {
        let today = now / SECONDS_PER_DAY;
        match self.states.get(key).filter(|s| s.day >= today) {
            Some(s) => signer_receipts::Counters {
                day: s.day,
                lamports: s.lamports,
                notional_cents: s.notional_cents,
                tokens: s
                    .tokens
                    .iter()
                    .filter(|(mint, _)| spend.tokens.iter().any(|(m, _)| m == mint))
                    .map(|(mint, amount)| signer_receipts::TokenAmount {
                        mint: *mint,
                        amount: *amount,
                    })
                    .collect(),
            },
            None => signer_receipts::Counters { day: today, ..Default::default() },
        }
    }

    /// Records `spend` at `now`. Call only after [`Ledger::check`] succeeded under the same lock.
    pub fn record(&mut self, key: SpendKey, spend: &Spend, now: u64) {
        let today = now / SECONDS_PER_DAY;
        let state = self.state_mut(key);
        // Only a later day resets the counters; an earlier one is charged to the current day.
        if today > state.day {
            state.day = today;
            state.lamports = 0;
            state.tokens.clear();
            state.notional_cents = 0;
        }
        state.lamports = state.lamports.saturating_add(spend.daily_lamports());
        for (mint, amount) in &spend.tokens {
            match state.tokens.iter_mut().find(|(m, _)| m == mint) {
                Some((_, v)) => *v = v.saturating_add(*amount),
                None => state.tokens.push((*mint, *amount)),
            }
        }
        state.notional_cents = state.notional_cents.saturating_add(spend.notional_cents);
        while state.recent.front().is_some_and(|t| t + VELOCITY_WINDOW <= now) {
            state.recent.pop_front();
        }
        state.recent.push_back(now);
        state.last_seen = state.last_seen.max(now);
    }

    /// The last second a full ledger was swept (part of a replicated state: it decides when
    /// the next sweep happens, so every member must agree on it).
    pub fn last_prune(&self) -> u64 {
        self.last_prune
    }

    pub fn set_last_prune(&mut self, second: u64) {
        self.last_prune = second;
    }

    /// Forgets counters untouched since before the previous UTC day.
    pub fn prune(&mut self, now: u64) {
        let yesterday = (now / SECONDS_PER_DAY).saturating_sub(1);
        let per_wallet = &mut self.per_wallet;
        self.states.retain(|key, s| {
            let keep = s.last_seen / SECONDS_PER_DAY >= yesterday;
            if !keep && let Some(n) = per_wallet.get_mut(&key.wallet) {
                *n = n.saturating_sub(1);
            }
            keep
        });
        self.per_wallet.retain(|_, n| *n > 0);
    }

    /// Every counter, for a handover.
    pub fn export(&self) -> Vec<SpendRecord> {
        self.states
            .iter()
            .map(|(key, s)| SpendRecord {
                key: Some(*key),
                day: s.day,
                lamports: s.lamports,
                tokens: s.tokens.clone(),
                notional_cents: s.notional_cents,
                recent: s.recent.iter().copied().collect(),
                last_seen: s.last_seen,
            })
            .collect()
    }

    /// Takes over counters from a handover. A key this ledger also counts is merged, never
    /// replaced: on the same day the spends add up (and the recent timestamps join), otherwise
    /// the later day's counters win — so a merge can only make the limits stricter.
    pub fn import(&mut self, records: Vec<SpendRecord>) {
        for r in records {
            let Some(key) = r.key else { continue };
            let incoming = SpendState {
                day: r.day,
                lamports: r.lamports,
                tokens: r.tokens,
                notional_cents: r.notional_cents,
                recent: r.recent.into_iter().collect(),
                last_seen: r.last_seen,
            };
            // A handover's counters are taken whatever the bounds (refusing them after the
            // predecessor stopped would strand both); they age out like any other.
            match self.states.get_mut(&key) {
                None => {
                    *self.state_mut(key) = incoming;
                }
                Some(ours) if ours.day == incoming.day => {
                    ours.lamports = ours.lamports.saturating_add(incoming.lamports);
                    ours.notional_cents =
                        ours.notional_cents.saturating_add(incoming.notional_cents);
                    for (mint, amount) in incoming.tokens {
                        match ours.tokens.iter_mut().find(|(m, _)| *m == mint) {
                            Some((_, total)) => *total = total.saturating_add(amount),
                            None => ours.tokens.push((mint, amount)),
                        }
                    }
                    let mut recent: Vec<u64> =
                        ours.recent.iter().copied().chain(incoming.recent).collect();
                    recent.sort_unstable();
                    ours.recent = recent.into_iter().collect();
                    ours.last_seen = ours.last_seen.max(incoming.last_seen);
                }
                Some(ours) => {
                    // Velocity counts the last minute across midnight too: keep both sides'
                    // recent timestamps whichever day's counters win.
                    let mut recent: Vec<u64> = ours
                        .recent
                        .iter()
                        .copied()
                        .chain(incoming.recent.iter().copied())
                        .collect();
                    recent.sort_unstable();
                    let last_seen = ours.last_seen.max(incoming.last_seen);
                    if incoming.day > ours.day {
                        *ours = incoming;
                    }
                    ours.recent = recent.into_iter().collect();
                    ours.last_seen = last_seen;
                }
            }
        }
    }

    /// Counters of `wallet`.
    pub fn wallet_len(&self, wallet: &[u8; 32]) -> u32 {
        self.per_wallet.get(wallet).copied().unwrap_or(0)
    }

    /// Number of (wallet, bot, agent) counters tracked.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// A scheduled transfer's bound intent (SPEC §4): exactly this transfer and nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intent {
    pub destination: [u8; 32],
    /// All zeros for SOL.
    pub mint: [u8; 32],
    pub amount: u64,
}

impl Intent {
    /// `destination[32] ‖ mint[32] ‖ amount u64 LE`.
    pub fn canonical_bytes(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..32].copy_from_slice(&self.destination);
        out[32..64].copy_from_slice(&self.mint);
        out[64..].copy_from_slice(&self.amount.to_le_bytes());
        out
    }

    /// `SHA-256(canonical_bytes)`, the record's `intent_hash`.
    pub fn hash(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.canonical_bytes()).into()
    }
}

/// Checks that `tx` is exactly one transfer of the intent, from `agent`, plus at most one
/// compute-unit limit and price, with fee ≤ `max_fee`. Returns the intent the transaction carries.
pub fn check_intent(
    tx: &Transaction<'_>,
    agent: &Pubkey,
    intent_hash: &[u8; 32],
    max_fee: u64,
) -> Result<Intent, Denial> {
    // No policy lists here: the intent is the whole allowance, and it binds the mint.
    let mut actions = Vec::with_capacity(tx.instructions.len());
    let mismatch = |m: String| Denial::new(Rule::IntentMismatch, m);
    let any_mint = Allowances { mints: None, programs: &[] };
    for (index, ix) in tx.instructions.iter().enumerate() {
        let action = classify(tx, index, ix, any_mint)?;
        check_agent_role(tx, index, ix, &action, agent)?;
        actions.push(action);
    }
    let transfers: Vec<&Action> = actions
        .iter()
        .filter(|a| !matches!(a, Action::ComputeUnitLimit(_) | Action::ComputeUnitPrice(_)))
        .collect();
    let intent = match transfers.as_slice() {
        // The agent's role (source, authority) was checked with every instruction above.
        [Action::SolTransfer { to, lamports, .. }] => {
            Intent { destination: to.0, mint: [0; 32], amount: *lamports }
        }
        [Action::TokenTransfer { mint, destination, amount, .. }] => {
            Intent { destination: destination.0, mint: mint.0, amount: *amount }
        }
        other => {
            return Err(mismatch(format!(
                "a scheduled transaction must hold exactly one SOL Transfer or token TransferChecked (found {} other instruction(s))",
                other.len()
            )));
        }
    };
    if intent.hash() != *intent_hash {
        return Err(mismatch(format!(
            "transfer of {} to {} (mint {}) does not match the scheduled intent",
            intent.amount,
            Pubkey(intent.destination),
            Pubkey(intent.mint)
        )));
    }
    reject_duplicate_budget(&actions, Rule::IntentMismatch)?;
    let fee = fee_lamports(tx.num_signatures, &actions);
    if fee > max_fee {
        return Err(Denial::per_tx(Rule::MaxFeeLamports, max_fee, fee, None));
    }
    Ok(intent)
}
