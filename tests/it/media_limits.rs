//! Issue 29: every input that reaches memory has a limit checked before the allocation. A
//! NAL-unit bomb, an oversized access unit and an oversized picture are refused before
//! libavcodec sees them, each as a media error naming the limit and the value, and the stream
//! goes on at the next good key frame; tags beyond their limits are dropped while the video
//! plays on; the SPS reader agrees with the fixtures' own sizes.

use kvs_infer::config::MediaConfig;
use kvs_infer::media::avc::AvcConfig;
use kvs_infer::media::decode::{DecodeLimits, DecoderSettings, VideoCodec, VideoDecoder};
use kvs_infer::media::demux::{DemuxConfig, demux_all};
use kvs_infer::media::hevc::HevcConfig;
use kvs_infer::media::{Event, Frame, MediaError, Track, sps};

use crate::common::kvs_capture::{Stamps, capture};
use crate::common::mkv::tags;

fn tracks_and_frames(path: &str) -> (Vec<Track>, Vec<Frame>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let events = demux_all(&data, DemuxConfig::default());
    let tracks = events.iter().find_map(|e| if let Event::Tracks(t) = e { Some(t.clone()) } else { None });
    let frames = events.into_iter().filter_map(|e| if let Event::Frame(f) = e { Some(f) } else { None }).collect();
    (tracks.expect("tracks"), frames)
}

/// Decodes `frames`; returns the pictures decoded and the errors, in order.
fn decode(decoder: &mut VideoDecoder, tracks: &[Track], frames: &[Frame]) -> (usize, Vec<MediaError>) {
    decoder.push_tracks(tracks).expect("tracks");
    let (mut pictures, mut errors) = (0, Vec::new());
    for f in frames {
        if let Err(e) = decoder.push_frame(f) {
            errors.push(e);
        }
        pictures += std::iter::from_fn(|| decoder.next_frame()).count();
    }
    if let Err(e) = decoder.finish() {
        errors.push(e);
    }
    pictures += std::iter::from_fn(|| decoder.next_frame()).count();
    (pictures, errors)
}

#[test]
fn the_sps_reader_gives_each_fixtures_coded_size() {
    for (path, align) in [
        ("tests/fixtures/sample/plates.mkv", 16),
        ("tests/fixtures/media/cabac_high_poc2.mkv", 16),
        ("tests/fixtures/kvs/vogels_480.mkv", 16),
        ("tests/fixtures/media/hevc_main.mkv", 8),
        ("tests/fixtures/media/huge_5120_h264.mkv", 16),
        ("tests/fixtures/media/huge_5120_h265.mkv", 8),
    ] {
        let (tracks, _) = tracks_and_frames(path);
        let video = tracks.iter().find(|t| t.width.is_some()).expect("a video track");
        let private = video.codec_private.as_deref().expect("codec private");
        let (codec, sets) = if video.codec_id == Track::H264 {
            (VideoCodec::H264, AvcConfig::parse(private).expect("avcC").parameter_sets_annex_b())
        } else {
            (VideoCodec::H265, HevcConfig::parse(private).expect("hvcC").parameter_sets_annex_b())
        };
        let size = sps::nal_units(&sets).find_map(|nal| sps::coded_size(codec, nal));
        let round = |v: Option<u32>| u64::from(v.expect("size")).div_ceil(align) * align;
        assert_eq!(size, Some((round(video.width), round(video.height))), "{path}");
    }
}

#[test]
fn pictures_over_max_frame_pixels_are_refused_before_decoding_and_allowed_when_configured() {
    for path in ["tests/fixtures/media/huge_5120_h264.mkv", "tests/fixtures/media/huge_5120_h265.mkv"] {
        let (tracks, frames) = tracks_and_frames(path);
        let (pictures, errors) = decode(&mut VideoDecoder::new(DecoderSettings::default()), &tracks, &frames);
        assert_eq!(pictures, 0, "{path}");
        assert_eq!(errors.len(), frames.len(), "each frame (all key frames) is one error: {errors:?}");
        let message = errors[0].to_string();
        assert!(
            message.contains("5120x5120 picture (26214400 pixels) is over media.max_frame_pixels (8912896)"),
            "{path}: {message}"
        );
        let roomy = DecodeLimits { max_frame_pixels: 5120 * 5120, ..DecodeLimits::default() };
        let mut decoder = VideoDecoder::new(DecoderSettings::default()).with_limits(roomy);
        let (pictures, errors) = decode(&mut decoder, &tracks, &frames);
        assert_eq!((pictures, errors.len()), (frames.len(), 0), "{path}: with room, it decodes: {errors:?}");
    }
}

