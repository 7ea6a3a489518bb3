//! Non-maximum suppression for decoders whose models leave it to the caller.

use vitrine_schemas::{BBox, Detection};

/// A box before suppression: class, score, box (any consistent coordinates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

/// Per class, keeps the best box and drops every box overlapping a kept one by more than
/// `iou`; at most `limit` boxes, best first.
pub fn nms(mut candidates: Vec<Candidate>, iou: f32, limit: usize) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() == limit {
            break;
        }
        if kept.iter().all(|k| k.class_id != c.class_id || k.bbox.iou(&c.bbox) <= iou) {
            kept.push(c);
        }
    }
    kept
}

/// Detections of one frame found in several pictures of it (the whole and tiles), in frame
/// coordinates, merged: per class, the best box of each object (see [`nms`]).
pub fn merge_detections(mut detections: Vec<Detection>, iou: f32) -> Vec<Detection> {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in detections {
        if kept.iter().all(|k| k.class_id != d.class_id || k.bbox.iou(&d.bbox) <= iou) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class_id: u32, score: f32, x0: f32) -> Candidate {
        Candidate { class_id, score, bbox: BBox { x0, y0: 0.0, x1: x0 + 1.0, y1: 1.0 } }
    }

    #[test]
    fn overlapping_boxes_of_one_class_collapse_to_the_best() {
        let kept = nms(vec![c(0, 0.6, 0.05), c(0, 0.9, 0.0), c(1, 0.5, 0.0), c(0, 0.7, 3.0)], 0.45, 10);
        assert_eq!(kept, vec![c(0, 0.9, 0.0), c(0, 0.7, 3.0), c(1, 0.5, 0.0)]);
        assert_eq!(nms(vec![c(0, 0.9, 0.0), c(0, 0.7, 3.0)], 0.45, 1).len(), 1);
    }
}
