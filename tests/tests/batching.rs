//! Micro-batching: frames of several streams go to the model together (a YOLO export with a
//! dynamic batch dimension), fewer model runs than frames, and every frame gets exactly the
//! detections it gets without batching.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

/// Runs a spec (JSON logs) and returns how many times it ran the model.
fn run_counting_model_runs(spec: &std::path::Path) -> u64 {
    let out = Command::new(vitrine_bin()).args(["--log-format", "json", "run"]).arg(spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let finished: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "pipeline finished")
        .expect("a `pipeline finished` log line");
    finished["fields"]["model_runs"].as_u64().unwrap()
}

/// Runs 3 streams of 30 frames through the YOLO test model; returns the detections and the
/// number of model runs.
fn run(dir: &std::path::Path, batch: &str) -> (Vec<Vec<serde_json::Value>>, u64) {
    let name = batch.replace([' ', ':', ','], "-");
    let out_dir = dir.join(format!("out{name}"));
    let spec = dir.join(format!("spec{name}.yaml"));
    let frames = dir.join("frames");
    let source = |id: &str| format!("  - {{kind: frames, stream_id: {id}, dir: {}, fps: 5}}\n", frames.display());
    std::fs::write(
        &spec,
        format!(
            "name: batching\nsources:\n{}{}{}model:\n  path: {root}/.vitrine/models/nudenet-320n.onnx\n  decoder: yolo\n  min_score: 0.25\n\
             infer: {{{batch}}}\ncatalog:\n  path: {root}/examples/demo-catalog.jsonl\n  watch: false\n\
             sinks:\n  parquet:\n    path: {out}\n",
            source("a"),
            source("b"),
            source("c"),
            root = root().display(),
            out = out_dir.display()
        ),
    )
    .unwrap();
    let runs = run_counting_model_runs(&spec);
    let rows = duckdb(&format!(
        "SELECT stream_id, seq, box_index, label, round(score, 3), round(x0, 3), round(y0, 3) \
         FROM read_parquet('{}/detections/**/*.parquet') ORDER BY 1, 2, 3",
        out_dir.display()
    ));
    (rows, runs)
}

#[test]
fn batches_run_fewer_times_and_give_every_frame_its_own_detections() {
    let dir = temp_dir("batching");
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    // 30 frames with the host's face (the test model finds faces): the astronaut photo panned.
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-loop", "1", "-i"])
        .arg(root().join("models/tests/fixtures/astronaut.jpg"))
        .args(["-vf", "crop=400:400:t*10:t*5,fps=5", "-t", "6", "-q:v", "3"])
        .arg(dir.join("frames/%05d.jpg"))
        .status()
        .unwrap();
    assert!(status.success());

    let (one, one_runs) = run(&dir, "batch_frames: 1");
    let (batched, batched_runs) = run(&dir, "batch_frames: 6, batch_wait: 50ms");
    assert_eq!(one_runs, 90);
    assert!(batched_runs < 60, "3 streams, batches of up to 6: {batched_runs} runs for 90 frames");
    let frames_with_a_face: std::collections::BTreeSet<_> =
        one.iter().map(|r| (r[0].to_string(), r[1].to_string())).collect();
    assert!(frames_with_a_face.len() > 45, "the model finds the face: {one:?}");
    assert_eq!(one, batched, "batching changed a frame's detections");
}

#[test]
fn tiling_runs_the_model_on_each_tile_and_merges_what_they_find() {
    let dir = temp_dir("tiling-e2e");
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    std::fs::copy(root().join("models/tests/fixtures/shelf.jpg"), dir.join("frames/00000.jpg")).unwrap();
    let run = |tiles: u32| {
        let spec = dir.join(format!("tiles-{tiles}.yaml"));
        let out_dir = dir.join(format!("out-{tiles}"));
        std::fs::write(
            &spec,
            format!(
                "name: tiling\nsources:\n  - {{kind: frames, stream_id: shelf, dir: {frames}}}\nmodel:\n  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx\n\
                 infer: {{tiles: {tiles}}}\ncatalog:\n  path: {root}/examples/demo-catalog.jsonl\n  watch: false\nsinks:\n  parquet:\n    path: {out}\n",
                frames = dir.join("frames").display(),
                root = root().display(),
                out = out_dir.display()
            ),
        )
        .unwrap();
        let runs = run_counting_model_runs(&spec);
        let products = duckdb(&format!(
            "SELECT count(*) FROM read_parquet('{}/detections/**/*.parquet') \
             WHERE label IN ('cup', 'apple', 'orange') AND score >= 0.5",
            out_dir.display()
        ));
        (products[0][0].as_u64().unwrap(), runs)
    };
    let (whole, whole_runs) = run(1);
    let (tiled, tiled_runs) = run(3);
    assert_eq!((whole_runs, tiled_runs), (1, 10), "the whole frame, then the whole frame and 3x3 tiles");
    assert!(whole <= 3 && tiled >= whole + 5 && tiled <= 10, "whole frame {whole}, tiled {tiled} of 10 products");
}
