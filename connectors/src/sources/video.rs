//! A video file or live URL sampled through ffmpeg: `fps` frames a second, as JPEG, with
//! media time from the frame's position in the sampled stream. With HLS on, the same ffmpeg
//! run also cuts the stream into segments for viewers (`crate::hls`), on the same media time.

use std::io::Read;
use std::process::{Child, Command, Stdio};

use vitrine_schemas::spec::{Pace, VideoSource};
use vitrine_schemas::{now_ms, Frame};

use super::{pts_of, FrameSink};
use crate::hls::HlsStream;
use crate::ConnectorError;

/// How often the HLS segment list is read: a segment reaches players this much after ffmpeg closes it.
const HLS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The ffmpeg command line that samples `input` (after `hls_output`, the arguments of a
/// second output: the HLS segments).
pub fn ffmpeg_command(spec: &VideoSource, input: &str, hls_output: &[String]) -> Command {
    let mut cmd = Command::new(&spec.ffmpeg);
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    let is_file = !input.contains("://");
    if spec.pace == Pace::Realtime && is_file {
        cmd.arg("-re"); // a file read at its own speed behaves like a live stream
    }
    if spec.loop_forever && is_file {
        cmd.args(["-stream_loop", "-1"]);
    }
    cmd.args(["-i", input]);
    cmd.args(hls_output);
    cmd.args(["-map", "0:v:0", "-an", "-vf", &format!("fps={}", spec.fps)]);
    cmd.args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "-"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Splits a stream of concatenated JPEGs (ffmpeg's `image2pipe` mjpeg output) into images.
#[derive(Debug, Default)]
pub struct JpegSplitter {
    buf: Vec<u8>,
    scanned: usize,
}

impl JpegSplitter {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole image, if one has arrived. ffmpeg's encoder writes no embedded
    /// thumbnails, so the first end-of-image marker after a start marker ends the image.
    pub fn next_image(&mut self) -> Option<Vec<u8>> {
        let start = self.buf.windows(2).position(|w| w == [0xFF, 0xD8])?;
        if start > 0 {
            self.buf.drain(..start);
            self.scanned = 0;
        }
        let from = self.scanned.max(2);
        let end = self.buf[from..].windows(2).position(|w| w == [0xFF, 0xD9]).map(|i| from + i + 2);
        match end {
            Some(end) => {
                let image: Vec<u8> = self.buf.drain(..end).collect();
                self.scanned = 0;
                Some(image)
            }
            None => {
                self.scanned = self.buf.len().saturating_sub(1);
                None
            }
        }
    }
}

/// HLS cut by one ffmpeg run: the stream's segments, and the media time the run starts at.
#[derive(Clone, Copy, Debug)]
pub struct HlsRun<'a> {
    pub stream: &'a HlsStream,
    pub media_offset_ms: i64,
}

/// Samples the stream into `sink` until it ends (or forever, for loops and live URLs, until
/// the pipeline stops). Returns how many frames were sent. With `hls`, the segments are cut
/// too and listed as ffmpeg finishes them (the caller ends the playlist: a live input that
/// dropped may be read again).
pub fn run(spec: &VideoSource, input: &str, sink: &FrameSink, hls: Option<HlsRun>) -> Result<u64, ConnectorError> {
    let hls_output = match hls {
        Some(run) => run
            .stream
            .next_run(run.media_offset_ms)
            .map_err(|e| ConnectorError::Ffmpeg { input: input.into(), reason: format!("cannot prepare HLS: {e}") })?,
        None => Vec::new(),
    };
    let hls = hls.map(|run| run.stream);
    let mut child: Child = ffmpeg_command(spec, input, &hls_output)
        .spawn()
        .map_err(|e| ConnectorError::NoFfmpeg { program: spec.ffmpeg.clone(), reason: e.to_string() })?;
    tracing::info!(stream = %spec.stream_id, input, fps = spec.fps, pace = ?spec.pace, hls = hls.is_some(), "sampling with ffmpeg");
    let ffmpeg_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let Some(hls) = hls {
            let done = &ffmpeg_done;
            scope.spawn(move || {
                let mut warned = false; // once, not ten times a second
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = hls.poll() {
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(stream = %spec.stream_id, error = %e, "cannot read the HLS segment list");
                        }
                    }
                    std::thread::sleep(HLS_POLL);
                }
                let _ = hls.poll(); // the segments ffmpeg closed as it exited
            });
        }
        let result = read_frames(spec, input, sink, &mut child);
        ffmpeg_done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}

/// Reads ffmpeg's JPEGs into `sink` until it ends or the pipeline stops.
fn read_frames(spec: &VideoSource, input: &str, sink: &FrameSink, child: &mut Child) -> Result<u64, ConnectorError> {
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut splitter = JpegSplitter::default();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut seq = 0u64;
    let mut stopped = false;
    'read: loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(stream = %spec.stream_id, error = %e, "reading ffmpeg output failed");
                break;
            }
        };
        splitter.push(&chunk[..n]);
        while let Some(jpeg) = splitter.next_image() {
            let frame = Frame {
                stream_id: spec.stream_id.clone(),
                seq,
                pts_ms: pts_of(seq, spec.fps),
                captured_at_ms: now_ms(),
                origin: None,
                position: vitrine_schemas::SourcePosition::in_stream(seq),
                jpeg,
                change: Default::default(),
            };
            if !sink.send(frame) {
                stopped = true;
                break 'read;
            }
            seq += 1;
        }
    }
    if stopped {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| ConnectorError::Ffmpeg { input: input.into(), reason: e.to_string() })?;
    let stderr = errors.join().unwrap_or_default();
    if !status.success() && !stopped {
        let reason = stderr.lines().last().unwrap_or("ffmpeg exited with an error").to_string();
        return Err(ConnectorError::Ffmpeg { input: input.into(), reason: format!("{reason} ({status})") });
    }
    tracing::info!(stream = %spec.stream_id, frames = seq, "stream ended");
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::JpegSplitter;

    #[test]
    fn splits_images_across_reads() {
        let a = [0xFF, 0xD8, 1, 2, 0xFF, 0xD9];
        let b = [0xFF, 0xD8, 3, 0xFF, 0x00, 4, 0xFF, 0xD9];
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut s = JpegSplitter::default();
        let mut images = Vec::new();
        for piece in stream.chunks(3) {
            s.push(piece);
            while let Some(i) = s.next_image() {
                images.push(i);
            }
        }
        assert_eq!(images, vec![a.to_vec(), b.to_vec()]);
    }
}
