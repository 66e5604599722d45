//! The conformance suite every [`ObjectStore`] must pass, one async function per
//! behaviour the backup layer relies on. The unit tests run it against the memory and
//! local stores; `tests/store_conformance.rs` runs it against a real S3 server. Each
//! function works under its own key prefix, so they can share one store. They panic
//! (assert) on any departure.

use bytes::Bytes;
use futures::StreamExt;

use super::error::StoreErrorKind;
use super::object::{get_bytes, ObjectStore, PutMode};

/// Runs every check of the suite against `store`.
pub async fn run_all(store: &dyn ObjectStore) {
    put_overwrites_and_create_refuses_a_taken_key(store).await;
    multipart_upload_is_invisible_until_complete(store).await;
    aborted_multipart_upload_leaves_nothing(store).await;
    multipart_complete_never_replaces_an_object(store).await;
    get_streams_the_whole_object(store).await;
    missing_objects_are_not_found(store).await;
    list_gives_sizes_and_times_under_a_prefix(store).await;
    delete_removes_and_tolerates_missing(store).await;
}

/// `put` with `Overwrite` replaces; with `Create` a taken key is `AlreadyExists` and
/// the object is unchanged.
pub async fn put_overwrites_and_create_refuses_a_taken_key(store: &dyn ObjectStore) {
    let key = "put/a.json";
    store.put(key, Bytes::from_static(b"one"), PutMode::Create).await.expect("create on a free key");
    store.put(key, Bytes::from_static(b"two"), PutMode::Overwrite).await.expect("overwrite");
    let error = store.put(key, Bytes::from_static(b"three"), PutMode::Create).await.expect_err("create on a taken key");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists, "{error}");
    assert_eq!(&get_bytes(store, key).await.unwrap()[..], b"two", "a refused create changes nothing");
}

/// Parts are invisible until `complete`, which publishes them in order; no upload
/// stays open afterwards.
pub async fn multipart_upload_is_invisible_until_complete(store: &dyn ObjectStore) {
    let key = "multipart/complete.bin";
    let mut upload = store.put_multipart(key).await.expect("start an upload");
    let first = Bytes::from(vec![7u8; upload.part_size()]);
    upload.put_part(first.clone()).await.expect("first part");
    upload.put_part(Bytes::from_static(b"tail")).await.expect("last part");
    assert!(store.list("multipart/").await.unwrap().is_empty(), "nothing visible before complete");
    let pending = store.list_multipart_uploads("multipart/").await.unwrap();
    assert_eq!(pending.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), [key], "the open upload is listed");
    let location = upload.complete().await.expect("complete");
    assert!(location.ends_with(key), "{location}");
    let stored = get_bytes(store, key).await.unwrap();
    assert_eq!(stored.len(), first.len() + 4);
    assert!(stored.starts_with(&first) && stored.ends_with(b"tail"));
    assert!(store.list_multipart_uploads("multipart/").await.unwrap().is_empty(), "no upload open after complete");
}

/// After `abort` neither the object nor an open upload remains; an upload left open is
/// found by `list_multipart_uploads` and removed by `abort_multipart`.
pub async fn aborted_multipart_upload_leaves_nothing(store: &dyn ObjectStore) {
    let key = "aborted/a.bin";
    let mut upload = store.put_multipart(key).await.expect("start an upload");
    upload.put_part(Bytes::from(vec![1u8; upload.part_size()])).await.expect("a part");
    upload.abort().await.expect("abort");
    assert!(store.list("aborted/").await.unwrap().is_empty(), "nothing visible after abort");
    assert!(store.list_multipart_uploads("aborted/").await.unwrap().is_empty(), "no upload open after abort");
    assert_eq!(store.head(key).await.unwrap_err().kind(), StoreErrorKind::NotFound);

    let mut stale = store.put_multipart("aborted/stale.bin").await.expect("start an upload");
    stale.put_part(Bytes::from(vec![2u8; stale.part_size()])).await.expect("a part");
    let pending = store.list_multipart_uploads("aborted/").await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    store.abort_multipart(&pending[0].key, &pending[0].upload_id).await.expect("abort by id");
    assert!(store.list_multipart_uploads("aborted/").await.unwrap().is_empty(), "cleanup removed the stale upload");
    let _ = stale.abort().await; // already gone: either answer is fine
}

