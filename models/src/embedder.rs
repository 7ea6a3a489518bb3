//! An image embedder: a picture (a catalog photo, or the crop of a detection) -> a unit vector,
//! so that two pictures of the same product lie close (cosine similarity near 1) and pictures
//! of different things further apart. vitrine's is the ImageNet MobileNetV2 of
//! `models/zoo/mobilenetv2-imagenet-embedder` (its pooled 1280 features).

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};
use vitrine_schemas::spec::ExecutionProvider;

use crate::colour::hue_signature;
use crate::detector::{build_session, shape_of, to_planar, Normalize};
use crate::{DecodeLimits, Fit, InputSpec, ModelError, Prepared, Preparer, Runtime};

/// ImageNet's mean and std (RGB, in 0..255), as torchvision normalises.
const IMAGENET: Normalize = Normalize { bgr: false, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375] };

/// What is needed to load an embedder.
#[derive(Clone, Debug)]
pub struct EmbedderConfig {
    pub model: PathBuf,
    /// Pictures are stretched to `side` x `side` (224: what the model was trained at; 160 is
    /// about half the cost).
    pub side: u32,
    pub intra_threads: usize,
    pub execution_provider: ExecutionProvider,
    pub device_id: u32,
    /// A text file of the model's mean embedding over everyday photos, one number a line (see
    /// [`Embedder::embed`]); none: embeddings are the model's output as it is.
    pub centre: Option<PathBuf>,
    /// The share (0..1) of the picture's hues ([`crate::colour`]) in its embedding: the
    /// similarity of two is `(1 - colour)` times their model cosine plus `colour` times how
    /// alike their hues are. 0: the model's embedding alone.
    pub colour: f32,
}

/// The centre file's numbers, one a line, `dimensions` of them.
fn read_centre(file: &Path, dimensions: usize) -> Result<Vec<f32>, ModelError> {
    let shape_error =
        |reason: String| ModelError::ModelShape { path: file.to_path_buf(), decoder: "embedder centre", reason };
    let text = std::fs::read_to_string(file).map_err(|e| {
        shape_error(format!("cannot be read ({e}); remove it or point match.embedder at a model with its own"))
    })?;
    let values: Vec<f32> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(i, l)| l.parse().map_err(|_| shape_error(format!("number {} is `{l}`, not a number", i + 1))))
        .collect::<Result<_, _>>()?;
    if values.len() != dimensions {
        return Err(shape_error(format!("has {} numbers, the embedder's output {dimensions}", values.len())));
    }
    Ok(values)
}

