//! Response bodies of the parent's HTTP API (SPEC §6) and the problem+json error body.

use std::collections::BTreeMap;

use serde::Serialize;
use signer_types::ids::EnclaveId;
use signer_types::policy::Registry;
use signer_types::pubkey::Pubkey;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::B64;
use crate::schema::{EnclaveIdSchema, ErrorCodeSchema, PubkeySchema, RegistrySchema, RuleSchema};

/// The error codes the parent itself answers with (the HTTP layer and KMS); every other code is
/// a `signer_types::ErrorCode`, shared with the enclave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpCode {
    /// Missing or wrong bearer token, or an API token on an admin route.
    Unauthorized,
    /// No such route.
    NotFound,
    /// The route takes another method.
    MethodNotAllowed,
    /// The request did not arrive in time.
    RequestTimeout,
    /// The body is over the limit.
    PayloadTooLarge,
    /// KMS refused the attested call.
    KmsAccessDenied,
}

impl HttpCode {
    pub const ALL: [HttpCode; 6] = [
        Self::Unauthorized,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::KmsAccessDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::KmsAccessDenied => "kms_access_denied",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::KmsAccessDenied => 502,
        }
    }

    /// The problem+json `title`.
    pub fn title(self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::RequestTimeout => "Request timeout",
            Self::PayloadTooLarge => "Payload too large",
            Self::KmsAccessDenied => "KMS access denied",
        }
    }
}

/// An error (`application/problem+json`, RFC 9457). `rule`, `limit`, `requested`, `used` and
/// `subject` come only with `policy_denied`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(json!({
    "type": "urn:signer:error:policy_denied",
    "title": "Denied by policy",
    "status": 403,
    "detail": "transfer of 1000005000 lamports exceeds max_lamports_per_tx 1000000000",
    "code": "policy_denied",
    "rule": "max_lamports_per_tx",
    "limit": 1_000_000_000u64,
    "requested": 1_000_005_000u64
})))]
pub struct Problem<'a> {
    /// `urn:signer:error:<code>`.
    #[serde(rename = "type")]
    #[schema(rename = "type", examples("urn:signer:error:bad_request"))]
    pub kind: String,
    /// A short human title of the code.
    pub title: &'a str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What happened, for a human; never parse it.
    pub detail: &'a str,
    #[schema(value_type = ErrorCodeSchema)]
    pub code: &'a str,
    /// `policy_denied`: the rule that refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RuleSchema, required = false)]
    pub rule: Option<&'a str>,
    /// `policy_denied`: the rule's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub limit: Option<u64>,
    /// `policy_denied`: what the request asked for, in the rule's unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub requested: Option<u64>,
    /// `policy_denied`: what was already used in the rule's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub used: Option<u64>,
    /// `policy_denied`: the mint, program or account the rule is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub subject: Option<&'a str>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process is up.
    #[schema(examples("ok"))]
    pub status: &'static str,
}

/// Whether the KMS execution key can open records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KmsKeyStatus {
    Enabled,
    /// Disabled (the operator's hard stop) or pending deletion: no new grant can open.
    Disabled,
    /// KMS did not answer.
    Unreachable,
}

/// `GET /readyz` (200 when ready, else 503 with the same body).
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// The enclave is attested and connected, the KMS key enabled, the kill switch off and no
    /// handover under way.
    pub ready: bool,
    pub enclave_connected: bool,
    pub enclave_attested: bool,
    /// Why the last attestation check failed, if it did.
    pub attestation_error: Option<String>,
    pub kms_reachable: bool,
    pub kms_key: KmsKeyStatus,
    /// Whether the kill switch is engaged; null when the enclave did not answer.
    pub kill_switch: Option<bool>,
    /// The successor this enclave handed its state to, if it did (it decides nothing more).
    #[schema(value_type = Option<EnclaveIdSchema>)]
    pub handed_over_to: Option<EnclaveId>,
    /// A handover under way, if any.
    pub handover: Option<HandoverProgress>,
}

/// Where a handover stands on the predecessor.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoverProgress {
    #[schema(value_type = EnclaveIdSchema)]
    pub successor: EnclaveId,
    /// `prepared` (still deciding), `exported` (frozen, resumable or abortable) or `committed`.
    pub stage: String,
    pub chunks: u32,
}

/// `GET /v1/attestation`: a fresh attestation document of the enclave (verify it with
/// `attest verify`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttestationResponse {
    /// The COSE_Sign1 attestation document.
    pub document: B64,
    /// The enclave's recipient public key the document binds.
    pub public_key: B64,
    /// The document's PCRs: index → hex.
    pub pcrs: BTreeMap<String, String>,
    /// When the NSM signed the document (ms since the Unix epoch).
    pub timestamp_ms: u64,
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
}

/// `GET /v1/enclave`: which enclave instance this parent talks to (each instance's answer is the
/// load balancer's routing table).
#[derive(Debug, Serialize, ToSchema)]
pub struct EnclaveIdentity {
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// The instances whose records this enclave decides (itself, and predecessors it took over).
    #[schema(value_type = Vec<EnclaveIdSchema>)]
    pub answers_for: Vec<EnclaveId>,
    /// When the instance started (Unix seconds).
    pub started_at: u64,
    /// The KMS execution key pinned in the measured config (SPKI DER): the only key a client
    /// seals to.
    pub kms_public_key: B64,
    /// The tokens and programs messages name.
    #[schema(value_type = RegistrySchema)]
    pub registry: Registry,
    /// This boot's receipt checkpoint key (ed25519, 32 bytes): bound in every attestation
    /// document the instance gives (`user_data`, `docs/receipts.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub checkpoint_key: Option<B64>,
}