#[test]
fn a_nal_unit_bomb_and_an_oversized_access_unit_are_refused_and_decoding_goes_on() {
    let (tracks, frames) = tracks_and_frames("tests/fixtures/sample/plates.mkv");
    let (clean, errors) = decode(&mut VideoDecoder::new(DecoderSettings::default()), &tracks, &frames);
    assert!(errors.is_empty(), "{errors:?}");
    let second_key = frames.iter().skip(1).position(|f| f.keyframe).expect("a second key frame") + 1;
    // 1 MB of empty SEI NAL units (length-prefixed, as the track's avcC frames them), in
    // place of the frame before the second key frame.
    let mut bombed = frames.clone();
    bombed[second_key - 1].data = [0u8, 0, 0, 1, 6].repeat(200_000);
    let (pictures, errors) = decode(&mut VideoDecoder::new(DecoderSettings::default()), &tracks, &bombed);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let message = errors[0].to_string();
    assert!(message.contains("200000 NAL units is over media.max_nal_units (600)"), "{message}");
    assert_eq!(pictures, clean - 1, "only the bomb is lost: the next key frame decodes");

    let small = DecodeLimits { max_access_unit_bytes: 64 * 1024, ..DecodeLimits::default() };
    let mut big = frames.clone();
    big[second_key - 1].data = vec![0u8; 100_000];
    let (_, errors) = decode(&mut VideoDecoder::new(DecoderSettings::default()).with_limits(small), &tracks, &big);
    assert!(
        errors[0].to_string().contains("a frame of 100000 bytes is over media.max_access_unit_bytes (65536)"),
        "{errors:?}"
    );
}

/// A KVS fragment of the sample with `extra` tags (a Tags element) before its own.
fn fragment_with_tags(extra: &[u8]) -> (Vec<u8>, usize) {
    let fragments =
        capture("tests/fixtures/sample/plates.mkv", &Stamps { producer_start_ms: 1_700_000_000_000, behind_ms: |_| 0 });
    let bytes = fragments[0].bytes.to_vec();
    let frames = demux_all(&bytes, DemuxConfig::default()).iter().filter(|e| matches!(e, Event::Frame(_))).count();
    // The first Tags element (ID 0x1254C367) holds the fragment number: insert before it.
    let at = bytes.windows(4).position(|w| w == [0x12, 0x54, 0xC3, 0x67]).expect("Tags");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(extra);
    out.extend_from_slice(&bytes[at..]);
    (out, frames)
}

#[test]
fn tags_over_their_limits_are_dropped_and_the_video_and_service_tags_go_on() {
    let names: Vec<String> = (0..5_000).map(|i| format!("PRODUCER_TAG_{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    let big = "v".repeat(100_000);
    let flood = ["AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"; 3_000].map(|n| (n, "5"));
    let extra = [tags(&many), tags(&[("BIG", big.as_str())]), tags(&flood)].concat();
    let (bytes, frames) = fragment_with_tags(&extra);
    let events = demux_all(&bytes, DemuxConfig::default());
    let errors: Vec<String> =
        events.iter().filter_map(|e| if let Event::Error(e) = e { Some(e.to_string()) } else { None }).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("tag 65 of a fragment is over media.max_tags_per_fragment (64)"), "{errors:?}");
    assert!(errors[1].contains("a tag of 100000 bytes is over media.max_tag_bytes (4096)"), "{errors:?}");
    let meta = events
        .iter()
        .find_map(|e| if let Event::FragmentStart { meta, .. } = e { Some(meta.clone()) } else { None })
        .expect("the fragment starts");
    assert_eq!(meta.other_tags.len(), 64);
    assert!(meta.fragment_number.is_some(), "KVS's own tags are kept whatever came before");
    let decoded = events.iter().filter(|e| matches!(e, Event::Frame(_))).count();
    assert_eq!(decoded, frames, "every frame of the fragment");
    let summary = events.iter().find_map(|e| if let Event::FragmentEnd(s) = e { Some(s.clone()) } else { None });
    assert!(summary.is_some_and(|s| !s.damaged), "dropped tags are not damage: the fragment can be checkpointed");
    // The limits come from the configuration.
    let wide = DemuxConfig { max_tags: 10_000, max_tag_bytes: 200_000, ..DemuxConfig::from(&MediaConfig::default()) };
    let errors = demux_all(&bytes, wide).iter().filter(|e| matches!(e, Event::Error(_))).count();
    assert_eq!(errors, 0);
}
