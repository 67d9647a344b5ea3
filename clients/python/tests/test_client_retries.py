"""The API client against a fake transport (``httpx.MockTransport``): typed problem+json errors,
retries that resend the same bytes with the same request id, only where a repeat cannot do
anything twice, only on no answer or ``503 enclave_unavailable``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import pytest

from signing_enclave import (
    ERROR_CLASSES,
    U64_MAX,
    AuthorizationNonceUnknownError,
    EnclaveHandedOverError,
    EnclaveUnavailableError,
    PolicyDeniedError,
    ReplayedRequestError,
    SignerApiError,
    SignerClient,
    SignerTransportError,
    UnexpectedResponseError,
    b64encode,
    random_uuid,
)

WALLET = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
AGENT = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
BOT = "7a7a7a7a-7a7a-7a7a-7a7a-7a7a7a7a7a7a"
ENCLAVE = "514a9f24-c508-0e08-9116-41159a1c0196"
POLICY = {
    "max_lamports_per_tx": 1,
    "max_lamports_per_day": U64_MAX,
    "max_fee_lamports": 5000,
    "tokens": [],
    "allowed_programs": [],
    "max_notional_cents_per_tx": 0,
    "max_notional_cents_per_day": 0,
}

Reply = dict[str, Any] | str  # a reply, or "drop" (no answer: the connection fails)


@dataclass
class Fake:
    """A scripted server: each request takes the next reply; every request is recorded."""

    script: list[Reply] = field(default_factory=list)
    seen: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(request)
        reply = self.script.pop(0) if self.script else {"status": 200, "body": "{}"}
        if reply == "drop":
            raise httpx.ConnectError("connection reset by fake peer", request=request)
        if reply == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        assert isinstance(reply, dict)
        headers = {"content-type": reply.get("type", "application/json"), **reply.get("headers", {})}
        return httpx.Response(reply["status"], headers=headers, content=reply.get("body", "").encode())

    def client(self, **kwargs: Any) -> SignerClient:
        return SignerClient(
            "http://signer.test/", "api-token", admin_token="admin-token",
            transport=httpx.MockTransport(self.handler), sleep=self.sleeps.append, **kwargs,
        )

    def bodies(self) -> list[bytes]:
        return [r.content for r in self.seen]


def problem(status: int, code: str, **extra: Any) -> dict[str, Any]:
    body = {"type": f"urn:signer:error:{code}", "title": code, "status": status, "detail": f"detail of {code}", "code": code, **extra}
    return {"status": status, "type": "application/problem+json", "body": json.dumps(body)}


def grant_record() -> str:
    """A grant record header (the client reads the routing key from it) with a dummy body."""
    header = (
        (1).to_bytes(4, "little") + b"\1" + b"\1" * 32 + b"\2" * 16 + b"\3" * 16 + b"\4" * 32
        + (10).to_bytes(8, "little") + (20).to_bytes(8, "little") + bytes.fromhex(ENCLAVE.replace("-", ""))
    )
    return b64encode(header + bytes(40))


def sign_request(**extra: Any) -> dict[str, Any]:
    return {"grant_record": grant_record(), "agent_key_record": "AAAA", "bot_id": BOT, "transaction": b"\1\2\3", **extra}


SIGNED = {"status": 200, "body": '{"signature":"s","transaction":"dA==","grant_id":"g"}', "headers": {"x-signer-route": ENCLAVE}}


def test_sends_the_token_the_body_and_the_route_and_returns_the_route() -> None:
    fake = Fake([SIGNED])
    r = fake.client().sign(**sign_request(declared_notional_cents=125))
    assert len(fake.seen) == 1
    req = fake.seen[0]
    assert (req.method, req.url.path) == ("POST", "/v1/sign")
    assert req.headers["authorization"] == "Bearer api-token"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-signer-route"] == ENCLAVE
    body = json.loads(req.content)
    assert body["transaction"] == "AQID"
    assert body["request_id"] == r["request_id"]
    assert body["declared_notional_cents"] == 125
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", r["request_id"])
    assert (r["route"], r["signature"], r["grant_id"]) == (ENCLAVE, "s", "g")


def test_signing_retries_503_and_no_answer_with_the_same_bytes_and_request_id() -> None:
    fake = Fake([problem(503, "enclave_unavailable"), "drop", "timeout", {"status": 200, "body": '{"signature":"s","transaction":"dA=="}'}])
    rid = random_uuid()
    r = fake.client().sign_scheduled(scheduled_record="AAAA", transaction="dA==", request_id=rid)
    assert r["request_id"] == rid
    assert len(fake.seen) == 4
    assert len(set(fake.bodies())) == 1, "every attempt sends the same bytes"
    assert json.loads(fake.seen[0].content)["request_id"] == rid
    assert len(fake.sleeps) == 3


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    fake = Fake(["drop", "drop", problem(503, "enclave_unavailable") | {"headers": {"retry-after": "1"}}, SIGNED])
    fake.client(base_delay=0.1, max_delay=0.3).sign(**sign_request())
    first, second, third = fake.sleeps
    assert 0 <= first <= 0.1 and 0 <= second <= 0.2
    assert third == 0.3, "Retry-After, capped at max_delay"


def test_a_replayed_request_and_every_other_refusal_is_final() -> None:
    fake = Fake([problem(409, "replayed_request")])
    rid = random_uuid()
    with pytest.raises(ReplayedRequestError) as e:
        fake.client().sign(**sign_request(request_id=rid))
    assert (e.value.status, e.value.code, e.value.request_id, e.value.route) == (409, "replayed_request", rid, "/v1/sign")
    assert len(fake.seen) == 1
    fake.script = [problem(503, "enclave_handed_over")]
    with pytest.raises(EnclaveHandedOverError):
        fake.client().sign(**sign_request())
    fake.script = [problem(403, "authorization_nonce_unknown")]
    with pytest.raises(AuthorizationNonceUnknownError):
        fake.client().authorize_revoke(wallet=WALLET, all=True)
    assert len(fake.seen) == 3


def test_routes_that_create_something_are_never_retried() -> None:
    fake = Fake([problem(503, "enclave_unavailable")])
    with pytest.raises(EnclaveUnavailableError):
        fake.client().create_vault(WALLET)
    assert len(fake.seen) == 1
    fake.script = ["drop"]
    with pytest.raises(SignerTransportError) as e:
        fake.client().create_agent(wallet=WALLET, vault_record="AAAA", vault_provenance="AAAA")
    assert e.value.attempts == 1
    fake.script = ["drop"]
    with pytest.raises(SignerTransportError):
        fake.client().create_grant(
            wallet=WALLET, bot_id=BOT, agent_pubkey=AGENT, ttl_seconds=600, policy=POLICY, nonce="n", issued_at=1,
            signature=bytes(64), vault_record="AAAA", vault_provenance="AAAA",
        )
    fake.script = [problem(503, "enclave_unavailable")]
    with pytest.raises(EnclaveUnavailableError):
        fake.client().import_vault(wallet=WALLET, vault_record="AAAA", nonce="n", issued_at=1, signature=bytes(64))
    assert len(fake.seen) == 4
    assert fake.sleeps == []


RETRIED: list[tuple[str, Callable[[SignerClient], Any]]] = [
    ("health", lambda c: c.health()),
    ("metrics", lambda c: c.metrics()),
    ("attestation", lambda c: c.attestation("00ff")),
    ("enclave", lambda c: c.enclave()),
    ("authorize_import", lambda c: c.authorize_import(wallet=WALLET, vault_record="AAAA")),
    ("authorize_grant", lambda c: c.authorize_grant(wallet=WALLET, bot_id=BOT, agent_pubkey=AGENT, ttl_seconds=60, policy=POLICY)),
    ("sign", lambda c: c.sign(**sign_request())),
    ("sign_scheduled", lambda c: c.sign_scheduled(scheduled_record="AAAA", transaction="AAAA")),
    ("authorize_revoke", lambda c: c.authorize_revoke(wallet=WALLET, grant_id=BOT)),
    ("revoke_signed", lambda c: c.revoke_signed(wallet=WALLET, all=True, nonce="n", issued_at=1, signature=bytes(64))),
    ("authorize_export", lambda c: c.authorize_export(wallet=WALLET, vault_record="AAAA", vault_provenance="AAAA", recipient=bytes(32))),
    ("export_secret", lambda c: c.export_secret(wallet=WALLET, vault_record="AAAA", vault_provenance="AAAA", recipient=bytes(32), nonce="n", issued_at=1, signature=bytes(64))),
    ("revoke_grant", lambda c: c.revoke_grant(BOT)),
    ("revoke_wallet", lambda c: c.revoke_wallet(WALLET)),
    ("set_kill_switch", lambda c: c.set_kill_switch(True)),
]


@pytest.mark.parametrize("name,call", RETRIED, ids=[n for n, _ in RETRIED])
def test_safe_routes_are_retried_with_the_same_bytes(name: str, call: Callable[[SignerClient], Any]) -> None:
    ok = {"status": 200, "body": SIGNED["body"] if name.startswith("sign") else '{"ok":true}', "type": "text/plain" if name == "metrics" else "application/json"}
    fake = Fake(["drop", problem(503, "enclave_unavailable"), ok])
    call(fake.client())
    assert len(fake.seen) == 3
    assert len(set(fake.bodies())) == 1
    assert len({(r.method, str(r.url)) for r in fake.seen}) == 1


def test_gives_up_after_the_allowed_attempts_with_the_request_id_to_retry_with() -> None:
    fake = Fake(["drop"] * 4)
    rid = random_uuid()
    with pytest.raises(SignerTransportError) as e:
        fake.client().sign(**sign_request(request_id=rid))
    assert (e.value.attempts, e.value.request_id, e.value.route) == (4, rid, "/v1/sign")
    assert isinstance(e.value.cause, httpx.ConnectError)
    assert len(fake.seen) == 4
    # A 503 on the last attempt is raised as what it is.
    fake = Fake([problem(503, "enclave_unavailable")] * 2)
    with pytest.raises(EnclaveUnavailableError):
        fake.client(attempts=2).enclave()
    assert len(fake.seen) == 2


def test_policy_denials_carry_the_rule_and_exact_numbers() -> None:
    fake = Fake([problem(403, "policy_denied", rule="max_lamports_per_tx", limit=1_000_000_000, requested=U64_MAX, used=7, subject="SOL")])
    with pytest.raises(PolicyDeniedError) as e:
        fake.client().sign(**sign_request())
    err = e.value
    assert isinstance(err, SignerApiError)
    assert (err.status, err.code, err.title, err.detail) == (403, "policy_denied", "policy_denied", "detail of policy_denied")
    assert (err.rule, err.limit, err.requested, err.used, err.subject) == ("max_lamports_per_tx", 1_000_000_000, U64_MAX, 7, "SOL")
    assert err.type == "urn:signer:error:policy_denied"


@pytest.mark.parametrize("code", sorted(ERROR_CLASSES))
def test_every_code_raises_its_own_class(code: str) -> None:
    klass = ERROR_CLASSES[code]
    status = klass.default_status or 500
    fake = Fake([problem(status, code)])
    with pytest.raises(klass) as e:
        fake.client(attempts=1).enclave()
    assert type(e.value) is klass
    assert (e.value.status, e.value.code, e.value.detail) == (status, code, f"detail of {code}")
    assert e.value.rule is None and e.value.limit is None


def test_unknown_codes_and_non_problem_answers() -> None:
    fake = Fake([problem(418, "teapot")])
    with pytest.raises(SignerApiError) as e:
        fake.client().enclave()
    assert type(e.value) is SignerApiError and e.value.code == "teapot"
    fake.script = [{"status": 502, "type": "text/html", "body": "<html>bad gateway</html>"}]
    with pytest.raises(UnexpectedResponseError) as u:
        fake.client().enclave()
    assert (u.value.code, u.value.status) == ("unexpected_response", 502)
    assert "bad gateway" in u.value.detail


def test_u64_limits_exact_and_the_admin_token_for_admin_routes() -> None:
    fake = Fake([{"status": 200, "body": '{"message":"m","nonce":"n","issued_at":1,"expires_at":2,"enclave_id":"e","policy_sha256":"h"}'}])
    fake.client().authorize_grant(wallet=WALLET, bot_id=BOT, agent_pubkey=AGENT, ttl_seconds=600, policy=POLICY)
    assert b'"max_lamports_per_day":18446744073709551615' in fake.seen[0].content
    fake.script = [{"status": 200, "body": '{"engaged":true}'}]
    assert fake.client().set_kill_switch(True) == {"engaged": True}
    assert fake.seen[1].headers["authorization"] == "Bearer admin-token"
    with pytest.raises(ValueError, match="admin token"):
        SignerClient("http://x", "api").revoke_grant(BOT)


def test_ready_returns_the_503_body() -> None:
    fake = Fake([{"status": 503, "body": '{"ready":false,"enclave_connected":false}'}])
    assert fake.client().ready()["ready"] is False
    assert len(fake.seen) == 1


def test_tokens_never_show_in_repr_or_errors() -> None:
    fake = Fake(["drop"] * 4)
    client = fake.client()
    assert "api-token" not in repr(client)
    with pytest.raises(SignerTransportError) as e:
        client.enclave()
    assert "token" not in str(e.value)


def test_arguments_are_checked_before_sending() -> None:
    fake = Fake()
    client = fake.client()
    with pytest.raises(ValueError):
        client.create_vault("not base58 0OIl")
    with pytest.raises(ValueError):
        client.revoke_signed(wallet=WALLET, grant_id=BOT, all=True, nonce="n", issued_at=1, signature=bytes(64))
    with pytest.raises(ValueError):
        client.authorize_grant(wallet=WALLET, bot_id=BOT, agent_pubkey=AGENT, ttl_seconds=60, policy={**POLICY, "max_tx_per_minute": 0})
    with pytest.raises(ValueError):
        client.sign(**sign_request(transaction="not base64!"))
    assert fake.seen == []
