//! The KMS operations the product uses, over the real JSON shapes (awsJson1.1, `TrentService.*`):
//! CreateKey, DescribeKey, ListKeys, GetPublicKey, Encrypt, Decrypt (with and without
//! `Recipient`), PutKeyPolicy, GetKeyPolicy, EnableKey, DisableKey.
//!
//! Every operation except CreateKey is checked against the key's policy with the caller's
//! principal. For `Decrypt` with `Recipient` the attestation document is verified first (the
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
use nitro_attestation::key_policy::{Decision, KeyPolicy, Request};
use nitro_attestation::{AttestationDocument, AttestationPolicy, TrustAnchor};
use parking_lot::Mutex;
use rsa::Oaep;
use rsa::pkcs8::EncodePublicKey;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store::{Key, KeySpec, Material, Store};

const SYMMETRIC_MAGIC: &[u8; 5] = b"KSIM1";

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

    fn find<'a>(&self, store: &'a Store, key_id: &str) -> Result<&'a Key, KmsError> {
        let id = key_id.rsplit_once("key/").map_or(key_id, |(_, id)| id);
        store
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KmsError::not_found(format!("Key '{}' does not exist", self.arn(id))))
    }

    fn metadata(&self, key: &Key) -> Value {
        json!({
            "AWSAccountId": self.settings.account,
            "KeyId": key.id,
            "Arn": self.arn(&key.id),
            "CreationDate": key.created,
            "Enabled": key.enabled,
            "Description": key.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeyState": if key.enabled { "Enabled" } else { "Disabled" },
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": key.spec.name(),
            "KeySpec": key.spec.name(),
            "EncryptionAlgorithms": key.spec.encryption_algorithms(),
            "MultiRegion": false,
        })
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

    fn enabled(&self, key: &Key) -> Result<(), KmsError> {
        if key.enabled {
            Ok(())
        } else {
            Err(KmsError::new("DisabledException", format!("{} is disabled.", self.arn(&key.id))))
        }
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
        match op {
            "CreateKey" => self.create_key(&body),
            "DescribeKey" => self.with_key(&body, "kms:DescribeKey", |k| {
                Ok(json!({"KeyMetadata": self.metadata(k)}))
            }),
            "ListKeys" => {
                let store = self.store.lock();
                let keys: Vec<Value> = store
                    .keys
                    .iter()
                    .map(|k| json!({"KeyId": k.id, "KeyArn": self.arn(&k.id)}))
                    .collect();
                Ok(json!({"Keys": keys, "Truncated": false}))
            }
            "GetPublicKey" => self.with_key(&body, "kms:GetPublicKey", |k| {
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
            "GetKeyPolicy" => self.with_key(&body, "kms:GetKeyPolicy", |k| {
                Ok(json!({"Policy": k.policy, "PolicyName": "default"}))
            }),
            "PutKeyPolicy" => self.put_key_policy(&body),
            "EnableKey" | "DisableKey" => self.set_enabled(&body, op == "EnableKey"),
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
        action: &str,
        f: impl FnOnce(&Key) -> Result<Value, KmsError>,
    ) -> Result<Value, KmsError> {
        let key_id = required(body, "KeyId")?;
        let store = self.store.lock();
        let key = self.find(&store, &key_id)?;
        self.authorize(key, action, BTreeMap::new())?;
        f(key)
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
        let policy = match string(body, "Policy")? {
            Some(p) => {
                KeyPolicy::parse(&p).map_err(|e| {
                    KmsError::new("MalformedPolicyDocumentException", e.to_string())
                })?;
                p
            }
            None => self.default_policy(),
        };
        let material = Store::generate(spec).map_err(|e| KmsError::internal(e.to_string()))?;
        let key = Key {
            id: uuid::Uuid::new_v4().to_string(),
            spec,
            enabled: true,
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
        let key_id = required(body, "KeyId")?;
        let policy = required(body, "Policy")?;
        if let Some(name) = string(body, "PolicyName")?
            && name != "default"
        {
            return Err(KmsError::validation("PolicyName must be \"default\""));
        }
        KeyPolicy::parse(&policy)
            .map_err(|e| KmsError::new("MalformedPolicyDocumentException", e.to_string()))?;
        let mut store = self.store.lock();
        let index = {
            let key = self.find(&store, &key_id)?;
            self.authorize(key, "kms:PutKeyPolicy", BTreeMap::new())?;
            store.keys.iter().position(|k| k.id == key.id).unwrap_or(0)
        };
        let Some(key) = store.keys.get_mut(index) else {
            return Err(KmsError::internal("key vanished"));
        };
        let previous = std::mem::replace(&mut key.policy, policy);
        persist(&mut store, |s| {
            if let Some(key) = s.keys.get_mut(index) {
                key.policy = previous;
            }
        })?;
        Ok(json!({}))
    }

    fn set_enabled(&self, body: &Value, enabled: bool) -> Result<Value, KmsError> {
        let key_id = required(body, "KeyId")?;
        let action = if enabled { "kms:EnableKey" } else { "kms:DisableKey" };
        let mut store = self.store.lock();
        let index = {
            let key = self.find(&store, &key_id)?;
            self.authorize(key, action, BTreeMap::new())?;
            store.keys.iter().position(|k| k.id == key.id).unwrap_or(0)
        };
        let Some(key) = store.keys.get_mut(index) else {
            return Err(KmsError::internal("key vanished"));
        };
        let previous = std::mem::replace(&mut key.enabled, enabled);
        persist(&mut store, |s| {
            if let Some(key) = s.keys.get_mut(index) {
                key.enabled = previous;
            }
        })?;
        Ok(json!({}))
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
        let key = self.find(&store, &key_id)?;
        self.enabled(key)?;
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
        let key_id = match string(body, "KeyId")? {
            Some(id) => id,
            None if ciphertext.starts_with(SYMMETRIC_MAGIC) => {
                let id = ciphertext
                    .get(5..21)
                    .ok_or_else(|| KmsError::new("InvalidCiphertextException", ""))?;
                uuid::Uuid::from_slice(id)
                    .map_err(|_| KmsError::new("InvalidCiphertextException", ""))?
                    .to_string()
            }
            None => {
                return Err(KmsError::validation("KeyId is required for asymmetric ciphertexts"));
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
        let key = self.find(&store, &key_id)?;
        self.enabled(key)?;
        let mut condition_keys: BTreeMap<String, String> =
            ctx.iter().map(|(k, v)| (format!("kms:EncryptionContext:{k}"), v.clone())).collect();
        if let Some((doc, _)) = &recipient {
            condition_keys.extend(recipient_context(doc));
        }
        self.authorize(key, "kms:Decrypt", condition_keys)?;

        let invalid = || KmsError::new("InvalidCiphertextException", "");
        let plaintext: Zeroizing<Vec<u8>> = match (&key.material, algorithm.as_str()) {
            (Material::Symmetric(k), "SYMMETRIC_DEFAULT") => {
                let id = uuid_bytes(&key.id)?;
                if ciphertext.len() < 5 + 16 + 12 + 16
                    || !ciphertext.starts_with(SYMMETRIC_MAGIC)
                    || ciphertext.get(5..21) != Some(&id[..])
                {
                    return Err(KmsError::new(
                        "IncorrectKeyException",
                        "The key ID in the request does not identify a CMK that can perform this operation.",
                    ));
                }
                let iv: [u8; 12] =
                    ciphertext.get(21..33).and_then(|s| s.try_into().ok()).ok_or_else(invalid)?;
                let body = ciphertext.get(33..ciphertext.len() - 16).ok_or_else(invalid)?;
                let tag: [u8; 16] = ciphertext
                    .get(ciphertext.len() - 16..)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(invalid)?;
                let mut buf = Zeroizing::new(body.to_vec());
                Aes256Gcm::new(k.expose().into())
                    .decrypt_inout_detached(
                        &Nonce::from(iv),
                        &symmetric_aad(&id, &ctx),
                        buf.as_mut_slice().into(),
                        &tag.into(),
                    )
                    .map_err(|_| invalid())?;
                buf
            }
            (Material::Rsa(k), "RSAES_OAEP_SHA_256") => Zeroizing::new(
                k.decrypt(Oaep::<Sha256>::new(), &ciphertext).map_err(|_| invalid())?,
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
