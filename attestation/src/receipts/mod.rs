//! Verifying decision receipts as delivered (`attest receipts`, `docs/receipts.md`): the pages
//! `GET /v1/receipts` returns, the attestation documents that bind each page's checkpoint key to
//! its enclave, the chain verifier of `signer-receipts`, and a reconciliation of every signature
//! with its grant's policy ([`reconcile()`]).
//!
//! No I/O: the caller reads files and passes bytes. Three steps:
//!
//! 1. [`parse_pages`]: the JSON of one page or an array of pages, strictly typed. Every receipt
//!    must decode and every checkpoint must be 145 bytes: a file that does not is malformed input
//!    ([`InputError`]), not evidence.
//! 2. [`check_document`]: an attestation document verified as `attest provenance` does (chain at
//!    the document's own time, signature, not debug mode, one of the trusted images) that carries
//!    a `public_key` (the enclave's recipient key, from which its enclave id is derived).
//! 3. [`audit`]: trusts a page's checkpoint key only if a verified document names the page's
//!    enclave and its `user_data` is [`checkpoint_key_binding`] of that enclave and key; runs
//!    [`verify`] over the receipts of all pages (byte-identical receipts delivered by an earlier
//!    page dropped, duplicates within one page kept) and their checkpoints; reports each page's
//!    evicted range; and reconciles.

mod reconcile;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Serialize, Serializer};
use serde_json::Value;
use signer_receipts::{
    Checkpoint, Receipt, Report, SignedCheckpoint, checkpoint_key_binding, receipt_hash, verify,
};
use signer_types::EnclaveId;
use signer_types::ids::{parse_uuid, uuid_text};
use thiserror::Error;

use crate::chain::TrustAnchor;
use crate::error::VerifyError;
use crate::record::{image_matches, verify_image_at_document_time};
use crate::verify::VerifiedDocument;

pub use reconcile::{
    Basis, CounterMismatch, GrantSummary, Reconciliation, Relation, Unreconciled,
    UnreconciledReason, Violation, reconcile,
};

/// The most pages one input may hold.
pub const MAX_PAGES: usize = 100_000;

/// One page of `GET /v1/receipts`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The member that served the page and signs its checkpoints.
    pub enclave_id: [u8; 16],
    /// The chain's decider (enclave id or cluster id).
    pub decider: [u8; 16],
    /// The ed25519 public key `enclave_id` signs checkpoints with this boot.
    pub checkpoint_key: [u8; 32],
    /// The receipts as delivered (each one decodes).
    pub receipts: Vec<Vec<u8>>,
    pub checkpoint: Option<SignedCheckpoint>,
    /// Receipts `after + 1 ..= oldest − 1` were evicted from the enclave's ring.
    pub gap: Option<PageGap>,
    pub next_after: Option<u64>,
    pub more: Option<bool>,
}

/// A page's `gap` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageGap {
    pub after: u64,
    pub oldest: u64,
}

impl PageGap {
    /// How many receipts were evicted.
    pub fn missing(&self) -> u64 {
        self.oldest.saturating_sub(self.after).saturating_sub(1)
    }
}

/// A receipts file that is not what `GET /v1/receipts` returns.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum InputError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("expected a page object or an array of pages; found {0}")]
    Shape(&'static str),
    #[error("an empty array: no pages")]
    NoPages,
    #[error("{count} pages; at most {MAX_PAGES}")]
    TooManyPages { count: usize },
    #[error("page {page}: {field}: {reason}")]
    Field { page: usize, field: String, reason: String },
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses the JSON of one page or an array of pages (module docs). Unknown fields are ignored;
/// `checkpoint` and `gap` may be null or absent, `next_after` and `more` absent.
pub fn parse_pages(json: &[u8]) -> Result<Vec<Page>, InputError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| InputError::Json(e.to_string()))?;
    match value {
        Value::Object(_) => Ok(vec![parse_page(0, &value)?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(InputError::NoPages);
            }
            if items.len() > MAX_PAGES {
                return Err(InputError::TooManyPages { count: items.len() });
            }
            items.iter().enumerate().map(|(i, v)| parse_page(i, v)).collect()
        }
        other => Err(InputError::Shape(json_type(&other))),
    }
}

