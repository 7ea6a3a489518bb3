//! `vitrine run --dry-run`: the graph a run would build, as resolved from the spec, the
//! environment and the cluster settings, without starting it.

use std::fmt::Write;

use vitrine_connectors::kafka::admin::partitions;
use vitrine_schemas::spec::{InferSpec, SourceSpec};

use crate::cluster::Shape;
use crate::spec::LoadedSpec;

/// The plan, as text: shape, model, sources (with the partition-to-worker plan), catalog, sinks.
pub fn describe_plan(loaded: &LoadedSpec, shape: &Shape) -> String {
    let spec = &loaded.spec;
    let mut out = String::new();
    let _ = writeln!(out, "pipeline: {} ({})", spec.name, loaded.path.display());
    let _ = writeln!(out, "shape: {}", shape.describe());
    let _ = writeln!(
        out,
        "model: {} ({:?} decoder, {} intra-op thread(s) a model thread, one per worker, min score {})",
        loaded.resolve(&spec.model.path).display(),
        spec.model.decoder,
        spec.model.intra_threads,
        spec.model.min_score
    );
    let _ = writeln!(out, "infer: {}", describe_infer(&spec.infer));
    let d = &spec.debounce;
    let pattern = d.max_look_alikes.map_or(String::new(), |most| format!(" with at most {most} look-alikes"));
    let _ = writeln!(
        out,
        "debounce: a sighting from score {}{pattern}, on screen after {} of {} frames, off after {:?} unseen",
        d.min_score, d.enter_hits, d.enter_window, d.hold
    );
    let _ = writeln!(out, "match: {}", describe_matching(loaded));
    let settings = kafka_settings_shown(std::env::vars());
    if !settings.is_empty() {
        let _ = writeln!(out, "kafka client settings (VITRINE_KAFKA_*): {}", settings.join(", "));
    }
    let _ = writeln!(out, "sources:");
    for source in &spec.sources {
        match source {
            SourceSpec::Video(v) => {
                let _ = writeln!(
                    out,
                    "  - video `{}`: {} at {} frames/s, {:?} (process 0)",
                    v.stream_id,
                    loaded.resolve_input(&v.input),
                    v.fps,
                    v.pace
                );
            }
            SourceSpec::Frames(f) => {
                let _ = writeln!(out, "  - frames `{}`: {} (process 0)", f.stream_id, loaded.resolve(&f.dir).display());
            }
            SourceSpec::Kafka(k) => {
                let _ = writeln!(out, "  - kafka topic {} on {}, group {}", k.topic, k.brokers, k.group_id);
                match partitions(&k.brokers, &k.topic) {
                    Ok(0) => {
                        let _ = writeln!(out, "      the topic does not exist yet (vitrine topics create SPEC)");
                    }
                    Ok(n) => {
                        for p in 0..n {
                            let worker = p % shape.peers();
                            let process = worker / shape.workers;
                            let here = if process == shape.process() { "  <- this process" } else { "" };
                            let _ = writeln!(out, "      partition {p} -> worker {worker} (process {process}){here}");
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(out, "      partitions unknown: {e}");
                    }
                }
            }
        }
    }
    let catalog = &spec.catalog;
    if let Some(path) = &catalog.path {
        let watch = if catalog.watch { format!(", watched every {:?}", catalog.poll) } else { String::new() };
        let _ = writeln!(out, "catalog: {}{watch}", loaded.resolve(path).display());
    }
    if let Some(topic) = &catalog.kafka {
        let _ = writeln!(out, "catalog topic: {} on {}", topic.topic, topic.brokers);
    }
    let _ = writeln!(out, "sinks:");
    if let Some(k) = &spec.sinks.kafka {
        let _ = writeln!(
            out,
            "  - kafka on {}: {}, {}, {}",
            k.brokers, k.detections_topic, k.events_topic, k.dead_letter_topic
        );
    }
    if let Some(p) = &spec.sinks.parquet {
        let location =
            if p.path.contains("://") { p.path.clone() } else { loaded.resolve(&p.path).display().to_string() };
        let _ = writeln!(
            out,
            "  - parquet: {location} (rows staged every {:?}; table files every {:?} or {} rows)",
            p.checkpoint_after, p.roll_after, p.roll_rows
        );
    }
    if let Some(d) = &spec.sinks.dead_letter {
        let _ = writeln!(out, "  - dead letters: {}", loaded.resolve(&d.path).display());
    }
    match &spec.server {
        Some(s) => {
            let page = if s.viewer { "with the viewer page" } else { "no viewer page" };
            let _ = writeln!(out, "server: {} ({page}; /metrics, /healthz, /readyz)", s.listen);
        }
        None => {
            let _ = writeln!(out, "server: none");
        }
    }
    out
}

/// The `VITRINE_KAFKA_*` settings as `name=value`, with secrets (passwords, keys, secrets,
/// tokens) shown as `(hidden)`: a dry run's output ends up in CI logs and tickets.
fn kafka_settings_shown(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    let secret = |name: &str| ["password", "secret", "key", "token", "jaas"].iter().any(|s| name.contains(s));
    vitrine_connectors::kafka::kafka_settings_from_env(vars)
        .into_iter()
        .map(|(name, value)| if secret(&name) { format!("{name}=(hidden)") } else { format!("{name}={value}") })
        .collect()
}

/// What the model sees of each frame, and which frames it runs on.
/// Whether products are matched by their pictures, how, and which products of the catalog
/// file match by picture and which on their label alone.
fn describe_matching(loaded: &LoadedSpec) -> String {
    let m = &loaded.spec.matching;
    if !m.enabled {
        return "off: every product of a detected label is shown (match.enabled)".into();
    }
    let embedder = match loaded.embedder_config(1) {
        Some(Ok(config)) => match &config.centre {
            Some(centre) => format!("{}, centred by {}", config.model.display(), centre.display()),
            None => format!("{}, no centre beside it", config.model.display()),
        },
        Some(Err(why)) => format!("MISSING: {why}"),
        None => unreachable!("matching is on"),
    };
    let longest = m.every * vitrine_operators::LONGEST_WAIT as u32;
    let mut line = format!(
        concat!(
            "products with a JPEG picture only where an object of their label looks like it (embedder {embedder}; ",
            "pictures and crops at {side}x{side}; colour {colour} of the similarity; similarity at least {}, {} ahead of the runner-up; an object embedded when it shows, ",
            "after {:?}, then twice as rarely up to every {:?}, at most {} a frame)"
        ),
        m.min_similarity,
        m.min_margin,
        m.every,
        longest,
        m.max_crops,
        embedder = embedder,
        side = m.side,
        colour = m.colour
    );
    if let Some(path) = &loaded.spec.catalog.path {
        let images = vitrine_connectors::images::ImageStore::default();
        if let Ok((items, _)) = vitrine_connectors::catalog::load(&loaded.resolve(path), &images) {
            let (pictured, labelled): (Vec<_>, Vec<_>) = items.iter().partition(|i| i.matched_picture().is_some());
            let skus = |items: &[&vitrine_schemas::CatalogItem]| {
                items.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>().join(", ")
            };
            let _ = write!(
                line,
                "\n  by picture: {} product(s) [{}]\n  on their label alone (no JPEG picture, served or at a URL): {} product(s) [{}]",
                pictured.len(),
                skus(&pictured),
                labelled.len(),
                skus(&labelled)
            );
        }
    }
    line
}

fn describe_infer(infer: &InferSpec) -> String {
    let mut parts = Vec::new();
    let tiles = infer.tiles;
    parts.push(match (tiles.count(), infer.tile_every) {
        (0, _) => "the whole frame".to_string(),
        (n, 0 | 1) => format!("the whole frame and {tiles} tiles on every frame ({} model runs a frame)", 1 + n),
        (n, every) => format!(
            "the whole frame, and {tiles} tiles ({} model runs) on a frame where {}% of the picture changed or every {every} frames",
            1 + n,
            (infer.tile_change * 100.0).round()
        ),
    });
    if infer.max_skip > 0 {
        parts.push(format!(
            "skips the model on up to {} frames in a row that show nothing new (under {}% of blocks changed)",
            infer.max_skip,
            infer.changed_share() * 100.0
        ));
    }
    if infer.batch_frames.get() > 1 {
        parts.push(format!("up to {} frames a model run", infer.batch_frames));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use vitrine_schemas::spec::TileGrid;

    use super::*;

    #[test]
    fn the_plan_says_what_the_model_sees_of_a_frame() {
        let mut infer = InferSpec { tiles: TileGrid::NONE, ..InferSpec::default() };
        assert_eq!(describe_infer(&infer), "the whole frame");
        infer.tiles = TileGrid { columns: 3, rows: 2 };
        assert_eq!(infer, InferSpec::default(), "3x2 is the default");
        assert_eq!(
            describe_infer(&infer),
            "the whole frame, and 3x2 tiles (7 model runs) on a frame where 20% of the picture changed or every 50 frames"
        );
        infer.tile_every = 1;
        infer.max_skip = 10;
        assert_eq!(
            describe_infer(&infer),
            "the whole frame and 3x2 tiles on every frame (7 model runs a frame); skips the model on up to 10 frames in a row that show nothing new (under 1% of blocks changed)"
        );
        infer.tiles = TileGrid::NONE;
        assert!(describe_infer(&infer).ends_with("(under 3% of blocks changed)"), "{}", describe_infer(&infer));
    }

    #[test]
    fn secrets_are_not_shown() {
        let vars = [
            ("VITRINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("VITRINE_KAFKA_SASL_USERNAME", "shop"),
            ("VITRINE_KAFKA_SASL_PASSWORD", "hunter2"),
            ("VITRINE_KAFKA_SSL_KEY_PASSWORD", "hunter3"),
            ("VITRINE_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", "hunter4"),
        ];
        let shown = kafka_settings_shown(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).join(", ");
        assert!(shown.contains("security.protocol=SASL_SSL") && shown.contains("sasl.username=shop"), "{shown}");
        assert!(shown.contains("sasl.password=(hidden)"), "{shown}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
