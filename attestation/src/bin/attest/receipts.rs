//! `attest receipts`: reads the files, runs [`nitro_attestation::receipts`], prints the outcome.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nitro_attestation::ParseError;
use nitro_attestation::receipts::{
    AttestedEnclave, Audit, Basis, DocumentError, Relation, UnreconciledReason, audit,
    check_document, parse_pages,
};
use serde_json::{Value, json};
use signer_types::ids::uuid_text;

use super::{
    UsageError, VerifyError, decode_document, document_json, format_unix, load_anchor, load_images,
    parse_time, read_file_or_inline, read_input_limited,
};

/// Largest receipts file accepted (a full ring of grant receipts with large policies).
const MAX_RECEIPTS_INPUT_LEN: u64 = 256 * 1024 * 1024;

pub const LONG_ABOUT: &str = "\
Verify decision receipts offline (docs/receipts.md, \"Verifying with attest receipts\").

--receipts is what GET /v1/receipts returned: one page object, or a JSON array of pages in the \
order they were fetched (successive pages, and the pages of several cluster members). A receipt \
an earlier page already delivered is dropped; a receipt delivered twice within one page is kept, \
so the verifier reports the duplicate. Every receipt must decode and every checkpoint be 145 \
bytes: otherwise the file is malformed input (exit 2).

1. Each --document (GET /v1/attestation's JSON, or the raw / base64 / hex document) is verified \
as `attest provenance` does: the AWS chain (or --root) at the document's own timestamp, its \
signature, not debug mode, PCRs equal to one of the --measurements images, and a public_key, \
the enclave's recipient key, whose enclave id it names. A page's checkpoint key is trusted only \
if a verified document names the page's enclave_id and its user_data is the binding of that \
id and key; otherwise the page's checkpoints vouch for nothing.
2. The receipts and checkpoints of all pages go through the chain verifier: duplicates, \
reorders, gaps, forks, handovers, checkpoints, and per chain how it starts (a restart names no \
predecessor), what is vouched for and the unvouched tail. A page's `gap` (receipts evicted from \
the enclave's ring) is reported too.
3. Every signature is reconciled with its grant's policy (from the grant_created receipt): per \
transaction, per spend key (wallet, bot, agent) and UTC day, the per-minute rate, and the \
receipts' own counters. A signature whose grant's policy is not in the receipts is not \
reconciled: the history is incomplete.

Exit status: 0 everything verifies and reconciles; 1 a problem was found, or the history is \
incomplete (unreconciled signatures, evicted receipts no page holds) and --allow-partial was not \
given; 2 usage, I/O or malformed input.

