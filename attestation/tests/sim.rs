//! The simulation CA issues documents that the same verification code accepts with the sim root
//! injected, and rejects against the AWS root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use nitro_attestation::error::{ChainError, PolicyError, VerifyError};
use nitro_attestation::sim::{SimCa, SimDocument};
use nitro_attestation::{
    AttestationDocument, AttestationPolicy, TrustAnchor, verify, verify_with_policy,
};

fn pcrs() -> BTreeMap<u8, Vec<u8>> {
    (0u8..16).map(|i| (i, if i < 3 { vec![i + 1; 48] } else { vec![0; 48] })).collect()
}

fn issue(ca: &SimCa, now: SystemTime, nonce: Option<&[u8]>) -> Vec<u8> {
    let leaf = ca.issue_leaf("i-sim-enc0001", &mut rand::rng(), now).unwrap();
    let pcrs = pcrs();
    ca.issue_document(
        &leaf,
        &SimDocument {
            module_id: "i-sim-enc0001",
            timestamp_ms: now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64,
            pcrs: &pcrs,
            public_key: Some(b"spki"),
            user_data: Some(b""),
            nonce,
        },
    )
}

#[test]
fn sim_document_verifies_with_sim_root_and_not_with_aws_root() {
    let now = SystemTime::now();
    let ca = SimCa::generate(&mut rand::rng(), now).unwrap();
    let doc = issue(&ca, now, Some(b"n0nce"));
    let anchor = ca.trust_anchor().unwrap();
    let policy = AttestationPolicy {
        pcrs: pcrs().into_iter().filter(|(i, _)| *i < 3).collect(),
        max_age: Some(Duration::from_secs(60)),
        nonce: Some(b"n0nce".to_vec()),
        user_data: Some(vec![]),
        public_key: Some(b"spki".to_vec()),
        allow_debug: false,
    };
    let verified = verify_with_policy(&doc, &anchor, &policy, now).expect("sim doc verifies");
    assert_eq!(verified.chain.len(), 5, "leaf, three intermediates, root: AWS's shape");
    assert_eq!(verified.document.user_data, Some(vec![]));

    match verify(&doc, &TrustAnchor::aws_nitro_root_g1(), now) {
        Err(VerifyError::Chain(ChainError::UntrustedRoot { .. })) => {}
        other => panic!("{other:?}"),
    }
    // A different sim CA is a different root too.
    let other = SimCa::generate(&mut rand::rng(), now).unwrap();
    assert!(matches!(
        verify(&doc, &other.trust_anchor().unwrap(), now),
        Err(VerifyError::Chain(ChainError::UntrustedRoot { .. }))
    ));
    // The leaf lives three hours, like AWS's.
    assert!(verify(&doc, &anchor, now + Duration::from_secs(3 * 3600 - 10)).is_ok());
    assert!(matches!(
        verify(&doc, &anchor, now + Duration::from_secs(3 * 3600 + 10)),
        Err(VerifyError::Chain(ChainError::Expired { .. }))
    ));
    // Policy still applies.
    let wrong_nonce = AttestationPolicy { nonce: Some(b"other".to_vec()), ..policy };
    assert!(matches!(
        verify_with_policy(&doc, &anchor, &wrong_nonce, now),
        Err(VerifyError::Policy(PolicyError::FieldMismatch { field: "nonce", .. }))
    ));
}

#[test]
fn leaf_swapped_within_one_instance_chain_is_a_bad_signature() {
    let now = SystemTime::now();
    let ca = SimCa::generate(&mut rand::rng(), now).unwrap();
    let doc_a = issue(&ca, now, None);
    let doc_b = issue(&ca, now, None);
    let leaf_b = AttestationDocument::parse(&doc_b).unwrap().certificate;
    let leaf_a = AttestationDocument::parse(&doc_a).unwrap().certificate;
    assert_ne!(leaf_a, leaf_b);
    use ciborium::Value;
    let Value::Array(mut cose) = ciborium::from_reader::<Value, _>(doc_a.as_slice()).unwrap()
    else {
        panic!()
    };
    let Value::Bytes(payload) = &cose[2] else { panic!() };
    let Value::Map(mut map) = ciborium::from_reader::<Value, _>(payload.as_slice()).unwrap() else {
        panic!()
    };
    for (k, v) in map.iter_mut() {
        if *k == Value::Text("certificate".into()) {
            *v = Value::Bytes(leaf_b.clone());
        }
    }
    let mut payload = Vec::new();
    ciborium::into_writer(&Value::Map(map), &mut payload).unwrap();
    cose[2] = Value::Bytes(payload);
    let mut swapped = Vec::new();
    ciborium::into_writer(&Value::Array(cose), &mut swapped).unwrap();
    let anchor = ca.trust_anchor().unwrap();
    verify(&doc_a, &anchor, now).expect("original verifies");
    assert_eq!(AttestationDocument::parse(&swapped).unwrap().certificate, leaf_b);
    assert_eq!(verify(&swapped, &anchor, now), Err(VerifyError::Signature));
}

#[test]
fn sim_ca_persists_and_reloads() {
    let dir = std::env::temp_dir().join(format!("sim-ca-test-{}", std::process::id()));
    let path = dir.join("sim-ca.pem");
    let _ = std::fs::remove_dir_all(&dir);
    let now = SystemTime::now();
    let created = SimCa::load_or_create(&path, &mut rand::rng(), now).unwrap();
    let loaded = SimCa::load_or_create(&path, &mut rand::rng(), now).unwrap();
    assert_eq!(created.root_der(), loaded.root_der());
    assert_eq!(created.cabundle(), loaded.cabundle());
    // Documents issued by the reloaded CA verify against the original root.
    let doc = issue(&loaded, now, None);
    verify(&doc, &created.trust_anchor().unwrap(), now).expect("reloaded CA issues valid docs");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();
    assert!(SimCa::load_or_create(&path, &mut rand::rng(), now).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
