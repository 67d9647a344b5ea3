//! The examples of the OpenAPI document, by operation id: a request body and a `200` answer for
//! each route. Keys and ids are well-formed; records, documents and signatures are made-up bytes
//! of the right encoding (a record the enclave did not seal is refused, `record_invalid`). The
//! requests that need nothing earlier (`vaults`, `authorize_grant`, `kill_switch`, the reads)
//! succeed as they are against `scripts/sim.sh`, and every request example parses as the route
//! parses its body (tests below; `tests/openapi.rs` sends them to the simulation stack).

use serde_json::{Value, json};

pub const WALLET: &str = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T";
const AGENT: &str = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
const USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const MEMO: &str = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
const BOT: &str = "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b";
const ENCLAVE: &str = "3b2f6c1e-8d4a-4f0b-9c7e-5a1d2e3f4b6c";
const SUCCESSOR: &str = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b";
const GRANT: &str = "0d6f3a2b-7c1e-4b5a-9f8e-6d4c3b2a1f0e";
const REQUEST: &str = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f";
pub const SIGNATURE: &str =
    "v92SXVg7axDrJpqxrbAG5QgUJnZPxmhQMa9tQ2yz6iUX3eajcWNaaXmSUujEujJ2FxSVeLb41WXTmJ2qfSieytK";
const VAULT_RECORD: &str = "AQAAAASLQBCzmoY1/1zf6dSHFD90taG6LPbOm1I2n2Kb2kxgRGZAyxxOP/tYthj7GBjwHTu2qzEhdQ3JR+XRbSCV245Awfe9BNuriq9rjE0/fHSJIR/A6b0Sqj7HSq80mGQeKgMvt0kyqSsHNeRqdYpVn07FUJ0U";
const AGENT_RECORD: &str = "AQAAAAIu4mF855F8Q9zE5Y0h9KTCD7S1xfpU2rSGbdzTAyG6tBPtsmgDtdbtz1nBkUlJgY1ULqrMN6LZL344ohZT/XflLMUTPKxjL8lVOcrs4u9BjEg8twh2AR30WUfEuRDEI8lf5YZBievgbHFJkpyG/JeaZWnm";
const GRANT_RECORD: &str = "AQAAAAH9GkAz9fGpv1plK31C1qwH5s2d6f8mAAsL/bPCr1rgYG3bxsGG3EugQrgtBSPl2al50kH8EaY7Sp+txFIGuGJiuBP+Q63zUIwbNDnEXRZdnOJRPBYtxhwWFxC3D+j503byrrR48A+jozOvy6gU7amzIsNr/+Xgb8V7eQsrcy2SafTEvnLxGtPkt/qczNeqMjK/";
const SCHEDULED_RECORD: &str = "AQAAAAPGuXULzP1Gtm1Ul+aYVkGhxIFa9BNVf1uI19CJQnqNyw6c5ZrCtHKaxAWFL1gwxLm9oV3LcXrqUrOM8kI5mkQQClf7uD9TlSzsDuIaWn0LEI2hz2Z7g5r1ETZVpNYK9b3EcX8+1xeaqexDRt7RY7TZDGDgvvkuKDfNsRtaQBo+C70Up4BcKtw0w20H2DL4wEMd";
const PROVENANCE: &str = "hEShATgioFkg5xE2eyMkRq4UaPDEA/YN6j9a7zgt4Mu4buz8/1Czxeq3YtujkYFWbVJPvnMt3ufoxu9BQNVLZGxyPxf686b7AJWILVNT9rVLmY/CjVD7IxMwY+qjEZdd";
const TRANSACTION: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAED1sFlbd0CjsrWAid+/dikVI1RoH4LKSvYkzo5A7g45z155CjJfUd/cWldSNhSDnPFTPQLEmIvds7i/5lPfoBEMSE+Hbh/wYYSHYbT854ImnWAeu7OiBNdOItejLgHw58k3Dkwhbu8lueyzfK0Nynn";
const DOCUMENT: &str =
    "hEShATgioFkW5Wvy005BVmLfSPlYdE+igZ3Hct5+ptvP2f/ictwbEFluAiaelR4u3Bx0Ss4IRvNghH6L";
const X25519: &str = "Csp+HoFFmqMBItgPJvbBGA7ak1xv+q6PknX4LETNkPI=";
const ENC: &str = "RCr7RG7t9leOddZp0NfqjPtMr5pxHrv6mfD/AYz8Zyg=";
const CIPHERTEXT: &str = "CsHR/U7RLBUXztUunOcnzrRxQWhHJEURazFvr7iLxD0xTFXgHL3AIU1BI8iBI/ux";
const KMS_SPKI: &str = "MIIBIu2gvw7xC94TE55fq5f8sZAIiDX54s/m/jRvGO7JuNdDanZ6Pg==";
const NONCE: &str = "k3Jd9QmZx2VbT8wA";
/// A member card's encoding (version 1, ids, a key, a document), made-up bytes: refused.
const CARD: &str =
    "AbTq3Jx0YcVqQ4mL1sNfR2kA9cW6eZ8uH5pI3oD7gXyJz0KsMvB1nC4lE2tF6rG8hU9iO0pQ3wS5aD7fY1xZ";
