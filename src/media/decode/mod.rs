//! Video decoding: length-prefixed frames from the demuxer → Annex-B → FFmpeg's libavcodec
//! ([`libav`]) → pictures in the decoder's own format; [`convert`] turns the ones that are
//! analysed into RGB.
//!
//! [`VideoDecoder`] owns the stream logic: it follows the video track of each document (H.264 in
//! `avcC` or Annex-B, H.265 in `hvcC`), puts the parameter sets in front of key frames, waits for
//! a key frame after a gap, damage or a failed frame, and opens a new backend when the codec
//! changes. A resolution or profile change in a new SPS is libavcodec's to follow. A codec it
//! cannot decode is reported once, naming the codec, not for every frame. Decoding is CPU work
//! (or an NVDEC session): run it on a blocking thread.

pub mod convert;
pub mod grey;
pub mod libav;
pub mod select;

use std::collections::{HashMap, VecDeque};

pub use libav::{LibavDecoder, Picture, probe_nvdec};

use super::avc::{self, AvcConfig};
use super::hevc::HevcConfig;
use super::{Frame, MediaError, Track, TrackKind};

/// The video codecs KVS carries that the service decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    /// The Matroska CodecID of a track.
    pub fn from_codec_id(id: &str) -> Option<Self> {
        match id {
            Track::H264 => Some(Self::H264),
            Track::H265 => Some(Self::H265),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "H.264",
            Self::H265 => "H.265",
        }
    }

    fn software_decoder(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::H265 => "hevc",
        }
    }

    fn nvdec_decoder(self) -> &'static str {
        match self {
            Self::H264 => "h264_cuvid",
            Self::H265 => "hevc_cuvid",
        }
    }
}

/// Where decoding runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Cpu,
    /// NVIDIA's hardware decoder, through libavcodec's cuvid decoders.
    Nvdec,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Nvdec => "nvdec",
        }
    }
}

/// How a camera's decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderSettings {
    pub backend: Backend,
    /// Software decoder threads (slice threading; frame threading when `frame_threads`).
    pub threads: usize,
    /// Frame threading: more throughput, a frame of latency per thread.
    pub frame_threads: bool,
}

impl Default for DecoderSettings {
    fn default() -> Self {
        Self { backend: Backend::Cpu, threads: 1, frame_threads: false }
    }
}

/// What one access unit and one picture may take (`media.*`), checked before libavcodec sees
/// the access unit: a frame over a limit is reported (naming the limit and the value) and
/// skipped, and decoding waits for the next key frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_frame_pixels: u64,
    pub max_access_unit_bytes: usize,
    pub max_nal_units: usize,
}

impl From<&crate::config::MediaConfig> for DecodeLimits {
    fn from(m: &crate::config::MediaConfig) -> Self {
        Self {
            max_frame_pixels: m.max_frame_pixels,
            max_access_unit_bytes: m.max_access_unit_bytes,
            max_nal_units: m.max_nal_units,
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        (&crate::config::MediaConfig::default()).into()
    }
}

impl DecodeLimits {
    /// The access unit's size, NAL units and any SPS's picture size against the limits.
    fn check(&self, codec: VideoCodec, annex_b: &[u8]) -> Result<(), MediaError> {
        let over = |what: String, key, max: u64| MediaError::OverLimit {
            what,
            key,
            max,
            action: "the frame is skipped and decoding waits for a key frame",
        };
        if annex_b.len() > self.max_access_unit_bytes {
            let what = format!("an access unit of {} bytes", annex_b.len());
            return Err(over(what, "max_access_unit_bytes", self.max_access_unit_bytes as u64));
        }
        let units = super::sps::count_nal_units(annex_b);
        if units > self.max_nal_units {
            return Err(over(
                format!("an access unit of {units} NAL units"),
                "max_nal_units",
                self.max_nal_units as u64,
            ));
        }
        for nal in super::sps::nal_units(annex_b) {
            if let Some((w, h)) = super::sps::coded_size(codec, nal)
                && w.saturating_mul(h) > self.max_frame_pixels
            {
                let what = format!("a {w}x{h} picture ({} pixels)", w.saturating_mul(h));
                return Err(over(what, "max_frame_pixels", self.max_frame_pixels));
            }
        }
        Ok(())
    }
}

/// A decoded frame with the timing of the encoded one.
#[derive(Debug)]
pub struct DecodedFrame {
    pub picture: Picture,
    pub timestamp_ns: i64,
    pub keyframe: bool,
    pub fragment_index: u64,
}

/// Running counts, for metrics and `inspect --decode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub decoded: u64,
    pub failed: u64,
    /// Frames dropped while waiting for a key frame.
    pub skipped: u64,
    /// New backends (codec changes) and resolution changes.
    pub resets: u64,
}

