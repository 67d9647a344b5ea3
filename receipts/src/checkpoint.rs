//! Checkpoints: the chain head, signed with the per-boot key of the instance that holds it.
//!
//! ```text
//! checkpoint (81 bytes)        version u8 = 1 ‖ decider[16] ‖ signer[16] ‖ seq u64 ‖ head[32] ‖ time u64
//! signed message               "signer/receipt-checkpoint/v1" ‖ checkpoint[81]
//! signed checkpoint (145)      checkpoint[81] ‖ ed25519 signature[64]
//! key binding (user_data)      SHA-256("signer/receipt-key/v1" ‖ signer[16] ‖ public key[32])
//! ```
//!
//! Receipts cost one hash each; a checkpoint costs one signature and vouches for its head and,
//! through the `prev` links, for every receipt before it. The signing key is generated at boot,
//! never leaves the enclave, and is bound to the instance by an attestation document whose
//! `user_data` is [`checkpoint_key_binding`]; checking that document is the verifier's job
//! (`attest receipts`), this module only computes the binding.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::receipt::ser;

/// The checkpoint format version (first byte).
pub const CHECKPOINT_VERSION: u8 = 1;
/// An encoded checkpoint.
pub const CHECKPOINT_LEN: usize = 81;
/// An encoded signed checkpoint.
pub const SIGNED_CHECKPOINT_LEN: usize = CHECKPOINT_LEN + 64;
/// Domain separator of the signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"signer/receipt-checkpoint/v1";
/// Domain separator of [`checkpoint_key_binding`].
pub const KEY_BINDING_DOMAIN: &[u8] = b"signer/receipt-key/v1";

/// `SHA-256("signer/receipt-key/v1" ‖ enclave_id ‖ public)`: what an enclave puts in the
/// `user_data` of an attestation document to bind its checkpoint key to itself.
pub fn checkpoint_key_binding(enclave_id: &[u8; 16], public: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(KEY_BINDING_DOMAIN)
        .chain_update(enclave_id)
        .chain_update(public)
        .finalize()
        .into()
}

/// The head of `decider`'s chain as `signer` saw it at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// The chain's decider (enclave id or cluster id).
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    /// The enclave id of the instance whose per-boot key signs (the decider itself, or a member
    /// of the decider's cluster).
    #[serde(serialize_with = "ser::id")]
    pub signer: [u8; 16],
    /// The seq of the head receipt.
    pub seq: u64,
    /// The hash of the head receipt.
    #[serde(serialize_with = "ser::hash")]
    pub head: [u8; 32],
    /// Unix seconds on the signer's clock.
    pub time: u64,
}

/// A checkpoint and its ed25519 signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    #[serde(serialize_with = "ser::bytes")]
    pub signature: [u8; 64],
}

/// A checkpoint that cannot be decoded or does not verify.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("{what} is {actual} bytes; expected {expected}")]
    Length { what: &'static str, expected: usize, actual: usize },
    #[error("unsupported checkpoint version {actual} (expected {expected})")]
    UnsupportedVersion { expected: u8, actual: u8 },
    #[error("the checkpoint key is not a canonical ed25519 public key of large order")]
    InvalidKey,
    #[error("the checkpoint signature does not verify with the signer's key")]
    BadSignature,
}

impl CheckpointError {
    /// A stable name of the error's kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Length { .. } => "length",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::InvalidKey => "invalid_key",
            Self::BadSignature => "bad_signature",
        }
    }
}

impl Checkpoint {
    /// The 81 bytes (module docs).
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut out = [0u8; CHECKPOINT_LEN];
        let fields: [&[u8]; 6] = [
            &[CHECKPOINT_VERSION],
            &self.decider,
            &self.signer,
            &self.seq.to_le_bytes(),
            &self.head,
            &self.time.to_le_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = out.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        out
    }

