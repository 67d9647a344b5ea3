//! Request and response bodies of the parent's HTTP API (SPEC §6), and their parsing.
//!
//! JSON; bytes are standard padded base64; Solana keys and signatures base58 ([`Pubkey`],
//! [`Signature`]); 16-byte ids UUID text (any of uuid's accepted forms). Unknown fields are
//! refused, so a typo never silently falls back to a default. No body carries a secret: master
//! keys exist only inside the enclave. The body limit is enforced before parsing, by the server.
//!
//! Every body type has its OpenAPI schema (utoipa `ToSchema`, no feature flag): the parent
//! serves the document generated from them (`GET /v1/openapi.json`, `docs/openapi.json`).
//! [`schema`] holds the schemas of what `signer-types` defines, which stays free of utoipa.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod responses;
pub mod schema;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signer_types::policy::Policy;
use signer_types::pubkey::Pubkey;
use thiserror::Error;
use utoipa::ToSchema;
use uuid::Uuid;

pub use responses::*;
use schema::{PolicySchema, PubkeySchema};

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

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

/// A base58 ed25519 signature (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Signature;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base58 ed25519 signature (64 bytes)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Signature, E> {
                // 64 bytes are at most 88 base58 characters; refuse longer input unread.
                if s.len() > 88 {
                    return Err(E::custom("not a base58 64-byte signature (too long)"));
                }
                let mut out = [0u8; 64];
                match bs58::decode(s).onto(&mut out) {
                    Ok(64) => Ok(Signature(out)),
                    _ => Err(E::custom("not a base58 64-byte signature")),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// `kind` of `POST /v1/agents`: a raw ed25519 seed (default) or a BIP39 mnemonic derived at
/// `m/44'/501'/account'/0'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Seed,
    Mnemonic,
}

/// `POST /v1/vaults`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVaultRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
}

/// `POST /v1/authorizations/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportAuthorizationRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
}

/// `POST /v1/vaults/import`: the fields of the import message the wallet signed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportVaultRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
    /// The `nonce` of the authorization message the wallet signed.
    pub nonce: String,
    /// The `issued_at` of that message (Unix seconds).
    pub issued_at: u64,
    /// The wallet's ed25519 signature over the message, base58.
    pub signature: Signature,
}

/// `POST /v1/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
    /// The vault's provenance document (`provenance` of `POST /v1/vaults`).
    pub vault_provenance: B64,
    /// `seed` (default) or `mnemonic`.
    #[serde(default)]
    pub kind: Option<AgentKind>,
    /// The BIP39 account index (`mnemonic` only; default 0).
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

/// `POST /v1/authorizations/grant`: what the grant will allow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantAuthorizationRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The bot the grant is for (a UUID the backend chooses).
    pub bot_id: Uuid,
    /// The agent key the bot signs with (`agent_pubkey` of `POST /v1/agents`).
    #[schema(value_type = PubkeySchema)]
    pub agent_pubkey: Pubkey,
    /// The grant's lifetime in seconds (at most the enclave's maximum, 3600 by default).
    pub ttl_seconds: u64,
    /// The grant's limits (SPEC §7).
    #[schema(value_type = PolicySchema)]
    pub policy: Policy,
}

impl ApiBody for GrantAuthorizationRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.policy.validate().map_err(|e| BodyError(format!("policy: {e}")))
    }
}

/// `POST /v1/grants`: the same fields, the signed message's nonce and issue time, the wallet's
/// signature, and the vault (with its provenance) the grant's master key comes from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGrantRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The bot the grant is for (a UUID the backend chooses).
    pub bot_id: Uuid,
    /// The agent key the bot signs with (`agent_pubkey` of `POST /v1/agents`).
    #[schema(value_type = PubkeySchema)]
    pub agent_pubkey: Pubkey,
    /// The grant's lifetime in seconds (at most the enclave's maximum, 3600 by default).
    pub ttl_seconds: u64,
    /// The grant's limits (SPEC §7).
    #[schema(value_type = PolicySchema)]
    pub policy: Policy,
    /// The `nonce` of the authorization message the wallet signed.
    pub nonce: String,
    /// The `issued_at` of that message (Unix seconds).
    pub issued_at: u64,
    /// The wallet's ed25519 signature over the message, base58.
    pub signature: Signature,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
    /// The vault's provenance document (`provenance` of `POST /v1/vaults`).
    pub vault_provenance: B64,
}

impl ApiBody for CreateGrantRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.policy.validate().map_err(|e| BodyError(format!("policy: {e}")))
    }
}

impl ApiBody for CreateVaultRequest {}
impl ApiBody for ImportAuthorizationRequest {}
impl ApiBody for ImportVaultRequest {}

