//! The same frames give the same events whatever the number of workers, and whether they are
//! replayed as fast as possible or paced like a live stream (debounce works in media time).
//!
//! `one_and_two_workers_emit_the_same_events` is also the regression test for runs with
//! several workers that never emitted an event: the workers other than 0 kept a catalog
//! input open that held the catalog join's time back.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

fn events_with(workers: usize) -> Vec<Vec<serde_json::Value>> {
    events_of(&format!("workers-{workers}"), workers, "fast", "")
}

/// Runs the sample stream (or part of it) and returns its product events from Parquet.
fn events_of(name: &str, workers: usize, pace: &str, trim: &str) -> Vec<Vec<serde_json::Value>> {
    run_of(name, workers, pace, trim, "").0
}

/// As [`events_of`], with more of a spec (`extra`); also returns the model runs.
fn run_of(name: &str, workers: usize, pace: &str, trim: &str, extra: &str) -> (Vec<Vec<serde_json::Value>>, u64) {
    let dir = temp_dir(name);
    let spec = dir.join("spec.yaml");
    let root = root();
    std::fs::write(
        &spec,
        format!(
            r#"
name: workers
sources:
  - kind: video
    stream_id: replay
    input: {input}
    fps: 5
    pace: {pace}
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
sinks:
  parquet:
    path: {out}
{extra}"#,
            root = root.display(),
            input = if trim.is_empty() { root.join("examples/sample/shopping.mp4") } else { dir.join("clip.mp4") }
                .display(),
            out = dir.join("out").display()
        ),
    )
    .unwrap();
    if !trim.is_empty() {
        // A clip of the sample stream (`-ss START -t LENGTH`), re-encoded so it starts on a frame.
        let mut ffmpeg = Command::new("ffmpeg");
        ffmpeg
            .args(["-loglevel", "error"])
            .args(trim.split_whitespace())
            .arg("-i")
            .arg(root.join("examples/sample/shopping.mp4"));
        let status =
            ffmpeg.args(["-an", "-c:v", "libx264", "-preset", "veryfast"]).arg(dir.join("clip.mp4")).status().unwrap();
        assert!(status.success());
    }
    let out = Command::new(vitrine_bin()).args(["run", "--workers", &workers.to_string()]).arg(&spec).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let runs = log
        .split_whitespace()
        .find_map(|word| word.strip_prefix("model_runs=")?.parse().ok())
        .unwrap_or_else(|| panic!("no model_runs in the log:\n{log}"));
    let events = duckdb(&format!(
        "SELECT event_id, kind, sku, pts_ms FROM read_parquet('{}/out/product_events/**/*.parquet') ORDER BY pts_ms, kind",
        dir.display()
    ));
    (events, runs)
}

#[test]
fn skipping_frames_that_show_nothing_new_keeps_every_event_within_a_frame_at_half_the_model_runs() {
    // The whole frame alone, so that every frame the model sees is one run.
    let (every, runs_every) = run_of("skip-off", 2, "fast", "", "infer:\n  tiles: 1\n");
    let (skipping, runs_skipping) = run_of("skip-on", 2, "fast", "", "infer:\n  tiles: 1\n  max_skip: 10\n");
    assert_eq!(every.len(), 6, "{every:?}");
    // The same events, each at the same media time within one frame (200 ms at 5 frames/s):
    // a product coming in on a frame the model skipped is seen on the next one it runs on.
    let what =
        |events: &[Vec<serde_json::Value>]| events.iter().map(|e| (e[1].clone(), e[2].clone())).collect::<Vec<_>>();
    assert_eq!(what(&skipping), what(&every), "{skipping:?}");
    for (skipped, seen) in skipping.iter().zip(&every) {
        let (a, b) = (skipped[3].as_i64().unwrap(), seen[3].as_i64().unwrap());
        assert!((a - b).abs() <= 200, "{skipped:?} is more than a frame from {seen:?}");
    }
    eprintln!("model runs: {runs_skipping} skipping unchanged frames, {runs_every} without");
    assert_eq!(runs_every, 180);
    assert!(runs_skipping * 2 <= runs_every, "{runs_skipping} of {runs_every} frames went to the model");
}

#[test]
fn one_and_two_workers_emit_the_same_events() {
    let one = events_with(1);
    let two = events_with(2);
    assert_eq!(one.len(), 6, "{one:?}");
    assert_eq!(one, two);
}

#[test]
fn a_replay_and_a_live_paced_run_emit_the_same_events() {
    // 10 s with the apple in it (media time 12-22 s of the sample: the apple enters at 2 s).
    let fast = events_of("pace-fast", 1, "fast", "-ss 12 -t 10");
    let live = events_of("pace-live", 1, "realtime", "-ss 12 -t 10");
    assert!(fast.len() >= 2, "{fast:?}");
    assert_eq!(fast, live);
}
