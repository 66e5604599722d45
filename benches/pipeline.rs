//! The backup pipeline without a server: sample documents (raw BSON) -> spool with
//! per-namespace digests -> mongodump-layout tar -> gzip or zstd -> archive SHA-256 ->
//! a sink, spooling and archiving on two threads as in a backup,
//! beside the limits measured on the same bytes (a memory copy, SHA-256 alone, the
//! compressor alone). Run with `cargo bench --bench pipeline`.
#![allow(missing_docs)]

use std::io::{self, Write};
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest_backup::archive::parallel_gzip::ParallelGzEncoder;
use ingest_backup::archive::{ArchiveWriter, Compression};
use ingest_backup::digest::NamespaceDigest;
use ingest_backup::dump::spool::{BsonSpool, SpoolGauge, SpooledBson};
use ingest_backup::sample::{SampleGenerator, SampleSpec, COLLECTIONS};
use sha2::{Digest, Sha256};

/// The backup's default `--spool-memory-mb`.
const SPOOL_MEMORY: usize = 4 << 20;

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

/// The backup's shape on these bytes: a reader thread spools each collection and
/// computes its digests in the same pass (as a collection task does with its cursor;
/// the backup's default 4 MiB in memory, the rest in a temporary file), while the
/// archive writer tars, compresses and hashes the spools already finished.
fn pipeline(files: &[(String, Vec<u8>)], compression: Compression, spool_dir: &Path) -> u64 {
    let gauge = SpoolGauge::default();
    std::thread::scope(|scope| {
        let (finished, spools) = std::sync::mpsc::sync_channel::<(&str, SpooledBson)>(1);
        scope.spawn(move || {
            for (path, bytes) in files {
                let mut spool = BsonSpool::new(spool_dir, SPOOL_MEMORY, &gauge);
                documents(bytes).for_each(|d| spool.push(d).unwrap());
                finished.send((path, spool.finish().unwrap())).unwrap();
            }
        });
        let mut writer = ArchiveWriter::new(io::sink(), compression, 0).unwrap();
        for (path, bson) in spools {
            writer.append_file(path, bson.summary.bytes, bson.data).unwrap();
        }
        writer.finish().unwrap().1.size
    })
}

/// The compressor alone on every file as one stream (as the pipeline compresses one
/// tar stream), with the same level and threads as the pipeline.
fn compress_alone(compression: Compression, files: &[(String, Vec<u8>)]) -> usize {
    fn feed<E: Write>(mut encoder: E, files: &[(String, Vec<u8>)]) -> E {
        for (_, bytes) in files {
            encoder.write_all(bytes).unwrap();
        }
        encoder
    }
    match compression {
        Compression::Gzip { level, threads: 0 } => {
            feed(flate2::write::GzEncoder::new(io::sink(), flate2::Compression::new(level)), files).finish().unwrap();
        }
        Compression::Gzip { level, threads } => {
            let encoder = ParallelGzEncoder::new(io::sink(), flate2::Compression::new(level), threads as usize).unwrap();
            feed(encoder, files).finish().unwrap();
        }
        Compression::Zstd { level, threads } => {
            let mut encoder = zstd::stream::write::Encoder::new(io::sink(), level).unwrap();
            if threads > 0 {
                encoder.multithread(threads).unwrap();
            }
            feed(encoder, files).finish().unwrap();
        }
    }
    files.iter().map(|(_, bytes)| bytes.len()).sum()
}

fn bench(c: &mut Criterion) {
    let files = sample_files(32);
    let spool_dir = tempfile::tempdir().unwrap();
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Bytes(total)).sample_size(10);

    group.bench_function("limit/memcpy", |b| {
        b.iter(|| files.iter().map(|(_, bytes)| criterion::black_box(bytes.to_vec()).len()).sum::<usize>())
    });
    group.bench_function("limit/sha256", |b| b.iter(|| files.iter().map(|(_, bytes)| Sha256::digest(bytes)[0]).fold(0u8, |a, x| a ^ x)));
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
    // same compressor with the same threads, alone on the same bytes.
    let compressions = [
        Compression::Gzip { level: 6, threads: 0 },
        Compression::Gzip { level: 6, threads: 2 },
        Compression::Zstd { level: 3, threads: 0 },
        Compression::Zstd { level: 3, threads: 2 },
    ];
    for compression in compressions {
        let label = match compression {
            Compression::Gzip { threads, .. } | Compression::Zstd { threads, .. } => format!("{}/{threads}-threads", compression.name()),
        };
        group.bench_with_input(BenchmarkId::new("limit/compressor", &label), &compression, |b, compression| {
            b.iter(|| compress_alone(*compression, &files))
        });
        group.bench_with_input(BenchmarkId::new("whole", &label), &compression, |b, compression| b.iter(|| pipeline(&files, *compression, spool_dir.path())));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
