//! The run's metrics, kept with the `prometheus` crate and served at `/metrics` in the
//! Prometheus text format; `/healthz` and `/readyz` from [`Health`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::hub::Hub;

/// Latency buckets, seconds: 1 ms to 30 s.
const SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every metric of a run.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Frames taken from a source, per stream.
    pub frames_read: IntCounterVec,
    /// Frames whose detections reached the sinks, per stream.
    pub frames_processed: IntCounterVec,
    /// Frames of live streams shed because the model fell behind, per stream.
    pub frames_shed: IntCounterVec,
    /// Frames and catalog rows refused, per stream and stage.
    pub dead_letters: IntCounterVec,
    /// Product events, per stream and kind.
    pub events: IntCounterVec,
    /// Time of each stage's work (a frame's decode, a model run, tracking, debounce, join).
    pub stage_seconds: HistogramVec,
    /// Time of each write to a sink (kafka, viewers, parquet).
    pub sink_seconds: HistogramVec,
    /// Writes to a sink that failed and are tried again (the store or broker is down).
    pub sink_retries: IntCounterVec,
    /// Parquet file sets cut and not yet published: while it stays at its bound, no frame is taken.
    pub parquet_sets_waiting: IntGauge,
    /// From a frame's capture to its detections reaching the sinks.
    pub capture_to_sink_seconds: Histogram,
    /// From the capture of the frame an event follows from to the event reaching the viewers.
    pub capture_to_viewer_seconds: Histogram,
    /// Frames in each model run.
    pub batch_frames: Histogram,
    /// Runs of the model, counted by the inferencers (a tiled frame is several).
    pub model_runs: Arc<AtomicU64>,
    model_runs_total: IntCounter,
    /// Frames the model skipped, their detections carried over (`infer.max_skip`).
    pub frames_carried: Arc<AtomicU64>,
    frames_carried_total: IntCounter,
    /// Messages of each frames-topic partition not read yet.
    pub kafka_lag: IntGaugeVec,
    viewers: IntGauge,
    viewers_per_stream: IntGaugeVec,
    viewer_sends: IntCounter,
    /// From an event's emission by the dataflow to its publication to this server's viewers
    /// (`vitrine serve`: the Kafka hop).
    pub event_to_viewers_seconds: Histogram,
    lagged_viewers: IntCounter,
    media_time: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("vitrine".into()), None).expect("a valid prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
                .expect("a valid histogram");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        Metrics {
            frames_read: counter("frames_read_total", "Frames taken from a source.", &["stream"]),
            frames_processed: counter(
                "frames_processed_total",
                "Frames whose detections reached the sinks.",
                &["stream"],
            ),
            frames_shed: counter(
                "frames_shed_total",
                "Frames of live streams shed unprocessed because the model fell behind (infer.shed_after).",
                &["stream"],
            ),
            dead_letters: counter(
                "dead_letters_total",
                "Frames and catalog rows refused, by the stage that refused them.",
                &["stream", "stage"],
            ),
            events: counter("product_events_total", "Product events emitted.", &["stream", "kind"]),
            stage_seconds: histogram(
                "stage_seconds",
                "Time of each piece of a stage's work: decode (a frame), infer (a model run), track, debounce and join (the frames of one completed time).",
                &["stage"],
                SECONDS,
            ),
            sink_seconds: histogram(
                "sink_seconds",
                "Time of each write to a sink (kafka: a message or a flush; viewers: an event; parquet: a set staged, with the table files it completed).",
                &["sink"],
                SECONDS,
            ),
            sink_retries: counter(
                "sink_retries_total",
                "Writes to a sink that failed and are tried again (parquet: the store refused or did not answer).",
                &["sink"],
            ),
            parquet_sets_waiting: gauge(
                "parquet_sets_waiting",
                "Parquet sets cut and not yet staged in the store; at its bound (2 per worker) no new frame is taken.",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            capture_to_sink_seconds: histogram(
                "capture_to_sink_seconds",
                "From a frame's capture to its detections reaching the sinks.",
                &[],
                SECONDS,
            )
            .with_label_values(&[] as &[&str]),
            capture_to_viewer_seconds: histogram(
                "capture_to_viewer_seconds",
                "From the capture of the frame a product event follows from to the event reaching the viewers.",
                &[],
                SECONDS,
            )
            .with_label_values(&[] as &[&str]),
            batch_frames: histogram(
                "model_batch_frames",
                "Frames in each model run (infer.batch_frames).",
                &[],
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
            )
            .with_label_values(&[] as &[&str]),
            model_runs: Arc::default(),
            model_runs_total: counter(
                "model_runs_total",
                "Runs of the model; a micro-batch of frames is one, a tiled frame one per tile and one whole.",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            frames_carried: Arc::default(),
            frames_carried_total: counter(
                "frames_carried_total",
                "Frames that showed nothing new (infer.max_skip): the model skipped them and the last detections were carried over.",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            kafka_lag: gauge(
                "kafka_consumer_lag_messages",
                "Messages of each frames-topic partition this process reads that are not read yet.",
                &["partition"],
            ),
            viewers: gauge("viewers", "WebSocket viewers connected now.", &[]).with_label_values(&[] as &[&str]),
            viewers_per_stream: gauge("stream_viewers", "WebSocket viewers of each stream now.", &["stream"]),
            viewer_sends: counter(
                "viewer_sends_total",
                "Event messages handed to viewer connections (an event times the viewers of its stream).",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            event_to_viewers_seconds: histogram(
                "event_to_viewers_seconds",
                "From a product event's emission by the dataflow to its publication to this server's viewers (vitrine serve: through the state topic).",
                &[],
                SECONDS,
            )
            .with_label_values(&[] as &[&str]),
            lagged_viewers: counter(
                "viewer_resnapshots_total",
                "Times a viewer fell behind and was sent a fresh snapshot instead of its backlog.",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            media_time: gauge("media_time_ms", "Latest media time processed, per stream.", &["stream"]),
            registry,
        }
    }

    /// Shows a stream's counters (at 0) before its first frame, so dashboards and alerts see
    /// every stream from the start.
    pub fn known_stream(&self, stream: &str) {
        for counter in [&self.frames_read, &self.frames_processed, &self.frames_shed] {
            counter.with_label_values(&[stream]);
        }
        for stage in ["source", "decode", "infer"] {
            self.dead_letters.with_label_values(&[stream, stage]);
        }
    }

    /// Times `work` as a write to `sink`.
    pub fn time_sink<T>(&self, sink: &str, work: impl FnOnce() -> T) -> T {
        let timer = self.sink_seconds.with_label_values(&[sink]).start_timer();
        let out = work();
        timer.observe_duration();
        out
    }

    /// The Prometheus text exposition, with the viewers' figures taken from `hub` now.
    pub fn render(&self, hub: Option<&Hub>) -> String {
        let runs = self.model_runs.load(Ordering::Relaxed);
        self.model_runs_total.inc_by(runs.saturating_sub(self.model_runs_total.get()));
        let carried = self.frames_carried.load(Ordering::Relaxed);
        self.frames_carried_total.inc_by(carried.saturating_sub(self.frames_carried_total.get()));
        if let Some(hub) = hub {
            self.viewers.set(hub.stats.connected.load(Ordering::Relaxed) as i64);
            let lagged = hub.stats.lagged_resnapshots.load(Ordering::Relaxed);
            self.lagged_viewers.inc_by(lagged.saturating_sub(self.lagged_viewers.get()));
            let sends = hub.stats.sends.load(Ordering::Relaxed);
            self.viewer_sends.inc_by(sends.saturating_sub(self.viewer_sends.get()));
            for id in hub.stream_ids() {
                if let Some(t) = hub.media_time(&id) {
                    self.media_time.with_label_values(&[id.as_str()]).set(t);
                }
                self.viewers_per_stream.with_label_values(&[id.as_str()]).set(hub.viewers_of(&id) as i64);
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("the text format encodes");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Metrics {
    /// A dataflow stage (`decode`, `infer`, `embed`, `track`, `debounce`, `join`) handled `frames` in `took`.
    pub fn observe_stage(&self, stage: &str, took: Duration, frames: usize) {
        self.stage_seconds.with_label_values(&[stage]).observe(took.as_secs_f64());
        if stage == "infer" {
            self.batch_frames.observe(frames as f64);
        }
    }

    /// Seconds `stage` took over the run so far (the sum of its histogram).
    pub fn stage_seconds_total(&self, stage: &str) -> f64 {
        self.stage_seconds.with_label_values(&[stage]).get_sample_sum()
    }
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Health {
    /// The model is loaded, the partitions are assigned and the sinks are open: frames flow.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// A part of the run died: health fails (and readiness with it) until the process exits.
    pub fn set_failed(&self, what: &str) {
        *self.failure.lock().expect("health") = Some(what.to_string());
    }

    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("health").clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.failure().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_counters_come_out_in_the_text_format() {
        let m = Metrics::new();
        m.frames_read.with_label_values(&["show-1"]).inc_by(3);
        m.observe_stage("infer", Duration::from_millis(20), 4);
        m.model_runs.fetch_add(1, Ordering::Relaxed);
        m.observe_stage("decode", Duration::from_millis(2), 1);
        let text = m.render(None);
        assert!(text.contains("vitrine_frames_read_total{stream=\"show-1\"} 3"), "{text}");
        assert!(text.contains("vitrine_stage_seconds_count{stage=\"infer\"} 1"), "{text}");
        assert!(text.contains("vitrine_model_batch_frames_sum 4"), "{text}");
        assert!(text.contains("vitrine_model_runs_total 1"), "{text}");
    }

    #[test]
    fn a_failure_fails_health_and_readiness() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.set_ready(true);
        assert!(h.is_ready());
        h.set_failed("the sinks stopped");
        assert!(!h.is_ready() && h.failure().is_some());
    }
}
