//! Store faults on Google Cloud Storage and Azure Blob Storage, as `s3_faults.rs` proves
//! them on S3: each test backs up the same sample data (an archive of three 8 MiB parts)
//! to fake-gcs-server or Azurite through `common/s3_fault_proxy.py` in that store's
//! dialect, which injects one kind of fault into the requests it names:
//!
//! | Kind | GCS (JSON API) | Azure (Blob) |
//! |---|---|---|
//! | create | the resumable session's POST | (none: blocks need no start) |
//! | part | a chunk's PUT to the session | Put Block |
//! | complete | the final chunk's PUT | Put Block List |
//! | sidecar | the manifest's media upload | the manifest's Put Blob |
//!
//! Either the backup completes, its sidecar's per-namespace SHA-256 and content hashes
//! equal a clean run's and `verify` passes; or (the fault outlasting `STORE_MAX_ATTEMPTS`)
//! it exits 1 leaving no object and no open upload. Every test asserts from the proxy's
//! stats that the fault really fired.
//!
//! Peers: SecantusDB (the source), fake-gcs-server, Azurite.

mod common;
#[path = "common/s3_fault_proxy.rs"]
mod s3_fault_proxy;

use std::time::Duration;

use common::azurite::{self, Azurite, ACCOUNT_KEY};
use common::fake_gcs::{self, FakeGcs};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use ingest_backup::store::cloud::azure::{self as azure_store, AzureSettings};
use ingest_backup::store::cloud::gcs::{self as gcs_store, GcsSettings};
use ingest_backup::store::cloud::CloudStore;
use ingest_backup::store::{ObjectStore, PendingUpload};
use s3_fault_proxy::{Dialect, Digests, FaultedRun, S3FaultProxy};

/// Sample data size: with `--level 0` the archive needs three 8 MiB parts.
const SAMPLE_MIB: u64 = 20;

/// The bucket (or container) of every test.
const BUCKET: &str = "faults";

/// The emulator a test runs against.
enum Cloud {
    Gcs(FakeGcs),
    Azure(Azurite),
}

impl Cloud {
    /// Starts `which` ("gcs" or "azure") with the bucket, or says why the test cannot run.
    async fn start(which: &str, test: &str) -> Option<Self> {
        Some(match which {
            "gcs" => {
                let server = FakeGcs::start(fake_gcs::binary_or_skip(test)?);
                server.create_bucket(BUCKET).await;
                Cloud::Gcs(server)
            }
            _ => {
                let server = Azurite::start(azurite::binary_or_skip(test)?);
                server.create_container(BUCKET);
                Cloud::Azure(server)
            }
        })
    }

    fn port(&self) -> u16 {
        match self {
            Cloud::Gcs(server) => server.port,
            Cloud::Azure(server) => server.port,
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Cloud::Gcs(_) => Dialect::Gcs,
            Cloud::Azure(_) => Dialect::Azure,
        }
    }

    /// `--store` for objects under `prefix`.
    fn store(&self, prefix: &str) -> String {
        match self {
            Cloud::Gcs(_) => format!("gs://{BUCKET}/{prefix}"),
            Cloud::Azure(_) => format!("az://{BUCKET}/{prefix}"),
        }
    }

    /// The tool's environment reaching the emulator at `port` (its own, or a proxy's).
    fn env_via(&self, port: u16) -> Vec<(String, String)> {
        match self {
            Cloud::Gcs(_) => vec![("STORAGE_EMULATOR_HOST".into(), format!("http://127.0.0.1:{port}"))],
            Cloud::Azure(_) => vec![(
                "AZURE_STORAGE_CONNECTION_STRING".into(),
                format!(
                    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
                ),
            )],
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.env_via(self.port())
    }

    /// The store under `prefix`, reached directly (not through a proxy).
    async fn open(&self, prefix: &str) -> CloudStore {
        match self {
            Cloud::Gcs(server) => {
                gcs_store::open(BUCKET, prefix, &GcsSettings { emulator_host: Some(server.host()), ..Default::default() }).await.unwrap()
            }
            Cloud::Azure(server) => {
                azure_store::open(BUCKET, prefix, &AzureSettings { connection_string: Some(server.connection_string()), ..AzureSettings::default() })
                    .await
                    .unwrap()
            }
        }
    }

    async fn digests(&self, prefix: &str, name: &str) -> Digests {
        let store = self.open(prefix).await;
        let bytes = ingest_backup::store::object::get_bytes(&store, &format!("{name}.manifest.json")).await.unwrap();
        s3_fault_proxy::sidecar_digests(&bytes)
    }
}

/// A source with the sample data, an emulator, and the digests of a clean backup of it.
struct Bench {
    source: Server,
    cloud: Cloud,
    clean: Digests,
}

/// The outcome of a backup through the proxy.
type Run = FaultedRun;

const STORE: &str = "faulty";

impl Bench {
    async fn start(which: &str, test: &str) -> Option<Self> {
        let cloud = Cloud::start(which, test).await?;
        let source = Server::start();
        let spec = SampleSpec { database: "ingest".into(), target_bytes: SAMPLE_MIB << 20, seed: 5 };
        sample::load(&source.client().await, &spec).await.unwrap();
        let output = backup(&source, &cloud.store("clean"), &cloud.env());
        assert!(output.status.success(), "the clean backup failed: {}", common::all_output(&output));
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(json["archive_bytes"].as_u64().unwrap() > 16 << 20, "the archive needs three parts: {json}");
        let clean = cloud.digests("clean", json["name"].as_str().unwrap()).await;
        assert!(clean.len() >= 5, "the sample data has several namespaces: {clean:?}");
        Some(Self { source, cloud, clean })
    }

