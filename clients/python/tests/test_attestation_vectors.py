"""Attestation and provenance verification with the real AWS Nitro documents of
``../shared/vectors/attestation`` (read at test time), each verified at an instant inside the
validity window ``manifest.json`` gives, and the ways a document must be refused: tampered bytes,
wrong PCRs, wrong root, outside the window, debug mode, ``user_data`` not the binding."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from _support import vectors_dir

from signing_enclave import (
    AWS_NITRO_ROOT_G1_SHA256,
    CertificateChainError,
    DebugModeError,
    DocumentSignatureError,
    FromTheFutureError,
    MalformedDocumentError,
    NonceMismatchError,
    ProvenanceTrust,
    StaleDocumentError,
    UntrustedImageError,
    UserDataMismatchError,
    aws_nitro_root_g1,
    aws_trust,
    image_from_measurements,
    is_debug_mode,
    parse_attestation_document,
    pem_to_der,
    verify_at_document_time,
    verify_attestation_document,
)


def attestation_dir() -> Path:
    return vectors_dir() / "attestation"


def manifest() -> list[dict[str, Any]]:
    return json.loads((attestation_dir() / "manifest.json").read_text())


VALID = [e for e in manifest() if e["expected"] == "valid"]
NON_DEBUG = [e for e in VALID if not is_debug_mode({int(k): bytes.fromhex(v) for k, v in e["pcrs_nonzero"].items()})]


def doc(entry: dict[str, Any]) -> bytes:
    raw = (attestation_dir() / entry["file"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
    return raw


def inside(entry: dict[str, Any]) -> int:
    """An instant inside the chain's validity window."""
    return (entry["chain_valid_from_unix"] + entry["chain_valid_until_unix"]) // 2


def measurements_of(raw: bytes) -> dict[str, Any]:
    """The document's own PCR0-2 as a nitro-cli measurement file (what a deployer would pin)."""
    pcrs = parse_attestation_document(raw).pcrs
    return {"Measurements": {"HashAlgorithm": "Sha384 { ... }", **{f"PCR{i}": pcrs[i].hex() for i in (0, 1, 2)}}}


def test_the_pinned_root_is_the_published_aws_root() -> None:
    assert hashlib.sha256(aws_nitro_root_g1()).hexdigest() == AWS_NITRO_ROOT_G1_SHA256
    assert aws_nitro_root_g1() == (attestation_dir() / "root.der").read_bytes()
    assert pem_to_der((attestation_dir() / "root.pem").read_text()) == aws_nitro_root_g1()


@pytest.mark.parametrize("entry", VALID, ids=[e["file"] for e in VALID])
def test_every_real_document_verifies_inside_its_window(entry: dict[str, Any]) -> None:
    raw = doc(entry)
    v = verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), allow_debug=True)
    d = v.document
    assert d.module_id == entry["module_id"]
    assert d.timestamp_ms == entry["timestamp_ms"]
    assert len(d.pcrs) == entry["pcr_count"]
    assert {str(i): p.hex() for i, p in d.pcrs.items() if any(p)} == entry["pcrs_nonzero"]
    assert (d.user_data.hex() if d.user_data is not None else None) == entry["user_data"]
    assert (d.nonce.hex() if d.nonce is not None else None) == entry["nonce"]
    assert len(d.cabundle) == entry["cabundle_len"]
    assert entry["leaf_subject_cn"] in v.chain[0].subject
    assert len(v.chain) == entry["cabundle_len"] + 1
    # A datetime works as well as unix seconds.
    verify_attestation_document(raw, aws_nitro_root_g1(), at=dt.datetime.fromtimestamp(inside(entry), dt.timezone.utc), allow_debug=True)


def test_the_indefinite_length_payload_verifies_over_its_original_bytes() -> None:
    entry = next(e for e in VALID if e["payload_map_encoding"] == "indefinite")
    raw = doc(entry)
    d = parse_attestation_document(raw)
    assert d.payload[0] == 0xBF  # an indefinite-length map: re-encoding it would break the signature
    verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry))


def test_high_s_signatures_are_accepted() -> None:
    entry = next(e for e in NON_DEBUG if e["signature_high_s"])
    verify_attestation_document(doc(entry), aws_nitro_root_g1(), at=inside(entry))


@pytest.mark.parametrize("entry", NON_DEBUG, ids=[e["file"] for e in NON_DEBUG])
def test_pcrs_from_a_measurement_file(entry: dict[str, Any], tmp_path: Path) -> None:
    raw = doc(entry)
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(measurements_of(raw)))
    image = image_from_measurements(path)
    assert sorted(image) == [0, 1, 2]
    verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), pcrs=image)
    wrong = {**image, 1: bytes(48)}
    with pytest.raises(UntrustedImageError, match="PCR1"):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), pcrs=wrong)


def test_the_truncated_document_is_malformed() -> None:
    entry = next(e for e in manifest() if e["expected"] != "valid")
    with pytest.raises(MalformedDocumentError):
        verify_attestation_document(doc(entry), aws_nitro_root_g1(), at=1767472867)


def test_outside_the_window_the_chain_is_refused() -> None:
    entry = VALID[0]
    raw = doc(entry)
    with pytest.raises(CertificateChainError, match="expired"):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=entry["chain_valid_until_unix"] + 2)
    with pytest.raises(CertificateChainError, match="not valid before"):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=entry["chain_valid_from_unix"] - 2)


