//! Decision receipts over the real binaries (`docs/receipts.md`): the sign answer carries the
//! receipt the ring keeps, `GET /v1/receipts` pages them with a checkpoint the page's document
//! binds, and bad input to the route gets a clear error while the daemon keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde_json::Value;
use signer_e2e::*;
use signer_receipts::{Body, Receipt, SignedCheckpoint, checkpoint_key_binding, verify};

fn bytes_of(page: &Value, key: &str) -> Vec<u8> {
    unb64(page[key].as_str().unwrap())
}

#[test]
fn signed_answers_carry_the_receipt_the_ring_pages_with_a_bound_checkpoint() {
    let stack = start("receipts").unwrap();
    let api = stack.api();
    let w = Wallet::create(&api, policy(1_000_000_000, 10_000_000_000), 3600).unwrap();
    let (id, tx) = (request_id(), w.transfer(1_000));
    let r = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let attached = unb64(&r.str("receipt"));
    let Body::Signed(signed) = Receipt::decode(&attached).unwrap().body else { panic!() };
    assert_eq!(signed.charged.lamports, 1_000);
    // An identical retry gets the same signature and no second receipt.
    let again = api.post("/v1/sign", &w.sign_body(&tx, &id)).unwrap();
    assert_eq!((again.status, again.body.get("receipt")), (200, None), "{}", again.body);

    let page = api.get("/v1/receipts").unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let receipts: Vec<Vec<u8>> = page.body["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| unb64(r.as_str().unwrap()))
        .collect();
    assert!(receipts.contains(&attached), "the answer's receipt is the one the ring keeps");
    let enclave: [u8; 16] =
        *uuid_bytes(page.body["enclave_id"].as_str().unwrap()).as_ref().unwrap();
    let key: [u8; 32] = bytes_of(&page.body, "checkpoint_key").try_into().unwrap();
    let checkpoint = SignedCheckpoint::decode(&bytes_of(&page.body, "checkpoint")).unwrap();
    let report = verify(&receipts, &[checkpoint], &[(enclave, key)]);
    assert!(report.ok(), "{report:?}");
    // The page's document is the instance's, and binds that key.
    let document = bytes_of(&page.body, "document");
    let parsed = nitro_attestation::AttestationDocument::parse(&document).unwrap();
    assert_eq!(parsed.user_data.as_deref(), Some(&checkpoint_key_binding(&enclave, &key)[..]));
    // GET /v1/enclave names the same key.
    let identity = api.get("/v1/enclave").unwrap();
    assert_eq!(unb64(&identity.str("checkpoint_key")), key.to_vec());
    // The next page starts after the last one.
    let next = page.body["next_after"].as_u64().unwrap();
    let rest = api.get(&format!("/v1/receipts?after={next}")).unwrap();
    assert_eq!((rest.status, rest.body["receipts"].as_array().map(Vec::len)), (200, Some(0)));
    let (_, metrics) = api.get_text("/metrics").unwrap();
    assert!(metric(&metrics, r#"signer_receipts_total{delivery="attached"}"#) >= 1.0);
    assert!(metric(&metrics, r#"signer_receipts_total{delivery="paged"}"#) >= 4.0);
}

#[test]
fn bad_input_to_the_receipts_route_gets_a_clear_error_and_the_daemon_keeps_serving() {
    let stack = start("receipts-input").unwrap();
    let api = stack.api();
    for query in [
        "after=abc",
        "after=-1",
        "after=1.5",
        "after=99999999999999999999999",
        "after=1&x=2",
        "after=",
    ] {
        let r = api.get(&format!("/v1/receipts?{query}")).unwrap();
        assert_eq!((r.status, r.code()), (400, Some("bad_request")), "{query}: {}", r.body);
        assert!(r.str("detail").contains("after"), "{query}: {}", r.body);
    }
    let anonymous = Api::new(stack.base_url(), String::new());
    assert_eq!(anonymous.get("/v1/receipts").unwrap().status, 401);
    let r = api.post("/v1/receipts", &serde_json::json!({})).unwrap();
    assert_eq!(r.status, 405, "{}", r.body);
    // Still serving: a page far ahead is simply empty.
    let r = api.get("/v1/receipts?after=1000000").unwrap();
    assert_eq!((r.status, r.body["receipts"].as_array().map(Vec::len)), (200, Some(0)));
}

fn uuid_bytes(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(text).ok().map(|u| *u.as_bytes())
}
