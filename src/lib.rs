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

/// A wallet with an agent and a grant, created through the API.
#[derive(Clone, Debug)]
pub struct Wallet {
    pub wallet: String,
    pub umk: String,
    pub agent_pubkey: String,
    pub agent_key_record: String,
    pub bot_id: String,
    pub grant_id: String,
    pub grant_record: String,
    pub expires_at: u64,
}

impl Wallet {
    /// Creates a wallet, an agent and a grant with `policy` for `ttl` seconds.
    pub fn create(api: &Api, policy: Value, ttl: u64) -> Result<Self, String> {
        let wallet = Pubkey(random::<32>()).to_string();
        let umk = b64(&random::<32>());
        let agent = api.post("/v1/agents", &json!({"wallet": wallet, "umk": umk}))?;
        if agent.status != 200 {
            return Err(format!("create agent: {} {}", agent.status, agent.body));
        }
        let mut w = Self {
            wallet,
            umk,
            agent_pubkey: agent.str("agent_pubkey"),
            agent_key_record: agent.str("agent_key_record"),
            bot_id: uuid::Uuid::new_v4().to_string(),
            grant_id: String::new(),
            grant_record: String::new(),
            expires_at: 0,
        };
        w.new_grant(api, policy, ttl)?;
        Ok(w)
    }

    /// Replaces the grant with a new one.
    pub fn new_grant(&mut self, api: &Api, policy: Value, ttl: u64) -> Result<(), String> {
        let grant = api.post(
            "/v1/grants",
            &json!({"wallet": self.wallet, "bot_id": self.bot_id, "agent_pubkey": self.agent_pubkey, "umk": self.umk, "ttl_seconds": ttl, "policy": policy}),
        )?;
        if grant.status != 200 {
            return Err(format!("create grant: {} {}", grant.status, grant.body));
        }
        self.grant_id = grant.str("grant_id");
        self.grant_record = grant.str("grant_record");
        self.expires_at = grant.body.get("expires_at").and_then(Value::as_u64).unwrap_or(0);
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

/// A scheduled-key record built the way a browser would (only the KMS public key is needed).
pub fn scheduled_record(
    kms_spki: &[u8],
    wallet: Pubkey,
    seed: [u8; 32],
    intent: Intent,
    not_before: u64,
    not_after: u64,
    max_fee: u64,
) -> Result<(Vec<u8>, Pubkey), String> {
    let agent =
        enclave_core::agent_key::signing_key(enclave_core::agent_key::AgentKind::Seed, &seed)
            .map_err(|e| e.to_string())?;
    let agent = Pubkey(agent.verifying_key().to_bytes());
    let header = ScheduledHeader {
        wallet,
        schedule_id: random::<16>(),
        agent_pubkey: agent,
        not_before,
        not_after,
        max_fee_lamports: max_fee,
        intent_hash: intent.hash(),
    };
    let kms = rsa::RsaPublicKey::from_public_key_der(kms_spki).map_err(|e| e.to_string())?;
    let record = seal_scheduled(&header, &Secret32::new(seed), KeyWrap::Rsa(&kms), &OsRandom)
        .map_err(|e| e.to_string())?;
    Ok((record, agent))
}

/// Unix time now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
