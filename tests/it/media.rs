//! Demuxer: real KVS captures against their expectations, chunking independence, damage.

use std::collections::BTreeMap;

use crate::common::mkv;
use kvs_infer::media::demux::{DemuxConfig, Demuxer, demux_all};
use kvs_infer::media::{Event, FragmentSummary, MediaError, Tag};
use proptest::prelude::*;
use serde_json::Value;

const FIXTURES: &str = "tests/fixtures/kvs";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/expected-fragments.json")).expect("expectations");
    serde_json::from_str(&text).expect("json")
}

/// What the demuxer said about one document, gathered from its events.
#[derive(Default, Debug)]
struct Doc {
    offset: u64,
    pre: Vec<Tag>,
    post: Vec<Tag>,
    clusters: Vec<kvs_infer::media::ClusterSummary>,
    codecs: Vec<String>,
    end: Option<FragmentSummary>,
}

fn documents(events: &[Event]) -> Vec<Doc> {
    let mut docs: Vec<Doc> = Vec::new();
    for e in events {
        match e {
            Event::DocumentStart { offset, .. } => docs.push(Doc { offset: *offset, ..Doc::default() }),
            Event::Tag(t) if t.after_cluster => docs.last_mut().expect("doc").post.push(t.clone()),
            Event::Tag(t) => docs.last_mut().expect("doc").pre.push(t.clone()),
            Event::ClusterEnd(c) => docs.last_mut().expect("doc").clusters.push(c.clone()),
            Event::Tracks(t) => docs.last_mut().expect("doc").codecs = t.iter().map(|t| t.codec_id.clone()).collect(),
            Event::FragmentEnd(f) => docs.last_mut().expect("doc").end = Some(f.clone()),
            _ => {}
        }
    }
    docs
}

fn tags_as_json(tags: &[Tag]) -> Vec<(String, String, u64)> {
    tags.iter().map(|t| (t.name.clone(), t.value.clone(), t.trailing_nuls as u64)).collect()
}

