"""Record headers (SPEC §4, ``docs/records.md``): every record is ``AAD ‖ body``, the AAD being its
fixed binary header exactly as stored, integers little-endian. Reading the header of any record,
the provenance binding, enclave and grant ids, and sealing a scheduled-transfer record with the
KMS public key alone. Mirrors ``types/src/records.rs``, ``ids.rs`` and ``provenance.rs``::

    common     version u32 (=1) ‖ record_type u8 ‖ wallet[32] ‖ record_id[16]          53 bytes
    grant (1)      ‖ bot_id[16] ‖ agent_pubkey[32] ‖ issued_at u64 ‖ expires_at u64
                   ‖ enclave_id[16]                                               AAD 133
    agent key (2)  ‖ agent_pubkey[32] ‖ kind u8 [‖ account u32 if kind = 1]       AAD 86 / 90
    scheduled (3)  ‖ agent_pubkey[32] ‖ not_before u64 ‖ not_after u64 ‖ max_fee_lamports u64
                   ‖ intent_hash[32] ‖ created_at u64 ‖ enclave_id[16]             AAD 165
    vault (4)      ‖ created_at u64 ‖ origin u8 (0 generated, 1 imported)         AAD 62
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from ._bytes import (
    Blob,
    IdLike,
    Key,
    SignatureLike,
    b58encode,
    blob_bytes,
    id_bytes,
    id_text,
    key_bytes,
    le16,
    le32,
    le64,
    signature_bytes,
    u64,
)

RECORD_VERSION = 1
COMMON_HEADER_LEN = 53
GRANT_AAD_LEN = 133
AGENT_KEY_AAD_LEN = 86
AGENT_KEY_MNEMONIC_AAD_LEN = 90
SCHEDULED_AAD_LEN = 165
VAULT_AAD_LEN = 62
MAX_WRAPPED_KEY_LEN = 1024
MAX_SCHEDULE_WINDOW_SECONDS = 48 * 3600
MAX_SCHEDULE_LIFETIME_SECONDS = 30 * 86_400
WRAP_RSAES_OAEP_SHA_256 = 1

GRANT, AGENT_KEY, SCHEDULED_KEY, VAULT = 1, 2, 3, 4

PROVENANCE_DOMAIN = b"signer/provenance/v1"
ENCLAVE_ID_DOMAIN = b"signer/enclave-id/v1"
GRANT_ID_DOMAIN = b"grant-id/v1"


class RecordError(ValueError):
    """A record that is not what it claims to be."""


@dataclass(frozen=True)
class RecordHeader:
    """The bound fields of a record's header. Fields a type does not have are ``None``."""

    type: int
    wallet: str
    record_id: str
    aad: bytes
    bot_id: str | None = None
    agent_pubkey: str | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    enclave_id: str | None = None
    kind: int | None = None
    account: int | None = None
    not_before: int | None = None
    not_after: int | None = None
    max_fee_lamports: int | None = None
    intent_hash: bytes | None = None
    created_at: int | None = None
    origin: int | None = None


def _le(b: bytes, at: int, n: int) -> int:
    return int.from_bytes(b[at : at + n], "little")


def parse_record_header(record: Blob) -> RecordHeader:
    """The header of a record (bytes or the API's base64)."""
    r = blob_bytes(record, "record")

    def need(n: int, what: str) -> None:
        if len(r) < n:
            raise RecordError(f"{what} record is {len(r)} bytes; its header alone is {n}")

    need(COMMON_HEADER_LEN, "a")
    if _le(r, 0, 4) != RECORD_VERSION:
        raise RecordError(f"record version {_le(r, 0, 4)}; expected {RECORD_VERSION}")
    t = r[4]

    def header(aad_len: int, **fields: Any) -> RecordHeader:
        return RecordHeader(type=t, wallet=b58encode(r[5:37]), record_id=id_text(r[37:53]), aad=r[:aad_len], **fields)

    if t == GRANT:
        need(GRANT_AAD_LEN, "grant")
        return header(
            GRANT_AAD_LEN, bot_id=id_text(r[53:69]), agent_pubkey=b58encode(r[69:101]),
            issued_at=_le(r, 101, 8), expires_at=_le(r, 109, 8), enclave_id=id_text(r[117:133]),
        )
    if t == AGENT_KEY:
        need(AGENT_KEY_AAD_LEN, "agent key")
        kind = r[85]
        if kind == 0:
            return header(AGENT_KEY_AAD_LEN, agent_pubkey=b58encode(r[53:85]), kind=0)
        if kind == 1:
            need(AGENT_KEY_MNEMONIC_AAD_LEN, "agent key")
            return header(AGENT_KEY_MNEMONIC_AAD_LEN, agent_pubkey=b58encode(r[53:85]), kind=1, account=_le(r, 86, 4))
        raise RecordError(f"unknown agent key kind {kind}")
    if t == SCHEDULED_KEY:
        need(SCHEDULED_AAD_LEN, "scheduled key")
        return header(
            SCHEDULED_AAD_LEN, agent_pubkey=b58encode(r[53:85]), not_before=_le(r, 85, 8),
            not_after=_le(r, 93, 8), max_fee_lamports=_le(r, 101, 8), intent_hash=r[109:141],
            created_at=_le(r, 141, 8), enclave_id=id_text(r[149:165]),
        )
    if t == VAULT:
        need(VAULT_AAD_LEN, "vault")
        origin = r[61]
        if origin not in (0, 1):
            raise RecordError(f"unknown vault origin {origin}")
        return header(VAULT_AAD_LEN, created_at=_le(r, 53, 8), origin=origin)
    raise RecordError(f"unknown record type {t}")


