//! KMS key policies bound to enclave measurements: generation, and evaluation of a `Decrypt`
//! carrying an attestation document ("would KMS allow this?").
//!
//! The generated policy (SPEC §12):
//! - key administration for the account (or `--admin-arn`): an explicit list of actions
//!   ([`ADMIN_ACTIONS`]), no wildcards, **without** `Decrypt`, `ReEncrypt*`, `Encrypt`,
//!   `GenerateDataKey*`, `CreateGrant`, `ReplicateKey` or `ScheduleKeyDeletion`. It keeps
//!   `PutKeyPolicy` (the upgrade runbook rewrites the policy), so whoever may call it stays in the
//!   trusted base, and `DisableKey`/`EnableKey`, the operators' reversible hard stop;
//! - an explicit `Deny` of [`BREAK_GLASS_ONLY_ACTIONS`] (`ScheduleKeyDeletion`,
//!   `DeleteImportedKeyMaterial`, `ReplicateKey`: the operations that destroy the key material or
//!   copy it under a policy the caller chooses) to every principal whose `aws:PrincipalArn` is not
//!   the break-glass role (`ArnNotEquals`), and an `Allow` of [`BREAK_GLASS_ACTIONS`] to that role.
//!   Without a break-glass role the `Deny` has no exception: nobody may delete or replicate the
//!   key until a policy naming one is put (fail closed: forgetting the role never leaves deletion
//!   to every administrator);
//! - `GetPublicKey`/`DescribeKey` for the parent's role (it fetches the key to pin it);
//! - `Decrypt` for the parent's role only with `StringEqualsIgnoreCase` on
//!   `kms:RecipientAttestation:ImageSha384` (= PCR0) and any further pinned `PCR<n>`;
//! - an explicit `Deny` of `Decrypt` for everyone when the request has no attestation (`Null`), so
//!   attestation can never become optional through IAM policies or grants;
//! - an explicit `Deny` of `Decrypt` for everyone whose attested measurements differ
//!   (`StringNotEqualsIgnoreCase`, one statement per pinned value, because keys inside one
//!   condition block are AND-ed), and of `ReEncrypt*`.
//!
//! The final policy cannot exist when the key is created: it pins PCR0, and PCR0 measures the
//! enclave config, which contains this key's public key. [`generate_interim`] is the policy the
//! key is created with instead: the same administration statement (so the administrators can
//! read the public key and later put the final policy), the same break-glass statements, and an
//! explicit `Deny` of `Decrypt` and `ReEncrypt*` to everyone, so KMS's default policy ("the
//! account may do `kms:*`") never exists.
//!
//! Evaluation follows IAM semantics for the subset we generate and the KMS emulator accepts:
//! explicit Deny wins, then any Allow, else implicit deny. Supported condition operators:
//! `StringEquals`, `StringEqualsIgnoreCase`, `StringNotEquals`, `StringNotEqualsIgnoreCase`,
//! `ArnEquals`, `ArnNotEquals` (case-sensitive, each of the six colon-separated parts compared
//! with `*`/`?` wildcards, as IAM does) and `Null`. Anything else (and `NotAction`/`NotPrincipal`)
//! is refused when the policy is parsed, which is safer than guessing. `aws:PrincipalArn` is
//! taken from the request's context, else derived from its principal ([`principal_arn`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use thiserror::Error;

use crate::document::AttestationDocument;

/// The condition key KMS fills with PCR0 of a `Recipient` attestation document.
pub const IMAGE_SHA384_KEY: &str = "kms:RecipientAttestation:ImageSha384";

/// The condition key KMS fills with PCR`index`.
pub fn pcr_condition_key(index: u8) -> String {
    format!("kms:RecipientAttestation:PCR{index}")
}

/// The global condition key IAM fills with the caller's ARN (for a role session: the role's ARN).
pub const PRINCIPAL_ARN_KEY: &str = "aws:PrincipalArn";

/// Key-administration actions granted to the administrators, listed one by one (a wildcard
/// such as `kms:Put*` or `kms:Create*` would also grant whatever KMS adds under that prefix, and
/// `kms:CreateGrant`). Deliberately excludes every action that yields or moves plaintext or key
/// material: `Decrypt`, `ReEncrypt*`, `Encrypt`, `GenerateDataKey*`, `CreateGrant`,
/// `ReplicateKey`; and `ScheduleKeyDeletion`, which is irreversible once the waiting period ends
/// (only the break-glass role may call it). `PutKeyPolicy` stays: the upgrade runbook needs it.
/// `DisableKey`/`EnableKey` stay: disabling is the reversible hard stop. `CancelKeyDeletion`
/// stays: undoing a scheduled deletion only ever saves the key.
pub const ADMIN_ACTIONS: [&str; 17] = [
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:ListGrants",
    "kms:RevokeGrant",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:UpdateKeyDescription",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:CancelKeyDeletion",
];

/// Actions explicitly denied to every principal but the break-glass role:
/// - `ScheduleKeyDeletion`: once the waiting period ends, every record sealed to the key is lost;
/// - `DeleteImportedKeyMaterial`: makes the key unusable at once, with no waiting period (the
///   keys `scripts/kms-setup.sh` creates have KMS-generated material, so this only matters if a
///   key is ever created with imported material; denying it costs nothing);
/// - `ReplicateKey`: copies the key material to another Region under a key policy the caller
///   writes, which could allow a plain `Decrypt` there.
///
/// An explicit `Deny` also binds IAM policies (an IAM administrator's `kms:*`), so a later
/// statement or IAM grant cannot hand these back to the administrators by mistake.
pub const BREAK_GLASS_ONLY_ACTIONS: [&str; 3] =
    ["kms:ScheduleKeyDeletion", "kms:DeleteImportedKeyMaterial", "kms:ReplicateKey"];

