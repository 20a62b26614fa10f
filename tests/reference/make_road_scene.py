#!/usr/bin/env python3
"""A hard road scene for plate reading, with the ground truth of what it drew (`kvs-infer
evaluate`'s format, README "Evaluate").

A fixed camera looks down a road. Vehicles approach from the horizon to the bottom of the picture
at a steady speed, so their plates grow from a few pixels to full size and move more than their
own height between two sampled frames near the camera. What makes it hard, each tagged in the
truth so the score breaks down by it:

  far      the plate is first visible with characters of ~8-10 px (at 1280x720)
  blur     motion blur along the direction of travel
  skew     the plate is rotated by a few degrees
  night    the last part of the video is dark, noisy, with lit plates
  pair     two vehicles side by side in the two lanes
  gb/de/fr/in/us-ca  the plate's format (mixed national formats)

and, not plates: `BUS ONLY` painted in the lane (vehicles drive over it, hiding it), a parked
car with a plate outside the lane zone, and a shop sign with text above the road.

The truth lists each plate in the lane while it is readable: from the frame its characters are
8 px high until it leaves the picture (or the zone), as `frames` at the video's `fps`. A plate
whole in the zone that never reaches 8 px is listed `optional` (tag `tiny`): reading it is no
junk, missing it no miss.

Every frame is drawn with numpy and Pillow, piped raw to ffmpeg, encoded H.264 Main (B-frames
on, a cheap camera's bitrate) in MKV.

Usage: make_road_scene.py OUT.mkv OUT.json [--seconds 20] [--size 1280x720] [--fps 10]
                          [--vehicles 8] [--bitrate 600k] [--seed 11] [--vehicle-width 0.3]
The test fixture tests/fixtures/road/road.mkv (+ road.json) is
  make_road_scene.py tests/fixtures/road/road.mkv tests/fixtures/road/road.json
Needs ffmpeg and Debian's fonts-dejavu-core; runs in the reference venv (numpy, Pillow).
"""
import argparse
import json
import math
import subprocess
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# (text as printed, format) — every one fits its format's template (README "Text rules").
PLATES = [
    ("AB12 CDE", "gb"), ("B MW 4721", "de"), ("FG-384-KL", "fr"), ("MH 12 DE 1433", "in"),
    ("7KRT294", "us-ca"), ("YX65 PRW", "gb"), ("K AX 808", "de"), ("GH-902-TZ", "fr"),
    ("KA 05 MN 7781", "in"), ("4NXB517", "us-ca"), ("LV19 HJK", "gb"), ("HH RS 61", "de"),
    ("DC-517-AW", "fr"), ("TN 09 BZ 2204", "in"), ("8PLM306", "us-ca"), ("RE70 ZUX", "gb"),
]
HORIZON = 0.34          # share of the height where the road meets the sky
LANES = (0.3, 0.74)     # x of each lane's centre at the bottom (share of the width)
NIGHT_FROM = 0.6        # the last 40 % of the video is night
MIN_CHAR_PX = 8.0       # truth: a plate counts as visible from this character height on
VEHICLE_WIDTH = 0.3     # a vehicle's width close up, share of the picture's width
DARK = 0.28             # night: how much light the road and the vehicles keep


def lane_zone():
    """The zone the config names (normalised): both lanes, from 45 % of the height down."""
    return [[0.18, 0.45], [0.86, 0.45], [1.0, 1.0], [0.0, 1.0]]


def inside_zone(x, y):
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = lane_zone()
    if y < ay:
        return False
    t = (y - ay) / (cy - ay)
    left = ax + (dx - ax) * t
    right = bx + (cx - bx) * t
    return left <= x <= right


