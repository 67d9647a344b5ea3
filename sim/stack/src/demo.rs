//! The demo round trip, playing the user with a test wallet keypair: create a vault (the enclave
//! generates the master key; its provenance is verified), create an agent, ask for the grant
//! message, sign it with the wallet, create the grant, sign a SOL transfer, verify the signature;
//! then revoke a second grant with the wallet's signature, and export the agent's seed to a key
//! only the "browser" holds and open it there.
//! Printed by `scripts/sim.sh`; also what the end-to-end tests check first.

use std::time::SystemTime;

use base64::Engine as _;
use enclave_core::{OsRandom, Pubkey, SecureRandom};
use serde_json::json;

use crate::client::Api;
use crate::tx::{legacy_transfer, verify_first_signature};
use crate::user::{GrantTerms, User};

/// What the demo did.
#[derive(Clone, Debug)]
pub struct Demo {
    pub wallet: String,
    pub vault_id: String,
    pub vault_record: String,
    pub vault_provenance: String,
    pub agent_pubkey: String,
    pub agent_key_record: String,
    pub bot_id: String,
    pub message: String,
    pub wallet_signature: String,
    pub grant_id: String,
    pub grant_record: String,
    pub enclave_id: String,
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

fn unb64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| e.to_string())
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

/// Verifies a vault's provenance document as anyone outside the enclave can: against the sim
/// root and the measured image, at the document's own time.
fn verify_vault_provenance(trust: &Trust, record: &[u8], document: &[u8]) -> Result<(), String> {
    let subject = signer_types::provenance::Subject::vault(record).map_err(|e| e.to_string())?;
    nitro_attestation::verify_at_document_time(
        document,
        &trust.anchor,
        std::slice::from_ref(&trust.image),
        &subject.user_data(),
        SystemTime::now(),
    )
    .map(drop)
    .map_err(|e| format!("vault provenance: {e}"))
}

/// What the demo checks provenance documents against.
pub struct Trust {
    pub anchor: nitro_attestation::TrustAnchor,
    pub image: std::collections::BTreeMap<u8, Vec<u8>>,
}

/// Runs the round trip against the API; `report` is told each step.
pub fn run(api: &Api, trust: &Trust, report: &mut dyn FnMut(&str)) -> Result<Demo, String> {
    let user = User::random()?;
    report(&format!("user wallet {} (a test keypair plays the user)", user.wallet));
    let vault = user.create_vault(api)?;
    verify_vault_provenance(trust, &unb64(&vault.record)?, &unb64(&vault.provenance)?)?;
    report(&format!(
        "vault {}: master key generated in the enclave; provenance verified against the \
         attested image",
        vault.vault_id
    ));
    let agent = user.create_agent(api, &vault, None)?;
    report(&format!("agent {} created from the vault", agent.agent_pubkey));
    let terms = GrantTerms {
        bot_id: uuid::Uuid::new_v4().to_string(),
        agent_pubkey: agent.agent_pubkey.clone(),
        ttl_seconds: 900,
        policy: demo_policy(),
    };
    let message = user.grant_message(api, &terms)?;
    report("the enclave rendered the message the wallet signs:");
    for line in message.message.lines() {
        report(&format!("    | {line}"));
    }
    let wallet_signature = user.sign_message(&message.message);
    report("the wallet signed it");
    let r =
        api.post("/v1/grants", &user.grant_body(&terms, &message, &wallet_signature, &vault))?;
    if r.status != 200 {
        return Err(format!("create grant: HTTP {} {}", r.status, r.body));
    }
    let (grant_id, grant_record) = (r.str("grant_id"), r.str("grant_record"));
    let enclave_id = r.str("enclave_id");
    report(&format!("grant {grant_id} created on enclave {enclave_id}, valid 15 minutes"));

    let agent_key: Pubkey = agent.agent_pubkey.parse().map_err(|e| format!("{e}"))?;
    let to = Pubkey(random::<32>()?);
    let tx = legacy_transfer(&agent_key, &to, 10_000_000, random::<32>()?);
    let sign = api.post_with(
        "/v1/sign",
        &json!({
            "grant_record": grant_record,
            "agent_key_record": agent.record,
            "bot_id": terms.bot_id,
            "transaction": b64(&tx),
            "request_id": uuid::Uuid::new_v4().to_string()
        }),
        &[("x-signer-route", &enclave_id)],
    )?;
    if sign.status != 200 {
        return Err(format!("sign: HTTP {} {}", sign.status, sign.body));
    }
    let signed = unb64(&sign.str("transaction"))?;
    verify_first_signature(&signed, &agent_key)?;
    let signature = sign.str("signature");
    let sig_bytes = bs58::decode(&signature).into_vec().map_err(|e| e.to_string())?;
    if signed.get(1..65) != Some(sig_bytes.as_slice()) {
        return Err("the returned signature is not the one in the transaction".into());
    }
    report("a 0.01 SOL transfer was signed by the agent and verified");

    // The user's own powers: revoke with the wallet, export to the browser's key.
    let second = GrantTerms { bot_id: uuid::Uuid::new_v4().to_string(), ..terms.clone() };
    let doomed = user.create_grant(api, &vault, &second)?;
    let r = user.revoke(api, Some(&doomed.grant_id))?;
    if r.status != 200 {
        return Err(format!("wallet-signed revoke: HTTP {} {}", r.status, r.body));
    }
    let refused = api.post(
        "/v1/sign",
        &json!({
            "grant_record": doomed.record,
            "agent_key_record": agent.record,
            "bot_id": second.bot_id,
            "transaction": b64(&tx),
            "request_id": uuid::Uuid::new_v4().to_string()
        }),
    )?;
    if refused.status != 403 || refused.code() != Some("grant_revoked") {
        return Err(format!("a revoked grant signed: HTTP {} {}", refused.status, refused.body));
    }
    report(&format!(
        "a second grant {} was revoked with the wallet's own signature (API token only); \
         signing with it now answers 403 grant_revoked",
        doomed.grant_id
    ));
    let (_, exported) = user.export(api, &vault, Some(&agent.record))?;
    let derived = exported.agent_pubkey(0)?.map(|k| k.to_string());
    if derived.as_deref() != Some(agent.agent_pubkey.as_str()) {
        return Err(format!("the exported seed derives {derived:?}, not {}", agent.agent_pubkey));
    }
    report(&format!(
        "the agent's seed was exported with the wallet's signature, HPKE-sealed to a key only \
         the browser holds, and opened there: it derives {}",
        agent.agent_pubkey
    ));
    Ok(Demo {
        wallet: user.wallet.to_string(),
        vault_id: vault.vault_id,
        vault_record: vault.record,
        vault_provenance: vault.provenance,
        agent_pubkey: agent.agent_pubkey,
        agent_key_record: agent.record,
        bot_id: terms.bot_id,
        message: message.message,
        wallet_signature,
        grant_id,
        grant_record,
        enclave_id,
        transaction_b64: b64(&tx),
        signature,
        signed_transaction: sign.str("transaction"),
    })
}
