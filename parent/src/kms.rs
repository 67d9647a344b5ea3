//! AWS KMS with `aws-sdk-kms`: `Decrypt` with `Recipient` for the enclave, a reachability ping.
//!
//! Transient errors (throttling, 5xx, timeouts, connection failures) are retried by the SDK's
//! standard retry strategy with exponential backoff, all under one deadline (`timeout_ms`). A
//! response that carries `Plaintext` although a `Recipient` was sent is refused (fail closed) and
//! the plaintext is wiped. `AccessDeniedException` is not modelled by the SDK for `Decrypt`, so it
//! is recognised by its error code and reported with its most likely cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{EncryptionAlgorithmSpec, KeyEncryptionMechanism, RecipientInfo};
use signer_types::records::WrapAlg;
use thiserror::Error;
use zeroize::Zeroize as _;

use crate::config::Settings;
use crate::metrics::Metrics;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KmsError {
    #[error("KMS denied Decrypt: {message}. Likely cause: {hint}")]
    AccessDenied { message: String, hint: String },
    #[error(
        "the KMS key is disabled or not usable ({0}); disabling the key is the hard stop for every enclave"
    )]
    Disabled(String),
    #[error("KMS returned Plaintext although a Recipient was sent; refusing it (fail closed)")]
    PlaintextReturned,
    #[error("the record's wrapped key is not a valid ciphertext for this KMS key ({0})")]
    InvalidCiphertext(String),
    #[error("KMS unreachable or failing after retries: {0}")]
    Unavailable(String),
    #[error("KMS rejected the request: {0}")]
    Rejected(String),
}

/// A client-safe name for an SDK failure that carries no KMS error code.
fn transport_failure<E, R>(e: &aws_sdk_kms::error::SdkError<E, R>) -> &'static str {
    use aws_sdk_kms::error::SdkError;
    match e {
        SdkError::TimeoutError(_) => "no answer from KMS within the deadline",
        SdkError::DispatchFailure(_) => "could not reach KMS (connection failed)",
        SdkError::ResponseError(_) => "KMS sent a response that could not be read",
        SdkError::ConstructionFailure(_) => "the KMS request could not be built",
        _ => "KMS failed without an error code",
    }
}

/// What the enclave asked to have unwrapped.
#[derive(Clone, Debug)]
pub struct Unwrap<'a> {
    pub alg: WrapAlg,
    pub ciphertext: &'a [u8],
    pub encryption_context: Option<&'a (String, String)>,
}

pub struct KmsClient {
    client: aws_sdk_kms::Client,
    key_id: String,
    symmetric_key_id: Option<String>,
    metrics: Arc<Metrics>,
}

