#!/usr/bin/env bash
# Makes the decoder's extra fixtures in tests/fixtures/media/ (committed; the tests do not need
# ffmpeg), each a stream of Matroska documents cut at key frames, as GetMedia delivers fragments:
#   cabac_high_poc2.mkv   H.264 High, CABAC, 8x8 transform, no B-frames (POC type 2), SPS/PPS
#                         in band before every key frame, nal_ref_idc rewritten to 1 (what
#                         hardware encoders and GStreamer pipelines send), 640x480
#   hevc_main.mkv         H.265 Main (hvcC), 640x360
#   resolution_change.mkv H.264 at 640x360, then new parameters at 1280x720 (a producer restart)
# and the H.265 version of the sample plate video, tests/fixtures/sample/plates_h265.mkv.
# Their decode references (NAME.json, NAME.framemd5) come from ffmpeg's decode of the uncut
# sources. Needs ffmpeg with libx264 and libx265, and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fixtures/media
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src() { # SIZE SECONDS
  echo "-f lavfi -i testsrc2=size=$1:rate=25:duration=$2"
}
# Cut into 1-second documents (one key frame each) and concatenate them.
documents() { # INPUT OUTPUT
  ffmpeg -v error -y -i "$1" -c copy -map 0:v:0 -f segment -segment_time 1 -reset_timestamps 0 \
    -segment_format matroska "$work/seg-%03d.mkv"
  cat "$work"/seg-*.mkv > "$2"
  rm -f "$work"/seg-*.mkv
}
# ffmpeg's decode of the uncut sources as the reference (ffprobe reads one document of a cut
# stream): frame count and every frame's yuv420p MD5, as make_media_refs.sh writes them.
refs() { # NAME SOURCE...
  local name=$1 count=0 n
  shift
  : > "$out/$name.framemd5"
  for f in "$@"; do
    ffmpeg -v error -y -i "$f" -map 0:v:0 -fps_mode passthrough -pix_fmt yuv420p -f framemd5 - |
      grep -v '^#' >> "$out/$name.framemd5"
    n=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$f")
    count=$((count + n))
  done
  printf '{"frames": %d, "selected": []}\n' "$count" > "$out/$name.json"
  echo "$name: $count frames"
}

# shellcheck disable=SC2046
ffmpeg -v error -y $(src 640x480 3) -c:v libx264 -profile:v high -coder cabac -bf 0 -g 25 \
  -x264-params "8x8dct=1:repeat-headers=1" -pix_fmt yuv420p -crf 30 -f h264 "$work/high.h264"
python3 - "$work/high.h264" "$work/high_ref1.h264" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
i = 0
while True:
    i = data.find(b"\x00\x00\x01", i)
    if i < 0 or i + 3 >= len(data):
        break
    h = data[i + 3]
    if h & 0x60:  # a reference NAL: nal_ref_idc 1
        data[i + 3] = (h & 0x9F) | 0x20
    i += 3
open(sys.argv[2], "wb").write(data)
PY
ffmpeg -v error -y -r 25 -i "$work/high_ref1.h264" -c copy "$work/high.mkv"
documents "$work/high.mkv" "$out/cabac_high_poc2.mkv"
refs cabac_high_poc2 "$work/high.mkv"

# shellcheck disable=SC2046
ffmpeg -v error -y $(src 640x360 3) -c:v libx265 -profile:v main -x265-params "keyint=25:min-keyint=25:bframes=0:log-level=error" \
  -pix_fmt yuv420p -crf 32 "$work/hevc.mkv"
documents "$work/hevc.mkv" "$out/hevc_main.mkv"
refs hevc_main "$work/hevc.mkv"

# shellcheck disable=SC2046
ffmpeg -v error -y $(src 640x360 2) -c:v libx264 -profile:v main -bf 0 -g 25 -pix_fmt yuv420p -crf 32 "$work/small.mkv"
# shellcheck disable=SC2046
ffmpeg -v error -y $(src 1280x720 2) -c:v libx264 -profile:v high -bf 0 -g 25 -pix_fmt yuv420p -crf 34 \
  -output_ts_offset 2 "$work/large.mkv"
documents "$work/small.mkv" "$work/a.mkv"
documents "$work/large.mkv" "$work/b.mkv"
cat "$work/a.mkv" "$work/b.mkv" > "$out/resolution_change.mkv"
refs resolution_change "$work/small.mkv" "$work/large.mkv"

ffmpeg -v error -y -i tests/fixtures/sample/plates.mkv -c:v libx265 -profile:v main \
  -x265-params "keyint=25:min-keyint=25:bframes=0:log-level=error" -pix_fmt yuv420p -crf 28 \
  tests/fixtures/sample/plates_h265.mkv
# Pictures over media.max_frame_pixels (5120 x 5120 = 26.2 MP; the default allows 8.9 MP): the
# decoder's limit refuses them before libavcodec allocates one (tests/it/media_limits.rs).
for codec in h264 h265; do
  case $codec in
    h264) enc=(-c:v libx264 -preset medium -crf 40 -g 1) ;;
    h265) enc=(-c:v libx265 -preset medium -x265-params "keyint=1:log-level=error" -crf 40) ;;
  esac
  ffmpeg -v error -y -f lavfi -i color=black:s=5120x5120:d=0.4:r=5 "${enc[@]}" -pix_fmt yuv420p \
    "$out/huge_5120_$codec.mkv"
done

ls -l "$out"/huge_5120_h264.mkv "$out"/huge_5120_h265.mkv "$out"/cabac_high_poc2.mkv "$out"/hevc_main.mkv "$out"/resolution_change.mkv tests/fixtures/sample/plates_h265.mkv
