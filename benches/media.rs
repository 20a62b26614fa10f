//! Media throughput: demuxing a real GetMedia capture held in memory, and H.264 decoding to RGB
//! at 640x360 (the KVS capture) and 1280x720 (a generated clip).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvs_infer::media::decode::{DecoderSettings, VideoDecoder};
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

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_to_rgb");
    g.sample_size(10);
    for (name, path) in
        [("640x360", "tests/fixtures/kvs/output_get_media.mkv"), ("1280x720", "tests/fixtures/media/testsrc_720p.mkv")]
    {
        let (tracks, frames) = frames_of(path);
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = VideoDecoder::new(DecoderSettings::default());
                d.push_tracks(&tracks).expect("h264");
                let mut n = 0;
                for f in &frames {
                    d.push_frame(f).expect("decodes");
                    while d.next_frame().is_some() {
                        n += 1;
                    }
                }
                d.finish().expect("flush");
                n + std::iter::from_fn(|| d.next_frame()).count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, demux, decode);
criterion_main!(benches);
