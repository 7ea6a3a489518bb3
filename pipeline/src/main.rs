//! The `vitrine` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use vitrine_connectors::kafka::admin::{create_topics, TopicSpec};
use vitrine_connectors::kafka::sampler::{self, SamplerOptions};
use vitrine_pipeline::bench::{bench, BenchOptions};
use vitrine_pipeline::run::{run, RunOptions};
use vitrine_pipeline::{cluster, spec};
use vitrine_schemas::spec::{Pace, SourceSpec};

/// Runs a future to completion on a small runtime (the CLI is otherwise synchronous).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(future)
}

/// Prints a command's report on stdout (as JSON with `json`, else as `table` writes it), or its
/// error on stderr with exit status 1.
fn print_report<R: serde::Serialize>(
    command: &str,
    report: anyhow::Result<R>,
    json: bool,
    table: impl Fn(&R) -> String,
) -> ExitCode {
    match report {
        Ok(report) => {
            let text = if json {
                serde_json::to_string_pretty(&report).expect("a report serialises") + "\n"
            } else {
                table(&report)
            };
            match std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("vitrine {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM sets `stop`; a second one exits at once.
fn stop_on_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || block_on(vitrine_pipeline::run::watch_signals(stop)));
}

/// vitrine: finds the products shown in live shopping streams and tells every viewer, in
/// sync with the video, which product is on screen.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a pipeline spec until its streams end (and, with a server, until Ctrl-C).
    Run {
        /// The YAML pipeline spec.
        spec: PathBuf,
        /// Timely worker threads of this process (overrides the spec's `workers`).
        #[arg(long, env = "VITRINE_WORKERS")]
        workers: Option<usize>,
        /// Processes of the timely cluster (each runs `--workers` threads; Kafka partitions are
        /// spread over all of them).
        #[arg(long, env = "VITRINE_PROCESSES")]
        processes: Option<usize>,
        /// This process's index in the cluster, from 0.
        #[arg(long, env = "VITRINE_PROCESS_ID")]
        process_id: Option<usize>,
        /// The cluster's addresses: one host:port a line, process 0 first.
        #[arg(long, env = "VITRINE_HOSTFILE")]
        hostfile: Option<PathBuf>,
        /// In a Kubernetes StatefulSet: the headless Service's host:port; the process id is
        /// the pod's ordinal (from HOSTNAME) and the peers are the set's other pods.
        #[arg(long, env = "VITRINE_CLUSTER_SERVICE", conflicts_with = "hostfile")]
        cluster_service: Option<String>,
        /// Exit when every stream has ended, even while serving viewers.
        #[arg(long)]
        exit_when_done: bool,
        /// Print the resolved graph (shape, model, sources with the partition-to-worker plan,
        /// catalog, sinks, server) and exit without running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serves viewers apart from the dataflow: follows the state topic that `vitrine run`'s
    /// Kafka sink writes (`sinks.kafka.state_topic`) and serves the viewer protocol, page,
    /// pictures and live HLS of every stream, until SIGTERM or Ctrl-C. Run as many as viewers need.
    Serve {
        /// The dataflow's YAML pipeline spec (its sinks.kafka, server and catalog are used).
        spec: PathBuf,
    },
    /// Checks a spec and reports every problem with its path. Exit status 2 when invalid.
    Validate {
        /// The YAML pipeline spec.
        spec: PathBuf,
    },
    /// Samples a stream (any input ffmpeg reads: RTMP, HLS, SRT, RTSP, a file) into the frames topic.
    Sample {
        /// The stream: a URL or a video file.
        #[arg(long)]
        url: String,
        /// Id of the stream (the message key).
        #[arg(long)]
        stream_id: String,
        /// Frames kept per second of media time.
        #[arg(long, default_value_t = 5.0)]
        fps: f64,
        /// Bootstrap brokers, host:port[,...] (or VITRINE_BROKERS).
        #[arg(long, env = "VITRINE_BROKERS")]
        brokers: String,
        /// The frames topic (created with `--partitions` if missing).
        #[arg(long, default_value = "vitrine.frames")]
        topic: String,
        /// Partitions of the frames topic when it has to be created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Read a file as fast as possible instead of at its own speed.
        #[arg(long)]
        fast: bool,
        /// Start a file again when it ends.
        #[arg(long = "loop")]
        loop_forever: bool,
        /// Reconnects in a row without a frame before giving up on a live stream.
        #[arg(long, default_value_t = 10)]
        max_retries: u32,
        /// The ffmpeg program.
        #[arg(long, default_value = "ffmpeg")]
        ffmpeg: String,
        /// Frames larger than this are sent by reference (written to --spill-dir) instead of inline.
        #[arg(long, default_value_t = vitrine_connectors::kafka::MAX_MESSAGE_BYTES - (64 << 10))]
        max_inline_bytes: usize,
        /// Folder for frames sent by reference; the pipeline reads them via its source's `frame_refs_dir`.
        #[arg(long)]
        spill_dir: Option<PathBuf>,
        /// Also write the stream's live HLS into DIR/{stream-id}/ (a folder the pipeline serves
        /// through its Kafka source's `hls_dir`), cut from the same ffmpeg run as the frames.
        #[arg(long, value_name = "DIR")]
        hls_dir: Option<PathBuf>,
        /// Target length of an HLS segment (segments are cut at the input's keyframes).
        #[arg(long, default_value = "1s", value_parser = humantime_serde::re::humantime::parse_duration)]
        hls_segment: std::time::Duration,
    },
    /// Measures the pipeline against the raw model loop (and a per-frame Python peer) on the
    /// spec's first source: frames/s, their ratio, and frame-to-viewer latency.
    Bench {
        /// The YAML pipeline spec (its model, decode settings and first source are used).
        spec: PathBuf,
        /// Streams fed at once.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Frames a second of each stream in the latency run.
        #[arg(long, default_value_t = 5.0)]
        fps: f64,
        /// Timely workers of the pipeline (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Seconds each raw-loop setting runs, at least.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Python with onnxruntime, numpy and Pillow, to run the peer baseline (benches/peer/).
        #[arg(long)]
        peer_python: Option<PathBuf>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Scores the product events of a recorded show against what a person labelled on it
    /// (docs/eval.md): entrances announced in time, false cards, timing, and model runs.
    Eval {
        /// The YAML pipeline spec; its sources are the recordings (kind video or frames).
        spec: PathBuf,
        /// The truth file (YAML or JSON): per stream, segments of media time and the products on screen.
        #[arg(long)]
        truth: PathBuf,
        /// How far from the truth an entrance or exit may be and still count as in time.
        #[arg(long, default_value = "500ms", value_parser = humantime_serde::re::humantime::parse_duration)]
        tolerance: std::time::Duration,
        /// Timely workers (default: the spec's).
        #[arg(long)]
        workers: Option<usize>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Prints a signed viewer token for a stream (the spec's server.token_secret_env holds the secret).
    Token {
        /// The YAML pipeline spec.
        spec: PathBuf,
        /// The stream the token lets its holder watch.
        #[arg(long)]
        stream: String,
        /// How long the token is valid, e.g. 2h.
        #[arg(long, default_value = "4h", value_parser = humantime_serde::re::humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Prints the Athena CREATE EXTERNAL TABLE statements for the spec's Parquet tables.
    AthenaDdl {
        /// The YAML pipeline spec (its sinks.parquet.path says where the tables are).
        spec: PathBuf,
        /// Where Athena finds the tables, when not the spec's path (a local folder synced to S3).
        #[arg(long)]
        location: Option<String>,
        /// The database (schema) to create them in.
        #[arg(long, default_value = "vitrine")]
        database: String,
        /// The first day partition projection covers (YYYY-MM-DD).
        #[arg(long, default_value = "2024-01-01")]
        since: String,
    },
    /// Kafka topics of a spec.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Creates the spec's topics that do not exist yet (frames, catalog, detections, product events, dead letters).
    Create {
        /// The YAML pipeline spec.
        spec: PathBuf,
        /// Partitions of each topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VITRINE_LOG")
        // (object_store logs each of its quick retries; the publisher logs what they come to.)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn,object_store=warn"));
    // Colours only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads a spec or prints every problem and returns exit status 2.
fn load_spec(path: &std::path::Path) -> Result<spec::LoadedSpec, ExitCode> {
    spec::load(path).map_err(|problems| {
        eprintln!("{}: {} problem{} found", path.display(), problems.len(), if problems.len() == 1 { "" } else { "s" });
        for p in &problems {
            eprintln!("  {p}");
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    vitrine_pipeline::supervise::log_panics();
    match cli.command {
        Command::Bench { spec, streams, fps, workers, seconds, peer_python, json } => {
            let loaded = match load_spec(&spec) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            if !(fps > 0.0 && fps <= 120.0) || streams == 0 || seconds <= 0.0 {
                eprintln!("vitrine bench: --fps must be in (0, 120], --streams and --seconds above 0");
                return ExitCode::from(2);
            }
            let options = BenchOptions { streams, fps, workers, seconds, peer_python, work_dir: None };
            print_report("bench", bench(&loaded, &options), json, |r| r.table())
        }
        Command::Eval { spec, truth, tolerance, workers, json } => {
            let loaded = match load_spec(&spec) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let truth = match vitrine_pipeline::eval::load_truth(&truth) {
                Ok(truth) => truth,
                Err(e) => {
                    eprintln!("vitrine eval: {e:#}");
                    return ExitCode::from(2);
                }
            };
            // (The run watches Ctrl-C and SIGTERM itself, setting `stop`.)
            let stop = Arc::new(AtomicBool::new(false));
            let options = vitrine_pipeline::eval::EvalOptions { tolerance, workers };
            print_report("eval", vitrine_pipeline::eval::eval(loaded, &truth, &options, stop), json, |r| r.table())
        }
        Command::Token { spec, stream, ttl } => {
            let loaded = match load_spec(&spec) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let Some(server) = &loaded.spec.server else {
                eprintln!("vitrine token: {} has no server section", spec.display());
                return ExitCode::from(2);
            };
            let secret = match vitrine_pipeline::run::viewer_access(server) {
                Ok(access) => access.token_secret,
                Err(e) => {
                    eprintln!("vitrine token: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let Some(secret) = secret else {
                eprintln!("vitrine token: the spec asks for no tokens (set server.token_secret_env)");
                return ExitCode::from(2);
            };
            let expires = vitrine_schemas::now_ms() / 1000 + ttl.as_secs() as i64;
            let token = vitrine_connectors::server::access::make_token(&secret, &stream, expires);
            match std::io::Write::write_all(&mut std::io::stdout(), format!("{token}\n").as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Validate { spec } => match load_spec(&spec) {
            Ok(_) => {
                eprintln!("{}: ok", spec.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Sample {
            url,
            stream_id,
            fps,
            brokers,
            topic,
            partitions,
            fast,
            loop_forever,
            max_retries,
            ffmpeg,
            max_inline_bytes,
            spill_dir,
            hls_dir,
            hls_segment,
        } => {
            let source = vitrine_schemas::spec::VideoSource {
                stream_id,
                input: url.clone(),
                fps,
                pace: if fast { Pace::Fast } else { Pace::Realtime },
                loop_forever,
                ffmpeg,
                hls: None,
            };
            if !vitrine_schemas::spec::valid_stream_id(&source.stream_id) {
                eprintln!(
                    "vitrine sample: --stream-id `{}` must use only letters, digits, `-`, `_` and `.`",
                    source.stream_id
                );
                return ExitCode::from(2);
            }
            if !(fps > 0.0 && fps <= 120.0) {
                eprintln!("vitrine sample: --fps must be above 0 and at most 120, got {fps}");
                return ExitCode::from(2);
            }
            let topics = [TopicSpec::frames(&topic, partitions)];
            if let Err(e) = block_on(create_topics(&brokers, &topics)) {
                eprintln!("vitrine sample: {e}");
                return ExitCode::FAILURE;
            }
            if hls_segment < std::time::Duration::from_millis(500) || hls_segment > std::time::Duration::from_secs(10) {
                eprintln!("vitrine sample: --hls-segment must be between 500ms and 10s (e.g. `1s`)");
                return ExitCode::from(2);
            }
            let hls = match hls_dir {
                Some(dir) => {
                    let spec = vitrine_schemas::spec::HlsSpec { segment: hls_segment, ..Default::default() };
                    match vitrine_connectors::hls::HlsStream::published(&dir, &source.stream_id, &spec) {
                        Ok(hls) => Some(hls),
                        Err(e) => {
                            eprintln!("vitrine sample: cannot write HLS into {}: {e}", dir.display());
                            return ExitCode::FAILURE;
                        }
                    }
                }
                None => None,
            };
            let options =
                SamplerOptions { source, input: url, brokers, topic, max_retries, max_inline_bytes, spill_dir, hls };
            let stop = Arc::new(AtomicBool::new(false));
            stop_on_signals(stop.clone());
            match sampler::run(&options, stop) {
                Ok(stats) => {
                    eprintln!(
                        "vitrine sample: {} frames ({:.1} MB) published to {}, {} reconnects",
                        stats.frames,
                        stats.bytes as f64 / 1e6,
                        options.topic,
                        stats.reconnects
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vitrine sample: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::AthenaDdl { spec, location, database, since } => {
            use std::io::Write;
            let loaded = match load_spec(&spec) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let location = match (location, &loaded.spec.sinks.parquet) {
                (Some(location), _) => location,
                (None, Some(p)) if p.path.starts_with("s3://") || p.path.starts_with("s3a://") => {
                    p.path.replacen("s3a://", "s3://", 1)
                }
                (None, Some(p)) => {
                    eprintln!(
                        "vitrine athena-ddl: {} writes its tables to the folder `{}`; Athena reads S3: pass --location s3://bucket/prefix where they are synced, or write them there (sinks.parquet.path: s3://...)",
                        spec.display(),
                        p.path
                    );
                    return ExitCode::from(2);
                }
                (None, None) => {
                    eprintln!("vitrine athena-ddl: {} has no sinks.parquet: it writes no tables", spec.display());
                    return ExitCode::from(2);
                }
            };
            if since.len() != 10 || since.split('-').count() != 3 {
                eprintln!("vitrine athena-ddl: --since {since}: write a day as YYYY-MM-DD");
                return ExitCode::from(2);
            }
            let ddl = vitrine_schemas::tables::athena_ddl(&location, &database, &since);
            if std::io::stdout().write_all(ddl.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Command::Topics { command: TopicsCommand::Create { spec, partitions } } => {
            let loaded = match load_spec(&spec) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let mut wanted: Vec<(String, TopicSpec)> = Vec::new();
            for source in &loaded.spec.sources {
                if let SourceSpec::Kafka(k) = source {
                    wanted.push((k.brokers.clone(), TopicSpec::frames(&k.topic, partitions)));
                }
            }
            if let Some(c) = &loaded.spec.catalog.kafka {
                wanted.push((c.brokers.clone(), TopicSpec::compacted(&c.topic, 1)));
            }
            if let Some(k) = &loaded.spec.sinks.kafka {
                for t in [&k.detections_topic, &k.events_topic, &k.dead_letter_topic] {
                    wanted.push((k.brokers.clone(), TopicSpec::results(t, partitions)));
                }
                // One partition: one order of every stream's events, for `vitrine serve`.
                wanted.push((k.brokers.clone(), TopicSpec::compacted(&k.state_topic, 1)));
            }
            if wanted.is_empty() {
                eprintln!("{}: no Kafka source or sink, so no topics to create", spec.display());
                return ExitCode::SUCCESS;
            }
            for (brokers, topic) in wanted {
                match block_on(create_topics(&brokers, std::slice::from_ref(&topic))) {
                    Ok(created) if created.is_empty() => eprintln!("{}: exists", topic.name),
                    Ok(_) => eprintln!("{}: created with {} partitions", topic.name, topic.partitions),
                    Err(e) => {
                        eprintln!("vitrine topics create: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Serve { spec } => {
            let loaded = match load_spec(&spec) {
                Ok(l) => l,
                Err(code) => return code,
            };
            match vitrine_pipeline::run::serve_viewers(loaded, Arc::new(AtomicBool::new(false))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vitrine serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { spec, workers, processes, process_id, hostfile, cluster_service, exit_when_done, dry_run } => {
            let loaded = match load_spec(&spec) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let threads = workers.unwrap_or(loaded.spec.workers.get());
            let pod_name = std::env::var("HOSTNAME").unwrap_or_default();
            let peers = match (&hostfile, &cluster_service) {
                (Some(hostfile), _) => cluster::Peers::Hostfile(hostfile),
                (None, Some(service)) => cluster::Peers::StatefulSet { pod_name: &pod_name, service },
                (None, None) => cluster::Peers::None,
            };
            let shape = match cluster::shape(threads, processes, process_id, peers) {
                Ok(shape) => shape,
                Err(e) => {
                    eprintln!("vitrine: {e:#}");
                    return ExitCode::from(2);
                }
            };
            if dry_run {
                let plan = vitrine_pipeline::plan::describe_plan(&loaded, &shape);
                return match std::io::Write::write_all(&mut std::io::stdout(), plan.as_bytes()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                };
            }
            let stop = Arc::new(AtomicBool::new(false));
            let options = RunOptions {
                workers: Some(shape.workers),
                cluster: shape.cluster,
                exit_when_done,
                record_latencies: false,
                record_events: false,
            };
            match run(loaded, options, stop) {
                Ok(summary) => {
                    let shed = match summary.frames_shed {
                        0 => String::new(),
                        n => format!(" ({n} more shed: the model was behind a live stream)"),
                    };
                    eprintln!(
                        "vitrine: {} frames{shed}, {} product events, {} dead letters in {:.1} s",
                        summary.frames, summary.events, summary.dead_letters, summary.seconds
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vitrine: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
