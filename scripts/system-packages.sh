#!/usr/bin/env bash
# Install the system packages kvs-infer builds and tests against, when they are missing.
#
#   scripts/system-packages.sh run    what `make run` needs: a C compiler, pkg-config, FFmpeg's
#                                     libraries and headers, libclang (bindgen), Python with pip
#   scripts/system-packages.sh test   the above, plus what `make test` needs: venv, DejaVu fonts,
#                                     objdump, the CA bundle, headless Chromium
#
# Each package is checked the way the build finds it (pkg-config, command -v, a file), so a
# machine that has it from elsewhere is left alone. On Debian/Ubuntu it runs `apt-get update`
# once and `apt-get install` only what is missing, saying what and why; as a user that is not
# root it uses `sudo -n` when that works, and otherwise prints the exact command and fails.
# Elsewhere it names the packages and fails. SYSTEM_PACKAGES=skip skips every check (for
# machines whose packages are managed by other means). `.ci/run`, `make run` and `make test`
# all call this script.
set -euo pipefail

mode="${1:-run}"
case "$mode" in
  run | test) ;;
  *)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac

if [ "${SYSTEM_PACKAGES:-}" = "skip" ]; then
  exit 0
fi

missing=() # Debian package names
reasons=() # one line per package: why it is needed

need() { # need PACKAGE REASON
  local p
  for p in "${missing[@]+"${missing[@]}"}"; do [ "$p" = "$1" ] && return 0; done
  missing+=("$1")
  reasons+=("$1: $2")
}

# --- make run: build the service and provision its runtime ---------------------------------
command -v make >/dev/null || need make "the two commands are make targets"
command -v cc >/dev/null || need gcc "crates with C parts (ring, zstd, the FFmpeg binding) compile C"
command -v python3 >/dev/null || need python3 "scripts/provision.py fetches ONNX Runtime and the models"
python3 -m pip --version >/dev/null 2>&1 || need python3-pip "provision.py downloads the pinned wheels with pip"
command -v pkg-config >/dev/null || need pkg-config "ffmpeg-sys-next finds FFmpeg through pkg-config"
for pc in libavcodec libavformat libavutil libswscale; do
  if ! command -v pkg-config >/dev/null || ! pkg-config --exists "$pc" 2>/dev/null; then
    need "$pc-dev" "the H.264/H.265 decoder links $pc (headers + pkg-config file)"
  fi
done
if [ -z "${LIBCLANG_PATH:-}" ]; then
  # libclang itself (not libclang-cpp, which other packages bring).
  found=
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so*; do
    [ -e "$f" ] && found=1 && break
  done
  [ -n "$found" ] || need libclang-dev "bindgen reads FFmpeg's headers with libclang"
  command -v clang >/dev/null || need clang "bindgen asks clang for its system include paths"
fi

# --- make test: the checks and tests beyond the build ----------------------------------------
if [ "$mode" = test ]; then
  command -v python3 >/dev/null && ! python3 -c "import ensurepip" >/dev/null 2>&1 \
    && need python3-venv "the reference, emulator and lint tools run in virtual environments"
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] \
    || need fonts-dejavu-core "the parity references render text with DejaVu fonts"
  command -v objdump >/dev/null || need binutils "the recovery bundle check reads glibc symbol versions"
  [ -f /etc/ssl/certs/ca-certificates.crt ] \
    || need ca-certificates "the rootfs check copies the CA bundle into the image's filesystem"
  command -v chromium >/dev/null || need chromium "the live page's tests drive headless Chromium"
fi

# cargo fmt and clippy are rustup components, not Debian packages.
if [ "$mode" = test ] && command -v rustup >/dev/null \
  && ! { cargo fmt --version && cargo clippy --version; } >/dev/null 2>&1; then
  echo "system-packages: rustup component add rustfmt clippy (make test checks formatting and lints)" >&2
  rustup component add rustfmt clippy >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "system-packages ($mode): missing on this machine:" >&2
printf '  %s\n' "${reasons[@]}" >&2

if ! command -v apt-get >/dev/null || [ ! -f /etc/debian_version ]; then
  echo "system-packages: this is not a Debian-based system; install the equivalents of these" >&2
  echo "Debian packages with your package manager, then run the command again:" >&2
  echo "  ${missing[*]}" >&2
  echo "(or set SYSTEM_PACKAGES=skip if they are installed where these checks do not look)" >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "system-packages: installing them needs root; run this, then the command again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "system-packages: apt-get update" >&2
"${sudo[@]}" apt-get update -q
echo "system-packages: apt-get install -y ${missing[*]}" >&2
"${sudo[@]}" apt-get install -y -q "${missing[@]}"
