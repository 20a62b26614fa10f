//! After damage: scanning for the next EBML header (a new fragment) or Cluster, and re-entering
//! the stream there.

use super::{Demuxer, EBML_PROBE, MAX_HEADER, Open, State, Step};
use crate::media::ebml::{self, Vint};

/// The Cluster id's bytes, a resync point.
const CLUSTER_ID: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];

impl Demuxer {
    pub(super) fn resync(&mut self) -> Step {
        enum Found {
            Document(usize),
            Cluster(usize),
            Wait(usize),
            Nothing(usize),
        }
        let found = {
            let hay = &self.buf[self.pos..];
            let mut from = 0;
            loop {
                let next_ebml = memchr::memmem::find(&hay[from..], &ebml::EBML_MAGIC).map(|i| i + from);
                let next_cluster = memchr::memmem::find(&hay[from..], &CLUSTER_ID).map(|i| i + from);
                let Some(at) = [next_ebml, next_cluster].into_iter().flatten().min() else {
                    // Keep the tail that could be the start of a split id.
                    break Found::Nothing(hay.len() - hay.len().min(3));
                };
                let is_ebml = Some(at) == next_ebml;
                let verdict = if is_ebml { looks_like_ebml_header(&hay[at..]) } else { looks_like_cluster(&hay[at..]) };
                match verdict {
                    Some(true) if is_ebml => break Found::Document(at),
                    Some(true) => break Found::Cluster(at),
                    None if !self.finished => break Found::Wait(at),
                    _ => from = at + 1,
                }
            }
        };
        match found {
            Found::Document(at) => {
                self.pos += at;
                self.state = State::Header;
                Step::Progress
            }
            Found::Cluster(at) => {
                self.pos += at;
                self.reenter_at_cluster();
                self.state = State::Header;
                Step::Progress
            }
            Found::Wait(skip) | Found::Nothing(skip) => {
                self.pos += skip;
                Step::NeedData
            }
        }
    }

    /// Resuming at a Cluster: keep the open Segment (or assume one), drop everything inside it.
    fn reenter_at_cluster(&mut self) {
        while let Some(top) = self.stack.last() {
            if top.id == ebml::SEGMENT {
                break;
            }
            self.close_top();
        }
        if self.stack.is_empty() {
            let at = self.abs();
            if self.doc.is_none() {
                self.start_document(at);
                self.mark_damaged();
            }
            self.stack.push(Open { id: ebml::SEGMENT, start: at, end: None });
        }
    }
}

/// Is this an EBML header (magic, a sane size, then an EBML header child)? `None`: need more bytes.
pub(super) fn looks_like_ebml_header(b: &[u8]) -> Option<bool> {
    if b.len() < 5 {
        return None;
    }
    match ebml::read_size(&b[4..]) {
        Vint::Value { len, unknown: false, value } if value < 4096 => {
            let child = b.get(4 + len..4 + len + 2)?;
            Some(child[0] == 0x42 && matches!(child[1], 0x86 | 0xF7 | 0xF2 | 0xF3 | 0x82 | 0x87 | 0x85))
        }
        Vint::Incomplete if b.len() < EBML_PROBE => None,
        _ => Some(false),
    }
}

/// Is this a Cluster (id, a size, then Timecode or CRC-32)? `None`: need more bytes.
fn looks_like_cluster(b: &[u8]) -> Option<bool> {
    if b.len() < 5 {
        return None;
    }
    match ebml::read_size(&b[4..]) {
        Vint::Value { len, .. } => {
            let child = *b.get(4 + len)?;
            Some(child == 0xE7 || child == 0xBF)
        }
        Vint::Incomplete if b.len() < MAX_HEADER => None,
        _ => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ebml_header_probe() {
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x42, 0x86]), Some(true));
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x12, 0x86]), Some(false));
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3]), None);
        assert_eq!(looks_like_cluster(&[0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7]), Some(true));
        assert_eq!(looks_like_cluster(&[0x1F, 0x43, 0xB6, 0x75, 0x81, 0x00]), Some(false));
    }
}