/// Actions the key policy allows the break-glass role: schedule (and cancel) the deletion,
/// replicate the key into another Region, and see the key's state.
pub const BREAK_GLASS_ACTIONS: [&str; 4] =
    ["kms:DescribeKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:ReplicateKey"];

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KeyPolicyError {
    #[error("`{0}` is not an IAM role or user ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)")]
    Arn(String),
    #[error("PCR{0} is pinned but not present in the measurements")]
    MissingPcr(u8),
    #[error("PCR0 (the image hash) must always be pinned")]
    Pcr0NotPinned,
    #[error("key policy JSON: {0}")]
    Json(String),
    #[error("key policy statement {index}: {reason}")]
    Unsupported { index: usize, reason: String },
    #[error(
        "a key administrator is needed: give the parent's role ARN (its account root) or an admin ARN"
    )]
    NoAdministrator,
    #[error(
        "break-glass principal `{0}` must be an IAM role ARN without wildcards (arn:PARTITION:iam::ACCOUNT:role/NAME): it is compared with aws:PrincipalArn"
    )]
    BreakGlassArn(String),
    #[error(
        "break-glass role `{0}` is also the key administrator or the parent's role: it must be a separate role"
    )]
    BreakGlassNotSeparate(String),
}

/// Inputs for [`generate`].
#[derive(Clone, Debug)]
pub struct KeyPolicyParams<'a> {
    /// The role the parent daemon runs as (it calls `Decrypt` with the enclave's attestation).
    pub role_arn: &'a str,
    /// Measurements (PCR index → value), one map per allowed image: several during a rotation
    /// (old and new image both allowed), otherwise one.
    pub pcrs: &'a [BTreeMap<u8, Vec<u8>>],
    /// Indexes to pin; must include 0.
    pub pin: &'a [u8],
    /// Key administrator; defaults to the role's account root.
    pub admin_arn: Option<&'a str>,
    /// A backend role allowed to `Encrypt` (symmetric keys only, SPEC §4 wrap_alg 2).
    pub encrypt_role_arn: Option<&'a str>,
    /// The only role that may schedule the key's deletion or replicate it
    /// ([`BREAK_GLASS_ONLY_ACTIONS`]); `None` denies those to everyone.
    pub break_glass_role_arn: Option<&'a str>,
}

struct Arn<'a> {
    partition: &'a str,
    account: &'a str,
}

fn parse_principal_arn(arn: &str) -> Result<Arn<'_>, KeyPolicyError> {
    let bad = || KeyPolicyError::Arn(arn.to_string());
    let mut parts = arn.splitn(6, ':');
    let (
        Some("arn"),
        Some(partition),
        Some("iam" | "sts"),
        Some(""),
        Some(account),
        Some(resource),
    ) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if partition.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
        || resource.is_empty()
    {
        return Err(bad());
    }
    Ok(Arn { partition, account })
}

/// The key administrator: `admin_arn`, else the account root of `role_arn`.
fn administrator(
    role_arn: Option<&str>,
    admin_arn: Option<&str>,
) -> Result<String, KeyPolicyError> {
    if let Some(admin) = admin_arn {
        parse_principal_arn(admin)?;
        return Ok(admin.to_string());
    }
    let role = role_arn.ok_or(KeyPolicyError::NoAdministrator)?;
    let arn = parse_principal_arn(role)?;
    Ok(format!("arn:{}:iam::{}:root", arn.partition, arn.account))
}

/// Validates the break-glass role: an IAM role ARN (it is compared with `aws:PrincipalArn`, which
/// for a role session is the role's ARN), no wildcards (`ArnNotEquals` would expand them), and
/// none of the other principals of the policy (`others`), or the separation would be void.
fn break_glass_role<'a>(
    arn: Option<&'a str>,
    others: &[&str],
) -> Result<Option<&'a str>, KeyPolicyError> {
    let Some(arn) = arn else { return Ok(None) };
    let bad = || KeyPolicyError::BreakGlassArn(arn.to_string());
    parse_principal_arn(arn).map_err(|_| bad())?;
    let mut parts = arn.splitn(6, ':');
    let service = parts.nth(2);
    let resource = parts.nth(2).unwrap_or_default();
    if service != Some("iam")
        || !resource.starts_with("role/")
        || resource.len() <= "role/".len()
        || resource.ends_with('/')
        || arn.contains(['*', '?'])
    {
        return Err(bad());
    }
    if others.contains(&arn) {
        return Err(KeyPolicyError::BreakGlassNotSeparate(arn.to_string()));
    }
    Ok(Some(arn))
}

/// The break-glass statements: an `Allow` of [`BREAK_GLASS_ACTIONS`] to the role (when there is
/// one) and a `Deny` of [`BREAK_GLASS_ONLY_ACTIONS`] to every other principal (everyone when
/// there is none).
fn break_glass_statements(role: Option<&str>) -> Vec<Value> {
    match role {
        Some(role) => vec![
            json!({
                "Sid": "BreakGlassDeletesOrReplicatesTheKey",
                "Effect": "Allow",
                "Principal": {"AWS": role},
                "Action": BREAK_GLASS_ACTIONS,
                "Resource": "*"
            }),
            json!({
                "Sid": "DenyKeyDeletionExceptBreakGlass",
                "Effect": "Deny",
                "Principal": "*",
                "Action": BREAK_GLASS_ONLY_ACTIONS,
                "Resource": "*",
                "Condition": {"ArnNotEquals": {PRINCIPAL_ARN_KEY: role}}
            }),
        ],
        None => vec![json!({
            "Sid": "DenyKeyDeletionToEveryone",
            "Effect": "Deny",
            "Principal": "*",
            "Action": BREAK_GLASS_ONLY_ACTIONS,
            "Resource": "*"
        })],
    }
}

