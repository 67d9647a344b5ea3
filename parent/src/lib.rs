//! The parent daemon: the HTTP API backend services call, the enclave client (vsock or Unix
//! socket, reconnecting), attested KMS calls, and the attestation check that gates everything.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod attestation;
pub mod cluster;
pub mod config;
pub mod handover;
pub mod kms;
pub mod metrics;
