//! User authorization messages (SPEC §15): the enclave renders them from structured fields, byte
//! for byte, and verifies the wallet's ed25519 signature over exactly those bytes. It never parses
//! free text.
//!
//! The text is a Sign In With Solana message, so wallets display it and check its domain:
//!
//! ```text
//! {domain} wants you to sign in with your Solana account:
//! {wallet, base58}
//!
//! {statement: one line saying what is authorized, every limit included}
//!
//! URI: {uri}
//! Version: 1
//! Chain ID: {chain_id}
//! Nonce: {32 lower-case hex digits: 128 random bits}
//! Issued At: {RFC 3339 UTC, to the second}
//! Expiration Time: {Issued At + the configured validity, at most 10 minutes}
//! Resources:
//! - urn:signer:purpose:{grant | import-vault | revoke | export}
//! - urn:signer:enclave:{enclave id}
//! - …purpose-specific resources (below)
//! ```
//!
//! Printable ASCII and LF only, no trailing newline. `domain`, `uri` and `chain_id` come from the
//! enclave's measured config, so a message for another domain or cluster never verifies here.
//!
//! Purpose `grant`: statement `Allow bot {bot} to sign with agent {agent} until {expiry} ({ttl}).
//! Limits: {policy summary}.`; resources `bot:{uuid}`, `agent:{base58}`, `grant-lifetime:{s}`,
//! `policy-sha256:{hex}` (the SHA-256 of the policy's canonical bytes).
//!
//! Purpose `import-vault`: statement `Import vault {uuid} as a master key of this wallet. Whoever
//! sealed it knows its master key and can use its agents without any grant: sign only if your own
//! browser sealed it.`; resources `vault:{uuid}`,
//! `vault-record-sha256:{hex}`.
//!
//! Purpose `revoke`: statement `Revoke grant {uuid} of this wallet: no bot can sign with it from
//! now on.` (resource `revoke:{uuid}`) or `Revoke every grant and scheduled transfer of this wallet
//! made up to now: no bot can sign with them from now on.` (resource `revoke:all`).
//!
//! Purpose `export`: statement `Export the master key of vault {uuid} to the key {hex} your
//! browser holds. Whoever holds it controls every agent made from this vault, outside every limit
//! and grant.` or `Export the {seed | recovery phrase} of agent {base58} to the key {hex} your
//! browser holds. Whoever holds it can move the agent's funds outside every limit and grant.`;
//! resources `export:vault:{uuid}` or `export:agent:{base58}`, `export-record-sha256:{hex}` (the
//! record whose secret is exported), `export-recipient:x25519:{hex}` (the HPKE recipient key).
//!
//! Verification is strict: the wallet key and the signature's `R` must be canonical encodings of
//! points that are not of small order, and `S` must be reduced; only then is the signature checked
//! (ed25519-dalek's `verify_strict`).

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use signer_types::ids::{EnclaveId, uuid_text};
use signer_types::policy::{Policy, Registry};
use signer_types::pubkey::Pubkey;

use crate::error::AuthorizationError;

/// The longest validity of a message (`Expiration Time − Issued At`).
pub const MAX_VALIDITY_SECONDS: u64 = 600;
/// Nonce length in hex digits (128 bits).
pub const NONCE_HEX_LEN: usize = 32;

/// Where messages are valid: from the enclave's measured config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageDomain {
    /// RFC 3986 authority the wallet checks against the requesting origin (`app.example.com`).
    pub domain: String,
    /// The URI the user is authorizing (`https://app.example.com`).
    pub uri: String,
    /// The Solana cluster (`mainnet`, `devnet`, `testnet`, `localnet`, or `solana:…`).
    pub chain_id: String,
    /// `Expiration Time − Issued At`, seconds (1..=600).
    pub validity_seconds: u64,
    /// What amounts and programs are called in the statements users read.
    pub registry: Registry,
}

impl MessageDomain {
    /// Checks that the fields can appear in a message: printable ASCII without spaces, sane
    /// lengths, validity within bounds.
    pub fn validate(&self) -> Result<(), String> {
        let token = |name: &str, value: &str, max: usize, allowed: &dyn Fn(u8) -> bool| {
            if value.is_empty() || value.len() > max || !value.bytes().all(allowed) {
                Err(format!("{name} `{value}` must be 1..={max} characters of [{}]", name_of(name)))
            } else {
                Ok(())
            }
        };
        token("domain", &self.domain, 253, &|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))?;
        token("uri", &self.uri, 512, &|b| (0x21..0x7f).contains(&b))?;
        token("chain_id", &self.chain_id, 64, &|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b":-".contains(&b)
        })?;
        self.registry.validate().map_err(|e| format!("registry: {e}"))?;
        if !(1..=MAX_VALIDITY_SECONDS).contains(&self.validity_seconds) {
            return Err(format!(
                "validity_seconds {} must be between 1 and {MAX_VALIDITY_SECONDS}",
                self.validity_seconds
            ));
        }
        Ok(())
    }
}

