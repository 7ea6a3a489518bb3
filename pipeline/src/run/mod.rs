//! `vitrine run`: sources on threads, the timely dataflow, sinks, and the viewer server.
//!
//! ```text
//! embedded sources (threads, process 0) --frames (bounded)--> worker 0 input --+
//! Kafka partitions p (p mod W*P == w) ----------------------> worker w input --+--> the process's model
//!   threads (decode -> infer, whichever is free: vitrine_operators::ModelPool) -> back to the worker
//!   -> track, debounce, events on the worker of the stream's partition (vitrine_operators::stream_route)
//! catalog thread --changes--> worker 0 catalog collection ----------------------> join (by label, any process)
//! dataflow outputs --bounded channel--> this process's sink thread: dead letters, Kafka topics, WebSocket hub
//! detections, events, exposures --exchange to the partition's reader--> Parquet sink (crate::analytics)
//! ```
//!
//! Here: the run's assembly and the workers' read loop. `inputs`: the catalog and the
//! embedded sources (the registry of source kinds); `sinks`: the sink thread; `serve`: the
//! server thread and signals. The cluster's shape is [`crate::cluster`], supervision
//! [`crate::supervise`].
//!
//! Kafka offsets: each worker remembers, per dataflow time, the next offset of each of its
//! partitions. The first worker of each process tells its sink thread how far the dataflow
//! has completed; the sink thread flushes Kafka and then raises the durable time. Each worker
//! commits the offsets of the times below it, no further than its Parquet files are
//! published, with how far results were sent (see [`crate::offsets`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use differential_dataflow::input::Input;
use timely::dataflow::operators::core::{Inspect, Map, Probe};
use timely::dataflow::operators::Concat;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use vitrine_connectors::hls::HlsStream;
use vitrine_connectors::hub::Hub;
use vitrine_connectors::images::ImageStore;
use vitrine_connectors::kafka::admission::Limits;
use vitrine_connectors::kafka::fetch::FetchingSource;
use vitrine_connectors::kafka::source::KafkaFrameSource;
use vitrine_connectors::metrics::{Health, Metrics};
use vitrine_connectors::parquet::{FileCutter, InputKey, Publisher, Roll};
use vitrine_connectors::server::access::Access;
use vitrine_connectors::server::ServerState;
use vitrine_models::{Detector, Embedder, Runtime};
use vitrine_operators::{
    product_outputs, BatchConfig, ChangeGate, CropSchedule, DebounceConfig, Emitted, FrameDecoder, FrameEmbedder,
    FrameModel, InferDetections, Inferencer, MatchProducts, Matcher, ModelPool, ModelRoute, PictureIndex, ReplayPoints,
    SkipConfig, Stage, StageObserver, StageTimer, Tiling, Time, TrackObjects, TrackerConfig,
};
use vitrine_schemas::spec::{KafkaSource, Pace, SourceSpec, VideoSource};
use vitrine_schemas::{now_ms, CatalogItem, DeadLetter, Frame, FrameDetections, ProductEvent};

mod inputs;
mod pictures;
use pictures::PictureEmbedder;
mod serve;
mod sinks;
mod tier;

pub use serve::{viewer_access, watch_signals};
use sinks::{sink_loop, OpenSinks, Output, Sinks, OUTPUT_QUEUE};
pub use tier::serve_viewers;

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
    /// Keep every product event, and each stream's last media time, in the summary (`vitrine eval`).
    pub record_events: bool,
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
    /// Seconds the model threads spent in the detector's runs (`infer`) and in the embedder's
    /// (`embed`, matching), all threads together.
    pub infer_seconds: f64,
    pub embed_seconds: f64,
    pub seconds: f64,
    /// Per frame, milliseconds from capture to its detections reaching the sinks (when asked for).
    #[serde(skip)]
    pub latencies_ms: Vec<u32>,
    /// Every product event, in the order sent (when asked for).
    #[serde(skip)]
    pub product_events: Vec<ProductEvent>,
    /// Per stream, the media time of the last frame processed (when events are asked for).
    #[serde(skip)]
    pub last_pts_ms: BTreeMap<String, i64>,
    /// Ctrl-C or SIGTERM stopped the run before its sources ended.
    #[serde(skip)]
    pub interrupted: bool,
}

/// Frames taken from the embedded sources and not yet fed (live streams shed past this).
const FEED_QUEUE_FRAMES: usize = 64;