/// `POST /v1/sign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The sealed grant (`grant_record` of `POST /v1/grants`).
    pub grant_record: B64,
    /// The sealed agent key (`agent_key_record` of `POST /v1/agents`).
    pub agent_key_record: B64,
    /// The bot the grant is for (a UUID the backend chooses).
    pub bot_id: Uuid,
    /// The transaction to sign (wire bytes): legacy or v0, at most 1232 bytes, the agent a required
    /// signer.
    pub transaction: B64,
    /// Idempotency key: the same request with it again gets the same signature; another request
    /// with it is refused (`409 replayed_request`).
    pub request_id: Uuid,
    /// The transaction's value in cents (required when the policy limits notional value).
    #[serde(default)]
    pub declared_notional_cents: Option<u64>,
}

impl ApiBody for SignRequest {}

/// `POST /v1/scheduled/sign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduledSignRequest {
    /// The scheduled record the user's browser sealed to the enclave's KMS key.
    pub scheduled_record: B64,
    /// The transaction to sign (wire bytes): legacy or v0, at most 1232 bytes, the agent a required
    /// signer.
    pub transaction: B64,
    /// Idempotency key: the same request with it again gets the same signature; another request
    /// with it is refused (`409 replayed_request`).
    pub request_id: Uuid,
}

impl ApiBody for ScheduledSignRequest {}

/// `POST /v1/grants/revoke`. Unsigned (admin token): exactly one of `grant_id` or `wallet`.
/// Signed by the wallet (API token): `wallet`, exactly one of `grant_id` or `all: true`, and the
/// `nonce`, `issued_at` and `signature` of the revoke message the wallet signed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The grant.
    #[serde(default)]
    pub grant_id: Option<Uuid>,
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[serde(default)]
    #[schema(value_type = Option<PubkeySchema>)]
    pub wallet: Option<Pubkey>,
    /// `true`: every grant of the wallet (wallet-signed only).
    #[serde(default)]
    pub all: Option<bool>,
    /// The `nonce` of the authorization message the wallet signed.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The `issued_at` of that message (Unix seconds).
    #[serde(default)]
    pub issued_at: Option<u64>,
    /// The wallet's ed25519 signature over the message, base58.
    #[serde(default)]
    pub signature: Option<Signature>,
}

/// What a wallet revokes on its own signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletRevokeScope {
    Grant(Uuid),
    All,
}

/// What a revoke request targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// Admin: one record id.
    Grant(Uuid),
    /// Admin: every record of a wallet.
    Wallet(Pubkey),
    /// The wallet itself, with its signature over the revoke message.
    Signed {
        wallet: Pubkey,
        scope: WalletRevokeScope,
        nonce: String,
        issued_at: u64,
        signature: Signature,
    },
}

impl ApiBody for RevokeRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.target().map(drop)
    }
}

fn wallet_scope(grant_id: Option<Uuid>, all: Option<bool>) -> Result<WalletRevokeScope, BodyError> {
    match (grant_id, all) {
        (Some(id), None | Some(false)) => Ok(WalletRevokeScope::Grant(id)),
        (None, Some(true)) => Ok(WalletRevokeScope::All),
        _ => Err(BodyError("give exactly one of `grant_id` or `all: true`".into())),
    }
}

impl RevokeRequest {
    pub fn target(&self) -> Result<RevokeTarget, BodyError> {
        match (&self.signature, &self.nonce, self.issued_at) {
            (Some(signature), Some(nonce), Some(issued_at)) => {
                let wallet = self
                    .wallet
                    .ok_or_else(|| BodyError("a signed revocation names its `wallet`".into()))?;
                Ok(RevokeTarget::Signed {
                    wallet,
                    scope: wallet_scope(self.grant_id, self.all)?,
                    nonce: nonce.clone(),
                    issued_at,
                    signature: *signature,
                })
            }
            (None, None, None) => match (self.grant_id, self.wallet, self.all) {
                (Some(id), None, None) => Ok(RevokeTarget::Grant(id)),
                (None, Some(w), None) => Ok(RevokeTarget::Wallet(w)),
                _ => Err(BodyError(
                    "give exactly one of `grant_id` or `wallet` (or sign a revoke message: \
                     `wallet`, `grant_id` or `all`, `nonce`, `issued_at`, `signature`)"
                        .into(),
                )),
            },
            _ => Err(BodyError(
                "a signed revocation needs all of `nonce`, `issued_at` and `signature`".into(),
            )),
        }
    }
}

