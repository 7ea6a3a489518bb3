//! The catalog's pictures, embedded for matching: a step between the catalog threads and the
//! workers. A product whose picture is new or changed is embedded (and put in the
//! [`PictureIndex`]) before its row reaches the dataflow, so the first frame that could show it
//! already has its picture to compare with. A picture given by URL is fetched here, within
//! `decode.max_bytes` and [`FETCH_TIMEOUT`].

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
    pub urls: UrlPictures,
    pub limits: DecodeLimits,
}

/// How long fetching one picture by URL may take.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches the pictures that catalog rows give by URL (HTTP or HTTPS), one at a time, on a
/// runtime of the pictures thread's own.
pub(super) struct UrlPictures {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl UrlPictures {
    pub fn new() -> std::io::Result<UrlPictures> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().map_err(std::io::Error::other)?;
        Ok(UrlPictures { runtime, client })
    }

    /// The picture's bytes, at most `max_bytes` of them; else why not.
    pub fn fetch(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, String> {
        let too_large = || format!("it is over decode.max_bytes ({max_bytes} bytes)");
        self.runtime.block_on(async {
            let mut response = self.client.get(url).send().await.map_err(|e| format!("fetching it failed: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("its server answered {}", response.status()));
            }
            if response.content_length().is_some_and(|n| n > max_bytes as u64) {
                return Err(too_large());
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading it failed: {e}"))? {
                if bytes.len() + chunk.len() > max_bytes {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(bytes)
        })
    }
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
        let bytes = match url.strip_prefix("/v1/images/") {
            Some(name) => {
                self.images.get(name).map(|p| p.bytes.to_vec()).ok_or_else(|| "it is not in the image store".into())
            }
            None => self.urls.fetch(&url, self.limits.max_bytes),
        };
        let embedded = bytes.and_then(|bytes| self.embedder.embed_jpeg(&bytes, self.limits).map_err(|e| e.to_string()));
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
            colour: 0.0,
        };
        let embedder = Embedder::load(&Runtime::load(&library).unwrap(), &config).unwrap();
        PictureEmbedder {
            embedder,
            index: PictureIndex::default(),
            images: images.clone(),
            urls: UrlPictures::new().unwrap(),
            limits: DecodeLimits::default(),
        }
    }

    /// A real HTTP server (axum) on a free port: `path` -> (status, body). Its base URL.
    fn serve(routes: Vec<(&'static str, u16, Vec<u8>)>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut router = axum::Router::new();
                for (path, status, body) in routes {
                    let answer = move || {
                        let body = body.clone();
                        async move { (axum::http::StatusCode::from_u16(status).unwrap(), body) }
                    };
                    router = router.route(path, axum::routing::get(answer));
                }
                axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), router).await.unwrap();
            });
        });
        base
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
        // No picture, or a PNG: nothing to embed, the label decides.
        assert_eq!(step.apply(&mut item("PLAIN", None), 1), None);
        assert_eq!(step.apply(&mut item("DRAWN", Some("https://shop.example/mug.png".into())), 1), None);
        assert!(step.index.is_empty());
    }

    #[test]
    fn a_picture_at_a_url_is_fetched_and_one_that_cannot_be_is_a_named_problem() {
        let mug = std::fs::read(root().join("examples/sample/images/mug.jpg")).unwrap();
        let base = serve(vec![("/p/mug.jpg", 200, mug.clone()), ("/p/gone.jpg", 404, b"no such picture".to_vec())]);
        let images = ImageStore::default();
        let mut step = step(&images);
        let mut fetched = item("MUG", Some(format!("{base}/p/mug.jpg?v=2")));
        assert_eq!(step.apply(&mut fetched, 1), None);
        assert!(step.index.has_label("cup", "any-stream") && fetched.image.is_some());
        step.apply(&mut fetched, -1);

        let mut gone = item("GONE", Some(format!("{base}/p/gone.jpg")));
        let problem = step.apply(&mut gone, 1).expect("a problem");
        assert!(problem.contains("/p/gone.jpg") && problem.contains("answered 404"), "{problem}");
        assert_eq!(gone.image, None, "shown without the picture, matched on its label");

        step.limits.max_bytes = mug.len() - 1;
        let problem = step.apply(&mut item("HUGE", Some(format!("{base}/p/mug.jpg"))), 1).expect("a problem");
        assert!(problem.contains("over decode.max_bytes"), "{problem}");
        let problem =
            step.apply(&mut item("NOBODY", Some("http://127.0.0.1:9/p/mug.jpg".into())), 1).expect("a problem");
        assert!(problem.contains("fetching it failed"), "{problem}");
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
