//! The inputs that run on threads of their own: the catalog (a file watched, or a compacted
//! topic followed) and the embedded sources (videos and folders of frames). Kafka frames are
//! read by the timely workers themselves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::anyhow;
use vitrine_connectors::catalog::{self, CatalogChange, CatalogProblem};
use vitrine_connectors::hls::HlsStream;
use vitrine_connectors::images::ImageStore;
use vitrine_connectors::sources::video::HlsRun;
use vitrine_connectors::sources::{self, FrameMark, FrameSink};
use vitrine_connectors::ConnectorError;
use vitrine_operators::{ChangeGate, SkipConfig};
use vitrine_schemas::spec::SourceSpec;
use vitrine_schemas::Frame;

use super::sinks::{report_catalog_problems, Output};
use crate::spec::LoadedSpec;
use crate::supervise::Supervisor;

/// The catalog's changes, as its threads send them.
pub(super) type CatalogChanges = Receiver<Vec<CatalogChange>>;

/// Batches of catalog changes queued for the workers, at most.
pub(super) const CATALOG_QUEUE_BATCHES: usize = 64;

/// What the catalog threads share with the run.
pub(super) struct CatalogInputs<'a> {
    /// Where pictures given as files are served from.
    pub images: &'a ImageStore,
    /// The sink thread, for bad catalog rows (dead letters).
    pub out: &'a SyncSender<Output>,
    /// Whether this process reports bad rows (process 0 of a cluster: once, not per process).
    pub report_problems: bool,
}

/// Reads the catalog once (a missing or unreadable file fails the run now), then starts the
/// threads that send its changes.
pub(super) fn start_catalog(
    loaded: &LoadedSpec,
    inputs: &CatalogInputs,
    stop: &Arc<AtomicBool>,
    supervisor: &Supervisor,
) -> anyhow::Result<(CatalogChanges, Vec<JoinHandle<()>>)> {
    let spec = &loaded.spec;
    // Bounded: a catalog that changes faster than the workers take it waits (a batch holds
    // up to 10,000 changes).
    let (catalog_tx, catalog_rx) = mpsc::sync_channel::<Vec<CatalogChange>>(CATALOG_QUEUE_BATCHES);
    let mut threads = Vec::new();
    let report = inputs.report_problems;
    if let Some(path) = &spec.catalog.path {
        let catalog_path = loaded.resolve(path);
        let (_, problems) = catalog::load(&catalog_path, inputs.images).map_err(|e| anyhow!("{e} (catalog.path)"))?;
        if report {
            report_catalog_problems(inputs.out, problems);
        }
        let (stop, images, out, tx) = (stop.clone(), inputs.images.clone(), inputs.out.clone(), catalog_tx.clone());
        let (watch, poll) = (spec.catalog.watch, spec.catalog.poll);
        let supervisor = supervisor.clone();
        threads.push(std::thread::Builder::new().name("vitrine-catalog".into()).spawn(move || {
            // Every process reads the catalog (it serves the pictures); process 0 reports its bad rows.
            let on_problem = |p: CatalogProblem| {
                if report {
                    report_catalog_problems(&out, vec![p])
                }
            };
            if let Err(e) = catalog::run(&catalog_path, watch, poll, &images, &tx, &stop, &on_problem) {
                supervisor.fail(format!("the catalog file {} stopped: {e} (catalog.path)", catalog_path.display()));
            }
        })?);
    }
    if let Some(topic) = spec.catalog.kafka.clone() {
        let (stop, images, out, tx) = (stop.clone(), inputs.images.clone(), inputs.out.clone(), catalog_tx.clone());
        let base_dir = loaded.base_dir.clone();
        let supervisor = supervisor.clone();
        threads.push(std::thread::Builder::new().name("vitrine-catalog-topic".into()).spawn(move || {
            let on_problem = |p: CatalogProblem| {
                if report {
                    report_catalog_problems(&out, vec![p])
                }
            };
            let result = vitrine_connectors::kafka::catalog::run(
                &topic.brokers,
                &topic.topic,
                &images,
                &base_dir,
                &tx,
                &stop,
                &on_problem,
            );
            if let Err(e) = result {
                supervisor.fail(format!(
                    "the catalog topic {} stopped: {e}. Check catalog.kafka and that the broker is up",
                    topic.topic
                ));
            }
        })?);
    }
    Ok((catalog_rx, threads))
}

/// A source that runs on a thread of its own, sending its frames to a [`FrameSink`].
type SourceRun = Box<dyn FnOnce(&FrameSink) -> Result<u64, ConnectorError> + Send>;

/// The registry of source kinds: the code that runs a source of the spec on its own thread,
/// with its stream id; none for the kinds the workers read themselves (Kafka).
fn embedded_source(
    source: SourceSpec,
    loaded: &LoadedSpec,
    hls_streams: &HashMap<String, Arc<HlsStream>>,
) -> Option<(String, SourceRun)> {
    match source {
        SourceSpec::Video(v) => {
            let input = loaded.resolve_input(&v.input);
            let hls = hls_streams.get(&v.stream_id).cloned();
            let stream_id = v.stream_id.clone();
            let run: SourceRun = Box::new(move |sink| {
                let run = hls.as_deref().map(|stream| HlsRun { stream, media_offset_ms: 0 });
                let result = sources::video::run(&v, &input, sink, run);
                if let Some(hls) = &hls {
                    hls.end();
                }
                result
            });
            Some((stream_id, run))
        }
        SourceSpec::Frames(f) => {
            let dir = loaded.resolve(&f.dir);
            let stream_id = f.stream_id.clone();
            Some((stream_id, Box::new(move |sink| sources::folder::run(&f, Path::new(&dir), sink))))
        }
        SourceSpec::Kafka(_) => None,
    }
}

/// Where the embedded sources' frames go.
pub(super) struct EmbeddedFeed {
    pub frames: SyncSender<Frame>,
    /// The worker that takes them, woken after each frame.
    pub taker: Arc<std::sync::OnceLock<std::thread::Thread>>,
    /// The change check each source runs on its frames (`infer.max_skip`).
    pub skip: SkipConfig,
}

/// Starts a thread for each embedded source; a source that fails stops the run.
pub(super) fn start_embedded_sources(
    loaded: &LoadedSpec,
    sources: Vec<SourceSpec>,
    hls_streams: &HashMap<String, Arc<HlsStream>>,
    feed: EmbeddedFeed,
    stop: &Arc<AtomicBool>,
    supervisor: &Supervisor,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (stream_id, run) in sources.into_iter().filter_map(|s| embedded_source(s, loaded, hls_streams)) {
        // Each source's frames are checked for change on its own thread, in order.
        let mark = ChangeGate::new(feed.skip).map(|gate| {
            let gate = Mutex::new(gate);
            Arc::new(move |frame: &mut Frame| gate.lock().expect("change gate").mark(frame)) as FrameMark
        });
        let sink = FrameSink { frames: feed.frames.clone(), stop: stop.clone(), mark, wake: feed.taker.clone() };
        let supervisor = supervisor.clone();
        threads.push(std::thread::Builder::new().name(format!("source-{stream_id}")).spawn(move || {
            if let Err(e) = run(&sink) {
                supervisor.fail(format!(
                    "source `{stream_id}` failed: {e}. Check that its input exists and that ffmpeg can read it (sources[].input)"
                ));
            }
        })?);
    }
    Ok(threads)
}
