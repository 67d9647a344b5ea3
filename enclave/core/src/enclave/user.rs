//! The user's own powers, each on the wallet's signature over a message this enclave rendered
//! (SPEC §15): revoke its grants, and export a secret (a vault's master key, an agent's seed or
//! BIP39 entropy) to an X25519 key its browser holds.
//!
//! **Revoke.** `{wallet, record id}` revokes that record only if it is the wallet's own: the
//! revocation is keyed by `SHA-256("signer/revoke/wallet-record/v1" ‖ wallet ‖ id)[..16]`, which
//! only a record of that wallet is checked against, so a wallet naming another wallet's grant id
//! revokes nothing of it. `{wallet, all}` is the wallet revocation of [`Enclave::revoke`].
//!
//! **Export** is HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM,
//! to the recipient key named in the signed message and nowhere else:
//!
//! ```text
//! info      = "signer/export/v1" ‖ wallet[32] ‖ SHA-256(exported record)[32]
//! aad       = empty
//! plaintext = the UMK (32 bytes) | the agent seed (32) | the agent's BIP39 entropy (16..=32)
//! reply     = enc[32] ‖ ciphertext (plaintext + 16-byte tag)
//! ```
//!
//! The enclave never returns a secret in any other form. An exported secret is outside every
//! limit: whoever holds it signs without a grant (`docs/threat-model.md`).

use std::sync::atomic::Ordering;

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, OpModeS, Serializable as _};
use sha2::{Digest, Sha256};
use signer_types::records::{AgentKind, SealedAgentKey, SealedVault};

use super::custody::{Authorization, VaultProof, nonce_decision};
use super::replicated::{Command, Effect};
use super::state::{NonceUse, RevokeTarget};
use super::{Enclave, Unlocked};
use crate::authorization::{ExportTarget, MessageFields, Purpose, RevokeScope};
use crate::error::EnclaveError;
use crate::pubkey::Pubkey;
use crate::records::open_agent_secret;
use crate::secret::seeded_rng;

/// Domain of the HPKE `info` of an export.
pub const EXPORT_INFO_DOMAIN: &[u8] = b"signer/export/v1";

/// The revocation key of a wallet's own record (module docs).
pub fn wallet_record_key(wallet: &Pubkey, record_id: &[u8; 16]) -> [u8; 16] {
    crate::authorization::sha256_16(&[b"signer/revoke/wallet-record/v1", &wallet.0, record_id])
}

/// A wallet-signed revocation.
#[derive(Clone, Copy, Debug)]
pub struct WalletRevoke<'a> {
    pub wallet: Pubkey,
    pub scope: RevokeScope,
    pub nonce: &'a str,
    pub issued_at: u64,
    pub signature: [u8; 64],
}

/// What an export takes out.
#[derive(Clone, Copy, Debug)]
pub struct ExportSubject<'a> {
    pub wallet: Pubkey,
    /// The vault, with its provenance: its UMK is exported, or it opens the agent record.
    pub vault: VaultProof<'a>,
    /// The agent-key record whose secret is exported; none to export the vault's UMK.
    pub agent_record: Option<&'a [u8]>,
    /// The X25519 public key the browser generated.
    pub recipient: [u8; 32],
}

/// A wallet-signed export.
#[derive(Clone, Copy, Debug)]
pub struct ExportRequest<'a> {
    pub subject: ExportSubject<'a>,
    pub nonce: &'a str,
    pub issued_at: u64,
    pub signature: [u8; 64],
    pub envelope: Option<&'a [u8]>,
}

/// An export: HPKE `enc` and ciphertext (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub enc: [u8; 32],
    pub ciphertext: Vec<u8>,
    /// `vault`, `seed` or `mnemonic`.
    pub kind: &'static str,
    /// The id of the exported record (vault or agent).
    pub record_id: [u8; 16],
}

impl Enclave {
    /// The message a wallet signs to revoke its own grant, or all of them.
    pub fn authorize_revoke(
        &self,
        wallet: Pubkey,
        scope: RevokeScope,
    ) -> Result<Authorization, EnclaveError> {
        self.issue_message(wallet, Purpose::Revoke { scope })
    }

    /// Revokes on the wallet's signature: its own record, or all of its records. Returns how
    /// many opened grants were dropped. The same signed revocation again is answered again.
    pub fn revoke_signed(&self, req: &WalletRevoke<'_>) -> Result<usize, EnclaveError> {
        let fields = MessageFields {
            wallet: req.wallet,
            enclave: self.decider(),
            nonce: req.nonce,
            issued_at: req.issued_at,
            purpose: Purpose::Revoke { scope: req.scope },
        };
        let (nonce, used) = self.check_authorization(&fields, &req.signature)?;
        // The same signed revocation again (a lost reply) is answered, not done again: doing it
        // again would move a wallet's cutoff past the grants it made since.
        if used == NonceUse::Retry {
            return Ok(0);
        }
        let target = match req.scope {
            RevokeScope::All => RevokeTarget::Wallet(req.wallet),
            RevokeScope::Record(id) => RevokeTarget::Record(wallet_record_key(&req.wallet, &id)),
        };
        // The nonce is spent and the revocation recorded in one step: a revocation the store
        // refuses leaves the nonce unused, so the same request can be sent again.
        let decision = nonce_decision(nonce, &fields, &req.signature, Some(target));
        match self.commit(Command::UseNonce(decision))?.effect {
            Effect::Revoked { dropped } => Ok(dropped),
            // Used by this very signature meanwhile: answered, not done again.
            Effect::Nonce(NonceUse::Retry) => Ok(0),
            other => Err(EnclaveError::Internal(format!("a revocation was applied as {other:?}"))),
        }
    }

