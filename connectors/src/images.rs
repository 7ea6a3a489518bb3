//! Product pictures served by vitrine itself (the origin a CDN caches): each is addressed by
//! a hash of its bytes, so its URL changes whenever the picture does and can be cached forever.
//! A JPEG picture also gets a thumbnail, made once when it is added: `{hash}-256.jpg`, at
//! most 256 pixels a side (what a product card shows).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

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
    /// Pictures no catalog row uses any more, since when: served for [`RELEASE_GRACE`] still
    /// (viewers hold cards with their URLs), then dropped, so a churning catalog does not grow
    /// memory without end.
    released: Arc<Mutex<HashMap<String, Instant>>>,
}

/// How long a picture that no product uses any more is still served.
pub const RELEASE_GRACE: Duration = Duration::from_secs(600);

fn content_type(ext: &str) -> Option<&'static str> {
    match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        "gif" => Some("image/gif"),
        _ => None,
    }
}

/// FNV-1a, 64 bits (the `fnv` crate): stable across runs (URLs must not change on restart).
fn hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// Longest side of a thumbnail, pixels.
pub const THUMBNAIL_SIDE: u32 = 256;

/// The thumbnail URL of a picture URL vitrine serves (`/v1/images/{hash}.{ext}`).
pub fn thumbnail_url(image_url: &str) -> Option<String> {
    let name = image_url.strip_prefix("/v1/images/")?;
    let (hash, _) = name.split_once('.')?;
    Some(format!("/v1/images/{hash}-{THUMBNAIL_SIDE}.jpg"))
}

