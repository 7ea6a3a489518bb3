//! Supervision: a part of the run that fails stops the whole run with exit status 1 and a
//! message that names what failed and what to do, instead of a run that looks fine.

use std::process::Command;
use std::time::{Duration, Instant};

use vitrine_tests::kafka_runs::committed;
use vitrine_tests::{demo_spec, replace, root, temp_dir, vitrine_bin, Broker};

#[test]
fn a_missing_model_or_a_file_that_is_not_one_is_refused_at_start_naming_it() {
    let dir = temp_dir("bad-model");
    let spec = demo_spec(&dir);
    let model = spec.lines().find(|l| l.trim_start().starts_with("path: ") && l.contains(".onnx")).unwrap().trim();
    let run = |model_path: &std::path::Path| {
        let path = dir.join("bad-model.yaml");
        std::fs::write(&path, replace(&spec, model, &format!("path: {}", model_path.display()))).unwrap();
        let out = Command::new(vitrine_bin()).arg("run").arg(&path).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let missing = dir.join("no-such-model.onnx");
    let (code, stderr) = run(&missing);
    assert_eq!(code, Some(2), "a spec problem: {stderr}");
    assert!(stderr.contains("model.path") && stderr.contains("does not exist"), "{stderr}");
    let not_a_model = dir.join("notes.onnx");
    std::fs::write(&not_a_model, "these are not the weights you are looking for\n").unwrap();
    let (code, stderr) = run(&not_a_model);
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("notes.onnx") && last.contains("Is it an ONNX model?"), "{last}");
}

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

#[test]
fn a_sink_that_cannot_write_stops_the_run_with_exit_1_and_commits_nothing_it_did_not_write() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("bad-sink");
    let out = Command::new(vitrine_bin())
        .args(["sample", "--stream-id", "shop1", "--fps", "5", "--fast", "--brokers", &brokers, "--url"])
        .arg(root().join("examples/sample/shopping.mp4"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A topic name no broker takes: every detection sent there fails.
    let spec = dir.join("bad-sink.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: bad-sink\nsources:\n  - kind: kafka\n    brokers: {brokers}\n    group_id: bad-sink\n\
             model:\n  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx\n\
             catalog:\n  path: {root}/examples/demo-catalog.jsonl\n\
             sinks:\n  kafka:\n    brokers: {brokers}\n    detections_topic: \"no such topic!\"\n",
            root = root().display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(vitrine_bin()).arg("run").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("the sinks stopped") && last.contains("no such topic!"), "names the sink: {last}");
    assert!(started.elapsed() < Duration::from_secs(25), "stops at once, without waiting for durability");
    assert!(
        committed(&brokers, "bad-sink").iter().all(Option::is_none),
        "nothing was durable, so nothing is committed: {:?}",
        committed(&brokers, "bad-sink")
    );
}