fn parse_page(page: usize, value: &Value) -> Result<Page, InputError> {
    let err =
        |field: &str, reason: String| InputError::Field { page, field: field.to_string(), reason };
    let Value::Object(map) = value else {
        return Err(err("page", format!("expected an object, found {}", json_type(value))));
    };
    let string = |field: &str| -> Result<&str, InputError> {
        match map.get(field) {
            Some(Value::String(s)) => Ok(s),
            None => Err(err(field, "missing".into())),
            Some(v) => Err(err(field, format!("expected a string, found {}", json_type(v)))),
        }
    };
    let uuid = |field: &str| -> Result<[u8; 16], InputError> {
        let text = string(field)?;
        parse_uuid(text).ok_or_else(|| err(field, format!("{:?} is not UUID text", clip(text))))
    };
    let enclave_id = uuid("enclave_id")?;
    let decider = uuid("decider")?;
    let key = base64(string("checkpoint_key")?).map_err(|e| err("checkpoint_key", e))?;
    let checkpoint_key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
        err("checkpoint_key", format!("{} bytes; expected a 32-byte ed25519 key", key.len()))
    })?;

    let receipts = match map.get("receipts") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let field = format!("receipts[{i}]");
                let Value::String(text) = v else {
                    return Err(err(&field, format!("expected a string, found {}", json_type(v))));
                };
                let bytes = base64(text).map_err(|e| err(&field, e))?;
                Receipt::decode(&bytes)
                    .map_err(|e| err(&field, format!("not a receipt ({}): {e}", e.code())))?;
                Ok(bytes)
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => return Err(err("receipts", "missing".into())),
        Some(v) => {
            return Err(err("receipts", format!("expected an array, found {}", json_type(v))));
        }
    };

    let checkpoint = match map.get("checkpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => {
            let bytes = base64(text).map_err(|e| err("checkpoint", e))?;
            Some(SignedCheckpoint::decode(&bytes).map_err(|e| {
                err("checkpoint", format!("not a signed checkpoint ({}): {e}", e.code()))
            })?)
        }
        Some(v) => {
            return Err(err(
                "checkpoint",
                format!("expected a string or null, found {}", json_type(v)),
            ));
        }
    };

    let gap = match map.get("gap") {
        None | Some(Value::Null) => None,
        Some(Value::Object(g)) => {
            let number = |field: &str| -> Result<u64, InputError> {
                let name = format!("gap.{field}");
                match g.get(field) {
                    Some(v) => v.as_u64().ok_or_else(|| {
                        err(
                            &name,
                            format!("expected an unsigned integer, found {}", clip(&v.to_string())),
                        )
                    }),
                    None => Err(err(&name, "missing".into())),
                }
            };
            Some(PageGap { after: number("after")?, oldest: number("oldest")? })
        }
        Some(v) => {
            return Err(err("gap", format!("expected an object or null, found {}", json_type(v))));
        }
    };
    let next_after = match map.get("next_after") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            err(
                "next_after",
                format!("expected an unsigned integer, found {}", clip(&v.to_string())),
            )
        })?),
    };
    let more = match map.get("more") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => return Err(err("more", format!("expected a boolean, found {}", json_type(v)))),
    };
    Ok(Page { enclave_id, decider, checkpoint_key, receipts, checkpoint, gap, next_after, more })
}

/// Standard base64 (padded or not), as the API writes it.
fn base64(text: &str) -> Result<Vec<u8>, String> {
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| format!("{:?} is not standard base64", clip(text)))
}

/// At most 40 characters of `text`, for messages.
fn clip(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// A verified document of a trusted image that names an enclave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestedEnclave {
    /// [`EnclaveId::from_recipient_key`] of the document's `public_key`.
    pub enclave_id: [u8; 16],
    pub verified: VerifiedDocument,
    /// The index of the first trusted image its PCRs match.
    pub image: usize,
}

