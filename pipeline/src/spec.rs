//! Reading and checking a pipeline spec, reporting every problem with its path.
//!
//! Each top-level section (and each source) is read on its own, so one mistake does not
//! hide the others; then the rules between values and the files the spec names are checked.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;
use vitrine_schemas::spec::{PipelineSpec, SourceSpec, SpecProblem};

/// A spec and the folder its relative paths are relative to.
#[derive(Clone, Debug)]
pub struct LoadedSpec {
    pub spec: PipelineSpec,
    pub path: PathBuf,
    pub base_dir: PathBuf,
}

/// The mean embedding of an embedder, beside its model (README, "Matching").
pub const EMBEDDER_CENTRE: &str = "centre.txt";

impl LoadedSpec {
    /// The detector the spec's `model` section describes, with `intra_threads` threads a session.
    pub fn detector_config(&self, intra_threads: usize) -> vitrine_models::DetectorConfig {
        let model = &self.spec.model;
        vitrine_models::DetectorConfig {
            model: self.resolve(&model.path),
            labels: model.labels.as_ref().map(|p| self.resolve(p)),
            decoder: model.decoder,
            intra_threads,
            min_score: model.min_score,
            input_size: model.input_size,
            nms_iou: model.nms_iou,
            execution_provider: model.execution_provider,
            device_id: model.device_id,
        }
    }

    /// The spec's `decode` section, as the frame decoder takes it.
    pub fn decode_limits(&self) -> vitrine_models::DecodeLimits {
        let decode = &self.spec.decode;
        vitrine_models::DecodeLimits {
            max_bytes: decode.max_bytes,
            max_side: decode.max_side,
            crop_bars: decode.crop_bars,
            check_data: decode.check_data,
            at_model_scale: decode.at_model_scale,
        }
    }

    /// The image embedder the spec's `match` section names, or vitrine's own; none with
    /// matching off. Err: the files looked at, none of them there.
    pub fn embedder_config(&self, intra_threads: usize) -> Option<Result<vitrine_models::EmbedderConfig, String>> {
        let matching = &self.spec.matching;
        if !matching.enabled {
            return None;
        }
        let model = match &matching.embedder {
            Some(path) => Ok(self.resolve(path)),
            None => self.bundled_embedder(),
        };
        Some(model.map(|model| vitrine_models::EmbedderConfig {
            // The embedder's centre lives beside it (vitrine's own has one).
            centre: Some(model.with_file_name(EMBEDDER_CENTRE)).filter(|c| c.is_file()),
            model,
            side: matching.side,
            intra_threads,
            execution_provider: self.spec.model.execution_provider,
            device_id: self.spec.model.device_id,
            colour: matching.colour,
        }))
    }

    /// The ONNX Runtime library: `model.runtime_library`, else `$ORT_DYLIB_PATH`, else one set
    /// up by scripts/setup.sh beside the spec, the working folder or the binary, or above them.
    /// The one lookup of run, eval and bench.
    pub fn runtime_library(&self) -> Result<PathBuf, vitrine_models::ModelError> {
        let configured = self.spec.model.runtime_library.as_ref().map(|p| self.resolve(p));
        let cwd = std::env::current_dir().unwrap_or_default();
        let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        vitrine_models::find_runtime_library(configured.as_deref(), &[&self.base_dir, &cwd, &exe_dir])
    }

    /// vitrine's own embedder, looked for beside the spec, the working folder and the binary,
    /// and in every folder above them.
    fn bundled_embedder(&self) -> Result<PathBuf, String> {
        const BUNDLED: &str = "models/zoo/mobilenetv2-imagenet-embedder/model.onnx";
        let mut roots = vec![self.base_dir.clone()];
        roots.extend(std::env::current_dir().ok());
        roots.extend(std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)));
        // A build run from its source tree (its binary sits in a target folder elsewhere).
        roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let found = roots.iter().flat_map(|root| root.ancestors()).map(|dir| dir.join(BUNDLED)).find(|p| p.is_file());
        found.ok_or_else(|| {
            format!(
                "vitrine's image embedder ({BUNDLED}) is not beside the spec, the working folder or the binary, \
                 nor above them"
            )
        })
    }

    /// The spec's `match` thresholds, as the matcher takes them.
    pub fn match_config(&self) -> vitrine_operators::MatchConfig {
        let m = &self.spec.matching;
        let default = vitrine_operators::MatchThresholds { min_similarity: m.min_similarity, min_margin: m.min_margin };
        let over = |t: &vitrine_schemas::spec::MatchThresholdsSpec| vitrine_operators::MatchThresholds {
            min_similarity: t.min_similarity.unwrap_or(default.min_similarity),
            min_margin: t.min_margin.unwrap_or(default.min_margin),
        };
        let mut config = vitrine_operators::MatchConfig::new(default);
        config.streams = m.streams.iter().map(|(id, t)| (id.clone(), over(t))).collect();
        config.products = m.products.iter().map(|(sku, t)| (sku.clone(), over(t))).collect();
        config
    }

    /// Which objects the model threads embed, as the spec's `match` and `debounce` say.
    pub fn crop_schedule(&self) -> vitrine_operators::CropScheduleConfig {
        let m = &self.spec.matching;
        vitrine_operators::CropScheduleConfig {
            every_ms: m.every.as_millis() as i64,
            max_per_frame: m.max_crops.get(),
            min_score: self.spec.debounce.min_score,
        }
    }

    /// A path from the spec, made absolute against the spec's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// A video input: a path relative to the spec's folder, or a URL as it is.
    pub fn resolve_input(&self, input: &str) -> String {
        if input.contains("://") {
            input.to_string()
        } else {
            self.resolve(input).display().to_string()
        }
    }
}

