//! Ultralytics YOLO (v8/v11) detect exports: metadata, output decoding and class-aware NMS.
//!
//! Output layout `[B, 4 + classes, anchors]`: centre x, centre y, width, height (input pixels),
//! then one sigmoid score per class. Boxes go back through the letterbox and are clamped to the
//! frame. The recipe is Ultralytics' own (`non_max_suppression`, `scale_boxes`).

use ort::session::Session;

use super::model::{Detection, Detector, ModelType, Part, PartSpec, Prepared, Runner, StepClock, metadata, session_of};
use super::preprocess::{Letterbox, Normalization, letterbox};
use super::{InferError, Tensor};
use crate::config::{ModelId, YoloSpec};
use crate::geometry::iou;
use crate::media::image::RgbImage;

/// The one session of a YOLO model.
pub const PART: Part = Part::new("yolo");

/// Ultralytics' cap on detections per image.
pub const MAX_DETECTIONS: usize = 300;
/// Ultralytics' cap on boxes entering NMS.
pub const MAX_NMS_CANDIDATES: usize = 30_000;

/// What an export's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YoloMeta {
    pub names: Vec<String>,
    /// Input height and width.
    pub imgsz: (u32, u32),
    pub stride: u32,
}

impl YoloMeta {
    /// From the custom metadata values `names` (a Python dict literal), `imgsz`, `stride`.
    pub fn parse(names: &str, imgsz: Option<&str>, stride: Option<&str>) -> Option<Self> {
        let names = parse_names(names)?;
        let nums = |s: &str| -> Vec<u32> {
            s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect()
        };
        let imgsz = match imgsz.map(nums).as_deref() {
            Some([h, w]) => (*h, *w),
            Some([s]) => (*s, *s),
            _ => (640, 640),
        };
        let stride = stride.map(nums).and_then(|v| v.first().copied()).unwrap_or(32);
        Some(Self { names, imgsz, stride })
    }
}

/// Parses `{0: 'person', 1: "bicycle"}` into names by index.
fn parse_names(s: &str) -> Option<Vec<String>> {
    let body = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let mut rest = body;
    while !rest.trim().is_empty() {
        let (key, after) = rest.split_once(':')?;
        let index: usize = key.trim().trim_start_matches(',').trim().parse().ok()?;
        let after = after.trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let value_and_rest = &after[1..];
        let end = value_and_rest.find(quote)?;
        pairs.push((index, value_and_rest[..end].to_owned()));
        rest = value_and_rest[end + 1..].trim_start().trim_start_matches(',');
    }
    pairs.sort_by_key(|(i, _)| *i);
    let names: Vec<String> =
        pairs.iter().enumerate().map(|(i, (k, v))| (i == *k).then(|| v.clone())).collect::<Option<_>>()?;
    Some(names)
}

/// A YOLO model ready to use: its config and what its metadata says.
#[derive(Debug, Clone)]
pub struct YoloModel {
    pub id: ModelId,
    pub spec: YoloSpec,
    pub meta: YoloMeta,
    /// Square input side actually used.
    pub input_size: u32,
}

impl ModelType for YoloSpec {
    fn parts(&self) -> Vec<PartSpec> {
        let side = self.input_size.map(|s| s as usize);
        vec![PartSpec { part: PART, path: self.path.clone(), warmup_hw: [side, side] }]
    }

    fn prepare(&self, id: &ModelId, sessions: &[(Part, &Session)]) -> Result<Prepared, InferError> {
        let session = session_of(id, sessions, PART)?;
        let meta = yolo_meta(session).ok_or_else(|| InferError::BadModel {
            model: id.0.clone(),
            part: PART.as_str(),
            reason: "no Ultralytics `names` metadata".into(),
        })?;
        let input_size = self.input_size.unwrap_or(meta.imgsz.0.max(meta.imgsz.1));
        let side = Some(input_size as usize);
        let model = YoloModel { id: id.clone(), spec: self.clone(), meta, input_size };
        Ok(Prepared {
            model: super::model::Model::Detector(std::sync::Arc::new(model)),
            warmup_hw: vec![(PART, [side; 2])],
        })
    }
}

/// Ultralytics metadata: `names`, `imgsz`, `stride`.
pub fn yolo_meta(session: &Session) -> Option<YoloMeta> {
    let names = metadata(session, "names")?;
    YoloMeta::parse(&names, metadata(session, "imgsz").as_deref(), metadata(session, "stride").as_deref())
}

impl Detector for YoloModel {
    /// Detections in `img` (thresholds and class filter from the model's config).
    fn detect(&self, runner: &dyn Runner, img: &RgbImage) -> Result<Vec<Detection>, InferError> {
        let mut clock = StepClock::start(&self.id, PART);
        let size = self.input_size;
        let (data, geometry) = letterbox(img, size, &Normalization::YOLO)?;
        let input = Tensor { shape: vec![1, 3, size as usize, size as usize], data };
        clock.lap("preprocess");
        let out = runner.run(&self.id, PART, input)?;
        clock.lap("inference");
        let classes = self.meta.names.len();
        let anchors = match out.shape.as_slice() {
            [1, attrs, n] if *attrs == 4 + classes => *n,
            other => {
                return Err(InferError::BadOutput {
                    model: self.id.0.clone(),
                    part: PART.as_str(),
                    reason: format!("shape {other:?} for {classes} classes"),
                });
            }
        };
        let keep_class = if self.spec.classes.is_empty() {
            Vec::new()
        } else {
            self.meta.names.iter().map(|n| self.spec.classes.contains(n)).collect()
        };
        let params = YoloParams { confidence: self.spec.confidence, iou: self.spec.iou, keep_class };
        let detections = decode(&out.data, anchors, &self.meta, &params, &geometry);
        clock.lap("postprocess");
        Ok(detections)
    }
}

