//! Sealed records: execution grants, agent keys, scheduled keys (SPEC §4; byte layouts with a
//! worked example in `docs/records.md`).
//!
//! Every record is `AAD ‖ body`, where the AAD is the fixed binary header below, exactly as
//! stored. All integers are little-endian. AES-256-GCM uses a 12-byte random IV, a 16-byte tag,
//! and always this AAD.
//!
//! ```text
//! common    version u32 (=1) ‖ record_type u8 ‖ wallet[32] ‖ record_id[16]            53 bytes
//! grant (1)     ‖ bot_id[16] ‖ agent_pubkey[32] ‖ issued_at u64 ‖ expires_at u64   AAD 117
//!   body: wrap_alg u8 ‖ len u16 ‖ wrapped DEK[len] ‖ iv[12] ‖ GCM(DEK, CBOR{umk, policy})
//! agent key (2) ‖ agent_pubkey[32] ‖ kind u8 [‖ account u32 if kind = 1]          AAD 86 / 90
//!   body: iv[12] ‖ GCM(key_privkey, secret)
//!   key_privkey = HKDF-SHA256(ikm = UMK, salt = "agent-key/v1", info = AAD)
//! scheduled (3) ‖ agent_pubkey[32] ‖ not_before u64 ‖ not_after u64 ‖ max_fee_lamports u64
//!               ‖ intent_hash[32]                                                 AAD 141
//!   body: wrap_alg u8 ‖ len u16 ‖ wrapped ephemeral key[len] ‖ iv[12] ‖ GCM(eph, seed[32])
//! ```
//!
//! `wrap_alg` 1 = RSAES-OAEP-SHA-256 to the pinned KMS key; 2 = a KMS `SYMMETRIC_DEFAULT`
//! ciphertext made with encryption context `{"aad_sha256": hex(SHA-256(AAD))}`. Limits: wrapped
//! key ≤ [`MAX_WRAPPED_KEY_LEN`], record ≤ [`MAX_RECORD_LEN`].

use std::fmt;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use rsa::{Oaep, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::agent_key::{AgentKind, signing_key};
use crate::error::RecordError;
use crate::policy::Policy;
use crate::pubkey::Pubkey;
use crate::secret::{Secret32, SecretBytes, SecureRandom, random_array, seeded_rng};

pub const RECORD_VERSION: u32 = 1;
pub const COMMON_HEADER_LEN: usize = 53;
pub const GRANT_AAD_LEN: usize = COMMON_HEADER_LEN + 64;
pub const AGENT_KEY_AAD_LEN: usize = COMMON_HEADER_LEN + 33;
pub const AGENT_KEY_MNEMONIC_AAD_LEN: usize = AGENT_KEY_AAD_LEN + 4;
pub const SCHEDULED_AAD_LEN: usize = COMMON_HEADER_LEN + 88;
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
}

impl RecordType {
    fn name(self) -> &'static str {
        match self {
            Self::ExecutionGrant => "execution grant (1)",
            Self::AgentKey => "agent key (2)",
            Self::ScheduledKey => "scheduled key (3)",
        }
    }
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

/// How to wrap a new record's key.
pub enum KeyWrap<'a> {
    /// Generate a key and wrap it with RSAES-OAEP-SHA-256 to this (pinned KMS) public key.
    Rsa(&'a RsaPublicKey),
    /// Use a caller-made key and its KMS symmetric ciphertext (made with [`encryption_context`]).
    KmsSymmetric { key: &'a Secret32, kms_ciphertext: &'a [u8] },
}

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

