//! Prometheus metrics (`GET /metrics`, text format).
//!
//! - `signer_http_requests_total{route,code}` and `signer_http_request_duration_seconds{route,code}`:
//!   `code` is `ok` or the error code of the response (`wrong_enclave`, `authorization_replayed`, …)
//! - `signer_http_read_timeouts_total{phase}`: connections cut off by the read timeouts: `headers`
//!   (no complete request within `header_read_timeout_ms` of connecting: silent or trickling
//!   clients), `idle` (no next request within it on a keep-alive connection: normal), `body`
//!   (a request not complete within `request_read_timeout_ms`: answered 408)
//! - `signer_policy_denials_total{rule}`
//! - `signer_kms_calls_total{operation,outcome}` and `signer_kms_call_duration_seconds{operation}`
//! - `signer_enclave_calls_total{op,outcome}`
//! - `signer_grant_cache_total{result}`: `hit` (signed without a KMS call), `miss` (KMS needed)
//! - `signer_enclave_connected`, `signer_enclave_attested`, `signer_kms_reachable` (0/1)
//! - `signer_attestation_refreshes_total{outcome}`
//! - `signer_receipts_total{delivery}`: decision receipts given out, `attached` to a sign or grant
//!   answer, `paged` by `GET /v1/receipts`; `none` counts answers without one (identical retries)
//! - `signer_receipts_written`, `signer_receipts_dropped`: the enclave's own counts, as of the
//!   last `GET /v1/receipts`

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_read_timeouts: IntCounterVec,
    pub denials: IntCounterVec,
    pub kms_calls: IntCounterVec,
    pub kms_duration: HistogramVec,
    pub enclave_calls: IntCounterVec,
    pub grant_cache: IntCounterVec,
    pub enclave_connected: IntGauge,
    pub enclave_attested: IntGauge,
    pub kms_reachable: IntGauge,
    pub attestation_refreshes: IntCounterVec,
    pub envelope_failures: IntCounter,
    pub handovers: IntCounter,
    pub receipts: ReceiptDelivery,
    pub receipts_written: IntGauge,
    pub receipts_dropped: IntGauge,
}

/// `signer_receipts_total` by delivery, each label resolved once: counted on every signature, so
/// no label lookup (hash and lock) on the hot path.
pub struct ReceiptDelivery {
    pub attached: IntCounter,
    pub none: IntCounter,
    pub paged: IntCounter,
}

impl ReceiptDelivery {
    fn of(by_delivery: &IntCounterVec) -> Self {
        Self {
            attached: by_delivery.with_label_values(&["attached"]),
            none: by_delivery.with_label_values(&["none"]),
            paged: by_delivery.with_label_values(&["paged"]),
        }
    }
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            http_requests: counter(
                "signer_http_requests_total",
                "HTTP requests by route and outcome code",
                &["route", "code"],
            )?,
            http_duration: histogram(
                "signer_http_request_duration_seconds",
                "HTTP request latency",
                &["route", "code"],
            )?,
            http_read_timeouts: counter(
                "signer_http_read_timeouts_total",
                "Connections cut off by the HTTP read timeouts, by phase (headers, idle, body)",
                &["phase"],
            )?,
            denials: counter("signer_policy_denials_total", "Policy denials by rule", &["rule"])?,
            kms_calls: counter(
                "signer_kms_calls_total",
                "KMS calls by operation and outcome",
                &["operation", "outcome"],
            )?,
            kms_duration: histogram(
                "signer_kms_call_duration_seconds",
                "KMS call latency (retries included)",
                &["operation"],
            )?,
            enclave_calls: counter(
                "signer_enclave_calls_total",
                "Enclave operations by outcome",
                &["op", "outcome"],
            )?,
            grant_cache: counter(
                "signer_grant_cache_total",
                "Signing requests that needed a KMS call (miss) or not (hit)",
                &["result"],
            )?,
            enclave_connected: gauge(
                "signer_enclave_connected",
                "1 while the enclave connection is open",
            )?,
            enclave_attested: gauge(
                "signer_enclave_attested",
                "1 while a verified attestation document is current",
            )?,
            kms_reachable: gauge(
                "signer_kms_reachable",
                "1 when the last KMS reachability check succeeded",
            )?,
            attestation_refreshes: counter(
                "signer_attestation_refreshes_total",
                "Attestation refreshes by outcome",
                &["outcome"],
            )?,
            envelope_failures: {
                let c = IntCounter::new(
                    "signer_envelope_failures_total",
                    "Records that did not open with the key in their KMS envelope (tampering by \
                     the host or at rest, or a misbehaving KMS); the enclave refuses each such \
                     envelope from then on",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            handovers: {
                let c = IntCounter::new(
                    "signer_handovers_total",
                    "Completed live handovers of the decision state to a successor enclave",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            receipts: ReceiptDelivery::of(&counter(
                "signer_receipts_total",
                "Decision receipts given out: attached to an answer, paged, or none (a retry)",
                &["delivery"],
            )?),
            receipts_written: gauge(
                "signer_receipts_written",
                "Receipts the enclave wrote since it started (as of the last page)",
            )?,
            receipts_dropped: gauge(
                "signer_receipts_dropped",
                "Receipts the enclave could not write (as of the last page)",
            )?,
            registry,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Total KMS calls so far (all operations and outcomes).
    pub fn kms_call_count(&self, operation: &str) -> u64 {
        ["ok", "access_denied", "error", "plaintext_refused"]
            .iter()
            .map(|o| self.kms_calls.with_label_values(&[operation, o]).get())
            .sum()
    }
}
