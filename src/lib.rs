//! Helpers for the end-to-end tests in `tests/`, which start the real binaries (kms-sim,
//! signer-enclave, signer-parent) through the simulation stack and talk HTTP to the parent.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which `scripts/test.sh`
//! does); they are found next to the test executable or in `$SIGNER_BIN_DIR`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use base64::Engine as _;
use enclave_core::policy::Intent;
use enclave_core::records::{KeyWrap, ScheduledHeader, seal_scheduled};
use enclave_core::{OsRandom, Pubkey, Secret32, SecureRandom};
use rsa::pkcs8::DecodePublicKey;
use serde_json::{Value, json};
pub use signer_sim::user::{GrantTerms, User, Vault};
pub use signer_sim::{Api, Options, Stack, StackError};

/// A fresh data directory for one test.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("signer-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts a stack for a test (free ports, fresh data directory).
pub fn start(name: &str) -> Result<Stack, StackError> {
    start_with(name, |_| {})
}

/// Starts a stack after adjusting its options.
pub fn start_with(name: &str, edit: impl FnOnce(&mut Options)) -> Result<Stack, StackError> {
    let mut options = Options::for_test(data_dir(name));
    edit(&mut options);
    Stack::start(options)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let _ = OsRandom.fill(&mut b);
    b
}

/// A policy: `max_sol` per transaction and `max_sol_per_day`, in lamports.
pub fn policy(max_per_tx: u64, max_per_day: u64) -> Value {
    json!({
        "max_lamports_per_tx": max_per_tx,
        "max_lamports_per_day": max_per_day,
        "max_fee_lamports": 100_000,
        "tokens": [],
        "allowed_programs": [],
        "max_notional_cents_per_tx": 0,
        "max_notional_cents_per_day": 0
    })
}

/// A user's wallet with a vault, an agent and a grant, created through the API the way a browser
/// and a backend do (the wallet keypair signs the grant message).
#[derive(Clone)]
pub struct Wallet {
    pub user: std::sync::Arc<User>,
    pub wallet: String,
    pub vault: Vault,
    pub agent_pubkey: String,
    pub agent_key_record: String,
    pub agent_provenance: String,
    pub bot_id: String,
    pub grant_id: String,
    pub grant_record: String,
    pub expires_at: u64,
    pub enclave_id: String,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("wallet", &self.wallet)
            .field("grant_id", &self.grant_id)
            .finish()
    }
}

impl Wallet {
    /// Creates a wallet, a vault, an agent and a grant with `policy` for `ttl` seconds.
    pub fn create(api: &Api, policy: Value, ttl: u64) -> Result<Self, String> {
        let user = User::random()?;
        let vault = user.create_vault(api)?;
        let agent = user.create_agent(api, &vault, None)?;
        let mut w = Self {
            wallet: user.wallet.to_string(),
            user: std::sync::Arc::new(user),
            vault,
            agent_pubkey: agent.agent_pubkey,
            agent_key_record: agent.record,
            agent_provenance: agent.provenance,
            bot_id: uuid::Uuid::new_v4().to_string(),
            grant_id: String::new(),
            grant_record: String::new(),
            expires_at: 0,
            enclave_id: String::new(),
        };
        w.new_grant(api, policy, ttl)?;
        Ok(w)
    }

    /// The grant terms for `policy` and `ttl`.
    pub fn terms(&self, policy: Value, ttl: u64) -> GrantTerms {
        GrantTerms {
            bot_id: self.bot_id.clone(),
            agent_pubkey: self.agent_pubkey.clone(),
            ttl_seconds: ttl,
            policy,
        }
    }

    /// Replaces the grant with a new one the wallet authorizes.
    pub fn new_grant(&mut self, api: &Api, policy: Value, ttl: u64) -> Result<(), String> {
        let grant = self.user.create_grant(api, &self.vault, &self.terms(policy, ttl))?;
        self.grant_id = grant.grant_id;
        self.grant_record = grant.record;
        self.expires_at = grant.expires_at;
        self.enclave_id = grant.enclave_id;
        Ok(())
    }

    pub fn agent(&self) -> Pubkey {
        self.agent_pubkey.parse().unwrap_or_default()
    }

    /// An unsigned SOL transfer from the agent.
    pub fn transfer(&self, lamports: u64) -> Vec<u8> {
        signer_sim::tx::legacy_transfer(
            &self.agent(),
            &Pubkey(random::<32>()),
            lamports,
            random::<32>(),
        )
    }