fn administration_statement(admin: &str) -> Value {
    json!({
        "Sid": "KeyAdministrationWithoutPlaintext",
        "Effect": "Allow",
        "Principal": {"AWS": admin},
        "Action": ADMIN_ACTIONS,
        "Resource": "*"
    })
}

/// [`generate_interim_with`] without a break-glass role: nobody may delete or replicate the key.
pub fn generate_interim(
    role_arn: Option<&str>,
    admin_arn: Option<&str>,
) -> Result<Value, KeyPolicyError> {
    generate_interim_with(role_arn, admin_arn, None)
}

/// The policy a key is created with, before the enclave image (and so the final policy) can
/// exist: administration for `admin_arn` (default: the account root of `role_arn`), the
/// break-glass statements for `break_glass_role_arn`, and an explicit `Deny` of `Decrypt` and
/// `ReEncrypt*` to everyone, whatever the request carries.
pub fn generate_interim_with(
    role_arn: Option<&str>,
    admin_arn: Option<&str>,
    break_glass_role_arn: Option<&str>,
) -> Result<Value, KeyPolicyError> {
    if let Some(role) = role_arn {
        parse_principal_arn(role)?;
    }
    let admin = administrator(role_arn, admin_arn)?;
    let others: Vec<&str> = [Some(admin.as_str()), role_arn].into_iter().flatten().collect();
    let break_glass = break_glass_role(break_glass_role_arn, &others)?;
    let mut statements = vec![administration_statement(&admin)];
    statements.extend(break_glass_statements(break_glass));
    statements.push(json!({
        "Sid": "NoDecryptUntilTheAttestedPolicy",
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["kms:Decrypt", "kms:ReEncrypt*"],
        "Resource": "*"
    }));
    Ok(json!({
        "Version": "2012-10-17",
        "Id": "signer-enclave-execution-key-interim",
        "Statement": statements
    }))
}

/// Builds the key policy described in the module docs.
pub fn generate(params: &KeyPolicyParams<'_>) -> Result<Value, KeyPolicyError> {
    parse_principal_arn(params.role_arn)?;
    let admin = administrator(Some(params.role_arn), params.admin_arn)?;
    if let Some(encrypt) = params.encrypt_role_arn {
        parse_principal_arn(encrypt)?;
    }
    let others: Vec<&str> = [Some(admin.as_str()), Some(params.role_arn), params.encrypt_role_arn]
        .into_iter()
        .flatten()
        .collect();
    let break_glass = break_glass_role(params.break_glass_role_arn, &others)?;
    if !params.pin.contains(&0) {
        return Err(KeyPolicyError::Pcr0NotPinned);
    }
    if params.pcrs.is_empty() {
        return Err(KeyPolicyError::MissingPcr(0));
    }
    // Index → allowed values (one per image, duplicates removed, order kept).
    let mut pinned: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for measurements in params.pcrs {
        for index in params.pin {
            let value =
                hex::encode(measurements.get(index).ok_or(KeyPolicyError::MissingPcr(*index))?);
            let values = pinned.entry(*index).or_default();
            if !values.contains(&value) {
                values.push(value);
            }
        }
    }
    let one_or_many = |values: &Vec<String>| match values.as_slice() {
        [single] => Value::String(single.clone()),
        many => Value::Array(many.iter().cloned().map(Value::String).collect()),
    };
    let condition_key = |index: u8| {
        if index == 0 { IMAGE_SHA384_KEY.to_string() } else { pcr_condition_key(index) }
    };

    let mut allow_conditions = serde_json::Map::new();
    for (index, values) in &pinned {
        allow_conditions.insert(condition_key(*index), one_or_many(values));
    }
    let mut statements = vec![administration_statement(&admin)];
    statements.extend(break_glass_statements(break_glass));
    statements.extend([
        json!({
            "Sid": "ParentReadsPublicKey",
            "Effect": "Allow",
            "Principal": {"AWS": params.role_arn},
            "Action": ["kms:GetPublicKey", "kms:DescribeKey"],
            "Resource": "*"
        }),
        json!({
            "Sid": "AttestedEnclaveDecrypt",
            "Effect": "Allow",
            "Principal": {"AWS": params.role_arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringEqualsIgnoreCase": allow_conditions}
        }),
    ]);
    if let Some(encrypt) = params.encrypt_role_arn {
        statements.push(json!({
            "Sid": "BackendEncryptsGrantKeys",
            "Effect": "Allow",
            "Principal": {"AWS": encrypt},
            "Action": "kms:Encrypt",
            "Resource": "*",
            "Condition": {"Null": {"kms:EncryptionContext:aad_sha256": "false"}}
        }));
    }
    statements.push(json!({
        "Sid": "DenyDecryptWithoutAttestation",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"Null": {IMAGE_SHA384_KEY: "true"}}
    }));
    // A negated operator with several values denies when the value equals none of them.
    for (index, values) in &pinned {
        statements.push(json!({
            "Sid": format!("DenyDecryptForOtherPcr{index}"),
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringNotEqualsIgnoreCase": {condition_key(*index): one_or_many(values)}}
        }));
    }
    statements.push(json!({
        "Sid": "DenyReEncrypt",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:ReEncrypt*",
        "Resource": "*"
    }));
    Ok(json!({
        "Version": "2012-10-17",
        "Id": "signer-enclave-execution-key",
        "Statement": statements
    }))
}

