"""Typed errors of the parent's HTTP API (SPEC §6, README "Errors").

Every ``application/problem+json`` answer raises the subclass of :class:`SignerApiError` named
after its stable ``code`` (``policy_denied`` → :class:`PolicyDeniedError`, …); branch on the
class or on ``code``, never on ``detail``. An answer that is not problem+json (a proxy's error
page) raises :class:`UnexpectedResponseError`; a code this version does not know raises the base
class itself. No answer at all (network failure, timeout) after every allowed attempt raises
:class:`SignerTransportError`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping


class SignerError(Exception):
    """Base of every error this package raises about the API."""


class SignerApiError(SignerError):
    """The API answered with an error.

    ``status``, ``code``, ``title`` and ``detail`` come from the problem+json body; ``rule``,
    ``limit``, ``requested``, ``used`` and ``subject`` are set for ``policy_denied`` (``None``
    otherwise). ``route`` is the path called and ``request_id`` the signing request's id (retry
    later with that id and the same request).
    """

    #: The stable code this class stands for (the base class: any code).
    code_name: ClassVar[str | None] = None
    #: The HTTP status the API answers this code with.
    default_status: ClassVar[int | None] = None

    status: int
    code: str
    title: str
    detail: str
    type: str
    rule: str | None
    limit: int | None
    requested: int | None
    used: int | None
    subject: str | None
    route: str
    request_id: str | None
    problem: Mapping[str, Any] | None

    def __init__(
        self,
        status: int,
        code: str,
        title: str = "",
        detail: str = "",
        *,
        type: str = "",
        rule: str | None = None,
        limit: int | None = None,
        requested: int | None = None,
        used: int | None = None,
        subject: str | None = None,
        route: str = "",
        request_id: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{route}: {status} {code}: {detail}" if route else f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.type = type
        self.rule = rule
        self.limit = limit
        self.requested = requested
        self.used = used
        self.subject = subject
        self.route = route
        self.request_id = request_id
        self.problem = problem

    @classmethod
    def from_problem(
        cls,
        status: int,
        problem: Mapping[str, Any],
        *,
        route: str = "",
        request_id: str | None = None,
    ) -> SignerApiError:
        """The typed error for a parsed problem+json body (``code`` picks the class)."""
        code = problem.get("code")
        if not isinstance(code, str):
            raise ValueError("a problem without a string `code`")
        klass = ERROR_CLASSES.get(code, SignerApiError)

        def text(name: str) -> str:
            v = problem.get(name)
            return v if isinstance(v, str) else ""

        def number(name: str) -> int | None:
            v = problem.get(name)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        rule = problem.get("rule")
        subject = problem.get("subject")
        return klass(
            status,
            code,
            text("title"),
            text("detail"),
            type=text("type"),
            rule=rule if isinstance(rule, str) else None,
            limit=number("limit"),
            requested=number("requested"),
            used=number("used"),
            subject=subject if isinstance(subject, str) else None,
            route=route,
            request_id=request_id,
            problem=dict(problem),
        )


class SignerTransportError(SignerError):
    """No answer (connection refused or dropped, timeout) after ``attempts`` attempts.

    For signing, ``request_id`` is the id to retry with later, with the same request: the enclave
    answers a repeated request with the same signature and charges the limits once.
    """

    def __init__(self, route: str, attempts: int, cause: BaseException | None, request_id: str | None = None):
        super().__init__(f"{route}: no answer after {attempts} attempt(s): {cause}")
        self.route = route
        self.attempts = attempts
        self.cause = cause
        self.request_id = request_id



# One class per code. Written out (not generated) so that type checkers and IDEs see them.


class BadRequestError(SignerApiError):
    """400 ``bad_request``: malformed JSON, wrong types, unknown fields, bad encodings, an
    unparseable transaction, the agent not a signer, an ``X-Signer-Route`` naming another enclave."""

    code_name = "bad_request"
    default_status = 400


class RecordInvalidError(SignerApiError):
    """400 ``record_invalid``: a record does not parse or does not match the others."""

    code_name = "record_invalid"
    default_status = 400


class AuthorizationSignatureNoncanonicalError(SignerApiError):
    """400 ``authorization_signature_noncanonical``: the wallet signature or key is not canonical."""

    code_name = "authorization_signature_noncanonical"
    default_status = 400


class UnauthorizedError(SignerApiError):
    """401 ``unauthorized``: missing or wrong bearer token (or an API token on an admin route)."""

    code_name = "unauthorized"
    default_status = 401


class GrantExpiredError(SignerApiError):
    """403 ``grant_expired``."""

    code_name = "grant_expired"
    default_status = 403


class GrantRevokedError(SignerApiError):
    """403 ``grant_revoked``."""

    code_name = "grant_revoked"
    default_status = 403


class KillSwitchError(SignerApiError):
    """403 ``kill_switch``: all signing is stopped."""

    code_name = "kill_switch"
    default_status = 403


class PolicyDeniedError(SignerApiError):
    """403 ``policy_denied``: ``rule`` names the rule; ``limit``, ``requested``, ``used`` and
    ``subject`` the numbers."""

    code_name = "policy_denied"
    default_status = 403


class AuthorizationSignatureInvalidError(SignerApiError):
    """403 ``authorization_signature_invalid``: not the wallet's signature over the message the
    enclave renders from these fields."""

    code_name = "authorization_signature_invalid"
    default_status = 403


class AuthorizationExpiredError(SignerApiError):
    """403 ``authorization_expired``: the signed message is past its validity."""

    code_name = "authorization_expired"
    default_status = 403


class AuthorizationNotYetValidError(SignerApiError):
    """403 ``authorization_not_yet_valid``: dated ahead of the enclave's clock."""

    code_name = "authorization_not_yet_valid"
    default_status = 403


