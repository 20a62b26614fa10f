//! PP-OCR end to end: detection, optional 0/180 classification, recognition; RapidOCR's recipe.
//!
//! Each step is timed (preprocess, inference, postprocess). Model runs go through a [`Runner`]
//! (the inference worker in the service), so lines from many cameras can share batches.

pub mod crop;
pub mod det;
pub mod geometry;
pub mod rec;

use std::sync::Arc;

use ort::session::Session;

use super::model::{
    KnownLine, Model, ModelType, Part, PartSpec, Prepared, ReadHints, Runner, StepClock, TextLine, TextReader,
    fixed_input_dim, metadata, session_of,
};
use super::preprocess::{Normalization, write_chw};
use super::{InferError, Tensor};
use crate::config::{ModelId, OcrClsConfig, OcrSpec};
use crate::geometry::bounding_box;
use crate::media::image::RgbImage;
use det::{DetGeometry, TextBox};
use rec::Dictionary;

/// Text detection: where the lines are.
pub const DET: Part = Part::new("ocr_det");
/// The optional 0/180-degree direction classifier.
pub const CLS: Part = Part::new("ocr_cls");
/// Recognition: what each line says.
pub const REC: Part = Part::new("ocr_rec");

/// Warm-up sizes for dynamic dimensions: the text-line widths PP-OCR's own tools use (rec 320,
/// cls 192), and detection at most 640 pixels.
const DET_WARMUP_MAX: usize = 640;
const REC_WARMUP_WIDTH: usize = 320;
const CLS_WARMUP_HW: [usize; 2] = [48, 192];

/// RapidOCR's whole-image bounds before detection.
const MIN_SIDE: u32 = 30;
const MAX_SIDE: u32 = 2000;
/// Very wide or very short images are padded top and bottom before detection.
const PAD_WIDTH_HEIGHT_RATIO: f64 = 8.0;
const PAD_MIN_HEIGHT: u32 = 30;

/// An OCR model ready to use: its config and its dictionary.
#[derive(Debug, Clone)]
pub struct OcrModel {
    pub id: ModelId,
    pub spec: OcrSpec,
    pub dictionary: Arc<Dictionary>,
}

impl ModelType for OcrSpec {
    fn parts(&self) -> Vec<PartSpec> {
        let det_side = (self.det.limit_side_len as usize).min(DET_WARMUP_MAX);
        let mut parts = vec![
            PartSpec { part: DET, path: self.det.path.clone(), warmup_hw: [Some(det_side); 2] },
            PartSpec {
                part: REC,
                path: self.rec.path.clone(),
                warmup_hw: [Some(self.rec.height as usize), Some(REC_WARMUP_WIDTH)],
            },
        ];
        if let Some(cls) = &self.cls {
            parts.push(PartSpec { part: CLS, path: cls.path.clone(), warmup_hw: CLS_WARMUP_HW.map(Some) });
        }
        parts
    }

    fn prepare(&self, id: &ModelId, sessions: &[(Part, &Session)]) -> Result<Prepared, InferError> {
        let rec = session_of(id, sessions, REC)?;
        // Lines are packed at `rec.height`: a model that fixes another height would refuse every
        // one of them. Startup fails here instead, naming both.
        if let Some(height) = fixed_input_dim(rec, 2)
            && height != self.rec.height as usize
        {
            return Err(InferError::BadModel {
                model: id.0.clone(),
                part: REC.as_str(),
                reason: format!(
                    "the model's input height is fixed at {height}, the configuration's rec.height is {}: set rec.height: {height}",
                    self.rec.height
                ),
            });
        }
        let character = metadata(rec, "character").ok_or_else(|| InferError::BadModel {
            model: id.0.clone(),
            part: REC.as_str(),
            reason: "no `character` dictionary in the metadata".into(),
        })?;
        let dictionary = Arc::new(Dictionary::from_metadata(&character));
        let model = OcrModel { id: id.clone(), spec: self.clone(), dictionary };
        Ok(Prepared { model: Model::Reader(Arc::new(model)), warmup_hw: Vec::new() })
    }
}

impl TextReader for OcrModel {
    fn read(&self, runner: &dyn Runner, img: &RgbImage, hints: &ReadHints) -> Result<Vec<TextLine>, InferError> {
        read_text(runner, self, img, hints)
    }
}

