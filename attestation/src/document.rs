//! Parsing of a Nitro attestation document (no trust decisions are made here).
//!
//! Wire format (AWS Nitro Enclaves, RFC 9052 COSE_Sign1):
//!
//! ```text
//! COSE_Sign1 = [ protected: bstr .cbor {1: -35},   ; ES384, exactly this header
//!                unprotected: map,                  ; ignored (not signed)
//!                payload: bstr .cbor AttestationDoc,
//!                signature: bstr .size 96 ]         ; r ‖ s, 48 bytes each
//! optionally wrapped in tag 18.
//!
//! AttestationDoc = {            ; definite- or indefinite-length map, text keys
//!   "module_id":  tstr (non-empty),
//!   "digest":     "SHA384",
//!   "timestamp":  uint (ms since the Unix epoch),
//!   "pcrs":       { 1*32 (uint 0..31 => bstr .size (32 / 48 / 64)) },
//!   "certificate": bstr (DER X.509, the signing leaf),
//!   "cabundle":   [ + bstr ]    ; [root, intermediates…], root first
//!   ? "public_key": bstr .size (0..1024) / null,
//!   ? "user_data":  bstr .size (0..1024) / null,
//!   ? "nonce":      bstr .size (0..1024) / null,
//! }
//! ```
//!
//! Limits and strictness: the whole document is at most [`MAX_DOCUMENT_LEN`] bytes; duplicate map
//! keys anywhere we read and trailing bytes after the COSE array or inside the payload are
//! rejected. Unknown payload keys are ignored (they are covered by the signature and carry no
//! meaning to us). The payload bytes are kept exactly as received: the signature is checked over
//! them, never over a re-encoding (real documents use indefinite-length maps).

use std::collections::BTreeMap;

use ciborium::Value;

use crate::error::ParseError;

/// Upper bound on an encoded document. Real documents are about 4.5 KiB; the largest legal one
/// (three 1 KiB optional fields, 32 PCRs of 64 bytes, a long chain) stays well under this.
pub const MAX_DOCUMENT_LEN: usize = 32 * 1024;
/// Upper bound on each of `public_key`, `user_data` and `nonce`.
pub const MAX_OPTIONAL_FIELD_LEN: usize = 1024;
/// The only protected header a Nitro document may carry: `{1: -35}` (alg = ES384).
pub const ES384_PROTECTED_HEADER: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];
/// Length of an ES384 signature, `r ‖ s`.
pub const ES384_SIGNATURE_LEN: usize = 96;
/// Valid PCR value lengths (SHA-256, SHA-384, SHA-512 banks).
pub const PCR_LENGTHS: [usize; 3] = [32, 48, 64];
/// Highest PCR index a document may carry.
pub const MAX_PCR_INDEX: u8 = 31;

const COSE_SIGN1_TAG: u64 = 18;

/// PCR index → value, in index order.
pub type Pcrs = BTreeMap<u8, Vec<u8>>;

/// The four parts of a COSE_Sign1 structure, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseSign1 {
    /// The protected header bytes (always [`ES384_PROTECTED_HEADER`] after parsing).
    pub protected: Vec<u8>,
    /// The payload bytes exactly as received; the signature covers these.
    pub payload: Vec<u8>,
    /// `r ‖ s`.
    pub signature: [u8; ES384_SIGNATURE_LEN],
}

