//! S3 faults a backup survives, or fails cleanly after: each test backs up the same
//! sample data (several 5 MiB parts) to MinIO through `common/s3_fault_proxy.py`, which
//! injects one kind of fault (a part cut mid-body, 503 SlowDown, 500 InternalError, a
//! request never answered, ...) into the requests it names. Either the backup completes
//! and its sidecar's per-namespace SHA-256 and content hashes equal a clean run's and
//! `verify` passes, or (the fault outlasting the retries) it exits 1 leaving no object
//! and no open multipart upload. Every test asserts from the proxy's stats that the
//! fault really fired, so a proxy that stopped matching cannot make it pass.
//!
//! Peers: SecantusDB (the source), MinIO.

mod common;
#[path = "common/s3_fault_proxy.rs"]
mod s3_fault_proxy;

use std::time::Duration;

use common::minio::{self, Minio, BUCKET};
use common::s3_server::S3Server;
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use s3_fault_proxy::{Digests, FaultedRun, S3FaultProxy};

/// Sample data size: with `--level 0` the archive is about this big, three parts of 5 MiB.
const SAMPLE_MIB: u64 = 12;

/// A source with the sample data, a MinIO, and the digests of a clean backup of it.
struct Bench {
    source: Server,
    minio: Minio,
    clean: Digests,
}

/// The outcome of a backup through the proxy.
type Run = FaultedRun;

const STORE: &str = "faulty";

impl Bench {
    async fn start(test: &str) -> Option<Self> {
        let binary = minio::binary_or_skip(test)?;
        let source = Server::start();
        let spec = SampleSpec { database: "ingest".into(), target_bytes: SAMPLE_MIB << 20, seed: 5 };
        sample::load(&source.client().await, &spec).await.unwrap();
        let minio = Minio::start(binary).await;
        let output = backup(&source, "clean", &minio.env());
        assert!(output.status.success(), "the clean backup failed: {}", common::all_output(&output));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let clean = sidecar_digests(&minio, "clean", json["name"].as_str().unwrap()).await;
        assert!(clean.len() >= 5, "the sample data has several namespaces: {clean:?}");
        Some(Self { source, minio, clean })
    }

    /// Backs up through a proxy with `rules`, the tool's environment plus `extra`.
    fn backup_through(&self, rules: &[&str], extra: &[(&str, &str)]) -> (S3FaultProxy, Run) {
        let proxy = S3FaultProxy::start(&self.minio, rules);
        let mut env = proxy.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let run = Run::of(&proxy, &format!("{rules:?} {extra:?}"), || backup(&self.source, STORE, &env));
        assert!(!run.output.contains(minio::SECRET_KEY), "the secret key was printed");
        (proxy, run)
    }

    /// The backup completed, holds what a clean run holds, and `verify` passes.
    async fn assert_survived(&self, run: &Run) {
        assert_eq!(run.code, Some(0), "the backup did not survive the fault ({:?}): {}", run.stats, run.output);
        let name = run.json["name"].as_str().expect("--json names the backup");
        let parts = self.parts_of(name).await;
        assert!(parts >= 3, "the archive went up in {parts} parts; the tests need several");
        assert_eq!(sidecar_digests(&self.minio, STORE, name).await, self.clean, "per-namespace hashes differ from the clean run's");
        assert_eq!(self.minio.open_uploads().await, 0, "no multipart upload left open");
        let store = format!("s3://{BUCKET}/{STORE}");
        let verified = common::run_with_env(&["verify", name, "--uri", &self.source.uri(), "--store", &store, "--json"], &self.minio.env());
        assert!(verified.status.success(), "verify after the fault: {}", common::all_output(&verified));
        let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
        assert_eq!(report["status"], "passed", "{report}");
    }

    /// The backup failed with exit 1 and left no object of it and no open upload.
    async fn assert_failed_cleanly(&self, run: &Run) {
        assert_eq!(run.code, Some(1), "the backup should fail once the fault outlasts the retries ({:?}): {}", run.stats, run.output);
        let left: Vec<String> =
            self.minio.keys().await.into_iter().filter(|key| key.starts_with(&format!("{STORE}/")) && !key.contains("/locks/")).collect();
        assert!(left.is_empty(), "objects of the failed backup remain: {left:?}\n{}", run.output);
        assert_eq!(self.minio.open_uploads().await, 0, "the multipart upload was aborted: {}", run.output);
    }

    /// Parts of the archive `name` (from its multipart ETag).
    async fn parts_of(&self, name: &str) -> u32 {
        let key = format!("{STORE}/{name}.tar.gz");
        let head = self.minio.client().head_object().bucket(BUCKET).key(&key).send().await.unwrap();
        let etag = head.e_tag().unwrap().trim_matches('"').to_string();
        etag.rsplit_once('-').map_or(1, |(_, parts)| parts.parse().unwrap())
    }
}

/// Runs `backup --json` of `source` into `s3://BUCKET/<prefix>`, uncompressed (so the
/// archive needs several 5 MiB parts), with `env`.
fn backup(source: &Server, prefix: &str, env: &[(String, String)]) -> std::process::Output {
    let (uri, store) = (source.uri(), format!("s3://{BUCKET}/{prefix}"));
    common::run_with_env(&["backup", "--uri", &uri, "--store", &store, "--json", "--level", "0", "--part-size-mb", "5"], env)
}

async fn sidecar_digests(minio: &Minio, prefix: &str, name: &str) -> Digests {
    let object = minio.client().get_object().bucket(BUCKET).key(format!("{prefix}/{name}.manifest.json")).send().await.unwrap();
    s3_fault_proxy::sidecar_digests(&object.body.collect().await.unwrap().into_bytes())
}

mod survived {
    use super::*;

