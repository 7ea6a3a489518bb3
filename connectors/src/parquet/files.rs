//! Exactly-once files: which rows go into which file, and when a file is cut.
//!
//! Every row carries the input offset of the frame it follows from (a Kafka partition's
//! offset, or a stream's seq when read in-process). The rows of one input are cut into
//! *file sets* that each cover a range of offsets `[start, end)`: a set holds every row of
//! that range (in one file per table and `dt=`/`hour=` partition, named after the input and
//! the range) and is cut only once the dataflow has completed every frame before `end`.
//!
//! What the store holds for a partition is kept beside the tables, at
//! `_vitrine/progress/{input}.json`: the end of its last published set, and the set being
//! published. A set is published in three steps: progress says "pending `[start, end)`", the
//! files are put (each atomically), progress says "published up to `end`". After a crash, the
//! replay from the committed offsets (never past a published end) regenerates the same rows:
//! rows before the published end are dropped, a pending set is cut again at exactly the same
//! `end` (same names, same rows: the put replaces what a killed run left), and the rest goes
//! into new sets. So every row is in the tables exactly once, whatever crashed when.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vitrine_schemas::{Cause, Exposure, FrameDetections, ProductEvent, SourcePosition};

use super::tables::{encode, partition_of, Row, TableRow};

/// The input a file set covers: a partition of the frames topic, or a stream read
/// in-process during one run (those are not replayed after a restart: a new run starts
/// its streams over, in files of its own).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputKey {
    Partition(i32),
    Stream { stream_id: String, run: i64 },
}

impl InputKey {
    /// The input of a frame read at `position` from stream `stream_id`, in run `run`.
    pub fn of(position: &SourcePosition, stream_id: &str, run: i64) -> InputKey {
        match position.partition {
            Some(p) => InputKey::Partition(p),
            None => InputKey::Stream { stream_id: stream_id.to_string(), run },
        }
    }

    /// How the input appears in file names.
    pub fn name(&self) -> String {
        match self {
            InputKey::Partition(p) => format!("p{p}"),
            InputKey::Stream { stream_id, run } => format!("{stream_id}-run{run}"),
        }
    }

    /// Whether a restart replays the input, so its progress is kept in the store.
    pub fn replayable(&self) -> bool {
        matches!(self, InputKey::Partition(_))
    }

    /// Where its progress is kept, relative to the tables' root.
    pub fn progress_key(&self) -> String {
        format!("_vitrine/progress/{}.json", self.name())
    }
}

/// What the store holds of an input: every row before `end` is in published files, and
/// the set `[end, pending_end)` was being published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub end: i64,
    pub pending_end: Option<i64>,
}

/// The rows of the three tables waiting for their file set.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TableRows {
    pub detections: Vec<Row<FrameDetections>>,
    pub events: Vec<Row<ProductEvent>>,
    pub exposures: Vec<Row<Exposure>>,
}

impl TableRows {
    /// Table rows held (a frame counts once per box).
    pub fn len(&self) -> usize {
        self.detections.iter().map(|r| r.row.table_rows()).sum::<usize>() + self.events.len() + self.exposures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.detections.is_empty() && self.events.is_empty() && self.exposures.is_empty()
    }

    /// Adds `later`'s rows after these.
    pub fn append(&mut self, later: TableRows) {
        self.detections.extend(later.detections);
        self.events.extend(later.events);
        self.exposures.extend(later.exposures);
    }

    fn min_offset(&self) -> Option<i64> {
        let d = self.detections.iter().filter_map(|r| r.offset);
        let e = self.events.iter().filter_map(|r| r.offset);
        let x = self.exposures.iter().filter_map(|r| r.offset);
        d.chain(e).chain(x).min()
    }

    /// Takes the rows before `end`, and those no frame caused.
    fn take_before(&mut self, end: i64) -> TableRows {
        fn split<R>(rows: &mut Vec<Row<R>>, end: i64) -> Vec<Row<R>> {
            let (taken, kept) = std::mem::take(rows).into_iter().partition(|r| r.offset.is_none_or(|o| o < end));
            *rows = kept;
            taken
        }
        TableRows {
            detections: split(&mut self.detections, end),
            events: split(&mut self.events, end),
            exposures: split(&mut self.exposures, end),
        }
    }
}

