//! `kvs-infer inspect`: the `mkvinfo` of KVS streams. One JSON line per fragment, then a summary.
//!
//! Damage is reported (stderr, and counted in `errors`) but never stops the run.

use std::io::{self, Read, Write};

use serde::Serialize;

use super::decode::{DecoderSettings, VideoDecoder};
use super::demux::{DemuxConfig, Demuxer};
use super::{Event, FragmentSummary, KvsTimestamp, MediaError};

/// Read size for files and stdin.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct InspectOptions {
    /// Also decode the video and count decoded frames.
    pub decode: bool,
    pub demux: DemuxConfig,
}

#[derive(Debug, Serialize)]
struct FragmentLine<'a> {
    fragment_number: Option<&'a str>,
    server_timestamp: Option<KvsTimestamp>,
    producer_timestamp: Option<KvsTimestamp>,
    millis_behind_now: Option<u64>,
    continuation_token: Option<&'a str>,
    error_code: Option<&'a str>,
    frames: u64,
    keyframes: u64,
    width: Option<u32>,
    height: Option<u32>,
    codec: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decoded: Option<u64>,
    offset: u64,
    damaged: bool,
}

/// Totals over the whole input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InspectSummary {
    pub fragments: u64,
    pub frames: u64,
    pub keyframes: u64,
    pub decoded: u64,
    pub errors: u64,
}

/// Reads `input` to its end, writing fragment lines and the summary to `out` and one line per
/// error to `err`. Fails only when reading or writing fails.
pub fn inspect(
    input: impl Read,
    mut out: impl Write,
    mut err: impl Write,
    opts: InspectOptions,
) -> io::Result<InspectSummary> {
    let decoder = opts.decode.then(|| VideoDecoder::new(DecoderSettings::default()));
    let mut inspector =
        Inspector { decoder, summary: InspectSummary::default(), decoded_in_fragment: 0, out: &mut out, err: &mut err };
    let mut demuxer = Demuxer::new(opts.demux);
    let mut input = input;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            demuxer.finish();
        } else {
            demuxer.push(&buf[..n]);
        }
        while let Some(event) = demuxer.next_event() {
            inspector.handle(event)?;
        }
        if n == 0 {
            break;
        }
    }
    let summary = inspector.summary;
    #[derive(Serialize)]
    struct Last {
        summary: InspectSummary,
    }
    serde_json::to_writer(&mut out, &Last { summary })?;
    writeln!(out)?;
    out.flush()?;
    Ok(summary)
}

/// What one run has seen, and where it writes.
struct Inspector<'a, O: Write, E: Write> {
    decoder: Option<VideoDecoder>,
    summary: InspectSummary,
    decoded_in_fragment: u64,
    out: &'a mut O,
    err: &'a mut E,
}

impl<O: Write, E: Write> Inspector<'_, O, E> {
    fn handle(&mut self, event: Event) -> io::Result<()> {
        match event {
            Event::Tracks(tracks) => {
                if let Some(Err(e)) = self.decoder.as_mut().map(|d| d.push_tracks(&tracks)) {
                    self.report(&e)?;
                }
            }
            Event::Frame(frame) => {
                if let Some(Err(e)) = self.decoder.as_mut().map(|d| d.push_frame(&frame)) {
                    self.report(&e)?;
                }
                self.count_decoded();
            }
            Event::Error(e) => {
                if let Some(d) = &mut self.decoder {
                    d.gap();
                }
                self.report(&e)?;
            }
            Event::FragmentEnd(fragment) => {
                if let Some(Err(e)) = self.decoder.as_mut().map(VideoDecoder::finish) {
                    self.report(&e)?;
                }
                self.count_decoded();
                let decoded = self.decoder.as_ref().map(|_| std::mem::take(&mut self.decoded_in_fragment));
                write_fragment(self.out, &fragment, decoded)?;
                self.summary.fragments += 1;
                self.summary.frames += fragment.video_frames;
                self.summary.keyframes += fragment.video_keyframes;
                self.summary.decoded += decoded.unwrap_or(0);
            }
            _ => {}
        }
        Ok(())
    }

    fn count_decoded(&mut self) {
        if let Some(d) = &mut self.decoder {
            while d.next_frame().is_some() {
                self.decoded_in_fragment += 1;
            }
        }
    }

    fn report(&mut self, e: &MediaError) -> io::Result<()> {
        report(self.err, &mut self.summary, e)
    }
}

fn report(err: &mut impl Write, summary: &mut InspectSummary, e: &MediaError) -> io::Result<()> {
    summary.errors += 1;
    writeln!(err, "error: {e}")
}

fn write_fragment(out: &mut impl Write, f: &FragmentSummary, decoded: Option<u64>) -> io::Result<()> {
    let line = FragmentLine {
        fragment_number: f.meta.fragment_number.as_ref().map(|n| n.as_str()),
        server_timestamp: f.meta.server_timestamp,
        producer_timestamp: f.meta.producer_timestamp,
        millis_behind_now: f.meta.millis_behind_now,
        continuation_token: f.meta.continuation_token.as_deref(),
        error_code: f.meta.error.as_ref().map(|e| e.code.as_str()),
        frames: f.video_frames,
        keyframes: f.video_keyframes,
        width: f.width,
        height: f.height,
        codec: f.codec.as_deref(),
        decoded,
        offset: f.offset,
        damaged: f.damaged,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}
