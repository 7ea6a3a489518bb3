//! Arrow schemas of the analytics tables that vitrine writes as Parquet.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The struct of one detection inside a `detections` row.
pub fn detection_fields() -> Fields {
    Fields::from(vec![
        Field::new("label", DataType::Utf8, false),
        Field::new("class_id", DataType::UInt32, false),
        Field::new("score", DataType::Float32, false),
        Field::new("x0", DataType::Float32, false),
        Field::new("y0", DataType::Float32, false),
        Field::new("x1", DataType::Float32, false),
        Field::new("y1", DataType::Float32, false),
    ])
}

/// `detections`: one row per processed frame, with everything the model found in it.
pub fn detections_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("pts_ms", DataType::Int64, false),
        Field::new("captured_at", ts(), false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new(
            "detections",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(detection_fields()), false))),
            false,
        ),
    ]))
}

/// `product_events`: one row per appeared / updated / disappeared event.
pub fn product_events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("in_stock", DataType::Boolean, false),
        Field::new("score", DataType::Float32, false),
        Field::new("pts_ms", DataType::Int64, false),
        Field::new("emitted_at", ts(), false),
    ]))
}

/// `exposures`: one row per interval a product was on screen (at least `min_dwell` long).
pub fn exposures_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("start_pts_ms", DataType::Int64, false),
        Field::new("end_pts_ms", DataType::Int64, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("max_score", DataType::Float32, false),
        Field::new("appeared_event_id", DataType::Utf8, false),
        Field::new("ended_at", ts(), false),
    ]))
}
