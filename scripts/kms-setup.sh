#!/usr/bin/env bash
# KMS setup for the signing enclave, in two steps around the image build:
#
#   1. scripts/kms-setup.sh create-key --region REGION --role-arn PARENT_ROLE_ARN \
#          --domain app.example.com --uri https://app.example.com --chain-id mainnet \
#          [--admin-arn ARN] [--break-glass-role-arn ARN] [--alias alias/signer-execution]
#          [--multi-region] [--predecessor old-measurements.json]
#        Creates the RSA_3072 ENCRYPT_DECRYPT execution key *with an interim key policy*
#        (build/interim-key-policy.json, from `attest key-policy --interim`): the key
#        administrators (--admin-arn, default the account root of --role-arn) may manage the key
#        and read its public key, and an explicit Deny refuses Decrypt and ReEncrypt* to everyone.
#        So KMS's default policy (the account may do kms:*) never exists on this key. The final
#        policy cannot be given here: it pins PCR0, and PCR0 measures the enclave config, which
#        contains this key's public key. Then adds the alias and writes deploy/enclave.toml (the
#        measured config baked into the image) with the public key, the domain, URI and chain of
#        the users' authorization messages, and (for an upgrade) the images it succeeds, using
#        `signer-enclave config` so the file is exactly what the enclave parses. With
#        --multi-region the key is a multi-Region primary (replicable: docs/deploy.md,
#        "Multi-Region replica keys"; KMS cannot convert a single-Region key later).
#        In both steps only --break-glass-role-arn may schedule the key's deletion, delete
#        imported key material or replicate the key; without it nobody may (an explicit Deny
#        in both policies; docs/deploy.md, "Break-glass role").
#   2. scripts/build-eif.sh   → build/measurements.json
#   3. scripts/kms-setup.sh apply-policy --region REGION --key-id KEY --role-arn PARENT_ROLE_ARN \
#          --measurements build/measurements.json [--measurements old.json] [--pin 0,1,2]
#          [--admin-arn ARN] [--break-glass-role-arn ARN]
#        Writes build/key-policy.json with `attest key-policy` (Decrypt only with an attestation
#        whose ImageSha384/PCRs match, explicit Deny otherwise) and applies it, replacing the
#        interim policy. Give two --measurements during an upgrade (old and new image), one
#        otherwise. KEY may be a key id, key ARN, alias name (alias/…) or alias ARN: PutKeyPolicy
#        takes key ids only, so an alias is resolved with `aws kms describe-key` first.
#
# Works with the AWS CLI v1 and v2 (only options both have; the region comes from --region, or
# AWS_REGION / AWS_DEFAULT_REGION). Needs credentials allowed to create keys, aliases and key
# policies, and the signer-enclave and attest binaries (built with cargo if absent; override with
# SIGNER_ENCLAVE_BIN and ATTEST_BIN). Policy files go to build/ (override with SIGNER_BUILD_DIR).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,36p' "$0"; exit 2; }
die() { echo "kms-setup: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
command=$1
shift

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
alias_name="alias/signer-execution"
config_out="deploy/enclave.toml"
key_id=""
role_arn=""
admin_arn=""
break_glass_role_arn=""
multi_region=()
pin="0,1,2"
domain=""
uri=""
chain_id=""
measurements=()
predecessors=()
while [ $# -gt 0 ]; do
  case "$1" in
    --region) region=$2; shift 2 ;;
    --alias) alias_name=$2; shift 2 ;;
    --config-out) config_out=$2; shift 2 ;;
    --key-id) key_id=$2; shift 2 ;;
    --role-arn) role_arn=$2; shift 2 ;;
    --admin-arn) admin_arn=$2; shift 2 ;;
    --break-glass-role-arn) break_glass_role_arn=$2; shift 2 ;;
    --multi-region) multi_region=(--multi-region); shift ;;
    --pin) pin=$2; shift 2 ;;
    --measurements) measurements+=("$2"); shift 2 ;;
    --domain) domain=$2; shift 2 ;;
    --uri) uri=$2; shift 2 ;;
    --chain-id) chain_id=$2; shift 2 ;;
    --predecessor) predecessors+=(--predecessor "$2"); shift 2 ;;
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
    [ -n "$role_arn$admin_arn" ] ||
      die "--role-arn (the parent's role: its account root administers the key) or --admin-arn is required"
    { [ -n "$domain" ] && [ -n "$uri" ] && [ -n "$chain_id" ]; } ||
      die "--domain, --uri and --chain-id (where users' authorization messages are valid) are required"
    enclave_bin=$(binary signer-enclave SIGNER_ENCLAVE_BIN)
    attest_bin=$(binary attest ATTEST_BIN)
    args=(key-policy --interim)
    if [ -n "$role_arn" ]; then
      args+=(--role-arn "$role_arn")
    fi
    if [ -n "$admin_arn" ]; then
      args+=(--admin-arn "$admin_arn")
    fi
    if [ -n "$break_glass_role_arn" ]; then
      args+=(--break-glass-role-arn "$break_glass_role_arn")
    fi
    out_dir=${SIGNER_BUILD_DIR:-build}
    mkdir -p "$out_dir"
    "$attest_bin" "${args[@]}" > "$out_dir/interim-key-policy.json"
    key_arn=$(aws kms create-key --region "$region" \
      --key-spec RSA_3072 --key-usage ENCRYPT_DECRYPT "${multi_region[@]}" \
      --description "signing enclave execution key" \
      --policy "file://$out_dir/interim-key-policy.json" \
      --query KeyMetadata.Arn --output text)
    echo "created $key_arn with the interim policy $out_dir/interim-key-policy.json" >&2
    if [ -n "$alias_name" ]; then
      aws kms create-alias --region "$region" --alias-name "$alias_name" --target-key-id "$key_arn"
      echo "alias $alias_name -> $key_arn" >&2
    fi
    public_key=$(aws kms get-public-key --region "$region" --key-id "$key_arn" --query PublicKey --output text)
    mkdir -p "$(dirname "$config_out")"
    "$enclave_bin" config --kms-public-key "$public_key" --kms-key-id "$key_arn" \
      --domain "$domain" --uri "$uri" --chain-id "$chain_id" "${predecessors[@]}" > "$config_out"
    echo "wrote $config_out; next: scripts/build-eif.sh, then kms-setup.sh apply-policy --key-id ${alias_name:-$key_arn}" >&2
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
    if [ -n "$break_glass_role_arn" ]; then
      args+=(--break-glass-role-arn "$break_glass_role_arn")
    fi
    out_dir=${SIGNER_BUILD_DIR:-build}
    mkdir -p "$out_dir"
    "$attest_bin" "${args[@]}" > "$out_dir/key-policy.json"
    echo "policy written to $out_dir/key-policy.json:" >&2
    cat "$out_dir/key-policy.json" >&2
    key_arn=$key_id
    case "$key_id" in
      alias/* | arn:*:alias/*)
        key_arn=$(aws kms describe-key --region "$region" --key-id "$key_id" --query KeyMetadata.Arn --output text)
        echo "$key_id is $key_arn" >&2
        ;;
    esac
    aws kms put-key-policy --region "$region" --key-id "$key_arn" --policy-name default \
      --policy "file://$out_dir/key-policy.json"
    echo "applied to $key_arn" >&2
    ;;
  *) usage ;;
esac
