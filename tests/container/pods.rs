//! The Helm chart's pods played with `podman kube play`: the chart rendered for a test
//! stage (SecantusDB and MinIO on the host's loopback, the image under test), each
//! CronJob's pod template (backup, verify, pitr, prune, drill), the exporter
//! Deployment's and the restore Job's turned into a Pod, played, and its effect checked
//! with real clients: objects in MinIO, the restored documents, the exporter's metrics.
//!
//! The adaptations are [`ADAPTATIONS`], and nothing else: everything else of the pod
//! template (arguments, environment, secretKeyRefs, security context, read-only root,
//! resources, volumes) is played as rendered.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bson::doc;
use serde_json::{json, Value};

use super::common::minio::{Minio, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::common::{self, Server};
use super::engine::Engine;

/// What a pod template needs changed before podman plays it (podman 4.3 limits), as the
/// README's "what is tested and what is not" lists them.
pub const ADAPTATIONS: &[&str] = &[
    "the CronJob's (or Job's, or Deployment's) pod template becomes a Pod: podman plays Pods, not controllers",
    "hostNetwork: true, since SecantusDB and MinIO listen on the host's loopback",
    "the chart's Secrets are created with `podman secret create` from their base64 data and left out of the played file: podman 4.3 cannot read a played Secret back",
    "restartPolicy: Never for the exporter's pod, which the test stops itself",
    "the exporter container's ports list is dropped: podman refuses port mappings with hostNetwork, where the port is the host's anyway",
];

/// What podman ignores in the played pods, so these tests do not check it.
pub const NOT_CHECKED: &[&str] = &[
    "serviceAccountName and automountServiceAccountToken",
    "fsGroup (the volumes are writable as the image's user anyway)",
    "emptyDir sizeLimit and ephemeral-storage",
    "terminationGracePeriodSeconds (podman stops a container after 10 s)",
    "the CronJob schedule, concurrencyPolicy, podFailurePolicy, backoffLimit and deadlines (the controllers')",
];

/// The chart rendered with `values` (`--set` pairs), as JSON objects.
fn render(helm: &Path, python: &Path, values: &[String]) -> Vec<Value> {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/ingest-backup");
    let mut command = Command::new(helm);
    command.args(["template", "ingest-backup"]).arg(chart).args(["--kube-version", "1.30.0"]);
    for value in values {
        command.args(["--set", value]);
    }
    let rendered = command.output().unwrap();
    assert!(rendered.status.success(), "helm template: {}", common::all_output(&rendered));
    let mut child = Command::new(python)
        .args(["-c", "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &rendered.stdout).unwrap();
    let output = child.wait_with_output().unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The Pod podman plays for a controller's pod template, adapted as [`ADAPTATIONS`] says.
fn pod_of(controller: &Value, pod_name: &str) -> Value {
    let template = match controller["kind"].as_str().unwrap() {
        "CronJob" => &controller["spec"]["jobTemplate"]["spec"]["template"],
        _ => &controller["spec"]["template"],
    };
    let mut spec = template["spec"].clone();
    spec["hostNetwork"] = json!(true);
    spec["restartPolicy"] = json!("Never");
    for container in spec["containers"].as_array_mut().unwrap() {
        container.as_object_mut().unwrap().remove("ports");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": pod_name, "labels": template["metadata"]["labels"] },
        "spec": spec,
    })
}

/// A rendered Secret created as a podman secret (its base64 data as a JSON object).
fn create_secret(engine: &Engine, dir: &Path, name: &str, data: &Value) {
    let file = dir.join(format!("{name}.secret.json"));
    std::fs::write(&file, serde_json::to_vec(data).unwrap()).unwrap();
    let _ = engine.output(&["secret", "rm", name]);
    engine.ok(&["secret", "create", name, file.to_str().unwrap()]);
}

/// A played pod, removed (with its containers) when dropped.
struct PlayedPod<'a> {
    engine: &'a Engine,
    name: String,
    container: String,
}

impl PlayedPod<'_> {
    /// Waits for the pod's container to exit; its status, its log and the pod's run time.
    fn finish(&self, started: Instant) -> (i32, String) {
        let status = self.engine.wait_exit(&self.container, Duration::from_secs(300));
        let logs = self.engine.logs(&self.container);
        eprintln!("pod {}: exit {status} in {:.1} s", self.name, started.elapsed().as_secs_f64());
        assert!(!logs.contains(SECRET_KEY), "pod {} logged the S3 secret", self.name);
        (status, logs)
    }
}

impl Drop for PlayedPod<'_> {
    fn drop(&mut self) {
        let _ = self.engine.output(&["pod", "rm", "-f", "-t", "0", &self.name]);
    }
}

