//! `attest` — verify and inspect AWS Nitro Enclaves attestation documents, and write or explain
//! KMS key policies bound to enclave measurements.
//!
//! Exit status: 0 valid / allowed, 1 invalid / denied (reason on stderr, or in the JSON), 2 usage
//! or I/O error.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::{Parser, Subcommand};
use nitro_attestation::chain::{format_unix, summarize};
use nitro_attestation::key_policy::{self, Decision, Effect, KeyPolicy, KeyPolicyParams, Request};
use nitro_attestation::policy::{merge_pcr, parse_pcr_pair, pcrs_from_measurements_json};
use nitro_attestation::{
    AttestationDocument, AttestationPolicy, TrustAnchor, VerifiedDocument, VerifyError,
    verify_at_document_time, verify_parsed,
};
use serde_json::{Value, json};
use signer_types::ids::{parse_uuid, uuid_text};
use signer_types::provenance::Subject;
use signer_types::pubkey::Pubkey;
use signer_types::records::{RECORD_VERSION, RecordType, SealedVault, VaultOrigin, peek_type};

/// Largest input file accepted (documents are ~4.5 KiB; base64 or hex at most doubles that).
const MAX_INPUT_LEN: u64 = 1024 * 1024;

#[path = "attest/receipts.rs"]
mod receipts_cmd;

