//! The backup-level view of a store ([`Store`]): names, archives, sidecars and
//! verification and drill records, on top of any [`ObjectStore`]. It knows the layout
//! (`<name>.tar.gz|.tar.zst`, `<name>.manifest.json`, `<name>.verify.json`, `<name>.drill.json`) and the
//! rules (never overwrite an archive or a sidecar; the sidecar is written last), and
//! nothing about how bytes are kept.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::error::StoreErrorKind;
use super::object::{self, MultipartUpload, ObjectStore, PutMode};
use super::StoreLocation;
use crate::error::{Error, Result};
use crate::naming::{candidate_names, is_backup_name};

/// Sidecars and verification records fetched at once by [`Store::list`].
pub const LIST_CONCURRENCY: usize = 32;

/// One backup found in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackup {
    /// The backup name (`2018-04-04T11_37`).
    pub name: String,
    /// The archive's file or object name.
    pub archive: String,
    /// Archive size in bytes.
    pub size: u64,
    /// When the archive was written, when the store says.
    pub last_modified: Option<DateTime<Utc>>,
    /// The sidecar manifest's bytes, when present (the backup is complete).
    pub sidecar: Option<Vec<u8>>,
    /// The latest verification result's bytes, when the backup was verified.
    pub verification: Option<Vec<u8>>,
    /// The latest restore drill's record, when the backup was drilled.
    pub drill: Option<Vec<u8>>,
}

/// The small objects [`Store::list`] reads beside each archive.
#[derive(Debug, Clone, Copy)]
enum Beside {
    Sidecar,
    Verification,
    Drill,
}

impl Beside {
    fn key(self, name: &str) -> String {
        match self {
            Beside::Sidecar => super::keys::sidecar_key(name),
            Beside::Verification => super::keys::verification_key(name),
            Beside::Drill => super::keys::drill_key(name),
        }
    }

    fn slot(self, backup: &mut StoredBackup) -> &mut Option<Vec<u8>> {
        match self {
            Beside::Sidecar => &mut backup.sidecar,
            Beside::Verification => &mut backup.verification,
            Beside::Drill => &mut backup.drill,
        }
    }
}

/// What `latest` means to a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    /// The newest backup, complete or not (`verify`: a failed last night must fail).
    Newest,
    /// The newest complete backup (`restore`: never an incomplete one).
    NewestComplete,
}

/// The selector for the newest complete backup that has no verification yet.
pub const UNVERIFIED: &str = "unverified";

/// Picks backup `wanted` (a name, `latest`, or [`UNVERIFIED`]: the newest complete
/// backup without a verification result) from a store's listing (newest first).
///
/// # Errors
/// A usage error when no such backup exists, naming the ones that do; for
/// [`UNVERIFIED`], an operation error (exit status 1) when every complete backup is
/// verified already, which means no backup finished since the last verification.
pub fn select(backups: Vec<StoredBackup>, wanted: &str, store: &StoreLocation, latest: Latest) -> Result<StoredBackup> {
    if wanted == UNVERIFIED {
        let newest_complete = backups.iter().find(|b| b.sidecar.is_some()).map(|b| b.name.clone());
        return backups.into_iter().find(|b| b.sidecar.is_some() && b.verification.is_none()).ok_or_else(|| match newest_complete {
            Some(name) => Error::Refused(format!(
                "{store} holds no complete backup without a verification: the newest complete one, {name}, is verified already, \
                 so no backup finished since the last verification; check the backup runs (kubectl get jobs, or the backup's alerts), \
                 or name a backup to verify it again"
            )),
            None => Error::Refused(format!("{store} holds no complete backup to verify; check that backups run and finish (`ingest-backup list`)")),
        });
    }
    if wanted == "latest" {
        let newest = backups.first().map(|b| b.name.clone());
        let found = match latest {
            Latest::Newest => backups.into_iter().next(),
            Latest::NewestComplete => backups.into_iter().find(|b| b.sidecar.is_some()),
        };
        return found.ok_or_else(|| {
            Error::usage(match newest {
                Some(name) => format!("{store} holds no complete backup (the newest, {name}, has no sidecar manifest); run a backup first"),
                None => format!("{store} holds no backups; run `ingest-backup backup` first, or give --store (or S3_BUCKET and BACKUP_DIR) for the store that holds them"),
            })
        });
    }
    let names: Vec<String> = backups.iter().take(5).map(|b| b.name.clone()).collect();
    backups.into_iter().find(|b| b.name == wanted).ok_or_else(|| {
        Error::usage(format!(
            "no backup named {wanted:?} in {store}; the newest are: {}; `ingest-backup list` shows them all",
            if names.is_empty() { "(none)".to_string() } else { names.join(", ") }
        ))
    })
}