const SECTIONS: &[&str] = &[
    "name", "sources", "model", "decode", "infer", "tracker", "debounce", "match", "catalog", "sinks", "server",
    "workers", "epoch",
];
const REQUIRED: &[&str] = &["name", "sources", "model", "catalog"];

fn problem(path: impl Into<String>, message: impl Into<String>) -> SpecProblem {
    SpecProblem { path: path.into(), message: message.into() }
}

/// Deserialises `value` as `T`, naming the failing field under `prefix`.
fn section<T: DeserializeOwned>(prefix: &str, value: Value, problems: &mut Vec<SpecProblem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = match inner.as_str() {
                "." | "" => prefix.to_string(),
                p if p.starts_with('[') => format!("{prefix}{p}"),
                p => format!("{prefix}.{p}"),
            };
            problems.push(problem(path, e.into_inner().to_string()));
            None
        }
    }
}

#[derive(serde::Deserialize)]
struct Epoch(
    #[serde(with = "humantime_serde")]
    #[allow(dead_code)]
    Duration,
);

/// One source, read by its `kind` so that errors name the field inside it.
fn source(i: usize, item: Value, problems: &mut Vec<SpecProblem>) {
    let prefix = format!("sources[{i}]");
    let Value::Mapping(mut map) = item else {
        problems.push(problem(prefix, "a source is a mapping with `kind`, `stream_id` and its settings"));
        return;
    };
    let kind = map.remove("kind");
    let rest = Value::Mapping(map);
    match kind.as_ref().and_then(Value::as_str) {
        Some("video") => {
            section::<vitrine_schemas::spec::VideoSource>(&prefix, rest, problems);
        }
        Some("frames") => {
            section::<vitrine_schemas::spec::FramesSource>(&prefix, rest, problems);
        }
        Some("kafka") => {
            section::<vitrine_schemas::spec::KafkaSource>(&prefix, rest, problems);
        }
        Some(other) => problems.push(problem(
            format!("{prefix}.kind"),
            format!("unknown kind `{other}`; expected `video`, `frames` or `kafka`"),
        )),
        None => problems.push(problem(format!("{prefix}.kind"), "missing; say `video`, `frames` or `kafka`")),
    }
}