impl AttestedEnclave {
    /// Whether this document binds `key` as `enclave_id`'s checkpoint key.
    pub fn binds(&self, enclave_id: &[u8; 16], key: &[u8; 32]) -> bool {
        self.enclave_id == *enclave_id
            && self.verified.document.user_data.as_deref()
                == Some(checkpoint_key_binding(enclave_id, key).as_slice())
    }
}

/// Why a document vouches for no checkpoint key.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("{0}")]
    Verify(#[from] VerifyError),
    #[error(
        "the document carries no public_key (the enclave's recipient key): it names no enclave"
    )]
    NoPublicKey,
}

impl DocumentError {
    /// A stable name of the failed check ([`VerifyError::kind`], or `no_public_key`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Verify(e) => e.kind(),
            Self::NoPublicKey => "no_public_key",
        }
    }
}

/// Verifies `bytes` (a raw document) as the evidence of an enclave's checkpoint key: the chain to
/// `anchor` at the document's own timestamp, the signature, not debug mode, PCRs of one of
/// `images`, not from the future (against `now`), and a `public_key`.
pub fn check_document(
    bytes: &[u8],
    anchor: &TrustAnchor,
    images: &[BTreeMap<u8, Vec<u8>>],
    now: SystemTime,
) -> Result<AttestedEnclave, DocumentError> {
    let verified = verify_image_at_document_time(bytes, anchor, images, now)?;
    let doc = &verified.document;
    let public_key = doc.public_key.as_deref().ok_or(DocumentError::NoPublicKey)?;
    let enclave_id = EnclaveId::from_recipient_key(public_key).0;
    let image = images.iter().position(|i| image_matches(i, &doc.pcrs)).unwrap_or_default();
    Ok(AttestedEnclave { enclave_id, verified, image })
}

pub(crate) mod ser {
    use super::*;

    pub fn id<S: Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&uuid_text(id))
    }

    pub fn hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::hex::encode(bytes))
    }
}

/// What became of one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageAudit {
    pub index: usize,
    #[serde(serialize_with = "ser::id")]
    pub enclave_id: [u8; 16],
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    #[serde(serialize_with = "ser::hex")]
    pub checkpoint_key: [u8; 32],
    /// [`checkpoint_key_binding`] of the page's enclave and key: the `user_data` a document must
    /// carry.
    #[serde(serialize_with = "ser::hex")]
    pub binding: [u8; 32],
    /// Whether a verified document binds the key (then its checkpoints are checked with it).
    pub key_trusted: bool,
    /// The first document that binds it.
    pub bound_by: Option<usize>,
    /// Why the key is not trusted.
    pub key_problem: Option<String>,
    /// Receipts on the page.
    pub receipts: usize,
    /// Of those, how many an earlier page had not delivered (the rest are dropped as overlap).
    pub added: usize,
    pub checkpoint: Option<Checkpoint>,
    pub gap: Option<PageGap>,
    pub next_after: Option<u64>,
    pub more: Option<bool>,
}

/// Receipts a page says were evicted from the enclave's ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Eviction {
    pub page: usize,
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    /// Receipts `after + 1 ..= oldest − 1`.
    pub after: u64,
    pub oldest: u64,
    pub missing: u64,
    /// Whether the input holds every one of them anyway (from another page).
    pub covered: bool,
}

/// Where a receipt the verifier saw at some position came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub page: usize,
    pub index: usize,
}

/// A checkpoint key the audit trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TrustedKey {
    #[serde(serialize_with = "ser::id")]
    pub enclave_id: [u8; 16],
    #[serde(serialize_with = "ser::hex")]
    pub public_key: [u8; 32],
}

/// Everything [`audit`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Audit {
    pub pages: Vec<PageAudit>,
    /// Per document given, the pages whose key it binds.
    pub document_binds: Vec<Vec<usize>>,
    pub keys: Vec<TrustedKey>,
    /// The receipts the verifier saw, by position: their page and index there.
    pub positions: Vec<Source>,
    /// The checkpoints the verifier saw, by index: their page.
    pub checkpoint_pages: Vec<usize>,
    pub report: Report,
    pub evicted: Vec<Eviction>,
    pub reconciliation: Reconciliation,
    /// Documents that did not verify.
    pub invalid_documents: usize,
}

