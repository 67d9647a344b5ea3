//! A local CA that issues attestation documents of the same shape as AWS's (feature `sim`).
//!
//! Chain: `root (CA, no pathLen) → regional (CA, pathLen 2) → zonal (CA, pathLen 1) → instance
//! (CA, pathLen 0) → leaf (CA:FALSE, digitalSignature)`, all ECDSA P-384 / SHA-384, the leaf valid
//! for three hours like AWS's. Documents are untagged COSE_Sign1 with a definite-length payload
//! map in AWS's key order. They are checked by exactly the same [`crate::verify`] code as real
//! ones, with [`SimCa::trust_anchor`] injected instead of the AWS root.
//!
//! Persistence: one PEM file holding the four CA certificates followed by their PKCS#8 keys, in
//! chain order. It contains private keys of a *simulation* CA only.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ciborium::Value;
use p384::ecdsa::signature::Signer as _;
use p384::ecdsa::{Signature, SigningKey};
use p384::elliptic_curve::Generate as _;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::CryptoRng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm, SigningKey as RcgenSigningKey,
};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::chain::TrustAnchor;
use crate::document::{ES384_PROTECTED_HEADER, Pcrs};

/// Validity of a sim leaf certificate (AWS issues three-hour leaves).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(3 * 3600);
/// Validity of the sim CA certificates.
pub const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

const CA_NAMES: [&str; 4] = [
    "sim.nitro-enclaves",
    "regional.sim.nitro-enclaves",
    "zonal.sim.nitro-enclaves",
    "instance.sim.nitro-enclaves",
];
const CA_PATH_LEN: [Option<u8>; 4] = [None, Some(2), Some(1), Some(0)];

#[derive(Debug, Error)]
pub enum SimError {
    #[error("certificate generation: {0}")]
    Certificate(String),
    #[error("sim CA file {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("sim CA file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A P-384 key usable by rcgen (which is built without its own crypto backend).
struct P384Key {
    key: SigningKey,
    public_sec1: Vec<u8>,
}

impl P384Key {
    fn new(key: SigningKey) -> Self {
        let public_sec1 = key.verifying_key().to_sec1_bytes().to_vec();
        Self { key, public_sec1 }
    }

    /// SHA-256 of the SPKI, truncated to 20 bytes, as the subject key identifier.
    fn key_id(&self) -> Vec<u8> {
        Sha256::digest(self.subject_public_key_info()).iter().take(20).copied().collect()
    }
}

impl PublicKeyData for P384Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl RcgenSigningKey for P384Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature: Signature = self.key.sign(msg);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

struct CaLevel {
    key: P384Key,
    params: CertificateParams,
    der: Vec<u8>,
}

/// The simulated Nitro CA: root plus three intermediates.
pub struct SimCa {
    levels: Vec<CaLevel>,
}

/// A leaf (per simulated enclave) that signs documents.
pub struct SimLeaf {
    key: SigningKey,
    der: Vec<u8>,
    /// Unix seconds.
    pub not_after: SystemTime,
}

impl SimLeaf {
    /// The leaf certificate DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

/// Contents of a simulated document.
#[derive(Clone, Debug)]
pub struct SimDocument<'a> {
    pub module_id: &'a str,
    pub timestamp_ms: u64,
    pub pcrs: &'a Pcrs,
    pub public_key: Option<&'a [u8]>,
    pub user_data: Option<&'a [u8]>,
    pub nonce: Option<&'a [u8]>,
}

fn ca_params(level: usize, key: &P384Key, not_before: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "US");
    params.distinguished_name.push(DnType::OrganizationName, "Simulation");
    params.distinguished_name.push(DnType::OrganizationalUnitName, "signer-sim");
    params
        .distinguished_name
        .push(DnType::CommonName, CA_NAMES.get(level).copied().unwrap_or("sim"));
    params.is_ca = IsCa::Ca(match CA_PATH_LEN.get(level).copied().flatten() {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(key.key_id());
    params.use_authority_key_identifier_extension = level > 0;
    params.not_before = not_before.into();
    params.not_after = (not_before + CA_VALIDITY).into();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&key.key_id()));
    params
}

fn cert_err(e: rcgen::Error) -> SimError {
    SimError::Certificate(e.to_string())
}