fn name_of(field: &str) -> &'static str {
    match field {
        "domain" => "A-Za-z0-9.-:",
        "uri" => "printable ASCII, no spaces",
        _ => "a-z0-9:-",
    }
}

/// What a wallet revokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeScope {
    /// One grant or scheduled record of the wallet, by id.
    Record([u8; 16]),
    /// Every grant and scheduled record of the wallet made up to now.
    All,
}

/// What a wallet exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportTarget {
    /// A vault's master key.
    Vault { vault_id: [u8; 16] },
    /// An agent's secret: its seed, or its BIP39 entropy (`mnemonic`).
    Agent { agent: Pubkey, mnemonic: bool },
}

/// What the user authorizes.
#[derive(Clone, Copy, Debug)]
pub enum Purpose<'a> {
    /// An execution grant: `bot` may sign with `agent` under `policy` for `ttl_seconds`.
    Grant { bot_id: [u8; 16], agent: Pubkey, ttl_seconds: u64, policy: &'a Policy },
    /// A vault sealed by the user's browser becomes usable in the enclave.
    ImportVault { vault_id: [u8; 16], record_sha256: [u8; 32] },
    /// The wallet revokes its own grants.
    Revoke { scope: RevokeScope },
    /// The wallet takes a secret out, encrypted (HPKE) to an X25519 key its browser holds.
    Export { target: ExportTarget, record_sha256: [u8; 32], recipient: [u8; 32] },
}

impl Purpose<'_> {
    /// A number for the purpose, as the enclave remembers which purpose a nonce was issued for.
    pub fn code(&self) -> u8 {
        match self {
            Self::Grant { .. } => 1,
            Self::ImportVault { .. } => 2,
            Self::Revoke { .. } => 3,
            Self::Export { .. } => 4,
        }
    }

    /// The `urn:signer:purpose:…` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Grant { .. } => "grant",
            Self::ImportVault { .. } => "import-vault",
            Self::Revoke { .. } => "revoke",
            Self::Export { .. } => "export",
        }
    }
}

/// Everything a message is rendered from, besides the domain.
#[derive(Clone, Copy, Debug)]
pub struct MessageFields<'a> {
    pub wallet: Pubkey,
    /// The enclave instance that will hold the authorization's effect (SPEC §16).
    pub enclave: EnclaveId,
    pub nonce: &'a str,
    /// Unix seconds.
    pub issued_at: u64,
    pub purpose: Purpose<'a>,
}

/// Checks a nonce: exactly [`NONCE_HEX_LEN`] lower-case hex digits.
pub fn check_nonce(nonce: &str) -> Result<(), String> {
    if nonce.len() == NONCE_HEX_LEN
        && nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!("nonce must be {NONCE_HEX_LEN} lower-case hex digits (128 bits)"))
    }
}

/// `1h30m`, `15m`, `2d`, `45s`: exact, largest units first.
pub fn duration_text(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = seconds;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = rest / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            rest %= size;
        }
    }
    out
}

