//! HTTP request bodies, parsed exactly as the parent parses them: the first byte picks the
//! route, the rest is the body. Anything must give a typed body or a `400`-worthy error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signer_api::parse_body;

const PATHS: [&str; 12] = [
    "/v1/agents",
    "/v1/grants",
    "/v1/sign",
    "/v1/scheduled/sign",
    "/v1/grants/revoke",
    "/v1/kill-switch",
    "/healthz",
    "/v1/vaults",
    "/v1/authorizations/import",
    "/v1/vaults/import",
    "/v1/authorizations/grant",
    "/v1/admin/handover",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let path = PATHS[usize::from(selector) % PATHS.len()];
    if let Err(e) = parse_body(path, body) {
        assert!(!e.0.is_empty());
    }
});
