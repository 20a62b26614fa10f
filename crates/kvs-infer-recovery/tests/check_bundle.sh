#!/usr/bin/env bash
# The recovery function's Lambda zip, checked here: crates/kvs-infer-recovery/bundle.sh packages the given
# binary (the glibc ceiling is this machine's: Debian's is newer than Amazon Linux 2023's 2.34,
# which the deploy build enforces), then the unpacked bundle must resolve every non-glibc library
# from its own lib/ and its bootstrap must start from there and refuse an empty configuration.
# Usage: crates/kvs-infer-recovery/tests/check_bundle.sh [BINARY]   (default target/debug/kvs-infer-recovery)
set -euo pipefail
cd "$(dirname "$0")/../../.."
binary="${1:-target/debug/kvs-infer-recovery}"
fail() { echo "check-recovery-bundle: FAIL $*" >&2; exit 1; }
mkdir -p .cache
work="$(mktemp -d -p "$PWD/.cache" recovery-bundle.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# getconf, not `ldd --version | head -1`: under pipefail, head closing the pipe early can kill ldd
# with SIGPIPE and fail the script (exit 141, seen in CI).
host_glibc="$(getconf GNU_LIBC_VERSION)"
host_glibc="${host_glibc##* }"
GLIBC_CEILING="$host_glibc" crates/kvs-infer-recovery/bundle.sh "$binary" "$work/bundle.zip" >/dev/null
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$work/bundle.zip" "$work/task"
chmod -R u+x "$work/task"
[ -f "$work/task/bootstrap" ] || fail "no bootstrap at the zip's root"
while IFS= read -r line; do
  case "$line" in
    *"not found"*) fail "bootstrap: $line" ;;
    *"=> $work/task/lib/"* | *libc.so.* | *libm.so.* | *linux-vdso* | *ld-linux*) ;;
    *"=> /"*) fail "bootstrap resolves outside the bundle: $line" ;;
  esac
done < <(LD_LIBRARY_PATH="$work/task/lib" ldd "$work/task/bootstrap")
set +e
output="$(env -i LD_LIBRARY_PATH="$work/task/lib" "$work/task/bootstrap" 2>&1)"
code=$?
set -e
[ "$code" = 1 ] || fail "bootstrap with no configuration exited $code, not 1: $output"
case "$output" in *"RECOVERY_CLUSTER: required"*) ;; *) fail "bootstrap did not name the missing configuration: $output" ;; esac
echo "check-recovery-bundle: ok: the zip's bootstrap loads its libraries from lib/ and checks its configuration"
