//! KVS-style GetMedia captures made from a plain MKV at test time: one fragment per key frame
//! (GOP), each a document with the service's tags before the Cluster (fragment number, server and
//! producer timestamps) and after it (`MILLIS_BEHIND_NOW`, continuation token), the Cluster's
//! timecode the producer time in ms, as GetMedia serves them. The producer clock and how far
//! behind live each fragment says it is are the test's choice.

use kvs_infer::media::demux::{DemuxConfig, demux_all};
use kvs_infer::media::{Event, Frame, Track};

use super::kvs_server::Fragment;
use super::mkv::{cat, ebml_header, el, open_unknown, simple_block, string, tags, uint};

/// How the fragments of a capture are stamped.
pub struct Stamps {
    /// Producer time of the first frame, Unix ms.
    pub producer_start_ms: i64,
    /// `MILLIS_BEHIND_NOW` of fragment `i`.
    pub behind_ms: fn(usize) -> u64,
}

/// The video track and its frames, by GOP.
fn gops(path: &str) -> (Track, Vec<Vec<Frame>>) {
    let data = std::fs::read(path).expect("video");
    let events = demux_all(&data, DemuxConfig::default());
    let track = events
        .iter()
        .find_map(|e| if let Event::Tracks(t) = e { t.first().cloned() } else { None })
        .expect("a video track");
    let mut gops: Vec<Vec<Frame>> = Vec::new();
    for e in events {
        if let Event::Frame(f) = e
            && f.track == track.number
        {
            match gops.last_mut() {
                Some(gop) if !f.keyframe => gop.push(f),
                _ => gops.push(vec![f]),
            }
        }
    }
    (track, gops)
}

fn tracks_element(track: &Track) -> Vec<u8> {
    let mut entry = vec![uint(0xD7, 1), uint(0x83, 1), string(0x86, &track.codec_id)];
    if let Some(p) = &track.codec_private {
        entry.push(el(0x63A2, p));
    }
    let (w, h) = (u64::from(track.width.unwrap_or(640)), u64::from(track.height.unwrap_or(360)));
    entry.push(el(0xE0, &cat(&[uint(0xB0, w), uint(0xBA, h)])));
    el(0x1654_AE6B, &el(0xAE, &entry.concat()))
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The fragments of `path` as GetMedia would serve them.
pub fn capture(path: &str, stamps: &Stamps) -> Vec<Fragment> {
    let (track, gops) = gops(path);
    let first_ns = gops.first().and_then(|g| g.first()).map_or(0, |f| f.timestamp_ns);
    gops.iter()
        .enumerate()
        .map(|(i, gop)| {
            let start_ms = stamps.producer_start_ms + (gop[0].timestamp_ns - first_ns) / 1_000_000;
            let number = format!("9134385233318143239{:028}", 1000 + i);
            let blocks: Vec<Vec<u8>> = gop
                .iter()
                .map(|f| {
                    let rel = stamps.producer_start_ms + (f.timestamp_ns - first_ns) / 1_000_000 - start_ms;
                    simple_block(1, i16::try_from(rel).expect("a GOP under 32 s"), f.keyframe, 0, &f.data)
                })
                .collect();
            let cluster = el(0x1F43_B675, &cat(&[uint(0xE7, start_ms as u64), blocks.concat()]));
            let behind = (stamps.behind_ms)(i).to_string();
            let bytes = cat(&[
                ebml_header(),
                open_unknown(0x1853_8067),
                el(0x1549_A966, &uint(0x2AD7B1, 1_000_000)),
                tracks_element(&track),
                tags(&[
                    ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", &number),
                    ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", &seconds(start_ms + 150)),
                    ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", &seconds(start_ms)),
                ]),
                cluster,
                tags(&[
                    ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", &behind),
                    ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", &number),
                ]),
            ]);
            Fragment { number, producer_ms: start_ms, bytes: bytes.into() }
        })
        .collect()
}
