"""Nitro attestation documents and provenance (SPEC §10, ``docs/records.md`` "Provenance
documents"): parse the COSE_Sign1, verify the certificate chain to a pinned root and the ES384
signature over the ORIGINAL payload bytes, then the policy a provenance document must meet: chain
valid at the document's own timestamp, not debug mode, PCRs equal to one of the trusted images,
``user_data`` equal to SHA-256 of the binding recomputed from the record. Mirrors
``attestation/src/{document,chain,verify,record}.rs`` and the TypeScript client's
``attestation.ts``.

CBOR is read with ``cbor2`` (duplicate keys and trailing bytes refused); certificates and ECDSA
P-384 with ``cryptography`` (high-S signatures are accepted, as real AWS documents carry them).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, Union

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from ._bytes import Blob, IdLike, blob_bytes
from .records import VAULT, RecordError, parse_record_header, provenance_user_data

__all__ = [
    "AWS_NITRO_ROOT_G1_SHA256",
    "AttestationDocument",
    "AttestationError",
    "CertificateChainError",
    "CertificateSummary",
    "DebugModeError",
    "DocumentSignatureError",
    "FromTheFutureError",
    "MalformedDocumentError",
    "NonceMismatchError",
    "ProvenanceTrust",
    "StaleDocumentError",
    "TrustedImage",
    "UntrustedImageError",
    "UserDataMismatchError",
    "VerifiedDocument",
    "aws_nitro_root_g1",
    "aws_trust",
    "image_from_measurements",
    "image_matches",
    "is_debug_mode",
    "parse_attestation_document",
    "pem_to_der",
    "sig_structure",
    "verify_at_document_time",
    "verify_attestation_document",
    "verify_certificate_chain",
    "verify_provenance",
]

MAX_DOCUMENT_LEN = 32 * 1024
MAX_OPTIONAL_FIELD_LEN = 1024
#: ``{1: -35}``: alg = ES384, the only protected header a Nitro document carries.
ES384_PROTECTED_HEADER = bytes.fromhex("a1013822")
#: How far a provenance document's timestamp may be ahead of the verifier's clock.
MAX_CLOCK_SKEW_MS = 60_000

#: SHA-256 of the AWS Nitro Enclaves Root G1 certificate's DER, as AWS publishes it.
AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
_AWS_ROOT_B64 = (
    "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTELMAkGA1UEBhMCVVMxDzANBgNVBAoMBkFt"
    "YXpvbjEMMAoGA1UECwwDQVdTMRswGQYDVQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4"
    "MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQLDANBV1MxGzAZBgNVBAMMEmF3cy5uaXRy"
    "by1lbmNsYXZlczB2MBAGByqGSM49AgEGBSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb"
    "48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZEh8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/"
    "BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkFR+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC"
    "MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPWrfMCMQCi85sWBbJwKKXdS6BptQFuZbT7"
    "3o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6NIwLz3/Y="
)


def aws_nitro_root_g1() -> bytes:
    """The AWS Nitro Enclaves Root G1 certificate (DER) every production chain is anchored at."""
    der = base64.b64decode(_AWS_ROOT_B64)
    if hashlib.sha256(der).hexdigest() != AWS_NITRO_ROOT_G1_SHA256:  # pragma: no cover
        raise AssertionError("the embedded AWS root does not match its published SHA-256")
    return der


# -- errors ---------------------------------------------------------------------------------------


class AttestationError(ValueError):
    """A document was refused; ``kind`` (and the subclass) says which check failed."""

    kind = "attestation"


class MalformedDocumentError(AttestationError):
    kind = "malformed"


class CertificateChainError(AttestationError):
    kind = "chain"


class DocumentSignatureError(AttestationError):
    kind = "signature"


class DebugModeError(AttestationError):
    kind = "debug_mode"


class UntrustedImageError(AttestationError):
    """The document's PCRs are none of the trusted images (or not the expected PCRs)."""

    kind = "untrusted_image"


class UserDataMismatchError(AttestationError):
    kind = "user_data"


class NonceMismatchError(AttestationError):
    kind = "nonce"


class FromTheFutureError(AttestationError):
    kind = "from_the_future"


class StaleDocumentError(AttestationError):
    kind = "stale"


# -- parsing --------------------------------------------------------------------------------------

#: PCR index → value.
Pcrs = dict[int, bytes]


