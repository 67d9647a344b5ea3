//! Every refusal of a wallet's grant authorization (SPEC §15), end to end over HTTP against the
//! real daemons: another wallet's signature, each field changed after signing, a message for
//! another domain, chain or enclave, a malleated signature, an expired or future message, and a
//! replayed one. Each has its own code, and none seals a grant; the honest one then works once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use enclave_core::authorization::{MessageDomain, MessageFields, Purpose, render};
use enclave_core::policy::Policy;
use serde_json::Value;
use signer_e2e::*;
use signer_sim::stack::{SIM_CHAIN_ID, SIM_DOMAIN, SIM_URI};
use signer_sim::user::Message;

mod common;

fn sim_domain() -> MessageDomain {
    MessageDomain {
        domain: SIM_DOMAIN.into(),
        uri: SIM_URI.into(),
        chain_id: SIM_CHAIN_ID.into(),
        validity_seconds: 600,
        registry: signer_sim::stack::sim_registry(),
    }
}

/// The message the enclave would render for `terms` with these header fields.
fn rendered(
    domain: &MessageDomain,
    w: &Wallet,
    terms: &GrantTerms,
    enclave: enclave_core::EnclaveId,
    nonce: &str,
    issued_at: u64,
) -> String {
    let policy: Policy = serde_json::from_value(terms.policy.clone()).unwrap();
    render(
        domain,
        &MessageFields {
            wallet: w.user.wallet,
            enclave,
            nonce,
            issued_at,
            purpose: Purpose::Grant {
                bot_id: *uuid::Uuid::parse_str(&terms.bot_id).unwrap().as_bytes(),
                agent: terms.agent_pubkey.parse().unwrap(),
                ttl_seconds: terms.ttl_seconds,
                policy: &policy,
            },
        },
    )
    .unwrap()
}

/// `s + L` in the signature's S half: the same signature to a lax verifier, malleated to ours.
fn malleated(signature_b58: &str) -> String {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sig = bs58::decode(signature_b58).into_vec().unwrap();
    let mut carry = 0u16;
    for (i, l) in L.iter().enumerate() {
        let sum = u16::from(sig[32 + i]) + u16::from(*l) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    bs58::encode(sig).into_string()
}

fn code(r: &signer_sim::client::Reply) -> (u16, String) {
    (r.status, r.code().unwrap_or("").to_string())
}

#[test]
fn every_refusal_of_a_wallet_authorization_has_its_code_and_seals_nothing() {
    let stack = start("authorization").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 5_000_000_000), 600).unwrap();
    let enclave = enclave_id(&api).unwrap();
    let terms = w.terms(policy(1_000_000_000, 5_000_000_000), 900);
    let message = w.user.grant_message(&api, &terms).unwrap();
    // The enclave's text is exactly what the renderer makes from the structured fields.
    assert_eq!(
        message.message,
        rendered(&sim_domain(), &w, &terms, enclave, &message.nonce, message.issued_at)
    );
    let post = |terms: &GrantTerms, message: &Message, signature: &str| {
        api.post("/v1/grants", &w.user.grant_body(terms, message, signature, &w.vault)).unwrap()
    };
    let signature_invalid = (403, "authorization_signature_invalid".to_string());

    // Another wallet signed the very message.
    let other = User::random().unwrap();
    let r = post(&terms, &message, &other.sign_message(&message.message));
    assert_eq!(code(&r), signature_invalid, "{}", r.body);

    // Each field changed after the wallet signed: the enclave renders a different message.
    let signature = w.user.sign_message(&message.message);
    let second_agent = w.user.create_agent(&api, &w.vault, None).unwrap();
    let mut changed: Vec<(&str, GrantTerms)> = Vec::new();
    let mut t = terms.clone();
    t.policy["max_lamports_per_day"] = Value::from(50_000_000_000u64);
    changed.push(("policy", t));
    let mut t = terms.clone();
    t.bot_id = uuid::Uuid::new_v4().to_string();
    changed.push(("bot", t));
    let mut t = terms.clone();
    t.agent_pubkey = second_agent.agent_pubkey.clone();
    changed.push(("agent", t));
    let mut t = terms.clone();
    t.ttl_seconds = 3600;
    changed.push(("ttl", t));
    for (field, t) in &changed {
        let r = post(t, &message, &signature);
        assert_eq!(code(&r), signature_invalid, "changed {field}: {}", r.body);
    }

    // A message rendered for another domain, another chain, or another enclave instance.
    let mut evil = sim_domain();
    evil.domain = "wallet-drainer.example".into();
    let mut devnet = sim_domain();
    devnet.chain_id = "devnet".into();
    let elsewhere = enclave_core::EnclaveId::from_recipient_key(b"another enclave");
    for (what, domain, enclave) in [
        ("domain", &evil, enclave),
        ("chain", &devnet, enclave),
        ("enclave", &sim_domain(), elsewhere),
    ] {
        let nonce = hex::encode(random::<16>());
        let text = rendered(domain, &w, &terms, enclave, &nonce, now());
        let m = Message { message: text.clone(), nonce, issued_at: now(), ..message.clone() };
        let r = post(&terms, &m, &w.user.sign_message(&text));
        assert_eq!(code(&r), signature_invalid, "another {what}: {}", r.body);
    }

    // A malleated signature is refused before verification.
    let r = post(&terms, &message, &malleated(&signature));
    assert_eq!(code(&r), (400, "authorization_signature_noncanonical".into()), "{}", r.body);

    // Expired (issued more than the 10-minute validity ago) and from the future (beyond the skew).
    for (issued_at, expected) in [
        (now() - 700, (403, "authorization_expired".to_string())),
        (now() + 300, (403, "authorization_not_yet_valid".to_string())),
    ] {
        let nonce = hex::encode(random::<16>());
        let text = rendered(&sim_domain(), &w, &terms, enclave, &nonce, issued_at);
        let m = Message { message: text.clone(), nonce, issued_at, ..message.clone() };
        let r = post(&terms, &m, &w.user.sign_message(&text));
        assert_eq!(code(&r), expected, "{}", r.body);
    }

    // Nothing above sealed a grant; the honest request does, once.
    let (_, metrics) = api.get_text("/metrics").unwrap();
    let ok_grants = |text: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("signer_http_requests_total{")
                    && l.contains("route=\"grants\"")
                    && l.contains("code=\"ok\"")
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    assert_eq!(ok_grants(&metrics), 1.0, "only the wallet's first grant so far");
    let r = post(&terms, &message, &signature);
    assert_eq!(r.status, 200, "{}", r.body);
    let record = r.str("grant_record");
    // The same signed request again (a lost reply) is the same grant, not a second one.
    let again = post(&terms, &message, &signature);
    assert_eq!((again.status, again.str("grant_id")), (200, r.str("grant_id")), "{}", again.body);
    let (_, metrics) = api.get_text("/metrics").unwrap();
    assert_eq!(ok_grants(&metrics), 3.0, "two answers, one grant (the same id)");
    // The grant signs, verified by an independent Solana implementation.
    let mut w = w;
    w.grant_record = record;
    let r = api.post("/v1/sign", &w.sign_body(&w.transfer(7), &request_id())).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    common::verify(&r.str("transaction"));
}
