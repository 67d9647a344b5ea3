//! The enclave daemon: the measured config, the NSM provider (real or simulated), the request
//! handler over enclave-core, and the connection server shared by vsock and Unix sockets.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod handler;
pub mod nsm;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim_nsm;
