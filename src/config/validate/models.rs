//! Models: each kind's keys, the ones that do not apply to it, and their ranges.

use std::collections::{BTreeMap, HashSet};

use super::super::schema::*;
use super::super::{ModelId, ModelSpec, OcrSpec, YoloSpec};
use super::{Checker, DEFAULT_YOLO_CONFIDENCE, DEFAULT_YOLO_IOU, IDENTIFIER_RULE, is_identifier};

pub(super) fn check_models(c: &mut Checker, models: &BTreeMap<String, RawModel>) -> BTreeMap<ModelId, ModelSpec> {
    let mut out = BTreeMap::new();
    for (id, m) in models {
        let at = format!("models.{id}");
        if !is_identifier(id) {
            c.err(&at, format!("model id {IDENTIFIER_RULE}"));
        }
        let spec = match m.kind {
            None => {
                c.err(format!("{at}.kind"), "required: yolo or ocr");
                None
            }
            Some(ModelKind::Yolo) => check_yolo(c, &at, m).map(ModelSpec::Yolo),
            Some(ModelKind::Ocr) => check_ocr(c, &at, m).map(ModelSpec::Ocr),
        };
        if let Some(spec) = spec {
            out.insert(ModelId(id.clone()), spec);
        }
    }
    out
}

fn check_yolo(c: &mut Checker, at: &str, m: &RawModel) -> Option<YoloSpec> {
    const WHY: &str = "by kind yolo";
    c.not_set(format!("{at}.det"), &m.det, WHY);
    c.not_set(format!("{at}.cls"), &m.cls, WHY);
    c.not_set(format!("{at}.rec"), &m.rec, WHY);
    let Some(path) = &m.path else {
        c.err(format!("{at}.path"), "required for kind yolo");
        return None;
    };
    c.nonempty_path(format!("{at}.path"), path);
    if let Some(size) = m.input_size
        && (!(32..=4096).contains(&size) || size % 32 != 0)
    {
        c.err(format!("{at}.input_size"), format!("must be a multiple of 32 in 32..=4096, got {size}"));
    }
    let confidence = m.confidence.unwrap_or(DEFAULT_YOLO_CONFIDENCE);
    c.unit_interval(format!("{at}.confidence"), confidence, true);
    let iou = m.iou.unwrap_or(DEFAULT_YOLO_IOU);
    c.unit_interval(format!("{at}.iou"), iou, true);
    let mut seen = HashSet::new();
    for (i, class) in m.classes.iter().enumerate() {
        if class.is_empty() || !seen.insert(class) {
            c.err(format!("{at}.classes[{i}]"), format!("empty or repeated class name {class:?}"));
        }
    }
    Some(YoloSpec { path: path.clone(), input_size: m.input_size, confidence, iou, classes: m.classes.clone() })
}

fn check_ocr(c: &mut Checker, at: &str, m: &RawModel) -> Option<OcrSpec> {
    const WHY: &str = "by kind ocr (set det.path, rec.path and optionally cls.path)";
    c.not_set(format!("{at}.path"), &m.path, WHY);
    c.not_set(format!("{at}.input_size"), &m.input_size, WHY);
    c.not_set(format!("{at}.confidence"), &m.confidence, WHY);
    c.not_set(format!("{at}.iou"), &m.iou, WHY);
    if !m.classes.is_empty() {
        c.err(format!("{at}.classes"), format!("not used {WHY}"));
    }
    if let Some(det) = &m.det {
        let p = format!("{at}.det");
        c.nonempty_path(format!("{p}.path"), &det.path);
        if !(32..=4096).contains(&det.limit_side_len) {
            c.err(format!("{p}.limit_side_len"), format!("must be in 32..=4096, got {}", det.limit_side_len));
        }
        c.unit_interval(format!("{p}.threshold"), det.threshold, true);
        c.unit_interval(format!("{p}.box_threshold"), det.box_threshold, true);
        if !(det.unclip_ratio.is_finite() && det.unclip_ratio > 0.0) {
            c.err(format!("{p}.unclip_ratio"), "must be greater than 0");
        } else {
            c.at_most(format!("{p}.unclip_ratio"), det.unclip_ratio, 10.0);
        }
        if !(det.min_size.is_finite() && det.min_size >= 0.0) {
            c.err(format!("{p}.min_size"), "must be 0 or more");
        } else {
            c.at_most(format!("{p}.min_size"), det.min_size, 4096.0);
        }
    } else {
        c.err(format!("{at}.det"), "required for kind ocr");
    }
    if let Some(rec) = &m.rec {
        let p = format!("{at}.rec");
        c.nonempty_path(format!("{p}.path"), &rec.path);
        if rec.height == 0 || rec.height > 256 {
            c.err(format!("{p}.height"), format!("must be in 1..=256, got {}", rec.height));
        }
        c.unit_interval(format!("{p}.min_score"), rec.min_score, false);
        if !(1..=64).contains(&rec.batch_size) {
            c.err(format!("{p}.batch_size"), format!("must be in 1..=64, got {}", rec.batch_size));
        }
    } else {
        c.err(format!("{at}.rec"), "required for kind ocr");
    }
    if let Some(cls) = &m.cls {
        c.nonempty_path(format!("{at}.cls.path"), &cls.path);
        c.unit_interval(format!("{at}.cls.threshold"), cls.threshold, false);
        if !(1..=64).contains(&cls.batch_size) {
            c.err(format!("{at}.cls.batch_size"), format!("must be in 1..=64, got {}", cls.batch_size));
        }
    }
    Some(OcrSpec { det: m.det.clone()?, cls: m.cls.clone(), rec: m.rec.clone()? })
}
