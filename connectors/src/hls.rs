//! Live HLS for viewers. The ffmpeg run that samples a stream's frames also cuts its video
//! (and audio) into MPEG-TS segments, copied without re-encoding, and lists each segment with
//! its media time (the `segment` muxer's CSV list). From that list vitrine keeps the live
//! playlist, stamping each segment with `EXT-X-PROGRAM-DATE-TIME` = the stream's origin +
//! the segment's media time, so a player's position maps exactly onto the events' `pts_ms`
//! (`media time = playing date - media_origin_ms`), whatever the player's own timeline.
//!
//! A live input that drops is read again by a new ffmpeg run whose media time carries on
//! (`vitrine sample`): its segments follow an `EXT-X-DISCONTINUITY`, on the same clock. The
//! sampler also writes the playlist into the folder ([`PLAYLIST`], with the origin in
//! [`ORIGIN_TAG`]) for a pipeline that serves the folder.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vitrine_schemas::now_ms;
use vitrine_schemas::spec::HlsSpec;

use crate::time_format::rfc3339;

/// The playlist, in the folder of a stream whose HLS is published (`vitrine sample --hls-dir`).
pub const PLAYLIST: &str = "live.m3u8";
/// The playlist tag that gives the wall-clock time (Unix ms) of media time 0.
pub const ORIGIN_TAG: &str = "#EXT-X-VITRINE-MEDIA-ORIGIN-MS:";

/// One stream's live HLS: where ffmpeg writes it and the playlist made of it.
#[derive(Debug)]
pub struct HlsStream {
    dir: PathBuf,
    /// A folder vitrine made for this run, removed when the stream is dropped.
    temporary: bool,
    /// Also keep the playlist in the folder, for a server elsewhere.
    publish: bool,
    segment: Duration,
    window: usize,
    state: RwLock<Playlist>,
}

#[derive(Debug, Default)]
struct Playlist {
    /// Wall-clock time (Unix ms) of media time 0; also names this vitrine's segments, so a
    /// URL never means two different segments (they are cached as immutable).
    origin_ms: i64,
    /// ffmpeg runs so far, and the media time where the current one starts.
    runs: u32,
    run_offset_ms: i64,
    /// Segments on disk, oldest first: the newest `window` are listed, older ones are kept as
    /// long again for players still fetching them.
    segments: VecDeque<Segment>,
    /// Discontinuities that went with old segments (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuities_gone: u64,
    /// How far the current run's segment list has been read, and a line ffmpeg has not finished.
    read_to: u64,
    partial: String,
    /// The next segment starts a new run.
    run_starts: bool,
    /// Whether the log already said that the input's keyframes are too far apart.
    warned_long: bool,
    ended: bool,
    text: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Segment {
    sequence: u64,
    file: String,
    start_ms: i64,
    duration_s: f64,
    /// The first segment of a later ffmpeg run.
    discontinuity: bool,
}

impl HlsStream {
    /// The HLS of an embedded video source: in `spec.dir/{stream_id}` (relative to `base`) or
    /// a fresh temporary folder.
    pub fn create(stream_id: &str, spec: &HlsSpec, base: &Path) -> std::io::Result<Arc<HlsStream>> {
        match &spec.dir {
            Some(dir) => HlsStream::new(base.join(dir).join(stream_id), false, false, spec),
            None => {
                let dir = std::env::temp_dir().join(format!("vitrine-hls-{}", std::process::id())).join(stream_id);
                HlsStream::new(dir, true, false, spec)
            }
        }
    }

    /// The HLS `vitrine sample` writes into `dir/{stream_id}`, playlist included, for a
    /// pipeline that serves the folder (the Kafka source's `hls_dir`).
    pub fn published(dir: &Path, stream_id: &str, spec: &HlsSpec) -> std::io::Result<Arc<HlsStream>> {
        HlsStream::new(dir.join(stream_id), false, true, spec)
    }

    fn new(dir: PathBuf, temporary: bool, publish: bool, spec: &HlsSpec) -> std::io::Result<Arc<HlsStream>> {
        std::fs::create_dir_all(&dir)?;
        let state = RwLock::new(Playlist::default());
        Ok(Arc::new(HlsStream { dir, temporary, publish, segment: spec.segment, window: spec.window, state }))
    }

