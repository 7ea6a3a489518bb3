//! Live HLS for viewers. The ffmpeg run that samples a stream's frames also cuts its video
//! (and audio) into MPEG-TS segments, copied without re-encoding, and lists each segment with
//! its media time (the `segment` muxer's CSV list). From that list vitrine keeps the live
//! playlist, stamping each segment with `EXT-X-PROGRAM-DATE-TIME` = the stream's origin +
//! the segment's media time, so a player's position maps exactly onto the events' `pts_ms`
//! (`media time = playing date - media_origin_ms`), whatever the player's own timeline.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vitrine_schemas::spec::HlsSpec;

use crate::time_format::rfc3339;

/// The list ffmpeg appends a line to as it closes each segment: `name,start_s,end_s`.
const SEGMENT_LIST: &str = "segments.csv";

/// One stream's live HLS: where ffmpeg writes it and the playlist made of it.
#[derive(Debug)]
pub struct HlsStream {
    dir: PathBuf,
    /// A folder vitrine made for this run, removed when the stream is dropped.
    temporary: bool,
    segment: Duration,
    window: usize,
    state: RwLock<Playlist>,
}

#[derive(Debug, Default)]
struct Playlist {
    /// Wall-clock time (Unix ms) of media time 0; also names this run's segments, so a URL
    /// never means two different segments (they are cached as immutable).
    origin_ms: i64,
    /// Segments on disk, oldest first: the newest `window` are listed, older ones are kept as
    /// long again for players still fetching them.
    segments: VecDeque<Segment>,
    /// How far the segment list has been read, and a line ffmpeg has not finished yet.
    read_to: u64,
    partial: String,
    ended: bool,
    text: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Segment {
    sequence: u64,
    file: String,
    start_ms: i64,
    duration_s: f64,
}

impl HlsStream {
    /// Prepares the folder for `stream_id`'s segments: `spec.dir` (relative to `base`) or a
    /// fresh temporary folder.
    pub fn create(stream_id: &str, spec: &HlsSpec, base: &Path) -> std::io::Result<Arc<HlsStream>> {
        let (dir, temporary) = match &spec.dir {
            Some(dir) => (base.join(dir).join(stream_id), false),
            None => (std::env::temp_dir().join(format!("vitrine-hls-{}", std::process::id())).join(stream_id), true),
        };
        std::fs::create_dir_all(&dir)?;
        Ok(Arc::new(HlsStream {
            dir,
            temporary,
            segment: spec.segment,
            window: spec.window,
            state: RwLock::new(Playlist::default()),
        }))
    }

    /// Starts a new run of ffmpeg whose media time 0 is now (`origin_ms`): clears what an
    /// earlier run left, and returns the arguments of ffmpeg's HLS output.
    pub fn start(&self, origin_ms: i64) -> std::io::Result<Vec<String>> {
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "ts" || e == "csv") {
                std::fs::remove_file(path)?;
            }
        }
        *self.state.write().unwrap() = Playlist { origin_ms, ..Playlist::default() };
        let path = |name: String| self.dir.join(name).display().to_string();
        Ok([
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c",
            "copy",
            "-f",
            "segment",
            // Keep media time as the frames see it (no shift for B-frame delay).
            "-avoid_negative_ts",
            "disabled",
            "-segment_format",
            "mpegts",
            "-segment_list_type",
            "csv",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([
            "-segment_time".into(),
            format!("{:.3}", self.segment.as_secs_f64()),
            "-segment_list".into(),
            path(SEGMENT_LIST.into()),
            path(format!("{origin_ms}-%08d.ts")),
        ])
        .collect())
    }

    /// Reads the segments ffmpeg has finished since the last call; true if there were any.
    pub fn poll(&self) -> std::io::Result<bool> {
        let mut state = self.state.write().unwrap();
        let mut file = match std::fs::File::open(self.dir.join(SEGMENT_LIST)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(state.read_to))?;
        let mut new = String::new();
        let read = file.read_to_string(&mut new)?;
        state.read_to += read as u64;
        state.partial.push_str(&new);
        let mut added = false;
        while let Some(end) = state.partial.find('\n') {
            let line: String = state.partial.drain(..=end).collect();
            match parse_line(line.trim()) {
                Some((file, start_s, end_s)) => {
                    let sequence = state.segments.back().map_or(0, |s| s.sequence + 1);
                    let start_ms = (start_s * 1000.0).round() as i64;
                    state.segments.push_back(Segment { sequence, file, start_ms, duration_s: end_s - start_s });
                    added = true;
                }
                None => tracing::warn!(line = line.trim(), "unreadable line in ffmpeg's HLS segment list"),
            }
        }
        while state.segments.len() > 2 * self.window {
            let old = state.segments.pop_front().expect("not empty");
            let _ = std::fs::remove_file(self.dir.join(&old.file));
        }
        if added {
            state.text = Some(self.render(&state).into());
        }
        Ok(added)
    }

    /// The stream ended (a file without `loop`): the playlist says no more segments come.
    pub fn end(&self) {
        let _ = self.poll();
        let mut state = self.state.write().unwrap();
        state.ended = true;
        state.text = (!state.segments.is_empty()).then(|| self.render(&state).into());
    }

