#!/usr/bin/env bash
# Packages kvs-infer-recovery for Lambda's provided.al2023 runtime: a zip with `bootstrap` (the
# binary) and, in lib/, every shared library it needs that is not part of glibc (Lambda puts
# /var/task/lib on the library path). AL2023 has glibc 2.34: the script refuses any file that
# needs newer glibc symbols, so build where glibc is not newer (the deploy workflow builds in
# public.ecr.aws/sam/build-provided.al2023).
#
# Usage: crates/kvs-infer-recovery/bundle.sh [BINARY] [OUT_ZIP]
#   BINARY   default target/release/kvs-infer-recovery
#   OUT_ZIP  default target/lambda/kvs-infer-recovery.zip
#   GLIBC_CEILING=2.34 (environment) the newest glibc symbol version allowed
set -euo pipefail

die() { echo "bundle-recovery: $*" >&2; exit 1; }
binary="${1:-target/release/kvs-infer-recovery}"
out="${2:-target/lambda/kvs-infer-recovery.zip}"
ceiling="${GLIBC_CEILING:-2.34}"
[ -x "$binary" ] || die "no executable at $binary (cargo build --release -p kvs-infer-recovery)"
command -v objdump >/dev/null || die "objdump not found (apt-get install binutils)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib"
install -m 0755 "$binary" "$stage/bootstrap"
if command -v strip >/dev/null; then
  strip --strip-debug "$stage/bootstrap"
fi

# glibc's own libraries come with the runtime; everything else travels in lib/.
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"
  case "$line" in
    *"=> not found"*) die "$binary needs ${line%% *}, which this machine does not have" ;;
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | linux-vdso* | /lib64/ld-linux*) continue ;;
    *"=> /"*)
      path="${line#*=> }"
      path="${path%% (*}"
      install -m 0755 "$(readlink -f "$path")" "$stage/lib/$(basename "$path")"
      ;;
  esac
done < <(ldd "$binary")

newest_glibc() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}
for file in "$stage/bootstrap" "$stage"/lib/*; do
  [ -e "$file" ] || continue
  needed="$(newest_glibc "$file")"
  if [ -n "$needed" ] && [ "$(printf '%s\n%s\n' "$needed" "$ceiling" | sort -V | tail -1)" != "$ceiling" ]; then
    die "$(basename "$file") needs glibc $needed, newer than $ceiling (build on Amazon Linux 2023)"
  fi
done

mkdir -p "$(dirname "$out")"
rm -f "$out"
# zip with the executable bits Lambda needs, without depending on the zip tool.
python3 - "$stage" "$out" <<'PY'
import os, sys, zipfile
stage, out = sys.argv[1:3]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in os.walk(stage):
        for name in sorted(files):
            path = os.path.join(root, name)
            info = zipfile.ZipInfo(os.path.relpath(path, stage))
            info.external_attr = (0o100755 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
PY
echo "bundle-recovery: $out ($(du -h "$out" | cut -f1)): bootstrap$(cd "$stage" && find lib -type f -printf ' %p')"