def route_of(record: Blob) -> str | None:
    """The enclave id a grant or scheduled record names (its ``X-Signer-Route``), if readable."""
    try:
        h = parse_record_header(record)
    except (RecordError, ValueError, TypeError):
        return None
    return h.enclave_id if h.type in (GRANT, SCHEDULED_KEY) else None


def enclave_id_from_recipient_key(spki_der: bytes) -> str:
    """``SHA-256("signer/enclave-id/v1" ‖ recipient SPKI DER)[..16]`` as UUID text."""
    return id_text(hashlib.sha256(ENCLAVE_ID_DOMAIN + bytes(spki_der)).digest()[:16])


def grant_id(signature: SignatureLike) -> str:
    """``SHA-256("grant-id/v1" ‖ wallet signature)[..16]``: one signature, one grant."""
    return id_text(hashlib.sha256(GRANT_ID_DOMAIN + signature_bytes(signature)).digest()[:16])


def provenance_binding(record: Blob, vault_id: IdLike | None = None) -> bytes:
    """``"signer/provenance/v1" ‖ record_type ‖ wallet ‖ record_id ‖ SHA-256(record)
    [‖ agent_pubkey ‖ vault_id]``: what a provenance document's ``user_data`` hashes. An agent
    key's binding needs the id of the vault it was made from; a vault's binds none."""
    r = blob_bytes(record, "record")
    h = parse_record_header(r)
    prefix = PROVENANCE_DOMAIN + bytes([h.type]) + r[5:53] + hashlib.sha256(r).digest()
    if h.type == VAULT:
        if vault_id is not None:
            raise RecordError("a vault's provenance binds no other vault id")
        return prefix
    if h.type == AGENT_KEY:
        if vault_id is None:
            raise RecordError("an agent key's provenance binds the id of the vault it was made from: give it")
        return prefix + r[53:85] + id_bytes(vault_id, "vault id")
    raise RecordError(f"provenance covers vaults (type 4) and agent keys (type 2), not type {h.type}")


def provenance_user_data(record: Blob, vault_id: IdLike | None = None) -> bytes:
    """SHA-256 of :func:`provenance_binding`: the ``user_data`` a provenance document carries."""
    return hashlib.sha256(provenance_binding(record, vault_id)).digest()


# -- scheduled records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Intent:
    """The one transfer a scheduled record allows: ``destination`` is the recipient for SOL, the
    destination token account for SPL; ``mint`` ``None`` for SOL; ``amount`` lamports or base units."""

    destination: Key
    amount: int
    mint: Key | None = None

    def canonical_bytes(self) -> bytes:
        """``destination[32] ‖ mint[32] (zeros = SOL) ‖ amount u64`` (72 bytes)."""
        mint = bytes(32) if self.mint is None else key_bytes(self.mint, "mint")
        return key_bytes(self.destination, "destination") + mint + le64(self.amount, "amount")

    def hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()


