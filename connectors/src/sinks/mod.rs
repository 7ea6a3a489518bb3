//! Durable outputs: Parquet tables and the dead-letter file.

pub mod dead_letter;
pub mod parquet;
