//! look_alikes: a detection among many objects of its size and shape is part of a pattern
//! (sweets on a plate, a ball pit, a tiled wall), not a product the host shows.
//!
//! On vitrine's labelled show (docs/eval.md), every product a host showed had at most 3
//! look-alikes in its frame; the coloured sweets that the default model reads as balls,
//! oranges and apples had 5 to 8.

use vitrine_schemas::{BBox, Detection};

/// Boxes closer than this (intersection over union) are one object, seen under two labels.
const SAME_OBJECT_IOU: f32 = 0.3;

/// Whether `other` has about the size (area within 1.5x) and shape (aspect within 1.25x) of `subject`.
fn alike(subject: &BBox, other: &BBox) -> bool {
    let aspect = |b: &BBox| (b.x1 - b.x0) / (b.y1 - b.y0);
    let (area, other_area) = (subject.area(), other.area());
    if area <= 0.0 || other_area <= 0.0 {
        return false;
    }
    let within = |ratio: f32, most: f32| ratio.is_finite() && (1.0 / most..=most).contains(&ratio);
    within(other_area / area, 1.5) && within(aspect(other) / aspect(subject), 1.25)
}

/// The objects in `frame` that look like `subject` (about its size and shape, any label),
/// leaving out `subject` itself and counting an object seen under several labels once; counted
/// up to `up_to` (a crowded frame costs no more than the limit needs).
pub fn look_alikes(subject: &BBox, frame: &[Detection], up_to: usize) -> usize {
    let mut counted: Vec<&BBox> = Vec::new();
    for other in frame.iter().map(|d| &d.bbox) {
        if counted.len() >= up_to {
            break;
        }
        let same_object = |b: &BBox| other.iou(b) >= SAME_OBJECT_IOU;
        if alike(subject, other) && !same_object(subject) && !counted.iter().any(|b| same_object(b)) {
            counted.push(other);
        }
    }
    counted.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(label: &str, x: f32, y: f32, size: f32) -> Detection {
        let bbox = BBox { x0: x, y0: y, x1: x + size, y1: y + size * 1.8 };
        Detection { label: label.into(), class_id: 0, score: 0.7, bbox, track_id: None, embedding: None, product: None }
    }

    #[test]
    fn sweets_on_a_plate_look_alike_and_a_product_among_other_things_does_not() {
        // A row of round sweets, each read as a frisbee and some also as a ball: one object each.
        let mut sweets: Vec<Detection> = (0..6).map(|i| at("frisbee", 0.1 * i as f32, 0.2, 0.08)).collect();
        sweets.push(at("sports ball", 0.3, 0.2, 0.078));
        sweets.push(at("orange", 0.1, 0.6, 0.085));
        let orange = sweets.last().unwrap().bbox;
        assert_eq!(look_alikes(&orange, &sweets, usize::MAX), 6);
        assert_eq!(look_alikes(&orange, &sweets, 5), 5, "counted up to the limit");
        let ball = sweets[6].bbox;
        assert_eq!(
            look_alikes(&ball, &sweets, usize::MAX),
            6,
            "five other sweets and the orange; not itself as a frisbee"
        );

        // An orange on a table beside a larger bowl, a thin knife and a cup of its size.
        let table = vec![
            at("orange", 0.1, 0.1, 0.08),
            at("bowl", 0.4, 0.1, 0.3),
            Detection { bbox: BBox { x0: 0.5, y0: 0.6, x1: 0.52, y1: 0.9 }, ..at("knife", 0.0, 0.0, 0.0) },
            at("cup", 0.7, 0.6, 0.09),
        ];
        assert_eq!(look_alikes(&table[0].bbox, &table, usize::MAX), 1);
    }
}
