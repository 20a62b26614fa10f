//! H.264 decoding: AVCC frames from the demuxer → Annex-B → a [`Decoder`] backend → pictures.
//!
//! [`VideoDecoder`] owns the stream logic: it follows the video track of each document, puts SPS
//! and PPS from CodecPrivate in front of key frames, waits for a key frame after a gap, a resync
//! or a failed frame, and starts a fresh backend when the parameter sets change. The backend is
//! a trait so that a GPU decoder (NVDEC) can replace OpenH264 later. Decoding is CPU work: run it
//! on a blocking thread, never on an async worker.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use openh264::formats::YUVSource;

use super::avc::{self, AvcConfig};
use super::{Frame, MediaError, Track, TrackKind};

/// A decoded picture in planar YUV 4:2:0, tightly packed (no stride padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yuv420 {
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

/// What a backend produces.
#[derive(Debug, Clone)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// RGB24, row-major, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// The decoder's own YUV output, when asked for (parity tests, `inspect --decode`).
    pub yuv: Option<Yuv420>,
}

/// An H.264 decoder backend: Annex-B access units in, pictures out.
pub trait Decoder: Send {
    /// Decodes one access unit; `Ok(None)` when no picture is ready yet.
    fn decode(&mut self, annex_b: &[u8]) -> Result<Option<Picture>, MediaError>;
    /// Returns the pictures still held for reordering (end of a fragment or of the stream).
    fn flush(&mut self) -> Result<Vec<Picture>, MediaError>;
    /// Drops all state, as if newly created (new SPS, new resolution, after damage).
    fn reset(&mut self) -> Result<(), MediaError>;
}

/// The OpenH264 software decoder.
pub struct OpenH264Decoder {
    inner: openh264::decoder::Decoder,
    keep_yuv: bool,
}

impl OpenH264Decoder {
    /// `keep_yuv`: also return the YUV planes (costs a copy per frame).
    pub fn new(keep_yuv: bool) -> Result<Self, MediaError> {
        Ok(Self { inner: new_openh264()?, keep_yuv })
    }
}

fn new_openh264() -> Result<openh264::decoder::Decoder, MediaError> {
    use openh264::decoder::{Decoder, DecoderConfig, Flush};
    // The crate's default flushes after every call, which corrupts OpenH264's state on Main
    // profile streams (dsOutOfMemory, then dsNoParamSets): pictures come out one call late
    // instead, and `flush` collects the rest.
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    Decoder::with_api_config(openh264::OpenH264API::from_source(), config)
        .map_err(|e| MediaError::Decoder { reason: e.to_string() })
}

fn decoder_error(e: openh264::Error) -> MediaError {
    MediaError::Decoder { reason: e.to_string() }
}

/// Copies a plane out of a strided buffer.
fn tight(plane: &[u8], stride: usize, width: usize, height: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(width * height);
    for row in plane.chunks(stride).take(height) {
        out.extend_from_slice(&row[..width.min(row.len())]);
    }
    out
}

impl OpenH264Decoder {
    /// Converts a decoder picture (borrowed from the decoder) into an owned [`Picture`].
    fn convert(yuv: &openh264::decoder::DecodedYUV<'_>, keep_yuv: bool) -> Option<Picture> {
        let (w, h) = yuv.dimensions();
        if w == 0 || h == 0 {
            return None;
        }
        let mut rgb = vec![0u8; w * h * 3];
        yuv.write_rgb8(&mut rgb);
        let planes = keep_yuv.then(|| {
            let (sy, su, sv) = yuv.strides();
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            Yuv420 { y: tight(yuv.y(), sy, w, h), u: tight(yuv.u(), su, cw, ch), v: tight(yuv.v(), sv, cw, ch) }
        });
        let (width, height) = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
        Some(Picture { width, height, rgb, yuv: planes })
    }
}

impl Decoder for OpenH264Decoder {
    fn decode(&mut self, annex_b: &[u8]) -> Result<Option<Picture>, MediaError> {
        let keep_yuv = self.keep_yuv;
        let yuv = self.inner.decode(annex_b).map_err(decoder_error)?;
        Ok(yuv.as_ref().and_then(|y| Self::convert(y, keep_yuv)))
    }

    fn flush(&mut self) -> Result<Vec<Picture>, MediaError> {
        let keep_yuv = self.keep_yuv;
        let pictures = self.inner.flush_remaining().map_err(decoder_error)?;
        Ok(pictures.iter().filter_map(|y| Self::convert(y, keep_yuv)).collect())
    }

    fn reset(&mut self) -> Result<(), MediaError> {
        self.inner = new_openh264()?;
        Ok(())
    }
}

/// A decoded frame with the timing of the encoded one.
#[derive(Debug, Clone)]
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
    /// Backend restarts (new parameter sets) and resolution changes.
    pub resets: u64,
}

/// The video track being decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoTrack {
    number: u64,
    avc: AvcConfig,
}

