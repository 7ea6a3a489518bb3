//! `vitrine bench SPEC`: how close the whole pipeline comes to the model alone.
//!
//! In one run, on the same frames (the spec's first source, sampled to JPEG once):
//! - the raw model loop: frames already decoded and resized, `detect` in a loop, at every
//!   split of the cores into sessions x intra-op threads; the best is the baseline;
//! - the pipeline, embedded, with N streams read as fast as it takes them (throughput), then
//!   N streams paced at F frames/s each (frame-to-viewer latency: from a frame's capture to
//!   its detections reaching the sink thread, where viewers, Kafka and Parquet are fed);
//! - optionally the fair peer: the per-frame approach of a serverless design (Python handlers:
//!   Pillow decode, onnxruntime, numpy decoding and NMS, one frame at a time each,
//!   `benches/peer/`), as many side by side as the split says, at every split of the cores
//!   into handler processes x threads; the best split is the peer's figure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use vitrine_models::{Detector, Prepared, Preparer, Runtime};
use vitrine_schemas::spec::{FramesSource, Pace, SourceSpec, TileGrid};

use crate::run::{run, RunOptions};
use crate::spec::LoadedSpec;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Streams fed at once.
    pub streams: usize,
    /// Frames a second of each stream in the latency run.
    pub fps: f64,
    /// Timely workers of the pipeline (default: one per core).
    pub workers: Option<usize>,
    /// Seconds each raw-loop setting and the latency run last, about.
    pub seconds: f64,
    /// Python interpreter that runs the peer handler (with onnxruntime, numpy, Pillow importable).
    pub peer_python: Option<PathBuf>,
    /// Where the sampled frames go (default: a temporary folder).
    pub work_dir: Option<PathBuf>,
}

/// Frames a second of one setting.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    pub setting: String,
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub cores: usize,
    pub frames_per_stream: usize,
    pub streams: usize,
    /// Decode, bar cut and resize of one frame, on one core (ms; warm: the best of three passes
    /// over the frames).
    pub prepare_ms: f64,
    /// The most the pipeline can reach of the raw loop while it decodes and resizes each frame
    /// itself: a frame's model time a core (cores / the best raw frames/s) over that plus
    /// `prepare_ms`. Whatever the pipeline does, its cores also do this work.
    pub ceiling_to_raw: f64,
    /// Every raw-loop setting tried; the best is the baseline.
    pub raw: Vec<Throughput>,
    pub pipeline: Throughput,
    /// pipeline frames/s / best raw frames/s.
    pub ratio_to_raw: f64,
    /// The same pipeline run with `match.enabled: false` (none when the spec matches nothing:
    /// matching off, or no product with a picture).
    pub without_matching: Option<Throughput>,
    /// Of the model threads' time in the pipeline run, the embedder's share (matching's crops;
    /// the rest is the detector's runs).
    pub embedder_share: f64,
    /// The pipeline skipping the model on frames that show nothing new (`infer.max_skip`).
    pub skipping: Throughput,
    /// Of the frames of the skipping run, those the model saw.
    pub skipping_model_share: f64,
    pub latency_fps_per_stream: f64,
    /// Streams of the latency run: 70% of what the pipeline sustains (without skipping).
    pub latency_streams: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// What p99 should stay within: one model run (the raw loop's, per session) + one epoch + 25 ms.
    pub latency_bound_ms: f64,
    /// The skipping pipeline's streams at `latency_fps_per_stream`, run live-paced to see that
    /// 2 cores sustain them: (streams, frames shed, p99 ms).
    pub sustained: (usize, u64, f64),
    /// Every split of the peer tried (none without `--peer-python`); the best is its figure.
    pub peer: Vec<Throughput>,
}

impl BenchReport {
    pub fn best_raw(&self) -> &Throughput {
        best(&self.raw).expect("at least one raw setting")
    }

    /// The peer at its best split.
    pub fn best_peer(&self) -> Option<&Throughput> {
        best(&self.peer)
    }

