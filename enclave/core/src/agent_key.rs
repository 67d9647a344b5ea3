//! Agent keys: raw ed25519 seeds, or BIP39 entropy derived along `m/44'/501'/account'/0'`
//! (BIP39 seed with empty passphrase → SLIP-0010 ed25519, hardened only — the path Phantom and
//! `solana-keygen` use).
//!
//! Secret forms: kind 0 (`Seed`) holds a 32-byte ed25519 seed; kind 1 (`Mnemonic`) holds BIP39
//! entropy of 16, 20, 24, 28 or 32 bytes (12–24 words; the enclave generates 32). Intermediate
//! values (mnemonic sentence, BIP39 seed, chain codes) live in zeroizing buffers.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;
use zeroize::Zeroizing;

pub use signer_types::records::AgentKind;

use crate::error::RecordError;
use crate::secret::Secret32;

/// BIP44 purpose and Solana's coin type.
pub const SOLANA_PATH_PREFIX: [u32; 2] = [44, 501];
const HARDENED: u32 = 0x8000_0000;

/// The hardened path `m/44'/501'/account'/0'`.
pub fn solana_path(account: u32) -> Result<[u32; 4], RecordError> {
    if account >= HARDENED {
        return Err(RecordError::Invalid(format!("account index {account} must be below 2^31")));
    }
    Ok([44, 501, account, 0])
}

