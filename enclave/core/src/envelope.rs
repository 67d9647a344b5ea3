//! KMS `CiphertextForRecipient`: CMS EnvelopedData (RFC 5652) in BER with indefinite lengths.
//!
//! Accepted shape, and nothing else (SPEC §9):
//!
//! ```text
//! ContentInfo ::= SEQUENCE {                         -- usually indefinite length
//!   contentType id-envelopedData (1.2.840.113549.1.7.3),
//!   content [0] EXPLICIT EnvelopedData }
//! EnvelopedData ::= SEQUENCE {
//!   version 2,                                        -- no originatorInfo, no unprotectedAttrs
//!   recipientInfos SET SIZE (1) OF KeyTransRecipientInfo,
//!   encryptedContentInfo EncryptedContentInfo }
//! KeyTransRecipientInfo ::= SEQUENCE {
//!   version 2,
//!   rid [0] IMPLICIT OCTET STRING (SIZE 32),        -- SHA-256 of the recipient's SPKI DER
//!   keyEncryptionAlgorithm rsaesOaep { [0] sha256, [1] mgf1(sha256) },   -- no [2] pSource
//!   encryptedKey OCTET STRING }                       -- RSA-OAEP of a 32-byte AES key
//! EncryptedContentInfo ::= SEQUENCE {
//!   contentType id-data,
//!   contentEncryptionAlgorithm aes256-CBC { iv OCTET STRING (SIZE 16) },
//!   encryptedContent [0] IMPLICIT OCTET STRING }     -- primitive, or constructed chunks
//! ```
//!
//! Content is AES-256-CBC with PKCS#7 padding, at most [`MAX_CONTENT`] bytes. The envelope is
//! unauthenticated (anyone can encrypt to the recipient key), so every failure after the RSA
//! step is reported as the same opaque [`EnvelopeError::Decrypt`], and padding is checked in
//! constant time; callers must also treat the plaintext as untrusted until it opens an
//! authenticated record.

use std::fmt;

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq, ConstantTimeGreater};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::ber::{BerError, Element, Reader, TAG_SEQUENCE, TAG_SET};
use crate::secret::{Secret32, SecretBytes, SecureRandom, random_array, seeded_rng};

/// Largest encrypted content accepted.
pub const MAX_CONTENT: usize = 4096;

const OID_ENVELOPED_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const OID_DATA: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_RSAES_OAEP: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
const OID_MGF1: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
const OID_SHA256: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: [u8; 9] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] BerError),
    #[error("envelope is for recipient {actual}, this enclave's key is {expected}")]
    WrongRecipient { expected: String, actual: String },
    #[error("envelope does not decrypt with this enclave's key")]
    Decrypt,
    #[error("recipient key: {0}")]
    Key(String),
}

fn unexpected(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Malformed(BerError::Unexpected(msg.into()))
}

/// The enclave's RSA recipient key pair: generated at boot, never exported. Its SPKI goes into
/// the attestation document's `public_key` so KMS can encrypt results to it.
pub struct RecipientKey {
    private: RsaPrivateKey,
    spki_der: Vec<u8>,
    rid: [u8; 32],
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("spki_sha256", &hex::encode(self.rid))
            .finish_non_exhaustive()
    }
}

impl RecipientKey {
    /// Generates a fresh key of `bits` (2048 by default in the daemon).
    pub fn generate(rng: &dyn SecureRandom, bits: usize) -> Result<Self, EnvelopeError> {
        let mut rng = seeded_rng(rng).map_err(|e| EnvelopeError::Key(e.to_string()))?;
        let private =
            RsaPrivateKey::new(&mut rng, bits).map_err(|e| EnvelopeError::Key(e.to_string()))?;
        Self::from_private(private)
    }

    /// Loads a PKCS#8 PEM private key (tests and the published KMS vector).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, EnvelopeError> {
        let private =
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| EnvelopeError::Key(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, EnvelopeError> {
        let spki_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| EnvelopeError::Key(e.to_string()))?
            .as_bytes()
            .to_vec();
        let rid = Sha256::digest(&spki_der).into();
        Ok(Self { private, spki_der, rid })
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the SPKI DER: the `rid` KMS puts in the envelope.
    pub fn rid(&self) -> [u8; 32] {
        self.rid
    }
}

/// The parsed, still-encrypted parts of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEnvelope<'a> {
    pub rid: &'a [u8],
    pub encrypted_key: &'a [u8],
    pub iv: &'a [u8],
    pub ciphertext: Vec<u8>,
}

