//! One ONNX detector session and the decoding of its outputs.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use vitrine_schemas::spec::{DecoderKind, ExecutionProvider};
use vitrine_schemas::{BBox, Detection};

use crate::nanodet;
use crate::nms::{nms, Candidate};
use crate::yolo::{self, YoloLayout};
use crate::{Fit, InputSpec, Labels, ModelError, Prepared, Runtime};

/// What is needed to load a detector.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// Default: the model's `names` metadata, else `labels.txt` beside the model.
    pub labels: Option<PathBuf>,
    pub decoder: DecoderKind,
    pub intra_threads: usize,
    /// Detections below this are dropped.
    pub min_score: f32,
    /// Input size for models whose input size is dynamic (default: `imgsz` metadata, else 640).
    pub input_size: Option<u32>,
    /// IoU above which NMS drops the weaker of two boxes of one class (decoders without NMS in the graph).
    pub nms_iou: f32,
    pub execution_provider: ExecutionProvider,
    pub device_id: u32,
}

/// How a model's outputs are read.
#[derive(Clone, Debug)]
enum Decoder {
    /// boxes, classes, scores, count (post-processing in the graph).
    SsdPostprocessed,
    Yolo(YoloLayout),
    Nanodet(Vec<nanodet::Level>),
    /// Output index of the `[1, N, 6]` detections; whether the NHWC input is float (0..255).
    Detections6 {
        output: usize,
        float_input: bool,
    },
}

/// How RGB bytes become a float NCHW input: channel order, then `(v - mean) / std`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Normalize {
    pub(crate) bgr: bool,
    pub(crate) mean: [f32; 3],
    pub(crate) std: [f32; 3],
}

/// Ultralytics: RGB in 0..1.
const YOLO_INPUT: Normalize = Normalize { bgr: false, mean: [0.0; 3], std: [255.0; 3] };
/// NanoDet: BGR, ImageNet mean and std in 0..255 (in B, G, R order).
const NANODET_INPUT: Normalize = Normalize { bgr: true, mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] };

/// At most this many detections a frame.
const MAX_DETECTIONS: usize = 100;

/// A loaded detector. `Session::run` needs `&mut`, so each worker owns one.
#[derive(Debug)]
pub struct Detector {
    session: Session,
    labels: Labels,
    input_name: String,
    input: InputSpec,
    decoder: Decoder,
    name: String,
    min_score: f32,
    nms_iou: f32,
    /// Float NCHW input, reused from frame to frame.
    planar: Vec<f32>,
    /// Whether the model takes several frames in one run (a dynamic batch dimension).
    batches: bool,
}

/// An ONNX Runtime session of the model at `path` on `provider`, with `intra_threads` threads.
pub(crate) fn build_session(
    runtime: &Runtime,
    path: &Path,
    intra_threads: usize,
    provider: ExecutionProvider,
    device_id: u32,
) -> Result<Session, ModelError> {
    let load_error = |e: ort::Error| ModelError::LoadModel { path: path.to_path_buf(), reason: e.to_string() };
    let builder = Session::builder(runtime.environment())
        .and_then(|b| b.with_intra_threads(intra_threads.max(1)).map_err(ort::Error::from))
        .and_then(|b| b.with_inter_threads(1).map_err(ort::Error::from))
        .map_err(load_error)?;
    let builder = match execution_providers(provider, device_id)? {
        None => builder,
        Some(providers) => builder.with_execution_providers(providers).map_err(|e| ModelError::ProviderFailed {
            provider: provider.as_str(),
            reason: e.to_string().trim_end_matches('.').to_string(),
        })?,
    };
    let mut builder = builder;
    builder.commit_from_file(path).map_err(load_error)
}

/// The ONNX Runtime execution providers for `provider` (none: the CPU), each an error if it
/// cannot start rather than a silent fall back to the CPU.
fn execution_providers(
    provider: ExecutionProvider,
    device_id: u32,
) -> Result<Option<Vec<ort::ep::ExecutionProviderDispatch>>, ModelError> {
    let _ = device_id;
    match provider {
        ExecutionProvider::Cpu => Ok(None),
        #[cfg(feature = "cuda")]
        ExecutionProvider::Cuda => {
            Ok(Some(vec![ort::ep::CUDA::default().with_device_id(device_id as i32).build().error_on_failure()]))
        }
        #[cfg(feature = "tensorrt")]
        ExecutionProvider::Tensorrt => Ok(Some(vec![
            ort::ep::TensorRT::default().with_device_id(device_id as i32).build().error_on_failure(),
            #[cfg(feature = "cuda")]
            ort::ep::CUDA::default().with_device_id(device_id as i32).build(),
        ])),
        #[allow(unreachable_patterns)] // every provider is reachable once every feature is on
        other => Err(ModelError::ProviderNotBuilt { provider: other.as_str() }),
    }
}

