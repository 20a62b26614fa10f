//! Element headers and payloads: what an element is, whether it may be where it is, and its
//! payload buffered (a leaf) or stepped over (an element of no interest, or one too large).

use super::resync::looks_like_ebml_header;
use super::{Demuxer, Open, State, Step};
use crate::media::MediaError;
use crate::media::ebml::{self, ElementId, Kind, Vint};

impl Demuxer {
    pub(super) fn read_header(&mut self) -> Step {
        let at = self.abs();
        // Close known-size containers that end here.
        while let Some(top) = self.stack.last() {
            match top.end {
                Some(end) if end <= at => self.close_top(),
                _ => break,
            }
        }
        let header = match parse_header(self.avail(), at) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::NeedData,
            Err(e) => {
                self.fail(e);
                return Step::Progress;
            }
        };
        if !self.place(header.id, at) {
            return Step::Progress;
        }
        let data_start = at + header.len as u64;
        if let (Some(size), Some(parent_end)) = (header.size, self.stack.last().and_then(|t| t.end))
            && data_start + size > parent_end
        {
            self.fail(MediaError::Overrun { offset: at, name: ebml::name(header.id), size, parent_end });
            return Step::Progress;
        }
        self.pos += header.len;
        self.enter(header, at, data_start);
        Step::Progress
    }

    /// Starts a new document at an EBML header; otherwise checks that `id` may appear where it
    /// is (closing unknown-size containers it cannot belong to). `false`: it may not (reported).
    fn place(&mut self, id: ElementId, at: u64) -> bool {
        if id == ebml::EBML {
            self.start_document(at);
            return true;
        }
        // Unknown-size containers end where an element that cannot be their child starts.
        while let Some(top) = self.stack.last() {
            if top.end.is_none() && !ebml::is_child_of(id, top.id) {
                self.close_top();
            } else {
                break;
            }
        }
        let misplaced = match self.stack.last() {
            None => id != ebml::SEGMENT,
            Some(top) => !ebml::is_child_of(id, top.id),
        };
        if misplaced {
            let parent = self.stack.last().map_or("the top level", |t| ebml::name(t.id));
            self.fail(MediaError::Misplaced { offset: at, id, parent });
        }
        !misplaced
    }

    /// Enters the element whose header was just read: opens a container, or starts reading
    /// (or stepping over) a payload.
    fn enter(&mut self, header: Header, at: u64, data_start: u64) {
        let Header { id, size, .. } = header;
        let known = ebml::describe(id);
        let kind = known.map_or(Kind::Skip, |(k, _)| k);
        match (kind, size) {
            (Kind::Master, _) | (Kind::Skip, None) => {
                if known.is_none() && size.is_none() {
                    // An unknown element of unknown size cannot be stepped over.
                    self.fail(MediaError::UnknownSizeLeaf { offset: at, name: ebml::name(id) });
                    return;
                }
                if self.stack.len() >= self.cfg.max_depth {
                    let cap = self.cfg.max_depth;
                    self.fail(MediaError::TooDeep {
                        offset: at,
                        name: ebml::name(id),
                        depth: self.stack.len() + 1,
                        cap,
                    });
                    return;
                }
                self.stack.push(Open { id, start: at, end: size.map(|s| data_start + s) });
                self.open(id, at, size);
            }
            (Kind::Leaf, None) => {
                self.fail(MediaError::UnknownSizeLeaf { offset: at, name: ebml::name(id) });
            }
            (kind, Some(size)) => {
                let cap = self.cfg.max_element_size as u64;
                let too_large = kind == Kind::Leaf && size > cap;
                if too_large {
                    self.report(MediaError::ElementTooLarge { offset: at, name: ebml::name(id), size, cap });
                }
                let keep = kind == Kind::Leaf && !too_large;
                self.state =
                    State::Payload { id, start: at, data_start, end: data_start + size, keep, scanned: data_start };
            }
        }
    }

    pub(super) fn read_payload(&mut self) -> Step {
        let State::Payload { id, start, data_start, end, keep, scanned } = self.state else {
            return Step::Progress;
        };
        let avail_end = self.buf_start + self.buf.len() as u64;
        // Look for a new document starting inside this payload (a fragment cut short).
        let scanned = match self.scan_for_document(scanned.max(data_start), end.min(avail_end), end) {
            Scan::Found(at) => {
                self.pos = (at - self.buf_start) as usize;
                self.report(MediaError::CutByNewDocument { offset: at, name: ebml::name(id), element_offset: start });
                self.cut_reported = true;
                self.state = State::Header;
                return Step::Progress;
            }
            Scan::Undecided(at) => {
                // A candidate near the end of the input: keep it until more bytes arrive.
                if !keep {
                    self.pos = self.pos.max((at - self.buf_start) as usize);
                }
                self.state = State::Payload { id, start, data_start, end, keep, scanned: at };
                return Step::NeedData;
            }
            Scan::Clear(upto) => upto,
        };
        if keep {
            if avail_end < end {
                self.state = State::Payload { id, start, data_start, end, keep, scanned };
                return Step::NeedData;
            }
            let (a, b) = ((data_start - self.buf_start) as usize, (end - self.buf_start) as usize);
            let buf = std::mem::take(&mut self.buf);
            self.leaf(id, start, &buf[a..b]);
            self.buf = buf;
            self.pos = b;
            self.state = State::Header;
        } else {
            let to = end.min(avail_end);
            if to < end {
                // Keep the unscanned tail: a magic split across pushes must still be found after
                // the buffer is compacted up to `pos`.
                self.pos = self.pos.max((scanned.min(to) - self.buf_start) as usize);
                self.state = State::Payload { id, start, data_start, end, keep, scanned };
                return Step::NeedData;
            }
            self.pos = (to - self.buf_start) as usize;
            self.state = State::Header;
        }
        Step::Progress
    }

    /// Scans `[from, to)` for the EBML magic starting a new document inside a payload that ends at `end`.
    fn scan_for_document(&self, from: u64, to: u64, end: u64) -> Scan {
        if from >= to {
            return Scan::Clear(from);
        }
        let lo = (from.max(self.buf_start) - self.buf_start) as usize;
        // A match may start in the payload and run past its end.
        let hi = ((to - self.buf_start) as usize + 3).min(self.buf.len());
        let hay = &self.buf[lo..hi];
        let mut searched = 0;
        while let Some(i) = memchr::memmem::find(&hay[searched..], &ebml::EBML_MAGIC) {
            let at = lo + searched + i;
            if self.buf_start + at as u64 >= end {
                break;
            }
            match looks_like_ebml_header(&self.buf[at..]) {
                Some(true) => return Scan::Found(self.buf_start + at as u64),
                None if !self.finished => return Scan::Undecided(self.buf_start + at as u64),
                _ => searched += i + 1,
            }
        }
        // Leave 3 bytes so that a magic split across pushes is still found.
        Scan::Clear(to.saturating_sub(3).max(from))
    }
}

pub(super) enum Scan {
    Found(u64),
    Undecided(u64),
    Clear(u64),
}

/// An element header: its id, its payload size (`None`: unknown), and its own length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub(super) id: ElementId,
    pub(super) size: Option<u64>,
    pub(super) len: usize,
}

/// The element header at the start of `bytes` (at stream offset `at`); `Ok(None)`: more bytes
/// are needed.
pub(super) fn parse_header(bytes: &[u8], at: u64) -> Result<Option<Header>, MediaError> {
    let (id, id_len) = match ebml::read_id(bytes) {
        Vint::Value { value, len, .. } => (value as ElementId, len),
        Vint::Incomplete => return Ok(None),
        Vint::Invalid => return Err(MediaError::InvalidId { offset: at }),
    };
    match ebml::read_size(&bytes[id_len..]) {
        Vint::Value { value, len, unknown } => {
            Ok(Some(Header { id, size: (!unknown).then_some(value), len: id_len + len }))
        }
        Vint::Incomplete => Ok(None),
        Vint::Invalid => Err(MediaError::InvalidSize { offset: at }),
    }
}
