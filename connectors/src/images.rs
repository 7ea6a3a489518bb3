//! Product pictures served by vitrine itself (the origin a CDN caches): each is addressed by
//! a hash of its bytes, so its URL changes whenever the picture does and can be cached forever.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A picture: its bytes, content type and ETag.
#[derive(Clone, Debug)]
pub struct StoredImage {
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
    pub etag: String,
}

/// Pictures by the name in their URL (`{hash}.{ext}`).
#[derive(Clone, Debug, Default)]
pub struct ImageStore {
    images: Arc<RwLock<HashMap<String, StoredImage>>>,
}

fn content_type(ext: &str) -> Option<&'static str> {
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        "gif" => Some("image/gif"),
        _ => None,
    }
}

/// FNV-1a, 64 bits: stable across runs (URLs must not change on restart).
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl ImageStore {
    /// Reads a local picture and returns its URL path (`/v1/images/{hash}.{ext}`).
    pub fn add_file(&self, path: &Path) -> Result<String, String> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let content_type =
            content_type(ext).ok_or_else(|| format!("{}: not a jpg, png, webp or gif picture", path.display()))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let h = format!("{:016x}", hash(&bytes));
        let name = format!("{h}.{}", ext.to_ascii_lowercase());
        let image = StoredImage { bytes: bytes.into(), content_type, etag: format!("\"{h}\"") };
        self.images.write().expect("image store lock").insert(name.clone(), image);
        Ok(format!("/v1/images/{name}"))
    }

    pub fn get(&self, name: &str) -> Option<StoredImage> {
        self.images.read().expect("image store lock").get(name).cloned()
    }
}