const CLUSTER: &str = "6e5d4c3b-2a19-4807-b6a5-948372615048";
const PROOF: &str = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k=";
const ISSUED_AT: u64 = 1_767_225_600;

fn policy() -> Value {
    json!({
        "max_lamports_per_tx": 1_000_000_000u64,
        "max_lamports_per_day": 5_000_000_000u64,
        "max_fee_lamports": 100_000,
        "tokens": [{"mint": USDC, "max_per_tx": 100_000_000u64, "max_per_day": 1_000_000_000u64}],
        "allowed_programs": [MEMO],
        "max_notional_cents_per_tx": 100_000,
        "max_notional_cents_per_day": 1_000_000,
        "max_tx_per_minute": 60
    })
}

fn message(purpose: &str) -> String {
    format!(
        "localhost wants you to sign in with your Solana account:\n{WALLET}\n\n{purpose}\n\n\
         URI: http://localhost\nVersion: 1\nChain ID: localnet\nNonce: {NONCE}\n\
         Issued At: 2026-01-01T00:00:00Z\nExpiration Time: 2026-01-01T00:10:00Z"
    )
}

fn authorization(purpose: &str) -> Value {
    json!({
        "message": message(purpose),
        "nonce": NONCE,
        "issued_at": ISSUED_AT,
        "expires_at": ISSUED_AT + 600,
        "enclave_id": ENCLAVE
    })
}

/// `base` with the fields of `extra` added (both objects).
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// The request body example of `operation_id`, if it takes one.
pub fn request(operation_id: &str) -> Option<Value> {
    let signed = |body: Value| {
        merged(body, json!({"nonce": NONCE, "issued_at": ISSUED_AT, "signature": SIGNATURE}))
    };
    let grant = json!({
        "wallet": WALLET,
        "bot_id": BOT,
        "agent_pubkey": AGENT,
        "ttl_seconds": 900,
        "policy": policy()
    });
    let export = json!({
        "wallet": WALLET,
        "vault_record": VAULT_RECORD,
        "vault_provenance": PROVENANCE,
        "agent_key_record": AGENT_RECORD,
        "recipient": X25519
    });
    Some(match operation_id {
        "vaults" => json!({"wallet": WALLET}),
        "authorize_import" => json!({"wallet": WALLET, "vault_record": VAULT_RECORD}),
        "import_vault" => signed(json!({"wallet": WALLET, "vault_record": VAULT_RECORD})),
        "agents" => json!({
            "wallet": WALLET,
            "vault_record": VAULT_RECORD,
            "vault_provenance": PROVENANCE,
            "kind": "mnemonic",
            "account": 0
        }),
        "authorize_grant" => grant,
        "grants" => merged(
            signed(grant),
            json!({"vault_record": VAULT_RECORD, "vault_provenance": PROVENANCE}),
        ),
        "sign" => json!({
            "grant_record": GRANT_RECORD,
            "agent_key_record": AGENT_RECORD,
            "bot_id": BOT,
            "transaction": TRANSACTION,
            "request_id": REQUEST,
            "declared_notional_cents": 2_500
        }),
        "scheduled_sign" => json!({
            "scheduled_record": SCHEDULED_RECORD,
            "transaction": TRANSACTION,
            "request_id": REQUEST
        }),
        "authorize_revoke" => json!({"wallet": WALLET, "grant_id": GRANT}),
        "revoke" => signed(json!({"wallet": WALLET, "grant_id": GRANT})),
        "authorize_export" => export,
        "export" => signed(export),
        "kill_switch" => json!({"engaged": true}),
        "handover" => json!({"successor": "unix:/tmp/signer-successor.sock"}),
        "cluster_card" => json!({"relay": "http://10.0.1.10:8787"}),
        "cluster_found" => json!({"founders": [
            {"card": CARD, "relay": "http://10.0.1.10:8787"},
            {"card": CARD, "relay": "http://10.0.2.10:8787"},
            {"card": CARD, "relay": "http://10.0.3.10:8787"}
        ]}),
        "cluster_join" => json!({"cluster_id": CLUSTER, "members": [
            {"card": CARD, "relay": "http://10.0.1.10:8787"},
            {"card": CARD, "relay": "http://10.0.2.10:8787"}
        ]}),
        "cluster_admit" => {
            json!({"card": CARD, "relay": "http://10.0.3.10:8787", "replacing": SUCCESSOR})
        }
        "cluster_prove" => json!({"leader": ENCLAVE, "envelope": CIPHERTEXT}),
        _ => return None,
    })
}

