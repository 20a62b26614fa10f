//! Per-document state (one Matroska document is one KVS fragment): tracks, tags and the
//! fragment's metadata, clusters, and the events that open and close them.

use std::collections::BTreeMap;

use super::block::{count_block, parse_block_header};
use super::{Demuxer, MAX_TRACKS, State};
use crate::media::ebml::{self, ElementId, Vint};
use crate::media::kvs::{FragmentMeta, Tag};
use crate::media::{ClusterSummary, Event, FragmentSummary, MediaError, Track, TrackKind};

/// Matroska's default TimecodeScale: timecodes in milliseconds.
const DEFAULT_TIMECODE_SCALE: u64 = 1_000_000;

#[derive(Debug, Default)]
pub(super) struct TrackBuilder {
    pub(super) number: Option<u64>,
    pub(super) kind: Option<u64>,
    pub(super) codec_id: String,
    pub(super) codec_private: Option<Vec<u8>>,
    pub(super) width: Option<u32>,
    pub(super) height: Option<u32>,
}

#[derive(Debug, Default)]
pub(super) struct TagBuilder {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) trailing_nuls: usize,
    /// A name or value over `max_tag_bytes`: its size (the tag is dropped).
    pub(super) oversized: Option<usize>,
}

#[derive(Debug)]
pub(super) struct ClusterState {
    pub(super) summary: ClusterSummary,
}

#[derive(Debug, Default)]
pub(super) struct GroupBuilder {
    pub(super) block: Option<(u64, Vec<u8>)>,
    pub(super) has_reference: bool,
}

/// Per-document state.
#[derive(Debug)]
pub(super) struct Document {
    pub(super) index: u64,
    pub(super) offset: u64,
    pub(super) timecode_scale: u64,
    pub(super) tracks: Vec<Track>,
    pub(super) track: Option<TrackBuilder>,
    pub(super) tags: Vec<TagBuilder>,
    pub(super) meta: FragmentMeta,
    pub(super) started: bool,
    pub(super) cluster: Option<ClusterState>,
    pub(super) group: Option<GroupBuilder>,
    pub(super) clusters: u64,
    pub(super) blocks: u64,
    pub(super) keyframes: u64,
    pub(super) video_frames: u64,
    pub(super) video_keyframes: u64,
    pub(super) damaged: bool,
    /// More than [`MAX_TRACKS`] tracks were declared (reported once).
    pub(super) too_many_tracks: bool,
    /// Tags kept so far, and whether more than `max_tags` came (reported once).
    pub(super) tag_count: usize,
    pub(super) too_many_tags: bool,
}

impl Document {
    pub(super) fn new(index: u64, offset: u64) -> Self {
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
            too_many_tracks: false,
            tag_count: 0,
            too_many_tags: false,
        }
    }

    fn video_track(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video)
    }
}

impl Demuxer {
    pub(super) fn start_document(&mut self, at: u64) {
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

    pub(super) fn end_document(&mut self) {
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

    pub(super) fn end_of_stream(&mut self) {
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

    /// A SimpleBlock cut by the end of the stream still counts as a block if its header is
    /// still buffered (a block too large to buffer was stepped over: its header is gone).
    pub(super) fn count_partial_block(&mut self, start: u64) {
        let Some(bytes) = start.checked_sub(self.buf_start).and_then(|from| self.buf.get(from as usize..)) else {
            return;
        };
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

    pub(super) fn open(&mut self, id: ElementId, at: u64, size: Option<u64>) {
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

    pub(super) fn close_top(&mut self) {
        let Some(open) = self.stack.pop() else {
            return;
        };
        match open.id {
            ebml::SEGMENT => self.end_document(),
            ebml::TRACK_ENTRY => {
                let mut overflow = false;
                if let Some(doc) = &mut self.doc
                    && let Some(t) = doc.track.take()
                    && let Some(number) = t.number
                {
                    let kind = match t.kind {
                        Some(1) => TrackKind::Video,
                        Some(2) => TrackKind::Audio,
                        _ => TrackKind::Other,
                    };
                    if doc.tracks.len() < MAX_TRACKS {
                        let (codec_id, codec_private, width, height) = (t.codec_id, t.codec_private, t.width, t.height);
                        doc.tracks.push(Track { number, kind, codec_id, codec_private, width, height });
                    } else {
                        overflow = !std::mem::replace(&mut doc.too_many_tracks, true);
                    }
                }
                if overflow {
                    self.report(MediaError::TooManyTracks { offset: open.start, cap: MAX_TRACKS });
                }
            }
            ebml::TRACKS => {
                if let Some(doc) = &self.doc {
                    self.events.push_back(Event::Tracks(doc.tracks.clone()));
                }
            }
            ebml::SIMPLE_TAG => {
                let max_tags = self.cfg.max_tags;
                let mut over = None;
                if let Some(doc) = &mut self.doc
                    && let Some(t) = doc.tags.pop()
                {
                    if let Some(size) = t.oversized {
                        over = Some(MediaError::OverLimit {
                            what: format!("a tag of {size} bytes"),
                            key: "max_tag_bytes",
                            max: self.cfg.max_tag_bytes as u64,
                            action: "the tag is dropped",
                        });
                    } else {
                        let tag = Tag {
                            name: t.name,
                            value: t.value,
                            trailing_nuls: t.trailing_nuls,
                            after_cluster: doc.clusters > 0,
                        };
                        // KVS's own tags replace their value: they take no room. The rest count.
                        if doc.meta.apply_service(&tag) == Some(true) {
                            self.events.push_back(Event::Tag(tag));
                        } else if doc.tag_count < max_tags {
                            doc.tag_count += 1;
                            doc.meta.other_tags.push(tag.clone());
                            self.events.push_back(Event::Tag(tag));
                        } else if !std::mem::replace(&mut doc.too_many_tags, true) {
                            over = Some(MediaError::OverLimit {
                                what: format!("tag {} of a fragment", max_tags + 1),
                                key: "max_tags_per_fragment",
                                max: max_tags as u64,
                                action: "the fragment's further tags are dropped",
                            });
                        }
                    }
                }
                if let Some(e) = over {
                    // Not damage: the media is whole, only metadata was left out.
                    self.events.push_back(Event::Error(e));
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

    pub(super) fn leaf(&mut self, id: ElementId, at: u64, payload: &[u8]) {
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
            ebml::TAG_NAME | ebml::TAG_STRING => {
                let max = self.cfg.max_tag_bytes;
                if let Some(t) = doc.tags.last_mut() {
                    if payload.len() > max {
                        t.oversized = Some(payload.len());
                    } else if id == ebml::TAG_NAME {
                        t.name = ebml::read_string(payload).0;
                    } else {
                        (t.value, t.trailing_nuls) = ebml::read_string(payload);
                    }
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
}

fn set(track: &mut Option<TrackBuilder>, f: impl FnOnce(&mut TrackBuilder)) {
    if let Some(t) = track {
        f(t);
    }
}
