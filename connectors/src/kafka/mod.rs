//! Kafka in and out, on the Kafka protocol only (Apache Kafka, MSK, Redpanda, Tansu).
//!
//! Frames travel on a topic (default `vitrine.frames`), key = stream id, value = the JPEG,
//! and their metadata in headers ([`headers`]), so any producer can publish frames.
//! Results go to `vitrine.detections`, `vitrine.product-events` (CloudEvents 1.0, Kafka
//! binding, binary mode) and `vitrine.dead-letter`.

pub mod admin;
pub mod admission;
pub mod catalog;
pub mod fetch;
pub mod frames;
pub mod sampler;
pub mod sink;
pub mod source;
pub mod state;

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::{ClientConfig, ClientContext};

/// Header names of a frame message.
pub mod headers {
    pub const STREAM_ID: &str = "vitrine-stream-id";
    pub const SEQ: &str = "vitrine-seq";
    pub const PTS_MS: &str = "vitrine-pts-ms";
    pub const CAPTURED_AT_MS: &str = "vitrine-captured-at-ms";
    pub const WIDTH: &str = "vitrine-width";
    pub const HEIGHT: &str = "vitrine-height";
    pub const CONTENT_TYPE: &str = "content-type";
    /// A frame sent by reference: `file:///path/to/frame.jpg`, and an empty value.
    pub const FRAME_URL: &str = "vitrine-frame-url";
    /// On dead letters: the stage that refused the frame, and why.
    pub const STAGE: &str = "vitrine-stage";
    pub const REASON: &str = "vitrine-reason";
}

/// Largest message the producer sends and the consumer accepts, in bytes (frames are
/// JPEGs; 8 MB holds a 4K frame at high quality). Brokers must allow it too
/// (`message.max.bytes`, topic `max.message.bytes`; `vitrine topics create` sets the topic's).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Client settings shared by producers and consumers. Every environment variable
/// `VITRINE_KAFKA_<NAME>` sets librdkafka's `<name>` (lowercase, `_` as `.`), so credentials
/// stay out of the spec: `VITRINE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`,
/// `VITRINE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512`, `VITRINE_KAFKA_SASL_USERNAME`, ...
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set("socket.keepalive.enable", "true")
        .set("log_level", "4");
    for (name, value) in kafka_settings_from_env(std::env::vars()) {
        config.set(name, value);
    }
    config
}

/// The librdkafka settings that `VITRINE_KAFKA_*` variables give.
pub fn kafka_settings_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter_map(|(k, v)| Some((k.strip_prefix("VITRINE_KAFKA_")?.to_lowercase().replace('_', "."), v)))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// The last connection, TLS or authentication failure any Kafka client of this process logged.
/// The error a call returns then ("transport failure", a time-out) does not say which it was.
static LAST_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// librdkafka's log lines, as structured logs; failures (facility `FAIL`, or errors) are also
/// kept for [`describe`].
pub fn client_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => tracing::error!(target: "librdkafka", facility, "{message}"),
        L::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
    if facility == "FAIL" || (level as i32) <= RDKafkaLogLevel::Error as i32 {
        *LAST_FAILURE.lock().expect("last Kafka failure") = Some(message.to_string());
    }
}

/// The context of a Kafka client that needs nothing else: its log goes through [`client_log`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientLog;

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        client_log(level, facility, message);
    }
}

impl ConsumerContext for ClientLog {}

/// A Kafka error in words, with what to check: the broker's address, TLS settings or
/// credentials, after the last failure a client logged.
pub fn describe(e: &rdkafka::error::KafkaError, brokers: &str) -> String {
    use rdkafka::error::KafkaError;
    if let KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) = e {
        return format!("invalid Kafka client settings: {e} (check the VITRINE_KAFKA_* variables)");
    }
    let last = LAST_FAILURE.lock().expect("last Kafka failure").clone();
    explain(&e.to_string(), brokers, last.as_deref())
}

/// [`describe`] for an error of a call on `consumer`: first its queued log lines are taken (a
/// consumer handles them only when polled), as they say why a connection failed.
pub fn describe_for<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    e: &rdkafka::error::KafkaError,
    brokers: &str,
) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while std::time::Instant::now() < until {
        let _ = consumer.poll(std::time::Duration::from_millis(20));
    }
    describe(e, brokers)
}

fn explain(error: &str, brokers: &str, last_failure: Option<&str>) -> String {
    let Some(failure) = last_failure else {
        return format!(
            "{error} (brokers {brokers}: is the broker running and reachable? VITRINE_BROKERS overrides the spec)"
        );
    };
    let hint = if failure.contains("SASL") {
        "the broker refused the credentials: check VITRINE_KAFKA_SASL_MECHANISM, VITRINE_KAFKA_SASL_USERNAME and \
         VITRINE_KAFKA_SASL_PASSWORD"
    } else if failure.contains("SSL") || failure.contains("certificate") || failure.contains("security.protocol") {
        "TLS failed: check VITRINE_KAFKA_SECURITY_PROTOCOL (SSL or SASL_SSL for a TLS listener) and \
         VITRINE_KAFKA_SSL_CA_LOCATION (the CA that signed the broker's certificate)"
    } else if failure.contains("APIVERSION_QUERY") || failure.contains("by peer") {
        "the broker closed the connection: does it want TLS (VITRINE_KAFKA_SECURITY_PROTOCOL=SSL) or \
         credentials (SASL_SSL or SASL_PLAINTEXT, with VITRINE_KAFKA_SASL_*)?"
    } else {
        "is the broker running and reachable? VITRINE_BROKERS overrides the spec"
    };
    format!("{error}; last failure: {failure} (brokers {brokers}: {hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitrine_kafka_variables_become_client_settings() {
        let vars = [
            ("VITRINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("VITRINE_KAFKA_SASL_USERNAME", "shop"),
            ("VITRINE_BROKERS", "b:9092"),
            ("VITRINE_KAFKA_", "ignored"),
        ];
        let settings = kafka_settings_from_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(
            settings,
            [("security.protocol".to_string(), "SASL_SSL".to_string()), ("sasl.username".into(), "shop".into())]
        );
    }

    #[test]
    fn a_failure_names_credentials_tls_or_reachability() {
        let sasl = "SASL authentication error: SASL SCRAM authentication failed: broker responded with unknown-user";
        assert!(explain("timed out", "b:9092", Some(sasl)).contains("VITRINE_KAFKA_SASL_USERNAME"));
        let tls = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert!(explain("timed out", "b:9092", Some(tls)).contains("VITRINE_KAFKA_SSL_CA_LOCATION"));
        let refused = "Connect to ipv4#127.0.0.1:9 failed: Connection refused";
        let text = explain("timed out", "b:9092", Some(refused));
        assert!(text.contains("Connection refused") && text.contains("reachable"), "{text}");
        assert!(explain("timed out", "b:9092", None).contains("reachable"));
    }
}
