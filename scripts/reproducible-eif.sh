#!/usr/bin/env bash
# Reproducibility check of the enclave image: two fresh clones of HEAD in different directories,
# built by scripts/build-eif.sh under different umask, TZ, LANG, file times, user-visible
# environment and separate target dirs, must give byte-identical EIFs and identical PCRs.
#
#   scripts/reproducible-eif.sh [--keep]
#
# CI has no AWS kernel: the kernel, cmdline, init and nsm.ko are the stand-ins committed in
# tools/eif-build/test-fixtures/ (with a stand-in config). PCRs are SHA-384 over the section
# bytes, so the property checked is the same as with the real blobs. Cost: two release builds of
# the static signer-enclave (each in its own target dir under $TMPDIR).
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "$0")/.." && pwd)
keep=false
[ "${1:-}" = "--keep" ] && keep=true
work=$(mktemp -d "${TMPDIR:-/tmp}/reproducible-eif.XXXXXX")
cleanup() { if ! $keep; then rm -rf "$work"; else echo "kept $work" >&2; fi; }
trap cleanup EXIT

fixtures=tools/eif-build/test-fixtures
# Both clones check out this commit (HEAD may move while the builds run).
commit=$(git -C "$root" rev-parse HEAD)
# The image builder and attest are built once, from this checkout (ordinary debug builds); the
# enclave binary, which the image contains, is built from each clone.
host_bin=${CARGO_TARGET_DIR:-$root/target}/debug
(cd "$root" && cargo build --locked -q -p eif-build -p nitro-attestation --bins)
# One build: clone into $1, then run build-eif.sh with the remaining environment settings.
build_one() {
  local dir=$1 mask=$2 tz=$3 lang=$4 stamp=$5
  shift 5
  mkdir -p "$(dirname "$dir")"
  (umask "$mask" && git clone --quiet --no-local "$root" "$dir" && git -C "$dir" checkout --quiet "$commit")
  # Different file times in each checkout (git sets them to the checkout time anyway).
  find "$dir" -path "$dir/.git" -prune -o -exec touch -h -d "$stamp" {} +
  local start
  start=$(date +%s)
  (
    cd "$dir"
    umask "$mask"
    env -i PATH="$PATH" HOME="$HOME" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
      RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
      TZ="$tz" LANG="$lang" LC_ALL="$lang" "$@" \
      scripts/build-eif.sh --out "$dir/out" --target-dir "$dir.target" \
        --config "$fixtures/enclave.toml" --blobs "$fixtures/blobs" --host-bin "$host_bin" >/dev/null
  )
  echo "$(( $(date +%s) - start ))"
}

echo "== reproducible-eif: build A" >&2
a="$work/a/src"
ta=$(build_one "$a" 022 UTC C "2001-02-03 04:05:06" USER=builder-a SOME_VAR=1)
echo "== reproducible-eif: build B" >&2
b="$work/b/some/deeper/path/checkout"
tb=$(build_one "$b" 077 Pacific/Chatham C.UTF-8 "2030-12-31 23:59:59" USER=someone-else OTHER=x \
  SOURCE_DATE_EPOCH=1 RUSTFLAGS=-Copt-level=1)

fail=0
for f in signer-enclave signer-enclave.eif measurements.json SHA256SUMS ramdisks/bootstrap.cpio ramdisks/application.cpio; do
  if ! cmp -s "$a/out/$f" "$b/out/$f"; then
    echo "reproducible-eif: $f differs between the two builds" >&2
    fail=1
  fi
done
echo "build A ($ta s): $(sha256sum "$a/out/signer-enclave.eif" | cut -d' ' -f1)  signer-enclave.eif"
echo "build B ($tb s): $(sha256sum "$b/out/signer-enclave.eif" | cut -d' ' -f1)  signer-enclave.eif"
echo "signer-enclave binary: $(sha256sum "$a/out/signer-enclave" | cut -d' ' -f1) (A) $(sha256sum "$b/out/signer-enclave" | cut -d' ' -f1) (B)"
cat "$a/out/measurements.json"
if [ "$fail" -ne 0 ]; then
  echo "reproducible-eif: 0 passed, 1 failed" >&2
  exit 1
fi
echo "reproducible-eif: the two builds of $commit are byte-identical"
