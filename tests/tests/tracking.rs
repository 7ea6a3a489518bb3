//! Tracking on a real recording: the sample stream with the picture blacked out for two
//! frames while the mug is on screen (a hand passing in front of the camera). The detector
//! misses the mug in those frames; the viewer must still see one `appeared`, and the mug's
//! detections before and after must carry one track id.

use std::process::Command;

use vitrine_tests::{duckdb, root, temp_dir, vitrine_bin};

#[test]
fn a_short_occlusion_keeps_the_product_on_screen_and_its_track_id() {
    let dir = temp_dir("tracking");
    let root = root();
    let clip = dir.join("occluded.mp4");
    // 0-12 s of the sample (the mug is on screen from 3 s to 11 s), black from 6.0 s to 6.4 s.
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-t", "12", "-i"])
        .arg(root.join("examples/sample/shopping.mp4"))
        .args(["-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='between(t,6.0,6.39)'"])
        .args(["-an", "-c:v", "libx264", "-preset", "veryfast"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let spec = dir.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            r#"
name: tracking
sources:
  - kind: video
    stream_id: occluded
    input: {clip}
    fps: 5
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
sinks:
  parquet:
    path: {out}
"#,
            clip = clip.display(),
            root = root.display(),
            out = dir.join("out").display()
        ),
    )
    .unwrap();
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parquet = |table: &str| format!("read_parquet('{}/out/{table}/**/*.parquet')", dir.display());

    // The detector really lost the mug: frames at 6.0 and 6.2 s have no cup.
    let missed = duckdb(&format!(
        "SELECT pts FROM range(3400, 10601, 200) AS frames(pts) \
         WHERE pts NOT IN (SELECT pts_ms FROM {} WHERE label = 'cup') ORDER BY 1",
        parquet("detections")
    ));
    assert_eq!(missed, vec![vec![serde_json::json!(6000)], vec![serde_json::json!(6200)]]);

    let events = duckdb(&format!("SELECT kind, sku, pts_ms FROM {} ORDER BY pts_ms", parquet("product_events")));
    let mug: Vec<_> = events.iter().filter(|e| e[1] == "MUG-ESP-01").collect();
    assert_eq!(mug.len(), 2, "one appearance, one exit: {events:?}");
    assert_eq!(mug[0][0], "appeared");
    assert_eq!(mug[1][0], "disappeared");

    // Every confident cup detection, before and after the occlusion, is one track.
    let tracks = duckdb(&format!(
        "SELECT track_id, count(*), min(pts_ms), max(pts_ms) FROM {} WHERE label = 'cup' AND score >= 0.5 GROUP BY 1",
        parquet("detections")
    ));
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert!(tracks[0][0].is_u64(), "{tracks:?}");
    assert!(tracks[0][2].as_i64().unwrap() < 6000 && tracks[0][3].as_i64().unwrap() > 6400, "{tracks:?}");
}