--json prints one object with the keys: ok, complete, allow_partial, problems, incomplete, \
root_sha256, documents (index, source, valid, enclave_id, image, document, error, binds), pages \
(index, enclave_id, decider, checkpoint_key, binding, key_trusted, bound_by, key_problem, \
receipts, added, checkpoint, gap, next_after, more), keys (enclave_id, public_key), report (the \
chain verifier's report), report_ok, positions (page and index of each receipt the report \
numbers), checkpoint_pages, evicted (page, decider, after, oldest, missing, covered) and \
reconciliation (grants, signatures, reconciled, counters_checked, unreconciled, violations, \
counter_mismatches).";

#[derive(clap::Args)]
pub struct ReceiptsArgs {
    /// What `GET /v1/receipts` returned: a page object or a JSON array of pages, in the order
    /// fetched; `-` for stdin.
    #[arg(long)]
    receipts: PathBuf,
    /// An attestation document of an enclave that signs checkpoints: a file (GET
    /// /v1/attestation's JSON, raw CBOR, base64 or hex), `-` for stdin, or base64 text. Repeat
    /// for every member whose pages are given.
    #[arg(long, required = true)]
    document: Vec<String>,
    /// A trusted image: `nitro-cli build-enclave` / `describe-eif` measurement JSON. Repeat for
    /// every image the documents may come from.
    #[arg(long, required = true)]
    measurements: Vec<PathBuf>,
    /// Trust anchor PEM (default: the pinned AWS Nitro root G1; the sim CA's root in simulation).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The verifier's clock, for refusing documents from the future: unix seconds or RFC 3339
    /// (default: now). Chains are checked at each document's own timestamp.
    #[arg(long)]
    at: Option<String>,
    /// Accept an incomplete history (exit 0): signatures whose grant's policy is not in the
    /// receipts, receipts evicted from the ring that no page holds. Problems still fail.
    #[arg(long)]
    allow_partial: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How a `--document` value was given, for the report.
fn source(value: &str) -> String {
    if value == "-" {
        "stdin".into()
    } else if Path::new(value).is_file() {
        value.into()
    } else {
        "inline base64".into()
    }
}

pub fn run(args: ReceiptsArgs) -> Result<ExitCode, UsageError> {
    let input = read_input_limited(&args.receipts, MAX_RECEIPTS_INPUT_LEN)?;
    let pages =
        parse_pages(&input).map_err(|e| UsageError(format!("{}: {e}", args.receipts.display())))?;
    let now = parse_time(args.at.as_deref())?;
    let anchor = load_anchor(args.root.as_deref())?;
    let images = load_images(&args.measurements)?;
    let mut sources = Vec::with_capacity(args.document.len());
    let mut documents = Vec::with_capacity(args.document.len());
    for value in &args.document {
        let input = read_file_or_inline("document", value)?;
        let outcome = decode_document(&input)
            .map_err(|reason| {
                DocumentError::Verify(VerifyError::Parse(ParseError::Malformed(reason)))
            })
            .and_then(|bytes| check_document(&bytes, &anchor, &images, now));
        sources.push(source(value));
        documents.push(outcome);
    }
    let audit = audit(&pages, &documents);
    let ok = audit.ok(args.allow_partial);
    let problems = audit.problems();
    let incomplete = audit.gaps_in_coverage();
    let image_name =
        |i: usize| args.measurements.get(i).map(|p| p.display().to_string()).unwrap_or_default();

    if args.json {
        let documents: Vec<Value> = documents
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let binds = audit.document_binds.get(i).cloned().unwrap_or_default();
                match d {
                    Ok(a) => json!({
                        "index": i,
                        "source": sources.get(i),
                        "valid": true,
                        "enclave_id": uuid_text(&a.enclave_id),
                        "image": image_name(a.image),
                        "document": document_json(&a.verified.document),
                        "error": null,
                        "binds": binds,
                    }),
                    Err(e) => json!({
                        "index": i,
                        "source": sources.get(i),
                        "valid": false,
                        "enclave_id": null,
                        "image": null,
                        "document": null,
                        "error": {"kind": e.kind(), "message": e.to_string()},
                        "binds": binds,
                    }),
                }
            })
            .collect();
        println!(
            "{}",
            json!({
                "ok": ok,
                "complete": incomplete.is_empty(),
                "allow_partial": args.allow_partial,
                "problems": problems,
                "incomplete": incomplete,
                "root_sha256": anchor.sha256_hex(),
                "documents": documents,
                "pages": audit.pages,
                "keys": audit.keys,
                "report": audit.report,
                "report_ok": audit.report.ok(),
                "positions": audit.positions,
                "checkpoint_pages": audit.checkpoint_pages,
                "evicted": audit.evicted,
                "reconciliation": audit.reconciliation,
            })
        );
    } else {
        print_documents(&documents, &sources, &audit, &image_name);
        print_pages(&audit);
        print_chain(&audit);
        print_reconciliation(&audit);
        if ok {
            if incomplete.is_empty() {
                println!("OK: every receipt verifies and every signature reconciles");
            } else {
                println!("OK, INCOMPLETE (accepted by --allow-partial): {}", incomplete.join("; "));
            }
        } else {
            let mut reasons = problems.clone();
            if !args.allow_partial && !incomplete.is_empty() {
                reasons.push(format!(
                    "incomplete: {} (pass --allow-partial to accept)",
                    incomplete.join("; ")
                ));
            }
            println!("FAILED: {}", reasons.join("; "));
            eprintln!("invalid: {}", reasons.join("; "));
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_documents(
    documents: &[Result<AttestedEnclave, DocumentError>],
    sources: &[String],
    audit: &Audit,
    image_name: &dyn Fn(usize) -> String,
) {
    println!("documents");
    for (i, d) in documents.iter().enumerate() {
        let from = sources.get(i).map(String::as_str).unwrap_or_default();
        match d {
            Ok(a) => {
                let doc = &a.verified.document;
                let binds = audit.document_binds.get(i).cloned().unwrap_or_default();
                let binds = if binds.is_empty() {
                    "binds no page's checkpoint key".to_string()
                } else {
                    let pages: Vec<String> = binds.iter().map(|p| format!("#{p}")).collect();
                    format!("binds the checkpoint key of page {}", pages.join(", "))
                };
                println!(
                    "  #{i} {from}: valid; enclave {}, image {}, attested {} by module {} (chain \
                     checked at that time); {binds}",
                    uuid_text(&a.enclave_id),
                    image_name(a.image),
                    format_unix(i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX)),
                    doc.module_id,
                );
            }
            Err(e) => println!("  #{i} {from}: INVALID ({}): {e}", e.kind()),
        }
    }
}

fn print_pages(audit: &Audit) {
    println!("pages");
    for p in &audit.pages {
        let checkpoint = match &p.checkpoint {
            Some(c) => format!("checkpoint at receipt {} (time {})", c.seq, c.time),
            None => "no checkpoint".into(),
        };
        let key = match (p.bound_by, &p.key_problem) {
            (Some(d), _) => format!("bound by document #{d}"),
            (None, Some(problem)) => format!("NOT TRUSTED: {problem}"),
            (None, None) => "NOT TRUSTED".into(),
        };
        println!(
            "  #{} enclave {}, decider {}: {} receipts ({} not on an earlier page), {checkpoint}; \
             checkpoint key {}: {key}",
            p.index,
            uuid_text(&p.enclave_id),
            uuid_text(&p.decider),
            p.receipts,
            p.added,
            hex::encode(p.checkpoint_key),
        );
    }
    for e in &audit.evicted {
        let first = e.after.saturating_add(1);
        let last = e.oldest.saturating_sub(1);
        println!(
            "  gap (page #{}): receipts {first}–{last} of {} ({} receipts) were evicted from the \
             enclave's ring; {}",
            e.page,
            uuid_text(&e.decider),
            e.missing,
            if e.covered { "another page delivered them" } else { "no page delivered them" }
        );
    }
}

fn print_chain(audit: &Audit) {
    println!("chain");
    for line in audit.report.to_string().lines() {
        println!("  {line}");
    }
    let r = &audit.report;
    let mut mentioned: Vec<usize> = r.duplicates.iter().flat_map(|d| d.positions.clone()).collect();
    mentioned.extend(r.reorders.iter().flat_map(|o| [o.position, o.previous_position]));
    mentioned.extend(r.forks.iter().flat_map(|f| f.positions.clone()));
    mentioned.sort_unstable();
    mentioned.dedup();
    if !mentioned.is_empty() {
        let each: Vec<String> = mentioned
            .iter()
            .filter_map(|&i| {
                audit
                    .positions
                    .get(i)
                    .map(|s| format!("{i} = page #{} receipts[{}]", s.page, s.index))
            })
            .collect();
        println!("  positions (over all pages, in order): {}", each.join(", "));
    }
}

fn print_reconciliation(audit: &Audit) {
    let r = &audit.reconciliation;
    println!("reconciliation");
    println!(
        "  {} grant receipt(s); {} signature(s): {} reconciled with their grant's policy, {} \
         with counters recomputed from the chain's start",
        r.grants.len(),
        r.signatures,
        r.reconciled,
        r.counters_checked
    );
    for g in &r.grants {
        let policy = match (&g.policy, &g.policy_error) {
            (Some(_), _) => "policy decoded".to_string(),
            (None, Some(e)) => format!("POLICY DOES NOT DECODE: {e}"),
            (None, None) => "no policy".into(),
        };
        println!(
            "  grant {} (receipt {} of {}): wallet {}, bot {}, agent {}; {policy}; {} signatures",
            uuid_text(&g.grant_id),
            g.seq,
            uuid_text(&g.decider),
            g.wallet,
            uuid_text(&g.bot_id),
            g.agent,
            g.signatures
        );
    }
    for u in &r.unreconciled {
        let seqs: Vec<String> = u.seqs.iter().map(u64::to_string).collect();
        let why = match u.reason {
            UnreconciledReason::NoGrantReceipt => "policy not in these receipts",
            UnreconciledReason::PolicyInvalid => "policy does not decode",
        };
        println!(
            "  grant {}: {why}; {} signatures not reconciled (receipts {})",
            uuid_text(&u.grant_id),
            u.signatures,
            seqs.join(", ")
        );
    }
    for v in &r.violations {
        let numbers = match (v.limit, v.actual) {
            (Some(limit), Some(actual)) => format!("limit {limit}, actual {actual}"),
            _ => String::new(),
        };
        let basis = match v.basis {
            Basis::Transaction => "the transaction",
            Basis::Receipts => "the delivered receipts",
            Basis::RecordedCounter => "the receipt's counter",
            Basis::Grant => "the grant",
        };
        println!(
            "  VIOLATION: receipt {} of {} (grant {}): {}{}: {numbers} (from {basis}): {}",
            v.seq,
            uuid_text(&v.decider),
            uuid_text(&v.grant_id),
            v.rule,
            v.subject.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default(),
            v.message
        );
    }
    for m in &r.counter_mismatches {
        let relation = match m.relation {
            Relation::Equal => "recomputed",
            Relation::AtLeast => "at least",
        };
        println!(
            "  COUNTER MISMATCH: receipt {} of {} (grant {}): after.{} is {}, {relation} {}",
            m.seq,
            uuid_text(&m.decider),
            uuid_text(&m.grant_id),
            m.field,
            m.recorded,
            m.recomputed
        );
    }
}