    /// Decodes exactly [`CHECKPOINT_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let bytes: &[u8; CHECKPOINT_LEN] =
            bytes.try_into().map_err(|_| CheckpointError::Length {
                what: "checkpoint",
                expected: CHECKPOINT_LEN,
                actual: bytes.len(),
            })?;
        let [version, rest @ ..] = bytes;
        if *version != CHECKPOINT_VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                expected: CHECKPOINT_VERSION,
                actual: *version,
            });
        }
        let (decider, rest) = split::<16>(rest);
        let (signer, rest) = split::<16>(rest);
        let (seq, rest) = split::<8>(rest);
        let (head, rest) = split::<32>(rest);
        let (time, _) = split::<8>(rest);
        Ok(Self {
            decider,
            signer,
            seq: u64::from_le_bytes(seq),
            head,
            time: u64::from_le_bytes(time),
        })
    }

    /// What the key signs: `"signer/receipt-checkpoint/v1" ‖ encode()`.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + CHECKPOINT_LEN);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        out.extend_from_slice(&self.encode());
        out
    }
}

/// The first `N` bytes of `bytes` (zero-padded if short; callers pass exact lengths) and the rest.
fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut out = [0u8; N];
    let n = N.min(bytes.len());
    if let (Some(dst), Some(src)) = (out.get_mut(..n), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
    (out, bytes.get(n..).unwrap_or_default())
}

impl SignedCheckpoint {
    /// `checkpoint[81] ‖ signature[64]`.
    pub fn encode(&self) -> [u8; SIGNED_CHECKPOINT_LEN] {
        let mut out = [0u8; SIGNED_CHECKPOINT_LEN];
        let (head, tail) = out.split_at_mut(CHECKPOINT_LEN);
        head.copy_from_slice(&self.checkpoint.encode());
        tail.copy_from_slice(&self.signature);
        out
    }

    /// Decodes exactly [`SIGNED_CHECKPOINT_LEN`] bytes (the signature is checked by
    /// [`SignedCheckpoint::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        if bytes.len() != SIGNED_CHECKPOINT_LEN {
            return Err(CheckpointError::Length {
                what: "signed checkpoint",
                expected: SIGNED_CHECKPOINT_LEN,
                actual: bytes.len(),
            });
        }
        let (checkpoint, signature) = bytes.split_at(CHECKPOINT_LEN);
        let (signature, _) = split::<64>(signature);
        Ok(Self { checkpoint: Checkpoint::decode(checkpoint)?, signature })
    }

    /// Strict ed25519 verification with `public` (the key bound to `checkpoint.signer`): the key
    /// must be a canonical encoding of a point of large order, the signature's `R` not of small
    /// order and `S` reduced.
    pub fn verify(&self, public: &[u8; 32]) -> Result<(), CheckpointError> {
        let key = VerifyingKey::from_bytes(public).map_err(|_| CheckpointError::InvalidKey)?;
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *public {
            return Err(CheckpointError::InvalidKey);
        }
        key.verify_strict(
            &self.checkpoint.signed_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| CheckpointError::BadSignature)
    }
}

/// A per-boot checkpoint signing key. The secret is zeroized on drop and never printed.
pub struct CheckpointKey(SigningKey);

impl ZeroizeOnDrop for CheckpointKey {}

