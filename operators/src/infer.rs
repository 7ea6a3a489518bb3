//! infer: model-ready pictures -> detections, with one ONNX session (a model thread's, see
//! `model_pool`; the timely operator is `infer_operator`).
//!
//! Frames are micro-batched across streams and times: whatever is queued, up to `max_frames`,
//! goes to the model in one run (for models that take batches; others run the frames one
//! after the other). With `max_wait`, a batch that is not full waits that long for
//! more frames before it runs: more throughput on a GPU, more latency everywhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vitrine_models::{Detector, ModelError};
use vitrine_schemas::{DeadLetter, Detection, FrameDetections};

use crate::decode::{dead_letter, PreparedFrame};
use crate::tiling::{merge_with, piece_of_another, TileFinds, TiledOrNot};
use crate::StageTimer;

/// How frames are grouped into model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Frames in one model run, at most.
    pub max_frames: usize,
    /// How long a batch that is not full may wait for more frames.
    pub max_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_frames: 1, max_wait: Duration::ZERO }
    }
}

/// Runs one detector (one ONNX session: a worker owns it, since `run` needs `&mut`).
#[derive(Debug)]
pub struct Inferencer {
    detector: Detector,
    runs: Arc<AtomicU64>,
    /// Frames the model skipped (nothing new on them).
    carried: Arc<AtomicU64>,
    /// When only some frames are tiled (`infer.tile_every`): what the last tiled frame's tiles
    /// alone found, kept on the frames between (the whole picture misses it).
    tile_finds: Option<TileFinds>,
    pub(crate) timer: StageTimer,
}

impl Inferencer {
    pub fn new(detector: Detector) -> Inferencer {
        Inferencer {
            detector,
            runs: Arc::default(),
            carried: Arc::default(),
            tile_finds: None,
            timer: StageTimer::default(),
        }
    }

    /// Keeps what a tiled frame's tiles alone found on the untiled frames after it (when only
    /// some frames are tiled).
    pub fn keeping_tile_finds(self, keep: bool) -> Inferencer {
        Inferencer { tile_finds: keep.then(TileFinds::default), ..self }
    }

    /// Counts frames whose detections were carried over into `carried`.
    pub fn counting_carried(self, carried: Arc<AtomicU64>) -> Inferencer {
        Inferencer { carried, ..self }
    }

    /// Counts model runs into `runs` (a batch is one run).
    pub fn counting_runs(self, runs: Arc<AtomicU64>) -> Inferencer {
        Inferencer { runs, ..self }
    }

    /// Reports each model run (its frames and time) to `timer`.
    pub fn timed(self, timer: StageTimer) -> Inferencer {
        Inferencer { timer, ..self }
    }

    pub fn infer(&mut self, frame: PreparedFrame) -> Result<FrameDetections, DeadLetter> {
        self.infer_batch(vec![frame]).pop().expect("one result a frame")
    }

    /// Detections of each frame (or its dead letter), in order. A tiled frame's pictures (the
    /// whole and its tiles) run with the rest, and their detections are merged by NMS. A frame
    /// that showed nothing new is not run: it comes out `carried`, without detections, and the
    /// tracker gives it the stream's last ones.
    pub fn infer_batch(&mut self, frames: Vec<PreparedFrame>) -> Vec<Result<FrameDetections, DeadLetter>> {
        let pictures: Vec<_> =
            frames.iter().filter(|f| !f.carried()).flat_map(|f| std::iter::once(&f.prepared).chain(&f.tiles)).collect();
        let mut results =
            if pictures.is_empty() { Vec::new() } else { self.detector.detect_batch(&pictures) }.into_iter();
        let runs = match (pictures.is_empty(), self.detector.batches()) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => pictures.len() as u64,
        };
        self.runs.fetch_add(runs, Ordering::Relaxed);
        let carried = frames.iter().filter(|f| f.carried()).count() as u64;
        self.carried.fetch_add(carried, Ordering::Relaxed);
        let iou = self.detector.nms_iou();
        let per_frame: Vec<Result<Vec<Detection>, ModelError>> = frames
            .iter()
            .map(|f| {
                if f.carried() {
                    return Ok(Vec::new());
                }
                let parts: Result<Vec<_>, _> = results.by_ref().take(1 + f.tiles.len()).collect();
                let mut parts = parts?;
                let whole = parts.remove(0);
                let from_tiles: Vec<Detection> =
                    parts.into_iter().flatten().filter(|d| !piece_of_another(d, &whole)).collect();
                Ok(match self.tile_finds.as_mut() {
                    None => merge_with(whole, from_tiles, iou),
                    Some(finds) => {
                        let frame = TiledOrNot {
                            stream_id: &f.frame.stream_id,
                            tiled: !f.tiles.is_empty(),
                            since_tiled: f.since_tiled.as_ref(),
                        };
                        finds.merge(frame, whole, from_tiles, iou)
                    }
                })
            })
            .collect();
        let model = self.detector.name().to_string();
        frames
            .into_iter()
            .zip(per_frame)
            .map(|(f, result)| {
                let carried = f.carried();
                let PreparedFrame { frame, prepared, .. } = f;
                match result {
                    Ok(detections) => Ok(FrameDetections {
                        stream_id: frame.stream_id,
                        seq: frame.seq,
                        pts_ms: frame.pts_ms,
                        captured_at_ms: frame.captured_at_ms,
                        width: prepared.frame_width,
                        height: prepared.frame_height,
                        model: model.clone(),
                        detections,
                        position: frame.position,
                        carried,
                    }),
                    Err(e) => Err(dead_letter(&frame, "infer", e.to_string())),
                }
            })
            .collect()
    }
}
