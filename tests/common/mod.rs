//! Shared by the end-to-end test files: the independent Solana oracle.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use signer_e2e::unb64;
use solana_transaction::versioned::VersionedTransaction;

/// Decodes a signed transaction with the `solana-transaction` crate and verifies every signature.
pub fn verify(tx_b64: &str) -> VersionedTransaction {
    let tx: VersionedTransaction = bincode::deserialize(&unb64(tx_b64)).unwrap();
    tx.verify_and_hash_message().expect("signatures verify (solana-transaction)");
    tx
}

/// The first signature in base58, as the API reports it.
pub fn first_signature(tx: &VersionedTransaction) -> String {
    tx.signatures[0].to_string()
}
