#!/usr/bin/env bash
# Assembles the container's root filesystem into OUT: exactly what the Dockerfile's runtime stage
# copies (it is `FROM scratch` plus this folder), so the image's contents can be checked without
# a Docker engine (tests/deploy/check_rootfs.sh).
#
# Usage: scripts/assemble-rootfs.sh OUT [--binary PATH] [--variant cpu|gpu]
#   --binary   the kvs-infer executable (default target/release/kvs-infer)
#   --variant  gpu (default, the image): ONNX Runtime from the onnxruntime-gpu wheel plus the CUDA
#              13 / cuDNN 9 user-space libraries its CUDA provider loads, from NVIDIA's PyPI wheels;
#              cpu: the CPU ONNX Runtime that `make setup` provisions (what the tests check here)
#
# Layout:
#   /usr/local/bin/kvs-infer          the service (also the HEALTHCHECK command)
#   /opt/kvs-infer/lib/               ONNX Runtime (+ providers, + CUDA libraries for gpu)
#   /opt/kvs-infer/models/            the provisioned models (SHA-256 checked by make setup)
#   /opt/kvs-infer/sample/plates.mkv  the sample camera of the default config
#   /etc/kvs-infer/config.yaml        config/container.yaml
#   /lib/x86_64-linux-gnu/, /lib64/   every system library those need (glibc, libstdc++, ...)
#   /etc/ssl/certs/ca-certificates.crt, /etc/passwd, /etc/group (user kvs, uid 10001)
#   /var/lib/kvs-infer/               writable state (outbox, local sink): a volume on ECS
set -euo pipefail

die() { echo "assemble-rootfs: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 OUT [--binary PATH] [--variant cpu|gpu]"
out="$1"
shift
binary=target/release/kvs-infer
variant=gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --variant) variant="$2"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x "$binary" ] || die "no executable at $binary (cargo build --release)"
case "$variant" in cpu | gpu) ;; *) die "--variant is cpu or gpu" ;; esac

ORT_VERSION=1.31.1
wheels="$root/.cache/wheels"
rm -rf "$out"
mkdir -p "$out"/{usr/local/bin,opt/kvs-infer/lib,opt/kvs-infer/models,opt/kvs-infer/sample,etc/kvs-infer,etc/ssl/certs,lib/x86_64-linux-gnu,lib64,var/lib/kvs-infer,tmp}
chmod 1777 "$out/tmp"

install -m 0755 "$binary" "$out/usr/local/bin/kvs-infer"
# Debug info off (192 MB → 31 MB for the release build); symbols stay, so backtraces keep names.
if command -v strip >/dev/null; then
  strip --strip-debug "$out/usr/local/bin/kvs-infer"
