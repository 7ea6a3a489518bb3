//! The `detections6` decoder (a graph that decodes into `[1, N, 6]`: x0, y0, x1, y1 in input
//! pixels, score, class; float NHWC input) against Python onnxruntime + numpy on real photos,
//! with CenterNet MobileNetV3 512 COCO (models/zoo/centernet-mobilenetv3-512-coco). The
//! reference files are made by models/zoo/centernet-mobilenetv3-512-coco/reference/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.05 and boxes
//! must overlap the reference with IoU 0.8 or more; every reference detection scoring 0.33 or
//! more (clear of the 0.3 cut) must be found with the same label.

mod common;

use common::{check_against_reference, detector, Tolerance};
use vitrine_models::Fit;
use vitrine_schemas::spec::DecoderKind;

const MODEL: &str = "models/zoo/centernet-mobilenetv3-512-coco/model.onnx";

#[test]
fn the_detections_output_is_found_among_the_models_outputs() {
    let d = detector(MODEL, DecoderKind::Detections6, 0.25);
    let input = d.input();
    assert_eq!((input.width, input.height, input.fit), (512, 512, Fit::Stretch));
    assert_eq!(d.name(), "centernet-mobilenetv3-512-coco@detections6");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut d = detector(MODEL, DecoderKind::Detections6, 0.25);
    let tolerance = Tolerance { from_score: 0.33, min_iou: 0.8, score: 0.05 };
    let reference = "models/zoo/centernet-mobilenetv3-512-coco/reference";
    let checked = check_against_reference(&mut d, reference, &["coffee", "apple", "fruits"], tolerance);
    assert!(checked >= 4, "only {checked} reference detections were checked");
}
