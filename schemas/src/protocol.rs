//! The WebSocket protocol between vitrine and viewers, version [`PROTOCOL_VERSION`].
//!
//! Server to client, one JSON object per text message, told apart by `type`:
//! `hello` once on connect, then a `snapshot` of the products on screen, then an `event` for
//! each change, and a `heartbeat` when nothing else was sent for a while. A client that falls
//! too far behind is sent a fresh `snapshot` instead of the events it missed.

use serde::{Deserialize, Serialize};

use crate::ProductEvent;

/// Version of this protocol; changes that break clients bump it.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Hello {
        protocol: u32,
        stream_id: String,
        /// Server wall clock, ms since the Unix epoch.
        server_time_ms: i64,
        /// When this run of vitrine started (ms since the Unix epoch). A client that sees it
        /// change after a reconnect knows the server restarted: an embedded stream's media
        /// time, events and video started over.
        run_started_ms: i64,
        /// Latest media time the pipeline has processed for this stream, if any.
        media_time_ms: Option<i64>,
    },
    /// The products on screen as of `media_time_ms`: each is its latest `appeared` or
    /// `updated` event, so `pts_ms` tells since when it is on screen. `last_event_id`: the
    /// stream's last event the snapshot holds (none before the first): a viewer that got the
    /// snapshot and drops resumes after it, as after an event.
    Snapshot { media_time_ms: Option<i64>, products: Vec<ProductEvent>, last_event_id: Option<String> },
    /// One change; the fields are those of [`ProductEvent`].
    Event(ProductEvent),
    /// Sent when the connection was otherwise idle, so clients can tell a quiet stream from a dead one.
    Heartbeat { server_time_ms: i64, media_time_ms: Option<i64> },
}

/// Client to server. Anything else is ignored; oversized or malformed messages close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Asks for a fresh snapshot (e.g. after the page was hidden for a while).
    Snapshot,
}
