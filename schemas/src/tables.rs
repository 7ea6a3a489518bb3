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
        Field::new("track_id", DataType::UInt64, true),
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

/// The Hive/Athena type of an Arrow type, as the Parquet files store it.
fn hive_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::UInt32 | DataType::Int32 => "int".into(),
        DataType::UInt64 | DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::List(item) => format!("array<{}>", hive_type(item.data_type())),
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|f| format!("{}:{}", f.name(), hive_type(f.data_type()))).collect();
            format!("struct<{}>", fields.join(","))
        }
        other => format!("string /* {other} */"),
    }
}

/// `CREATE EXTERNAL TABLE` statements (Athena, Hive) for the tables under `location`
/// (e.g. `s3://bucket/vitrine`), partitioned by `dt` and `hour` as the Parquet sink writes them.
pub fn athena_ddl(location: &str, database: &str) -> String {
    let location = location.trim_end_matches('/');
    let tables = [
        ("detections", detections_schema()),
        ("product_events", product_events_schema()),
        ("exposures", exposures_schema()),
    ];
    let mut out = String::new();
    for (name, schema) in tables {
        let columns: Vec<String> =
            schema.fields().iter().map(|f| format!("  `{}` {}", f.name(), hive_type(f.data_type()))).collect();
        out.push_str(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{name} (\n{}\n)\nPARTITIONED BY (dt string, hour string)\nSTORED AS PARQUET\nLOCATION '{location}/{name}/'\nTBLPROPERTIES (\n  'projection.enabled' = 'true',\n  'projection.dt.type' = 'date', 'projection.dt.format' = 'yyyy-MM-dd', 'projection.dt.range' = '2024-01-01,NOW',\n  'projection.hour.type' = 'integer', 'projection.hour.range' = '0,23', 'projection.hour.digits' = '2',\n  'storage.location.template' = '{location}/{name}/dt=${{dt}}/hour=${{hour}}/'\n);\n\n",
            columns.join(",\n")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ddl_covers_every_table_with_its_partitions() {
        let ddl = super::athena_ddl("s3://shop/vitrine/", "analytics");
        for table in ["detections", "product_events", "exposures"] {
            assert!(ddl.contains(&format!("CREATE EXTERNAL TABLE IF NOT EXISTS analytics.{table} (")), "{ddl}");
            assert!(ddl.contains(&format!("LOCATION 's3://shop/vitrine/{table}/'")), "{ddl}");
        }
        assert!(
            ddl.contains(
                "`detections` array<struct<label:string,class_id:int,score:float,x0:float,y0:float,x1:float,y1:float,track_id:bigint>>"
            ),
            "{ddl}"
        );
        assert!(ddl.contains("`captured_at` timestamp"), "{ddl}");
        assert_eq!(ddl.matches("PARTITIONED BY (dt string, hour string)").count(), 3);
        assert!(!ddl.contains("/*"), "every column type is mapped: {ddl}");
    }
}
