//! Key storage for the emulator: key material, metadata, key states, policies and aliases,
//! persisted as one JSON file (`keys.json`, mode 0600) in the data directory and rewritten
//! atomically (temporary file + rename) on every change. It holds private keys of *simulated* KMS
//! keys only.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use enclave_core::{OsRandom, Secret32, SecureRandom};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Supported key specs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySpec {
    #[serde(rename = "RSA_2048")]
    Rsa2048,
    #[serde(rename = "RSA_3072")]
    Rsa3072,
    #[serde(rename = "RSA_4096")]
    Rsa4096,
    #[serde(rename = "SYMMETRIC_DEFAULT")]
    SymmetricDefault,
}

impl KeySpec {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RSA_2048" => Self::Rsa2048,
            "RSA_3072" => Self::Rsa3072,
            "RSA_4096" => Self::Rsa4096,
            "SYMMETRIC_DEFAULT" => Self::SymmetricDefault,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rsa2048 => "RSA_2048",
            Self::Rsa3072 => "RSA_3072",
            Self::Rsa4096 => "RSA_4096",
            Self::SymmetricDefault => "SYMMETRIC_DEFAULT",
        }
    }

    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
            Self::Rsa4096 => Some(4096),
            Self::SymmetricDefault => None,
        }
    }

    pub fn encryption_algorithms(self) -> &'static [&'static str] {
        match self {
            Self::SymmetricDefault => &["SYMMETRIC_DEFAULT"],
            _ => &["RSAES_OAEP_SHA_256"],
        }
    }
}

/// Key material.
pub enum Material {
    Rsa(Box<RsaPrivateKey>),
    Symmetric(Secret32),
}

/// A key scheduled for deletion (KMS's `PendingDeletion` state).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingDeletion {
    /// Unix seconds at which the key is deleted.
    pub deletion_date: f64,
    /// The waiting period that was requested (7..=30 days).
    pub window_days: u32,
}

/// KMS key states the emulator models.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion(PendingDeletion),
}

impl KeyState {
    /// The state's name in KMS responses (`KeyMetadata.KeyState`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion(_) => "PendingDeletion",
        }
    }
}

/// One key.
pub struct Key {
    pub id: String,
    pub spec: KeySpec,
    /// `Enabled` vs `Disabled` (false while pending deletion, as in KMS).
    pub enabled: bool,
    pub pending_deletion: Option<PendingDeletion>,
    pub description: String,
    pub created: f64,
    pub policy: String,
    pub material: Material,
}

impl Key {
    pub fn state(&self) -> KeyState {
        match (self.pending_deletion, self.enabled) {
            (Some(p), _) => KeyState::PendingDeletion(p),
            (None, true) => KeyState::Enabled,
            (None, false) => KeyState::Disabled,
        }
    }
}

/// One alias (`alias/NAME` → key id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// The full name, `alias/…`.
    pub name: String,
    /// The target key's id (a UUID, never an ARN or another alias).
    pub target: String,
    pub created: f64,
    pub updated: f64,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    id: String,
    spec: KeySpec,
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_deletion: Option<PendingDeletion>,
    description: String,
    created: f64,
    policy: String,
    /// PKCS#8 DER (RSA) or the raw 32 bytes (symmetric), base64.
    material: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredFile {
    keys: Vec<StoredKey>,
    #[serde(default)]
    aliases: Vec<Alias>,
}

/// Everything but key material: what a failed save must put back.
#[derive(Clone, Debug)]
pub struct Metadata {
    keys: Vec<(String, bool, Option<PendingDeletion>, String)>,
    aliases: Vec<Alias>,
}

/// Every key, in creation order, and every alias, in creation order.
pub struct Store {
    path: PathBuf,
    pub keys: Vec<Key>,
    pub aliases: Vec<Alias>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("key generation: {0}")]
    KeyGen(String),
}

