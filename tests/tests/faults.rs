//! Broken parts: the broker dies mid-run and comes back (its storage survives, as a real
//! cluster's does). The run keeps going by itself, and afterwards every frame read is
//! accounted for (processed or a dead letter), every Parquet row is there once, and every
//! product event is on the events topic once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vitrine_tests::kafka_runs::{
    check_tables, kafka_spec, sample_streams, tables, topic_values, wait_caught_up, Pipeline,
};
use vitrine_tests::{
    duckdb, free_port, http_get, metric_sample, prometheus_families, temp_dir, vitrine_bin, Broker, S3Server,
};

const STREAMS: [&str; 2] = ["shop1", "shop2"];

fn spec(dir: &Path, brokers: &str, group: &str) -> std::path::PathBuf {
    let rest = format!(
        "sinks:\n  kafka:\n    brokers: {brokers}\n    detections_topic: {group}.detections\n    events_topic: {group}.events\n    \
         dead_letter_topic: {group}.dead-letter\n  parquet:\n    path: {dir}/{group}\n    checkpoint_after: 300ms\n    \
         roll_after: 1s\n    min_dwell: 0s\nserver:\n  viewer: false\n",
        dir = dir.display()
    );
    kafka_spec(dir, "faults", brokers, group, &[], &rest)
}

/// The sum of every sample of `name` on /metrics.
fn total(families: &serde_json::Map<String, serde_json::Value>, name: &str) -> f64 {
    let samples = families.values().filter_map(|f| f["samples"].as_array()).flatten();
    samples.filter(|s| s[0] == name).filter_map(|s| s[2].as_f64()).sum()
}

/// The sum of the samples of `name` whose label `label` is `value`.
fn total_where(families: &serde_json::Map<String, serde_json::Value>, name: &str, label: &str, value: &str) -> f64 {
    let samples = families.values().filter_map(|f| f["samples"].as_array()).flatten();
    samples.filter(|s| s[0] == name && s[1][label] == value).filter_map(|s| s[2].as_f64()).sum()
}

/// How many frames the run on `port` has read (None: it is not listening yet).
fn frames_read(port: u16) -> Option<f64> {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .ok()
        .map(|_| total(&prometheus_families(&http_get(port, "/metrics")), "vitrine_frames_read_total"))
}

/// Runs `group` until it has read all `frames` and committed every one, then stops it;
/// returns its /metrics. (Counting frames first: a Tansu broker on S3 can report a high
/// watermark a few messages short for a while, so "committed up to the end" alone can be
/// true too early; seen in CI.)
fn run_to_the_end(
    pipeline: &mut Pipeline,
    port: u16,
    log: &Path,
    broker: &Broker,
    group: &str,
    frames: f64,
) -> serde_json::Map<String, serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(240);
    while frames_read(port).is_none_or(|read| read < frames) {
        assert!(
            Instant::now() < deadline,
            "{group} did not read {frames} frames:\n{}",
            std::fs::read_to_string(log).unwrap()
        );
        assert!(pipeline.0.try_wait().unwrap().is_none(), "{group} exited:\n{}", std::fs::read_to_string(log).unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_caught_up(&mut [pipeline], &[log], &broker.address, group);
    let families = prometheus_families(&http_get(port, "/metrics"));
    pipeline.signal("INT");
    let status = pipeline.wait_for_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{group}: {status:?}\n{}", std::fs::read_to_string(log).unwrap());
    families
}

/// `vitrine topics create SPEC`, tried again for a while: a broker that has just started on
/// a fresh S3 store may answer "unknown broker error" until the store takes writes (seen in CI).
fn create_topics_when_the_store_is_ready(spec: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out =
            Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "2"]).arg(spec).output().unwrap();
        if out.status.success() {
            return;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(Instant::now() < deadline, "topics create kept failing: {stderr}");
        eprintln!("topics create failed, trying again: {}", stderr.trim());
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let s3 = S3Server::start("tansu");
    let mut broker = Broker::start_on_s3(&s3);
    let dir = temp_dir("faults-broker");
    let brokers = broker.address.clone();
    let clean_spec = spec(&dir, &brokers, "clean");
    let fault_spec = spec(&dir, &brokers, "fault");
    for spec in [&clean_spec, &fault_spec] {
        create_topics_when_the_store_is_ready(spec);
    }
    sample_streams(&brokers, &STREAMS);
    let frames = 180.0 * STREAMS.len() as f64;

    let port = free_port();
    let clean_log = dir.join("clean.log");
    let mut clean = Pipeline::start(&clean_spec, &[], &[("VITRINE_LISTEN", format!("127.0.0.1:{port}"))], &clean_log);
    run_to_the_end(&mut clean, port, &clean_log, &broker, "clean", frames);
    let clean_tables = tables(&dir.join("clean").display().to_string(), duckdb);
    assert_eq!(clean_tables.events.len(), 6 * STREAMS.len(), "{:?}", clean_tables.events);

    // The same frames; the broker is killed once a third of them is read, down for 3 s.
    let port = free_port();
    let log = dir.join("fault.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut pipeline = Pipeline::start(&fault_spec, &[], &[("VITRINE_LISTEN", format!("127.0.0.1:{port}"))], &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "frames were not read:\n{}", log_text());
        assert!(pipeline.0.try_wait().unwrap().is_none(), "exited:\n{}", log_text());
        if frames_read(port).is_some_and(|read| read >= frames / 3.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    assert!(pipeline.0.try_wait().unwrap().is_none(), "the run stopped while the broker was down:\n{}", log_text());
    assert_eq!(http_get(port, "/healthz"), "ok", "a broker that is down is waited for, not a dead part");
    broker.restart();
    let families = run_to_the_end(&mut pipeline, port, &log, &broker, "fault", frames);

    // Every frame read is processed or a dead letter; none was lost in the outage.
    let (read, processed) =
        (total(&families, "vitrine_frames_read_total"), total(&families, "vitrine_frames_processed_total"));
    // (Frames the source refuses are dead letters of stage `source`, never read as frames.)
    let dead = total_where(&families, "vitrine_dead_letters_total", "stage", "decode");
    assert_eq!(read, frames, "every frame read once");
    assert_eq!(processed + dead, read, "read {read} = processed {processed} + dead letters {dead}");
    assert!(metric_sample(&families, "vitrine_frames_shed_total", &[("stream", "shop1")]).unwrap_or(0.0) == 0.0);

    check_tables("after a broker restart", &tables(&dir.join("fault").display().to_string(), duckdb), &clean_tables);
    let events = topic_values(&brokers, "fault.events", Duration::from_secs(3));
    let mut ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected: Vec<String> = clean_tables.events.iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected, "every product event on the topic once");
}
