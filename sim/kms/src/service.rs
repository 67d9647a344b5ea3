//! The KMS operations the product, its scripts and its runbooks use, over the real JSON shapes
//! (awsJson1.1, `TrentService.*`): CreateKey, DescribeKey, ListKeys, GetPublicKey, Encrypt,
//! Decrypt (with and without `Recipient`), PutKeyPolicy, GetKeyPolicy, ListKeyPolicies,
//! EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, UpdateAlias,
//! DeleteAlias, ListAliases.
//!
//! Key identifiers follow KMS: operations that accept an alias (DescribeKey, GetPublicKey,
//! Encrypt, Decrypt) take a key id, key ARN, `alias/NAME` or alias ARN; the others take a key id
//! or key ARN only and answer an alias with `InvalidArnException` ("Key Aliases are not supported
//! for this operation."). Key states are `Enabled`, `Disabled` and `PendingDeletion`; a key whose
//! deletion date has passed is deleted (with its aliases) on the next call.
//!
//! Every operation on a key except CreateKey is checked against the key's policy with the
//! caller's principal and the global condition key `aws:PrincipalArn` (the caller's ARN; for a
//! role session, the role's), so a `Deny` of `ScheduleKeyDeletion` with `ArnNotEquals` on it
//! binds everyone but the named role (ListKeys and ListAliases are IAM-only in KMS and are not
//! checked). `MultiRegion` keys are not emulated (`UnsupportedOperationException`). A policy
//! set by CreateKey or PutKeyPolicy must still allow the caller `kms:PutKeyPolicy` unless
//! `BypassPolicyLockoutSafetyCheck` is true (KMS's lockout safety check). For `Decrypt` with `Recipient` the attestation document is verified first (the
//! `nitro-attestation` crate, against the configured root, at most five minutes old), its PCRs
//! become the `kms:RecipientAttestation:*` condition keys, and on success the plaintext is
//! returned only as a `CiphertextForRecipient` envelope of KMS's exact shape.
//!
//! Symmetric ciphertexts are emulator-specific: `"KSIM1" ‖ key uuid[16] ‖ iv[12] ‖ GCM(key,
//! plaintext, AAD = key uuid ‖ canonical JSON of the encryption context)`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use enclave_core::OsRandom;
use enclave_core::envelope::{self, ContentForm};
use enclave_core::secret::{random_array, seeded_rng};
use nitro_attestation::key_policy::{
    Decision, KeyPolicy, PRINCIPAL_ARN_KEY, Request, principal_arn,
};
use nitro_attestation::{AttestationDocument, AttestationPolicy, TrustAnchor};
use parking_lot::Mutex;
use rsa::Oaep;
use rsa::pkcs8::EncodePublicKey;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store::{Alias, Key, KeySpec, KeyState, Material, Metadata, PendingDeletion, Store};

const SYMMETRIC_MAGIC: &[u8; 5] = b"KSIM1";

/// KMS's answer to a ciphertext that is corrupted, cannot be parsed, or does not authenticate.
fn invalid_ciphertext() -> KmsError {
    KmsError::new("InvalidCiphertextException", "")
}

/// A kms-sim symmetric ciphertext: `KSIM1 ‖ key id (16) ‖ IV (12) ‖ ciphertext (≥ 1) ‖ tag (16)`.
#[derive(Debug, PartialEq, Eq)]
struct SymmetricBlob<'a> {
    key_id: [u8; 16],
    iv: [u8; 12],
    body: &'a [u8],
    tag: [u8; 16],
}

impl<'a> SymmetricBlob<'a> {
    /// `None` unless `blob` has the layout `Kms::encrypt` writes.
    fn parse(blob: &'a [u8]) -> Option<Self> {
        let rest = blob.strip_prefix(SYMMETRIC_MAGIC.as_slice())?;
        let (key_id, rest) = rest.split_first_chunk::<16>()?;
        let (iv, rest) = rest.split_first_chunk::<12>()?;
        let (body, tag) = rest.split_last_chunk::<16>()?;
        if body.is_empty() {
            return None;
        }
        Some(Self { key_id: *key_id, iv: *iv, body, tag: *tag })
    }
}

/// An error in KMS's shape: `{"__type": kind, "message": …}` with an HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct KmsError {
    pub kind: &'static str,
    pub message: String,
    pub status: u16,
}

impl KmsError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        let status = match kind {
            "KMSInternalException" | "DependencyTimeoutException" => 500,
            _ => 400,
        };
        Self { kind, message: message.into(), status }
    }
    fn validation(m: impl Into<String>) -> Self {
        Self::new("ValidationException", m)
    }
    fn not_found(m: impl Into<String>) -> Self {
        Self::new("NotFoundException", m)
    }
    fn invalid_state(m: impl Into<String>) -> Self {
        Self::new("KMSInvalidStateException", m)
    }
    fn internal(m: impl Into<String>) -> Self {
        Self::new("KMSInternalException", m)
    }
}

/// Misbehaviour the emulator can be told to show (for fault-injection tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    #[default]
    None,
    /// Answer `Decrypt` with `Recipient` with `Plaintext` too (a broken or malicious KMS).
    PlaintextWithRecipient,
    /// Answer `Decrypt` with a `CiphertextForRecipient` that is not an envelope.
    GarbageEnvelope,
    /// Answer every call with `KMSInternalException`.
    InternalError,
}