/// Unix seconds as RFC 3339 UTC to the second (`2026-12-01T12:50:06Z`). Years beyond 9999 are
/// refused by the callers' bounds long before they matter.
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// The latest time a message may carry (keeps every rendered year at four digits).
const MAX_TIME: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// Renders the message (module docs). Refuses fields that could not be rendered as specified.
pub fn render(domain: &MessageDomain, fields: &MessageFields<'_>) -> Result<String, String> {
    check_nonce(fields.nonce)?;
    let expiration = fields.issued_at.saturating_add(domain.validity_seconds);
    let (statement, extra) = match fields.purpose {
        Purpose::Grant { bot_id, agent, ttl_seconds, policy } => {
            let until = fields.issued_at.saturating_add(ttl_seconds);
            if ttl_seconds == 0 || until > MAX_TIME {
                return Err(format!("grant lifetime {ttl_seconds} s cannot be rendered"));
            }
            let statement = format!(
                "Allow bot {} to sign with agent {agent} until {} ({}). Limits: {}.",
                uuid_text(&bot_id),
                rfc3339(until),
                duration_text(ttl_seconds),
                policy.summary(&domain.registry)
            );
            let extra = vec![
                format!("urn:signer:bot:{}", uuid_text(&bot_id)),
                format!("urn:signer:agent:{agent}"),
                format!("urn:signer:grant-lifetime:{ttl_seconds}"),
                format!("urn:signer:policy-sha256:{}", hex::encode(policy.sha256())),
            ];
            (statement, extra)
        }
        Purpose::ImportVault { vault_id, record_sha256 } => {
            let statement = format!(
                "Import vault {} as a master key of this wallet. Whoever sealed it knows its \
                 master key and can use its agents without any grant: sign only if your own \
                 browser sealed it.",
                uuid_text(&vault_id)
            );
            let extra = vec![
                format!("urn:signer:vault:{}", uuid_text(&vault_id)),
                format!("urn:signer:vault-record-sha256:{}", hex::encode(record_sha256)),
            ];
            (statement, extra)
        }
        Purpose::Revoke { scope: RevokeScope::Record(id) } => (
            format!(
                "Revoke grant {} of this wallet: no bot can sign with it from now on.",
                uuid_text(&id)
            ),
            vec![format!("urn:signer:revoke:{}", uuid_text(&id))],
        ),
        Purpose::Revoke { scope: RevokeScope::All } => (
            "Revoke every grant and scheduled transfer of this wallet made up to now: no bot can \
             sign with them from now on."
                .to_string(),
            vec!["urn:signer:revoke:all".to_string()],
        ),
        Purpose::Export { target, record_sha256, recipient } => {
            let (statement, what) = match target {
                ExportTarget::Vault { vault_id } => (
                    format!(
                        "Export the master key of vault {} to the key {} your browser holds. \
                         Whoever holds it controls every agent made from this vault, outside \
                         every limit and grant.",
                        uuid_text(&vault_id),
                        hex::encode(recipient)
                    ),
                    format!("urn:signer:export:vault:{}", uuid_text(&vault_id)),
                ),
                ExportTarget::Agent { agent, mnemonic } => (
                    format!(
                        "Export the {} of agent {agent} to the key {} your browser holds. \
                         Whoever holds it can move the agent's funds outside every limit and \
                         grant.",
                        if mnemonic { "recovery phrase" } else { "seed" },
                        hex::encode(recipient)
                    ),
                    format!("urn:signer:export:agent:{agent}"),
                ),
            };
            let extra = vec![
                what,
                format!("urn:signer:export-record-sha256:{}", hex::encode(record_sha256)),
                format!("urn:signer:export-recipient:x25519:{}", hex::encode(recipient)),
            ];
            (statement, extra)
        }
    };
    if expiration > MAX_TIME {
        return Err(format!("issued_at {} cannot be rendered", fields.issued_at));
    }
    let mut lines = vec![
        format!("{} wants you to sign in with your Solana account:", domain.domain),
        fields.wallet.to_string(),
        String::new(),
        statement,
        String::new(),
        format!("URI: {}", domain.uri),
        "Version: 1".into(),
        format!("Chain ID: {}", domain.chain_id),
        format!("Nonce: {}", fields.nonce),
        format!("Issued At: {}", rfc3339(fields.issued_at)),
        format!("Expiration Time: {}", rfc3339(expiration)),
        "Resources:".into(),
        format!("- urn:signer:purpose:{}", fields.purpose.name()),
        format!("- urn:signer:enclave:{}", fields.enclave),
    ];
    lines.extend(extra.into_iter().map(|r| format!("- {r}")));
    let text = lines.join("\n");
    // Everything above is ASCII by construction; this keeps it so if a format changes.
    if !text.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)) {
        return Err("the message would contain characters outside printable ASCII".into());
    }
    Ok(text)
}

/// When a message is valid on the enclave clock: `Issued At` no further ahead than `skew`, and
/// not past `Expiration Time`.
pub fn check_time(
    domain: &MessageDomain,
    issued_at: u64,
    now: u64,
    skew: u64,
) -> Result<u64, AuthorizationError> {
    if issued_at > now.saturating_add(skew) {
        return Err(AuthorizationError::NotYetValid { issued_at, now, skew });
    }
    let expires = issued_at.saturating_add(domain.validity_seconds);
    if now >= expires {
        return Err(AuthorizationError::Expired { expired_at: expires, now });
    }
    Ok(expires)
}

fn canonical_point(bytes: &[u8; 32], what: &str) -> Result<(), AuthorizationError> {
    let point = CompressedEdwardsY(*bytes).decompress().ok_or_else(|| {
        AuthorizationError::Noncanonical(format!("{what} is not an ed25519 point"))
    })?;
    if point.compress().as_bytes() != bytes {
        return Err(AuthorizationError::Noncanonical(format!("{what} is not canonically encoded")));
    }
    if point.is_small_order() {
        return Err(AuthorizationError::Noncanonical(format!("{what} is a small-order point")));
    }
    Ok(())
}

