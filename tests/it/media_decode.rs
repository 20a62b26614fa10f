//! H.264 decoding against ffmpeg's own decode of the same files (references made by
//! `tests/reference/make_media_refs.sh`): same frame count as `ffprobe -count_frames`, every
//! frame's YUV planes compared by MD5, selected frames by PSNR (>= 40 dB required).

use crate::common::mkv;
use kvs_infer::media::decode::convert::{RgbConverter, Yuv420};
use kvs_infer::media::decode::{DecodedFrame, DecoderSettings, VideoDecoder};
use kvs_infer::media::demux::{DemuxConfig, demux_all};
use kvs_infer::media::{Event, MediaError};
use md5::{Digest, Md5};

const REFS: &str = "tests/fixtures/media";
const MIN_PSNR_DB: f64 = 40.0;

/// Demuxes and decodes a whole file, keeping YUV planes.
fn decode_file(path: &str) -> (Vec<DecodedFrame>, Vec<MediaError>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut decoder = VideoDecoder::new(DecoderSettings::default());
    let (mut frames, mut errors) = (Vec::new(), Vec::new());
    for event in demux_all(&data, DemuxConfig::default()) {
        let result = match event {
            Event::Tracks(t) => decoder.push_tracks(&t),
            Event::Frame(f) => decoder.push_frame(&f),
            Event::FragmentEnd(_) => decoder.finish(),
            Event::Error(e) => {
                decoder.gap();
                errors.push(e);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            errors.push(e);
        }
        frames.extend(std::iter::from_fn(|| decoder.next_frame()));
    }
    (frames, errors)
}

fn yuv(frame: &DecodedFrame) -> Yuv420 {
    frame.picture.yuv420().expect("a 4:2:0 picture")
}

fn yuv_md5(frame: &DecodedFrame) -> String {
    let yuv = yuv(frame);
    let mut h = Md5::new();
    h.update(&yuv.y);
    h.update(&yuv.u);
    h.update(&yuv.v);
    format!("{:x}", h.finalize())
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "plane sizes differ");
    let mse = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

fn png_plane(path: &str) -> Vec<u8> {
    image::open(path).unwrap_or_else(|e| panic!("{path}: {e}")).into_luma8().into_raw()
}

fn check(name: &str, source: &str) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{REFS}/{name}.json")).expect("ref json")).expect("json");
    let (frames, _errors) = decode_file(source);
    assert_eq!(frames.len() as u64, meta["frames"].as_u64().expect("frames"), "{name}: frame count vs ffprobe");

    let md5s: Vec<String> = std::fs::read_to_string(format!("{REFS}/{name}.framemd5"))
        .expect("framemd5")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .collect();
    assert_eq!(md5s.len(), frames.len(), "{name}: framemd5 lines");
    let exact = frames.iter().zip(&md5s).filter(|(f, want)| yuv_md5(f) == **want).count();
    assert_eq!(exact, frames.len(), "{name}: {exact}/{} frames bit-exact with ffmpeg", frames.len());

    for n in meta["selected"].as_array().expect("selected").iter().filter_map(serde_json::Value::as_u64) {
        let frame = &frames[n as usize];
        let yuv = yuv(frame);
        for (plane, ours) in [("y", &yuv.y), ("u", &yuv.u), ("v", &yuv.v)] {
            let theirs = png_plane(&format!("{REFS}/{name}.f{n}.{plane}.png"));
            let db = psnr(ours, &theirs);
            assert!(db >= MIN_PSNR_DB, "{name} frame {n} plane {plane}: PSNR {db:.1} dB");
        }
        // RGB is the planes converted; it must be the full picture.
        let rgb = RgbConverter::new().convert(&frame.picture).expect("rgb");
        assert_eq!((rgb.width, rgb.height), (frame.picture.width(), frame.picture.height()));
        assert_eq!(rgb.data.len(), (rgb.width * rgb.height * 3) as usize);
    }
}

#[test]
fn kvs_main_profile_capture_matches_ffmpeg() {
    check("output_get_media", "tests/fixtures/kvs/output_get_media.mkv");
}

#[test]
fn producer_baseline_file_with_audio_matches_ffmpeg() {
    check("vogels_480", "tests/fixtures/kvs/vogels_480.mkv");
}

#[test]
fn capture_cut_mid_frame_matches_ffmpeg() {
    check("output-get-media-equal-timecode", "tests/fixtures/kvs/output-get-media-equal-timecode.mkv");
}

