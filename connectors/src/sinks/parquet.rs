//! Parquet tables for analytics, Hive-partitioned by date and hour
//! (`{root}/{table}/dt=YYYY-MM-DD/hour=HH/part-*.parquet`) so Athena, DuckDB and Spark
//! prune by time. Rows are buffered and each file is written whole under a temporary name,
//! synced, then renamed: a reader never sees a half-written file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{
    ArrayRef, Float32Array, ListArray, RecordBatch, StringArray, StructArray, TimestampMillisecondArray, UInt32Array,
    UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use vitrine_schemas::tables::{detection_fields, detections_schema, exposures_schema, product_events_schema};
use vitrine_schemas::{Exposure, FrameDetections, ProductEvent};

use crate::ConnectorError;

/// A row type of a table: its schema, partition time and Arrow encoding.
pub trait TableRow: Sized {
    const TABLE: &'static str;
    fn schema() -> SchemaRef;
    /// Wall-clock ms that decides the row's partition.
    fn partition_ms(&self) -> i64;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, arrow_schema::ArrowError>;
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
}

impl TableRow for FrameDetections {
    const TABLE: &'static str = "detections";
    fn schema() -> SchemaRef {
        detections_schema()
    }
    fn partition_ms(&self) -> i64 {
        self.captured_at_ms
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut stream = StringBuilder::new();
        let mut seq = UInt64Builder::new();
        let mut pts = Int64Builder::new();
        let mut width = UInt32Builder::new();
        let mut height = UInt32Builder::new();
        let mut model = StringBuilder::new();
        for r in rows {
            stream.append_value(&r.stream_id);
            seq.append_value(r.seq);
            pts.append_value(r.pts_ms);
            width.append_value(r.width);
            height.append_value(r.height);
            model.append_value(&r.model);
        }
        let all = || rows.iter().flat_map(|r| r.detections.iter());
        let f32s = |f: fn(&vitrine_schemas::Detection) -> f32| {
            Arc::new(Float32Array::from_iter_values(all().map(f))) as ArrayRef
        };
        let items = StructArray::try_new(
            detection_fields(),
            vec![
                Arc::new(StringArray::from_iter_values(all().map(|d| d.label.as_str()))),
                Arc::new(UInt32Array::from_iter_values(all().map(|d| d.class_id))),
                f32s(|d| d.score),
                f32s(|d| d.bbox.x0),
                f32s(|d| d.bbox.y0),
                f32s(|d| d.bbox.x1),
                f32s(|d| d.bbox.y1),
                Arc::new(UInt64Array::from_iter(all().map(|d| d.track_id))),
            ],
            None,
        )?;
        let item_field = Arc::new(Field::new("item", DataType::Struct(detection_fields()), false));
        let list = ListArray::try_new(
            item_field,
            OffsetBuffer::from_lengths(rows.iter().map(|r| r.detections.len())),
            Arc::new(items),
            None,
        )?;
        RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(stream.finish()),
                Arc::new(seq.finish()),
                Arc::new(pts.finish()),
                timestamps(rows.iter().map(|r| r.captured_at_ms)),
                Arc::new(width.finish()),
                Arc::new(height.finish()),
                Arc::new(model.finish()),
                Arc::new(list),
            ],
        )
    }
}

impl TableRow for ProductEvent {
    const TABLE: &'static str = "product_events";
    fn schema() -> SchemaRef {
        product_events_schema()
    }
    fn partition_ms(&self) -> i64 {
        self.emitted_at_ms
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let strings = |f: fn(&ProductEvent) -> &str| {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish()) as ArrayRef
        };
        let mut price = Float64Builder::new();
        let mut in_stock = BooleanBuilder::new();
        let mut score = Float32Builder::new();
        let mut pts = Int64Builder::new();
        for r in rows {
            price.append_value(r.price.as_f64());
            in_stock.append_value(r.in_stock);
            score.append_value(r.score);
            pts.append_value(r.pts_ms);
        }
        RecordBatch::try_new(
            Self::schema(),
            vec![
                strings(|r| &r.event_id),
                strings(|r| r.kind.as_str()),
                strings(|r| &r.stream_id),
                strings(|r| &r.sku),
                strings(|r| &r.label),
                strings(|r| &r.title),
                Arc::new(price.finish()),
                strings(|r| &r.currency),
                Arc::new(in_stock.finish()),
                Arc::new(score.finish()),
                Arc::new(pts.finish()),
                timestamps(rows.iter().map(|r| r.emitted_at_ms)),
            ],
        )
    }
}

impl TableRow for Exposure {
    const TABLE: &'static str = "exposures";
    fn schema() -> SchemaRef {
        exposures_schema()
    }
    fn partition_ms(&self) -> i64 {
        self.ended_at_ms
    }
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let strings = |f: fn(&Exposure) -> &str| {
            let mut b = StringBuilder::new();
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish()) as ArrayRef
        };
        let ints = |f: fn(&Exposure) -> i64| {
            let mut b = Int64Builder::new();
            rows.iter().for_each(|r| b.append_value(f(r)));
            Arc::new(b.finish()) as ArrayRef
        };
        let mut score = Float32Builder::new();
        rows.iter().for_each(|r| score.append_value(r.max_score));
        RecordBatch::try_new(
            Self::schema(),
            vec![
                strings(|r| &r.stream_id),
                strings(|r| &r.sku),
                strings(|r| &r.label),
                strings(|r| &r.title),
                ints(|r| r.start_pts_ms),
                ints(|r| r.end_pts_ms),
                ints(|r| r.duration_ms()),
                Arc::new(score.finish()),
                strings(|r| &r.appeared_event_id),
                timestamps(rows.iter().map(|r| r.ended_at_ms)),
            ],
        )
    }
}

