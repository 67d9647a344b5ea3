//! A grant's policy (SPEC §7) as data: its JSON/CBOR shape, its validation, its canonical bytes
//! (what a user's authorization binds by SHA-256) and its one-line human summary (what the user
//! reads in the authorization message, in the units of the measured config's [`Registry`]); and
//! the rules and denials the enclave's policy engine reports. The engine itself lives in the
//! enclave.
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

/// What the measured config calls mints and programs, so a user reads "USDC 100.5" rather than
/// "100500000 of EPjF…". Validated ([`Registry::validate`]) so that renderings stay unambiguous:
/// unique mints and symbols, unique ids and names, symbols and names that cannot be mistaken for
/// an address or break the summary's punctuation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub tokens: Vec<KnownToken>,
    #[serde(default)]
    pub programs: Vec<KnownProgram>,
}

/// A mint the registry names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownToken {
    pub mint: Pubkey,
    /// 1..=10 characters of `A-Za-z0-9`.
    pub symbol: String,
    /// 0..=19 (u64 base units then always have an exact decimal rendering).
    pub decimals: u8,
}

/// A program the registry names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownProgram {
    pub id: Pubkey,
    /// 1..=24 characters of `A-Za-z0-9`, space, `.` and `-`, not starting or ending with a space.
    pub name: String,
}

/// Most registry entries of each kind.
pub const MAX_REGISTRY_ENTRIES: usize = 256;

impl Registry {
    pub fn token(&self, mint: &Pubkey) -> Option<&KnownToken> {
        self.tokens.iter().find(|t| t.mint == *mint)
    }

    pub fn program(&self, id: &Pubkey) -> Option<&KnownProgram> {
        self.programs.iter().find(|p| p.id == *id)
    }

