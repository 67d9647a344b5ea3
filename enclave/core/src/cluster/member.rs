//! Attested member identities.
//!
//! At boot a member generates a [`MemberKey`] (X25519, HPKE `DHKEM(X25519, HKDF-SHA256)`) next to
//! its RSA recipient key, and asks the NSM for a document with
//!
//! ```text
//! public_key = recipient SPKI DER          (enclave_id = SHA-256("signer/enclave-id/v1" ‖ SPKI)[..16])
//! user_data  = member_binding = SHA-256("signer/cluster/member/v1" ‖ enclave_id[16] ‖ channel_public[32])
//! ```
//!
//! Only the enclave chooses `user_data` (SPEC invariant 9), so an AWS-signed document with this
//! binding, from a trusted image, proves that the channel key belongs to that enclave instance.
//! It travels as a [`MemberCard`]:
//!
//! ```text
//! offset  size      field
//! 0       1         version u8 = 1
//! 1       16        enclave_id
//! 17      32        channel_public (X25519 public key)
//! 49      4         doc_len u32 little-endian, 1..=32768
//! 53      doc_len   document (COSE_Sign1 attestation document)
//! ```
//!
//! A card is therefore 54..=[`MAX_CARD_LEN`] (32 KiB + 53) bytes; truncated cards and trailing
//! bytes are refused. Raft node ids are the first 8 bytes of the enclave id, little-endian
//! ([`MemberCard::node_id`]).
//!
//! Checks of [`verify_member`], in order: card format; document chain to the anchor at `now`,
//! COSE signature, not more than 60 s ahead, at most `max_age` old, not debug mode; PCRs of one
//! of the trusted images (only the listed indexes compared, PCR0 required); `public_key` present
//! and hashing to the card's enclave id; `user_data` equal to the binding of the card's enclave
//! id and channel key. [`verify_member_at_own_time`] differs only in the first document step: the
//! chain is checked at the document's own timestamp (as for provenance documents: the NSM writes
//! the timestamp, and an AWS leaf lives about three hours while a member may run for months), the
//! timestamp may not be more than 60 s ahead of `now`, and there is no maximum age.
//!
//! Cluster id: `SHA-256("signer/cluster-id/v1" ‖ count u16 LE ‖ founders sorted ascending)[..16]`
//! ([`cluster_id`]). Every founder id comes from a key generated at that founder's boot, so a new
//! genesis can never reproduce an old cluster id.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use nitro_attestation::document::MAX_DOCUMENT_LEN;
use nitro_attestation::policy::MAX_CLOCK_SKEW;
use nitro_attestation::{
    AttestationDocument, AttestationPolicy, PolicyError, TrustAnchor, VerifiedDocument, VerifyError,
};
use sha2::{Digest, Sha256};
use signer_types::ids::EnclaveId;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::enclave::Image;
use crate::error::RandomError;
use crate::secret::SecureRandom;

/// Domain separator of [`member_binding`].
pub const MEMBER_BINDING_DOMAIN: &[u8] = b"signer/cluster/member/v1";
/// Domain separator of [`cluster_id`].
pub const CLUSTER_ID_DOMAIN: &[u8] = b"signer/cluster-id/v1";
/// The only card format.
pub const CARD_VERSION: u8 = 1;
/// Bytes before the document: version, enclave id, channel key, document length.
pub const CARD_HEADER_LEN: usize = 1 + 16 + 32 + 4;
/// The largest card: a header and a document of the largest size a document may have.
pub const MAX_CARD_LEN: usize = CARD_HEADER_LEN + MAX_DOCUMENT_LEN;
/// Most founders a cluster id can name (the count is a u16).
pub const MAX_FOUNDERS: usize = u16::MAX as usize;

type HpkePrivateKey = <X25519HkdfSha256 as hpke::Kem>::PrivateKey;
type HpkePublicKey = <X25519HkdfSha256 as hpke::Kem>::PublicKey;

/// A member's per-boot channel key pair (HPKE `DHKEM(X25519, HKDF-SHA256)`). The private half
/// never leaves the enclave: it is zeroized on drop (the HPKE crate's X25519 secret is
/// zeroize-on-drop) and never printed.
pub struct MemberKey {
    private: HpkePrivateKey,
    public: HpkePublicKey,
    public_bytes: [u8; 32],
}