class AuthorizationNonceUnknownError(SignerApiError):
    """403 ``authorization_nonce_unknown``: the nonce was not issued here for this message: ask
    for a new one."""

    code_name = "authorization_nonce_unknown"
    default_status = 403


class ProvenanceInvalidError(SignerApiError):
    """403 ``provenance_invalid``: the vault's provenance document is missing, does not verify,
    or is about another record."""

    code_name = "provenance_invalid"
    default_status = 403


class GrantOrphanedError(SignerApiError):
    """403 ``grant_orphaned``: the record's enclave instance is gone; authorize again."""

    code_name = "grant_orphaned"
    default_status = 403


class NotFoundError(SignerApiError):
    """404 ``not_found``: unknown route."""

    code_name = "not_found"
    default_status = 404


class MethodNotAllowedError(SignerApiError):
    """405 ``method_not_allowed``."""

    code_name = "method_not_allowed"
    default_status = 405


class RequestTimeoutError(SignerApiError):
    """408 ``request_timeout``: the request took too long to arrive."""

    code_name = "request_timeout"
    default_status = 408


class ReplayedRequestError(SignerApiError):
    """409 ``replayed_request``: the ``request_id`` was used for a different request, or a
    scheduled record was already used. Final: never retried."""

    code_name = "replayed_request"
    default_status = 409


class AuthorizationReplayedError(SignerApiError):
    """409 ``authorization_replayed``: that message's nonce was used by another signed message."""

    code_name = "authorization_replayed"
    default_status = 409


class HandoverRefusedError(SignerApiError):
    """409 ``handover_refused``."""

    code_name = "handover_refused"
    default_status = 409


class PayloadTooLargeError(SignerApiError):
    """413 ``payload_too_large``: body over 64 KiB."""

    code_name = "payload_too_large"
    default_status = 413


class WrongEnclaveError(SignerApiError):
    """421 ``wrong_enclave``: the record belongs to another running instance; route by
    ``X-Signer-Route``."""

    code_name = "wrong_enclave"
    default_status = 421


class KmsAccessDeniedError(SignerApiError):
    """502 ``kms_access_denied``: KMS refused (key policy PCRs, role, disabled key)."""

    code_name = "kms_access_denied"
    default_status = 502


class EnvelopeRejectedError(SignerApiError):
    """502 ``envelope_rejected``: the record's key did not open in the enclave."""

    code_name = "envelope_rejected"
    default_status = 502


class EnclaveUnavailableError(SignerApiError):
    """503 ``enclave_unavailable``: retried automatically where safe; retry later with the same
    ``request_id``."""

    code_name = "enclave_unavailable"
    default_status = 503


class EnclaveHandedOverError(SignerApiError):
    """503 ``enclave_handed_over``: the enclave handed its state to a successor."""

    code_name = "enclave_handed_over"
    default_status = 503


class InternalError(SignerApiError):
    """500 ``internal``: a bug or a misbehaving dependency; nothing was signed."""

    code_name = "internal"
    default_status = 500


class UnexpectedResponseError(SignerApiError):
    """An error answer that is not problem+json (``code`` is ``unexpected_response``; ``detail``
    holds the start of the body)."""

    code_name = "unexpected_response"
    default_status = None


#: Stable code → its exception class (every code the API answers with).
ERROR_CLASSES: dict[str, type[SignerApiError]] = {
    k.code_name: k
    for k in (
        BadRequestError,
        RecordInvalidError,
        AuthorizationSignatureNoncanonicalError,
        UnauthorizedError,
        GrantExpiredError,
        GrantRevokedError,
        KillSwitchError,
        PolicyDeniedError,
        AuthorizationSignatureInvalidError,
        AuthorizationExpiredError,
        AuthorizationNotYetValidError,
        AuthorizationNonceUnknownError,
        ProvenanceInvalidError,
        GrantOrphanedError,
        NotFoundError,
        MethodNotAllowedError,
        RequestTimeoutError,
        ReplayedRequestError,
        AuthorizationReplayedError,
        HandoverRefusedError,
        PayloadTooLargeError,
        WrongEnclaveError,
        KmsAccessDeniedError,
        EnvelopeRejectedError,
        EnclaveUnavailableError,
        EnclaveHandedOverError,
        InternalError,
    )
    if k.code_name is not None
}

#: The stable codes, in the order of the README's table.
ERROR_CODES: tuple[str, ...] = tuple(ERROR_CLASSES)

__all__ = [
    "ERROR_CLASSES",
    "ERROR_CODES",
    "SignerApiError",
    "SignerError",
    "SignerTransportError",
    "BadRequestError",
    "RecordInvalidError",
    "AuthorizationSignatureNoncanonicalError",
    "UnauthorizedError",
    "GrantExpiredError",
    "GrantRevokedError",
    "KillSwitchError",
    "PolicyDeniedError",
    "AuthorizationSignatureInvalidError",
    "AuthorizationExpiredError",
    "AuthorizationNotYetValidError",
    "AuthorizationNonceUnknownError",
    "ProvenanceInvalidError",
    "GrantOrphanedError",
    "NotFoundError",
    "MethodNotAllowedError",
    "RequestTimeoutError",
    "ReplayedRequestError",
    "AuthorizationReplayedError",
    "HandoverRefusedError",
    "PayloadTooLargeError",
    "WrongEnclaveError",
    "KmsAccessDeniedError",
    "EnvelopeRejectedError",
    "EnclaveUnavailableError",
    "EnclaveHandedOverError",
    "InternalError",
    "UnexpectedResponseError",
]
