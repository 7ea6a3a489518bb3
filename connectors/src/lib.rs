//! Where vitrine's data comes from and where it goes.
//!
//! Sources (each on its own thread, sending frames into a bounded channel):
//! [`sources::video`] (ffmpeg, and its live [`hls`] for viewers), [`sources::folder`] (JPEG files) and the [`catalog`] file watcher.
//! Sinks: the WebSocket [`server`] with its [`hub`], [`parquet`] and [`sinks::dead_letter`].

pub mod catalog;
pub mod hls;
pub mod hub;
pub mod images;
pub mod kafka;
pub mod metrics;
pub mod parquet;
pub mod server;
pub mod sinks;
pub mod sources;

mod error;
pub mod time_format;
pub use error::ConnectorError;