pub(crate) fn shape_of(dtype: &ort::value::ValueType) -> Option<Vec<i64>> {
    dtype.tensor_shape().map(|s| s.iter().copied().collect())
}

impl Detector {
    pub fn load(runtime: &Runtime, config: &DetectorConfig) -> Result<Detector, ModelError> {
        let path = &config.model;
        let session = build_session(runtime, path, config.intra_threads, config.execution_provider, config.device_id)?;
        let decoder_name = config.decoder.as_str();
        let shape_error = |reason: String| ModelError::ModelShape { path: path.clone(), decoder: decoder_name, reason };
        let metadata = |key: &str| session.metadata().ok().and_then(|m| m.custom(key));
        let labels = match (&config.labels, metadata("names")) {
            (Some(file), _) => Labels::load(file)?,
            (None, Some(names)) => Labels::parse_python_dict(&names).map_err(|reason| ModelError::Labels {
                path: path.clone(),
                reason: format!("`names` metadata: {reason}"),
            })?,
            (None, None) => Labels::load(&path.parent().unwrap_or(Path::new(".")).join("labels.txt"))?,
        };
        let input = session.inputs().first().ok_or_else(|| shape_error("the model has no input".into()))?;
        let dims = shape_of(input.dtype()).ok_or_else(|| shape_error("its input is not a tensor".into()))?;
        let element = input.dtype().tensor_type();
        let (input_spec, decoder) = match config.decoder {
            DecoderKind::SsdPostprocessed => {
                if dims.len() != 4 || dims[3] != 3 || dims[1] <= 0 || dims[2] <= 0 {
                    return Err(shape_error(format!("expected an NHWC input [1, H, W, 3], found {dims:?}")));
                }
                if element != Some(TensorElementType::Uint8) {
                    return Err(shape_error(format!("expected a uint8 input, found {element:?}")));
                }
                if session.outputs().len() != 4 {
                    return Err(shape_error(format!(
                        "expected 4 outputs (boxes, classes, scores, count), found {}",
                        session.outputs().len()
                    )));
                }
                let spec = InputSpec { width: dims[2] as u32, height: dims[1] as u32, fit: Fit::Stretch };
                (spec, Decoder::SsdPostprocessed)
            }
            DecoderKind::Nanodet => {
                if dims.len() != 4 || dims[1] != 3 || dims[2] <= 0 || dims[3] <= 0 {
                    return Err(shape_error(format!("expected an NCHW input [1, 3, H, W], found {dims:?}")));
                }
                if element != Some(TensorElementType::Float32) {
                    return Err(shape_error(format!("expected a float32 input, found {element:?}")));
                }
                let shapes: Vec<Vec<i64>> = session.outputs().iter().filter_map(|o| shape_of(o.dtype())).collect();
                let (width, height) = (dims[3] as u32, dims[2] as u32);
                let levels = nanodet::levels(&shapes, width, height, labels.len()).map_err(shape_error)?;
                (InputSpec { width, height, fit: Fit::Stretch }, Decoder::Nanodet(levels))
            }
            DecoderKind::Detections6 => {
                if dims.len() != 4 || dims[3] != 3 || dims[1] <= 0 || dims[2] <= 0 {
                    return Err(shape_error(format!("expected an NHWC input [1, H, W, 3], found {dims:?}")));
                }
                let float_input = match element {
                    Some(TensorElementType::Float32) => true,
                    Some(TensorElementType::Uint8) => false,
                    other => return Err(shape_error(format!("expected a float32 or uint8 input, found {other:?}"))),
                };
                let output = session
                    .outputs()
                    .iter()
                    .position(|o| shape_of(o.dtype()).is_some_and(|d| d.len() == 3 && d[2] == 6))
                    .ok_or_else(|| shape_error("no output of shape [1, N, 6]".into()))?;
                let spec = InputSpec { width: dims[2] as u32, height: dims[1] as u32, fit: Fit::Stretch };
                (spec, Decoder::Detections6 { output, float_input })
            }
            DecoderKind::Yolo => {
                if dims.len() != 4 || dims[1] != 3 {
                    return Err(shape_error(format!("expected an NCHW input [1, 3, H, W], found {dims:?}")));
                }
                if element != Some(TensorElementType::Float32) {
                    return Err(shape_error(format!("expected a float32 input, found {element:?}")));
                }
                let [output] = session.outputs() else {
                    return Err(shape_error(format!("expected one output, found {}", session.outputs().len())));
                };
                let out_dims =
                    shape_of(output.dtype()).ok_or_else(|| shape_error("its output is not a tensor".into()))?;
                let layout = YoloLayout::detect(&out_dims, labels.len()).map_err(shape_error)?;
                let size = config.input_size.or_else(|| metadata("imgsz").and_then(|s| imgsz(&s))).unwrap_or(640);
                let side = |d: i64| if d > 0 { d as u32 } else { size };
                (InputSpec { width: side(dims[3]), height: side(dims[2]), fit: Fit::Letterbox }, Decoder::Yolo(layout))
            }
        };
        let batches = matches!(decoder, Decoder::Yolo(_)) && dims.first().is_some_and(|&b| b <= 0);
        let input_name = input.name().to_string();
        let name = format!("{}@{decoder_name}", path.file_stem().and_then(|s| s.to_str()).unwrap_or("model"));
        let name = match path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()) {
            Some(dir) if name.starts_with("model@") => name.replacen("model", dir, 1),
            _ => name,
        };
        tracing::info!(model = %path.display(), decoder = decoder_name, input = ?dims,
            width = input_spec.width, height = input_spec.height, labels = labels.len(), "detector loaded");
        Ok(Detector {
            session,
            labels,
            input_name,
            input: input_spec,
            decoder,
            name,
            min_score: config.min_score,
            nms_iou: config.nms_iou,
            planar: Vec::new(),
            batches,
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

    /// The IoU above which NMS drops the weaker of two boxes of one class.
    pub fn nms_iou(&self) -> f32 {
        self.nms_iou
    }

    /// Whether [`Detector::detect_batch`] runs several frames at once (the model has a dynamic
    /// batch dimension and its decoder reads batches) rather than one after the other.
    pub fn batches(&self) -> bool {
        self.batches
    }

    /// Runs the model on several prepared frames, in one run where the model allows it.
    /// A batch that fails is retried frame by frame, so one bad frame fails alone.
    pub fn detect_batch(&mut self, frames: &[&Prepared]) -> Vec<Result<Vec<Detection>, ModelError>> {
        let Decoder::Yolo(layout) = self.decoder else {
            return frames.iter().map(|p| self.detect(p)).collect();
        };
        if !self.batches || frames.len() < 2 {
            return frames.iter().map(|p| self.detect(p)).collect();
        }
        match self.yolo_batch(layout, frames) {
            Ok(found) => found.into_iter().map(Ok).collect(),
            Err(_) => frames.iter().map(|p| self.detect(p)).collect(),
        }
    }

    fn yolo_batch(&mut self, layout: YoloLayout, frames: &[&Prepared]) -> Result<Vec<Vec<Detection>>, ModelError> {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        let plane = 3 * w * h;
        self.planar.resize(frames.len() * plane, 0.0);
        let mut one = Vec::new();
        for (i, p) in frames.iter().enumerate() {
            self.check_size(p)?;
            to_planar(&p.pixels, w * h, YOLO_INPUT, &mut one);
            self.planar[i * plane..(i + 1) * plane].copy_from_slice(&one);
        }
        let inference = |e: ort::Error| ModelError::Inference(e.to_string());
        let tensor = TensorRef::from_array_view(([frames.len(), 3, h, w], &self.planar[..])).map_err(inference)?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?;
        let (shape, data) =
            outputs[0].try_extract_tensor::<f32>().map_err(|e| ModelError::Inference(format!("output 0: {e}")))?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        let per_frame = data.len() / frames.len();
        let one_dims = [1, dims[1], dims[2]];
        Ok(frames
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let slice = &data[i * per_frame..(i + 1) * per_frame];
                let found = yolo::decode(layout, slice, &one_dims, w as u32, h as u32, self.min_score);
                to_detections(&self.labels, nms(found, self.nms_iou, MAX_DETECTIONS), p)
            })
            .collect())
    }

