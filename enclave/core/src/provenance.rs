//! Provenance (see [`signer_types::provenance`] for the binding): the enclave attests every vault
//! and agent key it creates, and uses a vault only with such a document from a trusted image,
//! verified at the document's own timestamp with [`nitro_attestation::verify_at_document_time`].
//! This module re-exports the binding so callers of the enclave find it here.

pub use signer_types::provenance::*;