impl CoseSign1 {
    /// The `Sig_structure` of RFC 9052 §4.4 for a COSE_Sign1 without external AAD:
    /// `["Signature1", protected, h'', payload]`, which is what the ES384 signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + self.protected.len() + 32);
        out.push(0x84); // array(4)
        push_header(&mut out, 3, b"Signature1".len() as u64);
        out.extend_from_slice(b"Signature1");
        push_header(&mut out, 2, self.protected.len() as u64);
        out.extend_from_slice(&self.protected);
        push_header(&mut out, 2, 0);
        push_header(&mut out, 2, self.payload.len() as u64);
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Appends a definite-length CBOR header of the given major type.
pub(crate) fn push_header(out: &mut Vec<u8>, major: u8, len: u64) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, len as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// A parsed (not yet verified) attestation document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDocument {
    /// The COSE envelope, kept for signature verification.
    pub cose: CoseSign1,
    /// Enclave module id, e.g. `i-0de38b2b6853cc9e8-enc0193685e7fee7d85`.
    pub module_id: String,
    /// Milliseconds since the Unix epoch when the NSM produced the document.
    pub timestamp_ms: u64,
    /// Platform configuration registers.
    pub pcrs: Pcrs,
    /// DER of the leaf certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER certificates, root first: `[root, intermediate…]`.
    pub cabundle: Vec<Vec<u8>>,
    /// `None` when absent or CBOR null; `Some(empty)` is legal and distinct.
    pub public_key: Option<Vec<u8>>,
    /// See [`AttestationDocument::public_key`].
    pub user_data: Option<Vec<u8>>,
    /// See [`AttestationDocument::public_key`].
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// Parses a document from raw CBOR bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if bytes.len() > MAX_DOCUMENT_LEN {
            return Err(ParseError::TooLarge { limit: MAX_DOCUMENT_LEN, actual: bytes.len() });
        }
        let top = decode_exact(bytes, "COSE_Sign1")?;
        let top = match top {
            Value::Tag(COSE_SIGN1_TAG, inner) => *inner,
            Value::Tag(tag, _) => return Err(ParseError::UnexpectedTag(tag)),
            other => other,
        };
        let Value::Array(items) = top else {
            return Err(ParseError::Malformed("COSE_Sign1 is not an array".into()));
        };
        let [protected, unprotected, payload, signature]: [Value; 4] =
            items.try_into().map_err(|items: Vec<Value>| {
                ParseError::Malformed(format!(
                    "COSE_Sign1 has {} elements, expected 4",
                    items.len()
                ))
            })?;

        let protected = expect_bytes(protected, "protected header")?;
        if protected != ES384_PROTECTED_HEADER {
            return Err(ParseError::ProtectedHeader {
                expected: hex::encode(ES384_PROTECTED_HEADER),
                actual: hex::encode(&protected),
            });
        }
        let Value::Map(unprotected) = unprotected else {
            return Err(ParseError::Malformed("unprotected header is not a map".into()));
        };
        reject_duplicate_keys(&unprotected, "unprotected header")?;
        let payload = match payload {
            Value::Bytes(bytes) => bytes,
            Value::Null => return Err(ParseError::Malformed("detached payload".into())),
            _ => return Err(ParseError::Malformed("payload is not a byte string".into())),
        };
        let signature = expect_bytes(signature, "signature")?;
        let signature: [u8; ES384_SIGNATURE_LEN] =
            signature.as_slice().try_into().map_err(|_| ParseError::FieldLength {
                field: "signature",
                expected: "96",
                actual: signature.len(),
            })?;

        let fields = parse_payload(&payload)?;
        Ok(Self {
            cose: CoseSign1 { protected, payload, signature },
            module_id: fields.module_id,
            timestamp_ms: fields.timestamp_ms,
            pcrs: fields.pcrs,
            certificate: fields.certificate,
            cabundle: fields.cabundle,
            public_key: fields.public_key,
            user_data: fields.user_data,
            nonce: fields.nonce,
        })
    }

    /// True when PCR0, PCR1 and PCR2 are all zero (or absent): the enclave runs in debug mode and
    /// its measurements mean nothing.
    pub fn is_debug_mode(&self) -> bool {
        (0u8..=2).all(|i| self.pcrs.get(&i).is_none_or(|v| v.iter().all(|b| *b == 0)))
    }
}