/// One file set: every row of `input` from offset `start` to `end` (exclusive).
#[derive(Debug)]
pub struct FileSet {
    pub input: InputKey,
    pub start: i64,
    pub end: i64,
    pub rows: TableRows,
}

impl FileSet {
    /// The set's files: path (relative to the tables' root) and contents, one per table and
    /// partition that has rows. The names depend only on the input and the range.
    pub fn files(&self, row_group_rows: usize) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut files = Vec::new();
        self.encode_table(&self.rows.detections, row_group_rows, &mut files)?;
        self.encode_table(&self.rows.events, row_group_rows, &mut files)?;
        self.encode_table(&self.rows.exposures, row_group_rows, &mut files)?;
        Ok(files)
    }

    fn encode_table<R: TableRow>(
        &self,
        rows: &[Row<R>],
        row_group_rows: usize,
        files: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        let mut by_partition: BTreeMap<(String, u32), Vec<&Row<R>>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.row.table_rows() > 0) {
            by_partition.entry(partition_of(row.captured_at_ms)).or_default().push(row);
        }
        for ((dt, hour), rows) in by_partition {
            let path = format!(
                "{}/dt={dt}/hour={hour:02}/{}-{:012}-{:012}.parquet",
                R::TABLE,
                self.input.name(),
                self.start,
                self.end
            );
            files.push((path, encode(&rows, super::tables::writer_properties(row_group_rows))?));
        }
        Ok(())
    }
}

/// When a file set is cut: after this long since its first row, or at this many rows.
#[derive(Clone, Copy, Debug)]
pub struct Roll {
    pub after: Duration,
    pub rows: usize,
}

#[derive(Debug, Default)]
struct InputFiles {
    rows: TableRows,
    /// Where the next set starts (the end of the last one), once known.
    start: Option<i64>,
    /// Rows before this offset are in published files already (a replay regenerates them).
    published_before: i64,
    /// A set that was being published when the last run stopped: cut it again at exactly this end.
    redo_end: Option<i64>,
    /// When the oldest waiting row came.
    since: Option<Instant>,
    /// Every frame before this offset has been completed by the dataflow.
    complete: Option<i64>,
    /// Sets handed out and not yet published: their starts and ends, oldest first.
    unpublished: VecDeque<(i64, i64)>,
}

/// The file sets of the inputs one worker owns.
#[derive(Debug)]
pub struct FileCutter {
    roll: Roll,
    inputs: BTreeMap<InputKey, InputFiles>,
}

impl FileCutter {
    pub fn new(roll: Roll) -> FileCutter {
        FileCutter { roll, inputs: BTreeMap::new() }
    }

    /// What the store held of `input` when the run started (none: nothing yet).
    pub fn recover(&mut self, input: InputKey, progress: Option<Progress>) {
        let files = self.inputs.entry(input).or_default();
        if let Some(p) = progress {
            files.start = Some(p.end);
            files.published_before = p.end;
            files.redo_end = p.pending_end;
        }
    }

    /// A frame's detections (its input is the frame's).
    pub fn detections(&mut self, d: FrameDetections, run: i64) {
        let input = InputKey::of(&d.position, &d.stream_id, run);
        let row = Row { captured_at_ms: d.captured_at_ms, offset: Some(d.position.offset), row: d };
        if row.row.table_rows() > 0 {
            self.push(input, row, |r| &mut r.detections);
        }
    }

    pub fn event(&mut self, event: ProductEvent, cause: Cause, run: i64) {
        let input = InputKey::of(&cause.position, &event.stream_id, run);
        self.push(input, caused(event, cause), |r| &mut r.events);
    }

    pub fn exposure(&mut self, exposure: Exposure, cause: Cause, run: i64) {
        let input = InputKey::of(&cause.position, &exposure.stream_id, run);
        self.push(input, caused(exposure, cause), |r| &mut r.exposures);
    }

    fn push<R>(&mut self, input: InputKey, row: Row<R>, table: impl Fn(&mut TableRows) -> &mut Vec<Row<R>>) {
        let files = self.inputs.entry(input).or_default();
        if row.offset.is_some_and(|o| o < files.published_before) {
            return; // replayed: already in a published file
        }
        files.since.get_or_insert_with(Instant::now);
        table(&mut files.rows).push(row);
    }

