//! A timely cluster of two processes on loopback (timely over TCP) reading three streams from
//! a real Kafka-protocol broker (Tansu): it writes the same product events to Kafka and the
//! same Parquet rows as one process with two workers on the same frames. Then one process is
//! killed with SIGKILL mid-stream: the other stops by itself with exit status 1 and says
//! why, both are restarted, and in the end the Kafka events (by id) and the Parquet rows
//! equal the uninterrupted run's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use vitrine_tests::kafka_runs::{
    caught_up, check_tables, create_topics, group_sinks, kafka_spec, sample_streams, tables, topic_values,
    wait_caught_up, Pipeline,
};
use vitrine_tests::{duckdb, free_ports, temp_dir, Broker};

/// One stream per partition of the 3-partition frames topic (librdkafka places a key by its
/// CRC32): in a 2 x 1 cluster, process 0 reads partitions 0 and 2, process 1 partition 1.
const STREAMS: [&str; 3] = ["shop1", "fashion", "shop2"];

fn spec(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let rest = format!("{}workers: 1\n", group_sinks(dir, brokers, group));
    let path = kafka_spec(dir, &format!("cluster-{group}"), brokers, group, &[], &rest);
    create_topics(&path, 3);
    path
}

/// The two processes of a 2 x 1 cluster, started on fresh loopback ports.
fn start_cluster(spec: &Path, dir: &Path, name: &str) -> (Vec<Pipeline>, Vec<PathBuf>) {
    let hostfile = dir.join(format!("{name}.hosts"));
    let [first, second] = free_ports();
    std::fs::write(&hostfile, format!("127.0.0.1:{first}\n127.0.0.1:{second}\n")).unwrap();
    let logs: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("{name}-p{i}.log"))).collect();
    let processes = (0..2)
        .map(|i| {
            let args = ["--workers", "1", "--processes", "2", "--hostfile", hostfile.to_str().unwrap()];
            Pipeline::start(spec, &args, &[("VITRINE_PROCESS_ID", i.to_string())], &logs[i])
        })
        .collect();
    (processes, logs)
}

fn log_text(logs: &[PathBuf]) -> String {
    logs.iter().map(|l| format!("== {}\n{}", l.display(), std::fs::read_to_string(l).unwrap_or_default())).collect()
}

/// Runs until `group` committed every frame, then stops every process with SIGINT.
fn run_to_the_end(mut processes: Vec<Pipeline>, logs: &[PathBuf], brokers: &str, group: &str) {
    let log_paths: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    wait_caught_up(&mut processes.iter_mut().collect::<Vec<_>>(), &log_paths, brokers, group);
    for p in &processes {
        p.signal("INT");
    }
    for p in &mut processes {
        let status = p.wait_for_exit(Duration::from_secs(60));
        assert!(status.is_some_and(|s| s.success()), "{group}: {status:?}\n{}", log_text(logs));
    }
}

/// The frames a process says it processed, from its last line.
fn frames_processed(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    let last = text.lines().rfind(|l| l.starts_with("vitrine: ")).unwrap_or_else(|| panic!("no summary in {text}"));
    last.trim_start_matches("vitrine: ").split(' ').next().unwrap().parse().unwrap()
}

/// The product events of `topic` by id, each as it was sent but for when.
fn events_by_id(brokers: &str, topic: &str) -> BTreeMap<String, Value> {
    topic_values(brokers, topic, Duration::from_secs(3))
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("emitted_at_ms");
            (e["event_id"].as_str().unwrap().to_string(), e)
        })
        .collect()
}

#[test]
fn a_two_process_cluster_writes_what_one_process_writes_and_survives_a_killed_process() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("cluster");
    let single = spec(&dir, &brokers, "single");
    let cluster = spec(&dir, &brokers, "cluster");
    let crash = spec(&dir, &brokers, "crash");
    sample_streams(&brokers, &STREAMS);

    // One process, two workers.
    let log = dir.join("single.log");
    run_to_the_end(vec![Pipeline::start(&single, &["--workers", "2"], &[], &log)], &[log], &brokers, "single");
    let want_rows = tables(&dir.join("single").display().to_string(), duckdb);
    let want_events = events_by_id(&brokers, "single.events");
    assert_eq!(want_events.len(), 3 * 6, "each stream: three products appear and leave: {want_events:?}");

    // Two processes, one worker each: each reads its own partitions.
    let (processes, logs) = start_cluster(&cluster, &dir, "cluster");
    run_to_the_end(processes, &logs, &brokers, "cluster");
    let frames: Vec<u64> = logs.iter().map(|l| frames_processed(l)).collect();
    assert_eq!(frames, [360, 180], "process 0 reads two streams' partitions, process 1 one:\n{}", log_text(&logs));
    check_tables("cluster", &tables(&dir.join("cluster").display().to_string(), duckdb), &want_rows);
    assert_eq!(events_by_id(&brokers, "cluster.events"), want_events, "cluster: Kafka events by id");

    // Kill one process mid-stream (each in turn): the other one stops by itself, saying why.
    let mut mid_stream = 0;
    for (round, victim) in [1usize, 0].into_iter().enumerate() {
        let (mut processes, logs) = start_cluster(&crash, &dir, &format!("crash-{round}"));
        std::thread::sleep(Duration::from_millis(4000 + 1500 * round as u64));
        for p in &mut processes {
            assert!(p.0.try_wait().unwrap().is_none(), "a process exited before the kill:\n{}", log_text(&logs));
        }
        processes[victim].0.kill().unwrap(); // SIGKILL
        if caught_up(&brokers, "crash").is_err() {
            mid_stream += 1;
        }
        let survivor = 1 - victim;
        let status = processes[survivor].wait_for_exit(Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(1), "the survivor must stop:\n{}", log_text(&logs));
        let text = std::fs::read_to_string(&logs[survivor]).unwrap();
        assert!(
            text.contains("the connection to another process of the cluster broke") && text.contains("Restart every"),
            "the survivor says what failed and what to do:\n{text}"
        );
    }
    assert!(mid_stream > 0, "a kill must land before the end of the frames");
    let (processes, logs) = start_cluster(&crash, &dir, "crash-last");
    run_to_the_end(processes, &logs, &brokers, "crash");
    assert_eq!(events_by_id(&brokers, "crash.events"), want_events, "after the kills: Kafka events by id");
    check_tables("after the kills", &tables(&dir.join("crash").display().to_string(), duckdb), &want_rows);
}