impl MemberKey {
    /// A fresh key pair: HPKE `DeriveKeyPair` of 32 bytes from `rng`.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, RandomError> {
        let mut ikm = Zeroizing::new([0u8; 32]);
        rng.fill(ikm.as_mut())?;
        let (private, public) = X25519HkdfSha256::derive_keypair(ikm.as_ref());
        let public_bytes = public_key_bytes(&public)
            .ok_or_else(|| RandomError("X25519 public key is not 32 bytes".into()))?;
        Ok(Self { private, public, public_bytes })
    }

    /// The public half, as carried in a [`MemberCard`] and bound by [`member_binding`].
    pub fn public(&self) -> &[u8; 32] {
        &self.public_bytes
    }

    /// The `user_data` this member's document must carry, given its enclave id.
    pub fn binding(&self, enclave_id: &EnclaveId) -> [u8; 32] {
        member_binding(enclave_id, &self.public_bytes)
    }

    pub(crate) fn hpke_private(&self) -> &HpkePrivateKey {
        &self.private
    }

    pub(crate) fn hpke_public(&self) -> &HpkePublicKey {
        &self.public
    }
}

impl fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberKey")
            .field("public", &hex::encode(self.public_bytes))
            .field("private", &"<redacted>")
            .finish()
    }
}

fn public_key_bytes(public: &HpkePublicKey) -> Option<[u8; 32]> {
    public.to_bytes().as_slice().try_into().ok()
}

/// An X25519 public key in HPKE form (any 32 bytes are accepted; a low-order point makes every
/// later DH fail, which HPKE checks).
pub(crate) fn hpke_public_key(bytes: &[u8; 32]) -> Option<HpkePublicKey> {
    HpkePublicKey::from_bytes(bytes).ok()
}

/// `SHA-256("signer/cluster/member/v1" ‖ enclave_id[16] ‖ channel_public[32])`: the `user_data`
/// of a member's document.
pub fn member_binding(enclave_id: &EnclaveId, channel_public: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(MEMBER_BINDING_DOMAIN)
        .chain_update(enclave_id.0)
        .chain_update(channel_public)
        .finalize()
        .into()
}

/// The first 8 bytes of an enclave id, little-endian: its Raft node id.
pub fn node_id(enclave_id: &EnclaveId) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = enclave_id.0;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

/// What a member presents to join or talk to a cluster (module docs for the encoding).
#[derive(Clone, PartialEq, Eq)]
pub struct MemberCard {
    pub enclave_id: EnclaveId,
    pub channel_public: [u8; 32],
    /// The member's attestation document (`user_data` = [`member_binding`]).
    pub document: Vec<u8>,
}

impl fmt::Debug for MemberCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemberCard")
            .field("enclave_id", &self.enclave_id)
            .field("channel_public", &hex::encode(self.channel_public))
            .field("document_len", &self.document.len())
            .finish()
    }
}

impl MemberCard {
    /// The member's Raft node id ([`node_id`]).
    pub fn node_id(&self) -> u64 {
        node_id(&self.enclave_id)
    }

    /// The canonical encoding (module docs).
    pub fn encode(&self) -> Result<Vec<u8>, MemberError> {
        let len = self.document.len();
        let doc_len = u32::try_from(len)
            .ok()
            .filter(|_| (1..=MAX_DOCUMENT_LEN).contains(&len))
            .ok_or(MemberError::DocumentLength { length: len, max: MAX_DOCUMENT_LEN })?;
        let mut out = Vec::with_capacity(CARD_HEADER_LEN + len);
        out.push(CARD_VERSION);
        out.extend_from_slice(&self.enclave_id.0);
        out.extend_from_slice(&self.channel_public);
        out.extend_from_slice(&doc_len.to_le_bytes());
        out.extend_from_slice(&self.document);
        Ok(out)
    }

    /// Parses the canonical encoding; anything else (other version, truncated, oversized,
    /// trailing bytes) is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, MemberError> {
        let length = || MemberError::CardLength {
            actual: bytes.len(),
            min: CARD_HEADER_LEN + 1,
            max: MAX_CARD_LEN,
        };
        if bytes.len() > MAX_CARD_LEN {
            return Err(length());
        }
        let (&version, rest) = bytes.split_first().ok_or_else(length)?;
        if version != CARD_VERSION {
            return Err(MemberError::CardVersion(version));
        }
        let (id, rest) = rest.split_first_chunk::<16>().ok_or_else(length)?;
        let (channel_public, rest) = rest.split_first_chunk::<32>().ok_or_else(length)?;
        let (doc_len, document) = rest.split_first_chunk::<4>().ok_or_else(length)?;
        if document.is_empty() {
            return Err(length());
        }
        let declared = usize::try_from(u32::from_le_bytes(*doc_len)).unwrap_or(usize::MAX);
        if declared != document.len() {
            return Err(MemberError::CardDocumentLength { declared, carried: document.len() });
        }
        Ok(Self {
            enclave_id: EnclaveId(*id),
            channel_public: *channel_public,
            document: document.to_vec(),
        })
    }
}

