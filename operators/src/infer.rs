//! infer: model-ready pictures -> detections, on the process's model threads (`model_pool`),
//! each with its own ONNX session.
//!
//! Frames are micro-batched across streams and times: whatever is queued, up to `max_frames`,
//! goes to the model in one run (for models that take batches; others run the frames one
//! after the other). With `max_wait`, a batch that is not full waits that long for
//! more frames before it runs: more throughput on a GPU, more latency everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use vitrine_models::{merge_detections, Detector, ModelError};
use vitrine_schemas::{DeadLetter, Detection, Frame, FrameDetections};

use crate::decode::{dead_letter, PreparedFrame};
use crate::model_pool::ModelQueues;
use crate::since_tiled::Followed;
use crate::{StageTimer, Time};

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

/// Whether a tile's detection is a piece of an object the whole picture sees as something
/// else: most of its box lies in a whole-picture box of another label no more than five
/// times its size. A tile cuts through what it holds (a ball where tiles meet comes out as
/// quarters, which the model reads as apples); the whole picture has the object's context.
fn piece_of_another(tile: &Detection, whole: &[Detection]) -> bool {
    let area = tile.bbox.area();
    whole.iter().any(|w| {
        w.class_id != tile.class_id && tile.bbox.intersection(&w.bbox) >= 0.5 * area && area * 5.0 >= w.bbox.area()
    })
}

/// The whole picture's detections and more found elsewhere (tiles), merged per object.
fn merge_with(mut whole: Vec<Detection>, more: Vec<Detection>, iou: f32) -> Vec<Detection> {
    if more.is_empty() {
        return whole;
    }
    whole.extend(more);
    merge_detections(whole, iou)
}

/// What a tiled frame's tiles alone found.
#[derive(Clone, Debug)]
struct TileFind {
    detection: Detection,
    /// Missed by this frame's tiles but kept from the last tiled frame's (see `Inferencer::infer_batch`).
    kept_once: bool,
}

/// Runs one detector (one ONNX session: a worker owns it, since `run` needs `&mut`).
#[derive(Debug)]
pub struct Inferencer {
    detector: Detector,
    runs: Arc<AtomicU64>,
    /// Frames the model skipped (nothing new on them).
    carried: Arc<AtomicU64>,
    /// When only some frames are tiled (`infer.tile_every`): per stream, what the last tiled
    /// frame's tiles alone found, kept on the frames between (the whole picture misses it).
    tile_found: Option<HashMap<String, Vec<TileFind>>>,
    pub(crate) timer: StageTimer,
}

impl Inferencer {
    pub fn new(detector: Detector) -> Inferencer {
        Inferencer {
            detector,
            runs: Arc::default(),
            carried: Arc::default(),
            tile_found: None,
            timer: StageTimer::default(),
        }
    }

