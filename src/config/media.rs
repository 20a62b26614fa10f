//! `media`: what bounds the memory one stream can take, whatever it says. Every limit is checked
//! before the allocation it guards; past one, the media layer reports an error naming the limit
//! (`media.<key>`) and the value, counts it, and the camera goes on with the next good frame
//! (`media::demux` for elements and tags, `media::decode` for access units and pictures).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// The media limits (README "Configuration reference" and "Limits").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct MediaConfig {
    /// Largest element (a frame) buffered; a larger one is reported and skipped.
    pub max_element_bytes: usize,
    /// Deepest nesting of Matroska containers; deeper is reported and resynced past.
    pub max_nesting: usize,
    /// Largest decoded picture, width × height (the SPS's coded size, checked before libavcodec
    /// allocates it); a larger stream's frames are reported and skipped.
    pub max_frame_pixels: u64,
    /// Largest access unit (a frame, in Annex-B, parameter sets included) given to libavcodec.
    pub max_access_unit_bytes: usize,
    /// Most NAL units in one access unit (real encoders use one per slice, a few hundred at most).
    pub max_nal_units: usize,
    /// Most tags one fragment keeps (KVS writes about seven; producers may add their own).
    pub max_tags_per_fragment: usize,
    /// Longest tag name or value kept; a longer tag is reported and dropped.
    pub max_tag_bytes: usize,
}

/// 4096 × 2176: DCI 4K as H.264 codes it (whole 16-pixel macroblocks); UHD 3840 × 2160 fits.
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 4096 * 2176;

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            // A 4K key frame fits many times over.
            max_element_bytes: 32 * 1024 * 1024,
            // Real files nest 5 or 6 deep (Tags, Tag, nested SimpleTags).
            max_nesting: 32,
            max_frame_pixels: DEFAULT_MAX_FRAME_PIXELS,
            max_access_unit_bytes: 8 * 1024 * 1024,
            max_nal_units: 600,
            max_tags_per_fragment: 64,
            max_tag_bytes: 4096,
        }
    }
}

pub const ELEMENT_BYTES: RangeInclusive<usize> = 1024 * 1024..=256 * 1024 * 1024;
pub const NESTING: RangeInclusive<usize> = 8..=64;
/// 64 × 64 up to 8K (7680 × 4320 coded as 4352 rows).
pub const FRAME_PIXELS: RangeInclusive<u64> = 64 * 64..=7680 * 4352;
pub const ACCESS_UNIT_BYTES: RangeInclusive<usize> = 64 * 1024..=64 * 1024 * 1024;
pub const NAL_UNITS: RangeInclusive<usize> = 16..=10_000;
pub const TAGS_PER_FRAGMENT: RangeInclusive<usize> = 16..=10_000;
pub const TAG_BYTES: RangeInclusive<usize> = 256..=1024 * 1024;

impl MediaConfig {
    /// Each key outside its range, as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        fn out_of<T: PartialOrd + std::fmt::Display>(range: &RangeInclusive<T>, v: &T) -> Option<String> {
            (!range.contains(v)).then(|| format!("must be in {}..={}, got {v}", range.start(), range.end()))
        }
        [
            ("media.max_element_bytes", out_of(&ELEMENT_BYTES, &self.max_element_bytes)),
            ("media.max_nesting", out_of(&NESTING, &self.max_nesting)),
            ("media.max_frame_pixels", out_of(&FRAME_PIXELS, &self.max_frame_pixels)),
            ("media.max_access_unit_bytes", out_of(&ACCESS_UNIT_BYTES, &self.max_access_unit_bytes)),
            ("media.max_nal_units", out_of(&NAL_UNITS, &self.max_nal_units)),
            ("media.max_tags_per_fragment", out_of(&TAGS_PER_FRAGMENT, &self.max_tags_per_fragment)),
            ("media.max_tag_bytes", out_of(&TAG_BYTES, &self.max_tag_bytes)),
        ]
        .into_iter()
        .filter_map(|(key, problem)| Some((key, problem?)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_in_range_and_every_bound_is_reachable() {
        assert!(MediaConfig::default().problems().is_empty());
        let edges = MediaConfig {
            max_element_bytes: *ELEMENT_BYTES.end(),
            max_nesting: *NESTING.start(),
            max_frame_pixels: *FRAME_PIXELS.end(),
            max_access_unit_bytes: *ACCESS_UNIT_BYTES.start(),
            max_nal_units: *NAL_UNITS.end(),
            max_tags_per_fragment: *TAGS_PER_FRAGMENT.start(),
            max_tag_bytes: *TAG_BYTES.end(),
        };
        assert!(edges.problems().is_empty(), "{:?}", edges.problems());
        let bad = MediaConfig { max_frame_pixels: 10, max_tag_bytes: 0, ..MediaConfig::default() };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["media.max_frame_pixels", "media.max_tag_bytes"]);
    }
}