    /// The dataflow completed every frame of `input` before offset `complete`: cuts the
    /// next file set when it is due (by rows or age, or to redo a set a crash interrupted).
    pub fn complete(&mut self, input: &InputKey, complete: i64, now: Instant) -> Option<FileSet> {
        let roll = self.roll;
        let files = self.inputs.get_mut(input)?;
        files.complete = Some(files.complete.map_or(complete, |c| c.max(complete)));
        let complete = files.complete.expect("just set");
        let end = match files.redo_end {
            Some(end) if complete >= end => end,
            Some(_) => return None,
            None if files.rows.is_empty() => return None,
            None => {
                let due =
                    files.rows.len() >= roll.rows || files.since.is_some_and(|t| now.duration_since(t) >= roll.after);
                if !due {
                    return None;
                }
                complete
            }
        };
        // A replay reads from before the published end: nothing to cut until it passes it.
        if files.start.is_some_and(|start| end <= start) {
            return None;
        }
        let rows = files.rows.take_before(end);
        let start = files.start.or(rows.min_offset()).unwrap_or(end).min(end);
        files.start = Some(end);
        files.redo_end = None;
        files.since = (!files.rows.is_empty()).then(Instant::now);
        if rows.is_empty() {
            return None; // only frames without rows: nothing to write
        }
        files.unpublished.push_back((start, end));
        Some(FileSet { input: input.clone(), start, end, rows })
    }

    /// The publisher stored every set of `input` up to `end`.
    pub fn published(&mut self, input: &InputKey, end: i64) {
        if let Some(files) = self.inputs.get_mut(input) {
            while files.unpublished.front().is_some_and(|(_, e)| *e <= end) {
                files.unpublished.pop_front();
            }
        }
    }

    /// The offset of `input` before which every row is in published files (or was none):
    /// how far its Kafka offsets may be committed. None until the dataflow completed a frame.
    pub fn durable(&self, input: &InputKey) -> Option<i64> {
        let files = self.inputs.get(input)?;
        let complete = files.complete?;
        let waiting = files.rows.min_offset().into_iter();
        let unpublished = files.unpublished.front().map(|(start, _)| *start).into_iter();
        let redo = files.redo_end.and(files.start).into_iter();
        Some(waiting.chain(unpublished).chain(redo).fold(complete, i64::min))
    }

    /// Rows waiting for their set, over all inputs.
    pub fn rows_waiting(&self) -> usize {
        self.inputs.values().map(|f| f.rows.len()).sum()
    }

    /// Cuts every input's rows that the dataflow completed (at the end of a run).
    pub fn flush(&mut self, now: Instant) -> Vec<FileSet> {
        let inputs: Vec<InputKey> = self.inputs.keys().cloned().collect();
        let roll = self.roll;
        self.roll = Roll { after: Duration::ZERO, rows: 0 };
        let sets = inputs
            .iter()
            .filter_map(|i| {
                let complete = self.inputs[i].complete?;
                self.complete(i, complete, now)
            })
            .collect();
        self.roll = roll;
        sets
    }
}

