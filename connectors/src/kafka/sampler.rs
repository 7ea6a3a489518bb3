//! `vitrine sample`: the frame sampler. Reads any input ffmpeg reads, keeps `fps` frames a
//! second as JPEG and publishes each to the frames topic (key = stream id, metadata in
//! headers). A live stream that drops is reconnected with back-off; media time and `seq`
//! carry on where they were, so consumers see one gapless stream. With `--hls-dir` it also
//! writes the stream's live HLS there, on the frames' media time, for the pipeline to serve.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use vitrine_schemas::spec::VideoSource;
use vitrine_schemas::Frame;

use super::frames::frame_headers;
use super::sink::DeliveryReports;
use super::{client_config, describe};
use crate::hls::HlsStream;
use crate::sources::video::HlsRun;
use crate::sources::{video, FrameSink};
use crate::ConnectorError;

/// What `vitrine sample` was asked to do.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    pub source: VideoSource,
    /// The resolved input (file path or URL).
    pub input: String,
    pub brokers: String,
    pub topic: String,
    /// Give up after this many reconnects in a row without a frame (live inputs).
    pub max_retries: u32,
    /// Frames larger than this are sent by reference instead of inline.
    pub max_inline_bytes: usize,
    /// Where frames sent by reference are written (a volume the pipeline also sees).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Live HLS of the stream, written into a folder the pipeline serves.
    pub hls: Option<Arc<HlsStream>>,
}

/// Writes a frame to the spill folder (whole, then renamed) and returns its `file://` URL.
fn spill(dir: &std::path::Path, frame: &Frame) -> Result<String, String> {
    let folder = dir.join(&frame.stream_id);
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let path = folder.join(format!("{:010}.jpg", frame.seq));
    let tmp = folder.join(format!(".{:010}.jpg.tmp", frame.seq));
    std::fs::write(&tmp, &frame.jpeg).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let path = path.canonicalize().map_err(|e| e.to_string())?;
    Ok(format!("file://{}", path.display()))
}

/// What the sampler did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SamplerStats {
    pub frames: u64,
    pub bytes: u64,
    pub reconnects: u64,
}

/// Samples until the input ends (a file), `stop` is set, or a live input stays down.
pub fn run(options: &SamplerOptions, stop: Arc<AtomicBool>) -> Result<SamplerStats, String> {
    let result = sample(options, stop);
    if let Some(hls) = &options.hls {
        hls.end();
    }
    result
}

fn sample(options: &SamplerOptions, stop: Arc<AtomicBool>) -> Result<SamplerStats, String> {
    let producer: ThreadedProducer<DeliveryReports> = client_config(&options.brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(DeliveryReports::default())
        .map_err(|e| describe(&e, &options.brokers))?;
    let live = options.input.contains("://") || options.source.loop_forever;
    let mut stats = SamplerStats::default();
    let mut failures = 0u32;
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let (tx, rx) = mpsc::sync_channel::<Frame>(8);
        let sink = FrameSink { frames: tx, stop: stop.clone(), mark: None, wake: Default::default() };
        let source = options.source.clone();
        let input = options.input.clone();
        let before = stats.frames;
        let hls = options.hls.clone();
        let media_offset_ms = crate::sources::pts_of(before, options.source.fps);
        let reader = std::thread::spawn(move || {
            let run = hls.as_deref().map(|stream| HlsRun { stream, media_offset_ms });
            video::run(&source, &input, &sink, run)
        });
        for mut frame in rx {
            // Continue numbering across reconnects: one gapless stream for consumers.
            frame.seq += before;
            frame.pts_ms = crate::sources::pts_of(frame.seq, options.source.fps);
            let mut headers = frame_headers(&frame);
            let mut payload: &[u8] = &frame.jpeg;
            if frame.jpeg.len() > options.max_inline_bytes {
                let Some(dir) = &options.spill_dir else {
                    return Err(format!(
                        "frame {} is {} bytes, over --max-inline-bytes {}: give --spill-dir (a folder the pipeline can read) to send large frames by reference",
                        frame.seq,
                        frame.jpeg.len(),
                        options.max_inline_bytes
                    ));
                };
                let url = spill(dir, &frame)?;
                headers = headers
                    .insert(rdkafka::message::Header { key: super::headers::FRAME_URL, value: Some(url.as_bytes()) });
                payload = &[];
            }
            let mut record = BaseRecord::to(&options.topic).key(&frame.stream_id).payload(payload).headers(headers);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                        producer.poll(Duration::from_millis(50));
                        record = r;
                    }
                    Err((e, _)) => {
                        return Err(format!("cannot publish to {}: {}", options.topic, describe(&e, &options.brokers)))
                    }
                }
            }
            stats.frames += 1;
            stats.bytes += frame.jpeg.len() as u64;
            if last_report.elapsed() >= Duration::from_secs(2) {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(
                    stream = %options.source.stream_id,
                    frames = stats.frames,
                    media_s = format!("{:.1}", frame.pts_ms as f64 / 1000.0),
                    fps = format!("{:.1}", stats.frames as f64 / secs),
                    kb_per_s = format!("{:.0}", stats.bytes as f64 / 1024.0 / secs),
                    "sampling"
                );
                last_report = Instant::now();
            }
        }
        let result = reader.join().map_err(|_| "the ffmpeg reader panicked".to_string())?;
        let got_frames = stats.frames > before;
        match result {
            Err(e @ ConnectorError::NoFfmpeg { .. }) => return Err(e.to_string()),
            // A first attempt that yields nothing is a bad input (a typo, a stream not live): say so now.
            Err(e) if !live || stats.frames == 0 => return Err(e.to_string()),
            Ok(_) if !live || stop.load(Ordering::Relaxed) => break,
            other => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                failures = if got_frames { 0 } else { failures + 1 };
                if failures > options.max_retries {
                    let why = other.err().map(|e| e.to_string()).unwrap_or_else(|| "the stream ended".into());
                    return Err(format!("giving up after {} reconnects: {why}", options.max_retries));
                }
                let wait = Duration::from_millis(500 * 2u64.pow(failures.min(6)));
                tracing::warn!(stream = %options.source.stream_id, wait_ms = wait.as_millis() as u64, error = ?other.err().map(|e| e.to_string()), "stream dropped; reconnecting");
                stats.reconnects += 1;
                std::thread::sleep(wait);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).map_err(|e| describe(&e, &options.brokers))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} frames could not be delivered to {}", options.topic));
    }
    Ok(stats)
}
