//! The incremental Matroska/KVS demuxer: push bytes in any chunking, pull [`Event`]s.
//!
//! Memory is bounded: container elements are never buffered, skipped elements are discarded as
//! they arrive, and a leaf (a frame) is buffered only up to [`DemuxConfig::max_element_size`].
//! Results do not depend on how the input is chunked.
//!
//! Damage handling: the first problem found emits one [`Event::Error`] with the offset; the
//! demuxer then scans for the next EBML header (a new fragment) or Cluster and carries on.
//! A payload that contains the start of a new document (a fragment cut short by a dropped
//! connection, then a fresh one) is detected while it is read, so the new fragment is not lost.

//! | module | owns |
//! |---|---|
//! | `header` | element headers, placement checks, payloads (buffered or stepped over) |
//! | `resync` | finding a way back in after damage: the next EBML header or Cluster |
//! | `document` | per-document state: tracks, tags, clusters, the fragment's start and end |
//! | `block` | SimpleBlocks and BlockGroups: headers, lacing, frames |

mod block;
mod document;
mod header;
mod resync;

use std::collections::VecDeque;

use super::ebml::ElementId;
use super::{Event, MediaError};
use document::Document;

/// Tracks kept per document: a camera stream has one or two; more is hostile input.
pub const MAX_TRACKS: usize = 64;
/// Longest element header: a 4-byte id and an 8-byte size.
const MAX_HEADER: usize = 12;
/// Bytes needed after a candidate EBML header id to tell a real header from chance.
const EBML_PROBE: usize = 4 + 8 + 2;
/// Compact the buffer once this much of it is consumed.
const COMPACT_AT: usize = 256 * 1024;

/// Demuxer limits: what bounds its memory, whatever the input says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemuxConfig {
    /// Largest element payload that is buffered; a bigger one is an error and is skipped.
    pub max_element_size: usize,
    /// Most containers open at once; a deeper one is an error and the demuxer resyncs.
    pub max_depth: usize,
    /// Most tags one document keeps; the rest are reported (once) and dropped.
    pub max_tags: usize,
    /// Longest tag name or value; a longer tag is reported and dropped.
    pub max_tag_bytes: usize,
}

impl From<&crate::config::MediaConfig> for DemuxConfig {
    fn from(m: &crate::config::MediaConfig) -> Self {
        Self {
            max_element_size: m.max_element_bytes,
            max_depth: m.max_nesting,
            max_tags: m.max_tags_per_fragment,
            max_tag_bytes: m.max_tag_bytes,
        }
    }
}

/// The defaults of `media:` (`config::MediaConfig`).
impl Default for DemuxConfig {
    fn default() -> Self {
        (&crate::config::MediaConfig::default()).into()
    }
}

/// An open container element.
#[derive(Debug, Clone)]
struct Open {
    id: ElementId,
    start: u64,
    /// Absolute end offset; `None` for unknown size.
    end: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Expecting an element header.
    Header,
    /// Buffering (`Kind::Leaf`) or stepping over (`Kind::Skip`) a payload.
    Payload { id: ElementId, start: u64, data_start: u64, end: u64, keep: bool, scanned: u64 },
    /// After an error: looking for the next EBML header or Cluster.
    Resync,
}

/// The streaming demuxer. See the module docs.
#[derive(Debug)]
pub struct Demuxer {
    cfg: DemuxConfig,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    buf_start: u64,
    /// Read position in `buf`.
    pos: usize,
    state: State,
    stack: Vec<Open>,
    doc: Option<Document>,
    next_index: u64,
    events: VecDeque<Event>,
    finished: bool,
    done: bool,
    /// A payload scan already reported that the next document cuts the current one short.
    cut_reported: bool,
}

impl Default for Demuxer {
    fn default() -> Self {
        Self::new(DemuxConfig::default())
    }
}

enum Step {
    Progress,
    NeedData,
}

impl Demuxer {
    pub fn new(cfg: DemuxConfig) -> Self {
        Self {
            cfg,
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
            state: State::Header,
            stack: Vec::new(),
            doc: None,
            next_index: 0,
            events: VecDeque::new(),
            finished: false,
            done: false,
            cut_reported: false,
        }
    }

    /// Appends input. Call [`Demuxer::next_event`] until it returns `None` to consume it.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos >= COMPACT_AT && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.buf_start += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Marks the end of input: anything left open is closed (and reported if cut short).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Input bytes (or events) held and not handed out yet: more frames are already here.
    pub fn has_pending(&self) -> bool {
        self.buf.len() > self.pos || !self.events.is_empty()
    }

    /// Absolute offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.buf_start + self.pos as u64
    }

    /// The next event, or `None` when more input (or [`Demuxer::finish`]) is needed.
    pub fn next_event(&mut self) -> Option<Event> {
        while self.events.is_empty() && !self.done {
            match self.step() {
                Step::Progress => {}
                Step::NeedData if self.finished => self.end_of_stream(),
                Step::NeedData => break,
            }
        }
        self.events.pop_front()
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn abs(&self) -> u64 {
        self.buf_start + self.pos as u64
    }

    fn step(&mut self) -> Step {
        match self.state {
            State::Header => self.read_header(),
            State::Payload { .. } => self.read_payload(),
            State::Resync => self.resync(),
        }
    }

    /// Reports an error, marks the document damaged, and starts looking for a way back in.
    /// The element at the read position is bad: resync starts one byte past its first byte.
    fn fail(&mut self, error: MediaError) {
        self.report(error);
        self.pos = (self.pos + 1).min(self.buf.len());
        self.state = State::Resync;
    }

    /// Queues an error event and marks the current document damaged.
    fn report(&mut self, error: MediaError) {
        self.mark_damaged();
        self.events.push_back(Event::Error(error));
    }

    fn mark_damaged(&mut self) {
        if let Some(doc) = &mut self.doc {
            doc.damaged = true;
        }
    }
}

/// Demuxes a whole buffer (tests, `inspect` on files, benchmarks).
pub fn demux_all(data: &[u8], cfg: DemuxConfig) -> Vec<Event> {
    let mut d = Demuxer::new(cfg);
    d.push(data);
    d.finish();
    std::iter::from_fn(|| d.next_event()).collect()
}