/// Parses an envelope without decrypting it.
pub fn parse(envelope: &[u8]) -> Result<ParsedEnvelope<'_>, EnvelopeError> {
    let top = Reader::new(envelope)?.single()?;
    expect_sequence(&top, "ContentInfo")?;
    let mut content_info = top.children(0)?;
    content_info.expect_oid(&OID_ENVELOPED_DATA, "ContentInfo.contentType")?;
    let explicit = content_info.next_element()?;
    if !explicit.is_context(0) || !explicit.constructed {
        return Err(unexpected("ContentInfo.content must be [0] EXPLICIT"));
    }
    content_info.finish()?;

    let mut wrapper = explicit.children(content_info.depth())?;
    let enveloped = wrapper.expect_universal(TAG_SEQUENCE, "EnvelopedData")?;
    wrapper.finish()?;
    let mut fields = enveloped.children(wrapper.depth())?;
    fields.expect_small_integer(2, "EnvelopedData.version")?;
    let recipients = fields.next_element()?;
    if !recipients.is_universal(TAG_SET) || !recipients.constructed {
        return Err(unexpected("EnvelopedData: expected recipientInfos SET (no originatorInfo)"));
    }
    let encrypted_content_info = fields.expect_universal(TAG_SEQUENCE, "EncryptedContentInfo")?;
    if !fields.is_empty() {
        return Err(unexpected("EnvelopedData: unprotectedAttrs are not accepted"));
    }

    let mut set = recipients.children(fields.depth())?;
    let ktri = set.expect_universal(TAG_SEQUENCE, "KeyTransRecipientInfo")?;
    if !set.is_empty() {
        return Err(unexpected("exactly one recipient is accepted"));
    }
    let mut k = ktri.children(set.depth())?;
    k.expect_small_integer(2, "KeyTransRecipientInfo.version")?;
    let rid = k.next_element()?;
    if !rid.is_context(0) || rid.constructed || rid.content.len() != 32 {
        return Err(unexpected("rid must be [0] subjectKeyIdentifier of 32 bytes"));
    }
    let algorithm = k.expect_universal(TAG_SEQUENCE, "keyEncryptionAlgorithm")?;
    check_oaep_sha256(&algorithm, k.depth())?;
    let encrypted_key = k.octet_string("encryptedKey")?;
    k.finish()?;

    let mut eci = encrypted_content_info.children(fields.depth())?;
    eci.expect_oid(&OID_DATA, "EncryptedContentInfo.contentType")?;
    let content_algorithm = eci.expect_universal(TAG_SEQUENCE, "contentEncryptionAlgorithm")?;
    let mut ca = content_algorithm.children(eci.depth())?;
    ca.expect_oid(&OID_AES256_CBC, "contentEncryptionAlgorithm")?;
    let iv = ca.octet_string("aes256-CBC IV")?;
    ca.finish()?;
    if iv.len() != 16 {
        return Err(unexpected(format!("IV is {} bytes; expected 16", iv.len())));
    }
    let content = eci.next_element()?;
    eci.finish()?;
    let ciphertext = encrypted_content(&content, eci.depth())?;
    if ciphertext.is_empty()
        || !ciphertext.len().is_multiple_of(16)
        || ciphertext.len() > MAX_CONTENT
    {
        return Err(unexpected(format!(
            "encrypted content is {} bytes; expected a non-zero multiple of 16 up to {MAX_CONTENT}",
            ciphertext.len()
        )));
    }
    Ok(ParsedEnvelope { rid: rid.content, encrypted_key, iv, ciphertext })
}

fn expect_sequence(e: &Element<'_>, what: &str) -> Result<(), EnvelopeError> {
    if e.is_universal(TAG_SEQUENCE) && e.constructed {
        Ok(())
    } else {
        Err(unexpected(format!("{what} must be a SEQUENCE")))
    }
}

/// `[0]` primitive, or `[0]` constructed holding primitive OCTET STRING chunks.
fn encrypted_content(content: &Element<'_>, depth: usize) -> Result<Vec<u8>, EnvelopeError> {
    if !content.is_context(0) {
        return Err(unexpected("encryptedContent must be [0]"));
    }
    if !content.constructed {
        return Ok(content.content.to_vec());
    }
    let mut chunks = content.children(depth)?;
    let mut out = Vec::new();
    while !chunks.is_empty() {
        out.extend_from_slice(chunks.octet_string("encryptedContent chunk")?);
        if out.len() > MAX_CONTENT {
            return Err(unexpected("encrypted content too large"));
        }
    }
    Ok(out)
}

