//! Where the tables go: a local folder (the default) or an object store by URL
//! (`s3://bucket/prefix`), through `object_store`. For S3, credentials, region and endpoint
//! come from the environment as the AWS SDKs read them (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ...); an
//! `http://` endpoint (a local S3-compatible server) is allowed as it is given.
//!
//! A put is atomic: S3 shows an object only once it is whole, and the local store writes a
//! staged file and renames it (with fsync). A local write killed half-way leaves its staged
//! file (`name#N`, which no reader lists); it is removed when the same file is put again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

/// A failed store operation, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {location}: {reason}")]
pub struct StoreError {
    pub operation: &'static str,
    pub location: String,
    pub reason: String,
    /// A network error, a throttled or failing server, a full disk: worth retrying. Refused
    /// credentials or a missing bucket are not.
    pub retryable: bool,
}

/// The root that the tables are written under.
#[derive(Clone)]
pub struct TableStore {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// The folder, for a local store.
    local_root: Option<PathBuf>,
    /// The location as the user wrote it (for messages).
    location: String,
}

impl std::fmt::Debug for TableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableStore").field("location", &self.location).finish()
    }
}

impl TableStore {
    /// Opens `location`: a URL (`s3://bucket/prefix`) or a folder (relative to `base_dir`).
    pub fn open(location: &str, base_dir: &Path) -> Result<TableStore, StoreError> {
        let refuse =
            |reason: String| StoreError { operation: "open", location: location.into(), reason, retryable: false };
        if let Some((scheme, _)) = location.split_once("://") {
            if scheme != "s3" && scheme != "s3a" {
                return Err(refuse(format!(
                    "`{scheme}://` is not supported: use a local folder or s3://bucket/prefix (S3 and S3-compatible stores)"
                )));
            }
            let url = url_of(location).map_err(refuse)?;
            let endpoint =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
            let store = AmazonS3Builder::from_env()
                .with_url(location)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_retry(quick_retries())
                .build()
                .map_err(|e| refuse(format!("{e}. Set AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an S3-compatible server)")))?;
            let prefix = StorePath::parse(url.trim_start_matches('/')).map_err(|e| refuse(e.to_string()))?;
            return Ok(TableStore { store: Arc::new(store), prefix, local_root: None, location: location.into() });
        }
        let root = if Path::new(location).is_absolute() { PathBuf::from(location) } else { base_dir.join(location) };
        std::fs::create_dir_all(&root)
            .map_err(|e| refuse(format!("cannot create the folder {}: {e}", root.display())))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| refuse(e.to_string()))?.with_fsync(true);
        Ok(TableStore {
            store: Arc::new(store),
            prefix: StorePath::default(),
            local_root: Some(root),
            location: location.into(),
        })
    }

    /// Where the tables are, as the user wrote it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The local folder, for a local store.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    fn path(&self, key: &str) -> StorePath {
        StorePath::from_iter(self.prefix.parts().chain(StorePath::from(key).parts()))
    }

    /// Writes `bytes` at `key` (relative to the root), replacing what was there, atomically.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key);
        self.store.put(&path, PutPayload::from(bytes)).await.map_err(|e| error("put", &self.location, key, e))?;
        if let Some(root) = &self.local_root {
            remove_staged_leftovers(&root.join(key));
        }
        Ok(())
    }

    /// The object at `key`, or none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(|e| error("get", &self.location, key, e))?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(error("get", &self.location, key, e)),
        }
    }
}

/// A few quick retries inside the client (a dropped connection, a throttled request); a longer
/// outage comes back to the publisher, which logs it, counts it and keeps retrying with its
/// own back-off (object_store's default would retry silently for three minutes).
fn quick_retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// The path part of an `s3://bucket/path` URL.
fn url_of(location: &str) -> Result<String, String> {
    let rest = location.split_once("://").map(|(_, r)| r).unwrap_or(location);
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket: write s3://bucket/prefix".into());
    }
    Ok(path.trim_end_matches('/').to_string())
}

fn error(operation: &'static str, location: &str, key: &str, e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let retryable = !matches!(
        e,
        E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
    );
    StoreError {
        operation,
        location: format!("{}/{key}", location.trim_end_matches('/')),
        reason: e.to_string(),
        retryable,
    }
}

/// Staged files (`file#1`, `file#2`...) that a local put killed half-way left beside `file`.
fn remove_staged_leftovers(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let other = entry.file_name();
        let Some(other) = other.to_str() else { continue };
        let staged = other
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('#'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staged {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_put_replaces_atomically_and_clears_what_a_killed_put_left() {
        let dir = std::env::temp_dir().join(format!("vitrine-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = TableStore::open(dir.to_str().unwrap(), Path::new("/")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            assert_eq!(store.get("t/a.json").await.unwrap(), None);
            std::fs::create_dir_all(dir.join("t")).unwrap();
            std::fs::write(dir.join("t/a.json#1"), b"half").unwrap(); // a put killed half-way
            store.put("t/a.json", b"one".to_vec()).await.unwrap();
            store.put("t/a.json", b"two".to_vec()).await.unwrap();
            assert_eq!(store.get("t/a.json").await.unwrap().as_deref(), Some(&b"two"[..]));
        });
        let names: Vec<String> =
            std::fs::read_dir(dir.join("t")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["a.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_schemes_are_refused_with_what_is_supported() {
        let e = TableStore::open("gs://bucket/x", Path::new("/")).unwrap_err();
        assert!(e.reason.contains("s3://bucket/prefix") && !e.retryable, "{e}");
        assert_eq!(url_of("s3://bucket/a/b/").unwrap(), "a/b");
        assert!(url_of("s3:///a").is_err());
    }
}
