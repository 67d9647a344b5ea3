//! What the OpenAPI document says beyond each route's `#[utoipa::path]`: the description, the two
//! bearer schemes (API and admin token), one error response per status (its codes, each with an
//! example body, from the code tables of `signer-api`), the schemas every problem refers to, and
//! the examples ([`super::examples`]).

use std::collections::BTreeMap;

use serde_json::json;
use signer_api::Problem;
use signer_api::schema::{ErrorCodeSchema, RuleSchema, codes_with_status};
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, Ref, RefOr};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};

use super::examples;
use super::problem::PROBLEM_JSON;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Signing enclave API",
        description = "The parent daemon's HTTP API (SPEC §6): backend services create users' \
            vaults and agent keys, turn a user's wallet signature into a grant, and sign Solana \
            transactions under it; the keys never leave the AWS Nitro enclave.\n\n\
            JSON bodies, unknown fields refused. Bytes are standard padded base64, Solana keys \
            and signatures base58, 16-byte ids UUID text. Send `Authorization: Bearer <token>`: \
            the API token, or the admin token where a route says so (the admin token also works \
            everywhere the API token does). Errors are `application/problem+json` with a stable \
            `code`; a request with a body refused before it was read (401, 404, 405, 408, 413) is \
            answered with `Connection: close`.\n\n\
            Limits: request body 64 KiB; a request's headers must arrive within 10 s and the \
            whole request within 30 s (counted from when the connection starts waiting for it); \
            at most 4096 `/v1` requests in progress at once (configurable). Every response \
            carries `x-request-id` (the client's, or one the parent made). Grants and scheduled \
            records live on one enclave instance: route their requests by `X-Signer-Route` \
            (`GET /v1/enclave` of each instance is the routing table); revocations and the kill \
            switch are per instance.\n\n\
            The examples use the simulation stack's conventions (`scripts/sim.sh`, \
            `http://127.0.0.1:8787`; tokens in `.sim-data/tokens.json`); records, documents and \
            signatures in them are placeholders of the right encoding: take real ones from the \
            earlier responses of the same flow.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8787", description = "scripts/sim.sh (the default listen address)")),
    tags(
        (name = "probes", description = "Open: liveness, readiness, metrics, this document."),
        (name = "enclave", description = "Which enclave this is, and its attestation."),
        (name = "vaults", description = "Users' vaults (master keys) and agent keys."),
        (name = "grants", description = "Signing rights for a bot, from the user's wallet signature."),
        (name = "signing", description = "Signatures under a grant or a scheduled record."),
        (name = "revocation", description = "Ending grants: by the wallet, or by an operator."),
        (name = "export", description = "A secret to the user's browser, HPKE-sealed."),
        (name = "admin", description = "Operator controls (admin token)."),
    ),
)]
struct ApiDoc;

/// The document before the routes are added.
pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// The component name of the error response for `status`.
pub fn response_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        408 => "RequestTimeout",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        421 => "MisdirectedRequest",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        _ => "Error",
    }
}

/// Every status an error is answered with.
pub const ERROR_STATUSES: [u16; 12] = [400, 401, 403, 404, 405, 408, 409, 413, 421, 500, 502, 503];

