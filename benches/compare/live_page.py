#!/usr/bin/env python3
"""What the live page costs (docs/performance.md, "Live page"): `serve` on config/local.yaml (the
sample video, looping, paced) for a minute with no page open, then a minute with the page open in
headless Chromium; the service's CPU (share of one core), its resident memory, and the pictures
it encoded (`ui_frames_encoded_total`) in each minute.

Usage: benches/compare/live_page.py [--seconds 60]
Needs the release binary (cargo build --release) and Debian's chromium.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/kvs-infer")
TICKS = os.sysconf("SC_CLK_TCK")


def usage(pid):
    """(resident MiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / TICKS


def encoded(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(r"^ui_frames_encoded_total\{[^}]*\} (\S+)$", text, re.M))


def minute(pid, port, seconds, label):
    rss0, cpu0 = usage(pid)
    pictures0 = encoded(port)
    peak = rss0
    started = time.time()
    while time.time() < started + seconds:
        time.sleep(1)
        peak = max(peak, usage(pid)[0])
    rss1, cpu1 = usage(pid)
    elapsed = time.time() - started
    row = {"page": label, "cpu_percent_of_a_core": round((cpu1 - cpu0) / elapsed * 100, 1),
           "rss_mib_start": round(rss0), "rss_mib_end": round(rss1), "rss_mib_peak": round(peak),
           "pictures_encoded": encoded(port) - pictures0, "seconds": round(elapsed)}
    print(json.dumps(row), flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=60)
    a = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="live-page-")
    with open(os.path.join(ROOT, "config/local.yaml")) as f:
        config = f.read()
    config = (config.replace("port: 8080", f"port: {port}")
              .replace("dir: out", f"dir: {work}/out").replace("level: info", "level: warn"))
    path = os.path.join(work, "local.yaml")
    with open(path, "w") as f:
        f.write(config)
    serve = subprocess.Popen([BIN, "--config", path, "serve"], cwd=ROOT, stdout=subprocess.DEVNULL)
    browser = None
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        time.sleep(10)
        rows = [minute(serve.pid, port, a.seconds, "none")]
        browser = subprocess.Popen(
            # With DevTools on, headless Chromium keeps the page open and running until killed.
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={work}/profile",
             "--remote-debugging-port=0", "--window-size=1400,1200", f"http://127.0.0.1:{port}/ui"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(10)
        rows.append(minute(serve.pid, port, a.seconds, "open"))
        print("\n| page | service CPU (% of a core) | RSS start → end (peak), MiB | pictures encoded |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['page']} | {r['cpu_percent_of_a_core']} | {r['rss_mib_start']} → {r['rss_mib_end']} "
                  f"({r['rss_mib_peak']}) | {r['pictures_encoded']:.0f} in {r['seconds']} s |")
    finally:
        if browser:
            browser.kill()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=40)


if __name__ == "__main__":
    main()