impl SimCa {
    /// Generates a fresh CA valid from `now` (backdated by a minute) for twenty years.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, now: SystemTime) -> Result<Self, SimError> {
        let not_before = now - Duration::from_secs(60);
        let mut levels: Vec<CaLevel> = Vec::with_capacity(CA_NAMES.len());
        for level in 0..CA_NAMES.len() {
            let key = P384Key::new(SigningKey::generate_from_rng(rng));
            let params = ca_params(level, &key, not_before);
            let cert = match levels.last() {
                None => params.self_signed(&key).map_err(cert_err)?,
                Some(parent) => {
                    let issuer = Issuer::from_params(&parent.params, &parent.key);
                    params.signed_by(&key, &issuer).map_err(cert_err)?
                }
            };
            levels.push(CaLevel { key, params, der: cert.der().to_vec() });
        }
        Ok(Self { levels })
    }

    /// Loads the CA from `path`, or generates and saves one (mode 0600) if the file is absent.
    pub fn load_or_create<R: CryptoRng + ?Sized>(
        path: &Path,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<Self, SimError> {
        let io = |source| SimError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem)
                .map_err(|reason| SimError::Load { path: path.display().to_string(), reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ca = Self::generate(rng, now)?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let pem = ca.to_pem()?;
                write_private_file(path, pem.as_bytes()).map_err(io)?;
                Ok(ca)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Certificates then PKCS#8 keys, chain order, PEM.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, SimError> {
        let mut out = Zeroizing::new(String::new());
        for level in &self.levels {
            out.push_str(&pem_block("CERTIFICATE", &level.der));
        }
        for level in &self.levels {
            let key = level
                .key
                .key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| SimError::Certificate(e.to_string()))?;
            out.push_str(&key);
        }
        Ok(out)
    }

    /// Inverse of [`SimCa::to_pem`].
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        let mut rest = pem.as_bytes();
        while let Ok((remaining, block)) = x509_parser::pem::parse_x509_pem(rest) {
            match block.label.as_str() {
                "CERTIFICATE" => certs.push(block.contents.clone()),
                "PRIVATE KEY" => {
                    let der = Zeroizing::new(block.contents.clone());
                    keys.push(SigningKey::from_pkcs8_der(&der).map_err(|e| e.to_string())?);
                }
                other => return Err(format!("unexpected PEM block {other}")),
            }
            rest = remaining;
        }
        if certs.len() != CA_NAMES.len() || keys.len() != CA_NAMES.len() {
            return Err(format!(
                "expected {n} certificates and {n} keys, found {} and {}",
                certs.len(),
                keys.len(),
                n = CA_NAMES.len()
            ));
        }
        let mut levels = Vec::with_capacity(CA_NAMES.len());
        for (level, (der, key)) in certs.into_iter().zip(keys).enumerate() {
            let key = P384Key::new(key);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
            if cert.public_key().subject_public_key.data.as_ref() != key.public_sec1.as_slice() {
                return Err(format!("key {level} does not match certificate {level}"));
            }
            let not_before = SystemTime::UNIX_EPOCH
                + Duration::from_secs(
                    u64::try_from(cert.validity().not_before.timestamp()).unwrap_or(0),
                );
            let params = ca_params(level, &key, not_before);
            levels.push(CaLevel { key, params, der });
        }
        Ok(Self { levels })
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        self.levels.first().map(|l| l.der.as_slice()).unwrap_or_default()
    }

    /// The root certificate, PEM (what `attest verify --root` and the daemons take).
    pub fn root_pem(&self) -> String {
        pem_block("CERTIFICATE", self.root_der())
    }

    /// The root as a trust anchor.
    pub fn trust_anchor(&self) -> Result<TrustAnchor, crate::error::ChainError> {
        TrustAnchor::from_der(self.root_der())
    }

    /// `[root, regional, zonal, instance]`, as a document's `cabundle`.
    pub fn cabundle(&self) -> Vec<Vec<u8>> {
        self.levels.iter().map(|l| l.der.clone()).collect()
    }

    /// Issues a leaf for one simulated enclave, valid from `now` (backdated a few seconds, like
    /// AWS) for [`LEAF_VALIDITY`].
    pub fn issue_leaf<R: CryptoRng + ?Sized>(
        &self,
        module_id: &str,
        rng: &mut R,
        now: SystemTime,
    ) -> Result<SimLeaf, SimError> {
        let parent = self.levels.last().ok_or_else(|| SimError::Certificate("empty CA".into()))?;
        let key = P384Key::new(SigningKey::generate_from_rng(rng));
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "US");
        params.distinguished_name.push(DnType::OrganizationName, "Simulation");
        params.distinguished_name.push(DnType::OrganizationalUnitName, "signer-sim");
        params.distinguished_name.push(DnType::CommonName, format!("{module_id}.sim.aws"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::ContentCommitment];
        params.key_identifier_method = KeyIdMethod::PreSpecified(key.key_id());
        params.use_authority_key_identifier_extension = true;
        let not_before = now - Duration::from_secs(3);
        let not_after = not_before + LEAF_VALIDITY;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&key.key_id()));
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
        Ok(SimLeaf { key: key.key, der: cert.der().to_vec(), not_after })
    }

    /// Builds and signs a document with `leaf`.
    pub fn issue_document(&self, leaf: &SimLeaf, doc: &SimDocument<'_>) -> Vec<u8> {
        let optional =
            |v: Option<&[u8]>| v.map(|b| Value::Bytes(b.to_vec())).unwrap_or(Value::Null);
        let payload = Value::Map(vec![
            (text("module_id"), text(doc.module_id)),
            (text("digest"), text("SHA384")),
            (text("timestamp"), Value::Integer(doc.timestamp_ms.into())),
            (
                text("pcrs"),
                Value::Map(
                    doc.pcrs
                        .iter()
                        .map(|(i, v)| (Value::Integer((*i).into()), Value::Bytes(v.clone())))
                        .collect(),
                ),
            ),
            (text("certificate"), Value::Bytes(leaf.der.clone())),
            (
                text("cabundle"),
                Value::Array(self.cabundle().into_iter().map(Value::Bytes).collect()),
            ),
            (text("public_key"), optional(doc.public_key)),
            (text("user_data"), optional(doc.user_data)),
            (text("nonce"), optional(doc.nonce)),
        ]);
        let payload = encode(&payload);
        let cose = crate::document::CoseSign1 {
            protected: ES384_PROTECTED_HEADER.to_vec(),
            payload,
            signature: [0; 96],
        };
        let signature: Signature = leaf.key.sign(&cose.signed_bytes());
        encode(&Value::Array(vec![
            Value::Bytes(cose.protected),
            Value::Map(vec![]),
            Value::Bytes(cose.payload),
            Value::Bytes(signature.to_bytes().to_vec()),
        ]))
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a `Value` into a Vec cannot fail.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// A PEM block with 64-column base64 lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}
