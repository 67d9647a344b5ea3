//! Verification of the real AWS-signed documents in `../shared/vectors/attestation/`, and of
//! tampered variants built from them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ciborium::Value;
use nitro_attestation::chain::AWS_NITRO_ROOT_G1_SHA256;
use nitro_attestation::error::{ChainError, ParseError, PolicyError, VerifyError};
use nitro_attestation::{AttestationDocument, AttestationPolicy, TrustAnchor, verify};
use sha2::{Digest, Sha256};
use testkit::{AttestationVector, attestation_vectors, read_vector, unhex};

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix as u64)
}

fn valid_vectors() -> Vec<AttestationVector> {
    attestation_vectors().into_iter().filter(|v| v.is_valid()).collect()
}

fn vector(prefix: &str) -> AttestationVector {
    attestation_vectors().into_iter().find(|v| v.file.starts_with(prefix)).expect("vector exists")
}

fn aws() -> TrustAnchor {
    TrustAnchor::aws_nitro_root_g1()
}

fn decode(bytes: &[u8]) -> Value {
    ciborium::from_reader(bytes).expect("decodes")
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("encodes");
    out
}

/// Applies `edit` to the decoded payload map and re-encodes the document (signature unchanged).
fn edit_payload(doc: &[u8], edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let Value::Array(mut cose) = decode(doc) else { panic!("COSE array") };
    let Value::Bytes(payload) = &cose[2] else { panic!("payload bytes") };
    let Value::Map(mut map) = decode(payload) else { panic!("payload map") };
    edit(&mut map);
    cose[2] = Value::Bytes(encode(&Value::Map(map)));
    encode(&Value::Array(cose))
}

fn field<'a>(map: &'a mut [(Value, Value)], name: &str) -> &'a mut Value {
    &mut map.iter_mut().find(|(k, _)| *k == Value::Text(name.into())).expect("field present").1
}

fn cabundle(map: &mut [(Value, Value)]) -> &mut Vec<Value> {
    match field(map, "cabundle") {
        Value::Array(items) => items,
        _ => panic!("cabundle array"),
    }
}

#[test]
fn embedded_root_is_the_published_aws_root() {
    let shared = read_vector("attestation/root.der");
    assert_eq!(aws().der(), shared.as_slice());
    assert_eq!(hex::encode(Sha256::digest(&shared)), AWS_NITRO_ROOT_G1_SHA256);
    assert_eq!(aws().sha256_hex(), AWS_NITRO_ROOT_G1_SHA256);
    let pem = read_vector("attestation/root.pem");
    assert_eq!(TrustAnchor::from_pem(&pem).expect("PEM parses"), aws());
}

#[test]
fn every_valid_document_verifies_inside_its_window_and_fails_one_second_outside() {
    let vectors = valid_vectors();
    assert!(vectors.len() >= 9, "expected the nine valid vectors, found {}", vectors.len());
    for v in vectors {
        let bytes = v.bytes();
        let from = v.chain_valid_from_unix.expect("window");
        let until = v.chain_valid_until_unix.expect("window");
        for t in [from, v.valid_at(), until] {
            verify(&bytes, &aws(), at(t)).unwrap_or_else(|e| panic!("{} at {t}: {e}", v.file));
        }
        match verify(&bytes, &aws(), at(from - 1)) {
            Err(VerifyError::Chain(ChainError::NotYetValid { .. })) => {}
            other => panic!("{} one second early: {other:?}", v.file),
        }
        match verify(&bytes, &aws(), at(until + 1)) {
            Err(VerifyError::Chain(ChainError::Expired { .. })) => {}
            other => panic!("{} one second late: {other:?}", v.file),
        }
    }
}

#[test]
fn parsed_fields_match_the_manifest() {
    for v in valid_vectors() {
        let doc = AttestationDocument::parse(&v.bytes()).expect("parses");
        assert_eq!(Some(doc.module_id.clone()), v.module_id, "{}", v.file);
        assert_eq!(Some(doc.timestamp_ms), v.timestamp_ms, "{}", v.file);
        for (index, value) in &doc.pcrs {
            let expected = v.pcrs_nonzero.get(&index.to_string());
            if value.iter().any(|b| *b != 0) {
                assert_eq!(Some(&hex::encode(value)), expected, "{} PCR{index}", v.file);
            } else {
                assert!(expected.is_none(), "{} PCR{index} should be zero", v.file);
            }
        }
        assert_eq!(doc.public_key.as_ref().map(hex::encode), v.public_key, "{}", v.file);
        assert_eq!(doc.user_data.as_ref().map(hex::encode), v.user_data, "{}", v.file);
        assert_eq!(doc.nonce.as_ref().map(hex::encode), v.nonce, "{}", v.file);
        assert_eq!(doc.is_debug_mode(), v.is_debug(), "{}", v.file);
        assert_eq!(doc.cabundle.first().map(Vec::as_slice), Some(aws().der()), "{}", v.file);
    }
}