/// `AlgorithmIdentifier { hashAlgorithm sha256 }` with NULL or absent parameters.
fn expect_sha256_algorithm(reader: &mut Reader<'_>, what: &str) -> Result<(), EnvelopeError> {
    let alg = reader.expect_universal(TAG_SEQUENCE, what)?;
    let mut a = alg.children(reader.depth())?;
    a.expect_oid(&OID_SHA256, what)?;
    if !a.is_empty() {
        a.expect_null(what)?;
    }
    a.finish()?;
    Ok(())
}

fn check_oaep_sha256(algorithm: &Element<'_>, depth: usize) -> Result<(), EnvelopeError> {
    let mut a = algorithm.children(depth)?;
    a.expect_oid(&OID_RSAES_OAEP, "keyEncryptionAlgorithm")?;
    let params = a.expect_universal(TAG_SEQUENCE, "RSAES-OAEP-params")?;
    a.finish()?;
    let mut p = params.children(a.depth())?;
    let hash = p.next_element()?;
    if !hash.is_context(0) || !hash.constructed {
        return Err(unexpected("RSAES-OAEP-params: hashFunc [0] sha256 is required"));
    }
    let mut h = hash.children(p.depth())?;
    expect_sha256_algorithm(&mut h, "OAEP hashFunc")?;
    h.finish()?;
    let mgf = p.next_element()?;
    if !mgf.is_context(1) || !mgf.constructed {
        return Err(unexpected("RSAES-OAEP-params: maskGenFunc [1] mgf1(sha256) is required"));
    }
    if !p.is_empty() {
        return Err(unexpected("RSAES-OAEP-params: pSourceFunc is not accepted"));
    }
    let mut m = mgf.children(p.depth())?;
    let mgf_alg = m.expect_universal(TAG_SEQUENCE, "maskGenFunc")?;
    m.finish()?;
    let mut ma = mgf_alg.children(m.depth())?;
    ma.expect_oid(&OID_MGF1, "maskGenFunc")?;
    expect_sha256_algorithm(&mut ma, "MGF1 hash")?;
    ma.finish()?;
    Ok(())
}

/// Opens an envelope addressed to `key`; returns the plaintext (the caller's 32-byte data key).
pub fn open(envelope: &[u8], key: &RecipientKey) -> Result<SecretBytes, EnvelopeError> {
    let parsed = parse(envelope)?;
    if parsed.rid != key.rid {
        return Err(EnvelopeError::WrongRecipient {
            expected: hex::encode(key.rid),
            actual: hex::encode(parsed.rid),
        });
    }
    let cek = Zeroizing::new(
        key.private
            .decrypt(Oaep::<Sha256>::new(), parsed.encrypted_key)
            .map_err(|_| EnvelopeError::Decrypt)?,
    );
    let cek: &[u8; 32] = cek.as_slice().try_into().map_err(|_| EnvelopeError::Decrypt)?;
    decrypt_content(parsed, cek)
}

/// Content length of KMS's envelope around a 32-byte key: two key blocks and one full block of
/// PKCS#7 padding.
pub const KEY_CONTENT_LEN: usize = 48;