impl Audit {
    /// Findings that mean something is wrong (never excused by `--allow-partial`): an invalid
    /// document, an unbound page key, a problem in the verifier's report, a violation, a
    /// counter mismatch, a policy that does not decode.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.invalid_documents > 0 {
            out.push(format!("{} document(s) do not verify", self.invalid_documents));
        }
        let unbound = self.pages.iter().filter(|p| !p.key_trusted).count();
        if unbound > 0 {
            out.push(format!("{unbound} page(s) with a checkpoint key no document binds"));
        }
        if !self.report.ok() {
            out.push("the chain verifier found problems".into());
        }
        // A receipt no checkpoint vouches for is only the host's word: a genuine page's
        // checkpoint is signed with the page, so a complete fetch has none.
        let unvouched: u64 = self
            .report
            .chains
            .iter()
            .flat_map(|c| &c.unvouched)
            .map(|r| r.last.saturating_sub(r.first).saturating_add(1))
            .sum();
        if unvouched > 0 {
            out.push(format!("{unvouched} receipt(s) no checkpoint vouches for"));
        }
        let r = &self.reconciliation;
        if !r.violations.is_empty() {
            out.push(format!("{} policy violation(s)", r.violations.len()));
        }
        if !r.counter_mismatches.is_empty() {
            out.push(format!("{} counter mismatch(es)", r.counter_mismatches.len()));
        }
        let invalid = r.unreconciled_signatures(UnreconciledReason::PolicyInvalid);
        if invalid > 0 {
            out.push(format!("{invalid} signature(s) under a policy that does not decode"));
        }
        out
    }

    /// What the input does not cover (excused by `--allow-partial`): signatures whose grant's
    /// policy is not in the receipts, evicted receipts no other page holds.
    pub fn gaps_in_coverage(&self) -> Vec<String> {
        let mut out = Vec::new();
        let missing =
            self.reconciliation.unreconciled_signatures(UnreconciledReason::NoGrantReceipt);
        if missing > 0 {
            out.push(format!("{missing} signature(s) not reconciled: their grant's policy is not in these receipts"));
        }
        // A chain that begins mid-way: its start (and whatever it recorded) was not delivered,
        // whether the ring evicted it or someone left it out (a page's `gap` is not signed).
        for c in &self.report.chains {
            if c.start == signer_receipts::verify::ChainStartKind::Continues {
                out.push(format!(
                    "the chain of {} begins at receipt {}: the receipts before it were not \
                     delivered",
                    signer_types::ids::uuid_text(&c.decider),
                    c.first_seq
                ));
            }
        }
        let evicted: u64 = self.evicted.iter().filter(|e| !e.covered).map(|e| e.missing).sum();
        if evicted > 0 {
            out.push(format!(
                "{evicted} receipt(s) evicted from the enclave's ring and not delivered"
            ));
        }
        out
    }

    /// No problem, and complete (or `allow_partial`).
    pub fn ok(&self, allow_partial: bool) -> bool {
        self.problems().is_empty() && (allow_partial || self.gaps_in_coverage().is_empty())
    }
}

