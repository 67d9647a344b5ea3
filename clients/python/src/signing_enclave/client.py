"""A typed client of the parent's HTTP API (SPEC §6) for backends. Every route has a method;
failures raise the :mod:`signing_enclave.errors` class of their stable ``code``, or
:class:`~signing_enclave.errors.SignerTransportError` when no answer came.

Retries are safe by construction, as in the TypeScript client:

- only routes whose repetition cannot do anything twice are retried: reads, authorization
  requests (they only render a message), revocation, the kill switch, exports (the same signed
  export is answered again, sealed to the key the signature names) and signing, which carries a
  ``request_id`` the enclave remembers (the same id with the same request returns the same
  signature without charging the limits again);
- the body is serialized ONCE, before the first attempt, and every attempt sends those exact
  bytes: an attempt cannot change the request behind the same ``request_id``;
- only a network failure (no answer) or ``503 enclave_unavailable`` is retried, with exponential
  backoff and full jitter (or the answer's ``Retry-After``); every other answer is final
  (``409 replayed_request`` in particular).

Creating vaults, agents and grants and importing vaults is never retried automatically (a grant
sent again with the same signature is answered with the same grant: retry it yourself).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Literal, Mapping, TypedDict, cast

import httpx

from ._bytes import (
    Blob,
    IdLike,
    Key,
    SignatureLike,
    blob_text,
    id_text,
    key_text,
    random_uuid,
    signature_text,
)
from .errors import SignerApiError, SignerTransportError, UnexpectedResponseError
from .policy import Policy, policy_json
from .records import route_of

__all__ = [
    "AgentResponse",
    "AttestationResponse",
    "AuthorizationResponse",
    "EnclaveInfo",
    "ExportResponse",
    "GrantAuthorizationResponse",
    "GrantResponse",
    "ImportVaultResponse",
    "KillSwitchResponse",
    "RevokeResponse",
    "SignResponse",
    "SignerClient",
    "VaultResponse",
]


class AttestationResponse(TypedDict):
    document: str
    public_key: str
    pcrs: dict[str, str]
    timestamp_ms: int
    enclave_id: str


class EnclaveInfo(TypedDict, total=False):
    enclave_id: str
    #: Earlier instances whose state this one took over (SPEC §16).
    answers_for: list[str]
    started_at: int
    #: The KMS execution key, base64 SPKI DER. Pin your own copy in production.
    kms_public_key: str
    #: What the enclave's messages call tokens and programs.
    registry: dict[str, Any]


class VaultResponse(TypedDict):
    vault_id: str
    vault_record: str
    provenance: str


class ImportVaultResponse(TypedDict):
    vault_id: str
    provenance: str


class AgentResponse(TypedDict):
    agent_pubkey: str
    agent_key_record: str
    agent_id: str
    provenance: str


class AuthorizationResponse(TypedDict):
    """A message for the wallet to sign (``message``: UTF-8 text, sign its bytes as they are)."""

    message: str
    nonce: str
    issued_at: int
    expires_at: int
    enclave_id: str


class GrantAuthorizationResponse(AuthorizationResponse):
    policy_sha256: str


class GrantResponse(TypedDict):
    grant_id: str
    issued_at: int
    expires_at: int
    grant_record: str
    enclave_id: str


class SignResponse(TypedDict, total=False):
    #: Base58.
    signature: str
    #: The signed transaction, base64.
    transaction: str
    #: ``sign`` only.
    grant_id: str
    #: The ``X-Signer-Route`` the parent answered with: the enclave holding the record's state.
    route: str | None
    #: The request id used (store it with the job: a later retry must reuse it).
    request_id: str


class RevokeResponse(TypedDict):
    revoked: dict[str, Any]
    #: Opened grants dropped from the enclave's memory.
    dropped_from_memory: int


class ExportResponse(TypedDict, total=False):
    kind: Literal["vault", "seed", "mnemonic"]
    record_id: str
    recipient: str
    enc: str
    ciphertext: str
    hpke: str


class KillSwitchResponse(TypedDict):
    engaged: bool


Token = Literal["api", "admin", "none"]


class _Answer:
    __slots__ = ("status", "body", "headers", "text")

    def __init__(self, status: int, body: Any, headers: httpx.Headers, text: str) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.text = text


class SignerClient:
    """The parent's HTTP API.

    ``attempts`` counts every attempt of a retried call (default 4); backoff starts at
    ``base_delay`` seconds, doubles, is capped at ``max_delay`` and fully jittered. ``timeout``
    is per attempt. ``transport`` replaces httpx's (tests pass ``httpx.MockTransport``), ``sleep``
    the pause between attempts.
    """

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        admin_token: str | None = None,
        attempts: int = 4,
        base_delay: float = 0.2,
        max_delay: float = 3.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_token = api_token
        self._admin_token = admin_token
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    def __repr__(self) -> str:  # never shows the tokens
        return f"SignerClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SignerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routes ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return cast(dict[str, Any], self._json("GET", "/healthz", token="none", retry=True))

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: answers 503 with the same body while not ready (returned, not raised)."""
        a = self._send("GET", "/readyz", token="none", retry=False)
        if a.status not in (200, 503) or not isinstance(a.body, dict):
            raise self._error(a, "/readyz")
        return a.body

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        a = self._send("GET", "/metrics", token="none", retry=True)
        if a.status != 200:
            raise self._error(a, "/metrics")
        return a.text

    def attestation(self, nonce_hex: str | None = None) -> AttestationResponse:
        """``GET /v1/attestation?nonce=hex``: a fresh attestation document of the enclave."""
        if nonce_hex is not None:
            bytes.fromhex(nonce_hex)
            path = f"/v1/attestation?nonce={nonce_hex}"
        else:
            path = "/v1/attestation"
        return cast(AttestationResponse, self._json("GET", path, retry=True))

    def enclave(self) -> EnclaveInfo:
        """``GET /v1/enclave``: the instance, the ids it answers for, the KMS public key."""
        return cast(EnclaveInfo, self._json("GET", "/v1/enclave", retry=True))

    def create_vault(self, wallet: Key) -> VaultResponse:
        """``POST /v1/vaults``: the enclave generates the wallet's master key. Not retried."""
        return cast(VaultResponse, self._post("/v1/vaults", {"wallet": key_text(wallet, "wallet")}, retry=False))

    def authorize_import(self, *, wallet: Key, vault_record: Blob) -> AuthorizationResponse:
        """``POST /v1/authorizations/import``: the message the wallet signs to import a
        browser-sealed vault. Retried (it only renders a message)."""
        body = {"wallet": key_text(wallet, "wallet"), "vault_record": blob_text(vault_record, "vault_record")}
        return cast(AuthorizationResponse, self._post("/v1/authorizations/import", body, retry=True))

    def import_vault(
        self, *, wallet: Key, vault_record: Blob, nonce: str, issued_at: int, signature: SignatureLike
    ) -> ImportVaultResponse:
        """``POST /v1/vaults/import``: the signed import; answers with the vault's provenance. Not retried."""
        body = {
            "wallet": key_text(wallet, "wallet"),
            "vault_record": blob_text(vault_record, "vault_record"),
            "nonce": nonce,
            "issued_at": issued_at,
            "signature": signature_text(signature),
        }
        return cast(ImportVaultResponse, self._post("/v1/vaults/import", body, retry=False))

    def create_agent(
        self,
        *,
        wallet: Key,
        vault_record: Blob,
        vault_provenance: Blob,
        kind: Literal["seed", "mnemonic"] | None = None,
        account: int | None = None,
    ) -> AgentResponse:
        """``POST /v1/agents``: an agent key made from the vault (checked by its provenance). Not retried."""
        body: dict[str, Any] = {
            "wallet": key_text(wallet, "wallet"),
            "vault_record": blob_text(vault_record, "vault_record"),
            "vault_provenance": blob_text(vault_provenance, "vault_provenance"),
        }
        if kind is not None:
            body["kind"] = kind
        if account is not None:
            body["account"] = account
        return cast(AgentResponse, self._post("/v1/agents", body, retry=False))

    def authorize_grant(
        self, *, wallet: Key, bot_id: IdLike, agent_pubkey: Key, ttl_seconds: int, policy: Policy | Mapping[str, Any]
    ) -> GrantAuthorizationResponse:
        """``POST /v1/authorizations/grant``: the exact message the wallet signs for these terms.
        Retried (it only renders a message)."""
        body = _terms(wallet, bot_id, agent_pubkey, ttl_seconds, policy)
        return cast(GrantAuthorizationResponse, self._post("/v1/authorizations/grant", body, retry=True))

    def create_grant(
        self,
        *,
        wallet: Key,
        bot_id: IdLike,
        agent_pubkey: Key,
        ttl_seconds: int,
        policy: Policy | Mapping[str, Any],
        nonce: str,
        issued_at: int,
        signature: SignatureLike,
        vault_record: Blob,
        vault_provenance: Blob,
    ) -> GrantResponse:
        """``POST /v1/grants``: the same terms, the signed message's nonce and issue time, the
        wallet's signature, the vault and its provenance. Not retried automatically; the same
        signature sent again (after a lost reply) is answered with the same grant
        (:func:`~signing_enclave.records.grant_id` of the signature)."""
        body = _terms(wallet, bot_id, agent_pubkey, ttl_seconds, policy)
        body.update(
            nonce=nonce,
            issued_at=issued_at,
            signature=signature_text(signature),
            vault_record=blob_text(vault_record, "vault_record"),
            vault_provenance=blob_text(vault_provenance, "vault_provenance"),
        )
        return cast(GrantResponse, self._post("/v1/grants", body, retry=False))

    def sign(
        self,
        *,
        grant_record: Blob,
        agent_key_record: Blob,
        bot_id: IdLike,
        transaction: Blob,
        request_id: IdLike | None = None,
        declared_notional_cents: int | None = None,
    ) -> SignResponse:
        """``POST /v1/sign``. Sends ``X-Signer-Route`` (the grant's enclave, read from the record)
        so a load balancer routes it where the grant's state lives. Retried on network failures and
        ``503 enclave_unavailable`` with the same bytes; a fresh ``request_id`` unless given."""
        rid = random_uuid() if request_id is None else id_text(request_id, "request_id")
        grant = blob_text(grant_record, "grant_record")
        body: dict[str, Any] = {
            "grant_record": grant,
            "agent_key_record": blob_text(agent_key_record, "agent_key_record"),
            "bot_id": id_text(bot_id, "bot_id"),
            "transaction": blob_text(transaction, "transaction"),
            "request_id": rid,
        }
        if declared_notional_cents is not None:
            body["declared_notional_cents"] = declared_notional_cents
        return self._sign_call("/v1/sign", rid, route_of(grant), body)

    def sign_scheduled(
        self, *, scheduled_record: Blob, transaction: Blob, request_id: IdLike | None = None
    ) -> SignResponse:
        """``POST /v1/scheduled/sign``: signs the one transfer a scheduled record allows. Retried like :meth:`sign`."""
        rid = random_uuid() if request_id is None else id_text(request_id, "request_id")
        record = blob_text(scheduled_record, "scheduled_record")
        body = {"scheduled_record": record, "transaction": blob_text(transaction, "transaction"), "request_id": rid}
        return self._sign_call("/v1/scheduled/sign", rid, route_of(record), body)

    def authorize_revoke(
        self, *, wallet: Key, grant_id: IdLike | None = None, all: bool = False
    ) -> AuthorizationResponse:
        """``POST /v1/authorizations/revoke``: the message the wallet signs to revoke one of its
        grants (``grant_id``) or all of them (``all=True``). Retried."""
        return cast(AuthorizationResponse, self._post("/v1/authorizations/revoke", _revoke_scope(wallet, grant_id, all), retry=True))

    def revoke_signed(
        self,
        *,
        wallet: Key,
        nonce: str,
        issued_at: int,
        signature: SignatureLike,
        grant_id: IdLike | None = None,
        all: bool = False,
    ) -> RevokeResponse:
        """``POST /v1/grants/revoke`` signed by the wallet (API token): the same scope, the revoke
        message's nonce and issue time, the wallet's signature. Retried: the enclave answers the
        same signed revocation again."""
        body = _revoke_scope(wallet, grant_id, all)
        body.update(nonce=nonce, issued_at=issued_at, signature=signature_text(signature))
        return cast(RevokeResponse, self._post("/v1/grants/revoke", body, retry=True))

    def authorize_export(
        self,
        *,
        wallet: Key,
        vault_record: Blob,
        vault_provenance: Blob,
        recipient: Blob,
        agent_key_record: Blob | None = None,
    ) -> AuthorizationResponse:
        """``POST /v1/authorizations/export``: the message the wallet signs to export the vault's
        master key, or with ``agent_key_record`` that agent's secret, to the X25519 key
        ``recipient`` (32 bytes or base64). Retried."""
        body = _export_body(wallet, vault_record, vault_provenance, recipient, agent_key_record)
        return cast(AuthorizationResponse, self._post("/v1/authorizations/export", body, retry=True))

    def export_secret(
        self,
        *,
        wallet: Key,
        vault_record: Blob,
        vault_provenance: Blob,
        recipient: Blob,
        nonce: str,
        issued_at: int,
        signature: SignatureLike,
        agent_key_record: Blob | None = None,
    ) -> ExportResponse:
        """``POST /v1/export``: the signed export; the secret sealed by HPKE to ``recipient``.
        Retried with the same bytes (answered again, to the recipient the signature names only)."""
        body = _export_body(wallet, vault_record, vault_provenance, recipient, agent_key_record)
        body.update(nonce=nonce, issued_at=issued_at, signature=signature_text(signature))
        return cast(ExportResponse, self._post("/v1/export", body, retry=True))

    def revoke_grant(self, grant_id: IdLike) -> RevokeResponse:
        """``POST /v1/grants/revoke {grant_id}`` (admin token): one grant or scheduled record."""
        body = {"grant_id": id_text(grant_id, "grant_id")}
        return cast(RevokeResponse, self._json("POST", "/v1/grants/revoke", body, token="admin", retry=True))

    def revoke_wallet(self, wallet: Key) -> RevokeResponse:
        """``POST /v1/grants/revoke {wallet}`` (admin token): every record of the wallet issued up
        to now."""
        body = {"wallet": key_text(wallet, "wallet")}
        return cast(RevokeResponse, self._json("POST", "/v1/grants/revoke", body, token="admin", retry=True))

    def set_kill_switch(self, engaged: bool) -> KillSwitchResponse:
        """``POST /v1/kill-switch`` (admin token): refuse all signing, or resume."""
        if not isinstance(engaged, bool):
            raise TypeError("engaged must be a bool")
        body = {"engaged": engaged}
        return cast(KillSwitchResponse, self._json("POST", "/v1/kill-switch", body, token="admin", retry=True))

    # -- machinery -------------------------------------------------------------------------------

    def _sign_call(self, path: str, request_id: str, route: str | None, body: dict[str, Any]) -> SignResponse:
        headers = {} if route is None else {"x-signer-route": route}
        a = self._send("POST", path, body, token="api", retry=True, request_id=request_id, headers=headers)
        if a.status != 200 or not isinstance(a.body, dict):
            raise self._error(a, path, request_id)
        out = cast(SignResponse, dict(a.body))
        out["route"] = a.headers.get("x-signer-route")
        out["request_id"] = request_id
        return out

    def _post(self, path: str, body: dict[str, Any], *, retry: bool) -> Any:
        return self._json("POST", path, body, token="api", retry=retry)

    def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, token: Token = "api", retry: bool
    ) -> Any:
        a = self._send(method, path, body, token=token, retry=retry)
        if not 200 <= a.status < 300 or a.body is None:
            raise self._error(a, path.split("?")[0])
        return a.body

    @staticmethod
    def _error(a: _Answer, route: str, request_id: str | None = None) -> SignerApiError:
        if isinstance(a.body, dict) and isinstance(a.body.get("code"), str):
            return SignerApiError.from_problem(a.status, a.body, route=route, request_id=request_id)
        return UnexpectedResponseError(
            a.status, "unexpected_response", "", a.text[:300], route=route, request_id=request_id
        )

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: Token = "api",
        retry: bool,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        """One logical request: the body serialized once, the same bytes on every attempt."""
        content = None if body is None else json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        h = {"accept": "application/json", **(headers or {})}
        if content is not None:
            h["content-type"] = "application/json"
        if token == "api":
            h["authorization"] = f"Bearer {self._api_token}"
        elif token == "admin":
            if self._admin_token is None:
                raise ValueError(f"{path} needs the admin token (admin_token=…)")
            h["authorization"] = f"Bearer {self._admin_token}"
        attempts = self.attempts if retry else 1
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(method, self.base_url + path, content=content, headers=h)
                text = response.text
            except httpx.TransportError as e:
                last = e
                if attempt < attempts:
                    self._sleep(self._backoff(attempt, None))
                continue
            parsed: Any = None
            if text:
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            answer = _Answer(response.status_code, parsed, response.headers, text)
            unavailable = (
                response.status_code == 503
                and isinstance(parsed, dict)
                and parsed.get("code") == "enclave_unavailable"
            )
            if unavailable and attempt < attempts:
                last = self._error(answer, path.split("?")[0], request_id)
                self._sleep(self._backoff(attempt, response.headers.get("retry-after")))
                continue
            return answer
        if isinstance(last, SignerApiError):  # pragma: no cover - the last attempt returns its answer
            raise last
        raise SignerTransportError(path.split("?")[0], attempts, last, request_id)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = -1.0
            if seconds >= 0:
                return min(seconds, self.max_delay)
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, cap)


