//! The viewer page: plays a stream and overlays product cards in sync with the video.
pub const PAGE: &str = include_str!("viewer.html");