fn expected_tags(v: &Value) -> Vec<(String, String, u64)> {
    v.as_array()
        .expect("tags")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                t["value"].as_str().expect("value").to_owned(),
                t["trailing_nuls"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn every_fixture_matches_its_expectations() {
    for (file, exp) in expected() {
        let events = demux_all(&read(&file), DemuxConfig::default());
        let docs = documents(&events);
        let fragments = exp["fragments"].as_array().expect("fragments");
        assert_eq!(docs.len() as u64, exp["documents"].as_u64().expect("documents"), "{file}: documents");
        assert_eq!(docs.len(), fragments.len(), "{file}");
        for (i, (doc, want)) in docs.iter().zip(fragments).enumerate() {
            let at = format!("{file} fragment {i}");
            assert_eq!(doc.offset, want["ebml_offset"].as_u64().expect("offset"), "{at}: offset");
            assert_eq!(
                tags_as_json(&doc.pre),
                expected_tags(&want["tags_pre_cluster"]),
                "{at}: tags before the cluster"
            );
            assert_eq!(tags_as_json(&doc.post), expected_tags(&want["tags_post_cluster"]), "{at}: tags after");
            let codecs: Vec<&str> =
                want["codec_ids"].as_array().expect("codecs").iter().filter_map(Value::as_str).collect();
            assert_eq!(doc.codecs, codecs, "{at}: codecs");
            let clusters = want["clusters"].as_array().expect("clusters");
            assert_eq!(doc.clusters.len(), clusters.len(), "{at}: clusters");
            for (c, w) in doc.clusters.iter().zip(clusters) {
                assert_eq!(c.offset, w["offset"].as_u64().expect("offset"), "{at}: cluster offset");
                assert_eq!(c.size, w["size"].as_u64(), "{at}: cluster size (None = unknown)");
                assert_eq!(c.timecode, w["timecode"].as_i64().expect("timecode"), "{at}: cluster timecode");
                assert_eq!(c.blocks, w["blocks"].as_u64().expect("blocks"), "{at}: blocks");
                assert_eq!(c.keyframes, w["keyframes"].as_u64().expect("keyframes"), "{at}: key frames");
                assert_eq!(c.first_block_timecode.map(i64::from), w["first_block_tc"].as_i64(), "{at}: first block");
                assert_eq!(c.last_block_timecode.map(i64::from), w["last_block_tc"].as_i64(), "{at}: last block");
                let tracks: BTreeMap<u64, u64> = w["tracks"]
                    .as_object()
                    .expect("tracks")
                    .iter()
                    .map(|(k, v)| (k.parse().expect("track"), v.as_u64().expect("count")))
                    .collect();
                assert_eq!(c.blocks_per_track, tracks, "{at}: blocks per track");
            }
            assert!(doc.end.is_some(), "{at}: no FragmentEnd");
        }
    }
}

#[test]
fn kvs_metadata_is_typed() {
    let events = demux_all(&read("output_get_media.mkv"), DemuxConfig::default());
    let ends: Vec<&FragmentSummary> = events
        .iter()
        .filter_map(|e| match e {
            Event::FragmentEnd(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 5);
    let first = &ends[0].meta;
    assert_eq!(first.server_timestamp.expect("server ts").millis, 1_511_852_109_126);
    assert_eq!(first.producer_timestamp.expect("producer ts").to_string(), "1511852108.513");
    assert_eq!(first.millis_behind_now, Some(15858));
    assert_eq!(first.continuation_token.as_deref(), Some("91343852333181432392682062607743920146159169392"));
    let numbers: Vec<_> = ends.iter().map(|f| f.meta.fragment_number.clone().expect("number")).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "fragment numbers increase numerically");
    assert!(ends.iter().all(|f| !f.damaged && f.video_frames == 60 && f.width == Some(640) && f.height == Some(360)));
    // The DURATION tag keeps its value without the two trailing NULs, and is passed through.
    let duration = first.other_tags.iter().find(|t| t.name == "DURATION").expect("DURATION");
    assert_eq!((duration.value.as_str(), duration.trailing_nuls), ("00:00:10.000000000", 2));
    // Frames carry absolute timestamps: cluster timecode 2000 ms + block timecode.
    let second_fragment_first_frame = events.iter().find_map(|e| match e {
        Event::Frame(f) if f.fragment_index == 1 => Some(f),
        _ => None,
    });
    assert_eq!(second_fragment_first_frame.expect("frame").timestamp_ns, 2_000_000_000);
}

#[test]
fn a_capture_cut_mid_frame_reports_one_error_with_its_offset() {
    let data = read("output-get-media-equal-timecode.mkv");
    let events = demux_all(&data, DemuxConfig::default());
    let errors: Vec<&MediaError> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(errors[0], MediaError::Truncated { name: "SimpleBlock", .. }), "{errors:?}");
    assert_eq!(errors[0].offset(), Some(data.len() as u64));
    let docs = documents(&events);
    assert!(!docs[0].end.as_ref().expect("end").damaged);
    assert!(docs[1].end.as_ref().expect("end").damaged);
    assert_eq!(docs[1].end.as_ref().expect("end").video_frames, 119, "the cut frame is not delivered");
}

#[test]
fn an_error_fragment_becomes_a_typed_error() {
    let error_doc = mkv::cat(&[
        mkv::ebml_header(),
        mkv::open_unknown(0x1853_8067),
        mkv::tags(&[("AWS_KINESISVIDEO_ERROR_CODE", "4000"), ("AWS_KINESISVIDEO_ERROR_ID", "GetMediaThrottled")]),
    ]);
    let stream = mkv::cat(&[mkv::fragment("1001", 0, 3, &[]), error_doc, mkv::fragment("1002", 200, 3, &[])]);
    let events = demux_all(&stream, DemuxConfig::default());
    let kvs_errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(MediaError::KvsError { code, id, .. }) => Some((code.clone(), id.clone())),
            Event::Error(other) => panic!("unexpected error {other}"),
            _ => None,
        })
        .collect();
    assert_eq!(kvs_errors, [("4000".to_owned(), Some("GetMediaThrottled".to_owned()))]);
    let docs = documents(&events);
    assert_eq!(docs.len(), 3);
    let meta = &docs[1].end.as_ref().expect("end").meta;
    assert_eq!(meta.error.as_ref().map(|e| e.code.as_str()), Some("4000"));
    assert_eq!(docs[2].end.as_ref().expect("end").meta.fragment_number.as_ref().map(|n| n.as_str()), Some("1002"));
}

