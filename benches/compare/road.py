#!/usr/bin/env python3
"""Plate reading side by side on the hard road scene (docs/performance.md, "Plate reading"):
kvs-infer's `evaluate` against RapidOCR's per-frame loop.

1. The scene: tests/reference/make_road_scene.py draws it (default 1920x1080, 40 s, 16 vehicles:
   approaching plates, blur, skew, night, two side by side, BUS ONLY painted in the lane, a
   parked car outside the zone, a shop sign) with its ground truth; or --video/--truth.
2. Ours: `kvs-infer evaluate --json` (release build) with the embedded default's models, the lane
   zone and `text_rules` for the scene's formats; motion gating on, then off. Wall time of the
   whole command (decode included).
3. Theirs: RapidOCR 3.10 at its defaults (the same PP-OCRv6 models and 2 threads) in a loop over
   the frames the camera samples (every second frame: 5 of 10 fps), each cropped to the zone's
   bounding box, then a plain majority vote per truth plate over the readings (normalised) taken
   while it is visible and at least a third alike to it. Timed from the first frame's answer
   (decoding to PNG beforehand is not counted).

Both read the same frames on the same 2 cores, one after the other. Prints JSON lines and a table.
Usage: benches/compare/road.py [--size 1920x1080] [--seconds 40] [--vehicles 16] [--video V --truth T]
Needs ffmpeg, the reference venv (`make reference`) and a release build (`cargo build --release`).
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PY = os.path.join(ROOT, ".cache/venv/bin/python")
BINARY = os.path.join(ROOT, "target/release/kvs-infer")
WORK = "/tmp/kvs-infer-road"
SAMPLE_EVERY = 2  # 10 fps video, 5 sampled fps
FORMATS = "[gb, de, fr, in, us-ca]"


def config(video, zone, gated):
    path = os.path.join(WORK, f"road-{'gated' if gated else 'ungated'}.yaml")
    points = ", ".join(f"[{x}, {y}]" for x, y in zone)
    with open(path, "w") as f:
        f.write(f"""logging: {{ level: warn, format: text }}
runtime: {{ execution_provider: cpu, intra_op_threads: 2, warmup_runs: 1 }}
models:
  text:
    kind: ocr
    det: {{ path: models/PP-OCRv6_det_small.onnx, limit_side_len: 1088, limit_type: area }}
    cls: {{ path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }}
    rec: {{ path: models/PP-OCRv6_rec_small.onnx, min_score: 0.8 }}
cameras:
  - id: road
    source: {{ kind: file, path: {video} }}
    target_fps: 5
    motion: {{ enabled: {str(gated).lower()} }}
    ocr: {{ model: text, text_rules: {{ formats: {FORMATS} }} }}
    roi: [ {{ name: lanes, points: [{points}] }} ]
