//! Parent-enclave framing and messages.
