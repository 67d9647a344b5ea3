//! The vocabulary every trust zone shares — the enclave, the parent on the untrusted host, the
//! CLI security teams run — without the enclave's decision engine or any key handling:
//!
//! - [`pubkey`]: Solana public keys (base58 in JSON, bytes in CBOR), well-known program ids.
//! - [`ids`]: 16-byte ids as UUID text, and the attested [`ids::EnclaveId`].
//! - [`records`]: the byte layouts of grants, agent keys, scheduled keys and vaults (parse,
//!   headers, AAD); sealing and opening are the enclave's.
//! - [`policy`]: a grant's limits as data, their canonical bytes and human summary; rules and
//!   denials.
//! - [`provenance`]: what a provenance attestation document binds.
//! - [`error`]: stable API error codes with their HTTP status, record decoding errors.
#![forbid(unsafe_code)]

pub mod error;
pub mod ids;
pub mod policy;
pub mod provenance;
pub mod pubkey;
pub mod records;

pub use error::{ErrorCode, RecordError};
pub use ids::{EnclaveId, uuid_text};
pub use pubkey::Pubkey;
