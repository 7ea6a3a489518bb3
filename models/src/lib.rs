//! Object detection for vitrine: JPEG frames in, labelled boxes out.
//!
//! [`prepare`] decodes a JPEG, cuts letterbox bars and resizes it (SIMD) to the model's
//! input; [`Detector`] runs an ONNX model through ONNX Runtime and decodes its outputs;
//! [`Embedder`] turns a picture into a vector that lies close to those of the same product.
//! Nothing here knows about timely, so it can be tested and benchmarked alone.

pub mod colour;
mod detector;
mod embedder;
mod error;
mod labels;
mod nanodet;
mod nms;
mod prepare;
mod runtime;
mod scaled_decode;
mod scan_check;
mod yolo;

pub use detector::{Detector, DetectorConfig};
pub use embedder::{Embedder, EmbedderConfig, Embedding};
pub use error::ModelError;
pub use labels::Labels;
pub use nms::{merge_detections, nms, Candidate};
pub use prepare::{find_bars, prepare, tiles, Crop, DecodeLimits, Fit, InputSpec, Prepared, Preparer};
pub use runtime::{find_runtime_library, Runtime};
pub use scaled_decode::ScaledDecoder;
pub use scan_check::{block_brightness, frame_size};