/// Unwraps the 32-byte key a record needs from a parsed envelope already known to be addressed
/// to `key`, with one constant flow whatever fails.
///
/// RSA-OAEP, the content length (exactly [`KEY_CONTENT_LEN`]), AES-256-CBC and the padding (the
/// last block must be sixteen `0x10` bytes, compared in constant time) all run every time; a
/// failure at any step only clears the returned [`Choice`] (the key bytes are then whatever
/// decrypted, under zeros for a failed RSA step), so the caller goes on to the record's AEAD
/// with a key either way, ignores a success it opened with a cleared `Choice`, and reports one
/// answer. This is what
/// denies an attacker the CBC padding oracle: no step reveals on its own whether it passed.
///
/// The RSA step is blinded with `rng` (defence in depth: the private-key operation's timing is
/// then independent of the ciphertext the attacker chose).
pub fn unwrap_key32<R: rsa::rand_core::CryptoRng + ?Sized>(
    parsed: &ParsedEnvelope<'_>,
    key: &RecipientKey,
    rng: &mut R,
) -> (Secret32, Choice) {
    let mut cek = Zeroizing::new([0u8; 32]);
    let rsa_ok = match key.private.decrypt_blinded(rng, Oaep::<Sha256>::new(), parsed.encrypted_key)
    {
        Ok(plain) => {
            let plain = Zeroizing::new(plain);
            let fits = plain.len() == 32;
            if let (true, Some(bytes)) = (fits, plain.get(..32)) {
                cek.copy_from_slice(bytes);
            }
            Choice::from(u8::from(fits))
        }
        Err(_) => Choice::from(0),
    };
    let length_ok = Choice::from(u8::from(parsed.ciphertext.len() == KEY_CONTENT_LEN));
    let mut content = Zeroizing::new([0u8; KEY_CONTENT_LEN]);
    for (dst, src) in content.iter_mut().zip(parsed.ciphertext.iter()) {
        *dst = *src;
    }
    let mut iv = [0u8; 16];
    for (dst, src) in iv.iter_mut().zip(parsed.iv.iter()) {
        *dst = *src;
    }
    // Decrypting a fixed-size buffer with NoPadding cannot fail.
    let _ = cbc::Decryptor::<Aes256>::new((&*cek).into(), (&iv).into())
        .decrypt_padded::<NoPadding>(content.as_mut_slice());
    let (key_bytes, padding) = content.split_at(32);
    let padding_ok = padding.ct_eq(&[16u8; 16]);
    let mut out = [0u8; 32];
    out.copy_from_slice(key_bytes);
    (Secret32::new(out), rsa_ok & length_ok & padding_ok)
}

/// The symmetric half of [`open`]: AES-256-CBC with the unwrapped content key, then PKCS#7.
pub fn decrypt_content(
    parsed: ParsedEnvelope<'_>,
    cek: &[u8; 32],
) -> Result<SecretBytes, EnvelopeError> {
    let iv: &[u8; 16] = parsed.iv.try_into().map_err(|_| EnvelopeError::Decrypt)?;
    let mut buf = Zeroizing::new(parsed.ciphertext);
    cbc::Decryptor::<Aes256>::new(cek.into(), iv.into())
        .decrypt_padded::<NoPadding>(&mut buf)
        .map_err(|_| EnvelopeError::Decrypt)?;
    let len = pkcs7_unpadded_len(&buf).ok_or(EnvelopeError::Decrypt)?;
    buf.truncate(len);
    Ok(buf)
}

/// Length without PKCS#7 padding; the final block is examined in constant time.
fn pkcs7_unpadded_len(buf: &[u8]) -> Option<usize> {
    let n = buf.len();
    let block = buf.get(n.checked_sub(16)?..)?;
    let pad = *block.last()?;
    let mut good = pad.ct_gt(&0) & (!pad.ct_gt(&16));
    for (i, b) in block.iter().enumerate() {
        // Byte i is padding when i >= 16 - pad.
        let in_pad = (i as u16 + u16::from(pad)).ct_gt(&15);
        good &= !in_pad | b.ct_eq(&pad);
    }
    if bool::from(good) { Some(n - usize::from(pad)) } else { None }
}

/// How the producer encodes `encryptedContent` (KMS has been seen using both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentForm {
    /// `[0]` constructed (indefinite) holding OCTET STRING chunks, as in the published vector.
    Chunked,
    /// `[0]` primitive.
    Primitive,
}

/// Produces an envelope of KMS's exact shape (for the KMS emulator and tests).
pub fn seal(
    plaintext: &[u8],
    recipient_spki_der: &[u8],
    rng: &dyn SecureRandom,
    form: ContentForm,
) -> Result<Vec<u8>, EnvelopeError> {
    let public = RsaPublicKey::from_public_key_der(recipient_spki_der)
        .map_err(|e| EnvelopeError::Key(e.to_string()))?;
    let cek =
        Zeroizing::new(random_array::<32>(rng).map_err(|e| EnvelopeError::Key(e.to_string()))?);
    let iv: [u8; 16] = random_array(rng).map_err(|e| EnvelopeError::Key(e.to_string()))?;
    let pad = 16 - plaintext.len() % 16;
    let mut content = Zeroizing::new(Vec::with_capacity(plaintext.len() + pad));
    content.extend_from_slice(plaintext);
    content.extend(std::iter::repeat_n(pad as u8, pad));
    cbc::Encryptor::<Aes256>::new((&*cek).into(), (&iv).into())
        .encrypt_padded::<NoPadding>(&mut content, plaintext.len() + pad)
        .map_err(|_| EnvelopeError::Key("CBC encryption failed".into()))?;
    let mut oaep_rng = seeded_rng(rng).map_err(|e| EnvelopeError::Key(e.to_string()))?;
    let encrypted_key = public
        .encrypt(&mut oaep_rng, Oaep::<Sha256>::new(), cek.as_slice())
        .map_err(|e| EnvelopeError::Key(e.to_string()))?;
    let rid: [u8; 32] = Sha256::digest(recipient_spki_der).into();
    Ok(encode(
        &EnvelopeParts { rid: &rid, encrypted_key: &encrypted_key, iv: &iv, content: &content },
        form,
    ))
}

