//! Provenance bindings: what an enclave attests when it creates (or accepts the import of) a vault
//! and when it creates an agent key. The NSM attestation document it returns carries
//! `user_data = SHA-256(binding)`:
//!
//! ```text
//! "signer/provenance/v1"          20 bytes
//! record_type u8                  2 agent key, 4 vault
//! wallet[32] ‖ record_id[16]      from the record's header
//! SHA-256(record)[32]             the whole record, exactly as returned
//! agent keys only:  agent_pubkey[32] ‖ vault_id[16]
//! ```
//!
//! A verifier recomputes the binding from the record (and, for an agent, the id of the vault it
//! was made from) and checks the document: AWS chain valid at the document's own timestamp, its
//! signature, PCRs in the trusted set, not debug mode, `user_data` equal to the binding.

use sha2::{Digest, Sha256};

use crate::error::RecordError;
use crate::pubkey::Pubkey;
use crate::records::{RecordType, SealedAgentKey, SealedVault, peek_type};

/// Domain separator of every binding.
pub const PROVENANCE_DOMAIN: &[u8] = b"signer/provenance/v1";

/// What a provenance document is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Vault {
        wallet: Pubkey,
        vault_id: [u8; 16],
        record_sha256: [u8; 32],
    },
    Agent {
        wallet: Pubkey,
        agent_id: [u8; 16],
        record_sha256: [u8; 32],
        agent_pubkey: Pubkey,
        vault_id: [u8; 16],
    },
}

impl Subject {
    /// The subject of a vault record.
    pub fn vault(record: &[u8]) -> Result<Self, RecordError> {
        let v = SealedVault::parse(record)?;
        Ok(Self::Vault {
            wallet: v.header.wallet,
            vault_id: v.header.vault_id,
            record_sha256: Sha256::digest(record).into(),
        })
    }

    /// The subject of an agent-key record made from vault `vault_id`.
    pub fn agent(record: &[u8], vault_id: [u8; 16]) -> Result<Self, RecordError> {
        let a = SealedAgentKey::parse(record)?;
        Ok(Self::Agent {
            wallet: a.header.wallet,
            agent_id: a.header.agent_id,
            record_sha256: Sha256::digest(record).into(),
            agent_pubkey: a.header.agent_pubkey,
            vault_id,
        })
    }

    /// The subject of a vault or agent record; agents need `vault_id`.
    pub fn of_record(record: &[u8], vault_id: Option<[u8; 16]>) -> Result<Self, RecordError> {
        match (peek_type(record), vault_id) {
            (Some(t), _) if t == RecordType::Vault as u8 => Self::vault(record),
            (Some(t), Some(v)) if t == RecordType::AgentKey as u8 => Self::agent(record, v),
            (Some(t), None) if t == RecordType::AgentKey as u8 => Err(RecordError::Invalid(
                "an agent key's provenance binds the id of the vault it was made from: give it"
                    .into(),
            )),
            (t, _) => Err(RecordError::Invalid(format!(
                "provenance covers vaults (type 4) and agent keys (type 2), not type {t:?}"
            ))),
        }
    }

    /// The binding bytes (module docs).
    pub fn binding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROVENANCE_DOMAIN.len() + 1 + 32 + 16 + 32 + 48);
        out.extend_from_slice(PROVENANCE_DOMAIN);
        match self {
            Self::Vault { wallet, vault_id, record_sha256 } => {
                out.push(RecordType::Vault as u8);
                out.extend_from_slice(&wallet.0);
                out.extend_from_slice(vault_id);
                out.extend_from_slice(record_sha256);
            }
            Self::Agent { wallet, agent_id, record_sha256, agent_pubkey, vault_id } => {
                out.push(RecordType::AgentKey as u8);
                out.extend_from_slice(&wallet.0);
                out.extend_from_slice(agent_id);
                out.extend_from_slice(record_sha256);
                out.extend_from_slice(&agent_pubkey.0);
                out.extend_from_slice(vault_id);
            }
        }
        out
    }

    /// `SHA-256(binding)`: the document's `user_data`.
    pub fn user_data(&self) -> [u8; 32] {
        Sha256::digest(self.binding()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_have_the_documented_layout_and_differ_by_every_field() {
        let vault =
            Subject::Vault { wallet: Pubkey([1; 32]), vault_id: [2; 16], record_sha256: [3; 32] };
        let b = vault.binding();
        assert_eq!(b.len(), 20 + 1 + 32 + 16 + 32);
        assert_eq!(&b[..20], b"signer/provenance/v1");
        assert_eq!(b[20], 4);
        let agent = Subject::Agent {
            wallet: Pubkey([1; 32]),
            agent_id: [2; 16],
            record_sha256: [3; 32],
            agent_pubkey: Pubkey([4; 32]),
            vault_id: [5; 16],
        };
        assert_eq!(agent.binding().len(), 20 + 1 + 32 + 16 + 32 + 32 + 16);
        let other_vault = Subject::Agent {
            wallet: Pubkey([1; 32]),
            agent_id: [2; 16],
            record_sha256: [3; 32],
            agent_pubkey: Pubkey([4; 32]),
            vault_id: [6; 16],
        };
        assert_ne!(agent.user_data(), other_vault.user_data());
        assert_ne!(agent.user_data(), vault.user_data());
    }
}
