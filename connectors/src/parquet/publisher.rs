//! The publisher: a thread that stages the sets the workers cut, in order, then cuts table
//! files from the staged rows ([`super::staging`]) and publishes them in the three steps of
//! [`super::files`], retrying with back-off while the store fails. Its queue is bounded:
//! while it is full the workers take no new frames, so a store that is down slows the
//! pipeline instead of filling memory.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::files::{FileSet, InputKey, Progress, Roll};
use super::staging::{self, Staged};
use super::store::{StoreError, TableStore};

/// What the publisher reports to `/metrics`.
#[derive(Clone, Debug)]
pub struct PublisherMetrics {
    /// The time of each job: a set staged (and the table files it completed).
    pub publish_seconds: prometheus::Histogram,
    /// Puts that failed and are tried again.
    pub retries: prometheus::IntCounter,
    /// Sets queued and not yet staged.
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

/// What the publisher does next.
#[derive(Debug)]
enum Job {
    /// Stage a set the workers cut.
    Stage(FileSet),
    /// Put every staged row into table files (the run is ending).
    Flush,
}

/// How the publisher writes.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// When table files are cut from the staged rows.
    pub roll: Roll,
    /// Rows per row group of a file.
    pub row_group_rows: usize,
}

/// What the workers and the publisher share.
#[derive(Debug, Default)]
struct Shared {
    /// Per input, the end of its last staged set: every row before it is safe in the store.
    staged_end: Mutex<HashMap<InputKey, i64>>,
    /// Per input, the rows staged and not yet in table files.
    staged: Mutex<BTreeMap<InputKey, Staged>>,
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

    fn done_one(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.count_waiting();
    }
}

/// A worker's handle on the publisher.
#[derive(Clone, Debug)]
pub struct PublisherHandle {
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl PublisherHandle {
    /// Queues a set; gives it back when the queue is full (or publishing stopped).
    pub fn send(&self, set: FileSet) -> Result<(), FileSet> {
        self.try_send(Job::Stage(set)).map_err(|job| match job {
            Job::Stage(set) => set,
            Job::Flush => unreachable!("a set was sent"),
        })
    }

    fn try_send(&self, job: Job) -> Result<(), Job> {
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => {
                self.shared.count_waiting();
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                Err(job)
            }
        }
    }

    /// Whether the queue has room: while it has none, take no new frames.
    pub fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::SeqCst) < self.capacity
    }

    /// Whether every queued job is done.
    pub fn idle(&self) -> bool {
        self.shared.queued.load(Ordering::SeqCst) == 0
    }

    /// The end of the last staged set of `input`: every row before it is safe in the store.
    pub fn published(&self, input: &InputKey) -> Option<i64> {
        self.shared.staged_end.lock().expect("staged ends").get(input).copied()
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
    layout: Layout,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    /// Starts the publisher thread, writing to `store` as `layout` says, with room for
    /// `capacity` sets in the queue; it reports to `metrics` when given.
    pub fn start(
        store: TableStore,
        capacity: usize,
        layout: Layout,
        metrics: Option<PublisherMetrics>,
    ) -> std::io::Result<Publisher> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let shared = Arc::new(Shared { metrics, ..Shared::default() });
        let thread = {
            let (store, shared) = (store.clone(), shared.clone());
            std::thread::Builder::new()
                .name("vitrine-parquet".into())
                .spawn(move || publish_loop(rx, store, shared, layout))?
        };
        let handle = PublisherHandle { tx, shared, capacity: capacity.max(1) };
        Ok(Publisher { handle, store, layout, thread: Some(thread) })
    }

    pub fn handle(&self) -> PublisherHandle {
        self.handle.clone()
    }

    /// Picks `input` up where the store has it (at start, before any set of it is cut): reads
    /// its staged sets back, finishes the file set a crash interrupted, and says where the
    /// worker's sets start (rows before it are safe already: a replay drops them).
    pub fn recover(&self, input: &InputKey) -> Result<Option<Progress>, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| StoreError {
            operation: "start",
            location: self.store.location().into(),
            reason: e.to_string(),
            retryable: false,
        })?;
        let staged = rt.block_on(recover(&self.store, input, self.layout, &self.handle.shared))?;
        let end = staged.end();
        if let Some(end) = end {
            self.handle.shared.staged_end.lock().expect("staged ends").insert(input.clone(), end);
        }
        self.handle.shared.staged.lock().expect("staged").insert(input.clone(), staged);
        Ok(end.map(|end| Progress { end, pending_end: None }))
    }

    /// Table files published so far.
    pub fn files(&self) -> usize {
        self.handle.shared.files.load(Ordering::Relaxed)
    }

    /// Puts every staged row into table files, waiting up to `timeout` for the store, then
    /// stops retrying; Err says what was not published.
    pub fn finish(mut self, timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        let mut flush = Some(Job::Flush);
        while Instant::now() < deadline && self.handle.failure().is_none() {
            if let Some(job) = flush.take() {
                flush = self.handle.try_send(job).err();
            }
            if flush.is_none() && self.handle.idle() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.handle.shared.give_up.store(true, Ordering::SeqCst);
        let waiting = self.handle.shared.queued.load(Ordering::SeqCst) + usize::from(flush.is_some());
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
                "{n} Parquet jobs could not be written to {} within {timeout:?}; their frames are read again on restart",
                self.store.location()
            )),
        }
    }
}

