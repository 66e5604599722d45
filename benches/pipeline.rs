//! The backup pipeline without a server: sample documents (raw BSON) -> spool with
//! per-namespace digests, compressed into gzip or zstd blocks as it fills ->
//! mongodump-layout tar -> archive SHA-256 -> a sink, on as many reader threads as a
//! backup's default `--parallel` and one archive thread, beside each stage's cost
//! measured alone on the same bytes:
//!
//! | id | what |
//! |---|---|
//! | `limit/memcpy` | a memory copy of every file |
//! | `limit/sha256` | SHA-256 of the file bytes alone (the `.bson` file hash) |
//! | `stage/content-hash` | the content hash alone: one SHA-256 per document, summed ([`ContentHash`]) |
//! | `stage/digests` | [`NamespaceDigest`]: both of the above in one pass, as the spool computes them |
//! | `stage/spool` | an uncompressed spool (digests + copy into memory or a temp file) |
//! | `limit/compressor/<codec>` | the compressor alone, same blocks and workers as the pipeline |
//! | `whole/<codec>` | the whole pipeline |
//! | `whole-encrypted/<codec>` | the whole pipeline with age encryption (default levels only) |
//! | `stage/age-over-gzip` | age encryption alone over the gzip archive |
//!
//! `<codec>` is `gzip/<threads>-threads` (level 6), `zstd/<threads>-threads` (level 3,
//! the default) and the zstd level sweep `zstd/<threads>-threads/level-<1|2>`, so a
//! filter such as `whole/zstd/2-threads` selects the sweep at one thread count.
//! Throughput is counted in BSON bytes everywhere, so the stages add up.
//!
//! Run with `cargo bench --bench pipeline` (add `-- --quick`, or a filter such as
//! `-- limit/compressor/zstd`, for a short run).
#![allow(missing_docs)]

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest_backup::archive::block_encoder::BlockEncoder;
use ingest_backup::archive::block_encoder::Codec;
use ingest_backup::archive::{ArchiveWriter, Compression};
use ingest_backup::crypto::stream::SealWriter;
use ingest_backup::crypto::Recipients;
use ingest_backup::digest::{ContentHash, NamespaceDigest};
use ingest_backup::dump::spool::{join_ranges, BsonSpool, SpoolGauge, SpooledBson, Spooler};
use ingest_backup::sample::{SampleGenerator, SampleSpec, COLLECTIONS};
use sha2::{Digest, Sha256};

/// The backup's default `--spool-memory-mb`.
const SPOOL_MEMORY: usize = 4 << 20;

/// The backup's default `--parallel`: collections read at once.
const READERS: usize = 4;

/// The sample data set as one `.bson` byte stream per collection.
fn sample_files(megabytes: u64) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = COLLECTIONS.iter().map(|c| (format!("data/db/dump/b/ingest/{c}.bson"), Vec::new())).collect();
    for (collection, document) in SampleGenerator::new(&SampleSpec::megabytes(megabytes)) {
        let index = COLLECTIONS.iter().position(|c| *c == collection).unwrap();
        document.to_writer(&mut files[index].1).unwrap();
    }
    files
}

fn documents(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let length = i32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let (document, tail) = rest.split_at(length);
        rest = tail;
        Some(document)
    })
}

/// The backup's shape on these bytes: [`READERS`] reader threads each take the next
/// collection and spool it, computing its digests and compressing it in the same pass
/// (as a collection task does with its cursor; the backup's default 4 MiB in memory,
/// the rest in a temporary file), while the archive thread tars and hashes the spools
/// already finished. Readers and archive share one pool of `threads` workers.
fn pipeline(files: &[(String, Vec<u8>)], compression: Compression, spool_dir: &Path, recipients: Option<&Recipients>) -> u64 {
    let pool = compression.pool().unwrap();
    let spooler = Spooler {
        dir: spool_dir.to_path_buf(),
        memory_limit: SPOOL_MEMORY,
        gauge: SpoolGauge::default(),
        codec: compression.codec(),
        pool: pool.clone(),
    };
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (finished, spools) = std::sync::mpsc::sync_channel::<(&str, SpooledBson)>(READERS);
        for _ in 0..READERS {
            let (finished, spooler, next) = (finished.clone(), spooler.clone(), &next);
            scope.spawn(move || {
                while let Some((path, bytes)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut spool = spooler.spool();
                    documents(bytes).for_each(|d| spool.push(d).unwrap());
                    finished.send((path, spool.finish().unwrap())).unwrap();
                }
            });
        }
        drop(finished);
        let mut writer = ArchiveWriter::sealed(io::sink(), compression.codec(), pool, 0, recipients).unwrap();
        for (path, bson) in spools {
            writer.append_compressed(path, bson.summary.bytes, bson.data, bson.stored_bytes).unwrap();
        }
        writer.finish().unwrap().1.size
    })
}

/// The compressor alone on every file as one stream, with the same codec, level,
/// blocks and worker threads as the pipeline.
fn compress_alone(compression: Compression, files: &[(String, Vec<u8>)]) -> usize {
    let mut encoder = BlockEncoder::new(io::sink(), compression.codec(), compression.pool().unwrap());
    for (_, bytes) in files {
        encoder.write_all(bytes).unwrap();
    }
    encoder.finish().unwrap();
    files.iter().map(|(_, bytes)| bytes.len()).sum()
}

/// The compressed archive of `files`, as the pipeline writes it unencrypted.
fn compressed_archive(files: &[(String, Vec<u8>)], compression: Compression) -> Vec<u8> {
    let mut writer = ArchiveWriter::with_pool(Vec::new(), compression.codec(), compression.pool().unwrap(), 0);
    for (path, bytes) in files {
        writer.append_bytes(path, bytes).unwrap();
    }
    writer.finish().unwrap().0
}

