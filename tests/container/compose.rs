//! docker-compose.yml brought up with podman-compose 1.0.3 (Debian 12's), with the
//! TEST-ONLY override tests/container/compose.override.yml: the database, MinIO and mc
//! images swapped for the local stand-ins of tests/container/stand-ins/build.sh, the
//! tool's image the one under test. The stack must take its first backup on its own
//! (archive and manifest sidecar in the bucket) and the tool's container must pass its
//! own healthcheck.
//!
//! What podman-compose 1.0.3 cannot check here (see the override's comments): depends_on
//! conditions (it only orders the starts), `profiles` (it starts every service unless the
//! services are named, so the test names them), stop_grace_period, and the CMD
//! healthchecks: it turns `["CMD", ...]` into `/bin/sh -c ...` (never runnable in the
//! tool's shell-less image, and with mangled quoting for the mongo service's `--eval`
//! script), and without systemd podman schedules no healthcheck at all. The test runs the
//! tool's healthcheck with `podman exec` instead and only reports what
//! `podman healthcheck run` says.
//!
//! Peers: podman, podman-compose, MinIO (`INGEST_TEST_MINIO`, copied into its stand-in),
//! and the network for apt and pip the first time the stand-ins are built.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::common;
use super::engine::Engine;

/// The services the test brings up: everything outside the compose file's profiles
/// (podman-compose 1.0.3 ignores `profiles` and would start drill and exporter too).
const SERVICES: [&str; 5] = ["mongo", "minio", "create-bucket", "sample-data", "ingest-backup"];

/// The host ports docker-compose.yml publishes on 127.0.0.1 for those services (an
/// override cannot change them: podman-compose merges lists by appending).
const PORTS: [u16; 4] = [27017, 9000, 9001, 9090];

/// The compose file's MinIO credentials, bucket and BACKUP_DIR defaults.
const ACCESS_KEY: &str = "ingest-backup";
const SECRET_KEY: &str = "ingest-backup-local";
const BUCKET: &str = "ingest-backups";
const PREFIX: &str = "local/";

/// RUN_ON_START, and if that raced the database, the next minute's cron run.
const FIRST_BACKUP_LIMIT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A podman-compose project: `down -v` (and removal of what 1.0.3's `down` leaves: the
/// project's network) when dropped, also when the test fails.
struct Project {
    name: String,
    image: String,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        Command::new("podman-compose")
            .current_dir(repo())
            .args(["-p", &self.name, "-f", "docker-compose.yml", "-f", "tests/container/compose.override.yml"])
            .args(args)
            .env("INGEST_TEST_IMAGE", &self.image)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run podman-compose {args:?}: {e}"))
    }

    /// The container of `service` (podman-compose labels each with its service).
    fn container(&self, engine: &Engine, service: &str) -> String {
        let names = engine.ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.podman.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
            "--format",
            "{{.Names}}",
        ]);
        let name = names.lines().next().unwrap_or_else(|| panic!("no container of service {service}"));
        name.trim().to_string()
    }

    /// Every service's state and log tail, for a failure message.
    fn diagnostics(&self, engine: &Engine) -> String {
        let mut out =
            engine.ok(&["ps", "-a", "--filter", &format!("label=io.podman.compose.project={}", self.name), "--format", "{{.Names}} {{.Status}}"]);
        for service in SERVICES {
            let name = format!("{}_{service}_1", self.name);
            let log = engine.logs(&name);
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            out.push_str(&format!("\n--- {name}:\n"));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let down = self.compose(&["down", "-v"]);
        if !down.status.success() {
            eprintln!("podman-compose down -v of {} failed: {}", self.name, common::all_output(&down));
        }
        // What `down` did not remove (1.0.3 leaves the network; a failed `down` more).
        let podman = || {
            let mut command = Command::new(std::env::var("INGEST_TEST_CONTAINER_ENGINE").unwrap_or_else(|_| "podman".into()));
            command.stdin(Stdio::null());
            command
        };
        let label = format!("label=io.podman.compose.project={}", self.name);
        if let Ok(out) = podman().args(["ps", "-a", "-q", "--filter", &label]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = podman().args(["rm", "-f", "-t", "0", id]).output();
            }
        }
        if let Ok(out) = podman().args(["volume", "ls", "-q", "--filter", &label]).output() {
            for volume in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = podman().args(["volume", "rm", "-f", volume]).output();
            }
        }
        let network = format!("{}_default", self.name);
        let exists = podman().args(["network", "exists", &network]).status();
        if exists.is_ok_and(|s| s.success()) {
            let _ = podman().args(["network", "rm", "-f", &network]).output();
        }
    }
}

/// Whether podman-compose runs (`version` exits 0).
fn podman_compose_version() -> Option<String> {
    let output = Command::new("podman-compose").arg("version").stdin(Stdio::null()).output().ok()?;
    let text = common::all_output(&output);
    let line = text.lines().find(|l| l.contains("podman-compose") || l.contains("podman-composer"))?;
    output.status.success().then(|| line.trim().to_string())
}

