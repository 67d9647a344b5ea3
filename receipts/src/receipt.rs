//! Receipts: one per decision, hash-chained (`docs/receipts.md` is the byte-level contract).
//!
//! ```text
//! offset size
//!   0      1  version = 1
//!   1      1  kind (1 chain start … 10 handover in)
//!   2      8  seq u64
//!  10     16  decider (enclave id, or cluster id)
//!  26      8  time u64 (unix seconds)
//!  34     32  prev (hash of receipt seq − 1; zeros only on a chain start)
//!  66      …  body of the kind (below); nothing after it
//! ```
//!
//! All integers little-endian; variable fields carry a u16 length (or count) prefix. Decoding is
//! strict: every byte is accounted for, every flag is 0 or 1, every length is within its limit
//! (checked before the bytes are read), so a receipt has exactly one encoding and decoding then
//! encoding gives back the bytes that were hashed.

use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use signer_types::Pubkey;
use thiserror::Error;

/// The format version (first byte).
pub const RECEIPT_VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 66;
/// The largest receipt, checked before anything is parsed (a grant receipt with the largest
/// policy is under 17 KiB).
pub const MAX_RECEIPT_LEN: usize = 64 * 1024;
/// The largest policy in a grant receipt: the policy lives inside a sealed grant record, which is
/// at most this long.
pub const MAX_POLICY_LEN: usize = signer_types::records::MAX_RECORD_LEN;
/// The most token entries in each list of a `signed` receipt: a policy lists at most this many
/// mints, and only listed mints are charged.
pub const MAX_TOKEN_ENTRIES: usize = signer_types::policy::MAX_TOKENS;
/// A refusal's error code: 1 to 64 bytes of printable ASCII (0x21–0x7e).
pub const MAX_CODE_LEN: usize = 64;
/// A refusal's rule: at most 256 bytes of UTF-8.
pub const MAX_RULE_LEN: usize = 256;
/// Domain separator of [`receipt_hash`].
pub const RECEIPT_DOMAIN: &[u8] = b"signer/receipt/v1";

/// `SHA-256("signer/receipt/v1" ‖ encoded receipt)`: a receipt's hash, which the next receipt
/// names as `prev` and a checkpoint names as `head`.
pub fn receipt_hash(encoded: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(RECEIPT_DOMAIN).chain_update(encoded).finalize().into()
}

/// One decision of the enclave (or cluster) `decider`, number `seq` of its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub seq: u64,
    /// The instance that decides: the enclave id of a standalone enclave, or the cluster id of a
    /// replicated cluster.
    #[serde(serialize_with = "ser::id")]
    pub decider: [u8; 16],
    /// The decision time on the decider's clock, unix seconds.
    pub time: u64,
    /// The hash of receipt `seq − 1`; all zeros only on a [`Body::ChainStart`].
    #[serde(serialize_with = "ser::hash")]
    pub prev: [u8; 32],
    pub body: Body,
}

/// What was decided. The discriminant byte of each kind is [`Body::kind`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A chain that names no predecessor: the decider booted (or restarted after a crash).
    ChainStart,
    /// A vault was created in the enclave (`imported = false`) or imported from a browser.
    VaultCreated { wallet: Pubkey, imported: bool },
    /// An agent key was created for `wallet`.
    AgentCreated { wallet: Pubkey, agent: Pubkey },
    /// A grant was created from a wallet-signed authorization.
    GrantCreated(GrantCreated),
    /// A transaction was signed under a grant.
    Signed(Signed),
    /// A signature request was refused.
    Refused(Refused),
    /// The wallet revoked a grant or every grant issued before a time.
    Revoked { wallet: Pubkey, target: RevokeTarget },
    /// The kill switch was engaged (`on`) or released.
    KillSwitch { on: bool },
    /// The decider handed its state to `successor` and decides no more; its last receipt.
    HandoverOut {
        #[serde(serialize_with = "ser::id")]
        successor: [u8; 16],
    },
    /// The decider took over the state of `predecessor`, whose last receipt was
    /// `predecessor_seq` with hash `predecessor_head`; this receipt continues that chain
    /// (`seq = predecessor_seq + 1`, `prev = predecessor_head`).
    HandoverIn {
        #[serde(serialize_with = "ser::id")]
        predecessor: [u8; 16],
        predecessor_seq: u64,
        #[serde(serialize_with = "ser::hash")]
        predecessor_head: [u8; 32],
    },
}

/// The body of a `grant_created` receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantCreated {
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    pub wallet: Pubkey,
    #[serde(serialize_with = "ser::id")]
    pub bot_id: [u8; 16],
    pub agent: Pubkey,
    /// SHA-256 of the authorization message the wallet signed.
    #[serde(serialize_with = "ser::hash")]
    pub message_sha256: [u8; 32],
    /// Unix seconds.
    pub expires_at: u64,
    /// The grant's policy as CBOR (SPEC §7), in full; at most [`MAX_POLICY_LEN`] bytes.
    #[serde(serialize_with = "ser::bytes")]
    pub policy: Vec<u8>,
}

/// The body of a `signed` receipt: what was signed, what it was charged, the counters after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signed {
    #[serde(serialize_with = "ser::id")]
    pub request_id: [u8; 16],
    /// The grant (or scheduled record) the request presented.
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    #[serde(serialize_with = "ser::id")]
    pub bot_id: [u8; 16],
    pub agent: Pubkey,
    /// SHA-256 of the Solana message bytes that were signed.
    #[serde(serialize_with = "ser::hash")]
    pub message_sha256: [u8; 32],
    pub charged: Charge,
    pub after: Counters,
}