/// A member whose card verified: its id, channel key and document.
#[derive(Clone, Debug)]
pub struct VerifiedMember {
    pub enclave_id: EnclaveId,
    pub channel_public: [u8; 32],
    /// The verified document (its `public_key` is the member's RSA recipient key).
    pub document: VerifiedDocument,
}

impl VerifiedMember {
    /// The member's Raft node id ([`node_id`]).
    pub fn node_id(&self) -> u64 {
        node_id(&self.enclave_id)
    }
}

/// Why a member card, or a founder list, was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MemberError {
    #[error("member card is {actual} bytes; a card is {min}..={max} bytes")]
    CardLength { actual: usize, min: usize, max: usize },
    #[error("member card version {0}; this enclave reads version 1")]
    CardVersion(u8),
    #[error("member card declares a {declared}-byte document but carries {carried} bytes")]
    CardDocumentLength { declared: usize, carried: usize },
    #[error("a member document of {length} bytes cannot be carried; 1..={max} bytes")]
    DocumentLength { length: usize, max: usize },
    /// Parse, chain, signature, freshness, debug mode: the document itself.
    #[error("member document: {0}")]
    Document(#[from] VerifyError),
    #[error("the member's image (PCR0 {pcr0}) is none of the {trusted} trusted images")]
    UntrustedImage { pcr0: String, trusted: usize },
    #[error("the member's document carries no public key, so it names no enclave")]
    NoPublicKey,
    #[error(
        "the member card names enclave {card}, but its document's public key is enclave {attested}"
    )]
    EnclaveIdMismatch { card: EnclaveId, attested: EnclaveId },
    #[error(
        "the member's document does not bind its channel key: user_data is {actual}, the binding \
         of {enclave_id} and its channel key is {expected}"
    )]
    BindingMismatch { enclave_id: EnclaveId, expected: String, actual: String },
    #[error("a cluster has 1..={max} founders; {count} given")]
    FounderCount { count: usize, max: usize },
    #[error("founder {0} is listed more than once")]
    DuplicateFounder(EnclaveId),
}

/// Verifies a member card against fresh-document rules (module docs): chain valid at `now`,
/// document at most `max_age` old.
pub fn verify_member(
    card_bytes: &[u8],
    anchor: &TrustAnchor,
    trusted_images: &[Image],
    now: SystemTime,
    max_age: Duration,
) -> Result<VerifiedMember, MemberError> {
    verify_candidate(card_bytes, anchor, trusted_images, now, max_age)?.trusted(trusted_images)
}

/// [`verify_member`]'s checks, except that an image outside `trusted_images` is not refused but
/// told apart: such a member may join only once KMS vouches for its image (an upgrade,
/// `Enclave::upgrade_vouch`).
pub fn verify_candidate(
    card_bytes: &[u8],
    anchor: &TrustAnchor,
    trusted_images: &[Image],
    now: SystemTime,
    max_age: Duration,
) -> Result<Candidate, MemberError> {
    let card = MemberCard::decode(card_bytes)?;
    let policy = AttestationPolicy { max_age: Some(max_age), ..Default::default() };
    let verified = nitro_attestation::verify_with_policy(&card.document, anchor, &policy, now)?;
    let raw_document = card.document.clone();
    let member = check_binding(card, verified)?;
    Ok(Candidate::classify(member, raw_document, trusted_images))
}

/// Verifies the card of a long-running member (module docs): chain valid at the document's own
/// timestamp, which may not lie more than 60 s ahead of `now`; no maximum age.
pub fn verify_member_at_own_time(
    card_bytes: &[u8],
    anchor: &TrustAnchor,
    trusted_images: &[Image],
    now: SystemTime,
) -> Result<VerifiedMember, MemberError> {
    let card = MemberCard::decode(card_bytes)?;
    let document = AttestationDocument::parse(&card.document).map_err(VerifyError::from)?;
    let timestamp_ms = document.timestamp_ms;
    let now_ms = now.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0);
    if timestamp_ms > now_ms.saturating_add(millis(MAX_CLOCK_SKEW)) {
        let ahead_ms = timestamp_ms.saturating_sub(now_ms);
        return Err(VerifyError::from(PolicyError::FromTheFuture { timestamp_ms, ahead_ms }).into());
    }
    let at = UNIX_EPOCH + Duration::from_millis(timestamp_ms);
    let verified = nitro_attestation::verify_parsed(document, anchor, at)?;
    // The fresh path refuses debug mode through its policy; this one has no policy step.
    if verified.document.is_debug_mode() {
        return Err(VerifyError::from(PolicyError::DebugMode).into());
    }
    let member = check_binding(card, verified)?;
    Candidate::classify(member, Vec::new(), trusted_images).trusted(trusted_images)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn image_trusted(verified: &VerifiedDocument, trusted_images: &[Image]) -> bool {
    trusted_images
        .iter()
        .any(|image| nitro_attestation::image_matches(image, &verified.document.pcrs))
}