def road(w, h):
    """Sky, buildings with a shop sign, the road in perspective with lane markings."""
    img = Image.new("RGB", (w, h), (150, 170, 190))
    d = ImageDraw.Draw(img)
    hz = int(HORIZON * h)
    for i, x in enumerate(range(0, w, w // 9)):
        top = hz - int(h * (0.12 + 0.08 * ((i * 7) % 5) / 4))
        d.rectangle([x, top, x + w // 9 - 6, hz], fill=(110 + 12 * (i % 3), 100, 95 + 10 * (i % 2)))
    sign_font = ImageFont.truetype(FONT, max(10, h // 40))
    d.rectangle([int(0.06 * w), hz - int(0.1 * h), int(0.3 * w), hz - int(0.06 * h)], fill=(30, 60, 120))
    d.text((int(0.07 * w), hz - int(0.097 * h)), "PIZZA & KEBAB 24H", font=sign_font, fill=(250, 240, 120))
    vx = w * 0.52
    d.polygon([(vx - 4, hz), (vx + 4, hz), (w * 1.05, h), (-w * 0.05, h)], fill=(72, 74, 78))
    for k in range(14):  # dashed centre line
        y0 = hz + (h - hz) * (k / 14) ** 1.6
        y1 = hz + (h - hz) * ((k + 0.5) / 14) ** 1.6
        x0 = vx + (0.52 * w - vx) * (y0 - hz) / (h - hz)
        x1 = vx + (0.52 * w - vx) * (y1 - hz) / (h - hz)
        wd = 1 + 6 * (y0 - hz) / (h - hz)
        d.polygon([(x0 - wd, y0), (x0 + wd, y0), (x1 + wd, y1), (x1 - wd, y1)], fill=(225, 225, 215))
    # BUS ONLY painted in the left lane, squashed by perspective.
    paint = Image.new("RGBA", (520, 150), (0, 0, 0, 0))
    ImageDraw.Draw(paint).text((10, 10), "BUS ONLY", font=ImageFont.truetype(FONT, 110), fill=(235, 235, 225, 255))
    paint = paint.resize((int(0.2 * w), int(0.045 * h)), Image.LANCZOS)
    img.paste(paint, (int(0.3 * w), int(0.76 * h)), paint)
    return img


def plate_image(text, night):
    font = ImageFont.truetype(FONT, 80)
    left, top, right, bottom = font.getbbox(text)
    pad = 18
    plate = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (250, 250, 240) if not night else (255, 255, 235))
    ImageDraw.Draw(plate).text((pad - left, pad - top), text, font=font, fill=(15, 15, 15))
    ImageDraw.Draw(plate).rectangle([0, 0, plate.width - 1, plate.height - 1], outline=(20, 20, 20), width=4)
    return plate, bottom - top


def vehicle_sprite(text, colour, night, skew):
    """The rear of a vehicle with its plate; and the plate's box and character height in it. At
    night the body is dark and the plate lit."""
    plate, char_h = plate_image(text, night)
    if night:
        colour = tuple(int(c * DARK) for c in colour)
        plate = Image.eval(plate, lambda c: int(c * 0.8))
    body = Image.new("RGB", (int(plate.width * 2.1), int(plate.height * 4.2)), colour)
    d = ImageDraw.Draw(body)
    glass = (35, 45, 60) if not night else (8, 10, 14)
    d.rectangle([int(body.width * 0.1), int(body.height * 0.06), int(body.width * 0.9), int(body.height * 0.38)], fill=glass)
    for lx in (0.06, 0.8):
        d.rectangle([int(body.width * lx), int(body.height * 0.5), int(body.width * (lx + 0.14)), int(body.height * 0.6)],
                    fill=(200, 30, 30) if not night else (255, 60, 60))
    if skew:
        plate = plate.rotate(skew, resample=Image.BICUBIC, expand=True, fillcolor=colour)
    px, py = (body.width - plate.width) // 2, int(body.height * 0.62)
    body.paste(plate, (px, py))
    return body, (px, py, px + plate.width, py + plate.height), char_h


def schedule(seconds, vehicles, seed):
    rng = np.random.default_rng(seed)
    out = []
    t = 0.4
    for i in range(vehicles):
        text, fmt = PLATES[i % len(PLATES)]
        duration = float(rng.uniform(3.2, 4.4))  # horizon to the bottom edge
        lane = i % 2
        tags = [fmt]
        if i % 5 == 2:
            tags.append("blur")
        if i % 4 == 3:
            tags.append("skew")
        colour = tuple(int(c) for c in rng.integers(40, 200, size=3))
        out.append(dict(text=text, lane=lane, start=t, duration=duration, tags=tags, colour=colour,
                        skew=float(rng.uniform(3, 6)) * (1 if i % 2 else -1) if "skew" in tags else 0.0))
        # Every fourth vehicle has a companion in the other lane (two plates in view at once).
        if i % 4 == 1 and i + 1 < vehicles:
            t += 0.3
        else:
            t += max(1.2, seconds * 0.92 / vehicles)
    return [v for v in out if v["start"] + v["duration"] <= seconds + 1.0]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("truth")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--vehicles", type=int, default=8)
    p.add_argument("--bitrate", default="600k")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--vehicle-width", type=float, default=VEHICLE_WIDTH,
                   help="a vehicle's width close up, share of the picture's width (smaller: smaller plates)")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    rng = np.random.default_rng(a.seed + 1)
    day_road, frames = road(w, h), int(a.seconds * a.fps)
    night_road = Image.eval(day_road, lambda c: int(c * DARK))
    vehicles = schedule(a.seconds, a.vehicles, a.seed)
    for i, v in enumerate(vehicles):
        if i > 0 and abs(v["start"] - vehicles[i - 1]["start"]) < 0.5:
            v["tags"].append("pair")
            vehicles[i - 1]["tags"].append("pair")
        if v["start"] + v["duration"] / 2 >= NIGHT_FROM * a.seconds:
            v["tags"].append("night")
    parked_plate = vehicle_sprite("PK51 XYZ", (90, 90, 100), False, 0)
    parked_night = vehicle_sprite("PK51 XYZ", (90, 90, 100), True, 0)
    night_noise, truth = 7.0, {v["text"]: [None, None] for v in vehicles}
    tiny = {v["text"]: [None, None] for v in vehicles}  # in view, but never 8 px: optional
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(a.fps),
         "-i", "-", "-c:v", "libx264", "-profile:v", "main", "-preset", "medium", "-bf", "2", "-g", str(2 * a.fps),
         "-pix_fmt", "yuv420p", "-b:v", a.bitrate, "-maxrate", a.bitrate, "-bufsize", a.bitrate, a.out],
        stdin=subprocess.PIPE)
    sprites = {}
    for n in range(frames):
        t = n / a.fps
        night = t >= NIGHT_FROM * a.seconds
        frame = (night_road if night else day_road).copy()
        # The parked car, left of the road, outside the zone.
        pc, _, _ = parked_night if night else parked_plate
        small = pc.resize((int(0.11 * w), int(0.11 * w * pc.height / pc.width)), Image.LANCZOS)
        frame.paste(small, (int(0.005 * w), int(0.58 * h)))
        drawn = []
        in_view = sorted((v for v in vehicles if v["start"] <= t < v["start"] + v["duration"]),
                         key=lambda v: t - v["start"])  # far ones first, near ones over them
        for v in in_view:
            key = (v["text"], night)
            if key not in sprites:
                sprites[key] = vehicle_sprite(v["text"], v["colour"], night, v["skew"])
            body, pbox, char_h = sprites[key]
            progress = (t - v["start"]) / v["duration"]
            # Constant speed towards the camera: distance falls linearly, size grows as 1/distance.
            dist = 1.0 / (0.06 + 0.94 * progress) if progress > 0 else 1 / 0.06
            scale = a.vehicle_width * w / body.width / dist  # the body is this wide, close up
            bw, bh = max(2, int(body.width * scale)), max(2, int(body.height * scale))
            ground = HORIZON * h + (h * 1.08 - HORIZON * h) / dist
            lane_x = 0.52 * w + (LANES[v["lane"]] * w - 0.52 * w) * (ground - HORIZON * h) / (h - HORIZON * h)
            x, y = int(lane_x - bw / 2), int(ground - bh)
            sprite = body.resize((bw, bh), Image.LANCZOS)
            if "blur" in v["tags"]:
                speed_px = max(1, int(0.35 * bh * (0.94 / v["duration"]) / a.fps * dist * 2))
                sprite = sprite.filter(ImageFilter.BoxBlur(min(12, speed_px // 2 + 1)))
            frame.paste(sprite, (x, y))
            drawn.append((v, (x, y, x + bw, y + bh), (x + pbox[0] * scale, y + pbox[1] * scale,
                                                     x + pbox[2] * scale, y + pbox[3] * scale), char_h * scale))
        # Truth: a plate counts on this frame when its characters are big enough, it is whole in
        # the picture and in the zone, and no nearer vehicle (drawn later) hides any of it.
        for k, (v, _, (px0, py0, px1, py1), char_px) in enumerate(drawn):
            cx, cy = (px0 + px1) / 2 / w, (py0 + py1) / 2 / h
            whole = px0 >= 0 and py0 >= 0 and px1 <= w - 1 and py1 <= h - 1
            hidden = any(bx0 < px1 and px0 < bx1 and by0 < py1 and py0 < by1
                         for _, (bx0, by0, bx1, by1), _, _ in drawn[k + 1:])
            if whole and not hidden and inside_zone(cx, cy):
                span = truth if char_px >= MIN_CHAR_PX else tiny
                first, last = span[v["text"]]
                span[v["text"]] = [n if first is None else first, n]
        img = np.asarray(frame).astype(np.float32)
        img = img + rng.normal(0, night_noise if night else 2.0, size=(h, w, 1)).astype(np.float32)
        ffmpeg.stdin.write(np.clip(img, 0, 255).astype(np.uint8).tobytes())
    ffmpeg.stdin.close()
    if ffmpeg.wait() != 0:
        sys.exit("ffmpeg failed")
    plates = []
    for v in vehicles:
        first, last = truth[v["text"]]
        if first is not None:
            plates.append({"text": v["text"], "frames": [first, last], "tags": sorted(set(v["tags"]))})
        elif tiny[v["text"]][0] is not None:
            # Whole in the zone but never readable by the truth's rule: reading it is no junk,
            # missing it no miss.
            plates.append({"text": v["text"], "frames": tiny[v["text"]], "tags": sorted(set(v["tags"] + ["tiny"])),
                           "optional": True})
    with open(a.truth, "w") as f:
        json.dump({"fps": a.fps, "size": [w, h], "zone": lane_zone(),
                   "not_plates": ["BUS ONLY (painted in the lane)", "PK51 XYZ (parked, outside the zone)",
                                  "PIZZA & KEBAB 24H (shop sign)"],
                   "plates": plates}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
