//! No protocol message can carry a master key (SPEC §3 invariant 7), proven over the message
//! schema: one sample of every request and reply variant (the exhaustive matches below stop
//! compiling when a variant is added), encoded to CBOR and walked. Every byte string in them
//! sits at a reviewed path whose contents are public or sealed — a new byte field fails this test
//! until someone says here why it cannot hold a secret — and no field is named like a secret.
//! The crate cannot even name a secret type: it depends on `signer-types`, which has none, and
//! not on `enclave-core`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use ciborium::Value;
use signer_protocol::messages::encode;
use signer_protocol::{
    AgentKindMsg, ClusterMemberInfo, ClusterPeer, ClusterStatusReply, CreateAgentOp, CreateGrantOp,
    ErrorReply, ExportOp, ExportSubjectMsg, GrantFields, HandoverSummary, ImportVaultOp, Op,
    Outcome, RelayedMessage, Reply, Request, Response, RevokeMsg, RevokeScopeMsg, RevokeSignedOp,
    SignOp, SignScheduledOp, StatusReply,
};
use signer_types::ids::EnclaveId;
use signer_types::policy::{Policy, TokenLimit};
use signer_types::pubkey::Pubkey;
use signer_types::records::WrapAlg;

/// Byte-string paths and why each cannot be a secret. `[]` stands for any list index.
const REVIEWED: &[(&str, &str)] = &[
    ("attest.nonce", "caller-chosen freshness value, echoed in a public document"),
    ("create_vault.wallet", "public key"),
    ("authorize_import.wallet", "public key"),
    ("authorize_import.vault_record", "sealed record (AES-GCM, key wrapped to KMS)"),
    ("import_vault.wallet", "public key"),
    ("import_vault.vault_record", "sealed record"),
    ("import_vault.signature", "the wallet's public signature"),
    ("import_vault.envelope", "KMS CiphertextForRecipient, encrypted to the enclave"),
    ("create_agent.wallet", "public key"),
    ("create_agent.vault_record", "sealed record"),
    ("create_agent.vault_provenance", "public attestation document"),
    ("create_agent.envelope", "KMS CiphertextForRecipient, encrypted to the enclave"),
    ("authorize_grant.wallet", "public key"),
    ("authorize_grant.bot_id", "id"),
    ("authorize_grant.agent_pubkey", "public key"),
    ("authorize_grant.policy.tokens[].mint", "public key"),
    ("authorize_grant.policy.allowed_programs[]", "public key"),
    ("authorize_grant.policy.destinations[]", "public key"),
    ("create_grant.grant.wallet", "public key"),
    ("create_grant.grant.bot_id", "id"),
    ("create_grant.grant.agent_pubkey", "public key"),
    ("create_grant.grant.policy.tokens[].mint", "public key"),
    ("create_grant.grant.policy.allowed_programs[]", "public key"),
    ("create_grant.grant.policy.destinations[]", "public key"),
    ("create_grant.signature", "the wallet's public signature"),
    ("create_grant.vault_record", "sealed record"),
    ("create_grant.vault_provenance", "public attestation document"),
    ("create_grant.envelope", "KMS CiphertextForRecipient, encrypted to the enclave"),
    ("sign.grant_record", "sealed record"),
    ("sign.agent_key_record", "sealed record"),
    ("sign.bot_id", "id"),
    ("sign.transaction", "unsigned transaction"),
    ("sign.request_id", "id"),
    ("sign.envelope", "KMS CiphertextForRecipient, encrypted to the enclave"),
    ("sign_scheduled.scheduled_record", "sealed record"),
    ("sign_scheduled.transaction", "unsigned transaction"),
    ("sign_scheduled.request_id", "id"),
    ("sign_scheduled.envelope", "KMS CiphertextForRecipient, encrypted to the enclave"),
    ("revoke.target.record", "id"),
    ("revoke.target.wallet", "public key"),
    ("handover_prepare.successor_document", "public attestation document"),
    ("handover_accept.predecessor_document", "public attestation document"),
    ("handover_accept.wrapped_key", "the handover key wrapped to KMS"),
    ("handover_accept.envelope", "KMS CiphertextForRecipient, encrypted to the successor"),
    ("handover_export.proof", "HMAC under the handover key: reveals nothing of it"),
    ("handover_commit.imported", "HMAC under the handover key: reveals nothing of it"),
    ("authorize_revoke.scope.record", "id"),
    ("identity.registry.tokens[].mint", "public mint address"),
    ("identity.registry.programs[].id", "public program id"),
    ("export.subject.wallet", "public key"),
    ("authorize_export.wallet", "public key"),
    ("revoke_signed.wallet", "public key"),
    ("authorize_revoke.wallet", "public key"),
    ("revoke_signed.signature", "public wallet signature"),
    ("authorize_export.vault_record", "sealed vault (encrypted to the KMS key)"),
    ("authorize_export.vault_provenance", "public attestation document"),
    ("authorize_export.agent_key_record", "sealed agent key (encrypted under the UMK)"),
    ("authorize_export.recipient", "the browser's X25519 public key"),
    ("export.subject.vault_record", "sealed vault (encrypted to the KMS key)"),
    ("export.subject.vault_provenance", "public attestation document"),
    ("export.subject.agent_key_record", "sealed agent key (encrypted under the UMK)"),
    ("export.subject.recipient", "the browser's X25519 public key"),
    ("export.signature", "public wallet signature"),
    ("export.envelope", "KMS envelope: only the enclave's recipient key opens it"),
    ("handover_finish.token", "HMAC under the handover key: reveals nothing of it"),
    ("handover_import.chunk", "decision state encrypted under the handover key"),
    ("cluster_found.founders[].card", "member card: ids, a public channel key, a public document"),
    ("cluster_join.cluster_id", "id"),
    ("cluster_join.members[].card", "member card: ids, a public channel key, a public document"),
    ("cluster_admit.peer.card", "member card: ids, a public channel key, a public document"),
    ("cluster_admit.replacing", "id"),
    ("cluster_admit.proof", "HMAC under the upgrade challenge key: reveals nothing of it"),
    ("cluster_challenge.card", "member card: ids, a public channel key, a public document"),
    ("cluster_prove.leader", "id"),
    ("cluster_prove.envelope", "KMS CiphertextForRecipient, encrypted to the newcomer"),
    ("cluster_deliver.message", "member message sealed (HPKE) to the receiving member"),
    // Replies.
    ("attestation.document", "public attestation document"),
    ("attestation.public_key", "the enclave's public recipient key"),
    ("identity.enclave_id", "id"),
    ("identity.answers_for[]", "id"),
    ("identity.kms_public_key", "the pinned KMS key's public half"),
    ("vault_created.vault_id", "id"),
    ("vault_created.record", "sealed record"),
    ("vault_created.provenance", "public attestation document"),
    ("vault_imported.vault_id", "id"),
    ("vault_imported.provenance", "public attestation document"),
    ("agent_created.agent_pubkey", "public key"),
    ("agent_created.agent_id", "id"),
    ("agent_created.record", "sealed record"),
    ("agent_created.provenance", "public attestation document"),
    ("authorization.enclave_id", "id"),
    ("grant_created.grant_id", "id"),
    ("grant_created.record", "sealed record"),
    ("grant_created.enclave_id", "id"),
    ("signed.signature", "public transaction signature"),
    ("signed.transaction", "signed transaction"),
    ("signed.record_id", "id"),
    ("need_key.record_id", "id"),
    ("need_key.wrapped_key", "the record's key wrapped to KMS (as in the record)"),
    ("status.enclave_id", "id"),
    ("cluster_card.card", "member card: ids, a public channel key, a public document"),
    ("cluster_joined.cluster_id", "id"),
    ("cluster_challenge.leader", "id"),
    ("cluster_challenge.newcomer", "id"),
    ("cluster_challenge.wrapped_key", "the upgrade challenge key wrapped to KMS"),
    ("cluster_challenge.document", "public attestation document"),
    ("cluster_proof.proof", "HMAC under the upgrade challenge key: reveals nothing of it"),
    ("identity.checkpoint_key", "the public half of the boot's checkpoint key"),
    ("grant_created.receipt", "decision receipt: public fields only (docs/receipts.md)"),
    ("signed.receipt", "decision receipt: public fields only (docs/receipts.md)"),
    ("receipts.enclave_id", "id"),
    ("receipts.decider", "id"),
    ("receipts.checkpoint_key", "the public half of the boot's checkpoint key"),
    ("receipts.document", "public attestation document"),
    ("receipts.receipts[]", "decision receipt: public fields only (docs/receipts.md)"),
    ("receipts.checkpoint", "signed checkpoint: a hash, a seq, a time and a signature"),
    ("cluster_outbox.messages[].message", "member message sealed (HPKE) to another member"),
    ("cluster_status.enclave_id", "id"),
    ("cluster_status.cluster_id", "id"),
    ("cluster_status.leader", "id"),
    ("cluster_status.members[].enclave_id", "id"),
    ("status.handed_over_to", "id"),
    ("handover_offer.document", "public attestation document"),
    ("handover_prepared.document", "public attestation document"),
    ("handover_prepared.wrapped_key", "the handover key wrapped to KMS"),
    ("handover_prepared.successor", "id"),
    ("handover_accepted.proof", "HMAC under the handover key: reveals nothing of it"),
    ("handover_imported.imported", "HMAC under the handover key: reveals nothing of it"),
    ("handover_committed.token", "HMAC under the handover key: reveals nothing of it"),
    ("handover_chunk.chunk", "decision state encrypted under the handover key"),
    ("handover_finished.predecessor", "id"),
    ("exported.enc", "HPKE encapsulated key: public"),
    (
        "exported.ciphertext",
        "HPKE ciphertext to the X25519 key the wallet's signed message names: the user's export, opened only in the user's browser (invariant 7 as amended for export)",
    ),
    ("exported.record_id", "id"),
    ("handover_finished.answers_for[]", "id"),
    ("handover_aborted.successor", "id"),
];