#[test]
fn a_fragment_cut_short_by_a_new_one_loses_only_itself() {
    let a = mkv::fragment("2001", 0, 5, &[]);
    let b = mkv::fragment("2002", 200, 5, &[]);
    // Cut A inside its last block, as a dropped connection would, then B in full.
    let cut = a.len() - 60;
    let stream = mkv::cat(&[a[..cut].to_vec(), b.clone()]);
    let events = demux_all(&stream, DemuxConfig::default());
    let errors: Vec<_> = events.iter().filter(|e| matches!(e, Event::Error(_))).collect();
    assert_eq!(errors.len(), 1, "one error for the cut: {errors:?}");
    match errors[0] {
        Event::Error(MediaError::CutByNewDocument { offset, .. }) => assert_eq!(*offset, cut as u64),
        other => panic!("{other:?}"),
    }
    let docs = documents(&events);
    assert_eq!(docs.len(), 2);
    let b_end = docs[1].end.as_ref().expect("B ends");
    assert_eq!(b_end.meta.fragment_number.as_ref().map(|n| n.as_str()), Some("2002"));
    assert_eq!(b_end.video_frames, 5);
    assert!(!b_end.damaged);
}

#[test]
fn garbage_between_fragments_is_one_error_then_resync() {
    let a = mkv::fragment("3001", 0, 4, &[]);
    let b = mkv::fragment("3002", 200, 4, &[]);
    let garbage: Vec<u8> = (0..500u32).map(|i| (i * 37 % 251) as u8 | 0x01).collect();
    let stream = mkv::cat(&[a.clone(), garbage, b]);
    let events = demux_all(&stream, DemuxConfig::default());
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].offset(), Some(a.len() as u64), "the error names where the garbage starts");
    let numbers: Vec<_> = documents(&events)
        .iter()
        .filter_map(|d| d.end.as_ref()?.meta.fragment_number.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(numbers, ["3001", "3002"]);
}

#[test]
fn oversized_elements_are_errors_not_allocations() {
    let big = vec![7u8; 4096];
    let stream = mkv::cat(&[
        mkv::ebml_header(),
        mkv::open_unknown(0x1853_8067),
        mkv::tracks("V_MS/VFW/FOURCC", None),
        mkv::el(
            0x1F43_B675,
            &mkv::cat(&[
                mkv::uint(0xE7, 0),
                mkv::simple_block(1, 0, true, 0, &big),
                mkv::simple_block(1, 40, false, 0, &[1, 2, 3]),
            ]),
        ),
    ]);
    let events = demux_all(&stream, DemuxConfig { max_element_size: 1024, ..DemuxConfig::default() });
    assert!(
        events.iter().any(|e| matches!(e, Event::Error(MediaError::ElementTooLarge { size: 4100, cap: 1024, .. })))
    );
    let frames: Vec<_> = events.iter().filter(|e| matches!(e, Event::Frame(_))).collect();
    assert_eq!(frames.len(), 1, "the small frame after the big one is still read");

    // An absurd declared size: never allocated, reported, and the stream ends cleanly.
    let absurd = mkv::cat(&[
        mkv::ebml_header(),
        mkv::open_unknown(0x1853_8067),
        vec![0xEC, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE],
        vec![0; 100],
    ]);
    let events = demux_all(&absurd, DemuxConfig::default());
    assert!(events.iter().any(|e| matches!(e, Event::Error(MediaError::Truncated { name: "Void", .. }))), "{events:?}");
    assert!(demux_all(&[], DemuxConfig::default()).is_empty(), "empty input: nothing, and no panic");
}

