#!/usr/bin/env python3
"""Motion gating, measured (docs/performance.md, "Motion gating"): how many cameras one machine
runs at 5 sampled fps with gating on and off, on the scenes tests/reference/make_gate_scene.py
makes, and whether the gated run reports the same plates.

For each scene:
1. `run-file` with gating on and off: the events of both are compared (the same plates, one
   `new` and one `end` each, `first_seen` within one sampled frame), and the analysed frames counted.
2. Cameras per machine: N copies of the scene (started at phases spread evenly over the plate period, so they are
   not in step) as realtime file cameras in one `serve`; after a warm-up, over a 45 s window
   every camera must keep up with real time — decode at least 97 % of the scene's frames
   (`frames_decoded_total`: a camera the analysis cannot keep up with waits for it and falls
   behind real time instead of dropping frames) — with `camera_lag_seconds` under 1 s and no more
   than 1 % of its sampled frames dropped. N doubles until a run fails, then a bisection finds
   the largest N that passes.
3. RapidOCR's per-frame loop on the same sampled frames (benches/compare/reference.py's recipe):
   frames/s, so cameras = frames/s / 5.
Prints one JSON line per measurement and a table; all ratios come from this one run.

Usage: benches/compare/gating.py [--scenes still,busy] [--seconds 180] [--max-cameras 32]
Needs the release binary (cargo build --release), ffmpeg, and the reference venv (make reference).
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/kvs-infer")
WORK = os.path.join(ROOT, "target/gating")
VENV_PY = os.path.join(ROOT, ".cache/venv/bin/python")
SAMPLED_FPS = 5
FRAME_S = 1 / SAMPLED_FPS

MODELS = """models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx, limit_side_len: 960, limit_type: max }
    cls: { path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx, min_score: 0.8 }
"""


def rotated(video, seconds, offset):
    """The scene started `offset` seconds in (and wrapped round): cameras side by side are not
    in step, as real ones are not. Cut at key frames (every 2 s), without re-encoding."""
    offset = int(offset) // 2 * 2
    if offset == 0:
        return video
    out = f"{video}.from{offset}s.mkv"
    if not os.path.exists(out):
        listing = out + ".txt"
        with open(listing, "w") as f:
            f.write(f"file '{video}'\ninpoint {offset}\nfile '{video}'\noutpoint {offset}\n")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", out],
                       check=True)
    return out


def camera(i, video, gated, realtime):
    return f"""  - id: cam-{i}
    source: {{ kind: file, path: {video}, loop: {str(realtime).lower()}, realtime: {str(realtime).lower()} }}
    target_fps: {SAMPLED_FPS}
    ocr: {{ model: text }}
    roi:
      - name: lane
        points: [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]
    motion: {{ enabled: {str(gated).lower()} }}
"""


def config(path, videos, gated, realtime, port=0):
    text = f"logging: {{ level: warn }}\nserver: {{ port: {port} }}\nruntime: {{ intra_op_threads: 2 }}\n{MODELS}cameras:\n"
    text += "".join(camera(i, video, gated, realtime) for i, video in enumerate(videos))
    text += f"sinks:\n  local: {{ dir: {WORK}/out }}\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def scene(name, seconds):
    video = os.path.join(WORK, f"{name}-{int(seconds)}s.mkv")
    truth = video + ".json"
    if not os.path.exists(truth):
        out = subprocess.run([VENV_PY, os.path.join(ROOT, "tests/reference/make_gate_scene.py"), name, video,
                              "--seconds", str(seconds)], check=True, capture_output=True, text=True).stdout
        with open(truth, "w") as f:
            f.write(out)
    with open(truth) as f:
        return video, [json.loads(l) for l in f if l.strip()]


def run_file(video, gated):
    cfg = config(os.path.join(WORK, f"run-file-{gated}.yaml"), [video], gated, False)
    started = time.time()
    out = subprocess.run([BIN, "--config", cfg, "run-file", video], capture_output=True, text=True, check=True)
    events = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    m = re.search(r"(\d+) sampled, (\d+) analysed", out.stderr)
    return events, (int(m.group(1)), int(m.group(2))) if m else (0, 0), time.time() - started


def plates(events):
    """text → {kind: [first_seen, ...]} of the events."""
    out = {}
    for e in events:
        out.setdefault(e.get("text"), {}).setdefault(e["type"], []).append(e["first_seen"])
    return out


def same_events(gated, ungated):
    """Problems: a plate (pass) one run reported and the other did not, a plate without exactly
    one `end` per `new`, or a `first_seen` more than one sampled frame apart."""
    a, b = plates(gated), plates(ungated)
    problems = []
    if set(a) != set(b):
        problems.append(f"plates differ: gated {sorted(map(str, a))}, ungated {sorted(map(str, b))}")
    for text in set(a) & set(b):
        for kind in ("new", "end"):
            x, y = sorted(a[text].get(kind, [])), sorted(b[text].get(kind, []))
            if len(x) != len(y):
                problems.append(f"{text}: {kind} events gated {x}, ungated {y}")
            elif any(abs(p - q) > FRAME_S + 1e-6 for p, q in zip(x, y)):
                problems.append(f"{text}: {kind} first_seen gated {x}, ungated {y}")
        if len(a[text].get("new", [])) != len(a[text].get("end", [])):
            problems.append(f"{text}: gated new {a[text].get('new')} but end {a[text].get('end')}")
    return problems


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCENE_FPS = 10


def metrics(port):
    """(largest camera_lag_seconds, frames dropped, frames decoded per camera)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    lag = [float(v) for v in re.findall(r'^camera_lag_seconds\{[^}]*\} ([0-9.eE+-]+)$', text, re.M)]
    dropped = sum(float(v) for v in re.findall(r'^frames_dropped_total\{[^}]*reason="inference_behind"[^}]*\} ([0-9.eE+-]+)$', text, re.M))
    decoded = {c: float(v) for c, v in re.findall(r'^frames_decoded_total\{[^}]*camera="([^"]+)"[^}]*\} ([0-9.eE+-]+)$', text, re.M)}
    return max(lag or [0.0]), dropped, decoded


