//! Media: the streaming MKV/KVS demuxer, KVS fragment metadata and H.264 decoding.
//!
//! Bytes arrive in any chunking ([`demux::Demuxer::push`]) and come out as typed [`Event`]s:
//! documents (one per KVS fragment), tracks, tags, frames, per-cluster and per-fragment
//! summaries, and errors. Damage never stops the stream: an error event names the offset and the
//! demuxer carries on at the next EBML header or Cluster. Video frames go through
//! [`decode::VideoDecoder`] (length-prefixed or Annex-B H.264/H.265 → libavcodec, in software or
//! on NVDEC) to pictures; [`stream::FrameStream`] puts it together for a camera.

pub mod avc;
pub mod decode;
pub mod demux;
pub mod draw;
pub mod ebml;
pub mod hevc;
pub mod image;
pub mod inspect;
pub mod kvs;
pub mod progress;
pub mod sps;
pub mod stream;

use serde::Serialize;

pub use kvs::{FragmentMeta, FragmentNumber, KvsStreamError, KvsTimestamp, Tag};

/// Errors of the media layer. Demux errors carry the byte offset in the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("offset {offset}: invalid EBML element id")]
    InvalidId { offset: u64 },
    #[error("offset {offset}: invalid EBML element size")]
    InvalidSize { offset: u64 },
    #[error("offset {offset}: {name} of {size} bytes is over the {cap}-byte element limit")]
    ElementTooLarge { offset: u64, name: &'static str, size: u64, cap: u64 },
    #[error("offset {offset}: {name} of {size} bytes runs past the end of its parent at {parent_end}")]
    Overrun { offset: u64, name: &'static str, size: u64, parent_end: u64 },
    #[error("offset {offset}: element 0x{id:X} cannot appear inside {parent}")]
    Misplaced { offset: u64, id: u32, parent: &'static str },
    #[error("offset {offset}: {name} would be container {depth} deep, over the limit of {cap}")]
    TooDeep { offset: u64, name: &'static str, depth: usize, cap: usize },
    #[error("offset {offset}: more than {cap} tracks in one document; the rest are ignored")]
    TooManyTracks { offset: u64, cap: usize },
    #[error("offset {offset}: {name} has an unknown size, which only container elements may have")]
    UnknownSizeLeaf { offset: u64, name: &'static str },
    #[error("offset {offset}: bad block: {reason}")]
    BadBlock { offset: u64, reason: &'static str },
    #[error("offset {offset}: {name} starting at {element_offset} is cut short: a new document starts at {offset}")]
    CutByNewDocument { offset: u64, name: &'static str, element_offset: u64 },
    #[error("offset {offset}: stream ended inside {name} starting at {element_offset} ({missing} bytes missing)")]
    Truncated { offset: u64, name: &'static str, element_offset: u64, missing: u64 },
    #[error("offset {offset}: KVS reported error {code} (id {id:?}) for this fragment")]
    KvsError { offset: u64, code: String, id: Option<String> },
    #[error("bad CodecPrivate: {reason}")]
    BadCodecPrivate { reason: String },
    #[error("bad frame: {reason}")]
    BadFrame { reason: &'static str },
    #[error("video decoder: {reason}")]
    Decoder { reason: String },
    #[error("video decoder {decoder} is not usable: {reason}")]
    DecoderUnavailable { decoder: &'static str, reason: String },
    #[error("cannot convert the picture to RGB: {reason}")]
    Convert { reason: String },
    #[error("track {track} uses codec {codec}, which this service does not decode")]
    UnsupportedCodec { track: u64, codec: String },
    /// A configured limit (`media.<key>`) was reached before the allocation it guards.
    #[error("{what} is over media.{key} ({max}); {action}")]
    OverLimit { what: String, key: &'static str, max: u64, action: &'static str },
}

impl MediaError {
    /// The byte offset, for errors found while demuxing.
    pub fn offset(&self) -> Option<u64> {
        use MediaError::*;
        match self {
            InvalidId { offset }
            | InvalidSize { offset }
            | ElementTooLarge { offset, .. }
            | Overrun { offset, .. }
            | TooDeep { offset, .. }
            | TooManyTracks { offset, .. }
            | Misplaced { offset, .. }
            | UnknownSizeLeaf { offset, .. }
            | BadBlock { offset, .. }
            | CutByNewDocument { offset, .. }
            | Truncated { offset, .. }
            | KvsError { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Track type from Matroska's TrackType.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// A track of the current document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub number: u64,
    pub kind: TrackKind,
    pub codec_id: String,
    pub codec_private: Option<Vec<u8>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Track {
    pub const H264: &'static str = "V_MPEG4/ISO/AVC";
    pub const H265: &'static str = "V_MPEGH/ISO/HEVC";
}

/// One encoded frame (one Block, or one lace of a laced Block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: u64,
    /// (Cluster timecode + block timecode) × TimecodeScale, in nanoseconds.
    pub timestamp_ns: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
    /// Which document (fragment) of the stream it belongs to, from 0.
    pub fragment_index: u64,
    /// Offset of its Block element.
    pub offset: u64,
}

/// Counts for one Cluster, emitted when it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSummary {
    pub offset: u64,
    /// Payload size; `None` for unknown-size clusters.
    pub size: Option<u64>,
    pub timecode: i64,
    pub blocks: u64,
    pub keyframes: u64,
    pub first_block_timecode: Option<i16>,
    pub last_block_timecode: Option<i16>,
    /// Blocks per track number.
    pub blocks_per_track: std::collections::BTreeMap<u64, u64>,
}

/// A finished document (KVS fragment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FragmentSummary {
    pub index: u64,
    pub offset: u64,
    pub meta: FragmentMeta,
    pub clusters: u64,
    pub blocks: u64,
    pub keyframes: u64,
    /// Video frames (of video tracks) delivered whole.
    pub video_frames: u64,
    pub video_keyframes: u64,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Damage was found inside it (the error events say where).
    pub damaged: bool,
}

/// What the demuxer yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Matroska document (one KVS fragment) starts at `offset`.
    DocumentStart {
        index: u64,
        offset: u64,
    },
    /// The document's tracks, when its Tracks element is complete.
    Tracks(Vec<Track>),
    /// One SimpleTag.
    Tag(Tag),
    /// The document's first Cluster starts: the fragment's metadata from the tags before it.
    FragmentStart {
        index: u64,
        offset: u64,
        meta: FragmentMeta,
    },
    Frame(Frame),
    ClusterEnd(ClusterSummary),
    /// The document is complete (or cut short: `damaged`).
    FragmentEnd(FragmentSummary),
    /// Damage or a KVS error fragment; the stream goes on.
    Error(MediaError),
}
