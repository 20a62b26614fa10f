//! The decoder backend: FFmpeg's libavcodec, in software (`h264`, `hevc`, threaded as configured)
//! or on NVIDIA's NVDEC (`h264_cuvid`, `hevc_cuvid`; pictures come back to host memory). Annex-B
//! access units in, pictures out, each carrying the sequence number it went in with.

use std::sync::Once;

use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec::threading;

use super::{Backend, DecoderSettings, VideoCodec};
use crate::media::MediaError;

/// FFmpeg's own logging goes quiet: every error it reports reaches us as a return value or a
/// corrupt-picture flag, and is counted and logged with the camera.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// A decoded picture, in the decoder's own format (YUV 4:2:0 in software, NV12 from NVDEC).
/// Converting to RGB is a separate step, done only for the frames that are analysed.
pub struct Picture {
    pub(super) frame: ffmpeg::frame::Video,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}x{} {:?})", self.width(), self.height(), self.frame.format())
    }
}

impl Picture {
    pub fn width(&self) -> u32 {
        self.frame.width()
    }

    pub fn height(&self) -> u32 {
        self.frame.height()
    }

    /// The libav frame, for converters.
    pub fn frame(&self) -> &ffmpeg::frame::Video {
        &self.frame
    }

    /// The sequence number its access unit was sent with.
    fn seq(&self) -> Option<i64> {
        self.frame.pts()
    }
}

/// One libavcodec decoder context.
pub struct LibavDecoder {
    decoder: ffmpeg::decoder::Video,
    codec: VideoCodec,
    packet_seq: i64,
}

impl LibavDecoder {
    /// Opens `codec` on `settings.backend`; an NVDEC that cannot start (no GPU, no driver) is an
    /// error here, never a silent fallback. libavcodec refuses pictures over `max_pixels` before
    /// allocating them (its `max_pixels` option: a bound behind the SPS check in `VideoDecoder`).
    pub fn open(codec: VideoCodec, settings: &DecoderSettings, max_pixels: u64) -> Result<Self, MediaError> {
        init();
        let name = match settings.backend {
            Backend::Cpu => codec.software_decoder(),
            Backend::Nvdec => codec.nvdec_decoder(),
        };
        let unavailable = |reason: String| MediaError::DecoderUnavailable { decoder: name, reason };
        let found =
            ffmpeg::decoder::find_by_name(name).ok_or_else(|| unavailable("not in this FFmpeg build".into()))?;
        let mut context = ffmpeg::codec::Context::new_with_codec(found);
        if settings.backend == Backend::Cpu {
            let kind = if settings.frame_threads { threading::Type::Frame } else { threading::Type::Slice };
            context.set_threading(threading::Config { kind, count: settings.threads.max(1), ..Default::default() });
        }
        let mut options = ffmpeg::Dictionary::new();
        options.set("max_pixels", &max_pixels.to_string());
        let decoder = context
            .decoder()
            .open_as_with(found, options)
            .and_then(|opened| opened.video())
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Self { decoder, codec, packet_seq: 0 })
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Sends one access unit, tagged with `seq`; returns the pictures that are ready.
    pub fn decode(&mut self, annex_b: &[u8], seq: i64) -> Result<Vec<(i64, Picture)>, MediaError> {
        let mut packet = ffmpeg::Packet::copy(annex_b);
        packet.set_pts(Some(seq));
        packet.set_dts(Some(seq));
        self.packet_seq = seq;
        match self.decoder.send_packet(&packet) {
            Ok(()) => {}
            // Output is full: collect it first, then the packet goes in.
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => {
                let mut ready = self.receive()?;
                self.decoder.send_packet(&packet).map_err(|e| self.error(e))?;
                ready.extend(self.receive()?);
                return Ok(ready);
            }
            Err(e) => return Err(self.error(e)),
        }
        self.receive()
    }

    /// The pictures still held for reordering; the decoder then goes on from a key frame.
    pub fn drain(&mut self) -> Result<Vec<(i64, Picture)>, MediaError> {
        self.decoder.send_eof().map_err(|e| self.error(e))?;
        let ready = self.receive();
        self.decoder.flush();
        ready
    }

    /// Drops every reference and picture held (after damage or a gap).
    pub fn reset(&mut self) {
        self.decoder.flush();
    }

    fn receive(&mut self) -> Result<Vec<(i64, Picture)>, MediaError> {
        let mut ready = Vec::new();
        loop {
            let mut frame = ffmpeg::frame::Video::empty();
            match self.decoder.receive_frame(&mut frame) {
                Ok(()) => {
                    let picture = Picture { frame };
                    if picture.frame.is_corrupt() || picture.frame.has_decode_errors() {
                        return Err(MediaError::Decoder {
                            reason: format!("{} picture decoded with errors", self.codec.name()),
                        });
                    }
                    let seq = picture.seq().unwrap_or(self.packet_seq);
                    ready.push((seq, picture));
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => return Ok(ready),
                Err(ffmpeg::Error::Eof) => return Ok(ready),
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    fn error(&self, e: ffmpeg::Error) -> MediaError {
        MediaError::Decoder { reason: format!("{}: {e}", self.codec.name()) }
    }
}

/// Whether NVDEC can decode here: the cuvid decoder is in this FFmpeg build and opens (it loads
/// the NVIDIA driver's libnvcuvid and libcuda and creates a CUDA context).
pub fn probe_nvdec() -> Result<(), MediaError> {
    let settings = DecoderSettings { backend: Backend::Nvdec, ..DecoderSettings::default() };
    LibavDecoder::open(VideoCodec::H264, &settings, super::DecodeLimits::default().max_frame_pixels).map(drop)
}
