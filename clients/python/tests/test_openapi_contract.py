"""The client against ``docs/openapi.json`` (the parent's OpenAPI document), so they cannot drift:
every client method's path and HTTP method exist in the document, and for every route the JSON
fields the client can send are exactly the request schema's properties, with the required ones
sent on every call; its query parameters and headers are documented parameters, and the token
it sends is one the route's security accepts. The calls are made for real, through a fake
transport that records them."""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from _support import REPO_ROOT

from signing_enclave import SignerClient, b64encode

OPENAPI = REPO_ROOT / "docs" / "openapi.json"

WALLET = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
AGENT = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
ID = "7a7a7a7a-7a7a-7a7a-7a7a-7a7a7a7a7a7a"
SIG = bytes(64)
REC = b64encode(b"record")
_COMMON = (1).to_bytes(4, "little") + b"%c" + bytes(32) + bytes(16)
#: Records whose header names an enclave: the client sends it as ``X-Signer-Route``.
GRANT_REC = b64encode(_COMMON.replace(b"%c", b"\1") + bytes(16 + 32 + 8 + 8) + bytes(range(16)) + bytes(40))
SCHEDULED_REC = b64encode(_COMMON.replace(b"%c", b"\3") + bytes(32 + 8 * 3 + 32 + 8) + bytes(range(16)) + bytes(40))
POLICY = {
    "max_lamports_per_tx": 1,
    "max_lamports_per_day": 2,
    "max_fee_lamports": 3,
    "tokens": [{"mint": AGENT, "max_per_tx": 1, "max_per_day": 2}],
    "allowed_programs": ["JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"],
    "max_notional_cents_per_tx": 4,
    "max_notional_cents_per_day": 5,
    "destinations": [WALLET],
    "max_tx_per_minute": 6,
}
TERMS = dict(wallet=WALLET, bot_id=ID, agent_pubkey=AGENT, ttl_seconds=60, policy=POLICY)
SIGNED = dict(nonce="00" * 16, issued_at=1, signature=SIG)
EXPORT = dict(wallet=WALLET, vault_record=REC, vault_provenance=REC, recipient=bytes(32))

#: Every call a client method can make, with every optional field present and absent.
CALLS: list[tuple[str, Callable[[SignerClient], Any]]] = [
    ("health", lambda c: c.health()),
    ("ready", lambda c: c.ready()),
    ("metrics", lambda c: c.metrics()),
    ("attestation", lambda c: c.attestation()),
    ("attestation", lambda c: c.attestation("00ff")),
    ("enclave", lambda c: c.enclave()),
    ("create_vault", lambda c: c.create_vault(WALLET)),
    ("authorize_import", lambda c: c.authorize_import(wallet=WALLET, vault_record=REC)),
    ("import_vault", lambda c: c.import_vault(wallet=WALLET, vault_record=REC, **SIGNED)),
    ("create_agent", lambda c: c.create_agent(wallet=WALLET, vault_record=REC, vault_provenance=REC)),
    ("create_agent", lambda c: c.create_agent(wallet=WALLET, vault_record=REC, vault_provenance=REC, kind="mnemonic", account=1)),
    ("authorize_grant", lambda c: c.authorize_grant(**TERMS)),
    ("create_grant", lambda c: c.create_grant(**TERMS, **SIGNED, vault_record=REC, vault_provenance=REC)),
    ("sign", lambda c: c.sign(grant_record=GRANT_REC, agent_key_record=REC, bot_id=ID, transaction=b"tx")),
    ("sign", lambda c: c.sign(grant_record=GRANT_REC, agent_key_record=REC, bot_id=ID, transaction=b"tx", request_id=ID, declared_notional_cents=1)),
    ("sign_scheduled", lambda c: c.sign_scheduled(scheduled_record=SCHEDULED_REC, transaction=b"tx")),
    ("authorize_revoke", lambda c: c.authorize_revoke(wallet=WALLET, grant_id=ID)),
    ("authorize_revoke", lambda c: c.authorize_revoke(wallet=WALLET, all=True)),
    ("revoke_signed", lambda c: c.revoke_signed(wallet=WALLET, grant_id=ID, **SIGNED)),
    ("revoke_signed", lambda c: c.revoke_signed(wallet=WALLET, all=True, **SIGNED)),
    ("authorize_export", lambda c: c.authorize_export(**EXPORT)),
    ("authorize_export", lambda c: c.authorize_export(**EXPORT, agent_key_record=REC)),
    ("export_secret", lambda c: c.export_secret(**EXPORT, **SIGNED)),
    ("export_secret", lambda c: c.export_secret(**EXPORT, **SIGNED, agent_key_record=REC)),
    ("revoke_grant", lambda c: c.revoke_grant(ID)),
    ("revoke_wallet", lambda c: c.revoke_wallet(WALLET)),
    ("set_kill_switch", lambda c: c.set_kill_switch(False)),
]