    /// What an export names (its target, the exported record's SHA-256 and id), with the
    /// records parsed once: the vault (provenance checked) and the agent key, if any.
    fn export_target<'a>(
        &self,
        subject: &ExportSubject<'a>,
    ) -> Result<ExportParts<'a>, EnclaveError> {
        let vault = self.check_vault(&subject.wallet, &subject.vault)?;
        let recipient = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&subject.recipient)
            .map_err(|_| {
                EnclaveError::BadRequest("recipient is not an X25519 public key".into())
            })?;
        let Some(record) = subject.agent_record else {
            return Ok(ExportParts {
                target: ExportTarget::Vault { vault_id: vault.header.vault_id },
                record_sha256: Sha256::digest(subject.vault.record).into(),
                record_id: vault.header.vault_id,
                vault,
                agent: None,
                recipient,
            });
        };
        let agent = SealedAgentKey::parse(record)?;
        if agent.header.wallet != subject.wallet {
            return Err(EnclaveError::RecordInvalid(format!(
                "the agent key belongs to wallet {}, the request names wallet {}",
                agent.header.wallet, subject.wallet
            )));
        }
        Ok(ExportParts {
            target: ExportTarget::Agent {
                agent: agent.header.agent_pubkey,
                mnemonic: matches!(agent.header.kind, AgentKind::Mnemonic { .. }),
            },
            record_sha256: Sha256::digest(record).into(),
            record_id: agent.header.agent_id,
            vault,
            agent: Some(agent),
            recipient,
        })
    }

    /// The message a wallet signs to export a vault's master key or an agent's secret to
    /// `recipient`.
    pub fn authorize_export(
        &self,
        subject: &ExportSubject<'_>,
    ) -> Result<Authorization, EnclaveError> {
        self.refuse_if_handed_over()?;
        let parts = self.export_target(subject)?;
        self.issue_message(
            subject.wallet,
            Purpose::Export {
                target: parts.target,
                record_sha256: parts.record_sha256,
                recipient: subject.recipient,
            },
        )
    }

    /// Exports on the wallet's signature: opens the vault (and the agent record), and seals the
    /// secret with HPKE to the recipient the signed message names.
    pub fn export(&self, req: &ExportRequest<'_>) -> Result<Unlocked<Exported>, EnclaveError> {
        self.refuse_if_handed_over()?;
        let subject = &req.subject;
        let parts = self.export_target(subject)?;
        let fields = MessageFields {
            wallet: subject.wallet,
            enclave: self.decider(),
            nonce: req.nonce,
            issued_at: req.issued_at,
            purpose: Purpose::Export {
                target: parts.target,
                record_sha256: parts.record_sha256,
                recipient: subject.recipient,
            },
        };
        let (nonce, _) = self.check_authorization(&fields, &req.signature)?;
        let umk = match self.unlock_vault(&parts.vault, subject.vault.record, req.envelope)? {
            Unlocked::Done(umk) => umk,
            Unlocked::NeedKey(n) => return Ok(Unlocked::NeedKey(n)),
        };
        let (secret, kind) = match &parts.agent {
            None => (zeroize::Zeroizing::new(umk.expose().to_vec()), "vault"),
            Some(agent) => {
                let (secret, _) = open_agent_secret(agent, &umk).map_err(|e| {
                    EnclaveError::RecordInvalid(format!(
                        "the agent key does not open under this vault ({e})"
                    ))
                })?;
                let kind = match agent.header.kind {
                    AgentKind::Seed => "seed",
                    AgentKind::Mnemonic { .. } => "mnemonic",
                };
                (secret, kind)
            }
        };
        self.consume_nonce(nonce, &fields, &req.signature, None)?;
        let info = [EXPORT_INFO_DOMAIN, &subject.wallet.0, &parts.record_sha256].concat();
        let mut rng = seeded_rng(&*self.rng)?;
        let (enc, ciphertext) =
            hpke::single_shot_seal_with_rng::<
                hpke::aead::AesGcm256,
                hpke::kdf::HkdfSha256,
                X25519HkdfSha256,
            >(&OpModeS::Base, &parts.recipient, &info, &secret, &[], &mut rng)
            .map_err(|e| EnclaveError::Internal(format!("HPKE seal: {e}")))?;
        let enc: [u8; 32] = enc
            .to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| EnclaveError::Internal("HPKE enc is not 32 bytes".into()))?;
        self.exports.fetch_add(1, Ordering::Relaxed);
        Ok(Unlocked::Done(Exported { enc, ciphertext, kind, record_id: parts.record_id }))
    }
}

/// An export's subject, parsed and checked once.
struct ExportParts<'a> {
    target: ExportTarget,
    record_sha256: [u8; 32],
    record_id: [u8; 16],
    vault: SealedVault<'a>,
    agent: Option<SealedAgentKey<'a>>,
    recipient: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
}
