//! Everything the enclave decides and computes, without I/O.
