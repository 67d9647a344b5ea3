//! OpenAPI schemas (utoipa) of what the bodies carry but this crate does not define: Solana keys
//! and enclave ids from `signer-types`, the policy and the registry, the stable error codes and
//! policy rules. `signer-types` stays free of utoipa (the enclave links it), so its types get
//! their schema here: a marker type for a scalar, or a mirror struct with the same serde shape
//! for an object (tests below round-trip the real type through its mirror, so they cannot drift).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use signer_types::ErrorCode;
use signer_types::policy::Rule;
use signer_types::pubkey::Pubkey;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::{B64, HttpCode, Signature};

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description))
}

/// Implements `ToSchema` for a scalar marker type.
macro_rules! scalar_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($schema.build()))
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

scalar_schema!(
    B64,
    "Base64",
    string("Bytes as standard padded base64 (RFC 4648 §4).")
        .content_encoding("base64")
        .pattern(Some("^[A-Za-z0-9+/]*={0,2}$"))
);

scalar_schema!(
    Signature,
    "Signature",
    string("An ed25519 signature (64 bytes), base58 as Solana writes it.")
        .pattern(Some("^[1-9A-HJ-NP-Za-km-z]{64,88}$"))
        .examples([serde_json::json!(
            "v92SXVg7axDrJpqxrbAG5QgUJnZPxmhQMa9tQ2yz6iUX3eajcWNaaXmSUujEujJ2FxSVeLb41WXTmJ2qfSieytK"
        )])
);

/// Schema of a Solana public key ([`Pubkey`] in `signer-types`).
pub struct PubkeySchema;

scalar_schema!(
    PubkeySchema,
    "Pubkey",
    string("A Solana public key (32 bytes), base58.")
        .pattern(Some("^[1-9A-HJ-NP-Za-km-z]{32,44}$"))
        .examples([serde_json::json!("4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T")])
);

/// Schema of an enclave instance id (`EnclaveId` in `signer-types`): the routing key.
pub struct EnclaveIdSchema;

scalar_schema!(
    EnclaveIdSchema,
    "EnclaveId",
    string(
        "The id of an enclave instance (UUID text): the routing key of `X-Signer-Route`, derived \
         from the instance's recipient key, new on every start."
    )
    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
);

/// Every stable error code of a problem body, in the order of [`ErrorCode::ALL`] then
/// [`HttpCode::ALL`].
pub fn all_codes() -> Vec<&'static str> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(HttpCode::ALL.iter().map(|c| c.as_str()))
        .collect()
}

/// Every code with its HTTP status.
pub fn codes_with_status() -> Vec<(&'static str, u16)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.http_status()))
        .chain(HttpCode::ALL.iter().map(|c| (c.as_str(), c.http_status())))
        .collect()
}

/// Schema of a problem's `code`.
pub struct ErrorCodeSchema;

impl PartialSchema for ErrorCodeSchema {
    fn schema() -> RefOr<Schema> {
        let schema = string(
            "The stable error code (the README's \"Errors\" table says what each means); \
             clients branch on it, never on `title` or `detail`.",
        )
        .enum_values(Some(all_codes()))
        .build();
        RefOr::T(Schema::Object(schema))
    }
}

impl ToSchema for ErrorCodeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// Every policy rule, as the `rule` of a `policy_denied` problem names it.
pub const RULES: [Rule; 17] = [
    Rule::InstructionNotAllowed,
    Rule::AgentRole,
    Rule::ProgramNotAllowed,
    Rule::LookupTableAccount,
    Rule::DestinationNotAllowed,
    Rule::TokenNotAllowed,
    Rule::MaxLamportsPerTx,
    Rule::MaxLamportsPerDay,
    Rule::TokenMaxPerTx,
    Rule::TokenMaxPerDay,
    Rule::MaxFeeLamports,
    Rule::NotionalRequired,
    Rule::MaxNotionalCentsPerTx,
    Rule::MaxNotionalCentsPerDay,
    Rule::MaxTxPerMinute,
    Rule::ScheduleWindow,
    Rule::IntentMismatch,
];

/// The index of a rule in [`RULES`]; an exhaustive match, so a new rule does not compile until
/// it is listed.
pub fn rule_index(rule: Rule) -> usize {
    match rule {
        Rule::InstructionNotAllowed => 0,
        Rule::AgentRole => 1,
        Rule::ProgramNotAllowed => 2,
        Rule::LookupTableAccount => 3,
        Rule::DestinationNotAllowed => 4,
        Rule::TokenNotAllowed => 5,
        Rule::MaxLamportsPerTx => 6,
        Rule::MaxLamportsPerDay => 7,
        Rule::TokenMaxPerTx => 8,
        Rule::TokenMaxPerDay => 9,
        Rule::MaxFeeLamports => 10,
        Rule::NotionalRequired => 11,
        Rule::MaxNotionalCentsPerTx => 12,
        Rule::MaxNotionalCentsPerDay => 13,
        Rule::MaxTxPerMinute => 14,
        Rule::ScheduleWindow => 15,
        Rule::IntentMismatch => 16,
    }
}