const SECRET_NAMES: &[&str] =
    &["umk", "master", "secret", "seed", "private", "entropy", "dek", "plaintext", "password"];

fn policy() -> Policy {
    Policy {
        max_lamports_per_tx: 1,
        max_lamports_per_day: 2,
        max_fee_lamports: 3,
        tokens: vec![TokenLimit { mint: Pubkey([4; 32]), max_per_tx: 5, max_per_day: 6 }],
        allowed_programs: vec![Pubkey([7; 32])],
        max_notional_cents_per_tx: 8,
        max_notional_cents_per_day: 9,
        destinations: Some(vec![Pubkey([10; 32])]),
        max_tx_per_minute: Some(11),
    }
}

fn fields() -> GrantFields {
    GrantFields {
        wallet: Pubkey([1; 32]),
        bot_id: [2; 16],
        agent_pubkey: Pubkey([3; 32]),
        ttl_seconds: 600,
        policy: policy(),
    }
}

/// Every request variant, each with every optional field present.
fn requests() -> Vec<Op> {
    vec![
        Op::Hello { version: 2 },
        Op::Attest { nonce: Some(vec![1; 8]) },
        Op::Identity,
        Op::CreateVault { wallet: Pubkey([1; 32]) },
        Op::AuthorizeImport { wallet: Pubkey([1; 32]), vault_record: vec![4; 100] },
        Op::ImportVault(ImportVaultOp {
            wallet: Pubkey([1; 32]),
            vault_record: vec![4; 100],
            nonce: "00".repeat(16),
            issued_at: 1,
            signature: [5; 64],
            envelope: Some(vec![6; 50]),
        }),
        Op::CreateAgent(CreateAgentOp {
            wallet: Pubkey([1; 32]),
            vault_record: vec![4; 100],
            vault_provenance: vec![7; 100],
            kind: AgentKindMsg::Mnemonic { account: 1 },
            envelope: Some(vec![6; 50]),
        }),
        Op::AuthorizeGrant(fields()),
        Op::CreateGrant(CreateGrantOp {
            grant: fields(),
            nonce: "00".repeat(16),
            issued_at: 1,
            signature: [5; 64],
            vault_record: vec![4; 100],
            vault_provenance: vec![7; 100],
            envelope: Some(vec![6; 50]),
        }),
        Op::Sign(SignOp {
            grant_record: vec![8; 100],
            agent_key_record: vec![9; 100],
            bot_id: [2; 16],
            transaction: vec![10; 100],
            request_id: [11; 16],
            declared_notional_cents: Some(1),
            envelope: Some(vec![6; 50]),
        }),
        Op::SignScheduled(SignScheduledOp {
            scheduled_record: vec![12; 100],
            transaction: vec![10; 100],
            request_id: [11; 16],
            envelope: Some(vec![6; 50]),
        }),
        Op::Revoke { target: RevokeMsg::Record([13; 16]) },
        Op::Revoke { target: RevokeMsg::Wallet(Pubkey([1; 32])) },
        Op::KillSwitch { engaged: true },
        Op::Status,
        Op::HandoverOffer,
        Op::HandoverPrepare { successor_document: vec![1; 100] },
        Op::HandoverAccept {
            predecessor_document: vec![1; 100],
            wrapped_key: vec![2; 384],
            envelope: vec![3; 600],
        },
        Op::HandoverExport { proof: [4; 32] },
        Op::HandoverChunk { index: 0 },
        Op::HandoverImport { index: 0, total: 1, chunk: vec![5; 100] },
        Op::HandoverCommit { imported: [6; 32] },
        Op::HandoverFinish { token: [7; 32] },
        Op::HandoverAbort,
        Op::AuthorizeRevoke { wallet: Pubkey([1; 32]), scope: RevokeScopeMsg::Record([13; 16]) },
        Op::RevokeSigned(RevokeSignedOp {
            wallet: Pubkey([1; 32]),
            scope: RevokeScopeMsg::All,
            nonce: "00".repeat(16),
            issued_at: 1,
            signature: [5; 64],
        }),
        Op::AuthorizeExport(export_subject()),
        Op::Export(ExportOp {
            subject: export_subject(),
            nonce: "00".repeat(16),
            issued_at: 1,
            signature: [5; 64],
            envelope: Some(vec![6; 50]),
        }),
        Op::ClusterCard { relay: "http://10.0.0.2:8787".into() },
        Op::ClusterFound { founders: vec![peer()] },
        Op::ClusterJoin { cluster_id: EnclaveId([3; 16]), members: vec![peer()] },
        Op::ClusterAdmit {
            peer: peer(),
            replacing: Some(EnclaveId([4; 16])),
            proof: Some([8; 32]),
        },
        Op::ClusterChallenge { card: vec![1; 100] },
        Op::ClusterProve { leader: EnclaveId([4; 16]), envelope: vec![6; 50] },
        Op::Receipts { after: Some(7) },
        Op::ClusterDeliver { message: vec![5; 100] },
        Op::ClusterOutbox { wait_ms: 1000 },
        Op::ClusterStatus,
    ]
}