fn pcr0_hex(verified: &VerifiedDocument) -> String {
    verified.document.pcrs.get(&0).map(hex::encode).unwrap_or_else(|| "absent".into())
}

/// The member-specific checks, once the document is authentic (module docs): the document names
/// the card's enclave and binds its channel key.
fn check_binding(
    card: MemberCard,
    verified: VerifiedDocument,
) -> Result<VerifiedMember, MemberError> {
    let doc = &verified.document;
    let public_key = doc.public_key.as_deref().ok_or(MemberError::NoPublicKey)?;
    let attested = EnclaveId::from_recipient_key(public_key);
    if attested != card.enclave_id {
        return Err(MemberError::EnclaveIdMismatch { card: card.enclave_id, attested });
    }
    let expected = member_binding(&card.enclave_id, &card.channel_public);
    if doc.user_data.as_deref() != Some(expected.as_slice()) {
        return Err(MemberError::BindingMismatch {
            enclave_id: card.enclave_id,
            expected: hex::encode(expected),
            actual: doc.user_data.as_deref().map(hex::encode).unwrap_or_else(|| "none".into()),
        });
    }
    Ok(VerifiedMember {
        enclave_id: card.enclave_id,
        channel_public: card.channel_public,
        document: verified,
    })
}

/// An authentic member card, told apart by its image.
#[derive(Debug)]
pub enum Candidate {
    /// From one of the trusted images: a member like any other.
    Trusted(VerifiedMember),
    /// Authentic, fresh, not debug, key bound, but from an image this enclave was not built to
    /// trust. Only KMS can vouch for it (its key policy names the images that may decide), so
    /// the only way to a [`VerifiedMember`] is `Enclave::upgrade_vouch`.
    NewImage(NewImageMember),
}

impl Candidate {
    fn classify(member: VerifiedMember, raw_document: Vec<u8>, trusted: &[Image]) -> Self {
        if image_trusted(&member.document, trusted) {
            Self::Trusted(member)
        } else {
            Self::NewImage(NewImageMember { member, raw_document })
        }
    }

    /// The member, if its image is trusted; [`MemberError::UntrustedImage`] otherwise.
    pub fn trusted(self, trusted_images: &[Image]) -> Result<VerifiedMember, MemberError> {
        match self {
            Self::Trusted(member) => Ok(member),
            Self::NewImage(m) => {
                Err(MemberError::UntrustedImage { pcr0: m.pcr0(), trusted: trusted_images.len() })
            }
        }
    }
}

/// A member of an image outside the trusted set (see [`Candidate::NewImage`]).
#[derive(Debug)]
pub struct NewImageMember {
    member: VerifiedMember,
    raw_document: Vec<u8>,
}

impl NewImageMember {
    pub fn enclave_id(&self) -> EnclaveId {
        self.member.enclave_id
    }

    /// The channel key its card binds.
    pub fn channel_public(&self) -> [u8; 32] {
        self.member.channel_public
    }

    /// Its image's PCR0, hex.
    pub fn pcr0(&self) -> String {
        pcr0_hex(&self.member.document)
    }

    /// Its image: the image PCRs (`enclave::IMAGE_PCRS`) its document carries.
    pub fn image(&self) -> Image {
        crate::enclave::IMAGE_PCRS
            .iter()
            .filter_map(|i| self.member.document.document.pcrs.get(i).map(|v| (*i, v.clone())))
            .collect()
    }

    /// The card's attestation document, as sent (for KMS's `Recipient`).
    pub fn document(&self) -> &[u8] {
        &self.raw_document
    }

    /// Only once KMS vouched for the image (`Enclave::upgrade_vouch`).
    pub(crate) fn into_vouched(self) -> VerifiedMember {
        self.member
    }
}

