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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vitrine_models::{find_runtime_library, EmbedderConfig, Runtime};
    use vitrine_schemas::spec::ExecutionProvider;
    use vitrine_schemas::Money;

    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    fn step(images: &ImageStore) -> PictureEmbedder {
        let library = find_runtime_library(None, &[root()]).expect("ONNX Runtime missing: run scripts/setup.sh");
        let config = EmbedderConfig {
            model: root().join("models/zoo/mobilenetv2-imagenet-embedder/model.onnx"),
            side: 160,
            intra_threads: 1,
            execution_provider: ExecutionProvider::Cpu,
            device_id: 0,
            centre: None,
        };
        let embedder = Embedder::load(&Runtime::load(&library).unwrap(), &config).unwrap();
        PictureEmbedder {
            embedder,
            index: PictureIndex::default(),
            images: images.clone(),
            limits: DecodeLimits::default(),
        }
    }

    fn item(sku: &str, image: Option<String>) -> CatalogItem {
        CatalogItem {
            sku: sku.into(),
            label: "cup".into(),
            title: sku.into(),
            price: Money(100),
            currency: "EUR".into(),
            image,
            url: None,
            in_stock: true,
            streams: vec![],
        }
    }

    #[test]
    fn a_picture_is_embedded_when_its_row_comes_and_forgotten_when_it_goes() {
        let images = ImageStore::default();
        let mut step = step(&images);
        let url = images.add_file(&root().join("examples/sample/images/mug.jpg")).unwrap();
        let mut mug = item("MUG", Some(url));
        assert_eq!(step.apply(&mut mug, 1), None);
        assert!(step.index.has_label("cup", "any-stream") && mug.image.is_some());
        step.apply(&mut mug, -1);
        assert!(step.index.is_empty());
        // No picture, or one at a URL: nothing to embed, the label decides.
        assert_eq!(step.apply(&mut item("PLAIN", None), 1), None);
        assert_eq!(step.apply(&mut item("REMOTE", Some("https://shop.example/mug.jpg".into())), 1), None);
        assert!(step.index.is_empty());
    }

    #[test]
    fn a_picture_that_cannot_be_decoded_is_a_named_problem_and_the_product_falls_back_to_its_label() {
        let dir = std::env::temp_dir().join(format!("vitrine-pictures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broken = dir.join("broken.jpg");
        std::fs::write(&broken, b"not a jpeg at all").unwrap();
        let images = ImageStore::default();
        let mut step = step(&images);
        let mut cup = item("CUP", Some(images.add_file(&broken).unwrap()));
        let problem = step.apply(&mut cup, 1).expect("a problem");
        assert!(problem.contains("product CUP") && problem.contains("matches on its label `cup`"), "{problem}");
        assert_eq!(cup.image, None, "shown without the picture, matched on its label");
        assert!(step.index.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
