//! Writing the `detections` table: vitrine's Parquet path against arrow-rs writing the same
//! batches bare, in one run.
//!
//!     cargo bench -p vitrine-benches --bench parquet_write
//!
//! 100,000 rows (frames of 5 boxes). Criterion measures three things on one core:
//! - `arrow-rs bare`: `ArrowWriter` writing the already built record batch, with the same
//!   writer properties (zstd, statistics) — the baseline;
//! - `vitrine encode`: rows to an Arrow batch, then the same writer (`tables::encode`);
//! - `vitrine file set`: what the publisher does with a cut: rows grouped by `dt`/`hour`
//!   and encoded (`FileSet::files`).
//!
//! Then it prints rows/s a core and the ratios against the baseline, best of 5 rounds each.

#![allow(clippy::print_stdout)] // a benchmark's report

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use vitrine_connectors::parquet::files::TableRows;
use vitrine_connectors::parquet::tables::{encode, writer_properties, Row, TableRow};
use vitrine_connectors::parquet::{FileSet, InputKey};
use vitrine_schemas::{BBox, Detection, FrameDetections, SourcePosition};

const ROWS: usize = 100_000;
const BOXES: usize = 5;
const ROW_GROUP: usize = 1 << 20;

fn rows() -> Vec<Row<FrameDetections>> {
    let labels = ["cup", "apple", "person", "bottle", "dining table", "orange"];
    (0..ROWS / BOXES)
        .map(|seq| {
            let detections = (0..BOXES)
                .map(|i| {
                    let x = ((seq * 7 + i * 13) % 80) as f32 / 100.0;
                    Detection {
                        label: labels[i].into(),
                        class_id: i as u32 * 3,
                        score: 0.3 + ((seq + i) % 70) as f32 / 100.0,
                        bbox: BBox { x0: x, y0: 0.2, x1: x + 0.15, y1: 0.5 },
                        track_id: (i % 3 != 2).then_some(seq as u64 / 50 * 1000 + i as u64),
                        embedding: None,
                        product: None,
                    }
                })
                .collect();
            let captured_at_ms = 1_795_599_000_000 + seq as i64 * 200;
            let frame = FrameDetections {
                stream_id: format!("show-{}", seq % 4),
                seq: seq as u64,
                pts_ms: seq as i64 * 200,
                captured_at_ms,
                width: 1280,
                height: 720,
                model: "ssd-mobilenet-v2-coco-quant".into(),
                detections,
                position: SourcePosition { partition: Some(0), offset: seq as i64 },
                carried: false,
            };
            Row { row: frame, captured_at_ms, offset: Some(seq as i64) }
        })
        .collect()
}

fn bare(batch: &arrow_array::RecordBatch) -> Vec<u8> {
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(writer_properties(ROW_GROUP))).unwrap();
    writer.write(batch).unwrap();
    writer.into_inner().unwrap()
}

fn file_set(rows: &[Row<FrameDetections>]) -> FileSet {
    let rows = TableRows { detections: rows.to_vec(), ..TableRows::default() };
    FileSet { input: InputKey::Partition(0), start: 0, end: ROWS as i64, rows }
}

/// Best rows/s of 5 rounds.
fn rows_per_second(mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed());
    }
    ROWS as f64 / best.as_secs_f64()
}

fn main() {
    let rows = rows();
    let refs: Vec<&Row<FrameDetections>> = rows.iter().collect();
    let batch = FrameDetections::to_batch(&refs).unwrap();
    assert_eq!(batch.num_rows(), ROWS);
    let set = file_set(&rows);

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let mut group = c.benchmark_group("detections, 100k rows");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("arrow-rs bare (baseline)", |b| b.iter(|| black_box(bare(black_box(&batch)))));
    group.bench_function("vitrine encode", |b| {
        b.iter(|| black_box(encode(black_box(&refs), writer_properties(ROW_GROUP)).unwrap()))
    });
    group.bench_function("vitrine file set", |b| b.iter(|| black_box(set.files(ROW_GROUP).unwrap())));
    group.finish();
    c.final_summary();

    let baseline = rows_per_second(|| {
        black_box(bare(&batch));
    });
    let encoded = rows_per_second(|| {
        black_box(encode(&refs, writer_properties(ROW_GROUP)).unwrap());
    });
    let files = rows_per_second(|| {
        black_box(set.files(ROW_GROUP).unwrap());
    });
    println!("detections, one core, best of 5 rounds of {ROWS} rows:");
    println!("  arrow-rs bare (baseline)  {:>6.2} M rows/s", baseline / 1e6);
    println!("  vitrine encode            {:>6.2} M rows/s  ({:.2}x the baseline)", encoded / 1e6, encoded / baseline);
    println!("  vitrine file set          {:>6.2} M rows/s  ({:.2}x the baseline)", files / 1e6, files / baseline);
}