fn round32(v: f64) -> u32 {
    (((v.trunc() / 32.0).round() * 32.0) as u32).max(32)
}

/// Keeps the image within [30, 2000] pixels per side (sides rounded to 32 when resized).
/// Returns the image and source pixels per image pixel.
fn within_bounds(img: &RgbImage) -> Result<(RgbImage, f64, f64), InferError> {
    let (w, h) = (f64::from(img.width), f64::from(img.height));
    let mut out = img.clone();
    let (mut rw, mut rh) = (1.0, 1.0);
    if w.max(h) > f64::from(MAX_SIDE) {
        let r = f64::from(MAX_SIDE) / w.max(h);
        out = img.resize(round32(w * r), round32(h * r))?;
        (rw, rh) = (w / f64::from(out.width), h / f64::from(out.height));
    }
    let (w2, h2) = (f64::from(out.width), f64::from(out.height));
    if w2.min(h2) < f64::from(MIN_SIDE) {
        let r = f64::from(MIN_SIDE) / w2.min(h2);
        out = out.resize(round32(w2 * r), round32(h2 * r))?;
        (rw, rh) = (w2 / f64::from(out.width), h2 / f64::from(out.height));
    }
    Ok((out, rw, rh))
}

/// Black bands above and below an image that is very wide or very short.
fn pad_vertically(img: &RgbImage) -> Result<(RgbImage, u32), InferError> {
    let (w, h) = (img.width, img.height);
    if h > PAD_MIN_HEIGHT && f64::from(w) / f64::from(h) <= PAD_WIDTH_HEIGHT_RATIO {
        return Ok((img.clone(), 0));
    }
    let new_h = ((f64::from(w) / PAD_WIDTH_HEIGHT_RATIO) as u32).max(PAD_MIN_HEIGHT) * 2;
    let pad = new_h.abs_diff(h) / 2;
    let row = w as usize * 3;
    let mut data = vec![0u8; row * (h + 2 * pad) as usize];
    data[row * pad as usize..row * (pad + h) as usize].copy_from_slice(&img.data);
    Ok((RgbImage::new(w, h + 2 * pad, data)?, pad))
}

/// Reads every line of text in `img`. A box that matches one of `hints.known` takes its reading:
/// neither the classifier nor recognition runs for it. With `hints.scale_of`, detection runs at
/// the scale that picture would get.
pub fn read_text(
    runner: &dyn Runner,
    model: &OcrModel,
    img: &RgbImage,
    hints: &ReadHints,
) -> Result<Vec<TextLine>, InferError> {
    let known = &hints.known;
    let id = &model.id;
    let spec = &model.spec;

    // Detection.
    let mut clock = StepClock::start(id, DET);
    let (bounded, ratio_w, ratio_h) = within_bounds(img)?;
    let (padded, pad_top) = pad_vertically(&bounded)?;
    let (dw, dh) = match hints.scale_of {
        Some([w, h]) => det::input_size_as_part(padded.width, padded.height, w, h, &spec.det),
        None => det::input_size(padded.width, padded.height, &spec.det),
    };
    let resized = padded.resize(dw, dh)?;
    let mut input = vec![0f32; 3 * (dw * dh) as usize];
    write_chw(&resized, &Normalization::PADDLE, &mut input, dw as usize, dh as usize);
    let geometry = DetGeometry {
        padded_width: padded.width,
        padded_height: padded.height,
        pad_top,
        ratio_w,
        ratio_h,
        src_width: img.width,
        src_height: img.height,
    };
    clock.lap("preprocess");
    let out = runner.run(id, DET, Tensor { shape: vec![1, 3, dh as usize, dw as usize], data: input })?;
    clock.lap("inference");
    let (map_h, map_w) = match out.shape.as_slice() {
        [_, _, h, w] => (*h, *w),
        other => {
            return Err(InferError::BadOutput {
                model: id.0.clone(),
                part: DET.as_str(),
                reason: format!("shape {other:?}"),
            });
        }
    };
    let boxes = det::postprocess(&out.data[..map_h * map_w], map_w, map_h, &spec.det, &geometry);
    // Each box in source pixels, with the settled reading it takes, if any.
    let found: Vec<(TextBox, Option<&KnownLine>)> = boxes
        .iter()
        .map(|b| {
            let source = geometry.to_source(b);
            let settled = known.matching(&bounding_box(&source.quad), b.score);
            (source, settled)
        })
        .collect();
    let to_read: Vec<usize> = (0..boxes.len()).filter(|&i| found[i].1.is_none()).collect();
    let mut crops = to_read.iter().map(|&i| crop::crop_quad(&padded, &boxes[i].quad)).collect::<Result<Vec<_>, _>>()?;
    clock.lap("postprocess");
    if boxes.is_empty() {
        return Ok(Vec::new());
    }

    if let Some(cls) = &spec.cls {
        classify(runner, id, cls, &mut crops)?;
    }
    let mut read = recognize(runner, id, spec, &model.dictionary, &crops)?.into_iter();
    let mut lines = Vec::with_capacity(found.len());
    for (b, settled) in found {
        let line = match settled {
            Some(k) => {
                TextLine { text: k.text.clone(), score: k.score, quad: b.quad, box_score: b.score, reused: true }
            }
            None => {
                let (text, score) = read.next().unwrap_or_default();
                TextLine { text, score, quad: b.quad, box_score: b.score, reused: false }
            }
        };
        if !line.text.trim().is_empty() && line.score >= spec.rec.min_score {
            lines.push(line);
        }
    }
    Ok(lines)
}