/// File sets a worker may have queued for the Parquet publisher before it takes no new frames.
const PARQUET_QUEUE_PER_WORKER: usize = 2;

/// Frames waiting in the dataflow, per worker, before worker 0 stops taking more from the
/// sources (which then wait): memory stays bounded whatever the source's speed.
const IN_FLIGHT_PER_WORKER: u64 = 8;

/// What a frame the model will see weighs against the in-flight bound, in frames the model
/// skips (`infer.max_skip`): those cost next to nothing, and counting them as whole frames
/// left a worker idle while the other still had model runs queued.
const MODEL_FRAME_WEIGHT: u64 = 8;

/// Longest a worker parks with nothing to do (it also wakes when each epoch begins).
const MAX_PARK_MS: u64 = 100;

/// A frame's weight against the in-flight bound.
fn weight(frame: &Frame) -> u64 {
    if frame.carries_detections() {
        1
    } else {
        MODEL_FRAME_WEIGHT
    }
}

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
    let runtime = Runtime::load(&loaded.runtime_library()?)?;
    let detector_config = loaded.detector_config(spec.model.intra_threads.get());
    let detectors: Vec<Detector> =
        (0..workers).map(|_| Detector::load(&runtime, &detector_config)).collect::<Result<_, _>>()?;
    // Matching: an embedder per model thread, and one for the catalog's pictures.
    let pictures = PictureIndex::default();
    let mut embedders: Vec<Embedder> = match loaded.embedder_config(spec.model.intra_threads.get()) {
        None => Vec::new(),
        Some(Err(why)) => {
            return Err(anyhow!(
                "match.embedder: {why}. Point match.embedder at the model, or set match.enabled: false"
            ))
        }
        Some(Ok(config)) => (0..=workers).map(|_| Embedder::load(&runtime, &config)).collect::<Result<_, _>>()?,
    };
    let matching = !embedders.is_empty();
    let picture_embedder = embedders.pop();

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
                let hub = Hub::open(known, s.viewer_queue.get());
                // Until the partitions are assigned, this run may have a replay to do first.
                hub.hold_viewers_for_replay();
                Arc::new(hub)
            }
            None => Arc::new(Hub::new(known, s.viewer_queue.get())),
        }
    });
    // The dataflow time below which every result is durable (raised by the sink thread).
    let durable = Arc::new(AtomicU64::new(0));
    let OpenSinks { kafka: kafka_sink, parquet: publisher, dead_letters } =
        sinks::open(&loaded, &metrics, PARQUET_QUEUE_PER_WORKER * workers)?;
    let run_started = now_ms();
    let streams = spec.sources.iter().filter_map(|s| s.stream_id().map(str::to_owned));
    for stream in streams.chain(kafka_source.iter().flat_map(|k| k.streams.iter().cloned())) {
        metrics.known_stream(&stream);
    }
    let sent_before = Arc::new(Mutex::new(BTreeMap::new()));
    let replaying = Arc::new(Mutex::new(BTreeMap::new()));
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
            record_events: options.record_events,
            sent_before: sent_before.clone(),
            replaying: replaying.clone(),
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
        serve::start(state, stop, server_done, supervisor)?
    };

    // Catalog and sources.
    let catalog = inputs::CatalogInputs { images: &images, out: &out_tx, report_problems: runs_embedded };
    let (mut catalog_rx, mut catalog_threads) = inputs::start_catalog(&loaded, &catalog, &stop, &supervisor)?;
    if let Some(embedder) = picture_embedder {
        let (to_workers, embedded) = mpsc::sync_channel(inputs::CATALOG_QUEUE_BATCHES);
        let limits = loaded.decode_limits();
        let urls =
            pictures::UrlPictures::new().map_err(|e| anyhow!("starting the catalog pictures' HTTP client: {e}"))?;
        let step = PictureEmbedder { embedder, index: pictures.clone(), images: images.clone(), urls, limits };
        catalog_threads.push(step.start(catalog_rx, to_workers, out_tx.clone(), stop.clone())?);
        catalog_rx = embedded;
    }
    let (frames_tx, frames_rx) = mpsc::sync_channel::<Frame>(16);
    // The worker that takes the embedded sources' frames (worker 0), which they wake.
    let feeder = Arc::new(std::sync::OnceLock::new());
    let skip = SkipConfig {
        max_skip: spec.infer.max_skip,
        changed_share: spec.infer.changed_share(),
        changed_level: spec.infer.changed_level,
    };
    let embedded_sources = if runs_embedded { spec.sources.clone() } else { Vec::new() };
    let embedded_feed = inputs::EmbeddedFeed { frames: frames_tx, taker: feeder.clone(), skip };
    let source_threads =
        inputs::start_embedded_sources(&loaded, embedded_sources, &hls_streams, embedded_feed, &stop, &supervisor)?;
    // Each worker connects to its own Kafka partitions up front, so a bad broker fails the run now.
    let kafka_feeds: Vec<Option<KafkaFrameSource>> = (first_worker..first_worker + workers)
        .map(|w| {
            kafka_source
                .as_ref()
                .map(|k| {
                    let refs = k.frame_refs_dir.as_ref().map(|d| loaded.resolve(d));
                    KafkaFrameSource::connect(&k.brokers, &k.topic, &k.group_id, w, peers).map(|s| {
                        s.with_refs_dir(refs).with_limits(Limits { max_streams: k.max_streams, max_fps: k.max_fps })
                    })
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
                let mut cutter = FileCutter::new(Roll { after: p.checkpoint_after, rows: p.roll_rows.get() });
                for partition in feed.iter().flat_map(|f| f.partitions()) {
                    let input = InputKey::Partition(*partition);
                    let safe = publisher.recover(&input).map_err(|e| anyhow!("{e} (sinks.parquet)"))?;
                    cutter.recover(input, safe);
                }
                Ok(Some(cutter))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => (0..workers).map(|_| None).collect(),
    };
    let cutters = Arc::new(Mutex::new(cutters));
    // Set before any frame is read, so the sinks know every replayed result.
    sent_before.lock().expect("sent marks").extend(kafka_feeds.iter().flatten().flat_map(|f| f.sent_before().clone()));
    let mut replays = replaying.lock().expect("replays");
    replays.extend(kafka_feeds.iter().flatten().flat_map(|f| f.replaying().clone()));
    if let Some(hub) = hub.as_ref().filter(|_| replays.is_empty()) {
        hub.replay_done();
    }
    drop(replays);
    let publisher_handle = publisher.as_ref().map(Publisher::handle);
    let kafka_feeds = Arc::new(Mutex::new(kafka_feeds));

    // The dataflow.
    let frames_rx = Arc::new(Mutex::new(Some(frames_rx)));
    let catalog_rx = Arc::new(Mutex::new(Some(catalog_rx)));
    // In-flight weights sent into the dataflow and done with (see `weight`), and frames fed.
    let (sent, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let fed = Arc::new(AtomicU64::new(0));
    let limits = loaded.decode_limits();
    let debounce = DebounceConfig {
        min_score: spec.debounce.min_score,
        label_min_score: spec.debounce.label_min_score.clone(),
        stay_min_score: spec.debounce.stay_min_score,
        cooldown_ms: spec.debounce.cooldown.as_millis() as i64,
        max_on_screen: spec.debounce.max_on_screen.map(|n| n.get()),
        max_look_alikes: spec.debounce.max_look_alikes,
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
    let tiling = Some(Tiling {
        grid: spec.infer.tiles,
        overlap: spec.infer.tile_overlap,
        every: if spec.infer.tile_every > 1 { spec.infer.tile_every } else { 0 },
        change: spec.infer.tile_change,
        level: spec.infer.changed_level,
    });
    // Tiling only some frames keeps state per stream where the model runs (its last tiled
    // frame, what the tiles found): a stream's frames then all go to one model thread, in order.
    let by_stream = spec.infer.tiles.count() > 0 && spec.infer.tile_every > 1;
    let batch = BatchConfig { max_frames: spec.infer.batch_frames.get(), max_wait: spec.infer.batch_wait };
    // A model thread per worker, each with its own decoder and session: the workers feed them.
    // Their crop schedule is one, shared.
    let crop_schedule = CropSchedule::new(loaded.crop_schedule());
    let frame_models = detectors
        .into_iter()
        .map(|detector| FrameModel {
            decoder: FrameDecoder::new(limits, detector.input()).with_tiling(tiling).timed(timer.clone()),
            inferencer: Inferencer::new(detector)
                .counting_runs(metrics.model_runs.clone())
                .counting_carried(metrics.frames_carried.clone())
                .keeping_tile_finds(by_stream)
                .timed(timer.clone()),
            embedder: embedders.pop().map(|embedder| FrameEmbedder {
                embedder,
                schedule: crop_schedule.clone(),
                pictures: pictures.clone(),
            }),
        })
        .collect();
    let route = if by_stream { ModelRoute::ByStream } else { ModelRoute::AnyFree };
    let models = ModelPool::start(frame_models, batch, route)?;
    // Only Kafka commits look replay points up (and forget the old ones): without a Kafka
    // source none are kept, or a looping demo would keep one per epoch for days.
    let replay = if kafka_source.is_some() { ReplayPoints::default() } else { ReplayPoints::not_kept() };
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
    let match_config = loaded.match_config();
    let dataflow_stop = stop.clone();
    let dataflow_supervisor = supervisor.clone();
    let out = Mutex::new(out_tx);
    if shape.cluster.is_some() {
        tracing::info!(shape = %shape.describe(), "connecting to the other processes of the cluster");
    }
    tracing::info!(pipeline = %spec.name, shape = %shape.describe(), sources = spec.sources.len(), "pipeline running");
    // The model is loaded, the partitions are assigned, the sinks are open: /readyz says so.
    health.set_ready(true);
    let guards = crate::mesh::execute(&shape, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        // This worker's index among its process's workers: what its per-worker parts are kept by.
        let local = index - first_worker;
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
        let catalog_in = worker.dataflow::<Time, _, _>(|scope| {
            // Frames stay on the worker that read them: the process's model threads decode and
            // infer them, whichever is free first.
            let (detections, failed) = frames_in.to_stream(scope).infer_detections(models.queues());
            // A frame stops counting against the in-flight bound once inferred: tracking holds
            // it until its time is complete, and counting that wait would starve the model.
            let detections = detections
                .inspect(move |d: &FrameDetections| {
                    done_d.fetch_add(if d.carried { 1 } else { MODEL_FRAME_WEIGHT }, Ordering::Relaxed);
                })
                .track_objects(tracker.clone(), replay.clone(), timer.clone());
            let detections = match matching {
                true => detections.match_products(Matcher::new(match_config.clone(), pictures.clone())),
                false => detections,
            };
            let detections = detections.inspect(move |d: &FrameDetections| {
                let _ = out_d.send(Output::Detections(d.clone()));
            });
            let (catalog_in, catalog) = scope.new_collection::<(String, CatalogItem), isize>();
            let emitted =
                product_outputs(detections.clone(), catalog, debounce.clone(), matching, replay.clone(), timer.clone());
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
            failed
                .inspect(move |d: &DeadLetter| {
                    done_x.fetch_add(MODEL_FRAME_WEIGHT, Ordering::Relaxed);
                    let _ = out_x.send(Output::DeadLetter(d.clone()));
                })
                .probe_with(&probe);
            catalog_in
        });

        // What this worker feeds: its Kafka partitions, and on worker 0 the embedded sources and
        // the catalog. The first worker of every process follows the catalog's labels (replay points).
        // (Read on a thread of its own, which wakes this worker when a frame is there.)
        let worker_thread = std::thread::current();
        let kafka = kafka_feeds.lock().expect("kafka").get_mut(local).and_then(Option::take).map(|source| {
            let mut gate = ChangeGate::new(skip);
            let mark = move |frame: &mut Frame| gate.iter_mut().for_each(|g| g.mark(frame));
            FetchingSource::start(source, mark, move || worker_thread.unpark()).expect("starting a Kafka fetch thread")
        });
        let embedded = if index == 0 { frames_rx.lock().expect("frames").take() } else { None };
        if embedded.is_some() {
            let _ = feeder.set(std::thread::current());
        }
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
            // Nothing to feed: closing the input lets time advance for the others. The catalog
            // thread keeps serving this process's pictures: take its changes (worker 0 of
            // process 0 feeds them to the dataflow; none is fed from here).
            drop(frames_in);
            drop(catalog_in);
            while worker.step_or_park(Some(Duration::from_millis(50))) {
                catalog_changes.iter().for_each(|changes| changes.try_iter().for_each(drop));
            }
            return;
        }
        // Frames stay in the process that read them until inferred: the bound is per process.
        let max_in_flight = IN_FLIGHT_PER_WORKER * MODEL_FRAME_WEIGHT * workers as u64;
        let epoch = |ms: i64| (ms.max(0) as u64 / epoch_ms) * epoch_ms;
        let mut offsets =
            kafka.as_ref().map_or_else(OffsetTracker::default, |k| OffsetTracker::resuming(k.sent_before()));
        // This worker's partitions still to be replayed up to their sent mark.
        let mut replay_left = kafka.as_ref().map(|k| k.replaying().clone()).unwrap_or_default();
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
                let weight = weight(&frame);
                frames_in.send(frame);
                sent.fetch_add(weight, Ordering::Relaxed);
                room = room.saturating_sub(weight);
                fed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(feed) = kafka.as_ref() {
                if room > 0 && !dataflow_stop.load(Ordering::Relaxed) {
                    let time = *frames_in.time();
                    // (Each message taken as a frame the model sees: its weight is known once taken.)
                    for (frame, (partition, offset)) in feed.take(room.div_ceil(MODEL_FRAME_WEIGHT) as usize) {
                        let id = frame.as_ref().ok().map(|f| (f.stream_id.as_str(), f.seq));
                        offsets.read(time, partition, offset, id);
                        if replay_left.get(&partition).is_some_and(|end| offset + 1 >= *end) {
                            replay_left.remove(&partition);
                            let _ = out.send(Output::ReplayRead { partition, time });
                        }
                        if let Some(parquet) = &parquet {
                            parquet.reads.borrow_mut().read(time, InputKey::Partition(partition), offset);
                        }
                        match frame {
                            Ok(frame) => {
                                metrics.frames_read.with_label_values(&[frame.stream_id.as_str()]).inc();
                                sent.fetch_add(weight(&frame), Ordering::Relaxed);
                                frames_in.send(frame);
                                fed.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(letter) => {
                                if feed.sent_before().get(&partition).is_none_or(|sent| offset >= *sent) {
                                    let _ = out.send(Output::DeadLetter(letter));
                                }
                            }
                        }
                    }
                }
                // At most five commits a second (sent without waiting for the broker's answer).
                if last_commit.elapsed() >= Duration::from_millis(200) {
                    for (partition, lag) in feed.lag() {
                        metrics.kafka_lag.with_label_values(&[partition.to_string().as_str()]).set(lag);
                    }
                    commit(feed, &mut offsets, &replay, durable.load(Ordering::Relaxed), parquet.as_ref(), false);
                    last_commit = Instant::now();
                }
            }
            frames_in.flush();
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
            // Park until the next epoch begins (time must move on then), unless frames wait that
            // could not be fed: room comes back as other workers finish frames, and nothing
            // wakes this one for that. Frames arriving wake it (the Kafka fetch thread, the
            // embedded sources); so do records from other workers. Before: 2 ms, 550 wakeups a
            // second when idle.
            let waiting = !feed.is_empty() || (kafka.is_some() && room == 0);
            let park = if waiting {
                Duration::from_millis(2)
            } else {
                Duration::from_millis((epoch_ms - now_ms().max(0) as u64 % epoch_ms).clamp(1, MAX_PARK_MS))
            };
            worker.step_or_park(Some(park));
        }
        health.set_ready(false);
        if local == 0 {
            tracing::info!(frames = fed.load(Ordering::Relaxed), "inputs ended; draining the dataflow");
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
        if let Some(feed) = kafka.as_ref() {
            // parquet_busy() also notes what the publisher published: call it before every commit
            // (a drain once waited 30 s here and committed too little, `||` skipping it).
            loop {
                let busy = parquet_busy();
                commit(feed, &mut offsets, &replay, durable.load(Ordering::Relaxed), parquet.as_ref(), true);
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
        infer_seconds: metrics.stage_seconds_total("infer"),
        embed_seconds: metrics.stage_seconds_total("embed"),
        interrupted: serve::signalled(),
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

/// The dataflow stages' timings, into the run's Prometheus histograms.
struct StageMetrics(Arc<Metrics>);

impl StageObserver for StageMetrics {
    fn observe(&self, stage: Stage, took: Duration, frames: usize) {
        self.0.observe_stage(stage.as_str(), took, frames);
    }
}

/// Commits what the durable time, the Parquet files and the streams' replay points allow.
/// `wait`: for the broker's answer (at a drain); else the commit is sent and a failure makes
/// the next one carry everything again.
fn commit(
    feed: &KafkaFrameSource,
    offsets: &mut OffsetTracker,
    replay: &ReplayPoints,
    durable: Time,
    parquet: Option<&ParquetWorker>,
    wait: bool,
) {
    if feed.commit_failed() {
        offsets.commit_failed();
    }
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
    match feed.commit(&wire, wait) {
        Ok(()) => offsets.committed(&next),
        Err(e) => tracing::warn!(error = %e, "committing Kafka offsets failed; will retry"),
    }
}
