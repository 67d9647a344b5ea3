//! Record layouts (SPEC §4): every record is `AAD ‖ body`, where the AAD is the fixed binary header
//! below, exactly as stored. All integers are little-endian. This module parses and builds the
//! headers and splits the body; sealing and opening (AES-256-GCM, RSA-OAEP, HKDF) are the
//! enclave's. A worked byte-by-byte example of each record is in `docs/records.md`.
//!
//! ```text
//! common     version u32 (=1) ‖ record_type u8 ‖ wallet[32] ‖ record_id[16]            53 bytes
//! grant (1)      ‖ bot_id[16] ‖ agent_pubkey[32] ‖ issued_at u64 ‖ expires_at u64
//!                ‖ enclave_id[16]                                                 AAD 133
//!   body: wrap_alg u8 ‖ len u16 ‖ wrapped DEK[len] ‖ iv[12] ‖ GCM(DEK, CBOR grant contents)
//! agent key (2)  ‖ agent_pubkey[32] ‖ kind u8 [‖ account u32 if kind = 1]         AAD 86 / 90
//!   body: iv[12] ‖ GCM(key_privkey, secret)
//!   key_privkey = HKDF-SHA256(ikm = UMK, salt = "agent-key/v1", info = AAD)
//! scheduled (3)  ‖ agent_pubkey[32] ‖ not_before u64 ‖ not_after u64 ‖ max_fee_lamports u64
//!                ‖ intent_hash[32] ‖ created_at u64 ‖ enclave_id[16]               AAD 165
//!   body: wrap_alg u8 ‖ len u16 ‖ wrapped ephemeral key[len] ‖ iv[12] ‖ GCM(eph, seed[32])
//! vault (4)      ‖ created_at u64 ‖ origin u8 (0 generated, 1 imported)           AAD 62
//!   body: wrap_alg u8 ‖ len u16 ‖ wrapped DEK[len] ‖ iv[12] ‖ GCM(DEK, UMK[32])
//! ```
//!
//! `wrap_alg` 1 = RSAES-OAEP-SHA-256 to the pinned KMS key; 2 = a KMS `SYMMETRIC_DEFAULT`
//! ciphertext made with encryption context `{"aad_sha256": hex(SHA-256(AAD))}`. `enclave_id` names
//! the enclave instance that holds the record's decision state (SPEC §16). Limits: wrapped key
//! ≤ [`MAX_WRAPPED_KEY_LEN`], record ≤ [`MAX_RECORD_LEN`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RecordError;
use crate::ids::EnclaveId;
use crate::pubkey::Pubkey;

pub const RECORD_VERSION: u32 = 1;
pub const COMMON_HEADER_LEN: usize = 53;
pub const GRANT_AAD_LEN: usize = COMMON_HEADER_LEN + 80;
pub const AGENT_KEY_AAD_LEN: usize = COMMON_HEADER_LEN + 33;
pub const AGENT_KEY_MNEMONIC_AAD_LEN: usize = AGENT_KEY_AAD_LEN + 4;
pub const SCHEDULED_AAD_LEN: usize = COMMON_HEADER_LEN + 112;
pub const VAULT_AAD_LEN: usize = COMMON_HEADER_LEN + 9;
pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
pub const MAX_WRAPPED_KEY_LEN: usize = 1024;
pub const MAX_RECORD_LEN: usize = 16 * 1024;
/// HKDF salt for `key_privkey`.
pub const AGENT_KEY_SALT: &[u8] = b"agent-key/v1";

/// The record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    ExecutionGrant = 1,
    AgentKey = 2,
    ScheduledKey = 3,
    Vault = 4,
}

impl RecordType {
    pub fn name(self) -> &'static str {
        match self {
            Self::ExecutionGrant => "execution grant (1)",
            Self::AgentKey => "agent key (2)",
            Self::ScheduledKey => "scheduled key (3)",
            Self::Vault => "vault (4)",
        }
    }
}

/// Which secret an agent-key record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// A raw 32-byte ed25519 seed.
    Seed,
    /// BIP39 entropy; the key is derived at `m/44'/501'/account'/0'`.
    Mnemonic { account: u32 },
}

