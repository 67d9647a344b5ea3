#!/usr/bin/env bash
# Builds (if needed) and runs the whole simulation stack on this machine: the KMS emulator, the
# enclave daemon with a simulated NSM on a Unix socket, and the parent's HTTP API on
# 127.0.0.1:8787. Runs a demo round trip (agent, grant, signed SOL transfer, verified), prints
# `export API=… TOKEN=… ADMIN=…` lines and working curl examples, then serves until Ctrl-C.
#
#   scripts/sim.sh              serve until Ctrl-C
#   scripts/sim.sh --demo-only  exit after the demo
#
# Honours SIGNER_HTTP_ADDR, SIGNER_API_TOKEN, SIGNER_ADMIN_TOKEN, SIGNER_DATA_DIR (default
# .sim-data, relative to the repository root, where this script runs; kept across runs: KMS keys,
# sim CA, tokens, sim-root.pem and measurements.json for `attest`) and SIGNER_KMS_ADDR.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --workspace --bins --quiet
exec target/debug/signer-sim run "$@"
