//! Everything the enclave decides and computes, as a library without I/O.
//!
//! - [`records`]: execution grants, agent keys and scheduled keys — binary AAD, AES-256-GCM,
//!   RSA-OAEP or KMS-symmetric key wrapping, HKDF-derived agent-key keys.
//! - [`envelope`] (with [`ber`]): KMS `CiphertextForRecipient` consumer and producer.
//! - [`agent_key`]: raw seeds and BIP39 / SLIP-0010 derivation at `m/44'/501'/account'/0'`.
//! - [`solana`]: zero-copy legacy/v0 transaction parser with the runtime's sanitize rules; signing.
//! - [`policy`]: default-deny instruction rules, fee formula, daily limits, velocity, intents.
//! - [`enclave`]: the decision engine tying these together (grant cache, idempotency, revocation,
//!   kill switch), with injectable clock and randomness.
//! - [`cluster`]: attested member identities and the authenticated, encrypted channel between
//!   the members of a replicated cluster (HPKE Auth mode, replay window).
//!
//! Secrets are held only in [`secret`] types (zeroized on drop, redacted `Debug`).
#![forbid(unsafe_code)]

pub mod agent_key;
pub mod authorization;
pub mod ber;
pub mod cluster;
pub mod enclave;
pub mod envelope;
pub mod error;
pub mod policy;
pub mod provenance;
pub mod records;
pub mod secret;
pub mod solana;
pub mod store;

pub use enclave::{Clock, Enclave, EnclaveConfig, SignOutcome, SystemClock};
pub use error::{EnclaveError, ErrorCode};
pub use secret::{OsRandom, Secret32, SecureRandom};
pub use signer_types::{EnclaveId, Pubkey, ids, pubkey};