#[test]
fn laced_audio_blocks_are_split_without_disturbing_video() {
    let audio_track = mkv::el(
        0xAE,
        &mkv::cat(&[
            mkv::uint(0xD7, 2),
            mkv::uint(0x83, 2),
            mkv::string(0x86, "A_AAC"),
            mkv::el(0xE1, &mkv::uint(0x9F, 2)),
        ]),
    );
    let video_track =
        mkv::el(0xAE, &mkv::cat(&[mkv::uint(0xD7, 1), mkv::uint(0x83, 1), mkv::string(0x86, "V_MS/VFW/FOURCC")]));
    // Xiph lacing: 3 laces of 3, 2 and 4 bytes.
    let xiph = mkv::cat(&[vec![2, 3, 2], vec![9; 9]]);
    // EBML lacing: 3 laces of 5, 3 (difference -2) and 1 byte.
    let ebml_laced = mkv::cat(&[vec![2, 0x85, 0xBD], vec![8; 9]]);
    let cluster = mkv::el(
        0x1F43_B675,
        &mkv::cat(&[
            mkv::uint(0xE7, 0),
            mkv::simple_block(2, 0, true, 1, &xiph),
            mkv::simple_block(1, 0, true, 0, &[1; 10]),
            mkv::simple_block(2, 20, true, 3, &ebml_laced),
            mkv::simple_block(2, 40, true, 2, &mkv::cat(&[vec![1], vec![5; 8]])),
        ]),
    );
    let stream = mkv::cat(&[
        mkv::ebml_header(),
        mkv::open_unknown(0x1853_8067),
        mkv::el(0x1654_AE6B, &mkv::cat(&[video_track, audio_track])),
        cluster,
    ]);
    let events = demux_all(&stream, DemuxConfig::default());
    let sizes = |track: u64| -> Vec<usize> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(f) if f.track == track => Some(f.data.len()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(sizes(2), [3, 2, 4, 5, 3, 1, 4, 4], "Xiph, EBML and fixed lacing");
    assert_eq!(sizes(1), [10]);
    let end = documents(&events).pop().and_then(|d| d.end).expect("end");
    assert_eq!((end.video_frames, end.blocks), (1, 4));
}

/// Feeds `data` in the given chunk sizes (cycled) and collects every event.
fn chunked(data: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut d = Demuxer::default();
    let mut events = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + n.max(1)).min(data.len());
        d.push(&data[at..end]);
        at = end;
        events.extend(std::iter::from_fn(|| d.next_event()));
    }
    d.finish();
    events.extend(std::iter::from_fn(|| d.next_event()));
    events
}

