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

use std::collections::{BTreeMap, VecDeque};

use super::ebml::{self, ElementId, Kind, Vint};
use super::kvs::{FragmentMeta, Tag};
use super::{ClusterSummary, Event, FragmentSummary, Frame, MediaError, Track, TrackKind};

/// The Cluster id's bytes, a resync point.
const CLUSTER_ID: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
/// Default cap on any single element's payload: a 4K key frame fits many times over.
pub const DEFAULT_MAX_ELEMENT_SIZE: usize = 32 * 1024 * 1024;
/// Matroska's default TimecodeScale: timecodes in milliseconds.
const DEFAULT_TIMECODE_SCALE: u64 = 1_000_000;
/// Longest element header: a 4-byte id and an 8-byte size.
const MAX_HEADER: usize = 12;
/// Bytes needed after a candidate EBML header id to tell a real header from chance.
const EBML_PROBE: usize = 4 + 8 + 2;
/// Compact the buffer once this much of it is consumed.
const COMPACT_AT: usize = 256 * 1024;

/// Demuxer limits.
#[derive(Debug, Clone, Copy)]
pub struct DemuxConfig {
    /// Largest element payload that is buffered; a bigger one is an error and is skipped.
    pub max_element_size: usize,
}

impl Default for DemuxConfig {
    fn default() -> Self {
        Self { max_element_size: DEFAULT_MAX_ELEMENT_SIZE }
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

#[derive(Debug, Default)]
struct TrackBuilder {
    number: Option<u64>,
    kind: Option<u64>,
    codec_id: String,
    codec_private: Option<Vec<u8>>,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Debug, Default)]
struct TagBuilder {
    name: String,
    value: String,
    trailing_nuls: usize,
}

#[derive(Debug)]
struct ClusterState {
    summary: ClusterSummary,
}

#[derive(Debug, Default)]
struct GroupBuilder {
    block: Option<(u64, Vec<u8>)>,
    has_reference: bool,
}

/// Per-document state.
#[derive(Debug)]
struct Document {
    index: u64,
    offset: u64,
    timecode_scale: u64,
    tracks: Vec<Track>,
    track: Option<TrackBuilder>,
    tags: Vec<TagBuilder>,
    meta: FragmentMeta,
    started: bool,
    cluster: Option<ClusterState>,
    group: Option<GroupBuilder>,
    clusters: u64,
    blocks: u64,
    keyframes: u64,
    video_frames: u64,
    video_keyframes: u64,
    damaged: bool,
}

impl Document {
    fn new(index: u64, offset: u64) -> Self {
        Self {
            index,
            offset,
            timecode_scale: DEFAULT_TIMECODE_SCALE,
            tracks: Vec::new(),
            track: None,
            tags: Vec::new(),
            meta: FragmentMeta::default(),
            started: false,
            cluster: None,
            group: None,
            clusters: 0,
            blocks: 0,
            keyframes: 0,
            video_frames: 0,
            video_keyframes: 0,
            damaged: false,
        }
    }

    fn video_track(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video)
    }
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

    fn read_header(&mut self) -> Step {
        let at = self.abs();
        // Close known-size containers that end here.
        while let Some(top) = self.stack.last() {
            match top.end {
                Some(end) if end <= at => self.close_top(),
                _ => break,
            }
        }
        let (id, id_len) = match ebml::read_id(self.avail()) {
            Vint::Value { value, len, .. } => (value as ElementId, len),
            Vint::Incomplete => return Step::NeedData,
            Vint::Invalid => {
                self.fail(MediaError::InvalidId { offset: at });
                return Step::Progress;
            }
        };
        let (size, size_len, unknown) = match ebml::read_size(&self.avail()[id_len..]) {
            Vint::Value { value, len, unknown } => (value, len, unknown),
            Vint::Incomplete => return Step::NeedData,
            Vint::Invalid => {
                self.fail(MediaError::InvalidSize { offset: at });
                return Step::Progress;
            }
        };
        let data_start = at + (id_len + size_len) as u64;
        let size = (!unknown).then_some(size);

        if id == ebml::EBML {
            self.start_document(at);
        } else {
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
                return Step::Progress;
            }
        }
        if let (Some(size), Some(parent_end)) = (size, self.stack.last().and_then(|t| t.end))
            && data_start + size > parent_end
        {
            self.fail(MediaError::Overrun { offset: at, name: ebml::name(id), size, parent_end });
            return Step::Progress;
        }
        self.pos += id_len + size_len;