/// Parses `m/44'/501'/0'/0'`; every component must be hardened (SLIP-0010 ed25519).
pub fn parse_path(path: &str) -> Result<Vec<u32>, RecordError> {
    let bad = || RecordError::Invalid(format!("`{path}` is not a hardened derivation path"));
    let mut parts = path.split('/');
    if parts.next() != Some("m") {
        return Err(bad());
    }
    parts
        .map(|p| {
            let n = p.strip_suffix('\'').ok_or_else(bad)?.parse::<u32>().map_err(|_| bad())?;
            if n >= HARDENED { Err(bad()) } else { Ok(n) }
        })
        .collect()
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    // HMAC accepts keys of any length, so construction cannot fail.
    if let Ok(mut mac) = <Hmac<Sha512> as KeyInit>::new_from_slice(key) {
        for p in parts {
            mac.update(p);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// SLIP-0010 ed25519 derivation of `seed` along hardened `path` (indexes without the hardened
/// bit). Returns the 32-byte private key (ed25519 seed).
pub fn slip10_derive(seed: &[u8], path: &[u32]) -> Secret32 {
    let mut node = hmac_sha512(b"ed25519 seed", &[seed]);
    for index in path {
        let (key, chain) = node.split_at(32);
        let data = Zeroizing::new([&[0u8][..], key].concat());
        let child = hmac_sha512(chain, &[&data, &(index | HARDENED).to_be_bytes()]);
        node = child;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(node.get(..32).unwrap_or(&[0u8; 32]));
    Secret32::new(*key)
}

/// The BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds, salt `"mnemonic" ‖ passphrase`). English
/// words and the passphrase are ASCII, for which NFKD normalization is the identity.
pub fn bip39_seed(
    mnemonic: &bip39::Mnemonic,
    passphrase: &str,
) -> Result<Zeroizing<[u8; 64]>, RecordError> {
    if !passphrase.is_ascii() {
        return Err(RecordError::Invalid("only ASCII passphrases are supported".into()));
    }
    let mut sentence = Zeroizing::new(Vec::with_capacity(24 * 9));
    for (i, word) in mnemonic.words().enumerate() {
        if i > 0 {
            sentence.push(b' ');
        }
        sentence.extend_from_slice(word.as_bytes());
    }
    let mut salt = Zeroizing::new(Vec::with_capacity(8 + passphrase.len()));
    salt.extend_from_slice(b"mnemonic");
    salt.extend_from_slice(passphrase.as_bytes());
    let mut seed = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<Sha512>(&sentence, &salt, 2048, seed.as_mut());
    Ok(seed)
}

/// The ed25519 signing key an agent secret stands for.
pub fn signing_key(kind: AgentKind, secret: &[u8]) -> Result<SigningKey, RecordError> {
    match kind {
        AgentKind::Seed => {
            let seed = Secret32::from_slice(secret).ok_or_else(|| RecordError::Length {
                what: "agent seed",
                expected: "32".into(),
                actual: secret.len(),
            })?;
            Ok(SigningKey::from_bytes(seed.expose()))
        }
        AgentKind::Mnemonic { account } => {
            if !matches!(secret.len(), 16 | 20 | 24 | 28 | 32) {
                return Err(RecordError::Length {
                    what: "BIP39 entropy",
                    expected: "16, 20, 24, 28 or 32".into(),
                    actual: secret.len(),
                });
            }
            let mnemonic = bip39::Mnemonic::from_entropy(secret)
                .map_err(|e| RecordError::Invalid(format!("BIP39 entropy: {e}")))?;
            let seed = bip39_seed(&mnemonic, "")?;
            let key = slip10_derive(seed.as_slice(), &solana_path(account)?);
            Ok(SigningKey::from_bytes(key.expose()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_slice(&testkit::read_vector("solana/derivation.json")).unwrap()
    }

    #[test]
    fn slip10_ed25519_vectors() {
        let v = vectors();
        let seed = testkit::unhex(v["slip10_ed25519"]["seed"].as_str().unwrap());
        let chains = v["slip10_ed25519"]["chains"].as_array().unwrap();
        assert!(chains.len() >= 6);
        for chain in chains {
            let path = parse_path(chain["chain"].as_str().unwrap()).unwrap();
            let key = slip10_derive(&seed, &path);
            assert_eq!(hex::encode(key.expose()), chain["private"].as_str().unwrap(), "{chain}");
        }
    }

    #[test]
    fn bip39_solana_vectors() {
        let v = vectors();
        let mut checked = 0;
        for case in v["bip39_solana"].as_array().unwrap() {
            let mnemonic = bip39::Mnemonic::parse(case["mnemonic"].as_str().unwrap()).unwrap();
            let seed = bip39_seed(&mnemonic, case["passphrase"].as_str().unwrap()).unwrap();
            if let Some(expected) = case["bip39_seed"].as_str() {
                assert_eq!(hex::encode(seed.as_slice()), expected);
            }
            for p in case["paths"].as_array().unwrap() {
                let path = parse_path(p["path"].as_str().unwrap()).unwrap();
                let key = slip10_derive(seed.as_slice(), &path);
                if let Some(expected) = p["ed25519_seed"].as_str() {
                    assert_eq!(hex::encode(key.expose()), expected, "{p}");
                }
                let public = SigningKey::from_bytes(key.expose()).verifying_key().to_bytes();
                assert_eq!(
                    bs58::encode(public).into_string(),
                    p["address"].as_str().unwrap(),
                    "{p}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 8, "checked {checked} paths");
    }

    #[test]
    fn mnemonic_kind_uses_the_phantom_path() {
        // "abandon … about" is the entropy 0x00…00 (16 bytes).
        let v = vectors();
        let case = &v["bip39_solana"][0];
        assert_eq!(case["passphrase"], "");
        for (account, p) in case["paths"].as_array().unwrap().iter().take(3).enumerate() {
            assert_eq!(p["path"], format!("m/44'/501'/{account}'/0'"));
            let key =
                signing_key(AgentKind::Mnemonic { account: account as u32 }, &[0u8; 16]).unwrap();
            assert_eq!(
                bs58::encode(key.verifying_key().to_bytes()).into_string(),
                p["address"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn bad_secrets_are_errors() {
        assert!(signing_key(AgentKind::Seed, &[1; 31]).is_err());
        assert!(signing_key(AgentKind::Mnemonic { account: 0 }, &[1; 15]).is_err());
        assert!(signing_key(AgentKind::Mnemonic { account: HARDENED }, &[1; 16]).is_err());
        assert!(parse_path("m/44/501'").is_err());
        assert!(parse_path("44'/501'").is_err());
        assert!(bip39_seed(&bip39::Mnemonic::from_entropy(&[0; 16]).unwrap(), "pässword").is_err());
    }
}
