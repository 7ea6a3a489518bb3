//! Rows of the three tables as Arrow batches and Parquet files (zstd, statistics, row groups).

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use vitrine_schemas::tables::{detections_schema, exposures_schema, product_events_schema};
use vitrine_schemas::{Exposure, FrameDetections, ProductEvent};

/// A row waiting for its file: the row, the wall clock that decides its `dt=`/`hour=`
/// partition (the capture time of the frame it follows from), and its place in the input.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Row<R> {
    pub row: R,
    pub captured_at_ms: i64,
    /// The input offset of the frame that caused it; none for a row no frame caused (it
    /// goes into the next file of its input).
    pub offset: Option<i64>,
}

/// A row type of a table: its name, schema and Arrow encoding.
pub trait TableRow: Sized {
    const TABLE: &'static str;
    fn schema() -> SchemaRef;
    /// Rows this row stands for in the table (a frame is one row per box).
    fn table_rows(&self) -> usize {
        1
    }
    fn to_batch(rows: &[&Row<Self>]) -> Result<RecordBatch, ArrowError>;
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn int64s(values: impl Iterator<Item = i64>) -> ArrayRef {
    let mut b = Int64Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn int32s(values: impl Iterator<Item = i32>) -> ArrayRef {
    let mut b = Int32Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn float32s(values: impl Iterator<Item = f32>) -> ArrayRef {
    let mut b = Float32Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

/// Saturating: a frame is never 2^31 pixels wide, and a class id never past i32.
fn int32(v: u32) -> i32 {
    v.min(i32::MAX as u32) as i32
}

fn int64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl TableRow for FrameDetections {
    const TABLE: &'static str = "detections";
    fn schema() -> SchemaRef {
        detections_schema()
    }
    fn table_rows(&self) -> usize {
        self.detections.len()
    }
    fn to_batch(rows: &[&Row<Self>]) -> Result<RecordBatch, ArrowError> {
        let frames = || rows.iter().flat_map(|r| r.row.detections.iter().map(move |_| &r.row));
        let boxes = || rows.iter().flat_map(|r| r.row.detections.iter().enumerate());
        let mut track = Int64Builder::new();
        boxes().for_each(|(_, d)| track.append_option(d.track_id.map(int64)));
        RecordBatch::try_new(
            Self::schema(),
            vec![
                strings(frames().map(|f| f.stream_id.as_str())),
                int64s(frames().map(|f| int64(f.seq))),
                int32s(boxes().map(|(i, _)| i as i32)),
                int64s(frames().map(|f| f.pts_ms)),
                timestamps(frames().map(|f| f.captured_at_ms)),
                int32s(frames().map(|f| int32(f.width))),
                int32s(frames().map(|f| int32(f.height))),
                strings(frames().map(|f| f.model.as_str())),
                strings(boxes().map(|(_, d)| d.label.as_str())),
                int32s(boxes().map(|(_, d)| int32(d.class_id))),
                float32s(boxes().map(|(_, d)| d.score)),
                float32s(boxes().map(|(_, d)| d.bbox.x0)),
                float32s(boxes().map(|(_, d)| d.bbox.y0)),
                float32s(boxes().map(|(_, d)| d.bbox.x1)),
                float32s(boxes().map(|(_, d)| d.bbox.y1)),
                Arc::new(track.finish()),
            ],
        )
    }
}

impl TableRow for ProductEvent {
    const TABLE: &'static str = "product_events";
    fn schema() -> SchemaRef {
        product_events_schema()
    }
    fn to_batch(rows: &[&Row<Self>]) -> Result<RecordBatch, ArrowError> {
        let events = || rows.iter().map(|r| &r.row);
        let mut price = Float64Builder::new();
        let mut in_stock = BooleanBuilder::new();
        let mut match_score = Float32Builder::new();
        for e in events() {
            price.append_value(e.price.as_f64());
            in_stock.append_value(e.in_stock);
            match_score.append_option(e.match_score);
        }
        RecordBatch::try_new(
            Self::schema(),
            vec![
                strings(events().map(|e| e.event_id.as_str())),
                strings(events().map(|e| e.kind.as_str())),
                strings(events().map(|e| e.stream_id.as_str())),
                strings(events().map(|e| e.sku.as_str())),
                strings(events().map(|e| e.label.as_str())),
                strings(events().map(|e| e.title.as_str())),
                Arc::new(price.finish()),
                strings(events().map(|e| e.currency.as_str())),
                Arc::new(in_stock.finish()),
                float32s(events().map(|e| e.score)),
                int64s(events().map(|e| e.pts_ms)),
                timestamps(rows.iter().map(|r| r.captured_at_ms)),
                timestamps(events().map(|e| e.emitted_at_ms)),
                Arc::new(match_score.finish()),
            ],
        )
    }
}

impl TableRow for Exposure {
    const TABLE: &'static str = "exposures";
    fn schema() -> SchemaRef {
        exposures_schema()
    }
    fn to_batch(rows: &[&Row<Self>]) -> Result<RecordBatch, ArrowError> {
        let xs = || rows.iter().map(|r| &r.row);
        RecordBatch::try_new(
            Self::schema(),
            vec![
                strings(xs().map(|x| x.stream_id.as_str())),
                strings(xs().map(|x| x.sku.as_str())),
                strings(xs().map(|x| x.label.as_str())),
                strings(xs().map(|x| x.title.as_str())),
                int64s(xs().map(|x| x.start_pts_ms)),
                int64s(xs().map(|x| x.end_pts_ms)),
                int64s(xs().map(|x| x.duration_ms())),
                timestamps(xs().map(|x| x.start_at_ms)),
                timestamps(xs().map(|x| x.end_at_ms)),
                int64s(xs().map(|x| x.frames_seen)),
                float32s(xs().map(|x| x.max_score)),
                float32s(xs().map(|x| x.mean_score)),
                strings(xs().map(|x| x.appeared_event_id.as_str())),
            ],
        )
    }
}

/// How the files are written: zstd, column statistics for pruning, row groups of at most
/// `row_group_rows`.
pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("a valid zstd level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_created_by(format!("vitrine {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One Parquet file holding `rows`.
pub fn encode<R: TableRow>(rows: &[&Row<R>], properties: WriterProperties) -> Result<Vec<u8>, String> {
    let batch = R::to_batch(rows).map_err(|e| format!("{}: {e}", R::TABLE))?;
    let mut writer =
        ArrowWriter::try_new(Vec::new(), R::schema(), Some(properties)).map_err(|e| format!("{}: {e}", R::TABLE))?;
    writer.write(&batch).map_err(|e| format!("{}: {e}", R::TABLE))?;
    writer.into_inner().map_err(|e| format!("{}: {e}", R::TABLE))
}

/// `(YYYY-MM-DD, HH)` of a Unix time in ms, UTC.
pub fn partition_of(ms: i64) -> (String, u32) {
    use chrono::Timelike;
    let at = crate::time_format::utc(ms);
    (at.format("%Y-%m-%d").to_string(), at.hour())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use vitrine_schemas::{BBox, Detection, SourcePosition};

    #[test]
    fn partitions_are_utc_dates_and_hours() {
        assert_eq!(partition_of(0), ("1970-01-01".into(), 0));
        // 2026-11-25T09:30:00Z
        assert_eq!(partition_of(1_795_599_000_000), ("2026-11-25".into(), 9));
        // 2024-02-29T23:59:59Z (leap day)
        assert_eq!(partition_of(1_709_251_199_000), ("2024-02-29".into(), 23));
    }

    #[test]
    fn a_frame_is_one_row_per_box_and_reads_back() {
        let detection = |label: &str, track_id| Detection {
            label: label.into(),
            class_id: 47,
            score: 0.8,
            bbox: BBox { x0: 0.1, y0: 0.2, x1: 0.3, y1: 0.4 },
            track_id,
            embedding: None,
            product: None,
        };
        let frame = FrameDetections {
            stream_id: "s".into(),
            seq: 12,
            pts_ms: 2400,
            captured_at_ms: 1_795_599_000_000,
            width: 1280,
            height: 720,
            model: "ssd".into(),
            detections: vec![detection("cup", Some(5000)), detection("apple", None)],
            position: SourcePosition::in_stream(12),
            carried: false,
        };
        let empty = FrameDetections { seq: 13, detections: vec![], ..frame.clone() };
        let rows: Vec<Row<FrameDetections>> = [frame, empty]
            .into_iter()
            .map(|f| Row { captured_at_ms: f.captured_at_ms, offset: Some(f.seq as i64), row: f })
            .collect();
        let bytes = encode(&rows.iter().collect::<Vec<_>>(), writer_properties(1000)).unwrap();
        let path = std::env::temp_dir().join(format!("vitrine-tables-{}.parquet", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let _ = std::fs::remove_file(&path);
        let batch = reader.map(|b| b.unwrap()).next().unwrap();
        assert_eq!(batch.num_rows(), 2, "a row per box; the frame without boxes has none");
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let index = column("box_index");
        let index = index.as_any().downcast_ref::<arrow_array::Int32Array>().unwrap();
        assert_eq!(index.values(), &[0, 1]);
        let track = column("track_id");
        let track = track.as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
        assert_eq!((track.value(0), track.is_null(1)), (5000, true));
    }
}
