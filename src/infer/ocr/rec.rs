//! PP-OCR recognition and direction classification: line images → normalised batches, and
//! CTC greedy decoding with the dictionary from the model's `character` metadata.

use crate::infer::preprocess::{Normalization, write_chw};
use crate::infer::{InferError, Tensor};
use crate::media::image::RgbImage;

/// Recognition input width at ratio 320/48: the narrowest a batch is padded to.
pub const REC_BASE_WIDTH: u32 = 320;
/// Classifier input shape (PP-OCR mobile cls): 48 x 192.
pub const CLS_HEIGHT: u32 = 48;
pub const CLS_WIDTH: u32 = 192;

/// CTC dictionary: index 0 is the blank, then the model's characters, then a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dictionary {
    chars: Vec<String>,
}

impl Dictionary {
    /// From the `character` metadata: one character per line.
    pub fn from_metadata(character: &str) -> Self {
        let mut chars = vec![String::new()];
        chars.extend(character.lines().map(str::to_owned));
        chars.push(" ".to_owned());
        Self { chars }
    }

    /// Classes the model's output must have (blank + characters + space).
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.len() <= 2
    }

    /// Greedy CTC over one line's `[timesteps, classes]` probabilities: best class per step,
    /// repeats collapsed, blanks dropped. The score is the mean probability of the kept steps,
    /// rounded to 5 decimals (0 when nothing was read), as PaddleOCR reports it.
    pub fn decode(&self, probs: &[f32], classes: usize) -> (String, f32) {
        let mut text = String::new();
        let (mut sum, mut kept) = (0f64, 0usize);
        let mut prev = usize::MAX;
        for step in probs.chunks_exact(classes) {
            let (best, p) =
                step.iter().enumerate().fold((0usize, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
            if best != prev && best != 0 {
                if let Some(c) = self.chars.get(best) {
                    text.push_str(c);
                }
                sum += (f64::from(p) * 1e5).round() / 1e5;
                kept += 1;
            }
            prev = best;
        }
        let score = if kept == 0 { 0.0 } else { ((sum / kept as f64) * 1e5).round() / 1e5 };
        (text, score as f32)
    }
}

/// Width a line of aspect `ratio` is resized to at `height`, within `max_width`.
fn fitted_width(ratio: f64, height: u32, max_width: u32) -> u32 {
    let w = (f64::from(height) * ratio).ceil();
    if w > f64::from(max_width) { max_width } else { (w as u32).max(1) }
}

/// Resizes each line to `height` (keeping aspect, up to `width`), normalises, and pads with
/// zeros to `[n, 3, height, width]`.
pub fn pack_lines(lines: &[&RgbImage], height: u32, width: u32) -> Result<Tensor, InferError> {
    let (h, w) = (height as usize, width as usize);
    let mut data = vec![0f32; lines.len() * 3 * h * w];
    for (i, line) in lines.iter().enumerate() {
        let ratio = f64::from(line.width) / f64::from(line.height);
        let resized = line.resize(fitted_width(ratio, height, width), height)?;
        write_chw(&resized, &Normalization::PADDLE, &mut data[i * 3 * h * w..(i + 1) * 3 * h * w], w, h);
    }
    Ok(Tensor { shape: vec![lines.len(), 3, h, w], data })
}

/// Recognition batches as PaddleOCR forms them: line indices sorted by aspect ratio, chunks of
/// `batch_size`, each padded to its widest line (at least 320 at height 48).
pub fn rec_batches(lines: &[RgbImage], batch_size: usize, height: u32) -> Vec<(Vec<usize>, u32)> {
    let ratio = |i: usize| f64::from(lines[i].width) / f64::from(lines[i].height);
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    order
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let base = f64::from(REC_BASE_WIDTH) / 48.0;
            let max_ratio = chunk.iter().map(|&i| ratio(i)).fold(base, f64::max);
            (chunk.to_vec(), (f64::from(height) * max_ratio) as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::from_metadata("a\nb\nc")
    }

    /// One-hot steps over [blank, a, b, c, space] with probability `p`.
    fn steps(ids: &[usize], p: f32) -> Vec<f32> {
        ids.iter().flat_map(|&i| (0..5).map(move |c| if c == i { p } else { (1.0 - p) / 4.0 })).collect()
    }

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let d = dict();
        assert_eq!(d.len(), 5);
        assert_eq!(d.decode(&steps(&[1, 1, 0, 1, 2, 2, 0, 0, 3], 0.9), 5), ("aabc".to_owned(), 0.9));
        assert_eq!(d.decode(&steps(&[0, 0, 0], 0.9), 5), (String::new(), 0.0), "all blank");
        assert_eq!(d.decode(&steps(&[4, 1], 0.8), 5).0, " a", "the appended space class");
        assert_eq!(d.decode(&[], 5), (String::new(), 0.0));
    }

    #[test]
    fn batches_are_sorted_by_width_and_padded_to_the_widest() {
        let line = |w: u32| RgbImage::new(w, 48, vec![0; (w * 48 * 3) as usize]).expect("image");
        let lines = vec![line(500), line(100), line(900), line(200)];
        let batches = rec_batches(&lines, 2, 48);
        assert_eq!(batches, vec![(vec![1, 3], 320), (vec![0, 2], 900)]);
        let t = pack_lines(&[&lines[1]], 48, 320).expect("pack");
        assert_eq!(t.shape, [1, 3, 48, 320]);
        assert_eq!(t.data[3 * 48 * 320 - 1], 0.0, "padding is zero after normalisation");
    }
}
