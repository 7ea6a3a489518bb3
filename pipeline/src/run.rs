//! `vitrine run`: sources on threads, the timely dataflow, sinks, and the viewer server.
//!
//! ```text
//! embedded sources (threads) --frames (bounded)--> worker 0 input ----+
//! Kafka partitions p (p mod W == w) ----------------> worker w input --+--exchange--> decode -> infer -> debounce
//! catalog thread --changes--> worker 0 catalog collection --------------------------------> join -> events
//! dataflow outputs --channel--> sink thread: dead letters, Kafka topics, WebSocket hub
//! detections, events, exposures --exchange to the partition's reader--> Parquet sink (crate::analytics)
//! ```
//!
//! Kafka offsets: each worker remembers, per dataflow time, the next offset of each of its
//! partitions. Worker 0 tells the sink thread how far the dataflow has completed; the sink
//! thread flushes Kafka and then raises the durable time. Each worker commits the offsets of
//! the times below it, no further than its Parquet files are published (see
//! [`crate::offsets`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use differential_dataflow::input::Input;
use timely::dataflow::operators::core::{Exchange, Inspect, Map, Probe};
use timely::dataflow::operators::Concat;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use vitrine_connectors::catalog::{self, CatalogChange};
use vitrine_connectors::hls::HlsStream;
use vitrine_connectors::hub::Hub;
use vitrine_connectors::images::ImageStore;
use vitrine_connectors::kafka::sink::{KafkaSink, KafkaSinkTopics};
use vitrine_connectors::kafka::source::KafkaFrameSource;
use vitrine_connectors::metrics::{Health, Metrics};
use vitrine_connectors::parquet::{FileCutter, InputKey, Publisher, Roll, TableStore};
use vitrine_connectors::server::access::Access;
use vitrine_connectors::server::{self, ServerState};
use vitrine_connectors::sinks::dead_letter::DeadLetterFile;
use vitrine_connectors::sources::video::HlsRun;
use vitrine_connectors::sources::{self, FrameSink};
use vitrine_models::{find_runtime_library, Detector, Runtime};
use vitrine_operators::{
    product_outputs, stable_hash, BatchConfig, DebounceConfig, DecodeFrames, Emitted, FrameDecoder, InferDetections,
    Inferencer, ReplayPoints, Stage, StageObserver, StageTimer, Tiling, Time, TrackObjects, TrackerConfig,
};
use vitrine_schemas::spec::{KafkaSource, Pace, ServerSpec, SourceSpec, VideoSource};
use vitrine_schemas::{now_ms, CatalogItem, Cause, DeadLetter, Frame, FrameDetections, ProductEvent, SourcePosition};

use crate::analytics::{write_parquet, AnalyticsRow, ParquetWorker, ReadLog};
use crate::cluster::{Cluster, Shape};
use crate::feed::FeedQueue;
use crate::offsets::OffsetTracker;
use crate::spec::LoadedSpec;
use crate::supervise::Supervisor;

/// Command-line settings of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the spec's `workers` (worker threads of this process).
    pub workers: Option<usize>,
    /// This process's place in a timely cluster (none: a single process).
    pub cluster: Option<Cluster>,
    /// Exit once every source has ended, even when serving viewers.
    pub exit_when_done: bool,
    /// Keep every frame's capture-to-sink latency in the summary (benchmarks).
    pub record_latencies: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub frames: u64,
    pub events: u64,
    pub dead_letters: u64,
    /// Frames of live streams shed because the model fell behind.
    pub frames_shed: u64,
    /// Runs of the model (a micro-batch is one).
    pub model_runs: u64,
    pub seconds: f64,
    /// Per frame, milliseconds from capture to its detections reaching the sinks (when asked for).
    #[serde(skip)]
    pub latencies_ms: Vec<u32>,
}

/// What the dataflow hands to the sink thread.
enum Output {
    Detections(FrameDetections),
    Event(ProductEvent, Cause),
    DeadLetter(DeadLetter),
    /// A live stream's frame shed unprocessed (the model fell behind).
    Shed {
        stream_id: String,
        seq: u64,
    },
    /// Every output of the times before this one has been sent (`Time::MAX`: the dataflow ended).
    Complete(Time),
}

/// Results waiting for the sink thread before the workers wait for it.
const OUTPUT_QUEUE: usize = 4096;

/// Frames taken from the embedded sources and not yet fed (live streams shed past this).
const FEED_QUEUE_FRAMES: usize = 64;

/// File sets a worker may have queued for the Parquet publisher before it takes no new frames.
const PARQUET_QUEUE_PER_WORKER: usize = 2;

/// Frames waiting in the dataflow, per worker, before worker 0 stops taking more from the
/// sources (which then wait): memory stays bounded whatever the source's speed.
const IN_FLIGHT_PER_WORKER: u64 = 8;

