//! Compression in independent blocks, on a pool of threads shared by every stream of
//! a backup, as pigz does for gzip.
//!
//! The input of a stream is cut into fixed-size blocks; each block becomes one whole
//! gzip member (RFC 1952 §2.2: a gzip file is a series of members) or one whole zstd
//! frame (RFC 8878 §3: a zstd file is a series of frames), and the results are
//! written to the stream's sink in input order. `gzip -d`, `zstd -d`, `tar -xzf`,
//! `tar --zstd -xf`, flate2's `MultiGzDecoder` and the zstd crate's decoder all read
//! the result as the concatenation of the blocks.
//!
//! Because every block stands alone, compressed bytes from different encoders can be
//! spliced together and still form one valid stream. The backup relies on that: each
//! collection is compressed into its spool while it is read ([`crate::dump::spool`]),
//! and the archive copies the finished spool between its own blocks
//! ([`super::ArchiveWriter::append_compressed`]).
//!
//! The sink stays on the caller's thread (so it need not be `Send`). Memory is
//! bounded whatever the archive size: the pool queues at most `threads` blocks, and an
//! encoder waits once `2 × threads` of its blocks are in flight. With no threads the
//! pool compresses on the caller's thread, and so does every encoder for a block under
//! a sixteenth of the block size (the last of a small collection, a run of tar
//! headers), which would otherwise wait in the queue behind other streams' full blocks. Each block starts
//! with an empty dictionary, which costs about 1% in size at 1 MiB blocks with gzip
//! (whose window is 32 KiB anyway) and a few percent with zstd.
//!
//! (gzp offers the gzip half, but its writers cannot hand their sink back on finish,
//! which the archive needs for its digest, nor share workers between streams.)

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// Uncompressed bytes per block (one gzip member or zstd frame).
pub const BLOCK_SIZE: usize = 1 << 20;

/// The format and level each block is compressed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// One gzip member per block, at a level from 0 to 9.
    Gzip(u32),
    /// One zstd frame per block, at a level from 1 to 19.
    Zstd(i32),
}

impl Codec {
    /// Compresses `data` into one self-contained gzip member or zstd frame.
    ///
    /// # Errors
    /// The compressor failed (it only fails on an invalid level).
    pub fn compress_block(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Codec::Gzip(level) => compress_gzip(&mut None, level, data),
            Codec::Zstd(level) => zstd::bulk::compress(data, level),
        }
    }
}

/// One block to compress, and where its result goes.
struct Job {
    codec: Codec,
    data: Vec<u8>,
    reply: mpsc::SyncSender<Compressed>,
}

/// A compressed block, and the input buffer it came from, handed back so the encoder
/// can fill it again instead of allocating a new MiB for every block.
struct Compressed {
    bytes: io::Result<Vec<u8>>,
    input: Vec<u8>,
}

/// Worker threads that compress blocks for any number of encoders. Cloning shares the
/// workers; they stop when the last clone (and every encoder using it) is dropped.
#[derive(Clone)]
pub struct CompressorPool {
    /// `None`: no workers, blocks are compressed on the caller's thread.
    jobs: Option<mpsc::SyncSender<Job>>,
    threads: usize,
}

impl CompressorPool {
    /// Starts `threads` workers; 0 compresses in-line on each encoder's thread.
    ///
    /// # Errors
    /// The system refused a worker thread.
    pub fn new(threads: usize) -> io::Result<Self> {
        if threads == 0 {
            return Ok(Self { jobs: None, threads: 0 });
        }
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            thread::Builder::new().name("compress-worker".into()).spawn(move || compress_jobs(&queue))?;
        }
        Ok(Self { jobs: Some(jobs), threads })
    }

    /// The number of worker threads (0: in-line).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Hands `data` to a worker (waiting while the queue is full), or compresses it
    /// now when there are no workers or `in_line` asks for it; the result arrives on
    /// the returned receiver.
    fn submit(&self, codec: Codec, data: Vec<u8>, in_line: bool) -> io::Result<mpsc::Receiver<Compressed>> {
        let (reply, result) = mpsc::sync_channel(1);
        match &self.jobs {
            Some(jobs) if !in_line => jobs.send(Job { codec, data, reply }).map_err(|_| worker_lost())?,
            _ => reply.send(Compressed { bytes: codec.compress_block(&data), input: data }).map_err(|_| worker_lost())?,
        }
        Ok(result)
    }
}

/// A writer that compresses its input in [`BLOCK_SIZE`] blocks on a [`CompressorPool`]
/// and writes the blocks to its sink in order.
pub struct BlockEncoder<W: Write> {
    sink: W,
    codec: Codec,
    pool: CompressorPool,
    block: Vec<u8>,
    /// An emptied input buffer back from the pool, for the next block.
    spare: Option<Vec<u8>>,
    block_size: usize,
    pending: VecDeque<mpsc::Receiver<Compressed>>,
    max_pending: usize,
    blocks_written: u64,
    /// Set by the first error: a block may have been lost, so nothing more is written.
    failed: bool,
}