/// age encryption alone (one thread) over `compressed`, in 1 MiB writes as the
/// compressor hands its blocks over.
fn encrypt_alone(compressed: &[u8], recipients: &Recipients) -> usize {
    let mut writer = SealWriter::new(io::sink(), Some(recipients)).unwrap();
    for block in compressed.chunks(1 << 20) {
        writer.write_all(block).unwrap();
    }
    writer.finish().unwrap();
    compressed.len()
}

fn bench(c: &mut Criterion) {
    let files = sample_files(32);
    let spool_dir = tempfile::tempdir().unwrap();
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let recipients = Recipients::parse(&[recipient], None, None).unwrap().unwrap();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(total)).sample_size(10);

    group.bench_function("limit/memcpy", |b| b.iter(|| files.iter().map(|(_, bytes)| criterion::black_box(bytes.to_vec()).len()).sum::<usize>()));
    group.bench_function("limit/sha256", |b| b.iter(|| files.iter().map(|(_, bytes)| Sha256::digest(bytes)[0]).fold(0u8, |a, x| a ^ x)));
    group.bench_function("stage/content-hash", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, bytes)| {
                    let mut hash = ContentHash::default();
                    documents(bytes).for_each(|d| hash.add_document(d));
                    hash
                })
                .fold(ContentHash::default(), |mut all, hash| {
                    all.merge(&hash);
                    all
                })
        })
    });
    group.bench_function("stage/digests", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(_, bytes)| {
                    let mut digest = NamespaceDigest::default();
                    documents(bytes).for_each(|d| digest.add_document(d));
                    digest.finish().documents
                })
                .sum::<u64>()
        })
    });
    group.bench_function("stage/spool", |b| {
        b.iter(|| {
            let gauge = SpoolGauge::default();
            files
                .iter()
                .map(|(_, bytes)| {
                    let mut spool = BsonSpool::new(spool_dir.path(), SPOOL_MEMORY, &gauge);
                    documents(bytes).for_each(|d| spool.push(d).unwrap());
                    spool.finish().unwrap().summary.documents
                })
                .sum::<u64>()
        })
    });
    // In-line and with two workers (this machine's cores); the limit for each is the
    // same compressor with the same threads, alone on the same bytes. zstd is swept over
    // levels 1 to 3 (3 is the default and keeps its unsuffixed id); encryption is
    // measured at the default levels only.
    let mut compressions = Vec::new();
    for threads in [0, 2] {
        compressions.push(Compression::Gzip { level: 6, threads });
    }
    for threads in [0, 2] {
        for level in [1, 2, 3] {
            compressions.push(Compression::Zstd { level, threads });
        }
    }
    for compression in compressions {
        let (label, default_level) = match compression {
            Compression::Gzip { threads, .. } => (format!("gzip/{threads}-threads"), true),
            Compression::Zstd { level: 3, threads } => (format!("zstd/{threads}-threads"), true),
            Compression::Zstd { level, threads } => (format!("zstd/{threads}-threads/level-{level}"), false),
        };
        group.bench_with_input(BenchmarkId::new("limit/compressor", &label), &compression, |b, compression| {
            b.iter(|| compress_alone(*compression, &files))
        });
        group.bench_with_input(BenchmarkId::new("whole", &label), &compression, |b, compression| {
            b.iter(|| pipeline(&files, *compression, spool_dir.path(), None))
        });
        if default_level {
            group.bench_with_input(BenchmarkId::new("whole-encrypted", &label), &compression, |b, compression| {
                b.iter(|| pipeline(&files, *compression, spool_dir.path(), Some(&recipients)))
            });
        }
    }
    group.finish();

    // The encryption's own cost, per byte of the data set: age alone over the gzip
    // archive of it (throughput counted in BSON bytes, so it adds up with the rest).
    let compressed = compressed_archive(&files, Compression::Gzip { level: 6, threads: 2 });
    eprintln!("gzip archive: {} bytes for {total} bytes of BSON ({:.1}%)", compressed.len(), compressed.len() as f64 * 100.0 / total as f64);
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(total)).sample_size(10);
    group.bench_function("stage/age-over-gzip", |b| b.iter(|| encrypt_alone(&compressed, &recipients)));

    // What splitting a collection into `_id` ranges adds: joining four range spools
    // (gzip, as the backup spools them) continues the file SHA-256 over the three later
    // ranges, decompressed once (throughput counted in BSON bytes of the collection).
    let (_, largest) = files.iter().max_by_key(|(_, bytes)| bytes.len()).unwrap();
    let pool = Compression::Gzip { level: 6, threads: 2 }.pool().unwrap();
    let spooler =
        Spooler { dir: spool_dir.path().to_path_buf(), memory_limit: SPOOL_MEMORY, gauge: SpoolGauge::default(), codec: Codec::Gzip(6), pool };
    let all: Vec<&[u8]> = documents(largest).collect();
    group.throughput(Throughput::Bytes(largest.len() as u64));
    group.bench_function("stage/join-4-ranges-gzip", |b| {
        b.iter_batched(
            || {
                all.chunks(all.len().div_ceil(4))
                    .map(|range| {
                        let mut spool = spooler.spool();
                        range.iter().for_each(|d| spool.push(d).unwrap());
                        spool.finish().unwrap()
                    })
                    .collect::<Vec<_>>()
            },
            |pieces| join_ranges(pieces, &|| false).unwrap().summary.documents,
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