    fn check_size(&self, prepared: &Prepared) -> Result<(), ModelError> {
        let (w, h) = (self.input.width, self.input.height);
        if prepared.width != w || prepared.height != h {
            return Err(ModelError::Inference(format!(
                "frame prepared at {}x{}, the model takes {w}x{h}",
                prepared.width, prepared.height
            )));
        }
        Ok(())
    }

    /// Runs the model on one prepared frame. Boxes are normalised to the whole frame.
    pub fn detect(&mut self, prepared: &Prepared) -> Result<Vec<Detection>, ModelError> {
        self.check_size(prepared)?;
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        let inference = |e: ort::Error| ModelError::Inference(e.to_string());
        let candidates = match self.decoder {
            Decoder::SsdPostprocessed => {
                let tensor =
                    TensorRef::from_array_view(([1usize, h, w, 3], &prepared.pixels[..])).map_err(inference)?;
                let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?;
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
                (0..n)
                    .map(|i| {
                        let b = &boxes[i * 4..i * 4 + 4]; // ymin, xmin, ymax, xmax
                        Candidate {
                            class_id: classes[i].max(0.0) as u32,
                            score: scores[i],
                            bbox: BBox { x0: b[1], y0: b[0], x1: b[3], y1: b[2] },
                        }
                    })
                    .filter(|c| c.score >= self.min_score)
                    .collect()
            }
            Decoder::Nanodet(ref levels) => {
                to_planar(&prepared.pixels, w * h, NANODET_INPUT, &mut self.planar);
                let tensor = TensorRef::from_array_view(([1usize, 3, h, w], &self.planar[..])).map_err(inference)?;
                let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?;
                let f32s = |i: usize| {
                    outputs[i]
                        .try_extract_tensor::<f32>()
                        .map(|(_, data)| data)
                        .map_err(|e| ModelError::Inference(format!("output {i}: {e}")))
                };
                let mut found = Vec::new();
                for level in levels {
                    let (scores, regression) = (f32s(level.scores)?, f32s(level.boxes)?);
                    nanodet::decode_level(level, scores, regression, w as u32, h as u32, self.min_score, &mut found);
                }
                nms(found, self.nms_iou, MAX_DETECTIONS)
            }
            Decoder::Detections6 { output, float_input } => {
                let outputs = if float_input {
                    self.planar.clear();
                    self.planar.extend(prepared.pixels.iter().map(|&v| v as f32));
                    let tensor =
                        TensorRef::from_array_view(([1usize, h, w, 3], &self.planar[..])).map_err(inference)?;
                    self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?
                } else {
                    let tensor =
                        TensorRef::from_array_view(([1usize, h, w, 3], &prepared.pixels[..])).map_err(inference)?;
                    self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?
                };
                let (_, rows) = outputs[output]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| ModelError::Inference(format!("output {output}: {e}")))?;
                let (fw, fh) = (w as f32, h as f32);
                let found = rows
                    .chunks_exact(6)
                    .filter(|r| r[4] >= self.min_score)
                    .map(|r| Candidate {
                        class_id: r[5].max(0.0) as u32,
                        score: r[4],
                        bbox: BBox { x0: r[0] / fw, y0: r[1] / fh, x1: r[2] / fw, y1: r[3] / fh },
                    })
                    .collect();
                nms(found, self.nms_iou, MAX_DETECTIONS)
            }
            Decoder::Yolo(layout) => {
                to_planar(&prepared.pixels, w * h, YOLO_INPUT, &mut self.planar);
                let tensor = TensorRef::from_array_view(([1usize, 3, h, w], &self.planar[..])).map_err(inference)?;
                let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?;
                let (shape, data) = outputs[0]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| ModelError::Inference(format!("output 0: {e}")))?;
                let dims: Vec<i64> = shape.iter().copied().collect();
                let found = yolo::decode(layout, data, &dims, w as u32, h as u32, self.min_score);
                nms(found, self.nms_iou, MAX_DETECTIONS)
            }
        };
        Ok(to_detections(&self.labels, candidates, prepared))
    }
}