impl AgentKind {
    /// The record's `kind` byte.
    pub fn code(self) -> u8 {
        match self {
            Self::Seed => 0,
            Self::Mnemonic { .. } => 1,
        }
    }
}

/// Where a vault's UMK came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultOrigin {
    /// Generated inside an attested enclave.
    Generated = 0,
    /// Sealed by the user's browser from a UMK it already held.
    Imported = 1,
}

/// How a record's 32-byte key is wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrapAlg {
    /// RSAES-OAEP-SHA-256 to the pinned KMS RSA public key.
    RsaesOaepSha256 = 1,
    /// A KMS `SYMMETRIC_DEFAULT` ciphertext bound by encryption context.
    KmsSymmetric = 2,
}

impl WrapAlg {
    fn from_byte(b: u8) -> Result<Self, RecordError> {
        match b {
            1 => Ok(Self::RsaesOaepSha256),
            2 => Ok(Self::KmsSymmetric),
            other => Err(RecordError::Unknown { what: "wrap_alg", value: other.into() }),
        }
    }
}

/// The wrapped key a record carries, for the parent to unwrap with KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub alg: WrapAlg,
    pub ciphertext: Vec<u8>,
    /// For [`WrapAlg::KmsSymmetric`]: the encryption context KMS must be given.
    pub encryption_context: Option<(String, String)>,
}

/// The encryption context that binds a symmetric KMS ciphertext to a record's AAD.
pub fn encryption_context(aad: &[u8]) -> (String, String) {
    ("aad_sha256".to_string(), hex::encode(Sha256::digest(aad)))
}

/// A cursor over a record.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| {
            RecordError::Length {
                what,
                expected: format!("{n} more bytes at offset {}", self.pos),
                actual: self.data.len().saturating_sub(self.pos),
            }
        })?;
        let s = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, what)?;
        s.try_into().map_err(|_| RecordError::Invalid(format!("{what}: bad length")))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, RecordError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = self.data.get(self.pos..).unwrap_or_default();
        self.pos = self.data.len();
        s
    }
    /// The bytes read so far: the AAD once the header is read.
    fn consumed(&self) -> &'a [u8] {
        self.data.get(..self.pos).unwrap_or_default()
    }
}

/// Fields shared by every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommonHeader {
    pub wallet: Pubkey,
    pub record_id: [u8; 16],
}

fn read_common(r: &mut Reader<'_>, expected: RecordType) -> Result<CommonHeader, RecordError> {
    let version = r.u32("version")?;
    if version != RECORD_VERSION {
        return Err(RecordError::Version(version));
    }
    let record_type = r.u8("record_type")?;
    if record_type != expected as u8 {
        return Err(RecordError::Type { expected: expected.name(), actual: record_type });
    }
    Ok(CommonHeader { wallet: Pubkey(r.array("wallet")?), record_id: r.array("record_id")? })
}

fn write_common(out: &mut Vec<u8>, record_type: RecordType, common: &CommonHeader) {
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.push(record_type as u8);
    out.extend_from_slice(&common.wallet.0);
    out.extend_from_slice(&common.record_id);
}

/// The record type byte of `record`, if present (for quick dispatch and errors).
pub fn peek_type(record: &[u8]) -> Option<u8> {
    record.get(4).copied()
}

fn check_size(record: &[u8]) -> Result<(), RecordError> {
    if record.len() > MAX_RECORD_LEN {
        return Err(RecordError::Length {
            what: "record",
            expected: format!("at most {MAX_RECORD_LEN}"),
            actual: record.len(),
        });
    }
    Ok(())
}

fn read_wrapped(r: &mut Reader<'_>, aad: &[u8]) -> Result<WrappedKey, RecordError> {
    let alg = WrapAlg::from_byte(r.u8("wrap_alg")?)?;
    let len = usize::from(r.u16("wrapped key length")?);
    if len == 0 || len > MAX_WRAPPED_KEY_LEN {
        return Err(RecordError::Length {
            what: "wrapped key",
            expected: format!("1..={MAX_WRAPPED_KEY_LEN}"),
            actual: len,
        });
    }
    let ciphertext = r.take(len, "wrapped key")?.to_vec();
    let encryption_context = (alg == WrapAlg::KmsSymmetric).then(|| encryption_context(aad));
    Ok(WrappedKey { alg, ciphertext, encryption_context })
}