    /// Backs up through a proxy with `rules`, the tool's environment plus `extra`.
    fn backup_through(&self, rules: &[&str], extra: &[(&str, &str)]) -> Run {
        let proxy = S3FaultProxy::in_front_of(self.cloud.port(), self.cloud.dialect(), rules);
        let mut env = self.cloud.env_via(proxy.port);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let run = Run::of(&proxy, &format!("{rules:?} {extra:?}"), || backup(&self.source, &self.cloud.store(STORE), &env));
        assert!(!run.output.contains(ACCOUNT_KEY), "the account key was printed");
        run
    }

    async fn open_uploads(&self) -> Vec<PendingUpload> {
        self.cloud.open(STORE).await.list_multipart_uploads("").await.unwrap()
    }

    /// The backup completed, holds what a clean run holds, and `verify` passes.
    async fn assert_survived(&self, run: &Run) {
        assert_eq!(run.code, Some(0), "the backup did not survive the fault ({:?}): {}", run.stats, run.output);
        let name = run.json["name"].as_str().expect("--json names the backup");
        assert_eq!(self.cloud.digests(STORE, name).await, self.clean, "per-namespace hashes differ from the clean run's");
        assert_eq!(self.open_uploads().await, [], "no upload left open");
        let verified =
            common::run_with_env(&["verify", name, "--uri", &self.source.uri(), "--store", &self.cloud.store(STORE), "--json"], &self.cloud.env());
        assert!(verified.status.success(), "verify after the fault: {}", common::all_output(&verified));
        let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
        assert_eq!(report["status"], "passed", "{report}");
    }