fn peer() -> ClusterPeer {
    ClusterPeer { card: vec![1; 100], relay: "http://10.0.0.3:8787".into() }
}

fn export_subject() -> ExportSubjectMsg {
    ExportSubjectMsg {
        wallet: Pubkey([1; 32]),
        vault_record: vec![4; 100],
        vault_provenance: vec![7; 100],
        agent_key_record: Some(vec![9; 100]),
        recipient: [0x99; 32],
    }
}

/// Stops compiling when a request variant is added without a sample above.
fn request_variant(op: &Op) -> usize {
    match op {
        Op::Hello { .. } => 0,
        Op::Attest { .. } => 1,
        Op::Identity => 2,
        Op::CreateVault { .. } => 3,
        Op::AuthorizeImport { .. } => 4,
        Op::ImportVault(_) => 5,
        Op::CreateAgent(_) => 6,
        Op::AuthorizeGrant(_) => 7,
        Op::CreateGrant(_) => 8,
        Op::Sign(_) => 9,
        Op::SignScheduled(_) => 10,
        Op::Revoke { .. } => 11,
        Op::KillSwitch { .. } => 12,
        Op::Status => 13,
        Op::HandoverOffer => 14,
        Op::HandoverPrepare { .. } => 15,
        Op::HandoverAccept { .. } => 16,
        Op::HandoverExport { .. } => 17,
        Op::HandoverChunk { .. } => 18,
        Op::HandoverImport { .. } => 19,
        Op::HandoverCommit { .. } => 20,
        Op::HandoverFinish { .. } => 21,
        Op::HandoverAbort => 22,
        Op::AuthorizeRevoke { .. } => 23,
        Op::RevokeSigned(_) => 24,
        Op::AuthorizeExport(_) => 25,
        Op::Export(_) => 26,
        Op::ClusterCard { .. } => 27,
        Op::ClusterFound { .. } => 28,
        Op::ClusterJoin { .. } => 29,
        Op::ClusterAdmit { .. } => 30,
        Op::ClusterDeliver { .. } => 31,
        Op::ClusterOutbox { .. } => 32,
        Op::ClusterStatus => 33,
        Op::ClusterChallenge { .. } => 34,
        Op::ClusterProve { .. } => 35,
        Op::Receipts { .. } => 36,
    }
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Hello { version: 2, enclave_version: "0.1.0".into() },
        Reply::Attestation { document: vec![1; 100], public_key: vec![2; 294] },
        Reply::Identity {
            enclave_id: EnclaveId([3; 16]),
            answers_for: vec![EnclaveId([3; 16])],
            started_at: 1,
            kms_public_key: vec![16; 422],
            registry: signer_types::policy::Registry {
                tokens: vec![signer_types::policy::KnownToken {
                    mint: Pubkey([17; 32]),
                    symbol: "USDC".into(),
                    decimals: 6,
                }],
                programs: vec![signer_types::policy::KnownProgram {
                    id: Pubkey([18; 32]),
                    name: "Jupiter".into(),
                }],
            },
            checkpoint_key: Some([20; 32]),
        },
        Reply::VaultCreated { vault_id: [4; 16], record: vec![5; 100], provenance: vec![6; 100] },
        Reply::VaultImported { vault_id: [4; 16], provenance: vec![6; 100] },
        Reply::AgentCreated {
            agent_pubkey: Pubkey([7; 32]),
            agent_id: [8; 16],
            record: vec![9; 100],
            provenance: vec![6; 100],
        },
        Reply::Authorization {
            message: "m".into(),
            nonce: "00".repeat(16),
            issued_at: 1,
            expires_at: 2,
            enclave_id: EnclaveId([3; 16]),
        },
        Reply::GrantCreated {
            grant_id: [10; 16],
            issued_at: 1,
            expires_at: 2,
            record: vec![11; 100],
            enclave_id: EnclaveId([3; 16]),
            receipt: Some(vec![19; 300]),
        },
        Reply::Signed {
            signature: [12; 64],
            transaction: vec![13; 100],
            record_id: [10; 16],
            receipt: Some(vec![19; 300]),
        },
        Reply::NeedKey {
            record_id: [10; 16],
            wrap_alg: WrapAlg::KmsSymmetric,
            wrapped_key: vec![14; 384],
            encryption_context: Some(("aad_sha256".into(), "00".into())),
        },
        Reply::Revoked { dropped: 1 },
        Reply::KillSwitch { engaged: false },
        Reply::Status(StatusReply {
            enclave_id: EnclaveId([3; 16]),
            handed_over_to: Some(EnclaveId([15; 16])),
            ..StatusReply::default()
        }),
        Reply::HandoverOffer { document: vec![1; 100] },
        Reply::HandoverPrepared {
            document: vec![1; 100],
            wrapped_key: vec![2; 384],
            successor: EnclaveId([3; 16]),
        },
        Reply::HandoverAccepted { proof: [4; 32] },
        Reply::HandoverExported { chunks: 1 },
        Reply::HandoverChunk { chunk: vec![5; 100] },
        Reply::HandoverImported { received: 1, total: 1, imported: Some([6; 32]) },
        Reply::HandoverCommitted { token: [7; 32] },
        Reply::HandoverFinished(HandoverSummary {
            predecessor: EnclaveId([6; 16]),
            answers_for: vec![EnclaveId([6; 16])],
            request_ids: 1,
            counters: 1,
        }),
        Reply::HandoverAborted { successor: Some(EnclaveId([6; 16])) },
        Reply::Exported {
            enc: [8; 32],
            ciphertext: vec![9; 48],
            kind: "vault".into(),
            record_id: [10; 16],
        },
        Reply::ClusterCard { card: vec![1; 100] },
        Reply::ClusterJoined { cluster_id: EnclaveId([3; 16]) },
        Reply::ClusterChallenge {
            leader: EnclaveId([1; 16]),
            newcomer: EnclaveId([2; 16]),
            wrapped_key: Some(vec![9; 384]),
            document: vec![1; 100],
            pcr0: "ab".repeat(48),
        },
        Reply::ClusterProof { proof: [8; 32] },
        Reply::Receipts(signer_protocol::ReceiptsReply {
            enclave_id: EnclaveId([1; 16]),
            decider: EnclaveId([3; 16]),
            checkpoint_key: [4; 32],
            document: vec![7; 100],
            receipts: vec![serde_bytes::ByteBuf::from(vec![5; 120])],
            checkpoint: Some(vec![6; 145]),
            gap: Some((1, 9)),
            next_after: 10,
            more: true,
            written: 11,
            dropped: 0,
        }),
        Reply::ClusterOutbox {
            messages: vec![RelayedMessage {
                relay: "http://10.0.0.3:8787".into(),
                message: vec![5; 90],
            }],
        },
        Reply::ClusterStatus(ClusterStatusReply {
            enclave_id: EnclaveId([1; 16]),
            cluster_id: Some(EnclaveId([3; 16])),
            role: "leader".into(),
            leader: Some(EnclaveId([1; 16])),
            leader_relay: Some("http://10.0.0.2:8787".into()),
            term: 2,
            last_applied: Some(9),
            members: vec![ClusterMemberInfo {
                enclave_id: EnclaveId([1; 16]),
                relay: "http://10.0.0.2:8787".into(),
                voter: true,
            }],
            genesis_applied: true,
            appends_sent: 3,
            entries_sent: 7,
        }),
        Reply::Accepted,
    ]
}

