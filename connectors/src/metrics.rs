//! Pipeline counters, served in the Prometheus text format at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hub::Hub;

/// Counters the sink thread keeps (the hub keeps the viewers' own).
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    pub frames: AtomicU64,
    pub events: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Sum of frame-to-sink latencies (wall clock from capture to the result), ms.
    pub latency_ms_sum: AtomicU64,
    /// Frames of live streams shed because the model fell behind.
    pub frames_shed: AtomicU64,
    /// Runs of the model (a batch of frames is one run).
    pub model_runs: Arc<AtomicU64>,
}

impl PipelineMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The Prometheus text exposition of the pipeline and hub counters.
pub fn render(pipeline: &PipelineMetrics, hub: &Hub) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    counter("vitrine_frames_total", "Frames processed (detections or dead letter).", "counter", get(&pipeline.frames));
    counter(
        "vitrine_frames_shed_total",
        "Frames of live streams shed unprocessed because the model fell behind (infer.shed_after).",
        "counter",
        get(&pipeline.frames_shed),
    );
    counter(
        "vitrine_model_runs_total",
        "Runs of the model; a micro-batch of frames is one run (see infer.batch_frames).",
        "counter",
        get(&pipeline.model_runs),
    );
    counter("vitrine_product_events_total", "Product events emitted.", "counter", get(&pipeline.events));
    counter("vitrine_dead_letters_total", "Frames and catalog rows refused.", "counter", get(&pipeline.dead_letters));
    counter(
        "vitrine_frame_latency_ms_sum",
        "Sum over processed frames of capture-to-result latency, ms (divide by vitrine_frames_total).",
        "counter",
        get(&pipeline.latency_ms_sum),
    );
    counter("vitrine_viewers", "WebSocket viewers connected now.", "gauge", get(&hub.stats.connected));
    counter(
        "vitrine_viewer_resnapshots_total",
        "Times a viewer fell behind and was sent a fresh snapshot instead of its backlog.",
        "counter",
        get(&hub.stats.lagged_resnapshots),
    );
    let _ = writeln!(out, "# HELP vitrine_media_time_ms Latest media time processed, per stream.");
    let _ = writeln!(out, "# TYPE vitrine_media_time_ms gauge");
    for id in hub.stream_ids() {
        if let Some(t) = hub.media_time(&id) {
            let _ = writeln!(out, "vitrine_media_time_ms{{stream=\"{id}\"}} {t}");
        }
    }
    out
}
