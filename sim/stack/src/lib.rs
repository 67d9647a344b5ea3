//! The simulation stack (SPEC §11): the same binaries as production with three stand-ins — the
//! sim NSM, a Unix socket instead of vsock, and the kms-sim emulator spoken to by the real
//! `aws-sdk-kms` client. Used by `scripts/sim.sh` (the `signer-sim` binary), the end-to-end
//! tests and the benchmark.
#![forbid(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod demo;
pub mod history;
pub mod nemesis;
pub mod process;
pub mod receipts;
pub mod stack;
pub mod tx;
pub mod user;

pub use client::Api;
pub use stack::{Options, Stack};

/// Why the stack could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{0}")]
    Setup(String),
    #[error("{name} exited ({status}); last log lines:\n{log}")]
    Exited { name: &'static str, status: String, log: String },
    #[error("timed out waiting for {what}; last log lines:\n{log}")]
    Timeout { what: String, log: String },
}