#[test]
fn one_byte_chunks_give_the_same_events_for_every_fixture() {
    for file in expected().keys() {
        let data = read(file);
        let whole = demux_all(&data, DemuxConfig::default());
        assert_eq!(chunked(&data, &[1]), whole, "{file}: 1-byte chunks differ from whole");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_chunks_give_the_same_events(sizes in prop::collection::vec(1usize..70_000, 1..40), pick in 0usize..6) {
        let files = ["output_get_media.mkv", "test_mixed_tags.mkv", "output-get-media-equal-timecode.mkv",
                     "vogels_480.mkv", "empty-mkv-with-tags.mkv", "test_tags_empty_cluster.mkv"];
        let data = read(files[pick]);
        prop_assert_eq!(chunked(&data, &sizes), demux_all(&data, DemuxConfig::default()));
    }

    #[test]
    fn truncation_never_panics_and_keeps_complete_fragments(cut in 0usize..2_503_485) {
        let data = read("output_get_media.mkv");
        let cut = cut.min(data.len());
        let events = demux_all(&data[..cut], DemuxConfig::default());
        let full = documents(&demux_all(&data, DemuxConfig::default()));
        let got = documents(&events);
        // Every fragment that lies wholly before the cut (next EBML header at or before it) is intact.
        for (i, want) in full.iter().enumerate() {
            let next_start = full.get(i + 1).map_or(data.len() as u64, |d| d.offset);
            if next_start <= cut as u64 {
                let end = got[i].end.as_ref().expect("fragment read");
                prop_assert!(!end.damaged);
                prop_assert_eq!(end.video_frames, want.end.as_ref().expect("end").video_frames);
            }
        }
        // A cut inside a fragment is reported with an offset.
        if got.last().and_then(|d| d.end.as_ref()).is_some_and(|e| e.damaged) {
            prop_assert!(events.iter().any(|e| matches!(e, Event::Error(err) if err.offset().is_some())));
        }
    }

    #[test]
    fn byte_flips_never_lose_intact_fragments(flips in prop::collection::vec((0usize..2_503_485, any::<u8>()), 1..6)) {
        let data = read("output_get_media.mkv");
        let full = documents(&demux_all(&data, DemuxConfig::default()));
        let mut damaged = data.clone();
        for &(at, x) in &flips {
            damaged[at] ^= x | 1;
        }
        let events = demux_all(&damaged, DemuxConfig::default());
        let got = documents(&events);
        let first_flip = flips.iter().map(|f| f.0).min().unwrap_or(0) as u64;
        for (i, want) in full.iter().enumerate() {
            let (start, end) = (want.offset, full.get(i + 1).map_or(data.len() as u64, |d| d.offset));
            let untouched = flips.iter().all(|&(at, _)| (at as u64) < start || (at as u64) >= end);
            if untouched && start > first_flip {
                let number = want.end.as_ref().and_then(|e| e.meta.fragment_number.clone());
                let found = got.iter().find(|d| d.offset == start).and_then(|d| d.end.as_ref());
                prop_assert!(found.is_some(), "fragment {} at {} lost", i, start);
                let found = found.expect("checked");
                prop_assert_eq!(&found.meta.fragment_number, &number);
                prop_assert_eq!(found.video_frames, want.end.as_ref().expect("end").video_frames);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let events = demux_all(&bytes, DemuxConfig { max_element_size: 1 << 16, ..DemuxConfig::default() });
        for e in &events {
            if let Event::Error(err) = e {
                prop_assert!(err.offset().is_some_and(|o| o <= bytes.len() as u64), "{err}");
            }
        }
    }
}

#[test]
fn skipped_payloads_longer_than_the_compaction_window_are_chunking_independent() {
    // A 600 KB element the demuxer steps over (Void) forces buffer compaction in the middle of a
    // skipped payload; a second Void is cut short by a new document whose magic straddles pushes.
    let void = |n: usize| mkv::el(0xEC, &vec![0x55; n]);
    let mut cut_void = mkv::el(0xEC, &vec![0x55; 700_000]);
    cut_void.truncate(400_000);
    let stream = mkv::cat(&[
        mkv::fragment("91343852333181432392682062600000000000001", 0, 3, &[]),
        void(600_000),
        mkv::fragment("91343852333181432392682062600000000000002", 1000, 3, &[]),
        cut_void,
        mkv::fragment("91343852333181432392682062600000000000003", 2000, 3, &[]),
    ]);
    let whole = demux_all(&stream, DemuxConfig::default());
    assert_eq!(whole.iter().filter(|e| matches!(e, Event::Frame(_))).count(), 9, "{whole:?}");
    for sizes in [&[100_000][..], &[65_536, 3], &[262_147, 1, 2], &[4096], &[399_998, 5]] {
        assert_eq!(chunked(&stream, sizes), whole, "chunk sizes {sizes:?}");
    }
}