#[test]
fn generated_720p_clip_matches_ffmpeg() {
    check("testsrc_720p", "tests/fixtures/media/testsrc_720p.mkv");
}

#[test]
fn h264_high_cabac_with_nal_ref_idc_1_and_poc_type_2_matches_ffmpeg() {
    // The stream hardware encoders and GStreamer pipelines send (OpenH264 decoded none of it).
    check("cabac_high_poc2", "tests/fixtures/media/cabac_high_poc2.mkv");
}

#[test]
fn h265_main_in_fragments_matches_ffmpeg() {
    check("hevc_main", "tests/fixtures/media/hevc_main.mkv");
}

#[test]
fn a_resolution_change_mid_stream_goes_on_at_the_new_size() {
    check("resolution_change", "tests/fixtures/media/resolution_change.mkv");
    let (frames, errors) = decode_file("tests/fixtures/media/resolution_change.mkv");
    assert!(errors.is_empty(), "{errors:?}");
    let sizes: Vec<(u32, u32)> = frames.iter().map(|f| (f.picture.width(), f.picture.height())).collect();
    assert_eq!(sizes.first(), Some(&(640, 360)));
    assert_eq!(sizes.last(), Some(&(1280, 720)));
    assert_eq!(sizes.iter().filter(|s| **s == (1280, 720)).count(), 50);
}

#[test]
fn an_unsupported_codec_is_reported_once_while_it_lasts() {
    // Three fragments of MJPG video: one error for the stream, not one per fragment.
    let data =
        [mkv::fragment("1", 0, 3, &[]), mkv::fragment("2", 120, 3, &[]), mkv::fragment("3", 240, 3, &[])].concat();
    let mut decoder = VideoDecoder::new(DecoderSettings::default());
    let mut errors = Vec::new();
    for event in demux_all(&data, DemuxConfig::default()) {
        if let Event::Tracks(t) = event
            && let Err(e) = decoder.push_tracks(&t)
        {
            errors.push(e.to_string());
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("V_MS/VFW/FOURCC"), "{errors:?}");
}

#[test]
fn frames_keep_their_timestamps_in_order() {
    let (frames, errors) = decode_file("tests/fixtures/kvs/output_get_media.mkv");
    assert!(errors.is_empty(), "{errors:?}");
    assert!(frames.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns));
    assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 5);
    assert_eq!(frames[60].fragment_index, 1);
    assert_eq!((frames[0].picture.width(), frames[0].picture.height()), (640, 360));
}

#[test]
fn corrupt_frames_are_counted_and_decoding_resumes_at_the_next_key_frame() {
    let data = std::fs::read("tests/fixtures/kvs/output_get_media.mkv").expect("capture");
    let mut decoder = VideoDecoder::new(DecoderSettings::default());
    let mut decoded_per_fragment = [0u32; 5];
    let mut seen = 0;
    for event in demux_all(&data, DemuxConfig::default()) {
        let _ = match event {
            Event::Tracks(t) => decoder.push_tracks(&t),
            Event::Frame(mut f) => {
                seen += 1;
                // Scramble the slice data of frames 10..20 (fragment 0), keep the NAL framing.
                if (10..20).contains(&seen) {
                    for b in f.data.iter_mut().skip(40).step_by(3) {
                        *b ^= 0x5A;
                    }
                }
                decoder.push_frame(&f)
            }
            Event::FragmentEnd(_) => decoder.finish(),
            _ => Ok(()),
        };
        while let Some(frame) = decoder.next_frame() {
            decoded_per_fragment[frame.fragment_index as usize] += 1;
        }
    }
    let stats = decoder.stats();
    assert!(stats.failed + stats.skipped > 0, "damage was noticed: {stats:?}");
    assert_eq!(decoded_per_fragment[1..], [60, 60, 60, 60], "later fragments decode in full: {stats:?}");
}

#[test]
fn a_non_h264_video_track_is_a_clear_error_and_nothing_else() {
    let data = mkv::fragment("1", 0, 3, &[]);
    let mut decoder = VideoDecoder::new(DecoderSettings::default());
    for event in demux_all(&data, DemuxConfig::default()) {
        match event {
            Event::Tracks(t) => {
                let err = decoder.push_tracks(&t).expect_err("MJPG is not decoded");
                assert!(err.to_string().contains("V_MS/VFW/FOURCC"), "{err}");
            }
            Event::Frame(f) => decoder.push_frame(&f).expect("ignored, not an error"),
            _ => {}
        }
    }
    assert!(decoder.next_frame().is_none());
}