/// `SHA-256("signer/cluster-id/v1" ‖ count u16 LE ‖ founders sorted ascending)[..16]`. The
/// order given does not matter; a founder listed twice is refused (a list that means one thing
/// has one id).
pub fn cluster_id(founders: &[EnclaveId]) -> Result<[u8; 16], MemberError> {
    let count = u16::try_from(founders.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or(MemberError::FounderCount { count: founders.len(), max: MAX_FOUNDERS })?;
    let mut sorted = founders.to_vec();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
        let duplicate = pair.first().copied().unwrap_or_default();
        return Err(MemberError::DuplicateFounder(duplicate));
    }
    let mut hash = Sha256::new().chain_update(CLUSTER_ID_DOMAIN).chain_update(count.to_le_bytes());
    for id in &sorted {
        hash.update(id.0);
    }
    let digest = hash.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsRandom;

    fn card() -> MemberCard {
        MemberCard {
            enclave_id: EnclaveId([7; 16]),
            channel_public: [9; 32],
            document: vec![1, 2, 3],
        }
    }

    #[test]
    fn card_round_trips_byte_by_byte() {
        let bytes = card().encode().unwrap();
        let mut expected = vec![1u8];
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&3u32.to_le_bytes());
        expected.extend_from_slice(&[1, 2, 3]);
        assert_eq!(bytes, expected);
        assert_eq!(MemberCard::decode(&bytes).unwrap(), card());
        assert_eq!(card().node_id(), u64::from_le_bytes([7; 8]));
    }

    #[test]
    fn card_refuses_other_versions_truncation_and_trailing_bytes() {
        let bytes = card().encode().unwrap();
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(MemberCard::decode(&other), Err(MemberError::CardVersion(2)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            MemberCard::decode(&trailing),
            Err(MemberError::CardDocumentLength { declared: 3, carried: 4 })
        );
        assert_eq!(
            MemberCard::decode(&bytes[..bytes.len() - 1]),
            Err(MemberError::CardDocumentLength { declared: 3, carried: 2 })
        );
        for len in 0..=CARD_HEADER_LEN {
            assert!(matches!(
                MemberCard::decode(&bytes[..len]),
                Err(MemberError::CardLength { .. })
            ));
        }
        let huge = vec![1u8; MAX_CARD_LEN + 1];
        assert!(matches!(MemberCard::decode(&huge), Err(MemberError::CardLength { .. })));
        let empty = MemberCard { document: vec![], ..card() };
        assert!(matches!(empty.encode(), Err(MemberError::DocumentLength { .. })));
        let oversized = MemberCard { document: vec![0; MAX_DOCUMENT_LEN + 1], ..card() };
        assert!(matches!(oversized.encode(), Err(MemberError::DocumentLength { .. })));
        let largest = MemberCard { document: vec![0; MAX_DOCUMENT_LEN], ..card() };
        assert_eq!(MemberCard::decode(&largest.encode().unwrap()).unwrap(), largest);
    }

    #[test]
    fn binding_is_the_documented_hash() {
        let id = EnclaveId([3; 16]);
        let expected: [u8; 32] =
            Sha256::digest([b"signer/cluster/member/v1".as_slice(), &[3; 16], &[4; 32]].concat())
                .into();
        assert_eq!(member_binding(&id, &[4; 32]), expected);
    }

    #[test]
    fn member_keys_are_fresh_and_redacted() {
        let a = MemberKey::generate(&OsRandom).unwrap();
        let b = MemberKey::generate(&OsRandom).unwrap();
        assert_ne!(a.public(), b.public());
        let text = format!("{a:?}");
        assert!(text.contains("<redacted>"));
        assert!(text.contains(&hex::encode(a.public())));
        let mut private = [0u8; 32];
        a.hpke_private().write_exact(&mut private);
        assert!(!text.contains(&hex::encode(private)));
        assert_eq!(a.binding(&EnclaveId([1; 16])), member_binding(&EnclaveId([1; 16]), a.public()));
    }

    #[test]
    fn cluster_id_is_order_free_and_refuses_duplicates() {
        let (a, b, c) = (EnclaveId([1; 16]), EnclaveId([2; 16]), EnclaveId([3; 16]));
        let id = cluster_id(&[c, a, b]).unwrap();
        assert_eq!(id, cluster_id(&[a, b, c]).unwrap());
        let digest = Sha256::digest(
            [b"signer/cluster-id/v1".as_slice(), &3u16.to_le_bytes(), &a.0, &b.0, &c.0].concat(),
        );
        assert_eq!(id.as_slice(), &digest[..16]);
        assert_ne!(id, cluster_id(&[a, b]).unwrap());
        assert_eq!(cluster_id(&[a, b, a]), Err(MemberError::DuplicateFounder(a)));
        assert!(matches!(cluster_id(&[]), Err(MemberError::FounderCount { count: 0, .. })));
    }
}