impl<W: Write> BlockEncoder<W> {
    /// An encoder writing `codec` blocks to `sink`, compressed by `pool`.
    pub fn new(sink: W, codec: Codec, pool: CompressorPool) -> Self {
        Self::with_block_size(sink, codec, pool, BLOCK_SIZE)
    }

    /// As [`Self::new`], with blocks of `block_size` uncompressed bytes.
    pub fn with_block_size(sink: W, codec: Codec, pool: CompressorPool, block_size: usize) -> Self {
        let max_pending = 2 * pool.threads().max(1);
        Self {
            sink,
            codec,
            pool,
            block: Vec::new(),
            spare: None,
            block_size: block_size.max(1),
            pending: VecDeque::new(),
            max_pending,
            blocks_written: 0,
            failed: false,
        }
    }

    /// The codec of every block this encoder writes.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Whether writing `len` more bytes may wait for the pool or compress a block on
    /// this thread: an async caller should then step out of the runtime's way
    /// (`tokio::task::block_in_place`). Otherwise a write only copies into the open
    /// block.
    pub fn write_may_wait(&self, len: usize) -> bool {
        self.block.len() + len > self.block_size
    }

    /// Ends the current block (as [`Self::end_block`]) and copies `blocks`, which must
    /// be whole blocks in this encoder's codec and exactly `expected_len` bytes long,
    /// straight to the sink. A short or failed copy poisons the encoder, so no later
    /// call can finish a stream with a gap in it.
    ///
    /// # Errors
    /// The sink or `blocks` failed, or `blocks` held a different number of bytes.
    pub fn splice(&mut self, blocks: impl io::Read, expected_len: u64) -> io::Result<()> {
        self.end_block()?;
        self.guarded(|encoder| {
            // One byte more than expected is enough to tell a long source from an exact one.
            let copied = io::copy(&mut blocks.take(expected_len + 1), &mut encoder.sink)?;
            if copied != expected_len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("a spliced stream held {copied} bytes where {expected_len} were expected"),
                ));
            }
            Ok(())
        })
    }

    /// Runs one step that writes to the sink or the pool; its first error poisons the
    /// encoder, so a later call can never produce a valid-looking stream with a gap.
    fn guarded<T>(&mut self, step: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if self.failed {
            return Err(io::Error::other("the compressor failed earlier, so its output is incomplete"));
        }
        let result = step(self);
        self.failed = result.is_err();
        result
    }

    /// Sends the open block to the pool, first writing out the oldest block when the
    /// in-flight limit is reached.
    fn submit_block(&mut self) -> io::Result<()> {
        self.write_finished_blocks()?;
        while self.pending.len() >= self.max_pending {
            self.write_oldest_block()?;
        }
        let data = std::mem::take(&mut self.block);
        let small = data.len() < self.block_size / 16;
        let result = self.pool.submit(self.codec, data, small)?;
        self.pending.push_back(result);
        Ok(())
    }

    /// Writes out, without waiting, the oldest blocks already compressed, so that a
    /// stream the pool keeps up with holds no finished blocks (or their input buffers).
    fn write_finished_blocks(&mut self) -> io::Result<()> {
        while let Some(oldest) = self.pending.front() {
            match oldest.try_recv() {
                Ok(compressed) => {
                    self.pending.pop_front();
                    self.write_block(compressed)?;
                }
                Err(mpsc::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::TryRecvError::Disconnected) => return Err(worker_lost()),
            }
        }
        Ok(())
    }

    /// Waits for the oldest block's result and writes it to the sink.
    fn write_oldest_block(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else { return Ok(()) };
        let compressed = result.recv().map_err(|_| worker_lost())?;
        self.write_block(compressed)
    }

    /// Writes one compressed block to the sink and keeps its input buffer for reuse.
    fn write_block(&mut self, Compressed { bytes, mut input }: Compressed) -> io::Result<()> {
        self.sink.write_all(&bytes?)?;
        self.blocks_written += 1;
        if input.capacity() >= self.block_size {
            input.clear();
            self.spare = Some(input);
        }
        Ok(())
    }

    /// Compresses the open block (if any) and writes every block so far, so that the
    /// sink ends on a block boundary; returns the sink, where other complete gzip
    /// members or zstd frames may then be written directly.
    ///
    /// # Errors
    /// The sink failed, or a worker died.
    pub fn end_block(&mut self) -> io::Result<&mut W> {
        self.guarded(|encoder| {
            if !encoder.block.is_empty() {
                encoder.submit_block()?;
            }
            while !encoder.pending.is_empty() {
                encoder.write_oldest_block()?;
            }
            Ok(())
        })?;
        Ok(&mut self.sink)
    }

    /// Compresses what is left, writes every block in order and returns the sink.
    /// An empty input still yields one (empty) block, so the output is a valid file.
    ///
    /// # Errors
    /// The sink failed, or a worker died.
    pub fn finish(mut self) -> io::Result<W> {
        if self.blocks_written == 0 && self.pending.is_empty() && self.block.is_empty() {
            self.guarded(Self::submit_block)?;
        }
        self.end_block()?;
        Ok(self.sink)
    }
}

