//! Arrow schemas of the analytics tables that vitrine writes as Parquet, and the Athena DDL
//! that reads them.
//!
//! Every integer is signed: Athena's engine (Trino) has no unsigned integers, so a column
//! written as unsigned Parquet would be read wrongly, or refused, there.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The tables, by name, with their schemas, in the order they are documented.
pub fn tables() -> [(&'static str, SchemaRef); 3] {
    [
        ("detections", detections_schema()),
        ("product_events", product_events_schema()),
        ("exposures", exposures_schema()),
    ]
}

/// `detections`: one row per box the model found (a frame without boxes has no row).
/// Key: `stream_id`, `seq`, `box_index`.
pub fn detections_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("box_index", DataType::Int32, false),
        Field::new("pts_ms", DataType::Int64, false),
        Field::new("captured_at", ts(), false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("class_id", DataType::Int32, false),
        Field::new("score", DataType::Float32, false),
        Field::new("x0", DataType::Float32, false),
        Field::new("y0", DataType::Float32, false),
        Field::new("x1", DataType::Float32, false),
        Field::new("y1", DataType::Float32, false),
        Field::new("track_id", DataType::Int64, true),
    ]))
}

/// `product_events`: one row per appeared / updated / disappeared event. Key: `event_id`.
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
        Field::new("captured_at", ts(), false),
        Field::new("emitted_at", ts(), false),
        // Null where the product matched on its label alone (no picture, or matching off).
        Field::new("match_score", DataType::Float32, true),
    ]))
}

/// `exposures`: one row per interval a product was on screen (at least `min_dwell` long).
/// Key: `stream_id`, `sku`, `start_pts_ms`.
pub fn exposures_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("sku", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("start_pts_ms", DataType::Int64, false),
        Field::new("end_pts_ms", DataType::Int64, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("start_at", ts(), false),
        Field::new("end_at", ts(), false),
        Field::new("frames_seen", DataType::Int64, false),
        Field::new("max_score", DataType::Float32, false),
        Field::new("mean_score", DataType::Float32, false),
        Field::new("appeared_event_id", DataType::Utf8, false),
    ]))
}

/// The Athena (Trino) type of an Arrow type, as the Parquet files store it.
fn athena_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        DataType::List(item) => format!("array<{}>", athena_type(item.data_type())),
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|f| format!("{}:{}", f.name(), athena_type(f.data_type()))).collect();
            format!("struct<{}>", fields.join(","))
        }
        // Unsigned and other types have no Athena equivalent: the schemas above use none.
        other => panic!("no Athena type for {other}: the table schemas must use signed integers"),
    }
}

/// `CREATE EXTERNAL TABLE` statements (Athena) for the tables under `location` (e.g.
/// `s3://bucket/vitrine`), partitioned by `dt` and `hour` as the Parquet sink writes them,
/// with partition projection from `first_day` (`YYYY-MM-DD`) on, so no `MSCK REPAIR` is needed.
pub fn athena_ddl(location: &str, database: &str, first_day: &str) -> String {
    let location = location.trim_end_matches('/');
    let mut out = String::new();
    for (name, schema) in tables() {
        let columns: Vec<String> =
            schema.fields().iter().map(|f| format!("  `{}` {}", f.name(), athena_type(f.data_type()))).collect();
        out.push_str(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {database}.{name} (\n{}\n)\n\
             PARTITIONED BY (dt string, hour string)\n\
             STORED AS PARQUET\n\
             LOCATION '{location}/{name}/'\n\
             TBLPROPERTIES (\n  \
             'parquet.compression' = 'ZSTD',\n  \
             'projection.enabled' = 'true',\n  \
             'projection.dt.type' = 'date', 'projection.dt.format' = 'yyyy-MM-dd', 'projection.dt.range' = '{first_day},NOW',\n  \
             'projection.hour.type' = 'integer', 'projection.hour.range' = '0,23', 'projection.hour.digits' = '2',\n  \
             'storage.location.template' = '{location}/{name}/dt=${{dt}}/hour=${{hour}}/'\n);\n\n",
            columns.join(",\n")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_covers_every_table_with_its_partitions() {
        let ddl = athena_ddl("s3://shop/vitrine/", "analytics", "2026-01-01");
        for (table, _) in tables() {
            assert!(ddl.contains(&format!("CREATE EXTERNAL TABLE IF NOT EXISTS analytics.{table} (")), "{ddl}");
            assert!(ddl.contains(&format!("LOCATION 's3://shop/vitrine/{table}/'")), "{ddl}");
            assert!(ddl.contains(&format!("'s3://shop/vitrine/{table}/dt=${{dt}}/hour=${{hour}}/'")), "{ddl}");
        }
        assert!(ddl.contains("`track_id` bigint"), "{ddl}");
        assert!(ddl.contains("`captured_at` timestamp"), "{ddl}");
        assert!(ddl.contains("'projection.dt.range' = '2026-01-01,NOW'"), "{ddl}");
        assert_eq!(ddl.matches("PARTITIONED BY (dt string, hour string)").count(), 3);
    }

    #[test]
    fn no_table_has_an_unsigned_column() {
        for (table, schema) in tables() {
            for field in schema.fields() {
                let t = field.data_type();
                assert!(!t.is_unsigned_integer(), "{table}.{} is {t}: Athena has no unsigned integers", field.name());
            }
        }
    }
}