/// Appends `wrap_alg ‖ len ‖ wrapped` (the first part of a wrapped record's body).
pub fn write_wrapped(out: &mut Vec<u8>, alg: WrapAlg, wrapped: &[u8]) -> Result<(), RecordError> {
    let len = u16::try_from(wrapped.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_WRAPPED_KEY_LEN && *l > 0)
        .ok_or_else(|| RecordError::Length {
            what: "wrapped key",
            expected: format!("1..={MAX_WRAPPED_KEY_LEN}"),
            actual: wrapped.len(),
        })?;
    out.push(alg as u8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(wrapped);
    Ok(())
}

/// Checks a sealed body's minimum size (`iv ‖ ciphertext ‖ tag`).
pub fn check_sealed_body(body: &[u8]) -> Result<(), RecordError> {
    if body.len() < IV_LEN + TAG_LEN {
        return Err(RecordError::Length {
            what: "sealed body",
            expected: format!("at least {}", IV_LEN + TAG_LEN),
            actual: body.len(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Execution grant

/// Bound fields of an execution grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantHeader {
    pub wallet: Pubkey,
    pub grant_id: [u8; 16],
    pub bot_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The enclave instance that holds this grant's decision state.
    pub enclave_id: EnclaveId,
}

impl GrantHeader {
    /// The AAD (133 bytes).
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(GRANT_AAD_LEN);
        write_common(
            &mut out,
            RecordType::ExecutionGrant,
            &CommonHeader { wallet: self.wallet, record_id: self.grant_id },
        );
        out.extend_from_slice(&self.bot_id);
        out.extend_from_slice(&self.agent_pubkey.0);
        out.extend_from_slice(&self.issued_at.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        out.extend_from_slice(&self.enclave_id.0);
        out
    }
}

/// A parsed, still-sealed grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedGrant<'a> {
    pub header: GrantHeader,
    pub aad: &'a [u8],
    pub wrapped: WrappedKey,
    /// `iv ‖ ciphertext ‖ tag`.
    pub body: &'a [u8],
}

impl<'a> SealedGrant<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, RecordError> {
        check_size(record)?;
        let mut r = Reader { data: record, pos: 0 };
        let common = read_common(&mut r, RecordType::ExecutionGrant)?;
        let header = GrantHeader {
            wallet: common.wallet,
            grant_id: common.record_id,
            bot_id: r.array("bot_id")?,
            agent_pubkey: Pubkey(r.array("agent_pubkey")?),
            issued_at: r.u64("issued_at")?,
            expires_at: r.u64("expires_at")?,
            enclave_id: EnclaveId(r.array("enclave_id")?),
        };
        let aad = r.consumed();
        let wrapped = read_wrapped(&mut r, aad)?;
        let body = r.rest();
        check_sealed_body(body)?;
        if header.expires_at <= header.issued_at {
            return Err(RecordError::Invalid(format!(
                "grant expires_at {} is not after issued_at {}",
                header.expires_at, header.issued_at
            )));
        }
        Ok(Self { header, aad, wrapped, body })
    }
}

// ---------------------------------------------------------------------------------------------
// Agent key

/// Bound fields of an agent-key record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentKeyHeader {
    pub wallet: Pubkey,
    pub agent_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub kind: AgentKind,
}

impl AgentKeyHeader {
    /// The AAD (86 bytes, or 90 for kind 1).
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AGENT_KEY_MNEMONIC_AAD_LEN);
        write_common(
            &mut out,
            RecordType::AgentKey,
            &CommonHeader { wallet: self.wallet, record_id: self.agent_id },
        );
        out.extend_from_slice(&self.agent_pubkey.0);
        out.push(self.kind.code());
        if let AgentKind::Mnemonic { account } = self.kind {
            out.extend_from_slice(&account.to_le_bytes());
        }
        out
    }
}

