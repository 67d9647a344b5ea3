#!/usr/bin/env bash
# Benchmarks the whole signing path: builds release binaries, starts the simulation stack (or
# attaches to a running parent), creates grants, and drives POST /v1/sign.
#
#   scripts/bench.sh [--seconds 10] [--concurrency 64] [--grants 100] [--json]   closed loop,
#                      then the floor on the same stack: saturated and at 50 % of the maximum
#                      rate (sign_/floor_cpu_us_per_request, beyond_floor_us, beyond_floor_x_raw,
#                      half_max.p99_ms and half_max.floor_p99_ms; --no-floor skips it)
#   scripts/bench.sh --rate R|max [--connections 64] [--json]  open loop at a fixed rate
#   scripts/bench.sh --curve [--curve-plot docs/bench-rate-curve.svg]  10..90 % of the maximum
#   scripts/bench.sh --sweep [--plot docs/bench-sweep.svg]     concurrency and grants sweeps
#   scripts/bench.sh --requests 1000000 --concurrency 64       a memory run (1M request ids)
#   scripts/bench.sh --floor [--rate R]                        GET /v1/enclave instead of signing
#   scripts/bench.sh --cluster 3 [--seconds 10] [--json]       one instance, then a cluster of 3
#                                                              behind HAProxy, same closed loop
#   scripts/bench.sh --attach http://127.0.0.1:8787 --token T [--enclave-pid P --parent-pid P]
#
# Reports throughput (or offered and achieved rate), p50/p90/p99/p99.9/max latency (the open
# loop's from each request's due time), errors by code, KMS calls, enclave and parent CPU per
# request and peak RSS, context switches per request, and what the machine itself costs in the
# same run: one raw ed25519-dalek signature, one socket hop to a sleeping thread, and the latency
# of a bare socket round trip between two threads. With --cluster N, for the single instance and
# the cluster each: throughput, p50/p99, CPU per request over every process of the setup (all
# enclaves, all parents and HAProxy) and the cluster's Raft log entries per append; with --json
# the last line is {"single": {...}, "cluster": {...}, "ratio": {...}}. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --release --workspace --bins --quiet
exec target/release/signer-bench "$@"
