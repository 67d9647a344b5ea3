//! BER reader and the KMS `CiphertextForRecipient` (CMS EnvelopedData) parser: any input must
//! parse or give a typed error within the depth and size limits. The RSA step is skipped (the
//! fuzzer cannot produce valid OAEP ciphertexts, and it costs ~1.6 ms); the symmetric step
//! after it runs with a fixed content key.
#![no_main]

use enclave_core::ber::{Element, MAX_DEPTH, Reader};
use enclave_core::envelope::{MAX_CONTENT, decrypt_content, parse};
use libfuzzer_sys::fuzz_target;

/// Walks every element of the tree, as deep as the reader allows.
fn walk(element: &Element<'_>, depth: usize) {
    assert!(depth <= MAX_DEPTH);
    if !element.constructed {
        return;
    }
    let Ok(mut children) = element.children(depth) else { return };
    while !children.is_empty() {
        match children.next_element() {
            Ok(child) => walk(&child, children.depth()),
            Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(mut reader) = Reader::new(data) {
        while !reader.is_empty() {
            match reader.next_element() {
                Ok(element) => walk(&element, reader.depth()),
                Err(_) => break,
            }
        }
    }
    if let Ok(parsed) = parse(data) {
        assert_eq!(parsed.rid.len(), 32);
        assert_eq!(parsed.iv.len(), 16);
        let len = parsed.ciphertext.len();
        assert!(len > 0 && len % 16 == 0 && len <= MAX_CONTENT);
        if let Ok(plaintext) = decrypt_content(parsed, &[0x42; 32]) {
            assert!(plaintext.len() < len);
        }
    }
});
