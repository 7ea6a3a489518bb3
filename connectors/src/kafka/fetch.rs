//! Reads a worker's share of the frames topic on a thread of its own, a few frames ahead.
//!
//! Taking a message apart, reading a frame sent by reference from disk and the per-stream
//! admission checks are then never on the timely worker, which only takes finished frames
//! from a bounded queue; and the fetch thread wakes the worker when a frame arrives, so an
//! idle worker need not poll.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vitrine_schemas::{DeadLetter, Frame};

use super::source::{KafkaFrameSource, Position};

/// What the source gives for each message: a frame or a dead letter, and where it was read.
pub type Fetched = (Result<Frame, DeadLetter>, Position);

/// Messages read ahead of the worker, at most (a bound on memory: frames are up to
/// `decode.max_bytes` each).
pub const AHEAD: usize = 32;

/// A [`KafkaFrameSource`] whose reading runs on its own thread.
pub struct FetchingSource {
    source: Arc<KafkaFrameSource>,
    fetched: Option<Receiver<Fetched>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FetchingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchingSource").field("source", &self.source).finish()
    }
}

impl FetchingSource {
    /// Starts reading. `mark` looks at each frame, in order, before it is queued (the change
    /// check of `infer.max_skip`); `wake` is called after each message is queued (the worker's
    /// unpark).
    pub fn start(
        source: KafkaFrameSource,
        mut mark: impl FnMut(&mut Frame) + Send + 'static,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<FetchingSource> {
        let source = Arc::new(source);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<Fetched>(AHEAD);
        let (reader, stopped) = (Arc::clone(&source), Arc::clone(&stop));
        let name = format!("vitrine-fetch-{}", source.partitions().first().copied().unwrap_or(-1));
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            'reading: while !stopped.load(Ordering::Relaxed) {
                // (Waits up to 100 ms for a message, so a stop is seen within that.)
                for mut item in reader.poll(AHEAD, Duration::from_millis(100)) {
                    if let Ok(frame) = &mut item.0 {
                        mark(frame);
                    }
                    // Waits while the queue is full; fails once the worker has let go.
                    if tx.send(item).is_err() {
                        break 'reading;
                    }
                    wake();
                }
            }
        })?;
        Ok(FetchingSource { source, fetched: Some(rx), stop, thread: Some(thread) })
    }

    /// Up to `max` messages read and checked already (never waits).
    pub fn take(&self, max: usize) -> Vec<Fetched> {
        self.fetched.as_ref().map(|rx| rx.try_iter().take(max).collect()).unwrap_or_default()
    }
}

impl Deref for FetchingSource {
    type Target = KafkaFrameSource;
    fn deref(&self) -> &KafkaFrameSource {
        &self.source
    }
}

impl Drop for FetchingSource {
    /// Stops reading; what was read ahead and not taken is read again by the next run (its
    /// offsets were never committed).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.fetched = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