/// The `200` answer example of `operation_id`, if it answers JSON.
pub fn response(operation_id: &str) -> Option<Value> {
    Some(match operation_id {
        "healthz" => json!({"status": "ok"}),
        "readyz" => json!({
            "ready": true,
            "enclave_connected": true,
            "enclave_attested": true,
            "attestation_error": null,
            "kms_reachable": true,
            "kms_key": "enabled",
            "kill_switch": false,
            "handed_over_to": null,
            "handover": null
        }),
        "attestation" => json!({
            "document": DOCUMENT,
            "public_key": X25519,
            "pcrs": {"0": "9a1b…(96 hex digits)", "1": "…", "2": "…"},
            "timestamp_ms": ISSUED_AT * 1000,
            "enclave_id": ENCLAVE
        }),
        "enclave" => json!({
            "enclave_id": ENCLAVE,
            "answers_for": [ENCLAVE],
            "started_at": ISSUED_AT - 3600,
            "kms_public_key": KMS_SPKI,
            "registry": {"tokens": [{"mint": USDC, "symbol": "USDC", "decimals": 6}],
                         "programs": [{"id": MEMO, "name": "Memo"}]}
        }),
        "vaults" => json!({
            "vault_id": "2c5e8f1a-4b3d-4e6f-8a9b-0c1d2e3f4a5b",
            "vault_record": VAULT_RECORD,
            "provenance": PROVENANCE
        }),
        "authorize_import" => authorization("Import the vault … into the signing enclave."),
        "import_vault" => json!({
            "vault_id": "2c5e8f1a-4b3d-4e6f-8a9b-0c1d2e3f4a5b",
            "provenance": PROVENANCE
        }),
        "agents" => json!({
            "agent_pubkey": AGENT,
            "agent_key_record": AGENT_RECORD,
            "agent_id": "8b7a6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d",
            "provenance": PROVENANCE
        }),
        "authorize_grant" => {
            let a =
                authorization("Allow bot 7a1c4a9e-… to sign with agent 7xKX… for 15 minutes: …");
            let sha = "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592";
            merged(a, json!({"policy_sha256": sha}))
        }
        "grants" => json!({
            "grant_id": GRANT,
            "issued_at": ISSUED_AT,
            "expires_at": ISSUED_AT + 900,
            "grant_record": GRANT_RECORD,
            "enclave_id": ENCLAVE
        }),
        "sign" => json!({"signature": SIGNATURE, "transaction": TRANSACTION, "grant_id": GRANT}),
        "scheduled_sign" => json!({"signature": SIGNATURE, "transaction": TRANSACTION}),
        "authorize_revoke" => authorization(
            "Revoke grant 0d6f3a2b-… of this wallet: no bot can sign with it from now on.",
        ),
        "revoke" => {
            json!({"revoked": {"wallet": WALLET, "grant_id": GRANT}, "dropped_from_memory": 1})
        }
        "authorize_export" => authorization("Export the secret of agent 7xKX… to this browser: …"),
        "export" => json!({
            "kind": "seed",
            "record_id": "8b7a6c5d-4e3f-4a2b-9c1d-0e9f8a7b6c5d",
            "recipient": X25519,
            "enc": ENC,
            "ciphertext": CIPHERTEXT,
            "hpke": super::routes::EXPORT_HPKE
        }),
        "kill_switch" => json!({"engaged": true}),
        "handover" => json!({
            "predecessor": ENCLAVE,
            "successor": SUCCESSOR,
            "answers_for": [SUCCESSOR, ENCLAVE],
            "request_ids": 1_204,
            "counters": 87,
            "chunks": 2,
            "bytes": 183_455,
            "millis": 412
        }),
        "handover_abort" => json!({"enclave_id": ENCLAVE, "abandoned_successor": SUCCESSOR}),
        "cluster" => json!({
            "enclave_id": ENCLAVE,
            "cluster_id": CLUSTER,
            "role": "follower",
            "leader": SUCCESSOR,
            "leader_relay": "http://10.0.2.10:8787",
            "term": 4,
            "last_applied": 1_337,
            "members": [
                {"enclave_id": ENCLAVE, "relay": "http://10.0.1.10:8787", "voter": true},
                {"enclave_id": SUCCESSOR, "relay": "http://10.0.2.10:8787", "voter": true}
            ],
            "ready": true
        }),
        "cluster_relay" | "cluster_admit" => json!({"accepted": true}),
        "cluster_card" => json!({"card": CARD, "enclave_id": ENCLAVE}),
        "cluster_prove" => json!({"proof": PROOF}),
        "cluster_found" | "cluster_join" => json!({"cluster_id": CLUSTER}),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn every_request_example_parses_as_its_route_parses_bodies() {
        let openapi = crate::api::openapi();
        let mut checked = 0;
        for (path, item) in &openapi.paths.paths {
            let Some(operation) = &item.post else { continue };
            let id = operation.operation_id.clone().unwrap();
            // A relayed member message is octets, not JSON: it has no example to parse.
            if path == "/v1/cluster/relay" {
                continue;
            }
            let takes_body = operation.request_body.is_some();
            match request(&id) {
                Some(example) => {
                    assert!(takes_body, "{id} has an example but no body");
                    signer_api::parse_body(path, example.to_string().as_bytes())
                        .unwrap_or_else(|e| panic!("{id}: {e}"));
                    checked += 1;
                }
                None => assert!(!takes_body, "{id} takes a body but has no example"),
            }
        }
        assert_eq!(checked, 19);
    }
}
