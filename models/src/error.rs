use std::path::PathBuf;

/// Everything that can go wrong between a JPEG and its detections.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("frame is {bytes} bytes, over the limit of {limit} (decode.max_bytes)")]
    TooLarge { bytes: usize, limit: usize },
    #[error("frame is {width}x{height} pixels, over the limit of {limit} a side (decode.max_side)")]
    TooManyPixels { width: u32, height: u32, limit: u32 },
    #[error("not a decodable JPEG: {0}")]
    BadJpeg(String),
    #[error("resize failed: {0}")]
    Resize(String),
    #[error("could not load ONNX Runtime from {path}: {reason}. Run scripts/setup.sh, or point ORT_DYLIB_PATH or model.runtime_library at libonnxruntime.so.1.32 (or newer)")]
    RuntimeLibrary { path: PathBuf, reason: String },
    #[error("no ONNX Runtime library found (looked at {looked}). Run scripts/setup.sh, or set ORT_DYLIB_PATH or model.runtime_library")]
    NoRuntimeLibrary { looked: String },
    #[error("model.execution_provider is `{provider}`, but this vitrine was built without it: rebuild with `cargo build --release --features {provider}` (and point model.runtime_library at an ONNX Runtime built with {provider}, e.g. from the PyPI onnxruntime-gpu wheel)")]
    ProviderNotBuilt { provider: &'static str },
    #[error("could not start the `{provider}` execution provider: {reason}. It needs an ONNX Runtime library built with it (e.g. the PyPI onnxruntime-gpu wheel's, with its libonnxruntime_providers_*.so beside it), an NVIDIA driver and a GPU; or set model.execution_provider: cpu")]
    ProviderFailed { provider: &'static str, reason: String },
    #[error("could not load model {path}: {reason}. Is it an ONNX model? (models/zoo holds the ones vitrine is tested with; model.decoder says how its outputs are read)")]
    LoadModel { path: PathBuf, reason: String },
    #[error("model {path} does not fit decoder `{decoder}`: {reason}")]
    ModelShape { path: PathBuf, decoder: &'static str, reason: String },
    #[error("could not read labels {path}: {reason}")]
    Labels { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}