    /// The `/v1/sign` body for `tx`.
    pub fn sign_body(&self, tx: &[u8], request_id: &str) -> Value {
        json!({
            "grant_record": self.grant_record,
            "agent_key_record": self.agent_key_record,
            "bot_id": self.bot_id,
            "transaction": b64(tx),
            "request_id": request_id,
        })
    }
}

/// A fresh request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The value of a metric line (`name{labels} value`) in Prometheus text, 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What a scheduled record binds besides its transfer.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub not_before: u64,
    pub not_after: u64,
    pub max_fee: u64,
    pub created_at: u64,
    /// The enclave instance that will sign it (`GET /v1/enclave`).
    pub enclave_id: enclave_core::EnclaveId,
}

/// A scheduled-key record built the way a browser would (only the KMS public key is needed).
pub fn scheduled_record(
    kms_spki: &[u8],
    wallet: Pubkey,
    seed: [u8; 32],
    intent: Intent,
    schedule: Schedule,
) -> Result<(Vec<u8>, Pubkey), String> {
    let agent =
        enclave_core::agent_key::signing_key(enclave_core::agent_key::AgentKind::Seed, &seed)
            .map_err(|e| e.to_string())?;
    let agent = Pubkey(agent.verifying_key().to_bytes());
    let header = ScheduledHeader {
        wallet,
        schedule_id: random::<16>(),
        agent_pubkey: agent,
        not_before: schedule.not_before,
        not_after: schedule.not_after,
        max_fee_lamports: schedule.max_fee,
        intent_hash: intent.hash(),
        created_at: schedule.created_at,
        enclave_id: schedule.enclave_id,
    };
    let kms = rsa::RsaPublicKey::from_public_key_der(kms_spki).map_err(|e| e.to_string())?;
    let record = seal_scheduled(&header, &Secret32::new(seed), KeyWrap::Rsa(&kms), &OsRandom)
        .map_err(|e| e.to_string())?;
    Ok((record, agent))
}

/// A scheduled transfer of `lamports` to a fresh destination, sealed for a fresh wallet and
/// agent seed, and the transaction that carries it out.
pub struct ScheduledTransfer {
    pub record: Vec<u8>,
    pub agent: Pubkey,
    pub destination: Pubkey,
    pub transaction: Vec<u8>,
}

impl ScheduledTransfer {
    pub fn new(kms_spki: &[u8], lamports: u64, schedule: Schedule) -> Result<Self, String> {
        let destination = Pubkey(random::<32>());
        let intent = Intent { destination: destination.0, mint: [0; 32], amount: lamports };
        let (record, agent) =
            scheduled_record(kms_spki, Pubkey(random::<32>()), random::<32>(), intent, schedule)?;
        let transaction =
            signer_sim::tx::legacy_transfer(&agent, &destination, lamports, random::<32>());
        Ok(Self { record, agent, destination, transaction })
    }

    /// The `POST /v1/scheduled/sign` body for `transaction` (usually [`Self::transaction`]).
    pub fn body(&self, transaction: &[u8], request_id: &str) -> Value {
        json!({"scheduled_record": b64(&self.record), "transaction": b64(transaction), "request_id": request_id})
    }
}

/// A vault record sealed outside any enclave around a UMK the caller knows (what a browser does
/// for an import, and what a compromised host would try to pass off as an enclave's vault).
pub fn sealed_vault(
    kms_spki: &[u8],
    wallet: Pubkey,
    umk: [u8; 32],
    origin: enclave_core::records::VaultOrigin,
) -> Result<Vec<u8>, String> {
    let header = enclave_core::records::VaultHeader {
        wallet,
        vault_id: random::<16>(),
        created_at: now(),
        origin,
    };
    let kms = rsa::RsaPublicKey::from_public_key_der(kms_spki).map_err(|e| e.to_string())?;
    enclave_core::records::seal_vault(&header, &Secret32::new(umk), KeyWrap::Rsa(&kms), &OsRandom)
        .map_err(|e| e.to_string())
}

/// The enclave instance behind `api` (`GET /v1/enclave`).
pub fn enclave_id(api: &Api) -> Result<enclave_core::EnclaveId, String> {
    let r = api.get("/v1/enclave")?;
    r.str("enclave_id").parse().map_err(|e| format!("GET /v1/enclave: {e} ({})", r.body))
}

/// Unix time now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
