//! The publisher: a thread that writes the file sets the workers cut, in order, to the store,
//! following the three steps of [`super::files`], retrying with back-off while the store
//! fails. Its queue is bounded: while it is full the workers take no new frames, so a store
//! that is down slows the pipeline instead of filling memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::files::{FileSet, InputKey, Progress};
use super::store::{StoreError, TableStore};

/// What the publisher reports to `/metrics`.
#[derive(Clone, Debug)]
pub struct PublisherMetrics {
    /// The time of each file set's publication.
    pub publish_seconds: prometheus::Histogram,
    /// Puts that failed and are tried again.
    pub retries: prometheus::IntCounter,
    /// Sets queued and not yet published.
    pub waiting: prometheus::IntGauge,
}

impl PublisherMetrics {
    /// The publisher's figures in `metrics`.
    pub fn of(metrics: &crate::metrics::Metrics) -> PublisherMetrics {
        PublisherMetrics {
            publish_seconds: metrics.sink_seconds.with_label_values(&["parquet"]),
            retries: metrics.sink_retries.with_label_values(&["parquet"]),
            waiting: metrics.parquet_sets_waiting.clone(),
        }
    }
}

/// What the workers and the publisher share.
#[derive(Debug, Default)]
struct Shared {
    /// Per input, the end of its last published set.
    published: Mutex<HashMap<InputKey, i64>>,
    /// Why publishing stopped for good.
    failure: Mutex<Option<String>>,
    queued: AtomicUsize,
    /// Stop retrying (the run is ending and gave the store long enough).
    give_up: AtomicBool,
    files: AtomicUsize,
    metrics: Option<PublisherMetrics>,
}

impl Shared {
    fn count_waiting(&self) {
        if let Some(m) = &self.metrics {
            m.waiting.set(self.queued.load(Ordering::SeqCst) as i64);
        }
    }
}

/// A worker's handle on the publisher.
#[derive(Clone, Debug)]
pub struct PublisherHandle {
    tx: SyncSender<FileSet>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl PublisherHandle {
    /// Queues a set; gives it back when the queue is full (or publishing stopped).
    pub fn send(&self, set: FileSet) -> Result<(), FileSet> {
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(set) {
            Ok(()) => {
                self.shared.count_waiting();
                Ok(())
            }
            Err(TrySendError::Full(set) | TrySendError::Disconnected(set)) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                Err(set)
            }
        }
    }

    /// Whether the queue has room: while it has none, take no new frames.
    pub fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::SeqCst) < self.capacity
    }

    /// Whether every queued set is published.
    pub fn idle(&self) -> bool {
        self.shared.queued.load(Ordering::SeqCst) == 0
    }

    /// The end of the last published set of `input`.
    pub fn published(&self, input: &InputKey) -> Option<i64> {
        self.shared.published.lock().expect("published").get(input).copied()
    }

    /// Why publishing stopped for good, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().expect("failure").clone()
    }
}

/// The publishing thread.
#[derive(Debug)]
pub struct Publisher {
    handle: PublisherHandle,
    store: TableStore,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Starts the publisher thread, writing to `store`, with room for `capacity` sets in the
    /// queue; it reports to `metrics` when given.
    pub fn start(
        store: TableStore,
        capacity: usize,
        row_group_rows: usize,
        metrics: Option<PublisherMetrics>,
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let shared = Arc::new(Shared { metrics, ..Shared::default() });
        let thread = {
            let (store, shared) = (store.clone(), shared.clone());
            std::thread::Builder::new()
                .name("vitrine-parquet".into())
                .spawn(move || publish_loop(rx, store, shared, row_group_rows))?
        };
        let handle = PublisherHandle { tx, shared, capacity: capacity.max(1) };
        Ok(Publisher { handle, store, thread: Some(thread) })
    }

    pub fn handle(&self) -> PublisherHandle {
        self.handle.clone()
    }

