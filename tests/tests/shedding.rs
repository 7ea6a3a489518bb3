//! A live stream the model cannot keep up with: stale frames are shed and counted, the newest
//! always goes on, and viewers' results stay current. The same frames read as a file
//! (`pace: fast`) are all processed.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

fn run(dir: &std::path::Path, pace: &str) -> (String, Vec<Vec<serde_json::Value>>) {
    let spec = dir.join(format!("{pace}.yaml"));
    let out_dir = dir.join(format!("out-{pace}"));
    std::fs::write(
        &spec,
        format!(
            r#"
name: shedding
sources:
  - {{kind: frames, stream_id: a, dir: {frames}, fps: 120, pace: {pace}}}
  - {{kind: frames, stream_id: b, dir: {frames}, fps: 120, pace: {pace}}}
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
infer:
  shed_after: 200ms
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
sinks:
  parquet:
    path: {out}
"#,
            frames = dir.join("frames").display(),
            root = root().display(),
            out = out_dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let rows = duckdb(&format!(
        "SELECT stream_id, count(DISTINCT seq), max(seq) FROM read_parquet('{}/detections/**/*.parquet') GROUP BY 1 ORDER BY 1",
        out_dir.display()
    ));
    (stderr, rows)
}

#[test]
fn a_live_stream_the_model_cannot_follow_sheds_stale_frames_and_keeps_the_newest() {
    let dir = temp_dir("shedding");
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    // 180 real frames, each with the apple in view (the detections table has a row per box,
    // so every processed frame shows there); two streams at 120 frames/s each is several
    // times what one model session a core can take on this machine.
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-ss", "15", "-t", "6", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-vf", "fps=30", "-q:v", "3"])
        .arg(dir.join("frames/%05d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());

    let (stderr, live) = run(&dir, "realtime");
    assert!(stderr.contains("more shed: the model was behind a live stream"), "{stderr}");
    assert!(stderr.contains("shedding its stale frames"), "a warning says so: {stderr}");
    for row in &live {
        let processed = row[1].as_u64().unwrap();
        assert!(processed < 180, "stream {} had nothing shed: {live:?}", row[0]);
        assert_eq!(row[2], 179, "the newest frame of stream {} must go on: {live:?}", row[0]);
    }
    let summary = stderr.lines().find(|l| l.starts_with("vitrine: ")).expect("a summary line");
    let shed: u64 = summary
        .split("frames (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the summary counts shed frames: {summary}"));
    let processed: u64 = live.iter().map(|r| r[1].as_u64().unwrap()).sum();
    assert_eq!(processed + shed, 360, "every frame is processed or counted as shed");

    let (stderr, file) = run(&dir, "fast");
    let summary = stderr.lines().find(|l| l.starts_with("vitrine: ")).expect("a summary line");
    assert!(!summary.contains("shed"), "{summary}");
    assert_eq!(file.iter().map(|r| r[1].as_u64().unwrap()).collect::<Vec<_>>(), vec![180, 180]);
}
