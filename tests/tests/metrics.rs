//! `/metrics`, `/healthz` and `/readyz` of a pipeline reading two streams from a real broker:
//! the exposition parses with the reference Prometheus parser and every family says what
//! the run did (histogram counts equal to the frames processed, consumer lag down to 0).

use std::time::{Duration, Instant};

use vitrine_tests::kafka_runs::{create_topics, kafka_spec, sample_streams, wait_caught_up, Pipeline};
use vitrine_tests::{free_port, http_get, http_response, metric_sample, prometheus_families, temp_dir, Broker};

/// On partitions 1 and 0 of the 2-partition frames topic.
const STREAMS: [&str; 2] = ["shop1", "kitchen"];
const FRAMES: f64 = 180.0;

#[test]
fn metrics_say_what_the_run_did_and_the_lag_goes_to_zero() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("metrics");
    let rest = format!(
        "sinks:\n  kafka:\n    brokers: {brokers}\n    partitions: 2\n  parquet:\n    path: {}/tables\n    checkpoint_after: 500ms\n    roll_after: 1s\n\
         server:\n  viewer: false\nworkers: 2\n",
        dir.display()
    );
    let spec = kafka_spec(&dir, "metrics", &brokers, "metrics", &STREAMS, &rest);
    create_topics(&spec, 2);
    sample_streams(&brokers, &STREAMS);

    let (port, log) = (free_port(), dir.join("vitrine.log"));
    let mut pipeline = Pipeline::start(&spec, &[], &[("VITRINE_LISTEN", format!("127.0.0.1:{port}"))], &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_response(port, "/readyz").0.starts_with("http/1.0 200");
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_caught_up(&mut [&mut pipeline], &[&log], &brokers, "metrics");
    // librdkafka reports the lag once a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let families = loop {
        let families = prometheus_families(&http_get(port, "/metrics"));
        let lag: Vec<Option<f64>> = ["0", "1"]
            .iter()
            .map(|p| metric_sample(&families, "vitrine_kafka_consumer_lag_messages", &[("partition", p)]))
            .collect();
        if lag.iter().all(|l| *l == Some(0.0)) || Instant::now() > deadline {
            assert_eq!(lag, [Some(0.0), Some(0.0)], "the consumer lag of both partitions goes to 0");
            break families;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(http_get(port, "/healthz"), "ok");
    let get = |name: &str, labels: &[(&str, &str)]| {
        metric_sample(&families, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {families:#?}"))
    };
    for stream in STREAMS {
        let s = [("stream", stream)];
        assert_eq!(get("vitrine_frames_read_total", &s), FRAMES);
        assert_eq!(get("vitrine_frames_processed_total", &s), FRAMES);
        assert_eq!(get("vitrine_frames_shed_total", &s), 0.0);
        assert_eq!(get("vitrine_dead_letters_total", &[("stream", stream), ("stage", "decode")]), 0.0);
        for kind in ["appeared", "disappeared"] {
            let events = get("vitrine_product_events_total", &[("stream", stream), ("kind", kind)]);
            assert_eq!(events, 3.0, "{stream}: three products {kind}");
        }
    }
    let all_frames = FRAMES * STREAMS.len() as f64;
    let stage = |s: &str| get("vitrine_stage_seconds_count", &[("stage", s)]);
    assert_eq!(stage("decode"), all_frames, "one decode a frame");
    for s in ["infer", "track", "debounce", "join"] {
        assert!(stage(s) > 0.0, "{s} is timed");
    }
    assert!(get("vitrine_stage_seconds_sum", &[("stage", "infer")]) > 0.0);
    assert_eq!(get("vitrine_model_batch_frames_sum", &[]), all_frames);
    assert_eq!(get("vitrine_model_batch_frames_count", &[]), stage("infer"));
    // A frame is one model run; a tiled one (the default 3x2 tiles, on a cut) six more.
    let (runs, frames_run) = (get("vitrine_model_runs_total", &[]), stage("infer"));
    assert!(runs > frames_run && (runs - frames_run) % 6.0 == 0.0, "{runs} model runs for {frames_run} frames");
    assert_eq!(get("vitrine_capture_to_sink_seconds_count", &[]), all_frames);
    assert_eq!(get("vitrine_capture_to_viewer_seconds_count", &[]), 12.0);
    assert_eq!(get("vitrine_sink_seconds_count", &[("sink", "viewers")]), 12.0);
    assert!(get("vitrine_sink_seconds_count", &[("sink", "kafka")]) >= all_frames);
    assert!(get("vitrine_sink_seconds_count", &[("sink", "parquet")]) > 0.0);
    assert_eq!(get("vitrine_sink_retries_total", &[("sink", "parquet")]), 0.0);
    assert_eq!(get("vitrine_parquet_sets_waiting", &[]), 0.0);
    assert_eq!(get("vitrine_viewers", &[]), 0.0);
    assert_eq!(get("vitrine_viewer_resnapshots_total", &[]), 0.0);
    assert!(get("vitrine_media_time_ms", &[("stream", "shop1")]) > 30_000.0);

    pipeline.signal("INT");
    let status = pipeline.wait_for_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{}", std::fs::read_to_string(&log).unwrap());
}
