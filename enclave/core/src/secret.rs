//! Secret-holding types. Every secret lives in one of these: zeroized on drop, never printed
//! (`Debug` shows only a label), compared in constant time, never converted to `String`.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A 32-byte secret (UMK, data key, ephemeral key, ed25519 seed, HKDF output).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Takes ownership of the bytes (the caller's copy should itself be zeroized).
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Copies a slice of exactly 32 bytes; `None` otherwise.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: &[u8; 32] = bytes.try_into().ok()?;
        Some(Self(*array))
    }

    /// Fresh random bytes.
    pub fn random(rng: &dyn SecureRandom) -> Result<Self, crate::error::RandomError> {
        let mut s = Self([0; 32]);
        rng.fill(&mut s.0)?;
        Ok(s)
    }

    /// The secret bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret32 {}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

impl serde::Serialize for Secret32 {
    /// Base64 (standard, padded) in human-readable formats, raw bytes in binary ones.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            use base64::Engine as _;
            let mut buf = Zeroizing::new([0u8; 44]);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(self.0, buf.as_mut())
                .map_err(serde::ser::Error::custom)?;
            let text = std::str::from_utf8(buf.get(..n).unwrap_or_default())
                .map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(text)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Secret32 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 bytes (base64 in JSON)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret32, E> {
                use base64::Engine as _;
                let mut buf = Zeroizing::new([0u8; 48]);
                match base64::engine::general_purpose::STANDARD.decode_slice(v, buf.as_mut()) {
                    Ok(32) => Ok(Secret32::from_slice(buf.get(..32).unwrap_or_default())
                        .unwrap_or(Secret32([0; 32]))),
                    Ok(n) => Err(E::invalid_length(n, &"32 bytes")),
                    Err(_) => Err(E::custom("not standard padded base64")),
                }
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Secret32, E> {
                Secret32::from_slice(v).ok_or_else(|| E::invalid_length(v.len(), &"32 bytes"))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, mut v: Vec<u8>) -> Result<Secret32, E> {
                let out = self.visit_bytes(&v);
                v.zeroize();
                out
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(V)
        } else {
            deserializer.deserialize_bytes(V)
        }
    }
}

/// A variable-length secret (BIP39 entropy, envelope plaintext, decrypted record bodies).
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// A source of cryptographically secure randomness: the NSM in production, the OS in simulation.
pub trait SecureRandom: Send + Sync {
    /// Fills `buf` entirely or fails.
    fn fill(&self, buf: &mut [u8]) -> Result<(), crate::error::RandomError>;
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), crate::error::RandomError> {
        getrandom::fill(buf).map_err(|e| crate::error::RandomError(e.to_string()))
    }
}

/// A ChaCha20 generator seeded with 32 bytes from `rng`, for APIs that want an infallible
/// `rand_core::CryptoRng` (RSA key generation, OAEP). Seeding is the only fallible step, so an RNG
/// failure is an error, never a panic.
pub fn seeded_rng(
    rng: &dyn SecureRandom,
) -> Result<chacha20::ChaCha20Rng, crate::error::RandomError> {
    use rand_core::SeedableRng as _;
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill(seed.as_mut())?;
    Ok(chacha20::ChaCha20Rng::from_seed(*seed))
}

/// Random bytes of a fixed size (ids, IVs: not secret).
pub fn random_array<const N: usize>(
    rng: &dyn SecureRandom,
) -> Result<[u8; N], crate::error::RandomError> {
    let mut out = [0u8; N];
    rng.fill(&mut out)?;
    Ok(out)
}
