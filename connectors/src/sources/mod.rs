//! Frame sources. Each runs on its own thread and hands frames to the dataflow through a
//! bounded channel, so a fast source waits for the pipeline instead of filling memory.

pub mod folder;
pub mod video;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use vitrine_schemas::Frame;

/// Where a source sends its frames, and how it learns that it should stop.
#[derive(Clone)]
pub struct FrameSink {
    pub frames: SyncSender<Frame>,
    pub stop: Arc<AtomicBool>,
    /// Looks at each frame on the source's thread before it is sent (the change check of
    /// `infer.max_skip`, which needs a stream's frames in order).
    pub mark: Option<FrameMark>,
    /// The thread that takes the frames, woken after each one (it may be parked for longer
    /// than frames take to come).
    pub wake: Arc<std::sync::OnceLock<std::thread::Thread>>,
}

/// See [`FrameSink::mark`].
pub type FrameMark = Arc<dyn Fn(&mut Frame) + Send + Sync>;

impl std::fmt::Debug for FrameSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSink").field("marked", &self.mark.is_some()).finish()
    }
}

impl FrameSink {
    /// Sends a frame; false when the pipeline is stopping or gone.
    pub fn send(&self, mut frame: Frame) -> bool {
        if let Some(mark) = &self.mark {
            mark(&mut frame);
        }
        let sent = !self.stopping() && self.frames.send(frame).is_ok();
        if let Some(taker) = self.wake.get() {
            taker.unpark();
        }
        sent
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Media time of frame `seq` of a stream sampled at `fps`.
pub fn pts_of(seq: u64, fps: f64) -> i64 {
    (seq as f64 * 1000.0 / fps).round() as i64
}