#[test]
fn manifest_covers_indefinite_maps_and_high_s_signatures() {
    let vectors = valid_vectors();
    let indefinite = vectors
        .iter()
        .find(|v| v.payload_map_encoding.as_deref() == Some("indefinite"))
        .expect("an indefinite-length payload vector");
    let bytes = indefinite.bytes();
    let doc = AttestationDocument::parse(&bytes).expect("parses");
    assert_eq!(doc.cose.payload.first().copied(), Some(0xbf), "payload kept as received");
    verify(&bytes, &aws(), at(indefinite.valid_at())).expect("verifies over original bytes");
    assert!(vectors.iter().any(|v| v.signature_high_s == Some(true)));
}

#[test]
fn the_truncated_document_is_rejected_as_malformed() {
    let v = vector("INVALID_");
    assert!(!v.is_valid());
    match verify(&v.bytes(), &aws(), SystemTime::now()) {
        Err(VerifyError::Parse(ParseError::Cbor { .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn tag_18_wrapped_document_verifies() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&v.bytes());
    verify(&tagged, &aws(), at(v.valid_at())).expect("tagged COSE_Sign1 verifies");
    let mut other_tag = vec![0xd8, 0x62];
    other_tag.extend_from_slice(&v.bytes());
    assert!(matches!(AttestationDocument::parse(&other_tag), Err(ParseError::UnexpectedTag(98))));
}

#[test]
fn flipped_signature_byte_is_a_bad_signature() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut bytes = v.bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert_eq!(verify(&bytes, &aws(), at(v.valid_at())), Err(VerifyError::Signature));
}

#[test]
fn flipped_payload_byte_is_a_bad_signature() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut bytes = v.bytes();
    let module_id = v.module_id.clone().expect("module id");
    let pos = bytes
        .windows(module_id.len())
        .position(|w| w == module_id.as_bytes())
        .expect("module id in payload");
    bytes[pos] ^= 0x01; // 'i' -> 'h': still valid UTF-8, still parses
    let doc = AttestationDocument::parse(&bytes).expect("still parses");
    assert_ne!(doc.module_id, module_id);
    assert_eq!(verify(&bytes, &aws(), at(v.valid_at())), Err(VerifyError::Signature));
}

#[test]
fn changed_pcr_is_a_bad_signature() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut bytes = v.bytes();
    let pcr0 = unhex(&v.pcrs_nonzero["0"]);
    let pos = bytes.windows(pcr0.len()).position(|w| w == pcr0).expect("PCR0 in payload");
    bytes[pos + 10] ^= 0x80;
    let doc = AttestationDocument::parse(&bytes).expect("still parses");
    assert_ne!(doc.pcrs[&0], pcr0);
    assert_eq!(verify(&bytes, &aws(), at(v.valid_at())), Err(VerifyError::Signature));
}

