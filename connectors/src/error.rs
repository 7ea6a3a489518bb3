use std::path::PathBuf;

/// Errors of sources and sinks. `retryable` says whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("could not start {program}: {reason}. Install ffmpeg (e.g. `apt-get install ffmpeg`, or run scripts/setup.sh) or set `ffmpeg:` in the source to its path")]
    NoFfmpeg { program: String, reason: String },
    #[error("ffmpeg could not read {input}: {reason}")]
    Ffmpeg { input: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "cannot listen on {addr}: {reason}. Is another process using the port? Set server.listen or VITRINE_LISTEN"
    )]
    Listen { addr: String, reason: String },
}

impl ConnectorError {
    /// Whether the same operation may succeed later (a full disk, a dropped stream) or not
    /// (a missing program, a bad path).
    pub fn retryable(&self) -> bool {
        matches!(self, ConnectorError::Ffmpeg { .. } | ConnectorError::Write { .. })
    }
}
