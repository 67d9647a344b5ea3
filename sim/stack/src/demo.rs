//! The demo round trip: create an agent, create a grant, sign a SOL transfer, verify the
//! signature. Printed by `scripts/sim.sh`; also what the end-to-end tests check first.

use base64::Engine as _;
use enclave_core::{OsRandom, Pubkey, SecureRandom};
use serde_json::json;

use crate::client::Api;
use crate::tx::{legacy_transfer, verify_first_signature};

/// What the demo did.
#[derive(Clone, Debug)]
pub struct Demo {
    pub wallet: String,
    pub umk_b64: String,
    pub agent_pubkey: String,
    pub agent_key_record: String,
    pub bot_id: String,
    pub grant_id: String,
    pub grant_record: String,
    pub transaction_b64: String,
    pub signature: String,
    pub signed_transaction: String,
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    OsRandom.fill(&mut b).map_err(|e| e.to_string())?;
    Ok(b)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The demo policy: 1 SOL per transaction, 5 per day, fees up to 0.0001 SOL.
pub fn demo_policy() -> serde_json::Value {
    json!({
        "max_lamports_per_tx": 1_000_000_000u64,
        "max_lamports_per_day": 5_000_000_000u64,
        "max_fee_lamports": 100_000,
        "tokens": [],
        "allowed_programs": [],
        "max_notional_cents_per_tx": 0,
        "max_notional_cents_per_day": 0
    })
}

fn expect_ok(step: &str, r: &crate::client::Reply) -> Result<(), String> {
    if r.status == 200 { Ok(()) } else { Err(format!("{step}: HTTP {} {}", r.status, r.body)) }
}

/// Runs the round trip against the API.
pub fn run(api: &Api) -> Result<Demo, String> {
    let wallet = Pubkey(random::<32>()?).to_string();
    let umk = b64(&random::<32>()?);
    let agent = api.post("/v1/agents", &json!({"wallet": wallet, "umk": umk}))?;
    expect_ok("create agent", &agent)?;
    let agent_pubkey = agent.str("agent_pubkey");
    let bot_id = uuid::Uuid::new_v4().to_string();
    let grant = api.post(
        "/v1/grants",
        &json!({"wallet": wallet, "bot_id": bot_id, "agent_pubkey": agent_pubkey, "umk": umk, "ttl_seconds": 900, "policy": demo_policy()}),
    )?;
    expect_ok("create grant", &grant)?;
    let agent_key: Pubkey = agent_pubkey.parse().map_err(|e| format!("{e}"))?;
    let to = Pubkey(random::<32>()?);
    let tx = legacy_transfer(&agent_key, &to, 10_000_000, random::<32>()?);
    let sign = api.post(
        "/v1/sign",
        &json!({
            "grant_record": grant.str("grant_record"),
            "agent_key_record": agent.str("agent_key_record"),
            "bot_id": bot_id,
            "transaction": b64(&tx),
            "request_id": uuid::Uuid::new_v4().to_string()
        }),
    )?;
    expect_ok("sign", &sign)?;
    let signed = base64::engine::general_purpose::STANDARD
        .decode(sign.str("transaction"))
        .map_err(|e| e.to_string())?;
    verify_first_signature(&signed, &agent_key)?;
    let signature = sign.str("signature");
    let sig_bytes = bs58::decode(&signature).into_vec().map_err(|e| e.to_string())?;
    if signed.get(1..65) != Some(sig_bytes.as_slice()) {
        return Err("the returned signature is not the one in the transaction".into());
    }
    Ok(Demo {
        wallet,
        umk_b64: umk,
        agent_pubkey,
        agent_key_record: agent.str("agent_key_record"),
        bot_id,
        grant_id: grant.str("grant_id"),
        grant_record: grant.str("grant_record"),
        transaction_b64: b64(&tx),
        signature,
        signed_transaction: sign.str("transaction"),
    })
}