/// Candidates (boxes normalised to the model input) -> detections in the whole frame.
fn to_detections(labels: &Labels, candidates: Vec<Candidate>, prepared: &Prepared) -> Vec<Detection> {
    candidates
        .into_iter()
        .map(|c| Detection {
            label: labels.name(c.class_id),
            class_id: c.class_id,
            score: c.score,
            bbox: prepared.to_frame(c.bbox.x0, c.bbox.y0, c.bbox.x1, c.bbox.y1),
            track_id: None,
            embedding: None,
            product: None,
        })
        .collect()
}

/// Interleaved RGB bytes -> normalised planar float channels (in BGR order if asked).
pub(crate) fn to_planar(rgb: &[u8], pixels: usize, norm: Normalize, out: &mut Vec<f32>) {
    out.resize(3 * pixels, 0.0);
    let (c0, rest) = out.split_at_mut(pixels);
    let (c1, c2) = rest.split_at_mut(pixels);
    let order = if norm.bgr { [2, 1, 0] } else { [0, 1, 2] };
    let scale = norm.std.map(|s| 1.0 / s);
    let offset = [0, 1, 2].map(|c| -norm.mean[c] * scale[c]);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        c0[i] = px[order[0]] as f32 * scale[0] + offset[0];
        c1[i] = px[order[1]] as f32 * scale[1] + offset[1];
        c2[i] = px[order[2]] as f32 * scale[2] + offset[2];
    }
}

/// The side of Ultralytics' `imgsz` metadata, e.g. `[320, 320]`.
fn imgsz(text: &str) -> Option<u32> {
    text.trim_matches(|c| c == '[' || c == ']').split(',').next()?.trim().parse().ok()
}
