//! `kvs-infer inspect`: the `mkvinfo` of KVS streams. One JSON line per fragment, then a summary.
//!
//! Damage is reported (stderr, and counted in `errors`) but never stops the run.

use std::io::{self, Read, Write};

use serde::Serialize;

use super::decode::{OpenH264Decoder, VideoDecoder};
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
    mut input: impl Read,
    mut out: impl Write,
    mut err: impl Write,
    opts: InspectOptions,
) -> io::Result<InspectSummary> {
    let mut demuxer = Demuxer::new(opts.demux);
    let mut decoder = if opts.decode {
        Some(VideoDecoder::new(OpenH264Decoder::new(false).map_err(io::Error::other)?))
    } else {
        None
    };
    let mut summary = InspectSummary::default();
    let mut decoded_in_fragment = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut eof = false;
    while !eof {
        let n = match input.read(&mut buf) {
            Ok(0) => {
                eof = true;
                0
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if eof {
            demuxer.finish();
        } else {
            demuxer.push(&buf[..n]);
        }
        while let Some(event) = demuxer.next_event() {
            match event {
                Event::Tracks(tracks) => {
                    if let Some(d) = &mut decoder
                        && let Err(e) = d.push_tracks(&tracks)
                    {
                        report(&mut err, &mut summary, &e)?;
                    }
                }
                Event::Frame(frame) => {
                    if let Some(d) = &mut decoder {
                        if let Err(e) = d.push_frame(&frame) {
                            report(&mut err, &mut summary, &e)?;
                        }
                        while d.next_frame().is_some() {
                            decoded_in_fragment += 1;
                        }
                    }
                }
                Event::Error(e) => {
                    if let Some(d) = &mut decoder {
                        d.gap();
                    }
                    report(&mut err, &mut summary, &e)?;
                }
                Event::FragmentEnd(fragment) => {
                    if let Some(d) = &mut decoder {
                        if let Err(e) = d.finish() {
                            report(&mut err, &mut summary, &e)?;
                        }
                        while d.next_frame().is_some() {
                            decoded_in_fragment += 1;
                        }
                    }
                    let decoded = decoder.as_ref().map(|_| std::mem::take(&mut decoded_in_fragment));
                    write_fragment(&mut out, &fragment, decoded)?;
                    summary.fragments += 1;
                    summary.frames += fragment.video_frames;
                    summary.keyframes += fragment.video_keyframes;
                    summary.decoded += decoded.unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    #[derive(Serialize)]
    struct Last {
        summary: InspectSummary,
    }
    serde_json::to_writer(&mut out, &Last { summary })?;
    writeln!(out)?;
    out.flush()?;
    Ok(summary)
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
