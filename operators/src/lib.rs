//! The stages of vitrine's dataflow. Each is a plain struct holding the logic (tested on its
//! own) and a thin timely operator around it, as an extension trait on `Stream`.
//!
//! frames -> [`InferDetections`] (decode and model, on [`ModelPool`]'s threads) ->
//! [`TrackObjects`] -> [`Debounce`] -> catalog join (differential `join`) -> [`EmitEvents`] ->
//! product events.

mod crop_schedule;
mod debounce;
mod decode;
mod events;
mod graph;
mod infer;
mod infer_operator;
mod look_alikes;
mod matching;
mod model_pool;
mod replay;
mod route;
mod skip;
mod stable_hash;
mod tiling;
mod timer;
mod track;

pub use crop_schedule::{CropSchedule, CropScheduleConfig, FrameEmbedder, Turn, LONGEST_WAIT};
pub use debounce::{CausedNote, Debounce, DebounceConfig, Debouncer, OnScreen, ScreenNote, ScreenStats};
pub use decode::{FrameDecoder, PreparedFrame};
pub use events::{EmitEvents, Emitted, EventEmitter, JoinedUpdate};
pub use graph::{product_events, product_outputs, shows, Catalog};
pub use infer::{BatchConfig, Inferencer};
pub use infer_operator::InferDetections;
pub use matching::{MatchConfig, MatchProducts, MatchThresholds, Matcher, Picture, PictureIndex};
pub use model_pool::{FrameModel, ModelPool, ModelQueues, ModelRoute};
pub use replay::ReplayPoints;
pub use route::stream_route;
pub use skip::{ChangeGate, SkipConfig};
pub use stable_hash::stable_hash;
pub use tiling::{SinceTiled, Tiling};
pub use timer::{Stage, StageObserver, StageTimer};
pub use track::{track_origin, TrackObjects, Tracker, TrackerConfig};

/// The dataflow's timestamp: wall-clock milliseconds, rounded down to the spec's epoch.
pub type Time = u64;
/// Multiplicity of a record in a differential collection.
pub type Diff = isize;
