#!/usr/bin/env bash
# Makes tests/fixtures/sample/plates.mkv: 12 s, 640x360, 25 fps, H.264 (no B-frames) in MKV.
# Plates (DejaVu Sans Bold on white) move across a dark road scene:
#   "KVS 2026"  left -> right in the lower lane (inside the ROI), t = 0.5..9.5 s
#   "AB 123 CD" right -> left in the lower lane (inside the ROI), t = 2.5..11.5 s
#   "OUT 999"   across the top (outside the ROI), the whole time
#   "FLASH 77"  in the lane for 0.2 s only (t = 6.0..6.2): too brief to be confirmed
# The end-to-end test expects exactly the two lane plates as events. Needs ffmpeg and
# fonts-dejavu-core (Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
out=tests/fixtures/sample/plates.mkv
plate() { # TEXT X-EXPR Y ENABLE
  printf "drawtext=fontfile=%s:text='%s':fontsize=34:fontcolor=black:box=1:boxcolor=white:boxborderw=10:x='%s':y=%s:enable='%s'" \
    "$font" "$1" "$2" "$3" "$4"
}
filters=$(IFS=,; echo "drawbox=x=0:y=200:w=640:h=160:color=0x303030:t=fill,drawbox=x=0:y=275:w=640:h=6:color=0xd0d0d0:t=fill,$(plate 'KVS 2026' '-250+75*(t-0.5)' 225 'between(t,0.5,9.5)'),$(plate 'AB 123 CD' '640-75*(t-2.5)' 300 'between(t,2.5,11.5)'),$(plate 'OUT 999' '20+40*t' 40 'gte(t,0)'),$(plate 'FLASH 77' '420' 225 'between(t,6.0,6.2)')")
ffmpeg -v error -y -f lavfi -i "color=c=0x506070:size=640x360:rate=25:duration=12" -vf "$filters" \
  -c:v libx264 -profile:v main -bf 0 -g 25 -pix_fmt yuv420p -crf 28 "$out"
ls -l "$out"
