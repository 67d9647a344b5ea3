//! A user with a test wallet keypair, driving the API as a browser and a backend would: create a
//! vault and an agent (both with provenance), ask for the grant message, sign it with the wallet,
//! create the grant. Used by the demo, the end-to-end tests and the benchmark.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use enclave_core::{OsRandom, Pubkey, SecureRandom};
use serde_json::{Value, json};

use crate::client::{Api, Reply};

/// A vault as the API returns it.
#[derive(Clone, Debug)]
pub struct Vault {
    pub vault_id: String,
    pub record: String,
    pub provenance: String,
}

/// An agent as the API returns it.
#[derive(Clone, Debug)]
pub struct Agent {
    pub agent_pubkey: String,
    pub agent_id: String,
    pub record: String,
    pub provenance: String,
}

/// A message to sign, as `POST /v1/authorizations/…` returns it.
#[derive(Clone, Debug)]
pub struct Message {
    pub message: String,
    pub nonce: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub enclave_id: String,
}

/// A grant as the API returns it.
#[derive(Clone, Debug)]
pub struct Grant {
    pub grant_id: String,
    pub record: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub enclave_id: String,
    /// The message the wallet signed for it.
    pub message: String,
}

/// What a grant allows (the fields of `POST /v1/authorizations/grant`).
#[derive(Clone, Debug)]
pub struct GrantTerms {
    pub bot_id: String,
    pub agent_pubkey: String,
    pub ttl_seconds: u64,
    pub policy: Value,
}

impl GrantTerms {
    fn json(&self, wallet: &Pubkey) -> Value {
        json!({
            "wallet": wallet.to_string(),
            "bot_id": self.bot_id,
            "agent_pubkey": self.agent_pubkey,
            "ttl_seconds": self.ttl_seconds,
            "policy": self.policy,
        })
    }
}

fn expect_ok(step: &str, r: &Reply) -> Result<(), String> {
    if r.status == 200 { Ok(()) } else { Err(format!("{step}: HTTP {} {}", r.status, r.body)) }
}

/// A wallet owner.
#[derive(Clone)]
pub struct User {
    pub key: SigningKey,
    pub wallet: Pubkey,
}

impl User {
    /// A fresh random wallet.
    pub fn random() -> Result<Self, String> {
        let mut seed = [0u8; 32];
        OsRandom.fill(&mut seed).map_err(|e| e.to_string())?;
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let wallet = Pubkey(key.verifying_key().to_bytes());
        Self { key, wallet }
    }

    /// The wallet's signature over a message's UTF-8 bytes, base58 (what `solana:signMessage`
    /// returns, encoded as the API takes it).
    pub fn sign_message(&self, message: &str) -> String {
        bs58::encode(self.key.sign(message.as_bytes()).to_bytes()).into_string()
    }

    /// `POST /v1/vaults`.
    pub fn create_vault(&self, api: &Api) -> Result<Vault, String> {
        let r = api.post("/v1/vaults", &json!({"wallet": self.wallet.to_string()}))?;
        expect_ok("create vault", &r)?;
        Ok(Vault {
            vault_id: r.str("vault_id"),
            record: r.str("vault_record"),
            provenance: r.str("provenance"),
        })
    }

    /// `POST /v1/agents` (kind `seed`, or `mnemonic` with an account).
    pub fn create_agent(
        &self,
        api: &Api,
        vault: &Vault,
        mnemonic_account: Option<u32>,
    ) -> Result<Agent, String> {
        let mut body = json!({
            "wallet": self.wallet.to_string(),
            "vault_record": vault.record,
            "vault_provenance": vault.provenance,
        });
        if let (Some(account), Some(map)) = (mnemonic_account, body.as_object_mut()) {
            map.insert("kind".into(), json!("mnemonic"));
            map.insert("account".into(), json!(account));
        }
        let r = api.post("/v1/agents", &body)?;
        expect_ok("create agent", &r)?;
        Ok(Agent {
            agent_pubkey: r.str("agent_pubkey"),
            agent_id: r.str("agent_id"),
            record: r.str("agent_key_record"),
            provenance: r.str("provenance"),
        })
    }

    /// `POST /v1/authorizations/grant`: the message to sign.
    pub fn grant_message(&self, api: &Api, terms: &GrantTerms) -> Result<Message, String> {
        let r = api.post("/v1/authorizations/grant", &terms.json(&self.wallet))?;
        expect_ok("grant authorization", &r)?;
        Ok(Message {
            message: r.str("message"),
            nonce: r.str("nonce"),
            issued_at: r.u64("issued_at"),
            expires_at: r.u64("expires_at"),
            enclave_id: r.str("enclave_id"),
        })
    }

    /// The `POST /v1/grants` body for a signed message.
    pub fn grant_body(
        &self,
        terms: &GrantTerms,
        message: &Message,
        signature: &str,
        vault: &Vault,
    ) -> Value {
        let mut body = terms.json(&self.wallet);
        if let Some(map) = body.as_object_mut() {
            map.insert("nonce".into(), json!(message.nonce));
            map.insert("issued_at".into(), json!(message.issued_at));
            map.insert("signature".into(), json!(signature));
            map.insert("vault_record".into(), json!(vault.record));
            map.insert("vault_provenance".into(), json!(vault.provenance));
        }
        body
    }

    /// The whole authorization: message, wallet signature, `POST /v1/grants`.
    pub fn create_grant(
        &self,
        api: &Api,
        vault: &Vault,
        terms: &GrantTerms,
    ) -> Result<Grant, String> {
        let message = self.grant_message(api, terms)?;
        let signature = self.sign_message(&message.message);
        let r = api.post("/v1/grants", &self.grant_body(terms, &message, &signature, vault))?;
        expect_ok("create grant", &r)?;
        Ok(Grant {
            grant_id: r.str("grant_id"),
            record: r.str("grant_record"),
            issued_at: r.u64("issued_at"),
            expires_at: r.u64("expires_at"),
            enclave_id: r.str("enclave_id"),
            message: message.message,
        })
    }

