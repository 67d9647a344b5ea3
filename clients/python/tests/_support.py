"""What the tests share: where they find things (the repository, the shared vectors, the debug
binaries) and the simulation stack the ``sim`` fixture (conftest.py) hands them. The binaries must
be built first (``cargo build --workspace --bins``, as ``scripts/test.sh`` does) or named by
``SIGNER_BIN_DIR``."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signing_enclave import ProvenanceTrust, SignerClient

#: clients/python/tests → the repository root.
REPO_ROOT = Path(__file__).resolve().parents[3]


def vectors_dir() -> Path:
    """``../shared/vectors`` beside the repository, or ``$SIGNER_VECTORS_DIR`` (as the Rust tests)."""
    d = Path(os.environ.get("SIGNER_VECTORS_DIR") or REPO_ROOT.parent / "shared" / "vectors")
    if not d.is_dir():
        raise FileNotFoundError(f"test vectors not found at {d} (set SIGNER_VECTORS_DIR)")
    return d


def bin_dir() -> Path:
    if os.environ.get("SIGNER_BIN_DIR"):
        return Path(os.environ["SIGNER_BIN_DIR"])
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target") / "debug"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sim:
    base_url: str
    api_token: str
    admin_token: str
    data_dir: Path
    #: The sim root and the measured image (PCR0..2 of measurements.json).
    trust: ProvenanceTrust
    #: The KMS public key as the enclave's measured config pins it (SPKI DER).
    pinned_kms_public_key: bytes
    log: Path

    def client(self, **kwargs: object) -> SignerClient:
        return SignerClient(self.base_url, self.api_token, admin_token=self.admin_token, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        """What the launcher printed, the tokens masked."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text.replace(self.api_token, "<api token>").replace(self.admin_token, "<admin token>")


def golden() -> Any:
    return json.loads((REPO_ROOT / "clients" / "vectors" / "golden.json").read_text())
