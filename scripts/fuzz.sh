#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets (cargo fuzz, libFuzzer).
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]     default: 60 s for every target
#
# Toolchain: nightly with AddressSanitizer when installed, else stable without a sanitizer
# (FUZZ_TOOLCHAIN=nightly|stable overrides). Builds into target/fuzz. Seeds come from
# ../shared/vectors at run time (never committed) and examples/fuzz_seeds.rs; the growing corpus
# is kept in fuzz/corpus/<target> (git-ignored). Crashes land in fuzz/artifacts/<target>/ and make
# this script fail. One line per target reports the executions, e.g.
# "attestation_document: 1234567 runs, 0 crashes".
set -euo pipefail

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
vectors="${SIGNER_VECTORS_DIR:-$root/../shared/vectors}"
cd "$root/fuzz"

toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
  if rustup run nightly rustc --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
fuzz=(cargo "+$toolchain" fuzz)
build_flags=(--target-dir "$root/target/fuzz")
if [ "$toolchain" != nightly ]; then
  build_flags+=(--sanitizer none)
fi

if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi

# Starting inputs: the real AWS and KMS vectors, plus well-formed inputs for every target made by
# the project's own encoders (run once per invocation).
(cd "$root" && cargo run -q --example fuzz_seeds -- "$root/fuzz/corpus" >/dev/null)
seed() {
  local target="$1" dir="$root/fuzz/corpus/$1"
  mkdir -p "$dir"
  case "$target" in
    attestation_document)
      cp -n "$vectors"/attestation/*.cbor "$dir"/ 2>/dev/null || true ;;
    ber_envelope)
      cp -n "$vectors"/kms/*.ber "$dir"/ 2>/dev/null || true ;;
  esac
}

echo "fuzzing with $toolchain (${build_flags[*]}), $seconds s per target"
"${fuzz[@]}" build "${build_flags[@]}" >/dev/null
status=0
for target in "${targets[@]}"; do
  seed "$target"
  log=$(mktemp)
  if "${fuzz[@]}" run "${build_flags[@]}" "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 \
      >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    status=1
    tail -40 "$log"
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  echo "$target: ${runs:-0} runs, $crashes crashes"
  rm -f "$log"
done
exit $status
