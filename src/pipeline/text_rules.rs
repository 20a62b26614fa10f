//! A camera's text rules at work (`cameras[].ocr.text_rules`, built in `config::text_rules`): each
//! text observation's reading is normalised and repaired, or, fitting no rule, kept only as a
//! low observation (it may keep a track that is already there, never start or confirm one) and
//! counted in `texts_rejected_total`.

use super::tracker::Observation;
use crate::config::CameraId;
use crate::config::text_rules::{Judgement, TextRules};
use crate::metrics;

/// The observations with every text judged by `rules` (`None`: as read).
pub fn judge_texts(
    mut observations: Vec<Observation>,
    rules: Option<&TextRules>,
    camera: &CameraId,
) -> Vec<Observation> {
    let Some(rules) = rules else { return observations };
    for o in observations.iter_mut() {
        let Some(reading) = o.text.take() else { continue };
        match rules.judge(&reading) {
            Judgement::Fits { text, .. } => o.text = Some(text),
            Judgement::Rejected { reason } => {
                metrics::count_text_rejected(camera, reason);
                tracing::debug!(camera = %camera, reading, reason, "reading fits no text rule");
                o.low = true;
            }
        }
    }
    observations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::text_rules::TextRulesConfig;

    fn text(reading: &str) -> Observation {
        Observation {
            label: "text".into(),
            text: Some(reading.into()),
            score: 0.9,
            bbox: [0.0, 0.0, 40.0, 10.0],
            zone: "lane".into(),
            box_score: 0.9,
            reused: false,
            low: false,
        }
    }

    #[test]
    fn plates_are_normalised_and_other_text_is_only_low() {
        let rules =
            TextRulesConfig { formats: vec!["gb".into()], ..TextRulesConfig::default() }.build().expect("rules");
        let camera = CameraId("cam".into());
        let car = Observation { label: "car".into(), text: None, ..text("") };
        let judged = judge_texts(vec![text("AB12 CDE"), text("BUS ONLY"), car.clone()], Some(&rules), &camera);
        assert_eq!(judged[0], Observation { text: Some("AB12CDE".into()), ..text("") });
        assert_eq!(judged[1], Observation { text: None, low: true, ..text("") });
        assert_eq!(judged[2], car, "no text, nothing to judge");
        let as_read = judge_texts(vec![text("BUS ONLY")], None, &camera);
        assert_eq!(as_read, vec![text("BUS ONLY")]);
    }
}