/// Emulator settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub region: String,
    pub account: String,
    /// The principal every call is attributed to (the emulator does not check SigV4).
    pub caller_arn: String,
    /// Root that attestation documents must chain to (the sim CA's root in simulation).
    pub attestation_root: TrustAnchor,
    pub max_document_age: Duration,
}

/// The emulator.
pub struct Kms {
    settings: Settings,
    store: Mutex<Store>,
    fault: Mutex<Fault>,
    /// Artificial delay added to every call (fault injection).
    delay: Mutex<Duration>,
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn string(body: &Value, name: &str) -> Result<Option<String>, KmsError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(KmsError::new("SerializationException", format!("{name} must be a string"))),
    }
}

fn integer(body: &Value, name: &str) -> Result<Option<i64>, KmsError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            KmsError::new("SerializationException", format!("{name} must be an integer"))
        }),
    }
}

fn boolean(body: &Value, name: &str) -> Result<bool, KmsError> {
    match field(body, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => {
            Err(KmsError::new("SerializationException", format!("{name} must be a boolean")))
        }
    }
}

fn required(body: &Value, name: &str) -> Result<String, KmsError> {
    string(body, name)?.ok_or_else(|| KmsError::validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null")))
}

fn blob(body: &Value, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, KmsError> {
    string(body, name)?
        .map(|s| {
            base64::engine::general_purpose::STANDARD.decode(s).map(Zeroizing::new).map_err(|_| {
                KmsError::new("SerializationException", format!("{name} is not base64"))
            })
        })
        .transpose()
}

fn b64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn context(body: &Value) -> Result<BTreeMap<String, String>, KmsError> {
    match field(body, "EncryptionContext") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(KmsError::new(
                    "SerializationException",
                    "EncryptionContext values must be strings",
                )),
            })
            .collect(),
        Some(_) => {
            Err(KmsError::new("SerializationException", "EncryptionContext must be an object"))
        }
    }
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Kms {
    pub fn new(settings: Settings, store: Store) -> Self {
        Self {
            settings,
            store: Mutex::new(store),
            fault: Mutex::new(Fault::None),
            delay: Mutex::new(Duration::ZERO),
        }
    }

    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock() = fault;
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock() = delay;
    }

    pub fn delay(&self) -> Duration {
        *self.delay.lock()
    }

    fn arn(&self, id: &str) -> String {
        format!("arn:aws:kms:{}:{}:key/{id}", self.settings.region, self.settings.account)
    }

    fn default_policy(&self) -> String {
        json!({
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{}:root", self.settings.account)},
                "Action": "kms:*",
                "Resource": "*"
            }]
        })
        .to_string()
    }

    fn alias_arn(&self, name: &str) -> String {
        format!("arn:aws:kms:{}:{}:{name}", self.settings.region, self.settings.account)
    }

    /// Parses a `KeyId`: key id, key ARN, `alias/NAME` or alias ARN (of this account and
    /// Region). What KMS answers for anything else: `NotFoundException` "Invalid keyId …".
    fn parse_key_ref(&self, raw: &str) -> Result<KeyRef, KmsError> {
        let invalid = || KmsError::not_found(format!("Invalid keyId {raw}"));
        let (local, resource) = match raw.strip_prefix("arn:") {
            None => (true, raw),
            Some(rest) => {
                let mut parts = rest.splitn(5, ':');
                let (Some(_partition), Some("kms"), Some(region), Some(account), Some(resource)) =
                    (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid());
                };
                (region == self.settings.region && account == self.settings.account, resource)
            }
        };
        if resource.starts_with("alias/") {
            if !local {
                return Err(KmsError::not_found(format!("Alias {raw} is not found.")));
            }
            return Ok(KeyRef::Alias(resource.to_string()));
        }
        let id = if raw.starts_with("arn:") {
            resource.strip_prefix("key/").ok_or_else(invalid)?
        } else {
            resource
        };
        uuid::Uuid::try_parse(id).map_err(|_| invalid())?;
        if !local {
            return Err(KmsError::not_found(format!("Key '{raw}' does not exist")));
        }
        Ok(KeyRef::Id(id.to_ascii_lowercase()))
    }

    /// The index of the key `raw` names (see [`parse_key_ref`](Self::parse_key_ref)); an alias
    /// is refused with KMS's `InvalidArnException` where the operation takes key ids only.
    fn resolve(&self, store: &Store, raw: &str, names: Names) -> Result<usize, KmsError> {
        let id = match self.parse_key_ref(raw)? {
            KeyRef::Alias(_) if names == Names::KeyOnly => {
                return Err(KmsError::new(
                    "InvalidArnException",
                    "Key Aliases are not supported for this operation.",
                ));
            }
            KeyRef::Alias(name) => store
                .aliases
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.target.clone())
                .ok_or_else(|| {
                    KmsError::not_found(format!("Alias {} is not found.", self.alias_arn(&name)))
                })?,
            KeyRef::Id(id) => id,
        };
        store
            .keys
            .iter()
            .position(|k| k.id == id)
            .ok_or_else(|| KmsError::not_found(format!("Key '{}' does not exist", self.arn(&id))))
    }

    fn find<'a>(&self, store: &'a Store, raw: &str, names: Names) -> Result<&'a Key, KmsError> {
        let index = self.resolve(store, raw, names)?;
        store.keys.get(index).ok_or_else(|| KmsError::internal("key index out of range"))
    }

    fn metadata(&self, key: &Key) -> Value {
        let mut meta = json!({
            "AWSAccountId": self.settings.account,
            "KeyId": key.id,
            "Arn": self.arn(&key.id),
            "CreationDate": key.created,
            "Enabled": key.enabled,
            "Description": key.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": key.state().name(),
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": key.spec.name(),
            "KeySpec": key.spec.name(),
            "EncryptionAlgorithms": key.spec.encryption_algorithms(),
            "MultiRegion": false,
        });
        if let (Some(p), Some(map)) = (key.pending_deletion, meta.as_object_mut()) {
            map.insert("DeletionDate".into(), json!(p.deletion_date));
            map.insert("PendingDeletionWindowInDays".into(), json!(p.window_days));
        }
        meta
    }

    /// The global condition keys IAM sets on every request: `aws:PrincipalArn` (for a role
    /// session, the role's ARN).
    fn global_context(&self, mut context: BTreeMap<String, String>) -> BTreeMap<String, String> {
        context.insert(PRINCIPAL_ARN_KEY.to_string(), principal_arn(&self.settings.caller_arn));
        context
    }

    /// Checks the key policy for `action` with `context`; AccessDeniedException otherwise.
    fn authorize(
        &self,
        key: &Key,
        action: &str,
        context: BTreeMap<String, String>,
    ) -> Result<(), KmsError> {
        let policy = KeyPolicy::parse(&key.policy)
            .map_err(|e| KmsError::internal(format!("stored policy: {e}")))?;
        let context = self.global_context(context);
        let request = Request { action, principal: Some(&self.settings.caller_arn), context };
        let decision = policy.evaluate(&request).decision;
        let user = &self.settings.caller_arn;
        let resource = self.arn(&key.id);
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::ExplicitDeny { sid } => Err(KmsError::new(
                "AccessDeniedException",
                format!(
                    "User: {user} is not authorized to perform: {action} on resource: {resource} with an explicit deny in a resource-based policy (statement {})",
                    sid.unwrap_or_default()
                ),
            )),
            Decision::ImplicitDeny => Err(KmsError::new(
                "AccessDeniedException",
                format!(
                    "User: {user} is not authorized to perform: {action} on resource: {resource} because no resource-based policy allows the {action} action"
                ),
            )),
        }
    }

    /// A key usable for cryptographic operations: `DisabledException` when disabled,
    /// `KMSInvalidStateException` when pending deletion.
    fn usable(&self, key: &Key) -> Result<(), KmsError> {
        match key.state() {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::new(
                "DisabledException",
                format!("{} is disabled.", self.arn(&key.id)),
            )),
            KeyState::PendingDeletion(_) => Err(self.pending(key)),
        }
    }

    fn pending(&self, key: &Key) -> KmsError {
        KmsError::invalid_state(format!("{} is pending deletion.", self.arn(&key.id)))
    }

    fn not_pending(&self, key: &Key) -> Result<(), KmsError> {
        match key.state() {
            KeyState::PendingDeletion(_) => Err(self.pending(key)),
            _ => Ok(()),
        }
    }

    /// KMS's lockout safety check: a new policy must still let the caller change the policy.
    fn lockout_check(&self, policy: &KeyPolicy, body: &Value) -> Result<(), KmsError> {
        if boolean(body, "BypassPolicyLockoutSafetyCheck")? {
            return Ok(());
        }
        let request = Request {
            action: "kms:PutKeyPolicy",
            principal: Some(&self.settings.caller_arn),
            context: self.global_context(BTreeMap::new()),
        };
        if policy.evaluate(&request).decision.is_allow() {
            Ok(())
        } else {
            Err(KmsError::new(
                "MalformedPolicyDocumentException",
                "The new key policy will not allow you to update the key policy in the future.",
            ))
        }
    }

    /// Deletes every key whose deletion date has passed, and the aliases that point to it.
    fn purge_deleted(&self) -> Result<(), KmsError> {
        let now = now_seconds();
        let mut store = self.store.lock();
        let due: Vec<String> = store
            .keys
            .iter()
            .filter(|k| k.pending_deletion.is_some_and(|p| p.deletion_date <= now))
            .map(|k| k.id.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let aliases = store.aliases.clone();
        let (gone, kept): (Vec<Key>, Vec<Key>) =
            std::mem::take(&mut store.keys).into_iter().partition(|k| due.contains(&k.id));
        store.keys = kept;
        store.aliases.retain(|a| !due.contains(&a.target));
        if let Err(e) = store.save() {
            store.keys.extend(gone);
            store.aliases = aliases;
            tracing::error!(error = %e, "cannot persist the key store; deletion postponed");
            return Err(KmsError::internal(format!("cannot persist the key store ({e})")));
        }
        tracing::info!(keys = ?due, "keys deleted at the end of their waiting period");
        Ok(())
    }

    /// Handles one call: `target` is the `X-Amz-Target` header, `body` the JSON request.
    pub fn handle(&self, target: &str, body: &[u8]) -> Result<Value, KmsError> {
        let op = target.strip_prefix("TrentService.").ok_or_else(|| {
            KmsError::new("UnknownOperationException", format!("unknown target {target:?}"))
        })?;
        if *self.fault.lock() == Fault::InternalError {
            return Err(KmsError::internal("injected failure"));
        }
        let body: Value = if body.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|e| {
                KmsError::new("SerializationException", format!("malformed JSON: {e}"))
            })?
        };
        if !body.is_object() {
            return Err(KmsError::new(
                "SerializationException",
                "request body must be a JSON object",
            ));
        }
        self.purge_deleted()?;
        match op {
            "CreateKey" => self.create_key(&body),
            "DescribeKey" => self.with_key(&body, Names::KeyOrAlias, "kms:DescribeKey", |k| {
                Ok(json!({"KeyMetadata": self.metadata(k)}))
            }),
            "ListKeys" => {
                let store = self.store.lock();
                let keys: Vec<(String, Value)> = store
                    .keys
                    .iter()
                    .map(|k| (k.id.clone(), json!({"KeyId": k.id, "KeyArn": self.arn(&k.id)})))
                    .collect();
                paginate(keys, &body, "Keys")
            }
            // KMS answers GetPublicKey for a disabled key too; not for one pending deletion.
            "GetPublicKey" => self.with_key(&body, Names::KeyOrAlias, "kms:GetPublicKey", |k| {
                self.not_pending(k)?;
                let Material::Rsa(private) = &k.material else {
                    return Err(KmsError::new(
                        "UnsupportedOperationException",
                        format!("{} is a symmetric key", self.arn(&k.id)),
                    ));
                };
                let spki = private
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|e| KmsError::internal(e.to_string()))?;
                Ok(json!({
                    "KeyId": self.arn(&k.id),
                    "PublicKey": b64(spki.as_bytes()),
                    "CustomerMasterKeySpec": k.spec.name(),
                    "KeySpec": k.spec.name(),
                    "KeyUsage": "ENCRYPT_DECRYPT",
                    "EncryptionAlgorithms": k.spec.encryption_algorithms(),
                }))
            }),
            "GetKeyPolicy" => {
                policy_name(&body, "NotFoundException")?;
                self.with_key(&body, Names::KeyOnly, "kms:GetKeyPolicy", |k| {
                    Ok(json!({"Policy": k.policy, "PolicyName": "default"}))
                })
            }
            "ListKeyPolicies" => {
                self.with_key(&body, Names::KeyOnly, "kms:ListKeyPolicies", |_| {
                    Ok(json!({"PolicyNames": ["default"], "Truncated": false}))
                })
            }
            "PutKeyPolicy" => self.put_key_policy(&body),
            "EnableKey" | "DisableKey" => self.set_enabled(&body, op == "EnableKey"),
            "ScheduleKeyDeletion" => self.schedule_key_deletion(&body),
            "CancelKeyDeletion" => self.cancel_key_deletion(&body),
            "CreateAlias" => self.create_alias(&body),
            "UpdateAlias" => self.update_alias(&body),
            "DeleteAlias" => self.delete_alias(&body),
            "ListAliases" => self.list_aliases(&body),
            "Encrypt" => self.encrypt(&body),
            "Decrypt" => self.decrypt(&body),
            other => Err(KmsError::new(
                "UnsupportedOperationException",
                format!("kms-sim does not implement {other}"),
            )),
        }
    }

    fn with_key(
        &self,
        body: &Value,
        names: Names,
        action: &str,
        f: impl FnOnce(&Key) -> Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let key_id = required(body, "KeyId")?;
        let store = self.store.lock();
        let key = self.find(&store, &key_id, names)?;
        self.authorize(key, action, BTreeMap::new())?;
        f(key)
    }

    /// Changes the key `KeyId` names (key id or ARN only) after checking `action` against its
    /// policy; the change is saved, or undone when it cannot be.
    fn change_key(
        &self,
        body: &Value,
        action: &str,
        f: impl FnOnce(&mut Key) -> Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let key_id = required(body, "KeyId")?;
        let mut store = self.store.lock();
        let index = self.resolve(&store, &key_id, Names::KeyOnly)?;
        let before = store.metadata();
        let key = store.keys.get_mut(index).ok_or_else(|| KmsError::internal("key vanished"))?;
        self.authorize(key, action, BTreeMap::new())?;
        let response = f(key)?;
        commit(&mut store, before)?;
        Ok(response)
    }

    fn create_key(&self, body: &Value) -> Result<Value, KmsError> {
        let spec_name = string(body, "KeySpec")?
            .or(string(body, "CustomerMasterKeySpec")?)
            .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        let spec = KeySpec::parse(&spec_name)
            .ok_or_else(|| KmsError::validation(format!("KeySpec {spec_name} is not supported by kms-sim (RSA_2048/3072/4096, SYMMETRIC_DEFAULT)")))?;
        if let Some(usage) = string(body, "KeyUsage")?
            && usage != "ENCRYPT_DECRYPT"
        {
            return Err(KmsError::validation(format!(
                "KeyUsage {usage} is not supported by kms-sim"
            )));
        }
        if boolean(body, "MultiRegion")? {
            return Err(KmsError::new(
                "UnsupportedOperationException",
                "multi-Region keys are not emulated by kms-sim",
            ));
        }
        let policy = match string(body, "Policy")? {
            Some(p) => {
                let parsed = KeyPolicy::parse(&p).map_err(|e| {
                    KmsError::new("MalformedPolicyDocumentException", e.to_string())
                })?;
                self.lockout_check(&parsed, body)?;
                p
            }
            None => self.default_policy(),
        };
        let material = Store::generate(spec).map_err(|e| KmsError::internal(e.to_string()))?;
        let key = Key {
            id: uuid::Uuid::new_v4().to_string(),
            spec,
            enabled: true,
            pending_deletion: None,
            description: string(body, "Description")?.unwrap_or_default(),
            created: now_seconds(),
            policy,
            material,
        };
        let metadata = self.metadata(&key);
        let mut store = self.store.lock();
        store.keys.push(key);
        persist(&mut store, |s| {
            s.keys.pop();
        })?;
        Ok(json!({"KeyMetadata": metadata}))
    }

    fn put_key_policy(&self, body: &Value) -> Result<Value, KmsError> {
        let policy = required(body, "Policy")?;
        if let Some(name) = string(body, "PolicyName")?
            && name != "default"
        {
            return Err(KmsError::validation("PolicyName must be \"default\""));
        }
        let parsed = KeyPolicy::parse(&policy)
            .map_err(|e| KmsError::new("MalformedPolicyDocumentException", e.to_string()))?;
        self.lockout_check(&parsed, body)?;
        self.change_key(body, "kms:PutKeyPolicy", |key| {
            key.policy = policy;
            Ok(json!({}))
        })
    }

    fn set_enabled(&self, body: &Value, enabled: bool) -> Result<Value, KmsError> {
        let action = if enabled { "kms:EnableKey" } else { "kms:DisableKey" };
        self.change_key(body, action, |key| {
            self.not_pending(key)?;
            key.enabled = enabled;
            Ok(json!({}))
        })
    }

    fn schedule_key_deletion(&self, body: &Value) -> Result<Value, KmsError> {
        let days = integer(body, "PendingWindowInDays")?.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(KmsError::validation(format!(
                "PendingWindowInDays should be between 7 and 30, but it is {days}"
            )));
        }
        let window_days = u32::try_from(days).map_err(|_| KmsError::validation("bad window"))?;
        self.change_key(body, "kms:ScheduleKeyDeletion", |key| {
            self.not_pending(key)?;
            let deletion_date = (now_seconds() + f64::from(window_days) * 86_400.0).floor();
            key.pending_deletion = Some(PendingDeletion { deletion_date, window_days });
            key.enabled = false;
            Ok(json!({
                "KeyId": self.arn(&key.id),
                "DeletionDate": deletion_date,
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": window_days,
            }))
        })
    }

    /// Back to `Disabled`, as KMS does: enabling it again is a separate, deliberate step.
    fn cancel_key_deletion(&self, body: &Value) -> Result<Value, KmsError> {
        self.change_key(body, "kms:CancelKeyDeletion", |key| {
            if key.pending_deletion.is_none() {
                return Err(KmsError::invalid_state(format!(
                    "{} is not pending deletion.",
                    self.arn(&key.id)
                )));
            }
            key.pending_deletion = None;
            key.enabled = false;
            Ok(json!({"KeyId": self.arn(&key.id)}))
        })
    }

    /// The key an alias may point to: named by key id or key ARN (never an alias), not pending
    /// deletion, and allowing `action` to the caller.
    fn alias_target(&self, store: &Store, raw: &str, action: &str) -> Result<String, KmsError> {
        if matches!(self.parse_key_ref(raw), Ok(KeyRef::Alias(_))) {
            return Err(KmsError::validation("Aliases must refer to keys. Not aliases"));
        }
        let key = self.find(store, raw, Names::KeyOnly)?;
        self.not_pending(key)?;
        self.authorize(key, action, BTreeMap::new())?;
        Ok(key.id.clone())
    }

    fn create_alias(&self, body: &Value) -> Result<Value, KmsError> {
        let name = required(body, "AliasName")?;
        let target = required(body, "TargetKeyId")?;
        validate_alias_name(&name)?;
        let mut store = self.store.lock();
        if store.aliases.iter().any(|a| a.name == name) {
            return Err(KmsError::new(
                "AlreadyExistsException",
                format!("An alias with the name {} already exists", self.alias_arn(&name)),
            ));
        }
        let target = self.alias_target(&store, &target, "kms:CreateAlias")?;
        let before = store.metadata();
        let now = now_seconds();
        store.aliases.push(Alias { name, target, created: now, updated: now });
        commit(&mut store, before)?;
        Ok(json!({}))
    }

    /// Points an existing alias at another key of the same kind (symmetric or asymmetric).
    fn update_alias(&self, body: &Value) -> Result<Value, KmsError> {
        let name = required(body, "AliasName")?;
        let target = required(body, "TargetKeyId")?;
        validate_alias_name(&name)?;
        let mut store = self.store.lock();
        let index = store.aliases.iter().position(|a| a.name == name).ok_or_else(|| {
            KmsError::not_found(format!("Alias {} is not found.", self.alias_arn(&name)))
        })?;
        let current = store.aliases.get(index).map(|a| a.target.clone()).unwrap_or_default();
        let current_key = self.find(&store, &current, Names::KeyOnly)?;
        self.authorize(current_key, "kms:UpdateAlias", BTreeMap::new())?;
        let current_symmetric = current_key.spec == KeySpec::SymmetricDefault;
        let target = self.alias_target(&store, &target, "kms:UpdateAlias")?;
        let target_key = self.find(&store, &target, Names::KeyOnly)?;
        if (target_key.spec == KeySpec::SymmetricDefault) != current_symmetric {
            return Err(KmsError::validation(format!(
                "{} is not the same type of key as the current target of {name}",
                self.arn(&target)
            )));
        }
        let before = store.metadata();
        if let Some(alias) = store.aliases.get_mut(index) {
            alias.target = target;
            alias.updated = now_seconds();
        }
        commit(&mut store, before)?;
        Ok(json!({}))
    }

    fn delete_alias(&self, body: &Value) -> Result<Value, KmsError> {
        let name = required(body, "AliasName")?;
        if !name.starts_with("alias/") {
            return Err(KmsError::validation(ALIAS_PREFIX_MESSAGE));
        }
        let mut store = self.store.lock();
        let not_found =
            || KmsError::not_found(format!("Alias {} is not found.", self.alias_arn(&name)));
        let index = store.aliases.iter().position(|a| a.name == name).ok_or_else(not_found)?;
        let target = store.aliases.get(index).map(|a| a.target.clone()).unwrap_or_default();
        let key = self.find(&store, &target, Names::KeyOnly)?;
        self.authorize(key, "kms:DeleteAlias", BTreeMap::new())?;
        let before = store.metadata();
        store.aliases.remove(index);
        commit(&mut store, before)?;
        Ok(json!({}))
    }

    /// Every alias, or those of one key (key id or ARN). Real KMS also lists the AWS managed
    /// aliases (`alias/aws/…`); the emulator has none.
    fn list_aliases(&self, body: &Value) -> Result<Value, KmsError> {
        let store = self.store.lock();
        let filter = match string(body, "KeyId")? {
            Some(raw) => Some(self.find(&store, &raw, Names::KeyOnly)?.id.clone()),
            None => None,
        };
        let aliases: Vec<(String, Value)> = store
            .aliases
            .iter()
            .filter(|a| filter.as_ref().is_none_or(|id| *id == a.target))
            .map(|a| {
                (
                    a.name.clone(),
                    json!({
                        "AliasName": a.name,
                        "AliasArn": self.alias_arn(&a.name),
                        "TargetKeyId": a.target,
                        "CreationDate": a.created,
                        "LastUpdatedDate": a.updated,
                    }),
                )
            })
            .collect();
        paginate(aliases, body, "Aliases")
    }

    fn encrypt(&self, body: &Value) -> Result<Value, KmsError> {
        let key_id = required(body, "KeyId")?;
        let plaintext = blob(body, "Plaintext")?
            .ok_or_else(|| KmsError::validation("Plaintext is required"))?;
        if plaintext.is_empty() || plaintext.len() > 4096 {
            return Err(KmsError::validation("Plaintext must be 1 to 4096 bytes"));
        }
        let ctx = context(body)?;
        let store = self.store.lock();
        let key = self.find(&store, &key_id, Names::KeyOrAlias)?;
        self.usable(key)?;
        let condition_keys =
            ctx.iter().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), v.clone())).collect();
        self.authorize(key, "kms:Encrypt", condition_keys)?;
        let algorithm =
            string(body, "EncryptionAlgorithm")?.unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        let ciphertext = match (&key.material, algorithm.as_str()) {
            (Material::Symmetric(k), "SYMMETRIC_DEFAULT") => {
                let id = uuid_bytes(&key.id)?;
                let iv: [u8; 12] =
                    random_array(&OsRandom).map_err(|e| KmsError::internal(e.to_string()))?;
                let mut buf = plaintext.to_vec();
                let tag = Aes256Gcm::new(k.expose().into())
                    .encrypt_inout_detached(
                        &Nonce::from(iv),
                        &symmetric_aad(&id, &ctx),
                        buf.as_mut_slice().into(),
                    )
                    .map_err(|_| KmsError::internal("encryption failed"))?;
                [SYMMETRIC_MAGIC.as_slice(), &id, &iv, &buf, &tag].concat()
            }
            (Material::Rsa(k), "RSAES_OAEP_SHA_256") => {
                if !ctx.is_empty() {
                    return Err(KmsError::validation(
                        "EncryptionContext is not supported with asymmetric keys",
                    ));
                }
                let mut rng =
                    seeded_rng(&OsRandom).map_err(|e| KmsError::internal(e.to_string()))?;
                k.to_public_key()
                    .encrypt(&mut rng, Oaep::<Sha256>::new(), &plaintext)
                    .map_err(|e| KmsError::validation(e.to_string()))?
            }
            _ => {
                return Err(KmsError::new(
                    "InvalidKeyUsageException",
                    format!("{algorithm} is not valid for {}", key.spec.name()),
                ));
            }
        };
        Ok(
            json!({"CiphertextBlob": b64(&ciphertext), "KeyId": self.arn(&key.id), "EncryptionAlgorithm": algorithm}),
        )
    }

    fn decrypt(&self, body: &Value) -> Result<Value, KmsError> {
        let ciphertext = blob(body, "CiphertextBlob")?
            .ok_or_else(|| KmsError::validation("CiphertextBlob is required"))?;
        let ctx = context(body)?;
        let algorithm =
            string(body, "EncryptionAlgorithm")?.unwrap_or_else(|| "SYMMETRIC_DEFAULT".into());
        // Without a KeyId only a symmetric ciphertext names its key; anything else (random bytes,
        // an asymmetric ciphertext) cannot be parsed, and KMS answers InvalidCiphertextException.
        let key_id = match string(body, "KeyId")? {
            Some(id) => id,
            None => {
                let blob = SymmetricBlob::parse(&ciphertext).ok_or_else(invalid_ciphertext)?;
                uuid::Uuid::from_bytes(blob.key_id).to_string()
            }
        };

        // The attestation document is verified before the policy: its PCRs are condition keys.
        let recipient = match field(body, "Recipient") {
            None => None,
            Some(r) => {
                let alg = string(r, "KeyEncryptionAlgorithm")?;
                if alg.as_deref() != Some("RSAES_OAEP_SHA_256") {
                    return Err(KmsError::validation(
                        "Recipient.KeyEncryptionAlgorithm must be RSAES_OAEP_SHA_256",
                    ));
                }
                let doc = blob(r, "AttestationDocument")?.ok_or_else(|| {
                    KmsError::validation("Recipient.AttestationDocument is required")
                })?;
                let policy = AttestationPolicy {
                    allow_debug: true,
                    max_age: Some(self.settings.max_document_age),
                    ..Default::default()
                };
                let verified = nitro_attestation::verify_with_policy(
                    &doc,
                    &self.settings.attestation_root,
                    &policy,
                    SystemTime::now(),
                )
                .map_err(|e| {
                    KmsError::validation(format!("the attestation document is not valid: {e}"))
                })?;
                let public_key = verified.document.public_key.clone().ok_or_else(|| {
                    KmsError::validation("the attestation document has no public_key")
                })?;
                Some((verified.document, public_key))
            }
        };

        let store = self.store.lock();
        let key = self.find(&store, &key_id, Names::KeyOrAlias)?;
        self.usable(key)?;
        let mut condition_keys: BTreeMap<String, String> =
            ctx.iter().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), v.clone())).collect();
        if let Some((doc, _)) = &recipient {
            condition_keys.extend(recipient_context(doc));
        }
        self.authorize(key, "kms:Decrypt", condition_keys)?;

        let plaintext: Zeroizing<Vec<u8>> = match (&key.material, algorithm.as_str()) {
            (Material::Symmetric(k), "SYMMETRIC_DEFAULT") => {
                let id = uuid_bytes(&key.id)?;
                // Unparseable bytes: InvalidCiphertextException. IncorrectKeyException only for
                // a well-formed ciphertext made under another key (AWS: "The KeyId in a Decrypt
                // request ... must identify the same KMS key that was used to encrypt").
                let blob = SymmetricBlob::parse(&ciphertext).ok_or_else(invalid_ciphertext)?;
                if blob.key_id != id {
                    return Err(KmsError::new(
                        "IncorrectKeyException",
                        "The key ID in the request does not identify a CMK that can perform this operation.",
                    ));
                }
                let mut buf = Zeroizing::new(blob.body.to_vec());
                Aes256Gcm::new(k.expose().into())
                    .decrypt_inout_detached(
                        &Nonce::from(blob.iv),
                        &symmetric_aad(&id, &ctx),
                        buf.as_mut_slice().into(),
                        &blob.tag.into(),
                    )
                    .map_err(|_| invalid_ciphertext())?;
                buf
            }
            (Material::Rsa(k), "RSAES_OAEP_SHA_256") => Zeroizing::new(
                k.decrypt(Oaep::<Sha256>::new(), &ciphertext).map_err(|_| invalid_ciphertext())?,
            ),
            _ => {
                return Err(KmsError::new(
                    "InvalidKeyUsageException",
                    format!("{algorithm} is not valid for {}", key.spec.name()),
                ));
            }
        };
        let mut response = Map::new();
        response.insert("KeyId".into(), Value::String(self.arn(&key.id)));
        response.insert("EncryptionAlgorithm".into(), Value::String(algorithm));
        match recipient {
            None => {
                response.insert("Plaintext".into(), b64(&plaintext));
            }
            Some((_, public_key)) => {
                let fault = *self.fault.lock();
                let envelope = match fault {
                    Fault::GarbageEnvelope => vec![0x30, 0x80, 0xde, 0xad, 0xbe, 0xef],
                    _ => envelope::seal(&plaintext, &public_key, &OsRandom, ContentForm::Chunked)
                        .map_err(|e| {
                        KmsError::validation(format!("the attestation document's public_key: {e}"))
                    })?,
                };
                response.insert("CiphertextForRecipient".into(), b64(&envelope));
                if fault == Fault::PlaintextWithRecipient {
                    response.insert("Plaintext".into(), b64(&plaintext));
                }
            }
        }
        Ok(Value::Object(response))
    }
}