/// A parsed, still-sealed agent key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedAgentKey<'a> {
    pub header: AgentKeyHeader,
    pub aad: &'a [u8],
    /// `iv ‖ ciphertext ‖ tag`.
    pub body: &'a [u8],
}

impl<'a> SealedAgentKey<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, RecordError> {
        check_size(record)?;
        let mut r = Reader { data: record, pos: 0 };
        let common = read_common(&mut r, RecordType::AgentKey)?;
        let agent_pubkey = Pubkey(r.array("agent_pubkey")?);
        let kind = match r.u8("kind")? {
            0 => AgentKind::Seed,
            1 => AgentKind::Mnemonic { account: r.u32("account")? },
            other => {
                return Err(RecordError::Unknown { what: "agent key kind", value: other.into() });
            }
        };
        let aad = r.consumed();
        let body = r.rest();
        check_sealed_body(body)?;
        Ok(Self {
            header: AgentKeyHeader {
                wallet: common.wallet,
                agent_id: common.record_id,
                agent_pubkey,
                kind,
            },
            aad,
            body,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduled key

/// Bound fields of a scheduled-key record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledHeader {
    pub wallet: Pubkey,
    pub schedule_id: [u8; 16],
    pub agent_pubkey: Pubkey,
    pub not_before: u64,
    pub not_after: u64,
    pub max_fee_lamports: u64,
    pub intent_hash: [u8; 32],
    /// When the client sealed it (unix seconds): bounds how long the record can live, so a
    /// revocation can outlive every record it could match.
    pub created_at: u64,
    /// The enclave instance that holds the record's single-use mark.
    pub enclave_id: EnclaveId,
}

impl ScheduledHeader {
    /// The AAD (165 bytes).
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SCHEDULED_AAD_LEN);
        write_common(
            &mut out,
            RecordType::ScheduledKey,
            &CommonHeader { wallet: self.wallet, record_id: self.schedule_id },
        );
        out.extend_from_slice(&self.agent_pubkey.0);
        out.extend_from_slice(&self.not_before.to_le_bytes());
        out.extend_from_slice(&self.not_after.to_le_bytes());
        out.extend_from_slice(&self.max_fee_lamports.to_le_bytes());
        out.extend_from_slice(&self.intent_hash);
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.extend_from_slice(&self.enclave_id.0);
        out
    }
}

/// A parsed, still-sealed scheduled key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedScheduled<'a> {
    pub header: ScheduledHeader,
    pub aad: &'a [u8],
    pub wrapped: WrappedKey,
    /// `iv ‖ ciphertext ‖ tag`.
    pub body: &'a [u8],
}

impl<'a> SealedScheduled<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, RecordError> {
        check_size(record)?;
        let mut r = Reader { data: record, pos: 0 };
        let common = read_common(&mut r, RecordType::ScheduledKey)?;
        let header = ScheduledHeader {
            wallet: common.wallet,
            schedule_id: common.record_id,
            agent_pubkey: Pubkey(r.array("agent_pubkey")?),
            not_before: r.u64("not_before")?,
            not_after: r.u64("not_after")?,
            max_fee_lamports: r.u64("max_fee_lamports")?,
            intent_hash: r.array("intent_hash")?,
            created_at: r.u64("created_at")?,
            enclave_id: EnclaveId(r.array("enclave_id")?),
        };
        if header.not_after < header.not_before {
            return Err(RecordError::Invalid(format!(
                "not_after {} is before not_before {}",
                header.not_after, header.not_before
            )));
        }
        let aad = r.consumed();
        let wrapped = read_wrapped(&mut r, aad)?;
        let body = r.rest();
        check_sealed_body(body)?;
        Ok(Self { header, aad, wrapped, body })
    }
}

// ---------------------------------------------------------------------------------------------
// Vault

/// Bound fields of a vault record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaultHeader {
    pub wallet: Pubkey,
    pub vault_id: [u8; 16],
    pub created_at: u64,
    pub origin: VaultOrigin,
}