struct PayloadFields {
    module_id: String,
    timestamp_ms: u64,
    pcrs: Pcrs,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    public_key: Option<Vec<u8>>,
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

fn parse_payload(payload: &[u8]) -> Result<PayloadFields, ParseError> {
    let Value::Map(entries) = decode_exact(payload, "payload")? else {
        return Err(ParseError::Malformed("payload is not a map".into()));
    };
    reject_duplicate_keys(&entries, "payload")?;

    let mut module_id = None;
    let mut digest = None;
    let mut timestamp = None;
    let mut pcrs = None;
    let mut certificate = None;
    let mut cabundle = None;
    let mut public_key = None;
    let mut user_data = None;
    let mut nonce = None;

    for (key, value) in entries {
        let Value::Text(key) = key else {
            return Err(ParseError::Malformed("payload key is not a text string".into()));
        };
        match key.as_str() {
            "module_id" => module_id = Some(expect_text(value, "module_id")?),
            "digest" => digest = Some(expect_text(value, "digest")?),
            "timestamp" => timestamp = Some(expect_uint(value, "timestamp")?),
            "pcrs" => pcrs = Some(parse_pcrs(value)?),
            "certificate" => certificate = Some(expect_bytes(value, "certificate")?),
            "cabundle" => cabundle = Some(parse_cabundle(value)?),
            "public_key" => public_key = Some(optional_bytes(value, "public_key")?),
            "user_data" => user_data = Some(optional_bytes(value, "user_data")?),
            "nonce" => nonce = Some(optional_bytes(value, "nonce")?),
            _ => {}
        }
    }

    let module_id = module_id.ok_or(ParseError::MissingField("module_id"))?;
    if module_id.is_empty() {
        return Err(ParseError::Malformed("module_id is empty".into()));
    }
    let digest = digest.ok_or(ParseError::MissingField("digest"))?;
    if digest != "SHA384" {
        return Err(ParseError::Digest(digest));
    }
    let certificate = certificate.ok_or(ParseError::MissingField("certificate"))?;
    if certificate.is_empty() {
        return Err(ParseError::Malformed("certificate is empty".into()));
    }
    Ok(PayloadFields {
        module_id,
        timestamp_ms: timestamp.ok_or(ParseError::MissingField("timestamp"))?,
        pcrs: pcrs.ok_or(ParseError::MissingField("pcrs"))?,
        certificate,
        cabundle: cabundle.ok_or(ParseError::MissingField("cabundle"))?,
        public_key: public_key.flatten(),
        user_data: user_data.flatten(),
        nonce: nonce.flatten(),
    })
}

fn parse_pcrs(value: Value) -> Result<Pcrs, ParseError> {
    let Value::Map(entries) = value else {
        return Err(ParseError::Malformed("pcrs is not a map".into()));
    };
    if entries.is_empty() || entries.len() > usize::from(MAX_PCR_INDEX) + 1 {
        return Err(ParseError::FieldLength {
            field: "pcrs",
            expected: "1..=32 entries",
            actual: entries.len(),
        });
    }
    let mut pcrs = Pcrs::new();
    for (key, value) in entries {
        let index = expect_uint(key, "pcr index")?;
        let index = u8::try_from(index)
            .ok()
            .filter(|i| *i <= MAX_PCR_INDEX)
            .ok_or(ParseError::PcrIndex(index))?;
        let value = expect_bytes(value, "pcr value")?;
        if !PCR_LENGTHS.contains(&value.len()) {
            return Err(ParseError::FieldLength {
                field: "pcr value",
                expected: "32, 48 or 64",
                actual: value.len(),
            });
        }
        if pcrs.insert(index, value).is_some() {
            return Err(ParseError::DuplicateKey { map: "pcrs", key: index.to_string() });
        }
    }
    Ok(pcrs)
}

fn parse_cabundle(value: Value) -> Result<Vec<Vec<u8>>, ParseError> {
    let Value::Array(items) = value else {
        return Err(ParseError::Malformed("cabundle is not an array".into()));
    };
    if items.is_empty() {
        return Err(ParseError::Malformed("cabundle is empty".into()));
    }
    items
        .into_iter()
        .map(|item| {
            let der = expect_bytes(item, "cabundle entry")?;
            if der.is_empty() {
                return Err(ParseError::Malformed("cabundle entry is empty".into()));
            }
            Ok(der)
        })
        .collect()
}

/// Decodes exactly one CBOR item, rejecting trailing bytes.
fn decode_exact(bytes: &[u8], what: &'static str) -> Result<Value, ParseError> {
    let mut rest = bytes;
    let value: Value = ciborium::from_reader(&mut rest)
        .map_err(|e| ParseError::Cbor { what, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(ParseError::TrailingBytes { what, count: rest.len() });
    }
    Ok(value)
}

fn reject_duplicate_keys(entries: &[(Value, Value)], map: &'static str) -> Result<(), ParseError> {
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries.iter().skip(i + 1).any(|(other, _)| other == key) {
            return Err(ParseError::DuplicateKey { map, key: describe_key(key) });
        }
    }
    Ok(())
}

fn describe_key(key: &Value) -> String {
    match key {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i128::from(*i).to_string(),
        other => format!("{other:?}"),
    }
}

fn expect_bytes(value: Value, field: &'static str) -> Result<Vec<u8>, ParseError> {
    match value {
        Value::Bytes(b) => Ok(b),
        _ => Err(ParseError::FieldType { field, expected: "byte string" }),
    }
}

fn expect_text(value: Value, field: &'static str) -> Result<String, ParseError> {
    match value {
        Value::Text(t) => Ok(t),
        _ => Err(ParseError::FieldType { field, expected: "text string" }),
    }
}

fn expect_uint(value: Value, field: &'static str) -> Result<u64, ParseError> {
    match value {
        Value::Integer(i) => u64::try_from(i)
            .map_err(|_| ParseError::FieldType { field, expected: "unsigned integer" }),
        _ => Err(ParseError::FieldType { field, expected: "unsigned integer" }),
    }
}

fn optional_bytes(value: Value, field: &'static str) -> Result<Option<Vec<u8>>, ParseError> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) if b.len() <= MAX_OPTIONAL_FIELD_LEN => Ok(Some(b)),
        Value::Bytes(b) => {
            Err(ParseError::FieldLength { field, expected: "0..=1024", actual: b.len() })
        }
        _ => Err(ParseError::FieldType { field, expected: "byte string or null" }),
    }
}