/// Allow or Deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A condition operator we evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringNotEquals,
    StringNotEqualsIgnoreCase,
    ArnEquals,
    ArnNotEquals,
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEquals" => Self::StringNotEquals,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
            "ArnEquals" => Self::ArnEquals,
            "ArnNotEquals" => Self::ArnNotEquals,
            "Null" => Self::Null,
            _ => return None,
        })
    }

    /// The operator's policy-language name.
    pub fn name(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::ArnEquals => "ArnEquals",
            Self::ArnNotEquals => "ArnNotEquals",
            Self::Null => "Null",
        }
    }

    fn matches(self, expected: &[String], actual: Option<&str>) -> bool {
        let eq = |a: &str, b: &str| a == b;
        let eq_ic = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match (self, actual) {
            (Self::StringEquals, Some(a)) => expected.iter().any(|e| eq(e, a)),
            (Self::StringEqualsIgnoreCase, Some(a)) => expected.iter().any(|e| eq_ic(e, a)),
            (Self::ArnEquals, Some(a)) => expected.iter().any(|e| arn_match(e, a)),
            (Self::StringEquals | Self::StringEqualsIgnoreCase | Self::ArnEquals, None) => false,
            (Self::ArnNotEquals, Some(a)) => !expected.iter().any(|e| arn_match(e, a)),
            (Self::StringNotEquals, Some(a)) => !expected.iter().any(|e| eq(e, a)),
            (Self::StringNotEqualsIgnoreCase, Some(a)) => !expected.iter().any(|e| eq_ic(e, a)),
            // Negated operators match when the key is absent (IAM semantics).
            (
                Self::StringNotEquals | Self::StringNotEqualsIgnoreCase | Self::ArnNotEquals,
                None,
            ) => true,
            (Self::Null, actual) => {
                let want_absent = expected.iter().any(|e| e.eq_ignore_ascii_case("true"));
                want_absent == actual.is_none()
            }
        }
    }
}

/// One `operator: {key: values}` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub operator: Operator,
    pub key: String,
    pub values: Vec<String>,
}

/// A parsed statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `None` = `"*"`.
    pub principals: Option<Vec<String>>,
    pub actions: Vec<String>,
    pub conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPolicy {
    pub statements: Vec<Statement>,
}

fn string_or_array(value: &Value, what: &str, index: usize) -> Result<Vec<String>, KeyPolicyError> {
    let unsupported = || KeyPolicyError::Unsupported {
        index,
        reason: format!("{what} must be a string or an array of strings"),
    };
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(unsupported()),
            })
            .collect(),
        _ => Err(unsupported()),
    }
}

impl KeyPolicy {
    /// Parses a key policy document, refusing constructs we do not evaluate.
    pub fn parse(json: &str) -> Result<Self, KeyPolicyError> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| KeyPolicyError::Json(e.to_string()))?;
        let statements = match root.get("Statement") {
            Some(Value::Array(items)) => items.clone(),
            Some(single @ Value::Object(_)) => vec![single.clone()],
            _ => return Err(KeyPolicyError::Json("missing \"Statement\"".into())),
        };
        let statements = statements
            .iter()
            .enumerate()
            .map(|(index, s)| Self::parse_statement(index, s))
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    fn parse_statement(index: usize, s: &Value) -> Result<Statement, KeyPolicyError> {
        let unsupported =
            |reason: &str| KeyPolicyError::Unsupported { index, reason: reason.into() };
        let Value::Object(obj) = s else { return Err(unsupported("not an object")) };
        for key in obj.keys() {
            if !["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
                .contains(&key.as_str())
            {
                return Err(unsupported(&format!("unsupported element {key}")));
            }
        }
        let effect = match obj.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            _ => return Err(unsupported("Effect must be Allow or Deny")),
        };
        let principals = match obj.get("Principal") {
            Some(Value::String(s)) if s == "*" => None,
            Some(Value::Object(p)) => match p.get("AWS") {
                Some(Value::String(s)) if s == "*" => None,
                Some(v) => Some(string_or_array(v, "Principal.AWS", index)?),
                None => return Err(unsupported("Principal must name AWS principals")),
            },
            _ => return Err(unsupported("Principal must be \"*\" or {\"AWS\": …}")),
        };
        let actions = string_or_array(
            obj.get("Action").ok_or_else(|| unsupported("missing Action"))?,
            "Action",
            index,
        )?;
        let mut conditions = Vec::new();
        if let Some(block) = obj.get("Condition") {
            let Value::Object(block) = block else {
                return Err(unsupported("Condition must be an object"));
            };
            for (op, entries) in block {
                let operator = Operator::parse(op)
                    .ok_or_else(|| unsupported(&format!("unsupported condition operator {op}")))?;
                let Value::Object(entries) = entries else {
                    return Err(unsupported("condition operator must map keys to values"));
                };
                for (key, values) in entries {
                    conditions.push(Condition {
                        operator,
                        key: key.clone(),
                        values: string_or_array(values, "condition value", index)?,
                    });
                }
            }
        }
        Ok(Statement {
            sid: obj.get("Sid").and_then(Value::as_str).map(str::to_string),
            effect,
            principals,
            actions,
            conditions,
        })
    }

    /// Evaluates a request against the policy.
    pub fn evaluate(&self, request: &Request<'_>) -> Evaluation {
        let statements: Vec<StatementEvaluation> =
            self.statements.iter().map(|s| evaluate_statement(s, request)).collect();
        let deny = statements.iter().find(|s| s.applies && s.effect == Effect::Deny);
        let allow = statements.iter().find(|s| s.applies && s.effect == Effect::Allow);
        let decision = match (deny, allow) {
            (Some(d), _) => Decision::ExplicitDeny { sid: d.sid.clone() },
            (None, Some(a)) => Decision::Allow { sid: a.sid.clone() },
            (None, None) => Decision::ImplicitDeny,
        };
        Evaluation { decision, statements }
    }
}

