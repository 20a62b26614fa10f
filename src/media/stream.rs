//! The frame stream: a source's bytes in, decoded frames out, each frame once.
//!
//! [`FrameStream`] owns demux and decode for one camera and hides the source's sessions: when a
//! session ends (a KVS GetMedia body closes, breaks or goes quiet) the demuxer and decoder start
//! over for the next one, and frames at or before the newest one already returned are decoded
//! (as references) but not returned again, so a fragment re-read after a broken connection is
//! analysed once. Damage is reported (`media_errors_total`, a log line with the camera and the
//! offset) and the stream goes on. Blocking: run it on a blocking thread.
//!
//! The byte input is a trait this layer defines ([`ByteSource`]) and the source layer
//! implements, so the media code has no I/O of its own.

use std::sync::Arc;

use bytes::Bytes;
use kvs_infer_common::BoxError;

use super::decode::{DecodedFrame, DecoderSettings, VideoDecoder};
use super::demux::{DemuxConfig, Demuxer};
use super::progress::FragmentProgress;
use super::{Event, FragmentMeta, FragmentNumber, MediaError};
use crate::config::CameraId;
use crate::health::Health;
use crate::metrics::{self, FrameStage};

/// One piece of a source's byte stream.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    /// The current session (one GetMedia body) is over: the stream closes what it left open (a
    /// complete last fragment counts, a cut one is reported), starts over for the next one, and
    /// answers on the channel once every frame of the session has been returned, so the source
    /// resumes after the right fragment.
    SessionEnd(tokio::sync::oneshot::Sender<()>),
    /// The session was ended to skip ahead: the same, except that the next session starts at
    /// the newest key frame, so none of its frames is a repeat of what was read (and discarded)
    /// before, and frames from then on carry the next `skip_epoch`.
    SkipEnd(tokio::sync::oneshot::Sender<()>),
}

/// A blocking byte source, read on the camera's decode thread.
pub trait ByteSource: Send {
    /// The next chunk; `None` at the end of input (or shutdown).
    fn next_chunk(&mut self) -> Option<Result<Chunk, BoxError>>;

    /// Whether bytes are already waiting to be read: a network source serving a backlog faster
    /// than the camera takes it. A file is not a backlog (a paced file plays live).
    fn ready(&self) -> bool {
        false
    }
}

/// Chunks produced by an async task (the KVS source) through a bounded channel.
pub struct ChannelSource(pub tokio::sync::mpsc::Receiver<Chunk>);

impl ByteSource for ChannelSource {
    fn next_chunk(&mut self) -> Option<Result<Chunk, BoxError>> {
        self.0.blocking_recv().map(Ok)
    }

    fn ready(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Why a frame stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("camera {camera}: reading the source failed")]
    Read {
        camera: CameraId,
        #[source]
        source: BoxError,
    },
}

/// A decoded frame and the fragment it came from.
#[derive(Debug)]
pub struct StreamFrame {
    pub frame: DecodedFrame,
    pub fragment: Option<Arc<FragmentMeta>>,
    /// How many skip-aheads the source had made when the frame was read.
    pub skip_epoch: u64,
}

/// Counts of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub frames_decoded: u64,
    /// Frames decoded again after a new session and not returned (already returned before).
    pub frames_repeated: u64,
    /// Fragments read completely (KVS fragments, or MKV documents of a file).
    pub fragments: u64,
    /// Damage and undecodable frames, skipped.
    pub media_errors: u64,
}

/// A frame's place in the stream. Fragments are compared by number (timecodes may restart per
/// fragment); without fragment numbers, by timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    fragment: Option<FragmentNumber>,
    timestamp_ns: i64,
}

impl Position {
    fn is_at_or_before(&self, floor: &Position) -> bool {
        match (&self.fragment, &floor.fragment) {
            (Some(n), Some(f)) => n < f || (n == f && self.timestamp_ns <= floor.timestamp_ns),
            _ => self.timestamp_ns <= floor.timestamp_ns,
        }
    }
}

/// Remembers the newest frame returned; after a new session, frames up to it are repeats.
#[derive(Debug, Default)]
struct RepeatFilter {
    returned: Option<Position>,
    floor: Option<Position>,
}

impl RepeatFilter {
    fn new_session(&mut self) {
        self.floor = self.returned.clone();
    }

    /// Whether `at` was returned in an earlier session; otherwise it is returned now.
    fn is_repeat(&mut self, at: Position) -> bool {
        if let Some(floor) = &self.floor {
            if at.is_at_or_before(floor) {
                return true;
            }
            self.floor = None;
        }
        self.returned = Some(at);
        false
    }
}

/// What a frame stream needs besides its input.
pub struct StreamContext {
    pub camera: CameraId,
    /// Fragment completion, for a KVS source's reconnects and checkpoints.
    pub progress: Option<Arc<FragmentProgress>>,
    /// What bounds the stream's memory (`media:`): the demuxer's and the decoder's limits.
    pub media: crate::config::MediaConfig,
    /// Where the camera's latest media error shows (its `/healthz` entry).
    pub health: Health,
    /// The camera's decoder: backend and threads.
    pub decoder: DecoderSettings,
}

/// See the module docs.
pub struct FrameStream {
    camera: CameraId,
    health: Health,
    input: Box<dyn ByteSource>,
    demuxer: Demuxer,
    limits: DemuxConfig,
    decoder: VideoDecoder,
    fragment: Option<Arc<FragmentMeta>>,
    repeats: RepeatFilter,
    /// Fragment completion, for a KVS source's reconnects and checkpoints.
    progress: Option<Arc<FragmentProgress>>,
    /// The session that ended, answered once its last frame has been returned.
    session_over: Option<(tokio::sync::oneshot::Sender<()>, bool)>,
    skip_epoch: u64,
    eof: bool,
    failed: bool,
    stats: StreamStats,
}