    /// The backup failed with exit 1 and left no object of it and no open upload.
    async fn assert_failed_cleanly(&self, run: &Run) {
        assert_eq!(run.code, Some(1), "the backup should fail once the fault outlasts the retries ({:?}): {}", run.stats, run.output);
        let store = self.cloud.open(STORE).await;
        let left: Vec<String> = store.list("").await.unwrap().into_iter().map(|meta| meta.key).filter(|key| !key.starts_with("locks/")).collect();
        assert!(left.is_empty(), "objects of the failed backup remain: {left:?}\n{}", run.output);
        assert_eq!(self.open_uploads().await, [], "the upload was aborted: {}", run.output);
    }
}

/// Runs `backup --json` of `source` into `store`, uncompressed (so the archive needs
/// several parts), with `env`.
fn backup(source: &Server, store: &str, env: &[(String, String)]) -> std::process::Output {
    common::run_with_env(&["backup", "--uri", &source.uri(), "--store", store, "--json", "--level", "0"], env)
}

/// One fault rule, the backup survives it, and the rule fired `times`.
async fn survives(which: &str, test: &str, rule: &str, times: u64, extra: &[(&str, &str)]) -> Option<Run> {
    let bench = Bench::start(which, test).await?;
    let run = bench.backup_through(&[rule], extra);
    let fired = rule.split(':').take(2).collect::<Vec<_>>().join(":");
    assert_eq!(run.stats.fired(&fired), times, "{rule} fired {:?} times ({:?}): {}", run.stats.faults, run.stats, run.output);
    bench.assert_survived(&run).await;
    Some(run)
}

/// The faults survived and the faults that fail cleanly, for the store `$which`.
macro_rules! fault_tests {
    ($which:literal) => {
        use super::*;

        fn test(name: &str) -> String {
            format!("{}::{name}", $which)
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_part_cut_mid_body_is_survived() {
            survives($which, &test("a_part_cut_mid_body_is_survived"), "part:cut:1", 1, &[]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn two_part_503_slowdowns_are_survived() {
            survives($which, &test("two_part_503_slowdowns_are_survived"), "part:slowdown:2", 2, &[]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_part_500_internal_error_is_survived() {
            survives($which, &test("a_part_500_internal_error_is_survived"), "part:internal:1", 1, &[]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_complete_503_slowdown_is_survived() {
            survives($which, &test("a_complete_503_slowdown_is_survived"), "complete:slowdown:1", 1, &[]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_sidecar_upload_cut_mid_body_is_survived() {
            survives($which, &test("a_sidecar_upload_cut_mid_body_is_survived"), "sidecar:cut:1", 1, &[]).await;
        }

        /// The sidecar written, its answer lost: sent again, the conditional create
        /// finds the object, and the bytes there are this run's own.
        #[tokio::test(flavor = "multi_thread")]
        async fn a_sidecar_upload_whose_answer_is_lost_is_survived() {
            survives($which, &test("a_sidecar_upload_whose_answer_is_lost_is_survived"), "sidecar:lost:1", 1, &[]).await;
        }

        /// A part the server takes and never answers: `STORE_ATTEMPT_TIMEOUT` (here 3 s;
        /// 300 s by default) ends the attempt and the part is sent again.
        #[tokio::test(flavor = "multi_thread")]
        async fn a_stalled_part_beyond_the_attempt_timeout_is_survived() {
            let name = test("a_stalled_part_beyond_the_attempt_timeout_is_survived");
            let Some(run) = survives($which, &name, "part:stall:1", 1, &[("STORE_ATTEMPT_TIMEOUT", "3s")]).await else { return };
            assert!(run.elapsed >= Duration::from_secs(3), "the stalled attempt cannot end before its timeout: {:?}", run.elapsed);
            assert!(run.elapsed < Duration::from_secs(90), "the stall was not cut at the attempt timeout: {:?}", run.elapsed);
        }

        /// Every part answered 503 SlowDown, for ever: after `STORE_MAX_ATTEMPTS` attempts
        /// the backup fails with exit 1, aborts its upload and leaves nothing.
        #[tokio::test(flavor = "multi_thread")]
        async fn every_part_503_for_ever_fails_cleanly() {
            let Some(bench) = Bench::start($which, &test("every_part_503_for_ever_fails_cleanly")).await else { return };
            let run = bench.backup_through(&["part:slowdown:0"], &[("STORE_MAX_ATTEMPTS", "3")]);
            assert!(run.stats.fired("part:slowdown") >= 3, "a part was tried 3 times: {:?}\n{}", run.stats, run.output);
            assert!(run.stats.fired("part:slowdown") <= 3 * 4, "STORE_MAX_ATTEMPTS bounds the attempts: {:?}", run.stats);
            bench.assert_failed_cleanly(&run).await;
        }

        /// A stalled part with one attempt allowed: the attempt timeout turns the stall
        /// into a failure (exit 1) instead of a hang, and the upload is aborted.
        #[tokio::test(flavor = "multi_thread")]
        async fn a_stalled_part_with_no_retry_left_fails_cleanly() {
            let Some(bench) = Bench::start($which, &test("a_stalled_part_with_no_retry_left_fails_cleanly")).await else { return };
            let run = bench.backup_through(&["part:stall:0"], &[("STORE_ATTEMPT_TIMEOUT", "2s"), ("STORE_MAX_ATTEMPTS", "1")]);
            assert!(run.stats.fired("part:stall") >= 1, "{:?}", run.stats);
            assert!(run.elapsed < Duration::from_secs(60), "the stall was not bounded: {:?}", run.elapsed);
            assert!(run.output.contains("timed out") || run.output.contains("timeout"), "the error says the request timed out: {}", run.output);
            bench.assert_failed_cleanly(&run).await;
        }
    };
}

mod gcs {
    fault_tests!("gcs");

    /// Starting the resumable session answered 503: it is asked for again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_session_start_503_slowdown_is_survived() {
        survives("gcs", &test("a_session_start_503_slowdown_is_survived"), "create:slowdown:1", 1, &[]).await;
    }
}

mod azure {
    fault_tests!("azure");
}

/// Malformed `STORE_*` variables are usage errors (exit 2) naming the variable.
#[test]
fn malformed_store_timeout_and_retry_variables_are_usage_errors() {
    for (name, value, store) in [
        ("STORE_ATTEMPT_TIMEOUT", "soon", "gs://bucket/x"),
        ("STORE_MAX_ATTEMPTS", "0", "az://container/x"),
        ("STORE_CONNECT_TIMEOUT", "-1", "gs://bucket/x"),
    ] {
        let env = vec![(name.to_string(), value.to_string()), ("STORAGE_EMULATOR_HOST".to_string(), "http://127.0.0.1:9".to_string())];
        let output = common::run_with_env(&["list", "--store", store], &env);
        let text = common::all_output(&output);
        assert_eq!(output.status.code(), Some(2), "{name}={value}: {text}");
        assert!(text.contains(name), "{text}");
    }
}
