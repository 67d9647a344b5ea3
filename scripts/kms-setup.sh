#!/usr/bin/env bash
# KMS setup for the signing enclave, in two steps around the image build:
#
#   1. scripts/kms-setup.sh create-key --region REGION [--alias alias/signer-execution]
#        Creates the RSA_3072 ENCRYPT_DECRYPT execution key and writes deploy/enclave.toml (the
#        measured config baked into the image) with its public key, using `signer-enclave config`
#        so the file is exactly what the enclave parses.
#   2. scripts/build-eif.sh   → build/measurements.json
#   3. scripts/kms-setup.sh apply-policy --region REGION --key-id KEY --role-arn PARENT_ROLE_ARN \
#          --measurements build/measurements.json [--measurements old.json] [--pin 0,1,2] [--admin-arn ARN]
#        Writes build/key-policy.json with `attest key-policy` (Decrypt only with an attestation
#        whose ImageSha384/PCRs match, explicit Deny otherwise) and applies it. Give two
#        --measurements during an upgrade (old and new image), one otherwise.
#
# Needs the AWS CLI v2 with credentials allowed to create keys and set key policies, and the
# signer-enclave and attest binaries (built with cargo if absent; override with SIGNER_ENCLAVE_BIN
# and ATTEST_BIN).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,20p' "$0"; exit 2; }
die() { echo "kms-setup: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
command=$1
shift

region="${AWS_REGION:-}"
alias_name="alias/signer-execution"
config_out="deploy/enclave.toml"
key_id=""
role_arn=""
admin_arn=""
pin="0,1,2"
measurements=()
while [ $# -gt 0 ]; do
  case "$1" in
    --region) region=$2; shift 2 ;;
    --alias) alias_name=$2; shift 2 ;;
    --config-out) config_out=$2; shift 2 ;;
    --key-id) key_id=$2; shift 2 ;;
    --role-arn) role_arn=$2; shift 2 ;;
    --admin-arn) admin_arn=$2; shift 2 ;;
    --pin) pin=$2; shift 2 ;;
    --measurements) measurements+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown option $1" ;;
  esac
done
[ -n "$region" ] || die "--region (or AWS_REGION) is required"

binary() {
  local name=$1 var=$2 path
  path=${!var:-$root/target/release/$name}
  if [ ! -x "$path" ]; then
    cargo build --locked --release --quiet --bin "$name" >&2
  fi
  echo "$path"
}

case "$command" in
  create-key)
    enclave_bin=$(binary signer-enclave SIGNER_ENCLAVE_BIN)
    key_arn=$(aws kms create-key --region "$region" \
      --key-spec RSA_3072 --key-usage ENCRYPT_DECRYPT \
      --description "signing enclave execution key" \
      --query KeyMetadata.Arn --output text)
    echo "created $key_arn" >&2
    if [ -n "$alias_name" ]; then
      aws kms create-alias --region "$region" --alias-name "$alias_name" --target-key-id "$key_arn"
    fi
    public_key=$(aws kms get-public-key --region "$region" --key-id "$key_arn" --query PublicKey --output text)
    mkdir -p "$(dirname "$config_out")"
    "$enclave_bin" config --kms-public-key "$public_key" --kms-key-id "$key_arn" > "$config_out"
    echo "wrote $config_out; next: scripts/build-eif.sh, then kms-setup.sh apply-policy --key-id $key_arn" >&2
    echo "$key_arn"
    ;;
  apply-policy)
    [ -n "$key_id" ] || die "--key-id is required"
    [ -n "$role_arn" ] || die "--role-arn (the parent's instance role) is required"
    [ ${#measurements[@]} -gt 0 ] || die "--measurements build/measurements.json is required"
    attest_bin=$(binary attest ATTEST_BIN)
    args=(key-policy --role-arn "$role_arn" --pin "$pin")
    for m in "${measurements[@]}"; do
      args+=(--pcrs "$m")
    done
    if [ -n "$admin_arn" ]; then
      args+=(--admin-arn "$admin_arn")
    fi
    out_dir=${SIGNER_BUILD_DIR:-build}
    mkdir -p "$out_dir"
    "$attest_bin" "${args[@]}" > "$out_dir/key-policy.json"
    echo "policy written to $out_dir/key-policy.json:" >&2
    cat "$out_dir/key-policy.json" >&2
    aws kms put-key-policy --region "$region" --key-id "$key_id" --policy-name default \
      --policy "file://$out_dir/key-policy.json"
    echo "applied to $key_id" >&2
    ;;
  *) usage ;;
esac
