//! Ultralytics YOLO outputs -> candidate boxes (before NMS).
//!
//! v8 and v11 export one tensor `[1, 4+C, N]`: per anchor, the box (cx, cy, w, h in input
//! pixels) and C class scores. v5 exports `[1, N, 5+C]`: the box, an objectness score and C
//! class scores (a class's score is objectness x class score). The layout is told apart by
//! which dimension holds 4+C or 5+C for the model's C classes.

use vitrine_schemas::BBox;

use crate::nms::Candidate;

/// How the single output tensor is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YoloLayout {
    /// `[1, 4+C, N]`: attributes major (v8, v11).
    AttributesFirst { classes: usize },
    /// `[1, N, 5+C]`: anchors major, with objectness (v5).
    AnchorsFirst { classes: usize },
}

impl YoloLayout {
    /// The layout of an output of shape `dims` for a model of `classes` classes (0: unknown,
    /// then guessed from the shape: the attribute axis is the short one).
    pub fn detect(dims: &[i64], classes: usize) -> Result<YoloLayout, String> {
        // The batch dimension may be dynamic (-1).
        let [batch, a, b] = dims else {
            return Err(format!("expected one output [1, 4+C, N] or [1, N, 5+C], found {dims:?}"));
        };
        if *batch > 1 {
            return Err(format!("expected a batch of 1, found {dims:?}"));
        }
        let (a, b) = (*a, *b);
        let fits = |n: i64, extra: i64| n > extra && (classes == 0 || n == classes as i64 + extra);
        if a > 0 && fits(a, 4) && (b <= 0 || a < b) {
            return Ok(YoloLayout::AttributesFirst { classes: (a - 4) as usize });
        }
        if b > 0 && fits(b, 5) {
            return Ok(YoloLayout::AnchorsFirst { classes: (b - 5) as usize });
        }
        Err(format!("output {dims:?} is neither [1, 4+C, N] nor [1, N, 5+C] for the {classes} classes of the labels"))
    }
}

/// Boxes scoring `min_score` or more, normalised to the model's input of `width` x `height`.
pub fn decode(
    layout: YoloLayout,
    output: &[f32],
    dims: &[i64],
    width: u32,
    height: u32,
    min_score: f32,
) -> Vec<Candidate> {
    let (w, h) = (width as f32, height as f32);
    let mut found = Vec::new();
    let mut push = |cx: f32, cy: f32, bw: f32, bh: f32, class_id: usize, score: f32| {
        let bbox =
            BBox { x0: (cx - bw / 2.0) / w, y0: (cy - bh / 2.0) / h, x1: (cx + bw / 2.0) / w, y1: (cy + bh / 2.0) / h };
        found.push(Candidate { class_id: class_id as u32, score, bbox });
    };
    match layout {
        YoloLayout::AttributesFirst { classes } => {
            let n = dims[2] as usize;
            let at = |attribute: usize, anchor: usize| output[attribute * n + anchor];
            for i in 0..n {
                let (class_id, score) = best((0..classes).map(|c| at(4 + c, i)));
                if score >= min_score {
                    push(at(0, i), at(1, i), at(2, i), at(3, i), class_id, score);
                }
            }
        }
        YoloLayout::AnchorsFirst { classes } => {
            let stride = 5 + classes;
            for row in output.chunks_exact(stride) {
                let objectness = row[4];
                if objectness < min_score {
                    continue;
                }
                let (class_id, score) = best(row[5..].iter().copied());
                let score = score * objectness;
                if score >= min_score {
                    push(row[0], row[1], row[2], row[3], class_id, score);
                }
            }
        }
    }
    found
}

/// The best (class, score) of a row of class scores.
fn best(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    scores.enumerate().fold((0, f32::MIN), |b, (i, s)| if s > b.1 { (i, s) } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart_by_the_class_count() {
        assert_eq!(YoloLayout::detect(&[1, 84, 8400], 80), Ok(YoloLayout::AttributesFirst { classes: 80 }));
        assert_eq!(YoloLayout::detect(&[1, 25200, 85], 80), Ok(YoloLayout::AnchorsFirst { classes: 80 }));
        assert_eq!(YoloLayout::detect(&[-1, 22, -1], 18), Ok(YoloLayout::AttributesFirst { classes: 18 }));
        assert!(YoloLayout::detect(&[1, 84, 8400], 18).is_err());
        assert!(YoloLayout::detect(&[1, 20, 4], 80).is_err());
    }

    #[test]
    fn both_layouts_decode_the_same_box() {
        // One anchor of two classes: a box at (160, 80) of 64x32 pixels, class 1 at 0.8.
        let v8 = [160.0, 80.0, 64.0, 32.0, 0.1, 0.8];
        let found = decode(YoloLayout::AttributesFirst { classes: 2 }, &v8, &[1, 6, 1], 320, 320, 0.25);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].class_id, found[0].score), (1, 0.8));
        assert_eq!(found[0].bbox, BBox { x0: 0.4, y0: 0.2, x1: 0.6, y1: 0.3 });
        let v5 = [160.0, 80.0, 64.0, 32.0, 0.5, 0.1, 0.8];
        let found5 = decode(YoloLayout::AnchorsFirst { classes: 2 }, &v5, &[1, 1, 7], 320, 320, 0.25);
        assert_eq!((found5[0].class_id, found5[0].score, found5[0].bbox), (1, 0.4, found[0].bbox));
    }
}