/// The fields of an envelope, for [`encode`].
#[derive(Clone, Copy, Debug)]
pub struct EnvelopeParts<'a> {
    /// SHA-256 of the recipient's SPKI DER.
    pub rid: &'a [u8; 32],
    /// RSAES-OAEP-SHA-256 of the content-encryption key.
    pub encrypted_key: &'a [u8],
    pub iv: &'a [u8; 16],
    /// AES-256-CBC ciphertext.
    pub content: &'a [u8],
}

/// Encodes an envelope of KMS's exact BER shape around given fields (what [`seal`] produces; also
/// how tests build tampered envelopes).
pub fn encode(parts: &EnvelopeParts<'_>, form: ContentForm) -> Vec<u8> {
    let EnvelopeParts { rid, encrypted_key, iv, content } = *parts;
    let sha256_alg = der(0x30, &[der(0x06, &OID_SHA256), der(0x05, &[])].concat());
    let oaep_alg = der(
        0x30,
        &[
            der(0x06, &OID_RSAES_OAEP),
            der(
                0x30,
                &[
                    der(0xa0, &sha256_alg),
                    der(0xa1, &der(0x30, &[der(0x06, &OID_MGF1), sha256_alg.clone()].concat())),
                ]
                .concat(),
            ),
        ]
        .concat(),
    );
    let ktri =
        der(0x30, &[der(0x02, &[2]), der(0x80, rid), oaep_alg, der(0x04, encrypted_key)].concat());
    let encrypted_content = match form {
        ContentForm::Chunked => indefinite(0xa0, &der(0x04, content)),
        ContentForm::Primitive => der(0x80, content),
    };
    let eci = indefinite(
        0x30,
        &[
            der(0x06, &OID_DATA),
            der(0x30, &[der(0x06, &OID_AES256_CBC), der(0x04, iv)].concat()),
            encrypted_content,
        ]
        .concat(),
    );
    let enveloped = indefinite(0x30, &[der(0x02, &[2]), der(0x31, &ktri), eci].concat());
    indefinite(0x30, &[der(0x06, &OID_ENVELOPED_DATA), indefinite(0xa0, &enveloped)].concat())
}

