//! Blocks: a SimpleBlock or a BlockGroup's Block, its header, its laces, the frames it carries.

use super::Demuxer;
use crate::media::ebml::{self, Vint};
use crate::media::{ClusterSummary, Event, Frame, MediaError, TrackKind};

impl Demuxer {
    /// A SimpleBlock (`keyframe` from its flags) or a BlockGroup's Block (`keyframe` given).
    pub(super) fn block(&mut self, at: u64, payload: &[u8], keyframe: Option<bool>) {
        let header = match parse_block_header(payload) {
            Ok(h) => h,
            Err(reason) => {
                self.report(MediaError::BadBlock { offset: at, reason });
                return;
            }
        };
        let Some(doc) = &mut self.doc else {
            return;
        };
        let keyframe = keyframe.unwrap_or(header.keyframe);
        let cluster_tc = doc.cluster.as_ref().map_or(0, |c| c.summary.timecode);
        if let Some(c) = &mut doc.cluster {
            count_block(&mut c.summary, header.track, header.timecode, keyframe);
        }
        doc.blocks += 1;
        doc.keyframes += u64::from(keyframe);
        let scale = i64::try_from(doc.timecode_scale).unwrap_or(i64::MAX);
        let timestamp_ns = cluster_tc.saturating_add(i64::from(header.timecode)).saturating_mul(scale);
        let is_video = doc.tracks.iter().any(|t| t.number == header.track && t.kind == TrackKind::Video);
        let frames = match split_laces(&payload[header.len..], header.lacing) {
            Ok(frames) => frames,
            Err(reason) => {
                doc.damaged = true;
                self.events.push_back(Event::Error(MediaError::BadBlock { offset: at, reason }));
                return;
            }
        };
        for data in frames {
            if is_video {
                doc.video_frames += 1;
                doc.video_keyframes += u64::from(keyframe);
            }
            self.events.push_back(Event::Frame(Frame {
                track: header.track,
                timestamp_ns,
                keyframe,
                data: data.to_vec(),
                fragment_index: doc.index,
                offset: at,
            }));
        }
    }
}

pub(super) fn count_block(c: &mut ClusterSummary, track: u64, timecode: i16, keyframe: bool) {
    c.blocks += 1;
    c.keyframes += u64::from(keyframe);
    c.first_block_timecode.get_or_insert(timecode);
    c.last_block_timecode = Some(timecode);
    *c.blocks_per_track.entry(track).or_default() += 1;
}

/// Block header: track number, relative timecode, flags.
pub(super) struct BlockHeader {
    pub(super) track: u64,
    pub(super) timecode: i16,
    pub(super) keyframe: bool,
    pub(super) lacing: u8,
    pub(super) len: usize,
}

pub(super) fn parse_block_header(p: &[u8]) -> Result<BlockHeader, &'static str> {
    let (track, n) = match ebml::read_size(p) {
        Vint::Value { value, len, .. } => (value, len),
        _ => return Err("bad track number"),
    };
    let rest = p.get(n..n + 3).ok_or("block header cut short")?;
    Ok(BlockHeader {
        track,
        timecode: i16::from_be_bytes([rest[0], rest[1]]),
        keyframe: rest[2] & 0x80 != 0,
        lacing: (rest[2] >> 1) & 0x03,
        len: n + 3,
    })
}

/// Splits a block's data into its laces (Xiph = 1, fixed = 2, EBML = 3; 0 = no lacing).
fn split_laces(data: &[u8], lacing: u8) -> Result<Vec<&[u8]>, &'static str> {
    if lacing == 0 {
        return Ok(vec![data]);
    }
    let count = usize::from(*data.first().ok_or("laced block without a lace count")?) + 1;
    let mut at = 1;
    let mut sizes = Vec::with_capacity(count);
    match lacing {
        1 => {
            for _ in 0..count - 1 {
                let mut size = 0usize;
                loop {
                    let b = *data.get(at).ok_or("Xiph lace sizes cut short")?;
                    at += 1;
                    size += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
                sizes.push(size);
            }
        }
        3 => {
            let mut prev: i64 = 0;
            for i in 0..count - 1 {
                let (value, len) = match ebml::read_size(data.get(at..).ok_or("EBML lace sizes cut short")?) {
                    Vint::Value { value, len, .. } => (value, len),
                    _ => return Err("bad EBML lace size"),
                };
                at += len;
                let size = if i == 0 {
                    i64::try_from(value).map_err(|_| "EBML lace size too large")?
                } else {
                    // Signed difference: subtract the bias 2^(7*len-1) - 1.
                    let bias = (1i64 << (7 * len - 1)) - 1;
                    let diff = i64::try_from(value).map_err(|_| "EBML lace size too large")? - bias;
                    prev.checked_add(diff).ok_or("EBML lace size too large")?
                };
                if size < 0 {
                    return Err("negative EBML lace size");
                }
                sizes.push(size as usize);
                prev = size;
            }
        }
        _ => {
            let body = data.len() - at;
            if !body.is_multiple_of(count) {
                return Err("fixed-size lacing does not divide the block evenly");
            }
            sizes.extend(std::iter::repeat_n(body / count, count - 1));
        }
    }
    let exceed = "lace sizes exceed the block";
    let used = sizes.iter().try_fold(at, |sum, &s| sum.checked_add(s)).ok_or(exceed)?;
    let last = data.len().checked_sub(used).ok_or(exceed)?;
    sizes.push(last);
    let mut laces = Vec::with_capacity(count);
    for size in sizes {
        laces.push(&data[at..at + size]);
        at += size;
    }
    Ok(laces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xiph_ebml_and_fixed_lacing() {
        // Xiph: 3 laces of 2, 300, rest.
        let mut xiph = vec![2, 2, 255, 45];
        xiph.extend(std::iter::repeat_n(7u8, 2 + 300 + 5));
        let laces = split_laces(&xiph, 1).expect("xiph");
        assert_eq!(laces.iter().map(|l| l.len()).collect::<Vec<_>>(), [2, 300, 5]);

        // EBML: first size 10 (0x8A), then a difference of -3 (bias 63: 60 = 0xBC), rest.
        let mut ebml_laced = vec![2, 0x8A, 0xBC];
        ebml_laced.extend(std::iter::repeat_n(1u8, 10 + 7 + 4));
        let laces = split_laces(&ebml_laced, 3).expect("ebml");
        assert_eq!(laces.iter().map(|l| l.len()).collect::<Vec<_>>(), [10, 7, 4]);

        let mut fixed = vec![3];
        fixed.extend(std::iter::repeat_n(9u8, 12));
        assert_eq!(split_laces(&fixed, 2).expect("fixed").len(), 4);
        assert!(split_laces(&[3, 1, 2, 3], 2).is_err(), "3 bytes do not divide into 4 laces");
        assert!(split_laces(&[2, 200, 200], 1).is_err(), "sizes beyond the data");
    }
}
