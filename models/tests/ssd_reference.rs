//! vitrine's Rust path (zune-jpeg decode, fast_image_resize, ort) against Python onnxruntime
//! (Pillow decode and resize) on the same real photos, with the default SSD model.
//! The reference files are made by models/zoo/ssd-mobilenet-v2-coco-quant/reference/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.1 and boxes
//! must overlap the reference with IoU 0.8 or more; every reference detection scoring 0.5 or
//! more must be found with the same label.

mod common;

use common::{check_against_reference, root, Tolerance};
use vitrine_models::{DecodeLimits, Detector, Preparer};
use vitrine_schemas::spec::DecoderKind;

fn detector() -> Detector {
    common::detector("models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx", DecoderKind::SsdPostprocessed, 0.3)
}

#[test]
fn model_shapes_are_what_the_decoder_expects() {
    let d = detector();
    assert_eq!((d.input().width, d.input().height), (300, 300));
    assert_eq!(d.name(), "ssd-mobilenet-v2-coco-quant@ssd_postprocessed");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut d = detector();
    let tolerance = Tolerance { from_score: 0.5, min_iou: 0.8, score: 0.1 };
    let reference = "models/zoo/ssd-mobilenet-v2-coco-quant/reference";
    let checked = check_against_reference(&mut d, reference, &["coffee", "apple", "fruits"], tolerance);
    assert!(checked >= 4, "only {checked} reference detections were checked");
}

#[test]
fn cutting_bars_keeps_the_product_found() {
    // The sample stream shows photos inside bars; cut or not, the cup must be found in the same place.
    let mut detector = detector();
    let jpeg = std::fs::read(root().join("models/tests/fixtures/coffee.jpg")).unwrap();
    let input = detector.input();
    let whole =
        Preparer::new(DecodeLimits { crop_bars: false, ..DecodeLimits::default() }).prepare(&jpeg, input).unwrap();
    let cut = Preparer::new(DecodeLimits::default()).prepare(&jpeg, input).unwrap();
    let mut cup = |p| detector.detect(p).unwrap().into_iter().find(|d| d.label == "cup").expect("a cup");
    let (a, b) = (cup(&whole), cup(&cut));
    assert!(a.bbox.iou(&b.bbox) > 0.8, "{a:?} vs {b:?}");
}
