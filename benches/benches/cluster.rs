//! What the exchange between timely processes costs: the same frames (4 streams of the sample
//! show, 720 frames, on a 4-partition topic of a real broker, Tansu) processed by one process
//! with 2 workers and by a cluster of 2 processes with 1 worker each, on the same cores, in
//! one run, alternating, best of three each. Timed from the start of the processes until
//! every frame's offset is committed (model loading and the cluster's connection included).
//!
//!     cargo build --release -p vitrine-pipeline && cargo bench -p vitrine-benches --bench cluster
//!
//! Goal: 2 x 1 at 0.95 or more of 1 x 2.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vitrine_tests::kafka_runs::{caught_up, sample_streams, Pipeline};
use vitrine_tests::{free_port, root, temp_dir, vitrine_bin, Broker};

/// One stream per partition of the 4-partition frames topic (librdkafka: CRC32 of the key).
const STREAMS: [&str; 4] = ["kitchen", "shop2", "garden", "shop1"];
const FRAMES_PER_STREAM: u64 = 180;
const ROUNDS: usize = 3;

fn spec(dir: &Path, brokers: &str, group: &str) -> PathBuf {
    let text = format!(
        r#"
name: bench-cluster
sources:
  - kind: kafka
    brokers: {brokers}
    group_id: {group}
model:
  path: {root}/models/zoo/ssd-mobilenet-v2-coco-quant/model.onnx
catalog:
  path: {root}/examples/demo-catalog.jsonl
  watch: false
workers: 1
"#,
        root = root().display()
    );
    let path = dir.join(format!("{group}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `processes` x `workers` over every frame with a fresh group; frames a second.
fn run(dir: &Path, brokers: &str, group: &str, processes: usize, workers: usize) -> f64 {
    let spec = spec(dir, brokers, group);
    let hostfile = dir.join(format!("{group}.hosts"));
    let hosts: String = (0..processes).map(|_| format!("127.0.0.1:{}\n", free_port())).collect();
    std::fs::write(&hostfile, hosts).unwrap();
    let started = Instant::now();
    let mut running: Vec<Pipeline> = (0..processes)
        .map(|i| {
            let mut args = vec!["--workers".to_string(), workers.to_string()];
            if processes > 1 {
                args.extend(["--processes".into(), processes.to_string(), "--process-id".into(), i.to_string()]);
                args.extend(["--hostfile".into(), hostfile.display().to_string()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Pipeline::start(&spec, &args, &[], &dir.join(format!("{group}-{i}.log")))
        })
        .collect();
    while caught_up(brokers, group).is_err() {
        for p in &mut running {
            assert!(p.0.try_wait().unwrap().is_none(), "{group} exited; see {}", dir.display());
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{group} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    for p in &running {
        p.signal("INT");
    }
    for p in &mut running {
        p.wait_for_exit(Duration::from_secs(60));
    }
    (STREAMS.len() as u64 * FRAMES_PER_STREAM) as f64 / seconds
}

fn main() {
    let broker = Broker::start();
    let brokers = broker.address.clone();
    let dir = temp_dir("bench-cluster");
    let first = spec(&dir, &brokers, "setup");
    let status = Command::new(vitrine_bin()).args(["topics", "create", "--partitions", "4"]).arg(&first).status();
    assert!(status.unwrap().success());
    sample_streams(&brokers, &STREAMS);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which shape goes first, so neither always runs on a warmer machine.
        let shapes = if round % 2 == 0 { [(1, 2), (2, 1)] } else { [(2, 1), (1, 2)] };
        for (processes, workers) in shapes {
            let fps = run(&dir, &brokers, &format!("p{processes}w{workers}r{round}"), processes, workers);
            println!("round {round}: {processes} process(es) x {workers} worker(s): {fps:.1} frames/s");
            if processes == 1 { &mut one } else { &mut two }.push(fps);
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let frames = STREAMS.len() as u64 * FRAMES_PER_STREAM;
    println!();
    println!("| shape ({frames} frames, 4 partitions, best of {ROUNDS}) | frames/s | ratio |");
    println!("|---|---|---|");
    println!("| 1 process x 2 workers | {:.1} | 1.00 |", best(&one));
    println!("| 2 processes x 1 worker (timely over TCP) | {:.1} | {:.2} |", best(&two), best(&two) / best(&one));
}