/// How an operation's `KeyId` may name a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Names {
    /// Key id, key ARN, alias name or alias ARN (Encrypt, Decrypt, DescribeKey, GetPublicKey).
    KeyOrAlias,
    /// Key id or key ARN only (key policies, key states, deletion, alias targets).
    KeyOnly,
}

/// A parsed `KeyId`.
enum KeyRef {
    Id(String),
    Alias(String),
}

const ALIAS_PREFIX_MESSAGE: &str = "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html";

/// KMS's rules for a new alias name: the `alias/` prefix, at most 256 characters of
/// `[a-zA-Z0-9/_-]`, a non-empty name, and never the reserved `alias/aws/` prefix (KMS answers
/// that with `NotAuthorizedException`).
fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::validation(ALIAS_PREFIX_MESSAGE));
    };
    if name.len() > 256 {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must have length less than or equal to 256"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-:".contains(&b)) {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )));
    }
    if name.contains(':') {
        return Err(KmsError::validation(format!(
            "{name} contains invalid characters for an alias"
        )));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(KmsError::new(
            "InvalidAliasNameException",
            format!("{name} is not a valid alias name"),
        ));
    }
    if name.starts_with("alias/aws/") {
        return Err(KmsError::new(
            "NotAuthorizedException",
            format!("{name}: the alias/aws/ prefix is reserved for AWS managed keys"),
        ));
    }
    Ok(())
}

