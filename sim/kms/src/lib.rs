//! `kms-sim`: a local AWS KMS emulator for the simulation stack.
//!
//! It speaks the real KMS JSON protocol (so the unmodified `aws-sdk-kms` client, `boto3` and the
//! AWS CLI work against it), persists keys and policies in a data directory, and evaluates
//! `Decrypt` with `Recipient` the way KMS does: verify the attestation document (same
//! `nitro-attestation` code, sim root injected), evaluate the key policy's
//! `kms:RecipientAttestation:ImageSha384` / `PCR<n>` conditions and explicit denies, and return
//! a `CiphertextForRecipient` byte-compatible with KMS's.
#![forbid(unsafe_code)]

pub mod server;
pub mod service;
pub mod store;

pub use service::{Fault, Kms, KmsError, Settings};
pub use store::Store;
