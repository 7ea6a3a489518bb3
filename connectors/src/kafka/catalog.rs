//! The catalog from a compacted Kafka topic: key = sku, value = the product's JSON, a
//! tombstone (no value) deletes it. The topic is read whole from the beginning at start (no
//! committed offsets: the compacted topic is the catalog) and followed after that; each
//! change becomes -1 for the old entry and +1 for the new one.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use vitrine_schemas::CatalogItem;

use super::{client_config, describe, describe_for, ClientLog};
use crate::catalog::{serve_image, CatalogChange, CatalogProblem};
use crate::images::ImageStore;

/// Applies one record of the topic to `current`; returns the changes it makes.
pub fn apply(
    current: &mut HashMap<String, CatalogItem>,
    key: &str,
    value: Option<&[u8]>,
    prepare: impl FnOnce(&mut CatalogItem) -> Result<(), String>,
) -> Result<Vec<CatalogChange>, String> {
    let mut changes = Vec::new();
    let next = match value {
        None => None,
        Some(bytes) => {
            let mut item: CatalogItem =
                serde_json::from_slice(bytes).map_err(|e| format!("not a catalog entry: {e}"))?;
            if item.sku != key {
                return Err(format!(
                    "the key `{key}` and the value's sku `{}` differ; the key must be the sku",
                    item.sku
                ));
            }
            if item.label.is_empty() {
                return Err("`label` must not be empty".into());
            }
            if let Err(e) = prepare(&mut item) {
                tracing::warn!(sku = key, error = %e, "catalog picture");
            }
            Some(item)
        }
    };
    let old = current.remove(key);
    if old == next {
        if let Some(item) = old {
            current.insert(key.to_string(), item);
        }
        return Ok(changes);
    }
    if let Some(old) = old {
        changes.push((old, -1));
    }
    if let Some(next) = next {
        current.insert(key.to_string(), next.clone());
        changes.push((next, 1));
    }
    Ok(changes)
}

/// Follows the topic until `stop`, sending changes as they come.
pub fn run(
    brokers: &str,
    topic: &str,
    images: &ImageStore,
    base_dir: &Path,
    changes: &SyncSender<Vec<CatalogChange>>,
    stop: &Arc<AtomicBool>,
    on_problem: &dyn Fn(CatalogProblem),
) -> Result<(), String> {
    let consumer: BaseConsumer<ClientLog> = client_config(brokers)
        .set("group.id", "vitrine-catalog")
        .set("enable.auto.commit", "false")
        .create_with_context(ClientLog)
        .map_err(|e| describe(&e, brokers))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| describe_for(&consumer, &e, brokers))?;
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if partitions == 0 {
        return Err(format!(
            "catalog topic `{topic}` does not exist on {brokers}: create it with `vitrine topics create SPEC`"
        ));
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| describe(&e, brokers))?;
    tracing::info!(topic, partitions, "following the catalog topic");
    let mut current = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(200);
        while let Some(message) = consumer.poll(wait) {
            wait = Duration::ZERO;
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(topic, error = %describe(&e, brokers), "catalog topic poll failed");
                    break;
                }
            };
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let problem = |reason: String| CatalogProblem {
                path: format!("{}/{}@{}", m.topic(), m.partition(), m.offset()).into(),
                line: m.offset().max(0) as usize,
                reason,
            };
            if key.is_empty() {
                on_problem(problem("no key: the key must be the sku".into()));
                continue;
            }
            match apply(&mut current, &key, m.payload(), |item| serve_image(item, base_dir, images)) {
                Ok(c) => batch.extend(c),
                Err(reason) => on_problem(problem(reason)),
            }
            if batch.len() >= 10_000 {
                break;
            }
        }
        if !batch.is_empty() {
            tracing::info!(topic, changes = batch.len(), products = current.len(), "catalog changed");
            images.keep_only(current.values().filter_map(|i: &CatalogItem| i.image.as_deref()));
            if changes.send(batch).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(sku: &str, price: f64) -> Vec<u8> {
        format!(r#"{{"sku":"{sku}","label":"cup","title":"Mug","price":{price},"currency":"EUR"}}"#).into_bytes()
    }

    #[test]
    fn upserts_and_tombstones_become_retractions_and_additions() {
        let mut current = HashMap::new();
        let ok = |_: &mut CatalogItem| Ok(());
        let added = apply(&mut current, "A", Some(&json("A", 1.0)), ok).unwrap();
        assert_eq!(added.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1]);
        assert!(apply(&mut current, "A", Some(&json("A", 1.0)), ok).unwrap().is_empty(), "no change, no update");
        let changed = apply(&mut current, "A", Some(&json("A", 2.0)), ok).unwrap();
        assert_eq!(changed.iter().map(|c| (c.0.price.0, c.1)).collect::<Vec<_>>(), vec![(100, -1), (200, 1)]);
        let deleted = apply(&mut current, "A", None, ok).unwrap();
        assert_eq!(deleted.iter().map(|c| (c.0.price.0, c.1)).collect::<Vec<_>>(), vec![(200, -1)]);
        assert!(current.is_empty());
    }

    #[test]
    fn a_key_that_is_not_the_sku_is_refused() {
        let err = apply(&mut HashMap::new(), "B", Some(&json("A", 1.0)), |_| Ok(())).unwrap_err();
        assert!(err.contains("key"), "{err}");
    }
}
