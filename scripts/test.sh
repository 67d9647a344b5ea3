#!/usr/bin/env bash
# The project's one test command (README "Run all tests"; `.ci/run` runs exactly this).
# Formatting, lints, every unit / integration / end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check

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
