#!/usr/bin/env python3
"""Summarises benches/compare/run.sh: images/s of each side, the ratio, and output agreement."""
import json
import re
import sys
from pathlib import Path

work, threads, concurrency = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = []
for kind, key in (("ocr", "texts"), ("yolo", "detections")):
    ref = json.load(open(work / f"ref_{kind}.json"))
    ours = {}
    for line in open(work / f"ours_{kind}.jsonl"):
        v = json.loads(line)
        ours[v["image"]] = [t["text"] for t in v[key]] if kind == "ocr" else [d["label"] for d in v[key]]
    m = re.search(r"in ([0-9.]+) s", (work / f"ours_{kind}.err").read_text())
    ours_fps = ref["images"] / float(m.group(1))
    ref_fps = ref["images"] / ref["seconds"]
    same = sum(1 for p, out in ref["outputs"].items() if sorted(out) == sorted(ours.get(p, [])))
    rows.append((kind, ref_fps, ours_fps, same, len(ref["outputs"])))
print(f"\n| model | reference images/s | kvs-infer images/s | ratio | identical outputs | threads | concurrency |")
print("|---|---|---|---|---|---|---|")
for kind, ref_fps, ours_fps, same, n in rows:
    name = "PP-OCR (RapidOCR)" if kind == "ocr" else "YOLOv8n 320 (Ultralytics recipe)"
    print(f"| {name} | {ref_fps:.2f} | {ours_fps:.2f} | {ours_fps / ref_fps:.2f}x | {same}/{n} | {threads} | {concurrency} |")