#[test]
fn leaf_swapped_for_another_documents_leaf_is_rejected() {
    // (A leaf swapped within one instance's chain is covered with the sim CA in `sim.rs`, since no
    // two real documents of one instance have overlapping validity.)
    // Leaf of a document from another instance, checked while both are valid: its issuer is
    // not the next certificate in the bundle.
    let c = vector("evervault_cert_embedded_nondebug");
    let d = vector("evervault_cert_embedded_debug");
    let foreign_leaf = AttestationDocument::parse(&d.bytes()).expect("parses").certificate;
    let swapped = edit_payload(&c.bytes(), |map| {
        *field(map, "certificate") = Value::Bytes(foreign_leaf);
    });
    let when = c.chain_valid_from_unix.unwrap().max(d.chain_valid_from_unix.unwrap()) + 1;
    match verify(&swapped, &aws(), at(when)) {
        Err(VerifyError::Chain(ChainError::IssuerMismatch { .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn dropped_intermediate_breaks_the_chain() {
    let v = vector("base_nitro_validator_2024-11-30");
    for drop in 1..=3 {
        let bytes = edit_payload(&v.bytes(), |map| {
            cabundle(map).remove(drop);
        });
        match verify(&bytes, &aws(), at(v.valid_at())) {
            Err(VerifyError::Chain(ChainError::IssuerMismatch { .. })) => {}
            other => panic!("dropping cabundle[{drop}]: {other:?}"),
        }
    }
}

#[test]
fn lookalike_root_in_cabundle_is_untrusted() {
    let v = vector("base_nitro_validator_2024-11-30");
    let lookalike = lookalike_root();
    let bytes = edit_payload(&v.bytes(), |map| {
        cabundle(map)[0] = Value::Bytes(lookalike.clone());
    });
    match verify(&bytes, &aws(), at(v.valid_at())) {
        Err(VerifyError::Chain(ChainError::UntrustedRoot { expected, actual })) => {
            assert_eq!(expected, AWS_NITRO_ROOT_G1_SHA256);
            assert_eq!(actual, hex::encode(Sha256::digest(&lookalike)));
        }
        other => panic!("{other:?}"),
    }
    // Trusting the look-alike instead does not help either: the real intermediates do not chain
    // to its key.
    let fake_anchor = TrustAnchor::from_der(&lookalike).expect("anchor");
    match verify(&bytes, &fake_anchor, at(v.valid_at())) {
        Err(VerifyError::Chain(ChainError::LinkSignature { .. })) => {}
        other => panic!("{other:?}"),
    }
}

/// A self-signed P-384 certificate with exactly the AWS root's subject and extensions.
fn lookalike_root() -> Vec<u8> {
    use p384::ecdsa::signature::Signer;
    use p384::elliptic_curve::Generate;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose, PublicKeyData,
        SignatureAlgorithm, SigningKey,
    };
    struct Key(p384::ecdsa::SigningKey, Vec<u8>);
    impl PublicKeyData for Key {
        fn der_bytes(&self) -> &[u8] {
            &self.1
        }
        fn algorithm(&self) -> &'static SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P384_SHA384
        }
    }
    impl SigningKey for Key {
        fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
            let sig: p384::ecdsa::Signature = self.0.sign(msg);
            Ok(sig.to_der().as_bytes().to_vec())
        }
    }
    let sk = p384::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let key = Key(sk.clone(), sk.verifying_key().to_sec1_bytes().to_vec());
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CountryName, rcgen::DnValue::PrintableString("US".try_into().unwrap()));
    params.distinguished_name.push(DnType::OrganizationName, "Amazon");
    params.distinguished_name.push(DnType::OrganizationalUnitName, "AWS");
    params.distinguished_name.push(DnType::CommonName, "aws.nitro-enclaves");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2019, 10, 28);
    params.not_after = rcgen::date_time_ymd(2049, 10, 28);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42; 16]));
    params.self_signed(&key).expect("self-signed").der().to_vec()
}

#[test]
fn document_resigned_with_a_fresh_key_is_a_bad_signature() {
    use p384::ecdsa::signature::Signer;
    use p384::elliptic_curve::Generate;
    let v = vector("base_nitro_validator_2024-11-30");
    let doc = AttestationDocument::parse(&v.bytes()).expect("parses");
    let key = p384::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
    let sig: p384::ecdsa::Signature = key.sign(&doc.cose.signed_bytes());
    let Value::Array(mut cose) = decode(&v.bytes()) else { panic!() };
    cose[3] = Value::Bytes(sig.to_bytes().to_vec());
    assert_eq!(
        verify(&encode(&Value::Array(cose)), &aws(), at(v.valid_at())),
        Err(VerifyError::Signature)
    );
}