def scheduled_aad(
    *,
    wallet: Key,
    schedule_id: IdLike,
    agent_pubkey: Key,
    not_before: int,
    not_after: int,
    max_fee_lamports: int,
    intent: Intent,
    created_at: int,
    enclave_id: IdLike,
) -> bytes:
    """The scheduled-key AAD (165 bytes); refuses windows the enclave would refuse."""
    nb, na, ca = u64(not_before, "not_before"), u64(not_after, "not_after"), u64(created_at, "created_at")
    if na < nb:
        raise RecordError(f"not_after {na} is before not_before {nb}")
    if na - nb > MAX_SCHEDULE_WINDOW_SECONDS:
        raise RecordError(f"the window {na - nb} s is longer than 48 h")
    if na < ca or na - ca > MAX_SCHEDULE_LIFETIME_SECONDS:
        raise RecordError("not_after must be within 30 days after created_at")
    return b"".join([
        le32(RECORD_VERSION), bytes([SCHEDULED_KEY]), key_bytes(wallet, "wallet"),
        id_bytes(schedule_id, "schedule_id"), key_bytes(agent_pubkey, "agent_pubkey"),
        le64(nb), le64(na), le64(max_fee_lamports, "max_fee_lamports"), intent.hash(), le64(ca),
        id_bytes(enclave_id, "enclave_id"),
    ])


def seal_with_kms_key(
    kms_public_key_der: bytes,
    aad: bytes,
    secret: bytes,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """``AAD ‖ 01 ‖ len u16 ‖ RSA-OAEP-SHA-256(KMS key, record key) ‖ iv ‖ GCM(record key,
    secret, AAD)``. The KMS key (SPKI DER) must be RSA-3072 or RSA-4096 with exponent 65537.
    Pin it: the copy ``GET /v1/enclave`` returns comes through the host."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = serialization.load_der_public_key(bytes(kms_public_key_der))
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecordError("the KMS public key is not an RSA key")
    if key.key_size not in (3072, 4096) or key.public_numbers().e != 65537:
        raise RecordError(f"the KMS key is RSA-{key.key_size}; expected RSA-3072 or RSA-4096 with e = 65537")
    record_key = bytearray(random(32))
    iv = random(12)
    if len(record_key) != 32 or len(iv) != 12:
        raise RecordError("random source returned the wrong length")
    try:
        wrapped = key.encrypt(
            bytes(record_key),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        sealed = AESGCM(bytes(record_key)).encrypt(iv, bytes(secret), aad)
    finally:
        record_key[:] = bytes(32)
    if len(wrapped) > MAX_WRAPPED_KEY_LEN:
        raise RecordError(f"wrapped key is {len(wrapped)} bytes")
    return aad + bytes([WRAP_RSAES_OAEP_SHA_256]) + le16(len(wrapped)) + wrapped + iv + sealed


def agent_public_key(seed: bytes) -> str:
    """The ed25519 public key (base58) of a 32-byte seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if len(seed) != 32:
        raise RecordError(f"an agent seed is 32 bytes, not {len(seed)}")
    public = Ed25519PrivateKey.from_private_bytes(bytes(seed)).public_key()
    return b58encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


@dataclass(frozen=True)
class SealedScheduledRecord:
    record: bytes
    schedule_id: str
    #: The key the enclave signs as (derived from the seed), base58.
    agent_pubkey: str
    aad: bytes


def seal_scheduled_record(
    *,
    kms_public_key: bytes,
    wallet: Key,
    agent_seed: bytes,
    not_before: int,
    not_after: int,
    max_fee_lamports: int,
    intent: Intent,
    enclave_id: IdLike,
    created_at: int | None = None,
    schedule_id: IdLike | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> SealedScheduledRecord:
    """Seals a scheduled-key record (type 3) for a key the user holds (its 32-byte ed25519
    seed): the enclave ``enclave_id`` signs exactly one transfer matching ``intent`` with it,
    inside ``[not_before, not_after]``, fees up to ``max_fee_lamports``."""
    agent = agent_public_key(agent_seed)
    sid = random(16) if schedule_id is None else id_bytes(schedule_id, "schedule_id")
    aad = scheduled_aad(
        wallet=wallet, schedule_id=sid, agent_pubkey=agent, not_before=not_before, not_after=not_after,
        max_fee_lamports=max_fee_lamports, intent=intent,
        created_at=int(time.time()) if created_at is None else created_at, enclave_id=enclave_id,
    )
    record = seal_with_kms_key(kms_public_key, aad, agent_seed, random=random)
    return SealedScheduledRecord(record=record, schedule_id=id_text(sid), agent_pubkey=agent, aad=aad)
