//! Any bytes as Annex-B access units, for both codecs: the decoder's input path (the limits'
//! NAL-unit and SPS reading, then libavcodec) must never panic, and never allocate a picture
//! over its pixel limit.
#![no_main]

use kvs_infer::media::decode::{DecodeLimits, DecoderSettings, VideoDecoder};
use kvs_infer::media::{Frame, Track, TrackKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| decode(input));

fn decode(input: &[u8]) {
    let limits = DecodeLimits { max_frame_pixels: 1920 * 1088, max_access_unit_bytes: 1 << 20, max_nal_units: 256 };
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
        if decoder.push_tracks(&[track]).is_err() {
            return;
        }
        for keyframe in [true, false] {
            let frame = Frame { track: 1, timestamp_ns: 0, keyframe, data: input.to_vec(), fragment_index: 0, offset: 0 };
            let _ = decoder.push_frame(&frame);
            while let Some(f) = decoder.next_frame() {
                assert!(u64::from(f.picture.width()) * u64::from(f.picture.height()) <= limits.max_frame_pixels);
            }
        }
        let _ = decoder.finish();
    }
}
