//! GPU execution providers: asking for one gives a clear error when this build or the ONNX
//! Runtime library lacks it, never a silent fall back to the CPU.
//! scripts/test.sh runs this file twice: as built by default, and with `--features cuda,tensorrt`
//! (against the CPU-only library of scripts/setup.sh).

mod common;

use common::root;
use vitrine_models::{find_runtime_library, Detector, DetectorConfig, ModelError, Runtime};
use vitrine_schemas::spec::{DecoderKind, ExecutionProvider};

fn load(provider: ExecutionProvider) -> Result<Detector, ModelError> {
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
        execution_provider: provider,
        device_id: 0,
    };
    Detector::load(&runtime, &config)
}

#[test]
fn the_cpu_needs_nothing() {
    assert!(load(ExecutionProvider::Cpu).is_ok());
}

#[test]
fn a_gpu_provider_without_its_build_or_library_is_a_clear_error() {
    for provider in [ExecutionProvider::Cuda, ExecutionProvider::Tensorrt] {
        let built = match provider {
            ExecutionProvider::Cuda => cfg!(feature = "cuda"),
            _ => cfg!(feature = "tensorrt"),
        };
        let err = load(provider).expect_err("the CPU library has no GPU provider").to_string();
        if built {
            // Built in, but the library of scripts/setup.sh is the CPU one.
            assert!(err.contains(&format!("could not start the `{}` execution provider", provider.as_str())), "{err}");
            assert!(err.contains("onnxruntime-gpu"), "{err}");
        } else {
            assert!(err.contains(&format!("--features {}", provider.as_str())), "{err}");
        }
    }
}
