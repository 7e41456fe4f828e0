//! The object store a backup lives in, reached through the `object_store` crate from
//! synchronous code: every call runs to completion on a tokio current-thread runtime that the
//! [`Store`] owns. Keys are relative to the URL's path (the backup's root).

use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use super::error::{ArchiveError, Result};

/// Objects under one root in one object store.
pub struct Store {
    runtime: tokio::runtime::Runtime,
    inner: Arc<dyn ObjectStore>,
    root: StorePath,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Whether `url` names a local directory rather than a URL: it has no `scheme://`.
fn is_plain_path(url: &str) -> bool {
    !url.contains("://")
}

impl Store {
    /// Opens the destination `url`: `file:///abs/dir`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix` or `az://container/prefix`; a path without a scheme is a local directory. `options` are the `object_store` configuration
    /// keys (`aws_endpoint`, `aws_access_key_id`, `aws_region`, `aws_allow_http`, …); keys it
    /// does not know are ignored. Local directories are written with `fsync` on every object
    /// and its directory, so a put that returned is durable.
    ///
    /// # Errors
    /// [`ArchiveError::Destination`] for a URL or options that cannot be used.
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Store> {
        let bad = |reason: String| ArchiveError::Destination { url: url.to_string(), reason };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| bad(format!("cannot start the I/O runtime: {err}")))?;
        let parsed = if is_plain_path(url) {
            let path = std::path::absolute(url)
                .map_err(|err| bad(format!("not a usable directory path: {err}")))?;
            url::Url::from_directory_path(&path)
                .map_err(|()| bad("not a usable directory path".to_string()))?
        } else {
            url::Url::parse(url).map_err(|err| bad(format!("not a URL: {err}")))?
        };
        let (inner, root): (Arc<dyn ObjectStore>, StorePath) = if parsed.scheme() == "file" {
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("a file URL must hold an absolute path".to_string()))?;
            std::fs::create_dir_all(&path)
                .map_err(|err| bad(format!("cannot create the directory: {err}")))?;
            let store = LocalFileSystem::new_with_prefix(&path)
                .map_err(|err| bad(err.to_string()))?
                .with_fsync(true);
            (Arc::new(store), StorePath::default())
        } else {
            let pairs = options.iter().map(|(k, v)| (k.as_str(), v.clone()));
            let (store, root) =
                object_store::parse_url_opts(&parsed, pairs).map_err(|err| bad(err.to_string()))?;
            (Arc::from(store), root)
        };
        Ok(Store { runtime, inner, root, url: url.to_string() })
    }

    fn path(&self, key: &str) -> StorePath {
        let mut path = self.root.clone();
        for part in key.split('/') {
            path = path.clone().join(part);
        }
        path
    }

    fn store_error(op: &'static str, key: &str, err: &object_store::Error) -> ArchiveError {
        ArchiveError::Store { op, key: key.to_string(), reason: err.to_string() }
    }

    /// The object `key`, or `None` if there is none.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key);
        let inner = Arc::clone(&self.inner);
        let result = self.runtime.block_on(async move {
            let got = inner.get(&path).await?;
            got.bytes().await
        });
        match result {
            // Without a copy when the buffer is not shared (it is not: the body was collected
            // for this call).
            Ok(bytes) => Ok(Some(Vec::from(bytes))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(Self::store_error("get", key, &err)),
        }
    }

    /// Writes `bytes` as `key`, replacing any object there.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_mode(key, bytes, PutMode::Overwrite).map(|_| ())
    }

    /// Writes `bytes` as `key` only if there is no object there (`PutMode::Create`: an
    /// `If-None-Match: *` request on S3, a hard link on a local directory). Returns whether it
    /// was written.
    ///
    /// # Errors
    /// [`ArchiveError::Store`], also if the store does not support conditional puts.
    pub fn create(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        self.put_mode(key, bytes, PutMode::Create)
    }

    fn put_mode(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<bool> {
        let path = self.path(key);
        let inner = Arc::clone(&self.inner);
        let options = PutOptions { mode, ..PutOptions::default() };
        let result = self
            .runtime
            .block_on(async move { inner.put_opts(&path, PutPayload::from(bytes), options).await });
        match result {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(err) => Err(Self::store_error("put", key, &err)),
        }
    }

    /// Deletes `key`; a missing object is not an error.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        let inner = Arc::clone(&self.inner);
        match self.runtime.block_on(async move { inner.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(Self::store_error("delete", key, &err)),
        }
    }

    /// The keys under folder `prefix` (relative to the root), with their sizes, sorted.
    ///
    /// # Errors
    /// [`ArchiveError::Store`].
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = self.path(prefix);
        let inner = Arc::clone(&self.inner);
        let root_parts = self.root.parts().count();
        let listed: std::result::Result<Vec<_>, object_store::Error> =
            self.runtime.block_on(async move {
                let mut stream = inner.list(Some(&path));
                let mut out = Vec::new();
                while let Some(meta) = stream.next().await {
                    out.push(meta?);
                }
                Ok(out)
            });
        let listed = match listed {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(err) => return Err(Self::store_error("list", prefix, &err)),
        };
        let mut keys: Vec<(String, u64)> = listed
            .into_iter()
            .map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                (parts.join("/"), meta.size)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }
}
