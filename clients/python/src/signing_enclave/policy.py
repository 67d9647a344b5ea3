"""A grant's policy (SPEC §7) as the API takes it, and its canonical bytes: the SHA-256 the
user's signed message names (``urn:signer:policy-sha256:…``). Mirrors ``types/src/policy.rs``.

Canonical bytes (integers little-endian, lists in the given order)::

    "signer/policy/v1"
    max_lamports_per_tx u64 ‖ max_lamports_per_day u64 ‖ max_fee_lamports u64
    n_tokens u16 ‖ n × (mint[32] ‖ max_per_tx u64 ‖ max_per_day u64)
    n_programs u16 ‖ n × program[32]
    max_notional_cents_per_tx u64 ‖ max_notional_cents_per_day u64
    has_destinations u8 (0/1) [‖ n u16 ‖ n × destination[32]]
    has_max_tx_per_minute u8 (0/1) [‖ max_tx_per_minute u32]
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, NotRequired, Sequence, TypedDict

from ._bytes import U64_MAX, key_bytes, key_text, le16, le32, le64, u64

__all__ = [
    "MAX_DESTINATIONS",
    "MAX_PROGRAMS",
    "MAX_TOKENS",
    "POLICY_DOMAIN",
    "PROGRAMS",
    "Policy",
    "PolicyError",
    "TokenLimit",
    "U64_MAX",
    "policy_canonical_bytes",
    "policy_json",
    "policy_sha256",
    "validate_policy",
]

POLICY_DOMAIN = b"signer/policy/v1"
MAX_TOKENS = 64
MAX_PROGRAMS = 64
MAX_DESTINATIONS = 1024

#: Well-known program ids (base58).
PROGRAMS = {
    "SYSTEM": "11111111111111111111111111111111",
    "TOKEN": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    "TOKEN_2022": "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
    "COMPUTE_BUDGET": "ComputeBudget111111111111111111111111111111",
    "ED25519_PRECOMPILE": "Ed25519SigVerify111111111111111111111111111",
    "SECP256K1_PRECOMPILE": "KeccakSecp256k1SigVerify1111111111111111111",
    "SECP256R1_PRECOMPILE": "Secp256r1SigVerify1111111111111111111111111",
}
_OWN_RULES = {PROGRAMS[k] for k in ("SYSTEM", "TOKEN", "TOKEN_2022", "COMPUTE_BUDGET")}
_PRECOMPILES = {PROGRAMS[k] for k in ("ED25519_PRECOMPILE", "SECP256K1_PRECOMPILE", "SECP256R1_PRECOMPILE")}


class TokenLimit(TypedDict):
    """Per-mint limits, in the token's base units."""

    mint: str
    max_per_tx: int
    max_per_day: int


class Policy(TypedDict):
    """A grant's limits with the JSON API's field names. Amounts are u64 (``U64_MAX``: unlimited)."""

    max_lamports_per_tx: int
    max_lamports_per_day: int
    max_fee_lamports: int
    tokens: Sequence[TokenLimit]
    #: Program ids (base58) allowed with a declared notional.
    allowed_programs: Sequence[str]
    max_notional_cents_per_tx: int
    max_notional_cents_per_day: int
    #: Absent or ``None``: any destination.
    destinations: NotRequired[Sequence[str] | None]
    #: Absent or ``None``: no rate limit.
    max_tx_per_minute: NotRequired[int | None]


class PolicyError(ValueError):
    """A policy the enclave would refuse (``400 bad_request``)."""


_FIELDS = (
    "max_lamports_per_tx",
    "max_lamports_per_day",
    "max_fee_lamports",
    "tokens",
    "allowed_programs",
    "max_notional_cents_per_tx",
    "max_notional_cents_per_day",
    "destinations",
    "max_tx_per_minute",
)


def _check_u64(value: Any, what: str) -> int:
    try:
        return u64(value, what)
    except ValueError as e:
        raise PolicyError(str(e)) from None


def _key(value: Any, what: str) -> str:
    try:
        return key_text(value, what)
    except (TypeError, ValueError) as e:
        raise PolicyError(str(e)) from None


