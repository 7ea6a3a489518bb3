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
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig};

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
    /// Opens `location`: a URL (`s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`, `file:///folder`) or a folder (relative to `base_dir`).
    pub fn open(location: &str, base_dir: &Path) -> Result<TableStore, StoreError> {
        let refuse =
            |reason: String| StoreError { operation: "open", location: location.into(), reason, retryable: false };
        if !location.contains("://") {
            let root =
                if Path::new(location).is_absolute() { PathBuf::from(location) } else { base_dir.join(location) };
            return TableStore::local(root, location);
        }
        let url = url::Url::parse(location).map_err(|e| refuse(format!("not a URL: {e}")))?;
        if url.scheme() != "file" && url.host_str().is_none_or(str::is_empty) {
            return Err(refuse(format!("no bucket: write {}://bucket/prefix", url.scheme())));
        }
        let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|_| refuse(SUPPORTED.into()))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => return TableStore::local(PathBuf::from(url.path()), location),
            ObjectStoreScheme::AmazonS3 => {
                let endpoint =
                    std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT")).unwrap_or_default();
                let store = AmazonS3Builder::from_env()
                    .with_url(location)
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_retry(quick_retries())
                    .build()
                    .map_err(|e| refuse(format!("{e}. Set AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an S3-compatible server)")))?;
                Arc::new(store)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let store = GoogleCloudStorageBuilder::from_env()
                    .with_url(location)
                    .with_retry(quick_retries())
                    .build()
                    .map_err(|e| {
                        refuse(format!("{e}. Set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT)"))
                    })?;
                Arc::new(store)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let store = MicrosoftAzureBuilder::from_env()
                    .with_url(location)
                    .with_retry(quick_retries())
                    .build()
                    .map_err(|e| refuse(format!("{e}. Set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or another Azure credential)")))?;
                Arc::new(store)
            }
            _ => return Err(refuse(SUPPORTED.into())),
        };
        Ok(TableStore { store, prefix, local_root: None, location: location.into() })
    }

    fn local(root: PathBuf, location: &str) -> Result<TableStore, StoreError> {
        let refuse =
            |reason: String| StoreError { operation: "open", location: location.into(), reason, retryable: false };
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

    /// The names of the objects directly under `dir` (relative to the root); none when it is not there.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let listed = match self.store.list_with_delimiter(Some(&self.path(dir))).await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(error("list", &self.location, dir, e)),
        };
        Ok(listed.objects.into_iter().filter_map(|o| o.location.filename().map(str::to_string)).collect())
    }

    /// Removes the object at `key` (gone already is fine).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(error("delete", &self.location, key, e)),
        }
    }

    /// Removes what local puts killed half-way left in `dir` (staged `name#N` files, which no
    /// reader lists): a staged set may never be put again under the same name.
    pub fn remove_partial_puts(&self, dir: &str) {
        let Some(root) = &self.local_root else { return };
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let partial = name
                .to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if partial {
                let _ = std::fs::remove_file(entry.path());
            }
        }
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

const SUPPORTED: &str = "use a folder, file:///folder, s3://bucket/prefix (S3 and S3-compatible stores), \
     gs://bucket/prefix (Google Cloud Storage) or az://container/prefix (Azure Blob Storage)";

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
            assert_eq!(store.list("t").await.unwrap(), ["a.json"]);
            assert!(store.list("none").await.unwrap().is_empty());
            store.put("t/b.json", b"three".to_vec()).await.unwrap();
            store.delete("t/b.json").await.unwrap();
            store.delete("t/b.json").await.unwrap();
        });
        let names: Vec<String> =
            std::fs::read_dir(dir.join("t")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["a.json"]);
        // A staged file whose name is never put again is removed when its folder is recovered.
        std::fs::write(dir.join("t/b.json#3"), b"half").unwrap();
        store.remove_partial_puts("t");
        assert!(!dir.join("t/b.json#3").exists() && dir.join("t/a.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_schemes_are_refused_with_what_is_supported() {
        for location in ["ftp://host/x", "hdfs://cluster/x", "http://host/x"] {
            let e = TableStore::open(location, Path::new("/")).unwrap_err();
            assert!(e.reason.contains("s3://bucket/prefix") && e.reason.contains("gs://") && !e.retryable, "{e}");
        }
        let e = TableStore::open("s3:///prefix", Path::new("/")).unwrap_err();
        assert!(e.reason.contains("bucket"), "{e}");
    }

    #[test]
    fn each_store_takes_its_prefix_from_the_url() {
        let s3 = TableStore::open("s3://bucket/a/b/", Path::new("/")).unwrap();
        assert_eq!(s3.path("t/x.parquet").as_ref(), "a/b/t/x.parquet");
        let dir = std::env::temp_dir().join(format!("vitrine-store-url-{}", std::process::id()));
        let local = TableStore::open(&format!("file://{}", dir.display()), Path::new("/")).unwrap();
        assert_eq!(local.local_root(), Some(dir.as_path()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
