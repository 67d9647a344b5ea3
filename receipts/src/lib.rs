//! Verifiable decision receipts (`docs/receipts.md`): every decision the enclave makes yields a
//! receipt, hash-chained to the one before; a per-boot key signs checkpoints of the chain head,
//! and that key is bound to the attested instance. A host can withhold receipts, but cannot
//! forge, reorder, alter or silently trim them without the [`verify`]er saying so.
//!
//! - [`receipt`]: the receipt format ([`Receipt`], [`Body`]), strict decoding, [`receipt_hash`].
//! - [`checkpoint`]: [`Checkpoint`], [`SignedCheckpoint`], [`CheckpointKey`] and
//!   [`checkpoint_key_binding`] (an attestation document's `user_data`).
//! - [`chain`]: [`Chain`], what the enclave appends to (one hash per receipt).
//! - [`verify`](mod@verify): the verifier and its [`Report`].
//!
//! No I/O, no clock, no randomness of its own: the caller passes times and the RNG.
#![forbid(unsafe_code)]

pub mod chain;
pub mod checkpoint;
pub mod receipt;
pub mod verify;

#[cfg(test)]
pub(crate) mod samples;

pub use chain::{Appended, Chain};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointKey, SignedCheckpoint, checkpoint_key_binding,
};
pub use receipt::{
    Body, Charge, Counters, GrantCreated, LinkRule, Receipt, ReceiptError, Refused, RevokeTarget,
    Signed, TokenAmount, receipt_hash,
};
pub use verify::{
    ChainStartKind, ChainSummary, CheckpointReport, CheckpointStatus, Duplicate, Fork, ForkReason,
    Gap, Handover, HandoverStatus, Reorder, Report, SeqRange, Undecodable, verify,
};