impl<W: Write> Write for BlockEncoder<W> {
    /// Takes bytes into the open block; a full block is handed to the pool first, so
    /// an error means nothing of `buf` was taken.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block.len() == self.block_size || self.failed {
            self.guarded(Self::submit_block)?;
        }
        if self.block.capacity() == 0 {
            self.block = self.spare.take().unwrap_or_else(|| Vec::with_capacity(self.block_size));
        }
        let taken = (self.block_size - self.block.len()).min(buf.len());
        self.block.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    /// Writes every block already compressed and flushes the sink; the open block
    /// stays open, so a flush never cuts a short block.
    fn flush(&mut self) -> io::Result<()> {
        self.guarded(|encoder| {
            while encoder.pending.front().is_some() {
                encoder.write_oldest_block()?;
            }
            encoder.sink.flush()
        })
    }
}

/// A worker: compresses blocks until every pool handle is dropped, keeping one zstd
/// context and one libdeflate compressor for all its blocks (a new one per block would
/// allocate megabytes each time).
fn compress_jobs(queue: &Mutex<mpsc::Receiver<Job>>) {
    let mut zstd_context: Option<(i32, zstd::bulk::Compressor<'static>)> = None;
    let mut gzip_context: Option<(u32, libdeflater::Compressor)> = None;
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let bytes = match job.codec {
            Codec::Zstd(level) => compress_zstd(&mut zstd_context, level, &job.data),
            Codec::Gzip(level) => compress_gzip(&mut gzip_context, level, &job.data),
        };
        // The encoder may have been dropped after an error; nothing is waiting then.
        let _ = job.reply.send(Compressed { bytes, input: job.data });
    }
}

/// One standard gzip member of `data` (libdeflate: a whole-buffer DEFLATE, faster than
/// a streaming zlib on 1 MiB blocks at the same level), made with `context` (created,
/// or recreated for another level).
fn compress_gzip(context: &mut Option<(u32, libdeflater::Compressor)>, level: u32, data: &[u8]) -> io::Result<Vec<u8>> {
    if !matches!(context, Some((current, _)) if *current == level) {
        let lvl = i32::try_from(level)
            .ok()
            .and_then(|l| libdeflater::CompressionLvl::new(l).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("gzip level {level} is out of range")))?;
        *context = Some((level, libdeflater::Compressor::new(lvl)));
    }
    let (_, compressor) = context.as_mut().expect("set above");
    let mut member = vec![0; compressor.gzip_compress_bound(data.len())];
    let written = compressor.gzip_compress(data, &mut member).map_err(|e| io::Error::other(format!("gzip compression failed: {e}")))?;
    member.truncate(written);
    Ok(member)
}

/// One zstd frame of `data`, made with `context` (created, or recreated for another level).
fn compress_zstd(context: &mut Option<(i32, zstd::bulk::Compressor<'static>)>, level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    match context {
        Some((current, compressor)) if *current == level => compressor.compress(data),
        _ => {
            let mut compressor = zstd::bulk::Compressor::new(level)?;
            let bytes = compressor.compress(data);
            *context = Some((level, compressor));
            bytes
        }
    }
}

