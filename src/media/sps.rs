//! What the decoder's limits need to know about an access unit before libavcodec sees it: its
//! NAL units (Annex-B start codes) and, from a sequence parameter set, the coded picture size
//! (H.264 and H.265), so an oversized stream is refused before a picture is allocated.

use super::decode::VideoCodec;

/// The NAL units of an Annex-B access unit (each without its start code).
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let starts = start_codes(annex_b);
    let mut ends = starts.clone().skip(1).map(|at| at.saturating_sub(3)).chain(std::iter::once(annex_b.len()));
    starts.map(move |at| {
        let end = ends.next().unwrap_or(annex_b.len()).max(at);
        &annex_b[at..end]
    })
}

/// How many NAL units the access unit holds (start codes counted).
pub fn count_nal_units(annex_b: &[u8]) -> usize {
    start_codes(annex_b).count()
}

/// Offsets just past each `00 00 01`.
fn start_codes(data: &[u8]) -> impl Iterator<Item = usize> + Clone + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i + 3 <= data.len() {
            if data[i + 2] > 1 {
                i += 3;
            } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                i += 3;
                return Some(i);
            } else {
                i += 1;
            }
        }
        None
    })
}

/// The coded size (width, height) an SPS NAL unit declares; `None` when `nal` is not an SPS or
/// cannot be read (libavcodec's own `max_pixels` bound still applies then).
pub fn coded_size(codec: VideoCodec, nal: &[u8]) -> Option<(u64, u64)> {
    match codec {
        VideoCodec::H264 if nal.first().is_some_and(|h| h & 0x1F == 7) => h264(&unescape(&nal[1..])),
        VideoCodec::H265 if nal.first().is_some_and(|h| (h >> 1) & 0x3F == 33) => h265(&unescape(nal.get(2..)?)),
        _ => None,
    }
}

/// The RBSP of a NAL unit's first bytes (emulation prevention removed; the size comes early).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().min(4096));
    let mut zeros = 0;
    for &b in data.iter().take(4096) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = self.data.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u64::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        (0..n).try_fold(0, |v, _| Some((v << 1) | self.bit()?))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.at += n;
        (self.at <= self.data.len() * 8).then_some(())
    }

    /// Exp-Golomb `ue(v)`.
    fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1 << zeros) - 1 + self.bits(zeros)?)
    }

    /// Exp-Golomb `se(v)` (only skipped).
    fn se(&mut self) -> Option<()> {
        self.ue().map(|_| ())
    }
}

fn h264(rbsp: &[u8]) -> Option<(u64, u64)> {
    let mut b = Bits { data: rbsp, at: 0 };
    let profile = b.bits(8)?;
    b.skip(16)?;
    b.ue()?;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        let chroma = b.ue()?;
        if chroma == 3 {
            b.skip(1)?;
        }
        b.ue()?;
        b.ue()?;
        b.skip(1)?;
        if b.bit()? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if b.bit()? == 1 {
                    skip_scaling_list(&mut b, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    b.ue()?;
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.skip(1)?;
            b.se()?;
            b.se()?;
            for _ in 0..b.ue()?.min(256) {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?;
    b.skip(1)?;
    let width = (b.ue()? + 1) * 16;
    let map_units = b.ue()? + 1;
    let frame_mbs_only = b.bit()?;
    Some((width, map_units * 16 * (2 - frame_mbs_only)))
}

fn skip_scaling_list(b: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let code = b.ue()?;
            let delta = if code % 2 == 1 { (code as i64 + 1) / 2 } else { -(code as i64 / 2) };
            next = (last + delta).rem_euclid(256);
        }
        last = if next == 0 { last } else { next };
    }
    Some(())
}

fn h265(rbsp: &[u8]) -> Option<(u64, u64)> {
    let mut b = Bits { data: rbsp, at: 0 };
    b.skip(4)?;
    let sub_layers = b.bits(3)? as usize;
    b.skip(1)?;
    // profile_tier_level: the general part, then what each sub-layer has.
    b.skip(96)?;
    let mut present = Vec::with_capacity(sub_layers);
    for _ in 0..sub_layers {
        present.push((b.bit()?, b.bit()?));
    }
    if sub_layers > 0 {
        b.skip(2 * (8 - sub_layers))?;
    }
    for (profile, level) in present {
        b.skip(88 * profile as usize + 8 * level as usize)?;
    }
    b.ue()?;
    if b.ue()? == 3 {
        b.skip(1)?;
    }
    Some((b.ue()?, b.ue()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_are_split_at_start_codes_of_either_length() {
        let au = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65];
        let units: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(units, [&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65][..]]);
        assert_eq!(count_nal_units(&au), 3);
        assert_eq!(count_nal_units(&[0, 0, 1, 6].repeat(1000)), 1000, "a bomb of empty SEI units is counted");
        assert_eq!(count_nal_units(&[1, 2, 3]), 0);
    }
}
