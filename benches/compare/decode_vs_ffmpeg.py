#!/usr/bin/env python3
"""Decoding side by side with ffmpeg, single-threaded, on the same clips.

Ours: `cargo bench --bench media -- decode` (criterion, bencher format: ns per pass over a
clip). Theirs: `ffmpeg -threads 1 -benchmark` decoding the clip looped, to null (decode only) and
to rgb24 (decode + conversion). Prints per-frame times and the ratio ffmpeg/ours (>= 1: ours is
as fast or faster), and the cost of converting 5 of 30 frames against converting every frame.

Usage: benches/compare/decode_vs_ffmpeg.py   (needs ffmpeg; run from the repository root)
"""
import re
import subprocess
import sys

CLIPS = {"640x360": ("tests/fixtures/kvs/output_get_media.mkv", 300), "1280x720": ("tests/fixtures/media/testsrc_720p.mkv", 90)}
LOOPS = 20


def ours():
    out = subprocess.run(["cargo", "bench", "--bench", "media", "--", "decode/", "--output-format", "bencher"],
                         capture_output=True, text=True, check=True).stdout
    return {m.group(1): float(m.group(2).replace(",", "")) for m in re.finditer(r"test decode/(\S+) +\.\.\. bench: +([\d,]+) ns/iter", out)}


def ffmpeg(path, rgb):
    args = ["ffmpeg", "-hide_banner", "-benchmark", "-threads", "1", "-stream_loop", str(LOOPS - 1), "-i", path, "-map", "0:v:0"]
    args += ["-pix_fmt", "rgb24"] if rgb else []
    args += ["-f", "null", "-"]
    err = subprocess.run(args, capture_output=True, text=True, check=True).stderr
    return float(re.search(r"utime=([\d.]+)s", err).group(1))


def main():
    measured = ours()
    print("| clip | what | ours ms/frame | ffmpeg -threads 1 ms/frame | ffmpeg / ours |")
    print("|---|---|---|---|---|")
    for name, (path, frames) in CLIPS.items():
        for what, key, rgb in [("decode", "decode_only", False), ("decode + rgb every frame", "rgb_every_frame", True)]:
            ns = measured.get(f"{name}_{key}")
            if ns is None:
                sys.exit(f"no bench result for {name}_{key}: {measured}")
            per_ours = ns / 1e6 / frames
            per_ffmpeg = min(ffmpeg(path, rgb) for _ in range(3)) * 1000 / (frames * LOOPS)
            print(f"| {name} | {what} | {per_ours:.3f} | {per_ffmpeg:.3f} | {per_ffmpeg / per_ours:.2f} |")
        every, sampled = measured[f"{name}_rgb_every_frame"], measured[f"{name}_rgb_5_of_30"]
        print(f"| {name} | decode + rgb 5 of 30 / decode + rgb every frame | | | {sampled / every:.2f} |")


if __name__ == "__main__":
    main()