def keeps_up(video, seconds, gated, cameras, cycle, warmup=15, window=45):
    """`cycle`: the scene's plate period. The copies start at phases spread evenly over it, as
    independent cameras are: not all in step (which would put every burst on the same second),
    and not all apart either."""
    port = free_port()
    videos = [rotated(video, seconds, (i * cycle / cameras) % seconds) for i in range(cameras)]
    cfg = config(os.path.join(WORK, f"serve-{gated}-{cameras}.yaml"), videos, gated, True, port)
    proc = subprocess.Popen([BIN, "--config", cfg, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"serve with {cameras} cameras did not become ready")
            time.sleep(0.5)
        time.sleep(warmup)
        _, dropped0, decoded0 = metrics(port)
        started = time.time()
        worst = 0.0
        while time.time() < started + window:
            lag, _, _ = metrics(port)
            worst = max(worst, lag)
            time.sleep(2)
        _, dropped1, decoded1 = metrics(port)
        elapsed = time.time() - started
        dropped = dropped1 - dropped0
        sampled = cameras * SAMPLED_FPS * elapsed
        slowest = min((decoded1.get(c, 0) - decoded0.get(c, 0)) / (SCENE_FPS * elapsed) for c in decoded1) if decoded1 else 0
        ok = worst < 1.0 and dropped <= 0.01 * sampled and slowest >= 0.97 and len(decoded1) == cameras
        print(json.dumps({"measure": "cameras", "gated": gated, "cameras": cameras, "max_lag_s": round(worst, 3),
                          "dropped": dropped, "slowest_real_time": round(slowest, 3), "keeps_up": ok}), flush=True)
        return ok
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()


def max_cameras(video, seconds, gated, ceiling, cycle):
    good, n = 0, 1
    while n <= ceiling and keeps_up(video, seconds, gated, n, cycle):
        good, n = n, n * 2
    bad = min(n, ceiling + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        if keeps_up(video, seconds, gated, mid, cycle):
            good = mid
        else:
            bad = mid
    return good


def rapidocr_fps(video, frames=60):
    """RapidOCR's per-frame loop on `frames` sampled frames of the scene (the lane crop is not
    applied: RapidOCR has no zones; the models and threads are the same)."""
    folder = os.path.join(WORK, os.path.basename(video) + ".frames")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-vf", f"fps={SAMPLED_FPS}", "-frames:v", str(frames),
                        os.path.join(folder, "f%03d.png")], check=True)
    code = (
        "import glob,sys,time\n"
        "from rapidocr import RapidOCR\n"
        "import cv2\n"
        "eng=RapidOCR(params={'Global.log_level':'error','EngineConfig.onnxruntime.intra_op_num_threads':2,'EngineConfig.onnxruntime.inter_op_num_threads':1})\n"
        "imgs=[cv2.imread(p) for p in sorted(glob.glob(sys.argv[1]+'/*.png'))]\n"
        "eng(imgs[0])\n"
        "t=time.time()\n"
        "for im in imgs: eng(im)\n"
        "print(len(imgs)/(time.time()-t))\n"
    )
    out = subprocess.run([VENV_PY, "-c", code, folder], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenes", default="still,busy")
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--max-cameras", type=int, default=32)
    p.add_argument("--skip-cameras", action="store_true", help="only the event comparison and RapidOCR")
    a = p.parse_args()
    os.makedirs(WORK, exist_ok=True)
    rows = []
    for name in a.scenes.split(","):
        video, truth = scene(name, a.seconds)
        gated, (sampled, analysed_on), t_on = run_file(video, True)
        ungated, (_, analysed_off), t_off = run_file(video, False)
        problems = same_events(gated, ungated)
        found = sorted(t for t in plates(gated) if t)
        print(json.dumps({"measure": "events", "scene": name, "plates_truth": len(truth), "plates_found": found,
                          "sampled": sampled, "analysed_gated": analysed_on, "analysed_ungated": analysed_off,
                          "run_file_s": [round(t_on, 1), round(t_off, 1)], "problems": problems}), flush=True)
        row = {"scene": name, "analysed": f"{analysed_on}/{analysed_off}", "events_match": not problems}
        if not a.skip_cameras:
            enters = sorted(p["enter_s"] for p in truth)
            cycle = enters[1] - enters[0] if len(enters) > 1 else a.seconds
            row["cameras_gated"] = max_cameras(video, a.seconds, True, a.max_cameras, cycle)
            row["cameras_ungated"] = max_cameras(video, a.seconds, False, a.max_cameras, cycle)
        fps = rapidocr_fps(video)
        row["rapidocr_cameras"] = round(fps / SAMPLED_FPS, 2)
        print(json.dumps({"measure": "rapidocr", "scene": name, "frames_per_s": round(fps, 2)}), flush=True)
        rows.append(row)
    print("\n| scene | analysed (gated/ungated) | same events | cameras gated | cameras ungated | RapidOCR loop (cameras) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['scene']} | {r['analysed']} | {'yes' if r['events_match'] else 'NO'} | {r.get('cameras_gated', '-')} | "
              f"{r.get('cameras_ungated', '-')} | {r['rapidocr_cameras']} |")
    return 0 if all(r["events_match"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
