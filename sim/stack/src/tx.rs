//! Minimal Solana transactions for the demo, benchmarks and tests: a legacy message with one
//! signer (the payer) and one System `Transfer`, signature slot left zero (as wallet libraries
//! produce with `requireAllSignatures: false`).

use enclave_core::Pubkey;

/// `[1 slot of zeros] ‖ header 1/0/1 ‖ keys [payer, to, system] ‖ blockhash ‖ Transfer(lamports)`.
pub fn legacy_transfer(payer: &Pubkey, to: &Pubkey, lamports: u64, blockhash: [u8; 32]) -> Vec<u8> {
    let mut tx = Vec::with_capacity(215);
    tx.push(1);
    tx.extend_from_slice(&[0u8; 64]);
    tx.extend_from_slice(&[1, 0, 1, 3]);
    tx.extend_from_slice(&payer.0);
    tx.extend_from_slice(&to.0);
    tx.extend_from_slice(&[0u8; 32]);
    tx.extend_from_slice(&blockhash);
    tx.extend_from_slice(&[1, 2, 2, 0, 1, 12, 2, 0, 0, 0]);
    tx.extend_from_slice(&lamports.to_le_bytes());
    tx
}

/// Verifies the first signature of a single-signer legacy transaction against `signer`.
pub fn verify_first_signature(tx: &[u8], signer: &Pubkey) -> Result<(), String> {
    use ed25519_dalek::Verifier as _;
    let sig: [u8; 64] =
        tx.get(1..65).and_then(|s| s.try_into().ok()).ok_or("transaction too short")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&signer.0).map_err(|e| e.to_string())?;
    key.verify(tx.get(65..).unwrap_or_default(), &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|e| format!("signature does not verify: {e}"))
}
