//! The enclave daemon.
