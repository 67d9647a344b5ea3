#!/usr/bin/env bash
# Builds the production enclave image (EIF) from the checked-out commit, without Docker or
# nitro-cli, and keeps its measurements.
#
#   scripts/build-eif.sh [--out build] [--config deploy/enclave.toml]
#                        [--blobs /usr/share/nitro_enclaves/blobs]
#                        [--kernel F] [--kernel-config F] [--cmdline F] [--init F] [--nsm F]
#                        [--target-dir DIR] [--target TRIPLE] [--host-bin DIR]
#
# Needs the Rust toolchain (and a C toolchain with static glibc, libc6-dev), the kernel blobs of
# the aws-nitro-enclaves-cli package (bzImage, bzImage.config, cmdline, init, nsm.ko; default
# location above), and the measured config from `scripts/kms-setup.sh create-key`.
#
# 1. signer-enclave: release, --locked, --no-default-features (no simulated NSM, no sim CA),
#    fully static (-C target-feature=+crt-static), paths remapped, no build id, stripped,
#    SOURCE_DATE_EPOCH = the commit time, TZ=UTC, LC_ALL=C, umask 022.
# 2. tools/eif-build: deterministic cpio ramdisks (boot: init, nsm.ko; application: the binary,
#    the config, cmd, env) and the EIF, with aws-nitro-enclaves-image-format.
#    (--host-bin DIR: take eif-build and attest from DIR instead of building them.)
# 3. `attest measure --json` re-measures the EIF with its own parser; the build fails unless it
#    prints exactly measurements.json.
#
# Outputs in --out: signer-enclave.eif, measurements.json (nitro-cli's JSON: the input to
# `attest key-policy --pcrs` and to the parent's SIGNER_EXPECTED_PCRS), SHA256SUMS, and the
# binary, config and ramdisks it lists or was made from.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=build
config=deploy/enclave.toml
blobs=/usr/share/nitro_enclaves/blobs
kernel="" kernel_config="" cmdline="" init="" nsm=""
target_dir="$root/target/eif"
target=x86_64-unknown-linux-gnu
host_bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --blobs) blobs=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --kernel-config) kernel_config=$2; shift 2 ;;
    --cmdline) cmdline=$2; shift 2 ;;
    --init) init=$2; shift 2 ;;
    --nsm) nsm=$2; shift 2 ;;
    --target-dir) target_dir=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --host-bin) host_bin=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build-eif: unknown option $1" >&2; exit 2 ;;
  esac
done

command -v cargo >/dev/null || { echo "build-eif: cargo is required" >&2; exit 1; }
command -v git >/dev/null || { echo "build-eif: git is required" >&2; exit 1; }
[ -f "$config" ] || { echo "build-eif: $config is missing; run scripts/kms-setup.sh create-key" >&2; exit 1; }
if [ -n "$(git status --porcelain -- . ':!build' ':!deploy/enclave.toml')" ]; then
  echo "build-eif: warning: the working tree has uncommitted changes; the PCRs will not match the commit" >&2
fi

# Nothing of the caller's locale, zone or umask reaches the image.
umask 022
export TZ=UTC LC_ALL=C LANG=C
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
commit=$(git rev-parse HEAD)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
mkdir -p "$out" "$target_dir"
out=$(cd "$out" && pwd)
target_dir=$(cd "$target_dir" && pwd)
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

echo "== build-eif: signer-enclave ($target, static, release) from $commit" >&2
# The last matching --remap-path-prefix wins: the target dir (which may sit inside the checkout)
# is listed after the checkout.
rustflags="-C target-feature=+crt-static -C link-arg=-Wl,--build-id=none -C strip=symbols"
rustflags+=" --remap-path-prefix=$root=/build --remap-path-prefix=$cargo_home=/cargo"
rustflags+=" --remap-path-prefix=$target_dir=/target"
start=$(date +%s)
CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never RUSTFLAGS="$rustflags" \
  cargo build --locked --release --no-default-features -p signer-enclave \
  --target "$target" --target-dir "$target_dir"
binary="$target_dir/$target/release/signer-enclave"
echo "build-eif: signer-enclave built in $(( $(date +%s) - start ))s" >&2

if [ -z "$host_bin" ]; then
  echo "== build-eif: the image builder and attest" >&2
  # Ordinary host builds (no enclave flags): only their behaviour matters, not their bytes.
  env -u RUSTFLAGS cargo build --locked -q -p eif-build -p nitro-attestation --bins
  host_bin=${CARGO_TARGET_DIR:-$root/target}/debug
fi

args=(--binary "$binary" --config "$config" --blobs "$blobs" --out "$out" --image-version "$commit")
[ -n "$kernel" ] && args+=(--kernel "$kernel")
[ -n "$kernel_config" ] && args+=(--kernel-config "$kernel_config")
[ -n "$cmdline" ] && args+=(--cmdline "$cmdline")
[ -n "$init" ] && args+=(--init "$init")
[ -n "$nsm" ] && args+=(--nsm "$nsm")
"$host_bin/eif-build" "${args[@]}" >/dev/null

# Independent re-measurement: a different parser must print the same bytes.
"$host_bin/attest" measure --eif "$out/signer-enclave.eif" --json > "$out/measurements.attest.json"
if ! cmp -s "$out/measurements.json" "$out/measurements.attest.json"; then
  echo "build-eif: attest measure disagrees with the builder's measurements" >&2
  diff "$out/measurements.json" "$out/measurements.attest.json" >&2 || true
  exit 1
fi
rm "$out/measurements.attest.json"
(cd "$out" && sha256sum -c --quiet SHA256SUMS)

echo "build-eif: built $out/signer-enclave.eif from $commit" >&2
cat "$out/measurements.json"