# method, path, body keys, query keys, extra headers, token ("api_token", "admin_token" or None)
Seen = tuple[str, str, "frozenset[str] | None", "frozenset[str]", "frozenset[str]", "str | None"]
STANDARD_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-type", "content-length", "authorization"}


def record_calls() -> list[tuple[str, Seen]]:
    """Runs every call through a fake transport; returns what each sent."""
    out: list[tuple[str, Seen]] = []
    current: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        current.append(request)
        body = '{"signature":"s","transaction":"dA=="}' if "sign" in request.url.path else '{"ok":true}'
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body.encode())

    client = SignerClient("http://signer.test", "api", admin_token="admin", transport=httpx.MockTransport(handler))
    for name, call in CALLS:
        current.clear()
        call(client)
        assert len(current) == 1, name
        req = current[0]
        keys = frozenset(json.loads(req.content)) if req.content else None
        extra = frozenset(h.lower() for h in req.headers if h.lower() not in STANDARD_HEADERS)
        if name.startswith("sign"):
            assert extra == {"x-signer-route"}, name
        token = {"Bearer api": "api_token", "Bearer admin": "admin_token"}.get(req.headers.get("authorization", ""))
        out.append((name, (req.method, req.url.path, keys, frozenset(req.url.params.keys()), extra, token)))
    return out


def public_methods() -> set[str]:
    return {
        n for n, f in inspect.getmembers(SignerClient, inspect.isfunction)
        if not n.startswith("_") and n not in ("close",)
    }


def test_every_client_method_is_exercised_here() -> None:
    assert {n for n, _ in CALLS} == public_methods()


# -- the checker ----------------------------------------------------------------------------------


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), f"external $ref {ref}"
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
        seen += 1
        assert seen < 32, "a $ref cycle"
    return schema


def variants(doc: dict[str, Any], schema: dict[str, Any]) -> list[tuple[set[str], set[str]]]:
    """(properties, required) of each shape an object schema allows (``oneOf``/``anyOf`` give
    several; ``allOf`` merges)."""
    schema = resolve(doc, schema)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            out = []
            base_props = set(schema.get("properties", {}))
            base_req = set(schema.get("required", []))
            for sub in schema[key]:
                for props, req in variants(doc, sub):
                    out.append((props | base_props, req | base_req))
            return out
    props = set(schema.get("properties", {}))
    req = set(schema.get("required", []))
    if "allOf" in schema:
        merged = [(props, req)]
        for sub in schema["allOf"]:
            merged = [(p | sp, r | sr) for p, r in merged for sp, sr in variants(doc, sub)]
        return merged
    return [(props, req)]