/// What one signature was charged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Charge {
    /// SOL outflow (transfers, account creation), lamports.
    pub lamports: u64,
    /// The fee the agent pays, lamports.
    pub fee_lamports: u64,
    /// Declared notional of allowed programs, USD cents.
    pub notional_cents: u64,
    /// Per mint, base units; at most [`MAX_TOKEN_ENTRIES`], no mint twice.
    pub tokens: Vec<TokenAmount>,
}

/// A grant's daily counters after a charge, for UTC day `day`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// UTC day number (unix seconds / 86 400).
    pub day: u64,
    /// Lamports today, fees the agent paid included.
    pub lamports: u64,
    pub notional_cents: u64,
    /// Per mint, base units; at most [`MAX_TOKEN_ENTRIES`], no mint twice.
    pub tokens: Vec<TokenAmount>,
}

/// An amount of one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TokenAmount {
    pub mint: Pubkey,
    pub amount: u64,
}

/// The body of a `refused` receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refused {
    #[serde(serialize_with = "ser::id")]
    pub request_id: [u8; 16],
    /// The grant (or scheduled record) the request presented; zeros if none could be read.
    #[serde(serialize_with = "ser::id")]
    pub grant_id: [u8; 16],
    /// The API error code (`policy_denied`, `grant_expired`, …): 1–64 printable ASCII bytes.
    pub code: String,
    /// The rule and its numbers, as the denial names them: at most 256 bytes of UTF-8.
    pub rule: String,
}

impl Refused {
    /// A refusal with `rule` cut to at most [`MAX_RULE_LEN`] bytes at a character boundary (the
    /// numbers come first in a denial's message). `code` is taken as given; encoding refuses one
    /// that is not 1–64 bytes of printable ASCII.
    pub fn new(request_id: [u8; 16], grant_id: [u8; 16], code: &str, rule: &str) -> Self {
        let mut end = rule.len().min(MAX_RULE_LEN);
        while !rule.is_char_boundary(end) {
            end -= 1;
        }
        let rule = rule.get(..end).unwrap_or_default().to_string();
        Self { request_id, grant_id, code: code.to_string(), rule }
    }
}

/// What a revocation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum RevokeTarget {
    /// One record (grant or scheduled key) by id. Scope byte 1.
    Record {
        #[serde(serialize_with = "ser::id")]
        record_id: [u8; 16],
    },
    /// Every grant of the wallet issued before `cutoff` (unix seconds). Scope byte 2.
    IssuedBefore { cutoff: u64 },
}

/// Kind bytes.
pub mod kind {
    pub const CHAIN_START: u8 = 1;
    pub const VAULT_CREATED: u8 = 2;
    pub const AGENT_CREATED: u8 = 3;
    pub const GRANT_CREATED: u8 = 4;
    pub const SIGNED: u8 = 5;
    pub const REFUSED: u8 = 6;
    pub const REVOKED: u8 = 7;
    pub const KILL_SWITCH: u8 = 8;
    pub const HANDOVER_OUT: u8 = 9;
    pub const HANDOVER_IN: u8 = 10;
}

const SCOPE_RECORD: u8 = 1;
const SCOPE_ISSUED_BEFORE: u8 = 2;

/// Which chain rule a receipt breaks on its own (without looking at other receipts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkRule {
    /// A chain start has seq 0 and prev all zeros.
    ChainStart,
    /// Only a chain start has prev all zeros.
    ZeroPrev,
    /// A handover-in's prev is its `predecessor_head`.
    HandoverPrev,
    /// A handover-in's seq is `predecessor_seq + 1`.
    HandoverSeq,
}

impl fmt::Display for LinkRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ChainStart => "a chain start must have seq 0 and prev all zeros",
            Self::ZeroPrev => "only a chain start may have prev all zeros",
            Self::HandoverPrev => "a handover-in's prev must be its predecessor_head",
            Self::HandoverSeq => "a handover-in's seq must be predecessor_seq + 1",
        })
    }
}

