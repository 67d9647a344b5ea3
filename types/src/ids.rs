//! 16-byte identifiers: record ids (grants, agents, vaults, schedules), bot ids and enclave
//! instance ids. The API shows them as UUID text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// 16-byte ids as UUID text (`8-4-4-4-12` lower-case hex).
pub fn uuid_text(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// Parses UUID text into 16 bytes: hyphenated (36 characters) or 32 hex digits, nothing else
/// (braced and `urn:uuid:` forms, which `uuid::Uuid::parse_str` would take, are refused).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    match text.len() {
        32 => uuid::fmt::Simple::from_str(text).ok().map(uuid::fmt::Simple::into_uuid),
        36 => uuid::fmt::Hyphenated::from_str(text).ok().map(uuid::fmt::Hyphenated::into_uuid),
        _ => None,
    }
    .map(uuid::Uuid::into_bytes)
}

/// An enclave instance: `SHA-256("signer/enclave-id/v1" ‖ recipient SPKI DER)[..16]`, derived from
/// the RSA key the enclave generates at boot and publishes in every attestation document, so the
/// id is attested and dies with the instance. Grants and scheduled records name the instance that
/// holds their decision state (SPEC §16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EnclaveId(pub [u8; 16]);

/// Domain separator of [`EnclaveId::from_recipient_key`].
pub const ENCLAVE_ID_DOMAIN: &[u8] = b"signer/enclave-id/v1";

impl EnclaveId {
    /// The id of the enclave whose recipient key has this SubjectPublicKeyInfo DER.
    pub fn from_recipient_key(spki_der: &[u8]) -> Self {
        let digest =
            Sha256::new().chain_update(ENCLAVE_ID_DOMAIN).chain_update(spki_der).finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Self(id)
    }
}

impl fmt::Display for EnclaveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for EnclaveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnclaveId({self})")
    }
}

/// An enclave id that is not UUID text.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an enclave id (UUID text)")]
pub struct EnclaveIdParseError(pub String);

impl FromStr for EnclaveId {
    type Err = EnclaveIdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_uuid(s).map(Self).ok_or_else(|| EnclaveIdParseError(s.chars().take(40).collect()))
    }
}

impl Serialize for EnclaveId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for EnclaveId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EnclaveId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enclave id: UUID text or 16 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnclaveId, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<EnclaveId, E> {
                <[u8; 16]>::try_from(v)
                    .map(EnclaveId)
                    .map_err(|_| E::invalid_length(v.len(), &"16 bytes"))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<EnclaveId, E> {
                self.visit_bytes(&v)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(V)
        } else {
            deserializer.deserialize_bytes(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_round_trips_and_refuses_garbage() {
        let id = [
            0x7a, 0x1c, 0x4a, 0x9e, 0x5d, 0x2b, 0x4c, 0x1e, 0x9f, 0x3a, 0x2b, 0x6d, 0x8e, 0x0f,
            0x1a, 0x2b,
        ];
        assert_eq!(uuid_text(&id), "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b");
        assert_eq!(parse_uuid("7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b"), Some(id));
        assert_eq!(parse_uuid("7a1c4a9e5d2b4c1e9f3a2b6d8e0f1a2b"), Some(id));
        for bad in [
            "",
            "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2",
            "7a1c4a9e5d2b-4c1e-9f3a-2b6d-8e0f1a2b",
            "zz1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b",
            "{7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b}",
            "urn:uuid:7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b",
            "7a1c4a9e+5d2b+4c1e+9f3a+2b6d8e0f1a2b",
            "7a1c4a9e5-d2b-4c1e-9f3a-2b6d8e0f1a2b",
            "7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b-",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
        let e = EnclaveId(id);
        assert_eq!(e.to_string(), uuid_text(&id));
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"7a1c4a9e-5d2b-4c1e-9f3a-2b6d8e0f1a2b\"");
        let mut cbor = Vec::new();
        ciborium::into_writer(&e, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 17);
        assert_eq!(ciborium::from_reader::<EnclaveId, _>(cbor.as_slice()).unwrap(), e);
    }

    #[test]
    fn enclave_ids_are_domain_separated_hashes_of_the_recipient_key() {
        let a = EnclaveId::from_recipient_key(b"spki-a");
        assert_ne!(a, EnclaveId::from_recipient_key(b"spki-b"));
        let expected = Sha256::digest([ENCLAVE_ID_DOMAIN, b"spki-a"].concat());
        assert_eq!(a.0, expected[..16]);
    }
}
