#!/usr/bin/env python3
"""Golden outputs from the reference implementations, for tests/it/parity.rs.

  * renders text images with Debian's DejaVu fonts (deterministic) into tests/fixtures/parity/;
  * runs RapidOCR (rapidocr==3.10.0: PP-OCRv6 det/rec small + mobile cls, onnxruntime 1.31.1)
    on them and on the decoded KVS frames already there (made by make_media_refs.sh);
  * runs the Ultralytics ONNX recipe for YOLOv8 (letterbox, onnxruntime, class-aware NMS,
    scale_boxes) with nudenet's 320n.onnx on the frames, at a low threshold so there are boxes;
  * writes tests/fixtures/parity/golden.json.

Run by `make reference` (part of `make test`) in the venv that target creates.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFont
from rapidocr import RapidOCR

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity"
FONTS = Path("/usr/share/fonts/truetype/dejavu")
YOLO_MODEL = ROOT / "models" / "320n.onnx"
YOLO_CONF = 0.05
YOLO_IOU = 0.45
THREADS = 1
# Differences up to this (a thousandth of a score or of a pixel) are run-to-run noise, not a change
# of reference (see write_unless_unchanged).
JITTER = 1e-3


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def render(name: str, size, lines, bg=(255, 255, 255), fg=(0, 0, 0), angle=0.0, noise=0.0, seed=0):
    """Draws `lines` as (text, font file, size, (x, y)) on a canvas; optional rotation/noise."""
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    for text, face, pt, xy in lines:
        draw.text(xy, text, font=font(face, pt), fill=fg)
    if angle:
        img = img.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor=bg)
    if noise:
        rng = np.random.default_rng(seed)
        arr = np.asarray(img).astype(np.float32)
        arr += rng.normal(0, noise, arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    path = OUT / f"{name}.png"
    img.save(path)
    return path


def make_text_images() -> list[Path]:
    S, B, C = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansCondensed.ttf"
    return [
        render("text_title", (640, 160), [("KVS INFER 2026", B, 56, (40, 45))]),
        render("text_plate_blue", (420, 140), [("B 1234 XY", B, 60, (40, 30))], bg=(20, 60, 170), fg=(255, 255, 255)),
        render("text_plate_yellow", (480, 140), [("EU-4711-K", B, 58, (40, 35))], bg=(250, 210, 0)),
        render("text_paragraph", (800, 260), [
            ("Kinesis Video Streams", S, 40, (30, 20)),
            ("Inference at the edge", S, 40, (30, 90)),
            ("Camera 7 gate north", S, 40, (30, 160)),
        ]),
        render("text_signs", (900, 220), [
            ("EXIT", B, 64, (40, 30)), ("NO PARKING", B, 48, (320, 40)), ("SPEED LIMIT 30", S, 44, (40, 140)),
        ], bg=(30, 120, 40), fg=(255, 255, 255)),
        render("text_small", (420, 90), [("order 48213 ready", S, 22, (20, 30))]),
        render("text_upside_down", (640, 140), [("UPSIDE DOWN TEXT 42", B, 44, (30, 40))], angle=180),
        render("text_rotated", (760, 220), [("Rotated line of text", S, 46, (60, 80))], angle=3),
        render("text_noisy", (700, 200), [("Noise does not stop us", S, 42, (30, 70))], bg=(200, 200, 200), noise=18.0, seed=7),
        render("text_banner", (1400, 70), [("A very wide banner with one long line of text across it", C, 40, (20, 12))]),
        render("text_tiny", (150, 26), [("ID 9052", B, 18, (8, 3))]),
        render("text_numbers", (700, 200), [("0123456789", S, 52, (30, 20)), ("+49 30 1234567", S, 48, (30, 110))]),
        render("text_pangram", (1100, 120), [("The quick brown fox jumps over the lazy dog", S, 40, (25, 35))]),
        render("text_dark", (640, 180), [("Night shift 23:45", B, 50, (40, 60))], bg=(15, 15, 25), fg=(230, 230, 120)),
    ]


def ocr_golden(images: list[Path]) -> dict:
    engine = RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": THREADS,
        "EngineConfig.onnxruntime.inter_op_num_threads": THREADS,
    })
    out = {}
    for path in images:
        res = engine(str(path))
        lines = []
        if res.txts is not None:
            for box, text, score in zip(res.boxes, res.txts, res.scores):
                lines.append({"text": text, "score": round(float(score), 5),
                              "quad": [[float(x), float(y)] for x, y in np.asarray(box).tolist()]})
        out[path.name] = lines
    return out


def letterbox(img: np.ndarray, size: int):
    """Ultralytics LetterBox(auto=False, scaleup=True, center=True), pad 114."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (w, h) != (new_w, new_h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return img, r, left, top


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def yolo_golden(images: list[Path]) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(str(YOLO_MODEL), opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = eval(meta["names"])  # a Python dict literal written by Ultralytics
    size = eval(meta["imgsz"])[0]
    out = {}
    for path in images:
        bgr = cv2.imread(str(path))
        h, w = bgr.shape[:2]
        lb, r, left, top = letterbox(bgr, size)
        blob = lb[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        pred = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(blob)})[0][0].T
        scores = pred[:, 4:].max(1)
        classes = pred[:, 4:].argmax(1)
        keep = scores >= YOLO_CONF
        cand = []
        for (cx, cy, bw, bh), s, c in zip(pred[keep, :4], scores[keep], classes[keep]):
            cand.append(([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], float(s), int(c)))
        cand.sort(key=lambda t: -t[1])
        kept = []
        for box, s, c in cand:  # class-aware greedy NMS, as Ultralytics (agnostic=False)
            if all(not (k[2] == c and iou(k[0], box) > YOLO_IOU) for k in kept):
                kept.append((box, s, c))
        dets = []
        for box, s, c in kept[:300]:
            x1 = min(max((box[0] - left) / r, 0), w)
            y1 = min(max((box[1] - top) / r, 0), h)
            x2 = min(max((box[2] - left) / r, 0), w)
            y2 = min(max((box[3] - top) / r, 0), h)
            dets.append({"label": names[c], "score": round(s, 6), "box": [float(x1), float(y1), float(x2), float(y2)]})
        out[path.name] = dets
    return out