    /// Checks the rules of the type docs.
    pub fn validate(&self) -> Result<(), String> {
        if self.tokens.len() > MAX_REGISTRY_ENTRIES || self.programs.len() > MAX_REGISTRY_ENTRIES {
            return Err(format!("at most {MAX_REGISTRY_ENTRIES} tokens and programs each"));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.symbol.is_empty()
                || t.symbol.len() > 10
                || !t.symbol.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(format!("token symbol `{}` must be 1..=10 of A-Za-z0-9", t.symbol));
            }
            if t.decimals > 19 {
                return Err(format!("token {} has {} decimals; at most 19", t.symbol, t.decimals));
            }
            let earlier = self.tokens.get(..i).unwrap_or_default();
            if earlier.iter().any(|o| o.mint == t.mint || o.symbol == t.symbol) {
                return Err(format!("token {} ({}) is listed twice", t.symbol, t.mint));
            }
        }
        for (i, p) in self.programs.iter().enumerate() {
            let ok = |b: u8| b.is_ascii_alphanumeric() || b" .-".contains(&b);
            if p.name.is_empty()
                || p.name.len() > 24
                || !p.name.bytes().all(ok)
                || p.name.starts_with(' ')
                || p.name.ends_with(' ')
            {
                return Err(format!(
                    "program name `{}` must be 1..=24 of A-Za-z0-9 . - and inner spaces",
                    p.name
                ));
            }
            let earlier = self.programs.get(..i).unwrap_or_default();
            if earlier.iter().any(|o| o.id == p.id || o.name == p.name) {
                return Err(format!("program {} ({}) is listed twice", p.name, p.id));
            }
        }
        Ok(())
    }
}

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
    /// message, in the units of `registry`: a known token as its symbol with exact decimals
    /// (`USDC 100.5`), an unknown one as its mint and base units; a known program by name with
    /// its address. Keys are written in full (a shortened key is easy to imitate). Two different
    /// policies never read the same (`registry` validated; a destination list longer than
    /// [`SUMMARY_DESTINATIONS`] is named by its SHA-256).
    pub fn summary(&self, registry: &Registry) -> String {
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
                .map(|t| match registry.token(&t.mint) {
                    Some(known) => format!(
                        "{} up to {} per tx and {} per day",
                        known.symbol,
                        decimal(t.max_per_tx, known.decimals),
                        decimal(t.max_per_day, known.decimals)
                    ),
                    None => format!(
                        "token {} up to {} per tx and {} per day (base units)",
                        t.mint,
                        amount(t.max_per_tx),
                        amount(t.max_per_day)
                    ),
                })
                .collect();
            format!("tokens: {}", each.join(", "))
        });
        let programs = if self.allowed_programs.is_empty() {
            "none".to_string()
        } else {
            let each: Vec<String> = self
                .allowed_programs
                .iter()
                .map(|p| match registry.program(p) {
                    Some(known) => format!("{} ({p})", known.name),
                    None => p.to_string(),
                })
                .collect();
            each.join(", ")
        };
        parts.push(format!(
            "programs: {programs}, with declared value up to {} per tx and {} per day",
            usd(self.max_notional_cents_per_tx),
            usd(self.max_notional_cents_per_day)
        ));
        parts.push(match &self.destinations {
            None => "destinations: any".to_string(),
            Some(d) if d.is_empty() => "destinations: none".to_string(),
            Some(d) if d.len() <= SUMMARY_DESTINATIONS => {
                let each: Vec<String> = d.iter().map(Pubkey::to_string).collect();
                format!("destinations: only {}", each.join(", "))
            }
            Some(d) => {
                let mut list = Sha256::new();
                for k in d {
                    list.update(k.0);
                }
                format!(
                    "destinations: only the {} listed in the policy (list sha256 {})",
                    d.len(),
                    hex_lower(&list.finalize())
                )
            }
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
    decimal(lamports, 9)
}

/// USD cents as `$d.cc`, `unlimited` for `u64::MAX`.
pub fn usd(cents: u64) -> String {
    if cents == u64::MAX {
        return "unlimited".into();
    }
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// Base units as an exact decimal with `decimals` places (trailing zeros dropped), `unlimited`
/// for `u64::MAX`.
pub fn decimal(units: u64, decimals: u8) -> String {
    if units == u64::MAX {
        return "unlimited".into();
    }
    let Some(scale) = 10u64.checked_pow(u32::from(decimals)) else {
        return units.to_string();
    };
    let (whole, frac) = (units / scale, units % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = usize::from(decimals));
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    fn registry() -> Registry {
        Registry {
            tokens: vec![KnownToken {
                mint: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v".parse().unwrap(),
                symbol: "USDC".into(),
                decimals: 6,
            }],
            programs: vec![KnownProgram {
                id: "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4".parse().unwrap(),
                name: "Jupiter v6".into(),
            }],
        }
    }

    #[test]
    fn summary_names_every_limit_in_one_ascii_line_in_real_units() {
        let text = example().summary(&registry());
        assert_eq!(
            text,
            "SOL 1 per tx and 5 per day (fees the agent pays included); fees up to 0.0001 SOL per \
             tx; tokens: USDC up to 100 per tx and 500 per day; programs: Jupiter v6 \
             (JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4), with declared value up to $500.00 per \
             tx and $2000.00 per day; destinations: any; rate: up to 30 tx per minute"
        );
        assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)));
        // Unknown to the registry: the mint and base units, the program's address.
        let text = example().summary(&Registry::default());
        assert!(text.contains(
            "tokens: token EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v up to 100000000 per tx \
             and 500000000 per day (base units)"
        ));
        assert!(text.contains("programs: JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4, with"));
        let mut p = example();
        p.destinations = Some(vec![Pubkey([1; 32]); 9]);
        assert!(
            p.summary(&registry())
                .contains("destinations: only the 9 listed in the policy (list sha256 ")
        );
        assert_eq!(decimal(100_500_000, 6), "100.5");
        assert_eq!(decimal(1, 6), "0.000001");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(decimal(u64::MAX - 1, 19), "1.8446744073709551614");
    }

    #[test]
    fn a_registry_that_could_render_two_ways_is_refused() {
        let mut r = registry();
        r.validate().unwrap();
        r.tokens.push(KnownToken { mint: Pubkey([9; 32]), symbol: "USDC".into(), decimals: 6 });
        assert!(r.validate().is_err(), "two mints, one symbol");
        let mut r = registry();
        r.tokens[0].symbol = "US DC".into();
        assert!(r.validate().is_err());
        let mut r = registry();
        r.tokens[0].decimals = 20;
        assert!(r.validate().is_err());
        let mut r = registry();
        r.programs.push(KnownProgram { id: Pubkey([9; 32]), name: "Jupiter v6".into() });
        assert!(r.validate().is_err(), "two programs, one name");
        let mut r = registry();
        r.programs[0].name = "a;b".into();
        assert!(r.validate().is_err());
        r.programs[0].name = "x".repeat(25);
        assert!(r.validate().is_err(), "a name as long as an address could imitate one");
    }

    mod injective {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = Pubkey> {
            // Few distinct keys, so that equal and known ones come up often.
            (0u8..4).prop_map(|b| {
                if b == 0 {
                    registry().tokens[0].mint
                } else if b == 1 {
                    registry().programs[0].id
                } else {
                    Pubkey([b; 32])
                }
            })
        }

        fn small() -> impl Strategy<Value = u64> {
            prop_oneof![
                Just(0u64),
                Just(1),
                Just(10),
                Just(100_000_000),
                Just(u64::MAX),
                0u64..1_000_000
            ]
        }

        prop_compose! {
            fn policy()(
                tx in small(), day in small(), fee in small(),
                tokens in proptest::collection::vec((key(), small(), small()), 0..3),
                programs in proptest::collection::vec(key(), 0..3),
                ntx in small(), nday in small(),
                destinations in proptest::option::of(proptest::collection::vec(key(), 0..11)),
                rate in proptest::option::of(1u32..4),
            ) -> Policy {
                Policy {
                    max_lamports_per_tx: tx,
                    max_lamports_per_day: day,
                    max_fee_lamports: fee,
                    tokens: tokens.into_iter().map(|(mint, max_per_tx, max_per_day)| TokenLimit { mint, max_per_tx, max_per_day }).collect(),
                    allowed_programs: programs,
                    max_notional_cents_per_tx: ntx,
                    max_notional_cents_per_day: nday,
                    destinations,
                    max_tx_per_minute: rate,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]
            /// Two different policies never read the same, with the registry or without it.
            #[test]
            fn two_different_policies_never_render_the_same_text(a in policy(), b in policy()) {
                for r in [registry(), Registry::default()] {
                    if a.canonical_bytes() != b.canonical_bytes() {
                        prop_assert_ne!(a.summary(&r), b.summary(&r), "{:?} / {:?}", a, b);
                    } else {
                        prop_assert_eq!(a.summary(&r), b.summary(&r));
                    }
                }
            }
        }

        #[test]
        fn one_step_changes_of_a_policy_change_its_text() {
            // Differences the random pairs above could miss: each field moved by one.
            let base = example();
            let mut variants = Vec::new();
            let mut p = base.clone();
            p.max_notional_cents_per_tx += 1;
            variants.push(p);
            let mut p = base.clone();
            p.allowed_programs.clear();
            p.max_notional_cents_per_day += 1;
            variants.push(p);
            let mut p = base.clone();
            p.tokens[0].max_per_day += 1;
            variants.push(p);
            let mut p = base.clone();
            p.destinations = Some(vec![Pubkey([1; 32]); 9]);
            variants.push(p.clone());
            p.destinations =
                Some(vec![Pubkey([1; 32]); 8].into_iter().chain([Pubkey([2; 32])]).collect());
            variants.push(p);
            for v in &variants {
                assert_ne!(v.summary(&registry()), base.summary(&registry()), "{v:?}");
            }
            for (i, a) in variants.iter().enumerate() {
                for b in variants.iter().skip(i + 1) {
                    assert_ne!(a.summary(&registry()), b.summary(&registry()));
                }
            }
        }
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