/// `PolicyName`, if given, must be `default` (the only key policy KMS has).
fn policy_name(body: &Value, kind: &'static str) -> Result<(), KmsError> {
    match string(body, "PolicyName")? {
        Some(name) if name != "default" => Err(KmsError::new(kind, "No such policy exists")),
        _ => Ok(()),
    }
}

/// One page of `items` (each with its marker) under `Limit` (1..=1000, default 100) and
/// `Marker` (the last item of the previous page), as `{field: [...], Truncated, NextMarker}`.
fn paginate(items: Vec<(String, Value)>, body: &Value, field: &str) -> Result<Value, KmsError> {
    let limit = integer(body, "Limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(KmsError::validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
        )));
    }
    let start = match string(body, "Marker")? {
        None => 0,
        Some(marker) => items
            .iter()
            .position(|(m, _)| *m == marker)
            .map(|i| i + 1)
            .ok_or_else(|| KmsError::new("InvalidMarkerException", "The marker is not valid"))?,
    };
    let limit = usize::try_from(limit).unwrap_or(100);
    let rest = items.get(start..).unwrap_or_default();
    let page: Vec<&(String, Value)> = rest.iter().take(limit).collect();
    let mut response = Map::new();
    response.insert(field.into(), Value::Array(page.iter().map(|(_, v)| v.clone()).collect()));
    let truncated = rest.len() > limit;
    response.insert("Truncated".into(), Value::Bool(truncated));
    if let (true, Some((marker, _))) = (truncated, page.last()) {
        response.insert("NextMarker".into(), Value::String(marker.clone()));
    }
    Ok(Value::Object(response))
}