/// Reads back what the store holds of `input`: its progress, its staged sets; redoes the
/// file set a crash interrupted.
async fn recover(store: &TableStore, input: &InputKey, layout: Layout, shared: &Shared) -> Result<Staged, StoreError> {
    let key = input.progress_key();
    let progress: Option<Progress> = match store.get(&key).await? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| StoreError {
            operation: "read",
            location: format!("{}/{key}", store.location()),
            reason: format!(
                "not vitrine's progress record ({e}); remove it only if the tables beside it are to be rewritten"
            ),
            retryable: false,
        })?),
    };
    let mut staged = Staged::new(input.clone(), progress.map(|p| p.end));
    if !input.replayable() {
        return Ok(staged);
    }
    let dir = staging::staging_dir(input);
    store.remove_partial_puts(&dir);
    let mut ranges: Vec<(i64, i64)> = store.list(&dir).await?.iter().filter_map(|n| staging::staged_range(n)).collect();
    ranges.sort_unstable();
    let now = Instant::now();
    for (start, end) in ranges {
        let key = staging::staged_key(input, start, end);
        if progress.is_some_and(|p| end <= p.end) {
            store.delete(&key).await?; // in published files already (a crash came before its delete)
            continue;
        }
        let Some(bytes) = store.get(&key).await? else { continue };
        let rows = staging::decode(&bytes).map_err(|reason| StoreError {
            operation: "read",
            location: format!("{}/{key}", store.location()),
            reason,
            retryable: false,
        })?;
        staged.add(FileSet { input: input.clone(), start, end, rows }, now);
    }
    tracing::info!(input = %input.name(), published_to = ?progress.map(|p| p.end), staged_to = ?staged.end(),
        "parquet: resuming after what the store holds");
    if let Some(pending) = progress.and_then(|p| p.pending_end) {
        // The staged sets end where the interrupted file set did: cut it again, the same.
        if staged.end() != Some(pending) {
            return Err(StoreError {
                operation: "read",
                location: format!("{}/{dir}", store.location()),
                reason: format!(
                    "the file set up to offset {pending} was being published but the staged sets end at {:?}; were objects removed by hand?",
                    staged.end()
                ),
                retryable: false,
            });
        }
        publish_files(store, &mut staged, layout, shared).await.map_err(|reason| StoreError {
            operation: "put",
            location: store.location().into(),
            reason,
            retryable: false,
        })?;
    }
    Ok(staged)
}

fn publish_loop(rx: Receiver<Job>, store: TableStore, shared: Arc<Shared>, layout: Layout) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            *shared.failure.lock().expect("failure") = Some(format!("cannot start the Parquet publisher: {e}"));
            return;
        }
    };
    loop {
        let (job, flush) = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Job::Stage(set)) => (Some(set), false),
            Ok(Job::Flush) => (None, true),
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let queued = job.is_some() || flush;
        let started = Instant::now();
        let done = rt.block_on(async {
            if let Some(set) = job {
                stage(&store, set, &shared).await?;
            }
            publish_due(&store, layout, &shared, flush).await
        });
        if queued {
            if let Some(m) = &shared.metrics {
                m.publish_seconds.observe(started.elapsed().as_secs_f64());
            }
        }
        if let Err(e) = done {
            tracing::error!(error = %e, "the Parquet sink stopped");
            *shared.failure.lock().expect("failure") = Some(e);
            return;
        }
        if queued {
            shared.done_one();
        }
    }
}

/// Puts a set the workers cut where no table reader sees it; its rows are then safe.
async fn stage(store: &TableStore, set: FileSet, shared: &Shared) -> Result<(), String> {
    if set.input.replayable() {
        let key = staging::staged_key(&set.input, set.start, set.end);
        put(store, &key, staging::encode(&set.rows), shared).await?;
        tracing::debug!(input = %set.input.name(), from = set.start, to = set.end, rows = set.rows.len(), "parquet rows staged");
    }
    shared.staged_end.lock().expect("staged ends").insert(set.input.clone(), set.end);
    let mut staged = shared.staged.lock().expect("staged");
    let input = set.input.clone();
    staged.entry(input.clone()).or_insert_with(|| Staged::new(input, None)).add(set, Instant::now());
    Ok(())
}

/// Publishes the table files that are due (all of them when `flush`).
async fn publish_due(store: &TableStore, layout: Layout, shared: &Shared, flush: bool) -> Result<(), String> {
    let now = Instant::now();
    let due: Vec<InputKey> = {
        let staged = shared.staged.lock().expect("staged");
        staged.iter().filter(|(_, s)| s.due(layout.roll, now, flush)).map(|(i, _)| i.clone()).collect()
    };
    for input in due {
        let mut staged = shared.staged.lock().expect("staged").remove(&input).expect("listed");
        let published = publish_files(store, &mut staged, layout, shared).await;
        shared.staged.lock().expect("staged").insert(input, staged);
        published?;
    }
    Ok(())
}

/// The three steps for every staged row of an input (pending, files, published), then the
/// staged objects they came from are deleted.
async fn publish_files(store: &TableStore, staged: &mut Staged, layout: Layout, shared: &Shared) -> Result<(), String> {
    let (set, staged_sets) = staged.cut();
    let files = set.files(layout.row_group_rows).map_err(|e| format!("cannot encode a Parquet file: {e}"))?;
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
        for (start, end) in staged_sets {
            let key = staging::staged_key(&set.input, start, end);
            // Left behind, it is deleted at the next start (it is before the published end).
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(error = %e, "cannot delete a staged set the tables hold now; it is removed at the next start");
            }
        }
    }
    shared.files.fetch_add(files.len(), Ordering::Relaxed);
    tracing::info!(
        input = %set.input.name(),
        from = set.start,
        to = set.end,
        rows = set.rows.len(),
        files = files.len(),
        "parquet files published"
    );
    Ok(())
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