def validate_policy(policy: Mapping[str, Any]) -> None:
    """Checks what the enclave checks (``Policy::validate``); raises :class:`PolicyError`."""
    unknown = set(policy) - set(_FIELDS)
    if unknown:
        raise PolicyError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    for field in _FIELDS[:7]:
        if field not in policy:
            raise PolicyError(f"missing policy field {field}")
    tokens = policy["tokens"]
    programs = policy["allowed_programs"]
    if len(tokens) > MAX_TOKENS:
        raise PolicyError(f"{len(tokens)} tokens; at most {MAX_TOKENS}")
    if len(programs) > MAX_PROGRAMS:
        raise PolicyError(f"{len(programs)} allowed_programs; at most {MAX_PROGRAMS}")
    mints = [_key(t["mint"], "mint") for t in tokens]
    if len(set(mints)) != len(mints):
        raise PolicyError("a mint is listed twice")
    ids = [_key(p, "program") for p in programs]
    for p in ids:
        if p in _OWN_RULES:
            raise PolicyError(f"{p} has its own rules and cannot be in allowed_programs")
        if p in _PRECOMPILES:
            raise PolicyError(f"{p} is a signature-verification precompile and cannot be in allowed_programs")
    if len(set(ids)) != len(ids):
        raise PolicyError("a program is listed twice")
    destinations = policy.get("destinations")
    if destinations is not None:
        if len(destinations) > MAX_DESTINATIONS:
            raise PolicyError(f"{len(destinations)} destinations; at most {MAX_DESTINATIONS}")
        for d in destinations:
            _key(d, "destination")
    rate = policy.get("max_tx_per_minute")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= 0xFFFFFFFF:
            raise PolicyError(f"max_tx_per_minute {rate!r} is not a u32")
        if rate == 0:
            raise PolicyError("max_tx_per_minute must be at least 1 (omit it for no limit)")
    for field in ("max_lamports_per_tx", "max_lamports_per_day", "max_fee_lamports",
                  "max_notional_cents_per_tx", "max_notional_cents_per_day"):
        _check_u64(policy[field], field)
    for t in tokens:
        unknown = set(t) - {"mint", "max_per_tx", "max_per_day"}
        if unknown:
            raise PolicyError(f"unknown token limit fields: {', '.join(sorted(unknown))}")
        _check_u64(t["max_per_tx"], "tokens[].max_per_tx")
        _check_u64(t["max_per_day"], "tokens[].max_per_day")


def policy_json(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The policy as the API's JSON takes it: keys canonical base58, optional fields omitted
    when absent or ``None``."""
    validate_policy(policy)
    out: dict[str, Any] = {
        "max_lamports_per_tx": policy["max_lamports_per_tx"],
        "max_lamports_per_day": policy["max_lamports_per_day"],
        "max_fee_lamports": policy["max_fee_lamports"],
        "tokens": [
            {"mint": key_text(t["mint"]), "max_per_tx": t["max_per_tx"], "max_per_day": t["max_per_day"]}
            for t in policy["tokens"]
        ],
        "allowed_programs": [key_text(p) for p in policy["allowed_programs"]],
        "max_notional_cents_per_tx": policy["max_notional_cents_per_tx"],
        "max_notional_cents_per_day": policy["max_notional_cents_per_day"],
    }
    if policy.get("destinations") is not None:
        out["destinations"] = [key_text(d) for d in policy["destinations"]]
    if policy.get("max_tx_per_minute") is not None:
        out["max_tx_per_minute"] = policy["max_tx_per_minute"]
    return out


def policy_canonical_bytes(policy: Mapping[str, Any]) -> bytes:
    """The canonical bytes (module docstring): what the user's authorization binds by SHA-256."""
    validate_policy(policy)
    parts = [
        POLICY_DOMAIN,
        le64(policy["max_lamports_per_tx"]),
        le64(policy["max_lamports_per_day"]),
        le64(policy["max_fee_lamports"]),
        le16(len(policy["tokens"])),
    ]
    for t in policy["tokens"]:
        parts += [key_bytes(t["mint"]), le64(t["max_per_tx"]), le64(t["max_per_day"])]
    parts.append(le16(len(policy["allowed_programs"])))
    parts += [key_bytes(p) for p in policy["allowed_programs"]]
    parts += [le64(policy["max_notional_cents_per_tx"]), le64(policy["max_notional_cents_per_day"])]
    destinations = policy.get("destinations")
    if destinations is None:
        parts.append(b"\0")
    else:
        parts += [b"\1", le16(len(destinations))] + [key_bytes(d) for d in destinations]
    rate = policy.get("max_tx_per_minute")
    parts.append(b"\0" if rate is None else b"\1" + le32(rate))
    return b"".join(parts)


def policy_sha256(policy: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical bytes, lower-case hex (what ``authorize_grant`` answers as
    ``policy_sha256`` and the message names)."""
    return hashlib.sha256(policy_canonical_bytes(policy)).hexdigest()