/// Plays `pod` with `podman kube play`.
fn play<'a>(engine: &'a Engine, dir: &Path, pod: &Value) -> PlayedPod<'a> {
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let container = format!("{name}-{}", pod["spec"]["containers"][0]["name"].as_str().unwrap());
    let _ = engine.output(&["pod", "rm", "-f", "-t", "0", &name]);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(pod).unwrap()).unwrap();
    let played = PlayedPod { engine, name, container };
    engine.ok(&["kube", "play", file.to_str().unwrap()]);
    played
}

/// Plays the pod of `controller` and waits for it to exit 0; its log.
fn run_to_success(engine: &Engine, dir: &Path, controller: &Value, pod_name: &str) -> String {
    let started = Instant::now();
    let played = play(engine, dir, &pod_of(controller, pod_name));
    let (status, logs) = played.finish(started);
    assert_eq!(status, 0, "pod {pod_name} failed: {logs}");
    logs
}

/// Every key in the test bucket.
async fn keys(minio: &Minio) -> Vec<String> {
    let listed = minio.client().list_objects_v2().bucket(BUCKET).send().await.unwrap();
    listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
}

/// The names of the complete backups (archive and sidecar) in the bucket, oldest first.
async fn complete_backups(minio: &Minio) -> Vec<String> {
    let keys = keys(minio).await;
    let mut names: Vec<String> = keys
        .iter()
        .filter_map(|k| k.strip_suffix(".manifest.json"))
        .filter(|name| !name.contains('/') && keys.iter().any(|k| k == &format!("{name}.tar.gz")))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn the_charts_pods_back_up_verify_slice_prune_drill_export_and_restore_under_kube_play() {
    let test = "the_charts_pods_back_up_verify_slice_prune_drill_export_and_restore_under_kube_play";
    let Some(engine) = Engine::or_skip(test) else { return };
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for listed in ADAPTATIONS.iter().chain(NOT_CHECKED) {
        assert!(readme.contains(listed), "README.md lists what the pods test adapts or cannot check: {listed}");
    }
    if !engine.is_podman() {
        common::skip_or_fail(test, "podman kube play needs podman (INGEST_TEST_CONTAINER_ENGINE is another engine)");
        return;
    }
    let Some(helm) = common::peer_binary_or_skip("INGEST_TEST_HELM", test, "helm is not installed (scripts/test-peers.sh install deploy)") else {
        return;
    };
    let Some(python) = common::peer_binary_or_skip(
        "INGEST_TEST_DEPLOY_PYTHON",
        test,
        "the deployment checkers are not installed (scripts/test-peers.sh install deploy)",
    ) else {
        return;
    };
    let Some(minio_binary) = common::minio::binary_or_skip(test) else { return };
    let minio = Minio::start(minio_binary).await;
    let source = Server::start();
    let scratch = Server::start();
    let target = Server::start();
    let source_client = source.client().await;
    common::dataset::load(&source_client, 2).await;
    let exporter_port = common::free_port();
    let values: Vec<String> = [
        "image.repository=localhost/ingest-backup".to_string(),
        format!("image.tag={}", engine.image.rsplit_once(':').map_or("latest", |(_, tag)| tag)),
        "image.pullPolicy=Never".to_string(),
        format!("mongo.uri={}", source.uri()),
        format!("s3.bucket={BUCKET}"),
        format!("s3.endpoint={}", minio.endpoint()),
        "s3.region=us-east-1".to_string(),
        format!("secrets.awsAccessKeyId={ACCESS_KEY}"),
        format!("secrets.awsSecretAccessKey={SECRET_KEY}"),
        "pitr.enabled=true".to_string(),
        "retention.enabled=true".to_string(),
        "retention.keepLast=1".to_string(),
        "drill.enabled=true".to_string(),
        format!("drill.scratchUri.value={}", scratch.uri()),
        "exporter.enabled=true".to_string(),
        format!("exporter.port={exporter_port}"),
        "restore.enabled=true".to_string(),
        "restore.backup=latest".to_string(),
    ]
    .to_vec();
    let image_base = engine.image.rsplit_once(':').map_or(engine.image.as_str(), |(base, _)| base);
    assert_eq!(image_base, "localhost/ingest-backup", "the pods play the image under test");
    let docs = render(&helm, &python, &values);
    let dir = tempfile::tempdir().unwrap();

    // The chart's Secret, and the restore target's (which the operator creates).
    let secret = object(&docs, "Secret", "ingest-backup");
    create_secret(&engine, dir.path(), "ingest-backup", &secret["data"]);
    let target_uri = base64::engine::general_purpose::STANDARD.encode(target.uri());
    create_secret(&engine, dir.path(), "ingest-backup-restore-target", &json!({ "RESTORE_URI": target_uri }));
    let _secrets = RemovedSecrets(&engine);

    // backup: an archive and its sidecar in the bucket.
    let backup = object(&docs, "CronJob", "ingest-backup");
    run_to_success(&engine, dir.path(), backup, "backup");
    let first = complete_backups(&minio).await;
    assert_eq!(first.len(), 1, "one complete backup after the backup pod: {:?}", keys(&minio).await);
    let first = first[0].clone();

    // verify: the verification record.
    let verify = object(&docs, "CronJob", "ingest-backup-verify");
    run_to_success(&engine, dir.path(), verify, "verify");
    assert!(keys(&minio).await.contains(&format!("{first}.verify.json")), "the verify pod recorded its result");

    // pitr: a slice of the writes made after the backup.
    let later = source_client.database("shop").collection::<bson::Document>("after_backup");
    later.insert_many((0..20).map(|n| doc! { "_id": n })).await.unwrap();
    let pitr = object(&docs, "CronJob", "ingest-backup-pitr");
    run_to_success(&engine, dir.path(), pitr, "pitr");
    assert!(keys(&minio).await.iter().any(|k| k.starts_with("oplog/")), "the pitr pod stored a slice: {:?}", keys(&minio).await);

    // drill: the verified backup restored into the scratch server, recorded, dropped.
    let drill = object(&docs, "CronJob", "ingest-backup-drill");
    run_to_success(&engine, dir.path(), drill, "drill");
    assert!(keys(&minio).await.contains(&format!("{first}.drill.json")), "the drill pod recorded its result");
    let left: Vec<String> = scratch.client().await.list_database_names().await.unwrap();
    assert!(!left.iter().any(|d| d == "ingest"), "the drill dropped what it restored: {left:?}");

    // restore (latest) into the target: every namespace as in the source.
    let restore = docs.iter().find(|d| d["kind"] == "Job").expect("the restore Job is rendered");
    run_to_success(&engine, dir.path(), restore, "restore");
    let manifest_object = minio.client().get_object().bucket(BUCKET).key(format!("{first}.manifest.json")).send().await.unwrap();
    let manifest: Value = serde_json::from_slice(&manifest_object.body.collect().await.unwrap().into_bytes()).unwrap();
    let target_client = target.client().await;
    let compared = common::assert_restored_identical(&source_client, &target_client, &manifest, |db| db.to_string()).await;
    assert!(compared >= 6, "the restore pod restored {compared} collections");

    // exporter: /metrics served from the store.
    let exporter = object(&docs, "Deployment", "ingest-backup-exporter");
    let started = Instant::now();
    let played = play(&engine, dir.path(), &pod_of(exporter, "exporter"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let metrics = loop {
        if let Some((200, body)) = super::engine::http_get(exporter_port, "/metrics") {
            if body.contains("ingest_backup_exporter_store_up 1") {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "the exporter pod never served store_up 1: {}", engine.logs(&played.container));
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("pod exporter: serving in {:.1} s", started.elapsed().as_secs_f64());
    assert!(metrics.contains("ingest_backup_drill_last_passed 1"), "the exporter's figures: {metrics}");
    drop(played);

    // A second backup, verified; then prune keeps the last one and removes the first.
    run_to_success(&engine, dir.path(), backup, "backup-2");
    run_to_success(&engine, dir.path(), verify, "verify-2");
    let both = complete_backups(&minio).await;
    assert_eq!(both.len(), 2, "two complete backups: {both:?}");
    let prune = object(&docs, "CronJob", "ingest-backup-prune");
    run_to_success(&engine, dir.path(), prune, "prune");
    let kept = complete_backups(&minio).await;
    assert_eq!(kept, vec![both[1].clone()], "prune kept the last backup only");
    assert!(!keys(&minio).await.iter().any(|k| k.starts_with(&format!("{first}."))), "every object of {first} was pruned");
}

/// Removes the podman secrets the test created.
struct RemovedSecrets<'a>(&'a Engine);

impl Drop for RemovedSecrets<'_> {
    fn drop(&mut self) {
        for name in ["ingest-backup", "ingest-backup-restore-target"] {
            let _ = self.0.output(&["secret", "rm", name]);
        }
    }
}
