//! The local directory store. An archive is written as `<file>.partial` (created
//! exclusively, never over an existing file), synced and renamed into place on commit;
//! the sidecar is written the same way. A dropped upload deletes its `.partial`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{ArchiveUpload, Store, StoredBackup, SIDECAR_SUFFIX, VERIFICATION_SUFFIX};
use crate::error::{Error, Result};
use crate::naming::is_backup_name;

/// Suffix of an archive still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Backups in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the directory `dir`.
    ///
    /// # Errors
    /// The directory cannot be created or is not a directory.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::io("cannot create the backup directory; check the path and its permissions", dir))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The directory this store writes to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn write_new_file_atomically(final_path: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = partial_path(final_path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        publish(&partial, final_path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn partial_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(PARTIAL_SUFFIX);
    PathBuf::from(name)
}

/// Renames `from` to `to` unless `to` exists (never overwrites a backup).
fn publish(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    fs::remove_file(from)?;
    if let Some(parent) = to.parent() {
        File::open(parent).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

impl Store for LocalStore {
    fn name_taken(&self, name: &str) -> Result<bool> {
        let prefix = format!("{name}.");
        let entries = fs::read_dir(&self.dir).map_err(Error::io("cannot list the backup directory", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list the backup directory", &self.dir))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn begin_archive(&self, file_name: &str) -> Result<Box<dyn ArchiveUpload>> {
        let final_path = self.dir.join(file_name);
        let partial = partial_path(&final_path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(Error::io("cannot create the archive; check free space and permissions", &partial))?;
        Ok(Box::new(LocalUpload { file: Some(io::BufWriter::with_capacity(1 << 20, file)), partial, final_path }))
    }

    fn put_sidecar(&self, name: &str, manifest: &[u8]) -> Result<String> {
        let path = self.dir.join(format!("{name}{SIDECAR_SUFFIX}"));
        write_new_file_atomically(&path, manifest).map_err(Error::io("cannot write the sidecar manifest", &path))?;
        Ok(path.display().to_string())
    }

    fn list(&self) -> Result<Vec<StoredBackup>> {
        let mut found = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(Error::io("cannot list the backup directory", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list the backup directory", &self.dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file_name.strip_suffix(".tar.gz").or_else(|| file_name.strip_suffix(".tar.zst")) else {
                continue;
            };
            if !is_backup_name(name) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let sidecar = fs::read(self.dir.join(format!("{name}{SIDECAR_SUFFIX}"))).ok();
            let verification = fs::read(self.dir.join(format!("{name}{VERIFICATION_SUFFIX}"))).ok();
            found.push(StoredBackup { name: name.to_string(), archive: file_name.clone(), size, sidecar, verification });
        }
        found.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(found)
    }

    fn open_archive(&self, file_name: &str) -> Result<Box<dyn io::Read + Send>> {
        let path = self.dir.join(file_name);
        let file = File::open(&path).map_err(Error::io("cannot open the archive", &path))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    }

    fn put_verification(&self, name: &str, result: &[u8]) -> Result<String> {
        let path = self.dir.join(format!("{name}{VERIFICATION_SUFFIX}"));
        let replace = || -> io::Result<()> {
            let mut staged = tempfile::NamedTempFile::new_in(&self.dir)?;
            staged.write_all(result)?;
            staged.as_file().sync_all()?;
            staged.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        replace().map_err(Error::io("cannot write the verification result", &path))?;
        Ok(path.display().to_string())
    }

    fn in_progress(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(Error::io("cannot list the backup directory", &self.dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list the backup directory", &self.dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file_name.strip_suffix(PARTIAL_SUFFIX).and_then(super::archive_backup_name) {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

struct LocalUpload {
    file: Option<io::BufWriter<File>>,
    partial: PathBuf,
    final_path: PathBuf,
}

impl Write for LocalUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open until commit").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open until commit").flush()
    }
}

impl ArchiveUpload for LocalUpload {
    fn commit(mut self: Box<Self>) -> Result<String> {
        let writer = self.file.take().expect("committed once");
        let published = (|| {
            let file = writer.into_inner().map_err(|e| Error::io("cannot flush the archive", &self.partial)(e.into_error()))?;
            file.sync_all().map_err(Error::io("cannot sync the archive to disk", &self.partial))?;
            drop(file);
            publish(&self.partial, &self.final_path).map_err(Error::io("cannot move the finished archive into place", &self.final_path))
        })();
        if let Err(error) = published {
            let _ = fs::remove_file(&self.partial);
            return Err(error);
        }
        Ok(self.final_path.display().to_string())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_upload_leaves_nothing_and_commit_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let mut upload = store.begin_archive("2018-04-04T11_37.tar.gz").unwrap();
        upload.write_all(b"half").unwrap();
        assert!(dir.path().join("2018-04-04T11_37.tar.gz.partial").exists());
        assert_eq!(store.in_progress().unwrap(), ["2018-04-04T11_37"], "a partial archive is a backup in progress");
        drop(upload);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(store.in_progress().unwrap().is_empty());
        assert!(!store.name_taken("2018-04-04T11_37").unwrap());

        let mut upload = store.begin_archive("2018-04-04T11_37.tar.gz").unwrap();
        upload.write_all(b"whole").unwrap();
        upload.commit().unwrap();
        assert_eq!(fs::read(dir.path().join("2018-04-04T11_37.tar.gz")).unwrap(), b"whole");
        assert!(store.name_taken("2018-04-04T11_37").unwrap());
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].sidecar.is_none(), "no sidecar yet: incomplete");
        store.put_sidecar("2018-04-04T11_37", b"{}").unwrap();
        assert_eq!(store.list().unwrap()[0].sidecar.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn never_overwrites_an_existing_archive() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("n.tar.gz"), b"earlier").unwrap();
        let mut upload = store.begin_archive("n.tar.gz").unwrap();
        upload.write_all(b"later").unwrap();
        assert!(upload.commit().is_err());
        assert_eq!(fs::read(dir.path().join("n.tar.gz")).unwrap(), b"earlier");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the failed commit left no .partial");
    }
}