fn caused<R>(row: R, cause: Cause) -> Row<R> {
    Row { row, captured_at_ms: cause.captured_at_ms, offset: cause.by_frame.then_some(cause.position.offset) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_schemas::{BBox, Detection};

    const P: InputKey = InputKey::Partition(3);

    fn frame(offset: i64) -> FrameDetections {
        FrameDetections {
            stream_id: "s".into(),
            seq: offset as u64,
            pts_ms: offset * 200,
            captured_at_ms: 1_795_599_000_000 + offset * 200,
            width: 640,
            height: 360,
            model: "m".into(),
            detections: vec![Detection {
                label: "cup".into(),
                class_id: 1,
                score: 0.9,
                bbox: BBox::default(),
                track_id: None,
                embedding: None,
                product: None,
            }],
            position: SourcePosition { partition: Some(3), offset },
            carried: false,
        }
    }

    fn cutter(rows: usize) -> FileCutter {
        FileCutter::new(Roll { after: Duration::from_secs(3600), rows })
    }

    fn offsets(set: &FileSet) -> Vec<i64> {
        set.rows.detections.iter().filter_map(|r| r.offset).collect()
    }

    #[test]
    fn a_set_holds_the_completed_rows_and_is_named_after_its_range() {
        let mut c = cutter(3);
        (10..15).for_each(|o| c.detections(frame(o), 0));
        assert!(c.complete(&P, 12, Instant::now()).is_some_and(|s| s.rows.len() == 2), "3 rows are due, 2 complete");
        assert_eq!(c.durable(&P), Some(10), "nothing is published yet");
        let set = c.complete(&P, 15, Instant::now()).expect("due");
        assert_eq!((set.start, set.end, offsets(&set)), (12, 15, vec![12, 13, 14]));
        let files = set.files(1000).unwrap();
        assert_eq!(files[0].0, "detections/dt=2026-11-25/hour=09/p3-000000000012-000000000015.parquet");
    }

    #[test]
    fn durable_waits_for_publishing_and_passes_frames_without_rows() {
        let mut c = cutter(1);
        c.recover(P.clone(), None);
        c.detections(frame(10), 0);
        c.complete(&P, 11, Instant::now()).expect("due");
        c.complete(&P, 20, Instant::now());
        assert_eq!(c.durable(&P), Some(10), "the set [10, 11) is not published");
        c.published(&P, 11);
        assert_eq!(c.durable(&P), Some(20), "frames 11-19 had no rows");
    }

    #[test]
    fn a_replay_drops_published_rows_and_redoes_the_interrupted_set_exactly() {
        let mut c = cutter(2);
        c.recover(P.clone(), Some(Progress { end: 12, pending_end: Some(15) }));
        (8..18).for_each(|o| c.detections(frame(o), 0)); // replayed from the committed offset 8
        assert!(c.complete(&P, 14, Instant::now()).is_none(), "the interrupted set is cut at 15, not before");
        assert_eq!(c.durable(&P), Some(12));
        let set = c.complete(&P, 18, Instant::now()).expect("redo");
        assert_eq!((set.start, set.end, offsets(&set)), (12, 15, vec![12, 13, 14]));
        let next = c.complete(&P, 18, Instant::now()).expect("due again");
        assert_eq!((next.start, next.end, offsets(&next)), (15, 18, vec![15, 16, 17]));
    }

    #[test]
    fn a_replay_behind_the_published_end_cuts_nothing() {
        // Found by the crash test: a set cut before the published end moved the progress back.
        let mut c = cutter(1);
        c.recover(P.clone(), Some(Progress { end: 62, pending_end: None }));
        let follow =
            Cause { position: SourcePosition { partition: Some(3), offset: 40 }, captured_at_ms: 0, by_frame: false };
        c.exposure(exposure(), follow, 0);
        assert!(c.complete(&P, 59, Instant::now()).is_none());
        let set = c.complete(&P, 70, Instant::now()).expect("past the published end");
        assert_eq!((set.start, set.end), (62, 70));
    }

    fn exposure() -> Exposure {
        Exposure {
            stream_id: "s".into(),
            sku: "A".into(),
            label: "cup".into(),
            title: "Mug".into(),
            start_pts_ms: 0,
            end_pts_ms: 4000,
            start_at_ms: 0,
            end_at_ms: 4000,
            frames_seen: 20,
            max_score: 0.9,
            mean_score: 0.8,
            appeared_event_id: "e".into(),
        }
    }

    #[test]
    fn rows_no_frame_caused_go_into_the_next_set() {
        let mut c = cutter(1);
        let update = ProductEvent {
            event_id: "e".into(),
            kind: vitrine_schemas::EventKind::Updated,
            stream_id: "s".into(),
            sku: "A".into(),
            label: "cup".into(),
            title: "Mug".into(),
            price: vitrine_schemas::Money(100),
            currency: "EUR".into(),
            in_stock: true,
            image_url: None,
            product_url: None,
            bbox: None,
            score: 0.9,
            match_score: None,
            pts_ms: 1000,
            emitted_at_ms: 0,
        };
        let cause =
            Cause { position: SourcePosition { partition: Some(3), offset: 4 }, captured_at_ms: 0, by_frame: false };
        c.recover(P.clone(), Some(Progress { end: 10, pending_end: None }));
        c.event(update, cause, 0);
        let set = c.complete(&P, 12, Instant::now()).expect("due");
        assert_eq!((set.start, set.end, set.rows.events.len()), (10, 12, 1));
    }
}
