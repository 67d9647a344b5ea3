//! A grant's policy (SPEC §7) as data: its JSON/CBOR shape, its validation, its canonical bytes
//! (what a user's authorization binds by SHA-256) and its one-line human summary (what the user
//! reads in the authorization message); and the rules and denials the enclave's policy engine
//! reports. The engine itself lives in the enclave.
//!
//! Canonical bytes (all integers little-endian, lists in the given order):
//!
//! ```text
//! "signer/policy/v1"
//! max_lamports_per_tx u64 ‖ max_lamports_per_day u64 ‖ max_fee_lamports u64
//! n_tokens u16 ‖ n × (mint[32] ‖ max_per_tx u64 ‖ max_per_day u64)
//! n_programs u16 ‖ n × program[32]
//! max_notional_cents_per_tx u64 ‖ max_notional_cents_per_day u64
//! has_destinations u8 (0/1) [‖ n u16 ‖ n × destination[32]]
//! has_max_tx_per_minute u8 (0/1) [‖ max_tx_per_minute u32]
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pubkey::{Pubkey, programs};

/// List bounds that keep a grant small.
pub const MAX_TOKENS: usize = 64;
pub const MAX_PROGRAMS: usize = 64;
pub const MAX_DESTINATIONS: usize = 1024;
/// Destinations written out in a summary; longer allowlists are counted (the policy hash binds
/// them).
pub const SUMMARY_DESTINATIONS: usize = 8;
/// Domain separator of [`Policy::canonical_bytes`].
pub const POLICY_DOMAIN: &[u8] = b"signer/policy/v1";

/// Per-mint limits, in the token's base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenLimit {
    pub mint: Pubkey,
    pub max_per_tx: u64,
    pub max_per_day: u64,
}

/// A grant's policy. JSON (API) and CBOR (inside the sealed grant) share this shape; keys are
/// base58 in JSON and raw bytes in CBOR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub max_lamports_per_tx: u64,
    pub max_lamports_per_day: u64,
    pub max_fee_lamports: u64,
    pub tokens: Vec<TokenLimit>,
    pub allowed_programs: Vec<Pubkey>,
    pub max_notional_cents_per_tx: u64,
    pub max_notional_cents_per_day: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<Pubkey>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_per_minute: Option<u32>,
}