/// A definite-length element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// An indefinite-length constructed element.
fn indefinite(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, 0x80];
    out.extend_from_slice(content);
    out.extend_from_slice(&[0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsRandom;

    fn kms_vector() -> (Vec<u8>, RecipientKey) {
        let envelope = testkit::read_vector("kms/ciphertext_for_recipient.ber");
        let pem = String::from_utf8(testkit::read_vector("kms/recipient_key.pem")).unwrap();
        (envelope, RecipientKey::from_pkcs8_pem(&pem).unwrap())
    }

    #[test]
    fn real_kms_envelope_decrypts_to_hello_world() {
        let (envelope, key) = kms_vector();
        assert_eq!(key.spki_der(), testkit::read_vector("kms/recipient_spki.der").as_slice());
        assert_eq!(
            hex::encode(key.rid()),
            "fb09e9af2940ddcf0d2bbf6358c983af46fc5fdcedbca251d54ceab4d069cd89"
        );
        let plaintext = open(&envelope, &key).unwrap();
        assert_eq!(plaintext.as_slice(), b"Hello, World");
    }

    #[test]
    fn real_envelope_rewritten_with_primitive_content_decrypts() {
        // KMS has also been seen sending `80 LL <ciphertext>`: rebuild the vector that way.
        let (envelope, key) = kms_vector();
        let parsed = parse(&envelope).unwrap();
        let chunked = indefinite(0xa0, &der(0x04, &parsed.ciphertext));
        let pos = envelope.windows(chunked.len()).position(|w| w == chunked).unwrap();
        let mut primitive = envelope[..pos].to_vec();
        primitive.extend_from_slice(&der(0x80, &parsed.ciphertext));
        primitive.extend_from_slice(&envelope[pos + chunked.len()..]);
        assert_eq!(open(&primitive, &key).unwrap().as_slice(), b"Hello, World");
    }

    #[test]
    fn producer_matches_kms_shape_and_round_trips() {
        let (real, _) = kms_vector();
        let key = RecipientKey::generate(&OsRandom, 2048).unwrap();
        for form in [ContentForm::Chunked, ContentForm::Primitive] {
            let sealed = seal(&[7u8; 32], key.spki_der(), &OsRandom, form).unwrap();
            assert_eq!(open(&sealed, &key).unwrap().as_slice(), &[7u8; 32]);
            // Same prefix structure as the real response up to the recipient identifier.
            assert_eq!(sealed[..31], real[..31]);
        }
        let sealed = seal(b"", key.spki_der(), &OsRandom, ContentForm::Chunked).unwrap();
        assert!(open(&sealed, &key).unwrap().is_empty());
    }

    #[test]
    fn wrong_recipient_and_tampering_fail() {
        let (envelope, key) = kms_vector();
        let other = RecipientKey::generate(&OsRandom, 2048).unwrap();
        assert!(matches!(open(&envelope, &other), Err(EnvelopeError::WrongRecipient { .. })));

        let parsed = parse(&envelope).unwrap();
        let ek_pos = envelope
            .windows(parsed.encrypted_key.len())
            .position(|w| w == parsed.encrypted_key)
            .unwrap();
        let mut bad_key = envelope.clone();
        bad_key[ek_pos + 100] ^= 1;
        assert_eq!(open(&bad_key, &key), Err(EnvelopeError::Decrypt));

        // Flipping the last ciphertext byte breaks the padding: same opaque error.
        let ct_pos =
            envelope.windows(parsed.ciphertext.len()).position(|w| w == parsed.ciphertext).unwrap();
        let mut bad_ct = envelope.clone();
        bad_ct[ct_pos + parsed.ciphertext.len() - 1] ^= 0x55;
        assert_eq!(open(&bad_ct, &key), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn structural_deviations_are_rejected() {
        let (envelope, key) = kms_vector();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let replace = |from: &[u8], to: &[u8]| {
            let pos = envelope.windows(from.len()).position(|w| w == from).unwrap();
            let mut e = envelope.clone();
            e.splice(pos..pos + from.len(), to.iter().copied());
            e
        };
        cases
            .push(("sha1 OAEP", replace(&OID_SHA256, &[0x2b, 0x0e, 0x03, 0x02, 0x1a, 0, 0, 0, 0])));
        cases.push((
            "aes128",
            replace(&OID_AES256_CBC, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02]),
        ));
        cases.push(("version 0", replace(&[0x02, 0x01, 0x02, 0x31], &[0x02, 0x01, 0x00, 0x31])));
        cases.push((
            "signed data",
            replace(&OID_ENVELOPED_DATA, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]),
        ));
        cases.push(("truncated", envelope[..envelope.len() - 3].to_vec()));
        cases.push(("trailing", [envelope.clone(), vec![0]].concat()));
        cases.push(("empty", vec![]));
        cases.push(("garbage", vec![0xff; 64]));
        for (name, bytes) in cases {
            let err = open(&bytes, &key).unwrap_err();
            assert!(matches!(err, EnvelopeError::Malformed(_)), "{name}: {err:?}");
        }
    }

    #[test]
    fn pkcs7_is_strict() {
        let mut block = [0u8; 32];
        block[31] = 1;
        assert_eq!(pkcs7_unpadded_len(&block), Some(31));
        block[16..].fill(16);
        assert_eq!(pkcs7_unpadded_len(&block), Some(16));
        block[20] = 15;
        assert_eq!(pkcs7_unpadded_len(&block), None);
        block[31] = 0;
        assert_eq!(pkcs7_unpadded_len(&block), None);
        block[31] = 17;
        assert_eq!(pkcs7_unpadded_len(&block), None);
        assert_eq!(pkcs7_unpadded_len(&[1u8; 15]), None);
    }

    #[test]
    fn debug_does_not_print_the_private_key() {
        let (_, key) = kms_vector();
        let shown = format!("{key:?}");
        assert!(shown.contains("spki_sha256") && !shown.contains("primes") && shown.len() < 200);
    }
}