def same_within(a, b, tol: float) -> bool:
    """True when two JSON values differ only in floats, each by at most tol."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_within(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_within(x, y, tol) for x, y in zip(a, b))
    return a == b


def write_unless_unchanged(path: Path, golden: dict) -> None:
    """Keeps the committed file when the new run differs only by run-to-run float jitter
    (onnxruntime's threading moves the 5th decimal of a score), so `make test` leaves a clean tree."""
    if path.exists():
        try:
            if same_within(json.loads(path.read_text()), golden, JITTER):
                return
        except json.JSONDecodeError:
            pass
    path.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    texts = make_text_images()
    frames = sorted(OUT.glob("frame_*.png"))
    if not frames:
        print("no frames in tests/fixtures/parity: run tests/reference/make_media_refs.sh", file=sys.stderr)
        return 1
    golden = {
        "reference": {"rapidocr": "3.10.0", "onnxruntime": ort.__version__, "opencv": cv2.__version__},
        "ocr": ocr_golden(texts + frames),
        "yolo": {"confidence": YOLO_CONF, "iou": YOLO_IOU, "images": yolo_golden(frames)},
    }
    write_unless_unchanged(OUT / "golden.json", golden)
    n_lines = sum(len(v) for v in golden["ocr"].values())
    n_boxes = sum(len(v) for v in golden["yolo"]["images"].values())
    print(f"parity references: {len(golden['ocr'])} images, {n_lines} text lines, {n_boxes} YOLO boxes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
