#!/usr/bin/env bash
# Builds the enclave image (Dockerfile.enclave) and the EIF, and keeps the measurements.
#
#   scripts/build-eif.sh [--out build]
#
# Needs docker (with buildx) and nitro-cli (on an EC2 instance with Nitro Enclaves enabled, or any
# machine with the aws-nitro-enclaves-cli package), and deploy/enclave.toml from
# `scripts/kms-setup.sh create-key`. The same commit and config give the same PCR0: the image is
# built with SOURCE_DATE_EPOCH set to the commit time and timestamps rewritten.
#
# Outputs: build/signer-enclave.eif and build/measurements.json (nitro-cli's JSON, the input to
# `attest key-policy --pcrs` and to the parent's SIGNER_EXPECTED_PCRS).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=build
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-eif: unknown option $1" >&2; exit 2 ;;
  esac
done

for tool in docker nitro-cli git; do
  command -v "$tool" >/dev/null || { echo "build-eif: $tool is required" >&2; exit 1; }
done
[ -f deploy/enclave.toml ] || { echo "build-eif: deploy/enclave.toml is missing; run scripts/kms-setup.sh create-key" >&2; exit 1; }
if [ -n "$(git status --porcelain -- . ':!build' ':!deploy/enclave.toml')" ]; then
  echo "build-eif: warning: the working tree has uncommitted changes; the PCRs will not match the commit" >&2
fi

commit=$(git rev-parse --short=12 HEAD)
epoch=$(git log -1 --format=%ct)
tag="signer-enclave:$commit"
mkdir -p "$out"

docker buildx build \
  --file Dockerfile.enclave \
  --build-arg "SOURCE_DATE_EPOCH=$epoch" \
  --output "type=docker,name=$tag,rewrite-timestamp=true" \
  .

nitro-cli build-enclave --docker-uri "$tag" --output-file "$out/signer-enclave.eif" > "$out/measurements.json"
sha256sum "$out/signer-enclave.eif" deploy/enclave.toml > "$out/SHA256SUMS"
echo "built $out/signer-enclave.eif from $commit" >&2
cat "$out/measurements.json"
