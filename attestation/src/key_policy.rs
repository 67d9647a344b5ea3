//! KMS key policies bound to enclave measurements: generation, and evaluation of a `Decrypt`
//! carrying an attestation document ("would KMS allow this?").
//!
//! The generated policy (SPEC §12):
//! - key administration for the account (or `--admin-arn`): an explicit list of actions
//!   ([`ADMIN_ACTIONS`]), no wildcards, **without** `Decrypt`, `ReEncrypt*`, `Encrypt`,
//!   `GenerateDataKey*`, `CreateGrant` or `ReplicateKey`. It keeps `PutKeyPolicy` (the upgrade
//!   runbook rewrites the policy), so whoever may call it stays in the trusted base;
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
//! read the public key and later put the final policy) and an explicit `Deny` of `Decrypt` and
//! `ReEncrypt*` to everyone, so KMS's default policy ("the account may do `kms:*`") never exists.
//!
//! Evaluation follows IAM semantics for the subset we generate and the KMS emulator accepts:
//! explicit Deny wins, then any Allow, else implicit deny. Supported condition operators:
//! `StringEquals`, `StringEqualsIgnoreCase`, `StringNotEquals`, `StringNotEqualsIgnoreCase`,
//! `Null`. Anything else (and `NotAction`/`NotPrincipal`) is refused when the policy is parsed,
//! which is safer than guessing.

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

/// Key-administration actions granted to the administrators, listed one by one (a wildcard
/// such as `kms:Put*` or `kms:Create*` would also grant whatever KMS adds under that prefix, and
/// `kms:CreateGrant`). Deliberately excludes every action that yields or moves plaintext or key
/// material: `Decrypt`, `ReEncrypt*`, `Encrypt`, `GenerateDataKey*`, `CreateGrant`,
/// `ReplicateKey`. `PutKeyPolicy` stays: the upgrade runbook needs it.
pub const ADMIN_ACTIONS: [&str; 18] = [
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
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
];

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

fn administration_statement(admin: &str) -> Value {
    json!({
        "Sid": "KeyAdministrationWithoutPlaintext",
        "Effect": "Allow",
        "Principal": {"AWS": admin},
        "Action": ADMIN_ACTIONS,
        "Resource": "*"
    })
}

/// The policy a key is created with, before the enclave image (and so the final policy) can
/// exist: administration for `admin_arn` (default: the account root of `role_arn`) and an
/// explicit `Deny` of `Decrypt` and `ReEncrypt*` to everyone, whatever the request carries.
pub fn generate_interim(
    role_arn: Option<&str>,
    admin_arn: Option<&str>,
) -> Result<Value, KeyPolicyError> {
    if let Some(role) = role_arn {
        parse_principal_arn(role)?;
    }
    let admin = administrator(role_arn, admin_arn)?;
    Ok(json!({
        "Version": "2012-10-17",
        "Id": "signer-enclave-execution-key-interim",
        "Statement": [
            administration_statement(&admin),
            {
                "Sid": "NoDecryptUntilTheAttestedPolicy",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["kms:Decrypt", "kms:ReEncrypt*"],
                "Resource": "*"
            }
        ]
    }))
}

/// Builds the key policy described in the module docs.
pub fn generate(params: &KeyPolicyParams<'_>) -> Result<Value, KeyPolicyError> {
    parse_principal_arn(params.role_arn)?;
    let admin = administrator(Some(params.role_arn), params.admin_arn)?;
    if let Some(encrypt) = params.encrypt_role_arn {
        parse_principal_arn(encrypt)?;
    }
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
    let mut statements = vec![
        administration_statement(&admin),
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
    ];
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
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "StringEquals" => Self::StringEquals,
            "StringEqualsIgnoreCase" => Self::StringEqualsIgnoreCase,
            "StringNotEquals" => Self::StringNotEquals,
            "StringNotEqualsIgnoreCase" => Self::StringNotEqualsIgnoreCase,
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
            Self::Null => "Null",
        }
    }

    fn matches(self, expected: &[String], actual: Option<&str>) -> bool {
        let eq = |a: &str, b: &str| a == b;
        let eq_ic = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match (self, actual) {
            (Self::StringEquals, Some(a)) => expected.iter().any(|e| eq(e, a)),
            (Self::StringEqualsIgnoreCase, Some(a)) => expected.iter().any(|e| eq_ic(e, a)),
            (Self::StringEquals | Self::StringEqualsIgnoreCase, None) => false,
            (Self::StringNotEquals, Some(a)) => !expected.iter().any(|e| eq(e, a)),
            (Self::StringNotEqualsIgnoreCase, Some(a)) => !expected.iter().any(|e| eq_ic(e, a)),
            // Negated operators match when the key is absent (IAM semantics).
            (Self::StringNotEquals | Self::StringNotEqualsIgnoreCase, None) => true,
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
            let actual = request.context.get(&c.key).cloned();
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

/// Case-insensitive match with `*` (any run) and `?` (one character), as IAM actions use.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
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
        })
        .unwrap();
        let interim = generate_interim(Some(ROLE), None).unwrap();
        for policy in [&final_policy, &interim] {
            let actions = admin_actions(policy);
            assert_eq!(actions, ADMIN_ACTIONS.map(String::from).to_vec());
            for action in &actions {
                assert!(!action.contains('*') && !action.contains('?'), "wildcard {action}");
                for forbidden in
                    ["Replicate", "Decrypt", "Encrypt", "GenerateDataKey", "CreateGrant"]
                {
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
            for refused in
                ["kms:ReplicateKey", "kms:CreateGrant", "kms:Encrypt", "kms:GenerateDataKey"]
            {
                assert_eq!(parsed.evaluate(&admin(refused)).decision, Decision::ImplicitDeny);
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