impl KmsClient {
    /// Builds a client from the standard AWS configuration chain plus our overrides.
    pub async fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.kms.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_kms::config::Builder::from(&shared)
            .retry_config(
                aws_sdk_kms::config::retry::RetryConfig::standard()
                    .with_max_attempts(settings.kms.max_attempts.max(1)),
            )
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_millis(settings.kms.timeout_ms))
                    .operation_attempt_timeout(Duration::from_millis(
                        (settings.kms.timeout_ms / 2).max(500),
                    ))
                    .connect_timeout(Duration::from_millis(1000))
                    .build(),
            );
        if let Some(endpoint) = &settings.kms.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        Self {
            client: aws_sdk_kms::Client::from_conf(builder.build()),
            key_id: settings.kms_key_id.clone(),
            symmetric_key_id: settings.kms.symmetric_key_id.clone(),
            metrics,
        }
    }

    fn record(&self, operation: &str, outcome: &str, started: Instant) {
        self.metrics.kms_calls.with_label_values(&[operation, outcome]).inc();
        self.metrics
            .kms_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    /// `Decrypt` with `Recipient = (RSAES_OAEP_SHA_256, attestation_document)`; returns the
    /// `CiphertextForRecipient` envelope.
    pub async fn decrypt_for_recipient(
        &self,
        unwrap: &Unwrap<'_>,
        attestation_document: &[u8],
        pcr0_hex: &str,
    ) -> Result<Vec<u8>, KmsError> {
        let started = Instant::now();
        let recipient = RecipientInfo::builder()
            .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
            .attestation_document(Blob::new(attestation_document.to_vec()))
            .build();
        let mut request = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(unwrap.ciphertext.to_vec()))
            .recipient(recipient);
        request = match unwrap.alg {
            WrapAlg::RsaesOaepSha256 => request
                .key_id(&self.key_id)
                .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256),
            WrapAlg::KmsSymmetric => {
                let mut r = request.encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault);
                if let Some(id) = &self.symmetric_key_id {
                    r = r.key_id(id);
                }
                if let Some((k, v)) = unwrap.encryption_context {
                    r = r.encryption_context(k, v);
                }
                r
            }
        };
        match request.send().await {
            Ok(output) => {
                let output = output;
                if output.plaintext().is_some() {
                    if let Some(blob) = output.plaintext.clone() {
                        let mut bytes = blob.into_inner();
                        bytes.zeroize();
                    }
                    self.record("Decrypt", "plaintext_refused", started);
                    tracing::error!("KMS returned Plaintext for a Recipient request; refused");
                    return Err(KmsError::PlaintextReturned);
                }
                self.record("Decrypt", "ok", started);
                output.ciphertext_for_recipient.map(Blob::into_inner).ok_or_else(|| {
                    KmsError::Rejected("the response has no CiphertextForRecipient".into())
                })
            }
            Err(e) => {
                let code = e.code().unwrap_or_default().to_string();
                let message = e.message().map(str::to_string).unwrap_or_else(|| e.to_string());
                let mapped = match code.as_str() {
                    "AccessDeniedException" => KmsError::AccessDenied {
                        message,
                        hint: format!(
                            "the key policy's kms:RecipientAttestation:ImageSha384 / PCR conditions do not match this enclave \
                             (PCR0 {pcr0_hex}), or this host's role may not call kms:Decrypt on the key; \
                             check with `attest explain <document> --policy <key-policy.json>`"
                        ),
                    },
                    "DisabledException" | "KMSInvalidStateException" => KmsError::Disabled(message),
                    "InvalidCiphertextException" | "IncorrectKeyException" => {
                        KmsError::InvalidCiphertext(message)
                    }
                    ""
                    | "ThrottlingException"
                    | "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "LimitExceededException" => KmsError::Unavailable(if code.is_empty() {
                        // The SDK's own text can carry endpoints and internals: it goes to the
                        // log below, and the client gets the kind of failure only.
                        transport_failure(&e).to_string()
                    } else {
                        format!("{code}: {message}")
                    }),
                    _ => KmsError::Rejected(format!("{code}: {message}")),
                };
                let outcome = if matches!(mapped, KmsError::AccessDenied { .. }) {
                    "access_denied"
                } else {
                    "error"
                };
                self.record("Decrypt", outcome, started);
                tracing::warn!(
                    code = %code,
                    error = %mapped,
                    cause = %aws_sdk_kms::error::DisplayErrorContext(&e),
                    "KMS Decrypt failed"
                );
                Err(mapped)
            }
        }
    }

    /// `DescribeKey` on the execution key: is KMS reachable and the key usable?
    pub async fn ping(&self) -> Result<(), KmsError> {
        let started = Instant::now();
        match self.client.describe_key().key_id(&self.key_id).send().await {
            Ok(out) => {
                self.record("DescribeKey", "ok", started);
                match out.key_metadata() {
                    Some(m) if !m.enabled() => {
                        Err(KmsError::Disabled(format!("{} is disabled", self.key_id)))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                self.record("DescribeKey", "error", started);
                Err(KmsError::Unavailable(format!(
                    "{}: {}",
                    e.code().unwrap_or("connection"),
                    e.message().unwrap_or_default()
                )))
            }
        }
    }
}