impl VaultHeader {
    /// The AAD (62 bytes).
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VAULT_AAD_LEN);
        write_common(
            &mut out,
            RecordType::Vault,
            &CommonHeader { wallet: self.wallet, record_id: self.vault_id },
        );
        out.extend_from_slice(&self.created_at.to_le_bytes());
        out.push(self.origin as u8);
        out
    }
}

/// A parsed, still-sealed vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedVault<'a> {
    pub header: VaultHeader,
    pub aad: &'a [u8],
    pub wrapped: WrappedKey,
    /// `iv ‖ ciphertext ‖ tag`.
    pub body: &'a [u8],
}

impl<'a> SealedVault<'a> {
    pub fn parse(record: &'a [u8]) -> Result<Self, RecordError> {
        check_size(record)?;
        let mut r = Reader { data: record, pos: 0 };
        let common = read_common(&mut r, RecordType::Vault)?;
        let created_at = r.u64("created_at")?;
        let origin = match r.u8("origin")? {
            0 => VaultOrigin::Generated,
            1 => VaultOrigin::Imported,
            other => {
                return Err(RecordError::Unknown { what: "vault origin", value: other.into() });
            }
        };
        let aad = r.consumed();
        let wrapped = read_wrapped(&mut r, aad)?;
        let body = r.rest();
        check_sealed_body(body)?;
        Ok(Self {
            header: VaultHeader {
                wallet: common.wallet,
                vault_id: common.record_id,
                created_at,
                origin,
            },
            aad,
            wrapped,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_match_the_documented_layout() {
        let wallet = Pubkey([1; 32]);
        let grant = GrantHeader {
            wallet,
            grant_id: [2; 16],
            bot_id: [3; 16],
            agent_pubkey: Pubkey([4; 32]),
            issued_at: 5,
            expires_at: 6,
            enclave_id: EnclaveId([7; 16]),
        };
        assert_eq!(grant.aad().len(), GRANT_AAD_LEN);
        assert_eq!(GRANT_AAD_LEN, 133);
        let scheduled = ScheduledHeader {
            wallet,
            schedule_id: [2; 16],
            agent_pubkey: Pubkey([4; 32]),
            not_before: 1,
            not_after: 2,
            max_fee_lamports: 3,
            intent_hash: [5; 32],
            created_at: 0,
            enclave_id: EnclaveId([7; 16]),
        };
        assert_eq!(scheduled.aad().len(), 165);
        let vault =
            VaultHeader { wallet, vault_id: [2; 16], created_at: 9, origin: VaultOrigin::Imported };
        assert_eq!(vault.aad().len(), 62);
        assert_eq!(vault.aad()[61], 1);
        let agent = AgentKeyHeader {
            wallet,
            agent_id: [2; 16],
            agent_pubkey: Pubkey([4; 32]),
            kind: AgentKind::Mnemonic { account: 3 },
        };
        assert_eq!(agent.aad().len(), 90);
    }

    #[test]
    fn parsing_refuses_wrong_types_sizes_and_short_bodies() {
        let vault = VaultHeader {
            wallet: Pubkey([1; 32]),
            vault_id: [2; 16],
            created_at: 9,
            origin: VaultOrigin::Generated,
        };
        let mut record = vault.aad();
        write_wrapped(&mut record, WrapAlg::RsaesOaepSha256, &[0xaa; 384]).unwrap();
        record.extend_from_slice(&[0; IV_LEN + 32 + TAG_LEN]);
        let parsed = SealedVault::parse(&record).unwrap();
        assert_eq!(parsed.header, vault);
        assert_eq!(parsed.aad, &record[..VAULT_AAD_LEN]);
        assert_eq!(parsed.body.len(), IV_LEN + 32 + TAG_LEN);
        assert!(matches!(SealedGrant::parse(&record), Err(RecordError::Type { actual: 4, .. })));
        assert!(SealedVault::parse(&record[..record.len() - 40]).is_err());
        let mut bad_origin = record.clone();
        bad_origin[61] = 7;
        assert!(matches!(SealedVault::parse(&bad_origin), Err(RecordError::Unknown { .. })));
        assert!(SealedVault::parse(&[0u8; MAX_RECORD_LEN + 1]).is_err());
    }
}