/// Turns lines the classifier reads as upside down (score above the threshold).
fn classify(runner: &dyn Runner, id: &ModelId, cls: &OcrClsConfig, crops: &mut [RgbImage]) -> Result<(), InferError> {
    let ratio = |c: &RgbImage| f64::from(c.width) / f64::from(c.height);
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
    for chunk in order.chunks(cls.batch_size.max(1)) {
        let mut clock = StepClock::start(id, CLS);
        let lines: Vec<&RgbImage> = chunk.iter().map(|&i| &crops[i]).collect();
        let input = rec::pack_lines(&lines, rec::CLS_HEIGHT, rec::CLS_WIDTH)?;
        clock.lap("preprocess");
        let out = runner.run(id, CLS, input)?;
        clock.lap("inference");
        if out.data.len() < chunk.len() * 2 {
            return Err(InferError::BadOutput {
                model: id.0.clone(),
                part: CLS.as_str(),
                reason: format!("shape {:?}", out.shape),
            });
        }
        for (k, &i) in chunk.iter().enumerate() {
            let (p0, p180) = (out.data[2 * k], out.data[2 * k + 1]);
            if p180 > p0 && p180 > cls.threshold {
                crops[i] = crops[i].rotate_180();
            }
        }
    }
    Ok(())
}

/// Reads each line: `(text, score)` in the order of `crops`.
fn recognize(
    runner: &dyn Runner,
    id: &ModelId,
    spec: &OcrSpec,
    dictionary: &Dictionary,
    crops: &[RgbImage],
) -> Result<Vec<(String, f32)>, InferError> {
    let mut read = vec![(String::new(), 0f32); crops.len()];
    for (indices, width) in rec::rec_batches(crops, spec.rec.batch_size, spec.rec.height) {
        let mut clock = StepClock::start(id, REC);
        let lines: Vec<&RgbImage> = indices.iter().map(|&i| &crops[i]).collect();
        let input = rec::pack_lines(&lines, spec.rec.height, width)?;
        clock.lap("preprocess");
        let out = runner.run(id, REC, input)?;
        clock.lap("inference");
        let (steps, classes) = match out.shape.as_slice() {
            [n, t, c] if *n == indices.len() => (*t, *c),
            other => {
                return Err(InferError::BadOutput {
                    model: id.0.clone(),
                    part: REC.as_str(),
                    reason: format!("shape {other:?}"),
                });
            }
        };
        if classes != dictionary.len() {
            return Err(InferError::BadOutput {
                model: id.0.clone(),
                part: "ocr_rec",
                reason: format!("{classes} classes but the dictionary has {}", dictionary.len()),
            });
        }
        for (k, &i) in indices.iter().enumerate() {
            read[i] = dictionary.decode(&out.data[k * steps * classes..(k + 1) * steps * classes], classes);
        }
        clock.lap("postprocess");
    }
    Ok(read)
}