impl Policy {
    /// Checks internal consistency; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.tokens.len() > MAX_TOKENS {
            return Err(format!("{} tokens; at most {MAX_TOKENS}", self.tokens.len()));
        }
        if self.allowed_programs.len() > MAX_PROGRAMS {
            return Err(format!(
                "{} allowed_programs; at most {MAX_PROGRAMS}",
                self.allowed_programs.len()
            ));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if self.tokens.iter().skip(i + 1).any(|o| o.mint == t.mint) {
                return Err(format!("mint {} is listed twice", t.mint));
            }
        }
        for (i, p) in self.allowed_programs.iter().enumerate() {
            if [programs::SYSTEM, programs::TOKEN, programs::TOKEN_2022, programs::COMPUTE_BUDGET]
                .contains(p)
            {
                return Err(format!("{p} has its own rules and cannot be in allowed_programs"));
            }
            if programs::PRECOMPILES.contains(p) {
                return Err(format!(
                    "{p} is a signature-verification precompile: the signatures it checks cost fees \
                     the fee limit cannot see, so it cannot be in allowed_programs"
                ));
            }
            if self.allowed_programs.iter().skip(i + 1).any(|o| o == p) {
                return Err(format!("program {p} is listed twice"));
            }
        }
        if let Some(d) = &self.destinations
            && d.len() > MAX_DESTINATIONS
        {
            return Err(format!("{} destinations; at most {MAX_DESTINATIONS}", d.len()));
        }
        if self.max_tx_per_minute == Some(0) {
            return Err("max_tx_per_minute must be at least 1 (omit it for no limit)".into());
        }
        Ok(())
    }

    /// The canonical bytes (module docs): what a user's authorization binds by SHA-256.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let tokens = self.tokens.len() * 48;
        let keys =
            (self.allowed_programs.len() + self.destinations.as_ref().map_or(0, Vec::len)) * 32;
        let mut out = Vec::with_capacity(POLICY_DOMAIN.len() + 64 + tokens + keys);
        out.extend_from_slice(POLICY_DOMAIN);
        out.extend_from_slice(&self.max_lamports_per_tx.to_le_bytes());
        out.extend_from_slice(&self.max_lamports_per_day.to_le_bytes());
        out.extend_from_slice(&self.max_fee_lamports.to_le_bytes());
        // Lengths are bounded by `validate` (≤ 1024); saturate rather than wrap on a bad policy.
        let len16 = |n: usize| u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes();
        out.extend_from_slice(&len16(self.tokens.len()));
        for t in &self.tokens {
            out.extend_from_slice(&t.mint.0);
            out.extend_from_slice(&t.max_per_tx.to_le_bytes());
            out.extend_from_slice(&t.max_per_day.to_le_bytes());
        }
        out.extend_from_slice(&len16(self.allowed_programs.len()));
        for p in &self.allowed_programs {
            out.extend_from_slice(&p.0);
        }
        out.extend_from_slice(&self.max_notional_cents_per_tx.to_le_bytes());
        out.extend_from_slice(&self.max_notional_cents_per_day.to_le_bytes());
        match &self.destinations {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&len16(d.len()));
                for k in d {
                    out.extend_from_slice(&k.0);
                }
            }
        }
        match self.max_tx_per_minute {
            None => out.push(0),
            Some(n) => {
                out.push(1);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// SHA-256 of [`Policy::canonical_bytes`].
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Every limit in one line of printable ASCII, as the user reads it in an authorization
    /// message. Keys are written in full (a shortened key is easy to imitate).
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "SOL {} per tx and {} per day (fees the agent pays included)",
            sol(self.max_lamports_per_tx),
            sol(self.max_lamports_per_day)
        )];
        parts.push(format!("fees up to {} SOL per tx", sol(self.max_fee_lamports)));
        parts.push(if self.tokens.is_empty() {
            "tokens: none".to_string()
        } else {
            let each: Vec<String> = self
                .tokens
                .iter()
                .map(|t| {
                    format!(
                        "{} up to {} per tx and {} per day (base units)",
                        t.mint,
                        amount(t.max_per_tx),
                        amount(t.max_per_day)
                    )
                })
                .collect();
            format!("tokens: {}", each.join(", "))
        });
        parts.push(if self.allowed_programs.is_empty() {
            "programs: none".to_string()
        } else {
            let each: Vec<String> = self.allowed_programs.iter().map(Pubkey::to_string).collect();
            format!(
                "programs: {} with declared value up to {} per tx and {} per day",
                each.join(", "),
                usd(self.max_notional_cents_per_tx),
                usd(self.max_notional_cents_per_day)
            )
        });
        parts.push(match &self.destinations {
            None => "destinations: any".to_string(),
            Some(d) if d.is_empty() => "destinations: none".to_string(),
            Some(d) if d.len() <= SUMMARY_DESTINATIONS => {
                let each: Vec<String> = d.iter().map(Pubkey::to_string).collect();
                format!("destinations: only {}", each.join(", "))
            }
            Some(d) => format!("destinations: only the {} listed in the policy", d.len()),
        });
        parts.push(match self.max_tx_per_minute {
            None => "rate: unlimited".to_string(),
            Some(n) => format!("rate: up to {n} tx per minute"),
        });
        parts.join("; ")
    }

    /// The limits of `mint`, if it is listed.
    pub fn token(&self, mint: &Pubkey) -> Option<&TokenLimit> {
        self.tokens.iter().find(|t| t.mint == *mint)
    }
}

/// The rule a denial is about (stable names, as in the API's `rule` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    InstructionNotAllowed,
    AgentRole,
    ProgramNotAllowed,
    LookupTableAccount,
    DestinationNotAllowed,
    TokenNotAllowed,
    MaxLamportsPerTx,
    MaxLamportsPerDay,
    TokenMaxPerTx,
    TokenMaxPerDay,
    MaxFeeLamports,
    NotionalRequired,
    MaxNotionalCentsPerTx,
    MaxNotionalCentsPerDay,
    MaxTxPerMinute,
    ScheduleWindow,
    IntentMismatch,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstructionNotAllowed => "instruction_not_allowed",
            Self::AgentRole => "agent_role",
            Self::ProgramNotAllowed => "program_not_allowed",
            Self::LookupTableAccount => "lookup_table_account",
            Self::DestinationNotAllowed => "destination_not_allowed",
            Self::TokenNotAllowed => "token_not_allowed",
            Self::MaxLamportsPerTx => "max_lamports_per_tx",
            Self::MaxLamportsPerDay => "max_lamports_per_day",
            Self::TokenMaxPerTx => "token_max_per_tx",
            Self::TokenMaxPerDay => "token_max_per_day",
            Self::MaxFeeLamports => "max_fee_lamports",
            Self::NotionalRequired => "notional_required",
            Self::MaxNotionalCentsPerTx => "max_notional_cents_per_tx",
            Self::MaxNotionalCentsPerDay => "max_notional_cents_per_day",
            Self::MaxTxPerMinute => "max_tx_per_minute",
            Self::ScheduleWindow => "schedule_window",
            Self::IntentMismatch => "intent_mismatch",
        }
    }
}

