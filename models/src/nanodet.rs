//! NanoDet raw heads -> candidate boxes (before NMS).
//!
//! NanoDet (GFL head) has, per stride (8, 16, 32 for a 416 input: 52x52, 26x26 and 13x13
//! cells), a class-score output `[1, N, C]` (already sigmoid) and a box-regression output
//! `[1, N, 4 * (R+1)]`: for each side (left, top, right, bottom) a distribution over R+1 bins.
//! A side's distance is the expected bin (softmax) times the stride, measured from the cell's
//! top-left corner (`x = col * stride`, as the TF.js export was trained).

use crate::nms::Candidate;
use vitrine_schemas::BBox;

/// One stride's pair of outputs, by output index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub stride: u32,
    /// Cells per row (`input width / stride`).
    pub columns: usize,
    pub cells: usize,
    pub scores: usize,
    pub boxes: usize,
    /// Bins per side (R+1).
    pub bins: usize,
}

/// Pairs the model's outputs (shapes `[1, N, C]` and `[1, N, 4*(R+1)]`) into levels, for an
/// input of `width` x `height` and `classes` classes.
pub fn levels(shapes: &[Vec<i64>], width: u32, height: u32, classes: usize) -> Result<Vec<Level>, String> {
    let mut levels = Vec::new();
    for (i, dims) in shapes.iter().enumerate() {
        let &[_, n, c] = dims.as_slice() else {
            return Err(format!("output {i} is {dims:?}, not [1, N, C]"));
        };
        if c as usize != classes {
            continue;
        }
        let cells = n as usize;
        // The stride whose grid has `cells` cells.
        let stride = [8u32, 16, 32, 64]
            .into_iter()
            .find(|s| (width / s) as usize * (height / s) as usize == cells)
            .ok_or_else(|| format!("output {i} has {cells} cells: no stride of a {width}x{height} input gives that"))?;
        let boxes = shapes
            .iter()
            .position(|d| d.len() == 3 && d[1] == n && d[2] != classes as i64 && d[2] % 4 == 0)
            .ok_or_else(|| format!("no box output [1, {n}, 4*(R+1)] beside class output {i}"))?;
        let bins = shapes[boxes][2] as usize / 4;
        levels.push(Level { stride, columns: (width / stride) as usize, cells, scores: i, boxes, bins });
    }
    if levels.is_empty() {
        return Err(format!("no output [1, N, {classes}] of class scores among {shapes:?}"));
    }
    levels.sort_by_key(|l| l.stride);
    Ok(levels)
}

/// Boxes scoring `min_score` or more in one level, normalised to the input.
pub fn decode_level(
    level: &Level,
    scores: &[f32],
    regression: &[f32],
    width: u32,
    height: u32,
    min_score: f32,
    out: &mut Vec<Candidate>,
) {
    let classes = scores.len() / level.cells;
    let stride = level.stride as f32;
    for cell in 0..level.cells {
        let row = &scores[cell * classes..(cell + 1) * classes];
        let (class_id, score) =
            row.iter().enumerate().fold((0, f32::MIN), |b, (i, &s)| if s > b.1 { (i, s) } else { b });
        if score < min_score {
            continue;
        }
        let sides = &regression[cell * 4 * level.bins..(cell + 1) * 4 * level.bins];
        let distance = |side: usize| expected_bin(&sides[side * level.bins..(side + 1) * level.bins]) * stride;
        let (x, y) = ((cell % level.columns) as f32 * stride, (cell / level.columns) as f32 * stride);
        let bbox = BBox {
            x0: (x - distance(0)) / width as f32,
            y0: (y - distance(1)) / height as f32,
            x1: (x + distance(2)) / width as f32,
            y1: (y + distance(3)) / height as f32,
        };
        out.push(Candidate { class_id: class_id as u32, score, bbox });
    }
}

/// The expected bin index under a softmax of `logits`.
fn expected_bin(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let (mut sum, mut weighted) = (0.0f32, 0.0f32);
    for (i, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * i as f32;
    }
    weighted / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_pair_up_by_cells_in_stride_order() {
        let shapes = vec![
            vec![1, 676, 80],
            vec![1, 2704, 44],
            vec![1, 2704, 80],
            vec![1, 676, 44],
            vec![1, 169, 80],
            vec![1, 169, 44],
        ];
        let l = levels(&shapes, 416, 416, 80).unwrap();
        let strides: Vec<_> = l.iter().map(|l| (l.stride, l.scores, l.boxes, l.bins)).collect();
        assert_eq!(strides, vec![(8, 2, 1, 11), (16, 0, 3, 11), (32, 4, 5, 11)]);
        assert!(levels(&shapes, 416, 416, 90).is_err());
    }

    #[test]
    fn a_cell_decodes_to_its_distances_times_the_stride() {
        // A 2x2 grid of stride 8 on a 16x16 input; cell 3 (col 1, row 1) at (8, 8) scores class 1.
        let level = Level { stride: 8, columns: 2, cells: 4, scores: 0, boxes: 1, bins: 3 };
        let mut scores = vec![0.0; 8];
        scores[7] = 0.9;
        // One-hot-ish logits: left 1 bin, top 0, right 1, bottom 0 (in strides).
        let peak = |bin: usize| (0..3).map(|i| if i == bin { 50.0 } else { 0.0 }).collect::<Vec<f32>>();
        let mut regression = vec![0.0; 4 * 12];
        for (side, bin) in [1, 0, 1, 0].into_iter().enumerate() {
            regression[36 + side * 3..36 + side * 3 + 3].copy_from_slice(&peak(bin));
        }
        let mut out = Vec::new();
        decode_level(&level, &scores, &regression, 16, 16, 0.5, &mut out);
        assert_eq!(out.len(), 1);
        let b = out[0].bbox;
        assert_eq!((out[0].class_id, out[0].score), (1, 0.9));
        assert!(
            (b.x0 - 0.0).abs() < 1e-4
                && (b.y0 - 0.5).abs() < 1e-4
                && (b.x1 - 1.0).abs() < 1e-4
                && (b.y1 - 0.5).abs() < 1e-4,
            "{b:?}"
        );
    }
}
