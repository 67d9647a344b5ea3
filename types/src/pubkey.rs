//! 32-byte Solana public keys: base58 in human-readable formats (JSON), raw bytes in binary
//! formats (CBOR), so one type serves the HTTP API and the records.

use std::fmt;
use std::str::FromStr;

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ed25519 public key / Solana address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pubkey(pub [u8; 32]);

impl Pubkey {
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // five8: fixed-size base58, an order of magnitude faster than the generic codec on the
        // signing path (it is what the Solana SDK itself uses).
        let mut out = [0u8; five8::BASE58_ENCODED_32_MAX_LEN];
        let len = usize::from(five8::encode_32(&self.0, &mut out));
        f.write_str(std::str::from_utf8(out.get(..len).unwrap_or_default()).unwrap_or_default())
    }
}

/// Base58 of a 64-byte ed25519 signature (Solana's signature notation).
pub fn signature_base58(signature: &[u8; 64]) -> String {
    let mut out = [0u8; five8::BASE58_ENCODED_64_MAX_LEN];
    let len = usize::from(five8::encode_64(signature, &mut out));
    String::from_utf8_lossy(out.get(..len).unwrap_or_default()).into_owned()
}

impl fmt::Debug for Pubkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pubkey({self})")
    }
}

/// Parse errors name the offending text.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a base58 32-byte public key")]
pub struct PubkeyParseError(pub String);

impl FromStr for Pubkey {
    type Err = PubkeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // 32 bytes are at most 44 base58 characters; refuse longer input before decoding.
        if s.len() > 44 {
            return Err(PubkeyParseError(s.chars().take(50).collect()));
        }
        let mut out = [0u8; 32];
        match bs58::decode(s).onto(&mut out) {
            Ok(32) => Ok(Self(out)),
            _ => Err(PubkeyParseError(s.to_string())),
        }
    }
}

impl Serialize for Pubkey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Pubkey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Pubkey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base58 public key or 32 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Pubkey, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Pubkey, E> {
                <[u8; 32]>::try_from(v)
                    .map(Pubkey)
                    .map_err(|_| E::invalid_length(v.len(), &"32 bytes"))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Pubkey, E> {
                self.visit_bytes(&v)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(V)
        } else {
            deserializer.deserialize_bytes(V).map_err(D::Error::custom)
        }
    }
}

/// Well-known program ids.
pub mod programs {
    use super::Pubkey;