    /// The table `vitrine bench` prints.
    pub fn table(&self) -> String {
        let best = self.best_raw();
        let mut out = format!(
            "vitrine bench: {}, {} cores, {} streams x {} frames\n",
            self.model, self.cores, self.streams, self.frames_per_stream
        );
        out += &format!("  decode + resize  one frame, one core         {:>8.2} ms\n", self.prepare_ms);
        out += &format!(
            "  ceiling          the model's {:.2} ms a frame a core + decode + resize: at most {:.3} of the raw model loop\n",
            model_core_ms(self.cores, best.fps),
            self.ceiling_to_raw
        );
        for r in &self.raw {
            let mark = if std::ptr::eq(r, best) { "  <- baseline" } else { "" };
            out += &format!("  raw model loop   {:<26} {:>8.1} frames/s{mark}\n", r.setting, r.fps);
        }
        out += &format!(
            "  pipeline         {:<26} {:>8.1} frames/s  {:.2} of the raw model loop, {:.2} of the ceiling\n",
            self.pipeline.setting,
            self.pipeline.fps,
            self.ratio_to_raw,
            self.ratio_to_raw / self.ceiling_to_raw
        );
        if let Some(off) = &self.without_matching {
            out += &format!(
                "  pipeline         matching off               {:>8.1} frames/s  with matching: {:.2} of it; the embedder is {:.1}% of the model time\n",
                off.fps,
                self.pipeline.fps / off.fps,
                self.embedder_share * 100.0
            );
        }
        out += &format!(
            "  pipeline, skipping unchanged frames (max_skip) {:>8.1} frames/s  model on {:.0}% of frames\n",
            self.skipping.fps,
            self.skipping_model_share * 100.0
        );
        out += &format!(
            "  latency          {} streams at {} frames/s (70% load)  p50 {:.0} ms, p99 {:.0} ms (capture to viewer; bound {:.0} ms)\n",
            self.latency_streams, self.latency_fps_per_stream, self.latency_p50_ms, self.latency_p99_ms, self.latency_bound_ms
        );
        if let Some(best_peer) = self.best_peer() {
            for peer in &self.peer {
                let mark = if std::ptr::eq(peer, best_peer) {
                    format!("  <- fair peer: pipeline is {:.2}x", self.pipeline.fps / peer.fps)
                } else {
                    String::new()
                };
                out += &format!("  per-frame peer   {:<26} {:>8.1} frames/s{mark}\n", peer.setting, peer.fps);
            }
        }
        let fps = self.latency_fps_per_stream;
        let streams = |t: &Throughput| (t.fps / fps).floor() as usize;
        out += &format!(
            "  streams at {fps} frames/s on {} cores (throughput / {fps}; the skipping pipeline's run live):\n",
            self.cores
        );
        out += &format!("    raw model loop            {:>5}\n", streams(self.best_raw()));
        if let Some(peer) = self.best_peer() {
            out += &format!("    per-frame peer (best)     {:>5}\n", streams(peer));
        }
        out += &format!("    pipeline                  {:>5}\n", streams(&self.pipeline));
        let (n, shed, p99) = self.sustained;
        out += &format!(
            "    pipeline, skipping        {n:>5}   (run live: {shed} frames shed, p99 {p99:.0} ms; throughput / {fps}: {})\n",
            streams(&self.skipping)
        );
        if let Some(peer) = self.best_peer() {
            out += &format!(
                "  pipeline / fair peer: {:.2}x frames/s without skipping, {:.2}x skipping; streams live skipping / peer: {:.2}x\n",
                self.pipeline.fps / peer.fps,
                self.skipping.fps / peer.fps,
                self.sustained.0 as f64 / streams(peer).max(1) as f64
            );
        }
        out
    }
}