pub fn run(loaded: LoadedSpec, options: RunOptions, stop: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let spec = loaded.spec.clone();
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let supervisor = Supervisor::new(stop.clone(), health.clone());
    let workers = options.workers.unwrap_or(spec.workers.get()).max(1);
    let shape = Shape { workers, cluster: options.cluster.clone() };
    // Cluster-wide: every process's workers, and this one's first.
    let (peers, first_worker) = (shape.peers(), shape.first_worker());
    // Embedded sources run in process 0 only; Kafka partitions are spread over every worker.
    let runs_embedded = shape.process() == 0;

    // The model first: the most likely thing to be missing on a fresh machine.
    let configured = spec.model.runtime_library.as_ref().map(|p| loaded.resolve(p));
    let cwd = std::env::current_dir().unwrap_or_default();
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_default();
    let library = find_runtime_library(configured.as_deref(), &[&loaded.base_dir, &cwd, &exe_dir])?;
    let runtime = Runtime::load(&library)?;
    let detector_config = loaded.detector_config(spec.model.intra_threads.get());
    let detectors: Vec<Option<Detector>> =
        (0..workers).map(|_| Detector::load(&runtime, &detector_config).map(Some)).collect::<Result<_, _>>()?;
    let detectors = Arc::new(Mutex::new(detectors));

    // Sinks.
    let images = ImageStore::default();
    let kafka_source: Option<KafkaSource> = spec.sources.iter().find_map(|s| match s {
        SourceSpec::Kafka(k) => Some(k.clone()),
        _ => None,
    });
    let hub = spec.server.as_ref().map(|s| {
        let mut known: Vec<String> = spec.sources.iter().filter_map(|s| s.stream_id().map(str::to_owned)).collect();
        match &kafka_source {
            Some(k) => {
                known.extend(k.streams.iter().cloned());
                Arc::new(Hub::open(known, s.viewer_queue.get()))
            }
            None => Arc::new(Hub::new(known, s.viewer_queue.get())),
        }
    });
    let kafka_sink = match &spec.sinks.kafka {
        Some(k) => {
            let topics = KafkaSinkTopics {
                detections: k.detections_topic.clone(),
                events: k.events_topic.clone(),
                dead_letter: k.dead_letter_topic.clone(),
            };
            Some(KafkaSink::connect(&k.brokers, topics, &spec.name).map_err(|e| anyhow!("{e} (sinks.kafka)"))?)
        }
        None => None,
    };
    // The dataflow time below which every result is durable (raised by the sink thread).
    let durable = Arc::new(AtomicU64::new(0));
    // The Parquet tables: a store (a folder or s3://...) and the thread that publishes to it.
    let publisher = match &spec.sinks.parquet {
        Some(p) => {
            let store = TableStore::open(&p.path, &loaded.base_dir).map_err(|e| anyhow!("{e} (sinks.parquet.path)"))?;
            let timer = metrics.sink_seconds.with_label_values(&["parquet"]);
            Some(Publisher::start(store, PARQUET_QUEUE_PER_WORKER * workers, p.row_group_rows.get(), timer)?)
        }
        None => None,
    };
    let run_started = now_ms();
    let dead_letter_path = match (&spec.sinks.dead_letter, &spec.sinks.parquet) {
        (Some(d), _) => Some(loaded.resolve(&d.path)),
        (None, Some(p)) if !p.path.contains("://") => Some(loaded.resolve(&p.path).join("dead-letter.jsonl")),
        _ => None,
    };
    let dead_letters = dead_letter_path.as_deref().map(DeadLetterFile::open).transpose()?;
    let streams = spec.sources.iter().filter_map(|s| s.stream_id().map(str::to_owned));
    for stream in streams.chain(kafka_source.iter().flat_map(|k| k.streams.iter().cloned())) {
        metrics.known_stream(&stream);
    }
    let sent_before = Arc::new(Mutex::new(BTreeMap::new()));
    // False once the sink thread died: nothing more becomes durable, so a drain does not wait.
    let sinks_alive = Arc::new(AtomicBool::new(true));
    let worker_sinks_alive = sinks_alive.clone();
    // Bounded: a slow sink (Kafka, a full dead-letter disk) holds the workers back, and so the sources.
    let (out_tx, out_rx) = mpsc::sync_channel::<Output>(OUTPUT_QUEUE);
    let sink_thread = {
        let sinks = Sinks {
            metrics: metrics.clone(),
            dead_letters,
            kafka: kafka_sink,
            hub: hub.clone(),
            durable: durable.clone(),
            record_latencies: options.record_latencies,
            sent_before: sent_before.clone(),
        };
        {
            let (supervisor, sinks_alive) = (supervisor.clone(), sinks_alive.clone());
            std::thread::Builder::new().name("vitrine-sinks".into()).spawn(move || {
                let result = sink_loop(out_rx, sinks);
                if let Err(e) = &result {
                    sinks_alive.store(false, Ordering::Relaxed);
                    supervisor.fail(format!(
                        "the sinks stopped: {e:#}. Nothing past what they made durable was committed; fix the sink and restart"
                    ));
                }
                result
            })?
        }
    };

    // Live HLS folders, for the sources that cut segments and the server that serves them.
    let mut hls_streams: HashMap<String, Arc<HlsStream>> = HashMap::new();
    for (i, source) in spec.sources.iter().enumerate() {
        if let SourceSpec::Video(VideoSource { stream_id, hls: Some(hls), .. }) = source {
            let stream = HlsStream::create(stream_id, hls, &loaded.base_dir)
                .map_err(|e| anyhow!("sources[{i}].hls: cannot make the segment folder: {e}"))?;
            hls_streams.insert(stream_id.clone(), stream);
        }
    }
    let hls_streams = Arc::new(hls_streams);

    // The server (and signal handling) on a small tokio runtime.
    let server_done = Arc::new(tokio::sync::Notify::new());
    let server_thread = {
        let stop = stop.clone();
        let server_done = server_done.clone();
        let supervisor = supervisor.clone();
        let access = match &spec.server {
            Some(s) => viewer_access(s)?,
            None => Access::default(),
        };
        let state = hub.clone().zip(spec.server.clone()).map(|(hub, s)| {
            let videos: HashMap<String, PathBuf> = spec
                .sources
                .iter()
                .filter_map(|src| match src {
                    SourceSpec::Video(v) if !v.input.contains("://") => {
                        Some((v.stream_id.clone(), loaded.resolve(&v.input)))
                    }
                    _ => None,
                })
                .collect();
            (
                s.listen,
                ServerState {
                    hub,
                    images: images.clone(),
                    videos: Arc::new(videos),
                    hls: hls_streams.clone(),
                    hls_dir: kafka_source.as_ref().and_then(|k| k.hls_dir.as_ref()).map(|d| loaded.resolve(d)),
                    viewer_page: s.viewer,
                    heartbeat: s.heartbeat,
                    metrics: metrics.clone(),
                    health: health.clone(),
                    access,
                },
            )
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new().name("vitrine-server".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                tokio::spawn(watch_signals(stop));
                match state {
                    Some((addr, state)) => {
                        let listener = tokio::net::TcpListener::bind(addr).await;
                        match listener {
                            Err(e) => {
                                let _ = ready_tx.send(Err(format!(
                                    "cannot listen on {addr}: {e}. Is another vitrine running? Set server.listen or VITRINE_LISTEN"
                                )));
                            }
                            Ok(listener) => {
                                drop(listener); // bound successfully: serve() binds again right away
                                let _ = ready_tx.send(Ok(()));
                                let shutdown = async move { server_done.notified().await };
                                if let Err(e) = server::serve(addr, state, shutdown).await {
                                    supervisor.fail(format!("the viewer server on {addr} stopped: {e}"));
                                }
                            }
                        }
                    }
                    None => {
                        let _ = ready_tx.send(Ok(()));
                        server_done.notified().await;
                    }
                }
            });
        })?;
        ready_rx.recv().map_err(|_| anyhow!("the server thread died"))?.map_err(|e| anyhow!(e))?;
        thread
    };

    // Catalog and sources.
    let (catalog_tx, catalog_rx) = mpsc::channel::<Vec<CatalogChange>>();
    let mut catalog_threads = Vec::new();
    if let Some(path) = &spec.catalog.path {
        let catalog_path = loaded.resolve(path);
        // Read once now, so a missing or unreadable catalog fails the run at once.
        let (_, problems) = catalog::load(&catalog_path, &images).map_err(|e| anyhow!("{e} (catalog.path)"))?;
        if runs_embedded {
            report_catalog_problems(&out_tx, problems);
        }
        let (stop, images, out_tx, catalog_tx) = (stop.clone(), images.clone(), out_tx.clone(), catalog_tx.clone());
        let (watch, poll) = (spec.catalog.watch, spec.catalog.poll);
        let supervisor = supervisor.clone();
        catalog_threads.push(std::thread::Builder::new().name("vitrine-catalog".into()).spawn(move || {
            // Every process reads the catalog (it serves the pictures); process 0 reports its bad rows.
            let on_problem = |p: catalog::CatalogProblem| {
                if runs_embedded {
                    report_catalog_problems(&out_tx, vec![p])
                }
            };
            if let Err(e) = catalog::run(&catalog_path, watch, poll, &images, &catalog_tx, &stop, &on_problem) {
                supervisor.fail(format!("the catalog file {} stopped: {e} (catalog.path)", catalog_path.display()));
            }
        })?);
    }
    if let Some(topic) = spec.catalog.kafka.clone() {
        let (stop, images, out_tx, catalog_tx) = (stop.clone(), images.clone(), out_tx.clone(), catalog_tx.clone());
        let base_dir = loaded.base_dir.clone();
        let supervisor = supervisor.clone();
        catalog_threads.push(std::thread::Builder::new().name("vitrine-catalog-topic".into()).spawn(move || {
            let on_problem = |p: catalog::CatalogProblem| {
                if runs_embedded {
                    report_catalog_problems(&out_tx, vec![p])
                }
            };
            if let Err(e) = vitrine_connectors::kafka::catalog::run(
                &topic.brokers,
                &topic.topic,
                &images,
                &base_dir,
                &catalog_tx,
                &stop,
                &on_problem,
            ) {
                supervisor.fail(format!(
                    "the catalog topic {} stopped: {e}. Check catalog.kafka and that the broker is up",
                    topic.topic
                ));
            }
        })?);
    }
    drop(catalog_tx);
    let (frames_tx, frames_rx) = mpsc::sync_channel::<Frame>(16);
    let mut source_threads = Vec::new();
    let embedded_sources = if runs_embedded { spec.sources.clone() } else { Vec::new() };
    for source in embedded_sources {
        let sink = FrameSink { frames: frames_tx.clone(), stop: stop.clone() };
        let (input, stream_id) = match &source {
            SourceSpec::Video(v) => (loaded.resolve_input(&v.input), v.stream_id.clone()),
            SourceSpec::Frames(f) => (loaded.resolve(&f.dir).display().to_string(), f.stream_id.clone()),
            SourceSpec::Kafka(_) => continue, // read by the workers themselves
        };
        let hls = hls_streams.get(&stream_id).cloned();
        let supervisor = supervisor.clone();
        source_threads.push(std::thread::Builder::new().name(format!("source-{stream_id}")).spawn(move || {
            let result = match &source {
                SourceSpec::Video(v) => {
                    let run = hls.as_deref().map(|stream| HlsRun { stream, media_offset_ms: 0 });
                    let result = sources::video::run(v, &input, &sink, run);
                    if let Some(hls) = &hls {
                        hls.end();
                    }
                    result
                }
                SourceSpec::Frames(f) => sources::folder::run(f, std::path::Path::new(&input), &sink),
                SourceSpec::Kafka(_) => Ok(0),
            };
            if let Err(e) = result {
                supervisor.fail(format!(
                    "source `{stream_id}` failed: {e}. Check that its input exists and that ffmpeg can read it (sources[].input)"
                ));
            }
        })?);
    }
    drop(frames_tx);
    // Each worker connects to its own Kafka partitions up front, so a bad broker fails the run now.
    let kafka_feeds: Vec<Option<KafkaFrameSource>> = (first_worker..first_worker + workers)
        .map(|w| {
            kafka_source
                .as_ref()
                .map(|k| {
                    let refs = k.frame_refs_dir.as_ref().map(|d| loaded.resolve(d));
                    KafkaFrameSource::connect(&k.brokers, &k.topic, &k.group_id, w, peers)
                        .map(|s| s.with_refs_dir(refs))
                })
                .transpose()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{e} (sources: kafka)"))?;
    // Each worker's Parquet files, picking up from what the store holds of its partitions.
    let min_dwell_ms = spec.sinks.parquet.as_ref().map_or(0, |p| p.min_dwell.as_millis() as i64);
    let cutters: Vec<Option<FileCutter>> = match (&publisher, &spec.sinks.parquet) {
        (Some(publisher), Some(p)) => kafka_feeds
            .iter()
            .map(|feed| {
                let mut cutter = FileCutter::new(Roll { after: p.roll_after, rows: p.roll_rows.get() });
                for partition in feed.iter().flat_map(|f| f.partitions()) {
                    let input = InputKey::Partition(*partition);
                    let progress = publisher.progress(&input).map_err(|e| anyhow!("{e} (sinks.parquet)"))?;
                    if let Some(progress) = &progress {
                        tracing::info!(partition, end = progress.end, redo_to = ?progress.pending_end,
                            "parquet: resuming after the files already published");
                    }
                    cutter.recover(input, progress);
                }
                Ok(Some(cutter))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => (0..workers).map(|_| None).collect(),
    };
    let cutters = Arc::new(Mutex::new(cutters));
    // Set before any frame is read, so the sinks know every replayed result.
    sent_before.lock().expect("sent marks").extend(kafka_feeds.iter().flatten().flat_map(|f| f.sent_before().clone()));
    let publisher_handle = publisher.as_ref().map(Publisher::handle);
    let kafka_feeds = Arc::new(Mutex::new(kafka_feeds));

    // The dataflow.
    let frames_rx = Arc::new(Mutex::new(Some(frames_rx)));
    let catalog_rx = Arc::new(Mutex::new(Some(catalog_rx)));
    let (sent, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let limits = loaded.decode_limits();
    let debounce = DebounceConfig {
        min_score: spec.debounce.min_score,
        label_min_score: spec.debounce.label_min_score.clone(),
        stay_min_score: spec.debounce.stay_min_score,
        cooldown_ms: spec.debounce.cooldown.as_millis() as i64,
        max_on_screen: spec.debounce.max_on_screen.map(|n| n.get()),
        enter_hits: spec.debounce.enter_hits.get(),
        enter_window: spec.debounce.enter_window.get(),
        hold_ms: spec.debounce.hold.as_millis() as i64,
        // A Kafka stream does not end when vitrine stops: a restart carries on where it left.
        input_end_closes_streams: kafka_source.is_none(),
    };
    let tracker = TrackerConfig {
        high_score: spec.tracker.high_score,
        low_score: spec.tracker.low_score,
        match_iou: spec.tracker.match_iou,
        low_match_iou: spec.tracker.low_match_iou,
        lost_ms: spec.tracker.lost_after.as_millis() as i64,
    };
    let timer = StageTimer::new(Arc::new(StageMetrics(metrics.clone())));
    let worker_metrics = metrics.clone();
    let worker_health = health.clone();
    let tiling = Some(Tiling { grid: spec.infer.tiles.get() as u32, overlap: spec.infer.tile_overlap });
    let batch = BatchConfig { max_frames: spec.infer.batch_frames.get(), max_wait: spec.infer.batch_wait };
    let replay = ReplayPoints::default();
    // Streams that do not wait for the model: shed when it falls behind (infer.shed_after).
    let live_streams: std::collections::HashSet<String> = spec
        .sources
        .iter()
        .filter_map(|s| match s {
            SourceSpec::Video(v) if v.pace == Pace::Realtime || v.input.contains("://") => Some(v.stream_id.clone()),
            SourceSpec::Frames(f) if f.pace == Pace::Realtime => Some(f.stream_id.clone()),
            _ => None,
        })
        .collect();
    let shed_after_ms = spec.infer.shed_after.map(|d| d.as_millis() as i64);
    let epoch_ms = spec.epoch.as_millis().max(1) as u64;
    let dataflow_stop = stop.clone();
    let dataflow_supervisor = supervisor.clone();
    let out = Mutex::new(out_tx);
    let frames_route = shape.clone();
    if shape.cluster.is_some() {
        tracing::info!(shape = %shape.describe(), "connecting to the other processes of the cluster");
    }
    tracing::info!(pipeline = %spec.name, shape = %shape.describe(), sources = spec.sources.len(), "pipeline running");
    // The model is loaded, the partitions are assigned, the sinks are open: /readyz says so.
    health.set_ready(true);
    let guards = timely::execute(shape.timely_config(), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        // This worker's index among its process's workers: what its per-worker parts are kept by.
        let local = index - first_worker;
        let detector = detectors.lock().expect("detectors")[local].take().expect("one detector per worker");
        let decoder = FrameDecoder::new(limits, detector.input()).with_tiling(tiling).timed(timer.clone());
        let metrics = worker_metrics.clone();
        let health = worker_health.clone();
        let out: SyncSender<Output> = out.lock().expect("output").clone();
        let (out_d, out_e, out_x) = (out.clone(), out.clone(), out.clone());
        let (done_d, done_x) = (done.clone(), done.clone());
        let mut frames_in = InputHandleVec::<Time, Frame>::new();
        let probe = ProbeHandle::new();
        let parquet =
            cutters.lock().expect("cutters")[local].take().zip(publisher_handle.clone()).map(|(cutter, publisher)| {
                ParquetWorker {
                    cutter: Rc::new(RefCell::new(cutter)),
                    reads: Rc::new(RefCell::new(ReadLog::default())),
                    publisher,
                    waiting: Default::default(),
                }
            });
        let frames_route = frames_route.clone();
        let catalog_in = worker.dataflow::<Time, _, _>(|scope| {
            let frames = frames_in.to_stream(scope).exchange(move |f: &Frame| {
                frames_route.local_route(stable_hash(&[f.stream_id.as_bytes(), &f.seq.to_le_bytes()]))
            });
            let (prepared, decode_failed) = frames.decode_frames(decoder);
            let inferencer = Inferencer::new(detector).counting_runs(metrics.model_runs.clone()).timed(timer.clone());
            let (detections, infer_failed) = prepared.infer_detections(inferencer, batch);
            // A frame stops counting against the in-flight bound once inferred: tracking holds
            // it until its time is complete, and counting that wait would starve the model.
            let detections = detections
                .inspect(move |_: &FrameDetections| {
                    done_d.fetch_add(1, Ordering::Relaxed);
                })
                .track_objects(tracker.clone(), replay.clone(), timer.clone())
                .inspect(move |d: &FrameDetections| {
                    let _ = out_d.send(Output::Detections(d.clone()));
                });
            let (catalog_in, catalog) = scope.new_collection::<(String, CatalogItem), isize>();
            let emitted = product_outputs(detections.clone(), catalog, debounce.clone(), replay.clone(), timer.clone());
            emitted
                .clone()
                .inspect(move |e: &Emitted| {
                    if let Emitted::Event(e, cause) = e {
                        let _ = out_e.send(Output::Event(e.clone(), *cause));
                    }
                })
                .probe_with(&probe);
            if let Some(parquet) = &parquet {
                let rows = detections.map(AnalyticsRow::Detections).concat(emitted.map(AnalyticsRow::Emitted));
                write_parquet(rows, parquet, run_started, min_dwell_ms, peers);
            }
            decode_failed
                .concat(infer_failed)
                .inspect(move |d: &DeadLetter| {
                    done_x.fetch_add(1, Ordering::Relaxed);
                    let _ = out_x.send(Output::DeadLetter(d.clone()));
                })
                .probe_with(&probe);
            catalog_in
        });

        // What this worker feeds: its Kafka partitions, and on worker 0 the embedded sources and
        // the catalog. The first worker of every process follows the catalog's labels (replay points).
        let mut kafka = kafka_feeds.lock().expect("kafka").get_mut(local).and_then(Option::take);
        let embedded = if index == 0 { frames_rx.lock().expect("frames").take() } else { None };
        let catalog_changes = if local == 0 { catalog_rx.lock().expect("catalog").take() } else { None };
        let mut embedded_open = embedded.is_some();
        let mut feed = FeedQueue::new(live_streams.clone(), shed_after_ms);
        // Only worker 0 feeds the catalog; the others must drop their handle, or it holds the join's time back.
        let mut catalog_in = if index == 0 {
            Some(catalog_in)
        } else {
            drop(catalog_in);
            None
        };
        if kafka.is_none() && !embedded_open {
            // Nothing to feed: closing the input lets time advance for the others.
            drop(frames_in);
            drop(catalog_in);
            while worker.step_or_park(Some(Duration::from_millis(50))) {}
            return;
        }
        // Frames stay in the process that read them until inferred: the bound is per process.
        let max_in_flight = IN_FLIGHT_PER_WORKER * workers as u64;
        let epoch = |ms: i64| (ms.max(0) as u64 / epoch_ms) * epoch_ms;
        let mut offsets =
            kafka.as_ref().map_or_else(OffsetTracker::default, |k| OffsetTracker::resuming(k.sent_before()));
        let mut last_commit = Instant::now();
        let mut reported: Time = 0;
        let mut parquet_failed = false;
        loop {
            if let Some(changes) = &catalog_changes {
                for batch in changes.try_iter() {
                    for (item, diff) in batch {
                        replay.catalog_changed(&item.label, diff);
                        if let Some(input) = catalog_in.as_mut() {
                            input.update((item.label.clone(), item), diff);
                        }
                    }
                }
            }
            // Other workers send and finish frames concurrently: `done` may momentarily pass our read of `sent`.
            let in_flight = sent.load(Ordering::Relaxed).saturating_sub(done.load(Ordering::Relaxed));
            let mut room = max_in_flight.saturating_sub(in_flight);
            if let Some(parquet) = &parquet {
                parquet.pump();
                if !parquet.has_room() {
                    room = 0; // the Parquet store is behind: take no new frames until it catches up
                }
                if let Some(failure) = parquet.publisher.failure() {
                    if !std::mem::replace(&mut parquet_failed, true) {
                        dataflow_supervisor.fail(format!(
                            "the Parquet sink cannot write: {failure}. Nothing past the published files was committed"
                        ));
                    }
                }
            }
            // Take what the sources have into the feed queue (where live streams shed stale
            // frames), then feed the dataflow as far as the in-flight bound allows.
            while embedded_open && feed.len() < FEED_QUEUE_FRAMES {
                match embedded.as_ref().map(|rx| rx.try_recv()) {
                    Some(Ok(frame)) => {
                        for shed in feed.push(frame, now_ms()) {
                            let _ = out.send(Output::Shed { stream_id: shed.stream_id, seq: shed.seq });
                        }
                    }
                    Some(Err(TryRecvError::Empty)) => break,
                    _ => embedded_open = false,
                }
            }
            while room > 0 {
                let Some(frame) = feed.pop() else { break };
                if let Some(parquet) = &parquet {
                    let input = InputKey::of(&frame.position, &frame.stream_id, run_started);
                    parquet.reads.borrow_mut().read(*frames_in.time(), input, frame.position.offset);
                }
                metrics.frames_read.with_label_values(&[frame.stream_id.as_str()]).inc();
                frames_in.send(frame);
                sent.fetch_add(1, Ordering::Relaxed);
                room -= 1;
            }
            if let Some(feed) = kafka.as_mut() {
                if room > 0 && !dataflow_stop.load(Ordering::Relaxed) {
                    let time = *frames_in.time();
                    for (frame, (partition, offset)) in feed.poll(room as usize, Duration::ZERO) {
                        let id = frame.as_ref().ok().map(|f| (f.stream_id.as_str(), f.seq));
                        offsets.read(time, partition, offset, id);
                        if let Some(parquet) = &parquet {
                            parquet.reads.borrow_mut().read(time, InputKey::Partition(partition), offset);
                        }
                        match frame {
                            Ok(frame) => {
                                metrics.frames_read.with_label_values(&[frame.stream_id.as_str()]).inc();
                                frames_in.send(frame);
                                sent.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(letter) => {
                                if feed.sent_before().get(&partition).is_none_or(|sent| offset >= *sent) {
                                    let _ = out.send(Output::DeadLetter(letter));
                                }
                            }
                        }
                    }
                }
                // Commits are round trips to the broker: at most five a second.
                if last_commit.elapsed() >= Duration::from_millis(200) {
                    for (partition, lag) in feed.lag() {
                        metrics.kafka_lag.with_label_values(&[partition.to_string().as_str()]).set(lag);
                    }
                    commit(feed, &mut offsets, &replay, durable.load(Ordering::Relaxed), parquet.as_ref());
                    last_commit = Instant::now();
                }
            }
            // Time follows the wall clock, so results flow even while a stream is idle.
            let now = epoch(now_ms()).max(*frames_in.time());
            if now > *frames_in.time() {
                frames_in.advance_to(now);
                if let Some(input) = catalog_in.as_mut() {
                    input.advance_to(now);
                    input.flush();
                }
            }
            if local == 0 {
                let complete = probe.with_frontier(|f| f.first().copied().unwrap_or(Time::MAX));
                if complete > reported {
                    reported = complete;
                    let _ = out.send(Output::Complete(complete));
                }
            }
            // Embedded sources end on their own; Kafka is read until the pipeline is stopped.
            let finished =
                !embedded_open && feed.is_empty() && (kafka.is_none() || dataflow_stop.load(Ordering::Relaxed));
            if finished {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(2)));
        }
        health.set_ready(false);
        if local == 0 {
            tracing::info!(frames = sent.load(Ordering::Relaxed), "inputs ended; draining the dataflow");
            dataflow_stop.store(true, Ordering::Relaxed); // also stops the catalog watcher
        }
        drop(frames_in);
        drop(catalog_in);
        while worker.step_or_park(Some(Duration::from_millis(10))) {}
        if local == 0 {
            let _ = out.send(Output::Complete(Time::MAX));
        }
        drop(out);
        // Commit what the sinks made durable; wait a little for the last flush and files.
        let parquet_busy = || {
            parquet.as_ref().is_some_and(|p| {
                p.pump();
                p.publisher.failure().is_none() && (!p.waiting.borrow().is_empty() || !p.publisher.idle())
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while kafka.is_none() && parquet_busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(feed) = kafka.as_mut() {
            // parquet_busy() also notes what the publisher published: call it before every commit
            // (a drain once waited 30 s here and committed too little, `||` skipping it).
            loop {
                let busy = parquet_busy();
                commit(feed, &mut offsets, &replay, durable.load(Ordering::Relaxed), parquet.as_ref());
                let hopeless = !worker_sinks_alive.load(Ordering::Relaxed);
                if (!busy && !offsets.waiting_for_durability()) || hopeless || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if offsets.waiting_for_durability() && worker_sinks_alive.load(Ordering::Relaxed) {
                tracing::warn!(
                    "sinks did not confirm the last results within 30 s; their frames will be read again on restart"
                );
            }
        }
    })
    .map_err(|e| match &shape.cluster {
        Some(c) => anyhow!(
            "could not start the cluster ({}): {e}. Is {} free and are the other processes' addresses right?",
            shape.describe(),
            c.addresses[c.process]
        ),
        None => anyhow!("could not start the dataflow: {e}"),
    })?;
    // Joining also joins the cluster's network threads, which panic when a peer process dies.
    let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guards.join())).map_err(|_| {
        anyhow!("the connection to another process of the cluster broke (did it die?). Restart every process of the cluster: they resume from the committed offsets")
    })?;
    for r in results {
        r.map_err(|e| match &shape.cluster {
            Some(_) if e.contains("timely communication error") || e.contains("MergeQueue") => anyhow!(
                "the connection to another process of the cluster broke ({e}). Restart every process of the cluster: they resume from the committed offsets"
            ),
            _ => anyhow!("a dataflow worker failed: {e}"),
        })?;
    }
    for t in source_threads {
        let _ = t.join();
    }
    for t in catalog_threads {
        let _ = t.join();
    }
    let summary = sink_thread.join().map_err(|_| anyhow!("the sink thread panicked"))?;
    if let Some(failure) = supervisor.failure() {
        return Err(anyhow!(failure));
    }
    let summary = summary?;
    if let Some(publisher) = publisher {
        let files = publisher
            .finish(Duration::from_secs(30))
            .map_err(|e| anyhow!("the Parquet sink failed: {e}. Nothing past the published files was committed"))?;
        tracing::info!(files, "parquet files published");
    }
    let summary = RunSummary {
        seconds: started.elapsed().as_secs_f64(),
        model_runs: metrics.model_runs.load(Ordering::Relaxed),
        ..summary
    };
    tracing::info!(
        frames = summary.frames,
        events = summary.events,
        dead_letters = summary.dead_letters,
        frames_shed = summary.frames_shed,
        model_runs = summary.model_runs,
        seconds = format!("{:.1}", summary.seconds),
        "pipeline finished"
    );

    if spec.server.is_some() && !options.exit_when_done && !stop.load(Ordering::Relaxed) {
        tracing::info!("all streams ended; still serving viewers (Ctrl-C to stop)");
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if let Some(hub) = &hub {
        hub.close();
    }
    server_done.notify_one();
    let _ = server_thread.join();
    Ok(summary)
}

fn report_catalog_problems(out: &SyncSender<Output>, problems: Vec<catalog::CatalogProblem>) {
    for p in problems {
        let letter = DeadLetter {
            stream_id: String::new(),
            seq: p.line as u64,
            pts_ms: 0,
            stage: "catalog".into(),
            reason: p.reason.clone(),
            origin: Some(format!("{}:{}", p.path.display(), p.line)),
            bytes: 0,
            at_ms: now_ms(),
            payload: Vec::new(),
        };
        let _ = out.send(Output::DeadLetter(letter));
    }
}

/// Ctrl-C or SIGTERM: stop the sources and drain. A second one exits at once.
pub async fn watch_signals(stop: Arc<AtomicBool>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term_recv => {},
        }
        if stop.swap(true, Ordering::Relaxed) {
            tracing::warn!("second interrupt: exiting now");
            std::process::exit(130);
        }
        tracing::info!("stopping: finishing the frames in flight (interrupt again to exit now)");
    }
}

/// Everything the sink thread writes to.
struct Sinks {
    metrics: Arc<Metrics>,
    dead_letters: Option<DeadLetterFile>,
    kafka: Option<KafkaSink>,
    hub: Option<Arc<Hub>>,
    durable: Arc<AtomicU64>,
    record_latencies: bool,
    /// Per Kafka partition, the offset before which the last run already sent the results
    /// (frames before it are replayed only to rebuild state).
    sent_before: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl Sinks {
    fn already_sent(&self, position: &SourcePosition) -> bool {
        let sent = self.sent_before.lock().expect("sent marks");
        position.partition.and_then(|p| sent.get(&p)).is_some_and(|sent| position.offset < *sent)
    }
}

/// The server's access rules; the token secret comes from the environment variable the spec names.
pub fn viewer_access(server: &ServerSpec) -> anyhow::Result<Access> {
    let token_secret = match &server.token_secret_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow!("server.token_secret_env names `{var}`, but it is not set: export the secret that signs viewer tokens")
                })?
                .into_bytes(),
        ),
        None => None,
    };
    Ok(Access { allowed_origins: server.allowed_origins.clone(), token_secret, max_viewers: server.max_viewers })
}

/// The dataflow stages' timings, into the run's Prometheus histograms.
struct StageMetrics(Arc<Metrics>);

impl StageObserver for StageMetrics {
    fn observe(&self, stage: Stage, took: Duration, frames: usize) {
        self.0.observe_stage(stage.as_str(), took, frames);
    }
}

/// Commits what the durable time, the Parquet files and the streams' replay points allow.
fn commit(
    feed: &KafkaFrameSource,
    offsets: &mut OffsetTracker,
    replay: &ReplayPoints,
    durable: Time,
    parquet: Option<&ParquetWorker>,
) {
    let cap = |partition: i32| match parquet {
        Some(parquet) => parquet.durable(partition),
        None => Some(i64::MAX),
    };
    let next = offsets.to_commit(durable, |stream, as_of| replay.before(stream, as_of), cap);
    if next.is_empty() {
        return;
    }
    tracing::debug!(?next, durable, "committing offsets");
    let wire = next.iter().map(|(p, c)| (*p, (c.offset, c.sent))).collect();
    match feed.commit(&wire) {
        Ok(()) => offsets.committed(&next),
        Err(e) => tracing::warn!(error = %e, "committing Kafka offsets failed; will retry"),
    }
}

/// Writes outputs as they come; publishes Parquet files on time; makes results durable
/// when the dataflow completes a time; logs progress.
fn sink_loop(outputs: Receiver<Output>, mut sinks: Sinks) -> anyhow::Result<RunSummary> {
    let mut summary = RunSummary::default();
    let mut last_shed_warning: Option<Instant> = None;
    let mut last_report = Instant::now();
    let mut frames_at_report = 0;
    let mut last_flush = Instant::now();
    loop {
        match outputs.recv_timeout(Duration::from_millis(250)) {
            Ok(Output::Detections(d)) => {
                summary.frames += 1;
                let m = &sinks.metrics;
                m.frames_processed.with_label_values(&[d.stream_id.as_str()]).inc();
                let latency = (now_ms() - d.captured_at_ms).max(0) as u64;
                m.capture_to_sink_seconds.observe(latency as f64 / 1000.0);
                if sinks.record_latencies {
                    summary.latencies_ms.push(latency.min(u32::MAX as u64) as u32);
                }
                if let Some(hub) = &sinks.hub {
                    hub.set_media_time(&d.stream_id, d.pts_ms);
                }
                if let Some(k) = sinks.kafka.as_ref().filter(|_| !sinks.already_sent(&d.position)) {
                    m.time_sink("kafka", || k.detections(&d)).map_err(|e| anyhow!(e))?;
                }
            }
            Ok(Output::Event(e, cause)) => {
                summary.events += 1;
                let m = &sinks.metrics;
                m.events.with_label_values(&[e.stream_id.as_str(), e.kind.as_str()]).inc();
                tracing::info!(stream = %e.stream_id, kind = e.kind.as_str(), sku = %e.sku, pts_ms = e.pts_ms, price = e.price.as_f64(), "product event");
                if let Some(hub) = &sinks.hub {
                    m.time_sink("viewers", || hub.publish(&e));
                    m.capture_to_viewer_seconds.observe((now_ms() - cause.captured_at_ms).max(0) as f64 / 1000.0);
                }
                // The viewers' hub rebuilds its state from a replay; Kafka consumers had these already.
                let resent = cause.by_frame && sinks.already_sent(&cause.position);
                if let Some(k) = sinks.kafka.as_ref().filter(|_| !resent) {
                    m.time_sink("kafka", || k.event(&e)).map_err(|e| anyhow!(e))?;
                }
            }
            Ok(Output::Shed { stream_id, seq }) => {
                summary.frames_shed += 1;
                sinks.metrics.frames_shed.with_label_values(&[stream_id.as_str()]).inc();
                // One warning a second at most: shedding comes in runs.
                if last_shed_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(stream = %stream_id, seq, shed_so_far = summary.frames_shed,
                        "the model is behind this live stream: shedding its stale frames (infer.shed_after)");
                    last_shed_warning = Some(Instant::now());
                }
            }
            Ok(Output::DeadLetter(d)) => {
                summary.dead_letters += 1;
                sinks.metrics.dead_letters.with_label_values(&[d.stream_id.as_str(), d.stage.as_str()]).inc();
                if d.stage != "catalog" {
                    summary.frames += 1;
                }
                if let Some(k) = &sinks.kafka {
                    k.dead_letter(&d).map_err(|e| anyhow!(e))?;
                }
                match sinks.dead_letters.as_mut() {
                    Some(f) => f.write(&d).context("writing a dead letter")?,
                    None if sinks.kafka.is_some() => {}
                    None => {
                        tracing::warn!(stream = %d.stream_id, seq = d.seq, stage = %d.stage, reason = %d.reason, "dead letter (no dead_letter sink configured)")
                    }
                }
            }
            Ok(Output::Complete(time)) => {
                // Throttle broker round trips: flush at most every 100 ms, and always at the end.
                if time == Time::MAX || last_flush.elapsed() >= Duration::from_millis(100) {
                    if let Some(k) = &sinks.kafka {
                        sinks
                            .metrics
                            .time_sink("kafka", || k.flush(Duration::from_secs(30)))
                            .map_err(|e| anyhow!(e))?;
                    }
                    last_flush = Instant::now();
                    sinks.durable.fetch_max(time, Ordering::Relaxed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            let fps = (summary.frames - frames_at_report) as f64 / last_report.elapsed().as_secs_f64();
            tracing::info!(
                frames = summary.frames,
                events = summary.events,
                dead_letters = summary.dead_letters,
                fps = format!("{fps:.1}"),
                "progress"
            );
            frames_at_report = summary.frames;
            last_report = Instant::now();
        }
    }
    if let Some(k) = &sinks.kafka {
        k.flush(Duration::from_secs(30)).map_err(|e| anyhow!(e))?;
    }
    Ok(summary)
}