fi
python3 scripts/provision.py >/dev/null
install -m 0644 models/*.onnx "$out/opt/kvs-infer/models/"
install -m 0644 tests/fixtures/sample/plates.mkv "$out/opt/kvs-infer/sample/"
install -m 0644 config/container.yaml "$out/etc/kvs-infer/config.yaml"

lib="$out/opt/kvs-infer/lib"
if [ "$variant" = cpu ]; then
  install -m 0755 "runtime/libonnxruntime.so.$ORT_VERSION" runtime/libonnxruntime_providers_shared.so "$lib/"
else
  # The GPU wheel and NVIDIA's CUDA 13 wheels (about 2 GB): fetched once into .cache/wheels,
  # each checked against its SHA-256 in scripts/gpu-wheels.txt.
  python3 -m pip download --disable-pip-version-check --quiet --no-deps --require-hashes \
    --only-binary=:all: --dest "$wheels" -r scripts/gpu-wheels.txt
  install -m 0644 scripts/gpu-wheels.txt "$lib/WHEELS"
  # Extracted straight into the rootfs (no staging copy: the libraries are ~1.9 GB), streamed.
  python3 - "$wheels" "$lib" "$ORT_VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
wheels, dest, ort = sys.argv[1:4]
def extract(pattern, keep):
    [whl] = sorted(glob.glob(os.path.join(wheels, pattern)))[-1:] or [None]
    if whl is None:
        sys.exit(f"no wheel matching {pattern} in {wheels}")
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if keep(name):
                target = os.path.join(dest, os.path.basename(name))
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.chmod(target, 0o755)
# The CUDA provider only: the TensorRT provider needs TensorRT, which the image does not carry.
extract(f"onnxruntime_gpu-{ort}-*.whl",
        lambda n: "/capi/" in n and ".so" in n and "pybind" not in n and "tensorrt" not in n)
# Not loaded by the CUDA provider or cuDNN: NVRTC's alternative builds, cuFFTW, NVBLAS.
unused = (".alt.", "libcufftw", "libnvblas")
for pkg in ["nvidia_cuda_runtime", "nvidia_cublas", "nvidia_cudnn_cu13", "nvidia_cufft", "nvidia_curand", "nvidia_cuda_nvrtc"]:
    extract(f"{pkg}-*.whl", lambda n: "/lib/" in n and ".so" in n and not any(u in n for u in unused))
PY
fi

# Every system library the binary and the libraries above load, resolved on this (the build)
# machine and copied with their sonames; the dynamic loader goes to /lib64 as the ELF headers say.
copied=" "
copy_deps() {
  local file="$1" line path name
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in
      # CUDA's driver library comes from the host's driver through the NVIDIA container runtime.
      "libcuda.so.1 => not found"*) continue ;;
      *"=> not found"*) die "$file needs ${line%% *}, which this machine does not have" ;;
      *"=> /"*) path="${line#*=> }"; path="${path%% (*}" ;;
      /*) path="${line%% (*}" ;;
      *) continue ;;
    esac
    name="$(basename "$path")"
    case "$copied" in *" $name "*) continue ;; esac
    [ -e "$lib/$name" ] && continue
    copied="$copied$name "
    sources="$sources$path"$'\n'
    if [[ "$name" == ld-linux* ]]; then
      install -m 0755 "$(readlink -f "$path")" "$out/lib64/$name"
    else
      install -m 0755 "$(readlink -f "$path")" "$out/lib/x86_64-linux-gnu/$name"
    fi
  done < <(LD_LIBRARY_PATH="$lib" ldd "$file")
}
sources=""
for f in "$out/usr/local/bin/kvs-infer" "$lib"/*.so*; do
  copy_deps "$f"
done

# What a scanner needs to see the system libraries: the OS (os-release) and, distroless-style,
# one dpkg status file per Debian package a copied library came from (/var/lib/dpkg/status.d/).
# The binary's crates are embedded by cargo-auditable (Dockerfile); the wheels' libraries are
# listed in /opt/kvs-infer/lib/WHEELS.
if [ -f /etc/os-release ]; then
  mkdir -p "$out/etc" "$out/var/lib/dpkg/status.d"
  install -m 0644 "$(readlink -f /etc/os-release)" "$out/etc/os-release"
  if command -v dpkg-query >/dev/null 2>&1; then
    while IFS= read -r pkg; do
      [ -n "$pkg" ] || continue
      dpkg-query -s "$pkg" >"$out/var/lib/dpkg/status.d/${pkg%%:*}" 2>/dev/null || rm -f "$out/var/lib/dpkg/status.d/${pkg%%:*}"
    done < <(printf '%s' "$sources" | while IFS= read -r p; do
               [ -n "$p" ] && { dpkg -S "$p" 2>/dev/null || dpkg -S "$(readlink -f "$p")" 2>/dev/null; }
             done | cut -d: -f1 | sort -u)
  fi
fi

ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || die "$ca not found (apt-get install ca-certificates)"
install -m 0644 "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nkvs:x:10001:10001:kvs-infer:/var/lib/kvs-infer:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nkvs:x:10001:\n' >"$out/etc/group"

# The service runs as kvs (10001): its state folder is its own (COPY --from keeps ownership).
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$out/var/lib/kvs-infer"
fi

echo "assemble-rootfs: $variant rootfs in $out ($(du -sh "$out" | cut -f1))"
