//! The YOLO decoder (Ultralytics `[1, 4+C, N]` output, letterboxed float input, NMS in Rust)
//! against Python onnxruntime + numpy on real photos, with a real YOLOv8n model: nudenet's
//! `320n.onnx` (installed by scripts/setup.sh into .vitrine/models/, never committed).
//! The reference files are made by models/tests/reference/yolov8-nudenet-320n/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.05 and boxes
//! must overlap the reference with IoU 0.85 or more; every reference detection must be
//! found with the same label, and nothing else scoring 0.5 or more.

use std::path::{Path, PathBuf};

use vitrine_models::{find_runtime_library, DecodeLimits, Detector, DetectorConfig, Fit, Preparer, Runtime};
use vitrine_schemas::spec::DecoderKind;
use vitrine_schemas::BBox;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn detector() -> Detector {
    let root = root();
    let library = find_runtime_library(None, &[&root]).expect("ONNX Runtime missing: run scripts/setup.sh");
    let runtime = Runtime::load(&library).unwrap();
    let model = root.join(".vitrine/models/nudenet-320n.onnx");
    assert!(model.exists(), "{} is missing: run scripts/setup.sh", model.display());
    let config = DetectorConfig {
        model,
        labels: None,
        decoder: DecoderKind::Yolo,
        intra_threads: 1,
        min_score: 0.25,
        input_size: None,
        nms_iou: 0.45,
    };
    Detector::load(&runtime, &config).unwrap()
}

#[test]
fn size_layout_and_labels_come_from_the_model() {
    let d = detector();
    let input = d.input();
    assert_eq!((input.width, input.height, input.fit), (320, 320, Fit::Letterbox), "imgsz metadata");
    assert_eq!(d.name(), "nudenet-320n@yolo");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut detector = detector();
    let mut preparer = Preparer::new(DecodeLimits { crop_bars: false, ..DecodeLimits::default() });
    let reference_dir = root().join("models/tests/reference/yolov8-nudenet-320n");
    let mut checked = 0;
    // A square photo and a wide crop of it (letterboxed with padding above and below).
    for photo in ["astronaut", "astronaut-wide"] {
        let jpeg = std::fs::read(root().join(format!("models/tests/fixtures/{photo}.jpg"))).unwrap();
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(reference_dir.join(format!("{photo}.json"))).unwrap()).unwrap();
        let prepared = preparer.prepare(&jpeg, detector.input()).unwrap();
        let found = detector.detect(&prepared).unwrap();
        let wanted = reference["detections"].as_array().unwrap();
        for want in wanted {
            let score = want["score"].as_f64().unwrap() as f32;
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
                iou >= 0.85,
                "{photo}: `{label}` box {:?} overlaps the reference {want_box:?} only {iou:.2}",
                best.bbox
            );
            assert!(
                (best.score - score).abs() <= 0.05,
                "{photo}: `{label}` scored {:.3}, the reference {score:.3}",
                best.score
            );
            checked += 1;
        }
        let extra: Vec<_> = found
            .iter()
            .filter(|d| d.score >= 0.5)
            .filter(|d| !wanted.iter().any(|w| w["label"] == d.label.as_str()))
            .collect();
        assert!(extra.is_empty(), "{photo}: not in the reference: {extra:?}");
    }
    assert!(checked >= 2, "only {checked} reference detections were checked");
}