/// How a track's frames become Annex-B.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Framing {
    /// Length-prefixed NAL units, with the parameter sets (Annex-B) for key frames.
    LengthPrefixed { nal_length_size: usize, parameter_sets: Vec<u8> },
    /// Already Annex-B, parameter sets in band.
    AnnexB,
}

/// The video track being decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoTrack {
    number: u64,
    codec: VideoCodec,
    framing: Framing,
}

impl VideoTrack {
    fn of(track: &Track) -> Result<Self, MediaError> {
        let codec = VideoCodec::from_codec_id(&track.codec_id)
            .ok_or_else(|| MediaError::UnsupportedCodec { track: track.number, codec: track.codec_id.clone() })?;
        let framing = match (&track.codec_private, codec) {
            // No record, or not one (Annex-B streams start with a start code): in-band.
            (None, _) => Framing::AnnexB,
            (Some(p), _) if p.first() != Some(&1) => Framing::AnnexB,
            (Some(p), VideoCodec::H264) => {
                let c = AvcConfig::parse(p)?;
                Framing::LengthPrefixed {
                    nal_length_size: c.nal_length_size,
                    parameter_sets: c.parameter_sets_annex_b(),
                }
            }
            (Some(p), VideoCodec::H265) => {
                let c = HevcConfig::parse(p)?;
                Framing::LengthPrefixed {
                    nal_length_size: c.nal_length_size,
                    parameter_sets: c.parameter_sets_annex_b(),
                }
            }
        };
        Ok(Self { number: track.number, codec, framing })
    }
}

/// What an access unit in the decoder carries back out with its picture.
#[derive(Debug, Clone, Copy)]
struct Pending {
    timestamp_ns: i64,
    keyframe: bool,
    fragment_index: u64,
}

/// Pending access units kept at most (a decoder that swallows packets does not grow the map).
const MAX_PENDING: usize = 64;

/// Stream-level decoding over libavcodec: push tracks and frames, pull pictures. See the module
/// docs.
pub struct VideoDecoder {
    settings: DecoderSettings,
    limits: DecodeLimits,
    backend: Option<LibavDecoder>,
    track: Option<VideoTrack>,
    /// The unsupported codec last reported, so a stream of them is one error.
    unsupported: Option<String>,
    need_keyframe: bool,
    size: Option<(u32, u32)>,
    stats: DecodeStats,
    annex_b: Vec<u8>,
    pending: HashMap<i64, Pending>,
    seq: i64,
    ready: VecDeque<DecodedFrame>,
}

impl VideoDecoder {
    pub fn new(settings: DecoderSettings) -> Self {
        Self {
            settings,
            limits: DecodeLimits::default(),
            backend: None,
            track: None,
            unsupported: None,
            need_keyframe: true,
            size: None,
            stats: DecodeStats::default(),
            annex_b: Vec::new(),
            pending: HashMap::new(),
            seq: 0,
            ready: VecDeque::new(),
        }
    }

    /// Decodes within `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Number of the video track being decoded, if any.
    pub fn video_track(&self) -> Option<u64> {
        self.track.as_ref().map(|t| t.number)
    }

    /// The codec being decoded, if any.
    pub fn codec(&self) -> Option<VideoCodec> {
        self.track.as_ref().map(|t| t.codec)
    }

    /// The next decoded picture, if any.
    pub fn next_frame(&mut self) -> Option<DecodedFrame> {
        self.ready.pop_front()
    }

    /// A document's tracks: follow its first video track. A new codec opens a new backend; new
    /// parameter sets wait for a key frame. An error means the video track cannot be decoded
    /// (its frames are skipped); an unsupported codec is reported once while it lasts.
    pub fn push_tracks(&mut self, tracks: &[Track]) -> Result<(), MediaError> {
        let Some(video) = tracks.iter().find(|t| t.kind == TrackKind::Video) else {
            self.track = None;
            return Ok(());
        };
        let next = match VideoTrack::of(video) {
            Ok(next) => next,
            Err(e) => {
                self.track = None;
                let repeated = matches!(&e, MediaError::UnsupportedCodec { codec, .. }
                    if self.unsupported.as_deref() == Some(codec.as_str()));
                if let MediaError::UnsupportedCodec { codec, .. } = &e {
                    self.unsupported = Some(codec.clone());
                }
                return if repeated { Ok(()) } else { Err(e) };
            }
        };
        self.unsupported = None;
        if self.backend.as_ref().is_none_or(|b| b.codec() != next.codec) {
            self.finish()?;
            if self.backend.is_some() {
                self.stats.resets += 1;
            }
            self.backend = Some(LibavDecoder::open(next.codec, &self.settings, self.limits.max_frame_pixels)?);
            self.need_keyframe = true;
        } else if self.track.as_ref().is_some_and(|t| t.framing != next.framing) {
            self.finish()?;
        }
        self.track = Some(next);
        Ok(())
    }

