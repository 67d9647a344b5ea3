//! What the CLI tests share: images of chosen PCRs, their `nitro-cli` measurement JSON, and
//! document timestamps.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use nitro_attestation::Pcrs;
use serde_json::json;

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// PCR0..2 of 48 bytes each, derived from `seed`.
pub fn image(seed: u8) -> Pcrs {
    (0u8..3).map(|i| (i, vec![seed.wrapping_add(i); 48])).collect()
}

/// `pcrs` as `nitro-cli`'s measurement JSON.
pub fn measurements_json(pcrs: &Pcrs) -> Vec<u8> {
    let mut m = serde_json::Map::new();
    m.insert("HashAlgorithm".into(), "Sha384 { ... }".into());
    for (i, v) in pcrs {
        m.insert(format!("PCR{i}"), hex::encode(v).into());
    }
    serde_json::to_vec(&json!({ "Measurements": m })).unwrap()
}
