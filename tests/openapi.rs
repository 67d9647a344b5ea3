//! The OpenAPI document (`docs/openapi.json`) is the one the code generates, passes an
//! independent validator, and says what the running parent does: every route it lists answers
//! (and none it does not), with the tokens it names, the statuses it lists, and bodies of the
//! shapes it describes; its examples parse, and the self-contained ones succeed.
//!
//! `SIGNER_UPDATE_OPENAPI=1 cargo nextest run --test openapi` rewrites `docs/openapi.json` from
//! the code; review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use serde_json::{Value, json};
use signer_e2e::*;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[test]
fn the_committed_openapi_document_is_what_the_code_generates() {
    let generated = signer_parent::api::openapi_json();
    let path = committed_path();
    if std::env::var_os("SIGNER_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: rerun with SIGNER_UPDATE_OPENAPI=1 and review the diff"
    );
    let doc: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn the_openapi_document_passes_an_independent_validator() {
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(committed_path())
        .output()
        .expect("python3 runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "openapi-spec-validator refused docs/openapi.json (pip install openapi-spec-validator \
         if it is missing):\n{text}"
    );
    assert!(text.contains("OK"), "{text}");
}

/// `#/components/<kind>/<name>` of `doc`, following one `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = doc;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "dangling {r}");
            node
        }
        None => value,
    }
}

/// Checks a JSON body against an object schema: no key it does not describe, every required one.
fn check_shape(doc: &Value, schema: &Value, body: &Value, what: &str) {
    let schema = resolve(doc, schema);
    let Some(properties) = schema["properties"].as_object() else { return };
    let object = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    for key in object.keys() {
        assert!(properties.contains_key(key), "{what}: `{key}` is not in the schema: {body}");
    }
    for key in schema["required"].as_array().into_iter().flatten() {
        assert!(object.contains_key(key.as_str().unwrap()), "{what}: `{key}` missing: {body}");
    }
}

#[test]
fn the_served_document_matches_the_routes_tokens_and_answers_of_the_stack() {
    let stack = start("openapi").unwrap();
    let (api, admin) = (stack.api(), stack.admin());
    let anonymous = api.with_token("");

    // Served without a token, and the same as the committed file.
    let (status, served) = anonymous.get_text("/v1/openapi.json").unwrap();
    assert_eq!(status, 200);
    let committed = std::fs::read_to_string(committed_path()).unwrap();
    assert_eq!(served, committed, "the served document is not docs/openapi.json");
    let doc: Value = serde_json::from_str(&served).unwrap();

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap();
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
                .collect();
            let documented = |status: u16| op["responses"].get(status.to_string()).is_some();
            let call = |client: &Api, body: Option<&Value>| match (method.as_str(), body) {
                ("get", _) => client.get(path).unwrap(),
                (_, Some(body)) => client.post(path, body).unwrap(),
                (_, None) => client.post_raw(path, b"", "application/json").unwrap(),
            };

            // Tokens: an operation without security is open; with only `admin_token`, the API
            // token is refused; every secured one refuses a request without a token.
            let example = op["requestBody"]["content"]["application/json"]["example"].clone();
            let example = (!example.is_null()).then_some(example);
            if schemes.is_empty() {
                assert_ne!(call(&anonymous, None).status, 401, "{id} is open");
            } else {
                let r = call(&anonymous, example.as_ref());
                assert_eq!((r.status, r.code()), (401, Some("unauthorized")), "{id}");
                assert!(documented(401), "{id} does not list 401");
                if !schemes.contains(&"api_token") {
                    assert_eq!(call(&api, example.as_ref()).status, 401, "{id} is admin-only");
                }
            }

            // The examples: each is a body the route parses; those that need nothing earlier
            // succeed. The handover example names a successor that does not run (it would wait
            // 10 s for it to listen, then refuse): not sent.
            if id == "handover" {
                continue;
            }
            let client =
                if schemes.contains(&"api_token") || schemes.is_empty() { &api } else { &admin };
            let r = call(client, example.as_ref());
            if let Some(code) = r.code() {
                assert!(documented(r.status), "{id} answered {} ({code}): {}", r.status, r.body);
                let detail = r.str("detail");
                assert!(
                    !detail.contains("JSON body") && !detail.contains("unknown field"),
                    "{id}: the example does not parse: {detail}"
                );
            } else {
                assert_eq!(r.status, 200, "{id}: {}", r.body);
            }
            if matches!(
                id,
                "vaults" | "authorize_grant" | "kill_switch" | "enclave" | "attestation"
            ) {
                assert_eq!(r.status, 200, "{id}'s example succeeds against the stack: {}", r.body);
            }
            if r.status == 200 && r.body.is_object() {
                let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
                check_shape(&doc, schema, &r.body, id);
            } else if r.code().is_some() {
                check_shape(&doc, &json!({"$ref": "#/components/schemas/Problem"}), &r.body, id);
            }
        }
    }
    assert_eq!(operations, 29);
    // The example engaged the kill switch.
    assert_eq!(admin.post("/v1/kill-switch", &json!({"engaged": false})).unwrap().status, 200);

    // Routes and methods the document does not list.
    let r = api.get("/v1/nothing").unwrap();
    assert_eq!((r.status, r.code()), (404, Some("not_found")));
    let r = api.get("/v1/sign").unwrap();
    assert_eq!((r.status, r.code()), (405, Some("method_not_allowed")));
    assert_eq!(r.header("allow"), Some("POST"));

    // Every answer carries a request id: the client's, or one the parent made.
    let r = api.get("/healthz").unwrap();
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
    let r = api
        .post_with("/v1/vaults", &json!({"wallet": "x"}), &[("x-request-id", "req-42")])
        .unwrap();
    assert_eq!((r.status, r.header("x-request-id")), (400, Some("req-42")));
}