    /// `POST /v1/authorizations/revoke`, the wallet's signature, and `POST /v1/grants/revoke`
    /// (API token): revokes one of this wallet's grants, or all of them (`grant_id` none).
    pub fn revoke(&self, api: &Api, grant_id: Option<&str>) -> Result<Reply, String> {
        let mut body = json!({"wallet": self.wallet.to_string()});
        match grant_id {
            Some(id) => set(&mut body, "grant_id", json!(id)),
            None => set(&mut body, "all", json!(true)),
        }
        let r = api.post("/v1/authorizations/revoke", &body)?;
        expect_ok("revoke authorization", &r)?;
        set(&mut body, "nonce", json!(r.str("nonce")));
        set(&mut body, "issued_at", json!(r.u64("issued_at")));
        set(&mut body, "signature", json!(self.sign_message(&r.str("message"))));
        api.post("/v1/grants/revoke", &body)
    }

    /// Exports the vault's master key, or with `agent_record` that agent's secret, to a fresh
    /// X25519 key (as a browser does): asks for the message, signs it, calls `POST /v1/export`,
    /// and opens the HPKE reply. Returns the message signed and the secret.
    pub fn export(
        &self,
        api: &Api,
        vault: &Vault,
        agent_record: Option<&str>,
    ) -> Result<(String, Exported), String> {
        let browser = ExportKey::random()?;
        let mut body = json!({
            "wallet": self.wallet.to_string(),
            "vault_record": vault.record,
            "vault_provenance": vault.provenance,
            "recipient": base64::engine::general_purpose::STANDARD.encode(browser.public),
        });
        let record = agent_record.unwrap_or(&vault.record).to_string();
        if let Some(agent) = agent_record {
            set(&mut body, "agent_key_record", json!(agent));
        }
        let r = api.post("/v1/authorizations/export", &body)?;
        expect_ok("export authorization", &r)?;
        let message = r.str("message");
        set(&mut body, "nonce", json!(r.str("nonce")));
        set(&mut body, "issued_at", json!(r.u64("issued_at")));
        set(&mut body, "signature", json!(self.sign_message(&message)));
        let r = api.post("/v1/export", &body)?;
        expect_ok("export", &r)?;
        let secret = browser.open(
            &self.wallet,
            &unb64(&record)?,
            &unb64(&r.str("enc"))?,
            &unb64(&r.str("ciphertext"))?,
        )?;
        Ok((message, Exported { kind: r.str("kind"), secret }))
    }
}

/// An exported secret, opened.
pub struct Exported {
    /// `vault`, `seed` or `mnemonic`.
    pub kind: String,
    pub secret: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exported").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Exported {
    /// The agent's public key the secret derives (seed or BIP39 entropy, account from the
    /// record), or none for a vault's master key.
    pub fn agent_pubkey(&self, account: u32) -> Result<Option<Pubkey>, String> {
        let kind = match self.kind.as_str() {
            "seed" => enclave_core::records::AgentKind::Seed,
            "mnemonic" => enclave_core::records::AgentKind::Mnemonic { account },
            _ => return Ok(None),
        };
        let key =
            enclave_core::agent_key::signing_key(kind, &self.secret).map_err(|e| e.to_string())?;
        Ok(Some(Pubkey(key.verifying_key().to_bytes())))
    }

    /// The 12–24 recovery words of a mnemonic agent.
    pub fn words(&self) -> Result<String, String> {
        bip39::Mnemonic::from_entropy(&self.secret)
            .map(|m| m.to_string())
            .map_err(|e| e.to_string())
    }
}

/// The browser's HPKE key pair for an export (X25519).
pub struct ExportKey {
    secret: <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    pub public: [u8; 32],
}

impl ExportKey {
    pub fn random() -> Result<Self, String> {
        use hpke::Serializable as _;
        let mut ikm = zeroize::Zeroizing::new([0u8; 32]);
        OsRandom.fill(ikm.as_mut()).map_err(|e| e.to_string())?;
        let (secret, public) =
            <hpke::kem::X25519HkdfSha256 as hpke::Kem>::derive_keypair(ikm.as_ref());
        let public: [u8; 32] =
            public.to_bytes().as_slice().try_into().map_err(|_| "X25519 key length")?;
        Ok(Self { secret, public })
    }

    /// Opens an export of `record` for `wallet` (info `"signer/export/v1" ‖ wallet ‖
    /// SHA-256(record)`, no AAD).
    pub fn open(
        &self,
        wallet: &Pubkey,
        record: &[u8],
        enc: &[u8],
        ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        use hpke::Deserializable as _;
        use sha2::Digest as _;
        let info = [
            enclave_core::enclave::user::EXPORT_INFO_DOMAIN,
            &wallet.0,
            sha2::Sha256::digest(record).as_slice(),
        ]
        .concat();
        let enc = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|e| format!("enc: {e}"))?;
        hpke::single_shot_open::<
            hpke::aead::AesGcm256,
            hpke::kdf::HkdfSha256,
            hpke::kem::X25519HkdfSha256,
        >(&hpke::OpModeR::Base, &self.secret, &enc, &info, ciphertext, &[])
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("HPKE open: {e}"))
    }
}

fn unb64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("base64: {e}"))
}

/// Sets `key` of a JSON object (no-op on anything else).
fn set(body: &mut Value, key: &str, value: Value) {
    if let Some(map) = body.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}
