//! `vitrine serve`: the viewer tier, apart from the dataflow. It follows the state topic the
//! dataflow's Kafka sink writes (every product event, in one order), rebuilds each stream's
//! products on screen from it, and serves viewers the same protocol as `vitrine run` (hello,
//! snapshot, events, resume by event id), the viewer page, the product pictures (from the
//! spec's catalog) and the samplers' live HLS (`sources[].hls_dir`). It holds no frames and no
//! model: any number of instances behind a load balancer, any instance for any stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::anyhow;
use vitrine_connectors::hub::Hub;
use vitrine_connectors::images::ImageStore;
use vitrine_connectors::kafka::state;
use vitrine_connectors::metrics::{Health, Metrics};
use vitrine_connectors::server::ServerState;
use vitrine_schemas::spec::SourceSpec;

use super::inputs::{self, CatalogInputs};
use super::serve::{self as server_thread, viewer_access};
use crate::spec::LoadedSpec;
use crate::supervise::Supervisor;

/// How long a viewer's last event id from another instance is waited for before a snapshot.
const RESUME_WAIT: Duration = Duration::from_secs(2);

/// Serves viewers from the state topic until `stop` (SIGTERM, Ctrl-C): then every viewer is
/// closed with 1001 (going away) and it returns.
pub fn serve_viewers(loaded: LoadedSpec, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let spec = &loaded.spec;
    let kafka = spec.sinks.kafka.as_ref().ok_or_else(|| {
        anyhow!("vitrine serve follows the state topic of sinks.kafka, and this spec has no sinks.kafka: use the dataflow's spec")
    })?;
    let server = spec.server.as_ref().ok_or_else(|| {
        anyhow!("vitrine serve needs a server: section (listen address, viewer page, limits); add `server: {{}}` for the defaults")
    })?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let supervisor = Supervisor::new(stop.clone(), health.clone());
    let kafka_source = spec.sources.iter().find_map(|s| match s {
        SourceSpec::Kafka(k) => Some(k.clone()),
        _ => None,
    });
    let known = kafka_source.iter().flat_map(|k| k.streams.iter().cloned());
    // Every instance says the same run start (the stream's timeline is Kafka's, not this
    // process's), and waits a little for an event id a viewer brings from another instance.
    let hub = Arc::new(Hub::open(known, server.viewer_queue.get()).with_run_started(0).with_resume_wait(RESUME_WAIT));
    // Viewers wait (up to the replay wait) until the state topic is read: no half-built snapshot.
    hub.hold_viewers_for_replay();

    // The catalog, for the pictures the events point at (its changes reach viewers as events).
    let images = ImageStore::default();
    let (out, _unused) = mpsc::sync_channel(1);
    let catalog = CatalogInputs { images: &images, out: &out, report_problems: false };
    let (changes, catalog_threads) = inputs::start_catalog(&loaded, &catalog, &stop, &supervisor)?;
    let drain = std::thread::Builder::new()
        .name("vitrine-catalog-drain".into())
        .spawn(move || changes.iter().for_each(drop))?;

    let state = ServerState {
        hub: hub.clone(),
        images,
        videos: Arc::new(HashMap::new()),
        hls: Arc::new(HashMap::new()),
        hls_dir: kafka_source.as_ref().and_then(|k| k.hls_dir.as_ref()).map(|d| loaded.resolve(d)),
        viewer_page: server.viewer,
        heartbeat: server.heartbeat,
        metrics: metrics.clone(),
        health: health.clone(),
        access: viewer_access(server)?,
    };
    let server_done = Arc::new(tokio::sync::Notify::new());
    let listen = server.listen;
    let server = server_thread::start(Some((listen, state)), stop.clone(), server_done.clone(), supervisor.clone())?;

    let follower = {
        let (brokers, topic) = (kafka.brokers.clone(), kafka.state_topic.clone());
        let (hub, stop, supervisor, health) = (hub.clone(), stop.clone(), supervisor.clone(), health.clone());
        let metrics = metrics.clone();
        std::thread::Builder::new().name("vitrine-state".into()).spawn(move || {
            let mut caught_up = || {
                hub.replay_done();
                health.set_ready(true);
            };
            if let Err(e) = state::follow(&brokers, &topic, &hub, &metrics, &stop, &mut caught_up) {
                supervisor.fail(format!("following the state topic {topic} stopped: {e}"));
            }
        })?
    };
    tracing::info!(topic = %kafka.state_topic, %listen, "serving viewers from the state topic");
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    health.set_ready(false);
    hub.close();
    server_done.notify_one();
    let _ = server.join();
    let _ = follower.join();
    for t in catalog_threads {
        let _ = t.join();
    }
    let _ = drain.join();
    match supervisor.failure() {
        Some(failure) => Err(anyhow!(failure)),
        None => Ok(()),
    }
}
