//! Frames (and catalog lines) that could not be processed, one JSON object a line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use vitrine_schemas::DeadLetter;

use crate::ConnectorError;

#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

impl DeadLetterFile {
    /// Opens (appends to) `path`, creating its folder.
    pub fn open(path: &Path) -> Result<DeadLetterFile, ConnectorError> {
        let err = |e: std::io::Error| ConnectorError::Write { path: path.into(), reason: e.to_string() };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        Ok(DeadLetterFile { path: path.into(), out: BufWriter::new(file), written: 0 })
    }

    /// Writes one dead letter and flushes it, so it survives a crash right after.
    pub fn write(&mut self, letter: &DeadLetter) -> Result<(), ConnectorError> {
        tracing::warn!(stream = %letter.stream_id, seq = letter.seq, stage = %letter.stage, reason = %letter.reason, "dead letter");
        let err = |e: std::io::Error| ConnectorError::Write { path: self.path.clone(), reason: e.to_string() };
        serde_json::to_writer(&mut self.out, letter).map_err(|e| err(e.into()))?;
        self.out.write_all(b"\n").map_err(err)?;
        self.out.flush().map_err(err)?;
        self.written += 1;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }
}
