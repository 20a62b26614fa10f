#!/usr/bin/env python3
"""Resident memory of `kvs-infer serve` after bursts of concurrent /v1/infer requests.

Starts the release binary on a config whose camera ends at once, waits for ready, then sends
BURSTS bursts of CONCURRENCY simultaneous requests (a real 640x360 frame, PNG), and reports the
process's RSS: before the first burst, right after each, and after IDLE seconds of quiet.
Environment variables for the child (MALLOC_ARENA_MAX, ...) pass through.

Usage: benches/compare/burst_rss.py [--bursts 3] [--concurrency 80] [--idle 10] [--image PATH]
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/infer", body=body, headers={"Content-Type": "image/png"})
    status = conn.getresponse().status
    conn.close()
    return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=80)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--image", default=os.path.join(ROOT, "tests/fixtures/parity/frame_vogels_300.png"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/kvs-infer"))
    args = ap.parse_args()
    body = open(args.image, "rb").read()
    work = tempfile.mkdtemp()
    config = os.path.join(work, "burst.yaml")
    # The embedded default's models and threads; a camera with no frames, so only the
    # requests use the CPU.
    with open(os.path.join(ROOT, "config/local.yaml")) as f:
        text = f.read()
    text = text.replace("port: 8080", "port: 0").replace("dir: out", f"dir: {work}/out")
    text = text.replace("tests/fixtures/sample/plates.mkv", "tests/fixtures/kvs/test_tags_empty_cluster.mkv")
    text = text.replace("      realtime: true          # paced like a live camera\n", "")
    text = text.replace("      loop: true ", "      loop: false ")
    text += f"\noutbox:\n  dir: {work}/outbox\n"
    with open(config, "w") as f:
        f.write(text)
    env = dict(os.environ, LOG_FORMAT="json", RUST_LOG="warn")
    child = subprocess.Popen([args.binary, "--config", config, "serve"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    for line in child.stderr:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "HTTP server listening":
            port = int(entry["addr"].rsplit(":", 1)[1])
        if entry.get("message") == "ready":
            break
    if port is None:
        sys.exit("the service did not start")
    time.sleep(2)
    report = {"ready_mib": round(rss_mib(child.pid), 1), "after_burst_mib": []}
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        for _ in range(args.bursts):
            statuses = list(pool.map(lambda _: post(port, body), range(args.concurrency)))
            report["after_burst_mib"].append(round(rss_mib(child.pid), 1))
            report.setdefault("statuses", {})
            for s in statuses:
                report["statuses"][str(s)] = report["statuses"].get(str(s), 0) + 1
    report["requests_per_second"] = round(args.bursts * args.concurrency / (time.monotonic() - started), 2)
    time.sleep(args.idle)
    report["idle_mib"] = round(rss_mib(child.pid), 1)
    child.terminate()
    child.wait(timeout=30)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
