//! How long each stage takes: the operators report every activation that handled frames to a
//! [`StageTimer`] (the pipeline turns the reports into Prometheus histograms; tests pass none).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stage of the dataflow whose work is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// JPEG decode, crop and resize of one frame.
    Decode,
    /// One model run (a micro-batch of frames).
    Infer,
    /// The embedder's runs on one frame's crops (matching).
    Embed,
    /// Object tracking of the frames of one completed time.
    Track,
    /// Debounce of the frames of one completed time.
    Debounce,
    /// Turning the catalog join's changes and debounce's notes into events and exposures.
    Join,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Infer => "infer",
            Stage::Embed => "embed",
            Stage::Track => "track",
            Stage::Debounce => "debounce",
            Stage::Join => "join",
        }
    }
}

/// Receives the timings.
pub trait StageObserver: Send + Sync {
    /// `stage` handled `frames` frames (or notes) in `took`.
    fn observe(&self, stage: Stage, took: Duration, frames: usize);
}

/// Where a stage reports its timings; the default reports nowhere.
#[derive(Clone, Default)]
pub struct StageTimer(Option<Arc<dyn StageObserver>>);

impl std::fmt::Debug for StageTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "StageTimer(on)" } else { "StageTimer(off)" })
    }
}

impl StageTimer {
    pub fn new(observer: Arc<dyn StageObserver>) -> StageTimer {
        StageTimer(Some(observer))
    }

    /// Runs `work` on `frames` frames as `stage`, reporting how long it took.
    pub fn time<T>(&self, stage: Stage, frames: usize, work: impl FnOnce() -> T) -> T {
        let Some(observer) = &self.0 else { return work() };
        let started = Instant::now();
        let out = work();
        if frames > 0 {
            observer.observe(stage, started.elapsed(), frames);
        }
        out
    }
}
