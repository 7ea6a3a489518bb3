//! Supervision: a part of the run that fails stops the whole run with exit status 1 and a
//! message that names what failed and what to do, instead of a run that looks fine.

use std::process::Command;
use std::time::{Duration, Instant};

use vitrine_tests::{demo_spec, replace, temp_dir, vitrine_bin};

#[test]
fn a_video_source_whose_input_cannot_be_opened_stops_the_run_with_exit_1_naming_it() {
    let dir = temp_dir("bad-input");
    let mut spec = demo_spec(&dir);
    let input = spec.lines().find(|l| l.trim_start().starts_with("input: ")).unwrap().trim().to_string();
    // Nothing listens on port 9 (discard): ffmpeg cannot open the stream.
    spec = replace(&spec, &input, "input: rtsp://127.0.0.1:9/no-such-show");
    spec = replace(&spec, "listen: 127.0.0.1:8080", &format!("listen: 127.0.0.1:{}", vitrine_tests::free_port()));
    let path = dir.join("bad-input.yaml");
    std::fs::write(&path, spec).unwrap();
    let started = Instant::now();
    let out = Command::new(vitrine_bin()).arg("run").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("source `demo` failed") && last.contains("rtsp://127.0.0.1:9/no-such-show"),
        "the last line names the source and its input: {last}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "it stops promptly");
}