    /// What the store holds of `input` (read at start, before any set of it is cut).
    pub fn progress(&self, input: &InputKey) -> Result<Option<Progress>, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| StoreError {
            operation: "start",
            location: self.store.location().into(),
            reason: e.to_string(),
            retryable: false,
        })?;
        let key = input.progress_key();
        let Some(bytes) = rt.block_on(self.store.get(&key))? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError {
            operation: "read",
            location: format!("{}/{key}", self.store.location()),
            reason: format!(
                "not vitrine's progress record ({e}); remove it only if the tables beside it are to be rewritten"
            ),
            retryable: false,
        })
    }

    /// Files published so far.
    pub fn files(&self) -> usize {
        self.handle.shared.files.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for the queued sets, then stops retrying; Err says what was not published.
    pub fn finish(mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        while !self.handle.idle() && Instant::now() < deadline && self.handle.failure().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle.shared.give_up.store(true, Ordering::SeqCst);
        let waiting = self.handle.shared.queued.load(Ordering::SeqCst);
        let Publisher { handle, thread, .. } = &mut self;
        let (tx, _) = mpsc::sync_channel(1);
        handle.tx = tx; // the thread ends once the queue is empty and no sender is left
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
        if let Some(failure) = self.handle.failure() {
            return Err(failure);
        }
        match waiting {
            0 => Ok(self.files()),
            n => Err(format!(
                "{n} Parquet file sets could not be written to {} within {timeout:?}; their frames are read again on restart",
                self.store.location()
            )),
        }
    }
}

fn publish_loop(rx: Receiver<FileSet>, store: TableStore, shared: Arc<Shared>, row_group_rows: usize) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            *shared.failure.lock().expect("failure") = Some(format!("cannot start the Parquet publisher: {e}"));
            return;
        }
    };
    while let Ok(set) = rx.recv() {
        let started = Instant::now();
        let published = rt.block_on(publish(&store, &set, row_group_rows, &shared));
        if let Some(m) = &shared.metrics {
            m.publish_seconds.observe(started.elapsed().as_secs_f64());
        }
        match published {
            Ok(files) => {
                shared.files.fetch_add(files, Ordering::Relaxed);
                shared.published.lock().expect("published").insert(set.input.clone(), set.end);
                shared.queued.fetch_sub(1, Ordering::SeqCst);
                shared.count_waiting();
            }
            Err(e) => {
                tracing::error!(error = %e, "the Parquet sink stopped");
                *shared.failure.lock().expect("failure") = Some(e);
                return;
            }
        }
    }
}

/// The three steps: pending, files, published. Returns the number of files.
async fn publish(store: &TableStore, set: &FileSet, row_group_rows: usize, shared: &Shared) -> Result<usize, String> {
    let files = set.files(row_group_rows).map_err(|e| format!("cannot encode a Parquet file: {e}"))?;
    let progress_key = set.input.progress_key();
    let progress = |end, pending_end| serde_json::to_vec(&Progress { end, pending_end }).expect("progress encodes");
    if set.input.replayable() {
        put(store, &progress_key, progress(set.start, Some(set.end)), shared).await?;
    }
    for (path, bytes) in &files {
        put(store, path, bytes.clone(), shared).await?;
        tracing::debug!(file = %path, bytes = bytes.len(), "parquet file published");
    }
    if set.input.replayable() {
        put(store, &progress_key, progress(set.end, None), shared).await?;
    }
    tracing::info!(
        input = %set.input.name(),
        from = set.start,
        to = set.end,
        rows = set.rows.len(),
        files = files.len(),
        "parquet files published"
    );
    Ok(files.len())
}

/// Puts until it works, with back-off, unless the error is one retrying cannot mend.
async fn put(store: &TableStore, key: &str, bytes: Vec<u8>, shared: &Shared) -> Result<(), String> {
    let mut wait = Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        match store.put(key, bytes.clone()).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(failures, file = key, "the Parquet store took the file again");
                }
                return Ok(());
            }
            Err(e) if !e.retryable => {
                return Err(format!("{e}. Check the credentials and the location in sinks.parquet.path"));
            }
            Err(e) => {
                if shared.give_up.load(Ordering::SeqCst) {
                    return Err(format!("{e} (gave up: the run is ending)"));
                }
                failures += 1;
                if let Some(m) = &shared.metrics {
                    m.retries.inc();
                }
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, failures,
                    "cannot write to the Parquet store; retrying (no new frames are taken while files wait)");
                tokio::time::sleep(wait).await;
                // At most 10 s between tries: once the store is back, frames flow again soon.
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}