/// Parses YAML text into a spec and checks the rules between its values (not the files it
/// names); returns every problem found.
pub fn parse(text: &str) -> Result<PipelineSpec, Vec<SpecProblem>> {
    let spec = read(text)?;
    let problems = spec.check();
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

/// The structure alone: YAML, sections, fields and their types.
fn read(text: &str) -> Result<PipelineSpec, Vec<SpecProblem>> {
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| vec![problem("(file)", format!("not valid YAML: {e}"))])?;
    let Value::Mapping(map) = root else {
        return Err(vec![problem("(file)", "a spec is a YAML mapping with `name`, `sources`, `model` and `catalog`")]);
    };
    let mut problems = Vec::new();
    for key in map.keys() {
        match key.as_str() {
            Some(k) if SECTIONS.contains(&k) => {}
            // (An empty name has no path of its own: fuzzing found `"": ...` reported at ``.)
            Some("") => problems.push(problem("(file)", "a section with an empty name (`\"\":`)")),
            Some(k) => problems.push(problem(k, format!("unknown section; expected one of {}", SECTIONS.join(", ")))),
            None => problems.push(problem("(file)", format!("section names must be strings, got {key:?}"))),
        }
    }
    for key in REQUIRED {
        if !map.contains_key(*key) {
            problems.push(problem(*key, "missing; this section is required"));
        }
    }
    let get = |k: &str| map.get(k).cloned();
    if let Some(v) = get("name") {
        section::<String>("name", v, &mut problems);
    }
    if let Some(v) = get("sources") {
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    source(i, item, &mut problems);
                }
            }
            _ => problems.push(problem("sources", "must be a list of sources")),
        }
    }
    if let Some(v) = get("model") {
        section::<vitrine_schemas::spec::ModelSpec>("model", v, &mut problems);
    }
    if let Some(v) = get("decode") {
        section::<vitrine_schemas::spec::DecodeSpec>("decode", v, &mut problems);
    }
    if let Some(v) = get("infer") {
        section::<vitrine_schemas::spec::InferSpec>("infer", v, &mut problems);
    }
    if let Some(v) = get("tracker") {
        section::<vitrine_schemas::spec::TrackerSpec>("tracker", v, &mut problems);
    }
    if let Some(v) = get("debounce") {
        section::<vitrine_schemas::spec::DebounceSpec>("debounce", v, &mut problems);
    }
    if let Some(v) = get("catalog") {
        section::<vitrine_schemas::spec::CatalogSpec>("catalog", v, &mut problems);
    }
    if let Some(v) = get("sinks") {
        section::<vitrine_schemas::spec::SinksSpec>("sinks", v, &mut problems);
    }
    if let Some(v) = get("server") {
        section::<Option<vitrine_schemas::spec::ServerSpec>>("server", v, &mut problems);
    }
    if let Some(v) = get("workers") {
        section::<NonZeroUsize>("workers", v, &mut problems);
    }
    if let Some(v) = get("epoch") {
        section::<Epoch>("epoch", v, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    section("(spec)", Value::Mapping(map), &mut problems).ok_or(problems)
}

/// Reads, parses and checks a spec file, including that the files it names exist.
pub fn load(path: &Path) -> Result<LoadedSpec, Vec<SpecProblem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![problem("(file)", format!("cannot read {}: {e}", path.display()))])?;
    let mut spec = read(&text)?;
    if let Ok(brokers) = std::env::var("VITRINE_BROKERS") {
        for source in spec.sources.iter_mut() {
            if let SourceSpec::Kafka(k) = source {
                k.brokers = brokers.clone();
            }
        }
        if let Some(k) = spec.catalog.kafka.as_mut() {
            k.brokers = brokers.clone();
        }
        if let Some(k) = spec.sinks.kafka.as_mut() {
            k.brokers = brokers;
        }
    }
    if let (Ok(path), Some(parquet)) = (std::env::var("VITRINE_PARQUET_PATH"), spec.sinks.parquet.as_mut()) {
        parquet.path = path;
    }
    if let Ok(listen) = std::env::var("VITRINE_LISTEN") {
        match (listen.parse(), spec.server.as_mut()) {
            (Ok(addr), Some(server)) => server.listen = addr,
            (Ok(_), None) => {}
            (Err(e), _) => {
                return Err(vec![problem(
                    "VITRINE_LISTEN",
                    format!("`{listen}` is not an address such as 127.0.0.1:8080: {e}"),
                )])
            }
        }
    }
    let base_dir =
        path.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("."));
    let loaded = LoadedSpec { spec, path: path.to_path_buf(), base_dir };
    let mut problems = loaded.spec.check();
    problems.extend(check_files(&loaded));
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(problems)
    }
}