/// A request to evaluate: an action, optionally a caller, and the condition keys KMS would set.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub action: &'a str,
    /// `None` skips principal matching (as `attest explain` does when no principal is given).
    pub principal: Option<&'a str>,
    pub context: BTreeMap<String, String>,
}

impl<'a> Request<'a> {
    /// `kms:Decrypt` with a `Recipient` carrying `doc`: KMS sets `ImageSha384` to PCR0 and
    /// `PCR<n>` for every PCR in the document (lower-case hex).
    pub fn decrypt_with_recipient(doc: &AttestationDocument, principal: Option<&'a str>) -> Self {
        let mut context = BTreeMap::new();
        for (index, value) in &doc.pcrs {
            context.insert(pcr_condition_key(*index), hex::encode(value));
        }
        if let Some(pcr0) = doc.pcrs.get(&0) {
            context.insert(IMAGE_SHA384_KEY.to_string(), hex::encode(pcr0));
        }
        Self { action: "kms:Decrypt", principal, context }
    }
}

/// The outcome of one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionEvaluation {
    pub operator: Operator,
    pub key: String,
    pub expected: Vec<String>,
    pub actual: Option<String>,
    pub matches: bool,
}

/// The outcome of one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementEvaluation {
    pub sid: Option<String>,
    pub effect: Effect,
    /// `None` when principal matching was skipped.
    pub principal_matches: Option<bool>,
    pub action_matches: bool,
    pub conditions: Vec<ConditionEvaluation>,
    /// Principal (unless skipped), action and every condition match.
    pub applies: bool,
}

/// The final decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow { sid: Option<String> },
    ExplicitDeny { sid: Option<String> },
    ImplicitDeny,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }
}

/// A decision with per-statement detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub statements: Vec<StatementEvaluation>,
}

fn evaluate_statement(statement: &Statement, request: &Request<'_>) -> StatementEvaluation {
    let principal_matches = request.principal.map(|caller| match &statement.principals {
        None => true,
        Some(list) => list.iter().any(|p| principal_matches(p, caller)),
    });
    let action_matches = statement.actions.iter().any(|a| wildcard_match(a, request.action));
    let conditions: Vec<ConditionEvaluation> = statement
        .conditions
        .iter()
        .map(|c| {
            let actual = request.context.get(&c.key).cloned().or_else(|| {
                // IAM fills aws:PrincipalArn for every request; derive it from the caller.
                c.key
                    .eq_ignore_ascii_case(PRINCIPAL_ARN_KEY)
                    .then(|| request.principal.map(principal_arn))
                    .flatten()
            });
            ConditionEvaluation {
                operator: c.operator,
                key: c.key.clone(),
                expected: c.values.clone(),
                matches: c.operator.matches(&c.values, actual.as_deref()),
                actual,
            }
        })
        .collect();
    let applies =
        principal_matches.unwrap_or(true) && action_matches && conditions.iter().all(|c| c.matches);
    StatementEvaluation {
        sid: statement.sid.clone(),
        effect: statement.effect,
        principal_matches,
        action_matches,
        conditions,
        applies,
    }
}

/// A principal entry matches the caller when equal, `*`, or the caller's account root
/// (`arn:…:iam::ACCOUNT:root` or the bare account id: "IAM policies of that account decide",
/// which the emulator treats as allowed).
fn principal_matches(entry: &str, caller: &str) -> bool {
    if entry == "*" || entry == caller {
        return true;
    }
    let Ok(caller) = parse_principal_arn(caller) else { return false };
    entry == caller.account
        || entry == format!("arn:{}:iam::{}:root", caller.partition, caller.account)
}

/// The value IAM gives `aws:PrincipalArn` for a caller: for a role session
/// (`arn:P:sts::ACCOUNT:assumed-role/NAME/SESSION`) the role's ARN
/// (`arn:P:iam::ACCOUNT:role/NAME`; a role path, which the session ARN does not carry, is not
/// recovered), otherwise the caller's ARN itself.
pub fn principal_arn(caller: &str) -> String {
    let mut parts = caller.splitn(6, ':');
    if let (Some("arn"), Some(partition), Some("sts"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    caller.to_string()
}

/// IAM's `ArnEquals`/`ArnLike` comparison: case-sensitive, each of the six colon-separated parts
/// compared on its own, each may hold `*` and `?` wildcards. Not an ARN on either side: no match.
fn arn_match(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard_match_case(p, a, true))
}

/// Case-insensitive match with `*` (any run) and `?` (one character), as IAM actions use.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    wildcard_match_case(pattern, text, false)
}

