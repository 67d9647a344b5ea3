#!/usr/bin/env bash
# The project's one test command (README "Run all tests"; `.ci/run` runs exactly this).
# Formatting, lints, every unit / integration / end-to-end / fault-injection test, the TypeScript
# client's tests (against the debug binaries built here, and in headless Chromium), the Python
# client's tests (in a virtualenv under target/, against the same binaries), and a smoke run of
# every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

echo "== shellcheck scripts/*.sh .ci/run"
shellcheck scripts/*.sh .ci/run

echo "== hadolint Dockerfile.enclave"
hadolint Dockerfile.enclave

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build the binaries the end-to-end tests run"
cargo build --workspace --bins --locked

echo "== cargo nextest run"
cargo nextest run --workspace --locked --no-fail-fast

echo "== reproducible enclave image (scripts/reproducible-eif.sh: two clean clones, byte-identical EIFs)"
scripts/reproducible-eif.sh

echo "== TypeScript client (clients/typescript): npm ci, build, unit tests, the simulation stack, headless Chromium"
(cd clients/typescript && npm ci --no-audit --no-fund && npm test)

echo "== Python client (clients/python): virtualenv in target/python-venv, pip install with the test extras, pytest (unit, real AWS documents, the simulation stack)"
python3 -m venv target/python-venv
target/python-venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input "./clients/python[test]"
(cd clients/python && ../../target/python-venv/bin/python -m pytest -p no:cacheprovider)

echo "== fuzz smoke run (scripts/fuzz.sh --seconds ${FUZZ_SMOKE_SECONDS:-5}; the long run is documented in the README)"
scripts/fuzz.sh --seconds "${FUZZ_SMOKE_SECONDS:-5}"
