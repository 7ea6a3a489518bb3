//! The `vitrine` command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use vitrine_pipeline::run::{run, RunOptions};
use vitrine_pipeline::spec;

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
        /// Timely worker threads (overrides the spec's `workers`).
        #[arg(long)]
        workers: Option<usize>,
        /// Exit when every stream has ended, even while serving viewers.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Checks a spec and reports every problem with its path. Exit status 2 when invalid.
    Validate {
        /// The YAML pipeline spec.
        spec: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VITRINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    match cli.command {
        Command::Validate { spec } => match load_spec(&spec) {
            Ok(_) => {
                eprintln!("{}: ok", spec.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { spec, workers, exit_when_done } => {
            let loaded = match load_spec(&spec) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let stop = Arc::new(AtomicBool::new(false));
            match run(loaded, RunOptions { workers, exit_when_done }, stop) {
                Ok(summary) => {
                    eprintln!(
                        "vitrine: {} frames, {} product events, {} dead letters in {:.1} s",
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
