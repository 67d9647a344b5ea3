#!/usr/bin/env bash
# Benchmarks the whole signing path: builds release binaries, starts the simulation stack (or
# attaches to a running parent), creates grants, and drives POST /v1/sign.
#
#   scripts/bench.sh [--seconds 10] [--concurrency 64] [--grants 100] [--json]
#   scripts/bench.sh --sweep [--plot docs/bench-sweep.svg]     concurrency and grants sweeps
#   scripts/bench.sh --requests 1000000 --concurrency 64       a memory run (1M request ids)
#   scripts/bench.sh --attach http://127.0.0.1:8787 --token T [--enclave-pid P --parent-pid P]
#
# Reports throughput, p50/p90/p99/max latency, errors by code, KMS calls, enclave and parent CPU
# and peak RSS, and the raw single-core ed25519-dalek signing rate measured in the same run with
# the ratio between the two. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release --workspace --bins --quiet
exec target/release/signer-bench "$@"
