#!/usr/bin/env python3
"""Time to ready, stage by stage, over N fresh starts of `kvs-infer serve`.

Usage: scripts/measure_startup.py [--runs 10] [--config config/local.yaml] [--binary target/release/kvs-infer]

Each run starts a new process (models read from disk, page cache warm: what a restarted task on
the same instance sees), waits for the `ready` log line, reads the stage durations from /healthz,
then SIGTERMs it. Prints one line per run and a p50 / p90 / max table in Markdown
(docs/health.md quotes it). Standard library only.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request

STAGES = ["starting", "gpu", "models_loaded", "warmed_up"]


def one_run(binary, config_text, workdir):
    cfg = os.path.join(workdir, "measure.yaml")
    with open(cfg, "w") as f:
        f.write(config_text)
    env = dict(os.environ, LOG_FORMAT="json", LOG_LEVEL="info")
    env.pop("HTTP_PORT", None)
    proc = subprocess.Popen([binary, "--config", cfg, "serve"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env, text=True)
    addr, ready = None, None
    try:
        for line in proc.stderr:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("message") == "HTTP server listening":
                addr = rec["addr"]
            if rec.get("message") == "ready":
                ready = rec["time_to_ready_seconds"]
                break
            if rec.get("message") == "startup failed":
                raise SystemExit(f"startup failed: {rec}")
        body = json.load(urllib.request.urlopen(f"http://{addr}/healthz", timeout=5))
        stages = {s["stage"]: s.get("duration_seconds", 0.0) for s in body["stages"]}
        return ready, stages
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--config", default="config/local.yaml")
    ap.add_argument("--binary", default="target/release/kvs-infer")
    args = ap.parse_args()
    with open(args.config) as f:
        text = f.read()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        text = text.replace("port: 8080", "port: 0").replace("dir: out", f"dir: {tmp}/out\noutbox:\n  dir: {tmp}/outbox")
        for i in range(args.runs):
            ready, stages = one_run(args.binary, text, tmp)
            rows.append((ready, stages))
            print(f"run {i + 1}: ready in {ready:.3f} s " + " ".join(f"{s}={stages[s]:.3f}" for s in STAGES),
                  file=sys.stderr)
    print("| | p50 | p90 | max |")
    print("|---|---|---|---|")
    for s in STAGES:
        v = [r[1][s] for r in rows]
        print(f"| `{s}` | {pct(v, .5):.3f} s | {pct(v, .9):.3f} s | {max(v):.3f} s |")
    v = [r[0] for r in rows]
    print(f"| **time to ready** | {pct(v, .5):.3f} s | {pct(v, .9):.3f} s | {max(v):.3f} s |")
    print(f"\n{args.runs} runs, mean {statistics.mean(v):.3f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