/// Schema of a `policy_denied` problem's `rule`.
pub struct RuleSchema;

impl PartialSchema for RuleSchema {
    fn schema() -> RefOr<Schema> {
        let schema = string("The policy rule that refused (README, \"Policy rules\").")
            .enum_values(Some(RULES.iter().map(|r| r.as_str())))
            .build();
        RefOr::T(Schema::Object(schema))
    }
}

impl ToSchema for RuleSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Rule")
    }
}

/// The shape of `signer_types::policy::Policy` (SPEC §7): a grant's limits.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Policy)]
pub struct PolicySchema {
    /// Lamports one transaction may move (the agent's fees included).
    pub max_lamports_per_tx: u64,
    /// Lamports per rolling day.
    pub max_lamports_per_day: u64,
    /// Most fee (base plus priority) one transaction may pay.
    pub max_fee_lamports: u64,
    /// Per-mint limits; a mint not listed cannot be sent (at most 64).
    pub tokens: Vec<TokenLimitSchema>,
    /// Programs beyond System, Token, Token-2022 and Compute Budget the transaction may call
    /// (at most 64).
    #[schema(value_type = Vec<PubkeySchema>)]
    pub allowed_programs: Vec<Pubkey>,
    /// Most declared notional value of one transaction, in cents.
    pub max_notional_cents_per_tx: u64,
    /// Most declared notional value per rolling day, in cents.
    pub max_notional_cents_per_day: u64,
    /// When present, the only accounts transfers may go to (at most 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<PubkeySchema>>)]
    pub destinations: Option<Vec<Pubkey>>,
    /// When present (≥ 1), most signatures per rolling minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tx_per_minute: Option<u32>,
}

/// The shape of `signer_types::policy::TokenLimit`: per-mint limits in base units.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TokenLimit)]
pub struct TokenLimitSchema {
    #[schema(value_type = PubkeySchema)]
    pub mint: Pubkey,
    pub max_per_tx: u64,
    pub max_per_day: u64,
}

/// The shape of `signer_types::policy::Registry`: what the enclave's measured config calls mints
/// and programs in the messages users sign.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Registry)]
pub struct RegistrySchema {
    #[serde(default)]
    pub tokens: Vec<KnownTokenSchema>,
    #[serde(default)]
    pub programs: Vec<KnownProgramSchema>,
}

/// The shape of `signer_types::policy::KnownToken`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KnownToken)]
pub struct KnownTokenSchema {
    #[schema(value_type = PubkeySchema)]
    pub mint: Pubkey,
    /// 1..=10 characters of `A-Za-z0-9`.
    pub symbol: String,
    /// 0..=19.
    pub decimals: u8,
}

/// The shape of `signer_types::policy::KnownProgram`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KnownProgram)]
pub struct KnownProgramSchema {
    #[schema(value_type = PubkeySchema)]
    pub id: Pubkey,
    /// 1..=24 characters of `A-Za-z0-9`, space, `.` and `-`.
    pub name: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use signer_types::policy::{KnownProgram, KnownToken, Policy, Registry, TokenLimit};

    use super::*;

    /// `T` → JSON → mirror `M` (unknown fields refused) → JSON → `T`, unchanged.
    fn round_trip<T, M>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        M: Serialize + for<'de> Deserialize<'de>,
    {
        let json = serde_json::to_value(value).unwrap();
        let mirror: M = serde_json::from_value(json.clone()).unwrap();
        let again = serde_json::to_value(&mirror).unwrap();
        assert_eq!(again, json);
        assert_eq!(&serde_json::from_value::<T>(again).unwrap(), value);
    }

    #[test]
    fn the_mirrors_have_the_shape_of_the_real_types() {
        let key = |b: u8| Pubkey([b; 32]);
        let policy = Policy {
            max_lamports_per_tx: 1,
            max_lamports_per_day: 2,
            max_fee_lamports: 3,
            tokens: vec![TokenLimit { mint: key(1), max_per_tx: 4, max_per_day: 5 }],
            allowed_programs: vec![key(2)],
            max_notional_cents_per_tx: 6,
            max_notional_cents_per_day: 7,
            destinations: Some(vec![key(3)]),
            max_tx_per_minute: Some(8),
        };
        round_trip::<Policy, PolicySchema>(&policy);
        round_trip::<Policy, PolicySchema>(&Policy {
            destinations: None,
            max_tx_per_minute: None,
            ..policy
        });
        round_trip::<Registry, RegistrySchema>(&Registry {
            tokens: vec![KnownToken { mint: key(4), symbol: "USDC".into(), decimals: 6 }],
            programs: vec![KnownProgram { id: key(5), name: "Memo".into() }],
        });
    }

    #[test]
    fn every_rule_and_code_is_listed_once() {
        for (i, rule) in RULES.iter().enumerate() {
            assert_eq!(rule_index(*rule), i, "{rule:?}");
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, rule.as_str());
        }
        let codes = all_codes();
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        assert_eq!(codes.len(), ErrorCode::ALL.len() + HttpCode::ALL.len());
    }
}