/// A JPEG of at most [`THUMBNAIL_SIDE`] a side, or why not.
fn thumbnail(jpeg: &[u8]) -> Result<Vec<u8>, String> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{PixelType, ResizeOptions, Resizer};
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(jpeg, options);
    let rgb = decoder.decode().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions().map(|(w, h)| (w as u32, h as u32)).ok_or("no dimensions")?;
    let scale = (THUMBNAIL_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
    let src = ImageRef::new(w, h, &rgb, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::new(tw, th, PixelType::U8x3);
    Resizer::new().resize(&src, &mut dst, &ResizeOptions::new()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(dst.buffer(), tw as u16, th as u16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

impl ImageStore {
    /// Reads a local picture and returns its URL path (`/v1/images/{hash}.{ext}`); a JPEG also
    /// gets its thumbnail (see [`thumbnail_url`]), made once per picture.
    pub fn add_file(&self, path: &Path) -> Result<String, String> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let content_type =
            content_type(ext).ok_or_else(|| format!("{}: not a jpg, png, webp or gif picture", path.display()))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let h = format!("{:016x}", hash(&bytes));
        let name = format!("{h}.{}", ext.to_ascii_lowercase());
        if self.get(&name).is_some() {
            return Ok(format!("/v1/images/{name}")); // the same picture again: nothing to make
        }
        if content_type == "image/jpeg" {
            match thumbnail(&bytes) {
                Ok(thumb) => {
                    let etag = format!("\"{:016x}\"", hash(&thumb));
                    let image = StoredImage { bytes: thumb.into(), content_type, etag };
                    self.images.write().expect("image store lock").insert(format!("{h}-{THUMBNAIL_SIDE}.jpg"), image);
                }
                Err(e) => {
                    tracing::warn!(picture = %path.display(), error = %e, "no thumbnail: the full picture is served")
                }
            }
        }
        let image = StoredImage { bytes: bytes.into(), content_type, etag: format!("\"{h}\"") };
        self.images.write().expect("image store lock").insert(name.clone(), image);
        Ok(format!("/v1/images/{name}"))
    }

    pub fn get(&self, name: &str) -> Option<StoredImage> {
        self.images.read().expect("image store lock").get(name).cloned()
    }

    /// The catalog now uses only the pictures at `urls` (as [`ImageStore::add_file`] gave
    /// them): the others (and their thumbnails) are dropped once unused for [`RELEASE_GRACE`].
    pub fn keep_only<'a>(&self, urls: impl IntoIterator<Item = &'a str>) {
        self.keep_only_at(urls, Instant::now());
    }

    fn keep_only_at<'a>(&self, urls: impl IntoIterator<Item = &'a str>, now: Instant) {
        let mut in_use = std::collections::HashSet::new();
        for url in urls {
            if let Some(name) = url.strip_prefix("/v1/images/") {
                in_use.insert(name.to_string());
                in_use.extend(thumbnail_url(url).and_then(|t| t.strip_prefix("/v1/images/").map(str::to_string)));
            }
        }
        let mut released = self.released.lock().expect("released images");
        let mut images = self.images.write().expect("image store lock");
        released.retain(|name, _| !in_use.contains(name));
        for name in images.keys().filter(|name| !in_use.contains(*name)) {
            released.entry(name.clone()).or_insert(now);
        }
        let expired: Vec<String> = released
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= RELEASE_GRACE)
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            images.remove(&name);
            released.remove(&name);
        }
    }

    /// How many pictures (thumbnails included) are held.
    pub fn len(&self) -> usize {
        self.images.read().expect("image store lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_urls_keep_the_hash_they_had() {
        // The hand-written FNV-1a's value before the `fnv` crate: URLs must not change.
        assert_eq!(hash(b"vitrine"), 0xb9f1_2977_80a8_7310);
    }

    #[test]
    fn a_jpeg_gets_a_small_thumbnail_once() {
        let store = ImageStore::default();
        let photo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tests/fixtures/astronaut.jpg"));
        let url = store.add_file(photo).unwrap();
        let thumb_url = thumbnail_url(&url).unwrap();
        assert!(thumb_url.ends_with("-256.jpg"), "{thumb_url}");
        let thumb = store.get(thumb_url.strip_prefix("/v1/images/").unwrap()).expect("a thumbnail");
        let original = store.get(url.strip_prefix("/v1/images/").unwrap()).unwrap();
        assert!(thumb.bytes.len() < original.bytes.len() / 2, "{} vs {}", thumb.bytes.len(), original.bytes.len());
        let mut decoder = zune_jpeg::JpegDecoder::new(&thumb.bytes[..]);
        decoder.decode_headers().unwrap();
        assert_eq!(decoder.dimensions(), Some((256, 256)), "512x512 photo -> 256x256");
        assert_ne!(thumb.etag, original.etag);
        // The same picture again (another catalog row, a reload): the same URLs, nothing remade.
        let before = Arc::as_ptr(&thumb.bytes);
        assert_eq!(store.add_file(photo).unwrap(), url);
        let again = store.get(thumb_url.strip_prefix("/v1/images/").unwrap()).unwrap();
        assert_eq!(Arc::as_ptr(&again.bytes), before);
        assert_eq!(thumbnail_url("https://cdn.example/a.jpg"), None);
    }

    #[test]
    fn pictures_no_product_uses_are_dropped_after_a_grace_period() {
        let store = ImageStore::default();
        let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tests/fixtures"));
        let apple = store.add_file(&fixtures.join("apple.jpg")).unwrap();
        let coffee = store.add_file(&fixtures.join("coffee.jpg")).unwrap();
        assert_eq!(store.len(), 4, "two pictures and their thumbnails");
        let start = Instant::now();
        // The coffee picture was replaced: still served during the grace period...
        store.keep_only_at([apple.as_str()], start);
        store.keep_only_at([apple.as_str()], start + RELEASE_GRACE / 2);
        assert_eq!(store.len(), 4);
        // ...then dropped with its thumbnail; the apple stays.
        store.keep_only_at([apple.as_str()], start + RELEASE_GRACE);
        assert_eq!(store.len(), 2);
        assert!(store.get(apple.strip_prefix("/v1/images/").unwrap()).is_some());
        assert!(store.get(coffee.strip_prefix("/v1/images/").unwrap()).is_none());
        // A picture used again before the grace ends is kept.
        let coffee = store.add_file(&fixtures.join("coffee.jpg")).unwrap();
        store.keep_only_at([apple.as_str()], start + RELEASE_GRACE * 2);
        store.keep_only_at([apple.as_str(), coffee.as_str()], start + RELEASE_GRACE * 2 + RELEASE_GRACE / 2);
        store.keep_only_at([apple.as_str(), coffee.as_str()], start + RELEASE_GRACE * 4);
        assert_eq!(store.len(), 4);
    }
}
