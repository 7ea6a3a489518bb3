//! The catalog's pictures, embedded for matching: a step between the catalog threads and the
//! workers. A product whose picture is new or changed is embedded (and put in the
//! [`PictureIndex`]) before its row reaches the dataflow, so the first frame that could show it
//! already has its picture to compare with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vitrine_connectors::catalog::CatalogChange;
use vitrine_connectors::images::ImageStore;
use vitrine_models::{DecodeLimits, Embedder};
use vitrine_operators::{Picture, PictureIndex};
use vitrine_schemas::{now_ms, CatalogItem, DeadLetter};

use super::sinks::Output;

/// Embeds the pictures of catalog rows into `index`.
pub(super) struct PictureEmbedder {
    pub embedder: Embedder,
    pub index: PictureIndex,
    pub images: ImageStore,
    pub limits: DecodeLimits,
}

impl PictureEmbedder {
    /// Takes one change: an added row's picture is embedded (a row whose picture cannot be read
    /// keeps its card picture but loses it for matching: it matches on its label, and the
    /// returned problem says why), a removed row's is forgotten.
    pub fn apply(&mut self, item: &mut CatalogItem, diff: isize) -> Option<String> {
        if diff < 0 {
            self.index.remove(&item.sku);
            return None;
        }
        let url = item.matched_picture()?.to_string();
        let name = url.trim_start_matches("/v1/images/");
        let embedded = match self.images.get(name) {
            Some(picture) => self.embedder.embed_jpeg(&picture.bytes, self.limits).map_err(|e| e.to_string()),
            None => Err("it is not in the image store".into()),
        };
        match embedded {
            Ok(embedding) => {
                self.index.insert(Picture {
                    sku: item.sku.clone(),
                    label: item.label.clone(),
                    streams: item.streams.clone(),
                    embedding,
                });
                None
            }
            Err(why) => {
                item.image = None;
                Some(format!(
                    "product {}: its picture {url} cannot be matched ({why}); it is shown without a picture and \
                     matches on its label `{}`. Give it a JPEG picture",
                    item.sku, item.label
                ))
            }
        }
    }

    /// Runs on a thread of its own: takes the catalog threads' batches from `from_catalog`,
    /// embeds their pictures and hands them on to `to_workers`, until both ends close or `stop`.
    pub fn start(
        mut self,
        from_catalog: Receiver<Vec<CatalogChange>>,
        to_workers: SyncSender<Vec<CatalogChange>>,
        out: SyncSender<Output>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("vitrine-pictures".into()).spawn(move || loop {
            let mut batch = match from_catalog.recv_timeout(Duration::from_millis(200)) {
                Ok(batch) => batch,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return,
            };
            for (item, diff) in batch.iter_mut() {
                if let Some(problem) = self.apply(item, *diff) {
                    tracing::warn!(sku = %item.sku, problem = %problem, "catalog picture not matched");
                    let _ = out.send(Output::DeadLetter(picture_problem(problem)));
                }
            }
            tracing::debug!(pictures = self.index.len(), "catalog pictures embedded");
            if to_workers.send(batch).is_err() {
                return;
            }
        })
    }
}

/// A catalog picture that cannot be matched, as a dead letter of the catalog stage.
fn picture_problem(reason: String) -> DeadLetter {
    DeadLetter {
        stream_id: String::new(),
        seq: 0,
        pts_ms: 0,
        stage: "catalog".into(),
        reason,
        origin: None,
        bytes: 0,
        at_ms: now_ms(),
        payload: Vec::new(),
    }
}
