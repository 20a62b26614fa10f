#!/usr/bin/env python3
"""Renders an ecs/ template: every ${VAR} replaced from an env file (KEY=VALUE lines).

Usage: ecs/render.py ENV_FILE TEMPLATE > rendered.json

A variable set in the environment overrides the file's value.

Fails (exit 1, naming them) when a placeholder has no value, or when the result is not JSON.
`ecs/deploy.sh` and `tests/deploy/check_deploy.py` both render through this one function.
"""
import json
import os
import re
import sys

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def read_env(path):
    values = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
                raise SystemExit(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
            values[key] = value
    return values


def render(text, values, name="template"):
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise SystemExit(f"{name}: no value for {', '.join(missing)}")
    out = PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
    try:
        return json.loads(out)
    except ValueError as e:
        raise SystemExit(f"{name}: not JSON after rendering: {e}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    values = read_env(sys.argv[1])
    # What deploy.sh learns while it runs (TASK_DEFINITION, TARGET_GROUP_ARN, IMAGE_URI from the
    # pipeline) is exported and wins over the file.
    values.update({k: v for k, v in os.environ.items() if k in values})
    with open(sys.argv[2]) as f:
        doc = render(f.read(), values, sys.argv[2])
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