fn worker_lost() -> io::Error {
    io::Error::other("a compression worker stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Bytes that compress somewhat but not trivially.
    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7919) % 251) as u8 ^ ((i / 1000) as u8)).collect()
    }

    fn encode(input: &[u8], codec: Codec, threads: usize, block_size: usize) -> Vec<u8> {
        let mut encoder = BlockEncoder::with_block_size(Vec::new(), codec, CompressorPool::new(threads).unwrap(), block_size);
        for chunk in input.chunks(10_000) {
            encoder.write_all(chunk).unwrap();
        }
        encoder.finish().unwrap()
    }

    fn decode(encoded: &[u8], codec: Codec) -> Vec<u8> {
        let mut decoded = Vec::new();
        match codec {
            Codec::Gzip(_) => flate2::read::MultiGzDecoder::new(encoded).read_to_end(&mut decoded).unwrap(),
            Codec::Zstd(_) => zstd::stream::read::Decoder::new(encoded).unwrap().read_to_end(&mut decoded).unwrap(),
        };
        decoded
    }

    /// Counts gzip members by decoding them one at a time with a single-member decoder.
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

    /// Decodes `encoded` with a system tool (`gzip -dc` or `zstd -dc`).
    fn system_decode(tool: &str, encoded: Vec<u8>) -> Vec<u8> {
        let mut child = std::process::Command::new(tool)
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} on PATH (the original ingest backup scripts' tar needs gzip; tar --zstd needs zstd): {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let writer = thread::spawn(move || stdin.write_all(&encoded).unwrap());
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success(), "{tool} -dc failed");
        output.stdout
    }

    #[test]
    fn output_is_one_member_per_block_and_decodes_to_the_input_in_order() {
        let input = sample(1_000_003);
        for threads in [0, 3] {
            let encoded = encode(&input, Codec::Gzip(6), threads, 64 * 1024);
            assert_eq!(members(&encoded), 1_000_003usize.div_ceil(64 * 1024), "{threads} threads");
            assert_eq!(decode(&encoded, Codec::Gzip(6)), input, "{threads} threads");
            let encoded = encode(&input, Codec::Zstd(3), threads, 64 * 1024);
            assert_eq!(decode(&encoded, Codec::Zstd(3)), input, "{threads} threads");
        }
    }

    #[test]
    fn the_system_tools_read_the_blocks_as_one_file() {
        let input = sample(300_000);
        assert_eq!(system_decode("gzip", encode(&input, Codec::Gzip(6), 2, 50_000)), input);
        assert_eq!(system_decode("zstd", encode(&input, Codec::Zstd(3), 2, 50_000)), input);
    }

    #[test]
    fn streams_of_one_pool_splice_into_one_valid_stream() {
        let pool = CompressorPool::new(2).unwrap();
        for codec in [Codec::Gzip(1), Codec::Zstd(1)] {
            let (first, second) = (sample(70_000), sample(90_000));
            let mut inner = BlockEncoder::with_block_size(Vec::new(), codec, pool.clone(), 16_384);
            inner.write_all(&second).unwrap();
            let spliced = inner.finish().unwrap();

            let mut outer = BlockEncoder::with_block_size(Vec::new(), codec, pool.clone(), 16_384);
            outer.write_all(&first).unwrap();
            outer.end_block().unwrap().write_all(&spliced).unwrap();
            outer.write_all(b"tail").unwrap();
            let whole = outer.finish().unwrap();

            let expected = [first, second, b"tail".to_vec()].concat();
            assert_eq!(decode(&whole, codec), expected, "{codec:?}");
        }
    }

    #[test]
    fn many_streams_on_one_worker_all_finish_in_order() {
        let pool = CompressorPool::new(1).unwrap();
        let streams: Vec<_> = (0..6)
            .map(|n| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let input: Vec<u8> = sample(300_000 + n * 1000);
                    let mut encoder = BlockEncoder::with_block_size(Vec::new(), Codec::Gzip(1), pool, 70_000);
                    for chunk in input.chunks(999) {
                        encoder.write_all(chunk).unwrap();
                    }
                    (input, encoder.finish().unwrap())
                })
            })
            .collect();
        for stream in streams {
            let (input, encoded) = stream.join().unwrap();
            assert_eq!(decode(&encoded, Codec::Gzip(1)), input);
        }
    }

    #[test]
    fn an_empty_input_is_one_valid_empty_block() {
        let encoded = encode(&[], Codec::Gzip(6), 2, 1024);
        assert_eq!(members(&encoded), 1);
        assert!(decode(&encoded, Codec::Gzip(6)).is_empty());
        assert!(decode(&encode(&[], Codec::Zstd(3), 0, 1024), Codec::Zstd(3)).is_empty());
    }

    #[test]
    fn an_exact_multiple_of_the_block_size_adds_no_empty_member() {
        let input = sample(4 * 1024);
        assert_eq!(members(&encode(&input, Codec::Gzip(6), 2, 1024)), 4);
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
        let mut encoder = BlockEncoder::with_block_size(Broken, Codec::Gzip(1), CompressorPool::new(2).unwrap(), 1024);
        let written = encoder.write_all(&sample(64 * 1024)).and_then(|()| encoder.flush());
        assert_eq!(written.unwrap_err().to_string(), "disk full");
        let again = encoder.write(b"more").unwrap_err().to_string();
        assert!(again.contains("failed earlier"), "{again}");
        assert!(encoder.end_block().is_err(), "after an error nothing may be spliced in");
        let finished = encoder.finish().map(|_| ()).unwrap_err().to_string();
        assert!(finished.contains("failed earlier"), "after an error finish must not produce a stream: {finished}");
    }
}