    /// Keeps what a tiled frame's tiles alone found on the untiled frames after it (when only
    /// some frames are tiled).
    pub fn keeping_tile_finds(self, keep: bool) -> Inferencer {
        Inferencer { tile_found: keep.then(HashMap::new), ..self }
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
                let Some(tile_found) = self.tile_found.as_mut() else {
                    return Ok(merge_with(whole, from_tiles, iou));
                };
                let last_found = tile_found.get(&f.frame.stream_id).map_or(&[][..], Vec::as_slice);
                // Moved with the picture under it, and only while that picture is there: a
                // product that left is not carried on.
                let followed = last_found.iter().filter_map(|found| {
                    let followed = match &f.since_tiled {
                        Some(since) => since.follow(&found.detection.bbox),
                        None => Followed { bbox: found.detection.bbox, changed: 0.0 },
                    };
                    let detection = Detection { bbox: followed.bbox, ..found.detection.clone() };
                    followed.still_there().then(|| (TileFind { detection, ..found.clone() }, followed))
                });
                if f.tiles.is_empty() {
                    let kept = followed.map(|(found, _)| found.detection).collect();
                    return Ok(merge_with(whole, kept, iou));
                }
                let merged = merge_with(whole.clone(), from_tiles, iou);
                let same = |a: &Detection, b: &Detection| a.class_id == b.class_id && a.bbox.iou(&b.bbox) > iou;
                // What these tiles missed of what the last ones found, where its picture is still
                // there (a re-tile for a pan, or for a change elsewhere): kept once more, so one
                // miss of a weak find does not drop it, and a second one does.
                let missed: Vec<Detection> = followed
                    .filter(|(found, followed)| {
                        followed.unchanged() && !found.kept_once && !merged.iter().any(|d| same(d, &found.detection))
                    })
                    .map(|(found, _)| found.detection)
                    .collect();
                // What the tiles saw better than the whole picture (or alone): the frames up to
                // the next tiled one keep it, since their whole picture sees it less or not at all.
                let only_tiles = merged.iter().filter(|d| !whole.contains(d)).cloned();
                let found = only_tiles
                    .map(|detection| TileFind { detection, kept_once: false })
                    .chain(missed.iter().map(|d| TileFind { detection: d.clone(), kept_once: true }))
                    .collect();
                tile_found.insert(f.frame.stream_id.clone(), found);
                Ok(merge_with(merged, missed, iou))
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

/// The decode and infer stages as a timely operator: frames go to the process's model threads
/// ([`ModelPool`](crate::ModelPool)), and their detections come out at the frame's time, as do
/// the frames that failed (to decode, or in the model).
pub trait InferDetections<'scope> {
    fn infer_detections(
        self,
        models: ModelQueues,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>);
}

impl<'scope> InferDetections<'scope> for Stream<'scope, Time, Vec<Frame>> {
    fn infer_detections(
        self,
        models: ModelQueues,
    ) -> (Stream<'scope, Time, Vec<FrameDetections>>, Stream<'scope, Time, Vec<DeadLetter>>) {
        let scope = self.scope();
        self.unary::<CapacityContainerBuilder<Vec<Result<FrameDetections, DeadLetter>>>, _, _, _>(
            Pipeline,
            "Infer",
            move |_, info| {
                let mut models = models.client(scope.worker().sync_activator_for(info.address.to_vec()));
                // The capability of each frame with the models, by ticket: it holds the frame's
                // time open until the detections are out.
                let mut with_models: HashMap<u64, Capability<Time>> = HashMap::new();
                move |input, output| {
                    input.for_each(|cap, data| {
                        let cap = cap.retain_least(0).expect("a capability");
                        for frame in data.drain(..) {
                            with_models.insert(models.send(frame), cap.clone());
                        }
                    });
                    for (ticket, result) in models.results() {
                        let cap = with_models.remove(&ticket).expect("a capability for each ticket");
                        output.session(&cap).give(result);
                    }
                }
            },
        )
        .ok_err(|r| r)
    }
}

#[cfg(test)]
mod tests {
    use vitrine_schemas::BBox;

    use super::*;

    fn detection(label: &str, class_id: u32, (x0, y0, x1, y1): (f32, f32, f32, f32)) -> Detection {
        Detection {
            label: label.into(),
            class_id,
            score: 0.6,
            bbox: BBox { x0, y0, x1, y1 },
            track_id: None,
            embedding: None,
            product: None,
        }
    }

    #[test]
    fn a_tile_quarter_of_a_ball_is_not_an_apple_but_a_small_apple_on_a_table_is() {
        let ball = detection("sports ball", 37, (0.42, 0.36, 0.58, 0.64));
        let table = detection("dining table", 67, (0.0, 0.0, 1.0, 1.0));
        let whole = [ball, table];
        // A tile cut through the ball: most of the "apple" lies in the ball's box.
        let quarter = detection("apple", 53, (0.45, 0.45, 0.596, 0.652));
        assert!(piece_of_another(&quarter, &whole));
        // A small apple on the table: inside the table's box, but far smaller than it.
        let small_apple = detection("apple", 53, (0.7, 0.7, 0.76, 0.78));
        assert!(!piece_of_another(&small_apple, &whole));
        // The ball itself, seen better by a tile: the same label, merged by NMS instead.
        let ball_in_tile = detection("sports ball", 37, (0.43, 0.37, 0.58, 0.63));
        assert!(!piece_of_another(&ball_in_tile, &whole));
    }
}