/// `POST /v1/authorizations/revoke`: the wallet and exactly one of `grant_id` or `all: true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAuthorizationRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The grant.
    #[serde(default)]
    pub grant_id: Option<Uuid>,
    /// `true`: every grant of the wallet (wallet-signed only).
    #[serde(default)]
    pub all: Option<bool>,
}

impl ApiBody for RevokeAuthorizationRequest {
    fn check(&self) -> Result<(), BodyError> {
        self.scope().map(drop)
    }
}

impl RevokeAuthorizationRequest {
    pub fn scope(&self) -> Result<WalletRevokeScope, BodyError> {
        wallet_scope(self.grant_id, self.all)
    }
}

/// An X25519 public key, standard padded base64 of 32 bytes.
fn x25519_key(recipient: &B64) -> Result<[u8; 32], BodyError> {
    recipient.0.as_slice().try_into().map_err(|_| {
        BodyError(format!(
            "recipient must be a 32-byte X25519 public key (base64), got {} bytes",
            recipient.0.len()
        ))
    })
}

/// `POST /v1/authorizations/export`: what to export (the vault's master key, or with
/// `agent_key_record` that agent's secret) and the X25519 key the browser generated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportAuthorizationRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
    /// The vault's provenance document (`provenance` of `POST /v1/vaults`).
    pub vault_provenance: B64,
    /// The sealed agent key (`agent_key_record` of `POST /v1/agents`).
    #[serde(default)]
    pub agent_key_record: Option<B64>,
    /// The browser's X25519 public key (32 bytes) the secret is sealed to.
    pub recipient: B64,
}

impl ApiBody for ExportAuthorizationRequest {
    fn check(&self) -> Result<(), BodyError> {
        x25519_key(&self.recipient).map(drop)
    }
}

impl ExportAuthorizationRequest {
    pub fn recipient_key(&self) -> Result<[u8; 32], BodyError> {
        x25519_key(&self.recipient)
    }
}

/// `POST /v1/export`: the same fields and the export message's `nonce`, `issued_at` and the
/// wallet's `signature`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The user's wallet, base58 (its key signs the authorization messages).
    #[schema(value_type = PubkeySchema)]
    pub wallet: Pubkey,
    /// The sealed vault record (`vault_record` of `POST /v1/vaults`).
    pub vault_record: B64,
    /// The vault's provenance document (`provenance` of `POST /v1/vaults`).
    pub vault_provenance: B64,
    /// The sealed agent key (`agent_key_record` of `POST /v1/agents`).
    #[serde(default)]
    pub agent_key_record: Option<B64>,
    /// The browser's X25519 public key (32 bytes) the secret is sealed to.
    pub recipient: B64,
    /// The `nonce` of the authorization message the wallet signed.
    pub nonce: String,
    /// The `issued_at` of that message (Unix seconds).
    pub issued_at: u64,
    /// The wallet's ed25519 signature over the message, base58.
    pub signature: Signature,
}

impl ApiBody for ExportRequest {
    fn check(&self) -> Result<(), BodyError> {
        x25519_key(&self.recipient).map(drop)
    }
}

impl ExportRequest {
    pub fn recipient_key(&self) -> Result<[u8; 32], BodyError> {
        x25519_key(&self.recipient)
    }
}

/// `POST /v1/kill-switch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchRequest {
    /// `true` stops all signing on this enclave; `false` releases it.
    pub engaged: bool,
}

impl ApiBody for KillSwitchRequest {}

/// `POST /v1/sign` and `/v1/scheduled/sign` responses (with `X-Signer-Route`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignResponse {
    /// The agent's signature, base58.
    #[schema(value_type = Signature)]
    pub signature: String,
    /// The transaction with the agent's signature slot filled.
    pub transaction: B64,
    /// The grant that allowed it (`/v1/sign` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub grant_id: Option<Uuid>,
    /// The decision's receipt (`docs/receipts.md`): store it beside the transaction. Absent for
    /// an identical retry (the first answer carried it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub receipt: Option<B64>,
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
    CreateVault(CreateVaultRequest),
    ImportAuthorization(ImportAuthorizationRequest),
    ImportVault(ImportVaultRequest),
    CreateAgent(CreateAgentRequest),
    GrantAuthorization(GrantAuthorizationRequest),
    CreateGrant(CreateGrantRequest),
    Sign(SignRequest),
    ScheduledSign(ScheduledSignRequest),
    Revoke(RevokeRequest),
    RevokeAuthorization(RevokeAuthorizationRequest),
    ExportAuthorization(ExportAuthorizationRequest),
    Export(ExportRequest),
    KillSwitch(KillSwitchRequest),
    Handover(HandoverRequest),
    ClusterCard(cluster::CardRequest),
    ClusterFound(cluster::FoundRequest),
    ClusterJoin(cluster::JoinRequest),
    ClusterAdmit(cluster::AdmitRequest),
    ClusterProve(cluster::ProveRequest),
}