/// A receipt that cannot be encoded or decoded. [`ReceiptError::code`] is stable (the golden
/// vectors and the TypeScript client use it); the message names the field and the numbers.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt is {actual} bytes; at most {max}")]
    Oversize { max: usize, actual: usize },
    #[error("receipt truncated: {field} at byte {offset} needs {needed} bytes, {available} remain")]
    Truncated { field: &'static str, offset: usize, needed: usize, available: usize },
    #[error("{extra} trailing bytes after the receipt's last field (it ends at byte {end})")]
    TrailingBytes { end: usize, extra: usize },
    #[error("unsupported receipt version {actual} (expected {expected})")]
    UnsupportedVersion { expected: u8, actual: u8 },
    #[error("unknown receipt kind {actual} (expected 1..=10)")]
    UnknownKind { actual: u8 },
    #[error("{field} is {actual}; expected {expected}")]
    InvalidValue { field: &'static str, expected: &'static str, actual: u8 },
    #[error("{field} is {actual} bytes; at most {max}")]
    TooLong { field: &'static str, max: usize, actual: usize },
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} has {actual} entries; at most {max}")]
    TooMany { field: &'static str, max: usize, actual: usize },
    #[error("{field} lists mint {mint} twice")]
    DuplicateMint { field: &'static str, mint: String },
    #[error("{field} byte {index} is {byte:#04x}; expected printable ASCII (0x21..=0x7e)")]
    NotAscii { field: &'static str, index: usize, byte: u8 },
    #[error("{field} is not UTF-8 (valid up to byte {valid_up_to})")]
    BadUtf8 { field: &'static str, valid_up_to: usize },
    #[error("receipt {seq} breaks a chain rule: {rule}")]
    Link { seq: u64, rule: LinkRule },
    #[error("the chain is at seq {seq}, the last there is")]
    SeqExhausted { seq: u64 },
    #[error("a {kind} receipt begins a chain; it cannot be appended")]
    NotAppendable { kind: &'static str },
}

impl ReceiptError {
    /// A stable name of the error's kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Oversize { .. } => "oversize",
            Self::Truncated { .. } => "truncated",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::InvalidValue { .. } => "invalid_value",
            Self::TooLong { .. } => "too_long",
            Self::Empty { .. } => "empty",
            Self::TooMany { .. } => "too_many",
            Self::DuplicateMint { .. } => "duplicate_mint",
            Self::NotAscii { .. } => "not_ascii",
            Self::BadUtf8 { .. } => "bad_utf8",
            Self::Link { .. } => "invalid_link",
            Self::SeqExhausted { .. } => "seq_exhausted",
            Self::NotAppendable { .. } => "not_appendable",
        }
    }
}

impl Body {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::ChainStart => kind::CHAIN_START,
            Self::VaultCreated { .. } => kind::VAULT_CREATED,
            Self::AgentCreated { .. } => kind::AGENT_CREATED,
            Self::GrantCreated(_) => kind::GRANT_CREATED,
            Self::Signed(_) => kind::SIGNED,
            Self::Refused(_) => kind::REFUSED,
            Self::Revoked { .. } => kind::REVOKED,
            Self::KillSwitch { .. } => kind::KILL_SWITCH,
            Self::HandoverOut { .. } => kind::HANDOVER_OUT,
            Self::HandoverIn { .. } => kind::HANDOVER_IN,
        }
    }

    /// The kind's name, as in JSON.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::ChainStart => "chain_start",
            Self::VaultCreated { .. } => "vault_created",
            Self::AgentCreated { .. } => "agent_created",
            Self::GrantCreated(_) => "grant_created",
            Self::Signed(_) => "signed",
            Self::Refused(_) => "refused",
            Self::Revoked { .. } => "revoked",
            Self::KillSwitch { .. } => "kill_switch",
            Self::HandoverOut { .. } => "handover_out",
            Self::HandoverIn { .. } => "handover_in",
        }
    }

    /// The encoded length of the body.
    pub fn encoded_len(&self) -> usize {
        match self {
            Self::ChainStart => 0,
            Self::VaultCreated { .. } => 33,
            Self::AgentCreated { .. } => 64,
            Self::GrantCreated(g) => 138 + g.policy.len(),
            Self::Signed(s) => {
                136 + 2 + 40 * s.charged.tokens.len() + 24 + 2 + 40 * s.after.tokens.len()
            }
            Self::Refused(r) => 32 + 2 + r.code.len() + 2 + r.rule.len(),
            Self::Revoked { target: RevokeTarget::Record { .. }, .. } => 32 + 1 + 16,
            Self::Revoked { target: RevokeTarget::IssuedBefore { .. }, .. } => 32 + 1 + 8,
            Self::KillSwitch { .. } => 1,
            Self::HandoverOut { .. } => 16,
            Self::HandoverIn { .. } => 56,
        }
    }

    /// The field limits of the module docs (what decoding enforces), so that nothing is encoded
    /// that a verifier would refuse.
    fn check(&self) -> Result<(), ReceiptError> {
        match self {
            Self::GrantCreated(g) if g.policy.len() > MAX_POLICY_LEN => {
                return Err(ReceiptError::TooLong {
                    field: "policy",
                    max: MAX_POLICY_LEN,
                    actual: g.policy.len(),
                });
            }
            Self::Signed(s) => {
                check_tokens("charged.tokens", &s.charged.tokens)?;
                check_tokens("after.tokens", &s.after.tokens)?;
            }
            Self::Refused(r) => {
                check_code(r.code.as_bytes())?;
                if r.rule.len() > MAX_RULE_LEN {
                    return Err(ReceiptError::TooLong {
                        field: "rule",
                        max: MAX_RULE_LEN,
                        actual: r.rule.len(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_tokens(field: &'static str, tokens: &[TokenAmount]) -> Result<(), ReceiptError> {
    if tokens.len() > MAX_TOKEN_ENTRIES {
        return Err(ReceiptError::TooMany { field, max: MAX_TOKEN_ENTRIES, actual: tokens.len() });
    }
    for (i, t) in tokens.iter().enumerate() {
        if tokens.iter().skip(i + 1).any(|o| o.mint == t.mint) {
            return Err(ReceiptError::DuplicateMint { field, mint: t.mint.to_string() });
        }
    }
    Ok(())
}

fn check_code(code: &[u8]) -> Result<(), ReceiptError> {
    if code.is_empty() {
        return Err(ReceiptError::Empty { field: "code" });
    }
    if code.len() > MAX_CODE_LEN {
        return Err(ReceiptError::TooLong { field: "code", max: MAX_CODE_LEN, actual: code.len() });
    }
    if let Some((index, &byte)) = code.iter().enumerate().find(|(_, b)| !(0x21..=0x7e).contains(*b))
    {
        return Err(ReceiptError::NotAscii { field: "code", index, byte });
    }
    Ok(())
}

impl Receipt {
    /// The encoded length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.encoded_len()
    }

    /// The bytes (module docs). Refuses a receipt that decoding would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ReceiptError> {
        encode_parts(self.seq, &self.decider, self.time, &self.prev, &self.body)
    }

    /// [`receipt_hash`] of the encoding.
    pub fn hash(&self) -> Result<[u8; 32], ReceiptError> {
        Ok(receipt_hash(&self.encode()?))
    }

    /// Strict decoding (module docs); never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > MAX_RECEIPT_LEN {
            return Err(ReceiptError::Oversize { max: MAX_RECEIPT_LEN, actual: bytes.len() });
        }
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8("version")?;
        if version != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion {
                expected: RECEIPT_VERSION,
                actual: version,
            });
        }
        let kind = r.u8("kind")?;
        if !(kind::CHAIN_START..=kind::HANDOVER_IN).contains(&kind) {
            return Err(ReceiptError::UnknownKind { actual: kind });
        }
        let seq = r.u64("seq")?;
        let decider = r.array("decider")?;
        let time = r.u64("time")?;
        let prev = r.array("prev")?;
        let body = match kind {
            kind::CHAIN_START => Body::ChainStart,
            kind::VAULT_CREATED => Body::VaultCreated {
                wallet: Pubkey(r.array("wallet")?),
                imported: r.flag("imported")?,
            },
            kind::AGENT_CREATED => Body::AgentCreated {
                wallet: Pubkey(r.array("wallet")?),
                agent: Pubkey(r.array("agent")?),
            },
            kind::GRANT_CREATED => Body::GrantCreated(GrantCreated {
                grant_id: r.array("grant_id")?,
                wallet: Pubkey(r.array("wallet")?),
                bot_id: r.array("bot_id")?,
                agent: Pubkey(r.array("agent")?),
                message_sha256: r.array("message_sha256")?,
                expires_at: r.u64("expires_at")?,
                policy: r.var("policy", MAX_POLICY_LEN)?.to_vec(),
            }),
            kind::SIGNED => Body::Signed(Signed {
                request_id: r.array("request_id")?,
                grant_id: r.array("grant_id")?,
                bot_id: r.array("bot_id")?,
                agent: Pubkey(r.array("agent")?),
                message_sha256: r.array("message_sha256")?,
                charged: Charge {
                    lamports: r.u64("charged.lamports")?,
                    fee_lamports: r.u64("charged.fee_lamports")?,
                    notional_cents: r.u64("charged.notional_cents")?,
                    tokens: r.tokens("charged.tokens")?,
                },
                after: Counters {
                    day: r.u64("after.day")?,
                    lamports: r.u64("after.lamports")?,
                    notional_cents: r.u64("after.notional_cents")?,
                    tokens: r.tokens("after.tokens")?,
                },
            }),
            kind::REFUSED => {
                let request_id = r.array("request_id")?;
                let grant_id = r.array("grant_id")?;
                let code = r.code()?;
                let rule = r.var("rule", MAX_RULE_LEN)?;
                let rule = std::str::from_utf8(rule)
                    .map_err(|e| ReceiptError::BadUtf8 {
                        field: "rule",
                        valid_up_to: e.valid_up_to(),
                    })?
                    .to_string();
                Body::Refused(Refused { request_id, grant_id, code, rule })
            }
            kind::REVOKED => {
                let wallet = Pubkey(r.array("wallet")?);
                let target = match r.u8("scope")? {
                    SCOPE_RECORD => RevokeTarget::Record { record_id: r.array("record_id")? },
                    SCOPE_ISSUED_BEFORE => RevokeTarget::IssuedBefore { cutoff: r.u64("cutoff")? },
                    other => {
                        return Err(ReceiptError::InvalidValue {
                            field: "scope",
                            expected: "1 (record) or 2 (issued before)",
                            actual: other,
                        });
                    }
                };
                Body::Revoked { wallet, target }
            }
            kind::KILL_SWITCH => Body::KillSwitch { on: r.flag("on")? },
            kind::HANDOVER_OUT => Body::HandoverOut { successor: r.array("successor")? },
            _ => Body::HandoverIn {
                predecessor: r.array("predecessor")?,
                predecessor_seq: r.u64("predecessor_seq")?,
                predecessor_head: r.array("predecessor_head")?,
            },
        };
        if r.pos != bytes.len() {
            return Err(ReceiptError::TrailingBytes {
                end: r.pos,
                extra: bytes.len().saturating_sub(r.pos),
            });
        }
        check_link(seq, &prev, &body)?;
        Ok(Receipt { seq, decider, time, prev, body })
    }
}

/// The chain rules one receipt must keep on its own ([`LinkRule`]).
fn check_link(seq: u64, prev: &[u8; 32], body: &Body) -> Result<(), ReceiptError> {
    let link = |rule| Err(ReceiptError::Link { seq, rule });
    let starts = matches!(body, Body::ChainStart);
    if starts && (seq != 0 || *prev != [0; 32]) {
        return link(LinkRule::ChainStart);
    }
    if !starts && *prev == [0; 32] {
        return link(LinkRule::ZeroPrev);
    }
    if let Body::HandoverIn { predecessor_seq, predecessor_head, .. } = body {
        if prev != predecessor_head {
            return link(LinkRule::HandoverPrev);
        }
        if predecessor_seq.checked_add(1) != Some(seq) {
            return link(LinkRule::HandoverSeq);
        }
    }
    Ok(())
}

/// Encodes a receipt from its parts (the chain encodes a borrowed body without building a
/// [`Receipt`]).
pub(crate) fn encode_parts(
    seq: u64,
    decider: &[u8; 16],
    time: u64,
    prev: &[u8; 32],
    body: &Body,
) -> Result<Vec<u8>, ReceiptError> {
    body.check()?;
    check_link(seq, prev, body)?;
    let len = HEADER_LEN + body.encoded_len();
    if len > MAX_RECEIPT_LEN {
        return Err(ReceiptError::Oversize { max: MAX_RECEIPT_LEN, actual: len });
    }
    let mut out = Vec::with_capacity(len);
    out.push(RECEIPT_VERSION);
    out.push(body.kind());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(decider);
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(prev);
    match body {
        Body::ChainStart => {}
        Body::VaultCreated { wallet, imported } => {
            out.extend_from_slice(&wallet.0);
            out.push(u8::from(*imported));
        }
        Body::AgentCreated { wallet, agent } => {
            out.extend_from_slice(&wallet.0);
            out.extend_from_slice(&agent.0);
        }
        Body::GrantCreated(g) => {
            out.extend_from_slice(&g.grant_id);
            out.extend_from_slice(&g.wallet.0);
            out.extend_from_slice(&g.bot_id);
            out.extend_from_slice(&g.agent.0);
            out.extend_from_slice(&g.message_sha256);
            out.extend_from_slice(&g.expires_at.to_le_bytes());
            put_len(&mut out, g.policy.len());
            out.extend_from_slice(&g.policy);
        }
        Body::Signed(s) => {
            out.extend_from_slice(&s.request_id);
            out.extend_from_slice(&s.grant_id);
            out.extend_from_slice(&s.bot_id);
            out.extend_from_slice(&s.agent.0);
            out.extend_from_slice(&s.message_sha256);
            out.extend_from_slice(&s.charged.lamports.to_le_bytes());
            out.extend_from_slice(&s.charged.fee_lamports.to_le_bytes());
            out.extend_from_slice(&s.charged.notional_cents.to_le_bytes());
            put_tokens(&mut out, &s.charged.tokens);
            out.extend_from_slice(&s.after.day.to_le_bytes());
            out.extend_from_slice(&s.after.lamports.to_le_bytes());
            out.extend_from_slice(&s.after.notional_cents.to_le_bytes());
            put_tokens(&mut out, &s.after.tokens);
        }
        Body::Refused(r) => {
            out.extend_from_slice(&r.request_id);
            out.extend_from_slice(&r.grant_id);
            put_len(&mut out, r.code.len());
            out.extend_from_slice(r.code.as_bytes());
            put_len(&mut out, r.rule.len());
            out.extend_from_slice(r.rule.as_bytes());
        }
        Body::Revoked { wallet, target } => {
            out.extend_from_slice(&wallet.0);
            match target {
                RevokeTarget::Record { record_id } => {
                    out.push(SCOPE_RECORD);
                    out.extend_from_slice(record_id);
                }
                RevokeTarget::IssuedBefore { cutoff } => {
                    out.push(SCOPE_ISSUED_BEFORE);
                    out.extend_from_slice(&cutoff.to_le_bytes());
                }
            }
        }
        Body::KillSwitch { on } => out.push(u8::from(*on)),
        Body::HandoverOut { successor } => out.extend_from_slice(successor),
        Body::HandoverIn { predecessor, predecessor_seq, predecessor_head } => {
            out.extend_from_slice(predecessor);
            out.extend_from_slice(&predecessor_seq.to_le_bytes());
            out.extend_from_slice(predecessor_head);
        }
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Every variable field is checked against a limit below 2^16 before this is called.
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes());
}

fn put_tokens(out: &mut Vec<u8>, tokens: &[TokenAmount]) {
    put_len(out, tokens.len());
    for t in tokens {
        out.extend_from_slice(&t.mint.0);
        out.extend_from_slice(&t.amount.to_le_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, needed: usize) -> Result<&'a [u8], ReceiptError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        match rest.get(..needed) {
            Some(out) => {
                self.pos += needed;
                Ok(out)
            }
            None => Err(ReceiptError::Truncated {
                field,
                offset: self.pos,
                needed,
                available: rest.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ReceiptError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ReceiptError> {
        Ok(u8::from_le_bytes(self.array(field)?))
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ReceiptError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ReceiptError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, ReceiptError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            actual => Err(ReceiptError::InvalidValue { field, expected: "0 or 1", actual }),
        }
    }

    /// `len u16 ‖ bytes[len]`, the length checked against `max` before the bytes are read.
    fn var(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], ReceiptError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(ReceiptError::TooLong { field, max, actual: len });
        }
        self.take(field, len)
    }

    fn code(&mut self) -> Result<String, ReceiptError> {
        let len = usize::from(self.u16("code")?);
        if len > MAX_CODE_LEN {
            return Err(ReceiptError::TooLong { field: "code", max: MAX_CODE_LEN, actual: len });
        }
        let code = self.take("code", len)?;
        check_code(code)?;
        // Printable ASCII is UTF-8.
        Ok(String::from_utf8_lossy(code).into_owned())
    }

    fn tokens(&mut self, field: &'static str) -> Result<Vec<TokenAmount>, ReceiptError> {
        let n = usize::from(self.u16(field)?);
        if n > MAX_TOKEN_ENTRIES {
            return Err(ReceiptError::TooMany { field, max: MAX_TOKEN_ENTRIES, actual: n });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(TokenAmount { mint: Pubkey(self.array(field)?), amount: self.u64(field)? });
        }
        check_tokens(field, &out)?;
        Ok(out)
    }
}

/// JSON shapes: ids as UUID text, hashes and bytes as lower-case hex (keys are base58 by
/// [`Pubkey`]).
pub(crate) mod ser {
    use super::*;

    pub fn id<S: Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&signer_types::uuid_text(id))
    }

    pub fn opt_id<S: Serializer>(id: &Option<[u8; 16]>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_str(&signer_types::uuid_text(id)),
            None => s.serialize_none(),
        }
    }

    pub fn hash<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn bytes<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::*;

    const PREV: [u8; 32] = [0x77; 32];

    fn receipt(seq: u64, prev: [u8; 32], body: Body) -> Receipt {
        Receipt { seq, decider: ENCLAVE_A, time: T0, prev, body }
    }

    /// A receipt's bytes from a kind and a raw body, bypassing the encoder's checks.
    fn raw(kind: u8, seq: u64, prev: [u8; 32], body: &[u8]) -> Vec<u8> {
        let mut out = vec![RECEIPT_VERSION, kind];
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&ENCLAVE_A);
        out.extend_from_slice(&T0.to_le_bytes());
        out.extend_from_slice(&prev);
        out.extend_from_slice(body);
        out
    }

    fn refused_raw(code: &[u8], rule: &[u8]) -> Vec<u8> {
        let mut body = vec![0x01; 32];
        body.extend_from_slice(&(code.len() as u16).to_le_bytes());
        body.extend_from_slice(code);
        body.extend_from_slice(&(rule.len() as u16).to_le_bytes());
        body.extend_from_slice(rule);
        raw(kind::REFUSED, 3, PREV, &body)
    }

    fn every_receipt() -> Vec<Receipt> {
        let mut all = vec![receipt(0, [0; 32], Body::ChainStart)];
        all.extend(
            appendable().into_iter().enumerate().map(|(i, b)| receipt(i as u64 + 1, PREV, b)),
        );
        all.push(receipt(20, PREV, Body::HandoverOut { successor: ENCLAVE_B }));
        all.push(receipt(
            21,
            PREV,
            Body::HandoverIn {
                predecessor: ENCLAVE_B,
                predecessor_seq: 20,
                predecessor_head: PREV,
            },
        ));
        all
    }

    #[test]
    fn every_kind_round_trips_and_has_its_stated_length() {
        let all = every_receipt();
        let kinds: std::collections::BTreeSet<u8> = all.iter().map(|r| r.body.kind()).collect();
        assert_eq!(kinds.len(), 10, "one of every kind");
        for r in all {
            let bytes = r.encode().unwrap();
            assert_eq!(bytes.len(), r.encoded_len(), "{}", r.body.kind_name());
            assert_eq!(bytes.first(), Some(&RECEIPT_VERSION));
            assert_eq!(bytes.get(1), Some(&r.body.kind()));
            let back = Receipt::decode(&bytes).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.encode().unwrap(), bytes);
            assert_eq!(r.hash().unwrap(), receipt_hash(&bytes));
        }
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let r = Receipt {
            seq: 0x0102_0304_0506_0708,
            decider: ENCLAVE_B,
            time: 0x1122_3344_5566_7788,
            prev: PREV,
            body: kill_switch(true),
        };
        let b = r.encode().unwrap();
        assert_eq!(b.len(), HEADER_LEN + 1);
        assert_eq!(b[..2], [1, kind::KILL_SWITCH]);
        assert_eq!(b[2..10], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(b[10..26], ENCLAVE_B);
        assert_eq!(b[26..34], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(b[34..66], PREV);
        assert_eq!(b[66], 1);
    }

    #[test]
    fn the_hash_is_domain_separated_sha256() {
        let b = receipt(0, [0; 32], Body::ChainStart).encode().unwrap();
        let mut input = b"signer/receipt/v1".to_vec();
        input.extend_from_slice(&b);
        assert_eq!(receipt_hash(&b), <[u8; 32]>::from(Sha256::digest(&input)));
    }

    #[test]
    fn oversize_input_is_refused_before_parsing() {
        let e = Receipt::decode(&vec![1u8; MAX_RECEIPT_LEN + 1]).unwrap_err();
        assert_eq!(e, ReceiptError::Oversize { max: MAX_RECEIPT_LEN, actual: MAX_RECEIPT_LEN + 1 });
        assert_eq!(e.code(), "oversize");
    }

    #[test]
    fn truncation_anywhere_names_the_field() {
        assert_eq!(
            Receipt::decode(&[]).unwrap_err(),
            ReceiptError::Truncated { field: "version", offset: 0, needed: 1, available: 0 }
        );
        let start = receipt(0, [0; 32], Body::ChainStart).encode().unwrap();
        assert_eq!(
            Receipt::decode(&start[..65]).unwrap_err(),
            ReceiptError::Truncated { field: "prev", offset: 34, needed: 32, available: 31 }
        );
        // Every strict prefix of every kind fails with `truncated`, never a panic.
        for r in every_receipt() {
            let b = r.encode().unwrap();
            for n in 0..b.len() {
                let e = Receipt::decode(&b[..n]).unwrap_err();
                assert_eq!(e.code(), "truncated", "{} cut at {n}: {e}", r.body.kind_name());
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for r in every_receipt() {
            let mut b = r.encode().unwrap();
            let end = b.len();
            b.push(0);
            assert_eq!(
                Receipt::decode(&b).unwrap_err(),
                ReceiptError::TrailingBytes { end, extra: 1 }
            );
        }
    }

    #[test]
    fn version_and_kind_are_checked() {
        let mut b = receipt(0, [0; 32], Body::ChainStart).encode().unwrap();
        b[0] = 2;
        assert_eq!(
            Receipt::decode(&b).unwrap_err(),
            ReceiptError::UnsupportedVersion { expected: 1, actual: 2 }
        );
        for k in [0u8, 11, 255] {
            b[0] = 1;
            b[1] = k;
            assert_eq!(Receipt::decode(&b).unwrap_err(), ReceiptError::UnknownKind { actual: k });
        }
    }

    #[test]
    fn flags_and_scopes_take_only_their_values() {
        let mut body = WALLET.0.to_vec();
        body.push(2);
        assert_eq!(
            Receipt::decode(&raw(kind::VAULT_CREATED, 1, PREV, &body)).unwrap_err(),
            ReceiptError::InvalidValue { field: "imported", expected: "0 or 1", actual: 2 }
        );
        assert_eq!(
            Receipt::decode(&raw(kind::KILL_SWITCH, 1, PREV, &[0xff])).unwrap_err().code(),
            "invalid_value"
        );
        for scope in [0u8, 3] {
            let mut body = WALLET.0.to_vec();
            body.push(scope);
            body.extend_from_slice(&[0; 16]);
            let e = Receipt::decode(&raw(kind::REVOKED, 1, PREV, &body)).unwrap_err();
            assert!(
                matches!(e, ReceiptError::InvalidValue { field: "scope", actual, .. } if actual == scope),
                "{e}"
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_the_bytes_are_read() {
        // A policy length over the limit is refused even though the bytes are not there.
        let mut body = vec![0u8; 136];
        body.extend_from_slice(&((MAX_POLICY_LEN + 1) as u16).to_le_bytes());
        assert_eq!(
            Receipt::decode(&raw(kind::GRANT_CREATED, 1, PREV, &body)).unwrap_err(),
            ReceiptError::TooLong {
                field: "policy",
                max: MAX_POLICY_LEN,
                actual: MAX_POLICY_LEN + 1
            }
        );
        assert_eq!(
            Receipt::decode(&refused_raw(&[b'a'; 65], b"")).unwrap_err(),
            ReceiptError::TooLong { field: "code", max: 64, actual: 65 }
        );
        assert_eq!(
            Receipt::decode(&refused_raw(b"x", &[b'a'; 257])).unwrap_err(),
            ReceiptError::TooLong { field: "rule", max: 256, actual: 257 }
        );
        // The largest allowed values decode.
        Receipt::decode(&refused_raw(&[b'a'; 64], &[b'a'; 256])).unwrap();
        let mut grant = match grant_created() {
            Body::GrantCreated(g) => g,
            _ => unreachable!(),
        };
        grant.policy = vec![0xa0; MAX_POLICY_LEN];
        let big = receipt(1, PREV, Body::GrantCreated(grant.clone())).encode().unwrap();
        assert_eq!(Receipt::decode(&big).unwrap().body, Body::GrantCreated(grant.clone()));
        grant.policy.push(0);
        assert_eq!(
            receipt(1, PREV, Body::GrantCreated(grant)).encode().unwrap_err().code(),
            "too_long"
        );
    }

    #[test]
    fn codes_are_printable_ascii_and_rules_utf8() {
        assert_eq!(
            Receipt::decode(&refused_raw(b"", b"")).unwrap_err(),
            ReceiptError::Empty { field: "code" }
        );
        assert_eq!(
            Receipt::decode(&refused_raw(b"policy denied", b"")).unwrap_err(),
            ReceiptError::NotAscii { field: "code", index: 6, byte: b' ' }
        );
        assert_eq!(
            Receipt::decode(&refused_raw("é".as_bytes(), b"")).unwrap_err().code(),
            "not_ascii"
        );
        assert_eq!(
            Receipt::decode(&refused_raw(b"x", &[b'o', b'k', 0xff])).unwrap_err(),
            ReceiptError::BadUtf8 { field: "rule", valid_up_to: 2 }
        );
        let bad =
            Refused { request_id: [1; 16], grant_id: [0; 16], code: "a b".into(), rule: "".into() };
        assert_eq!(receipt(1, PREV, Body::Refused(bad)).encode().unwrap_err().code(), "not_ascii");
    }

    #[test]
    fn refused_new_cuts_the_rule_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let r = Refused::new(REQUEST_1, GRANT_ID, "policy_denied", &long);
        assert_eq!(r.rule.len(), 256);
        assert_eq!(r.rule, "é".repeat(128));
        let odd = format!("x{long}"); // the 256th byte is the first of a character
        assert_eq!(Refused::new(REQUEST_1, GRANT_ID, "c", &odd).rule.len(), 255);
        assert_eq!(Refused::new(REQUEST_1, GRANT_ID, "c", "short").rule, "short");
        receipt(3, PREV, Body::Refused(Refused::new(REQUEST_1, GRANT_ID, "c", &odd)))
            .encode()
            .unwrap();
    }

    #[test]
    fn token_lists_are_bounded_and_name_each_mint_once() {
        let Body::Signed(mut s) = signed() else { unreachable!() };
        s.after.tokens =
            (0..65u8).map(|i| TokenAmount { mint: Pubkey([i; 32]), amount: 1 }).collect();
        // The encoder refuses; a hand-made 65 is refused by count before its entries are read.
        assert_eq!(
            receipt(4, PREV, Body::Signed(s.clone())).encode().unwrap_err(),
            ReceiptError::TooMany { field: "after.tokens", max: 64, actual: 65 }
        );
        let mut body = vec![0u8; 136];
        body.extend_from_slice(&65u16.to_le_bytes());
        assert_eq!(
            Receipt::decode(&raw(kind::SIGNED, 4, PREV, &body)).unwrap_err(),
            ReceiptError::TooMany { field: "charged.tokens", max: 64, actual: 65 }
        );
        s.after.tokens.truncate(64);
        Receipt::decode(&receipt(4, PREV, Body::Signed(s.clone())).encode().unwrap()).unwrap();

        s.after.tokens = vec![TokenAmount { mint: USDC, amount: 1 }; 2];
        assert_eq!(
            receipt(4, PREV, Body::Signed(s.clone())).encode().unwrap_err().code(),
            "duplicate_mint"
        );
        // The same list crafted by hand.
        s.after.tokens =
            vec![TokenAmount { mint: USDC, amount: 1 }, TokenAmount { mint: BONK, amount: 1 }];
        let mut b = receipt(4, PREV, Body::Signed(s)).encode().unwrap();
        let last_mint = b.len() - 40;
        b[last_mint..last_mint + 32].copy_from_slice(&USDC.0);
        assert_eq!(
            Receipt::decode(&b).unwrap_err(),
            ReceiptError::DuplicateMint { field: "after.tokens", mint: USDC.to_string() }
        );
    }

    #[test]
    fn single_receipt_chain_rules_are_enforced_both_ways() {
        let cases = [
            (raw(kind::CHAIN_START, 1, [0; 32], &[]), LinkRule::ChainStart),
            (raw(kind::CHAIN_START, 0, PREV, &[]), LinkRule::ChainStart),
            (raw(kind::KILL_SWITCH, 5, [0; 32], &[1]), LinkRule::ZeroPrev),
        ];
        for (bytes, rule) in cases {
            let e = Receipt::decode(&bytes).unwrap_err();
            assert!(matches!(e, ReceiptError::Link { rule: r, .. } if r == rule), "{e}");
            assert_eq!(e.code(), "invalid_link");
        }
        let handover = |seq, prev, pseq, head| {
            receipt(
                seq,
                prev,
                Body::HandoverIn {
                    predecessor: ENCLAVE_B,
                    predecessor_seq: pseq,
                    predecessor_head: head,
                },
            )
        };
        let e = handover(8, PREV, 7, [0x78; 32]).encode().unwrap_err();
        assert_eq!(e, ReceiptError::Link { seq: 8, rule: LinkRule::HandoverPrev });
        let e = handover(9, PREV, 7, PREV).encode().unwrap_err();
        assert_eq!(e, ReceiptError::Link { seq: 9, rule: LinkRule::HandoverSeq });
        let e = handover(0, PREV, u64::MAX, PREV).encode().unwrap_err();
        assert_eq!(e, ReceiptError::Link { seq: 0, rule: LinkRule::HandoverSeq });
        // The decoder applies the same rules to crafted bytes.
        let mut body = ENCLAVE_B.to_vec();
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&[0x78; 32]);
        assert_eq!(
            Receipt::decode(&raw(kind::HANDOVER_IN, 8, PREV, &body)).unwrap_err(),
            ReceiptError::Link { seq: 8, rule: LinkRule::HandoverPrev }
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: flip every byte of every kind to a few values.
        for r in every_receipt() {
            let b = r.encode().unwrap();
            for i in 0..b.len() {
                for v in [0u8, 1, 2, 0x7f, 0xff] {
                    let mut m = b.clone();
                    m[i] = v;
                    if let Ok(d) = Receipt::decode(&m) {
                        assert_eq!(d.encode().unwrap(), m, "decoding is one-to-one");
                    }
                }
            }
        }
    }

    #[test]
    fn json_names_ids_keys_and_hashes_as_the_api_does() {
        let json = serde_json::to_value(receipt(4, PREV, signed())).unwrap();
        assert_eq!(json["decider"], "a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1");
        assert_eq!(json["prev"], hex::encode(PREV));
        assert_eq!(json["body"]["kind"], "signed");
        assert_eq!(json["body"]["agent"], AGENT.to_string());
        assert_eq!(json["body"]["charged"]["tokens"][0]["amount"], 10_000_000);
        let json = serde_json::to_value(receipt(4, PREV, revoked_all())).unwrap();
        assert_eq!(
            json["body"]["target"],
            serde_json::json!({"scope": "issued_before", "cutoff": T0 + 3600})
        );
    }
}
