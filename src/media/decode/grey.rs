//! A decoded picture's brightness on a coarse grid, read straight from its luma plane (no RGB
//! conversion, no scaling context): what the motion detector compares frame to frame.

use ffmpeg_next::util::format::Pixel;

use super::Picture;

/// Columns of the grid; rows follow the picture's aspect (square cells).
pub const GRID_COLUMNS: u32 = 64;
/// Inside a cell, every `SAMPLE_STEP`-th pixel of every `SAMPLE_STEP`-th row is averaged.
const SAMPLE_STEP: usize = 2;

/// Mean brightness (0..255) of each cell, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct GreyGrid {
    pub columns: u32,
    pub rows: u32,
    /// Cell side in pixels.
    pub cell: u32,
    /// The picture's size the grid covers.
    pub width: u32,
    pub height: u32,
    pub values: Vec<f32>,
}

/// How luma samples are stored.
#[derive(Clone, Copy)]
enum Luma {
    Bytes,
    /// 16-bit little-endian samples, the value in the top bits (`shift` to bring it to 8 bits).
    Words {
        shift: u32,
    },
}

fn luma(format: Pixel) -> Option<Luma> {
    match format {
        Pixel::YUV420P
        | Pixel::YUVJ420P
        | Pixel::YUV422P
        | Pixel::YUVJ422P
        | Pixel::YUV444P
        | Pixel::YUVJ444P
        | Pixel::NV12
        | Pixel::NV21
        | Pixel::GRAY8 => Some(Luma::Bytes),
        Pixel::YUV420P10LE | Pixel::YUV422P10LE | Pixel::YUV444P10LE => Some(Luma::Words { shift: 2 }),
        Pixel::P010LE => Some(Luma::Words { shift: 8 }),
        _ => None,
    }
}

impl GreyGrid {
    /// The grid of `picture`, or `None` for a pixel format whose luma is not a plain plane
    /// (packed RGB, hardware surfaces): then every frame counts as changed.
    pub fn of(picture: &Picture) -> Option<Self> {
        let frame = &picture.frame;
        let kind = luma(frame.format())?;
        let (width, height) = (frame.width(), frame.height());
        if width == 0 || height == 0 {
            return None;
        }
        Some(Self::from_plane(frame.data(0), frame.stride(0), width, height, kind))
    }

    /// The grid of an 8-bit plane (`stride` bytes a row): tests and benches make their own.
    pub fn from_bytes(plane: &[u8], stride: usize, width: u32, height: u32) -> Self {
        Self::from_plane(plane, stride, width, height, Luma::Bytes)
    }

    fn from_plane(plane: &[u8], stride: usize, width: u32, height: u32, kind: Luma) -> Self {
        let cell = width.div_ceil(GRID_COLUMNS).max(1);
        let (columns, rows) = (width.div_ceil(cell), height.div_ceil(cell));
        let mut sums = vec![0u32; (columns * rows) as usize];
        let mut counts = vec![0u32; sums.len()];
        // Cells smaller than the step would be skipped over: every pixel then. Rows are sampled
        // twice as sparsely as columns (a cell still averages dozens of pixels).
        let step = SAMPLE_STEP.min(cell as usize);
        let row_step = (2 * SAMPLE_STEP).min(cell as usize);
        let (bytes, cell) = (
            match kind {
                Luma::Bytes => 1,
                Luma::Words { .. } => 2,
            },
            cell as usize,
        );
        for y in (0..height as usize).step_by(row_step) {
            let Some(row) = plane.get(y * stride..y * stride + width as usize * bytes) else { break };
            let base = (y / cell) * columns as usize;
            for (i, chunk) in row.chunks(cell * bytes).enumerate() {
                let (sum, n) = match kind {
                    Luma::Bytes => {
                        let sum: u32 = chunk.iter().step_by(step).map(|v| u32::from(*v)).sum();
                        (sum, chunk.len().div_ceil(step))
                    }
                    Luma::Words { shift } => {
                        let samples = chunk.chunks_exact(2).step_by(step);
                        let n = samples.len();
                        let sum = samples.map(|w| ((u32::from(w[0]) | (u32::from(w[1]) << 8)) >> shift).min(255)).sum();
                        (sum, n)
                    }
                };
                sums[base + i] += sum;
                counts[base + i] += n as u32;
            }
        }
        let values = sums.iter().zip(&counts).map(|(s, n)| if *n == 0 { 0.0 } else { *s as f32 / *n as f32 }).collect();
        Self { columns, rows, cell: cell as u32, width, height, values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_average_their_pixels_and_cover_the_picture() {
        // 1280x720: 20-pixel cells, 64 x 36; the right half bright.
        let (w, h) = (1280u32, 720u32);
        let plane: Vec<u8> = (0..h).flat_map(|_| (0..w).map(|x| if x >= 640 { 200 } else { 10 })).collect();
        let grid = GreyGrid::from_bytes(&plane, w as usize, w, h);
        assert_eq!((grid.columns, grid.rows, grid.cell), (64, 36, 20));
        assert_eq!(grid.values[0], 10.0);
        assert_eq!(grid.values[63], 200.0);
        assert_eq!(grid.values.len(), 64 * 36);
        // An odd size: the last column and row are partial cells, still averaged.
        let grid = GreyGrid::from_bytes(&vec![77u8; 101 * 57], 101, 101, 57);
        assert_eq!((grid.columns, grid.rows, grid.cell), (51, 29, 2));
        assert!(grid.values.iter().all(|v| *v == 77.0));
    }

    #[test]
    fn ten_bit_samples_come_down_to_eight() {
        let (w, h) = (64u32, 2u32);
        let plane: Vec<u8> = (0..w * h).flat_map(|_| (800u16).to_le_bytes()).collect();
        let grid = GreyGrid::from_plane(&plane, w as usize * 2, w, h, Luma::Words { shift: 2 });
        assert!(grid.values.iter().all(|v| *v == 200.0), "{:?}", &grid.values[..4]);
    }
}
