//! A tiny EBML writer for building test streams by hand.
#![allow(dead_code)]

/// Encodes an element size in the shortest form (or `None` = unknown, 8-byte form).
pub fn size(n: Option<u64>) -> Vec<u8> {
    match n {
        None => vec![0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        Some(n) => {
            let len = (1..=8).find(|&l| n < (1u64 << (7 * l)) - 1).expect("size fits");
            let mut out = vec![0u8; len];
            for (i, b) in out.iter_mut().enumerate() {
                *b = (n >> (8 * (len - 1 - i))) as u8;
            }
            out[0] |= 0x80 >> (len - 1);
            out
        }
    }
}

fn id_bytes(id: u32) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    bytes[skip..].to_vec()
}

/// An element with a known size.
pub fn el(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = id_bytes(id);
    out.extend(size(Some(payload.len() as u64)));
    out.extend_from_slice(payload);
    out
}

/// An element header with unknown size (children follow).
pub fn open_unknown(id: u32) -> Vec<u8> {
    let mut out = id_bytes(id);
    out.extend(size(None));
    out
}

pub fn uint(id: u32, v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    el(id, &bytes[skip..])
}

pub fn string(id: u32, s: &str) -> Vec<u8> {
    el(id, s.as_bytes())
}

pub fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

pub fn ebml_header() -> Vec<u8> {
    el(
        0x1A45_DFA3,
        &cat(&[uint(0x4286, 1), uint(0x42F7, 1), uint(0x42F2, 4), uint(0x42F3, 8), string(0x4282, "matroska")]),
    )
}

pub fn simple_tag(name: &str, value: &str) -> Vec<u8> {
    el(0x67C8, &cat(&[string(0x45A3, name), string(0x4487, value)]))
}

pub fn tags(pairs: &[(&str, &str)]) -> Vec<u8> {
    let simple: Vec<Vec<u8>> = pairs.iter().map(|(n, v)| simple_tag(n, v)).collect();
    el(0x1254_C367, &el(0x7373, &simple.concat()))
}

/// A video track (number 1) with the given codec.
pub fn tracks(codec: &str, private: Option<&[u8]>) -> Vec<u8> {
    let mut entry = vec![uint(0xD7, 1), uint(0x83, 1), string(0x86, codec)];
    if let Some(p) = private {
        entry.push(el(0x63A2, p));
    }
    entry.push(el(0xE0, &cat(&[uint(0xB0, 64), uint(0xBA, 48)])));
    el(0x1654_AE6B, &el(0xAE, &entry.concat()))
}

/// A SimpleBlock for track `track` at relative timecode `tc` with `lacing` bits and body.
pub fn simple_block(track: u8, tc: i16, key: bool, lacing: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80 | track];
    p.extend(tc.to_be_bytes());
    p.push(if key { 0x80 } else { 0 } | (lacing << 1));
    p.extend_from_slice(body);
    el(0xA3, &p)
}

/// A KVS-style fragment: header, unknown-size Segment, tracks, pre-cluster tags, one cluster
/// with `frames` blocks, post-cluster tags.
pub fn fragment(number: &str, cluster_tc: u64, frames: u8, extra_pre: &[(&str, &str)]) -> Vec<u8> {
    let mut pre = vec![
        ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", number),
        ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", "1700000000.250"),
        ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", "1700000000.125"),
    ];
    pre.extend_from_slice(extra_pre);
    let blocks: Vec<Vec<u8>> = (0..frames).map(|i| simple_block(1, i16::from(i) * 40, i == 0, 0, &[i; 16])).collect();
    let cluster = el(0x1F43_B675, &cat(&[uint(0xE7, cluster_tc), blocks.concat()]));
    cat(&[
        ebml_header(),
        open_unknown(0x1853_8067),
        el(0x1549_A966, &uint(0x2AD7B1, 1_000_000)),
        tracks("V_MS/VFW/FOURCC", None),
        tags(&pre),
        cluster,
        tags(&[("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "1234"), ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", number)]),
    ])
}