#[derive(Parser)]
#[command(
    name = "attest",
    version,
    about = "Verify AWS Nitro Enclaves attestation documents and write KMS key policies bound to PCRs",
    long_about = "Verify AWS Nitro Enclaves attestation documents offline and reproducibly, and write or \
explain KMS key policies bound to enclave measurements.\n\nDocuments may be given as raw CBOR, base64 \
or hex, or as GET /v1/attestation's JSON (auto-detected). Exit status: 0 valid/allowed, 1 \
invalid/denied, 2 usage or I/O error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a document: signature, certificate chain to the AWS Nitro root (or --root), then the
    /// PCR / freshness / field policy given by the options.
    Verify(VerifyArgs),
    /// Verify a vault's or agent key's provenance offline: the document's AWS chain at the
    /// document's own timestamp, its signature, not debug mode, PCRs equal to one of the trusted
    /// images, and user_data equal to the binding recomputed from the record.
    Provenance(ProvenanceArgs),
    /// Verify decision receipts as `GET /v1/receipts` returns them: the attestation binding of
    /// each page's checkpoint key, every checkpoint signature, the chain's continuity, and every
    /// signature reconciled with its grant's policy.
    #[command(long_about = receipts_cmd::LONG_ABOUT)]
    Receipts(receipts_cmd::ReceiptsArgs),
    /// Recompute an enclave image's PCR0, PCR1, PCR2 (and PCR8 if it is signed) from the EIF file
    /// alone, with this crate's own parser: compare with the published measurements.json.
    Measure {
        /// The EIF file.
        #[arg(long)]
        eif: PathBuf,
        /// Print `nitro-cli`'s measurement JSON (the input to `key-policy --pcrs`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a document's contents without verifying it.
    Inspect {
        /// Document file (raw CBOR, base64, hex or /v1/attestation JSON), or `-` for stdin.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a KMS key policy that allows Decrypt only to an enclave with these measurements
    /// (or, with --interim, the policy to create the key with: Decrypt denied to everyone).
    KeyPolicy {
        /// `nitro-cli build-enclave` / `describe-eif` measurement JSON. Repeat to allow several
        /// images at once (during an upgrade: the old and the new).
        #[arg(long, required_unless_present = "interim")]
        pcrs: Vec<PathBuf>,
        /// ARN of the role the parent daemon runs as (it calls Decrypt with the enclave's attestation).
        #[arg(long, required_unless_present = "interim")]
        role_arn: Option<String>,
        /// The policy to create the key with, before the image exists (its PCR0 covers the key's
        /// public key): key administration only, Decrypt and ReEncrypt* denied to everyone.
        #[arg(long, conflicts_with_all = ["pcrs", "encrypt_role_arn"])]
        interim: bool,
        /// PCR indexes to pin (0 = ImageSha384 is required; 1, 2, 3, 8 optional).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        pin: Vec<u8>,
        /// Key administrator ARN (default: the role's account root). Never granted Decrypt.
        #[arg(long)]
        admin_arn: Option<String>,
        /// A backend role allowed kms:Encrypt (symmetric keys, grant wrap_alg 2).
        #[arg(long)]
        encrypt_role_arn: Option<String>,
        /// The only IAM role allowed kms:ScheduleKeyDeletion, DeleteImportedKeyMaterial and
        /// ReplicateKey (an explicit Deny binds every other principal). Without it those are
        /// denied to everyone: deleting the key then needs a policy that names a break-glass role.
        #[arg(long)]
        break_glass_role_arn: Option<String>,
    },
    /// Would KMS allow a Decrypt carrying this document under this key policy? Shows every
    /// condition with the document's value.
    Explain {
        /// Document file (raw CBOR, base64, hex or /v1/attestation JSON), or `-` for stdin.
        file: PathBuf,
        /// The key policy JSON (as from `aws kms get-key-policy --query Policy --output text`).
        #[arg(long)]
        policy: PathBuf,
        /// The caller's ARN; without it, principals are not compared.
        #[arg(long)]
        principal: Option<String>,
        /// Trust anchor PEM (default: the pinned AWS Nitro root G1).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Verification time: unix seconds or RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Document file (raw CBOR, base64, hex or /v1/attestation JSON), or `-` for stdin.
    file: PathBuf,
    /// Verification time: unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Expected PCRs from `nitro-cli` measurement JSON.
    #[arg(long)]
    pcrs: Option<PathBuf>,
    /// Expected PCR as N=HEX (repeatable).
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcr: Vec<String>,
    /// Accept debug-mode documents (PCR0–2 all zero). Never in production.
    #[arg(long)]
    allow_debug: bool,
    /// Maximum document age, e.g. 5m, 300s.
    #[arg(long)]
    max_age: Option<String>,
    /// Expected nonce (hex).
    #[arg(long)]
    nonce: Option<String>,
    /// Expected user_data (hex).
    #[arg(long)]
    user_data: Option<String>,
    /// Expected public_key (hex).
    #[arg(long)]
    public_key: Option<String>,
    /// Trust anchor PEM (default: the pinned AWS Nitro root G1).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ProvenanceArgs {
    /// The record (vault, type 4, or agent key, type 2): a file (raw, base64 or hex), `-` for
    /// stdin, or the base64 text itself (as the HTTP API returns it).
    #[arg(long)]
    record: String,
    /// Its provenance document: a file (raw CBOR, base64, hex or /v1/attestation JSON), `-` for
    /// stdin, or base64 text.
    #[arg(long)]
    document: String,
    /// A trusted image: `nitro-cli build-enclave` / `describe-eif` measurement JSON. Repeat for
    /// every image whose records you accept (the current one and its predecessors).
    #[arg(long, required = true)]
    measurements: Vec<PathBuf>,
    /// For an agent key: the id of the vault it was made from (its binding includes it).
    #[arg(long, value_name = "UUID")]
    vault_id: Option<String>,
    /// The wallet the record must belong to (base58). Without it, any owner is reported.
    #[arg(long, value_name = "BASE58")]
    wallet: Option<String>,
    /// Trust anchor PEM (default: the pinned AWS Nitro root G1).
    #[arg(long)]
    root: Option<PathBuf>,
    /// The verifier's clock, for refusing documents from the future: unix seconds or RFC 3339
    /// (default: now). The chain itself is checked at the document's timestamp.
    #[arg(long)]
    at: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A usage or I/O problem (exit 2).
struct UsageError(String);

impl<E: std::fmt::Display> From<E> for UsageError {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify(args) => run_verify(args),
        Command::Provenance(args) => run_provenance(args),
        Command::Receipts(args) => receipts_cmd::run(args),
        Command::Inspect { file, json } => run_inspect(&file, json),
        Command::Measure { eif, json } => run_measure(&eif, json),
        Command::KeyPolicy {
            pcrs,
            role_arn,
            interim,
            pin,
            admin_arn,
            encrypt_role_arn,
            break_glass_role_arn,
        } => {
            if break_glass_role_arn.is_none() {
                eprintln!(
                    "attest: no --break-glass-role-arn: the policy denies kms:ScheduleKeyDeletion, DeleteImportedKeyMaterial and ReplicateKey to everyone"
                );
            }
            if interim {
                run_interim_key_policy(
                    role_arn.as_deref(),
                    admin_arn.as_deref(),
                    break_glass_role_arn.as_deref(),
                )
            } else {
                run_key_policy(
                    &pcrs,
                    role_arn.as_deref().unwrap_or_default(),
                    &pin,
                    admin_arn.as_deref(),
                    encrypt_role_arn.as_deref(),
                    break_glass_role_arn.as_deref(),
                )
            }
        }
        Command::Explain { file, policy, principal, root, at, json } => {
            run_explain(&file, &policy, principal.as_deref(), root.as_deref(), at.as_deref(), json)
        }
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            eprintln!("attest: {message}");
            ExitCode::from(2)
        }
    }
}

fn run_measure(eif: &Path, json: bool) -> Result<ExitCode, UsageError> {
    let m = nitro_attestation::eif::measure_file(eif)
        .map_err(|e| UsageError(format!("{}: {e}", eif.display())))?;
    if json {
        println!("{}", m.measurements_json());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: EIF version {}, flags {:#06x}", eif.display(), m.version, m.flags);
    for s in &m.sections {
        println!(
            "  {:<9} at {:>10}  {:>10} bytes  sha384 {}",
            s.kind.name(),
            s.offset,
            s.size,
            hex::encode(s.sha384)
        );
    }
    println!("HashAlgorithm: SHA-384");
    for (index, value) in &m.pcrs {
        println!("PCR{index}: {}", hex::encode(value));
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &Path) -> Result<Vec<u8>, UsageError> {
    read_input_limited(file, MAX_INPUT_LEN)
}

/// A file, or stdin for `-`, of at most `max` bytes.
fn read_input_limited(file: &Path, max: u64) -> Result<Vec<u8>, UsageError> {
    let mut bytes = Vec::new();
    let limited = |r: &mut dyn std::io::Read, out: &mut Vec<u8>| r.take(max + 1).read_to_end(out);
    if file == Path::new("-") {
        limited(&mut std::io::stdin().lock(), &mut bytes)
    } else {
        let mut f = std::fs::File::open(file)
            .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
        limited(&mut f, &mut bytes)
    }
    .map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    if bytes.len() as u64 > max {
        return Err(UsageError(format!("{}: larger than {max} bytes", file.display())));
    }
    Ok(bytes)
}

/// Raw CBOR, hex / base64 text of it, or `GET /v1/attestation`'s JSON (`{"document": base64,
/// …}`; only `document` is read).
fn decode_document(input: &[u8]) -> Result<Vec<u8>, String> {
    match input.first() {
        // array(4), indefinite array, tag 18: binary COSE_Sign1.
        Some(0x84 | 0x9f | 0xd2) => Ok(input.to_vec()),
        _ if input.trim_ascii_start().starts_with(b"{") => {
            let value: Value =
                serde_json::from_slice(input).map_err(|e| format!("not JSON: {e}"))?;
            let text = value.get("document").and_then(Value::as_str).ok_or_else(|| {
                "a JSON object without a \"document\" string (expected GET /v1/attestation's \
                 response)"
                    .to_string()
            })?;
            decode_text(text.as_bytes())
        }
        _ => decode_text(input),
    }
}

/// A raw record (it starts with its little-endian version), or hex / base64 text of it.
fn decode_record(input: &[u8]) -> Result<Vec<u8>, String> {
    if input.starts_with(&RECORD_VERSION.to_le_bytes()) {
        return Ok(input.to_vec());
    }
    decode_text(input)
}

/// Hex or base64 (standard or URL-safe, padded or not) text, whitespace ignored.
fn decode_text(input: &[u8]) -> Result<Vec<u8>, String> {
    if input.is_empty() {
        return Err("empty input".into());
    }
    let text = std::str::from_utf8(input).map_err(|_| "not binary, hex or base64".to_string())?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len().is_multiple_of(2) && compact.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(&compact).map_err(|e| e.to_string());
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(&compact).ok())
        .ok_or_else(|| "not binary, hex or base64".to_string())
}

/// Shortest inline value taken as base64 text rather than a file name (the smallest record is
/// well over 100 bytes, so over 130 characters of base64).
const MIN_INLINE_LEN: usize = 64;

/// A `--record` / `--document` value: `-` (stdin), an existing file, or inline base64 text.
fn read_file_or_inline(flag: &str, value: &str) -> Result<Vec<u8>, UsageError> {
    let path = Path::new(value);
    if value == "-" || path.is_file() {
        return read_input(path);
    }
    let inline = value.len() >= MIN_INLINE_LEN
        && value.len() as u64 <= MAX_INPUT_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b));
    if inline {
        Ok(value.as_bytes().to_vec())
    } else {
        Err(UsageError(format!("--{flag} {value}: no such file, and not base64 text")))
    }
}

fn parse_time(at: Option<&str>) -> Result<SystemTime, UsageError> {
    let Some(at) = at else { return Ok(SystemTime::now()) };
    if let Ok(secs) = at.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| UsageError(format!("--at {at:?}: expected unix seconds or RFC 3339 ({e})")))?;
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| UsageError(format!("--at {at:?}: before 1970")))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