/// The name of backup `name`'s archive, if `key` is one (`<name>.tar.gz`, `.tar.zst`,
/// either with `.age` when encrypted).
fn archive_name(key: &str) -> Option<&str> {
    let key = key.strip_suffix(crate::crypto::AGE_SUFFIX).unwrap_or(key);
    let name = key.strip_suffix(".tar.gz").or_else(|| key.strip_suffix(".tar.zst"))?;
    (is_backup_name(name) && !name.contains('/')).then_some(name)
}

/// Backups in an object store. Cheap to clone (the object store is shared).
#[derive(Debug, Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
}

impl Store {
    /// The backups kept in `objects`.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self { objects }
    }

    /// The object store underneath.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Whether any object of backup `name` exists (archive, sidecar, verification, or an
    /// upload still open). One prefix listing of `<name>.` and one of its open uploads:
    /// never a listing of the whole store.
    ///
    /// # Errors
    /// The store could not be read.
    pub async fn name_taken(&self, name: &str) -> Result<bool> {
        let prefix = format!("{name}.");
        let (objects, uploads) = futures::try_join!(self.objects.list(&prefix), self.objects.list_multipart_uploads(&prefix))?;
        Ok(!objects.is_empty() || !uploads.is_empty())
    }

    /// The first free name for a backup started at `started` (see [`crate::naming::choose_name`]).
    ///
    /// # Errors
    /// The store could not be read.
    pub async fn choose_name(&self, started: DateTime<Utc>) -> Result<String> {
        for candidate in candidate_names(started) {
            if !self.name_taken(&candidate).await? {
                return Ok(candidate);
            }
        }
        unreachable!("the candidates never run out")
    }

    /// Starts the multipart upload of archive `file_name` (for example
    /// `2018-04-04T11_37.tar.gz`). The caller completes it, or aborts it and awaits that.
    ///
    /// # Errors
    /// The store refused the upload.
    pub async fn begin_archive(&self, file_name: &str) -> Result<Box<dyn MultipartUpload>> {
        Ok(self.objects.put_multipart(file_name).await?)
    }

    /// Writes the sidecar manifest of backup `name` (a conditional create: an existing
    /// sidecar is never replaced; one holding exactly these bytes is this run's own
    /// write, retried after its answer was lost); called only after the archive is complete.
    ///
    /// # Errors
    /// The sidecar exists already, or the store refused the write.
    pub async fn put_sidecar(&self, name: &str, manifest: &[u8]) -> Result<String> {
        let key = super::keys::sidecar_key(name);
        match self.objects.put(&key, Bytes::copy_from_slice(manifest), PutMode::Create).await {
            Ok(()) => Ok(self.objects.location(&key)),
            // A write that took effect but whose answer was lost is sent again by the
            // client's retries and then finds itself: the same bytes are this run's own.
            Err(error) if error.kind() == StoreErrorKind::AlreadyExists => match object::get_bytes(self.objects.as_ref(), &key).await {
                Ok(stored) if stored.as_ref() == manifest => Ok(self.objects.location(&key)),
                _ => Err(Error::Refused(format!("{} already exists; refusing to overwrite it", self.objects.location(&key)))),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// Records the latest verification result of backup `name`, replacing any earlier
    /// one (the archive and the sidecar are never touched).
    ///
    /// # Errors
    /// The store refused the write.
    pub async fn put_verification(&self, name: &str, result: &[u8]) -> Result<String> {
        let key = super::keys::verification_key(name);
        self.objects.put(&key, Bytes::copy_from_slice(result), PutMode::Overwrite).await?;
        Ok(self.objects.location(&key))
    }

    /// Records the latest restore drill of backup `name`, replacing any earlier one.
    ///
    /// # Errors
    /// The store refused the write.
    pub async fn put_drill(&self, name: &str, result: &[u8]) -> Result<String> {
        let key = super::keys::drill_key(name);
        self.objects.put(&key, Bytes::copy_from_slice(result), PutMode::Overwrite).await?;
        Ok(self.objects.location(&key))
    }

    /// Every backup archive in the store, complete or not, newest first, with its
    /// sidecar, verification and drill records. One listing, then the small objects fetched
    /// [`LIST_CONCURRENCY`] at once.
    ///
    /// # Errors
    /// The store could not be listed or read.
    pub async fn list(&self) -> Result<Vec<StoredBackup>> {
        let objects = self.objects.list("").await?;
        let present: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let mut backups: Vec<StoredBackup> = objects
            .iter()
            .filter_map(|object| {
                let name = archive_name(&object.key)?;
                Some(StoredBackup {
                    name: name.to_string(),
                    archive: object.key.clone(),
                    size: object.size,
                    last_modified: object.last_modified,
                    sidecar: None,
                    verification: None,
                    drill: None,
                })
            })
            .collect();
        let wanted: Vec<(usize, Beside, String)> = backups
            .iter()
            .enumerate()
            .flat_map(|(index, backup)| {
                [Beside::Sidecar, Beside::Verification, Beside::Drill].map(|beside| (index, beside, beside.key(&backup.name)))
            })
            .filter(|(_, _, key)| present.contains(key.as_str()))
            .collect();
        let fetched: Vec<(usize, Beside, Option<Bytes>)> = futures::stream::iter(wanted)
            .map(|(index, beside, key)| async move {
                match object::get_bytes(self.objects.as_ref(), &key).await {
                    Ok(bytes) => Ok((index, beside, Some(bytes))),
                    // Deleted between the listing and the read (a prune): as if never there.
                    Err(error) if error.kind() == StoreErrorKind::NotFound => Ok((index, beside, None)),
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        for (index, beside, bytes) in fetched {
            *beside.slot(&mut backups[index]) = bytes.map(|b| b.to_vec());
        }
        backups.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(backups)
    }

    /// The names of the backups whose archive is being written right now (a local
    /// `<name>.tar.gz.partial`, an open S3 multipart upload of `<name>.tar.gz`), oldest
    /// first. An upload abandoned by a killed process also shows here until it is removed.
    ///
    /// # Errors
    /// The store could not be listed.
    pub async fn in_progress(&self) -> Result<Vec<String>> {
        let uploads = self.objects.list_multipart_uploads("").await?;
        let mut names: Vec<String> = uploads.iter().filter_map(|upload| archive_name(&upload.key)).map(str::to_string).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Streams the stored bytes of archive `file_name` as a blocking reader, for a
    /// `spawn_blocking` thread. Call it inside the runtime.
    ///
    /// # Errors
    /// The archive is missing or the store could not be read.
    pub async fn open_archive(&self, file_name: &str) -> Result<Box<dyn std::io::Read + Send>> {
        Ok(object::blocking_reader(self.objects.get(file_name).await?))
    }
}

/// Opens the store at `location`; `s3_settings` is consulted only for an S3 store.
///
/// # Errors
/// A usage error for bad settings, or the store's own error (a missing bucket, denied
/// access, an unreachable endpoint).
pub async fn open(location: &StoreLocation, s3_settings: impl FnOnce() -> Result<super::s3::S3Settings>) -> Result<Store> {
    let objects: Arc<dyn ObjectStore> = match location {
        StoreLocation::Local(path) => {
            std::fs::create_dir_all(path).map_err(Error::io("cannot create the backup directory; check the path and its permissions", path))?;
            Arc::new(super::local::LocalStore::open(path)?)
        }
        StoreLocation::S3 { bucket, prefix } => Arc::new(super::s3::S3Store::open(bucket, prefix, s3_settings()?).await?),
        StoreLocation::Gcs { bucket, prefix } => {
            Arc::new(super::cloud::gcs::open(bucket, prefix, &super::cloud::gcs::GcsSettings::from_env()?).await?)
        }
        StoreLocation::Azure { container, prefix } => {
            Arc::new(super::cloud::azure::open(container, prefix, &super::cloud::azure::AzureSettings::from_env()?).await?)
        }
    };
    Ok(Store::new(objects))
}

/// [`open`] with the S3 settings already resolved (`None` outside S3).
///
/// # Errors
/// As [`open`]; a usage error for an S3 location without settings.
pub async fn open_with(location: &StoreLocation, s3: Option<super::s3::S3Settings>) -> Result<Store> {
    open(location, || s3.ok_or_else(|| Error::usage("an S3 store needs S3 settings"))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    async fn store_with(objects: &[(&str, &str)]) -> (MemoryStore, Store) {
        let memory = MemoryStore::new();
        for (key, body) in objects {
            memory.put(key, Bytes::from(body.to_string()), PutMode::Create).await.unwrap();
        }
        (memory.clone(), Store::new(Arc::new(memory)))
    }

    #[tokio::test]
    async fn list_is_newest_first_with_sidecars_and_marks_incomplete_backups() {
        let (_, store) = store_with(&[
            ("2018-04-04T11_37.tar.gz", "archive-1"),
            ("2018-04-04T11_37.manifest.json", "{\"m\":1}"),
            ("2018-04-04T11_37.verify.json", "{\"v\":1}"),
            ("2018-04-05T09_00.tar.zst", "archive-22"),
            ("2018-04-06T09_00.tar.gz.age", "sealed"),
            ("oplog/2018-04-04T11_37.bson.gz", "x"),
            ("notes.txt", "unrelated"),
        ])
        .await;
        let listed = store.list().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["2018-04-06T09_00", "2018-04-05T09_00", "2018-04-04T11_37"]);
        assert_eq!(listed[0].archive, "2018-04-06T09_00.tar.gz.age");
        let listed = listed[1..].to_vec();
        assert_eq!((listed[0].size, listed[0].sidecar.as_deref()), (10, None), "no sidecar: incomplete");
        assert_eq!(listed[1].sidecar.as_deref(), Some(&b"{\"m\":1}"[..]));
        assert_eq!(listed[1].verification.as_deref(), Some(&b"{\"v\":1}"[..]));
        assert!(listed[1].last_modified.is_some());

        let newest = select(listed.clone(), "latest", &StoreLocation::Local("x".into()), Latest::Newest).unwrap();
        assert_eq!(newest.name, "2018-04-05T09_00");
        let complete = select(listed.clone(), "latest", &StoreLocation::Local("x".into()), Latest::NewestComplete).unwrap();
        assert_eq!(complete.name, "2018-04-04T11_37");
        let missing = select(listed, "2000-01-01T00_00", &StoreLocation::Local("x".into()), Latest::Newest).unwrap_err();
        assert!(missing.to_string().contains("2018-04-05T09_00, 2018-04-04T11_37"), "{missing}");
    }

    #[tokio::test]
    async fn a_listing_of_many_backups_keeps_each_sidecar_with_its_archive() {
        let (memory, store) = store_with(&[]).await;
        for minute in 0..60 {
            let name = format!("2018-04-04T11_{minute:02}");
            memory.put(&format!("{name}.tar.gz"), Bytes::from(vec![0; minute]), PutMode::Create).await.unwrap();
            if !minute.is_multiple_of(3) {
                memory.put(&format!("{name}.manifest.json"), Bytes::from(name.clone()), PutMode::Create).await.unwrap();
            }
        }
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 60);
        for backup in &listed {
            let minute: usize = backup.name[14..].parse().unwrap();
            assert_eq!(backup.size, minute as u64);
            let expected = (!minute.is_multiple_of(3)).then(|| backup.name.as_bytes().to_vec());
            assert_eq!(backup.sidecar, expected, "{}", backup.name);
        }
    }

    #[tokio::test]
    async fn a_name_is_taken_by_any_of_its_objects_or_an_open_upload() {
        let (memory, store) = store_with(&[("2018-04-04T11_37.verify.json", "{}")]).await;
        assert!(store.name_taken("2018-04-04T11_37").await.unwrap());
        assert!(!store.name_taken("2018-04-04T11_3").await.unwrap(), "a prefix of another name is free");
        let mut upload = store.begin_archive("2018-04-04T11_38.tar.gz").await.unwrap();
        assert!(store.name_taken("2018-04-04T11_38").await.unwrap(), "an open upload holds its name");
        assert_eq!(store.in_progress().await.unwrap(), ["2018-04-04T11_38"], "an open upload is a backup in progress");
        upload.abort().await.unwrap();
        assert!(store.in_progress().await.unwrap().is_empty());
        assert!(!store.name_taken("2018-04-04T11_38").await.unwrap());
        let started = chrono::DateTime::parse_from_rfc3339("2018-04-04T11:37:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(store.choose_name(started).await.unwrap(), "2018-04-04T11_37_05");
        memory.put("2018-04-04T11_37_05.tar.gz", Bytes::new(), PutMode::Create).await.unwrap();
        assert_eq!(store.choose_name(started).await.unwrap(), "2018-04-04T11_37_05-2");
    }

    #[tokio::test]
    async fn a_sidecar_is_never_replaced_but_a_verification_is() {
        let (_, store) = store_with(&[]).await;
        store.put_sidecar("2018-04-04T11_37", b"first").await.unwrap();
        let error = store.put_sidecar("2018-04-04T11_37", b"second").await.unwrap_err();
        assert!(error.to_string().contains("refusing to overwrite"), "{error}");
        // The same bytes again: a retried write whose first answer was lost.
        store.put_sidecar("2018-04-04T11_37", b"first").await.expect("a sidecar finding itself is written");
        store.put_verification("2018-04-04T11_37", b"one").await.unwrap();
        store.put_verification("2018-04-04T11_37", b"two").await.unwrap();
        let bytes = object::get_bytes(store.objects().as_ref(), "2018-04-04T11_37.manifest.json").await.unwrap();
        assert_eq!(&bytes[..], b"first");
        let bytes = object::get_bytes(store.objects().as_ref(), "2018-04-04T11_37.verify.json").await.unwrap();
        assert_eq!(&bytes[..], b"two");
    }
}