fn wildcard_match_case(pattern: &str, text: &str, case_sensitive: bool) -> bool {
    let fold = |s: &str| if case_sensitive { s.to_string() } else { s.to_ascii_lowercase() };
    let p: Vec<char> = fold(pattern).chars().collect();
    let t: Vec<char> = fold(text).chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    pi = bp + 1;
                    ti = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    p.iter().skip(pi).all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/signer-parent";

    fn pcrs() -> BTreeMap<u8, Vec<u8>> {
        [(0u8, vec![0xaa; 48]), (1, vec![0xbb; 48]), (2, vec![0xcc; 48])].into_iter().collect()
    }

    fn context(pcr0: &[u8], pcr1: &[u8]) -> BTreeMap<String, String> {
        [
            (IMAGE_SHA384_KEY.to_string(), hex::encode(pcr0)),
            (pcr_condition_key(0), hex::encode(pcr0)),
            (pcr_condition_key(1), hex::encode(pcr1)),
        ]
        .into_iter()
        .collect()
    }

    fn policy(pin: &[u8]) -> KeyPolicy {
        let json = generate(&KeyPolicyParams {
            role_arn: ROLE,
            pcrs: &[pcrs()],
            pin,
            admin_arn: None,
            encrypt_role_arn: None,
            break_glass_role_arn: None,
        })
        .unwrap();
        KeyPolicy::parse(&json.to_string()).unwrap()
    }

    #[test]
    fn generated_policy_allows_only_the_measured_image() {
        let policy = policy(&[0, 1]);
        let ok = Request {
            action: "kms:Decrypt",
            principal: Some(ROLE),
            context: context(&[0xaa; 48], &[0xbb; 48]),
        };
        assert!(policy.evaluate(&ok).decision.is_allow());
        // Upper-case hex matches (StringEqualsIgnoreCase).
        let mut upper = ok.clone();
        for v in upper.context.values_mut() {
            *v = v.to_uppercase();
        }
        assert!(policy.evaluate(&upper).decision.is_allow());

        let other_image = Request { context: context(&[0xab; 48], &[0xbb; 48]), ..ok.clone() };
        assert_eq!(
            policy.evaluate(&other_image).decision,
            Decision::ExplicitDeny { sid: Some("DenyDecryptForOtherPcr0".into()) }
        );
        let other_kernel = Request { context: context(&[0xaa; 48], &[0x00; 48]), ..ok.clone() };
        assert_eq!(
            policy.evaluate(&other_kernel).decision,
            Decision::ExplicitDeny { sid: Some("DenyDecryptForOtherPcr1".into()) }
        );
        let no_attestation = Request { context: BTreeMap::new(), ..ok.clone() };
        assert_eq!(
            policy.evaluate(&no_attestation).decision,
            Decision::ExplicitDeny { sid: Some("DenyDecryptWithoutAttestation".into()) }
        );
        let stranger =
            Request { principal: Some("arn:aws:iam::999999999999:role/x"), ..ok.clone() };
        assert_eq!(policy.evaluate(&stranger).decision, Decision::ImplicitDeny);
        // The account root administers the key but never decrypts.
        let admin =
            Request { principal: Some("arn:aws:iam::111122223333:role/admin"), ..ok.clone() };
        assert_eq!(policy.evaluate(&admin).decision, Decision::ImplicitDeny);
        let admin_put = Request { action: "kms:PutKeyPolicy", context: BTreeMap::new(), ..admin };
        assert!(policy.evaluate(&admin_put).decision.is_allow());
        let reencrypt = Request { action: "kms:ReEncryptFrom", ..ok };
        assert!(matches!(policy.evaluate(&reencrypt).decision, Decision::ExplicitDeny { .. }));
    }

    /// The administration statement of a generated policy.
    fn admin_actions(policy: &Value) -> Vec<String> {
        let statement = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "KeyAdministrationWithoutPlaintext")
            .unwrap();
        statement["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect()
    }

    #[test]
    fn admin_statement_is_explicit_and_never_moves_plaintext_or_key_material() {
        let final_policy = generate(&KeyPolicyParams {
            role_arn: ROLE,
            pcrs: &[pcrs()],
            pin: &[0],
            admin_arn: None,
            encrypt_role_arn: None,
            break_glass_role_arn: None,
        })
        .unwrap();
        let interim = generate_interim(Some(ROLE), None).unwrap();
        for policy in [&final_policy, &interim] {
            let actions = admin_actions(policy);
            assert_eq!(actions, ADMIN_ACTIONS.map(String::from).to_vec());
            for action in &actions {
                assert!(!action.contains('*') && !action.contains('?'), "wildcard {action}");
                for forbidden in [
                    "Replicate",
                    "Decrypt",
                    "Encrypt",
                    "GenerateDataKey",
                    "CreateGrant",
                    "ScheduleKeyDeletion",
                    "DeleteImportedKeyMaterial",
                ] {
                    assert!(!action.contains(forbidden), "{action} in the admin statement");
                }
            }
            assert!(actions.contains(&"kms:PutKeyPolicy".to_string()), "the runbook needs it");

            let parsed = KeyPolicy::parse(&policy.to_string()).unwrap();
            let admin = |action| Request {
                action,
                principal: Some("arn:aws:iam::111122223333:role/admin"),
                context: BTreeMap::new(),
            };
            for allowed in
                ["kms:PutKeyPolicy", "kms:GetPublicKey", "kms:DisableKey", "kms:CreateAlias"]
            {
                assert!(parsed.evaluate(&admin(allowed)).decision.is_allow(), "{allowed}");
            }
            for refused in ["kms:CreateGrant", "kms:Encrypt", "kms:GenerateDataKey"] {
                assert_eq!(parsed.evaluate(&admin(refused)).decision, Decision::ImplicitDeny);
            }
            // Without a break-glass role, deleting or replicating the key is denied to everyone.
            for refused in BREAK_GLASS_ONLY_ACTIONS {
                assert_eq!(
                    parsed.evaluate(&admin(refused)).decision,
                    Decision::ExplicitDeny { sid: Some("DenyKeyDeletionToEveryone".into()) },
                    "{refused}"
                );
            }
        }
        // An explicit administrator replaces the account root.
        let admin = "arn:aws:iam::111122223333:role/kms-admin";
        let interim = generate_interim(None, Some(admin)).unwrap();
        let statement = &interim["Statement"][0];
        assert_eq!(statement["Principal"]["AWS"], admin);
    }

    #[test]
    fn interim_policy_denies_decrypt_to_everyone_even_with_a_valid_attestation() {
        let json = generate_interim(Some(ROLE), None).unwrap();
        let policy = KeyPolicy::parse(&json.to_string()).unwrap();
        let attested = Request {
            action: "kms:Decrypt",
            principal: Some(ROLE),
            context: context(&[0xaa; 48], &[0xbb; 48]),
        };
        let denied = Decision::ExplicitDeny { sid: Some("NoDecryptUntilTheAttestedPolicy".into()) };
        assert_eq!(policy.evaluate(&attested).decision, denied);
        for principal in [Some("arn:aws:iam::111122223333:root"), Some(ROLE), None] {
            for action in ["kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"] {
                let request = Request { action, principal, context: BTreeMap::new() };
                assert_eq!(policy.evaluate(&request).decision, denied, "{action} {principal:?}");
            }
        }
        // The administrators can still read the public key and put the final policy; others
        // cannot.
        let read = Request { action: "kms:GetPublicKey", ..attested.clone() };
        assert!(policy.evaluate(&read).decision.is_allow());
        let put = Request { action: "kms:PutKeyPolicy", context: BTreeMap::new(), ..attested };
        assert!(policy.evaluate(&put).decision.is_allow());
        let stranger = Request { principal: Some("arn:aws:iam::999999999999:role/x"), ..read };
        assert_eq!(policy.evaluate(&stranger).decision, Decision::ImplicitDeny);

        assert_eq!(generate_interim(None, None), Err(KeyPolicyError::NoAdministrator));
        assert!(matches!(
            generate_interim(Some("signer-parent"), None),
            Err(KeyPolicyError::Arn(_))
        ));
        assert!(matches!(generate_interim(None, Some("root")), Err(KeyPolicyError::Arn(_))));
    }

    const BREAK_GLASS: &str = "arn:aws:iam::111122223333:role/ops/signer-break-glass";

    #[test]
    fn only_the_break_glass_role_deletes_or_replicates_the_key() {
        let final_policy = generate(&KeyPolicyParams {
            role_arn: ROLE,
            pcrs: &[pcrs()],
            pin: &[0],
            admin_arn: None,
            encrypt_role_arn: None,
            break_glass_role_arn: Some(BREAK_GLASS),
        })
        .unwrap();
        let interim = generate_interim_with(Some(ROLE), None, Some(BREAK_GLASS)).unwrap();
        for json in [&final_policy, &interim] {
            let deny = json["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Sid"] == "DenyKeyDeletionExceptBreakGlass")
                .unwrap();
            assert_eq!(deny["Effect"], "Deny");
            assert_eq!(deny["Principal"], "*");
            assert_eq!(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"], BREAK_GLASS);
            let policy = KeyPolicy::parse(&json.to_string()).unwrap();
            let call = |action, principal| Request {
                action,
                principal: Some(principal),
                context: BTreeMap::new(),
            };
            let denied =
                Decision::ExplicitDeny { sid: Some("DenyKeyDeletionExceptBreakGlass".into()) };
            for caller in [
                "arn:aws:iam::111122223333:role/admin",
                "arn:aws:iam::111122223333:root",
                ROLE,
                "arn:aws:sts::111122223333:assumed-role/admin/alice",
                // Case matters in ARNs; another path is another role.
                "arn:aws:iam::111122223333:role/ops/Signer-Break-Glass",
                "arn:aws:iam::111122223333:role/signer-break-glass",
                "arn:aws:iam::444455556666:role/ops/signer-break-glass",
            ] {
                for action in BREAK_GLASS_ONLY_ACTIONS {
                    assert_eq!(policy.evaluate(&call(action, caller)).decision, denied, "{caller}");
                }
            }
            // The administrators keep the reversible stop and the rescue.
            for action in ["kms:DisableKey", "kms:EnableKey", "kms:CancelKeyDeletion"] {
                let admin = call(action, "arn:aws:iam::111122223333:role/admin");
                assert!(policy.evaluate(&admin).decision.is_allow(), "{action}");
            }
            // The break-glass role; aws:PrincipalArn derived from the caller or given by KMS.
            let mut request = call("kms:ScheduleKeyDeletion", BREAK_GLASS);
            let allowed =
                Decision::Allow { sid: Some("BreakGlassDeletesOrReplicatesTheKey".into()) };
            assert_eq!(policy.evaluate(&request).decision, allowed);
            request.context.insert(PRINCIPAL_ARN_KEY.into(), BREAK_GLASS.into());
            assert_eq!(policy.evaluate(&request).decision, allowed);
            for action in BREAK_GLASS_ACTIONS {
                assert!(
                    policy.evaluate(&call(action, BREAK_GLASS)).decision.is_allow(),
                    "{action}"
                );
            }
            // Break glass never decrypts (administration, with the account root as the
            // administrator, is up to IAM as for any role of the account).
            for action in ["kms:Decrypt", "kms:ReEncryptFrom"] {
                let request = call(action, BREAK_GLASS);
                assert!(!policy.evaluate(&request).decision.is_allow(), "{action}");
            }
            assert!(!admin_actions(json).iter().any(|a| a == "kms:ScheduleKeyDeletion"));
        }

        // Refused: not a role, wildcards (ArnNotEquals would expand them), or one of the
        // policy's other principals.
        for bad in [
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:sts::111122223333:assumed-role/break-glass/s",
            "arn:aws:iam::111122223333:role/*",
            "arn:aws:iam::111122223333:role/break-gl?ss",
            "arn:aws:iam::111122223333:role/",
            "break-glass",
        ] {
            assert_eq!(
                generate_interim_with(Some(ROLE), None, Some(bad)),
                Err(KeyPolicyError::BreakGlassArn(bad.into())),
                "{bad}"
            );
        }
        let admin = "arn:aws:iam::111122223333:role/kms-admin";
        assert_eq!(
            generate_interim_with(Some(ROLE), Some(admin), Some(admin)),
            Err(KeyPolicyError::BreakGlassNotSeparate(admin.into()))
        );
        assert_eq!(
            generate(&KeyPolicyParams {
                role_arn: ROLE,
                pcrs: &[pcrs()],
                pin: &[0],
                admin_arn: None,
                encrypt_role_arn: None,
                break_glass_role_arn: Some(ROLE),
            }),
            Err(KeyPolicyError::BreakGlassNotSeparate(ROLE.into()))
        );
    }

    #[test]
    fn arn_conditions_follow_iam() {
        let op = |o: Operator, expected: &str, actual: Option<&str>| {
            o.matches(&[expected.to_string()], actual)
        };
        let role = "arn:aws:iam::111122223333:role/a";
        assert!(op(Operator::ArnEquals, role, Some(role)));
        assert!(!op(Operator::ArnEquals, role, Some("arn:aws:iam::111122223333:role/A")));
        assert!(!op(Operator::ArnEquals, role, None));
        assert!(op(Operator::ArnNotEquals, role, None), "negated operators match an absent key");
        assert!(!op(Operator::ArnNotEquals, role, Some(role)));
        assert!(op(Operator::ArnNotEquals, role, Some("not an arn")));
        // Wildcards stay within one colon-separated part.
        assert!(op(Operator::ArnEquals, "arn:aws:iam::*:role/a", Some(role)));
        assert!(!op(Operator::ArnEquals, "arn:aws:*:role/a", Some(role)));
        assert_eq!(
            principal_arn("arn:aws:sts::111122223333:assumed-role/admin/alice"),
            "arn:aws:iam::111122223333:role/admin"
        );
        assert_eq!(principal_arn(role), role);
        let parsed = KeyPolicy::parse(
            r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:X","Condition":{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::1:role/x"}}}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.statements[0].conditions[0].operator, Operator::ArnEquals);
    }

    #[test]
    fn rotation_allows_both_images_and_only_them() {
        let mut new = pcrs();
        new.insert(0, vec![0xdd; 48]);
        let json = generate(&KeyPolicyParams {
            role_arn: ROLE,
            pcrs: &[pcrs(), new],
            pin: &[0, 1],
            admin_arn: None,
            encrypt_role_arn: None,
            break_glass_role_arn: None,
        })
        .unwrap();
        let policy = KeyPolicy::parse(&json.to_string()).unwrap();
        let req = |pcr0: u8| Request {
            action: "kms:Decrypt",
            principal: Some(ROLE),
            context: context(&[pcr0; 48], &[0xbb; 48]),
        };
        assert!(policy.evaluate(&req(0xaa)).decision.is_allow(), "old image");
        assert!(policy.evaluate(&req(0xdd)).decision.is_allow(), "new image");
        assert!(
            matches!(policy.evaluate(&req(0xee)).decision, Decision::ExplicitDeny { .. }),
            "any other image"
        );
        // PCR1 is the same in both: a single value, not a list.
        assert!(json.to_string().contains(&format!(
            "\"kms:RecipientAttestation:PCR1\":\"{}\"",
            hex::encode([0xbb; 48])
        )));
    }

    #[test]
    fn pin_must_include_pcr0_and_exist() {
        let params = |pin: &'static [u8]| KeyPolicyParams {
            role_arn: ROLE,
            pcrs: Box::leak(Box::new([pcrs()])),
            pin,
            admin_arn: None,
            encrypt_role_arn: None,
            break_glass_role_arn: None,
        };
        assert_eq!(generate(&params(&[1])), Err(KeyPolicyError::Pcr0NotPinned));
        assert_eq!(generate(&params(&[0, 8])), Err(KeyPolicyError::MissingPcr(8)));
        let bad_role = KeyPolicyParams { role_arn: "signer-parent", ..params(&[0]) };
        assert!(matches!(generate(&bad_role), Err(KeyPolicyError::Arn(_))));
    }

    #[test]
    fn unsupported_constructs_are_refused() {
        for (doc, needle) in [
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"kms:Decrypt"}]}"#,
                "NotAction",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Condition":{"StringLike":{"a":"b"}}}]}"#,
                "StringLike",
            ),
            (
                r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:Decrypt"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"x"},"Action":"kms:Decrypt"}]}"#,
                "Principal",
            ),
            (r#"{"Version":"2012-10-17"}"#, "Statement"),
            ("not json", "JSON"),
        ] {
            let err = KeyPolicy::parse(doc).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn wildcards_and_null() {
        assert!(wildcard_match("kms:*", "kms:Decrypt"));
        assert!(wildcard_match("KMS:decrypt", "kms:Decrypt"));
        assert!(wildcard_match("kms:ReEncrypt*", "kms:ReEncryptFrom"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("kms:Get?ublicKey", "kms:GetPublicKey"));
        assert!(!wildcard_match("kms:Get*", "kms:Decrypt"));
        assert!(!wildcard_match("kms:Decrypt", "kms:DecryptX"));
        assert!(Operator::Null.matches(&["true".into()], None));
        assert!(!Operator::Null.matches(&["true".into()], Some("x")));
        assert!(Operator::Null.matches(&["false".into()], Some("x")));
        assert!(Operator::StringNotEquals.matches(&["a".into()], None));
        assert!(!Operator::StringEquals.matches(&["a".into()], None));
        assert!(Operator::StringEquals.matches(&["b".into(), "a".into()], Some("a")));
        assert!(!Operator::StringEquals.matches(&["A".into()], Some("a")));
    }
}