@dataclass(frozen=True)
class AttestationDocument:
    """A parsed, not yet verified, attestation document."""

    protected_header: bytes
    #: The payload exactly as received: the signature covers these bytes.
    payload: bytes
    #: ``r ‖ s``, 96 bytes.
    signature: bytes
    module_id: str
    #: Milliseconds since the Unix epoch, written by the NSM.
    timestamp_ms: int
    pcrs: Pcrs
    certificate: bytes
    #: ``[root, intermediate…]``.
    cabundle: list[bytes]
    #: ``None`` when absent or CBOR null; empty bytes are legal and distinct.
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None


def _decode_exact(data: bytes, what: str) -> Any:
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, allow_duplicate_keys=False).decode()
    except (cbor2.CBORDecodeError, EOFError, ValueError, TypeError, OverflowError) as e:
        raise MalformedDocumentError(f"{what}: {e}") from None
    if fp.tell() != len(data):
        raise MalformedDocumentError(f"{what}: {len(data) - fp.tell()} trailing bytes")
    return value


def _optional(fields: Mapping[str, Any], name: str) -> bytes | None:
    if name not in fields or fields[name] is None:
        return None
    v = fields[name]
    if not isinstance(v, bytes):
        raise MalformedDocumentError(f"{name} is not a byte string or null")
    if len(v) > MAX_OPTIONAL_FIELD_LEN:
        raise MalformedDocumentError(f"{name} is {len(v)} bytes; at most {MAX_OPTIONAL_FIELD_LEN}")
    return v


def parse_attestation_document(data: Blob) -> AttestationDocument:
    """Parses a document (COSE_Sign1, tag 18 or untagged; bytes or base64) trusting nothing in it."""
    raw = blob_bytes(data, "document")
    if len(raw) > MAX_DOCUMENT_LEN:
        raise MalformedDocumentError(f"document is {len(raw)} bytes; at most {MAX_DOCUMENT_LEN}")
    top = _decode_exact(raw, "COSE_Sign1")
    if isinstance(top, cbor2.CBORTag):
        if top.tag != 18:
            raise MalformedDocumentError(f"unexpected CBOR tag {top.tag}")
        top = top.value
    if not isinstance(top, (list, tuple)) or len(top) != 4:
        raise MalformedDocumentError("COSE_Sign1 is not an array of 4 elements")
    protected, unprotected, payload, signature = top
    if not isinstance(protected, bytes) or protected != ES384_PROTECTED_HEADER:
        shown = protected.hex() if isinstance(protected, bytes) else type(protected).__name__
        raise MalformedDocumentError(f"protected header is {shown}; expected a1013822 ({{1: -35}}, ES384)")
    if not isinstance(unprotected, Mapping):
        raise MalformedDocumentError("unprotected header is not a map")
    if payload is None:
        raise MalformedDocumentError("detached payload")
    if not isinstance(payload, bytes):
        raise MalformedDocumentError("payload is not a byte string")
    if not isinstance(signature, bytes) or len(signature) != 96:
        raise MalformedDocumentError("signature is not 96 bytes")

    body = _decode_exact(payload, "payload")
    if not isinstance(body, Mapping):
        raise MalformedDocumentError("payload is not a map")
    if not all(isinstance(k, str) for k in body):
        raise MalformedDocumentError("payload key is not a text string")

    def text(name: str) -> str:
        if name not in body:
            raise MalformedDocumentError(f"missing {name}")
        if not isinstance(body[name], str):
            raise MalformedDocumentError(f"{name} is not a text string")
        return str(body[name])

    module_id = text("module_id")
    if not module_id:
        raise MalformedDocumentError("module_id is empty")
    digest = text("digest")
    if digest != "SHA384":
        raise MalformedDocumentError(f"digest is {digest}; expected SHA384")
    ts = body.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 1 << 64:
        raise MalformedDocumentError("timestamp is missing or not an unsigned integer")
    raw_pcrs = body.get("pcrs")
    if not isinstance(raw_pcrs, Mapping):
        raise MalformedDocumentError("pcrs is missing or not a map")
    if not 1 <= len(raw_pcrs) <= 32:
        raise MalformedDocumentError(f"pcrs has {len(raw_pcrs)} entries; expected 1..=32")
    pcrs: Pcrs = {}
    for k, v in raw_pcrs.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 31:
            raise MalformedDocumentError(f"pcr index {k!r} is not 0..=31")
        if not isinstance(v, bytes) or len(v) not in (32, 48, 64):
            raise MalformedDocumentError(f"pcr {k} is not 32, 48 or 64 bytes")
        pcrs[k] = v
    certificate = body.get("certificate")
    if not isinstance(certificate, bytes) or not certificate:
        raise MalformedDocumentError("certificate is missing, empty or not a byte string")
    bundle = body.get("cabundle")
    if not isinstance(bundle, (list, tuple)) or not bundle:
        raise MalformedDocumentError("cabundle is missing, empty or not an array")
    if not all(isinstance(c, bytes) and c for c in bundle):
        raise MalformedDocumentError("cabundle entry is empty or not a byte string")
    return AttestationDocument(
        protected_header=protected,
        payload=payload,
        signature=signature,
        module_id=module_id,
        timestamp_ms=ts,
        pcrs=pcrs,
        certificate=certificate,
        cabundle=list(bundle),
        public_key=_optional(body, "public_key"),
        user_data=_optional(body, "user_data"),
        nonce=_optional(body, "nonce"),
    )