fn parse_hex(flag: &str, value: Option<&str>) -> Result<Option<Vec<u8>>, UsageError> {
    value
        .map(|v| hex::decode(v.trim()).map_err(|e| UsageError(format!("--{flag}: not hex ({e})"))))
        .transpose()
}

fn load_anchor(root: Option<&Path>) -> Result<TrustAnchor, UsageError> {
    match root {
        None => Ok(TrustAnchor::aws_nitro_root_g1()),
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            TrustAnchor::from_pem(&pem).map_err(|e| UsageError(format!("{}: {e}", path.display())))
        }
    }
}

/// Trusted images from `nitro-cli` measurement JSON files (`--measurements`, `--pcrs`).
fn load_images(paths: &[PathBuf]) -> Result<Vec<BTreeMap<u8, Vec<u8>>>, UsageError> {
    paths
        .iter()
        .map(|path| {
            let json = std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            pcrs_from_measurements_json(&json)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))
        })
        .collect()
}

fn build_policy(args: &VerifyArgs) -> Result<AttestationPolicy, UsageError> {
    let mut pcrs = BTreeMap::new();
    if let Some(path) = &args.pcrs {
        let json = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        for (index, value) in pcrs_from_measurements_json(&json)? {
            merge_pcr(&mut pcrs, index, value)?;
        }
    }
    for pair in &args.pcr {
        let (index, value) = parse_pcr_pair(pair)?;
        merge_pcr(&mut pcrs, index, value)?;
    }
    let max_age = args
        .max_age
        .as_deref()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| UsageError(format!("--max-age {s:?}: {e}")))
        })
        .transpose()?;
    Ok(AttestationPolicy {
        pcrs,
        allow_debug: args.allow_debug,
        max_age,
        nonce: parse_hex("nonce", args.nonce.as_deref())?,
        user_data: parse_hex("user-data", args.user_data.as_deref())?,
        public_key: parse_hex("public-key", args.public_key.as_deref())?,
    })
}

