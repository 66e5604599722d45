//! The local directory store. Keys are paths below the directory. A multipart upload
//! writes `<key>.partial` (created exclusively), and `complete` syncs it and links it
//! into place without ever replacing an existing file; `abort` deletes it. Small
//! objects are staged in a hidden temporary file and linked (create) or renamed
//! (overwrite) into place, so a reader never sees half an object.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::error::{StoreError, StoreErrorKind};
use super::object::{ByteStream, MultipartUpload, ObjectMeta, ObjectStore, PendingUpload, PutMode};

/// Suffix of an object still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Part size of local uploads: small, since a part is only a hand-over to the file.
const LOCAL_PART_SIZE: usize = 2 << 20;

/// Objects in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the directory `dir`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(&dir.display().to_string(), "creating the backup directory", &e))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The directory this store writes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|part| part == ".." || part == "." || part.is_empty()) {
            return Err(StoreError::new(StoreErrorKind::Other, format!("{key:?} is not a valid object key (a relative path without . or ..)")));
        }
        Ok(self.dir.join(key))
    }

    /// Every file below the directory whose key starts with `prefix`, reading only the
    /// directories that can hold such keys. `partial` selects unfinished uploads instead
    /// of objects.
    fn walk(&self, prefix: &str, partial: bool) -> Result<Vec<(String, fs::Metadata)>, StoreError> {
        fn visit(dir: &Path, relative: &str, prefix: &str, partial: bool, found: &mut Vec<(String, fs::Metadata)>) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                other => other?,
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue; // staging files of puts in progress
                }
                let key = format!("{relative}{name}");
                let metadata = entry.metadata()?;
                if metadata.is_dir() {
                    let below = format!("{key}/");
                    if below.starts_with(prefix) || prefix.starts_with(&below) {
                        visit(&entry.path(), &below, prefix, partial, found)?;
                    }
                } else if key.starts_with(prefix) && key.ends_with(PARTIAL_SUFFIX) == partial {
                    found.push((key, metadata));
                }
            }
            Ok(())
        }
        let mut found = Vec::new();
        visit(&self.dir, "", prefix, partial, &mut found).map_err(|e| StoreError::io(&self.dir.display().to_string(), "listing", &e))?;
        Ok(found)
    }
}

fn modified(metadata: &fs::Metadata) -> Option<DateTime<Utc>> {
    metadata.modified().ok().map(DateTime::<Utc>::from)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// Links `from` to `to` unless `to` exists (never overwrites), removes `from`, and
/// syncs the directory.
fn publish(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    fs::remove_file(from)?;
    sync_parent(to)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => File::open(parent).and_then(|d| d.sync_all()),
        None => Ok(()),
    }
}

/// Removes the folders between `path` and `root` that are now empty, as an object
/// store has no folders of its own: a deleted `locks/...` object leaves no `locks`
/// folder behind. A folder that is not empty (or that another run is writing into)
/// stays; writers recreate folders they find missing ([`in_folder`]).
fn remove_empty_folders_above(root: &Path, path: &Path) {
    let mut folder = path.parent();
    while let Some(dir) = folder {
        if dir == root || !dir.starts_with(root) || fs::remove_dir(dir).is_err() {
            break;
        }
        folder = dir.parent();
    }
}

