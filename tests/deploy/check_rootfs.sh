#!/usr/bin/env bash
# The image's root filesystem, checked without a Docker engine: assemble it with the same script
# the Dockerfile runs (`make deploy-check` uses the image's GPU variant: ~1.4 GB of wheels,
# fetched once into .cache/wheels; ROOTFS_VARIANT=cpu for the small one), then
#   1. every ELF file in it resolves every shared library inside the folder (ldd, with the
#      folder's library directories on the path: anything found outside it is a failure);
#   2. the binary, chrooted into the folder as uid 10001 with only the image's environment,
#      becomes ready (`execution_provider: auto`: CUDA with a GPU, else the CPU) and its own
#      `healthcheck` exits 0. `libcuda.so.1` is the one library allowed to be missing: it is
#      the host driver's, mounted by the NVIDIA container runtime.
# Usage: [ROOTFS_VARIANT=gpu] tests/deploy/check_rootfs.sh [BINARY]   (default target/debug/kvs-infer)
set -euo pipefail
cd "$(dirname "$0")/../.."
binary="${1:-target/debug/kvs-infer}"
# On the repository's disk, not /tmp: the GPU rootfs is ~1.9 GB, more than a small /tmp holds.
mkdir -p .cache
rootfs="$(mktemp -d -p "$PWD/.cache" rootfs-check.XXXXXX)/rootfs"
pid=""
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$(dirname "$rootfs")"
}
trap cleanup EXIT
fail() { echo "check-rootfs: FAIL $*" >&2; exit 1; }

variant="${ROOTFS_VARIANT:-cpu}"
scripts/assemble-rootfs.sh "$rootfs" --binary "$binary" --variant "$variant"

libpath="$rootfs/opt/kvs-infer/lib:$rootfs/lib/x86_64-linux-gnu"
checked=0
while IFS= read -r -d '' file; do
  head -c 4 "$file" | grep -q "ELF" || continue
  checked=$((checked + 1))
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in
      linux-vdso* | "statically linked"*) ;;
      # The CUDA driver library comes from the host's driver (NVIDIA container runtime).
      "libcuda.so.1 => not found"*) ;;
      *"not found"*) fail "$file: $line" ;;
      *"=> $rootfs/"*) ;;
      *"=> "*) fail "$file resolves outside the rootfs: $line" ;;
      /lib64/ld-linux-x86-64.so.2*) [ -f "$rootfs/lib64/ld-linux-x86-64.so.2" ] || fail "no dynamic loader in the rootfs" ;;
      *) fail "$file: unexpected ldd line: $line" ;;
    esac
  done < <(LD_LIBRARY_PATH="$libpath" ldd "$file" 2>&1)
done < <(find "$rootfs" -type f -print0)
echo "check-rootfs: ok: $checked ELF files resolve every library inside the rootfs"

if [ "$(id -u)" != 0 ] || ! command -v chroot >/dev/null; then
  echo "check-rootfs: not root (or no chroot): skipping the start check" >&2
  exit 0
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
image_env=(ORT_DYLIB_PATH=/opt/kvs-infer/lib/libonnxruntime.so.1.31.1 LD_LIBRARY_PATH=/opt/kvs-infer/lib
  CONFIG_FILE=/etc/kvs-infer/config.yaml HTTP_PORT="$port")
env -i "${image_env[@]}" "$(command -v chroot)" --userspec=10001:10001 "$rootfs" /usr/local/bin/kvs-infer \
  >"$rootfs/../serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  if env -i HTTP_PORT="$port" "$(command -v chroot)" --userspec=10001:10001 "$rootfs" /usr/local/bin/kvs-infer healthcheck 2>/dev/null; then
    echo "check-rootfs: ok: the chrooted binary is ready and its healthcheck exits 0"
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$rootfs/../serve.log" >&2; fail "the binary exited"; }
  sleep 0.2
done
cat "$rootfs/../serve.log" >&2
fail "not ready within 30 s"