    /// Prepares ffmpeg's next run, whose media time starts at `media_offset_ms`, and returns
    /// the arguments of its HLS output. The first run clears what an earlier vitrine left and
    /// puts media time 0 at now; a later one carries on after a discontinuity.
    pub fn next_run(&self, media_offset_ms: i64) -> std::io::Result<Vec<String>> {
        let mut state = self.state.write().unwrap();
        if state.runs == 0 {
            for entry in std::fs::read_dir(&self.dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "ts" || e == "csv" || e == "m3u8") {
                    std::fs::remove_file(path)?;
                }
            }
            *state = Playlist { origin_ms: now_ms() - media_offset_ms, ..Playlist::default() };
        } else {
            let _ = std::fs::remove_file(self.dir.join(list_name(state.runs - 1)));
            (state.read_to, state.partial, state.run_starts) = (0, String::new(), true);
        }
        state.run_offset_ms = media_offset_ms;
        state.runs += 1;
        let (origin_ms, run) = (state.origin_ms, state.runs - 1);
        drop(state);
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
            path(list_name(run)),
            path(format!("{origin_ms}-{run}-%06d.ts")),
        ])
        .collect())
    }

    /// Reads the segments ffmpeg has finished since the last call; true if there were any.
    pub fn poll(&self) -> std::io::Result<bool> {
        let mut state = self.state.write().unwrap();
        if state.runs == 0 {
            return Ok(false);
        }
        let mut file = match std::fs::File::open(self.dir.join(list_name(state.runs - 1))) {
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
            let Some((file, start_s, end_s)) = parse_line(line.trim()) else {
                tracing::warn!(line = line.trim(), "unreadable line in ffmpeg's HLS segment list");
                continue;
            };
            let segment = Segment {
                sequence: state.segments.back().map_or(0, |s| s.sequence + 1),
                file,
                start_ms: state.run_offset_ms + (start_s * 1000.0).round() as i64,
                duration_s: end_s - start_s,
                discontinuity: std::mem::take(&mut state.run_starts) && !state.segments.is_empty(),
            };
            // Players start a few segments behind the end: long ones put them far behind live.
            if segment.duration_s > 2.0 * self.segment.as_secs_f64() && !std::mem::replace(&mut state.warned_long, true)
            {
                tracing::warn!(
                    segment_s = segment.duration_s,
                    target_s = self.segment.as_secs_f64(),
                    "HLS segments run long: the input's keyframes are that far apart; set the encoder's keyframe interval to the segment length (1-2 s)"
                );
            }
            state.segments.push_back(segment);
            added = true;
        }
        while state.segments.len() > 2 * self.window {
            let old = state.segments.pop_front().expect("not empty");
            state.discontinuities_gone += u64::from(old.discontinuity);
            let _ = std::fs::remove_file(self.dir.join(&old.file));
        }
        if added {
            self.update(&mut state)?;
        }
        Ok(added)
    }

    /// The stream ended (a file without `loop`, or a live input that stayed down): the
    /// playlist says no more segments come.
    pub fn end(&self) {
        let _ = self.poll();
        let mut state = self.state.write().unwrap();
        state.ended = true;
        if !state.segments.is_empty() {
            if let Err(e) = self.update(&mut state) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the last HLS playlist");
            }
        }
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

    fn update(&self, state: &mut Playlist) -> std::io::Result<()> {
        let text: Arc<str> = self.render(state).into();
        if self.publish {
            // Whole, then renamed: a server reading the folder never sees half a playlist.
            let tmp = self.dir.join(".live.m3u8.tmp");
            std::fs::write(&tmp, text.as_bytes())?;
            std::fs::rename(&tmp, self.dir.join(PLAYLIST))?;
        }
        state.text = Some(text);
        Ok(())
    }

    fn render(&self, state: &Playlist) -> String {
        let unlisted = state.segments.len().saturating_sub(self.window);
        let listed: Vec<&Segment> = state.segments.iter().skip(unlisted).collect();
        let longest = listed.iter().map(|s| s.duration_s).fold(self.segment.as_secs_f64(), f64::max);
        let discontinuities = state.discontinuities_gone
            + state.segments.iter().take(unlisted).filter(|s| s.discontinuity).count() as u64;
        let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(text, "#EXT-X-TARGETDURATION:{}", longest.round().max(1.0) as u64);
        let _ = writeln!(text, "#EXT-X-MEDIA-SEQUENCE:{}", listed.first().map_or(0, |s| s.sequence));
        let _ = writeln!(text, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities}");
        let _ = writeln!(text, "{ORIGIN_TAG}{}", state.origin_ms);
        for s in listed {
            if s.discontinuity {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
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

/// The list of ffmpeg run `run`, to which it appends `name,start_s,end_s` as it closes each segment.
fn list_name(run: u32) -> String {
    format!("segments-{run}.csv")
}

/// The wall-clock time of media time 0 of a published playlist ([`ORIGIN_TAG`]).
pub fn origin_of(playlist: &str) -> Option<i64> {
    playlist.lines().find_map(|l| l.strip_prefix(ORIGIN_TAG)).and_then(|v| v.trim().parse().ok())
}

/// Whether `name` can be a segment of ours: `{origin}-{run}-{n}.ts`, nothing that leaves the folder.
pub fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".ts").is_some_and(|stem| {
        let parts: Vec<&str> = stem.split('-').collect();
        parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A line of ffmpeg's segment list, `name,start_s,end_s` (ffmpeg quotes names with commas;
/// ours have none): the segment's file name (no folder) and its times; None when it is not one.
pub fn parse_line(line: &str) -> Option<(String, f64, f64)> {
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

    fn stream(name: &str, window: usize) -> (Arc<HlsStream>, PathBuf) {
        let base = std::env::temp_dir().join(format!("vitrine-hls-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let spec = HlsSpec { window, ..HlsSpec::default() };
        let hls = HlsStream::published(&base, "s", &spec).unwrap();
        (hls, base.join("s"))
    }

    /// What ffmpeg does: writes segments of `seconds` and lists them (the last line unfinished
    /// when `partial`).
    fn ffmpeg_writes(dir: &Path, args: &[String], seconds: &[(f64, f64)], partial: bool) {
        let template = args.last().unwrap().rsplit('/').next().unwrap().to_string();
        let list = args[args.iter().position(|a| a == "-segment_list").unwrap() + 1].clone();
        let mut text = String::new();
        for (i, (start, end)) in seconds.iter().enumerate() {
            let name = template.replace("%06d", &format!("{i:06}"));
            std::fs::write(dir.join(&name), b"G").unwrap();
            text += &format!("{name},{start:.6},{end:.6}\n");
        }
        std::fs::write(list, if partial { &text[..text.len() - 5] } else { &text }).unwrap();
    }

    #[test]
    fn the_playlist_stamps_each_segment_with_its_media_time_and_slides() {
        let (hls, dir) = stream("slides", 3);
        let args = hls.next_run(0).unwrap();
        assert!(hls.playlist().is_none() && hls.media_origin_ms().is_none());
        let times: Vec<(f64, f64)> = (0..7).map(|i| (i as f64 * 2.0, i as f64 * 2.0 + 2.0)).collect();
        ffmpeg_writes(&dir, &args, &times, true); // ffmpeg is still writing the last line
        assert!(hls.poll().unwrap());
        let origin = hls.media_origin_ms().unwrap();
        assert!((origin - now_ms()).abs() < 5000);
        let text = hls.playlist().unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        let fifth =
            format!("#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:2.000,\n{origin}-0-000005.ts", rfc3339(origin + 10_000));
        assert!(text.contains(&fifth), "{text}");
        assert!(!text.contains("000006.ts") && !text.contains("ENDLIST"), "{text}");
        // Published: the folder holds the same playlist, with the origin for its reader.
        let published = std::fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert_eq!(published, &*text);
        assert_eq!(origin_of(&published), Some(origin));
        // Older segments than the window stay on disk a window longer, then go.
        assert!(hls.segment_file(&format!("{origin}-0-000000.ts")).is_some());
        ffmpeg_writes(&dir, &args, &times, false);
        hls.end();
        let text = hls.playlist().unwrap();
        assert!(text.contains(&format!("{origin}-0-000006.ts\n#EXT-X-ENDLIST\n")), "{text}");
        assert!(hls.segment_file(&format!("{origin}-0-000000.ts")).is_none());
        assert!(!dir.join(format!("{origin}-0-000000.ts")).exists());
        assert!(hls.segment_file("../../etc/passwd").is_none());
    }

    #[test]
    fn a_reconnected_run_carries_on_after_a_discontinuity() {
        let (hls, dir) = stream("reconnect", 4);
        let first = hls.next_run(0).unwrap();
        ffmpeg_writes(&dir, &first, &[(0.0, 1.0), (1.0, 2.0), (2.0, 2.6)], false);
        hls.poll().unwrap();
        let origin = hls.media_origin_ms().unwrap();
        // The input dropped at 2.6 s of media; frames (and segments) carry on from there.
        let second = hls.next_run(2600).unwrap();
        assert!(second.last().unwrap().ends_with(&format!("{origin}-1-%06d.ts")), "{second:?}");
        ffmpeg_writes(&dir, &second, &[(0.0, 1.0), (1.0, 2.0)], false);
        hls.poll().unwrap();
        let text = hls.playlist().unwrap();
        let expected = format!(
            "{origin}-0-000002.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:1.000,\n{origin}-1-000000.ts\n",
            rfc3339(origin + 2600)
        );
        assert!(text.contains(&expected), "{text}");
        assert!(text.contains(&format!(
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:1.000,\n{origin}-1-000001.ts",
            rfc3339(origin + 3600)
        )));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
        assert!(!dir.join("segments-0.csv").exists(), "the first run's list is done with");
        // Once the discontinuity slides out of the playlist, the playlist counts it.
        ffmpeg_writes(&dir, &second, &(0..8).map(|i| (i as f64, i as f64 + 1.0)).collect::<Vec<_>>(), false);
        hls.poll().unwrap();
        let text = hls.playlist().unwrap();
        assert!(
            text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n") && !text.contains("#EXT-X-DISCONTINUITY\n"),
            "{text}"
        );
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
    fn reads_ffmpeg_list_lines_and_knows_its_segment_names() {
        assert_eq!(parse_line("/tmp/x/1-0-000001.ts,1.000000,2.040000"), Some(("1-0-000001.ts".into(), 1.0, 2.04)));
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line("a.ts,3.0,2.0"), None);
        assert!(is_segment_name("1795617588920-0-000012.ts"));
        for bad in ["live.m3u8", "../1-0-1.ts", "1-0-.ts", "1-0-1.ts/..", "a-0-1.ts", "1-0-1-2.ts"] {
            assert!(!is_segment_name(bad), "{bad}");
        }
    }
}