impl CheckpointKey {
    /// A fresh key from `rng` (the enclave's CSPRNG).
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_bytes(&seed)
    }

    /// The key with this 32-byte ed25519 seed (tests, golden vectors).
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// [`checkpoint_key_binding`] of this key for `enclave_id`.
    pub fn binding(&self, enclave_id: &[u8; 16]) -> [u8; 32] {
        checkpoint_key_binding(enclave_id, &self.public())
    }

    /// Signs `checkpoint` (module docs).
    pub fn sign(&self, checkpoint: &Checkpoint) -> SignedCheckpoint {
        let signature = self.0.sign(&checkpoint.signed_message()).to_bytes();
        SignedCheckpoint { checkpoint: *checkpoint, signature }
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("public", &hex::encode(self.public()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint { decider: ENCLAVE_A, signer: ENCLAVE_B, seq: 7, head: [0x48; 32], time: T0 + 1 }
    }

    #[test]
    fn the_layout_is_as_documented_and_round_trips() {
        let c = checkpoint();
        let b = c.encode();
        assert_eq!(b[0], 1);
        assert_eq!(b[1..17], ENCLAVE_A);
        assert_eq!(b[17..33], ENCLAVE_B);
        assert_eq!(b[33..41], 7u64.to_le_bytes());
        assert_eq!(b[41..73], [0x48; 32]);
        assert_eq!(b[73..81], (T0 + 1).to_le_bytes());
        assert_eq!(Checkpoint::decode(&b).unwrap(), c);
        assert_eq!(c.signed_message(), [CHECKPOINT_DOMAIN, &b[..]].concat());

        let signed = key_a().sign(&c);
        let sb = signed.encode();
        assert_eq!(sb[..81], b);
        assert_eq!(sb[81..], signed.signature);
        assert_eq!(SignedCheckpoint::decode(&sb).unwrap(), signed);
    }

    #[test]
    fn decoding_checks_length_and_version() {
        let b = key_a().sign(&checkpoint()).encode();
        assert_eq!(
            SignedCheckpoint::decode(&b[..144]).unwrap_err(),
            CheckpointError::Length { what: "signed checkpoint", expected: 145, actual: 144 }
        );
        assert_eq!(
            SignedCheckpoint::decode(&[b.as_slice(), &[0]].concat()).unwrap_err().code(),
            "length"
        );
        assert_eq!(
            Checkpoint::decode(&b[..80]).unwrap_err(),
            CheckpointError::Length { what: "checkpoint", expected: 81, actual: 80 }
        );
        let mut v2 = b;
        v2[0] = 2;
        assert_eq!(
            SignedCheckpoint::decode(&v2).unwrap_err(),
            CheckpointError::UnsupportedVersion { expected: 1, actual: 2 }
        );
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_over_its_fields() {
        let signed = key_a().sign(&checkpoint());
        signed.verify(&key_a().public()).unwrap();
        assert_eq!(
            signed.verify(&key_other().public()).unwrap_err(),
            CheckpointError::BadSignature
        );
        let mut moved = signed;
        moved.checkpoint.seq += 1;
        assert_eq!(moved.verify(&key_a().public()).unwrap_err(), CheckpointError::BadSignature);
        let mut flipped = signed;
        flipped.signature[63] ^= 0x80;
        assert_eq!(flipped.verify(&key_a().public()).unwrap_err(), CheckpointError::BadSignature);
        // The identity point and a non-canonical encoding are not keys.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(signed.verify(&identity).unwrap_err(), CheckpointError::InvalidKey);
        let mut noncanonical = [0xffu8; 32];
        noncanonical[0] = 0xed;
        noncanonical[31] = 0x7f;
        assert!(signed.verify(&noncanonical).is_err());
    }

    #[test]
    fn ed25519_signing_is_deterministic_and_matches_the_public_key() {
        let a = key_a();
        assert_eq!(a.sign(&checkpoint()), a.sign(&checkpoint()));
        assert_eq!(
            a.public(),
            ed25519_dalek::SigningKey::from_bytes(&SEED_A).verifying_key().to_bytes()
        );
    }

    #[test]
    fn generate_uses_the_given_rng() {
        struct Fixed(u8);
        impl rand_core::TryRng for Fixed {
            type Error = std::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                Ok(u32::from(self.0))
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                Ok(u64::from(self.0))
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
                dst.fill(self.0);
                Ok(())
            }
        }
        impl rand_core::TryCryptoRng for Fixed {}
        assert_eq!(CheckpointKey::generate(&mut Fixed(0x5a)).public(), key_a().public());
        assert_ne!(CheckpointKey::generate(&mut Fixed(0x5b)).public(), key_a().public());
    }

    #[test]
    fn the_binding_is_domain_separated_sha256_of_id_and_key() {
        let key = key_a();
        let expected: [u8; 32] = Sha256::digest(
            [b"signer/receipt-key/v1".as_slice(), &ENCLAVE_A, &key.public()].concat(),
        )
        .into();
        assert_eq!(checkpoint_key_binding(&ENCLAVE_A, &key.public()), expected);
        assert_eq!(key.binding(&ENCLAVE_A), expected);
        assert_ne!(key.binding(&ENCLAVE_B), expected);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let text = format!("{:?}", key_a());
        assert!(text.contains(&hex::encode(key_a().public())), "{text}");
        assert!(!text.contains(&hex::encode(SEED_A)), "{text}");
        assert!(!text.to_lowercase().contains("5a5a5a5a"), "{text}");
    }
}
