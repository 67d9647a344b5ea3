"""The simulation stack fixture: the real ``signer-sim run`` (kms-sim, the enclave with a
simulated NSM, the parent's HTTP API) in a fresh data directory on free ports, as the TypeScript
client's tests start it; stopped with SIGINT at the end of the session."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
from _support import Sim, bin_dir, free_port

from signing_enclave import ProvenanceTrust, b64decode


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    binary = bin_dir() / "signer-sim"
    if not binary.exists():
        pytest.fail(f"{binary} not found: build the binaries first (cargo build --workspace --bins) or set SIGNER_BIN_DIR")
    data_dir = Path(tempfile.mkdtemp(prefix="signer-py-"))
    http, kms = free_port(), free_port()
    api_token = "py-api-" + secrets.token_hex(16)
    admin_token = "py-admin-" + secrets.token_hex(16)
    log = data_dir / "launcher.log"
    (data_dir / "data").mkdir()
    env = {
        **os.environ,
        "SIGNER_DATA_DIR": str(data_dir / "data"),
        "SIGNER_HTTP_ADDR": f"127.0.0.1:{http}",
        "SIGNER_KMS_ADDR": f"127.0.0.1:{kms}",
        "SIGNER_API_TOKEN": api_token,
        "SIGNER_ADMIN_TOKEN": admin_token,
        "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
    }
    with open(log, "wb") as out:
        child = subprocess.Popen([str(binary), "run"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    stack = None
    try:
        deadline = time.monotonic() + 180
        while True:
            text = log.read_text(errors="replace")
            if "serving; press Ctrl-C to stop" in text:
                break
            masked = text.replace(api_token, "<api token>").replace(admin_token, "<admin token>")
            if child.poll() is not None:
                pytest.fail(f"signer-sim exited ({child.returncode}) before serving:\n{masked}")
            if time.monotonic() > deadline:
                pytest.fail(f"signer-sim did not start within 180 s:\n{masked}")
            time.sleep(0.1)
        data = data_dir / "data"
        toml = (data / "enclave.toml").read_text()
        pinned = re.search(r'^kms_public_key = "([A-Za-z0-9+/=]+)"$', toml, re.M)
        assert pinned, "no kms_public_key in the enclave's config"
        stack = Sim(
            base_url=f"http://127.0.0.1:{http}",
            api_token=api_token,
            admin_token=admin_token,
            data_dir=data,
            trust=ProvenanceTrust.from_files(data / "sim-root.pem", data / "measurements.json"),
            pinned_kms_public_key=b64decode(pinned.group(1)),
            log=log,
        )
        yield stack
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


