//! Checkpoints apart from table files: rows are made durable often, files are cut seldom.
//!
//! Kafka offsets may be committed only below rows that are safe in the store, and a restart
//! replays from the committed offsets; so if rows became safe only as table files, either the
//! files would be small (a long show: thousands of tiny files, which Athena reads slowly) or
//! every restart would replay minutes of frames. Instead the worker's sets (a range of an
//! input's offsets, cut every `checkpoint_after`) are *staged*: each is one object,
//! `_vitrine/staging/{input}/{start}-{end}.json`, put atomically, that no table reader sees.
//! The publisher gathers the staged rows of an input and cuts table files from them by
//! `roll_after` and `roll_rows` (the three steps of [`super::files`]), then deletes the
//! staged objects the files cover. After a crash, the staged objects past the published end
//! are read back, and the replay drops rows before the end of the last one.

use std::time::Instant;

use super::files::{FileSet, InputKey, Roll, TableRows};

/// Where the staged sets of `input` are, relative to the tables' root.
pub fn staging_dir(input: &InputKey) -> String {
    format!("_vitrine/staging/{}", input.name())
}

/// The object a staged set is put at: named after its range, so a set put twice is one object.
pub fn staged_key(input: &InputKey, start: i64, end: i64) -> String {
    format!("{}/{start:012}-{end:012}.json", staging_dir(input))
}

/// The range of a staged object's name (the last part of its key); none for any other name.
pub fn staged_range(name: &str) -> Option<(i64, i64)> {
    let (start, end) = name.strip_suffix(".json")?.split_once('-')?;
    let range = (start.parse().ok()?, end.parse().ok()?);
    (range.0 <= range.1).then_some(range)
}

/// A staged set's rows, as stored.
pub fn encode(rows: &TableRows) -> Vec<u8> {
    serde_json::to_vec(rows).expect("rows encode as JSON")
}

pub fn decode(bytes: &[u8]) -> Result<TableRows, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a staged set of vitrine's ({e})"))
}

/// The staged rows of one input that no table file holds yet.
#[derive(Debug)]
pub struct Staged {
    input: InputKey,
    /// Where the next table file set starts: the end of the last published one (none: the
    /// input has no files yet, and its first set starts it).
    start: Option<i64>,
    /// The end of the last staged set.
    end: i64,
    rows: TableRows,
    /// The staged sets the rows came in (start, end), to delete once files hold them.
    sets: Vec<(i64, i64)>,
    /// When the oldest row came.
    since: Option<Instant>,
}

impl Staged {
    /// Nothing staged after `published_end` (the end of `input`'s last published file set, if any).
    pub fn new(input: InputKey, published_end: Option<i64>) -> Staged {
        let end = published_end.unwrap_or(i64::MIN);
        Staged { input, start: published_end, end, rows: TableRows::default(), sets: Vec::new(), since: None }
    }

    /// Where the staged rows end (a replay drops the rows before it); none before any.
    pub fn end(&self) -> Option<i64> {
        self.start.map(|_| self.end)
    }

    /// Adds a staged set (the next one of the input).
    pub fn add(&mut self, set: FileSet, now: Instant) {
        self.start.get_or_insert(set.start);
        self.end = self.end.max(set.end);
        self.sets.push((set.start, set.end));
        if !set.rows.is_empty() {
            self.since.get_or_insert(now);
        }
        self.rows.append(set.rows);
    }

    /// Whether a table file set is due: by rows, by age, or (`flush`) for whatever is staged.
    pub fn due(&self, roll: Roll, now: Instant, flush: bool) -> bool {
        if self.rows.is_empty() {
            return false;
        }
        flush || self.rows.len() >= roll.rows || self.since.is_some_and(|t| now.duration_since(t) >= roll.after)
    }

    /// Takes every staged row as the table file set `[start, end)`, and the staged sets it covers.
    pub fn cut(&mut self) -> (FileSet, Vec<(i64, i64)>) {
        let rows = std::mem::take(&mut self.rows);
        let start = self.start.unwrap_or(self.end);
        let set = FileSet { input: self.input.clone(), start, end: self.end, rows };
        self.start = Some(self.end);
        self.since = None;
        (set, std::mem::take(&mut self.sets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vitrine_schemas::{BBox, Detection, FrameDetections, SourcePosition};

    use crate::parquet::tables::Row;

    fn set(start: i64, end: i64, boxes: usize) -> FileSet {
        let mut rows = TableRows::default();
        for offset in start..end {
            let d = FrameDetections {
                stream_id: "s".into(),
                seq: offset as u64,
                pts_ms: offset * 200,
                captured_at_ms: 1_795_599_000_000 + offset * 200,
                width: 640,
                height: 360,
                model: "m".into(),
                detections: (0..boxes)
                    .map(|i| Detection {
                        label: "cup".into(),
                        class_id: 1,
                        score: 0.1 + i as f32 / 7.0,
                        bbox: BBox::default(),
                        track_id: Some(offset as u64 * 1000),
                        embedding: None,
                        product: None,
                    })
                    .collect(),
                position: SourcePosition { partition: Some(2), offset },
                carried: false,
            };
            rows.detections.push(Row { captured_at_ms: d.captured_at_ms, offset: Some(offset), row: d });
        }
        FileSet { input: InputKey::Partition(2), start, end, rows }
    }

    #[test]
    fn a_staged_set_reads_back_as_it_was_written() {
        let original = set(10, 14, 3);
        let back = decode(&encode(&original.rows)).unwrap();
        assert_eq!(format!("{:?}", back), format!("{:?}", original.rows), "scores, ids and offsets survive");
        assert_eq!(staged_key(&InputKey::Partition(2), 10, 14), "_vitrine/staging/p2/000000000010-000000000014.json");
        assert_eq!(staged_range("000000000010-000000000014.json"), Some((10, 14)));
        assert_eq!(staged_range("000000000010-000000000014.json#2"), None);
        assert!(decode(b"{\"detections\": 3}").unwrap_err().contains("not a staged set"));
    }

    #[test]
    fn table_files_are_cut_from_many_staged_sets_by_rows_or_age() {
        let roll = Roll { after: Duration::from_secs(60), rows: 20 };
        let t0 = Instant::now();
        let mut staged = Staged::new(InputKey::Partition(2), None);
        staged.add(set(10, 14, 2), t0); // 8 rows
        staged.add(set(14, 18, 2), t0); // 16
        assert!(!staged.due(roll, t0, false));
        assert!(staged.due(roll, t0 + Duration::from_secs(61), false), "by age");
        staged.add(set(18, 20, 2), t0); // 20
        assert!(staged.due(roll, t0, false), "by rows");
        let (files, sets) = staged.cut();
        assert_eq!((files.start, files.end, files.rows.len()), (10, 20, 20));
        assert_eq!(sets, [(10, 14), (14, 18), (18, 20)]);
        assert!(!staged.due(roll, t0, true), "nothing left");
        staged.add(set(25, 26, 1), t0);
        assert_eq!((staged.cut().0.start, staged.end()), (20, Some(26)), "the next files start where the last ended");
    }
}
