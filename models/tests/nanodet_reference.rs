//! The NanoDet decoder (raw GFL heads, BGR mean/std input, NMS in Rust) against Python
//! onnxruntime + numpy on real photos, with NanoDet-m 416 COCO (models/zoo/nanodet-m-416-coco).
//! The reference files are made by models/zoo/nanodet-m-416-coco/reference/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.05 and boxes
//! must overlap the reference with IoU 0.8 or more; every reference detection scoring 0.35
//! or more must be found with the same label.

mod common;

use common::{check_against_reference, detector, Tolerance};
use vitrine_models::Fit;
use vitrine_schemas::spec::DecoderKind;

const MODEL: &str = "models/zoo/nanodet-m-416-coco/model.onnx";

#[test]
fn heads_and_input_are_read_from_the_model() {
    let d = detector(MODEL, DecoderKind::Nanodet, 0.3);
    let input = d.input();
    assert_eq!((input.width, input.height, input.fit), (416, 416, Fit::Stretch));
    assert_eq!(d.name(), "nanodet-m-416-coco@nanodet");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut d = detector(MODEL, DecoderKind::Nanodet, 0.3);
    let tolerance = Tolerance { from_score: 0.35, min_iou: 0.8, score: 0.05 };
    let checked = check_against_reference(
        &mut d,
        "models/zoo/nanodet-m-416-coco/reference",
        &["coffee", "apple", "fruits"],
        tolerance,
    );
    assert!(checked >= 4, "only {checked} reference detections were checked");
}