#[test]
fn duplicate_payload_keys_are_malformed() {
    let v = vector("base_nitro_validator_2024-11-30");
    for name in ["nonce", "pcrs", "module_id"] {
        let bytes = edit_payload(&v.bytes(), |map| {
            let dup =
                map.iter().find(|(k, _)| *k == Value::Text(name.into())).cloned().expect("present");
            map.push(dup);
        });
        match AttestationDocument::parse(&bytes) {
            Err(ParseError::DuplicateKey { map, key }) => {
                assert_eq!((map, key.as_str()), ("payload", name));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // A duplicate PCR index inside the PCR map.
    let bytes = edit_payload(&v.bytes(), |map| {
        if let Value::Map(pcrs) = field(map, "pcrs") {
            let first = pcrs[0].clone();
            pcrs.push(first);
        }
    });
    assert!(matches!(
        AttestationDocument::parse(&bytes),
        Err(ParseError::DuplicateKey { map: "payload", .. }
            | ParseError::DuplicateKey { map: "pcrs", .. })
    ));
}

#[test]
fn trailing_bytes_are_malformed() {
    let v = vector("base_nitro_validator_2024-11-30");
    let mut bytes = v.bytes();
    bytes.push(0x00);
    assert_eq!(
        AttestationDocument::parse(&bytes),
        Err(ParseError::TrailingBytes { what: "COSE_Sign1", count: 1 })
    );
    // Trailing bytes inside the payload byte string.
    let Value::Array(mut cose) = decode(&v.bytes()) else { panic!() };
    if let Value::Bytes(payload) = &mut cose[2] {
        payload.extend_from_slice(&[0xf6, 0xf6]);
    }
    assert_eq!(
        AttestationDocument::parse(&encode(&Value::Array(cose))),
        Err(ParseError::TrailingBytes { what: "payload", count: 2 })
    );
}

#[test]
fn structural_violations_are_malformed() {
    let v = vector("base_nitro_validator_2024-11-30");
    type Edit = Box<dyn Fn(&mut Vec<(Value, Value)>)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "pcr index 32",
            Box::new(|m| {
                if let Value::Map(p) = field(m, "pcrs") {
                    p[0].0 = Value::Integer(32.into());
                }
            }),
        ),
        (
            "pcr length 47",
            Box::new(|m| {
                if let Value::Map(p) = field(m, "pcrs") {
                    p[0].1 = Value::Bytes(vec![0; 47]);
                }
            }),
        ),
        ("digest SHA256", Box::new(|m| *field(m, "digest") = Value::Text("SHA256".into()))),
        ("empty module id", Box::new(|m| *field(m, "module_id") = Value::Text(String::new()))),
        (
            "missing timestamp",
            Box::new(|m| m.retain(|(k, _)| *k != Value::Text("timestamp".into()))),
        ),
        ("timestamp as text", Box::new(|m| *field(m, "timestamp") = Value::Text("1".into()))),
        ("nonce 1025 bytes", Box::new(|m| *field(m, "nonce") = Value::Bytes(vec![1; 1025]))),
        ("nonce integer", Box::new(|m| *field(m, "nonce") = Value::Integer(1.into()))),
        ("empty cabundle", Box::new(|m| cabundle(m).clear())),
        ("no pcrs", Box::new(|m| *field(m, "pcrs") = Value::Map(vec![]))),
    ];
    for (name, edit) in cases {
        let bytes = edit_payload(&v.bytes(), |m| edit(m));
        let err = AttestationDocument::parse(&bytes).expect_err(name);
        let err = VerifyError::from(err);
        assert_eq!(err.kind(), "malformed", "{name}: {err}");
    }
    let Value::Array(mut cose) = decode(&v.bytes()) else { panic!() };
    cose[0] = Value::Bytes(vec![0xa1, 0x01, 0x26]); // ES256
    assert!(matches!(
        AttestationDocument::parse(&encode(&Value::Array(cose.clone()))),
        Err(ParseError::ProtectedHeader { .. })
    ));
    cose.pop();
    assert!(matches!(
        AttestationDocument::parse(&encode(&Value::Array(cose))),
        Err(ParseError::Malformed(_))
    ));
    assert!(matches!(
        AttestationDocument::parse(&vec![0u8; 40_000]),
        Err(ParseError::TooLarge { limit: 32768, actual: 40000 })
    ));
}

#[test]
fn optional_fields_accept_empty_and_null() {
    let v = vector("base_nitro_validator_2024-11-30");
    let bytes = edit_payload(&v.bytes(), |m| {
        *field(m, "nonce") = Value::Bytes(vec![]);
        *field(m, "user_data") = Value::Null;
        m.retain(|(k, _)| *k != Value::Text("public_key".into()));
    });
    let doc = AttestationDocument::parse(&bytes).expect("parses");
    assert_eq!(doc.nonce, Some(vec![]));
    assert_eq!(doc.user_data, None);
    assert_eq!(doc.public_key, None);
}

#[test]
fn debug_mode_documents_are_rejected_unless_allowed() {
    let debug: Vec<_> = valid_vectors().into_iter().filter(|v| v.is_debug()).collect();
    assert!(debug.len() >= 3);
    for v in debug {
        let verified = verify(&v.bytes(), &aws(), at(v.valid_at())).expect("authentic");
        let strict = AttestationPolicy::default();
        assert_eq!(strict.check(&verified, at(v.valid_at())), Err(PolicyError::DebugMode));
        let lenient = AttestationPolicy { allow_debug: true, ..Default::default() };
        lenient.check(&verified, at(v.valid_at())).expect("allowed");
    }
    for v in valid_vectors().into_iter().filter(|v| !v.is_debug()) {
        let verified = verify(&v.bytes(), &aws(), at(v.valid_at())).expect("authentic");
        AttestationPolicy::default().check(&verified, at(v.valid_at())).expect("production doc");
    }
}

#[test]
fn pcr_policy_compares_only_listed_indexes() {
    let v = vector("evervault_beta_valid");
    let now = at(v.valid_at());
    let verified = verify(&v.bytes(), &aws(), now).expect("authentic");
    let mut policy = AttestationPolicy::default();
    for i in ["0", "1", "2", "8"] {
        policy.pcrs.insert(i.parse().unwrap(), unhex(&v.pcrs_nonzero[i]));
    }
    policy.check(&verified, now).expect("matching PCRs");

    let mut wrong = policy.clone();
    let mut pcr1 = unhex(&v.pcrs_nonzero["1"]);
    pcr1[0] ^= 1;
    wrong.pcrs.insert(1, pcr1.clone());
    match wrong.check(&verified, now) {
        Err(PolicyError::PcrMismatch { index: 1, expected, actual }) => {
            assert_eq!(expected, hex::encode(&pcr1));
            assert_eq!(actual, v.pcrs_nonzero["1"]);
        }
        other => panic!("{other:?}"),
    }
    let mut missing = AttestationPolicy::default();
    missing.pcrs.insert(20, vec![0; 48]);
    assert!(matches!(
        missing.check(&verified, now),
        Err(PolicyError::PcrMissing { index: 20, .. })
    ));
}

#[test]
fn freshness_and_caller_fields() {
    let v = vector("evervault_beta_valid");
    let ts = v.timestamp_ms.unwrap();
    let verified = verify(&v.bytes(), &aws(), at(v.valid_at())).expect("authentic");
    let doc_time = UNIX_EPOCH + Duration::from_millis(ts);
    let policy =
        AttestationPolicy { max_age: Some(Duration::from_secs(300)), ..Default::default() };
    policy.check(&verified, doc_time + Duration::from_secs(300)).expect("exactly max age");
    assert!(matches!(
        policy.check(&verified, doc_time + Duration::from_millis(300_001)),
        Err(PolicyError::TooOld { age_ms: 300_001, max_age_ms: 300_000 })
    ));
    assert!(matches!(
        policy.check(&verified, doc_time - Duration::from_secs(61)),
        Err(PolicyError::FromTheFuture { ahead_ms: 61_000, .. })
    ));

    let nonce = unhex(v.nonce.as_deref().unwrap());
    let ok = AttestationPolicy { nonce: Some(nonce.clone()), ..Default::default() };
    ok.check(&verified, doc_time).expect("nonce matches");
    let mut other = nonce.clone();
    other[0] ^= 1;
    let bad = AttestationPolicy { nonce: Some(other), ..Default::default() };
    assert!(matches!(
        bad.check(&verified, doc_time),
        Err(PolicyError::FieldMismatch { field: "nonce", .. })
    ));
    let absent = AttestationPolicy { user_data: Some(vec![1]), ..Default::default() };
    match absent.check(&verified, doc_time) {
        Err(PolicyError::FieldMismatch { field: "user_data", actual, .. }) => {
            assert_eq!(actual, "none")
        }
        other => panic!("{other:?}"),
    }
    let pk = vector("base_op_enclave_sample_attestation_2024");
    let verified = verify(&pk.bytes(), &aws(), at(pk.valid_at())).expect("authentic");
    let want = AttestationPolicy {
        public_key: Some(unhex(pk.public_key.as_deref().unwrap())),
        ..Default::default()
    };
    want.check(&verified, at(pk.valid_at())).expect("public key matches");
}

#[test]
fn evervault_user_data_is_the_companion_certificate_spki() {
    let v = vector("evervault_ga_2023");
    let doc = AttestationDocument::parse(&v.bytes()).expect("parses");
    let der = read_vector("attestation/evervault_ga_companion_tls_cert.der");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("cert");
    assert_eq!(doc.user_data.as_deref(), Some(cert.public_key().raw));
}