/// `(YYYY-MM-DD, HH)` of a Unix time in ms, UTC.
pub fn partition_of(ms: i64) -> (String, u32) {
    let (year, month, day, hour, ..) = crate::time_format::civil(ms);
    (format!("{year:04}-{month:02}-{day:02}"), hour)
}

/// One table's open (in-memory) file.
#[derive(Debug)]
pub struct TableWriter<R: TableRow> {
    root: PathBuf,
    roll_after: Duration,
    roll_rows: usize,
    rows: Vec<R>,
    partition: Option<(String, u32)>,
    opened: Instant,
    files: u64,
    received: u64,
    published: u64,
}

impl<R: TableRow> TableWriter<R> {
    pub fn new(root: &Path, roll_after: Duration, roll_rows: usize) -> TableWriter<R> {
        TableWriter {
            root: root.join(R::TABLE),
            roll_after,
            roll_rows,
            rows: Vec::new(),
            partition: None,
            opened: Instant::now(),
            files: 0,
            received: 0,
            published: 0,
        }
    }

    /// Adds a row; publishes the current file first if the row belongs to another partition.
    pub fn push(&mut self, row: R) -> Result<(), ConnectorError> {
        let partition = partition_of(row.partition_ms());
        if self.partition.as_ref().is_some_and(|p| *p != partition) {
            self.publish()?;
        }
        if self.rows.is_empty() {
            self.opened = Instant::now();
        }
        self.partition = Some(partition);
        self.rows.push(row);
        self.received += 1;
        if self.rows.len() >= self.roll_rows {
            self.publish()?;
        }
        Ok(())
    }

    /// Publishes the current file if it is old enough.
    pub fn tick(&mut self) -> Result<(), ConnectorError> {
        if !self.rows.is_empty() && self.opened.elapsed() >= self.roll_after {
            self.publish()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one Parquet file and makes it visible; returns its path.
    pub fn publish(&mut self) -> Result<Option<PathBuf>, ConnectorError> {
        let Some((dt, hour)) = self.partition.take() else { return Ok(None) };
        if self.rows.is_empty() {
            return Ok(None);
        }
        let dir = self.root.join(format!("dt={dt}")).join(format!("hour={hour:02}"));
        let name = format!("part-{}-{}-{:05}.parquet", vitrine_schemas::now_ms(), std::process::id(), self.files);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let err = |e: String| ConnectorError::Write { path: path.clone(), reason: e };
        std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
        let batch = R::to_batch(&self.rows).map_err(|e| err(e.to_string()))?;
        let file = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut writer = ArrowWriter::try_new(file, R::schema(), Some(props)).map_err(|e| err(e.to_string()))?;
        writer.write(&batch).map_err(|e| err(e.to_string()))?;
        let file = writer.into_inner().map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(e.to_string()))?;
        tracing::info!(table = R::TABLE, rows = self.rows.len(), file = %path.display(), "parquet file published");
        self.published += self.rows.len() as u64;
        self.rows.clear();
        self.files += 1;
        Ok(Some(path))
    }
}

/// The `detections` and `product_events` tables under one root.
#[derive(Debug)]
pub struct ParquetSink {
    pub detections: TableWriter<FrameDetections>,
    pub events: TableWriter<ProductEvent>,
    pub exposures: TableWriter<Exposure>,
}

impl ParquetSink {
    pub fn new(root: &Path, roll_after: Duration, roll_rows: usize) -> ParquetSink {
        ParquetSink {
            detections: TableWriter::new(root, roll_after, roll_rows),
            events: TableWriter::new(root, roll_after, roll_rows),
            exposures: TableWriter::new(root, roll_after, roll_rows),
        }
    }

    pub fn tick(&mut self) -> Result<(), ConnectorError> {
        self.detections.tick()?;
        self.events.tick()?;
        self.exposures.tick()
    }

    /// Rows received so far, of both tables.
    pub fn rows_received(&self) -> u64 {
        self.detections.received + self.events.received + self.exposures.received
    }

    /// Rows in published files so far, of both tables. Rows are published in the order they
    /// were received, so once this reaches an earlier `rows_received`, all those rows are durable.
    pub fn rows_published(&self) -> u64 {
        self.detections.published + self.events.published + self.exposures.published
    }

    /// Publishes whatever is buffered (on shutdown).
    pub fn flush(&mut self) -> Result<(), ConnectorError> {
        self.detections.publish()?;
        self.events.publish()?;
        self.exposures.publish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::partition_of;

    #[test]
    fn partitions_are_utc_dates_and_hours() {
        assert_eq!(partition_of(0), ("1970-01-01".into(), 0));
        // 2026-11-25T09:30:00Z
        assert_eq!(partition_of(1_795_599_000_000), ("2026-11-25".into(), 9));
        // 2024-02-29T23:59:59Z (leap day)
        assert_eq!(partition_of(1_709_251_199_000), ("2024-02-29".into(), 23));
    }
}
