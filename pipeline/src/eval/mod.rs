//! `vitrine eval`: runs a spec's recorded shows as fast as they go and scores the product
//! events against a truth file a person labelled (docs/eval.md): entrances announced in time,
//! false cards, timing of entrances and exits, and what it cost in model runs.

pub mod report;
pub mod score;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use vitrine_connectors::images::ImageStore;
use vitrine_schemas::spec::{Pace, SourceSpec};
use vitrine_schemas::truth::Truth;

use crate::run::{run, RunOptions};
use crate::spec::LoadedSpec;
pub use report::EvalReport;

/// How `vitrine eval` runs and scores.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// How far from the truth an entrance or exit may be and still count as in time.
    pub tolerance: Duration,
    /// Timely workers (default: the spec's).
    pub workers: Option<usize>,
}

/// Reads a truth file (YAML or JSON), naming the place of any mistake.
pub fn load_truth(path: &Path) -> anyhow::Result<Truth> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read truth file {}", path.display()))?;
    let truth: Truth = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text))
        .map_err(|e| anyhow::anyhow!("{}: {} (the format is in docs/eval.md)", path.display(), e.inner()))?;
    let problems = truth.problems();
    if !problems.is_empty() {
        bail!("{}: {}", path.display(), problems.join("; "));
    }
    Ok(truth)
}

/// The spec as eval runs it: its recorded sources as fast as they go, once, with nothing
/// written anywhere (no sinks, no server, no live HLS), the catalog read once.
fn for_eval(mut loaded: LoadedSpec) -> anyhow::Result<LoadedSpec> {
    for (i, source) in loaded.spec.sources.iter_mut().enumerate() {
        match source {
            SourceSpec::Video(v) => {
                v.pace = Pace::Fast;
                v.loop_forever = false;
                v.hls = None;
            }
            SourceSpec::Frames(f) => f.pace = Pace::Fast,
            SourceSpec::Kafka(_) => bail!(
                "sources[{i}] is a Kafka source: vitrine eval scores recorded shows; give it a spec whose \
                 sources are the recordings (kind: video or frames)"
            ),
        }
    }
    if loaded.spec.catalog.kafka.is_some() {
        bail!("catalog.kafka: vitrine eval reads the catalog from a file (catalog.path)");
    }
    loaded.spec.catalog.watch = false;
    loaded.spec.server = None;
    loaded.spec.sinks = Default::default();
    Ok(loaded)
}

/// Checks that the truth labels the spec's streams with the catalog's products; returns the
/// catalog's label of each SKU.
fn check_truth_against(loaded: &LoadedSpec, truth: &Truth) -> anyhow::Result<BTreeMap<String, String>> {
    let streams: BTreeSet<&str> = loaded.spec.sources.iter().filter_map(|s| s.stream_id()).collect();
    for stream in &truth.streams {
        if !streams.contains(stream.stream_id.as_str()) {
            bail!(
                "the truth labels stream `{}`, which the spec has no source for (its streams: {})",
                stream.stream_id,
                streams.iter().copied().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut label_of = BTreeMap::new();
    if let Some(path) = &loaded.spec.catalog.path {
        let path = loaded.resolve(path);
        let (items, _) =
            vitrine_connectors::catalog::load(&path, &ImageStore::default()).map_err(anyhow::Error::msg)?;
        label_of = items.iter().map(|i| (i.sku.clone(), i.label.clone())).collect();
        let skus: BTreeSet<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        let unknown: Vec<&str> = truth.skus().into_iter().filter(|s| !skus.contains(s)).collect();
        if !unknown.is_empty() {
            bail!(
                "the truth names products the catalog {} does not have: {} (a SKU is spelt as in the catalog)",
                path.display(),
                unknown.join(", ")
            );
        }
    }
    Ok(label_of)
}

/// Runs the spec's recorded sources and scores their events against `truth`.
pub fn eval(
    loaded: LoadedSpec,
    truth: &Truth,
    options: &EvalOptions,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<EvalReport> {
    let loaded = for_eval(loaded)?;
    let label_of = check_truth_against(&loaded, truth)?;
    let frame_ms: Vec<(String, f64)> = loaded
        .spec
        .sources
        .iter()
        .filter_map(|s| match s {
            SourceSpec::Video(v) => Some((v.stream_id.clone(), 1000.0 / v.fps)),
            SourceSpec::Frames(f) => Some((f.stream_id.clone(), 1000.0 / f.fps)),
            SourceSpec::Kafka(_) => None,
        })
        .collect();
    let run_options = RunOptions {
        workers: options.workers,
        cluster: None,
        exit_when_done: true,
        record_latencies: false,
        record_events: true,
    };
    let summary = run(loaded, run_options, stop)?;
    if summary.interrupted {
        bail!("interrupted before the recordings ended: nothing to score");
    }
    let tolerance_ms = options.tolerance.as_millis() as i64;
    let streams = truth
        .streams
        .iter()
        .map(|stream| {
            let events: Vec<_> = summary.product_events.iter().filter(|e| e.stream_id == stream.stream_id).collect();
            let media_ms = summary.last_pts_ms.get(&stream.stream_id).copied().unwrap_or(0);
            let mut scored = score::score(stream, &events, tolerance_ms, media_ms);
            score::judge_skus(&mut scored, &label_of, tolerance_ms);
            scored
        })
        .collect();
    Ok(EvalReport::new(truth, streams, &frame_ms, tolerance_ms, &summary))
}
