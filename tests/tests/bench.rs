//! `vitrine bench` measures what it says on the demo's frames: the raw model loop at every
//! split of the cores, the pipeline over every frame of every stream (and skipping unchanged
//! frames), latency, and the streams it sustains live.
//! (The figures themselves are for the README, from scripts/bench.sh; here only that they exist.)

use std::process::Command;

use vitrine_tests::{root, vitrine_bin};

#[test]
fn bench_reports_the_pipeline_against_the_raw_model_loop() {
    let out = Command::new(vitrine_bin())
        .arg("bench")
        .arg(root().join("benches/specs/ssd.yaml"))
        .args(["--streams", "2", "--seconds", "1", "--fps", "5", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cores = report["cores"].as_u64().unwrap();
    let raw = report["raw"].as_array().unwrap();
    assert!(!raw.is_empty() && raw.len() as u64 <= cores, "{report}");
    assert!(raw.iter().all(|r| r["fps"].as_f64().unwrap() > 0.0), "{report}");
    // Every frame of both streams went through the pipeline (180 frames: 36 s at 5 frames/s).
    assert_eq!(report["frames_per_stream"], 180);
    assert_eq!(report["pipeline"]["frames"], 360, "{report}");
    let ratio = report["ratio_to_raw"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio.is_finite(), "{report}");
    // What decoding each frame leaves of the raw loop, at most.
    let ceiling = report["ceiling_to_raw"].as_f64().unwrap();
    assert!(ceiling > 0.5 && ceiling < 1.0, "{report}");
    let (p50, p99) = (report["latency_p50_ms"].as_f64().unwrap(), report["latency_p99_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{report}");
    // Skipping unchanged frames: the same frames, the model on fewer of them, and a live run
    // of as many streams as that sustains.
    assert_eq!(report["skipping"]["frames"], 360, "{report}");
    let share = report["skipping_model_share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 0.75, "the model saw {share} of the frames: {report}");
    let streams = report["sustained"][0].as_u64().unwrap();
    assert!(streams >= 1, "{report}");
}
