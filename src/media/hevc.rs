//! H.265 in Matroska: the hvcC record in CodecPrivate (HEVCDecoderConfigurationRecord, ISO/IEC
//! 14496-15 8.3.3.1). Its frames are length-prefixed NAL units like H.264's
//! ([`super::avc::avcc_to_annex_b`] turns them into Annex-B).

use super::MediaError;

/// NAL unit types of the parameter sets.
const VPS: u8 = 32;
const SPS: u8 = 33;
const PPS: u8 = 34;
const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Bytes before the NAL unit arrays.
const HEADER: usize = 23;

/// What an `hvcC` carries that decoding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    pub profile_idc: u8,
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    /// VPS, SPS and PPS NAL units, in that order.
    pub parameter_sets: Vec<Vec<u8>>,
}

impl HevcConfig {
    pub fn parse(data: &[u8]) -> Result<Self, MediaError> {
        let bad = |reason: &str| MediaError::BadCodecPrivate { reason: reason.to_owned() };
        if data.len() < HEADER {
            return Err(bad("hvcC shorter than 23 bytes"));
        }
        if data[0] != 1 {
            return Err(bad("hvcC configurationVersion is not 1"));
        }
        let nal_length_size = usize::from(data[21] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(bad("NAL length size 3 is not allowed"));
        }
        let arrays = usize::from(data[22]);
        let mut at = HEADER;
        let mut sets: Vec<(u8, Vec<u8>)> = Vec::new();
        let u16_at = |at: usize| data.get(at..at + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        for _ in 0..arrays {
            let kind = *data.get(at).ok_or_else(|| bad("NAL unit array cut short"))? & 0x3F;
            let count = u16_at(at + 1).ok_or_else(|| bad("NAL unit count cut short"))?;
            at += 3;
            for _ in 0..count {
                let len = u16_at(at).ok_or_else(|| bad("NAL unit length cut short"))?;
                let nal = data.get(at + 2..at + 2 + len).ok_or_else(|| bad("NAL unit cut short"))?;
                if matches!(kind, VPS | SPS | PPS) {
                    sets.push((kind, nal.to_vec()));
                }
                at += 2 + len;
            }
        }
        for (needed, name) in [(VPS, "VPS"), (SPS, "SPS"), (PPS, "PPS")] {
            if !sets.iter().any(|(k, _)| *k == needed) {
                return Err(bad(&format!("hvcC without a {name}")));
            }
        }
        sets.sort_by_key(|(k, _)| *k);
        Ok(Self {
            profile_idc: data[1] & 0x1F,
            nal_length_size,
            parameter_sets: sets.into_iter().map(|(_, s)| s).collect(),
        })
    }

    /// VPS, SPS and PPS as Annex-B, to put in front of a key frame.
    pub fn parameter_sets_annex_b(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for set in &self.parameter_sets {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An hvcC with one VPS, SPS and PPS (contents abbreviated) and 4-byte lengths.
    pub(crate) fn record() -> Vec<u8> {
        let mut r =
            vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5D, 0xF0, 0, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0, 0x0F, 3];
        for (kind, nal) in [(VPS, vec![0x40, 0x01, 0x0C]), (SPS, vec![0x42, 0x01, 0x01]), (PPS, vec![0x44, 0x01, 0xC1])]
        {
            r.push(0x80 | kind);
            r.extend(1u16.to_be_bytes());
            r.extend((nal.len() as u16).to_be_bytes());
            r.extend(nal);
        }
        r
    }

    #[test]
    fn parses_hvcc_and_writes_annex_b() {
        let c = HevcConfig::parse(&record()).expect("valid");
        assert_eq!((c.profile_idc, c.nal_length_size, c.parameter_sets.len()), (1, 4, 3));
        let annex_b = c.parameter_sets_annex_b();
        assert_eq!(annex_b[..5], [0, 0, 0, 1, 0x40], "VPS first");
    }

    #[test]
    fn rejects_truncated_or_incomplete_records() {
        let r = record();
        for cut in 0..r.len() {
            assert!(HevcConfig::parse(&r[..cut]).is_err(), "cut at {cut}");
        }
        let mut no_pps = r.clone();
        no_pps[22] = 2;
        assert!(HevcConfig::parse(&no_pps).is_err());
    }
}
