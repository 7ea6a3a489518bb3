//! Running `vitrine run` over a Kafka frames topic until it has committed everything, and
//! reading back what it wrote: the Parquet tables (by their keys) and a Kafka topic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

use crate::vitrine_bin;

/// Publishes the sample show as each of `streams` to the frames topic (`vitrine sample`,
/// as fast as it goes, 5 frames a second of media time: 180 frames each).
pub fn sample_streams(brokers: &str, streams: &[&str]) {
    for stream in streams {
        let out = Command::new(vitrine_bin())
            .args(["sample", "--stream-id", stream, "--fps", "5", "--fast", "--brokers", brokers, "--url"])
            .arg(crate::root().join("examples/sample/shopping.mp4"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Writes `DIR/GROUP.yaml`: a pipeline `name` reading the frames topic of `brokers` as
/// `group` (naming `streams` up front when any), with the default model, the demo catalog
/// (not watched) and a 1.5 s debounce hold, then `rest` (sinks, server, workers).
pub fn kafka_spec(dir: &Path, name: &str, brokers: &str, group: &str, streams: &[&str], rest: &str) -> PathBuf {
    let streams = if streams.is_empty() { String::new() } else { format!("    streams: [{}]\n", streams.join(", ")) };
    let text = format!(
        "name: {name}\nsources:\n  - kind: kafka\n    brokers: {brokers}\n    group_id: {group}\n{streams}\
         model:\n  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx\n\
         catalog:\n  path: {root}/examples/demo-catalog.jsonl\n  watch: false\n\
         debounce:\n  hold: 1500ms\n{rest}",
        root = crate::root().display()
    );
    let path = dir.join(format!("{group}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The Kafka sink (topics named after `group`, so runs do not mix) and Parquet under
/// `DIR/GROUP`, as spec YAML.
pub fn group_sinks(dir: &Path, brokers: &str, group: &str) -> String {
    format!(
        "sinks:\n  kafka:\n    brokers: {brokers}\n    detections_topic: {group}.detections\n\
         \x20   events_topic: {group}.events\n    dead_letter_topic: {group}.dead-letter\n    partitions: 2\n\
         \x20 parquet:\n    path: {dir}/{group}\n    checkpoint_after: 500ms\n    roll_after: 1s\n    min_dwell: 0s\n",
        dir = dir.display()
    )
}

/// `vitrine topics create SPEC --partitions N`: the frames topic and the spec's result topics.
pub fn create_topics(spec: &Path, partitions: u32) {
    let status = Command::new(vitrine_bin())
        .args(["topics", "create", "--partitions", &partitions.to_string()])
        .arg(spec)
        .status();
    assert!(status.unwrap().success());
}

/// A running `vitrine run`, killed when dropped.
#[derive(Debug)]
pub struct Pipeline(pub Child);

impl Pipeline {
    /// `vitrine run SPEC ARGS...` with `env`, its log (stderr) in `log`.
    pub fn start(spec: &Path, args: &[&str], env: &[(&'static str, String)], log: &Path) -> Pipeline {
        Pipeline::start_with(Command::new(vitrine_bin()), spec, args, env, log)
    }

    /// As [`Pipeline::start`], with `command` (the vitrine binary, possibly behind a wrapper).
    pub fn start_with(
        mut command: Command,
        spec: &Path,
        args: &[&str],
        env: &[(&'static str, String)],
        log: &Path,
    ) -> Pipeline {
        let child = command
            .arg("run")
            .arg(spec)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Pipeline(child)
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill").args([&format!("-{signal}"), &self.0.id().to_string()]).status();
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `group` committed every partition of the frames topic up to its end: every frame's
/// results are durable (commits wait for them). Err says how far it is.
pub fn caught_up(brokers: &str, group: &str) -> Result<(), String> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let metadata =
        consumer.fetch_metadata(Some("vitrine.frames"), Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition("vitrine.frames", p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let mut behind = Vec::new();
    for p in 0..partitions {
        let (_, high) =
            consumer.fetch_watermarks("vitrine.frames", p, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let at = committed.find_partition("vitrine.frames", p).map(|e| e.offset());
        // (Tansu's high watermark can lag the last offset by a few: at or past it is the end.)
        let done = matches!(at, Some(rdkafka::Offset::Offset(at)) if at >= high);
        if high > 0 && !done {
            behind.push(format!("partition {p}: committed {at:?}, end {high}"));
        }
    }
    if behind.is_empty() {
        Ok(())
    } else {
        Err(behind.join("; "))
    }
}

/// The offsets `group` committed on each partition of the frames topic (None: none yet).
pub fn committed(brokers: &str, group: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).create().unwrap();
    let metadata = consumer.fetch_metadata(Some("vitrine.frames"), Duration::from_secs(5)).unwrap();
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition("vitrine.frames", p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(5)).unwrap();
    (0..partitions)
        .map(|p| match committed.find_partition("vitrine.frames", p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Waits until `group` has committed everything, asserting that every process in `running`
/// stays up meanwhile (`logs`: what to show when not).
pub fn wait_caught_up(running: &mut [&mut Pipeline], logs: &[&Path], brokers: &str, group: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    let log_text =
        || logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect::<Vec<_>>().join("\n");
    while let Err(behind) = caught_up(brokers, group) {
        assert!(Instant::now() < deadline, "{group} did not catch up ({behind}):\n{}", log_text());
        for p in running.iter_mut() {
            assert!(p.0.try_wait().unwrap().is_none(), "{group} exited:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The three tables, keyed as issue 10 says, with the columns a replay must reproduce.
#[derive(Debug, PartialEq)]
pub struct Tables {
    pub detections: Vec<Vec<Value>>,
    pub events: Vec<Vec<Value>>,
    pub exposures: Vec<Vec<Value>>,
}

/// The tables under `location` (a folder or s3://...), read by `query` (DuckDB).
pub fn tables(location: &str, query: impl Fn(&str) -> Vec<Vec<Value>>) -> Tables {
    let table = |t: &str| format!("read_parquet('{location}/{t}/**/*.parquet', hive_partitioning = true)");
    Tables {
        detections: query(&format!(
            // Track ids are replayed exactly for catalogued labels only: the replay point does
            // not hold the Kafka commit back for a person in view (README, Offsets).
            "SELECT stream_id, seq, box_index, label, round(score, 4), \
             CASE WHEN label IN ('cup', 'apple', 'orange') THEN track_id END, dt, hour FROM {} ORDER BY ALL",
            table("detections")
        )),
        events: query(&format!(
            "SELECT event_id, kind, stream_id, sku, pts_ms, epoch_ms(captured_at) FROM {} ORDER BY ALL",
            table("product_events")
        )),
        exposures: query(&format!(
            "SELECT stream_id, sku, start_pts_ms, end_pts_ms, frames_seen, round(max_score, 4), appeared_event_id FROM {} ORDER BY ALL",
            table("exposures")
        )),
    }
}

/// Rows whose key (the first `key` columns) appears more than once.
fn repeated(rows: &[Vec<Value>], key: usize) -> Vec<Vec<Value>> {
    let mut seen = BTreeSet::new();
    rows.iter().filter(|r| !seen.insert(format!("{:?}", &r[..key]))).cloned().collect()
}

/// Every row exactly once, and the same rows as `clean`.
pub fn check_tables(name: &str, got: &Tables, clean: &Tables) {
    assert!(repeated(&got.detections, 3).is_empty(), "{name}: repeated detections {:?}", repeated(&got.detections, 3));
    assert!(repeated(&got.events, 1).is_empty(), "{name}: repeated events {:?}", repeated(&got.events, 1));
    assert!(repeated(&got.exposures, 3).is_empty(), "{name}: repeated exposures {:?}", repeated(&got.exposures, 3));
    let missing = |a: &[Vec<Value>], b: &[Vec<Value>]| a.iter().filter(|r| !b.contains(r)).count();
    assert_eq!(
        got.events,
        clean.events,
        "{name}: product events differ ({} missing, {} extra)",
        missing(&clean.events, &got.events),
        missing(&got.events, &clean.events)
    );
    assert_eq!(got.exposures, clean.exposures, "{name}: exposures differ");
    assert!(
        got.detections == clean.detections,
        "{name}: detections differ ({} of {} missing, {} extra)",
        missing(&clean.detections, &got.detections),
        clean.detections.len(),
        missing(&got.detections, &clean.detections)
    );
}

/// Every JSON value of `topic`, from the beginning, until none came for `quiet`.
pub fn topic_values(brokers: &str, topic: &str, quiet: Duration) -> Vec<Value> {
    topic_messages(brokers, topic, quiet).into_iter().map(|(_, value)| value).collect()
}

/// Every message of `topic`, from the beginning, until none came for `quiet`: its headers
/// (as a JSON object of strings) and its JSON value.
pub fn topic_messages(brokers: &str, topic: &str, quiet: Duration) -> Vec<(Value, Value)> {
    topic_messages_with(brokers, &[], topic, quiet)
}

/// [`topic_messages`] with client `settings` besides (TLS, credentials).
pub fn topic_messages_with(
    brokers: &str,
    settings: &[(&str, String)],
    topic: &str,
    quiet: Duration,
) -> Vec<(Value, Value)> {
    use rdkafka::message::Headers;
    let mut config = ClientConfig::new();
    for (name, value) in settings {
        config.set(*name, value);
    }
    // Assigned, not subscribed: no group join to wait for.
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let headers: serde_json::Map<String, Value> = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into()))
                        .collect()
                })
                .unwrap_or_default();
            messages.push((Value::Object(headers), serde_json::from_slice(m.payload().unwrap_or_default()).unwrap()));
            last = Instant::now();
        }
    }
    messages
}