def _terms(wallet: Key, bot_id: IdLike, agent_pubkey: Key, ttl_seconds: int, policy: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 0:
        raise ValueError("ttl_seconds must be a non-negative integer")
    return {
        "wallet": key_text(wallet, "wallet"),
        "bot_id": id_text(bot_id, "bot_id"),
        "agent_pubkey": key_text(agent_pubkey, "agent_pubkey"),
        "ttl_seconds": ttl_seconds,
        "policy": policy_json(policy),
    }


def _revoke_scope(wallet: Key, grant_id: IdLike | None, all: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"wallet": key_text(wallet, "wallet")}
    if all and grant_id is None:
        body["all"] = True
    elif grant_id is not None and not all:
        body["grant_id"] = id_text(grant_id, "grant_id")
    else:
        raise ValueError("a revocation names exactly one of grant_id or all=True")
    return body


def _export_body(
    wallet: Key, vault_record: Blob, vault_provenance: Blob, recipient: Blob, agent_key_record: Blob | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "wallet": key_text(wallet, "wallet"),
        "vault_record": blob_text(vault_record, "vault_record"),
        "vault_provenance": blob_text(vault_provenance, "vault_provenance"),
    }
    if agent_key_record is not None:
        body["agent_key_record"] = blob_text(agent_key_record, "agent_key_record")
    body["recipient"] = blob_text(recipient, "recipient")
    return body
