//! H.264 in Matroska: the avcC record in CodecPrivate, and AVCC (length-prefixed) frames turned
//! into the Annex-B byte stream decoders take.

use super::MediaError;

/// What an `avcC` (AVCDecoderConfigurationRecord) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    pub profile: u8,
    pub level: u8,
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

impl AvcConfig {
    /// Parses an avcC record (ISO/IEC 14496-15 5.2.4.1).
    pub fn parse(data: &[u8]) -> Result<Self, MediaError> {
        let bad = |reason: &str| MediaError::BadCodecPrivate { reason: reason.to_owned() };
        if data.len() < 7 {
            return Err(bad("avcC shorter than 7 bytes"));
        }
        if data[0] != 1 {
            return Err(bad("avcC configurationVersion is not 1"));
        }
        let nal_length_size = usize::from(data[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(bad("NAL length size 3 is not allowed"));
        }
        let mut at = 5;
        let read_sets = |count: usize, at: &mut usize| -> Result<Vec<Vec<u8>>, MediaError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = data.get(*at..*at + 2).ok_or_else(|| bad("parameter set length cut short"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let set = data.get(*at + 2..*at + 2 + len).ok_or_else(|| bad("parameter set cut short"))?;
                sets.push(set.to_vec());
                *at += 2 + len;
            }
            Ok(sets)
        };
        let sps_count = usize::from(data[at] & 0x1F);
        at += 1;
        let sps = read_sets(sps_count, &mut at)?;
        let pps_count = usize::from(*data.get(at).ok_or_else(|| bad("no PPS count"))?);
        at += 1;
        let pps = read_sets(pps_count, &mut at)?;
        if sps.is_empty() || pps.is_empty() {
            return Err(bad("avcC without SPS or PPS"));
        }
        Ok(Self { profile: data[1], level: data[3], nal_length_size, sps, pps })
    }

    /// SPS and PPS as Annex-B, to put in front of a key frame.
    pub fn parameter_sets_annex_b(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for set in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
        out
    }
}

/// Appends an AVCC frame (NAL units each prefixed by a big-endian length) to `out` as Annex-B.
pub fn avcc_to_annex_b(frame: &[u8], nal_length_size: usize, out: &mut Vec<u8>) -> Result<(), MediaError> {
    let mut at = 0;
    while at < frame.len() {
        let prefix = frame
            .get(at..at + nal_length_size)
            .ok_or(MediaError::BadFrame { reason: "NAL length prefix cut short" })?;
        let len = prefix.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        at += nal_length_size;
        let nal = frame.get(at..at + len).ok_or(MediaError::BadFrame { reason: "NAL unit longer than the frame" })?;
        if !nal.is_empty() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Vec<u8> {
        let sps = [0x67, 0x4D, 0x00, 0x1E, 0xAA];
        let pps = [0x68, 0xEE, 0x3C, 0x80];
        let mut r = vec![1, 0x4D, 0x00, 0x1E, 0xFF, 0xE1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r
    }

    #[test]
    fn parses_avcc_and_writes_annex_b() {
        let c = AvcConfig::parse(&record()).expect("valid");
        assert_eq!((c.profile, c.level, c.nal_length_size), (0x4D, 0x1E, 4));
        assert_eq!(c.sps, vec![vec![0x67, 0x4D, 0x00, 0x1E, 0xAA]]);
        assert_eq!(c.parameter_sets_annex_b()[..5], [0, 0, 0, 1, 0x67]);
    }

    #[test]
    fn rejects_truncated_records() {
        let r = record();
        for cut in 0..r.len() {
            assert!(AvcConfig::parse(&r[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn converts_length_prefixed_nals() {
        let frame = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        let mut out = Vec::new();
        avcc_to_annex_b(&frame, 4, &mut out).expect("valid");
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
        let mut out = Vec::new();
        assert!(avcc_to_annex_b(&[0, 0, 0, 9, 0x65], 4, &mut out).is_err());
        assert!(avcc_to_annex_b(&[0, 0], 4, &mut out).is_err());
    }
}
