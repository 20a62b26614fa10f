#!/usr/bin/env bash
# kvs-infer against the implementations people trust, on the same 50 frames, in one run:
#   OCR:  RapidOCR (Python) vs kvs-infer, same PP-OCR models, same ONNX Runtime, same threads
#   YOLO: the Ultralytics ONNX recipe (onnxruntime + numpy) vs kvs-infer, same model and threads
# Prints images/s for each, the ratio, and whether the outputs agree.
# Needs ffmpeg (to cut the frames) and the reference venv (`make reference`).
# Usage: benches/compare/run.sh [THREADS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${1:-1}
concurrency=${2:-1}
work=target/compare
venv=${VENV:-.cache/venv}
mkdir -p "$work/ocr" "$work/yolo"

# 50 frames with text (every 4th of a KVS capture) and 50 with people (every 18th of another).
[ -f "$work/ocr/f050.png" ] || ffmpeg -v error -y -i tests/fixtures/kvs/output-get-media-equal-timecode.mkv \
  -vf "select=not(mod(n\,4))" -fps_mode passthrough -frames:v 50 "$work/ocr/f%03d.png"
[ -f "$work/yolo/f050.png" ] || ffmpeg -v error -y -i tests/fixtures/kvs/vogels_480.mkv \
  -vf "select=not(mod(n\,18))" -fps_mode passthrough -frames:v 50 "$work/yolo/f%03d.png"

cat > "$work/ocr.yaml" <<YAML
runtime: { intra_op_threads: $threads, max_batch: 8, max_delay: 2ms }
models:
  text:
    kind: ocr
    det: { path: models/PP-OCRv6_det_small.onnx }
    cls: { path: models/ch_ppocr_mobile_v2.0_cls_mobile.onnx }
    rec: { path: models/PP-OCRv6_rec_small.onnx }
cameras: [ { id: bench, source: { kind: file, path: tests/fixtures/kvs/vogels_480.mkv }, ocr: { model: text } } ]
sinks: { local: {} }
logging: { level: warn }
YAML
cat > "$work/yolo.yaml" <<YAML
runtime: { intra_op_threads: $threads, max_batch: 8, max_delay: 2ms }
models:
  faces: { kind: yolo, path: models/320n.onnx, confidence: 0.25, iou: 0.45 }
cameras: [ { id: bench, source: { kind: file, path: tests/fixtures/kvs/vogels_480.mkv }, detect: [faces] } ]
sinks: { local: {} }
logging: { level: warn }
YAML

cargo build --release --quiet
for kind in ocr yolo; do
  "$venv/bin/python" benches/compare/reference.py "$kind" "$threads" "$work/ref_$kind.json" "$work/$kind"/f*.png
  ./target/release/kvs-infer --config "$work/$kind.yaml" infer --timing --concurrency "$concurrency" "$work/$kind"/f*.png \
    > "$work/ours_$kind.jsonl" 2> "$work/ours_$kind.err"
  grep '^timing' "$work/ours_$kind.err"
done
"$venv/bin/python" benches/compare/report.py "$work" "$threads" "$concurrency"