/// Audits `pages` with the outcome of checking each document (module docs).
pub fn audit(pages: &[Page], documents: &[Result<AttestedEnclave, DocumentError>]) -> Audit {
    // Keys.
    let mut keys: Vec<TrustedKey> = Vec::new();
    let mut document_binds = vec![Vec::new(); documents.len()];
    let mut page_audits = Vec::with_capacity(pages.len());
    for (index, page) in pages.iter().enumerate() {
        let bound_by = documents.iter().enumerate().find_map(|(d, doc)| {
            doc.as_ref().ok().filter(|a| a.binds(&page.enclave_id, &page.checkpoint_key)).map(|_| d)
        });
        for (d, doc) in documents.iter().enumerate() {
            if let (Ok(a), Some(binds)) = (doc, document_binds.get_mut(d))
                && a.binds(&page.enclave_id, &page.checkpoint_key)
            {
                binds.push(index);
            }
        }
        let key_problem = match bound_by {
            Some(_) => None,
            None => {
                let names = documents.iter().enumerate().find_map(|(d, doc)| {
                    doc.as_ref().ok().filter(|a| a.enclave_id == page.enclave_id).map(|_| d)
                });
                Some(match names {
                    Some(d) => format!(
                        "document #{d} names enclave {} but its user_data is not the binding of \
                         this checkpoint key: the page's checkpoints vouch for nothing",
                        uuid_text(&page.enclave_id)
                    ),
                    None => format!(
                        "no verified document names enclave {}: the page's checkpoints vouch \
                         for nothing",
                        uuid_text(&page.enclave_id)
                    ),
                })
            }
        };
        if bound_by.is_some() {
            let key = TrustedKey { enclave_id: page.enclave_id, public_key: page.checkpoint_key };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        page_audits.push(PageAudit {
            index,
            enclave_id: page.enclave_id,
            decider: page.decider,
            checkpoint_key: page.checkpoint_key,
            binding: checkpoint_key_binding(&page.enclave_id, &page.checkpoint_key),
            key_trusted: bound_by.is_some(),
            bound_by,
            key_problem,
            receipts: page.receipts.len(),
            added: 0,
            checkpoint: page.checkpoint.map(|c| c.checkpoint),
            gap: page.gap,
            next_after: page.next_after,
            more: page.more,
        });
    }

    // Receipts: those an earlier page delivered are dropped; duplicates within a page are kept.
    let mut combined: Vec<&[u8]> = Vec::new();
    let mut positions = Vec::new();
    let mut earlier: HashSet<[u8; 32]> = HashSet::new();
    for (p, (page, page_audit)) in pages.iter().zip(page_audits.iter_mut()).enumerate() {
        let mut this_page: Vec<[u8; 32]> = Vec::new();
        for (index, bytes) in page.receipts.iter().enumerate() {
            let hash = receipt_hash(bytes);
            if earlier.contains(&hash) {
                continue;
            }
            this_page.push(hash);
            combined.push(bytes);
            positions.push(Source { page: p, index });
            page_audit.added += 1;
        }
        earlier.extend(this_page);
    }
    let mut checkpoints: Vec<SignedCheckpoint> = Vec::new();
    let mut checkpoint_pages = Vec::new();
    for (p, page) in pages.iter().enumerate() {
        if let Some(c) = page.checkpoint
            && !checkpoints.contains(&c)
        {
            checkpoints.push(c);
            checkpoint_pages.push(p);
        }
    }
    let key_pairs: Vec<([u8; 16], [u8; 32])> =
        keys.iter().map(|k| (k.enclave_id, k.public_key)).collect();
    let report = verify(&combined, &checkpoints, &key_pairs);

    // Distinct decoded receipts in delivery order (what reconciliation counts).
    let mut distinct: Vec<Receipt> = Vec::new();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    for bytes in &combined {
        if seen.insert(receipt_hash(bytes))
            && let Ok(r) = Receipt::decode(bytes)
        {
            distinct.push(r);
        }
    }

    // Evictions, and whether other pages cover them.
    let mut seqs: BTreeMap<[u8; 16], BTreeSet<u64>> = BTreeMap::new();
    for r in &distinct {
        seqs.entry(r.decider).or_default().insert(r.seq);
    }
    let evicted = pages
        .iter()
        .enumerate()
        .filter_map(|(p, page)| {
            let gap = page.gap?;
            let missing = gap.missing();
            if missing == 0 {
                return None;
            }
            let held = seqs
                .get(&page.decider)
                .map_or(0, |s| s.range(gap.after.saturating_add(1)..gap.oldest).count() as u64);
            Some(Eviction {
                page: p,
                decider: page.decider,
                after: gap.after,
                oldest: gap.oldest,
                missing,
                covered: held >= missing,
            })
        })
        .collect();

    let reconciliation = reconcile(&distinct);
    Audit {
        pages: page_audits,
        document_binds,
        keys,
        positions,
        checkpoint_pages,
        report,
        evicted,
        reconciliation,
        invalid_documents: documents.iter().filter(|d| d.is_err()).count(),
    }
}