pub fn bench(loaded: &LoadedSpec, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let spec = &loaded.spec;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = match &options.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("vitrine-bench-{}", std::process::id())),
    };
    let (frames_dir, jpegs) = sample_frames(loaded, &work.join("frames"))?;
    tracing::info!(frames = jpegs.len(), dir = %frames_dir.display(), "bench frames ready");

    // The raw model loop.
    let runtime = Runtime::load(&loaded.runtime_library()?)?;
    let config = |threads: usize| loaded.detector_config(threads);
    let probe = Detector::load(&runtime, &config(1))?;
    let model = probe.name().to_string();
    let limits = loaded.decode_limits();
    let mut preparer = Preparer::new(limits);
    let prepared: Vec<Prepared> = jpegs
        .iter()
        .map(|j| preparer.prepare(j, probe.input()))
        .collect::<Result<_, _>>()
        .context("preparing frames")?;
    // Warm, as the pipeline's model threads are: the best of three more passes.
    let mut prepare_ms = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for jpeg in &jpegs {
            std::hint::black_box(preparer.prepare(jpeg, probe.input())?);
        }
        prepare_ms = prepare_ms.min(started.elapsed().as_secs_f64() * 1000.0 / jpegs.len() as f64);
    }
    drop(probe);
    let mut raw = Vec::new();
    for (sessions, threads) in splits(cores) {
        let detectors: Vec<Detector> =
            (0..sessions).map(|_| Detector::load(&runtime, &config(threads))).collect::<Result<_, _>>()?;
        let result = raw_loop(detectors, &prepared, Duration::from_secs_f64(options.seconds))?;
        let setting = format!("{sessions} session{} x {threads} thread{}", plural(sessions), plural(threads));
        tracing::info!(%setting, fps = format!("{:.1}", result.1 as f64 / result.0), "raw model loop");
        raw.push(Throughput { setting, frames: result.1, seconds: result.0, fps: result.1 as f64 / result.0 });
    }

    // The pipeline: throughput, then latency.
    let workers = options.workers.unwrap_or(cores);
    let streams = options.streams.max(1);
    // The latency run takes about `seconds` of media: the first frames, in a folder of their own.
    let latency_dir = work.join("latency-frames");
    std::fs::create_dir_all(&latency_dir)?;
    let latency_frames = ((options.seconds * options.fps).ceil() as usize).clamp(10, jpegs.len());
    for (i, jpeg) in jpegs.iter().take(latency_frames).enumerate() {
        std::fs::write(latency_dir.join(format!("{i:05}.jpg")), jpeg)?;
    }
    let pipeline_spec = |dir: &Path, pace: Pace, fps: f64, streams: usize| {
        let mut s = loaded.clone();
        s.spec.sources = (0..streams)
            .map(|i| {
                SourceSpec::Frames(FramesSource {
                    stream_id: format!("bench-{i}"),
                    dir: dir.display().to_string(),
                    fps,
                    pace,
                    // Live streams deliver frames at their own moments: spread over a frame's time.
                    phase: Duration::from_secs_f64(i as f64 / streams as f64 / fps),
                })
            })
            .collect();
        // One model run a frame, as the raw runs and the peer make: tiles are a detection
        // setting (more runs for small products), scored by `vitrine eval`, not a speed one.
        s.spec.infer.tiles = TileGrid::NONE;
        s.spec.server = None;
        s.spec.sinks = Default::default();
        s.spec.catalog.watch = false;
        s.spec.catalog.kafka = None;
        s
    };
    let run_options = RunOptions {
        workers: Some(workers),
        exit_when_done: true,
        record_latencies: true,
        record_events: false,
        cluster: None,
    };
    let stop = || Arc::new(AtomicBool::new(false));
    let summary = run(pipeline_spec(&frames_dir, Pace::Fast, source_fps(spec), streams), run_options.clone(), stop())?;
    let pipeline = Throughput {
        setting: format!(
            "{workers} worker{} x {} thread{}",
            plural(workers),
            spec.model.intra_threads,
            plural(spec.model.intra_threads.get())
        ),
        frames: summary.frames,
        seconds: summary.seconds,
        fps: summary.frames as f64 / summary.seconds,
    };
    let best = raw.iter().map(|r| r.fps).fold(0.0, f64::max);
    let embedder_share = summary.embed_seconds / (summary.infer_seconds + summary.embed_seconds).max(f64::EPSILON);

    // The same without matching, when the spec matches pictures: what matching costs.
    let without_matching = if summary.embed_seconds > 0.0 {
        let mut off = pipeline_spec(&frames_dir, Pace::Fast, source_fps(spec), streams);
        off.spec.matching.enabled = false;
        let plain = run(off, run_options.clone(), stop())?;
        Some(Throughput {
            setting: pipeline.setting.clone(),
            frames: plain.frames,
            seconds: plain.seconds,
            fps: plain.frames as f64 / plain.seconds,
        })
    } else {
        None
    };

    // The same, skipping the model on frames that show nothing new (the spec's max_skip, or 10).
    let skipping_spec = |dir: &Path, pace: Pace, fps: f64, streams: usize| {
        let mut s = pipeline_spec(dir, pace, fps, streams);
        s.spec.infer.max_skip = spec.infer.max_skip.max(10);
        s
    };
    let skipped = run(skipping_spec(&frames_dir, Pace::Fast, source_fps(spec), streams), run_options.clone(), stop())?;
    let skipping = Throughput {
        setting: format!("{} (max_skip {})", pipeline.setting, spec.infer.max_skip.max(10)),
        frames: skipped.frames,
        seconds: skipped.seconds,
        fps: skipped.frames as f64 / skipped.seconds,
    };
    let skipping_model_share = skipped.model_runs as f64 / skipped.frames.max(1) as f64;

    // Latency at 70% of what the pipeline sustains, live-paced.
    let latency_streams = ((0.7 * pipeline.fps / options.fps).floor() as usize).max(1);
    let paced =
        run(pipeline_spec(&latency_dir, Pace::Realtime, options.fps, latency_streams), run_options.clone(), stop())?;
    let mut latencies = paced.latencies_ms.clone();
    latencies.sort_unstable();
    let best_setting = raw.iter().max_by(|a, b| a.fps.total_cmp(&b.fps)).expect("a raw setting");
    let sessions: f64 = best_setting.setting.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(1.0);
    let model_run_ms = 1000.0 * sessions / best;
    let latency_bound_ms = model_run_ms + spec.epoch.as_secs_f64() * 1000.0 + 25.0;

    // As many live streams as the skipping pipeline's throughput says, each starting at another
    // point of the frames (live streams do not change in step): frames shed, if any, say it
    // cannot keep up.
    // Tried live from the throughput's figure down by a tenth at a time (at most four tries)
    // until no frame is shed: the largest that held is the figure.
    let mut sustained_streams = ((skipping.fps / options.fps).floor() as usize).max(1);
    let live_frames = (options.seconds * options.fps).ceil() as usize;
    let mut tries = 0;
    let (sustained_run, live_latencies) = loop {
        let staggered = stagger(&frames_dir, &work.join(format!("staggered-{sustained_streams}")), sustained_streams)?;
        let mut live = skipping_spec(&frames_dir, Pace::Realtime, options.fps, sustained_streams);
        for (source, dir) in live.spec.sources.iter_mut().zip(&staggered) {
            if let SourceSpec::Frames(f) = source {
                f.dir = dir.display().to_string();
            }
        }
        let live_run = run(trimmed(live, live_frames), run_options.clone(), stop())?;
        let mut latencies = live_run.latencies_ms.clone();
        latencies.sort_unstable();
        tries += 1;
        tracing::info!(streams = sustained_streams, shed = live_run.frames_shed, "live streams, skipping");
        if live_run.frames_shed == 0 || tries == 4 || sustained_streams == 1 {
            break (live_run, latencies);
        }
        sustained_streams = (sustained_streams * 9 / 10).max(1);
    };
    let sustained = (sustained_streams, sustained_run.frames_shed, percentile(&live_latencies, 0.99));

    let mut peers = Vec::new();
    if let Some(python) = &options.peer_python {
        for (processes, threads) in splits(cores) {
            let result = peer(python, loaded, &frames_dir, options.seconds, processes, threads)?;
            tracing::info!(setting = %result.setting, fps = format!("{:.1}", result.fps), "per-frame peer");
            peers.push(result);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(BenchReport {
        model,
        cores,
        frames_per_stream: jpegs.len(),
        prepare_ms,
        streams,
        ratio_to_raw: pipeline.fps / best,
        ceiling_to_raw: ceiling_to_raw(cores, best, prepare_ms),
        raw,
        pipeline,
        without_matching,
        embedder_share,
        skipping,
        skipping_model_share,
        latency_fps_per_stream: options.fps,
        latency_streams,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_bound_ms,
        sustained,
        peer: peers,
    })
}

/// `streams` folders of the frames in `frames`, each starting further in (and wrapping round),
/// as links.
fn stagger(frames: &Path, into: &Path, streams: usize) -> anyhow::Result<Vec<PathBuf>> {
    let paths = vitrine_connectors::sources::folder::list_frames(frames)?;
    (0..streams)
        .map(|i| {
            let dir = into.join(format!("{i:03}"));
            std::fs::create_dir_all(&dir)?;
            let start = i * paths.len() / streams.max(1);
            for (n, path) in paths.iter().cycle().skip(start).take(paths.len()).enumerate() {
                let link = dir.join(format!("{n:05}.jpg"));
                if !link.exists() {
                    std::os::unix::fs::symlink(std::fs::canonicalize(path)?, &link)?;
                }
            }
            Ok(dir)
        })
        .collect()
}

/// The spec with each source's frames limited to the first `frames` (a folder source's
/// `limit`), so a live-paced run lasts about `frames / fps` seconds.
fn trimmed(mut loaded: LoadedSpec, frames: usize) -> LoadedSpec {
    for source in &mut loaded.spec.sources {
        if let SourceSpec::Frames(f) = source {
            let dir = PathBuf::from(&f.dir);
            let trimmed = dir.with_extension("first");
            if std::fs::create_dir_all(&trimmed).is_ok() {
                let paths = vitrine_connectors::sources::folder::list_frames(&dir).unwrap_or_default();
                for path in paths.iter().take(frames) {
                    let link = trimmed.join(path.file_name().expect("a file name"));
                    if !link.exists() {
                        let _ = std::os::unix::fs::symlink(std::fs::canonicalize(path).unwrap_or(path.clone()), &link);
                    }
                }
                f.dir = trimmed.display().to_string();
            }
        }
    }
    loaded
}

fn best(settings: &[Throughput]) -> Option<&Throughput> {
    settings.iter().max_by(|a, b| a.fps.total_cmp(&b.fps))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Ways to use `cores`: sessions x intra-op threads, from one session with every core to one session per core.
fn splits(cores: usize) -> Vec<(usize, usize)> {
    (1..=cores).filter(|s| cores.is_multiple_of(*s)).map(|s| (s, cores / s)).collect()
}

/// A frame's model time on one core (ms) when `cores` cores together run `fps` frames/s.
fn model_core_ms(cores: usize, fps: f64) -> f64 {
    1000.0 * cores as f64 / fps
}

/// The most a pipeline that also decodes and resizes each frame (`prepare_ms`, one core) can
/// reach of a raw loop that runs `raw_fps` frames/s on `cores` cores.
fn ceiling_to_raw(cores: usize, raw_fps: f64, prepare_ms: f64) -> f64 {
    let model = model_core_ms(cores, raw_fps);
    model / (model + prepare_ms)
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64
}

fn source_fps(spec: &vitrine_schemas::spec::PipelineSpec) -> f64 {
    match spec.sources.first() {
        Some(SourceSpec::Video(v)) => v.fps,
        Some(SourceSpec::Frames(f)) => f.fps,
        _ => 5.0,
    }
}

/// The folder and JPEG frames of the spec's first source: a folder as it is, a video sampled
/// by ffmpeg at the source's rate into `dir`.
fn sample_frames(loaded: &LoadedSpec, dir: &Path) -> anyhow::Result<(PathBuf, Vec<Vec<u8>>)> {
    let source = loaded.spec.sources.first().ok_or_else(|| anyhow!("the spec has no source"))?;
    let folder = match source {
        SourceSpec::Frames(f) => loaded.resolve(&f.dir),
        SourceSpec::Video(v) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let input = if v.input.contains("://") { PathBuf::from(&v.input) } else { loaded.resolve(&v.input) };
            let status = Command::new(&v.ffmpeg)
                .args(["-loglevel", "error", "-y", "-i"])
                .arg(&input)
                .args(["-vf", &format!("fps={}", v.fps), "-q:v", "3"])
                .arg(dir.join("%05d.jpg"))
                .status()
                .with_context(|| format!("running {} (install ffmpeg, or scripts/setup.sh)", v.ffmpeg))?;
            if !status.success() {
                bail!("ffmpeg could not sample {} ({status})", input.display());
            }
            dir.to_path_buf()
        }
        SourceSpec::Kafka(_) => bail!("vitrine bench needs a video or frames source first in the spec, not Kafka"),
    };
    let paths = vitrine_connectors::sources::folder::list_frames(&folder)?;
    let frames: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    if frames.is_empty() {
        bail!("no frames in {}", folder.display());
    }
    Ok((folder, frames))
}

/// Runs each detector on its own thread over `frames` (round robin) until `at_least` passed
/// and every frame was seen once; returns (seconds, frames).
fn raw_loop(detectors: Vec<Detector>, frames: &[Prepared], at_least: Duration) -> anyhow::Result<(f64, u64)> {
    let sessions = detectors.len();
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = detectors
            .into_iter()
            .enumerate()
            .map(|(i, mut detector)| {
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut done = 0u64;
                    let mut next = i;
                    loop {
                        detector.detect(&frames[next % frames.len()])?;
                        done += 1;
                        next += sessions;
                        if next >= frames.len() && started.elapsed() >= at_least {
                            return Ok(done);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("raw loop thread")).collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok((started.elapsed().as_secs_f64(), counts.iter().sum()))
}

/// The per-frame peer: `processes` handlers of benches/peer/handler.py side by side, each
/// with `threads` onnxruntime threads and its share of the frames, one frame at a time.
fn peer(
    python: &Path,
    loaded: &LoadedSpec,
    frames: &Path,
    seconds: f64,
    processes: usize,
    threads: usize,
) -> anyhow::Result<Throughput> {
    // The repository's benches/peer/, above the spec or the working directory.
    let cwd = std::env::current_dir().unwrap_or_default();
    let script = loaded
        .base_dir
        .ancestors()
        .chain(cwd.ancestors())
        .map(|dir| dir.join("benches/peer/handler.py"))
        .find(|p| p.exists())
        .ok_or_else(|| anyhow!("benches/peer/handler.py not found above the spec or here (run from the repository)"))?;
    let spec = &loaded.spec;
    let labels = spec.model.labels.as_ref().map(|p| loaded.resolve(p));
    // Every handler loads its model, then all start counting at once (Python and onnxruntime
    // take a few seconds to load).
    let epoch_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let start_at = epoch_s + 8.0;
    let handlers = (0..processes)
        .map(|shard| {
            let mut cmd = Command::new(python);
            cmd.arg(&script)
                .arg("--model")
                .arg(loaded.resolve(&spec.model.path))
                .args(["--decoder", spec.model.decoder.as_str()])
                .arg("--frames")
                .arg(frames)
                .args(["--seconds", &seconds.to_string(), "--min-score", &spec.model.min_score.to_string()])
                .args(["--threads", &threads.to_string(), "--shard", &shard.to_string()])
                .args(["--shards", &processes.to_string(), "--start-at", &start_at.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if let Some(labels) = &labels {
                cmd.arg("--labels").arg(labels);
            }
            cmd.spawn().with_context(|| format!("running {}", python.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (mut frames_done, mut longest) = (0, 0.0f64);
    for handler in handlers {
        let out = handler.wait_with_output()?;
        if !out.status.success() {
            bail!("the peer handler failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).context("reading the peer's result")?;
        frames_done += result["frames"].as_u64().unwrap_or(0);
        longest = longest.max(result["seconds"].as_f64().unwrap_or(f64::NAN));
    }
    let setting = format!("{processes} handler{} x {threads} thread{}", plural(processes), plural(threads));
    Ok(Throughput { setting, frames: frames_done, seconds: longest, fps: frames_done as f64 / longest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_the_models_share_of_a_cores_work_on_a_frame() {
        // 2 cores at 120 frames/s: 16.7 ms of model a frame a core; 1 ms more of JPEG work.
        assert!((ceiling_to_raw(2, 120.0, 1.0) - 16.667 / 17.667).abs() < 1e-3);
        // Work of 5% of the model's leaves 0.95 at most.
        assert!((ceiling_to_raw(1, 100.0, 0.5263) - 0.95).abs() < 1e-3);
        assert_eq!(ceiling_to_raw(2, 120.0, 0.0), 1.0);
    }
}