    /// One fault rule, the backup survives it, and the rule fired `times`.
    async fn survives(test: &str, rule: &str, times: u64, extra: &[(&str, &str)]) -> Option<Run> {
        let bench = Bench::start(test).await?;
        let (_proxy, run) = bench.backup_through(&[rule], extra);
        let fired = rule.split(':').take(2).collect::<Vec<_>>().join(":");
        assert_eq!(run.stats.fired(&fired), times, "{rule} fired {:?} times ({:?}): {}", run.stats.faults, run.stats, run.output);
        bench.assert_survived(&run).await;
        Some(run)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_part_cut_mid_body() {
        survives("survived::a_part_cut_mid_body", "part:cut:1", 1, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_part_503_slowdowns() {
        survives("survived::two_part_503_slowdowns", "part:slowdown:2", 2, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_part_500_internal_error() {
        survives("survived::a_part_500_internal_error", "part:internal:1", 1, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_create_503_slowdown() {
        survives("survived::a_create_503_slowdown", "create:slowdown:1", 1, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_complete_503_slowdown() {
        survives("survived::a_complete_503_slowdown", "complete:slowdown:1", 1, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_complete_500_internal_error() {
        survives("survived::a_complete_500_internal_error", "complete:internal:1", 1, &[]).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sidecar_put_cut_mid_body() {
        survives("survived::a_sidecar_put_cut_mid_body", "sidecar:cut:1", 1, &[]).await;
    }

    /// The sidecar written, its answer lost: the SDK sends it again, the conditional
    /// create finds the object, and the bytes there are this run's own.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_sidecar_put_whose_answer_is_lost() {
        survives("survived::a_sidecar_put_whose_answer_is_lost", "sidecar:lost:1", 1, &[]).await;
    }

    /// A part the server takes and never answers: the attempt timeout (here
    /// `S3_ATTEMPT_TIMEOUT=3s`; 300 s by default) ends the attempt and the part is sent
    /// again. Regression: a stalled request was bounded only by that 300 s default,
    /// with no way to lower it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_stalled_part_beyond_the_attempt_timeout() {
        let Some(run) = survives("survived::a_stalled_part_beyond_the_attempt_timeout", "part:stall:1", 1, &[("S3_ATTEMPT_TIMEOUT", "3s")]).await
        else {
            return;
        };
        assert!(run.elapsed >= Duration::from_secs(3), "the stalled attempt cannot end before its timeout: {:?}", run.elapsed);
        assert!(run.elapsed < Duration::from_secs(60), "the stall was not cut at the attempt timeout: {:?}", run.elapsed);
    }
}

mod failed_cleanly {
    use super::*;

    /// Every part answered 503 SlowDown, for ever: after `S3_MAX_ATTEMPTS` attempts per
    /// part the backup fails with exit 1, aborts its upload and leaves nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_part_503_slowdown_for_ever() {
        let Some(bench) = Bench::start("failed_cleanly::every_part_503_slowdown_for_ever").await else { return };
        let (_proxy, run) = bench.backup_through(&["part:slowdown:0"], &[("S3_MAX_ATTEMPTS", "3")]);
        assert!(run.stats.fired("part:slowdown") >= 3, "each part was tried 3 times: {:?}\n{}", run.stats, run.output);
        assert!(run.output.contains("SlowDown"), "the error names the server's answer: {}", run.output);
        bench.assert_failed_cleanly(&run).await;
    }

    /// Every request cut, for ever: the network's fault, named as such (exit 1,
    /// "cannot reach the S3 endpoint"), never as missing credentials; nothing left.
    #[tokio::test(flavor = "multi_thread")]
    async fn every_request_cut_for_ever() {
        let Some(bench) = Bench::start("failed_cleanly::every_request_cut_for_ever").await else { return };
        let (_proxy, run) = bench.backup_through(&["any:cut:0"], &[("S3_MAX_ATTEMPTS", "2")]);
        assert!(run.stats.fired("any:cut") >= 2, "{:?}", run.stats);
        assert!(run.output.contains("cannot reach the S3 endpoint") && !run.output.contains("credentials"), "{}", run.output);
        bench.assert_failed_cleanly(&run).await;
    }

    /// A stalled part with one attempt allowed: the attempt timeout turns the stall
    /// into a failure (exit 1) instead of a hang, and the upload is aborted.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_stalled_part_with_no_retry_left() {
        let Some(bench) = Bench::start("failed_cleanly::a_stalled_part_with_no_retry_left").await else { return };
        let (_proxy, run) = bench.backup_through(&["part:stall:0"], &[("S3_ATTEMPT_TIMEOUT", "2s"), ("S3_MAX_ATTEMPTS", "1")]);
        assert!(run.stats.fired("part:stall") >= 1, "{:?}", run.stats);
        assert!(run.elapsed < Duration::from_secs(60), "the stall was not bounded: {:?}", run.elapsed);
        assert!(run.output.contains("timed out"), "the error says the request timed out: {}", run.output);
        bench.assert_failed_cleanly(&run).await;
    }
}

/// Malformed timeout and retry variables are usage errors (exit 2) naming the variable.
#[test]
fn malformed_timeout_and_retry_variables_are_usage_errors() {
    for (name, value) in [("S3_ATTEMPT_TIMEOUT", "soon"), ("S3_MAX_ATTEMPTS", "0"), ("S3_RETRY_MODE", "legacy")] {
        let env = vec![(name.to_string(), value.to_string()), ("S3_ENDPOINT".to_string(), "http://127.0.0.1:9".to_string())];
        let output = common::run_with_env(&["list", "--store", &format!("s3://{BUCKET}/x")], &env);
        let text = common::all_output(&output);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {text}");
        assert!(text.contains(name), "{text}");
    }
}
