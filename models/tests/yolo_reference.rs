//! The YOLO decoder (Ultralytics `[1, 4+C, N]` output, letterboxed float input, NMS in Rust)
//! against Python onnxruntime + numpy on real photos, with a real YOLOv8n model: nudenet's
//! `320n.onnx` (installed by scripts/setup.sh into .vitrine/models/, never committed).
//! The reference files are made by models/tests/reference/yolov8-nudenet-320n/make_reference.py.
//!
//! Tolerance: the two resizers differ slightly, so scores may differ by up to 0.05 and boxes
//! must overlap the reference with IoU 0.85 or more; every reference detection must be
//! found with the same label.

mod common;

use common::{check_against_reference, detector, Tolerance};
use vitrine_models::Fit;
use vitrine_schemas::spec::DecoderKind;

const MODEL: &str = ".vitrine/models/nudenet-320n.onnx";

#[test]
fn size_layout_and_labels_come_from_the_model() {
    let d = detector(MODEL, DecoderKind::Yolo, 0.25);
    let input = d.input();
    assert_eq!((input.width, input.height, input.fit), (320, 320, Fit::Letterbox), "imgsz metadata");
    assert_eq!(d.name(), "nudenet-320n@yolo");
}

#[test]
fn detections_match_python_onnxruntime_on_real_photos() {
    let mut d = detector(MODEL, DecoderKind::Yolo, 0.25);
    let tolerance = Tolerance { from_score: 0.0, min_iou: 0.85, score: 0.05 };
    // A square photo and a wide crop of it (letterboxed with padding above and below).
    let photos = ["astronaut", "astronaut-wide"];
    let checked = check_against_reference(&mut d, "models/tests/reference/yolov8-nudenet-320n", &photos, tolerance);
    assert!(checked >= 2, "only {checked} reference detections were checked");
}

#[test]
fn a_batch_gives_each_frame_the_detections_it_gets_alone() {
    let mut d = detector(MODEL, DecoderKind::Yolo, 0.25);
    assert!(d.batches(), "320n.onnx has a dynamic batch dimension");
    let mut preparer = vitrine_models::Preparer::new(vitrine_models::DecodeLimits::default());
    let photos = ["astronaut", "coffee", "astronaut-wide"];
    let prepared: Vec<_> = photos
        .iter()
        .map(|p| {
            let jpeg = std::fs::read(common::root().join(format!("models/tests/fixtures/{p}.jpg"))).unwrap();
            preparer.prepare(&jpeg, d.input()).unwrap()
        })
        .collect();
    let alone: Vec<_> = prepared.iter().map(|p| d.detect(p).unwrap()).collect();
    let batched: Vec<_> =
        d.detect_batch(&prepared.iter().collect::<Vec<_>>()).into_iter().map(Result::unwrap).collect();
    assert!(alone.iter().any(|f| !f.is_empty()));
    for ((photo, a), b) in photos.iter().zip(&alone).zip(&batched) {
        assert_eq!(a.len(), b.len(), "{photo}: {a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.label, y.label, "{photo}");
            assert!((x.score - y.score).abs() < 1e-4 && x.bbox.iou(&y.bbox) > 0.999, "{photo}: {x:?} vs {y:?}");
        }
    }
}