fn write_wrapped(out: &mut Vec<u8>, alg: WrapAlg, wrapped: &[u8]) -> Result<(), RecordError> {
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

/// Unwraps (for RSA) or accepts (symmetric) the record key according to `wrap`.
fn wrap_key(
    wrap: &KeyWrap<'_>,
    rng: &dyn SecureRandom,
) -> Result<(WrapAlg, Secret32, Vec<u8>), RecordError> {
    match wrap {
        KeyWrap::Rsa(public) => {
            let key = Secret32::random(rng).map_err(|e| RecordError::Invalid(e.to_string()))?;
            let mut oaep_rng = seeded_rng(rng).map_err(|e| RecordError::Invalid(e.to_string()))?;
            let wrapped = public
                .encrypt(&mut oaep_rng, Oaep::<Sha256>::new(), key.expose())
                .map_err(|e| RecordError::Invalid(format!("RSA-OAEP wrap: {e}")))?;
            Ok((WrapAlg::RsaesOaepSha256, key, wrapped))
        }
        KeyWrap::KmsSymmetric { key, kms_ciphertext } => {
            Ok((WrapAlg::KmsSymmetric, (*key).clone(), kms_ciphertext.to_vec()))
        }
    }
}

fn gcm_seal(
    key: &Secret32,
    aad: &[u8],
    plaintext: &[u8],
    rng: &dyn SecureRandom,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let iv: [u8; IV_LEN] = random_array(rng).map_err(|e| RecordError::Invalid(e.to_string()))?;
    let cipher = Aes256Gcm::new(key.expose().into());
    let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buf.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(iv), aad, buf.as_mut_slice().into())
        .map_err(|_| RecordError::Invalid("AES-GCM encryption failed".into()))?;
    out.extend_from_slice(&iv);
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    Ok(())
}

fn gcm_open(
    key: &Secret32,
    aad: &[u8],
    iv_and_ciphertext: &[u8],
) -> Result<SecretBytes, RecordError> {
    if iv_and_ciphertext.len() < IV_LEN + TAG_LEN {
        return Err(RecordError::Length {
            what: "sealed body",
            expected: format!("at least {}", IV_LEN + TAG_LEN),
            actual: iv_and_ciphertext.len(),
        });
    }
    let (iv, rest) = iv_and_ciphertext.split_at(IV_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| RecordError::Open)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| RecordError::Open)?;
    let cipher = Aes256Gcm::new(key.expose().into());
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(&Nonce::from(iv), aad, buf.as_mut_slice().into(), &tag.into())
        .map_err(|_| RecordError::Open)?;
    Ok(buf)
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
}

impl GrantHeader {
    /// The AAD (117 bytes).
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
        out
    }
}

/// What a grant protects.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantContents {
    pub umk: Secret32,
    pub policy: Policy,
}

impl fmt::Debug for GrantContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantContents")
            .field("umk", &self.umk)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A parsed, still-sealed grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedGrant<'a> {
    pub header: GrantHeader,
    pub aad: &'a [u8],
    pub wrapped: WrappedKey,
    body: &'a [u8],
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
        };
        let aad = record.get(..GRANT_AAD_LEN).unwrap_or_default();
        let wrapped = read_wrapped(&mut r, aad)?;
        let body = r.rest();
        if header.expires_at <= header.issued_at {
            return Err(RecordError::Invalid(format!(
                "grant expires_at {} is not after issued_at {}",
                header.expires_at, header.issued_at
            )));
        }
        Ok(Self { header, aad, wrapped, body })
    }

    /// Opens the grant with its data key. Any failure is [`RecordError::Open`] or a decoding error.
    pub fn open(&self, dek: &Secret32) -> Result<GrantContents, RecordError> {
        decode_grant_contents(&gcm_open(dek, self.aad, self.body)?)
    }
}

/// Decodes and validates the CBOR of an opened grant (the plaintext is authenticated by then,
/// but it is still parsed as if it were hostile).
pub fn decode_grant_contents(plaintext: &[u8]) -> Result<GrantContents, RecordError> {
    let mut scratch = Zeroizing::new([0u8; 1024]);
    let contents: GrantContents =
        ciborium::de::from_reader_with_buffer(plaintext, scratch.as_mut())
            .map_err(|e| RecordError::Invalid(format!("grant contents: {e}")))?;
    contents.policy.validate().map_err(|e| RecordError::Invalid(format!("grant policy: {e}")))?;
    Ok(contents)
}

/// CBOR of the grant contents, in a buffer sized so it never reallocates (no stray copies).
fn encode_contents(contents: &GrantContents) -> Result<SecretBytes, RecordError> {
    let p = &contents.policy;
    let keys =
        p.tokens.len() * 3 + p.allowed_programs.len() + p.destinations.as_ref().map_or(0, Vec::len);
    let mut buf = Zeroizing::new(Vec::with_capacity(1024 + 48 * keys));
    ciborium::into_writer(contents, &mut *buf)
        .map_err(|e| RecordError::Invalid(format!("encoding grant: {e}")))?;
    Ok(buf)
}