    /// The stream had a gap (damage, resync, reconnect): wait for the next key frame.
    pub fn gap(&mut self) {
        self.need_keyframe = true;
    }

    /// Decodes one demuxed frame. Frames of other tracks and frames before the first key frame
    /// are ignored; a frame that fails (or comes out damaged) is counted, and decoding waits for
    /// the next key frame.
    pub fn push_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let (Some(track), Some(backend)) = (&self.track, &mut self.backend) else {
            return Ok(());
        };
        if frame.track != track.number {
            return Ok(());
        }
        if self.need_keyframe && !frame.keyframe {
            self.stats.skipped += 1;
            return Ok(());
        }
        let fail = |stats: &mut DecodeStats, need_keyframe: &mut bool, e: MediaError| {
            stats.failed += 1;
            *need_keyframe = true;
            Err(e)
        };
        // Before any copy: a frame too large for an access unit is not converted at all.
        if frame.data.len() > self.limits.max_access_unit_bytes {
            let e = MediaError::OverLimit {
                what: format!("a frame of {} bytes", frame.data.len()),
                key: "max_access_unit_bytes",
                max: self.limits.max_access_unit_bytes as u64,
                action: "the frame is skipped and decoding waits for a key frame",
            };
            return fail(&mut self.stats, &mut self.need_keyframe, e);
        }
        self.annex_b.clear();
        let converted = match &track.framing {
            Framing::LengthPrefixed { nal_length_size, parameter_sets } => {
                if frame.keyframe {
                    self.annex_b.extend_from_slice(parameter_sets);
                }
                avc::avcc_to_annex_b(&frame.data, *nal_length_size, &mut self.annex_b)
            }
            Framing::AnnexB => {
                self.annex_b.extend_from_slice(&frame.data);
                Ok(())
            }
        };
        if let Err(e) = converted.and_then(|()| self.limits.check(track.codec, &self.annex_b)) {
            return fail(&mut self.stats, &mut self.need_keyframe, e);
        }
        self.seq += 1;
        let seq = self.seq;
        let result = backend.decode(&self.annex_b, seq);
        match result {
            Ok(pictures) => {
                self.need_keyframe = false;
                let entry = Pending {
                    timestamp_ns: frame.timestamp_ns,
                    keyframe: frame.keyframe,
                    fragment_index: frame.fragment_index,
                };
                self.pending.insert(seq, entry);
                self.bound_pending();
                self.emit(pictures);
                Ok(())
            }
            Err(e) => {
                self.stats.failed += 1;
                self.need_keyframe = true;
                self.pending.clear();
                backend.reset();
                Err(e)
            }
        }
    }

    /// Collects the pictures the backend still holds: at the end of a fragment and of the
    /// stream. Decoding goes on at the next key frame (KVS fragments begin with one).
    pub fn finish(&mut self) -> Result<(), MediaError> {
        let Some(backend) = &mut self.backend else { return Ok(()) };
        if self.pending.is_empty() {
            return Ok(());
        }
        let drained = backend.drain();
        self.need_keyframe = true;
        match drained {
            Ok(pictures) => {
                self.emit(pictures);
                // Inputs that produced no picture were dropped by the decoder.
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.stats.failed += self.pending.len() as u64;
                self.pending.clear();
                Err(e)
            }
        }
    }

    fn bound_pending(&mut self) {
        while self.pending.len() > MAX_PENDING {
            if let Some(oldest) = self.pending.keys().min().copied() {
                self.pending.remove(&oldest);
            }
        }
    }

    fn emit(&mut self, pictures: Vec<(i64, Picture)>) {
        for (seq, picture) in pictures {
            let Some(p) = self.pending.remove(&seq) else {
                continue;
            };
            let size = (picture.width(), picture.height());
            if self.size.is_some_and(|s| s != size) {
                self.stats.resets += 1;
            }
            self.size = Some(size);
            self.stats.decoded += 1;
            let (timestamp_ns, keyframe, fragment_index) = (p.timestamp_ns, p.keyframe, p.fragment_index);
            self.ready.push_back(DecodedFrame { picture, timestamp_ns, keyframe, fragment_index });
        }
    }
}
