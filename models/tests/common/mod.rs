//! Shared by the model reference tests: a detector of a given model and decoder, and the
//! comparison of vitrine's detections with a reference made by Python onnxruntime.

#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};

use vitrine_models::{find_runtime_library, DecodeLimits, Detector, DetectorConfig, Preparer, Runtime};
use vitrine_schemas::spec::{DecoderKind, ExecutionProvider};
use vitrine_schemas::BBox;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn detector(model: &str, decoder: DecoderKind, min_score: f32) -> Detector {
    let root = root();
    let library = find_runtime_library(None, &[&root]).expect("ONNX Runtime missing: run scripts/setup.sh");
    let runtime = Runtime::load(&library).unwrap();
    let model = root.join(model);
    assert!(model.exists(), "{} is missing: run scripts/setup.sh", model.display());
    let config = DetectorConfig {
        model,
        labels: None,
        decoder,
        intra_threads: 1,
        min_score,
        input_size: None,
        nms_iou: 0.45,
        execution_provider: ExecutionProvider::Cpu,
        device_id: 0,
    };
    Detector::load(&runtime, &config).unwrap()
}

/// How close vitrine must come to the reference.
pub struct Tolerance {
    /// Reference detections below this score are not checked (near the threshold, either side may drop them).
    pub from_score: f32,
    pub min_iou: f32,
    pub score: f32,
}

/// Runs `detector` on each photo of models/tests/fixtures (whole, no bars cut, as the
/// reference does) and checks every reference detection in `reference_dir` is found with
/// the same label, an overlapping box and a close score, and that nothing scoring 0.5 or
/// more has a label the reference lacks. Returns how many were checked.
pub fn check_against_reference(
    detector: &mut Detector,
    reference_dir: &str,
    photos: &[&str],
    tolerance: Tolerance,
) -> usize {
    let mut preparer = Preparer::new(DecodeLimits { crop_bars: false, ..DecodeLimits::default() });
    let mut checked = 0;
    for photo in photos {
        let jpeg = std::fs::read(root().join(format!("models/tests/fixtures/{photo}.jpg"))).unwrap();
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root().join(reference_dir).join(format!("{photo}.json"))).unwrap())
                .unwrap();
        let prepared = preparer.prepare(&jpeg, detector.input()).unwrap();
        let found = detector.detect(&prepared).unwrap();
        let wanted = reference["detections"].as_array().unwrap();
        let extra: Vec<_> =
            found.iter().filter(|d| d.score >= 0.5 && !wanted.iter().any(|w| w["label"] == d.label.as_str())).collect();
        assert!(extra.is_empty(), "{photo}: found with 0.5 or more, not in the reference: {extra:?}");
        for want in wanted {
            let score = want["score"].as_f64().unwrap() as f32;
            if score < tolerance.from_score {
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
                iou >= tolerance.min_iou,
                "{photo}: `{label}` box {:?} overlaps the reference {want_box:?} only {iou:.2}",
                best.bbox
            );
            assert!(
                (best.score - score).abs() <= tolerance.score,
                "{photo}: `{label}` scored {:.3}, the reference {score:.3}",
                best.score
            );
            checked += 1;
        }
    }
    checked
}