impl Store {
    /// Loads `dir/keys.json`, or starts empty.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("keys.json");
        let err = |reason: String| StoreError::Io { path: path.display().to_string(), reason };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let file: StoredFile = match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredFile::default(),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut keys = Vec::with_capacity(file.keys.len());
        for k in file.keys {
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(&k.material)
                    .map_err(|e| err(format!("key {}: {e}", k.id)))?,
            );
            let material = match k.spec {
                KeySpec::SymmetricDefault => Material::Symmetric(
                    Secret32::from_slice(&raw)
                        .ok_or_else(|| err(format!("key {}: bad symmetric material", k.id)))?,
                ),
                _ => Material::Rsa(Box::new(
                    RsaPrivateKey::from_pkcs8_der(&raw)
                        .map_err(|e| err(format!("key {}: {e}", k.id)))?,
                )),
            };
            keys.push(Key {
                id: k.id,
                spec: k.spec,
                enabled: k.enabled && k.pending_deletion.is_none(),
                pending_deletion: k.pending_deletion,
                description: k.description,
                created: k.created,
                policy: k.policy,
                material,
            });
        }
        Ok(Self { path, keys, aliases: file.aliases })
    }

    /// The mutable metadata of every key and every alias, to [`restore`](Self::restore) when a
    /// change cannot be saved.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            keys: self
                .keys
                .iter()
                .map(|k| (k.id.clone(), k.enabled, k.pending_deletion, k.policy.clone()))
                .collect(),
            aliases: self.aliases.clone(),
        }
    }

    /// Puts back what [`metadata`](Self::metadata) recorded (keys are matched by id).
    pub fn restore(&mut self, metadata: Metadata) {
        for (id, enabled, pending_deletion, policy) in metadata.keys {
            if let Some(key) = self.keys.iter_mut().find(|k| k.id == id) {
                key.enabled = enabled;
                key.pending_deletion = pending_deletion;
                key.policy = policy;
            }
        }
        self.aliases = metadata.aliases;
    }

    /// Writes every key (temporary file + rename, mode 0600).
    pub fn save(&self) -> Result<(), StoreError> {
        let err = |reason: String| StoreError::Io { path: self.path.display().to_string(), reason };
        let mut stored = StoredFile { keys: Vec::new(), aliases: self.aliases.clone() };
        for k in &self.keys {
            let raw = match &k.material {
                Material::Symmetric(s) => Zeroizing::new(s.expose().to_vec()),
                Material::Rsa(r) => Zeroizing::new(
                    r.to_pkcs8_der().map_err(|e| err(e.to_string()))?.as_bytes().to_vec(),
                ),
            };
            stored.keys.push(StoredKey {
                id: k.id.clone(),
                spec: k.spec,
                enabled: k.enabled,
                pending_deletion: k.pending_deletion,
                description: k.description.clone(),
                created: k.created,
                policy: k.policy.clone(),
                material: base64::engine::general_purpose::STANDARD.encode(&*raw),
            });
        }
        let json =
            Zeroizing::new(serde_json::to_vec_pretty(&stored).map_err(|e| err(e.to_string()))?);
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(|e| err(e.to_string()))?;
            f.write_all(&json).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))
    }

    /// Generates key material for `spec`.
    pub fn generate(spec: KeySpec) -> Result<Material, StoreError> {
        match spec.rsa_bits() {
            Some(bits) => {
                let mut rng = enclave_core::secret::seeded_rng(&OsRandom)
                    .map_err(|e| StoreError::KeyGen(e.to_string()))?;
                Ok(Material::Rsa(Box::new(
                    RsaPrivateKey::new(&mut rng, bits)
                        .map_err(|e| StoreError::KeyGen(e.to_string()))?,
                )))
            }
            None => Ok(Material::Symmetric(
                Secret32::random(&OsRandom as &dyn SecureRandom)
                    .map_err(|e| StoreError::KeyGen(e.to_string()))?,
            )),
        }
    }
}
