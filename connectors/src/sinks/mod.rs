//! The dead-letter file (the Parquet tables are in [`crate::parquet`]).

pub mod dead_letter;
