//! A gzip writer that compresses on several threads, as pigz does, and writes a
//! standard multi-member gzip stream (RFC 1952 §2.2: a gzip file is a series of
//! members). The input is cut into fixed-size blocks; each block becomes one whole
//! gzip member (header, deflate data, CRC-32 and length), compressed by a worker,
//! and the members are written to the sink in input order. `gzip -d`, `tar -xzf`,
//! Python's `gzip` module and flate2's `MultiGzDecoder` all read the result as the
//! concatenation of the blocks.
//!
//! The sink stays on the caller's thread (so it need not be `Send`), and at most
//! `2 × threads` blocks are in flight, which bounds memory to about `4 × threads`
//! MiB whatever the archive size. Each member starts with an empty dictionary, which costs about
//! 1% in size at 1 MiB blocks.
//!
//! (gzp offers the same, but its writers cannot hand their sink back on finish,
//! which the archive needs for its digest.)

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// Uncompressed bytes per gzip member.
pub const BLOCK_SIZE: usize = 1 << 20;

/// One block to compress, and where its member goes.
struct Job {
    data: Vec<u8>,
    reply: mpsc::SyncSender<io::Result<Vec<u8>>>,
}

/// A multi-threaded gzip encoder writing one gzip member per block, in order.
pub struct ParallelGzEncoder<W: Write> {
    sink: W,
    block: Vec<u8>,
    block_size: usize,
    jobs: Option<mpsc::Sender<Job>>,
    pending: VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    members_written: u64,
    /// Set by the first error: a member may have been lost, so nothing more is written.
    failed: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Starts an encoder on `sink` with `threads` workers (at least one) at `level`.
    ///
    /// # Errors
    /// The system refused a worker thread.
    pub fn new(sink: W, level: flate2::Compression, threads: usize) -> io::Result<Self> {
        Self::with_block_size(sink, level, threads, BLOCK_SIZE)
    }

    /// As [`Self::new`], with members of `block_size` uncompressed bytes.
    ///
    /// # Errors
    /// The system refused a worker thread.
    pub fn with_block_size(sink: W, level: flate2::Compression, threads: usize, block_size: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            thread::Builder::new().name("gzip-worker".into()).spawn(move || compress_jobs(&queue, level))?;
        }
        Ok(Self {
            sink,
            block: Vec::with_capacity(block_size),
            block_size: block_size.max(1),
            jobs: Some(jobs),
            pending: VecDeque::new(),
            max_pending: 2 * threads,
            members_written: 0,
            failed: false,
        })
    }

    /// Runs one step that writes to the sink or a worker; its first error poisons the
    /// encoder, so a later call can never produce a valid-looking stream with a gap.
    fn guarded(&mut self, step: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the gzip encoder failed earlier, so its output is incomplete"));
        }
        let result = step(self);
        self.failed = result.is_err();
        result
    }

    /// Sends the filled block to a worker, first writing out the oldest member when
    /// the in-flight limit is reached.
    fn submit_block(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest_member()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(self.block_size));
        let (reply, member) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("the gzip encoder is already finished"))?;
        jobs.send(Job { data, reply }).map_err(|_| worker_lost())?;
        self.pending.push_back(member);
        Ok(())
    }

    /// Waits for the oldest block's member and writes it to the sink.
    fn write_oldest_member(&mut self) -> io::Result<()> {
        let Some(member) = self.pending.pop_front() else { return Ok(()) };
        let bytes = member.recv().map_err(|_| worker_lost())??;
        self.sink.write_all(&bytes)?;
        self.members_written += 1;
        Ok(())
    }

    /// Compresses what is left, writes every member in order and returns the sink.
    /// An empty input still yields one (empty) member, so the output is valid gzip.
    ///
    /// # Errors
    /// The sink failed, or a worker died.
    pub fn finish(mut self) -> io::Result<W> {
        self.guarded(|encoder| {
            if !encoder.block.is_empty() || (encoder.members_written == 0 && encoder.pending.is_empty()) {
                encoder.submit_block()?;
            }
            while !encoder.pending.is_empty() {
                encoder.write_oldest_member()?;
            }
            Ok(())
        })?;
        self.jobs = None;
        Ok(self.sink)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    /// Takes bytes into the open block; a full block is handed to a worker first, so
    /// an error means nothing of `buf` was taken.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.len() == self.block_size || self.failed {
            self.guarded(Self::submit_block)?;
        }
        let taken = (self.block_size - self.block.len()).min(buf.len());
        self.block.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    /// Writes every member already compressed and flushes the sink; the block being
    /// filled stays open, so a flush never cuts a short member.
    fn flush(&mut self) -> io::Result<()> {
        self.guarded(|encoder| {
            while encoder.pending.front().is_some() {
                encoder.write_oldest_member()?;
            }
            encoder.sink.flush()
        })
    }
}