/// Decoding thresholds.
#[derive(Debug, Clone)]
pub struct YoloParams {
    pub confidence: f32,
    pub iou: f32,
    /// Per class: keep it? Empty = keep all.
    pub keep_class: Vec<bool>,
}

/// A box before NMS, in model input coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: [f32; 4],
    pub score: f32,
    pub class_id: usize,
}

/// Class-aware greedy NMS: highest score first; a box is dropped when it overlaps a kept box of
/// the same class by more than `iou_threshold`. Returns the kept candidates, best first.
pub fn nms(mut candidates: Vec<Candidate>, iou_threshold: f32, max_keep: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() >= max_keep {
            break;
        }
        let suppressed = kept.iter().any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

/// Decodes one image's output (`attrs = 4 + classes` rows of `anchors` values) into detections
/// in source-image pixels.
pub fn decode(
    output: &[f32],
    anchors: usize,
    meta: &YoloMeta,
    params: &YoloParams,
    letterbox: &Letterbox,
) -> Vec<Detection> {
    let classes = meta.names.len();
    if output.len() < (4 + classes) * anchors {
        return Vec::new();
    }
    let row = |r: usize| &output[r * anchors..(r + 1) * anchors];
    let (cx, cy, w, h) = (row(0), row(1), row(2), row(3));
    let mut best = vec![(0f32, 0usize); anchors];
    for class in 0..classes {
        if !params.keep_class.is_empty() && !params.keep_class.get(class).copied().unwrap_or(false) {
            continue;
        }
        for (b, &s) in best.iter_mut().zip(row(4 + class)) {
            if s > b.0 {
                *b = (s, class);
            }
        }
    }
    let mut candidates: Vec<Candidate> = (0..anchors)
        .filter(|&i| best[i].0 >= params.confidence && best[i].0 > 0.0)
        .map(|i| Candidate {
            bbox: [cx[i] - w[i] / 2.0, cy[i] - h[i] / 2.0, cx[i] + w[i] / 2.0, cy[i] + h[i] / 2.0],
            score: best[i].0,
            class_id: best[i].1,
        })
        .collect();
    if candidates.len() > MAX_NMS_CANDIDATES {
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        candidates.truncate(MAX_NMS_CANDIDATES);
    }
    nms(candidates, params.iou, MAX_DETECTIONS)
        .into_iter()
        .map(|c| {
            let (x1, y1) = letterbox.to_source(c.bbox[0], c.bbox[1]);
            let (x2, y2) = letterbox.to_source(c.bbox[2], c.bbox[3]);
            Detection {
                label: meta.names[c.class_id].clone(),
                class_id: c.class_id,
                score: c.score,
                bbox: [x1, y1, x2, y2],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f32; 4], score: f32, class_id: usize) -> Candidate {
        Candidate { bbox, score, class_id }
    }

    #[test]
    fn nms_is_class_aware_and_keeps_the_best() {
        let kept = nms(
            vec![
                cand([0.0, 0.0, 10.0, 10.0], 0.8, 0),
                cand([1.0, 1.0, 11.0, 11.0], 0.9, 0), // overlaps the first, higher score
                cand([1.0, 1.0, 11.0, 11.0], 0.7, 1), // same place, other class: kept
                cand([50.0, 50.0, 60.0, 60.0], 0.6, 0), // disjoint: kept
                cand([10.0, 0.0, 20.0, 10.0], 0.5, 0), // touches the first: IoU 0, kept
            ],
            0.45,
            300,
        );
        let scores: Vec<f32> = kept.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.6, 0.5]);
        assert_eq!(nms(vec![cand([0.0, 0.0, 1.0, 1.0], 0.5, 0); 5], 0.45, 300).len(), 1);
        assert_eq!(
            nms((0..10).map(|i| cand([i as f32 * 10.0, 0.0, i as f32 * 10.0 + 5.0, 5.0], 0.5, 0)).collect(), 0.45, 3)
                .len(),
            3
        );
    }

    #[test]
    fn decode_maps_through_the_letterbox() {
        let meta = YoloMeta { names: vec!["a".into(), "b".into()], imgsz: (320, 320), stride: 32 };
        // Two anchors: one confident "b" at the centre, one below threshold.
        let anchors = 2;
        let output = [160.0, 10.0, 160.0, 10.0, 100.0, 4.0, 100.0, 4.0, 0.1, 0.0, 0.9, 0.1];
        let lb = Letterbox { scale: 0.5, pad_x: 0.0, pad_y: 40.0, src_width: 640, src_height: 480 };
        let params = YoloParams { confidence: 0.25, iou: 0.45, keep_class: vec![] };
        let d = decode(&output, anchors, &meta, &params, &lb);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].label, "b");
        assert_eq!(d[0].bbox, [220.0, 140.0, 420.0, 340.0]);
        let only_a = YoloParams { keep_class: vec![true, false], ..params };
        assert!(decode(&output, anchors, &meta, &only_a, &lb).is_empty(), "class filter");
    }

    #[test]
    fn names_metadata() {
        let m =
            YoloMeta::parse("{0: 'FACE_FEMALE', 1: \"it's\", 2: 'x'}", Some("[320, 320]"), Some("32")).expect("meta");
        assert_eq!(m.names, ["FACE_FEMALE", "it's", "x"]);
        assert_eq!(m.imgsz, (320, 320));
        assert!(YoloMeta::parse("[]", None, None).is_none());
        assert!(YoloMeta::parse("{1: 'gap'}", None, None).is_none(), "indices must be 0..n");
    }
}
