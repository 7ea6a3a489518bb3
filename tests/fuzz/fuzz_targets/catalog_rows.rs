//! A catalog file from a spreadsheet export: JSONL, CSV or Parquet (the first byte picks),
//! each row an entry or a reason, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((pick, bytes)) = data.split_first() else { return };
    let format = ["jsonl", "csv", "parquet"][*pick as usize % 3];
    if let Ok(rows) = vitrine_connectors::catalog::rows(format, bytes.to_vec()) {
        for (_, row) in rows {
            if let Err(why) = row {
                assert!(!why.is_empty());
            }
        }
    }
});
