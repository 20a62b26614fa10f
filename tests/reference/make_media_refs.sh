#!/usr/bin/env bash
# Regenerates tests/fixtures/media/ with ffmpeg: a 720p H.264 clip (decode benchmarks) and, for
# every H.264 capture, ffmpeg's own decode as references:
#   NAME.json       frame count (ffprobe -count_frames) and the frames kept as PNG
#   NAME.framemd5   MD5 of every decoded frame's yuv420p planes, in output order
#   NAME.fN.{y,u,v}.png  planes of selected frames, lossless
# The tests read these files; ffmpeg is not needed to run them. Needs ffmpeg/ffprobe (Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fixtures/media
mkdir -p "$out"

if [ ! -f "$out/testsrc_720p.mkv" ]; then
  ffmpeg -y -v error -f lavfi -i testsrc2=size=1280x720:rate=30 -t 3 \
    -c:v libx264 -profile:v main -bf 0 -g 30 -pix_fmt yuv420p -crf 32 "$out/testsrc_720p.mkv"
fi

refs=(tests/fixtures/kvs/output_get_media.mkv tests/fixtures/kvs/vogels_480.mkv
      tests/fixtures/kvs/output-get-media-equal-timecode.mkv "$out/testsrc_720p.mkv")
for f in "${refs[@]}"; do
  name=$(basename "$f" .mkv)
  count=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f" 2>/dev/null)
  ffmpeg -v error -y -i "$f" -map 0:v:0 -fps_mode passthrough -pix_fmt yuv420p -f framemd5 "$out/$name.framemd5" 2>/dev/null
  picks=(0 $((count / 2)) $((count - 1)))
  for n in "${picks[@]}"; do
    for plane in y u v; do
      ffmpeg -v error -y -i "$f" -map 0:v:0 -vf "select=eq(n\,$n),format=yuv420p,extractplanes=$plane" \
        -fps_mode passthrough -frames:v 1 "$out/$name.f$n.$plane.png" 2>/dev/null
    done
  done
  printf '{"frames": %d, "selected": [%d, %d, %d]}\n' "$count" "${picks[@]}" > "$out/$name.json"
  echo "$name: $count frames"
done

# Frames shared by the OCR and YOLO parity references (tests/reference/make_parity_refs.py).
parity=tests/fixtures/parity
mkdir -p "$parity"
frame() { # FILE N NAME
  ffmpeg -v error -y -i "$1" -map 0:v:0 -vf "select=eq(n\,$2)" -fps_mode passthrough -frames:v 1 "$parity/$3.png" 2>/dev/null
}
frame tests/fixtures/kvs/output-get-media-equal-timecode.mkv 50 frame_talk_50
frame tests/fixtures/kvs/output-get-media-equal-timecode.mkv 200 frame_talk_200
frame tests/fixtures/kvs/vogels_480.mkv 300 frame_vogels_300
frame tests/fixtures/kvs/vogels_480.mkv 700 frame_vogels_700
frame tests/fixtures/kvs/output_get_media.mkv 100 frame_site_100
echo "parity frames: $(find "$parity" -maxdepth 1 -type f | wc -l)"
