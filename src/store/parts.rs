//! The bridge from the synchronous archive thread to an async [`MultipartUpload`].
//!
//! [`PartWriter`] is a `std::io::Write` that cuts the stream into parts of the
//! upload's part size and hands each full part over a channel of capacity one to a
//! task ([`upload_parts`]) that takes a part only once the store has capacity for it
//! (`wait_for_capacity`) and then calls `put_part`. Memory is therefore bounded by
//! `part_size x (parts in flight + 2)`: the part being filled, the one in the
//! channel, and those uploading. The task gives the
//! upload back when the writer is finished or dropped, or at once when the run is
//! cancelled (a store that stopped answering must not hold a stopping run), so the
//! caller decides, explicitly and awaited, whether to `complete` or `abort` it.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::{StoreError, StoreErrorKind};
use super::object::MultipartUpload;

/// The archive thread's end: full parts go to the uploading task.
pub struct PartWriter {
    buffer: BytesMut,
    part_size: usize,
    parts: mpsc::Sender<Bytes>,
}

/// What the uploading task hands back: the upload (to complete or abort) and whether
/// every part was stored.
pub type Uploaded = (Box<dyn MultipartUpload>, Result<(), StoreError>);

/// Starts the task that feeds `upload` with the parts written to the returned
/// [`PartWriter`]; it gives the upload back at once when `cancel` fires. Call inside
/// the runtime; use the writer from a blocking thread.
pub fn upload_parts(upload: Box<dyn MultipartUpload>, cancel: CancellationToken) -> (PartWriter, JoinHandle<Uploaded>) {
    let part_size = upload.part_size().max(1);
    let (parts, mut received) = mpsc::channel::<Bytes>(1);
    let task = tokio::spawn(async move {
        let mut upload = upload;
        let cancelled = || StoreError::new(StoreErrorKind::Other, "the run was cancelled while its archive was uploading".to_string());
        loop {
            // Take the next part only when it can start uploading: no part waits here.
            let next = cancel
                .run_until_cancelled(async {
                    upload.wait_for_capacity().await?;
                    Ok::<_, StoreError>(received.recv().await)
                })
                .await;
            let sent = match next {
                None => return (upload, Err(cancelled())),
                Some(Ok(Some(part))) => upload.put_part(part).await,
                Some(Ok(None)) => return (upload, Ok(())),
                Some(Err(error)) => Err(error),
            };
            if let Err(error) = sent {
                // Closing the channel makes the writer's next part fail at once.
                return (upload, Err(error));
            }
        }
    });
    (PartWriter { buffer: BytesMut::with_capacity(part_size), part_size, parts }, task)
}

impl PartWriter {
    fn send(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.buffer, BytesMut::with_capacity(self.part_size)).freeze();
        self.parts.blocking_send(part).map_err(|_| io::Error::other("the store upload stopped (its error is reported separately)"))
    }

    /// Sends the last, possibly short, part and closes the channel, which ends the
    /// uploading task once the parts are handed over.
    ///
    /// # Errors
    /// The uploading task has stopped (its error says why).
    pub fn finish(mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = (self.part_size - self.buffer.len()).min(data.len());
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == self.part_size {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::object::{get_bytes, ObjectStore};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_written_stream_arrives_whole_in_parts() {
        let store = MemoryStore::new();
        let upload = store.put_multipart("a.tar.gz").await.unwrap();
        let part_size = upload.part_size();
        let (mut writer, task) = upload_parts(upload, CancellationToken::new());
        let data: Vec<u8> = (0..part_size * 3 + 17).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        tokio::task::spawn_blocking(move || {
            writer.write_all(&data).unwrap();
            writer.finish().unwrap();
        })
        .await
        .unwrap();
        let (mut upload, sent) = task.await.unwrap();
        sent.unwrap();
        upload.complete().await.unwrap();
        assert_eq!(get_bytes(&store, "a.tar.gz").await.unwrap().to_vec(), expected);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_dropped_writer_hands_the_upload_back_for_an_abort() {
        let store = MemoryStore::new();
        let (mut writer, task) = upload_parts(store.put_multipart("a.tar.gz").await.unwrap(), CancellationToken::new());
        tokio::task::spawn_blocking(move || writer.write_all(&[1; 100_000]).unwrap()).await.unwrap();
        let (mut upload, sent) = task.await.unwrap();
        sent.unwrap();
        upload.abort().await.unwrap();
        assert!(store.list("").await.unwrap().is_empty());
        assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
    }
}