impl FrameStream {
    pub fn new(ctx: StreamContext, input: Box<dyn ByteSource>) -> Self {
        let StreamContext { camera, progress, media, health, decoder } = ctx;
        let limits = DemuxConfig::from(&media);
        Self {
            camera,
            health,
            input,
            demuxer: Demuxer::new(limits),
            limits,
            decoder: VideoDecoder::new(decoder).with_limits((&media).into()),
            fragment: None,
            repeats: RepeatFilter::default(),
            progress,
            session_over: None,
            skip_epoch: 0,
            eof: false,
            failed: false,
            stats: StreamStats::default(),
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Whether more of the stream is already here beyond the frame just returned: bytes the
    /// demuxer holds unread (a session's tail keeps coming after its body ended), or chunks
    /// waiting in the input (see [`ByteSource::ready`]).
    pub fn input_ready(&self) -> bool {
        self.demuxer.has_pending() || self.input.ready()
    }

    /// The next frame, once; `None` at the end of the input. A read error ends the stream.
    pub fn next_frame(&mut self) -> Option<Result<StreamFrame, StreamError>> {
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                if let Some(frame) = self.pass(frame) {
                    return Some(Ok(frame));
                }
            }
            if let Some(event) = self.demuxer.next_event() {
                self.handle(event);
                continue;
            }
            if let Some((done, skipped)) = self.session_over.take() {
                // The next session starts with a new document.
                self.demuxer = Demuxer::new(self.limits);
                self.decoder.gap();
                if skipped {
                    self.repeats = RepeatFilter::default();
                    self.skip_epoch += 1;
                } else {
                    self.repeats.new_session();
                }
                let _ = done.send(());
            }
            if self.eof || self.failed {
                return None;
            }
            match self.input.next_chunk() {
                None => {
                    self.eof = true;
                    self.demuxer.finish();
                }
                Some(Ok(Chunk::Data(data))) => self.demuxer.push(&data),
                Some(Ok(Chunk::SessionEnd(done))) => {
                    self.demuxer.finish();
                    self.session_over = Some((done, false));
                }
                Some(Ok(Chunk::SkipEnd(done))) => {
                    self.demuxer.finish();
                    self.session_over = Some((done, true));
                }
                Some(Err(source)) => {
                    self.failed = true;
                    return Some(Err(StreamError::Read { camera: self.camera.clone(), source }));
                }
            }
        }
    }

    /// A decoded frame goes on unless an earlier session already returned it.
    fn pass(&mut self, frame: DecodedFrame) -> Option<StreamFrame> {
        let fragment = self.fragment.clone();
        let at = Position {
            fragment: fragment.as_ref().and_then(|m| m.fragment_number.clone()),
            timestamp_ns: frame.timestamp_ns,
        };
        if self.repeats.is_repeat(at) {
            self.stats.frames_repeated += 1;
            return None;
        }
        self.stats.frames_decoded += 1;
        metrics::count_frame(&self.camera, FrameStage::Decoded);
        Some(StreamFrame { frame, fragment, skip_epoch: self.skip_epoch })
    }

    fn handle(&mut self, event: Event) {
        let camera = &self.camera;
        let result = match event {
            Event::Tracks(t) => self.decoder.push_tracks(&t),
            Event::FragmentStart { meta, .. } => {
                if let Some(err) = &meta.error {
                    metrics::count_kvs_error_fragment(camera, err.label());
                }
                self.fragment = Some(Arc::new(meta));
                Ok(())
            }
            Event::Frame(f) => {
                if self.decoder.video_track() == Some(f.track) {
                    metrics::count_frame(camera, FrameStage::Received);
                }
                self.decoder.push_frame(&f)
            }
            Event::FragmentEnd(summary) => {
                let flushed = self.decoder.finish();
                if !summary.damaged {
                    self.stats.fragments += 1;
                    if let Some(progress) = &self.progress {
                        metrics::count_kvs_fragment(camera, summary.meta.millis_behind_now);
                        progress.fragment_demuxed(Arc::new(summary.meta));
                    }
                }
                flushed
            }
            Event::Error(e) => {
                // A limit that dropped metadata left the video whole.
                if !matches!(e, MediaError::OverLimit { .. }) {
                    self.decoder.gap();
                }
                Err(e)
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            metrics::count_media_error(camera);
            tracing::warn!(camera = %camera, error = %e, "media error; the stream goes on");
            self.stats.media_errors += 1;
            self.health.camera_detail(camera, format!("media error: {e} ({} so far)", self.stats.media_errors));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(fragment: Option<&str>, timestamp_ns: i64) -> Position {
        Position { fragment: fragment.and_then(FragmentNumber::parse), timestamp_ns }
    }

    #[test]
    fn after_a_new_session_frames_up_to_the_newest_returned_are_repeats() {
        let mut f = RepeatFilter::default();
        assert!(!f.is_repeat(at(Some("10"), 0)));
        assert!(!f.is_repeat(at(Some("10"), 40)));
        f.new_session();
        assert!(f.is_repeat(at(Some("10"), 0)), "re-read from the start of fragment 10");
        assert!(f.is_repeat(at(Some("10"), 40)), "the newest frame returned");
        assert!(!f.is_repeat(at(Some("10"), 80)), "new");
        assert!(!f.is_repeat(at(Some("10"), 0)), "the floor is gone once a new frame passed");
    }

    #[test]
    fn fragments_are_compared_by_number_not_by_timecode() {
        let mut f = RepeatFilter::default();
        assert!(!f.is_repeat(at(Some("9"), 5_000)));
        f.new_session();
        assert!(!f.is_repeat(at(Some("10"), 0)), "timecodes restart in a later fragment");
    }
}
