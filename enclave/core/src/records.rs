//! Sealing and opening records (SPEC §4). The byte layouts — headers, AAD, parsing — are in
//! [`signer_types::records`] (re-exported here), shared with the parent and the CLI; this module
//! holds what only the enclave (and clients that seal records) does: AES-256-GCM with the header
//! as AAD, RSA-OAEP or KMS-symmetric key wrapping, and `key_privkey` derivation.
//!
//! Grant contents are CBOR inside the grant's GCM body:
//!
//! ```text
//! { "umk": bytes32, "policy": Policy,
//!   "authorization": { "nonce": text, "signature": bytes64 } }
//! ```
//!
//! The authorization is the wallet's signature over the message the enclave rendered when it
//! created the grant (SPEC §15): any enclave that opens the grant re-renders the message from the
//! header, the policy and the nonce, and verifies it again, so a grant sealed by anyone else (the
//! KMS key is public) confers nothing without the user's signature.

use std::fmt;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use hkdf::Hkdf;
use rsa::{Oaep, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use signer_types::records::*;

use crate::agent_key::signing_key;
use crate::error::RecordError;
use crate::policy::Policy;
use crate::pubkey::Pubkey;
use crate::secret::{Secret32, SecretBytes, SecureRandom, random_array, seeded_rng};

/// How to wrap a new record's key.
pub enum KeyWrap<'a> {
    /// Generate a key and wrap it with RSAES-OAEP-SHA-256 to this (pinned KMS) public key.
    Rsa(&'a RsaPublicKey),
    /// Use a caller-made key and its KMS symmetric ciphertext (made with [`encryption_context`]).
    KmsSymmetric { key: &'a Secret32, kms_ciphertext: &'a [u8] },
}

/// Generates (RSA) or accepts (symmetric) the record key according to `wrap`.
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

/// Opens `iv ‖ ciphertext ‖ tag` (length already checked by the parser).
fn gcm_open(
    key: &Secret32,
    aad: &[u8],
    iv_and_ciphertext: &[u8],
) -> Result<SecretBytes, RecordError> {
    check_sealed_body(iv_and_ciphertext)?;
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

/// Seals `plaintext` under a fresh record key: `aad ‖ wrap_alg ‖ len ‖ wrapped ‖ iv ‖ GCM`.
fn seal_wrapped(
    aad: Vec<u8>,
    plaintext: &[u8],
    wrap: KeyWrap<'_>,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, RecordError> {
    let (alg, key, wrapped) = wrap_key(&wrap, rng)?;
    let mut out = aad.clone();
    write_wrapped(&mut out, alg, &wrapped)?;
    gcm_seal(&key, &aad, plaintext, rng, &mut out)?;
    if out.len() > MAX_RECORD_LEN {
        return Err(RecordError::Length {
            what: "record",
            expected: format!("at most {MAX_RECORD_LEN}"),
            actual: out.len(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Execution grant

/// The user's signature that created a grant, kept inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAuthorization {
    pub nonce: String,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// What a grant protects.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantContents {
    pub umk: Secret32,
    pub policy: Policy,
    pub authorization: SignedAuthorization,
}

impl fmt::Debug for GrantContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantContents")
            .field("umk", &self.umk)
            .field("policy", &self.policy)
            .field("authorization", &self.authorization)
            .finish()
    }
}

/// Opens a grant with its data key. Any failure is [`RecordError::Open`] or a decoding error.
pub fn open_grant(sealed: &SealedGrant<'_>, dek: &Secret32) -> Result<GrantContents, RecordError> {
    decode_grant_contents(&gcm_open(dek, sealed.aad, sealed.body)?)
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
    let plaintext = encode_contents(contents)?;
    seal_wrapped(header.aad(), &plaintext, wrap, rng)
}

// ---------------------------------------------------------------------------------------------
// Agent key

/// `key_privkey = HKDF-SHA256(ikm = UMK, salt = "agent-key/v1", info = AAD)`.
pub fn key_privkey(umk: &Secret32, aad: &[u8]) -> Secret32 {
    let hk = Hkdf::<Sha256>::new(Some(AGENT_KEY_SALT), umk.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(aad, okm.as_mut());
    Secret32::new(*okm)
}

/// Opens an agent key with the UMK and derives the signing key; the derived public key must equal
/// the bound `agent_pubkey` (SPEC §3 invariant 2c).
pub fn open_agent_key(
    sealed: &SealedAgentKey<'_>,
    umk: &Secret32,
) -> Result<ed25519_dalek::SigningKey, RecordError> {
    Ok(open_agent_secret(sealed, umk)?.1)
}

/// Opens an agent-key record to its secret (the seed, or the BIP39 entropy) and the signing key
/// it derives, checked against the record's bound public key. For a wallet-signed export.
pub fn open_agent_secret(
    sealed: &SealedAgentKey<'_>,
    umk: &Secret32,
) -> Result<(SecretBytes, ed25519_dalek::SigningKey), RecordError> {
    let secret = gcm_open(&key_privkey(umk, sealed.aad), sealed.aad, sealed.body)?;
    let key = signing_key(sealed.header.kind, &secret)?;
    check_public_key(&key, &sealed.header.agent_pubkey)?;
    Ok((secret, key))
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

/// Opens a scheduled record with its ephemeral key; the seed must derive the bound public key.
pub fn open_scheduled(
    sealed: &SealedScheduled<'_>,
    ephemeral: &Secret32,
) -> Result<ed25519_dalek::SigningKey, RecordError> {
    let seed = gcm_open(ephemeral, sealed.aad, sealed.body)?;
    let key = signing_key(AgentKind::Seed, &seed)?;
    check_public_key(&key, &sealed.header.agent_pubkey)?;
    Ok(key)
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
    seal_wrapped(header.aad(), seed.expose(), wrap, rng)
}

// ---------------------------------------------------------------------------------------------
// Vault

/// Opens a vault with its data key: the 32-byte UMK.
pub fn open_vault(sealed: &SealedVault<'_>, dek: &Secret32) -> Result<Secret32, RecordError> {
    let plaintext = gcm_open(dek, sealed.aad, sealed.body)?;
    Secret32::from_slice(&plaintext).ok_or_else(|| {
        RecordError::Invalid(format!("a vault holds a 32-byte UMK, not {} bytes", plaintext.len()))
    })
}

/// Seals a UMK into a vault record (the enclave for generated vaults; a browser, or tests, for
/// imported ones).
pub fn seal_vault(
    header: &VaultHeader,
    umk: &Secret32,
    wrap: KeyWrap<'_>,
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, RecordError> {
    seal_wrapped(header.aad(), umk.expose(), wrap, rng)
}
