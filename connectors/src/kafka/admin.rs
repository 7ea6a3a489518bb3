//! Topic creation: `vitrine topics create` and the sampler's first run.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use super::{client_config, describe, ClientLog, MAX_MESSAGE_BYTES};

/// A topic to create: name, partitions and topic configs.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(&'static str, String)>,
}

impl TopicSpec {
    /// A topic of frames (or other large messages).
    pub fn frames(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            configs: vec![
                ("max.message.bytes", MAX_MESSAGE_BYTES.to_string()),
                ("retention.ms", (6 * 3600 * 1000).to_string()),
            ],
        }
    }

    /// A topic of results.
    pub fn results(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, configs: vec![] }
    }

    /// A compacted topic keyed by id (the catalog).
    pub fn compacted(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, configs: vec![("cleanup.policy", "compact".into())] }
    }
}

/// Creates the topics that do not exist yet; returns the names created.
pub async fn create_topics(brokers: &str, topics: &[TopicSpec]) -> Result<Vec<String>, String> {
    let admin: AdminClient<ClientLog> =
        client_config(brokers).create_with_context(ClientLog).map_err(|e| describe(&e, brokers))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            t.configs
                .iter()
                .fold(NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1)), |n, (k, v)| n.set(k, v))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics(&new, &options).await.map_err(|e| describe(&e, brokers))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code}")),
        }
    }
    Ok(created)
}

/// The number of partitions of `topic` (0 when it does not exist), asking the broker.
pub fn partitions(brokers: &str, topic: &str) -> Result<usize, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer<ClientLog> =
        super::client_config(brokers).create_with_context(ClientLog).map_err(|e| super::describe(&e, brokers))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(5))
        .map_err(|e| super::describe(&e, brokers))?;
    Ok(metadata.topics().first().map_or(0, |t| t.partitions().len()))
}
