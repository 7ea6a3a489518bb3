//! Parquet tables for analytics (Athena, DuckDB, Spark): `detections`, `product_events` and
//! `exposures`, Hive-partitioned by capture date and hour
//! (`{root}/{table}/dt=YYYY-MM-DD/hour=HH/{input}-{start}-{end}.parquet`), on a local path or
//! an object store, written exactly once whatever crashes (see [`files`]).

pub mod files;
pub mod publisher;
pub mod staging;
pub mod store;
pub mod tables;

pub use files::{FileCutter, FileSet, InputKey, Progress, Roll};
pub use publisher::{Layout, Publisher, PublisherHandle, PublisherMetrics};
pub use store::{StoreError, TableStore};
