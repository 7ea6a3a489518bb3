//! The sinks: each kind of the spec's `sinks:` opened in one place ([`open`]), and the sink
//! thread, which writes the dataflow's outputs to the dead-letter file, Kafka and the
//! viewers' hub and says up to which dataflow time they are durable (the Parquet tables are
//! written by the workers, through their publisher).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use vitrine_connectors::catalog;
use vitrine_connectors::hub::Hub;
use vitrine_connectors::kafka::sink::{KafkaSink, KafkaSinkTopics};
use vitrine_connectors::metrics::Metrics;
use vitrine_connectors::parquet::{Layout, Publisher, PublisherMetrics, Roll, TableStore};
use vitrine_connectors::sinks::dead_letter::DeadLetterFile;
use vitrine_operators::Time;
use vitrine_schemas::{now_ms, Cause, DeadLetter, FrameDetections, ProductEvent, SourcePosition};

use super::RunSummary;
use crate::spec::LoadedSpec;

/// The sinks the spec names, open.
pub(super) struct OpenSinks {
    pub kafka: Option<KafkaSink>,
    /// The Parquet tables' publisher (the workers cut the sets it publishes).
    pub parquet: Option<Publisher>,
    pub dead_letters: Option<DeadLetterFile>,
}

/// Opens each sink of the spec: `sinks.kafka`, `sinks.parquet` (with room for
/// `parquet_queue` sets) and the dead-letter file (`sinks.dead_letter`, or beside local
/// Parquet tables). A sink that cannot open fails the run now, naming its spec field.
pub(super) fn open(loaded: &LoadedSpec, metrics: &Metrics, parquet_queue: usize) -> anyhow::Result<OpenSinks> {
    let sinks = &loaded.spec.sinks;
    let kafka = match &sinks.kafka {
        Some(k) => {
            let topics = KafkaSinkTopics {
                detections: k.detections_topic.clone(),
                events: k.events_topic.clone(),
                dead_letter: k.dead_letter_topic.clone(),
                state: k.state_topic.clone(),
            };
            Some(KafkaSink::connect(&k.brokers, topics, &loaded.spec.name).map_err(|e| anyhow!("{e} (sinks.kafka)"))?)
        }
        None => None,
    };
    let parquet = match &sinks.parquet {
        Some(p) => {
            let store = TableStore::open(&p.path, &loaded.base_dir).map_err(|e| anyhow!("{e} (sinks.parquet.path)"))?;
            let layout = Layout {
                roll: Roll { after: p.roll_after, rows: p.roll_rows.get() },
                row_group_rows: p.row_group_rows.get(),
            };
            Some(Publisher::start(store, parquet_queue, layout, Some(PublisherMetrics::of(metrics)))?)
        }
        None => None,
    };
    let dead_letter_path = match (&sinks.dead_letter, &sinks.parquet) {
        (Some(d), _) => Some(loaded.resolve(&d.path)),
        (None, Some(p)) if !p.path.contains("://") => Some(loaded.resolve(&p.path).join("dead-letter.jsonl")),
        _ => None,
    };
    let dead_letters = dead_letter_path.as_deref().map(DeadLetterFile::open).transpose()?;
    Ok(OpenSinks { kafka, parquet, dead_letters })
}

/// What the dataflow hands to the sink thread.
pub(super) enum Output {
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
    /// The last frame a restart replays of `partition` was read at dataflow time `time`:
    /// once that time is complete, every replayed result has reached the hub.
    ReplayRead {
        partition: i32,
        time: Time,
    },
}

/// Media time between two marks of a stream's media time on the state topic.
const MEDIA_TIME_EVERY_MS: i64 = 1000;

/// Results waiting for the sink thread before the workers wait for it.
pub(super) const OUTPUT_QUEUE: usize = 4096;