/// A picture's embedding: unit length, so the cosine similarity of two is their dot product.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// `values` scaled to unit length (all zeros stay zeros: similar to nothing).
    pub fn normalized(mut values: Vec<f32>) -> Embedding {
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            values.iter_mut().for_each(|v| *v /= norm);
        }
        Embedding(values)
    }

    /// Cosine similarity, -1..1 (0..1 for this embedder's non-negative features).
    pub fn similarity(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    pub fn values(&self) -> &[f32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A loaded embedder. `Session::run` needs `&mut`, so each model thread owns one.
#[derive(Debug)]
pub struct Embedder {
    session: Session,
    input_name: String,
    side: u32,
    dimensions: usize,
    name: String,
    /// Subtracted from each unit-length output before it is scaled to unit length again.
    centre: Option<Vec<f32>>,
    /// The share of the hues, as in [`EmbedderConfig::colour`].
    colour: f32,
    /// Float NCHW input, reused from run to run.
    planar: Vec<f32>,
    one: Vec<f32>,
}

impl Embedder {
    pub fn load(runtime: &Runtime, config: &EmbedderConfig) -> Result<Embedder, ModelError> {
        let path = &config.model;
        let session = build_session(runtime, path, config.intra_threads, config.execution_provider, config.device_id)?;
        let shape_error = |reason: String| ModelError::ModelShape { path: path.clone(), decoder: "embedder", reason };
        let input = session.inputs().first().ok_or_else(|| shape_error("the model has no input".into()))?;
        let dims = shape_of(input.dtype()).ok_or_else(|| shape_error("its input is not a tensor".into()))?;
        if dims.len() != 4 || dims[1] != 3 {
            return Err(shape_error(format!("expected an NCHW input [N, 3, H, W], found {dims:?}")));
        }
        if input.dtype().tensor_type() != Some(TensorElementType::Float32) {
            return Err(shape_error("expected a float32 input".into()));
        }
        let fixed = |d: i64| d > 0 && d != i64::from(config.side);
        if fixed(dims[2]) || fixed(dims[3]) {
            return Err(shape_error(format!(
                "the model takes {}x{}, not the side {} asked for",
                dims[3], dims[2], config.side
            )));
        }
        let [output] = session.outputs() else {
            return Err(shape_error(format!("expected one output, found {}", session.outputs().len())));
        };
        let out = shape_of(output.dtype()).ok_or_else(|| shape_error("its output is not a tensor".into()))?;
        let dimensions = match out.as_slice() {
            [_, d] if *d > 0 => *d as usize,
            other => return Err(shape_error(format!("expected an output [N, D], found {other:?}"))),
        };
        let centre = match &config.centre {
            Some(file) => Some(read_centre(file, dimensions)?),
            None => None,
        };
        let input_name = input.name().to_string();
        let name = path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()).unwrap_or("embedder").to_string();
        if !(0.0..=1.0).contains(&config.colour) {
            return Err(shape_error(format!("the colour share must be 0 to 1, got {}", config.colour)));
        }
        tracing::info!(model = %path.display(), side = config.side, dimensions, centred = centre.is_some(),
            colour = config.colour, "embedder loaded");
        Ok(Embedder {
            session,
            input_name,
            side: config.side,
            dimensions,
            name,
            centre,
            colour: config.colour,
            planar: Vec::new(),
            one: Vec::new(),
        })
    }

    /// The side pictures are stretched to.
    pub fn side(&self) -> u32 {
        self.side
    }

    /// The picture size [`Embedder::embed`] takes.
    pub fn input(&self) -> InputSpec {
        InputSpec { width: self.side, height: self.side, fit: Fit::Stretch }
    }

    /// Length of the model's output (an embedding has [`crate::colour::HUE_BINS`] more when it
    /// counts colour).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// The model's name (its folder).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The embeddings of pictures prepared at [`Embedder::input`], in one run. With a centre,
    /// each is its unit-length output less the centre, at unit length: the pooled features of an
    /// ImageNet CNN are all positive, so any two photos score about 0.5 without it (an apple
    /// and a motorcycle 0.48), and about 0.1 with it, while two views of one thing stay near 0.9.
    pub fn embed(&mut self, pictures: &[&Prepared]) -> Result<Vec<Embedding>, ModelError> {
        if pictures.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.side as usize;
        let plane = 3 * side * side;
        self.planar.resize(pictures.len() * plane, 0.0);
        for (i, p) in pictures.iter().enumerate() {
            if (p.width, p.height) != (self.side, self.side) {
                return Err(ModelError::Inference(format!(
                    "picture prepared at {}x{}, the embedder takes {side}x{side}",
                    p.width, p.height
                )));
            }
            to_planar(&p.pixels, side * side, IMAGENET, &mut self.one);
            self.planar[i * plane..(i + 1) * plane].copy_from_slice(&self.one);
        }
        let inference = |e: ort::Error| ModelError::Inference(format!("embedder: {e}"));
        let tensor =
            TensorRef::from_array_view(([pictures.len(), 3, side, side], &self.planar[..])).map_err(inference)?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(inference)?;
        let (_, data) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
        if data.len() != pictures.len() * self.dimensions {
            return Err(ModelError::Inference(format!(
                "embedder: {} values for {} pictures of {} dimensions",
                data.len(),
                pictures.len(),
                self.dimensions
            )));
        }
        let centred = |v: &[f32]| {
            let unit = Embedding::normalized(v.to_vec());
            match &self.centre {
                Some(c) => Embedding::normalized(unit.values().iter().zip(c).map(|(x, m)| x - m).collect()),
                None => unit,
            }
        };
        let embeddings = data.chunks_exact(self.dimensions).map(centred);
        if self.colour == 0.0 {
            return Ok(embeddings.collect());
        }
        // Two unit vectors scaled by the square roots of their shares, end to end: still unit
        // length, and the dot product of two is the shares' weighted sum of the two similarities.
        let (model_scale, colour_scale) = ((1.0 - self.colour).sqrt(), self.colour.sqrt());
        Ok(embeddings
            .zip(pictures)
            .map(|(e, p)| {
                let hues = hue_signature(&p.pixels, side, side);
                let values = e.values().iter().map(|v| v * model_scale).chain(hues.iter().map(|h| h * colour_scale));
                Embedding(values.collect())
            })
            .collect())
    }

    /// The embedding of a whole JPEG picture (a catalog photo), decoded within `limits`.
    pub fn embed_jpeg(&mut self, jpeg: &[u8], limits: DecodeLimits) -> Result<Embedding, ModelError> {
        let limits = DecodeLimits { crop_bars: false, ..limits };
        let picture = Preparer::new(limits).prepare(jpeg, self.input())?;
        Ok(self.embed(&[&picture])?.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_unit_length_and_similarity_is_their_cosine() {
        let a = Embedding::normalized(vec![3.0, 4.0]);
        assert_eq!(a.values(), &[0.6, 0.8]);
        let b = Embedding::normalized(vec![0.0, 2.0]);
        assert!((a.similarity(&b) - 0.8).abs() < 1e-6);
        assert!((a.similarity(&a) - 1.0).abs() < 1e-6);
        let zero = Embedding::normalized(vec![0.0, 0.0]);
        assert_eq!(zero.similarity(&a), 0.0, "an empty picture is similar to nothing");
    }
}
