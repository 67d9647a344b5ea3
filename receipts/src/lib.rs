//! Verifiable decision receipts (`docs/receipts.md`): every decision the enclave makes yields a
//! receipt, hash-chained to the one before; a per-boot key signs checkpoints of the chain head,
//! and that key is bound to the attested instance. A host can withhold receipts, but cannot
//! forge, reorder, alter or silently trim them without the verifier ([`verify()`]) saying so.
//!
//! - [`receipt`]: the receipt format ([`Receipt`], [`Body`]), strict decoding, [`receipt_hash`].
//! - [`checkpoint`]: [`Checkpoint`], [`SignedCheckpoint`], [`CheckpointKey`] and
//!   [`checkpoint_key_binding`] (an attestation document's `user_data`).
//! - [`chain`]: [`Chain`], what the enclave appends to (one hash per receipt).
//! - [`verify`](mod@verify): the verifier and its [`Report`].
//!
//! No I/O, no clock, no randomness of its own: the caller passes times and the RNG.
//!
//! ```
//! use signer_receipts::{Body, Chain, CheckpointKey, verify};
//!
//! let enclave_id = [0xa1; 16];
//! let key = CheckpointKey::from_bytes(&[7; 32]); // at boot: CheckpointKey::generate(&mut rng)
//! let _user_data = key.binding(&enclave_id); // into an attestation document
//! let (mut chain, first) = Chain::start(enclave_id, 1_735_689_600)?;
//! let next = chain.append(1_735_689_601, &Body::KillSwitch { on: true })?;
//! let signed = key.sign(&chain.checkpoint(enclave_id, 1_735_689_602));
//! let report = verify(&[first.bytes, next.bytes], &[signed], &[(enclave_id, key.public())]);
//! assert!(report.ok(), "{report}");
//! # Ok::<(), signer_receipts::ReceiptError>(())
//! ```
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
