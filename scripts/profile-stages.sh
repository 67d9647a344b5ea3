#!/usr/bin/env bash
# Where a signed request's CPU goes, per stage: runs the closed-loop benchmark with `perf record`
# attached to the enclave and the parent for the whole run, then sums each daemon's samples into
# stages (kernel, ed25519, allocator, JSON, base64, CBOR, HTTP, transaction parse, policy,
# stores, receipts, …; scripts/perf_stages.py) and prints µs per request using the CPU per
# request the benchmark measured in the same run (perf attaches when the measured load starts).
# With --allocs it counts each daemon's
# allocations per request instead (uprobes on glibc's malloc, calloc and realloc, counted by
# `perf stat`; the count includes the run's warm-up, a few hundred requests). The two are separate
# runs: a uprobe traps into the kernel on every call, which would swamp the profile's CPU
# figures. See docs/performance.md.
#
#   scripts/profile-stages.sh [--out DIR] [--allocs] [signer-bench arguments…]
#                             e.g. --no-floor (signing only), --floor, --seconds 10
#
# SIGNER_BIN_DIR selects the binaries (default: target/release, built here); perf must be
# allowed to attach (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/profile
if [ "${1:-}" = "--out" ]; then
  out=$2
  shift 2
fi
allocs_only=false
if [ "${1:-}" = "--allocs" ]; then
  allocs_only=true
  shift
fi
mkdir -p "$out"
if [ -z "${SIGNER_BIN_DIR:-}" ]; then
  cargo build --locked --release --workspace --bins --quiet
  export SIGNER_BIN_DIR=$PWD/target/release
fi
command -v perf >/dev/null || { echo "profile-stages: perf is not installed" >&2; exit 2; }

# --no-floor: the run is the one workload asked for (signing, or --floor), not both.
"$SIGNER_BIN_DIR/signer-bench" --json --no-floor "$@" >"$out/bench.txt" 2>"$out/bench.err" &
bench=$!

# The bench starts its own stack; attach once its measured load starts (after the daemons'
# start, the grants and the warm-up, so none of those is counted).
pid_of() { pgrep -n -f "^$SIGNER_BIN_DIR/$1( |\$)" || true; }
enclave="" parent=""
for _ in $(seq 1 1200); do
  if grep -q 'measured load starts' "$out/bench.err" 2>/dev/null; then
    enclave=$(pid_of signer-enclave)
    parent=$(pid_of signer-parent)
    break
  fi
  kill -0 "$bench" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$enclave" ] || [ -z "$parent" ]; then
  wait "$bench" || true
  cat "$out/bench.err" >&2
  echo "profile-stages: the benchmark's load did not start" >&2
  exit 1
fi
recorders=()
if ! $allocs_only; then
  perf record -q -F 1999 -p "$enclave" -o "$out/enclave.data" 2>/dev/null &
  recorders+=($!)
  perf record -q -F 1999 -p "$parent" -o "$out/parent.data" 2>/dev/null &
  recorders+=($!)
else
  rm -f "$out/enclave.allocs" "$out/parent.allocs"
  libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
  # The probes stay defined once added.
  if [ -z "$libc" ] || ! { perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc ' ||
    perf probe -q -x "$libc" -a malloc -a calloc -a realloc >/dev/null 2>&1; }; then
    echo "profile-stages: cannot probe glibc's allocator (uprobes)" >&2
    kill "$bench" 2>/dev/null || true
    exit 1
  fi
  events=probe_libc:malloc,probe_libc:calloc,probe_libc:realloc
  perf stat -x, -e "$events" -p "$enclave" -o "$out/enclave.allocs" 2>/dev/null &
  recorders+=($!)
  perf stat -x, -e "$events" -p "$parent" -o "$out/parent.allocs" 2>/dev/null &
  recorders+=($!)
fi
wait "$bench"
# The daemons exit with the bench; perf stops when its target does.
wait "${recorders[@]}" || true

summary=$(tail -n 1 "$out/bench.txt")
read -r enclave_us parent_us requests < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["enclave_cpu_us_per_request"], j["parent_cpu_us_per_request"], j["requests"])' "$summary")
grep -v '^{' "$out/bench.txt" || true
echo
if ! $allocs_only; then
  for side in enclave parent; do
    perf report -i "$out/$side.data" --stdio --no-children --sort dso,sym 2>/dev/null >"$out/$side.txt"
  done
  echo "CPU µs per request: enclave $enclave_us, parent $parent_us (perf data and reports in $out/)"
  exec scripts/perf_stages.py --enclave "$out/enclave.txt" --parent "$out/parent.txt" --cpu-us "$enclave_us" "$parent_us"
fi
echo "(CPU figures above are inflated by the uprobes: one trap per allocation)"
for side in enclave parent; do
  [ -s "$out/$side.allocs" ] || continue
  python3 - "$out/$side.allocs" "$requests" "$side" <<'PY'
import sys
counts = {}
for line in open(sys.argv[1]):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit():
        counts[fields[2].split(":")[-1]] = int(fields[0])
n = max(int(sys.argv[2]), 1)
print(f"allocations per request, {sys.argv[3]}: " + ", ".join(f"{k} {v / n:.2f}" for k, v in counts.items()))
PY
done