/// What a code means (the README's "Errors" table, shortened).
fn meaning(code: &str) -> &'static str {
    match code {
        "bad_request" => {
            "malformed JSON, wrong types, unknown fields, bad encodings, an unparseable \
             transaction, the agent not a signer, or an `X-Signer-Route` naming another enclave \
             than the record's"
        }
        "record_invalid" => {
            "a record does not parse or does not match the others (wallet, bot, agent, type), or \
             a scheduled record's window is too long or too far from its creation"
        }
        "authorization_signature_noncanonical" => {
            "the wallet signature or key is not in canonical form: refused before verifying"
        }
        "unauthorized" => "missing or wrong bearer token (or an API token on an admin route)",
        "authorization_expired" => "the wallet's signed message is past its validity",
        "authorization_not_yet_valid" => "the signed message is dated ahead of the enclave clock",
        "authorization_signature_invalid" => {
            "not signed by that wallet over the message the enclave renders from these fields"
        }
        "authorization_nonce_unknown" => {
            "the message's nonce was not issued here for this wallet and purpose, expired, or \
             was voided by a revocation: ask for a new message"
        }
        "provenance_invalid" => {
            "the vault's provenance document is missing, does not verify, comes from an untrusted \
             image, or is about another record"
        }
        "grant_orphaned" => {
            "the record belongs to an enclave instance that is gone: the user must authorize a \
             new grant"
        }
        "grant_expired" => "the grant is past its lifetime",
        "grant_revoked" => "the grant (or its wallet) was revoked",
        "kill_switch" => "the kill switch is engaged",
        "policy_denied" => "the grant's policy refuses the transaction (`rule` says which)",
        "not_found" => "no such route",
        "method_not_allowed" => "the route takes another method (`Allow`)",
        "request_timeout" => {
            "the request's headers took over 10 s, or the whole request over 30 s, to arrive"
        }
        "replayed_request" => {
            "`request_id` already used for a different request, or a scheduled record already used"
        }
        "authorization_replayed" => {
            "that message's nonce was already used by another signed message (the same signed \
             request again is answered again)"
        }
        "handover_refused" => "a handover step does not verify",
        "payload_too_large" => "the body is over 64 KiB",
        "wrong_enclave" => {
            "the record belongs to another running enclave instance: route by `X-Signer-Route`"
        }
        "kms_access_denied" => {
            "KMS refused: the key policy's PCRs do not match this enclave, the role lacks \
             `kms:Decrypt`, or the key is disabled"
        }
        "envelope_rejected" => {
            "the record's key did not open in the enclave (altered at rest, or a forged envelope); \
             nothing was signed"
        }
        "enclave_unavailable" => {
            "enclave down or not attested, a bounded store full, KMS unreachable, or the parent \
             at its limit of requests in progress: retry later with the same `request_id`"
        }
        "enclave_handed_over" => {
            "this enclave handed its state to a successor (the parent retries there by itself)"
        }
        "internal" => "a bug or a misbehaving dependency; nothing was signed: safe to retry",
        _ => "",
    }
}

fn title(code: &str) -> &'static str {
    signer_types::ErrorCode::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .map(|c| c.title())
        .or_else(|| {
            signer_api::HttpCode::ALL.iter().find(|c| c.as_str() == code).map(|c| c.title())
        })
        .unwrap_or("Error")
}

/// The error response for `status`: every code it carries, each with an example body.
fn error_response(status: u16) -> Response {
    let codes: Vec<&str> =
        codes_with_status().into_iter().filter(|(_, s)| *s == status).map(|(c, _)| c).collect();
    let mut description = String::from("Problem (`application/problem+json`):");
    for code in &codes {
        description.push_str(&format!("\n- `{code}`: {}", meaning(code)));
    }
    let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem")));
    for code in &codes {
        let value = json!({
            "type": format!("urn:signer:error:{code}"),
            "title": title(code),
            "status": status,
            "detail": meaning(code),
            "code": code,
        });
        let value = if *code == "policy_denied" {
            let numbers = json!({
                "rule": "max_lamports_per_day",
                "limit": 5_000_000_000u64,
                "requested": 600_005_000u64,
                "used": 4_500_000_000u64,
            });
            examples::merged(value, numbers)
        } else {
            value
        };
        let example = ExampleBuilder::new().summary(title(code)).value(Some(value)).build();
        content = content.examples_from_iter([(code.to_string(), example)]);
    }
    let mut response =
        ResponseBuilder::new().description(description).content(PROBLEM_JSON, content.build());
    if status == 401 {
        let header =
            HeaderBuilder::new().schema(String::schema()).description(Some("`Bearer`")).build();
        response = response.header("WWW-Authenticate", header);
    }
    if status == 405 {
        let header = HeaderBuilder::new()
            .schema(String::schema())
            .description(Some("The method the route accepts."))
            .build();
        response = response.header("Allow", header);
    }
    response.build()
}

