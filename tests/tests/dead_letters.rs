//! Bad frames go to the dead-letter output with a reason, and every other frame is processed.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

#[test]
fn corrupt_and_truncated_frames_are_dead_lettered_and_the_rest_processed() {
    let dir = temp_dir("dead-letters");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    // 12 real frames of the sample stream, one a second.
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .args(["-vf", "fps=1", "-frames:v", "12", "-q:v", "3"])
        .arg(frames.join("frame_%03d.jpg"))
        .status()
        .expect("ffmpeg runs (scripts/setup.sh installs it)");
    assert!(status.success());
    let real = std::fs::read(frames.join("frame_005.jpg")).unwrap();
    // Sorted between the real frames: a truncated JPEG (first half of a real one) and a corrupt one.
    std::fs::write(frames.join("frame_005b_truncated.jpg"), &real[..real.len() / 2]).unwrap();
    let mut corrupt = real.clone();
    corrupt.truncate(64);
    corrupt.extend(std::iter::repeat_n(0x5a, 4000));
    std::fs::write(frames.join("frame_009b_corrupt.jpg"), &corrupt).unwrap();

    let out_dir = dir.join("out");
    let spec = dir.join("frames.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"
name: dead-letters
sources:
  - kind: frames
    stream_id: folder
    dir: {frames}
    fps: 1
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
            frames = frames.display(),
            root = root().display(),
            out = out_dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("14 frames"), "{stderr}");

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(out_dir.join("dead-letter.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    for (letter, name) in letters.iter().zip(["frame_005b_truncated.jpg", "frame_009b_corrupt.jpg"]) {
        assert!(letter["origin"].as_str().unwrap().ends_with(name), "{letter}");
        assert_eq!(letter["stage"], "decode");
        assert!(letter["reason"].as_str().unwrap().len() > 10, "a reason in words: {letter}");
        assert!(letter["bytes"].as_u64().unwrap() > 0);
    }

    // Every good frame was processed (the summary's 14 frames: 12 detected, 2 dead letters);
    // the detections table holds the boxes of good frames only.
    let bad_seqs: Vec<u64> = letters.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let good = duckdb(&format!(
        "SELECT list(DISTINCT seq ORDER BY seq) FROM read_parquet('{}/detections/**/*.parquet')",
        out_dir.display()
    ));
    let good: Vec<u64> = good[0][0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(good.len() >= 6 && good.len() <= 12, "frames with boxes: {good:?}");
    assert!(bad_seqs.iter().all(|s| !good.contains(s)), "{bad_seqs:?} vs {good:?}");
}
