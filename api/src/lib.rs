//! Request and response bodies of the parent's HTTP API (SPEC §6), and their parsing.
//!
//! JSON; bytes are standard padded base64; Solana keys base58 ([`Pubkey`]); 16-byte ids UUID text
//! (any of uuid's accepted forms). Unknown fields are refused, so a typo never silently falls back
//! to a default. `umk` deserializes straight into a zeroizing [`Secret32`]. The body limit is
//! enforced before parsing, by the server.

#![forbid(unsafe_code)]

use base64::Engine as _;
use enclave_core::policy::Policy;
use enclave_core::{Pubkey, Secret32};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Why a body was refused (always a `400 bad_request`).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Standard padded base64 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = B64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a standard padded base64 string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<B64, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map(B64)
                    .map_err(|e| E::custom(format!("not standard padded base64 ({e})")))
            }
        }
        d.deserialize_str(V)
    }
}

/// `kind` of `POST /v1/agents`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Seed,
    Mnemonic,
}

/// `POST /v1/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    pub wallet: Pubkey,
    pub umk: Secret32,
    #[serde(default)]
    pub kind: Option<AgentKind>,
    #[serde(default)]
    pub account: Option<u32>,
}

/// A request body: JSON-decoded, then checked for what the types alone cannot say.
pub trait ApiBody: for<'de> Deserialize<'de> {
    /// Cross-field checks; the default has none.
    fn check(&self) -> Result<(), BodyError> {
        Ok(())
    }
}

impl ApiBody for CreateAgentRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.mnemonic_account().map(drop)
    }
}

impl CreateAgentRequest {
    /// The BIP39 account index for mnemonic agents, `None` for seeds; refuses `account` on seeds.
    pub fn mnemonic_account(&self) -> Result<Option<u32>, BodyError> {
        match (self.kind.unwrap_or(AgentKind::Seed), self.account) {
            (AgentKind::Seed, None) => Ok(None),
            (AgentKind::Seed, Some(_)) => {
                Err(BodyError("`account` applies only to kind \"mnemonic\"".into()))
            }
            (AgentKind::Mnemonic, account) => Ok(Some(account.unwrap_or(0))),
        }
    }
}

/// `POST /v1/grants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantRequest {
    pub wallet: Pubkey,
    pub bot_id: Uuid,
    pub agent_pubkey: Pubkey,
    pub umk: Secret32,
    pub ttl_seconds: u64,
    pub policy: Policy,
}

impl ApiBody for CreateGrantRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.policy.validate().map_err(|e| BodyError(format!("policy: {e}")))
    }
}

/// `POST /v1/sign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub grant_record: B64,
    pub agent_key_record: B64,
    pub bot_id: Uuid,
    pub transaction: B64,
    pub request_id: Uuid,
    #[serde(default)]
    pub declared_notional_cents: Option<u64>,
}

impl ApiBody for SignRequest {}

/// `POST /v1/scheduled/sign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledSignRequest {
    pub scheduled_record: B64,
    pub transaction: B64,
    pub request_id: Uuid,
}

impl ApiBody for ScheduledSignRequest {}

/// `POST /v1/grants/revoke`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub grant_id: Option<Uuid>,
    #[serde(default)]
    pub wallet: Option<Pubkey>,
}

/// What a revoke request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    Grant(Uuid),
    Wallet(Pubkey),
}

impl ApiBody for RevokeRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.target().map(drop)
    }
}

impl RevokeRequest {
    pub fn target(&self) -> Result<RevokeTarget, BodyError> {
        match (self.grant_id, self.wallet) {
            (Some(id), None) => Ok(RevokeTarget::Grant(id)),
            (None, Some(w)) => Ok(RevokeTarget::Wallet(w)),
            _ => Err(BodyError("give exactly one of `grant_id` or `wallet`".into())),
        }
    }
}

/// `POST /v1/kill-switch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchRequest {
    pub engaged: bool,
}

impl ApiBody for KillSwitchRequest {}

/// `POST /v1/sign` and `/v1/scheduled/sign` responses.
#[derive(Debug, Serialize)]
pub struct SignResponse {
    pub signature: String,
    pub transaction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
}

/// Parses a JSON body into `T` and runs its checks.
pub fn parse<T: ApiBody>(body: &[u8]) -> Result<T, BodyError> {
    if body.is_empty() {
        return Err(BodyError("the request needs a JSON body".into()));
    }
    let parsed: T =
        serde_json::from_slice(body).map_err(|e| BodyError(format!("invalid JSON body: {e}")))?;
    parsed.check()?;
    Ok(parsed)
}

/// A parsed body of any route that takes one.
#[derive(Debug)]
pub enum Body {
    CreateAgent(CreateAgentRequest),
    CreateGrant(CreateGrantRequest),
    Sign(SignRequest),
    ScheduledSign(ScheduledSignRequest),
    Revoke(RevokeRequest),
    KillSwitch(KillSwitchRequest),
}

/// Parses and checks the body of `path` exactly as the parent's route for it does.
pub fn parse_body(path: &str, body: &[u8]) -> Result<Body, BodyError> {
    Ok(match path {
        "/v1/agents" => Body::CreateAgent(parse(body)?),
        "/v1/grants" => Body::CreateGrant(parse(body)?),
        "/v1/sign" => Body::Sign(parse(body)?),
        "/v1/scheduled/sign" => Body::ScheduledSign(parse(body)?),
        "/v1/grants/revoke" => Body::Revoke(parse(body)?),
        "/v1/kill-switch" => Body::KillSwitch(parse(body)?),
        other => return Err(BodyError(format!("{other} takes no body"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_strictly() {
        let wallet = Pubkey([1; 32]).to_string();
        let umk = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
        let ok = format!(r#"{{"wallet":"{wallet}","umk":"{umk}","kind":"mnemonic","account":3}}"#);
        let Body::CreateAgent(a) = parse_body("/v1/agents", ok.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(a.mnemonic_account(), Ok(Some(3)));
        for bad in [
            format!(r#"{{"wallet":"{wallet}","umk":"{umk}","account":3}}"#),
            format!(r#"{{"wallet":"{wallet}","umk":"{umk}","extra":1}}"#),
            format!(r#"{{"wallet":"{wallet}","umk":"AAAA"}}"#),
            format!(r#"{{"wallet":"xyz","umk":"{umk}"}}"#),
            "[]".into(),
            "".into(),
        ] {
            assert!(parse_body("/v1/agents", bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_body("/v1/grants/revoke", b"{}").is_err());
        assert!(parse_body("/v1/kill-switch", br#"{"engaged":"yes"}"#).is_err());
        assert!(parse_body("/healthz", b"{}").is_err());
    }
}