/// Declares error response sets: a route lists one in its `responses(...)`.
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident: [$($status:literal),*];)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
                [$($status),*]
                    .into_iter()
                    .map(|s: u16| {
                        (s.to_string(), RefOr::Ref(Ref::from_response_name(response_name(s))))
                    })
                    .collect()
            }
        }
    )*};
}

error_sets! {
    /// `GET /v1/attestation`.
    AttestationErrors: [400, 401, 500, 503];
    /// `GET /v1/enclave`.
    EnclaveErrors: [401, 500, 503];
    /// A body, one enclave call, nothing to open (`POST /v1/vaults`).
    SimpleBodyErrors: [400, 401, 408, 413, 500, 503];
    /// An authorization message (the enclave checks records and provenance, signs nothing).
    AuthorizeErrors: [400, 401, 403, 408, 413, 500, 503];
    /// A wallet-signed operation that opens a record with KMS.
    OpeningErrors: [400, 401, 403, 408, 409, 413, 500, 502, 503];
    /// A signature under a grant or a scheduled record.
    SignErrors: [400, 401, 403, 408, 409, 413, 421, 500, 502, 503];
    /// A revocation.
    RevokeErrors: [400, 401, 403, 408, 409, 413, 500, 503];
    /// The kill switch.
    KillSwitchErrors: [400, 401, 408, 413, 500, 503];
    /// A handover.
    TakeoverErrors: [400, 401, 408, 409, 413, 500, 502, 503];
    /// A handover's abort.
    AbortErrors: [401, 409, 500, 503];
    /// A cluster operation with a body (cards, genesis, admission, a relayed message).
    ClusterErrors: [400, 401, 408, 413, 500, 503];
    /// A cluster operation that may involve KMS: admission (of a new image: KMS's envelope for
    /// the newcomer) and the newcomer's proof (it opens that envelope).
    ClusterKmsErrors: [400, 401, 408, 413, 500, 502, 503];
}

/// Adds what the routes do not say themselves: security schemes, error responses, the schemas
/// they refer to, and the examples.
pub fn complete(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Components::new);
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description.to_string()))
                .build(),
        )
    };
    components.add_security_scheme(
        "api_token",
        bearer(
            "The API token (`SIGNER_API_TOKEN`; `api` in the simulation's `tokens.json`), for \
             backend services. Where a route accepts it, the admin token works too.",
        ),
    );
    components.add_security_scheme(
        "admin_token",
        bearer(
            "The admin token (`SIGNER_ADMIN_TOKEN`; `admin` in the simulation's `tokens.json`), \
             for operators: the kill switch, handovers, and revocations without the wallet's \
             signature.",
        ),
    );
    let mut schemas = Vec::new();
    <Problem<'static> as ToSchema>::schemas(&mut schemas);
    schemas.push((Problem::name().into_owned(), Problem::schema()));
    schemas.push((ErrorCodeSchema::name().into_owned(), ErrorCodeSchema::schema()));
    schemas.push((RuleSchema::name().into_owned(), RuleSchema::schema()));
    components.schemas.extend(schemas);
    for status in ERROR_STATUSES {
        components
            .responses
            .insert(response_name(status).to_string(), RefOr::T(error_response(status)));
    }
    for item in openapi.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
            let Some(id) = operation.operation_id.clone() else { continue };
            if let (Some(body), Some(example)) =
                (operation.request_body.as_mut(), examples::request(&id))
            {
                for content in body.content.values_mut() {
                    content.example = Some(example.clone());
                }
            }
            if let (Some(RefOr::T(ok)), Some(example)) =
                (operation.responses.responses.get_mut("200"), examples::response(&id))
                && let Some(content) = ok.content.get_mut("application/json")
            {
                content.example = Some(example);
            }
        }
    }
}
