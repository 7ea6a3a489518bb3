//! Kafka in and out, on the Kafka protocol only (Apache Kafka, MSK, Redpanda, Tansu).
//!
//! Frames travel on a topic (default `vitrine.frames`), key = stream id, value = the JPEG,
//! and their metadata in headers ([`headers`]), so any producer can publish frames.
//! Results go to `vitrine.detections`, `vitrine.product-events` (CloudEvents 1.0, Kafka
//! binding, binary mode) and `vitrine.dead-letter`.

pub mod admin;
pub mod catalog;
pub mod frames;
pub mod sampler;
pub mod sink;
pub mod source;
pub mod state;

use rdkafka::ClientConfig;

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

/// A Kafka error in words, with what to check.
pub fn describe(e: &rdkafka::error::KafkaError, brokers: &str) -> String {
    use rdkafka::error::KafkaError;
    match e {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => {
            format!("invalid Kafka client settings: {e} (check the VITRINE_KAFKA_* variables)")
        }
        _ => {
            format!("{e} (brokers {brokers}: is the broker running and reachable? VITRINE_BROKERS overrides the spec)")
        }
    }
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
}
