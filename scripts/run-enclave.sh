#!/usr/bin/env bash
# Sizes the Nitro Enclaves allocator and runs the enclave.
#
#   scripts/run-enclave.sh [--eif build/signer-enclave.eif] [--cpus 2] [--memory-mib 2048] [--cid 16]
#   scripts/run-enclave.sh --debug-mode ...    DEVELOPMENT ONLY (see below)
#
# --cpus must be a multiple of 2 on hyperthreaded instances (whole cores are given to the
# enclave); --memory-mib must hold the EIF plus the enclave's stores (about 150 MiB for 1 million
# request ids). The parent reaches the enclave at vsock:<cid>:5000.
#
# --debug-mode is for development only: it allows `nitro-cli console`, and the enclave's
# attestation then carries all-zero PCRs, so the parent refuses it and KMS denies it. Never use
# it with production keys.
set -euo pipefail

eif=build/signer-enclave.eif
cpus=2
memory=2048
cid=16
debug=""
while [ $# -gt 0 ]; do
  case "$1" in
    --eif) eif=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --memory-mib) memory=$2; shift 2 ;;
    --cid) cid=$2; shift 2 ;;
    --debug-mode) debug="--debug-mode"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "run-enclave: unknown option $1" >&2; exit 2 ;;
  esac
done

command -v nitro-cli >/dev/null || { echo "run-enclave: nitro-cli is required" >&2; exit 1; }
[ -f "$eif" ] || { echo "run-enclave: $eif not found; run scripts/build-eif.sh" >&2; exit 1; }

allocator=/etc/nitro_enclaves/allocator.yaml
if [ -w "$allocator" ] || [ -w "$(dirname "$allocator")" ]; then
  printf -- '---\nmemory_mib: %s\ncpu_count: %s\n' "$memory" "$cpus" > "$allocator"
  systemctl restart nitro-enclaves-allocator.service
else
  echo "run-enclave: cannot write $allocator (run as root); using the current allocation" >&2
fi

if [ -n "$debug" ]; then
  echo "run-enclave: DEBUG MODE (development only): PCRs will be zero; the parent and KMS will refuse this enclave" >&2
fi

# shellcheck disable=SC2086 # $debug is empty or one flag
nitro-cli run-enclave --eif-path "$eif" --cpu-count "$cpus" --memory "$memory" --enclave-cid "$cid" $debug
nitro-cli describe-enclaves