/// Parses and checks the body of `path` exactly as the parent's route for it does.
pub fn parse_body(path: &str, body: &[u8]) -> Result<Body, BodyError> {
    Ok(match path {
        "/v1/vaults" => Body::CreateVault(parse(body)?),
        "/v1/authorizations/import" => Body::ImportAuthorization(parse(body)?),
        "/v1/vaults/import" => Body::ImportVault(parse(body)?),
        "/v1/agents" => Body::CreateAgent(parse(body)?),
        "/v1/authorizations/grant" => Body::GrantAuthorization(parse(body)?),
        "/v1/grants" => Body::CreateGrant(parse(body)?),
        "/v1/sign" => Body::Sign(parse(body)?),
        "/v1/scheduled/sign" => Body::ScheduledSign(parse(body)?),
        "/v1/grants/revoke" => Body::Revoke(parse(body)?),
        "/v1/authorizations/revoke" => Body::RevokeAuthorization(parse(body)?),
        "/v1/authorizations/export" => Body::ExportAuthorization(parse(body)?),
        "/v1/export" => Body::Export(parse(body)?),
        "/v1/kill-switch" => Body::KillSwitch(parse(body)?),
        "/v1/admin/handover" => Body::Handover(parse(body)?),
        "/v1/admin/cluster/card" => Body::ClusterCard(parse(body)?),
        "/v1/admin/cluster/found" => Body::ClusterFound(parse(body)?),
        "/v1/admin/cluster/join" => Body::ClusterJoin(parse(body)?),
        "/v1/admin/cluster/admit" => Body::ClusterAdmit(parse(body)?),
        "/v1/admin/cluster/prove" => Body::ClusterProve(parse(body)?),
        other => return Err(BodyError(format!("{other} takes no body"))),
    })
}

/// `POST /v1/admin/handover`: the successor enclave to hand the decision state to, as the
/// parent reaches it (`vsock:CID:PORT` or `unix:/path`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoverRequest {
    /// The successor enclave as the parent reaches it: `vsock:CID:PORT` or `unix:/path`.
    pub successor: String,
    /// The successor's measurements (`nitro-cli` JSON) when its image differs (an upgrade);
    /// absent for a restart of the same image.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub measurements: Option<serde_json::Value>,
}

impl ApiBody for HandoverRequest {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_strictly() {
        let wallet = Pubkey([1; 32]).to_string();
        let record = base64::engine::general_purpose::STANDARD.encode([2u8; 80]);
        let ok = format!(
            r#"{{"wallet":"{wallet}","vault_record":"{record}","vault_provenance":"{record}","kind":"mnemonic","account":3}}"#
        );
        let Body::CreateAgent(a) = parse_body("/v1/agents", ok.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(a.mnemonic_account(), Ok(Some(3)));
        for bad in [
            format!(
                r#"{{"wallet":"{wallet}","vault_record":"{record}","vault_provenance":"{record}","account":3}}"#
            ),
            format!(
                r#"{{"wallet":"{wallet}","vault_record":"{record}","vault_provenance":"{record}","extra":1}}"#
            ),
            format!(
                r#"{{"wallet":"{wallet}","vault_record":"{record}","vault_provenance":"{record}","umk":"{record}"}}"#
            ),
            format!(r#"{{"wallet":"{wallet}","vault_record":"{record}"}}"#),
            format!(
                r#"{{"wallet":"xyz","vault_record":"{record}","vault_provenance":"{record}"}}"#
            ),
            "[]".into(),
            "".into(),
        ] {
            assert!(parse_body("/v1/agents", bad.as_bytes()).is_err(), "{bad}");
        }
        let sig = bs58::encode([7u8; 64]).into_string();
        let import = format!(
            r#"{{"wallet":"{wallet}","vault_record":"{record}","nonce":"ab","issued_at":5,"signature":"{sig}"}}"#
        );
        let Body::ImportVault(i) = parse_body("/v1/vaults/import", import.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(i.signature, Signature([7; 64]));
        let short = bs58::encode([7u8; 63]).into_string();
        assert!(parse_body("/v1/vaults/import", import.replace(&sig, &short).as_bytes()).is_err());
        assert!(parse_body("/v1/vaults", br#"{"wallet":"x"}"#).is_err());
        assert!(parse_body("/v1/grants/revoke", b"{}").is_err());
        assert!(parse_body("/v1/kill-switch", br#"{"engaged":"yes"}"#).is_err());
        assert!(parse_body("/healthz", b"{}").is_err());
    }
}
