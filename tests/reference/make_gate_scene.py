#!/usr/bin/env python3
"""A realistic camera scene for the motion-gating measurements (benches/compare/gating.sh) and
the gating test's fixture: a gate lane seen by a fixed camera, mostly still, with sensor noise,
slow lighting drift, and number plates that drive through the lane a minority of the time.

Variants:
  still   plates pass for ~15 % of the time (one every 40 s, 6 s each)
  busy    a plate in the lane all the time (a new one every 4 s, overlapping)
  shake   'still' with camera shake: the whole picture moves 0-3 px every frame
  night   'still' at night: dark, noise three times as strong, plates lit

Every frame is drawn in numpy (RGB), piped raw to ffmpeg, encoded H.264 (no B-frames) in MKV.
The plates' texts and times are printed as JSON lines (the ground truth: text, enter_s, leave_s).

Usage: make_gate_scene.py VARIANT OUT.mkv [--seconds 180] [--size 1280x720] [--fps 10] [--crf 26]
                          [--period S]
The test fixture tests/fixtures/sample/gate_still.mkv is
  make_gate_scene.py still tests/fixtures/sample/gate_still.mkv --size 640x360 --seconds 30 --period 14 --crf 30
Needs ffmpeg and Debian's fonts-dejavu-core; runs in the reference venv (numpy, Pillow).
"""
import argparse
import json
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
PLATES = ["KVS 2026", "AB 123 CD", "GX 7741", "LM 08 QT", "RT 5150", "ZE 9902", "HK 31 PP", "DV 4470",
          "NB 66 WS", "TY 2087", "CF 19 JK", "PO 5523"]


def schedule(variant, seconds, period=None):
    """(text, enter_s, leave_s) of every plate."""
    default, crossing = (4.0, 7.0) if variant == "busy" else (40.0, 6.0)
    period = period or default
    first = 2.0 if variant == "busy" else 8.0
    out, t, i = [], first, 0
    while t + crossing <= seconds:
        out.append((PLATES[i % len(PLATES)], t, t + crossing))
        t += period
        i += 1
    return out


def background(w, h, night):
    """A gate lane: sky/wall, a kerb, the road, a lane marking, two posts."""
    y = np.arange(h)[:, None].astype(np.float32)
    x = np.arange(w)[None, :].astype(np.float32)
    wall = 120 + 30 * (y / h) + 6 * np.sin(x / 37.0)
    road = 70 + 10 * (y / h) + 3 * np.sin(x / 11.0 + y / 7.0)
    img = np.where(y < 0.5 * h, wall, road)
    img = np.where((y > 0.5 * h) & (y < 0.52 * h), 170, img)
    img = np.where((np.abs(y - 0.8 * h) < 3) & ((x // 60) % 2 == 0), 200, img)
    for px in (0.08, 0.9):
        img = np.where((np.abs(x - px * w) < 0.015 * w) & (y > 0.25 * h) & (y < 0.95 * h), 95, img)
    rgb = np.stack([img * 0.95, img, img * 1.05], axis=-1)
    if night:
        rgb = rgb * 0.3
    return rgb.astype(np.float32)


def plate_sprite(text, w):
    font = ImageFont.truetype(FONT, max(12, w // 32))
    left, top, right, bottom = font.getbbox(text)
    pad = max(4, w // 160)
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (245, 245, 240))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=(10, 10, 10))
    # The car's rear around the plate: a dark box the plate sits in.
    car = Image.new("RGB", (img.width * 2, img.height * 4), (40, 45, 60))
    car.paste(img, (img.width // 2, int(img.height * 2.2)))
    return np.asarray(car).astype(np.float32)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=["still", "busy", "shake", "night"])
    p.add_argument("out")
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--crf", type=int, default=26)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--period", type=float, help="seconds between plates (default 40; busy 4)")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    night = a.variant == "night"
    rng = np.random.default_rng(a.seed)
    base = background(w, h, night)
    plates = schedule(a.variant, a.seconds, a.period)
    sprites = {text: plate_sprite(text, w) for text, _, _ in plates}
    noise_sigma = 6.0 if night else 2.0
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(a.fps),
         "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", str(2 * a.fps),
         "-pix_fmt", "yuv420p", "-crf", str(a.crf), a.out],
        stdin=subprocess.PIPE)
    frames = int(a.seconds * a.fps)
    for n in range(frames):
        t = n / a.fps
        # Lighting drift: +-12 grey levels over ~2 minutes, and a slow exposure wobble.
        drift = 12 * np.sin(2 * np.pi * t / 120.0) + 3 * np.sin(2 * np.pi * t / 17.0)
        frame = base + (drift * (0.4 if night else 1.0))
        for text, enter, leave in plates:
            if not enter <= t < leave:
                continue
            s = sprites[text]
            sh, sw = s.shape[:2]
            progress = (t - enter) / (leave - enter)
            x = int(-sw + progress * (w + sw))
            y = int(0.62 * h)
            x0, x1 = max(0, x), min(w, x + sw)
            y0, y1 = y, min(h, y + sh)
            if x1 > x0 and y1 > y0:
                region = s[y0 - y:y1 - y, x0 - x:x1 - x]
                frame[y0:y1, x0:x1] = region * (1.3 if night else 1.0)
        frame = frame + rng.normal(0, noise_sigma, size=(h, w, 1)).astype(np.float32)
        if a.variant == "shake":
            dx, dy = rng.integers(-3, 4, size=2)
            frame = np.roll(frame, (int(dy), int(dx)), axis=(0, 1))
        ffmpeg.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    ffmpeg.stdin.close()
    if ffmpeg.wait() != 0:
        sys.exit("ffmpeg failed")
    for text, enter, leave in plates:
        print(json.dumps({"text": text, "enter_s": enter, "leave_s": leave}))


if __name__ == "__main__":
    main()
