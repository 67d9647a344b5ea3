"""Record headers, bindings and ids against the vectors every client must reproduce
(``clients/vectors/golden.json``) and the worked examples of ``docs/records.md``; policy hashes
against the hashes the golden messages name."""

from __future__ import annotations

import re
from typing import Any

import pytest
from _support import REPO_ROOT, golden
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signing_enclave import (
    U64_MAX,
    Intent,
    PolicyError,
    RecordError,
    agent_public_key,
    b58encode,
    enclave_id_from_recipient_key,
    grant_id,
    parse_record_header,
    policy_json,
    policy_sha256,
    provenance_binding,
    provenance_user_data,
    route_of,
    seal_scheduled_record,
)
from signing_enclave.records import scheduled_aad

G = golden()


def doc_block(name: str) -> bytes:
    """The hex of a ``<!-- name -->`` block of docs/records.md."""
    text = (REPO_ROOT / "docs" / "records.md").read_text()
    m = re.search(rf"<!-- {re.escape(name)} -->\n```text\n(.*?)```", text, re.S)
    assert m, f"no <!-- {name} --> block in docs/records.md"
    return bytes.fromhex("".join(m.group(1).split()))


@pytest.mark.parametrize("v", G["provenance"], ids=lambda v: str(v["vault_id"]))
def test_provenance_bindings(v: dict[str, Any]) -> None:
    record = bytes.fromhex(v["record_hex"])
    assert provenance_binding(record, v["vault_id"]).hex() == v["binding_hex"]
    assert provenance_user_data(record, v["vault_id"]).hex() == v["user_data_hex"]
    h = parse_record_header(record)
    if h.type == 2:
        with pytest.raises(RecordError):
            provenance_binding(record)
    else:
        with pytest.raises(RecordError):
            provenance_binding(record, "00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize("v", G["enclave_ids"], ids=lambda v: v["enclave_id"])
def test_enclave_ids(v: dict[str, Any]) -> None:
    assert enclave_id_from_recipient_key(bytes.fromhex(v["recipient_spki_hex"])) == v["enclave_id"]


GRANTS = [m for m in G["messages"] if m["purpose"]["kind"] == "grant"]


@pytest.mark.parametrize("m", GRANTS, ids=lambda m: m["name"])
def test_grant_ids_and_policy_hashes(m: dict[str, Any]) -> None:
    assert grant_id(m["signature_base58"]) == m["purpose"]["grant_id"]
    named = re.search(r"^- urn:signer:policy-sha256:([0-9a-f]{64})$", m["message"], re.M)
    assert named
    assert policy_sha256(m["purpose"]["policy"]) == named.group(1)
    # The JSON form keeps u64 values exact and omits absent optional fields.
    body = policy_json(m["purpose"]["policy"])
    assert set(body) <= set(m["purpose"]["policy"])


def test_policy_validation() -> None:
    base = GRANTS[0]["purpose"]["policy"]
    with pytest.raises(PolicyError):
        policy_sha256({**base, "max_tx_per_minute": 0})
    with pytest.raises(PolicyError):
        policy_sha256({**base, "allowed_programs": ["11111111111111111111111111111111"]})
    with pytest.raises(PolicyError):
        policy_sha256({**base, "max_lamports_per_tx": U64_MAX + 1})
    with pytest.raises(PolicyError):
        policy_json({**base, "surprise": 1})
    assert "destinations" not in policy_json({**base, "destinations": None})


def test_the_scheduled_record_worked_example_of_docs_records_md() -> None:
    seed = bytes([0x42]) * 32
    assert agent_public_key(seed) == b58encode(doc_block("agent-pubkey"))
    intent = Intent(destination="9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM", amount=1_000_000_000)
    assert intent.canonical_bytes() == doc_block("intent")
    assert intent.hash() == doc_block("intent-hash")
    fields = dict(
        wallet="4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T", schedule_id="00112233-4455-6677-8899-aabbccddeeff",
        not_before=1767268800, not_after=1767355200, max_fee_lamports=10_000, intent=intent,
        created_at=1767265200, enclave_id="e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef",
    )
    aad = scheduled_aad(agent_pubkey=agent_public_key(seed), **fields)  # type: ignore[arg-type]
    assert aad == doc_block("aad")

    kms = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    spki = kms.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    draws = iter([bytes(range(32)), bytes(range(0xA0, 0xAC))])
    sealed = seal_scheduled_record(kms_public_key=spki, agent_seed=seed, random=lambda n: next(draws), **fields)  # type: ignore[arg-type]
    r = sealed.record
    assert sealed.aad == aad and r[:165] == aad
    assert r[165] == 1 and int.from_bytes(r[166:168], "little") == 384
    wrapped = r[168 : 168 + 384]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert kms.decrypt(wrapped, oaep) == bytes(range(32))
    assert r[168 + 384 : 168 + 384 + 12] == bytes(range(0xA0, 0xAC))
    assert r[168 + 384 + 12 :] == doc_block("gcm")
    assert AESGCM(bytes(range(32))).decrypt(bytes(range(0xA0, 0xAC)), r[168 + 384 + 12 :], aad) == seed
    h = parse_record_header(r)
    assert (h.type, h.record_id, h.enclave_id, h.not_after, h.intent_hash) == (
        3, "00112233-4455-6677-8899-aabbccddeeff", "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef", 1767355200, intent.hash())
    assert route_of(r) == "e0e1e2e3-e4e5-e6e7-e8e9-eaebecedeeef"


def test_sealing_refuses_what_the_enclave_would() -> None:
    kms = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = kms.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    header: dict[str, Any] = dict(
        wallet="4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T", not_before=100, not_after=200, max_fee_lamports=1,
        intent=Intent(destination=bytes(32), amount=1), enclave_id=bytes(16), created_at=100,
    )
    with pytest.raises(RecordError, match="RSA-2048"):
        seal_scheduled_record(kms_public_key=spki, agent_seed=bytes(32), **header)
    ids: dict[str, Any] = dict(schedule_id=bytes(16), agent_pubkey=bytes(32))
    with pytest.raises(RecordError, match="48 h"):
        scheduled_aad(**ids, **{**header, "not_after": 100 + 49 * 3600})
    with pytest.raises(RecordError, match="30 days"):
        scheduled_aad(**ids, **{**header, "not_before": 31 * 86400, "not_after": 31 * 86400 + 10})
    with pytest.raises(RecordError, match="before not_before"):
        scheduled_aad(**ids, **{**header, "not_after": 99})