def check(doc: dict[str, Any], calls: list[tuple[str, Seen]]) -> list[str]:
    """Every way the client and the document disagree, in words."""
    problems: list[str] = []
    sent: dict[tuple[str, str], set[str]] = defaultdict(set)
    shapes: dict[tuple[str, str], list[tuple[set[str], set[str]]]] = {}
    paths = doc.get("paths", {})
    for name, (method, path, keys, query, headers, token) in calls:
        op = paths.get(path, {}).get(method.lower())
        if op is None:
            problems.append(f"{name}: {method} {path} is not in the document")
            continue
        params = [resolve(doc, p) for p in op.get("parameters", [])]
        for q in query - {p.get("name") for p in params if p.get("in") == "query"}:
            problems.append(f"{name}: query parameter {q} of {method} {path} is not in the document")
        for h in headers - {str(p.get("name", "")).lower() for p in params if p.get("in") == "header"}:
            problems.append(f"{name}: header {h} of {method} {path} is not in the document")
        security = op.get("security", doc.get("security")) or []
        accepted = {scheme for requirement in security for scheme in requirement} if security else set()
        open_route = not security or {} in security
        if token is None and not open_route:
            problems.append(f"{name}: {method} {path} needs {sorted(accepted)}; the client sends no token")
        if token is not None and token not in accepted:
            problems.append(f"{name}: {method} {path} accepts {sorted(accepted) or 'no token'}; the client sends its {token}")
        body = op.get("requestBody")
        if keys is None:
            if body is not None and resolve(doc, body).get("required"):
                problems.append(f"{name}: {method} {path} requires a body the client does not send")
            continue
        if body is None:
            problems.append(f"{name}: {method} {path} takes no body in the document, the client sends {sorted(keys)}")
            continue
        content = resolve(doc, body).get("content", {})
        media = content.get("application/json")
        if media is None or "schema" not in media:
            problems.append(f"{name}: {method} {path} has no application/json request schema")
            continue
        shape = variants(doc, media["schema"])
        shapes[(method, path)] = shape
        sent[(method, path)] |= keys
        if not any(keys <= props and req <= keys for props, req in shape):
            problems.append(
                f"{name}: {method} {path}: sends {sorted(keys)}; the schema allows "
                + " or ".join(f"{sorted(p)} (required {sorted(r)})" for p, r in shape)
            )
    for (method, path), union in sent.items():
        props: set[str] = set().union(*(p for p, _ in shapes[(method, path)]))
        if union != props:
            problems.append(
                f"{method} {path}: the client sends {sorted(union)}, the schema's properties are {sorted(props)}"
                f" (never sent: {sorted(props - union)}; not in the schema: {sorted(union - props)})"
            )
    return problems


def test_the_client_matches_docs_openapi_json() -> None:
    if not OPENAPI.exists():
        pytest.fail(
            f"{OPENAPI.relative_to(REPO_ROOT)} is missing: the parent's OpenAPI document is the contract this "
            "test checks the Python client against (every route and request field)"
        )
    doc = json.loads(OPENAPI.read_text())
    assert str(doc.get("openapi", "")).startswith("3."), "not an OpenAPI 3 document"
    problems = check(doc, record_calls())
    assert not problems, "the Python client and docs/openapi.json disagree:\n" + "\n".join(problems)


def test_the_checker_finds_drift() -> None:
    """The checker itself, on a small document: a field renamed, a field the client never sends,
    a missing route, the wrong token and an undocumented header are each reported."""
    doc = {
        "openapi": "3.1.0",
        "components": {"schemas": {"CreateVault": {"type": "object", "properties": {"wallet": {}}, "required": ["wallet"]}}},
        "paths": {
            "/v1/vaults": {"post": {"security": [{"api_token": []}], "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateVault"}}}}}},
            "/v1/kill-switch": {"post": {"security": [{"api_token": []}], "requestBody": {"content": {"application/json": {"schema": {
                "oneOf": [{"properties": {"engaged": {}}, "required": ["engaged"]}, {"properties": {"reason": {}}}]}}}}}},
        },
    }
    calls = [c for c in record_calls() if c[0] in ("create_vault", "set_kill_switch", "enclave")]
    problems = check(doc, calls)
    assert problems == [
        "enclave: GET /v1/enclave is not in the document",
        "set_kill_switch: POST /v1/kill-switch accepts ['api_token']; the client sends its admin_token",
        "POST /v1/kill-switch: the client sends ['engaged'], the schema's properties are ['engaged', 'reason']"
        " (never sent: ['reason']; not in the schema: [])",
    ], problems
    renamed = json.loads(json.dumps(doc).replace('"wallet"', '"owner"'))
    assert any("sends ['wallet']" in p for p in check(renamed, calls))
    signing = [c for c in record_calls() if c[0] == "sign"]
    signing_doc = {"openapi": "3.1.0", "paths": {"/v1/sign": {"post": {"security": [{"api_token": []}], "requestBody": {
        "content": {"application/json": {"schema": {"properties": dict.fromkeys(
            ["grant_record", "agent_key_record", "bot_id", "transaction", "request_id", "declared_notional_cents"], {})}}}}}}}}
    assert check(signing_doc, signing) == ["sign: header x-signer-route of POST /v1/sign is not in the document"] * 2
