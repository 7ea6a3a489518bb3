//! vitrine's Rust path (zune-jpeg decode, fast_image_resize, ort) against Python onnxruntime
//! (Pillow decode and resize) on the same real photos, with the default SSD model.
//! The reference files are made by models/zoo/ssd-mobilenet-v2-coco-quant/reference/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.1 and boxes
//! must overlap the reference with IoU 0.8 or more; every reference detection scoring 0.5 or
//! more must be found with the same label.

use std::path::{Path, PathBuf};

use vitrine_models::{find_runtime_library, DecodeLimits, Detector, DetectorConfig, Preparer, Runtime};
use vitrine_schemas::spec::DecoderKind;
use vitrine_schemas::BBox;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn detector() -> Detector {
    let root = root();
    let library = find_runtime_library(None, &[&root]).expect("ONNX Runtime missing: run scripts/setup.sh");
    let runtime = Runtime::load(&library).unwrap();
    let config = DetectorConfig {
        model: root.join("models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx"),
        labels: None,
        decoder: DecoderKind::SsdPostprocessed,
        intra_threads: 1,
        min_score: 0.3,
        input_size: None,
        nms_iou: 0.45,
    };
    Detector::load(&runtime, &config).unwrap()
}

#[test]
fn model_shapes_are_what_the_decoder_expects() {
    let d = detector();
    assert_eq!((d.input().width, d.input().height), (300, 300));
    assert_eq!(d.name(), "ssd-mobilenet-v2-coco-quant@ssd_postprocessed");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut detector = detector();
    // The reference resizes the whole photo, so compare without cutting bars.
    let mut preparer = Preparer::new(DecodeLimits { crop_bars: false, ..DecodeLimits::default() });
    let reference_dir = root().join("models/zoo/ssd-mobilenet-v2-coco-quant/reference");
    let mut checked = 0;
    for photo in ["coffee", "apple", "fruits"] {
        let jpeg = std::fs::read(root().join(format!("models/tests/fixtures/{photo}.jpg"))).unwrap();
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(reference_dir.join(format!("{photo}.json"))).unwrap()).unwrap();
        let input = detector.input();
        let prepared = preparer.prepare(&jpeg, input).unwrap();
        let found = detector.detect(&prepared).unwrap();
        for want in reference["detections"].as_array().unwrap() {
            let score = want["score"].as_f64().unwrap() as f32;
            if score < 0.5 {
                continue;
            }
            let label = want["label"].as_str().unwrap();
            let b: Vec<f32> = want["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let want_box = BBox { x0: b[0], y0: b[1], x1: b[2], y1: b[3] };
            let best = found
                .iter()
                .filter(|d| d.label == label)
                .max_by(|a, b| a.bbox.iou(&want_box).total_cmp(&b.bbox.iou(&want_box)))
                .unwrap_or_else(|| panic!("{photo}: no `{label}` found; vitrine found {found:?}"));
            let iou = best.bbox.iou(&want_box);
            assert!(
                iou >= 0.8,
                "{photo}: `{label}` box {:?} overlaps the reference {want_box:?} only {iou:.2}",
                best.bbox
            );
            assert!(
                (best.score - score).abs() <= 0.1,
                "{photo}: `{label}` scored {:.3}, the reference {score:.3}",
                best.score
            );
            checked += 1;
        }
    }
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
