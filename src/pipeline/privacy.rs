//! `cameras[].privacy.blur`: detections with these labels (a YOLO model's face classes, say) are
//! pixelated in every picture made of a frame (stored snapshots, the live page), never in what
//! the models look at, and never over a line of text read on the frame: a plate being read
//! stays readable in its snapshot even where a face box reaches over it.

use crate::geometry::BBox;
use crate::infer::engine::Analysis;
use crate::media::draw::Canvas;
use crate::media::image::RgbImage;

/// Cells of the pixelation: a face box is cut into about this many cells across its smaller side.
const CELLS: f32 = 6.0;
/// Smallest cell, pixels.
const MIN_BLOCK: u32 = 4;

/// The frame as pictures show it: the detections labelled in `blur` pixelated, except where a
/// line of text was read. `None`: nothing to hide (the frame is shown as it is).
pub fn hide(image: &RgbImage, analysis: &Analysis, blur: &[String]) -> Option<RgbImage> {
    let hidden: Vec<BBox> = analysis.detections.iter().filter(|d| blur.contains(&d.label)).map(|d| d.bbox).collect();
    if hidden.is_empty() {
        return None;
    }
    let kept: Vec<BBox> = analysis.texts.iter().map(|t| crate::geometry::bounding_box(&t.quad)).collect();
    let (w, h) = (image.width, image.height);
    let mut pixels = image.data.as_ref().clone();
    let mut canvas = Canvas::new(&mut pixels, w, h)?;
    for b in &hidden {
        let side = (b[2] - b[0]).min(b[3] - b[1]).max(1.0);
        canvas.pixelate(*b, ((side / CELLS) as u32).max(MIN_BLOCK));
    }
    // Text read on the frame shows as it was.
    for t in &kept {
        restore(&mut pixels, &image.data, w, h, t);
    }
    RgbImage::new(w, h, pixels).ok()
}

/// Copies `bbox` (clipped to the picture) from `original` back into `pixels`.
fn restore(pixels: &mut [u8], original: &[u8], w: u32, h: u32, bbox: &BBox) {
    let clamp = |v: f32, hi: u32| (v.max(0.0).round() as usize).min(hi as usize);
    let (x1, y1, x2, y2) = (clamp(bbox[0], w), clamp(bbox[1], h), clamp(bbox[2], w), clamp(bbox[3], h));
    for y in y1..y2 {
        let (from, to) = ((y * w as usize + x1) * 3, (y * w as usize + x2) * 3);
        pixels[from..to].copy_from_slice(&original[from..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::{Detection, TextLine};

    fn pixel(img: &RgbImage, x: usize, y: usize) -> [u8; 3] {
        let i = (y * img.width as usize + x) * 3;
        [img.data[i], img.data[i + 1], img.data[i + 2]]
    }

    #[test]
    fn faces_are_pixelated_except_where_a_plate_is_read() {
        // A gradient, so pixelation shows: every pixel differs from its neighbours.
        let (w, h) = (64u32, 48u32);
        let data: Vec<u8> = (0..w * h).flat_map(|i| [(i % w * 4) as u8, (i / w * 5) as u8, 128]).collect();
        let image = RgbImage::new(w, h, data).expect("image");
        let detection = |label: &str, bbox| Detection { label: label.into(), class_id: 0, score: 0.9, bbox };
        let plate = TextLine {
            text: "AB12CDE".into(),
            score: 0.9,
            quad: [[30.0, 20.0], [50.0, 20.0], [50.0, 28.0], [30.0, 28.0]],
            box_score: 0.9,
            reused: false,
        };
        let analysis = Analysis {
            detections: vec![detection("FACE_MALE", [0.0, 0.0, 40.0, 32.0]), detection("car", [0.0, 0.0, 64.0, 48.0])],
            texts: vec![plate],
        };
        assert!(hide(&image, &analysis, &[]).is_none(), "nothing to blur");
        assert!(hide(&image, &Analysis { detections: vec![], texts: vec![] }, &["FACE_MALE".into()]).is_none());
        let hidden = hide(&image, &analysis, &["FACE_MALE".into()]).expect("hidden");
        // Inside the face: a 4x4 cell is one colour.
        assert_eq!(pixel(&hidden, 1, 1), pixel(&hidden, 2, 3));
        assert_ne!(pixel(&hidden, 1, 1), pixel(&image, 1, 1));
        // The plate read inside the face box, and everything outside it, are untouched.
        assert_eq!(pixel(&hidden, 32, 22), pixel(&image, 32, 22));
        assert_eq!(pixel(&hidden, 39, 27), pixel(&image, 39, 27));
        assert_eq!(pixel(&hidden, 45, 40), pixel(&image, 45, 40));
        assert_eq!(pixel(&image, 1, 1), [4, 5, 128], "the frame the models saw is not changed");
    }
}