/// An encoded frame sent to the backend whose picture has not come out yet. Pictures leave a
/// decoder in presentation order, so each takes the earliest pending timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    timestamp_ns: i64,
    seq: u64,
    keyframe: bool,
    fragment_index: u64,
}

/// Stream-level decoding over a [`Decoder`] backend: push tracks and frames, pull pictures.
/// See the module docs.
pub struct VideoDecoder<D: Decoder> {
    backend: D,
    track: Option<VideoTrack>,
    need_keyframe: bool,
    size: Option<(u32, u32)>,
    stats: DecodeStats,
    annex_b: Vec<u8>,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    ready: VecDeque<DecodedFrame>,
}

impl<D: Decoder> VideoDecoder<D> {
    pub fn new(backend: D) -> Self {
        Self {
            backend,
            track: None,
            need_keyframe: true,
            size: None,
            stats: DecodeStats::default(),
            annex_b: Vec::new(),
            pending: BinaryHeap::new(),
            seq: 0,
            ready: VecDeque::new(),
        }
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Number of the video track being decoded, if any.
    pub fn video_track(&self) -> Option<u64> {
        self.track.as_ref().map(|t| t.number)
    }

    /// The next decoded picture, if any.
    pub fn next_frame(&mut self) -> Option<DecodedFrame> {
        self.ready.pop_front()
    }

    /// A document's tracks: follow its first video track. New parameter sets flush and restart
    /// the backend. An error means the video track cannot be decoded (its frames are skipped).
    pub fn push_tracks(&mut self, tracks: &[Track]) -> Result<(), MediaError> {
        let Some(video) = tracks.iter().find(|t| t.kind == TrackKind::Video) else {
            self.track = None;
            return Ok(());
        };
        if !video.is_h264() {
            self.track = None;
            return Err(MediaError::UnsupportedCodec { track: video.number, codec: video.codec_id.clone() });
        }
        let private = video
            .codec_private
            .as_deref()
            .ok_or_else(|| MediaError::BadCodecPrivate { reason: "H.264 track without CodecPrivate".into() })?;
        let next = VideoTrack { number: video.number, avc: AvcConfig::parse(private)? };
        if self.track.as_ref().is_some_and(|t| t.avc != next.avc) {
            self.finish()?;
            self.stats.resets += 1;
            self.need_keyframe = true;
            self.backend.reset()?;
        }
        self.track = Some(next);
        Ok(())
    }

    /// The stream had a gap (damage, resync, reconnect): wait for the next key frame.
    pub fn gap(&mut self) {
        self.need_keyframe = true;
    }

    /// Decodes one demuxed frame. Frames of other tracks and frames before the first key frame
    /// are ignored; a frame that fails is counted, and decoding waits for the next key frame.
    pub fn push_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let Some(track) = &self.track else {
            return Ok(());
        };
        if frame.track != track.number {
            return Ok(());
        }
        if self.need_keyframe && !frame.keyframe {
            self.stats.skipped += 1;
            return Ok(());
        }
        self.annex_b.clear();
        if frame.keyframe {
            self.annex_b.extend_from_slice(&track.avc.parameter_sets_annex_b());
        }
        let result = avc::avcc_to_annex_b(&frame.data, track.avc.nal_length_size, &mut self.annex_b)
            .and_then(|()| self.backend.decode(&self.annex_b));
        match result {
            Ok(picture) => {
                self.need_keyframe = false;
                self.seq += 1;
                self.pending.push(Reverse(Pending {
                    timestamp_ns: frame.timestamp_ns,
                    seq: self.seq,
                    keyframe: frame.keyframe,
                    fragment_index: frame.fragment_index,
                }));
                if let Some(picture) = picture {
                    self.emit(picture);
                }
                Ok(())
            }
            Err(e) => {
                self.stats.failed += 1;
                self.need_keyframe = true;
                self.pending.clear();
                // A broken reference chain can leave the backend unusable; start it afresh.
                self.backend.reset()?;
                Err(e)
            }
        }
    }

    /// Collects the pictures the backend still holds: call at the end of a fragment and at the
    /// end of the stream. OpenH264 cannot go on decoding after a flush, so the backend starts
    /// afresh and waits for a key frame; KVS fragments always begin with one.
    pub fn finish(&mut self) -> Result<(), MediaError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.backend.flush() {
            Ok(pictures) => pictures.into_iter().for_each(|p| self.emit(p)),
            Err(_) => self.stats.failed += self.pending.len() as u64,
        }
        // Inputs that produced no picture were dropped by the decoder.
        self.pending.clear();
        self.need_keyframe = true;
        self.backend.reset()
    }

    fn emit(&mut self, picture: Picture) {
        let Some(Reverse(p)) = self.pending.pop() else {
            return;
        };
        let size = (picture.width, picture.height);
        if self.size.is_some_and(|s| s != size) {
            self.stats.resets += 1;
        }
        self.size = Some(size);
        self.stats.decoded += 1;
        self.ready.push_back(DecodedFrame {
            picture,
            timestamp_ns: p.timestamp_ns,
            keyframe: p.keyframe,
            fragment_index: p.fragment_index,
        });
    }
}