fn optional_hex(v: &Option<Vec<u8>>) -> Value {
    v.as_ref().map(|b| Value::String(hex::encode(b))).unwrap_or(Value::Null)
}

fn pcrs_json(doc: &AttestationDocument) -> Value {
    Value::Object(
        doc.pcrs.iter().map(|(i, v)| (i.to_string(), Value::String(hex::encode(v)))).collect(),
    )
}

fn document_json(doc: &AttestationDocument) -> Value {
    json!({
        "module_id": doc.module_id,
        "timestamp_ms": doc.timestamp_ms,
        "timestamp": format_unix(i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX)),
        "debug_mode": doc.is_debug_mode(),
        "pcrs": pcrs_json(doc),
        "public_key": optional_hex(&doc.public_key),
        "user_data": optional_hex(&doc.user_data),
        "nonce": optional_hex(&doc.nonce),
    })
}

fn error_json(e: &VerifyError) -> Value {
    json!({"kind": e.kind(), "message": e.to_string()})
}

fn run_verify(args: VerifyArgs) -> Result<ExitCode, UsageError> {
    let input = read_input(&args.file)?;
    let now = parse_time(args.at.as_deref())?;
    let anchor = load_anchor(args.root.as_deref())?;
    let policy = build_policy(&args)?;
    let outcome = decode_document(&input)
        .map_err(|reason| VerifyError::Parse(nitro_attestation::ParseError::Malformed(reason)))
        .and_then(|bytes| Ok(AttestationDocument::parse(&bytes)?))
        .and_then(|doc| verify_parsed(doc, &anchor, now))
        .and_then(|verified| {
            policy.check(&verified, now)?;
            Ok(verified)
        });
    match outcome {
        Ok(verified) => {
            if args.json {
                let mut out = document_json(&verified.document);
                if let Value::Object(map) = &mut out {
                    map.insert("valid".into(), Value::Bool(true));
                    map.insert("root_sha256".into(), anchor.sha256_hex().into());
                    map.insert("chain".into(), chain_json(&verified));
                }
                println!("{out}");
            } else {
                print_valid(&verified, &anchor, &policy);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                println!("{}", json!({"valid": false, "error": error_json(&e)}));
            } else {
                eprintln!("invalid: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn chain_json(verified: &VerifiedDocument) -> Value {
    Value::Array(
        verified
            .chain
            .iter()
            .map(|c| {
                json!({
                    "subject": c.subject,
                    "issuer": c.issuer,
                    "not_before": format_unix(c.not_before),
                    "not_after": format_unix(c.not_after),
                })
            })
            .collect(),
    )
}

fn print_valid(verified: &VerifiedDocument, anchor: &TrustAnchor, policy: &AttestationPolicy) {
    let doc = &verified.document;
    println!("valid");
    println!("  module      {}", doc.module_id);
    println!(
        "  timestamp   {} ({} ms)",
        format_unix(i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX)),
        doc.timestamp_ms
    );
    println!("  root        sha256 {}", anchor.sha256_hex());
    if policy.pcrs.is_empty() {
        println!("  pcrs        not compared (pass --pcrs or --pcr to pin measurements)");
    }
    for index in policy.pcrs.keys() {
        println!("  PCR{index:<2}       matches");
    }
    if doc.is_debug_mode() {
        println!("  debug mode  yes (accepted because of --allow-debug)");
    }
}

/// Why a record's provenance does not hold (exit 1).
enum ProvenanceFailure {
    /// The record is not a well-formed vault or agent key.
    Record(String),
    /// The record belongs to another wallet than `--wallet`.
    Wallet { expected: Pubkey, actual: Pubkey },
    /// The document does not verify against the record.
    Document(VerifyError),
}

impl ProvenanceFailure {
    fn json(&self) -> Value {
        match self {
            Self::Record(message) => json!({"kind": "record_invalid", "message": message}),
            Self::Wallet { expected, actual } => json!({
                "kind": "wrong_wallet",
                "message": format!("the record belongs to wallet {actual}, not {expected}"),
            }),
            Self::Document(e) => error_json(e),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Record(message) => format!("record: {message}"),
            Self::Wallet { expected, actual } => {
                format!("the record belongs to wallet {actual}, not {expected}")
            }
            Self::Document(e) => e.to_string(),
        }
    }
}

fn run_provenance(args: ProvenanceArgs) -> Result<ExitCode, UsageError> {
    let record_input = read_file_or_inline("record", &args.record)?;
    let document_input = read_file_or_inline("document", &args.document)?;
    let now = parse_time(args.at.as_deref())?;
    let anchor = load_anchor(args.root.as_deref())?;
    let vault_id = args
        .vault_id
        .as_deref()
        .map(|v| parse_uuid(v).ok_or_else(|| UsageError(format!("--vault-id {v:?}: not a UUID"))))
        .transpose()?;
    let wallet = args
        .wallet
        .as_deref()
        .map(|w| w.parse::<Pubkey>().map_err(|e| UsageError(format!("--wallet {w:?}: {e}"))))
        .transpose()?;
    let images = load_images(&args.measurements)?;

    let record = decode_record(&record_input).map_err(ProvenanceFailure::Record);
    if let Ok(record) = &record
        && peek_type(record) == Some(RecordType::AgentKey as u8)
        && vault_id.is_none()
    {
        return Err(UsageError(
            "an agent key's provenance binds the vault it was made from: give --vault-id".into(),
        ));
    }
    let outcome = record.and_then(|record| {
        let subject = Subject::of_record(&record, vault_id)
            .map_err(|e| ProvenanceFailure::Record(e.to_string()))?;
        let owner = subject_wallet(&subject);
        if let Some(expected) = wallet
            && expected != owner
        {
            return Err(ProvenanceFailure::Wallet { expected, actual: owner });
        }
        let document = decode_document(&document_input).map_err(|reason| {
            ProvenanceFailure::Document(VerifyError::Parse(
                nitro_attestation::ParseError::Malformed(reason),
            ))
        })?;
        let verified =
            verify_at_document_time(&document, &anchor, &images, &subject.user_data(), now)
                .map_err(ProvenanceFailure::Document)?;
        Ok((record, subject, verified))
    });

    match outcome {
        Ok((record, subject, verified)) => {
            let doc = &verified.document;
            let image = images
                .iter()
                .position(|image| image.iter().all(|(i, v)| doc.pcrs.get(i) == Some(v)))
                .and_then(|i| args.measurements.get(i))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let record_json = record_json(&record, &subject);
            if args.json {
                println!(
                    "{}",
                    json!({
                        "valid": true,
                        "record": record_json,
                        "user_data": hex::encode(subject.user_data()),
                        "image": image,
                        "document": document_json(doc),
                        "root_sha256": anchor.sha256_hex(),
                    })
                );
            } else {
                let field = |k: &str| record_json.get(k).and_then(Value::as_str).unwrap_or("");
                println!("valid");
                println!("  record      {} {}", field("type"), field("id"));
                println!("  wallet      {}", field("wallet"));
                println!("  sha256      {}", field("sha256"));
                if let Subject::Agent { agent_pubkey, vault_id, .. } = &subject {
                    println!("  agent key   {agent_pubkey}");
                    println!("  from vault  {}", uuid_text(vault_id));
                } else {
                    let origin = match field("origin") {
                        "imported" => {
                            "imported (sealed by the wallet, accepted under its signature)"
                        }
                        _ => "generated in the enclave",
                    };
                    println!("  origin      {origin}");
                }
                println!(
                    "  attested    {} by module {} (chain checked at that time)",
                    format_unix(i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX)),
                    doc.module_id
                );
                println!("  image       {image}");
                println!("  root        sha256 {}", anchor.sha256_hex());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if args.json {
                println!("{}", json!({"valid": false, "error": failure.json()}));
            } else {
                eprintln!("invalid: {}", failure.message());
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn subject_wallet(subject: &Subject) -> Pubkey {
    match subject {
        Subject::Vault { wallet, .. } | Subject::Agent { wallet, .. } => *wallet,
    }
}

fn record_json(record: &[u8], subject: &Subject) -> Value {
    match subject {
        Subject::Vault { wallet, vault_id, record_sha256 } => {
            let header = SealedVault::parse(record).map(|v| v.header).ok();
            json!({
                "type": "vault",
                "wallet": wallet.to_string(),
                "id": uuid_text(vault_id),
                "sha256": hex::encode(record_sha256),
                "created_at": header.map(|h| h.created_at),
                "origin": header.map(|h| match h.origin {
                    VaultOrigin::Generated => "generated",
                    VaultOrigin::Imported => "imported",
                }),
            })
        }
        Subject::Agent { wallet, agent_id, record_sha256, agent_pubkey, vault_id } => json!({
            "type": "agent_key",
            "wallet": wallet.to_string(),
            "id": uuid_text(agent_id),
            "sha256": hex::encode(record_sha256),
            "agent_pubkey": agent_pubkey.to_string(),
            "vault_id": uuid_text(vault_id),
        }),
    }
}

fn run_inspect(file: &Path, json_out: bool) -> Result<ExitCode, UsageError> {
    let input = read_input(file)?;
    let doc = match decode_document(&input)
        .map_err(|r| VerifyError::Parse(nitro_attestation::ParseError::Malformed(r)))
        .and_then(|b| Ok(AttestationDocument::parse(&b)?))
    {
        Ok(doc) => doc,
        Err(e) => {
            if json_out {
                println!("{}", json!({"error": error_json(&e)}));
            } else {
                eprintln!("invalid: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    let chain = summarize(&doc.certificate, &doc.cabundle);
    if json_out {
        let mut out = document_json(&doc);
        if let Value::Object(map) = &mut out {
            let chain: Vec<Value> = chain
                .iter()
                .map(|c| match c {
                    Ok(c) => json!({
                        "subject": c.subject, "issuer": c.issuer,
                        "not_before": format_unix(c.not_before), "not_after": format_unix(c.not_after),
                    }),
                    Err(e) => json!({"error": e.to_string()}),
                })
                .collect();
            map.insert("chain".into(), Value::Array(chain));
            map.insert("verified".into(), Value::Bool(false));
        }
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("NOT VERIFIED — use `attest verify` to check signature and chain");
    println!("module      {}", doc.module_id);
    println!(
        "timestamp   {} ({} ms)",
        format_unix(i64::try_from(doc.timestamp_ms / 1000).unwrap_or(i64::MAX)),
        doc.timestamp_ms
    );
    println!("debug mode  {}", if doc.is_debug_mode() { "yes (PCR0-2 all zero)" } else { "no" });
    println!("pcrs");
    for (index, value) in &doc.pcrs {
        let zero = value.iter().all(|b| *b == 0);
        println!("  {index:>2}  {}{}", hex::encode(value), if zero { "  (zero)" } else { "" });
    }
    println!("chain (leaf first)");
    for entry in &chain {
        match entry {
            Ok(c) => println!(
                "  {}\n      issuer {}\n      valid  {} .. {}",
                c.subject,
                c.issuer,
                format_unix(c.not_before),
                format_unix(c.not_after)
            ),
            Err(e) => println!("  unparseable: {e}"),
        }
    }
    for (name, value) in
        [("public_key", &doc.public_key), ("user_data", &doc.user_data), ("nonce", &doc.nonce)]
    {
        match value {
            None => println!("{name:<11} none"),
            Some(v) => println!("{name:<11} {} bytes {}", v.len(), hex::encode(v)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_key_policy(
    pcrs: &[PathBuf],
    role_arn: &str,
    pin: &[u8],
    admin_arn: Option<&str>,
    encrypt_role_arn: Option<&str>,
    break_glass_role_arn: Option<&str>,
) -> Result<ExitCode, UsageError> {
    let images = load_images(pcrs)?;
    let policy = key_policy::generate(&KeyPolicyParams {
        role_arn,
        pcrs: &images,
        pin,
        admin_arn,
        encrypt_role_arn,
        break_glass_role_arn,
    })?;
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}

fn run_interim_key_policy(
    role_arn: Option<&str>,
    admin_arn: Option<&str>,
    break_glass_role_arn: Option<&str>,
) -> Result<ExitCode, UsageError> {
    let policy = key_policy::generate_interim_with(role_arn, admin_arn, break_glass_role_arn)?;
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}

fn run_explain(
    file: &Path,
    policy_path: &Path,
    principal: Option<&str>,
    root: Option<&Path>,
    at: Option<&str>,
    json_out: bool,
) -> Result<ExitCode, UsageError> {
    let input = read_input(file)?;
    let policy_json = std::fs::read_to_string(policy_path)
        .map_err(|e| UsageError(format!("{}: {e}", policy_path.display())))?;
    let policy = KeyPolicy::parse(&policy_json)?;
    let anchor = load_anchor(root)?;
    let now = parse_time(at)?;
    let bytes = decode_document(&input).map_err(UsageError)?;
    let doc = AttestationDocument::parse(&bytes)
        .map_err(|e| UsageError(format!("malformed document: {e}")))?;
    // KMS refuses a Recipient whose document does not verify, whatever the policy says.
    let authenticity = verify_parsed(doc.clone(), &anchor, now).err();
    let evaluation = policy.evaluate(&Request::decrypt_with_recipient(&doc, principal));
    let allowed = authenticity.is_none() && evaluation.decision.is_allow();

    let verdict = match (&authenticity, &evaluation.decision) {
        (Some(e), _) => format!("DENY: KMS would reject the attestation document itself ({e})"),
        (None, Decision::Allow { sid }) => {
            format!("ALLOW by statement {}", sid.as_deref().unwrap_or("(no Sid)"))
        }
        (None, Decision::ExplicitDeny { sid }) => {
            format!("DENY by explicit Deny statement {}", sid.as_deref().unwrap_or("(no Sid)"))
        }
        (None, Decision::ImplicitDeny) => {
            "DENY: no Allow statement matches (AccessDeniedException, implicit deny)".into()
        }
    };
    if json_out {
        let statements: Vec<Value> = evaluation
            .statements
            .iter()
            .map(|s| {
                json!({
                    "sid": s.sid,
                    "effect": if s.effect == Effect::Allow { "Allow" } else { "Deny" },
                    "principal_matches": s.principal_matches,
                    "action_matches": s.action_matches,
                    "applies": s.applies,
                    "conditions": s.conditions.iter().map(|c| json!({
                        "operator": c.operator.name(), "key": c.key, "expected": c.expected,
                        "document_value": c.actual, "matches": c.matches,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "allowed": allowed,
                "verdict": verdict,
                "document_verified": authenticity.is_none(),
                "document_error": authenticity.as_ref().map(error_json),
                "principal_checked": principal.is_some(),
                "statements": statements,
            })
        );
    } else {
        println!(
            "document    {} ({})",
            doc.module_id,
            match &authenticity {
                None => "chain and signature verify".to_string(),
                Some(e) => format!("does NOT verify: {e}"),
            }
        );
        if principal.is_none() {
            println!("principal   not checked (pass --principal <arn>)");
        }
        for s in &evaluation.statements {
            if !s.action_matches {
                continue;
            }
            let effect = if s.effect == Effect::Allow { "Allow" } else { "Deny" };
            println!(
                "statement   {} [{effect}] {}",
                s.sid.as_deref().unwrap_or("(no Sid)"),
                if s.applies { "APPLIES" } else { "does not apply" }
            );
            if s.principal_matches == Some(false) {
                println!("    principal does not match");
            }
            for c in &s.conditions {
                println!(
                    "    {} {} {}\n        policy   {}\n        document {}",
                    if c.matches { "✓" } else { "✗" },
                    c.operator.name(),
                    c.key,
                    c.expected.join(" | "),
                    c.actual.as_deref().unwrap_or("(absent)")
                );
            }
        }
        println!("verdict     {verdict}");
    }
    Ok(if allowed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