pub(super) fn report_catalog_problems(out: &SyncSender<Output>, problems: Vec<catalog::CatalogProblem>) {
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

/// Everything the sink thread writes to.
pub(super) struct Sinks {
    pub metrics: Arc<Metrics>,
    pub dead_letters: Option<DeadLetterFile>,
    pub kafka: Option<KafkaSink>,
    pub hub: Option<Arc<Hub>>,
    pub durable: Arc<AtomicU64>,
    pub record_latencies: bool,
    pub record_events: bool,
    /// Per Kafka partition, the offset before which the last run already sent the results
    /// (frames before it are replayed only to rebuild state).
    pub sent_before: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// The partitions still replaying, each with where its replay ends: viewers wait for them.
    pub replaying: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl Sinks {
    /// Every result before `complete` was handed over: the partitions whose last replayed
    /// frame was read before it are done replaying, and once all are, the viewers waiting for
    /// the replay are served.
    fn replayed_before(&self, complete: Time, replay_read: &mut BTreeMap<i32, Time>, hub: &Hub) {
        let mut replaying = self.replaying.lock().expect("replays");
        if replaying.is_empty() {
            return;
        }
        replay_read.retain(|partition, read_at| {
            let done = *read_at < complete;
            if done {
                replaying.remove(partition);
            }
            !done
        });
        if replaying.is_empty() {
            hub.replay_done();
        }
    }

    fn already_sent(&self, position: &SourcePosition) -> bool {
        let sent = self.sent_before.lock().expect("sent marks");
        position.partition.and_then(|p| sent.get(&p)).is_some_and(|sent| position.offset < *sent)
    }
}

/// Writes outputs as they come; publishes Parquet files on time; makes results durable
/// when the dataflow completes a time; logs progress.
pub(super) fn sink_loop(outputs: Receiver<Output>, mut sinks: Sinks) -> anyhow::Result<RunSummary> {
    let mut summary = RunSummary::default();
    let mut last_shed_warning: Option<Instant> = None;
    let mut last_report = Instant::now();
    let mut frames_at_report = 0;
    let mut last_flush = Instant::now();
    // Per replaying partition, when its last replayed frame was read.
    let mut replay_read: BTreeMap<i32, Time> = BTreeMap::new();
    // Per stream, the media time last written to the state topic.
    let mut media_time_marked: BTreeMap<String, i64> = BTreeMap::new();
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
                if sinks.record_events {
                    let last = summary.last_pts_ms.entry(d.stream_id.clone()).or_insert(d.pts_ms);
                    *last = (*last).max(d.pts_ms);
                }
                if let Some(hub) = &sinks.hub {
                    hub.set_media_time(&d.stream_id, d.pts_ms);
                }
                if let Some(k) = sinks.kafka.as_ref().filter(|_| !sinks.already_sent(&d.position)) {
                    m.time_sink("kafka", || k.detections(&d)).map_err(|e| anyhow!(e))?;
                    // The stream's media time for the viewer tier, once a second at most.
                    let marked = media_time_marked.entry(d.stream_id.clone()).or_insert(i64::MIN);
                    if d.pts_ms >= marked.saturating_add(MEDIA_TIME_EVERY_MS) {
                        *marked = d.pts_ms;
                        k.media_time(&d.stream_id, d.pts_ms).map_err(|e| anyhow!(e))?;
                    }
                }
            }
            Ok(Output::Event(e, cause)) => {
                summary.events += 1;
                let m = &sinks.metrics;
                m.events.with_label_values(&[e.stream_id.as_str(), e.kind.as_str()]).inc();
                tracing::info!(stream = %e.stream_id, kind = e.kind.as_str(), sku = %e.sku, pts_ms = e.pts_ms, price = e.price.as_f64(), "product event");
                if sinks.record_events {
                    summary.product_events.push(e.clone());
                }
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
            Ok(Output::ReplayRead { partition, time }) => {
                replay_read.insert(partition, time);
            }
            Ok(Output::Complete(time)) => {
                if let Some(hub) = &sinks.hub {
                    sinks.replayed_before(time, &mut replay_read, hub);
                }
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
