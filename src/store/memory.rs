//! An in-memory [`ObjectStore`] for unit tests of the layers above the seam (`backup`,
//! `restore`, `prune`) without servers. Objects and open multipart uploads live in
//! maps behind one mutex; the semantics follow S3 (conditional create, parts invisible
//! until completion, nothing left after an abort).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::error::StoreError;
use super::object::{ByteStream, MultipartUpload, ObjectMeta, ObjectStore, PendingUpload, PutMode};

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, (Bytes, DateTime<Utc>)>,
    /// Open uploads by id: the key they would create and when they were started.
    uploads: BTreeMap<String, (String, DateTime<Utc>)>,
}

/// Objects in memory; clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    next_upload: Arc<AtomicU64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, key: &str, bytes: Bytes, mode: PutMode, doing: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        if mode == PutMode::Create && state.objects.contains_key(key) {
            return Err(StoreError::already_exists(&self.location(key), doing));
        }
        state.objects.insert(key.to_string(), (bytes, Utc::now()));
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn location(&self, key: &str) -> String {
        format!("memory:///{key}")
    }

    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.insert(key, bytes, mode, "writing")
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let id = self.next_upload.fetch_add(1, Ordering::Relaxed).to_string();
        self.state().uploads.insert(id.clone(), (key.to_string(), Utc::now()));
        Ok(Box::new(MemoryUpload { store: self.clone(), key: key.to_string(), id, parts: Vec::new(), open: true }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let bytes = self.state().objects.get(key).map(|(bytes, _)| bytes.clone());
        let bytes = bytes.ok_or_else(|| StoreError::not_found(&self.location(key), "reading"))?;
        // Several chunks, as a real store streams them.
        let chunks: Vec<Result<Bytes, StoreError>> =
            (0..bytes.len()).step_by(4096).map(|at| Ok(bytes.slice(at..(at + 4096).min(bytes.len())))).collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let state = self.state();
        let (bytes, time) = state.objects.get(key).ok_or_else(|| StoreError::not_found(&self.location(key), "looking up"))?;
        Ok(ObjectMeta { key: key.to_string(), size: bytes.len() as u64, last_modified: Some(*time) })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let state = self.state();
        Ok(state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (bytes, time))| ObjectMeta { key: key.clone(), size: bytes.len() as u64, last_modified: Some(*time) })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.state().objects.remove(key);
        Ok(())
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let state = self.state();
        Ok(state
            .uploads
            .iter()
            .filter(|(_, (key, _))| key.starts_with(prefix))
            .map(|(id, (key, initiated))| PendingUpload { key: key.clone(), upload_id: id.clone(), initiated: Some(*initiated) })
            .collect())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.uploads.get(upload_id) {
            Some((open, _)) if open == key => {
                state.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(StoreError::not_found(&self.location(key), "aborting the upload of")),
        }
    }
}

struct MemoryUpload {
    store: MemoryStore,
    key: String,
    id: String,
    parts: Vec<Bytes>,
    open: bool,
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    fn part_size(&self) -> usize {
        64 << 10
    }

    async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        self.parts.push(part);
        Ok(())
    }

    async fn complete(&mut self) -> Result<String, StoreError> {
        self.store.insert(&self.key, Bytes::from(self.parts.concat()), PutMode::Create, "completing the upload of")?;
        self.store.state().uploads.remove(&self.id);
        self.open = false;
        Ok(self.store.location(&self.key))
    }

    async fn abort(&mut self) -> Result<(), StoreError> {
        self.parts.clear();
        self.store.state().uploads.remove(&self.id);
        self.open = false;
        Ok(())
    }
}

impl Drop for MemoryUpload {
    fn drop(&mut self) {
        if self.open {
            tracing::warn!(object = %self.store.location(&self.key), "A multipart upload was dropped without complete or abort; it stays open.");
        }
    }
}