/// Strict ed25519 verification of `signature` by `wallet` over `message` (module docs).
pub fn verify_strict(
    wallet: &Pubkey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), AuthorizationError> {
    canonical_point(&wallet.0, "the wallet key")?;
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(signature.get(..32).unwrap_or(&[0; 32]));
    s.copy_from_slice(signature.get(32..).unwrap_or(&[0; 32]));
    canonical_point(&r, "the signature's R")?;
    if bool::from(Scalar::from_canonical_bytes(s).is_none()) {
        return Err(AuthorizationError::Noncanonical(
            "the signature's S is not reduced (a malleated signature)".into(),
        ));
    }
    let key = VerifyingKey::from_bytes(&wallet.0).map_err(|_| {
        AuthorizationError::Noncanonical("the wallet key is not an ed25519 point".into())
    })?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| AuthorizationError::SignatureInvalid { wallet: wallet.to_string() })
}

/// `grant_id = SHA-256("grant-id/v1" ‖ signature)[..16]` (SPEC §4): the same signature always
/// names the same grant.
pub fn grant_id(signature: &[u8; 64]) -> [u8; 16] {
    sha256_16(&[b"grant-id/v1", signature])
}

/// The first 16 bytes of SHA-256 over `parts` (ids and tags derived from signed bytes).
pub fn sha256_16(parts: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = parts.iter().fold(Sha256::new(), |d, part| d.chain_update(part)).finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn domain() -> MessageDomain {
        MessageDomain {
            domain: "app.example.com".into(),
            uri: "https://app.example.com".into(),
            chain_id: "mainnet".into(),
            validity_seconds: 600,
            registry: Registry::default(),
        }
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_268_800), "2026-01-01T12:00:00Z");
        assert_eq!(rfc3339(1_796_129_406), "2026-12-01T12:50:06Z");
        assert_eq!(rfc3339(MAX_TIME), "9999-12-31T23:59:59Z");
        assert_eq!(duration_text(5400), "1h30m");
        assert_eq!(duration_text(604_800), "7d");
        assert_eq!(duration_text(61), "1m1s");
    }

    #[test]
    fn domain_fields_are_checked() {
        domain().validate().unwrap();
        for bad in [
            MessageDomain { domain: "app example".into(), ..domain() },
            MessageDomain { uri: "https://a b".into(), ..domain() },
            MessageDomain { chain_id: "Mainnet".into(), ..domain() },
            MessageDomain { validity_seconds: 601, ..domain() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strict_verification_refuses_malleated_and_small_order_inputs() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let wallet = Pubkey(key.verifying_key().to_bytes());
        let message = b"hello";
        let sig = key.sign(message).to_bytes();
        verify_strict(&wallet, message, &sig).unwrap();
        // S + L: the same signature to a lax verifier, malleated here.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = sig;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
            malleated[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(matches!(
            verify_strict(&wallet, message, &malleated),
            Err(AuthorizationError::Noncanonical(_))
        ));
        // The identity point as wallet key (small order), and a non-canonical encoding of it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            verify_strict(&Pubkey(identity), message, &sig),
            Err(AuthorizationError::Noncanonical(_))
        ));
        let mut noncanonical = [0xffu8; 32];
        noncanonical[0] = 0xee;
        noncanonical[31] = 0x7f;
        assert!(matches!(
            verify_strict(&Pubkey(noncanonical), message, &sig),
            Err(AuthorizationError::Noncanonical(_))
        ));
        // Another wallet, or another message.
        let other = Pubkey(SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes());
        assert!(matches!(
            verify_strict(&other, message, &sig),
            Err(AuthorizationError::SignatureInvalid { .. })
        ));
        assert!(matches!(
            verify_strict(&wallet, b"hellp", &sig),
            Err(AuthorizationError::SignatureInvalid { .. })
        ));
    }

    #[test]
    fn import_message_renders_and_refuses_bad_nonces() {
        let fields = MessageFields {
            wallet: Pubkey([3; 32]),
            enclave: EnclaveId([4; 16]),
            nonce: "00112233445566778899aabbccddeeff",
            issued_at: 1_796_129_406,
            purpose: Purpose::ImportVault { vault_id: [5; 16], record_sha256: [6; 32] },
        };
        let text = render(&domain(), &fields).unwrap();
        assert!(
            text.starts_with("app.example.com wants you to sign in with your Solana account:\n")
        );
        assert!(text.contains("\nExpiration Time: 2026-12-01T13:00:06Z\n"));
        assert!(
            text.ends_with(&format!("- urn:signer:vault-record-sha256:{}", hex::encode([6; 32])))
        );
        for nonce in
            ["", "00112233445566778899AABBCCDDEEFF", "0011", "00112233445566778899aabbccddeefg"]
        {
            assert!(render(&domain(), &MessageFields { nonce, ..fields }).is_err(), "{nonce}");
        }
    }
}