/// A worker: compresses blocks into whole gzip members until the encoder is dropped.
fn compress_jobs(queue: &Mutex<mpsc::Receiver<Job>>, level: flate2::Compression) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(job.data.len() / 2), level);
        let member = encoder.write_all(&job.data).and_then(|()| encoder.finish());
        // The encoder may have been dropped after an error; nothing is waiting then.
        let _ = job.reply.send(member);
    }
}

fn worker_lost() -> io::Error {
    io::Error::other("a gzip compression worker stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Bytes that compress somewhat but not trivially.
    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919) % 251) as u8 ^ ((i / 1000) as u8)).collect()
    }

    fn encode(input: &[u8], threads: usize, block_size: usize) -> Vec<u8> {
        let mut encoder = ParallelGzEncoder::with_block_size(Vec::new(), flate2::Compression::new(6), threads, block_size).unwrap();
        for chunk in input.chunks(10_000) {
            encoder.write_all(chunk).unwrap();
        }
        encoder.finish().unwrap()
    }

    /// Counts members by decoding them one at a time with a single-member decoder.
    fn members(mut bytes: &[u8]) -> usize {
        let mut count = 0;
        while !bytes.is_empty() {
            let mut decoder = flate2::bufread::GzDecoder::new(bytes);
            io::copy(&mut decoder, &mut io::sink()).unwrap();
            bytes = decoder.into_inner();
            count += 1;
        }
        count
    }

    #[test]
    fn output_is_one_member_per_block_and_decodes_to_the_input_in_order() {
        let input = sample(1_000_003);
        let encoded = encode(&input, 3, 64 * 1024);
        assert_eq!(members(&encoded), 1_000_003usize.div_ceil(64 * 1024));
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&encoded[..]).read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, input);
    }

    #[test]
    fn the_system_gzip_reads_the_stream_as_one_file() {
        let input = sample(300_000);
        let encoded = encode(&input, 2, 50_000);
        let mut gzip = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip on PATH (the seed's `tar -czf` needs it too)");
        let mut stdin = gzip.stdin.take().unwrap();
        let writer = thread::spawn(move || stdin.write_all(&encoded).unwrap());
        let output = gzip.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, input);
    }

    #[test]
    fn an_empty_input_is_one_valid_empty_member() {
        let encoded = encode(&[], 2, 1024);
        assert_eq!(members(&encoded), 1);
        let mut decoded = Vec::new();
        flate2::read::MultiGzDecoder::new(&encoded[..]).read_to_end(&mut decoded).unwrap();
        assert!(decoded.is_empty());
    }

    #[test]
    fn an_exact_multiple_of_the_block_size_adds_no_empty_member() {
        let input = sample(4 * 1024);
        assert_eq!(members(&encode(&input, 2, 1024)), 4);
    }

    #[test]
    fn a_failing_sink_is_an_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut encoder = ParallelGzEncoder::with_block_size(Broken, flate2::Compression::new(1), 2, 1024).unwrap();
        let written = encoder.write_all(&sample(64 * 1024)).and_then(|()| encoder.flush());
        assert_eq!(written.unwrap_err().to_string(), "disk full");
        let again = encoder.write(b"more").unwrap_err().to_string();
        assert!(again.contains("failed earlier"), "{again}");
        let finished = encoder.finish().map(|_| ()).unwrap_err().to_string();
        assert!(finished.contains("failed earlier"), "after an error finish must not produce a stream: {finished}");
    }
}