        let kind = ebml::describe(id).map_or(Kind::Skip, |(k, _)| k);
        match (kind, size) {
            (Kind::Master, _) | (Kind::Skip, None) => {
                if ebml::describe(id).is_none() && size.is_none() {
                    // An unknown element of unknown size cannot be stepped over.
                    self.fail(MediaError::UnknownSizeLeaf { offset: at, name: ebml::name(id) });
                    return Step::Progress;
                }
                self.stack.push(Open { id, start: at, end: size.map(|s| data_start + s) });
                self.open(id, at, size);
            }
            (Kind::Leaf, None) => {
                self.fail(MediaError::UnknownSizeLeaf { offset: at, name: ebml::name(id) });
            }
            (Kind::Leaf, Some(size)) if size > self.cfg.max_element_size as u64 => {
                self.report(MediaError::ElementTooLarge {
                    offset: at,
                    name: ebml::name(id),
                    size,
                    cap: self.cfg.max_element_size as u64,
                });
                self.state = State::Payload {
                    id,
                    start: at,
                    data_start,
                    end: data_start + size,
                    keep: false,
                    scanned: data_start,
                };
            }
            (kind, Some(size)) => {
                let keep = kind == Kind::Leaf;
                self.state =
                    State::Payload { id, start: at, data_start, end: data_start + size, keep, scanned: data_start };
            }
        }
        Step::Progress
    }

    fn read_payload(&mut self) -> Step {
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

    fn resync(&mut self) -> Step {
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

    fn start_document(&mut self, at: u64) {
        // Whatever is still open belongs to the previous document.
        let cut = self.stack.iter().any(|o| o.end.is_some_and(|end| end > at));
        if cut
            && !std::mem::take(&mut self.cut_reported)
            && let Some(open) = self.stack.last()
        {
            let (name, element_offset) = (ebml::name(open.id), open.start);
            self.report(MediaError::CutByNewDocument { offset: at, name, element_offset });
        }
        self.cut_reported = false;
        while !self.stack.is_empty() {
            self.close_top();
        }
        self.end_document();
        let index = self.next_index;
        self.next_index += 1;
        self.doc = Some(Document::new(index, at));
        self.events.push_back(Event::DocumentStart { index, offset: at });
    }

    fn end_document(&mut self) {
        let Some(mut doc) = self.doc.take() else {
            return;
        };
        if !doc.started {
            self.events.push_back(Event::FragmentStart {
                index: doc.index,
                offset: doc.offset,
                meta: doc.meta.clone(),
            });
            doc.started = true;
        }
        if let Some(err) = &doc.meta.error {
            self.events.push_back(Event::Error(MediaError::KvsError {
                offset: doc.offset,
                code: err.code.clone(),
                id: err.id.clone(),
            }));
        }
        let video = doc.video_track();
        let summary = FragmentSummary {
            index: doc.index,
            offset: doc.offset,
            codec: video.map(|t| t.codec_id.clone()),
            width: video.and_then(|t| t.width),
            height: video.and_then(|t| t.height),
            meta: doc.meta,
            clusters: doc.clusters,
            blocks: doc.blocks,
            keyframes: doc.keyframes,
            video_frames: doc.video_frames,
            video_keyframes: doc.video_keyframes,
            damaged: doc.damaged,
        };
        self.events.push_back(Event::FragmentEnd(summary));
    }

    fn end_of_stream(&mut self) {
        let at = self.buf_start + self.buf.len() as u64;
        match self.state {
            State::Payload { id, start, end, .. } if end > at => {
                if id == ebml::SIMPLE_BLOCK {
                    self.count_partial_block(start);
                }
                self.report(MediaError::Truncated {
                    offset: at,
                    name: ebml::name(id),
                    element_offset: start,
                    missing: end - at,
                });
            }
            State::Header if self.pos < self.buf.len() => {
                let start = self.abs();
                self.report(MediaError::Truncated {
                    offset: at,
                    name: "element header",
                    element_offset: start,
                    missing: 1,
                });
            }
            _ => {}
        }
        if let Some(open) = self.stack.iter().find(|o| o.end.is_some_and(|end| end > at)) {
            let (name, element_offset, missing) = (ebml::name(open.id), open.start, open.end.unwrap_or(at) - at);
            if !matches!(self.state, State::Payload { .. }) {
                self.report(MediaError::Truncated { offset: at, name, element_offset, missing });
            }
        }
        while !self.stack.is_empty() {
            self.close_top();
        }
        self.end_document();
        self.pos = self.buf.len();
        self.done = true;
    }

    /// A SimpleBlock cut by the end of the stream still counts as a block if its header is there.
    fn count_partial_block(&mut self, start: u64) {
        let from = (start - self.buf_start) as usize;
        let bytes = &self.buf[from..];
        let header = match ebml::read_id(bytes) {
            Vint::Value { len: id_len, .. } => match ebml::read_size(&bytes[id_len..]) {
                Vint::Value { len: size_len, .. } => {
                    bytes.get(id_len + size_len..).and_then(|b| parse_block_header(b).ok())
                }
                _ => None,
            },
            _ => None,
        };
        if let (Some(h), Some(doc)) = (header, &mut self.doc)
            && let Some(cluster) = &mut doc.cluster
        {
            count_block(&mut cluster.summary, h.track, h.timecode, h.keyframe);
            doc.blocks += 1;
            doc.keyframes += u64::from(h.keyframe);
        }
    }

    fn open(&mut self, id: ElementId, at: u64, size: Option<u64>) {
        let Some(doc) = &mut self.doc else {
            return;
        };
        match id {
            ebml::TRACK_ENTRY => doc.track = Some(TrackBuilder::default()),
            ebml::SIMPLE_TAG => doc.tags.push(TagBuilder::default()),
            ebml::BLOCK_GROUP => doc.group = Some(GroupBuilder::default()),
            ebml::TRACKS => doc.tracks.clear(),
            ebml::CLUSTER => {
                if !doc.started {
                    doc.started = true;
                    let event = Event::FragmentStart { index: doc.index, offset: doc.offset, meta: doc.meta.clone() };
                    self.events.push_back(event);
                }
                doc.clusters += 1;
                doc.cluster = Some(ClusterState {
                    summary: ClusterSummary {
                        offset: at,
                        size,
                        timecode: 0,
                        blocks: 0,
                        keyframes: 0,
                        first_block_timecode: None,
                        last_block_timecode: None,
                        blocks_per_track: BTreeMap::new(),
                    },
                });
            }
            _ => {}
        }
    }

    fn close_top(&mut self) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        match open.id {
            ebml::SEGMENT => self.end_document(),
            ebml::TRACK_ENTRY => {
                if let Some(doc) = &mut self.doc
                    && let Some(t) = doc.track.take()
                {
                    let kind = match t.kind {
                        Some(1) => TrackKind::Video,
                        Some(2) => TrackKind::Audio,
                        _ => TrackKind::Other,
                    };
                    if let Some(number) = t.number {
                        doc.tracks.push(Track {
                            number,
                            kind,
                            codec_id: t.codec_id,
                            codec_private: t.codec_private,
                            width: t.width,
                            height: t.height,
                        });
                    }
                }
            }
            ebml::TRACKS => {
                if let Some(doc) = &self.doc {
                    self.events.push_back(Event::Tracks(doc.tracks.clone()));
                }
            }
            ebml::SIMPLE_TAG => {
                if let Some(doc) = &mut self.doc
                    && let Some(t) = doc.tags.pop()
                {
                    let tag = Tag {
                        name: t.name,
                        value: t.value,
                        trailing_nuls: t.trailing_nuls,
                        after_cluster: doc.clusters > 0,
                    };
                    doc.meta.apply(&tag);
                    self.events.push_back(Event::Tag(tag));
                }
            }
            ebml::BLOCK_GROUP => {
                if let Some(doc) = &mut self.doc
                    && let Some(g) = doc.group.take()
                    && let Some((offset, block)) = g.block
                {
                    self.block(offset, &block, Some(!g.has_reference));
                }
            }
            ebml::CLUSTER => {
                if let Some(doc) = &mut self.doc
                    && let Some(c) = doc.cluster.take()
                {
                    self.events.push_back(Event::ClusterEnd(c.summary));
                }
            }
            _ => {}
        }
    }

    fn leaf(&mut self, id: ElementId, at: u64, payload: &[u8]) {
        let Some(doc) = &mut self.doc else {
            return;
        };
        let uint = || ebml::read_uint(payload);
        match id {
            ebml::TIMECODE_SCALE => {
                if let Some(v) = uint().filter(|&v| v > 0) {
                    doc.timecode_scale = v;
                }
            }
            ebml::TRACK_NUMBER => set(&mut doc.track, |t| t.number = uint()),
            ebml::TRACK_TYPE => set(&mut doc.track, |t| t.kind = uint()),
            ebml::CODEC_ID => set(&mut doc.track, |t| t.codec_id = ebml::read_string(payload).0),
            ebml::CODEC_PRIVATE => set(&mut doc.track, |t| t.codec_private = Some(payload.to_vec())),
            ebml::PIXEL_WIDTH => set(&mut doc.track, |t| t.width = uint().and_then(|v| u32::try_from(v).ok())),
            ebml::PIXEL_HEIGHT => set(&mut doc.track, |t| t.height = uint().and_then(|v| u32::try_from(v).ok())),
            ebml::TAG_NAME => {
                if let Some(t) = doc.tags.last_mut() {
                    t.name = ebml::read_string(payload).0;
                }
            }
            ebml::TAG_STRING => {
                if let Some(t) = doc.tags.last_mut() {
                    (t.value, t.trailing_nuls) = ebml::read_string(payload);
                }
            }
            ebml::TIMECODE => {
                if let (Some(c), Some(v)) = (&mut doc.cluster, uint()) {
                    c.summary.timecode = i64::try_from(v).unwrap_or(i64::MAX);
                }
            }
            ebml::SIMPLE_BLOCK => self.block(at, payload, None),
            ebml::BLOCK => {
                if let Some(g) = &mut doc.group {
                    g.block = Some((at, payload.to_vec()));
                }
            }
            ebml::REFERENCE_BLOCK => {
                if let Some(g) = &mut doc.group {
                    g.has_reference = true;
                }
            }
            _ => {}
        }
    }

    /// A SimpleBlock (`keyframe` from its flags) or a BlockGroup's Block (`keyframe` given).
    fn block(&mut self, at: u64, payload: &[u8], keyframe: Option<bool>) {
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

fn set(track: &mut Option<TrackBuilder>, f: impl FnOnce(&mut TrackBuilder)) {
    if let Some(t) = track {
        f(t);
    }
}

fn count_block(c: &mut ClusterSummary, track: u64, timecode: i16, keyframe: bool) {
    c.blocks += 1;
    c.keyframes += u64::from(keyframe);
    c.first_block_timecode.get_or_insert(timecode);
    c.last_block_timecode = Some(timecode);
    *c.blocks_per_track.entry(track).or_default() += 1;
}

enum Scan {
    Found(u64),
    Undecided(u64),
    Clear(u64),
}

/// Is this an EBML header (magic, a sane size, then an EBML header child)? `None`: need more bytes.
fn looks_like_ebml_header(b: &[u8]) -> Option<bool> {
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

/// Block header: track number, relative timecode, flags.
struct BlockHeader {
    track: u64,
    timecode: i16,
    keyframe: bool,
    lacing: u8,
    len: usize,
}

fn parse_block_header(p: &[u8]) -> Result<BlockHeader, &'static str> {
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
                    prev + (i64::try_from(value).map_err(|_| "EBML lace size too large")? - bias)
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
    let used: usize = sizes.iter().sum();
    let last = data.len().checked_sub(at + used).ok_or("lace sizes exceed the block")?;
    sizes.push(last);
    let mut laces = Vec::with_capacity(count);
    for size in sizes {
        laces.push(&data[at..at + size]);
        at += size;
    }
    Ok(laces)
}

/// Demuxes a whole buffer (tests, `inspect` on files, benchmarks).
pub fn demux_all(data: &[u8], cfg: DemuxConfig) -> Vec<Event> {
    let mut d = Demuxer::new(cfg);
    d.push(data);
    d.finish();
    std::iter::from_fn(|| d.next_event()).collect()
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

    #[test]
    fn ebml_header_probe() {
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x42, 0x86]), Some(true));
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3, 0x12, 0x86]), Some(false));
        assert_eq!(looks_like_ebml_header(&[0x1A, 0x45, 0xDF, 0xA3, 0xA3]), None);
        assert_eq!(looks_like_cluster(&[0x1F, 0x43, 0xB6, 0x75, 0xFF, 0xE7]), Some(true));
        assert_eq!(looks_like_cluster(&[0x1F, 0x43, 0xB6, 0x75, 0x81, 0x00]), Some(false));
    }
}