/// Builds (or, with the layer cache, re-checks) the stand-in images.
/// (INGEST_TEST_CONTAINER_ENGINE, inherited, names the engine to build with.)
fn build_stand_ins(minio: &Path) {
    let started = Instant::now();
    let output = Command::new(repo().join("tests/container/stand-ins/build.sh"))
        .env("INGEST_TEST_MINIO", minio)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/container/stand-ins/build.sh");
    assert!(output.status.success(), "tests/container/stand-ins/build.sh failed: {}", common::all_output(&output));
    eprintln!("stand-ins built in {:.1}s", started.elapsed().as_secs_f64());
}

/// The newest backup's name with both its archive and its manifest sidecar in the bucket.
async fn complete_backup(client: &aws_sdk_s3::Client) -> Option<(String, String)> {
    let listed = client.list_objects_v2().bucket(BUCKET).prefix(PREFIX).send().await.ok()?;
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(String::from)).collect();
    keys.iter().filter_map(|k| k.strip_suffix(".manifest.json")).find_map(|base| {
        let archive = keys.iter().find(|k| k.starts_with(&format!("{base}.tar")))?;
        Some((archive.clone(), format!("{base}.manifest.json")))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_stack_takes_first_backup_under_podman_compose() {
    let test = "compose_stack_takes_first_backup_under_podman_compose";
    let Some(engine) = Engine::or_skip(test) else { return };
    if !engine.is_podman() {
        common::skip_or_fail(test, "podman-compose needs podman (INGEST_TEST_CONTAINER_ENGINE is not podman)");
        return;
    }
    let Some(version) = podman_compose_version() else {
        common::skip_or_fail(test, "podman-compose is not installed (apt-get install -y podman-compose)");
        return;
    };
    eprintln!("{version}");
    let Some(minio) = common::minio::binary_or_skip(test) else { return };
    build_stand_ins(&minio);

    for port in PORTS {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "127.0.0.1:{port} is taken: docker-compose.yml publishes it (another compose stack still up?)"
        );
    }

    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let project = Project { name: format!("ibcompose{}x{nanos:x}", std::process::id()), image: engine.image.clone() };
    let started = Instant::now();
    let mut up_args = vec!["up", "-d", "--no-build"];
    up_args.extend(SERVICES);
    let up = project.compose(&up_args);
    let up_log = common::all_output(&up);
    assert!(up.status.success(), "podman-compose up failed: {up_log}");
    for service in SERVICES {
        // podman-compose 1.0.3 exits 0 even when a `podman run` failed.
        let name = format!("{}_{service}_1", project.name);
        let exists = engine.output(&["container", "exists", &name]);
        assert!(exists.status.success(), "service {service} has no container {name}; podman-compose up said: {up_log}");
    }

    // The first backup: archive and manifest in the bucket, through MinIO's published port.
    let client = common::minio::s3_client("http://127.0.0.1:9000", "us-east-1", ACCESS_KEY, SECRET_KEY);
    let (archive, manifest_key) = loop {
        if let Some(found) = complete_backup(&client).await {
            break found;
        }
        if started.elapsed() > FIRST_BACKUP_LIMIT {
            panic!("no complete backup in s3://{BUCKET}/{PREFIX} after {FIRST_BACKUP_LIMIT:?}:\n{}", project.diagnostics(&engine));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("first backup {archive} in the bucket {:.1}s after `podman-compose up`", started.elapsed().as_secs_f64());
    let body = client.get_object().bucket(BUCKET).key(&manifest_key).send().await.unwrap().body.collect().await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&body.into_bytes()).expect("the manifest sidecar is JSON");
    assert!(manifest.is_object(), "manifest {manifest_key}: {manifest}");

    // The one-shots finished: the bucket exists, no sample data asked for.
    for service in ["create-bucket", "sample-data"] {
        let name = project.container(&engine, service);
        let code = engine.wait_exit(&name, Duration::from_secs(60));
        assert_eq!(code, 0, "one-shot {service} exited {code}: {}", engine.logs(&name));
    }

    // The scheduler runs with the compose file's hardening and answers its own healthcheck.
    let tool = project.container(&engine, "ingest-backup");
    let config = engine.ok(&["inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}}", &tool]);
    assert_eq!(config.trim(), format!("65532:65532 true {}", 384 * 1024 * 1024), "the tool's container settings");
    let healthcheck = engine.output(&["exec", &tool, "/usr/local/bin/ingest-backup", "healthcheck"]);
    assert!(
        healthcheck.status.success(),
        "ingest-backup healthcheck in {tool} failed: {}\n{}",
        common::all_output(&healthcheck),
        project.diagnostics(&engine)
    );
    let metrics = reqwest::get("http://127.0.0.1:9090/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("ingest_backup_last_success_timestamp_seconds{operation=\"backup\"}"),
        "the published /metrics show no successful backup:\n{metrics}"
    );

    // Reported, not asserted: the compose healthcheck as podman-compose 1.0.3 set it up
    // (`/bin/sh -c ...`, which the shell-less image cannot run: "unhealthy").
    let test_cmd = engine.ok(&["inspect", "--format", "{{json .Config.Healthcheck.Test}}", &tool]);
    let run = engine.output(&["healthcheck", "run", &tool]);
    eprintln!(
        "podman healthcheck run {tool}: exit {:?}, {:?} (healthcheck as set by podman-compose: {})",
        run.status.code(),
        common::all_output(&run).trim(),
        test_cmd.trim()
    );
}