fn reply_variant(reply: &Reply) -> usize {
    match reply {
        Reply::Hello { .. } => 0,
        Reply::Attestation { .. } => 1,
        Reply::Identity { .. } => 2,
        Reply::VaultCreated { .. } => 3,
        Reply::VaultImported { .. } => 4,
        Reply::AgentCreated { .. } => 5,
        Reply::Authorization { .. } => 6,
        Reply::GrantCreated { .. } => 7,
        Reply::Signed { .. } => 8,
        Reply::NeedKey { .. } => 9,
        Reply::Revoked { .. } => 10,
        Reply::KillSwitch { .. } => 11,
        Reply::Status(_) => 12,
        Reply::HandoverOffer { .. } => 13,
        Reply::HandoverPrepared { .. } => 14,
        Reply::HandoverAccepted { .. } => 15,
        Reply::HandoverExported { .. } => 16,
        Reply::HandoverChunk { .. } => 17,
        Reply::HandoverImported { .. } => 18,
        Reply::HandoverCommitted { .. } => 19,
        Reply::HandoverFinished(_) => 20,
        Reply::HandoverAborted { .. } => 21,
        Reply::Exported { .. } => 22,
        Reply::ClusterCard { .. } => 23,
        Reply::ClusterJoined { .. } => 24,
        Reply::ClusterOutbox { .. } => 25,
        Reply::ClusterStatus(_) => 26,
        Reply::Accepted => 27,
        Reply::ClusterChallenge { .. } => 28,
        Reply::ClusterProof { .. } => 29,
        Reply::Receipts(_) => 30,
    }
}