/// Creates `folder` and runs `create` (which makes a file in it), again if a concurrent
/// delete removed the folder as empty in between.
fn in_folder<T>(folder: &Path, mut create: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut attempts = 0;
    loop {
        fs::create_dir_all(folder)?;
        match create() {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

/// Runs blocking file work off the runtime's threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(io::Error::other(format!("a file task failed: {e}"))))
}

#[async_trait]
impl ObjectStore for LocalStore {
    fn location(&self, key: &str) -> String {
        self.dir.join(key).display().to_string()
    }

    async fn put(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let staged_in = path.parent().unwrap_or(&self.dir).to_path_buf();
        let target = path.clone();
        let written = blocking(move || {
            let mut staged = in_folder(&staged_in, || tempfile::Builder::new().prefix(".staged").tempfile_in(&staged_in))?;
            staged.write_all(&bytes)?;
            staged.as_file().sync_all()?;
            match mode {
                PutMode::Overwrite => {
                    staged.persist(&target).map_err(|e| e.error)?;
                }
                // The staged file is deleted when `staged` drops, whatever happens.
                PutMode::Create => fs::hard_link(staged.path(), &target)?,
            }
            sync_parent(&target)
        })
        .await;
        written.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => StoreError::already_exists(&self.location(key), "writing"),
            _ => StoreError::io(&self.location(key), "writing", &e),
        })
    }

    async fn put_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>, StoreError> {
        let path = self.path(key)?;
        let partial = partial_path(&path);
        let opened = {
            let partial = partial.clone();
            blocking(move || {
                let folder = partial.parent().map(Path::to_path_buf).unwrap_or_default();
                in_folder(&folder, || OpenOptions::new().write(true).create_new(true).open(&partial))
            })
            .await
        };
        let file = opened.map_err(|e| StoreError::io(&partial.display().to_string(), "creating", &e))?;
        Ok(Box::new(LocalUpload { file: Some(file), partial, path, root: self.dir.clone(), open: true }))
    }

    async fn get(&self, key: &str) -> Result<ByteStream, StoreError> {
        let path = self.path(key)?;
        let location = self.location(key);
        let file = tokio::fs::File::open(&path).await.map_err(|e| StoreError::io(&location, "reading", &e))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map_err(move |e| StoreError::io(&location, "reading", &e));
        Ok(stream.boxed())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(metadata) if metadata.is_file() => Ok(ObjectMeta { key: key.to_string(), size: metadata.len(), last_modified: modified(&metadata) }),
            Ok(_) => Err(StoreError::not_found(&self.location(key), "looking up")),
            Err(e) => Err(StoreError::io(&self.location(key), "looking up", &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let (store, prefix) = (self.clone(), prefix.to_string());
        let found = tokio::task::spawn_blocking(move || store.walk(&prefix, false))
            .await
            .unwrap_or_else(|e| Err(StoreError::new(StoreErrorKind::Other, format!("a listing task failed: {e}"))))?;
        Ok(found.into_iter().map(|(key, metadata)| ObjectMeta { key, size: metadata.len(), last_modified: modified(&metadata) }).collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(&self.location(key), "deleting", &e)),
            _ => {
                remove_empty_folders_above(&self.dir, &path);
                Ok(())
            }
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let (store, prefix) = (self.clone(), prefix.to_string());
        let found = tokio::task::spawn_blocking(move || store.walk(&prefix, true))
            .await
            .unwrap_or_else(|e| Err(StoreError::new(StoreErrorKind::Other, format!("a listing task failed: {e}"))))?;
        Ok(found
            .into_iter()
            .map(|(partial, metadata)| PendingUpload {
                key: partial.strip_suffix(PARTIAL_SUFFIX).unwrap_or(&partial).to_string(),
                initiated: modified(&metadata),
                upload_id: partial,
            })
            .collect())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        if upload_id != format!("{key}{PARTIAL_SUFFIX}") {
            return Err(StoreError::not_found(&self.location(upload_id), "aborting the upload of"));
        }
        let path = self.path(upload_id)?;
        tokio::fs::remove_file(&path).await.map_err(|e| StoreError::io(&self.location(upload_id), "aborting the upload of", &e))?;
        remove_empty_folders_above(&self.dir, &path);
        Ok(())
    }
}

/// An archive being written to `<key>.partial`.
struct LocalUpload {
    /// The open file; lent to a blocking task during each write.
    file: Option<File>,
    partial: PathBuf,
    path: PathBuf,
    /// The store's directory, where removing emptied folders stops.
    root: PathBuf,
    open: bool,
}

impl LocalUpload {
    fn at(&self) -> String {
        self.partial.display().to_string()
    }

    async fn with_file(&mut self, doing: &str, work: impl FnOnce(&mut File) -> io::Result<()> + Send + 'static) -> Result<(), StoreError> {
        let mut file =
            self.file.take().ok_or_else(|| StoreError::new(StoreErrorKind::Other, format!("{doing} {}: the upload is closed", self.at())))?;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut file);
            (file, result)
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("{doing} {}: a file task failed: {e}", self.at())))?;
        self.file = Some(file);
        result.map_err(|e| StoreError::io(&self.at(), doing, &e))
    }
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn part_size(&self) -> usize {
        LOCAL_PART_SIZE
    }

    async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        self.with_file("writing", move |file| file.write_all(&part)).await
    }

    async fn complete(&mut self) -> Result<String, StoreError> {
        self.with_file("syncing", |file| file.sync_all()).await?;
        let (partial, path) = (self.partial.clone(), self.path.clone());
        let location = path.display().to_string();
        match blocking(move || publish(&partial, &path)).await {
            Ok(()) => {
                self.open = false;
                self.file = None;
                Ok(location)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::already_exists(&location, "moving the finished archive into place"))
            }
            Err(e) => Err(StoreError::io(&location, "moving the finished archive into place", &e)),
        }
    }

    async fn abort(&mut self) -> Result<(), StoreError> {
        self.file = None;
        self.open = false;
        match tokio::fs::remove_file(&self.partial).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(&self.at(), "deleting", &e)),
            _ => {
                remove_empty_folders_above(&self.root, &self.partial);
                Ok(())
            }
        }
    }
}

impl Drop for LocalUpload {
    /// A quick unlink (no waiting on a network): an upload dropped without `complete`
    /// or `abort` (a panic) still leaves no `.partial` behind.
    fn drop(&mut self) {
        if self.open {
            tracing::warn!(file = %self.at(), "An upload was dropped without complete or abort; deleting its partial file.");
            let _ = fs::remove_file(&self.partial);
        }
    }
}
