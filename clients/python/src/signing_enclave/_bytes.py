"""Encodings the API uses: standard padded base64, base58 (Solana keys and signatures),
lower-case hex, UUID text for 16-byte ids, little-endian integers for record headers."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Protocol, Union

U64_MAX = (1 << 64) - 1

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


class _HasBytes(Protocol):
    def __bytes__(self) -> bytes: ...


#: A Solana public key: base58 text, 32 bytes, or an object with ``__bytes__`` (``solders.Pubkey``).
Key = Union[str, bytes, bytearray, memoryview, _HasBytes]
#: Bytes the API carries as base64: the bytes themselves, or the base64 text the API returned.
Blob = Union[str, bytes, bytearray, memoryview]
#: A wallet signature: base58 text, 64 bytes, or ``solders.Signature``.
SignatureLike = Union[str, bytes, bytearray, memoryview, _HasBytes]
#: A 16-byte id: UUID text (hyphenated or 32 hex digits), ``uuid.UUID``, or 16 bytes.
IdLike = Union[str, uuid.UUID, bytes, bytearray, memoryview]


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet)."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Base58 to bytes; ``ValueError`` on a character outside the alphabet."""
    n = 0
    for c in text:
        i = _B58_INDEX.get(c)
        if i is None:
            raise ValueError(f"not base58: {text[:100]!r}")
        n = n * 58 + i
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def b58_exact(text: str, length: int, what: str) -> bytes:
    try:
        out = b58decode(text)
    except ValueError:
        raise ValueError(f"{what} is not base58: {text[:100]!r}") from None
    if len(out) != length:
        raise ValueError(f"{what} is {len(out)} bytes; expected {length}")
    return out


def b64encode(data: bytes) -> str:
    """Standard padded base64."""
    return base64.b64encode(bytes(data)).decode("ascii")


def b64decode(text: str) -> bytes:
    """Standard padded base64 to bytes; ``ValueError`` on anything else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"not standard base64: {e}") from None


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str) and hasattr(value, "__bytes__"):
        return bytes(value)
    return None


def key_bytes(value: Key, what: str = "public key") -> bytes:
    """A 32-byte public key from base58 text, bytes or ``solders.Pubkey``."""
    if isinstance(value, str):
        return b58_exact(value, 32, what)
    raw = _as_bytes(value)
    if raw is None:
        raise TypeError(f"{what} must be base58 text or 32 bytes, not {type(value).__name__}")
    if len(raw) != 32:
        raise ValueError(f"{what} is {len(raw)} bytes; expected 32")
    return raw


def key_text(value: Key, what: str = "public key") -> str:
    """The canonical base58 text of a public key (the bytes re-encoded)."""
    return b58encode(key_bytes(value, what))


def signature_text(value: SignatureLike) -> str:
    """A wallet signature as base58 text (64 bytes)."""
    if isinstance(value, str):
        b58_exact(value, 64, "signature")
        return value
    raw = _as_bytes(value)
    if raw is None:
        raise TypeError(f"a signature must be base58 text or 64 bytes, not {type(value).__name__}")
    if len(raw) != 64:
        raise ValueError(f"a signature is {len(raw)} bytes; expected 64")
    return b58encode(raw)


def signature_bytes(value: SignatureLike) -> bytes:
    return b58_exact(signature_text(value), 64, "signature")


def blob_text(value: Blob, what: str = "value") -> str:
    """Bytes for the API: base64 text is checked and passed as is, bytes are encoded."""
    if isinstance(value, str):
        b64decode(value)
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64encode(bytes(value))
    raise TypeError(f"{what} must be bytes or base64 text, not {type(value).__name__}")


def blob_bytes(value: Blob, what: str = "value") -> bytes:
    if isinstance(value, str):
        return b64decode(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or base64 text, not {type(value).__name__}")


_UUID = re.compile(
    r"^([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})$"
)


def id_bytes(value: IdLike, what: str = "id") -> bytes:
    """16 bytes from UUID text (hyphenated or 32 hex digits), ``uuid.UUID`` or bytes."""
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, str):
        hyphens = value.count("-")
        m = _UUID.match(value)
        if m is None or hyphens not in (0, 4):
            raise ValueError(f"{what} is not UUID text: {value[:40]!r}")
        return bytes.fromhex("".join(m.groups()))
    raw = _as_bytes(value)
    if raw is None or len(raw) != 16:
        raise ValueError(f"{what} must be UUID text or 16 bytes")
    return raw


def id_text(value: IdLike, what: str = "id") -> str:
    """Lower-case hyphenated UUID text, as the API writes ids."""
    return str(uuid.UUID(bytes=id_bytes(value, what)))


def random_uuid() -> str:
    """A random (version 4) UUID, e.g. a fresh ``request_id``."""
    return str(uuid.uuid4())


def u64(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{what} must be an integer in 0..=2^64-1, not {value!r}")
    return value


def le16(v: int) -> bytes:
    return v.to_bytes(2, "little")


def le32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def le64(v: int, what: str = "value") -> bytes:
    return u64(v, what).to_bytes(8, "little")