/// Why a transaction was refused, with the numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub rule: Rule,
    /// The configured limit, when the rule has one.
    pub limit: Option<u64>,
    /// What this transaction asks for.
    pub requested: Option<u64>,
    /// What was already used in the current window (UTC day or minute).
    pub used: Option<u64>,
    /// The mint, program, destination or instruction concerned.
    pub subject: Option<String>,
    /// A sentence for humans.
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.as_str(), self.message)
    }
}

impl Denial {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            limit: None,
            requested: None,
            used: None,
            subject: None,
            message: message.into(),
        }
    }

    /// Names what the denial is about.
    pub fn about(mut self, subject: impl ToString) -> Self {
        self.subject = Some(subject.to_string());
        self
    }

    /// A per-transaction limit exceeded.
    pub fn per_tx(rule: Rule, limit: u64, requested: u64, subject: Option<String>) -> Self {
        Self {
            rule,
            limit: Some(limit),
            requested: Some(requested),
            used: None,
            message: format!(
                "{requested}{} exceeds the per-transaction limit {limit}",
                subject.as_deref().map(|s| format!(" of {s}")).unwrap_or_default()
            ),
            subject,
        }
    }

    /// A cumulative (daily or per-minute) limit exceeded.
    pub fn cumulative(
        rule: Rule,
        limit: u64,
        requested: u64,
        used: u64,
        window: &str,
        subject: Option<String>,
    ) -> Self {
        Self {
            rule,
            limit: Some(limit),
            requested: Some(requested),
            used: Some(used),
            message: format!(
                "{requested}{} requested + {used} already used {window} exceeds the limit {limit}",
                subject.as_deref().map(|s| format!(" of {s}")).unwrap_or_default()
            ),
            subject,
        }
    }
}

/// Lamports as SOL, exactly (no floating point), `unlimited` for `u64::MAX`.
pub fn sol(lamports: u64) -> String {
    if lamports == u64::MAX {
        return "unlimited".into();
    }
    let (whole, frac) = (lamports / 1_000_000_000, lamports % 1_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// USD cents as `$d.cc`, `unlimited` for `u64::MAX`.
pub fn usd(cents: u64) -> String {
    if cents == u64::MAX {
        return "unlimited".into();
    }
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn amount(units: u64) -> String {
    if units == u64::MAX { "unlimited".into() } else { units.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Policy {
        Policy {
            max_lamports_per_tx: 1_000_000_000,
            max_lamports_per_day: 5_000_000_000,
            max_fee_lamports: 100_000,
            tokens: vec![TokenLimit {
                mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".parse().unwrap(),
                max_per_tx: 100_000_000,
                max_per_day: 500_000_000,
            }],
            allowed_programs: vec!["JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4".parse().unwrap()],
            max_notional_cents_per_tx: 50_000,
            max_notional_cents_per_day: 200_000,
            destinations: None,
            max_tx_per_minute: Some(30),
        }
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(sol(0), "0");
        assert_eq!(sol(1), "0.000000001");
        assert_eq!(sol(100_000), "0.0001");
        assert_eq!(sol(1_500_000_000), "1.5");
        assert_eq!(sol(18_446_744_073_709_551_614), "18446744073.709551614");
        assert_eq!(sol(u64::MAX), "unlimited");
        assert_eq!(usd(50_000), "$500.00");
        assert_eq!(usd(7), "$0.07");
    }

    #[test]
    fn summary_names_every_limit_in_one_ascii_line() {
        let text = example().summary();
        assert_eq!(
            text,
            "SOL 1 per tx and 5 per day (fees the agent pays included); fees up to 0.0001 SOL per \
             tx; tokens: EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v up to 100000000 per tx and \
             500000000 per day (base units); programs: JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4 \
             with declared value up to $500.00 per tx and $2000.00 per day; destinations: any; \
             rate: up to 30 tx per minute"
        );
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
        let mut p = example();
        p.destinations = Some(vec![Pubkey([1; 32]); 9]);
        assert!(p.summary().contains("destinations: only the 9 listed in the policy"));
    }

    #[test]
    fn canonical_bytes_change_with_every_field() {
        let base = example();
        let mut variants = vec![base.clone()];
        let mut p = base.clone();
        p.max_fee_lamports += 1;
        variants.push(p);
        let mut p = base.clone();
        p.tokens[0].max_per_day += 1;
        variants.push(p);
        let mut p = base.clone();
        p.destinations = Some(vec![]);
        variants.push(p);
        let mut p = base.clone();
        p.max_tx_per_minute = None;
        variants.push(p);
        let mut p = base.clone();
        p.allowed_programs.clear();
        variants.push(p);
        let hashes: std::collections::BTreeSet<[u8; 32]> =
            variants.iter().map(Policy::sha256).collect();
        assert_eq!(hashes.len(), variants.len());
        assert_eq!(base.canonical_bytes().len(), 16 + 24 + 2 + 48 + 2 + 32 + 16 + 1 + 1 + 4);
    }
}