    /// `11111111111111111111111111111111`
    pub const SYSTEM: Pubkey = Pubkey([0; 32]);
    /// `TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA`
    pub const TOKEN: Pubkey = Pubkey([
        0x06, 0xdd, 0xf6, 0xe1, 0xd7, 0x65, 0xa1, 0x93, 0xd9, 0xcb, 0xe1, 0x46, 0xce, 0xeb, 0x79,
        0xac, 0x1c, 0xb4, 0x85, 0xed, 0x5f, 0x5b, 0x37, 0x91, 0x3a, 0x8c, 0xf5, 0x85, 0x7e, 0xff,
        0x00, 0xa9,
    ]);
    /// `TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb`
    pub const TOKEN_2022: Pubkey = Pubkey([
        0x06, 0xdd, 0xf6, 0xe1, 0xee, 0x75, 0x8f, 0xde, 0x18, 0x42, 0x5d, 0xbc, 0xe4, 0x6c, 0xcd,
        0xda, 0xb6, 0x1a, 0xfc, 0x4d, 0x83, 0xb9, 0x0d, 0x27, 0xfe, 0xbd, 0xf9, 0x28, 0xd8, 0xa1,
        0x8b, 0xfc,
    ]);
    /// `ComputeBudget111111111111111111111111111111`
    pub const COMPUTE_BUDGET: Pubkey = Pubkey([
        0x03, 0x06, 0x46, 0x6f, 0xe5, 0x21, 0x17, 0x32, 0xff, 0xec, 0xad, 0xba, 0x72, 0xc3, 0x9b,
        0xe7, 0xbc, 0x8c, 0xe5, 0xbb, 0xc5, 0xf7, 0x12, 0x6b, 0x2c, 0x43, 0x9b, 0x3a, 0x40, 0x00,
        0x00, 0x00,
    ]);
    /// `Ed25519SigVerify111111111111111111111111111` (precompile)
    pub const ED25519_PRECOMPILE: Pubkey = Pubkey([
        0x03, 0x7d, 0x46, 0xd6, 0x7c, 0x93, 0xfb, 0xbe, 0x12, 0xf9, 0x42, 0x8f, 0x83, 0x8d, 0x40,
        0xff, 0x05, 0x70, 0x74, 0x49, 0x27, 0xf4, 0x8a, 0x64, 0xfc, 0xca, 0x70, 0x44, 0x80, 0x00,
        0x00, 0x00,
    ]);
    /// `KeccakSecp256k1SigVerify1111111111111111111` (precompile)
    pub const SECP256K1_PRECOMPILE: Pubkey = Pubkey([
        0x04, 0xc6, 0xfc, 0x20, 0xf0, 0x50, 0xcc, 0xf0, 0x55, 0x84, 0xd7, 0x28, 0x52, 0xad, 0x67,
        0xfe, 0x2b, 0xef, 0x91, 0xaa, 0x8a, 0xae, 0x60, 0x95, 0xc5, 0x5c, 0xbb, 0x2a, 0x14, 0x80,
        0x00, 0x00,
    ]);
    /// `Secp256r1SigVerify1111111111111111111111111` (precompile)
    pub const SECP256R1_PRECOMPILE: Pubkey = Pubkey([
        0x06, 0x92, 0x0d, 0xec, 0x2f, 0xea, 0x71, 0xb5, 0xb7, 0x23, 0x81, 0x4d, 0x74, 0x2d, 0xa9,
        0x03, 0x1c, 0x83, 0xe7, 0x5f, 0xdb, 0x79, 0x5d, 0x56, 0x8e, 0x75, 0x47, 0x80, 0x20, 0x00,
        0x00, 0x00,
    ]);
    /// Signature-verification precompiles: each signature they verify costs a base fee the fee
    /// formula would not see, so they cannot be allowed programs.
    pub const PRECOMPILES: [Pubkey; 3] =
        [ED25519_PRECOMPILE, SECP256K1_PRECOMPILE, SECP256R1_PRECOMPILE];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_ids_match_their_base58_names() {
        assert_eq!(programs::SYSTEM.to_string(), "11111111111111111111111111111111");
        assert_eq!(programs::TOKEN.to_string(), "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
        assert_eq!(programs::TOKEN_2022.to_string(), "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
        assert_eq!(
            programs::COMPUTE_BUDGET.to_string(),
            "ComputeBudget111111111111111111111111111111"
        );
        assert_eq!(
            programs::ED25519_PRECOMPILE.to_string(),
            "Ed25519SigVerify111111111111111111111111111"
        );
        assert_eq!(
            programs::SECP256K1_PRECOMPILE.to_string(),
            "KeccakSecp256k1SigVerify1111111111111111111"
        );
        assert_eq!(
            programs::SECP256R1_PRECOMPILE.to_string(),
            "Secp256r1SigVerify1111111111111111111111111"
        );
    }

    #[test]
    fn fast_base58_matches_the_reference_codec() {
        for zeros in 0..=32 {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).unwrap();
            k[..zeros].fill(0);
            assert_eq!(Pubkey(k).to_string(), bs58::encode(k).into_string());
            assert_eq!(Pubkey(k).to_string().parse::<Pubkey>().unwrap(), Pubkey(k));
            let mut s = [0u8; 64];
            getrandom::fill(&mut s).unwrap();
            s[..zeros * 2].fill(0);
            assert_eq!(signature_base58(&s), bs58::encode(s).into_string());
        }
    }

    #[test]
    fn json_is_base58_and_cbor_is_bytes() {
        let key = programs::TOKEN;
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA\"");
        assert_eq!(serde_json::from_str::<Pubkey>(&json).unwrap(), key);
        let mut cbor = Vec::new();
        ciborium::into_writer(&key, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 34);
        assert_eq!(ciborium::from_reader::<Pubkey, _>(cbor.as_slice()).unwrap(), key);
        for bad in
            ["", "0OIl", "1111", &"1".repeat(60), "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DAA"]
        {
            assert!(bad.parse::<Pubkey>().is_err(), "{bad}");
        }
    }
}