def test_a_wrong_root_is_refused(tmp_path: Path) -> None:
    entry = NON_DEBUG[0]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "aws.nitro-enclaves")])
    now = dt.datetime.fromtimestamp(inside(entry), dt.timezone.utc)
    other_root = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(CertificateChainError, match="not the pinned root"):
        verify_attestation_document(doc(entry), other_root, at=inside(entry))


def test_a_tampered_document_is_refused() -> None:
    entry = NON_DEBUG[0]
    raw = doc(entry)
    d = parse_attestation_document(raw)
    # Change one PCR byte inside the signed payload, keeping the CBOR well formed.
    payload = cbor2.loads(d.payload)
    payload["pcrs"][0] = bytes([payload["pcrs"][0][0] ^ 1]) + payload["pcrs"][0][1:]
    forged = cbor2.dumps(cbor2.CBORTag(18, [d.protected_header, {}, cbor2.dumps(payload), d.signature]))
    with pytest.raises(DocumentSignatureError):
        verify_attestation_document(forged, aws_nitro_root_g1(), at=inside(entry))
    # A flipped signature byte.
    flipped = cbor2.dumps([d.protected_header, {}, d.payload, bytes([d.signature[0] ^ 1]) + d.signature[1:]])
    with pytest.raises(DocumentSignatureError):
        verify_attestation_document(flipped, aws_nitro_root_g1(), at=inside(entry))
    # Trailing bytes, another protected header, a payload with a duplicate key.
    with pytest.raises(MalformedDocumentError, match="trailing"):
        verify_attestation_document(raw + b"\0", aws_nitro_root_g1(), at=inside(entry))
    with pytest.raises(MalformedDocumentError, match="protected header"):
        verify_attestation_document(cbor2.dumps([bytes.fromhex("a10126"), {}, d.payload, d.signature]), aws_nitro_root_g1())
    assert 0xA0 <= d.payload[0] < 0xB7, "a definite map of fewer than 23 entries"
    duplicated = bytes([d.payload[0] + 1]) + b"\x69module_id\x61x" + d.payload[1:]
    with pytest.raises(MalformedDocumentError, match="(?i)duplicate"):
        parse_attestation_document(cbor2.dumps([d.protected_header, {}, duplicated, d.signature]))


def test_debug_mode_documents_are_refused_unless_allowed() -> None:
    entry = next(e for e in VALID if e["file"].startswith("evervault_beta_debug"))
    raw = doc(entry)
    with pytest.raises(DebugModeError):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry))
    verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), allow_debug=True)
    # As provenance, never: not even with its own (zero) PCRs as a trusted image.
    zero = {i: parse_attestation_document(raw).pcrs[i] for i in (0, 1, 2)}
    with pytest.raises(DebugModeError):
        verify_at_document_time(raw, aws_trust([zero]), b"", now=entry["timestamp_ms"] / 1000)


def test_nonce_and_freshness() -> None:
    entry = next(e for e in NON_DEBUG if e["nonce"] is not None)
    raw = doc(entry)
    verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), nonce=bytes.fromhex(entry["nonce"]))
    with pytest.raises(NonceMismatchError):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=inside(entry), nonce=b"other")
    with pytest.raises(StaleDocumentError):
        verify_attestation_document(raw, aws_nitro_root_g1(), at=entry["chain_valid_until_unix"] - 1, max_age_seconds=60)


def test_provenance_policy_at_the_documents_own_time() -> None:
    """A provenance check runs the chain at the document's timestamp (years ago here), so a
    well-formed AWS document gets to the policy: its image, then ``user_data``."""
    entry = next(e for e in NON_DEBUG if e["user_data"] is not None)
    raw = doc(entry)
    image = image_from_measurements(measurements_of(raw))
    trust = aws_trust([image])
    verified = verify_at_document_time(raw, trust, bytes.fromhex(entry["user_data"]))
    assert verified.document.module_id == entry["module_id"]
    # user_data must be the recomputed binding: these documents bind something else.
    with pytest.raises(UserDataMismatchError):
        verify_at_document_time(raw, trust, hashlib.sha256(b"signer/provenance/v1").digest())
    # Wrong PCRs (another image), or an image that lists no PCR0, match nothing.
    with pytest.raises(UntrustedImageError):
        verify_at_document_time(raw, aws_trust([{**image, 0: bytes(48)}]), bytes.fromhex(entry["user_data"]))
    with pytest.raises(UntrustedImageError):
        verify_at_document_time(raw, aws_trust([{1: image[1], 2: image[2]}]), bytes.fromhex(entry["user_data"]))
    # Wrong root: the simulation's or any other.
    with pytest.raises(CertificateChainError):
        verify_at_document_time(raw, ProvenanceTrust(b"not the root", [image]), bytes.fromhex(entry["user_data"]))
    # A verifier whose clock is behind the document by more than a minute refuses it.
    with pytest.raises(FromTheFutureError):
        verify_at_document_time(raw, trust, bytes.fromhex(entry["user_data"]), now=entry["timestamp_ms"] / 1000 - 120)


def test_measurement_files_need_pcr0() -> None:
    with pytest.raises(ValueError):
        image_from_measurements({"Measurements": {"PCR0": "00"}}, indexes=(1, 2))
    with pytest.raises(ValueError):
        image_from_measurements({"Measurements": {"PCR1": "00"}})
    with pytest.raises(ValueError):
        image_from_measurements('{"PCR0": "00"}')