/// Every (path, byte-string length) in `value`; map keys must be text.
fn byte_leaves(value: &Value, path: &str, out: &mut Vec<(String, usize)>, names: &mut Vec<String>) {
    match value {
        Value::Bytes(b) => out.push((path.to_string(), b.len())),
        Value::Array(items) => {
            for item in items {
                byte_leaves(item, &format!("{path}[]"), out, names);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let Value::Text(name) = k else { panic!("non-text key at {path}") };
                names.push(name.clone());
                let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                byte_leaves(v, &child, out, names);
            }
        }
        _ => {}
    }
}

fn leaves_of<T: serde::Serialize>(message: &T) -> (Vec<(String, usize)>, Vec<String>) {
    let bytes = encode(message, 0).unwrap();
    let value: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
    let (mut leaves, mut names) = (Vec::new(), Vec::new());
    byte_leaves(&value, "", &mut leaves, &mut names);
    (leaves, names)
}

#[test]
fn no_request_or_reply_can_carry_a_master_key() {
    let requests = requests();
    let covered: BTreeSet<usize> = requests.iter().map(request_variant).collect();
    assert_eq!(covered.len(), 37, "a sample of every request variant");
    let replies = replies();
    let covered: BTreeSet<usize> = replies.iter().map(reply_variant).collect();
    assert_eq!(covered.len(), 31, "a sample of every reply variant");

    let reviewed: BTreeSet<&str> = REVIEWED.iter().map(|(p, _)| *p).collect();
    let mut seen = BTreeSet::new();
    let mut check = |leaves: Vec<(String, usize)>, names: Vec<String>, prefix: &str| {
        for (path, _) in leaves {
            let path = path.strip_prefix(prefix).unwrap_or(&path).to_string();
            assert!(
                reviewed.contains(path.as_str()),
                "byte field `{path}` is not reviewed: say in REVIEWED why it cannot hold a secret"
            );
            seen.insert(path);
        }
        for name in names {
            let lower = name.to_lowercase();
            assert!(
                !SECRET_NAMES.iter().any(|s| lower.contains(s)),
                "field `{name}` is named like a secret"
            );
        }
    };
    for (id, op) in requests.into_iter().enumerate() {
        let (leaves, names) = leaves_of(&Request { id: id as u64, op });
        check(leaves, names, "op.");
    }
    for reply in replies {
        let (leaves, names) = leaves_of(&Response { id: 1, outcome: Outcome::Ok(reply) });
        check(leaves, names, "outcome.ok.");
    }
    let (leaves, names) = leaves_of(&Response {
        id: 1,
        outcome: Outcome::Err(ErrorReply::new(signer_types::ErrorCode::Internal, "x")),
    });
    check(leaves, names, "outcome.err.");
    // Every reviewed path exists: the list describes the schema, not wishes.
    let unused: Vec<&&str> = reviewed.iter().filter(|p| !seen.contains(**p)).collect();
    assert!(unused.is_empty(), "reviewed paths that no message has: {unused:?}");
}

#[test]
fn a_32_byte_field_where_none_is_reviewed_is_caught() {
    // The walker itself: a message with an extra 32-byte field fails the review.
    #[derive(serde::Serialize)]
    struct Smuggler {
        #[serde(with = "serde_bytes")]
        umk: [u8; 32],
    }
    let (leaves, names) = leaves_of(&Smuggler { umk: [1; 32] });
    assert_eq!(leaves, vec![("umk".to_string(), 32)]);
    assert!(SECRET_NAMES.iter().any(|s| names[0].contains(s)));
    assert!(!REVIEWED.iter().any(|(p, _)| leaves[0].0 == *p));
}
