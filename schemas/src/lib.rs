//! Plain data of vitrine: what flows through the dataflow, what leaves it, and how it is
//! configured. No I/O, no runtime: every other crate depends on this one.

pub mod address_range;
mod catalog;
mod detection;
mod event;
mod frame;
pub mod protocol;
pub mod spec;
pub mod tables;
pub mod truth;

pub use catalog::{CatalogItem, Money};
pub use detection::{BBox, Detection, FrameDetections, ProductMatch};
pub use event::{DeadLetter, EventKind, Exposure, ProductEvent};
pub use frame::{Cause, Change, Frame, SourcePosition, MAX_SEQ, MAX_TIME_MS};

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