/// `POST /v1/vaults`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VaultCreated {
    pub vault_id: Uuid,
    /// The sealed vault record: store it.
    pub vault_record: B64,
    /// The AWS-signed provenance document of the record (`attest provenance`).
    pub provenance: B64,
}

/// A message for the user's wallet to sign (`POST /v1/authorizations/…`): send back its
/// `nonce`, `issued_at` and the wallet's signature.
#[derive(Debug, Serialize, ToSchema)]
pub struct Authorization {
    /// The text the wallet signs (docs/authorization.md).
    pub message: String,
    pub nonce: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; the message is refused after it.
    pub expires_at: u64,
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
}

/// `POST /v1/authorizations/grant`: the message, and the SHA-256 of the policy's canonical
/// bytes it binds.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantAuthorization {
    pub message: String,
    pub nonce: String,
    pub issued_at: u64,
    pub expires_at: u64,
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// Hex.
    pub policy_sha256: String,
}

/// `POST /v1/vaults/import`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VaultImported {
    pub vault_id: Uuid,
    pub provenance: B64,
}

/// `POST /v1/agents`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentCreated {
    #[schema(value_type = PubkeySchema)]
    pub agent_pubkey: Pubkey,
    /// The sealed agent-key record: store it.
    pub agent_key_record: B64,
    pub agent_id: Uuid,
    /// The provenance document binding the agent key to the vault.
    pub provenance: B64,
}

/// `POST /v1/grants` (with `X-Signer-Route`).
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantCreated {
    pub grant_id: Uuid,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The sealed grant record: send it with every signing request.
    pub grant_record: B64,
    /// The instance that holds the grant's decision state (also `X-Signer-Route`).
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// The decision's receipt (`docs/receipts.md`): store it beside the grant. Absent when the
    /// same signature was sent again (the first answer carried it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub receipt: Option<B64>,
}

/// `GET /v1/receipts`: a page of decision receipts (`docs/receipts.md`), and the latest
/// checkpoint of the chain, signed by the answering instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptsPage {
    /// The instance that answered and signs the checkpoint.
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// The chain's decider: the instance, or its cluster.
    #[schema(value_type = EnclaveIdSchema)]
    pub decider: EnclaveId,
    /// The answering instance's checkpoint key (ed25519, 32 bytes), bound in its documents.
    #[schema(value_type = String, format = Byte)]
    pub checkpoint_key: B64,
    /// A fresh attestation document of the answering instance whose `user_data` binds
    /// `checkpoint_key` (`attest receipts --document`).
    #[schema(value_type = String, format = Byte)]
    pub document: B64,
    /// Receipts after `after`, ascending.
    #[schema(value_type = Vec<String>)]
    pub receipts: Vec<B64>,
    /// The latest signed checkpoint (145 bytes).
    #[schema(value_type = Option<String>, format = Byte)]
    pub checkpoint: Option<B64>,
    /// Receipts after `gap.after` and before `gap.oldest` were evicted from the ring.
    pub gap: Option<ReceiptGap>,
    /// Ask `after=next_after` for the next page.
    pub next_after: u64,
    /// The page was full: more follow.
    pub more: bool,
}

/// Receipts no longer kept (see [`ReceiptsPage::gap`]).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptGap {
    pub after: u64,
    pub oldest: u64,
}

/// What a revocation named.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RevokedTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = PubkeySchema, required = false)]
    pub wallet: Option<Pubkey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub grant_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub all: Option<bool>,
}

/// `POST /v1/grants/revoke`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: RevokedTarget,
    /// Opened grants dropped from the enclave's memory.
    pub dropped_from_memory: u64,
}

/// `POST /v1/export`: the secret, HPKE-sealed to the browser's key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Exported {
    /// `vault`, `seed` or `mnemonic`.
    pub kind: String,
    pub record_id: Uuid,
    /// The X25519 key it is sealed to.
    pub recipient: B64,
    /// The HPKE encapsulated key.
    pub enc: B64,
    pub ciphertext: B64,
    /// The HPKE suite and info.
    pub hpke: &'static str,
}

/// `POST /v1/kill-switch`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KillSwitchState {
    pub engaged: bool,
}

/// `POST /v1/admin/handover`: what a handover did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct HandoverReport {
    #[schema(value_type = EnclaveIdSchema)]
    pub predecessor: EnclaveId,
    #[schema(value_type = EnclaveIdSchema)]
    pub successor: EnclaveId,
    /// The instances the successor now answers for.
    #[schema(value_type = Vec<EnclaveIdSchema>)]
    pub answers_for: Vec<EnclaveId>,
    /// Request ids carried over.
    pub request_ids: u64,
    /// Spend counters carried over.
    pub counters: u64,
    pub chunks: u32,
    pub bytes: usize,
    pub millis: u64,
}

/// `POST /v1/admin/handover/abort`: what an abort did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct AbortReport {
    /// The enclave that decides (again, or still).
    #[schema(value_type = EnclaveIdSchema)]
    pub enclave_id: EnclaveId,
    /// The successor the abandoned handover was meant for; none if nothing was under way.
    #[schema(value_type = Option<EnclaveIdSchema>)]
    pub abandoned_successor: Option<EnclaveId>,
}
