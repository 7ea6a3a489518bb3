//! `vitrine validate` reports every mistake of a spec with its path, and exits with 2.

use std::process::Command;

use vitrine_tests::{root, temp_dir, vitrine_bin};

#[test]
fn a_spec_with_three_mistakes_gets_three_errors_and_exit_status_2() {
    let dir = temp_dir("spec-errors");
    let spec = dir.join("bad.yaml");
    let root = root();
    std::fs::write(
        &spec,
        format!(
            r#"
name: bad
sources:
  - kind: video
    stream_id: demo
    input: {root}/examples/sample/shopping.mp4
    fps: lots
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
debounce:
  hold: a while
sinks:
  parquet:
    path: {dir}/out
    roll_evry: 10s
"#,
            root = root.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(vitrine_bin()).arg("validate").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("3 problems found"), "{stderr}");
    for path in ["sources[0].fps:", "debounce.hold:", "sinks.parquet.roll_evry:"] {
        assert!(stderr.contains(path), "no error for {path} in:\n{stderr}");
    }
}

#[test]
fn the_demo_spec_is_valid() {
    let out = Command::new(vitrine_bin()).arg("validate").arg(root().join("examples/demo.yaml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
