//! Certificate-chain verification against an injected trust anchor.
//!
//! The chain is built as `certificate → cabundle[n-1] → … → cabundle[1] → anchor`, where
//! `cabundle[0]` must be byte-identical to the pinned anchor (it is never trusted on its own).
//! Every link is checked: ECDSA P-384 / SHA-384 signature over the raw TBS bytes, issuer name equal
//! to the next subject (raw DER), validity at an explicit time (inclusive bounds), CA
//! basicConstraints, keyCertSign and pathLen for issuers, `CA:FALSE` and digitalSignature for the
//! leaf, and no unrecognised critical extension. No CRL is fetched (documents live minutes).

use std::time::{SystemTime, UNIX_EPOCH};

use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA384,
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;

use crate::error::ChainError;

/// DER of the AWS Nitro Enclaves Root G1 certificate (`CN=aws.nitro-enclaves`), from
/// <https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip>.
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("aws_nitro_root_g1.der");
/// SHA-256 of [`AWS_NITRO_ROOT_G1_DER`], as published by AWS.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// The root certificate every accepted chain must end at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    der: Vec<u8>,
}

impl TrustAnchor {
    /// The pinned AWS Nitro Enclaves Root G1 (production).
    pub fn aws_nitro_root_g1() -> Self {
        Self { der: AWS_NITRO_ROOT_G1_DER.to_vec() }
    }

    /// A root given as DER (e.g. the simulation CA's root). It must parse as an X.509
    /// certificate with a P-384 key.
    pub fn from_der(der: &[u8]) -> Result<Self, ChainError> {
        let cert = parse_certificate(der, "trust anchor")?;
        ecdsa_p384_key(&cert)?;
        Ok(Self { der: der.to_vec() })
    }

    /// A root given as PEM (`-----BEGIN CERTIFICATE-----`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, ChainError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| {
            ChainError::Certificate { position: "trust anchor PEM".into(), reason: e.to_string() }
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(ChainError::Certificate {
                position: "trust anchor PEM".into(),
                reason: format!("expected a CERTIFICATE block, found {}", pem.label),
            });
        }
        Self::from_der(&pem.contents)
    }

    /// The anchor's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Hex SHA-256 of the anchor's DER, the usual way to name a pinned root.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }
}

/// One certificate of a verified chain, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    pub subject: String,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl CertificateSummary {
    pub(crate) fn of(cert: &X509Certificate<'_>) -> Self {
        Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        }
    }
}

/// Summaries of `[leaf, cabundle[n-1], …, cabundle[0]]` without verifying anything (for
/// `attest inspect`). Unparseable entries are reported as errors.
pub fn summarize(
    certificate: &[u8],
    cabundle: &[Vec<u8>],
) -> Vec<Result<CertificateSummary, ChainError>> {
    std::iter::once(("certificate".to_string(), certificate))
        .chain(
            cabundle
                .iter()
                .enumerate()
                .rev()
                .map(|(i, der)| (format!("cabundle[{i}]"), der.as_slice())),
        )
        .map(|(position, der)| {
            parse_certificate(der, &position).map(|c| CertificateSummary::of(&c))
        })
        .collect()
}

/// Verifies the chain at `at` and returns the leaf's verifying key plus the chain (leaf first,
/// anchor last).
pub fn verify_chain(
    certificate: &[u8],
    cabundle: &[Vec<u8>],
    anchor: &TrustAnchor,
    at: SystemTime,
) -> Result<(VerifyingKey, Vec<CertificateSummary>), ChainError> {
    let bundle_root = cabundle.first().ok_or_else(|| ChainError::Constraint {
        subject: "cabundle".into(),
        reason: "empty".into(),
    })?;
    if bundle_root.as_slice() != anchor.der() {
        return Err(ChainError::UntrustedRoot {
            expected: anchor.sha256_hex(),
            actual: hex::encode(Sha256::digest(bundle_root)),
        });
    }

    // Leaf first, then intermediates from the leaf's issuer upwards, then the pinned anchor.
    let mut ders: Vec<(String, &[u8])> = vec![("certificate".into(), certificate)];
    for (i, der) in cabundle.iter().enumerate().skip(1).rev() {
        ders.push((format!("cabundle[{i}]"), der));
    }
    ders.push(("trust anchor".into(), anchor.der()));
    let certs = ders
        .iter()
        .map(|(position, der)| parse_certificate(der, position))
        .collect::<Result<Vec<_>, _>>()?;

    let at_unix = unix_seconds(at);
    let last = certs.len() - 1;
    for (position, cert) in certs.iter().enumerate() {
        check_algorithms(cert)?;
        check_validity(cert, at_unix)?;
        check_critical_extensions(cert)?;
        if position == 0 {
            check_leaf(cert)?;
        } else {
            // `position - 1` CA certificates sit between this one and the leaf.
            check_issuer_ca(cert, position - 1)?;
        }
        let issuer = if position == last { cert } else { certs.get(position + 1).unwrap_or(cert) };
        check_link(cert, issuer)?;
    }

    let leaf_key = certs.first().map(ecdsa_p384_key).ok_or_else(|| ChainError::Constraint {
        subject: "certificate".into(),
        reason: "missing".into(),
    })??;
    Ok((leaf_key, certs.iter().map(CertificateSummary::of).collect()))
}

pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map(|s| -s).unwrap_or(i64::MIN),
    }
}

/// RFC 3339 rendering of unix seconds (falls back to `@seconds` when out of range).
pub fn format_unix(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("@{seconds}"))
}

fn parse_certificate<'a>(der: &'a [u8], position: &str) -> Result<X509Certificate<'a>, ChainError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| ChainError::Certificate {
        position: position.to_string(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(ChainError::Certificate {
            position: position.to_string(),
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(cert)
}

fn subject_of(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

fn check_algorithms(cert: &X509Certificate<'_>) -> Result<(), ChainError> {
    let alg = &cert.signature_algorithm.algorithm;
    if *alg != OID_SIG_ECDSA_WITH_SHA384 || cert.tbs_certificate.signature.algorithm != *alg {
        return Err(ChainError::Algorithm {
            subject: subject_of(cert),
            expected: "signature algorithm ecdsa-with-SHA384",
            actual: alg.to_id_string(),
        });
    }
    ecdsa_p384_key(cert).map(|_| ())
}

fn ecdsa_p384_key(cert: &X509Certificate<'_>) -> Result<VerifyingKey, ChainError> {
    let spki = cert.public_key();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_NIST_EC_P384) {
        return Err(ChainError::Algorithm {
            subject: subject_of(cert),
            expected: "an EC P-384 public key",
            actual: format!(
                "{} ({})",
                spki.algorithm.algorithm.to_id_string(),
                curve.map(|c| c.to_id_string()).unwrap_or_else(|| "no curve".into())
            ),
        });
    }
    VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data).map_err(|_| {
        ChainError::Algorithm {
            subject: subject_of(cert),
            expected: "a valid P-384 point",
            actual: "an invalid point".into(),
        }
    })
}

fn check_validity(cert: &X509Certificate<'_>, at: i64) -> Result<(), ChainError> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if at < not_before {
        return Err(ChainError::NotYetValid {
            subject: subject_of(cert),
            not_before: format_unix(not_before),
            at: format_unix(at),
        });
    }
    if at > not_after {
        return Err(ChainError::Expired {
            subject: subject_of(cert),
            not_after: format_unix(not_after),
            at: format_unix(at),
        });
    }
    Ok(())
}

fn check_critical_extensions(cert: &X509Certificate<'_>) -> Result<(), ChainError> {
    let understood = [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ];
    match cert.extensions().iter().find(|e| e.critical && !understood.contains(&e.oid)) {
        Some(ext) => Err(ChainError::Constraint {
            subject: subject_of(cert),
            reason: format!("unrecognised critical extension {}", ext.oid.to_id_string()),
        }),
        None => Ok(()),
    }
}

fn constraint(cert: &X509Certificate<'_>, reason: impl Into<String>) -> ChainError {
    ChainError::Constraint { subject: subject_of(cert), reason: reason.into() }
}

fn check_leaf(cert: &X509Certificate<'_>) -> Result<(), ChainError> {
    let bc = cert.basic_constraints().map_err(|e| constraint(cert, e.to_string()))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(constraint(cert, "leaf certificate must not be a CA"));
    }
    let ku = cert.key_usage().map_err(|e| constraint(cert, e.to_string()))?;
    if !ku.is_some_and(|ku| ku.value.digital_signature()) {
        return Err(constraint(cert, "leaf certificate lacks the digitalSignature key usage"));
    }
    Ok(())
}

fn check_issuer_ca(cert: &X509Certificate<'_>, cas_below: usize) -> Result<(), ChainError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| constraint(cert, e.to_string()))?
        .ok_or_else(|| constraint(cert, "issuer lacks basicConstraints"))?;
    if !bc.value.ca {
        return Err(constraint(cert, "issuer is not a CA (basicConstraints CA:FALSE)"));
    }
    if let Some(path_len) = bc.value.path_len_constraint
        && cas_below > path_len as usize
    {
        return Err(constraint(
            cert,
            format!(
                "pathLenConstraint {path_len} exceeded: {cas_below} CA certificate(s) below it"
            ),
        ));
    }
    let ku = cert.key_usage().map_err(|e| constraint(cert, e.to_string()))?;
    if !ku.is_some_and(|ku| ku.value.key_cert_sign()) {
        return Err(constraint(cert, "issuer lacks the keyCertSign key usage"));
    }
    Ok(())
}

fn check_link(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), ChainError> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(ChainError::IssuerMismatch {
            subject: subject_of(cert),
            issuer: cert.issuer().to_string(),
            next: subject_of(issuer),
        });
    }
    let key = ecdsa_p384_key(issuer)?;
    let link_error =
        || ChainError::LinkSignature { subject: subject_of(cert), issuer: subject_of(issuer) };
    let signature = Signature::from_der(&cert.signature_value.data).map_err(|_| link_error())?;
    key.verify(cert.tbs_certificate.as_ref(), &signature).map_err(|_| link_error())
}