def sig_structure(protected_header: bytes, payload: bytes) -> bytes:
    """``["Signature1", protected, h'', payload]`` (RFC 9052 §4.4): what the ES384 signature covers."""
    return cbor2.dumps(["Signature1", protected_header, b"", payload])


# -- the certificate chain ------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateSummary:
    subject: str
    issuer: str
    #: Unix seconds.
    not_before: int
    not_after: int


_UNDERSTOOD = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


def _iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _p384(cert: x509.Certificate, name: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except ValueError as e:
        raise CertificateChainError(f"{name}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise CertificateChainError(f"{name}: expected an EC P-384 public key")
    return key


def _extension(cert: x509.Certificate, klass: Any) -> Any:
    try:
        return cert.extensions.get_extension_for_class(klass).value
    except x509.ExtensionNotFound:
        return None


def verify_certificate_chain(
    certificate: bytes, cabundle: Sequence[bytes], root: bytes, at: float
) -> tuple[ec.EllipticCurvePublicKey, list[CertificateSummary]]:
    """Verifies ``certificate → cabundle[n-1] → … → cabundle[1] → root`` at ``at`` (unix seconds),
    where ``cabundle[0]`` must be byte-identical to the pinned ``root``. Returns the leaf's public
    key and the chain, leaf first."""
    if not cabundle:
        raise CertificateChainError("cabundle is empty")
    if bytes(cabundle[0]) != bytes(root):
        raise CertificateChainError(
            f"cabundle[0] (SHA-256 {hashlib.sha256(cabundle[0]).hexdigest()}) is not the pinned root "
            f"(SHA-256 {hashlib.sha256(root).hexdigest()})"
        )
    ders = [("certificate", certificate)]
    ders += [(f"cabundle[{i}]", cabundle[i]) for i in range(len(cabundle) - 1, 0, -1)]
    ders.append(("trust anchor", root))
    certs: list[x509.Certificate] = []
    for where, der in ders:
        try:
            certs.append(x509.load_der_x509_certificate(bytes(der)))
        except ValueError as e:
            raise CertificateChainError(f"{where}: not a DER certificate: {e}") from None
    summaries = []
    for position, cert in enumerate(certs):
        try:
            s = cert.subject.rfc4514_string()
            extensions = list(cert.extensions)
        except ValueError as e:
            raise CertificateChainError(f"{ders[position][0]}: {e}") from None
        if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
            raise CertificateChainError(f"{s}: signature algorithm {cert.signature_algorithm_oid.dotted_string}; "
                                        "expected ecdsa-with-SHA384")
        _p384(cert, s)
        nb = cert.not_valid_before_utc.timestamp()
        na = cert.not_valid_after_utc.timestamp()
        if at < nb:
            raise CertificateChainError(f"{s}: not valid before {_iso(nb)} (checked at {_iso(at)})")
        if at > na:
            raise CertificateChainError(f"{s}: expired at {_iso(na)} (checked at {_iso(at)})")
        for ext in extensions:
            if ext.critical and ext.oid not in _UNDERSTOOD:
                raise CertificateChainError(f"{s}: unrecognised critical extension {ext.oid.dotted_string}")
        bc = _extension(cert, x509.BasicConstraints)
        ku = _extension(cert, x509.KeyUsage)
        if position == 0:
            if bc is not None and bc.ca:
                raise CertificateChainError(f"{s}: leaf certificate must not be a CA")
            if ku is None or not ku.digital_signature:
                raise CertificateChainError(f"{s}: leaf certificate lacks the digitalSignature key usage")
        else:
            if bc is None:
                raise CertificateChainError(f"{s}: issuer lacks basicConstraints")
            if not bc.ca:
                raise CertificateChainError(f"{s}: issuer is not a CA (basicConstraints CA:FALSE)")
            below = position - 1
            if bc.path_length is not None and below > bc.path_length:
                raise CertificateChainError(
                    f"{s}: pathLenConstraint {bc.path_length} exceeded: {below} CA certificate(s) below it"
                )
            if ku is None or not ku.key_cert_sign:
                raise CertificateChainError(f"{s}: issuer lacks the keyCertSign key usage")
        issuer = certs[position + 1] if position + 1 < len(certs) else cert
        if cert.issuer.public_bytes() != issuer.subject.public_bytes():
            raise CertificateChainError(
                f"{s}: issued by {cert.issuer.rfc4514_string()}, but the next certificate is "
                f"{issuer.subject.rfc4514_string()}"
            )
        try:
            _p384(issuer, "issuer").verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise CertificateChainError(
                f"{s}: signature by {issuer.subject.rfc4514_string()} does not verify"
            ) from None
        summaries.append(CertificateSummary(s, cert.issuer.rfc4514_string(), int(nb), int(na)))
    return _p384(certs[0], "leaf"), summaries


# -- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedDocument:
    """A document whose chain and signature verified (and whatever policy was asked)."""

    document: AttestationDocument
    #: Leaf first, root last.
    chain: list[CertificateSummary] = field(default_factory=list)


def _verify_parsed(document: AttestationDocument, root: bytes, at: float) -> VerifiedDocument:
    leaf, chain = verify_certificate_chain(document.certificate, document.cabundle, root, at)
    r = int.from_bytes(document.signature[:48], "big")
    s = int.from_bytes(document.signature[48:], "big")
    try:
        leaf.verify(
            encode_dss_signature(r, s),
            sig_structure(document.protected_header, document.payload),
            ec.ECDSA(hashes.SHA384()),
        )
    except (InvalidSignature, ValueError):
        raise DocumentSignatureError("the document's ES384 signature does not verify") from None
    return VerifiedDocument(document, chain)


def _seconds(t: float | _dt.datetime | None) -> float:
    if t is None:
        return time.time()
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise ValueError("give an aware datetime (e.g. with tzinfo=timezone.utc)")
        return t.timestamp()
    return float(t)


def is_debug_mode(pcrs: Mapping[int, bytes]) -> bool:
    """True when PCR0, PCR1 and PCR2 are all zero (or absent): a debug-mode enclave."""
    return all(not any(pcrs.get(i, b"")) for i in (0, 1, 2))


#: A trusted enclave image: PCR index → value (only the listed indexes are compared; must list PCR0).
TrustedImage = dict[int, bytes]


def image_matches(image: Mapping[int, bytes], pcrs: Mapping[int, bytes]) -> bool:
    """Every PCR the image lists is equal, and the image lists PCR0 (the image hash): an image
    without PCR0 matches nothing (``image_matches`` in ``attestation/src/record.rs``)."""
    return 0 in image and all(pcrs.get(i) == bytes(v) for i, v in image.items())


def image_from_measurements(
    measurements: str | os.PathLike[str] | Mapping[str, Any], indexes: Iterable[int] = (0, 1, 2)
) -> TrustedImage:
    """The trusted image of a ``nitro-cli`` measurement JSON (``{"Measurements": {"PCR0": "…",
    …}}``, as ``nitro-cli build-enclave`` and the simulation's ``measurements.json`` write it):
    a path, the JSON text, or the parsed object, keeping ``indexes`` (PCR0–2 by default)."""
    indexes = list(indexes)
    if 0 not in indexes:
        raise ValueError("PCR0 (the image hash) must be among the indexes kept")
    if isinstance(measurements, Mapping):
        parsed: Any = measurements
    else:
        text = str(measurements)
        if not text.lstrip().startswith("{"):
            with open(measurements, encoding="utf-8") as f:
                text = f.read()
        parsed = json.loads(text)
    table = parsed.get("Measurements") if isinstance(parsed, Mapping) else None
    if not isinstance(table, Mapping):
        raise ValueError('no "Measurements" object')
    image: TrustedImage = {}
    for i in indexes:
        value = table.get(f"PCR{i}")
        if not isinstance(value, str):
            raise ValueError(f"PCR{i} is not in the measurements")
        image[i] = bytes.fromhex(value)
    return image


def pem_to_der(pem: str | bytes) -> bytes:
    """The first ``CERTIFICATE`` block of a PEM text, as DER."""
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    m = re.search(r"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----", text)
    if m is None:
        raise ValueError("no CERTIFICATE block in the PEM text")
    return base64.b64decode("".join(m.group(1).split()))


def verify_attestation_document(
    document: Blob,
    root: bytes,
    *,
    at: float | _dt.datetime | None = None,
    pcrs: Mapping[int, bytes] | None = None,
    allow_debug: bool = False,
    nonce: bytes | None = None,
    max_age_seconds: float | None = None,
) -> VerifiedDocument:
    """Verifies a live document: the chain to ``root`` at ``at`` (default now) and the ES384
    signature; then, when given, ``pcrs`` (only the listed indexes compared), ``nonce`` and
    freshness; debug-mode documents are refused unless ``allow_debug``."""
    when = _seconds(at)
    verified = _verify_parsed(parse_attestation_document(document), root, when)
    doc = verified.document
    if not allow_debug and is_debug_mode(doc.pcrs):
        raise DebugModeError("the document comes from a debug-mode enclave (PCR0-2 are zero)")
    if pcrs is not None:
        for i, v in pcrs.items():
            if doc.pcrs.get(i) != bytes(v):
                shown = doc.pcrs[i].hex() if i in doc.pcrs else "absent"
                raise UntrustedImageError(f"PCR{i} is {shown}; expected {bytes(v).hex()}")
    if nonce is not None and doc.nonce != bytes(nonce):
        raise NonceMismatchError(f"nonce is {doc.nonce.hex() if doc.nonce else 'none'}; expected {bytes(nonce).hex()}")
    if max_age_seconds is not None and doc.timestamp_ms / 1000 < when - max_age_seconds:
        raise StaleDocumentError(f"the document is {when - doc.timestamp_ms / 1000:.0f} s old")
    return verified


@dataclass(frozen=True)
class ProvenanceTrust:
    """What provenance documents are checked against: the pinned root (DER) and the trusted images."""

    root: bytes
    images: list[TrustedImage]

    @classmethod
    def from_files(cls, root_pem: str | os.PathLike[str], *measurements: str | os.PathLike[str]) -> ProvenanceTrust:
        """A root PEM file (the simulation's ``sim-root.pem``) and ``nitro-cli`` measurement files."""
        with open(root_pem, encoding="ascii") as f:
            root = pem_to_der(f.read())
        return cls(root, [image_from_measurements(m) for m in measurements])


def aws_trust(images: Sequence[TrustedImage]) -> ProvenanceTrust:
    """The production trust: the AWS Nitro Enclaves Root G1 with the given images."""
    return ProvenanceTrust(aws_nitro_root_g1(), list(images))


def verify_at_document_time(
    document: Blob, trust: ProvenanceTrust, user_data: bytes, now: float | _dt.datetime | None = None
) -> VerifiedDocument:
    """Verifies a document as evidence about a record: the chain at the document's OWN timestamp
    (a provenance document outlives its three-hour leaf; the NSM writes the timestamp, not the
    requester), the signature, not debug mode, PCRs equal to one of ``trust.images``,
    ``user_data`` equal to the given bytes. A timestamp over a minute ahead of ``now`` is refused."""
    doc = parse_attestation_document(document)
    now_ms = _seconds(now) * 1000
    if doc.timestamp_ms > now_ms + MAX_CLOCK_SKEW_MS:
        raise FromTheFutureError(f"the document's timestamp is {doc.timestamp_ms - now_ms:.0f} ms ahead of this clock")
    verified = _verify_parsed(doc, trust.root, doc.timestamp_ms / 1000)
    if is_debug_mode(doc.pcrs):
        raise DebugModeError("the document comes from a debug-mode enclave (PCR0-2 are zero)")
    if not any(image_matches(image, doc.pcrs) for image in trust.images):
        pcr0 = doc.pcrs.get(0)
        raise UntrustedImageError(
            f"the document's image (PCR0 {pcr0.hex() if pcr0 else 'absent'}) is none of the "
            f"{len(trust.images)} trusted image(s)"
        )
    if doc.user_data is None or doc.user_data != bytes(user_data):
        raise UserDataMismatchError(
            f"user_data is {doc.user_data.hex() if doc.user_data is not None else 'none'}; "
            f"expected {bytes(user_data).hex()}"
        )
    return verified


VaultRef = Union[IdLike, Mapping[str, Any]]


def verify_provenance(
    document: Blob,
    record: Blob,
    trust: ProvenanceTrust,
    *,
    vault: VaultRef | None = None,
    now: float | _dt.datetime | None = None,
) -> VerifiedDocument:
    """Verifies a vault's or an agent key's provenance document: a trusted enclave image produced
    it about exactly this record (and, for an agent, the vault it was made from: ``vault`` is the
    vault id, or the vault as the API returned it, ``{"vault_record": …}``)."""
    vault_id: IdLike | None
    if isinstance(vault, Mapping):
        h = parse_record_header(vault["vault_record"])
        if h.type != VAULT:
            raise RecordError(f"vault_record is a record of type {h.type}, not a vault")
        vault_id = h.record_id
    else:
        vault_id = vault
    return verify_at_document_time(document, trust, provenance_user_data(record, vault_id), now)
