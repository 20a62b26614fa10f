//! The fuzz targets' bodies (`fuzz/fuzz_targets/`), run for a bounded time on stable: every file
//! of each corpus (`fuzz/corpus/<target>/`: demux, decode, config, image), then seeded random mutations of them (byte flips,
//! inserted and deleted runs, truncations, splices). No input may panic; each must be answered.

use std::path::Path;
use std::time::{Duration, Instant};

use kvs_infer::config::{EnvOverrides, parse};
use kvs_infer::media::demux::{DemuxConfig, Demuxer};
use kvs_infer::media::image::RgbImage;

/// Time each target gets (the corpus always runs whole).
const BUDGET: Duration = Duration::from_secs(8);

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("corpus").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("read")).collect()
}

/// One random change to `seed`.
fn mutate(rng: &mut fastrand::Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    let at = |rng: &mut fastrand::Rng, len: usize| if len == 0 { 0 } else { rng.usize(..len) };
    match rng.u8(..5) {
        0 => {
            for _ in 0..rng.usize(1..8) {
                let i = at(rng, out.len());
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.u8(..8);
                }
            }
        }
        1 => {
            let i = at(rng, out.len());
            let run: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
            out.splice(i..i, run);
        }
        2 => {
            let i = at(rng, out.len());
            let end = (i + rng.usize(1..256)).min(out.len());
            out.drain(i..end);
        }
        3 => out.truncate(at(rng, out.len() + 1)),
        _ => {
            let (i, j) = (at(rng, out.len()), at(rng, other.len()));
            out.truncate(i);
            out.extend_from_slice(&other[j..]);
        }
    }
    out
}

/// Runs `body` on the corpus, then on mutations until the budget is spent; returns the count.
fn run(target: &str, seed: u64, extra: Vec<Vec<u8>>, body: impl Fn(&[u8])) -> usize {
    let mut inputs = corpus(target);
    inputs.extend(extra);
    for input in &inputs {
        body(input);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut runs = inputs.len();
    while started.elapsed() < BUDGET {
        let (a, b) = (&inputs[rng.usize(..inputs.len())], &inputs[rng.usize(..inputs.len())]);
        let mut input = mutate(&mut rng, a, b);
        for _ in 0..rng.usize(0..3) {
            input = mutate(&mut rng, &input, b);
        }
        body(&input);
        runs += 1;
    }
    runs
}

#[test]
fn config_loader_survives_mutated_configs() {
    let runs = run("config", 0xC0F1, vec![], |input| {
        if let Ok(text) = parse::check_text(input, "fuzz.yaml") {
            let _ = kvs_infer::config::load_str(text, "fuzz.yaml", &EnvOverrides::default());
        }
    });
    eprintln!("config: {runs} inputs");
}

#[test]
fn image_decoding_survives_mutated_images() {
    // A JPEG seed made here, beside the PNGs of the corpus.
    let png = corpus("image").into_iter().next().expect("a PNG in the corpus");
    let img = RgbImage::decode_within(&png, 1 << 20).expect("the corpus decodes");
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
        .encode(&img.data, img.width, img.height, image::ExtendedColorType::Rgb8)
        .expect("jpeg");
    let runs = run("image", 0x1A6E, vec![jpeg], |input| {
        if let Ok(img) = RgbImage::decode_within(input, 1024 * 1024) {
            assert!(u64::from(img.width) * u64::from(img.height) <= 1024 * 1024);
        }
    });
    eprintln!("image: {runs} inputs");
}

/// `fuzz/fuzz_targets/decode.rs`: the decoder's input path (access units, both codecs).
#[test]
fn decoder_survives_mutated_access_units_within_its_limits() {
    use kvs_infer::media::decode::{DecodeLimits, DecoderSettings, VideoDecoder};
    use kvs_infer::media::{Frame, Track, TrackKind};
    let limits = DecodeLimits { max_frame_pixels: 1920 * 1088, max_access_unit_bytes: 1 << 20, max_nal_units: 256 };
    let runs = run("decode", 0xDEC0DE, vec![[0u8, 0, 1, 6].repeat(1000)], |input| {
        for codec_id in [Track::H264, Track::H265] {
            let track = Track {
                number: 1,
                kind: TrackKind::Video,
                codec_id: codec_id.into(),
                codec_private: None,
                width: None,
                height: None,
            };
            let mut decoder = VideoDecoder::new(DecoderSettings::default()).with_limits(limits);
            decoder.push_tracks(&[track]).expect("a codec this build decodes");
            for keyframe in [true, false] {
                let frame =
                    Frame { track: 1, timestamp_ns: 0, keyframe, data: input.to_vec(), fragment_index: 0, offset: 0 };
                let _ = decoder.push_frame(&frame);
                while let Some(f) = decoder.next_frame() {
                    let pixels = u64::from(f.picture.width()) * u64::from(f.picture.height());
                    assert!(pixels <= limits.max_frame_pixels, "a {pixels}-pixel picture");
                }
            }
            let _ = decoder.finish();
        }
    });
    eprintln!("decode: {runs} inputs");
}

#[test]
fn demuxer_survives_mutated_streams_in_any_chunking() {
    let runs = run("demux", 0xDE3, vec![], |input| {
        let Some((&split, data)) = input.split_first() else { return };
        let mut d = Demuxer::new(DemuxConfig { max_element_size: 1 << 20, max_depth: 16, ..DemuxConfig::default() });
        for part in data.chunks(usize::from(split).max(1)) {
            d.push(part);
            while let Some(e) = d.next_event() {
                if let kvs_infer::media::Event::Error(err) = e {
                    assert!(err.offset().is_none_or(|o| o <= data.len() as u64), "{err}");
                }
            }
        }
        d.finish();
        while d.next_event().is_some() {}
    });
    eprintln!("demux: {runs} inputs");
}
