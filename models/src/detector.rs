//! One ONNX detector session and the decoding of its outputs.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;
use vitrine_schemas::spec::DecoderKind;
use vitrine_schemas::Detection;

use crate::{Labels, ModelError, Prepared, Runtime};

/// What is needed to load a detector.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// `labels.txt` beside the model when not given.
    pub labels: Option<PathBuf>,
    pub decoder: DecoderKind,
    pub intra_threads: usize,
    /// Detections below this score are dropped.
    pub min_score: f32,
}

/// The picture size a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
}

/// A loaded detector. `Session::run` needs `&mut`, so each worker owns one.
#[derive(Debug)]
pub struct Detector {
    session: Session,
    labels: Labels,
    input_name: String,
    input: InputSpec,
    name: String,
    min_score: f32,
}

fn build_session(runtime: &Runtime, path: &Path, threads: usize) -> ort::Result<Session> {
    Session::builder(runtime.environment())?.with_intra_threads(threads)?.with_inter_threads(1)?.commit_from_file(path)
}

impl Detector {
    pub fn load(runtime: &Runtime, config: &DetectorConfig) -> Result<Detector, ModelError> {
        let path = &config.model;
        let session = build_session(runtime, path, config.intra_threads.max(1))
            .map_err(|e| ModelError::LoadModel { path: path.clone(), reason: e.to_string() })?;
        let labels_path =
            config.labels.clone().unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("labels.txt"));
        let labels = Labels::load(&labels_path)?;
        let shape_error =
            |reason: String| ModelError::ModelShape { path: path.clone(), decoder: "ssd_postprocessed", reason };
        let DecoderKind::SsdPostprocessed = config.decoder;
        // Input: uint8 NHWC [1, H, W, 3].
        let input = session.inputs().first().ok_or_else(|| shape_error("the model has no input".into()))?;
        let dims: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .ok_or_else(|| shape_error("its input is not a tensor".into()))?;
        if dims.len() != 4 || dims[3] != 3 || dims[1] <= 0 || dims[2] <= 0 {
            return Err(shape_error(format!("expected an NHWC input [1, H, W, 3], found {dims:?}")));
        }
        if input.dtype().tensor_type() != Some(ort::value::TensorElementType::Uint8) {
            return Err(shape_error(format!("expected a uint8 input, found {:?}", input.dtype().tensor_type())));
        }
        let outputs = session.outputs();
        if outputs.len() != 4 {
            return Err(shape_error(format!(
                "expected 4 outputs (boxes, classes, scores, count), found {}",
                outputs.len()
            )));
        }
        let input_name = input.name().to_string();
        let name = format!("{}@ssd_postprocessed", path.file_stem().and_then(|s| s.to_str()).unwrap_or("model"));
        let name = match path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()) {
            Some(dir) if name.starts_with("model@") => name.replacen("model", dir, 1),
            _ => name,
        };
        tracing::info!(model = %path.display(), input = ?dims, labels = labels.len(), "detector loaded");
        Ok(Detector {
            session,
            labels,
            input_name,
            input: InputSpec { width: dims[2] as u32, height: dims[1] as u32 },
            name,
            min_score: config.min_score,
        })
    }

    /// The picture size to prepare frames at.
    pub fn input(&self) -> InputSpec {
        self.input
    }

    /// The model's name, as written into detections (`{folder}@{decoder}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the model on one prepared frame. Boxes are normalised to the whole frame.
    pub fn detect(&mut self, prepared: &Prepared) -> Result<Vec<Detection>, ModelError> {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        if prepared.width as usize != w || prepared.height as usize != h {
            return Err(ModelError::Inference(format!(
                "frame prepared at {}x{}, the model takes {w}x{h}",
                prepared.width, prepared.height
            )));
        }
        let tensor = TensorRef::from_array_view(([1usize, h, w, 3], &prepared.pixels[..]))
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let f32s = |i: usize| {
            outputs[i]
                .try_extract_tensor::<f32>()
                .map(|(_, data)| data)
                .map_err(|e| ModelError::Inference(format!("output {i}: {e}")))
        };
        let (boxes, classes, scores, count) = (f32s(0)?, f32s(1)?, f32s(2)?, f32s(3)?);
        let n = (count.first().copied().unwrap_or(0.0).max(0.0) as usize)
            .min(scores.len())
            .min(classes.len())
            .min(boxes.len() / 4);
        let mut found = Vec::with_capacity(n);
        for i in 0..n {
            let score = scores[i];
            if score < self.min_score {
                continue;
            }
            let class_id = classes[i].max(0.0) as u32;
            let b = &boxes[i * 4..i * 4 + 4]; // ymin, xmin, ymax, xmax
            found.push(Detection {
                label: self.labels.name(class_id),
                class_id,
                score,
                bbox: prepared.to_frame(b[1], b[0], b[3], b[2]),
                track_id: None,
            });
        }
        Ok(found)
    }
}
