//! The same frames give the same events whatever the number of workers. Regression test for
//! runs with several workers that never emitted an event: the workers other than 0 kept a
//! catalog input open that held the catalog join's time back.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

fn events_with(workers: usize) -> Vec<Vec<serde_json::Value>> {
    let dir = temp_dir(&format!("workers-{workers}"));
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
    input: {root}/examples/sample/shopping.mp4
    fps: 5
    pace: fast
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
            out = dir.join("out").display()
        ),
    )
    .unwrap();
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