/// Completing an upload onto a key that exists fails with `AlreadyExists` and keeps
/// the existing object.
pub async fn multipart_complete_never_replaces_an_object(store: &dyn ObjectStore) {
    let key = "never-replaced/a.tar.gz";
    store.put(key, Bytes::from_static(b"earlier"), PutMode::Create).await.unwrap();
    let mut upload = store.put_multipart(key).await.expect("start an upload");
    upload.put_part(Bytes::from_static(b"later")).await.expect("a part");
    let error = upload.complete().await.expect_err("completing onto an existing object");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists, "{error}");
    upload.abort().await.expect("abort after the refused complete");
    assert_eq!(&get_bytes(store, key).await.unwrap()[..], b"earlier");
    assert!(store.list_multipart_uploads("never-replaced/").await.unwrap().is_empty());
}

/// `get` streams every byte, in order, possibly in several chunks.
pub async fn get_streams_the_whole_object(store: &dyn ObjectStore) {
    let key = "get/big.bin";
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    store.put(key, Bytes::from(data.clone()), PutMode::Create).await.unwrap();
    let mut stream = store.get(key).await.expect("get");
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("a chunk"));
    }
    assert_eq!(read.len(), data.len());
    assert!(read == data, "the streamed bytes differ");
}

/// `head`, `get` and `abort_multipart` of a missing key fail with `NotFound`.
pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
    assert_eq!(store.head("missing/none.json").await.unwrap_err().kind(), StoreErrorKind::NotFound);
    assert_eq!(store.get("missing/none.json").await.err().expect("get of a missing key fails").kind(), StoreErrorKind::NotFound);
}

/// `list` returns exactly the keys under a prefix (at any depth), with sizes and times.
pub async fn list_gives_sizes_and_times_under_a_prefix(store: &dyn ObjectStore) {
    for (key, size) in [("listed/a.json", 3), ("listed/b.tar.gz", 10), ("listed/deeper/c.bson", 1), ("listed-not/d.json", 2)] {
        store.put(key, Bytes::from(vec![0u8; size]), PutMode::Create).await.unwrap();
    }
    let mut listed = store.list("listed/").await.unwrap();
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let found: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(found, [("listed/a.json", 3), ("listed/b.tar.gz", 10), ("listed/deeper/c.bson", 1)]);
    let now = chrono::Utc::now();
    for object in &listed {
        let time = object.last_modified.expect("a modification time");
        assert!((now - time).num_minutes().abs() < 10, "{time} is not about now ({now})");
    }
    let head = store.head("listed/b.tar.gz").await.unwrap();
    assert_eq!((head.key.as_str(), head.size), ("listed/b.tar.gz", 10));
    let by_name = store.list("listed/a.").await.unwrap();
    assert_eq!(by_name.len(), 1, "a name prefix lists only that name's objects");
}

/// `delete` removes an object; deleting a missing one succeeds.
pub async fn delete_removes_and_tolerates_missing(store: &dyn ObjectStore) {
    store.put("deleted/a.json", Bytes::from_static(b"x"), PutMode::Create).await.unwrap();
    store.delete("deleted/a.json").await.expect("delete");
    assert_eq!(store.head("deleted/a.json").await.unwrap_err().kind(), StoreErrorKind::NotFound);
    store.delete("deleted/a.json").await.expect("deleting a missing object succeeds");
    store.put("deleted/a.json", Bytes::from_static(b"y"), PutMode::Create).await.expect("the key is free again");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn the_memory_store_conforms() {
        run_all(&crate::store::memory::MemoryStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        run_all(&crate::store::local::LocalStore::open(dir.path()).unwrap()).await;
        let left: Vec<_> = walk(dir.path());
        assert!(left.iter().all(|p| !p.ends_with(".partial") && !p.contains("/.staged")), "no partial or staged files remain: {left:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_local_store_leaves_no_empty_folder_behind_a_deleted_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::local::LocalStore::open(dir.path()).unwrap();
        store.put("locks/deep/backup-1.json", Bytes::from_static(b"x"), PutMode::Create).await.unwrap();
        store.put("locks/other.json", Bytes::from_static(b"y"), PutMode::Create).await.unwrap();
        store.delete("locks/deep/backup-1.json").await.unwrap();
        assert!(!dir.path().join("locks/deep").exists(), "the emptied folder is removed");
        assert!(dir.path().join("locks/other.json").exists(), "a folder still holding an object stays");
        store.delete("locks/other.json").await.unwrap();
        assert!(dir.path().exists() && !dir.path().join("locks").exists(), "the store's own directory stays, its emptied folder goes");
        let mut upload = store.put_multipart("slices/a.bin").await.unwrap();
        upload.abort().await.unwrap();
        assert!(!dir.path().join("slices").exists(), "an aborted upload leaves no folder");
        store.put("locks/again.json", Bytes::from_static(b"z"), PutMode::Create).await.expect("a removed folder is recreated");
    }

    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
        found
    }
}