sinks: {{ local: {{ dir: {WORK}/out }} }}
""")
    return path


def ours(video, truth, zone, gated):
    started = time.perf_counter()
    out = subprocess.run([BINARY, "--config", config(video, zone, gated), "evaluate", "--json", "--truth", truth, video],
                         cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"evaluate failed: {out.stderr}")
    return json.loads(out.stdout), took


def normalise(text):
    return "".join(c for c in text.upper() if c.isascii() and c.isalnum())


def alike(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        cur = [i + 1]
        for j, cb in enumerate(b):
            cur.append(min(prev[j] + (ca != cb), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - prev[-1] / longest


def rapidocr(video, truth, zone, size):
    w, h = size
    x0, y0 = int(min(p[0] for p in zone) * w), int(min(p[1] for p in zone) * h)
    x1, y1 = int(max(p[0] for p in zone) * w), int(max(p[1] for p in zone) * h)
    folder = os.path.join(WORK, "frames")
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            os.remove(os.path.join(folder, f))
    os.makedirs(folder, exist_ok=True)
    # Every SAMPLE_EVERY-th frame, numbered by its frame index, cropped to the zone's box.
    subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-vf",
                    f"select=not(mod(n\\,{SAMPLE_EVERY})),crop={x1 - x0}:{y1 - y0}:{x0}:{y0}",
                    "-vsync", "0", "-frame_pts", "1", os.path.join(folder, "f%06d.png")], check=True)
    code = (
        "import glob,json,os,sys,time\n"
        "from rapidocr import RapidOCR\n"
        "import cv2\n"
        "eng=RapidOCR(params={'Global.log_level':'error','EngineConfig.onnxruntime.intra_op_num_threads':2,"
        "'EngineConfig.onnxruntime.inter_op_num_threads':1})\n"
        "paths=sorted(glob.glob(sys.argv[1]+'/*.png'))\n"
        "imgs=[cv2.imread(p) for p in paths]\n"
        "eng(imgs[0])\n"
        "t=time.perf_counter(); out={}\n"
        "for p,im in zip(paths,imgs):\n"
        "  r=eng(im); out[os.path.basename(p)]=list(r.txts) if r.txts is not None else []\n"
        "print(json.dumps({'seconds':time.perf_counter()-t,'frames':len(imgs),'texts':out}))\n"
    )
    res = subprocess.run([VENV_PY, "-c", code, folder], capture_output=True, text=True, check=True)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    readings = {int(name[1:7]): [normalise(t) for t in texts] for name, texts in result["texts"].items()}
    fps = truth["fps"]
    read = 0
    for plate in truth["plates"]:
        want = normalise(plate["text"])
        first, last = plate["frames"] if "frames" in plate else [int(s * fps) for s in plate["seconds"]]
        votes = collections.Counter(t for n, texts in readings.items() if first <= n <= last for t in texts
                                    if alike(t, want) >= 1 / 3)
        winner = votes.most_common(1)[0][0] if votes else None
        read += winner == want
    return {"seconds": result["seconds"], "frames": result["frames"], "read": read, "plates": len(truth["plates"])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--seconds", type=float, default=40)
    p.add_argument("--vehicles", type=int, default=16)
    p.add_argument("--video")
    p.add_argument("--truth")
    a = p.parse_args()
    os.makedirs(WORK, exist_ok=True)
    video, truth_path = a.video, a.truth
    if not video:
        video, truth_path = os.path.join(WORK, "road.mkv"), os.path.join(WORK, "road.json")
        bitrate = "1500k" if a.size == "1920x1080" else "600k"
        subprocess.run([VENV_PY, os.path.join(ROOT, "tests/reference/make_road_scene.py"), video, truth_path,
                        "--size", a.size, "--seconds", str(a.seconds), "--vehicles", str(a.vehicles),
                        "--bitrate", bitrate], check=True)
    with open(truth_path) as f:
        truth = json.load(f)
    zone = truth["zone"]
    size = truth.get("size") or [int(v) for v in a.size.split("x")]
    rows = []
    for gated in (True, False):
        score, took = ours(video, truth_path, zone, gated)
        row = {"who": f"kvs-infer ({'gated' if gated else 'ungated'})", "seconds": round(took, 1),
               "read": score["total"]["read"], "plates": score["total"]["plates"], "junk": len(score["junk"]),
               "extra": score["extra_tracks"]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    theirs = rapidocr(video, truth, zone, size)
    row = {"who": "RapidOCR per-frame loop + majority vote", "seconds": round(theirs["seconds"], 1),
           "read": theirs["read"], "plates": theirs["plates"], "junk": None, "extra": None}
    print(json.dumps(row), flush=True)
    rows.append(row)
    print("\n| who | wall s | plates read | junk tracks | extra tracks | speed vs RapidOCR |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = theirs["seconds"] / r["seconds"] if r["seconds"] else 0
        junk = "-" if r["junk"] is None else r["junk"]
        extra = "-" if r["extra"] is None else r["extra"]
        print(f"| {r['who']} | {r['seconds']} | {r['read']}/{r['plates']} | {junk} | {extra} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
