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
"#,
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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    duckdb(&format!(
        "SELECT event_id, kind, sku, pts_ms FROM read_parquet('{}/out/product_events/**/*.parquet') ORDER BY pts_ms, kind",
        dir.display()
    ))
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