/// Seals a grant.
pub fn seal_grant(
    header: &GrantHeader,
    contents: &GrantContents,
    wrap: KeyWrap<'_>,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, RecordError> {
    contents.policy.validate().map_err(RecordError::Invalid)?;
    let (alg, key, wrapped) = wrap_key(&wrap, rng)?;
    let aad = header.aad();
    let plaintext = encode_contents(contents)?;
    let mut out = aad.clone();
    write_wrapped(&mut out, alg, &wrapped)?;
    gcm_seal(&key, &aad, &plaintext, rng, &mut out)?;
    check_size(&out)?;
    Ok(out)
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

/// `key_privkey = HKDF-SHA256(ikm = UMK, salt = "agent-key/v1", info = AAD)`.
pub fn key_privkey(umk: &Secret32, aad: &[u8]) -> Secret32 {
    let hk = Hkdf::<Sha256>::new(Some(AGENT_KEY_SALT), umk.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(aad, okm.as_mut());
    Secret32::new(*okm)
}

/// A parsed, still-sealed agent key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedAgentKey<'a> {
    pub header: AgentKeyHeader,
    pub aad: &'a [u8],
    body: &'a [u8],
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
        let aad = record.get(..r.pos).unwrap_or_default();
        let body = r.rest();
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

    /// Opens with the UMK and derives the signing key; the derived public key must equal the
    /// bound `agent_pubkey` (SPEC §3 invariant 2c).
    pub fn open(&self, umk: &Secret32) -> Result<ed25519_dalek::SigningKey, RecordError> {
        let secret = gcm_open(&key_privkey(umk, self.aad), self.aad, self.body)?;
        let key = signing_key(self.header.kind, &secret)?;
        check_public_key(&key, &self.header.agent_pubkey)?;
        Ok(key)
    }
}

fn check_public_key(key: &ed25519_dalek::SigningKey, bound: &Pubkey) -> Result<(), RecordError> {
    let derived = Pubkey(key.verifying_key().to_bytes());
    if derived != *bound {
        return Err(RecordError::PublicKeyMismatch {
            derived: derived.to_string(),
            bound: bound.to_string(),
        });
    }
    Ok(())
}

/// Seals an agent secret under `key_privkey(umk, AAD)`. The caller has derived `agent_pubkey`.
pub fn seal_agent_key(
    header: &AgentKeyHeader,
    secret: &[u8],
    umk: &Secret32,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, RecordError> {
    let key = signing_key(header.kind, secret)?;
    check_public_key(&key, &header.agent_pubkey)?;
    let aad = header.aad();
    let mut out = aad.clone();
    gcm_seal(&key_privkey(umk, &aad), &aad, secret, rng, &mut out)?;
    Ok(out)
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
}

impl ScheduledHeader {
    /// The AAD (141 bytes).
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
        out
    }
}

/// A parsed, still-sealed scheduled key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedScheduled<'a> {
    pub header: ScheduledHeader,
    pub aad: &'a [u8],
    pub wrapped: WrappedKey,
    body: &'a [u8],
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
        };
        if header.not_after < header.not_before {
            return Err(RecordError::Invalid(format!(
                "not_after {} is before not_before {}",
                header.not_after, header.not_before
            )));
        }
        let aad = record.get(..SCHEDULED_AAD_LEN).unwrap_or_default();
        let wrapped = read_wrapped(&mut r, aad)?;
        let body = r.rest();
        Ok(Self { header, aad, wrapped, body })
    }

    /// Opens with the ephemeral key; the seed must derive the bound public key.
    pub fn open(&self, ephemeral: &Secret32) -> Result<ed25519_dalek::SigningKey, RecordError> {
        let seed = gcm_open(ephemeral, self.aad, self.body)?;
        let key = signing_key(AgentKind::Seed, &seed)?;
        check_public_key(&key, &self.header.agent_pubkey)?;
        Ok(key)
    }
}

/// Seals a scheduled key (what a browser does with WebCrypto; here for tests and tools).
pub fn seal_scheduled(
    header: &ScheduledHeader,
    seed: &Secret32,
    wrap: KeyWrap<'_>,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, RecordError> {
    let key = signing_key(AgentKind::Seed, seed.expose())?;
    check_public_key(&key, &header.agent_pubkey)?;
    let (alg, eph, wrapped) = wrap_key(&wrap, rng)?;
    let aad = header.aad();
    let mut out = aad.clone();
    write_wrapped(&mut out, alg, &wrapped)?;
    gcm_seal(&eph, &aad, seed.expose(), rng, &mut out)?;
    Ok(out)
}