fn check_files(loaded: &LoadedSpec) -> Vec<SpecProblem> {
    let spec = &loaded.spec;
    let mut problems = Vec::new();
    let mut must_exist = |path_in_spec: String, file: &str, what: &str| {
        let p = loaded.resolve(file);
        if !p.exists() {
            problems.push(problem(path_in_spec, format!("{what} {} does not exist", p.display())));
        }
    };
    must_exist("model.path".into(), &spec.model.path, "model file");
    if let Some(labels) = &spec.model.labels {
        must_exist("model.labels".into(), labels, "label file");
    }
    if let Some(path) = &spec.catalog.path {
        must_exist("catalog.path".into(), path, "catalog file");
    }
    for (i, source) in spec.sources.iter().enumerate() {
        match source {
            SourceSpec::Video(v) if !v.input.contains("://") => {
                must_exist(format!("sources[{i}].input"), &v.input, "video file")
            }
            SourceSpec::Frames(f) => must_exist(format!("sources[{i}].dir"), &f.dir, "frames folder"),
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::spec::HlsSpec;

    const GOOD: &str = r#"
name: t
sources:
  - kind: video
    stream_id: demo
    input: a.mp4
model:
  path: m.onnx
catalog:
  path: c.jsonl
"#;

    /// Every input that once crashed the spec fuzz target (tests/fuzz/regressions/spec/) gets
    /// problems that each have a path and a message.
    #[test]
    fn inputs_that_crashed_the_fuzzer_get_named_problems() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/regressions/spec");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = String::from_utf8(std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            let problems = parse(&text).unwrap_err();
            assert!(problems.iter().all(|p| !p.path.is_empty() && !p.message.is_empty()), "{problems:?}");
            seen += 1;
        }
        assert!(seen >= 1);
    }

    #[test]
    fn a_minimal_spec_takes_defaults() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.debounce.enter_hits.get(), 3);
        assert_eq!(spec.workers.get(), 1);
        assert!(spec.server.is_none());
    }

    #[test]
    fn three_mistakes_give_three_paths() {
        let bad = r#"
name: t
sources:
  - kind: video
    stream_id: demo
    input: a.mp4
    fps: fast
model:
  path: m.onnx
  treshold: 0.4
catalog:
  path: c.jsonl
debounce:
  hold: soon
"#;
        let problems = parse(bad).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{problems:?}");
        assert!(paths.contains(&"sources[0].fps"), "{paths:?}");
        assert!(paths.iter().any(|p| p.starts_with("model")), "{paths:?}");
        assert!(paths.contains(&"debounce.hold"), "{paths:?}");
    }

    #[test]
    fn skipping_notices_smaller_changes_when_tiles_look_for_smaller_products() {
        let tiled = parse(&(GOOD.to_string() + "infer:\n  max_skip: 10\n")).unwrap();
        assert_eq!(tiled.infer.changed_share(), 0.01);
        let whole = parse(&(GOOD.to_string() + "infer:\n  max_skip: 10\n  tiles: 1\n")).unwrap();
        assert_eq!(whole.infer.changed_share(), 0.03);
        let set = parse(&(GOOD.to_string() + "infer:\n  tiles: 1\n  changed_share: 0.05\n")).unwrap();
        assert_eq!(set.infer.changed_share(), 0.05);
        let problems = parse(&(GOOD.to_string() + "infer:\n  changed_share: 3\n")).unwrap_err();
        assert_eq!(problems[0].path, "infer.changed_share", "{problems:?}");
    }

    #[test]
    fn rules_between_values_are_checked_together() {
        let bad = GOOD.to_string() + "debounce:\n  enter_hits: 6\n  enter_window: 5\n";
        let problems = parse(&bad).unwrap_err();
        assert_eq!(problems[0].path, "debounce.enter_hits");
    }

    #[test]
    fn hls_takes_defaults_and_its_limits_are_checked() {
        let with_hls = GOOD.replace("    input: a.mp4\n", "    input: a.mp4\n    hls: {}\n");
        let spec = parse(&with_hls).unwrap();
        let SourceSpec::Video(v) = &spec.sources[0] else { panic!() };
        assert_eq!(v.hls, Some(HlsSpec::default()));
        let bad =
            GOOD.replace("    input: a.mp4\n", "    input: a.mp4\n    hls:\n      segment: 100ms\n      window: 1\n");
        let problems = parse(&bad).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["sources[0].hls.segment", "sources[0].hls.window"], "{problems:?}");
    }

    #[test]
    fn tiles_are_a_square_grid_or_columns_by_rows() {
        use vitrine_schemas::spec::TileGrid;
        let tiles =
            |written: &str| parse(&(GOOD.to_string() + "infer:\n  tiles: " + written + "\n")).map(|s| s.infer.tiles);
        assert_eq!(parse(GOOD).unwrap().infer.tiles, TileGrid { columns: 3, rows: 2 }, "the default");
        assert_eq!(tiles("1").unwrap(), TileGrid::NONE);
        assert_eq!(tiles("3").unwrap(), TileGrid { columns: 3, rows: 3 });
        assert_eq!(tiles("3x2").unwrap(), TileGrid { columns: 3, rows: 2 });
        assert_eq!(tiles("\"4X1\"").unwrap(), TileGrid { columns: 4, rows: 1 });
        for bad in ["3by2", "0", "2x0", "x2", "-1", "[3, 2]"] {
            let problems = tiles(bad).unwrap_err();
            assert_eq!(problems[0].path, "infer.tiles", "{bad}: {problems:?}");
            assert!(problems[0].message.contains("columns x rows (3x2)"), "{bad}: {problems:?}");
        }
        let too_many = tiles("5x2").unwrap_err();
        assert!(too_many[0].message.contains("at most 4 a side"), "{too_many:?}");
        // Written back as it was read.
        let grid = TileGrid { columns: 3, rows: 2 };
        assert_eq!(serde_json::to_string(&grid).unwrap(), "\"3x2\"");
        assert_eq!(serde_json::to_string(&TileGrid { columns: 2, rows: 2 }).unwrap(), "2");
    }

    #[test]
    fn tracker_thresholds_are_checked() {
        let bad = GOOD.to_string() + "tracker:\n  high_score: 0.4\n  low_score: 0.6\n  lost_after: 2s\n";
        let problems = parse(&bad).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "tracker.low_score");
        assert!(problems[0].message.contains("high_score (0.4)"), "{problems:?}");
    }

    #[test]
    fn unknown_sections_and_missing_ones_are_named() {
        let problems = parse("name: x\nsource: []\n").unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in ["source", "sources", "model", "catalog"] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }
}
