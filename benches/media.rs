//! Media throughput: demuxing a real GetMedia capture held in memory, and H.264 decoding (with
//! and without RGB conversion) at 640x360 (the KVS capture) and 1280x720 (a generated clip).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvs_infer::media::decode::convert::RgbConverter;
use kvs_infer::media::decode::{DecodedFrame, DecoderSettings, VideoDecoder};
use kvs_infer::media::demux::{DemuxConfig, Demuxer, demux_all};
use kvs_infer::media::{Event, Frame, Track};

fn demux(c: &mut Criterion) {
    let data = std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture");
    let mut g = c.benchmark_group("demux");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("output_get_media_whole", |b| b.iter(|| demux_all(&data, DemuxConfig::default()).len()));
    // As a network body arrives: 16 KiB chunks.
    g.bench_function("output_get_media_16k_chunks", |b| {
        b.iter(|| {
            let mut d = Demuxer::default();
            let mut n = 0;
            for chunk in data.chunks(16 * 1024) {
                d.push(chunk);
                while d.next_event().is_some() {
                    n += 1;
                }
            }
            d.finish();
            while d.next_event().is_some() {
                n += 1;
            }
            n
        })
    });
    g.finish();
}

fn frames_of(path: &str) -> (Vec<Track>, Vec<Frame>) {
    let data = std::fs::read(path).expect("clip");
    let (mut tracks, mut frames) = (Vec::new(), Vec::new());
    for e in demux_all(&data, DemuxConfig::default()) {
        match e {
            Event::Tracks(t) if tracks.is_empty() => tracks = t,
            Event::Frame(f) if f.track == 1 => frames.push(f),
            _ => {}
        }
    }
    (tracks, frames)
}

/// Clips for the decode benches: the KVS capture (640x360) and a generated 720p clip.
const CLIPS: [(&str, &str); 2] =
    [("640x360", "tests/fixtures/kvs/output_get_media.mkv"), ("1280x720", "tests/fixtures/media/testsrc_720p.mkv")];

/// Decodes every frame of the clip (one software thread, as a camera's default) and converts to
/// RGB one frame in `convert_every` (0: none); returns the frames converted.
fn decode_clip(tracks: &[Track], frames: &[Frame], convert_every: usize) -> usize {
    let mut d = VideoDecoder::new(DecoderSettings::default());
    let mut rgb = RgbConverter::new();
    d.push_tracks(tracks).expect("decodable");
    let (mut n, mut converted) = (0, 0);
    let mut take = |frame: DecodedFrame| {
        if convert_every > 0 && n % convert_every == 0 {
            std::hint::black_box(rgb.convert(&frame.picture).expect("rgb"));
            converted += 1;
        }
        n += 1;
    };
    for f in frames {
        d.push_frame(f).expect("decodes");
        while let Some(frame) = d.next_frame() {
            take(frame);
        }
    }
    d.finish().expect("flush");
    while let Some(frame) = d.next_frame() {
        take(frame);
    }
    converted
}

/// Per clip: decode only; decode + RGB for every frame (what OpenH264 did); decode every frame
/// but convert 5 of 30 (a camera sampled at 5 fps). `benches/compare/decode_vs_ffmpeg.py` puts
/// these beside `ffmpeg -threads 1`.
fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for (name, path) in CLIPS {
        let (tracks, frames) = frames_of(path);
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(format!("{name}_decode_only"), |b| b.iter(|| decode_clip(&tracks, &frames, 0)));
        g.bench_function(format!("{name}_rgb_every_frame"), |b| b.iter(|| decode_clip(&tracks, &frames, 1)));
        g.bench_function(format!("{name}_rgb_5_of_30"), |b| b.iter(|| decode_clip(&tracks, &frames, 6)));
    }
    g.finish();
}

/// RGB conversion alone, on the clip's first decoded picture.
fn convert(c: &mut Criterion) {
    let mut g = c.benchmark_group("convert");
    for (name, path) in CLIPS {
        let (tracks, frames) = frames_of(path);
        let mut d = VideoDecoder::new(DecoderSettings::default());
        d.push_tracks(&tracks).expect("decodable");
        let mut picture = None;
        for f in &frames {
            d.push_frame(f).expect("decodes");
            if let Some(frame) = d.next_frame() {
                picture = Some(frame.picture);
                break;
            }
        }
        let picture = picture.expect("a picture");
        let mut rgb = RgbConverter::new();
        g.bench_function(format!("{name}_rgb"), |b| b.iter(|| rgb.convert(&picture).expect("rgb")));
    }
    g.finish();
}

criterion_group!(benches, demux, decode, convert);
criterion_main!(benches);
