//! UTC dates of Unix times in ms, by chrono (in the tree already, through arrow): the Parquet
//! partitions and RFC 3339 times.

use chrono::{DateTime, SecondsFormat, Utc};

/// The UTC date and time of a Unix time in ms; one chrono cannot represent (beyond the year
/// 262,000) is the epoch.
pub fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-25T09:30:00.123Z`
pub fn rfc3339(ms: i64) -> String {
    utc(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(1_709_251_199_123), "2024-02-29T23:59:59.123Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