/// Saves a metadata change, or puts `before` back when the data directory cannot be written.
fn commit(store: &mut Store, before: Metadata) -> Result<(), KmsError> {
    match store.save() {
        Ok(()) => Ok(()),
        Err(e) => {
            store.restore(before);
            tracing::error!(error = %e, "cannot persist the key store; change rolled back");
            Err(KmsError::internal(format!(
                "cannot persist the key store ({e}); nothing was changed"
            )))
        }
    }
}

/// Saves a change, or undoes it when the data directory cannot be written, so memory never
/// holds a key state the next start would not see.
fn persist(store: &mut Store, undo: impl FnOnce(&mut Store)) -> Result<(), KmsError> {
    store.save().map_err(|e| {
        undo(store);
        tracing::error!(error = %e, "cannot persist the key store; change rolled back");
        KmsError::internal(format!("cannot persist the key store ({e}); nothing was changed"))
    })
}

/// The condition keys KMS derives from a Recipient's attestation document.
fn recipient_context(doc: &AttestationDocument) -> BTreeMap<String, String> {
    Request::decrypt_with_recipient(doc, None).context
}

fn uuid_bytes(id: &str) -> Result<[u8; 16], KmsError> {
    uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| KmsError::internal("stored key id is not a UUID"))
}

fn symmetric_aad(id: &[u8; 16], ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut aad = id.to_vec();
    // BTreeMap serializes in key order: a canonical form.
    aad.extend_from_slice(serde_json::to_string(ctx).unwrap_or_default().as_bytes());
    aad
}