    /// The live playlist; none before the first segment.
    pub fn playlist(&self) -> Option<Arc<str>> {
        self.state.read().unwrap().text.clone()
    }

    /// Wall-clock time of media time 0 in the playlist's `EXT-X-PROGRAM-DATE-TIME`s; none
    /// before the first segment.
    pub fn media_origin_ms(&self) -> Option<i64> {
        let state = self.state.read().unwrap();
        (!state.segments.is_empty()).then_some(state.origin_ms)
    }

    /// The file of a segment still kept, by its name in the playlist.
    pub fn segment_file(&self, name: &str) -> Option<PathBuf> {
        let state = self.state.read().unwrap();
        state.segments.iter().any(|s| s.file == name).then(|| self.dir.join(name))
    }

    fn render(&self, state: &Playlist) -> String {
        let listed: Vec<&Segment> =
            state.segments.iter().skip(state.segments.len().saturating_sub(self.window)).collect();
        let longest = listed.iter().map(|s| s.duration_s).fold(self.segment.as_secs_f64(), f64::max);
        let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", longest.round().max(1.0) as u64);
        let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{}", listed.first().map_or(0, |s| s.sequence));
        for s in listed {
            let _ = writeln!(text, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(state.origin_ms + s.start_ms));
            let _ = writeln!(text, "#EXTINF:{:.3},\n{}", s.duration_s, s.file);
        }
        if state.ended {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        text
    }
}

impl Drop for HlsStream {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
            if let Some(parent) = self.dir.parent() {
                let _ = std::fs::remove_dir(parent); // only once the last stream's folder is gone
            }
        }
    }
}

/// `name,start,end` (ffmpeg quotes names with commas; ours have none).
fn parse_line(line: &str) -> Option<(String, f64, f64)> {
    let mut fields = line.rsplitn(3, ',');
    let end: f64 = fields.next()?.parse().ok()?;
    let start: f64 = fields.next()?.parse().ok()?;
    let name = fields.next()?;
    let name = Path::new(name).file_name()?.to_str()?.to_owned();
    (end >= start && start >= 0.0).then_some((name, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(window: usize) -> (Arc<HlsStream>, PathBuf) {
        let base = std::env::temp_dir().join(format!("vitrine-hls-test-{}-{window}", std::process::id()));
        let spec = HlsSpec { window, dir: Some(base.display().to_string()), ..HlsSpec::default() };
        let hls = HlsStream::create("s", &spec, Path::new("/")).unwrap();
        (hls, base.join("s"))
    }

    #[test]
    fn the_playlist_stamps_each_segment_with_its_media_time_and_slides() {
        let (hls, dir) = stream(3);
        let origin = 1_764_000_000_000;
        let args = hls.start(origin).unwrap();
        assert!(args.iter().any(|a| a.ends_with(&format!("{origin}-%08d.ts"))), "{args:?}");
        assert!(hls.playlist().is_none() && hls.media_origin_ms().is_none());
        let mut list = String::new();
        for i in 0..7 {
            let name = format!("{origin}-{i:08}.ts");
            std::fs::write(dir.join(&name), b"ts").unwrap();
            list += &format!("{name},{}.000000,{}.000000\n", i * 2, i * 2 + 2);
        }
        // ffmpeg is still writing the last line.
        std::fs::write(dir.join(SEGMENT_LIST), &list[..list.len() - 5]).unwrap();
        assert!(hls.poll().unwrap());
        let text = hls.playlist().unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert!(
            text.contains(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:2.000,\n{origin}-00000005.ts",
                rfc3339(origin + 10_000)
            )),
            "{text}"
        );
        assert!(!text.contains("00000006.ts") && !text.contains("ENDLIST"), "{text}");
        // Older segments than the window stay on disk a window longer, then go.
        assert!(hls.segment_file(&format!("{origin}-00000000.ts")).is_some());
        std::fs::write(dir.join(SEGMENT_LIST), &list).unwrap();
        hls.end();
        let text = hls.playlist().unwrap();
        assert!(text.contains(&format!("{origin}-00000006.ts\n#EXT-X-ENDLIST\n")), "{text}");
        assert!(hls.segment_file(&format!("{origin}-00000000.ts")).is_none());
        assert!(!dir.join(format!("{origin}-00000000.ts")).exists());
        assert!(hls.segment_file("../../etc/passwd").is_none());
        assert_eq!(hls.media_origin_ms(), Some(origin));
        drop(hls);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn a_temporary_folder_goes_with_the_stream() {
        let hls = HlsStream::create("gone", &HlsSpec::default(), Path::new("/")).unwrap();
        let dir = hls.dir.clone();
        assert!(dir.exists());
        drop(hls);
        assert!(!dir.exists());
    }

    #[test]
    fn reads_ffmpeg_list_lines() {
        assert_eq!(parse_line("/tmp/x/1-00000001.ts,1.000000,2.040000"), Some(("1-00000001.ts".into(), 1.0, 2.04)));
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("a.ts,3.0,2.0"), None);
    }
}
