#!/usr/bin/env python3
"""Times the reference implementations on the comparison frames and records their outputs.

  reference.py ocr  THREADS OUT.json IMAGE...   RapidOCR 3.10.0 (PP-OCRv6 det/rec small, mobile cls)
  reference.py yolo THREADS OUT.json IMAGE...   the Ultralytics ONNX recipe (onnxruntime + numpy,
                                               class-aware NMS with cv2.dnn.NMSBoxesBatched)

The first image warms up and is not timed. Images are decoded before timing starts, as
kvs-infer's timing starts after its first image too (it decodes inside its timed loop, so this
favours the reference slightly).
"""
import json
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort


def run_ocr(threads, paths):
    from rapidocr import RapidOCR
    engine = RapidOCR(params={
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })
    images = [cv2.imread(p) for p in paths]
    engine(images[0])
    out = {}
    started = time.perf_counter()
    for path, img in zip(paths[1:], images[1:]):
        res = engine(img)
        out[path] = list(res.txts) if res.txts is not None else []
    return time.perf_counter() - started, out


def run_yolo(threads, paths, model="models/320n.onnx", conf=0.25, iou=0.45):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    meta = sess.get_modelmeta().custom_metadata_map
    size = eval(meta["imgsz"])[0]
    names = eval(meta["names"])
    images = [cv2.imread(p) for p in paths]

    def detect(img):
        h, w = img.shape[:2]
        r = min(size / h, size / w)
        nw, nh = int(round(w * r)), int(round(h * r))
        dw, dh = (size - nw) / 2, (size - nh) / 2
        lb = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        top, bottom, left, right = int(round(dh - 0.1)), int(round(dh + 0.1)), int(round(dw - 0.1)), int(round(dw + 0.1))
        lb = cv2.copyMakeBorder(lb, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
        blob = np.ascontiguousarray(lb[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        pred = sess.run(None, {name: blob})[0][0].T
        scores = pred[:, 4:].max(1)
        keep = scores >= conf
        pred, scores = pred[keep], scores[keep]
        classes = pred[:, 4:].argmax(1)
        boxes = np.stack([pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2, pred[:, 2], pred[:, 3]], 1)
        idx = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), conf, iou)
        dets = []
        for i in np.array(idx).reshape(-1):
            x, y, bw, bh = boxes[i]
            dets.append((names[int(classes[i])], float(scores[i]),
                         [(x - left) / r, (y - top) / r, (x + bw - left) / r, (y + bh - top) / r]))
        return dets

    detect(images[0])
    out = {}
    started = time.perf_counter()
    for path, img in zip(paths[1:], images[1:]):
        out[path] = [d[0] for d in detect(img)]
    return time.perf_counter() - started, out


def main():
    kind, threads, out_path, *paths = sys.argv[1:]
    seconds, outputs = (run_ocr if kind == "ocr" else run_yolo)(int(threads), paths)
    json.dump({"seconds": seconds, "images": len(paths) - 1, "outputs": outputs}, open(out_path, "w"))
    print(f"reference {kind}: {len(paths) - 1} images in {seconds:.3f} s = {(len(paths) - 1) / seconds:.2f} images/s")


if __name__ == "__main__":
    main()
