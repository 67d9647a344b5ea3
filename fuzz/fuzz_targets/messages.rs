//! Protocol message decoding (CBOR `Request`/`Response`): any payload must decode or give a
//! typed error, and whatever decodes must re-encode to a stable form (decode ∘ encode is the
//! identity on encodings), so the parent and the enclave can never disagree on a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signer_protocol::messages::{Request, Response, decode, encode, request_id_of};

fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let once = encode(value, 0).unwrap();
    let again: T = decode(&once).unwrap();
    assert_eq!(*once, *encode(&again, 0).unwrap());
}

fuzz_target!(|data: &[u8]| {
    let id = request_id_of(data);
    if let Ok(request) = decode::<Request>(data) {
        assert_eq!(request.id, id);
        let _ = request.op.name();
        stable(&request);
    }
    if let Ok(response) = decode::<Response>(data) {
        stable(&response);
    }
});
