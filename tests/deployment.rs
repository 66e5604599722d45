//! The deployment files: the Helm chart, `helm/setup.sh`, `helm/reschedule.sh`, the
//! Dockerfile and `docker-compose.yml`. There is no cluster and no Docker daemon on these
//! machines, so these tests prove what can be proved without one, with the real tools:
//!
//! - `helm lint` and `helm template` for every `helm/config/<stage>.yaml`; every rendered
//!   object validated strictly against the Kubernetes API schemas of 1.30 and 1.37
//!   (kubernetes-validate, offline); the CronJobs' names, schedules, security settings,
//!   and that secret values only ever land in the Secret; the opt-in drill CronJob (its
//!   scratch server only ever from a Secret) and the exporter's Deployment and Service
//!   (one port, named alike everywhere); what the alert rules do is tests/alert_rules.rs;
//! - the scripts are shellcheck-clean, refuse each bad input with exit 2 before running
//!   anything, and on good input run exactly the expected helm/kubectl commands (stubs
//!   record them), never showing a secret on a command line or in their output;
//! - the Dockerfile passes hadolint; docker-compose.yml passes the compose-spec schema.
//!
//! One test also runs the binary with exactly the environment and arguments the
//! chart gives the backup container, against SecantusDB and MinIO.
//!
//! Tools come from `scripts/test-peers.sh env` (`INGEST_TEST_HELM`, `INGEST_TEST_HADOLINT`,
//! ...), else from its cache. A missing tool fails the test when `CI=true` and skips it
//! (printing `SKIPPED: ...`) otherwise.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::s3_server::S3Server;
use serde_json::Value;

// ---------------------------------------------------------------------------------
// Tools

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    std::env::var("INGEST_BACKUP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/ingest-backup"))
}

/// A checker named by `var`, else found at `fallback` (in the peer cache or on PATH).
/// `None` (after printing SKIPPED) outside CI; a failure in CI.
fn tool(var: &str, fallback: Option<PathBuf>, test: &str) -> Option<PathBuf> {
    let found = std::env::var(var).ok().map(PathBuf::from).filter(|p| p.is_file()).or(fallback.filter(|p| p.is_file()));
    if found.is_none() {
        common::skip_or_fail(test, &format!("{var} is not set and the tool is not in the peer cache: run scripts/test-peers.sh install deploy"));
    }
    found
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

fn helm(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_HELM", Some(cache().join("helm/v3.22.0/helm")), test)
}

fn deploy_venv(bin: &str) -> Option<PathBuf> {
    Some(cache().join("deploy-venv/bin").join(bin))
}

fn python(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_DEPLOY_PYTHON", deploy_venv("python"), test)
}

fn kube_validate(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_KUBE_VALIDATE", deploy_venv("kubernetes-validate"), test)
}

fn hadolint(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_HADOLINT", deploy_venv("hadolint"), test)
}

fn compose_check(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_COMPOSE_CHECK", deploy_venv("check-jsonschema"), test)
}

fn shellcheck(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_SHELLCHECK", on_path("shellcheck"), test)
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Parses YAML (one or more documents) into JSON values with the checkers' Python (PyYAML).
fn yaml_to_json(python: &Path, yaml: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .args(["-c", "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "YAML did not parse: {}", text(&output));
    match serde_json::from_slice(&output.stdout).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("{other}"),
    }
}

fn chart() -> PathBuf {
    root().join("helm/ingest-backup")
}

/// Every stage file in helm/config, by name.
fn stages() -> Vec<(String, PathBuf)> {
    let mut stages: Vec<_> = std::fs::read_dir(root().join("helm/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    stages.sort();
    let names: Vec<_> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["dev", "integration", "prod", "staging"], "the stages of issue 5");
    stages
}

/// The image every render uses unless a test overrides it (the stage files leave
/// `image.repository` for the operator to fill in).
const IMAGE: &str = "registry.example.com/ingest-backup";

/// `helm template ingest-backup <chart> --set image.repository=IMAGE <args>` (a later
/// `--set image.repository=...` in `args` overrides it).
fn template(helm: &Path, args: &[&str]) -> Output {
    run(Command::new(helm).args(["template", "ingest-backup"]).arg(chart()).args(["--set", &format!("image.repository={IMAGE}")]).args(args))
}

fn render(helm: &Path, python: &Path, args: &[&str]) -> (String, Vec<Value>) {
    let output = template(helm, args);
    assert!(output.status.success(), "helm template {args:?} failed: {}", text(&output));
    let yaml = String::from_utf8(output.stdout).unwrap();
    // Regression: an empty include piped to nindent left a line of spaces in the env list.
    let blank: Vec<(usize, &str)> = yaml.lines().enumerate().filter(|(_, l)| !l.is_empty() && l.trim().is_empty()).collect();
    assert!(blank.is_empty(), "helm template {args:?} rendered whitespace-only lines at {:?}", blank.iter().map(|(n, _)| n + 1).collect::<Vec<_>>());
    let docs = yaml_to_json(python, &yaml);
    (yaml, docs)
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn container(cronjob: &Value) -> &Value {
    &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
}

fn env_of(cronjob: &Value) -> BTreeMap<String, Value> {
    container(cronjob)["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect()
}

fn temp_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// The rendered objects of the Kubernetes API itself: the custom resources of the
/// Prometheus Operator (PrometheusRule, ServiceMonitor), which its schemas do not know, left out.
fn builtin_objects(yaml: &[u8]) -> String {
    let yaml = String::from_utf8_lossy(yaml);
    yaml.split("\n---").filter(|d| !d.contains("apiVersion: monitoring.coreos.com/")).collect::<Vec<_>>().join("\n---")
}

// Dummy secrets, distinctive enough that finding one anywhere is a leak.
const KEY_ID: &str = "AKIADUMMYKEYID000042";
const SECRET_KEY: &str = "dUmMySeCrEtAcCeSsKeY/0123456789+abcdefgh";
const WEBHOOK: &str = "https://hooks.slack.com/services/TDUMMY000/BDUMMY000/dummyWebhookSecret42";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ingest-backup";
const HEARTBEAT: &str = "https://hc-ping.com/dummyHeartbeatSecret42/{operation}";
const SCRATCH_URI: &str = "mongodb://drill:dummyScratchSecret42@mongo-scratch:27017";

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------
// Helm chart

#[test]
fn helm_lint_passes_for_every_stage() {
    let Some(helm) = helm("helm_lint_passes_for_every_stage") else { return };
    for (stage, file) in stages() {
        let output = run(Command::new(&helm)
            .arg("lint")
            .arg("--strict")
            .arg(chart())
            .arg("-f")
            .arg(&file)
            .args(["--set", &format!("image.repository={IMAGE}")]));
        assert!(output.status.success(), "helm lint --strict for {stage}: {}", text(&output));
        // Without an image repository the stage file does not install: the render fails
        // (lint only reports the template's `fail` as INFO and exits 0).
        let output = run(Command::new(&helm).arg("template").arg(chart()).arg("-f").arg(&file));
        assert!(!output.status.success() && text(&output).contains("image.repository is required"), "{stage}: {}", text(&output));
    }
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_api() {
    let test = "every_rendered_object_validates_against_the_kubernetes_api";
    let (Some(helm), Some(validate)) = (helm(test), kube_validate(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let secrets = format!("secrets.awsAccessKeyId={KEY_ID},secrets.awsSecretAccessKey={SECRET_KEY},aws.roleArn={ROLE_ARN}");
    let mut variants: Vec<(String, Vec<String>)> = Vec::new();
    for (stage, file) in stages() {
        let file = file.to_string_lossy().into_owned();
        variants.push((format!("{stage} with keys"), vec!["-f".into(), file.clone(), "--set".into(), secrets.clone()]));
        variants.push((
            format!("{stage} with IRSA"),
            vec!["-f".into(), file.clone(), "--set-string".into(), format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN}")],
        ));
        variants.push((
            format!("{stage} with an existing Secret"),
            vec!["-f".into(), file.clone(), "--set".into(), "secrets.existingSecret=backup-keys,mongo.uriSecret.name=mongo-uri".into()],
        ));
        variants.push((
            format!("{stage} with a heartbeat, a digest and a macro schedule"),
            vec![
                "-f".into(),
                file.clone(),
                "--set".into(),
                format!("heartbeat.url=https://hc-ping.com/{}/{{operation}},image.digest=sha256:{}", "0f3c", "a".repeat(64)),
                "--set-string".into(),
                "cronSchedule=@daily".into(),
            ],
        ));
    }
    for (label, args) in &variants {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = template(&helm, &args);
        assert!(output.status.success(), "{label}: {}", text(&output));
        let file = temp_file(dir.path(), "rendered.yaml", &output.stdout);
        for version in ["1.30.0", "1.37.0"] {
            let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", version]).arg(&file));
            assert!(check.status.success(), "{label}: not valid for Kubernetes {version}:\n{}", text(&check));
            let report = text(&check);
            for kind in ["cronjob/ingest-backup ", "cronjob/ingest-backup-verify ", "serviceaccount/ingest-backup "] {
                assert!(report.contains(kind), "{label}: {kind}was not validated:\n{report}");
            }
        }
    }

    // The prune CronJob with credentials of its own (a Secret, or IRSA through a
    // ServiceAccount of its own) and locked backups, on every stage.
    let prune_role = "arn:aws:iam::123456789012:role/ingest-backup-prune";
    for (stage, file) in stages() {
        let file = file.to_string_lossy().into_owned();
        let own_secret =
            format!("{secrets},retention.afterBackup=false,retention.existingSecret=ingest-backup-prune-keys,retention.roleArn={prune_role}");
        let own_account = format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN},retention.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={prune_role}");
        let cases: [(&str, Vec<&str>, &[&str]); 2] = [
            (
                "a prune Secret and governance locks",
                vec!["-f", &file, "--set", &own_secret, "--set", "lock.mode=governance"],
                &["cronjob/ingest-backup-prune "],
            ),
            (
                "a prune ServiceAccount and compliance locks of 36h",
                vec![
                    "-f",
                    &file,
                    "--set",
                    "retention.afterBackup=false,retention.serviceAccount.create=true",
                    "--set-string",
                    &own_account,
                    "--set-string",
                    "lock.mode=compliance,lock.days=36h",
                ],
                &["cronjob/ingest-backup-prune ", "serviceaccount/ingest-backup-prune "],
            ),
        ];
        for (label, args, kinds) in cases {
            let output = template(&helm, &args);
            assert!(output.status.success(), "{stage} with {label}: {}", text(&output));
            let file = temp_file(dir.path(), "rendered.yaml", &output.stdout);
            for version in ["1.30.0", "1.37.0"] {
                let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", version]).arg(&file));
                assert!(check.status.success(), "{stage} with {label}: not valid for Kubernetes {version}:\n{}", text(&check));
                let report = text(&check);
                for kind in kinds {
                    assert!(report.contains(kind), "{stage} with {label}: {kind}was not validated:\n{report}");
                }
            }
        }
    }

    // The drill CronJob (its scratch server from a Secret of the operator's, or from the
    // chart's beside the keys) and the exporter's Deployment and Service, on every stage. The
    // ServiceMonitor and the PrometheusRule are custom resources the API schemas do not
    // know: left out, as in the_prometheus_rule_alerts_on_stale_successes_and_failed_jobs.
    for (stage, file) in stages() {
        let file = file.to_string_lossy().into_owned();
        let own_secret = "drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch,exporter.enabled=true,\
                          exporter.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true";
        let in_chart =
            format!("{secrets},drill.enabled=true,drill.keep=true,drill.parallel=8,drill.scratchUri.value={SCRATCH_URI},exporter.enabled=true");
        let gcs = format!("store.url={GCS_URL},gcs.existingSecret=ingest-backup-gcs");
        let cases: [(&str, Vec<&str>, &[&str]); 3] = [
            (
                "a drill from its own Secret and a monitored exporter",
                vec!["-f", &file, "--set", own_secret],
                &["cronjob/ingest-backup-drill ", "deployment/ingest-backup-exporter ", "service/ingest-backup-exporter "],
            ),
            (
                "a drill from the chart's Secret and an exporter on port 9400",
                vec!["-f", &file, "--set", &in_chart, "--set", "exporter.port=9400", "--set-string", "exporter.interval=5m"],
                &["cronjob/ingest-backup-drill ", "deployment/ingest-backup-exporter ", "service/ingest-backup-exporter ", "secret/ingest-backup "],
            ),
            (
                "a drill and an exporter on Google Cloud Storage with a key file",
                vec!["-f", &file, "--set", own_secret, "--set", &gcs, "--set-string", "lock.mode="],
                &["cronjob/ingest-backup-drill ", "deployment/ingest-backup-exporter "],
            ),
        ];
        for (label, args, kinds) in cases {
            let output = template(&helm, &args);
            assert!(output.status.success(), "{stage} with {label}: {}", text(&output));
            let file = temp_file(dir.path(), "rendered.yaml", builtin_objects(&output.stdout).as_bytes());
            for version in ["1.30.0", "1.37.0"] {
                let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", version]).arg(&file));
                assert!(check.status.success(), "{stage} with {label}: not valid for Kubernetes {version}:\n{}", text(&check));
                let report = text(&check);
                for kind in kinds {
                    assert!(report.contains(kind), "{stage} with {label}: {kind}was not validated:\n{report}");
                }
            }
        }
    }

    // The restore Job, rendered alone as helm/restore.sh renders it.
    for (stage, file) in stages() {
        let output = template(
            &helm,
            &[
                "-f",
                &file.to_string_lossy(),
                "--set",
                "restore.enabled=true,restore.drop=true",
                "--set-string",
                "restore.backup=2018-04-04T11_37",
                "--show-only",
                "templates/restore-job.yaml",
            ],
        );
        assert!(output.status.success(), "{stage} restore: {}", text(&output));
        // kubernetes-validate needs a name; the API server derives one from generateName.
        let yaml = String::from_utf8(output.stdout).unwrap().replace("generateName: ingest-backup-restore-", "name: ingest-backup-restore-x");
        let file = temp_file(dir.path(), "restore.yaml", yaml.as_bytes());
        for version in ["1.30.0", "1.37.0"] {
            let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", version]).arg(&file));
            assert!(check.status.success(), "{stage} restore: not valid for Kubernetes {version}:\n{}", text(&check));
            assert!(text(&check).contains("job/ingest-backup-restore-x "), "{}", text(&check));
        }
    }

    // The validator is strict and really reads the schemas: a misspelt field fails.
    let output = template(&helm, &["-f", &root().join("helm/config/prod.yaml").to_string_lossy()]);
    let broken = String::from_utf8(output.stdout).unwrap().replace("concurrencyPolicy:", "concurencyPolicy:");
    let file = temp_file(dir.path(), "broken.yaml", broken.as_bytes());
    let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", "1.37.0"]).arg(&file));
    assert!(!check.status.success(), "a misspelt field passed validation: {}", text(&check));
}

/// `M H * * *` plus 30 minutes, computed independently of the chart.
fn daily_plus_30(schedule: &str) -> Option<String> {
    daily_plus(schedule, 30)
}

/// `M H * * *` plus `offset` minutes (under a day), computed independently of the chart.
fn daily_plus(schedule: &str, offset: u32) -> Option<String> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, "*", "*", "*"] = fields[..] else { return None };
    let total = hour.parse::<u32>().ok()? * 60 + minute.parse::<u32>().ok()? + offset;
    let (hour, minute) = ((total / 60) % 24, total % 60);
    Some(format!("{minute} {hour} * * *"))
}

#[test]
fn the_default_schedule_is_the_original_midnight() {
    let Some(python) = python("the_default_schedule_is_the_seeds_midnight") else { return };
    let defaults = stage_values(&python, &chart().join("values.yaml"));
    assert_eq!(defaults["cronSchedule"], "0 0 * * *");
    assert_eq!(defaults["verify"]["offsetMinutes"], 30);
    assert_eq!(defaults["mongo"]["uri"], "mongodb://mongo-service:27017");
    assert_eq!(daily_plus_30("45 23 * * *").as_deref(), Some("15 0 * * *"));
    // The prune, when it has a CronJob of its own, runs half a day after the backup:
    // later than a backup can still be running (its 6h deadline plus a 1h late start).
    assert_eq!(defaults["retention"]["afterBackup"], false, "the prune runs in a CronJob of its own unless told otherwise");
    assert_eq!(defaults["retention"]["offsetMinutes"], 720);
    assert!(
        defaults["retention"]["offsetMinutes"].as_u64().unwrap() * 60
            > defaults["backup"]["activeDeadlineSeconds"].as_u64().unwrap() + defaults["backup"]["startingDeadlineSeconds"].as_u64().unwrap()
    );
    assert_eq!(daily_plus("0 0 * * *", 720).as_deref(), Some("0 12 * * *"));
    assert_eq!(defaults["lock"]["mode"], "", "no Object Lock unless asked");
    assert!(defaults["lock"]["days"].is_null());
}

/// Stage values read from helm/config/<stage>.yaml.
fn stage_values(python: &Path, file: &Path) -> Value {
    yaml_to_json(python, &std::fs::read_to_string(file).unwrap()).remove(0)
}

#[test]
fn cronjobs_follow_the_stage_files_and_run_hardened() {
    let test = "cronjobs_follow_the_stage_files_and_run_hardened";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    for (stage, file) in stages() {
        let values = stage_values(&python, &file);
        let schedule = values["cronSchedule"].as_str().unwrap();
        assert_eq!(values["backupDir"], stage.as_str(), "{stage}: its own prefix in the bucket");
        let (_, docs) = render(&helm, &python, &["-f", &file.to_string_lossy()]);

        let backup = object(&docs, "CronJob", "ingest-backup");
        let verify = object(&docs, "CronJob", "ingest-backup-verify");
        assert_eq!(backup["spec"]["schedule"], schedule, "{stage}");
        let expected = match values["verify"]["cronSchedule"].as_str() {
            Some(explicit) => explicit.to_string(),
            None => daily_plus_30(schedule).unwrap_or_else(|| panic!("{stage}: {schedule:?} needs verify.cronSchedule")),
        };
        assert_eq!(verify["spec"]["schedule"], expected, "{stage}: verification 30 minutes after the backup");
        assert_eq!(container(backup)["args"], serde_json::json!(["backup"]));
        // The prune in a CronJob of its own unless the stage keeps it in the backup Job
        // (retention.afterBackup true; unset is the default, false).
        let prune = docs.iter().find(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "ingest-backup-prune");
        assert_eq!(prune.is_some(), values["retention"]["afterBackup"] != true, "{stage}: the prune CronJob follows retention.afterBackup");
        if let Some(prune) = prune {
            let expected = match values["retention"]["cronSchedule"].as_str() {
                Some(explicit) => explicit.to_string(),
                None => daily_plus(schedule, values["retention"]["offsetMinutes"].as_u64().unwrap_or(720) as u32)
                    .unwrap_or_else(|| panic!("{stage}: {schedule:?} needs retention.cronSchedule")),
            };
            assert_eq!(prune["spec"]["schedule"], expected, "{stage}: the prune half a day after the backup");
            assert_eq!(container(prune)["args"], serde_json::json!(["prune"]));
            assert_eq!(prune["metadata"]["labels"]["app.kubernetes.io/component"], "prune");
        }
        retention_env_follows_the_stage(&stage, &values, backup, verify, prune);
        lock_env_follows_the_stage(&stage, &values, &docs);
        // The newest backup not verified yet, waiting for one still being written.
        assert_eq!(container(verify)["args"], serde_json::json!(["verify", "unverified", "--wait-for-running", "6h"]));
        assert!(
            verify["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"].as_u64().unwrap() > 6 * 3600,
            "{stage}: the verify Job outlives its wait for the backup"
        );

        // Point-in-time slices: a third CronJob where the stage enables it, never pruning.
        let pitr = docs.iter().find(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "ingest-backup-pitr");
        assert_eq!(pitr.is_some(), values["pitr"]["enabled"] == true, "{stage}: the pitr CronJob follows pitr.enabled");
        if let Some(pitr) = pitr {
            assert_eq!(pitr["spec"]["schedule"], values["pitr"]["cronSchedule"], "{stage}");
            assert_eq!(container(pitr)["args"], serde_json::json!(["oplog"]));
            assert!(env_of(pitr).keys().all(|k| !k.starts_with("PRUNE_")), "{stage}: the pitr Job never prunes");
        }

        for cronjob in [backup, verify].into_iter().chain(pitr).chain(prune) {
            let is_prune = cronjob["metadata"]["name"] == "ingest-backup-prune";
            let spec = &cronjob["spec"];
            assert_eq!(spec["concurrencyPolicy"], "Forbid");
            assert_eq!(spec["timeZone"], "Etc/UTC");
            for field in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
                assert!(spec[field].is_u64(), "{stage}: {field} set");
            }
            let job = &spec["jobTemplate"]["spec"];
            assert!(job["activeDeadlineSeconds"].as_u64().unwrap() > 0);
            assert!(job["backoffLimit"].is_u64());
            assert_eq!(job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"], serde_json::json!([2]));
            let pod = &job["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never");
            assert_eq!(pod["serviceAccountName"], "ingest-backup");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(pod["securityContext"]["runAsUser"], 65532);
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
            let c = container(cronjob);
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert_eq!(c["image"], format!("{IMAGE}:0.1.0"), "{stage}: the tag defaults to the appVersion");
            // Measured peak RSS 122-167 MiB: the request above it, the limit with room.
            assert_eq!(c["resources"]["requests"]["memory"], "228Mi");
            assert_eq!(c["resources"]["limits"]["memory"], "384Mi");
            // The spool (4Gi) and /tmp (64Mi) emptyDirs plus 64Mi of logs.
            assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "4224Mi");
            assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "4224Mi");
            // Above the tool's worst case after SIGTERM: 60 s of abort retries + 30 s of alert delivery.
            assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 60 + 30 + 5, "{stage}: {}", pod["terminationGracePeriodSeconds"]);

            let env = env_of(cronjob);
            if is_prune {
                assert!(!env.contains_key("MONGO_URI"), "{stage}: the prune never reads the database");
            } else {
                assert_eq!(env["MONGO_URI"]["value"], "mongodb://mongo-service:27017", "the original ingest backup scripts' service");
            }
            assert_eq!(env["S3_BUCKET"]["value"], values["s3"]["bucket"]);
            assert_eq!(env["BACKUP_DIR"]["value"], stage.as_str());
            // The spool and /tmp are size-limited emptyDirs on a read-only root.
            let spool_dir = env["INGEST_BACKUP_SPOOL_DIR"]["value"].as_str().unwrap();
            let mounts: BTreeMap<&str, &str> =
                c["volumeMounts"].as_array().unwrap().iter().map(|m| (m["mountPath"].as_str().unwrap(), m["name"].as_str().unwrap())).collect();
            for (path, volume) in [(spool_dir, "spool"), ("/tmp", "tmp")] {
                assert_eq!(mounts.get(path), Some(&volume), "{stage}: {path} mounted");
                let v = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == volume).unwrap();
                assert!(v["emptyDir"]["sizeLimit"].is_string(), "{stage}: {volume} has a sizeLimit");
            }
        }
    }
}

#[test]
fn secret_values_only_ever_land_in_the_secret() {
    let test = "secret_values_only_ever_land_in_the_secret";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let values = temp_file(
        dir.path(),
        "secrets.yaml",
        format!(
            "aws:\n  roleArn: '{ROLE_ARN}'\nsecrets:\n  awsAccessKeyId: '{KEY_ID}'\n  awsSecretAccessKey: '{SECRET_KEY}'\n  slackWebhookUrl: '{WEBHOOK}'\n  alertWebhookUrl: '{WEBHOOK}/alert'\nheartbeat:\n  url: '{HEARTBEAT}'\n  method: POST\n"
        )
        .as_bytes(),
    );
    let secrets = [KEY_ID, SECRET_KEY, WEBHOOK, HEARTBEAT];
    for (stage, file) in stages() {
        let (yaml, docs) = render(&helm, &python, &["-f", &file.to_string_lossy(), "-f", &values.to_string_lossy()]);
        for plain in secrets {
            assert!(!yaml.contains(plain), "{stage}: a secret value is rendered in clear text");
        }
        let secret = object(&docs, "Secret", "ingest-backup");
        assert_eq!(secret["data"]["AWS_ACCESS_KEY_ID"], base64(KEY_ID));
        assert_eq!(secret["data"]["AWS_SECRET_ACCESS_KEY"], base64(SECRET_KEY));
        assert_eq!(secret["data"]["SLACK_WEBHOOK_URL"], base64(WEBHOOK));
        assert_eq!(secret["data"]["ALERT_WEBHOOK_URL"], base64(&format!("{WEBHOOK}/alert")));
        assert_eq!(secret["data"]["HEARTBEAT_URL"], base64(HEARTBEAT));
        for doc in &docs {
            if doc["kind"] == "Secret" {
                continue;
            }
            assert_ne!(doc["kind"], "ConfigMap", "{stage}: no ConfigMap is expected at all");
            let json = doc.to_string();
            for value in secrets.iter().flat_map(|s| [s.to_string(), base64(s)]) {
                assert!(!json.contains(&value), "{stage}: a secret is in {} {}", doc["kind"], doc["metadata"]["name"]);
            }
        }
        // The prune CronJob too, where the stage has one: without credentials of its own it
        // reads the install's Secret like the others.
        let prune = docs.iter().any(|d| d["kind"] == "CronJob" && d["metadata"]["name"] == "ingest-backup-prune");
        let names: &[&str] =
            if prune { &["ingest-backup", "ingest-backup-verify", "ingest-backup-prune"] } else { &["ingest-backup", "ingest-backup-verify"] };
        for &name in names {
            let env = env_of(object(&docs, "CronJob", name));
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "HEARTBEAT_URL"] {
                let entry = &env[key];
                assert!(entry.get("value").is_none(), "{stage}: {name} has {key} as a literal");
                assert_eq!(entry["valueFrom"]["secretKeyRef"]["name"], "ingest-backup", "{stage}: {name} {key}");
                assert_eq!(entry["valueFrom"]["secretKeyRef"]["key"], key);
            }
            assert_eq!(env["AWS_ROLE_ARN"]["value"], ROLE_ARN);
            assert_eq!(env["HEARTBEAT_METHOD"]["value"], "POST");
        }
    }
}

#[test]
fn irsa_and_existing_secrets_need_no_keys_in_values() {
    let test = "irsa_and_existing_secrets_need_no_keys_in_values";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();

    let annotation = format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN}");
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set-string", &annotation]);
    let account = object(&docs, "ServiceAccount", "ingest-backup");
    assert_eq!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], ROLE_ARN);
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "IRSA: no Secret");
    let env = env_of(object(&docs, "CronJob", "ingest-backup"));
    assert!(!env.contains_key("AWS_ACCESS_KEY_ID") && !env.contains_key("AWS_SECRET_ACCESS_KEY"), "IRSA: no keys");

    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", "secrets.existingSecret=backup-keys,mongo.uriSecret.name=mongo-uri"]);
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "an existing Secret is not re-rendered");
    let env = env_of(object(&docs, "CronJob", "ingest-backup-verify"));
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"], "backup-keys");
    assert_eq!(env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["optional"], true);
    assert_eq!(env["MONGO_URI"]["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "mongo-uri", "key": "MONGO_URI"}));
}

/// The backup Job prunes with the stage's retention rules, or the prune CronJob does where
/// the stage gives it one (and the binary accepts the rules as rendered); the backup Job
/// knows the rules either way (a locked backup's first lock comes from them); the verify
/// Job never prunes.
fn retention_env_follows_the_stage(stage: &str, values: &Value, backup: &Value, verify: &Value, prune: Option<&Value>) {
    let retention = &values["retention"];
    assert_eq!(retention["enabled"], true, "{stage}: every stage prunes");
    let backup_env = env_of(backup);
    match prune {
        None => assert_eq!(backup_env["PRUNE_AFTER_BACKUP"]["value"], "true", "{stage}"),
        Some(_) => assert!(!backup_env.contains_key("PRUNE_AFTER_BACKUP"), "{stage}: the prune CronJob prunes, not the backup Job"),
    }
    let backup_rules = retention_rules_of(stage, retention, &backup_env);
    let pruning_rendered = match prune {
        Some(prune) => retention_rules_of(stage, retention, &env_of(prune)),
        None => backup_rules,
    };
    assert!(env_of(verify).keys().all(|k| !k.starts_with("PRUNE_")), "{stage}: the verify Job never prunes");
    // The binary takes the rendered variables: a dry run on an empty store succeeds.
    let store = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingest-backup"));
    command.args(["prune", "--dry-run", "--store"]).arg(store.path()).envs(pruning_rendered);
    let output = run(&mut command);
    assert!(output.status.success(), "{stage}: {}", text(&output));
}

/// The `PRUNE_*` variables of one Job, checked against the stage's `retention` block:
/// exactly its rules, the time zone and the stale age.
fn retention_rules_of(stage: &str, retention: &Value, env: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    let mut rendered = Vec::new();
    for (key, variable) in [
        ("keepLast", "PRUNE_KEEP_LAST"),
        ("keepHourly", "PRUNE_KEEP_HOURLY"),
        ("keepDaily", "PRUNE_KEEP_DAILY"),
        ("keepWeekly", "PRUNE_KEEP_WEEKLY"),
        ("keepMonthly", "PRUNE_KEEP_MONTHLY"),
        ("keepYearly", "PRUNE_KEEP_YEARLY"),
        ("keepWithin", "PRUNE_KEEP_WITHIN"),
        ("keepPitr", "PRUNE_KEEP_PITR"),
    ] {
        let expected = match &retention[key] {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        };
        let found = env.get(variable).map(|v| v["value"].as_str().unwrap().to_string());
        assert_eq!(found, expected, "{stage}: {variable}");
        if let Some(value) = found {
            rendered.push((variable.to_string(), value));
        }
    }
    assert!(!rendered.is_empty(), "{stage}: at least one keep rule");
    for variable in ["PRUNE_TIMEZONE", "PRUNE_STALE_AFTER"] {
        rendered.push((variable.to_string(), env[variable]["value"].as_str().unwrap().to_string()));
    }
    rendered
}

/// `LOCK_MODE` and `LOCK_DAYS` follow the stage's `lock` block on the backup Job, and are
/// never given to the pitr, verify or prune Jobs (slices and verification records copy
/// their backup's lock).
fn lock_env_follows_the_stage(stage: &str, values: &Value, docs: &[Value]) {
    let mode = values["lock"]["mode"].as_str().filter(|m| !m.is_empty());
    let days = match &values["lock"]["days"] {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    };
    for cronjob in docs.iter().filter(|d| d["kind"] == "CronJob") {
        let name = cronjob["metadata"]["name"].as_str().unwrap();
        let env = env_of(cronjob);
        let found = |variable: &str| env.get(variable).map(|v| v["value"].as_str().unwrap().to_string());
        if name == "ingest-backup" {
            assert_eq!(found("LOCK_MODE").as_deref(), mode, "{stage}: {name}");
            assert_eq!(found("LOCK_DAYS"), days.clone().filter(|_| mode.is_some()), "{stage}: {name}");
        } else {
            assert!(!env.contains_key("LOCK_MODE") && !env.contains_key("LOCK_DAYS"), "{stage}: {name} writes no backup: {env:?}");
        }
    }
}

#[test]
fn render_refuses_unsafe_or_incomplete_values() {
    let Some(helm) = helm("render_refuses_unsafe_or_incomplete_values") else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "s3.bucket="], "s3.bucket is required"),
        (&["-f", &prod, "--set", "mongo.uri=mongodb://admin:hunter2@mongo-service:27017"], "mongo.uri carries a password"),
        (&["-f", &prod, "--set", "secrets.existingSecret=x,secrets.awsAccessKeyId=AKIA0000000000000000"], "use one or the other"),
        (&["-f", &prod, "--set", "secrets.awsAccessKeyId=AKIA0000000000000000"], "give both or neither"),
        (&["-f", &prod, "--set", "verify.offsetMinutes=0"], "between 1 and 1439"),
        (&["-f", &prod, "--set-string", "cronSchedule=0 0 * *"], "has 4 fields; a cron schedule has exactly five"),
        // values.schema.json: a misspelt key in a stage file is an error, not ignored.
        (&["-f", &prod, "--set-string", "cronSchedul=0 1 * * *"], "additional properties 'cronSchedul' not allowed"),
        (&["-f", &prod, "--set", "verify.offsetMinutes=30.5"], "offsetMinutes"),
        (&["-f", &prod, "--set-string", "store.attemptTimeout=soon"], "/store/attemptTimeout"),
        (&["-f", &prod, "--set", "store.maxAttempts=21"], "/store/maxAttempts"),
        (&["-f", &prod, "--set", "image.repository="], "image.repository is required"),
        (&["-f", &prod, "--set", "image.digest=latest"], "/image/digest"),
        (
            &[
                "-f",
                &prod,
                "--set",
                &format!("aws.roleArn={ROLE_ARN},retention.afterBackup=true"),
                "--set-string",
                &format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN}"),
            ],
            "aws.roleArn and the IRSA annotation",
        ),
        (&["-f", &prod, "--set", "secrets.existingSecret=x,heartbeat.url=https://hc-ping.com/x"], "use one or the other"),
        (&["-f", &prod, "--set", "heartbeat.method=PUT"], "/heartbeat/method"),
        (&["-f", &prod, "--set", "spool.sizeLimit=4G"], "/spool/sizeLimit"),
        (&["-f", &prod, "--set", "backup.splitMinMb=-1"], "/backup/splitMinMb"),
        (&["-f", &prod, "--set", "backup.splitMinMb=1.5"], "/backup/splitMinMb"),
        (&["-f", &prod, "--set", "restore.enabled=true"], "restore.backup is required"),
        (&["-f", &prod, "--set", "restore.enabled=true,restore.backup=yesterday"], "not a backup name"),
        (&["-f", &prod, "--set", "restore.backoffLimit=2"], "/restore/backoffLimit"),
        (
            &[
                "-f",
                &prod,
                "--set",
                "retention.keepDaily=null,retention.keepWeekly=null,retention.keepMonthly=null,retention.keepYearly=null,retention.keepWithin=null,\
                 retention.keepPitr=null",
            ],
            "no keep rule is set",
        ),
        (&["-f", &prod, "--set-string", "retention.keepWithin=3 days"], "/retention/keepWithin"),
        (&["-f", &prod, "--set", "retention.keepDaily=-1"], "/retention/keepDaily"),
        (&["-f", &prod, "--set-string", "pitr.cronSchedule=*/10 * * *"], "pitr.cronSchedule"),
        (&["-f", &prod, "--set", "pitr.backoffLimit=-1"], "/pitr/backoffLimit"),
        // The prune CronJob's credentials without the prune CronJob: the backup Job would prune with its own.
        (
            &["-f", &prod, "--set", "retention.afterBackup=true,retention.existingSecret=ingest-backup-prune-keys"],
            "set retention.afterBackup=false, or remove these values",
        ),
        (
            &["-f", &prod, "--set", "retention.afterBackup=false,retention.serviceAccount.annotations.team=backup"],
            "retention.serviceAccount.create is false",
        ),
        (
            &[
                "-f",
                &prod,
                "--set",
                &format!("retention.afterBackup=false,retention.serviceAccount.create=true,aws.roleArn={ROLE_ARN}"),
                "--set-string",
                &format!("retention.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={ROLE_ARN}"),
            ],
            "Set retention.roleArn to \"\"",
        ),
        (&["-f", &prod, "--set", "retention.afterBackup=false,retention.offsetMinutes=0"], "retention.offsetMinutes 0 must be between 1 and 1439"),
        (&["-f", &prod, "--set", "retention.afterBackup=false", "--set-string", "cronSchedule=@hourly"], "Set retention.cronSchedule"),
        (&["-f", &prod, "--set", "retention.afterBackup=false,retention.backoffLimit=-1"], "/retention/backoffLimit"),
        (&["-f", &prod, "--set", "lock.days=7"], "lock.days is set but lock.mode is empty"),
        (&["-f", &prod, "--set", "lock.mode=governance,retention.enabled=false"], "or set lock.days"),
        (&["-f", &prod, "--set", "lock.mode=legal-hold"], "/lock/mode"),
        (&["-f", &prod, "--set", "lock.mode=governance,lock.days=0"], "/lock/days"),
        (&["-f", &prod, "--set-string", "lock.mode=governance,lock.days=3 days"], "/lock/days"),
        // A drill needs a scratch server, named through a Secret, never the source.
        (&["-f", &prod, "--set", "drill.enabled=true"], "drill.enabled needs the scratch server's connection string"),
        (
            &[
                "-f",
                &prod,
                "--set",
                "drill.enabled=true,drill.scratchUri.existingSecret=s,drill.scratchUri.value=mongodb://drill:hunter2@scratch:27017",
            ],
            "drill.scratchUri.existingSecret and drill.scratchUri.value are both set",
        ),
        (
            &["-f", &prod, "--set", "drill.enabled=true,secrets.existingSecret=k,drill.scratchUri.value=mongodb://drill:hunter2@scratch:27017"],
            "put the scratch URI into a Secret too",
        ),
        (
            &["-f", &prod, "--set", "drill.enabled=true,drill.scratchUri.value=mongodb://mongo-service:27017"],
            "is mongo.uri, the backed-up deployment",
        ),
        (
            &[
                "-f",
                &prod,
                "--set",
                "drill.enabled=true,drill.scratchUri.value=mongodb://drill:hunter2@scratch:27017,drill.scratchUri.key=HEARTBEAT_URL",
            ],
            "is already the key of another value",
        ),
        (
            &["-f", &prod, "--set", "drill.enabled=true,drill.scratchUri.existingSecret=s", "--set-string", "drill.cronSchedule=0 3 * * 7"],
            "drill.cronSchedule",
        ),
        (&["-f", &prod, "--set", "drill.parallel=0"], "/drill/parallel"),
        (&["-f", &prod, "--set", "drill.backoffLimit=-1"], "/drill/backoffLimit"),
        (&["-f", &prod, "--set", "exporter.serviceMonitor.enabled=true"], "exporter.serviceMonitor.enabled needs exporter.enabled"),
        (&["-f", &prod, "--set", "exporter.enabled=true,exporter.port=80"], "/exporter/port"),
        (&["-f", &prod, "--set", "exporter.enabled=true", "--set-string", "exporter.interval=1min"], "/exporter/interval"),
    ];
    for (args, message) in cases {
        let output = template(&helm, args);
        assert!(!output.status.success(), "{args:?} rendered");
        let err = text(&output);
        assert!(err.contains(message), "{args:?}: expected {message:?} in {err}");
        assert!(!err.contains("hunter2"), "a password was printed: {err}");
    }
}

/// Backup schedule, offset -> the verify schedule, or None when it cannot be shifted.
/// Both the chart and helm/reschedule.sh must give exactly these.
const SHIFTS: &[(&str, u32, Option<&str>)] = &[
    ("0 0 * * *", 30, Some("30 0 * * *")),
    ("0 0 * * * ", 30, Some("30 0 * * *")),
    ("45 23 * * *", 30, Some("15 0 * * *")),
    ("50 22 * * *", 90, Some("20 0 * * *")),
    ("15 2 * * *", 1439, Some("14 2 * * *")),
    ("0 0,12 * * *", 30, Some("30 0,12 * * *")),
    ("40 11,23 * * *", 30, Some("10 12,0 * * *")),
    ("0 23 * * 1-5", 30, Some("30 23 * * 1-5")),
    ("10 1 1 JAN MON-FRI", 45, Some("55 1 1 JAN MON-FRI")),
    ("45 * * * *", 30, Some("15 * * * *")),
    ("0 */6 * * *", 30, Some("30 */6 * * *")),
    ("*/5 * * * *", 30, None),
    ("30 23 * * 0", 30, None),
    ("45 * * * 1-5", 30, None),
    ("45 */2 * * *", 30, None),
    ("45 * * * *", 90, None),
];

#[test]
fn verify_schedule_is_the_backup_schedule_shifted_by_the_offset() {
    let test = "verify_schedule_is_the_backup_schedule_shifted_by_the_offset";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    for (schedule, offset, expected) in SHIFTS {
        // A values file: --set would split "0,12" at the comma.
        let values = temp_file(dir.path(), "shift.yaml", format!("cronSchedule: '{schedule}'\nverify:\n  offsetMinutes: {offset}\n").as_bytes());
        let values = values.to_string_lossy().into_owned();
        // The backup Job prunes (retention.afterBackup): the prune CronJob's own shift
        // (720 minutes) is not what this table is about.
        let output = template(&helm, &["-f", &prod, "-f", &values, "--set", "retention.afterBackup=true"]);
        match expected {
            Some(expected) => {
                assert!(output.status.success(), "{schedule:?} + {offset}: {}", text(&output));
                let docs = yaml_to_json(&python, &String::from_utf8_lossy(&output.stdout));
                assert_eq!(object(&docs, "CronJob", "ingest-backup")["spec"]["schedule"], schedule.trim(), "{schedule:?}");
                assert_eq!(object(&docs, "CronJob", "ingest-backup-verify")["spec"]["schedule"], *expected, "{schedule:?} + {offset}");
            }
            None => {
                assert!(!output.status.success(), "{schedule:?} + {offset} rendered: {}", text(&output));
                let err = text(&output);
                assert!(err.contains("cannot derive the verify schedule") && err.contains("Set verify.cronSchedule"), "{err}");
                // The explicit override makes it render.
                let (_, docs) = render(
                    &helm,
                    &python,
                    &["-f", &prod, "-f", &values, "--set", "retention.afterBackup=true", "--set-string", "verify.cronSchedule=7 3 * * *"],
                );
                assert_eq!(object(&docs, "CronJob", "ingest-backup-verify")["spec"]["schedule"], "7 3 * * *");
            }
        }
    }
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", "verify.enabled=false"]);
    assert!(docs.iter().all(|d| d["metadata"]["name"] != "ingest-backup-verify"));
}

/// The prune CronJob (retention.afterBackup false, the default): `ingest-backup prune`
/// with the retention rules on a schedule of its own, with credentials of its own (a
/// Secret, a role, a ServiceAccount for IRSA), so that the backup Job's need not delete;
/// the backup Job then does not prune. retention.afterBackup true prunes in the backup Job.
#[test]
fn the_prune_cronjob_prunes_on_its_own_schedule_with_credentials_of_its_own() {
    let test = "the_prune_cronjob_prunes_on_its_own_schedule_with_credentials_of_its_own";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let keys = format!("secrets.awsAccessKeyId={KEY_ID},secrets.awsSecretAccessKey={SECRET_KEY},secrets.slackWebhookUrl={WEBHOOK}");

    // retention.afterBackup true: the backup Job prunes, with one set of credentials; no
    // prune CronJob, no ServiceAccount for it.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("{keys},retention.afterBackup=true")]);
    assert!(docs.iter().all(|d| !d["metadata"]["name"].as_str().unwrap_or("").ends_with("-prune")), "no prune objects with afterBackup");
    assert_eq!(env_of(object(&docs, "CronJob", "ingest-backup"))["PRUNE_AFTER_BACKUP"]["value"], "true");

    // By default (prod sets no afterBackup) the prune CronJob prunes; `split` below says so
    // explicitly, and renders the same.
    let (_, default_docs) = render(&helm, &python, &["-f", &prod, "--set", &keys]);
    let split = format!("{keys},retention.afterBackup=false");
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &split]);
    assert_eq!(default_docs, docs, "retention.afterBackup defaults to false");
    let backup = object(&docs, "CronJob", "ingest-backup");
    assert_eq!(container(backup)["args"], serde_json::json!(["backup"]), "no --prune in the backup Job");
    let backup_env = env_of(backup);
    assert!(!backup_env.contains_key("PRUNE_AFTER_BACKUP"), "the backup Job does not prune");
    assert_eq!(backup_env["PRUNE_KEEP_WITHIN"]["value"], "2d", "but it knows the rules (a new backup's first lock comes from them)");
    let prune = object(&docs, "CronJob", "ingest-backup-prune");
    assert_eq!(prune["metadata"]["labels"]["app.kubernetes.io/component"], "prune");
    // Half a day after the backup (0 0 * * *): never while the backup may still be running.
    assert_eq!(prune["spec"]["schedule"], "0 12 * * *");
    assert_eq!(prune["spec"]["timeZone"], "Etc/UTC");
    assert_eq!(prune["spec"]["concurrencyPolicy"], "Forbid");
    let job = &prune["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"], serde_json::json!([2]), "exit 2 is not retried");
    assert_eq!(job["template"]["metadata"]["labels"]["app.kubernetes.io/component"], "prune");
    assert_eq!(container(prune)["args"], serde_json::json!(["prune"]));
    let env = env_of(prune);
    for (variable, value) in [
        ("PRUNE_KEEP_DAILY", "7"),
        ("PRUNE_KEEP_WEEKLY", "4"),
        ("PRUNE_KEEP_MONTHLY", "12"),
        ("PRUNE_KEEP_YEARLY", "3"),
        ("PRUNE_KEEP_WITHIN", "2d"),
        ("PRUNE_KEEP_PITR", "7d"),
        ("PRUNE_TIMEZONE", "Etc/UTC"),
        ("PRUNE_STALE_AFTER", "24h"),
    ] {
        assert_eq!(env[variable]["value"], value, "{variable}");
    }
    assert_eq!(env["BACKUP_DIR"]["value"], "prod");
    for absent in ["PRUNE_AFTER_BACKUP", "MONGO_URI", "LOCK_MODE", "AGE_RECIPIENTS"] {
        assert!(!env.contains_key(absent), "the prune Job has {absent}: {env:?}");
    }
    // Without credentials of its own: the install's Secret and ServiceAccount, like the backup.
    assert_eq!(pod_spec(prune)["serviceAccountName"], "ingest-backup");
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup");
    assert_eq!(env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup");

    // An explicit schedule, or another offset from the backup's.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &split, "--set-string", "retention.cronSchedule=15 3 * * 1"]);
    assert_eq!(object(&docs, "CronJob", "ingest-backup-prune")["spec"]["schedule"], "15 3 * * 1");
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("{split},retention.offsetMinutes=90")]);
    assert_eq!(object(&docs, "CronJob", "ingest-backup-prune")["spec"]["schedule"], "30 1 * * *");

    // Keys of its own that assume a role of its own: that Secret's keys (required, so a
    // wrong name stops the pod), that role; the alert webhooks still the install's.
    let prune_role = "arn:aws:iam::123456789012:role/ingest-backup-prune";
    let own_keys = format!("{split},aws.roleArn={ROLE_ARN},retention.existingSecret=ingest-backup-prune-keys,retention.roleArn={prune_role}");
    let (yaml, docs) = render(&helm, &python, &["-f", &prod, "--set", &own_keys]);
    assert!(!yaml.contains(SECRET_KEY), "a secret value is rendered in clear text");
    let env = env_of(object(&docs, "CronJob", "ingest-backup-prune"));
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert_eq!(
            env[key]["valueFrom"]["secretKeyRef"],
            serde_json::json!({"name": "ingest-backup-prune-keys", "key": key, "optional": false}),
            "{key}"
        );
    }
    assert_eq!(env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup");
    assert_eq!(env["AWS_ROLE_ARN"]["value"], prune_role);
    let backup_env = env_of(object(&docs, "CronJob", "ingest-backup"));
    assert_eq!(backup_env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup", "the backup keeps its keys");
    assert_eq!(backup_env["AWS_ROLE_ARN"]["value"], ROLE_ARN, "and its role");
    // retention.roleArn "" (not null): the prune's keys assume no role.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("{split},aws.roleArn={ROLE_ARN},retention.roleArn=")]);
    assert!(!env_of(object(&docs, "CronJob", "ingest-backup-prune")).contains_key("AWS_ROLE_ARN"));

    // IRSA with a role of its own: a ServiceAccount of its own, and never the backup's
    // keys (in the environment they would take precedence over the web identity).
    let annotation = format!("retention.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={prune_role}");
    let (_, docs) =
        render(&helm, &python, &["-f", &prod, "--set", &format!("{split},retention.serviceAccount.create=true"), "--set-string", &annotation]);
    let account = object(&docs, "ServiceAccount", "ingest-backup-prune");
    assert_eq!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], prune_role);
    assert_eq!(account["automountServiceAccountToken"], false);
    assert!(object(&docs, "ServiceAccount", "ingest-backup")["metadata"].get("annotations").is_none(), "the prune's role is not the backup's");
    let prune = object(&docs, "CronJob", "ingest-backup-prune");
    assert_eq!(pod_spec(prune)["serviceAccountName"], "ingest-backup-prune");
    let env = env_of(prune);
    assert!(!env.contains_key("AWS_ACCESS_KEY_ID") && !env.contains_key("AWS_SECRET_ACCESS_KEY"), "{env:?}");
    assert_eq!(env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup", "its failures are still alerted");
    let backup = object(&docs, "CronJob", "ingest-backup");
    assert_eq!(pod_spec(backup)["serviceAccountName"], "ingest-backup");
    assert_eq!(env_of(backup)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup");

    // An existing ServiceAccount by name (an EKS Pod Identity association, say): used, not created.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("{split},retention.serviceAccount.name=backup-pruner")]);
    assert_eq!(pod_spec(object(&docs, "CronJob", "ingest-backup-prune"))["serviceAccountName"], "backup-pruner");
    assert!(docs.iter().all(|d| d["metadata"]["name"] != "backup-pruner"), "an existing ServiceAccount is not rendered");
    assert!(!env_of(object(&docs, "CronJob", "ingest-backup-prune")).contains_key("AWS_SECRET_ACCESS_KEY"));
}

/// lock.mode and lock.days become LOCK_MODE and LOCK_DAYS of the Jobs that write
/// backups and oplog slices, and of no other.
#[test]
fn the_lock_settings_reach_the_backup_job_only() {
    /// The LOCK_MODE and LOCK_DAYS values of a CronJob's container.
    fn lock_env(docs: &[Value], name: &str) -> (Option<Value>, Option<Value>) {
        let env = env_of(object(docs, "CronJob", name));
        (env.get("LOCK_MODE").map(|v| v["value"].clone()), env.get("LOCK_DAYS").map(|v| v["value"].clone()))
    }
    let test = "the_lock_settings_reach_the_backup_job_only";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let (_, docs) = render(&helm, &python, &["-f", &prod]);
    for name in ["ingest-backup", "ingest-backup-pitr", "ingest-backup-verify"] {
        assert_eq!(lock_env(&docs, name), (None, None), "{name}: no lock unless asked");
    }
    let values = temp_file(dir.path(), "lock.yaml", b"lock:\n  mode: compliance\n  days: 3650\n");
    let values = values.to_string_lossy().into_owned();
    let cases: [(Vec<&str>, &str, Option<&str>); 4] = [
        // No days: the tool derives the lock from the retention rules the Job is given.
        (vec!["--set", "lock.mode=governance"], "governance", None),
        (vec!["--set", "lock.mode=governance,lock.days=30"], "governance", Some("30")),
        (vec!["--set-string", "lock.mode=compliance,lock.days=36h"], "compliance", Some("36h")),
        // A number in a values file is a float to Helm: still written as whole days.
        (vec!["-f", &values], "compliance", Some("3650")),
    ];
    for (extra, mode, days) in cases {
        let args: Vec<&str> = ["-f", prod.as_str()].into_iter().chain(extra).collect();
        let (_, docs) = render(&helm, &python, &args);
        assert_eq!(lock_env(&docs, "ingest-backup"), (Some(Value::from(mode)), days.map(Value::from)), "{args:?}");
        // Slices and verification records copy their backup's lock: those jobs need no setting.
        for name in ["ingest-backup-pitr", "ingest-backup-verify"] {
            assert_eq!(lock_env(&docs, name), (None, None), "{args:?}: {name}");
        }
        assert_eq!(env_of(object(&docs, "CronJob", "ingest-backup"))["PRUNE_KEEP_WITHIN"]["value"], "2d", "{args:?}");
    }
}

// ---------------------------------------------------------------------------------
// Scripts

#[test]
fn scripts_are_shellcheck_clean() {
    let Some(shellcheck) = shellcheck("scripts_are_shellcheck_clean") else { return };
    // The deployment scripts only: the other scripts belong to other changes (they are
    // shellcheck-clean today too).
    let output = run(Command::new(shellcheck).current_dir(root()).args(["helm/setup.sh", "helm/reschedule.sh", "helm/restore.sh"]));
    assert!(output.status.success(), "shellcheck:\n{}", text(&output));
}

/// A directory holding `helm` and `kubectl` stubs that append their argv (tab-separated,
/// one line per call) to `calls`, and copy every `-f` file (with its mode and its
/// directory's mode) into `files/`.
struct Stubs {
    dir: tempfile::TempDir,
}

impl Stubs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        let script = format!(
            r#"#!/bin/sh
record={record}
{{ printf '%s' "$(basename "$0")"; for a in "$@"; do printf '\t%s' "$a"; done; printf '\n'; }} >> "$record/calls"
prev=
for a in "$@"; do
    if [ "$prev" = -f ]; then
        n=$(ls "$record/files" | grep -c '[.]yaml$')
        cp "$a" "$record/files/$n.yaml"
        printf '%s %s %s\n' "$(stat -c %a "$a")" "$(stat -c %a "$(dirname "$a")")" "$a" > "$record/files/$n.meta"
    fi
    prev=$a
done
"#,
            record = dir.path().display()
        );
        for name in ["helm", "kubectl"] {
            let path = dir.path().join(name);
            std::fs::write(&path, &script).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        Stubs { dir }
    }

    fn helm(&self) -> PathBuf {
        self.dir.path().join("helm")
    }

    fn kubectl(&self) -> PathBuf {
        self.dir.path().join("kubectl")
    }

    /// The recorded calls, each as its argv.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// The n-th `-f` file: (file mode, directory mode, path, contents).
    fn file(&self, n: usize) -> (String, String, String, String) {
        let meta = std::fs::read_to_string(self.dir.path().join(format!("files/{n}.meta"))).unwrap();
        let mut parts = meta.trim_end().splitn(3, ' ');
        let (mode, dir_mode, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let contents = std::fs::read_to_string(self.dir.path().join(format!("files/{n}.yaml"))).unwrap();
        (mode.into(), dir_mode.into(), path.into(), contents)
    }

    fn reset(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("calls"));
        for entry in std::fs::read_dir(self.dir.path().join("files")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
}

fn setup(stubs: &Stubs, stage: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(root().join("helm/setup.sh"));
    command.args(args).env("HELM", stubs.helm()).env("KUBECTL", stubs.kubectl()).env_remove("DEPLOYMENT_STAGE").env_remove("HEARTBEAT_URL");
    if let Some(stage) = stage {
        command.env("DEPLOYMENT_STAGE", stage);
    }
    command.envs(env.iter().copied());
    run(&mut command)
}

fn assert_no_secret(output: &Output, what: &str) {
    let all = text(output);
    for secret in [SECRET_KEY, WEBHOOK, "dummyWebhookSecret42"] {
        assert!(!all.contains(secret), "{what}: a secret was printed:\n{all}");
    }
}

/// label, DEPLOYMENT_STAGE, arguments, extra environment, expected message.
type SetupCase<'a> = (&'a str, Option<&'a str>, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

const ACCESS_KEY_CSV: &str = "Access key ID,Secret access key\nAKIADUMMYKEYID000042,dUmMySeCrEtAcCeSsKeY/0123456789+abcdefgh\n";

#[test]
fn setup_refuses_each_bad_input_with_exit_2_and_runs_nothing() {
    let stubs = Stubs::new();
    let dir = tempfile::tempdir().unwrap();
    let good_csv = temp_file(dir.path(), "keys.csv", ACCESS_KEY_CSV.as_bytes());
    let good = good_csv.to_string_lossy().into_owned();
    let csv = |name: &str, contents: &str| temp_file(dir.path(), name, contents.as_bytes()).to_string_lossy().into_owned();
    let short_secret = csv("short.csv", "Access key ID,Secret access key\nAKIADUMMYKEYID000042,tooShort\n");
    let header_only = csv("header.csv", "Access key ID,Secret access key\n");
    let two_rows = csv("two.csv", &format!("{ACCESS_KEY_CSV}AKIADUMMYKEYID000043,{SECRET_KEY}\n"));
    let no_columns = csv("cols.csv", &format!("User name,Password\nbackup,{SECRET_KEY}\n"));
    let bad_key_id = csv("keyid.csv", &format!("Access key ID,Secret access key\nnot-a-key,{SECRET_KEY}\n"));
    let empty = csv("empty.csv", "");
    let missing = dir.path().join("missing.csv").to_string_lossy().into_owned();
    let no_tool = dir.path().join("no-such-tool").to_string_lossy().into_owned();

    let cases: Vec<SetupCase> = vec![
        ("no arguments", Some("prod"), vec![], vec![], "expected 3 arguments"),
        ("two arguments", Some("prod"), vec![&good, ROLE_ARN], vec![], "expected 3 arguments"),
        ("no stage", None, vec![&good, ROLE_ARN, WEBHOOK], vec![], "DEPLOYMENT_STAGE is not set"),
        ("empty stage", Some(""), vec![&good, ROLE_ARN, WEBHOOK], vec![], "DEPLOYMENT_STAGE is not set"),
        ("unknown stage", Some("production"), vec![&good, ROLE_ARN, WEBHOOK], vec![], "has no configuration"),
        ("stage as a path", Some("../config/prod"), vec![&good, ROLE_ARN, WEBHOOK], vec![], "has no configuration"),
        ("missing CSV", Some("prod"), vec![&missing, ROLE_ARN, WEBHOOK], vec![], "does not exist"),
        ("CSV is a directory", Some("prod"), vec![dir.path().to_str().unwrap(), ROLE_ARN, WEBHOOK], vec![], "not a readable file"),
        ("empty CSV", Some("prod"), vec![&empty, ROLE_ARN, WEBHOOK], vec![], "is empty"),
        ("CSV without key columns", Some("prod"), vec![&no_columns, ROLE_ARN, WEBHOOK], vec![], "'Access key ID' and 'Secret access key'"),
        ("CSV header only", Some("prod"), vec![&header_only, ROLE_ARN, WEBHOOK], vec![], "no row of keys"),
        ("CSV with two rows", Some("prod"), vec![&two_rows, ROLE_ARN, WEBHOOK], vec![], "holds 2 rows"),
        ("short secret", Some("prod"), vec![&short_secret, ROLE_ARN, WEBHOOK], vec![], "not an AWS secret access key"),
        ("bad key id", Some("prod"), vec![&bad_key_id, ROLE_ARN, WEBHOOK], vec![], "not an AWS access key id"),
        ("ARN of a user", Some("prod"), vec![&good, "arn:aws:iam::123456789012:user/backup", WEBHOOK], vec![], "not an IAM role ARN"),
        ("ARN with a short account", Some("prod"), vec![&good, "arn:aws:iam::12345:role/backup", WEBHOOK], vec![], "not an IAM role ARN"),
        ("ARN of another partition", Some("prod"), vec![&good, "arn:azure:iam::123456789012:role/backup", WEBHOOK], vec![], "not an IAM role ARN"),
        ("not an ARN", Some("prod"), vec![&good, "role_ARN", WEBHOOK], vec![], "not an IAM role ARN"),
        ("http webhook", Some("prod"), vec![&good, ROLE_ARN, "http://hooks.slack.com/services/T0/B0/x"], vec![], "Slack webhook URL"),
        ("webhook without a host", Some("prod"), vec![&good, ROLE_ARN, "https:///services/T0/B0/x"], vec![], "Slack webhook URL"),
        ("webhook with a space", Some("prod"), vec![&good, ROLE_ARN, "https://hooks.slack.com/services/T0 B0"], vec![], "Slack webhook URL"),
        ("IRSA without a role", Some("prod"), vec!["--irsa"], vec![], "--irsa takes the role ARN"),
        ("IRSA with a user ARN", Some("prod"), vec!["--irsa", "arn:aws:iam::123456789012:user/backup"], vec![], "not an IAM role ARN"),
        ("IRSA with an http webhook", Some("prod"), vec!["--irsa", ROLE_ARN, "http://hooks.slack.com/x"], vec![], "Slack webhook URL"),
        ("existing Secret without a name", Some("prod"), vec!["--existing-secret"], vec![], "--existing-secret takes"),
        ("existing Secret with a bad name", Some("prod"), vec!["--existing-secret", "Backup_Keys"], vec![], "not a Kubernetes object name"),
        (
            "existing Secret with a heartbeat",
            Some("prod"),
            vec!["--existing-secret", "keys"],
            vec![("HEARTBEAT_URL", "https://hc-ping.com/x")],
            "put the URL into that Secret",
        ),
        (
            "malformed heartbeat",
            Some("prod"),
            vec![&good, ROLE_ARN, WEBHOOK],
            vec![("HEARTBEAT_URL", "hc-ping.com/dummyWebhookSecret42")],
            "HEARTBEAT_URL is not",
        ),
        ("unknown option", Some("prod"), vec!["--keys", ROLE_ARN], vec![], "unknown option"),
        ("webhook first", Some("prod"), vec![WEBHOOK, ROLE_ARN, &good], vec![], "withheld"),
        ("webhook as ARN", Some("prod"), vec![&good, WEBHOOK, WEBHOOK], vec![], "not an IAM role ARN"),
        ("helm missing", Some("prod"), vec![&good, ROLE_ARN, WEBHOOK], vec![("HELM", &no_tool)], "helm not found"),
        ("kubectl missing", Some("prod"), vec![&good, ROLE_ARN, WEBHOOK], vec![("KUBECTL", &no_tool)], "kubectl not found"),
    ];
    for (label, stage, args, env, message) in cases {
        let output = setup(&stubs, stage, &args, &env);
        assert_eq!(output.status.code(), Some(2), "{label}: {}", text(&output));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("setup.sh: error:") && err.contains(message), "{label}: expected {message:?} in:\n{err}");
        assert_no_secret(&output, label);
        assert!(stubs.calls().is_empty(), "{label}: ran {:?}", stubs.calls());
    }
}

#[test]
fn setup_installs_with_exactly_the_expected_commands_and_no_secret_on_a_command_line() {
    let test = "setup_installs_with_exactly_the_expected_commands_and_no_secret_on_a_command_line";
    let python = python(test);
    let helm_binary = helm(test);
    let stubs = Stubs::new();
    let dir = tempfile::tempdir().unwrap();
    // The two CSVs the AWS console downloads; the second as a Windows download with a
    // BOM, CRLF, other column order, a quoted password holding a comma, no final newline.
    let access_key = temp_file(dir.path(), "ingest_accessKeys.csv", ACCESS_KEY_CSV.as_bytes());
    let user_credentials = temp_file(
        dir.path(),
        "credentials.csv",
        format!(
            "\u{feff}User name,Password,Secret access key,Access key ID,Console login link\r\n\
             ingest-backup,\"pa,ss\"\"word\",{SECRET_KEY},{KEY_ID},https://123456789012.signin.aws.amazon.com/console"
        )
        .as_bytes(),
    );
    let arns = [ROLE_ARN, "arn:aws-cn:iam::123456789012:role/service/ingest-backup", "arn:aws-us-gov:iam::123456789012:role/a.b@c+d=e,f_g-h"];
    for (csv, arn) in [(&access_key, arns[0]), (&user_credentials, arns[1]), (&access_key, arns[2])] {
        for (stage, config) in stages() {
            for attempt in 0..2 {
                stubs.reset();
                let output = setup(&stubs, Some(&stage), &[&csv.to_string_lossy(), arn, WEBHOOK], &[]);
                let label = format!("{} {stage} {arn} run {attempt}", csv.display());
                assert_eq!(output.status.code(), Some(0), "{label}: {}", text(&output));
                assert_no_secret(&output, &label);

                let calls = stubs.calls();
                assert_eq!(calls.len(), 2, "{label}: {calls:?}");
                assert_eq!(calls[0], ["kubectl", "config", "current-context"]);
                let (mode, dir_mode, values_path, values) = stubs.file(1);
                let expected = [
                    "helm".to_string(),
                    "upgrade".into(),
                    "--install".into(),
                    "ingest-backup".into(),
                    chart().to_string_lossy().into_owned(),
                    "-f".into(),
                    config.to_string_lossy().into_owned(),
                    "-f".into(),
                    values_path.clone(),
                ];
                assert_eq!(calls[1], expected, "{label}");
                for call in &calls {
                    let line = call.join(" ");
                    for secret in [KEY_ID, SECRET_KEY, WEBHOOK] {
                        assert!(!line.contains(secret), "{label}: a secret is on a command line: {line}");
                    }
                }
                assert_eq!((mode.as_str(), dir_mode.as_str()), ("600", "700"), "{label}: the values file is private");
                assert!(!Path::new(&values_path).exists(), "{label}: the values file outlived the run");
                assert_eq!(stubs.file(0).3, std::fs::read_to_string(&config).unwrap());

                let Some(python) = &python else { continue };
                let parsed = yaml_to_json(python, &values).remove(0);
                assert_eq!(
                    parsed,
                    serde_json::json!({"aws": {"roleArn": arn}, "secrets": {"awsAccessKeyId": KEY_ID, "awsSecretAccessKey": SECRET_KEY, "slackWebhookUrl": WEBHOOK}}),
                    "{label}"
                );
                // What helm would install from these files: the keys in the Secret.
                if let (Some(helm), true) = (&helm_binary, attempt == 0) {
                    let kept = temp_file(dir.path(), "kept.yaml", values.as_bytes());
                    let (_, docs) = render(helm, python, &["-f", &config.to_string_lossy(), "-f", &kept.to_string_lossy()]);
                    let secret = object(&docs, "Secret", "ingest-backup");
                    assert_eq!(secret["data"]["AWS_SECRET_ACCESS_KEY"], base64(SECRET_KEY), "{label}");
                    assert_eq!(secret["data"]["SLACK_WEBHOOK_URL"], base64(WEBHOOK), "{label}");
                    assert_eq!(env_of(object(&docs, "CronJob", "ingest-backup"))["AWS_ROLE_ARN"]["value"], arn);
                }
            }
        }
    }
}

#[test]
fn setup_installs_with_irsa_or_an_existing_secret_without_a_csv() {
    let test = "setup_installs_with_irsa_or_an_existing_secret_without_a_csv";
    let python = python(test);
    let helm_binary = helm(test);
    let stubs = Stubs::new();
    let prod = root().join("helm/config/prod.yaml");
    let annotation = serde_json::json!({"eks.amazonaws.com/role-arn": ROLE_ARN});
    // (script arguments, environment, expected values)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, Value)> = vec![
        (vec!["--irsa", ROLE_ARN], vec![], serde_json::json!({"serviceAccount": {"annotations": annotation}})),
        (
            vec!["--irsa", ROLE_ARN, WEBHOOK],
            vec![("HEARTBEAT_URL", HEARTBEAT)],
            serde_json::json!({"serviceAccount": {"annotations": annotation}, "secrets": {"slackWebhookUrl": WEBHOOK}, "heartbeat": {"url": HEARTBEAT}}),
        ),
        (vec!["--existing-secret", "backup-keys"], vec![], serde_json::json!({"secrets": {"existingSecret": "backup-keys"}})),
        (
            vec!["--existing-secret", "backup-keys", ROLE_ARN],
            vec![],
            serde_json::json!({"aws": {"roleArn": ROLE_ARN}, "secrets": {"existingSecret": "backup-keys"}}),
        ),
    ];
    for (args, env, expected) in cases {
        stubs.reset();
        let output = setup(&stubs, Some("prod"), &args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        assert_no_secret(&output, &format!("{args:?}"));
        assert!(!text(&output).contains("dummyHeartbeatSecret42"), "{}", text(&output));
        let calls = stubs.calls();
        let (mode, dir_mode, values_path, values) = stubs.file(1);
        assert_eq!(
            calls[1],
            ["helm", "upgrade", "--install", "ingest-backup", &chart().to_string_lossy(), "-f", &prod.to_string_lossy(), "-f", &values_path],
            "{args:?}"
        );
        assert_eq!((mode.as_str(), dir_mode.as_str()), ("600", "700"));
        let Some(python) = &python else { continue };
        assert_eq!(yaml_to_json(python, &values).remove(0), expected, "{args:?}");
        // What helm would install: IRSA without keys or AWS_ROLE_ARN, or the existing Secret.
        if let Some(helm) = &helm_binary {
            let dir = tempfile::tempdir().unwrap();
            let kept = temp_file(dir.path(), "kept.yaml", values.as_bytes());
            let (_, docs) = render(helm, python, &["-f", &prod.to_string_lossy(), "-f", &kept.to_string_lossy()]);
            let env = env_of(object(&docs, "CronJob", "ingest-backup"));
            assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY") || args[0] == "--existing-secret", "{args:?}");
            if args[0] == "--irsa" {
                assert!(!env.contains_key("AWS_ROLE_ARN"), "IRSA assumes no second role");
                assert_eq!(object(&docs, "ServiceAccount", "ingest-backup")["metadata"]["annotations"], annotation);
            }
        }
    }
}

#[test]
fn setup_runs_from_the_helm_directory_as_in_the_original_scripts() {
    let stubs = Stubs::new();
    let dir = tempfile::tempdir().unwrap();
    let csv = temp_file(dir.path(), "keys.csv", ACCESS_KEY_CSV.as_bytes());
    let output = run(Command::new("./setup.sh")
        .current_dir(root().join("helm"))
        .args([csv.to_str().unwrap(), ROLE_ARN, WEBHOOK])
        .env("DEPLOYMENT_STAGE", "dev")
        .env("HELM", stubs.helm())
        .env("KUBECTL", stubs.kubectl()));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(stubs.calls()[1][6], root().join("helm/config/dev.yaml").to_string_lossy());
}

fn reschedule(stubs: &Stubs, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    run(Command::new(program)
        .current_dir(root().join("helm"))
        .args(args)
        .env("KUBECTL", stubs.kubectl())
        .env_remove("HELM_NAMESPACE")
        .env_remove("VERIFY_OFFSET_MINUTES")
        .env_remove("VERIFY_CRON_SCHEDULE")
        .envs(env.iter().copied()))
}

fn patch_call(cronjob: &str, schedule: &str) -> Vec<String> {
    ["kubectl", "patch", "cronjob", cronjob, "-p", &format!(r#"{{"spec":{{"schedule":"{schedule}"}}}}"#)].map(String::from).to_vec()
}

/// One rule set for cron expressions, run through both the chart (`cronSchedule`) and
/// `helm/reschedule.sh`: `None` is accepted (as Kubernetes accepts it), `Some(message)`
/// is refused by both with that message.
const CRON_RULES: &[(&str, Option<&str>)] = &[
    ("0 0 * * *", None),
    (" 0 0 * * * ", None),
    ("*/5 * * * *", None),
    ("0-30/10 1,13 1-15 jan-jun,DEC mon-fri", None),
    ("59 23 31 12 6", None),
    ("0 0 * * SUN", None),
    ("@daily", None),
    ("@hourly", None),
    ("@weekly", None),
    ("@monthly", None),
    ("@yearly", None),
    ("@annually", None),
    ("@midnight", None),
    ("", Some("has 0 fields")),
    ("* * * *", Some("exactly five")),
    ("0 0 * * * *", Some("exactly five")),
    ("@every 5m", Some("not one of Kubernetes' macros")),
    ("@fortnightly", Some("not one of Kubernetes' macros")),
    ("@DAILY", Some("not one of Kubernetes' macros")),
    ("60 0 * * *", Some("outside 0-59")),
    ("0 24 * * *", Some("outside 0-23")),
    ("0 0 0 * *", Some("outside 1-31")),
    ("0 0 32 * *", Some("outside 1-31")),
    ("0 0 * 13 *", Some("outside 1-12")),
    ("0 0 * 0 *", Some("outside 1-12")),
    ("0 0 * * 8", Some("outside 0-6")),
    ("0 0 * * 7", Some("Sunday as 0")),
    ("0 0 * * 5-7", Some("Sunday as 0")),
    ("0 0 * FOO *", Some("not a value")),
    ("0 0 * * MONDAY", Some("not a value")),
    ("x 0 * * *", Some("not a value")),
    ("*/0 * * * *", Some("step")),
    ("*/60 * * * *", Some("step")),
    ("5-1 * * * *", Some("backwards")),
    ("1,,2 * * * *", Some("empty list item")),
    ("1, * * * *", Some("empty list item")),
    ("0 0 * * *;", Some("may only hold")),
    ("0 0 * * $(id)", Some("may only hold")),
    ("0 0 ? * *", Some("may only hold")),
    ("0 0 * * *\n0 1 * * *", Some("one line")),
];

#[test]
fn the_chart_checks_cron_expressions_by_the_rules_reschedule_applies() {
    let test = "the_chart_checks_cron_expressions_by_the_rules_reschedule_applies";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    for (expression, refusal) in CRON_RULES {
        // A values file holds any string exactly (JSON is YAML); explicit verify and
        // prune schedules keep the shift rule out of it.
        let values = temp_file(
            dir.path(),
            "cron.yaml",
            serde_json::json!({"cronSchedule": expression, "verify": {"cronSchedule": "7 3 * * *"}, "retention": {"cronSchedule": "7 15 * * *"}})
                .to_string()
                .as_bytes(),
        );
        let output = template(&helm, &["-f", &prod, "-f", &values.to_string_lossy()]);
        match refusal {
            None => {
                assert!(output.status.success(), "{expression:?} refused: {}", text(&output));
                let docs = yaml_to_json(&python, &String::from_utf8_lossy(&output.stdout));
                let normalized = expression.split_whitespace().collect::<Vec<_>>().join(" ");
                assert_eq!(object(&docs, "CronJob", "ingest-backup")["spec"]["schedule"], normalized.as_str());
            }
            Some(message) => {
                assert!(!output.status.success(), "{expression:?} rendered");
                assert!(text(&output).contains(message), "{expression:?}: expected {message:?} in {}", text(&output));
            }
        }
        // verify.cronSchedule follows the same rules.
        let values = temp_file(dir.path(), "cron.yaml", serde_json::json!({"verify": {"cronSchedule": expression}}).to_string().as_bytes());
        let output = template(&helm, &["-f", &prod, "-f", &values.to_string_lossy()]);
        if expression.trim().is_empty() {
            assert!(output.status.success(), "an empty verify.cronSchedule means: derive it");
        } else {
            assert_eq!(output.status.success(), refusal.is_none(), "verify.cronSchedule {expression:?}: {}", text(&output));
        }
    }
    // A macro is shifted as the schedule it stands for.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set-string", "cronSchedule=@daily"]);
    assert_eq!(object(&docs, "CronJob", "ingest-backup-verify")["spec"]["schedule"], "30 0 * * *");
}

#[test]
fn reschedule_refuses_bad_expressions_before_patching_anything() {
    let stubs = Stubs::new();
    for (expression, refusal) in CRON_RULES {
        let Some(message) = refusal else { continue };
        let output = reschedule(&stubs, "./reschedule.sh", &[expression], &[]);
        assert_eq!(output.status.code(), Some(2), "{expression:?}: {}", text(&output));
        assert!(text(&output).contains(message), "{expression:?}: expected {message:?} in {}", text(&output));
        assert!(stubs.calls().is_empty(), "{expression:?} patched {:?}", stubs.calls());
    }
    for (args, env, message) in [
        (vec![], vec![], "expected one argument"),
        (vec!["0 0 * * *", "extra"], vec![], "expected one argument"),
        (vec!["0 0 * * *"], vec![("VERIFY_OFFSET_MINUTES", "0")], "VERIFY_OFFSET_MINUTES"),
        (vec!["0 0 * * *"], vec![("VERIFY_OFFSET_MINUTES", "1440")], "VERIFY_OFFSET_MINUTES"),
        (vec!["0 0 * * *"], vec![("VERIFY_OFFSET_MINUTES", "ten")], "VERIFY_OFFSET_MINUTES"),
        (vec!["0 0 * * *"], vec![("VERIFY_CRON_SCHEDULE", "61 * * * *")], "VERIFY_CRON_SCHEDULE"),
        (vec!["0 0 * * *"], vec![("KUBECTL", "/nonexistent/kubectl")], "kubectl not found"),
        (vec!["-n"], vec![], "needs a namespace"),
        (vec!["-n", "Bad_NS", "0 0 * * *"], vec![], "not a Kubernetes namespace name"),
        (vec!["0 0 * * *"], vec![("HELM_NAMESPACE", "a b")], "not a Kubernetes namespace name"),
    ] {
        let output = reschedule(&stubs, "./reschedule.sh", &args, &env);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {}", text(&output));
        assert!(text(&output).contains(message), "{args:?} {env:?}: {}", text(&output));
        assert!(stubs.calls().is_empty());
    }
}

#[test]
fn reschedule_patches_both_cronjobs_as_the_chart_would_schedule_them() {
    let stubs = Stubs::new();
    // The original ingest backup scripts' examples, as written (trailing blank included), through both names.
    for (program, expression, verify) in [
        ("./reschedule.sh", "0 0 * * * ", Some("30 0 * * *")),
        ("./reschedule", "*/5 * * * * ", None),
        ("./reschedule.sh", "  0   2 * * *  ", Some("30 2 * * *")),
        // Names in any case, ranges and steps pass the field checks (the minute range
        // cannot be shifted by the chart's rule).
        ("./reschedule.sh", "0-30/10 1,13 1-15 jan-jun,DEC mon-fri", None),
    ] {
        stubs.reset();
        let output = reschedule(&stubs, program, &[expression], &[]);
        assert_eq!(output.status.code(), Some(0), "{expression:?}: {}", text(&output));
        let normalized = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        let calls = stubs.calls();
        assert_eq!(calls[0], patch_call("ingest-backup", &normalized), "{expression:?}");
        match verify {
            Some(verify) => assert_eq!(calls[1..], [patch_call("ingest-backup-verify", verify)], "{expression:?}"),
            None => {
                assert_eq!(calls.len(), 1, "{expression:?}: {calls:?}");
                let err = text(&output);
                assert!(err.contains("VERIFY_CRON_SCHEDULE") && err.contains("verify.cronSchedule"), "{err}");
            }
        }
    }

    // The same shift as the chart, for every case of the shared table.
    for (schedule, offset, expected) in SHIFTS {
        stubs.reset();
        let output = reschedule(&stubs, "./reschedule.sh", &[schedule], &[("VERIFY_OFFSET_MINUTES", &offset.to_string())]);
        assert_eq!(output.status.code(), Some(0), "{schedule:?}: {}", text(&output));
        let calls = stubs.calls();
        assert_eq!(calls[0], patch_call("ingest-backup", schedule.trim()));
        match expected {
            Some(expected) => assert_eq!(calls[1..], [patch_call("ingest-backup-verify", expected)], "{schedule:?} + {offset}"),
            None => assert_eq!(calls.len(), 1, "{schedule:?} + {offset}: {calls:?}"),
        }
    }

    // Every expression the shared rules accept is patched as written (trimmed).
    for (expression, refusal) in CRON_RULES {
        if refusal.is_some() {
            continue;
        }
        stubs.reset();
        let output = reschedule(&stubs, "./reschedule.sh", &[expression], &[]);
        assert_eq!(output.status.code(), Some(0), "{expression:?}: {}", text(&output));
        let normalized = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(stubs.calls()[0], patch_call("ingest-backup", &normalized));
    }
    // A macro is shifted as the schedule it stands for, as the chart does.
    stubs.reset();
    let output = reschedule(&stubs, "./reschedule.sh", &["@daily"], &[]);
    assert!(output.status.success(), "{}", text(&output));
    // Exactly these two patches: the point-in-time CronJob keeps its own schedule.
    assert_eq!(stubs.calls(), [patch_call("ingest-backup", "@daily"), patch_call("ingest-backup-verify", "30 0 * * *")]);

    // The namespace: -n, else HELM_NAMESPACE (as helm/setup.sh installs with).
    for (args, env) in [(vec!["-n", "backups", "0 2 * * *"], vec![]), (vec!["0 2 * * *"], vec![("HELM_NAMESPACE", "backups")])] {
        stubs.reset();
        let output = reschedule(&stubs, "./reschedule.sh", &args, &env);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        let in_namespace = |cronjob: &str, schedule: &str| {
            let mut call = patch_call(cronjob, schedule);
            call.splice(1..1, ["--namespace".to_string(), "backups".to_string()]);
            call
        };
        assert_eq!(stubs.calls(), [in_namespace("ingest-backup", "0 2 * * *"), in_namespace("ingest-backup-verify", "30 2 * * *")], "{args:?}");
    }

    // An explicit verify schedule for one the rule cannot shift.
    stubs.reset();
    let output = reschedule(&stubs, "./reschedule.sh", &["*/5 * * * *"], &[("VERIFY_CRON_SCHEDULE", " 2-59/5 * * * * ")]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(stubs.calls(), [patch_call("ingest-backup", "*/5 * * * *"), patch_call("ingest-backup-verify", "2-59/5 * * * *")]);
}

// ---------------------------------------------------------------------------------
// Container image and compose stack

#[test]
fn dockerfile_passes_hadolint_and_builds_a_distroless_non_root_image() {
    let Some(hadolint) = hadolint("dockerfile_passes_hadolint_and_builds_a_distroless_non_root_image") else { return };
    let output = run(Command::new(hadolint).current_dir(root()).arg("Dockerfile"));
    assert!(output.status.success(), "hadolint:\n{}", text(&output));

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    let builder = froms[0].strip_prefix("FROM rust:").expect("a Rust builder").split('-').next().unwrap();
    let version: Vec<u32> = builder.split('.').map(|p| p.parse().unwrap()).collect();
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv_line = cargo.lines().find(|l| l.starts_with("rust-version")).unwrap();
    let msrv: Vec<u32> = msrv_line.split('"').nth(1).unwrap().split('.').map(|p| p.parse().unwrap()).collect();
    assert!(version >= msrv, "builder {builder} older than rust-version {msrv:?}");
    assert_eq!(froms[1], "FROM gcr.io/distroless/cc-debian12:nonroot");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("\nUSER 65532:65532\n"));
    assert!(dockerfile.contains("\nENTRYPOINT [\"/usr/local/bin/ingest-backup\"]\n"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for entry in ["target", ".git", "backups", "*.csv"] {
        assert!(ignore.lines().any(|l| l == entry), ".dockerignore lacks {entry}");
    }
}

#[test]
fn compose_file_is_valid_and_runs_scheduled_backups() {
    let test = "compose_file_is_valid_and_runs_scheduled_backups";
    let (Some(check), Some(python)) = (compose_check(test), python(test)) else { return };
    let output = run(Command::new(&check).current_dir(root()).args(["--builtin-schema", "vendor.compose-spec", "docker-compose.yml"]));
    assert!(output.status.success(), "compose-spec schema:\n{}", text(&output));

    // The checker rejects what Compose would: an unknown key.
    let dir = tempfile::tempdir().unwrap();
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let broken = temp_file(dir.path(), "docker-compose.yml", compose.replace("depends_on:", "depend_on:").as_bytes());
    let output = run(Command::new(&check).args(["--builtin-schema", "vendor.compose-spec"]).arg(&broken));
    assert!(!output.status.success(), "an unknown key passed: {}", text(&output));

    let doc = yaml_to_json(&python, &compose).remove(0);
    let services = doc["services"].as_object().unwrap();
    let volumes = doc["volumes"].as_object().unwrap();
    for (name, service) in services {
        for dependency in service["depends_on"].as_object().into_iter().flat_map(|d| d.keys()) {
            assert!(services.contains_key(dependency), "{name} depends on unknown {dependency}");
        }
        for mount in service["volumes"].as_array().into_iter().flatten() {
            let source = mount.as_str().unwrap().split(':').next().unwrap();
            assert!(volumes.contains_key(source), "{name}: volume {source} not declared");
        }
    }

    let mongo = &services["mongo"];
    assert!(mongo["image"].as_str().unwrap().starts_with("mongo:7"));
    assert!(mongo["command"].as_array().unwrap().iter().any(|a| a == "--replSet"), "a replica set, so the oplog exists");
    assert!(mongo["healthcheck"]["test"].to_string().contains("rs.initiate"));
    assert!(services["create-bucket"]["command"].to_string().contains("mc mb"));

    let backup = &services["ingest-backup"];
    assert_eq!(backup["command"], serde_json::json!(["schedule"]));
    assert_eq!(backup["build"]["context"], ".");
    let env = backup["environment"].as_object().unwrap();
    for key in
        ["S3_BUCKET", "BACKUP_DIR", "MONGO_URI", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CRON_SCHEDULE", "SLACK_WEBHOOK_URL"]
    {
        assert!(env.contains_key(key), "ingest-backup lacks {key}");
    }
    assert!(env["MONGO_URI"].as_str().unwrap().starts_with("mongodb://mongo:27017"));
    assert_eq!(env["S3_ENDPOINT"], "http://minio:9000");
    assert_eq!(backup["depends_on"]["mongo"]["condition"], "service_healthy");
    assert_eq!(backup["depends_on"]["create-bucket"]["condition"], "service_completed_successfully");
    assert_eq!(backup["user"], "65532:65532");
    assert_eq!(backup["read_only"], true);

    // A first look: a backup at start, sample data only when asked and the database is
    // empty, a healthcheck through the binary (the image has no curl), and time to stop.
    assert_eq!(env["RUN_ON_START"], "${RUN_ON_START:-true}");
    // podman-compose passes an empty default (`${VAR:-}`) on literally, and the tool then
    // refuses the value and restarts in a loop: unset alert variables are plain `${VAR}`.
    let compose_text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    assert!(!compose_text.contains(":-}"), "docker-compose.yml has an empty ${{VAR:-}} default");
    assert!(env.contains_key("HEARTBEAT_URL"));
    assert_eq!(backup["healthcheck"]["test"], serde_json::json!(["CMD", "/usr/local/bin/ingest-backup", "healthcheck"]));
    assert_eq!(backup["stop_grace_period"], "150s", "25 s grace period + 60 s abort + 30 s alert, with room");
    assert_eq!(backup["depends_on"]["sample-data"]["condition"], "service_completed_successfully");
    let sample = &services["sample-data"];
    assert_eq!(sample["command"], serde_json::json!(["sample-data", "--if-empty", "--size-mb", "${SAMPLE_DATA_MB:-0}"]));
    assert_eq!(sample["image"], backup["image"]);
    assert_eq!(sample["depends_on"]["mongo"]["condition"], "service_healthy");

    // Opt-in by profile: a scratch server and a one-shot drill into it; the exporter.
    let scratch = &services["mongo-scratch"];
    assert_eq!(scratch["profiles"], serde_json::json!(["drill"]));
    assert!(scratch["image"].as_str().unwrap().starts_with("mongo:7"));
    assert!(scratch["command"].as_array().unwrap().iter().any(|a| a == "--replSet"), "a replica set like the source");
    assert!(scratch["healthcheck"]["test"].to_string().contains("rs.initiate"));
    assert!(scratch.get("ports").is_none(), "the scratch server is reached inside the stack only");
    let drill = &services["drill"];
    assert_eq!(drill["profiles"], serde_json::json!(["drill"]));
    assert_eq!(drill["command"], serde_json::json!(["drill", "verified", "--uri", "mongodb://mongo-scratch:27017/?directConnection=true"]));
    assert_eq!(drill["image"], backup["image"]);
    assert_eq!(drill["restart"], "no");
    assert_eq!(drill["depends_on"]["mongo-scratch"]["condition"], "service_healthy");
    assert_eq!(drill["depends_on"]["create-bucket"]["condition"], "service_completed_successfully");
    assert!(compose_text.contains("docker compose --profile drill run --rm drill"), "the header says how to run a drill");
    let exporter = &services["exporter"];
    assert_eq!(exporter["profiles"], serde_json::json!(["exporter"]));
    assert_eq!(exporter["command"], serde_json::json!(["exporter"]));
    assert_eq!(exporter["image"], backup["image"]);
    assert_eq!(exporter["ports"], serde_json::json!(["127.0.0.1:9091:9091"]));
    assert_eq!(exporter["environment"]["EXPORTER_LISTEN"], "0.0.0.0:9091");
    assert_eq!(
        exporter["healthcheck"]["test"],
        serde_json::json!(["CMD", "/usr/local/bin/ingest-backup", "healthcheck", "--listen", "127.0.0.1:9091"])
    );
    for (name, service) in [("drill", drill), ("exporter", exporter)] {
        let own = service["environment"].as_object().unwrap();
        for key in ["S3_BUCKET", "BACKUP_DIR", "S3_ENDPOINT", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert_eq!(own[key], env[key], "{name} {key}: the store of the ingest-backup service");
        }
        assert!(!own.contains_key("MONGO_URI"), "{name} never gets the source");
        assert_eq!(service["user"], "65532:65532", "{name}");
        assert_eq!(service["read_only"], true, "{name}");
        assert_eq!(service["cap_drop"], serde_json::json!(["ALL"]), "{name}");
    }
    for key in ["SLACK_WEBHOOK_URL", "ALERT_WEBHOOK_URL", "HEARTBEAT_URL"] {
        assert_eq!(drill["environment"][key], env[key], "the drill alerts like the scheduler: {key}");
    }
    // Every published port, old or new, on the loopback address only.
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{name} publishes {port} beyond 127.0.0.1");
        }
    }
}

// ---------------------------------------------------------------------------------
// The rendered container, run for real

/// The backup container's arguments and environment as the chart renders them, with
/// every secretKeyRef resolved from the rendered Secret (what the kubelet does).
fn container_command(docs: &[Value], cronjob: &str) -> (Vec<String>, Vec<(String, String)>) {
    use base64::Engine;
    let secret = docs.iter().find(|d| d["kind"] == "Secret");
    let c = container(object(docs, "CronJob", cronjob));
    let args = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let env = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => {
                    let reference = &e["valueFrom"]["secretKeyRef"];
                    let secret = secret.expect("a secretKeyRef needs the Secret");
                    assert_eq!(secret["metadata"]["name"], reference["name"]);
                    let data = secret["data"][reference["key"].as_str().unwrap()].as_str().unwrap();
                    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap()
                }
            };
            (name, value)
        })
        .collect();
    (args, env)
}

/// Values pointing the chart at a test server and MinIO, with MinIO's keys in the Secret.
fn site_values(dir: &Path, mongo_uri: &str, endpoint: &str) -> PathBuf {
    temp_file(
        dir,
        "site.yaml",
        format!(
            "mongo:\n  uri: '{}'\ns3:\n  bucket: '{}'\n  endpoint: '{}'\n  region: us-east-1\nsecrets:\n  awsAccessKeyId: '{}'\n  awsSecretAccessKey: '{}'\n",
            mongo_uri,
            common::minio::BUCKET,
            endpoint,
            common::minio::ACCESS_KEY,
            common::minio::SECRET_KEY
        )
        .as_bytes(),
    )
}

/// Runs the binary as the kubelet runs the container of `cronjob`: exactly its rendered
/// arguments and environment (secrets resolved), nothing else from the host, the
/// emptyDir spool a scratch directory. Returns the arguments and the run's output.
fn run_container(docs: &[Value], cronjob: &str, dir: &Path) -> (Vec<String>, Output) {
    let (args, mut env) = container_command(docs, cronjob);
    // The emptyDir mounts, here temp directories; nothing else from the host.
    let spool = tempfile::tempdir().unwrap();
    for (name, value) in env.iter_mut() {
        if name == "INGEST_BACKUP_SPOOL_DIR" {
            *value = spool.path().to_string_lossy().into_owned();
        }
    }
    let output = Command::new(common::binary())
        .args(&args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TMPDIR", spool.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(dir)
        .output()
        .unwrap();
    (args, output)
}

/// What the rendered-container tests run against: a source with 1 MiB of sample data,
/// a MinIO, and the prod stage rendered for them (with `extra` helm arguments).
struct RenderedProd {
    _server: common::Server,
    minio: common::minio::Minio,
    dir: tempfile::TempDir,
    docs: Vec<Value>,
}

async fn rendered_prod(test: &str, seed: u64, extra: &[&str]) -> Option<RenderedProd> {
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return None };
    let minio_binary = common::minio::binary_or_skip(test)?;
    let server = common::Server::start();
    let minio = common::minio::Minio::start(minio_binary).await;
    let spec = ingest_backup::sample::SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed };
    ingest_backup::sample::load(&server.client().await, &spec).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let values = site_values(dir.path(), &server.uri(), &minio.endpoint());
    let prod = root().join("helm/config/prod.yaml");
    let mut args = vec!["-f".to_string(), prod.to_string_lossy().into_owned(), "-f".to_string(), values.to_string_lossy().into_owned()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, docs) = render(&helm, &python, &args);
    Some(RenderedProd { _server: server, minio, dir, docs })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_backup_container_backs_up_to_s3() {
    // retention.afterBackup true: the backup Job prunes after the backup (PRUNE_AFTER_BACKUP).
    let Some(site) = rendered_prod("the_rendered_backup_container_backs_up_to_s3", 11, &["--set", "retention.afterBackup=true"]).await else {
        return;
    };
    let (args, output) = run_container(&site.docs, "ingest-backup", site.dir.path());
    assert_eq!(args, ["backup"]);
    let all = text(&output);
    assert!(output.status.success(), "the rendered backup container failed:\n{all}");
    assert!(!all.contains(common::minio::SECRET_KEY), "the secret key was printed");
    let keys = site.minio.keys().await;
    assert!(keys.iter().any(|k| k.starts_with("prod/") && k.ends_with(".tar.gz")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("prod/") && k.ends_with(".manifest.json")), "{keys:?}");
    // The stage's retention ran after the backup, and released its lock.
    assert!(all.contains("prune of s3://"), "the prune after the backup did not run:\n{all}");
    assert!(!keys.iter().any(|k| k.starts_with("prod/locks/")), "{keys:?}");
}

/// With the prune CronJob (retention.afterBackup false, prod's default), the rendered
/// backup container backs up without pruning and the rendered prune container, which has no database
/// URI, prunes: the binary takes both exactly as the chart renders them.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_prune_container_prunes_what_the_backup_container_left() {
    let Some(site) = rendered_prod("the_rendered_prune_container_prunes_what_the_backup_container_left", 12, &[]).await else { return };
    let (args, output) = run_container(&site.docs, "ingest-backup", site.dir.path());
    assert_eq!(args, ["backup"]);
    let all = text(&output);
    assert!(output.status.success(), "the rendered backup container failed:\n{all}");
    assert!(!all.contains("prune of s3://"), "the backup Job pruned:\n{all}");

    let (args, output) = run_container(&site.docs, "ingest-backup-prune", site.dir.path());
    assert_eq!(args, ["prune"]);
    let all = text(&output);
    assert!(output.status.success(), "the rendered prune container failed:\n{all}");
    assert!(all.contains("prune of s3://"), "{all}");
    assert!(!all.contains(common::minio::SECRET_KEY), "the secret key was printed");
    let keys = site.minio.keys().await;
    assert!(keys.iter().any(|k| k.starts_with("prod/") && k.ends_with(".tar.gz")), "the newest backup is kept: {keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("prod/locks/")), "both runs released their locks: {keys:?}");
}

// ---------------------------------------------------------------------------------
// Restore, alerting rules

fn restore_script(stubs: &Stubs, args: &[&str], env: &[(&str, &str)]) -> Output {
    run(Command::new(root().join("helm/restore.sh"))
        .args(args)
        .env("HELM", stubs.helm())
        .env("KUBECTL", stubs.kubectl())
        .env_remove("HELM_NAMESPACE")
        .envs(env.iter().copied()))
}

#[test]
fn restore_script_runs_exactly_helm_template_and_kubectl_create() {
    let stubs = Stubs::new();
    let config = |stage: &str| root().join(format!("helm/config/{stage}.yaml")).to_string_lossy().into_owned();
    let helm_call = |stage: &str, sets: &[&str], namespace: Option<&str>| {
        let mut call: Vec<String> =
            ["helm", "template", "ingest-backup", &chart().to_string_lossy(), "-f", &config(stage)].map(String::from).to_vec();
        call.extend(sets.iter().map(|s| s.to_string()));
        call.extend(["--show-only".to_string(), "templates/restore-job.yaml".to_string()]);
        if let Some(namespace) = namespace {
            call.extend(["--namespace".to_string(), namespace.to_string()]);
        }
        call
    };
    // (script arguments, environment, expected calls, expected namespace)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, Vec<String>, Option<&str>)> = vec![
        (
            vec!["prod", "2018-04-04T11_37"],
            vec![],
            helm_call("prod", &["--set", "restore.enabled=true", "--set-string", "restore.backup=2018-04-04T11_37"], None),
            None,
        ),
        (
            vec!["-n", "backups", "staging", "latest", "--drop", "--to-time", "2018-04-04T11:50:00Z", "--target-secret", "scratch-mongo:MONGO_URI"],
            vec![],
            helm_call(
                "staging",
                &[
                    "--set",
                    "restore.enabled=true",
                    "--set-string",
                    "restore.backup=latest",
                    "--set",
                    "restore.drop=true",
                    "--set-string",
                    "restore.toTime=2018-04-04T11:50:00Z",
                    "--set-string",
                    "restore.targetSecret.name=scratch-mongo",
                    "--set-string",
                    "restore.targetSecret.key=MONGO_URI",
                ],
                Some("backups"),
            ),
            Some("backups"),
        ),
        (
            vec!["dev", "2018-04-04T11_37_05"],
            vec![("HELM_NAMESPACE", "ingest")],
            helm_call("dev", &["--set", "restore.enabled=true", "--set-string", "restore.backup=2018-04-04T11_37_05"], Some("ingest")),
            Some("ingest"),
        ),
    ];
    for (args, env, expected_helm, namespace) in cases {
        stubs.reset();
        let output = restore_script(&stubs, &args, &env);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", text(&output));
        let calls = stubs.calls();
        assert_eq!(calls.len(), 2, "{args:?}: {calls:?}");
        assert_eq!(calls[0], expected_helm, "{args:?}");
        // The rendered Job (the stub's empty output) went to kubectl create through a private file.
        let (_, _, job_file, _) = stubs.file(1);
        let mut expected_kubectl: Vec<String> = vec!["kubectl".into()];
        if let Some(namespace) = namespace {
            expected_kubectl.extend(["--namespace".to_string(), namespace.to_string()]);
        }
        expected_kubectl.extend(["create", "-f", &job_file, "-o", "name"].map(String::from));
        assert_eq!(calls[1], expected_kubectl, "{args:?}");
        assert!(!Path::new(&job_file).exists(), "the rendered Job file outlived the run");
    }

    for (args, env, message) in [
        (vec!["prod"], vec![], "expected STAGE and NAME"),
        (vec!["production", "latest"], vec![], "has no configuration"),
        (vec!["prod", "yesterday"], vec![], "not a backup name"),
        (vec!["prod", "latest", "--to-time"], vec![], "--to-time needs a time"),
        (vec!["prod", "latest", "--to-time", "$(id)"], vec![], "is not a time"),
        (vec!["prod", "latest", "--target-secret", "Bad_Name"], vec![], "not a Secret name"),
        (vec!["prod", "latest", "--force"], vec![], "unknown option"),
        (vec!["-n", "Bad_NS", "prod", "latest"], vec![], "not a Kubernetes namespace name"),
        (vec!["prod", "latest", "-f", "/nonexistent.yaml"], vec![], "not a readable file"),
        (vec!["prod", "latest"], vec![("HELM", "/nonexistent/helm")], "helm not found"),
        (vec!["prod", "latest"], vec![("KUBECTL", "/nonexistent/kubectl")], "kubectl not found"),
    ] {
        stubs.reset();
        let output = restore_script(&stubs, &args, &env);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(text(&output).contains(message), "{args:?}: expected {message:?} in {}", text(&output));
        assert!(stubs.calls().is_empty(), "{args:?} ran {:?}", stubs.calls());
    }
}

#[test]
fn the_restore_job_is_its_own_never_retried_job_reading_the_target_from_a_secret() {
    let test = "the_restore_job_is_its_own_never_retried_job_reading_the_target_from_a_secret";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let only = ["--show-only", "templates/restore-job.yaml"];
    let (_, docs) = render(
        &helm,
        &python,
        &[&["-f", &prod, "--set", "restore.enabled=true", "--set-string", "restore.backup=2018-04-04T11_37"][..], &only[..]].concat(),
    );
    assert_eq!(docs.len(), 1);
    let job = &docs[0];
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["generateName"], "ingest-backup-restore-");
    assert!(job["metadata"].get("ownerReferences").is_none(), "not owned by the CronJob");
    assert_eq!(job["metadata"]["labels"]["app.kubernetes.io/component"], "restore");
    assert_eq!(job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"], "restore");
    assert_eq!(job["spec"]["backoffLimit"], 0, "a restore is never run twice");
    assert!(job["spec"].get("podFailurePolicy").is_none(), "no rule may ignore a failure and run it again");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["restore", "2018-04-04T11_37"]), "no --drop unless asked, no URI in the args");
    let env: BTreeMap<String, Value> = c["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect();
    assert_eq!(env["RESTORE_URI"]["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "ingest-backup-restore-target", "key": "RESTORE_URI"}));
    assert!(!env.contains_key("MONGO_URI"), "the source is not the target");
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["optional"], true, "the install's Secret, when there is one");
    for quiet in ["SLACK_WEBHOOK_URL", "HEARTBEAT_URL"] {
        assert!(!env.contains_key(quiet), "a restore sends no {quiet}");
    }
    assert_eq!(env["BACKUP_DIR"]["value"], "prod");

    let (_, docs) = render(
        &helm,
        &python,
        &[
            &[
                "-f",
                &prod,
                "--set",
                "restore.enabled=true,restore.drop=true",
                "--set-string",
                "restore.backup=latest,restore.toTime=2018-04-04T11:50:00Z",
            ][..],
            &only[..],
        ]
        .concat(),
    );
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["restore", "latest", "--drop", "--to-time", "2018-04-04T11:50:00Z"])
    );

    // The install never renders it.
    let (_, docs) = render(&helm, &python, &["-f", &prod]);
    assert!(docs.iter().all(|d| d["kind"] != "Job"), "no Job in the release");
}

#[test]
fn the_drill_cronjob_restores_into_a_scratch_server_named_only_by_a_secret() {
    let test = "the_drill_cronjob_restores_into_a_scratch_server_named_only_by_a_secret";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();

    // Opt-in: without drill.enabled no CronJob, and a scratch URI given anyway goes nowhere.
    let (yaml, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("drill.scratchUri.value={SCRATCH_URI}")]);
    assert!(docs.iter().all(|d| d["metadata"]["name"] != "ingest-backup-drill"), "drills are opt-in");
    assert!(!yaml.contains("DRILL_URI") && !yaml.contains(&base64(SCRATCH_URI)), "a disabled drill's URI is rendered nowhere");

    // The scratch server from a Secret of the operator's.
    let existing = "drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch";
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", existing]);
    let drill = object(&docs, "CronJob", "ingest-backup-drill");
    assert_eq!(drill["metadata"]["labels"]["app.kubernetes.io/component"], "drill");
    assert_eq!(drill["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"], "drill");
    assert_eq!(drill["spec"]["schedule"], "0 3 * * 0", "weekly by default");
    assert_eq!(drill["spec"]["timeZone"], "Etc/UTC");
    assert_eq!(drill["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(container(drill)["args"], serde_json::json!(["drill", "verified"]), "the newest verified backup; no URI in the args");
    let job = &drill["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0, "a failed drill is a finding for a person, not retried");
    assert_eq!(job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"], serde_json::json!([2]));
    let env = env_of(drill);
    assert_eq!(
        env["DRILL_URI"],
        serde_json::json!({"name": "DRILL_URI", "valueFrom": {"secretKeyRef": {"name": "ingest-backup-drill-scratch", "key": "DRILL_URI"}}})
    );
    assert!(!env.contains_key("MONGO_URI") && !env.contains_key("RESTORE_URI"), "the drill is never given the source: {env:?}");
    assert_eq!(env["S3_BUCKET"]["value"], "ingest-backups");
    assert_eq!(env["BACKUP_DIR"]["value"], "prod");
    assert!(env.contains_key("NOTIFY_SUCCESS") && env.contains_key("HEARTBEAT_METHOD"), "it alerts like the other Jobs: {env:?}");
    assert!(env.keys().all(|k| !k.starts_with("PRUNE_") && !k.starts_with("LOCK_") && k != "AGE_RECIPIENTS"), "{env:?}");
    // Hardened like the other Jobs, the restore spooled to a size-limited emptyDir.
    let pod = pod_spec(drill);
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "ingest-backup");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let c = container(drill);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let spool = env["INGEST_BACKUP_SPOOL_DIR"]["value"].as_str().unwrap();
    assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "spool" && m["mountPath"] == spool));
    assert!(pod["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "spool" && v["emptyDir"]["sizeLimit"].is_string()));
    for cronjob in docs.iter().filter(|d| d["kind"] == "CronJob" && d["metadata"]["name"] != "ingest-backup-drill") {
        assert!(!env_of(cronjob).contains_key("DRILL_URI"), "{} gets the scratch server", cronjob["metadata"]["name"]);
    }

    // The scratch URI in the chart's Secret, with --keep and --parallel: the URI only ever
    // there, read through a secretKeyRef, never a literal value; the keys and webhooks as
    // for the other Jobs.
    let dir = tempfile::tempdir().unwrap();
    let values = temp_file(
        dir.path(),
        "drill.yaml",
        format!(
            "secrets:\n  awsAccessKeyId: '{KEY_ID}'\n  awsSecretAccessKey: '{SECRET_KEY}'\n  slackWebhookUrl: '{WEBHOOK}'\nheartbeat:\n  url: '{HEARTBEAT}'\n\
             drill:\n  enabled: true\n  keep: true\n  parallel: 8\n  scratchUri:\n    value: '{SCRATCH_URI}'\n"
        )
        .as_bytes(),
    );
    let values = values.to_string_lossy().into_owned();
    let (yaml, docs) = render(&helm, &python, &["-f", &prod, "-f", &values]);
    assert!(!yaml.contains(SCRATCH_URI), "the scratch URI is rendered in clear text");
    let secret = object(&docs, "Secret", "ingest-backup");
    assert_eq!(secret["data"]["DRILL_URI"], base64(SCRATCH_URI));
    assert_eq!(secret["data"]["AWS_SECRET_ACCESS_KEY"], base64(SECRET_KEY));
    for doc in docs.iter().filter(|d| d["kind"] != "Secret") {
        let json = doc.to_string();
        assert!(
            !json.contains(SCRATCH_URI) && !json.contains(&base64(SCRATCH_URI)),
            "the scratch URI is in {} {}",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
    let drill = object(&docs, "CronJob", "ingest-backup-drill");
    assert_eq!(container(drill)["args"], serde_json::json!(["drill", "verified", "--keep", "--parallel", "8"]));
    let env = env_of(drill);
    assert!(env["DRILL_URI"].get("value").is_none(), "DRILL_URI is a literal: {}", env["DRILL_URI"]);
    assert_eq!(env["DRILL_URI"]["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "ingest-backup", "key": "DRILL_URI"}));
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLACK_WEBHOOK_URL", "HEARTBEAT_URL"] {
        assert_eq!(env[key]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup", "drill {key}");
    }
    for cronjob in docs.iter().filter(|d| d["kind"] == "CronJob" && d["metadata"]["name"] != "ingest-backup-drill") {
        assert!(!env_of(cronjob).contains_key("DRILL_URI"), "{} gets the scratch server", cronjob["metadata"]["name"]);
    }
    let (_, restore) = render(&helm, &python, &[&["-f", &prod, "-f", &values][..], &RESTORE_ALONE[..]].concat());
    assert_eq!(restore.len(), 1);
    assert!(!restore[0].to_string().contains("DRILL_URI"), "the restore Job does not read the scratch server");

    // Encrypted backups: the drill reads them with the private key, as verify does.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", existing, "--set", "encryption.identitySecret.name=ingest-backup-age"]);
    let drill = object(&docs, "CronJob", "ingest-backup-drill");
    assert_eq!(env_of(drill)["AGE_IDENTITY_FILE"]["value"], "/etc/ingest-backup/age/key.txt");
    let volume = pod_spec(drill)["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "age-identity").unwrap().clone();
    assert_eq!(volume["secret"]["secretName"], "ingest-backup-age");
}

#[test]
fn the_exporter_listens_where_its_container_port_service_and_probes_point() {
    let test = "the_exporter_listens_where_its_container_port_service_and_probes_point";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let (_, docs) = render(&helm, &python, &["-f", &prod]);
    assert!(docs.iter().all(|d| !["Deployment", "Service", "ServiceMonitor"].contains(&d["kind"].as_str().unwrap())), "the exporter is opt-in");

    let dir = tempfile::tempdir().unwrap();
    let values = temp_file(
        dir.path(),
        "secrets.yaml",
        format!(
            "secrets:\n  awsAccessKeyId: '{KEY_ID}'\n  awsSecretAccessKey: '{SECRET_KEY}'\n  slackWebhookUrl: '{WEBHOOK}'\n  alertWebhookUrl: '{WEBHOOK}/alert'\n\
             heartbeat:\n  url: '{HEARTBEAT}'\n"
        )
        .as_bytes(),
    );
    let values = values.to_string_lossy().into_owned();
    let cases: [(&[&str], u64, &str); 2] = [
        (&["--set", "exporter.enabled=true"], 9091, "60s"),
        (&["--set", "exporter.enabled=true,exporter.port=9400", "--set-string", "exporter.interval=5m"], 9400, "5m"),
    ];
    for (extra, port, interval) in cases {
        let (yaml, docs) = render(&helm, &python, &[&["-f", &prod, "-f", &values][..], extra].concat());
        let deployment = object(&docs, "Deployment", "ingest-backup-exporter");
        assert_eq!(deployment["metadata"]["labels"]["app.kubernetes.io/component"], "exporter");
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 1);
        let selector = spec["selector"]["matchLabels"].as_object().unwrap();
        assert_eq!(selector["app.kubernetes.io/component"], "exporter");
        assert!(!selector.contains_key("app.kubernetes.io/version"), "a Deployment's selector cannot change with the version");
        for (key, value) in selector {
            assert_eq!(&spec["template"]["metadata"]["labels"][key], value, "the pods carry the selector's {key}");
        }

        // The listen address, the container port, the probes and the Service: one port.
        let c = &spec["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let listen = format!("0.0.0.0:{port}");
        assert_eq!(args, ["exporter", "--listen", listen.as_str(), "--interval", interval]);
        let listening: u64 = args[2].rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(c["ports"], serde_json::json!([{"name": "metrics", "containerPort": listening, "protocol": "TCP"}]));
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"], serde_json::json!({"path": "/healthz", "port": "metrics"}), "{probe}");
        }
        let service = object(&docs, "Service", "ingest-backup-exporter");
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(service["spec"]["selector"], spec["selector"]["matchLabels"], "the Service selects the exporter's pods");
        assert_eq!(service["spec"]["ports"], serde_json::json!([{"name": "metrics", "port": listening, "targetPort": "metrics", "protocol": "TCP"}]));

        // It reads the store only: the store's settings and keys, nothing of the database,
        // the alerts, the spool or the private key.
        let env: BTreeMap<String, Value> =
            c["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect();
        assert_eq!(env["S3_BUCKET"]["value"], "ingest-backups");
        assert_eq!(env["BACKUP_DIR"]["value"], "prod");
        assert_eq!(env["PRUNE_STALE_AFTER"]["value"], "24h", "uploads left by dead runs are judged as the prune judges them");
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            assert!(env[key].get("value").is_none(), "{key} is a literal");
            assert_eq!(env[key]["valueFrom"]["secretKeyRef"], serde_json::json!({"name": "ingest-backup", "key": key, "optional": false}));
        }
        for absent in [
            "MONGO_URI",
            "DRILL_URI",
            "RESTORE_URI",
            "SLACK_WEBHOOK_URL",
            "ALERT_WEBHOOK_URL",
            "HEARTBEAT_URL",
            "NOTIFY_SUCCESS",
            "INGEST_BACKUP_SPOOL_DIR",
            "AGE_IDENTITY_FILE",
        ] {
            assert!(!env.contains_key(absent), "the exporter gets {absent}: {env:?}");
        }
        for plain in [KEY_ID, SECRET_KEY, WEBHOOK, HEARTBEAT] {
            assert!(!yaml.contains(plain), "a secret value is rendered in clear text");
        }

        // Hardened like the Jobs.
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "ingest-backup");
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(c["image"], format!("{IMAGE}:0.1.0"));
        assert!(c["resources"]["limits"]["memory"].is_string() && c["resources"]["limits"]["ephemeral-storage"].is_string());
        assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/tmp"));
    }

    // The ServiceMonitor scrapes exactly that Service's port, in the release's namespace.
    let (_, docs) = render(
        &helm,
        &python,
        &[
            "-f",
            &prod,
            "--namespace",
            "backups",
            "--set",
            "exporter.enabled=true,exporter.serviceMonitor.enabled=true,exporter.serviceMonitor.labels.release=kube-prometheus",
        ],
    );
    let monitor = object(&docs, "ServiceMonitor", "ingest-backup-exporter");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus");
    let service = object(&docs, "Service", "ingest-backup-exporter");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][key], value, "the ServiceMonitor selects the Service by {key}");
    }
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], serde_json::json!(["backups"]));
    assert_eq!(monitor["spec"]["endpoints"], serde_json::json!([{"port": "metrics", "path": "/metrics", "interval": "60s"}]));
}

#[test]
fn the_prometheus_rule_alerts_on_stale_successes_and_failed_jobs() {
    let test = "the_prometheus_rule_alerts_on_stale_successes_and_failed_jobs";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let (_, docs) = render(&helm, &python, &["-f", &prod]);
    assert!(docs.iter().all(|d| d["kind"] != "PrometheusRule"), "off by default");
    let (_, docs) = render(
        &helm,
        &python,
        &[
            "-f",
            &prod,
            "--namespace",
            "backups",
            "--set",
            "monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.labels.release=kube-prometheus",
        ],
    );
    let rule = object(&docs, "PrometheusRule", "ingest-backup");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let by_name: BTreeMap<&str, &Value> = rules.iter().map(|r| (r["alert"].as_str().unwrap(), r)).collect();
    let names: Vec<&str> = by_name.keys().copied().collect();
    assert_eq!(
        names,
        [
            "IngestBackupBackupNeverSucceeded",
            "IngestBackupBackupStale",
            "IngestBackupJobFailed",
            "IngestBackupPitrNeverSucceeded",
            "IngestBackupPitrStale",
            "IngestBackupPruneNeverSucceeded",
            "IngestBackupPruneStale",
            "IngestBackupVerifyNeverSucceeded",
            "IngestBackupVerifyStale"
        ],
        "prod prunes in the prune CronJob (retention.afterBackup defaults to false)"
    );
    let stale = by_name["IngestBackupBackupStale"]["expr"].as_str().unwrap();
    assert!(
        stale.contains(r#"kube_cronjob_status_last_successful_time{namespace="backups", cronjob="ingest-backup"}"#) && stale.contains("> 93600"),
        "{stale}"
    );
    let never = by_name["IngestBackupVerifyNeverSucceeded"]["expr"].as_str().unwrap();
    assert!(never.contains("absent(") && never.contains(r#"cronjob="ingest-backup-verify""#), "{never}");
    let failed = by_name["IngestBackupJobFailed"]["expr"].as_str().unwrap();
    assert!(
        failed.contains("kube_job_status_failed")
            && failed.contains(r#"owner_name=~"ingest-backup|ingest-backup-verify|ingest-backup-pitr|ingest-backup-prune|ingest-backup-drill""#),
        "{failed}"
    );
    // prod takes point-in-time slices: a slice CronJob that stops succeeding alerts within the hour.
    let pitr_stale = by_name["IngestBackupPitrStale"]["expr"].as_str().unwrap();
    assert!(pitr_stale.contains(r#"cronjob="ingest-backup-pitr""#) && pitr_stale.contains("> 3600"), "{pitr_stale}");

    // With the prune CronJob and locked backups: the prune watched like the others, and
    // the lock metrics of an `ingest-backup schedule` that Prometheus scrapes.
    let (_, docs) = render(
        &helm,
        &python,
        &["-f", &prod, "--namespace", "backups", "--set", "monitoring.prometheusRule.enabled=true,retention.afterBackup=false,lock.mode=governance"],
    );
    let rules = object(&docs, "PrometheusRule", "ingest-backup")["spec"]["groups"][0]["rules"].as_array().unwrap();
    let by_name: BTreeMap<&str, &Value> = rules.iter().map(|r| (r["alert"].as_str().unwrap(), r)).collect();
    for name in ["IngestBackupPruneStale", "IngestBackupPruneNeverSucceeded", "IngestBackupNoRecentLockedBackup", "IngestBackupBackupStale"] {
        assert!(by_name.contains_key(name), "{name} is not among {:?}", by_name.keys().collect::<Vec<_>>());
    }
    let prune_stale = by_name["IngestBackupPruneStale"]["expr"].as_str().unwrap();
    assert!(
        prune_stale.contains(r#"kube_cronjob_status_last_successful_time{namespace="backups", cronjob="ingest-backup-prune"}"#)
            && prune_stale.contains("> 93600"),
        "{prune_stale}"
    );
    assert_eq!(by_name["IngestBackupPruneStale"]["labels"]["severity"], "critical");
    let locked = by_name["IngestBackupNoRecentLockedBackup"];
    let expr = locked["expr"].as_str().unwrap();
    // The newest locked backup older than the lock window; a window of 0 (no --lock-mode)
    // and a scheduler that has not written a locked backup yet (0) are left out.
    for part in ["(time() - (ingest_backup_newest_locked_backup_timestamp_seconds > 0))", "> (ingest_backup_lock_window_seconds > 0)"] {
        assert!(expr.contains(part), "{part} not in {expr}");
    }
    assert_eq!(locked["labels"]["severity"], "critical");
    assert!(locked["annotations"]["summary"].as_str().unwrap().contains("lock window"), "{locked}");
    let description = locked["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("{{ $value | humanizeDuration }}") && description.contains("governance"), "{description}");
    // Without a lock mode there is no lock alert; without the prune CronJob (the backup Job
    // prunes, retention.afterBackup true) no prune alerts.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", "monitoring.prometheusRule.enabled=true,retention.afterBackup=false"]);
    let rule = object(&docs, "PrometheusRule", "ingest-backup").to_string();
    assert!(!rule.contains("IngestBackupNoRecentLockedBackup") && rule.contains("IngestBackupPruneStale"), "{rule}");
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", "monitoring.prometheusRule.enabled=true,retention.afterBackup=true"]);
    let rule = object(&docs, "PrometheusRule", "ingest-backup").to_string();
    assert!(!rule.contains("IngestBackupPruneStale") && !rule.contains("IngestBackupPruneNeverSucceeded"), "{rule}");
    assert!(rule.contains("IngestBackupBackupStale"), "{rule}");

    // Drills without the exporter: the drill CronJob watched like the others, in days.
    let drill = "monitoring.prometheusRule.enabled=true,drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch";
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--namespace", "backups", "--set", drill]);
    let groups = object(&docs, "PrometheusRule", "ingest-backup")["spec"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "no alerts on the store without the exporter");
    let by_name: BTreeMap<&str, &Value> = groups[0]["rules"].as_array().unwrap().iter().map(|r| (r["alert"].as_str().unwrap(), r)).collect();
    let drill_stale = by_name["IngestBackupDrillStale"]["expr"].as_str().unwrap();
    assert!(drill_stale.contains(r#"cronjob="ingest-backup-drill""#) && drill_stale.contains("> 691200"), "8 days by default: {drill_stale}");
    assert!(by_name.contains_key("IngestBackupDrillNeverSucceeded"));

    // With the exporter, a second group on what the store holds; the drill is watched through
    // its records there, not through the CronJob. (tests/alert_rules.rs runs these rules.)
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--namespace", "backups", "--set", &format!("{drill},exporter.enabled=true")]);
    let groups = object(&docs, "PrometheusRule", "ingest-backup")["spec"]["groups"].as_array().unwrap();
    let names =
        |group: &Value| -> BTreeSet<String> { group["rules"].as_array().unwrap().iter().map(|r| r["alert"].as_str().unwrap().to_string()).collect() };
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["name"], "ingest-backup");
    assert!(!names(&groups[0]).contains("IngestBackupDrillStale") && names(&groups[0]).contains("IngestBackupJobFailed"), "{:?}", names(&groups[0]));
    assert_eq!(groups[1]["name"], "ingest-backup-store");
    let expected: BTreeSet<String> = [
        "IngestBackupDrillFailed",
        "IngestBackupDrillStale",
        "IngestBackupExporterAbsent",
        "IngestBackupPitrGap",
        "IngestBackupPitrLagging",
        "IngestBackupStoreUnreadable",
        "IngestBackupVerifiedBackupStale",
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    assert_eq!(names(&groups[1]), expected, "prod takes point-in-time slices, so IngestBackupPitrLagging too");
    let selector = r#"{namespace="backups", service="ingest-backup-exporter"}"#;
    let verified: Vec<&Value> = groups[1]["rules"].as_array().unwrap().iter().filter(|r| r["alert"] == "IngestBackupVerifiedBackupStale").collect();
    let reasons: Vec<&str> = verified.iter().map(|r| r["labels"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["too-old", "none-in-store"]);
    let too_old = verified[0]["expr"].as_str().unwrap();
    assert!(too_old.contains(&format!("ingest_backup_newest_verified_timestamp_seconds{selector}")) && too_old.contains("> 108000"), "{too_old}");
    let none = verified[1]["expr"].as_str().unwrap();
    assert!(none.contains("absent(") && verified[1]["for"] == "30h", "{none}");
    for rule in groups[1]["rules"].as_array().unwrap() {
        assert!(rule["expr"].as_str().unwrap().contains(selector), "every store alert selects this install's exporter: {rule}");
        assert_eq!(rule["labels"]["severity"], "critical");
        assert!(!rule["annotations"]["description"].as_str().unwrap().is_empty());
    }
    // Without point-in-time slices no lag alert; without drills no drill alert.
    let (_, docs) =
        render(&helm, &python, &["-f", &prod, "--set", "monitoring.prometheusRule.enabled=true,exporter.enabled=true,pitr.enabled=false"]);
    let groups = object(&docs, "PrometheusRule", "ingest-backup")["spec"]["groups"].as_array().unwrap();
    let store = names(&groups[1]);
    assert!(
        !store.contains("IngestBackupPitrLagging") && !store.contains("IngestBackupDrillFailed") && !store.contains("IngestBackupDrillStale"),
        "{store:?}"
    );

    // The other objects still validate with the rule beside them (the rule is a CRD the API schemas do not know).
    let Some(validate) = kube_validate(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = template(&helm, &["-f", &prod, "--set", "monitoring.prometheusRule.enabled=true", "--skip-tests"]);
    let yaml = String::from_utf8(output.stdout).unwrap();
    let builtin: Vec<&str> = yaml.split("\n---").filter(|d| !d.contains("kind: PrometheusRule")).collect();
    let file = temp_file(dir.path(), "rendered.yaml", builtin.join("\n---").as_bytes());
    let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", "1.37.0"]).arg(&file));
    assert!(check.status.success(), "{}", text(&check));
}

/// The pod spec of a CronJob's Job.
fn pod_spec(cronjob: &Value) -> &Value {
    &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

#[test]
fn only_the_verify_and_restore_jobs_get_the_age_identity_and_the_backup_job_only_public_keys() {
    let test = "only_the_verify_and_restore_jobs_get_the_age_identity_and_the_backup_job_only_public_keys";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let (first, second) = (age::x25519::Identity::generate(), age::x25519::Identity::generate());
    let recipients = format!("encryption.recipients={{{},{}}}", first.to_public(), second.to_public());
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let with_key = ["-f", &prod, "--set", &recipients, "--set", "encryption.identitySecret.name=ingest-backup-age", "--set", "pitr.enabled=true"];
    let (yaml, docs) = render(&helm, &python, &with_key);
    assert!(!yaml.contains("AGE-SECRET-KEY-"), "no key material is rendered");
    for name in ["ingest-backup", "ingest-backup-pitr"] {
        let cronjob = object(&docs, "CronJob", name);
        let env = env_of(cronjob);
        assert!(!env.contains_key("AGE_IDENTITY_FILE") && !env.contains_key("AGE_IDENTITY"), "{name} gets no identity: {env:?}");
        let spec = pod_spec(cronjob).to_string();
        assert!(!spec.contains("ingest-backup-age") && !spec.contains("age-identity"), "{name} mounts no identity: {spec}");
    }
    for name in ["ingest-backup", "ingest-backup-pitr"] {
        let env = env_of(object(&docs, "CronJob", name));
        assert_eq!(env["AGE_RECIPIENTS"]["value"], format!("{},{}", first.to_public(), second.to_public()), "{name}");
    }
    assert_eq!(container(object(&docs, "CronJob", "ingest-backup"))["args"], serde_json::json!(["backup"]));

    let verify = object(&docs, "CronJob", "ingest-backup-verify");
    assert_eq!(env_of(verify)["AGE_IDENTITY_FILE"]["value"], "/etc/ingest-backup/age/key.txt");
    assert!(!env_of(verify).contains_key("AGE_RECIPIENTS"), "verify needs no recipients");
    let mounts = container(verify)["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == "age-identity" && m["readOnly"] == true && m["mountPath"] == "/etc/ingest-backup/age"));
    let volume = pod_spec(verify)["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "age-identity").unwrap().clone();
    assert_eq!(volume["secret"]["secretName"], "ingest-backup-age");
    assert!(!container(verify)["args"].as_array().unwrap().iter().any(|a| a == "--archive-only"), "with the key, verify checks everything");

    let only = ["--show-only", "templates/restore-job.yaml", "--set", "restore.enabled=true", "--set-string", "restore.backup=latest"];
    let (_, restore) = render(&helm, &python, &[&with_key[..], &only[..]].concat());
    let restore_env = restore[0]["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(restore_env.contains("AGE_IDENTITY_FILE"), "the restore Job reads the key: {restore_env}");

    // Without the Secret the verify job checks the stored bytes only; full sidecars on request.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &recipients, "--set", "encryption.sidecarDetail=full"]);
    let verify = object(&docs, "CronJob", "ingest-backup-verify");
    assert!(container(verify)["args"].as_array().unwrap().iter().any(|a| a == "--archive-only"));
    assert!(!env_of(verify).contains_key("AGE_IDENTITY_FILE"));
    assert_eq!(container(object(&docs, "CronJob", "ingest-backup"))["args"], serde_json::json!(["backup", "--sidecar-detail", "full"]));
    // The split threshold reaches the backup job only when set; 0 (split everything) is a value, not "unset".
    for (set, expected) in [("backup.splitMinMb=64", "64"), ("backup.splitMinMb=0", "0")] {
        let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", set]);
        assert_eq!(container(object(&docs, "CronJob", "ingest-backup"))["args"], serde_json::json!(["backup", "--split-min-mb", expected]));
    }

    // A private key or a malformed key among the recipients fails the render, unprinted.
    let secret = age::secrecy::ExposeSecret::expose_secret(&first.to_string()).to_string();
    for (bad, expected) in [(secret.as_str(), "is a private key"), ("age1short", "not an age public key")] {
        let output = template(&helm, &["-f", &prod, "--set", &format!("encryption.recipients={{{bad}}}")]);
        assert!(!output.status.success(), "{bad:?} was accepted");
        let message = text(&output);
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains(&secret), "the render error printed the private key: {message}");
    }
}

// ---------------------------------------------------------------------------------
// Stores on Google Cloud Storage and Azure Blob Storage (store.url)

const GCS_URL: &str = "gs://mongo_backups/prod";
const AZURE_URL: &str = "az://mongo-backups/prod";
const GCP_ACCOUNT: &str = "ingest-backup@acme-prod.iam.gserviceaccount.com";
const AZURE_CLIENT_ID: &str = "00000000-1111-2222-3333-444444444444";
const AZURE_KEYS: [&str; 4] = ["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"];
/// The restore Job alone, as helm/restore.sh renders it.
const RESTORE_ALONE: [&str; 6] =
    ["--set", "restore.enabled=true", "--set-string", "restore.backup=latest", "--show-only", "templates/restore-job.yaml"];

/// The drill CronJob and the exporter, enabled beside the others.
const WITH_DRILL_AND_EXPORTER: [&str; 2] =
    ["--set", "drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch,exporter.enabled=true"];

/// Every CronJob prod renders that touches the store (with the drill CronJob), the
/// exporter's Deployment, and the restore Job rendered alone as helm/restore.sh renders
/// it, for the same values: (name, the pod spec, its arguments without `--store`).
fn store_jobs(helm: &Path, python: &Path, args: &[&str]) -> Vec<(String, Value, Vec<String>)> {
    let (_, docs) = render(helm, python, &[args, &WITH_DRILL_AND_EXPORTER[..]].concat());
    let mut jobs: Vec<(String, Value, Vec<String>)> = Vec::new();
    for (name, expected) in [
        ("ingest-backup", vec!["backup"]),
        ("ingest-backup-verify", vec!["verify", "unverified", "--wait-for-running", "6h"]),
        ("ingest-backup-pitr", vec!["oplog"]),
        ("ingest-backup-prune", vec!["prune"]),
        ("ingest-backup-drill", vec!["drill", "verified"]),
    ] {
        let cronjob = object(&docs, "CronJob", name);
        jobs.push((name.to_string(), cronjob["spec"]["jobTemplate"]["spec"]["template"].clone(), expected.iter().map(|a| a.to_string()).collect()));
    }
    let exporter = object(&docs, "Deployment", "ingest-backup-exporter");
    let expected = ["exporter", "--listen", "0.0.0.0:9091", "--interval", "60s"];
    jobs.push(("exporter".to_string(), exporter["spec"]["template"].clone(), expected.iter().map(|a| a.to_string()).collect()));
    let (_, docs) = render(helm, python, &[args, &RESTORE_ALONE[..]].concat());
    assert_eq!(docs.len(), 1);
    jobs.push(("restore".to_string(), docs[0]["spec"]["template"].clone(), vec!["restore".to_string(), "latest".to_string()]));
    jobs
}

/// The container of a pod template, and its environment by name.
fn pod_container(template: &Value) -> (&Value, BTreeMap<String, Value>) {
    let c = &template["spec"]["containers"][0];
    let env = c["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap().to_string(), e.clone())).collect();
    (c, env)
}

/// Every Job gets `--store URL` after its own arguments, and none of the S3 variables.
fn assert_store_args(jobs: &[(String, Value, Vec<String>)], url: &str) {
    for (name, template, expected) in jobs {
        let (c, env) = pod_container(template);
        let mut args = expected.clone();
        args.extend(["--store".to_string(), url.to_string()]);
        assert_eq!(c["args"], serde_json::json!(args), "{name}");
        for absent in ["S3_BUCKET", "BACKUP_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ROLE_ARN", "AWS_REGION"] {
            assert!(!env.contains_key(absent), "{name} has {absent}: {env:?}");
        }
    }
}

fn has_volume(template: &Value, name: &str) -> bool {
    template["spec"]["volumes"].as_array().unwrap().iter().any(|v| v["name"] == name)
}

#[test]
fn a_gcs_store_reaches_every_job_with_a_key_file_or_workload_identity() {
    let test = "a_gcs_store_reaches_every_job_with_a_key_file_or_workload_identity";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();

    // A service-account key file from a Secret, mounted read-only into every Job.
    let with_key = ["-f", &prod, "--set", &format!("store.url={GCS_URL},gcs.existingSecret=ingest-backup-gcs")];
    let jobs = store_jobs(&helm, &python, &with_key);
    assert_store_args(&jobs, GCS_URL);
    for (name, template, _) in &jobs {
        let (c, env) = pod_container(template);
        assert_eq!(env["GOOGLE_APPLICATION_CREDENTIALS"]["value"], "/var/run/secrets/gcs/key.json", "{name}");
        let mount =
            c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "gcs-key").unwrap_or_else(|| panic!("{name}: no gcs-key mount"));
        assert_eq!(mount["mountPath"], "/var/run/secrets/gcs", "{name}");
        assert_eq!(mount["readOnly"], true, "{name}");
        let volume = template["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "gcs-key").unwrap().clone();
        assert_eq!(volume["secret"]["secretName"], "ingest-backup-gcs", "{name}");
        assert_eq!(volume["secret"]["items"], serde_json::json!([{"key": "key.json", "path": "key.json"}]), "{name}");
        assert!(env.keys().all(|k| !k.starts_with("AZURE_")), "{name}: {env:?}");
    }
    let (_, docs) = render(&helm, &python, &with_key);
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "the key stays in the operator's Secret");

    // GKE Workload Identity: the ServiceAccount's annotation, no key file at all.
    let annotation = format!("serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account={GCP_ACCOUNT}");
    let with_identity = ["-f", &prod, "--set", &format!("store.url={GCS_URL}"), "--set-string", &annotation];
    let (_, docs) = render(&helm, &python, &with_identity);
    assert_eq!(object(&docs, "ServiceAccount", "ingest-backup")["metadata"]["annotations"]["iam.gke.io/gcp-service-account"], GCP_ACCOUNT);
    let jobs = store_jobs(&helm, &python, &with_identity);
    assert_store_args(&jobs, GCS_URL);
    for (name, template, _) in &jobs {
        let (_, env) = pod_container(template);
        assert!(!env.contains_key("GOOGLE_APPLICATION_CREDENTIALS"), "{name}: {env:?}");
        assert!(!has_volume(template, "gcs-key"), "{name}");
        assert_eq!(template["spec"]["serviceAccountName"], "ingest-backup", "{name}");
    }

    // The prune CronJob as a ServiceAccount of its own: its Workload Identity, never the key file.
    let own = format!("store.url={GCS_URL},gcs.existingSecret=ingest-backup-gcs,retention.serviceAccount.create=true");
    let prune_annotation = "retention.serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account=pruner@acme-prod.iam.gserviceaccount.com";
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &own, "--set-string", prune_annotation]);
    let prune = object(&docs, "CronJob", "ingest-backup-prune");
    assert_eq!(pod_spec(prune)["serviceAccountName"], "ingest-backup-prune");
    assert!(!env_of(prune).contains_key("GOOGLE_APPLICATION_CREDENTIALS"));
    assert!(!pod_spec(prune)["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "gcs-key"));
    assert_eq!(env_of(object(&docs, "CronJob", "ingest-backup"))["GOOGLE_APPLICATION_CREDENTIALS"]["value"], "/var/run/secrets/gcs/key.json");

    // The webhooks still come from an existing Secret; the AWS keys are not looked up.
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &format!("store.url={GCS_URL},secrets.existingSecret=backup-keys")]);
    let env = env_of(object(&docs, "CronJob", "ingest-backup"));
    assert_eq!(env["SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"], "backup-keys");
    assert!(!env.contains_key("AWS_ACCESS_KEY_ID") && !env.contains_key("AWS_SECRET_ACCESS_KEY"), "{env:?}");

    // s3:// in store.url: --store too, and no s3.bucket needed.
    let (_, docs) = render(&helm, &python, &["--set", "store.url=s3://other-bucket/dev"]);
    let backup = object(&docs, "CronJob", "ingest-backup");
    assert_eq!(container(backup)["args"], serde_json::json!(["backup", "--store", "s3://other-bucket/dev"]));
    assert!(!env_of(backup).contains_key("S3_BUCKET"));
}

#[test]
fn an_azure_store_reaches_every_job_with_a_secret_or_workload_identity() {
    let test = "an_azure_store_reaches_every_job_with_a_secret_or_workload_identity";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();

    // A Secret whose keys, each optional, become the variables of the same name.
    let with_secret = ["-f", &prod, "--set", &format!("store.url={AZURE_URL},azure.existingSecret=ingest-backup-azure")];
    let jobs = store_jobs(&helm, &python, &with_secret);
    assert_store_args(&jobs, AZURE_URL);
    for (name, template, _) in &jobs {
        let (_, env) = pod_container(template);
        for key in AZURE_KEYS {
            assert_eq!(
                env[key]["valueFrom"]["secretKeyRef"],
                serde_json::json!({"name": "ingest-backup-azure", "key": key, "optional": true}),
                "{name}: {key}"
            );
        }
        assert!(!env.contains_key("GOOGLE_APPLICATION_CREDENTIALS") && !has_volume(template, "gcs-key"), "{name}");
        assert!(template["metadata"]["labels"].get("azure.workload.identity/use").is_none(), "{name}");
    }

    // AKS workload identity: the pod label, the account as a plain value, the client id
    // on the ServiceAccount; nothing from a Secret.
    let annotation = format!("serviceAccount.annotations.azure\\.workload\\.identity/client-id={AZURE_CLIENT_ID}");
    let with_identity = [
        "-f",
        &prod,
        "--set",
        &format!("store.url={AZURE_URL},azure.storageAccount=acmebackups,azure.workloadIdentity=true"),
        "--set-string",
        &annotation,
    ];
    let (_, docs) = render(&helm, &python, &with_identity);
    assert_eq!(object(&docs, "ServiceAccount", "ingest-backup")["metadata"]["annotations"]["azure.workload.identity/client-id"], AZURE_CLIENT_ID);
    for cronjob in docs.iter().filter(|d| d["kind"] == "CronJob") {
        assert!(cronjob["metadata"]["labels"].get("azure.workload.identity/use").is_none(), "the label belongs on the pods only");
    }
    let jobs = store_jobs(&helm, &python, &with_identity);
    assert_store_args(&jobs, AZURE_URL);
    for (name, template, _) in &jobs {
        let (_, env) = pod_container(template);
        assert_eq!(template["metadata"]["labels"]["azure.workload.identity/use"], "true", "{name}");
        assert_eq!(env["AZURE_STORAGE_ACCOUNT"], serde_json::json!({"name": "AZURE_STORAGE_ACCOUNT", "value": "acmebackups"}), "{name}");
        assert!(env.values().all(|e| e.get("valueFrom").is_none() || !e["name"].as_str().unwrap().starts_with("AZURE_")), "{name}: {env:?}");
    }

    // Both: the account from the value, the rest from the Secret, no variable twice.
    let both = format!("store.url={AZURE_URL},azure.existingSecret=ingest-backup-azure,azure.storageAccount=acmebackups");
    let (_, docs) = render(&helm, &python, &["-f", &prod, "--set", &both]);
    let names: Vec<String> = container(object(&docs, "CronJob", "ingest-backup"))["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "AZURE_STORAGE_ACCOUNT").count(), 1, "{names:?}");
    let env = env_of(object(&docs, "CronJob", "ingest-backup"));
    assert_eq!(env["AZURE_STORAGE_ACCOUNT"]["value"], "acmebackups");
    assert_eq!(env["AZURE_STORAGE_KEY"]["valueFrom"]["secretKeyRef"]["name"], "ingest-backup-azure");
}

#[test]
fn the_cloud_stores_validate_against_the_kubernetes_api() {
    let test = "the_cloud_stores_validate_against_the_kubernetes_api";
    let (Some(helm), Some(validate)) = (helm(test), kube_validate(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let gcp = format!("serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account={GCP_ACCOUNT}");
    let aks = format!("serviceAccount.annotations.azure\\.workload\\.identity/client-id={AZURE_CLIENT_ID}");
    let gcs_key = format!("store.url={GCS_URL},gcs.existingSecret=ingest-backup-gcs");
    let gcs = format!("store.url={GCS_URL}");
    let azure_secret = format!("store.url={AZURE_URL},azure.existingSecret=ingest-backup-azure");
    let azure_identity = format!("store.url={AZURE_URL},azure.storageAccount=acmebackups,azure.workloadIdentity=true");
    let cases: [(&str, Vec<&str>); 4] = [
        ("GCS with a key file", vec!["--set", &gcs_key]),
        ("GCS with Workload Identity", vec!["--set", &gcs, "--set-string", &gcp]),
        ("Azure with a Secret", vec!["--set", &azure_secret]),
        ("Azure with workload identity", vec!["--set", &azure_identity, "--set-string", &aks]),
    ];
    for (stage, file) in stages() {
        let file = file.to_string_lossy().into_owned();
        for (label, extra) in &cases {
            // lock.mode (staging's) is S3 Object Lock: refused on the other stores.
            let args = [&["-f", file.as_str(), "--set-string", "lock.mode="][..], &extra[..]].concat();
            let output = template(&helm, &[&args[..], &WITH_DRILL_AND_EXPORTER[..]].concat());
            assert!(output.status.success(), "{stage} on {label}: {}", text(&output));
            let rendered = temp_file(dir.path(), "rendered.yaml", &output.stdout);
            let restore = template(&helm, &[&args[..], &RESTORE_ALONE[..]].concat());
            assert!(restore.status.success(), "{stage} restore on {label}: {}", text(&restore));
            let yaml = String::from_utf8(restore.stdout).unwrap().replace("generateName: ingest-backup-restore-", "name: ingest-backup-restore-x");
            let restore = temp_file(dir.path(), "restore.yaml", yaml.as_bytes());
            for version in ["1.30.0", "1.37.0"] {
                let check = run(Command::new(&validate).args(["--strict", "--kubernetes-version", version]).arg(&rendered).arg(&restore));
                assert!(check.status.success(), "{stage} on {label}: not valid for Kubernetes {version}:\n{}", text(&check));
                let report = text(&check);
                for kind in [
                    "cronjob/ingest-backup ",
                    "cronjob/ingest-backup-verify ",
                    "cronjob/ingest-backup-drill ",
                    "deployment/ingest-backup-exporter ",
                    "job/ingest-backup-restore-x ",
                ] {
                    assert!(report.contains(kind), "{stage} on {label}: {kind}was not validated:\n{report}");
                }
            }
        }
    }
}

#[test]
fn the_render_refuses_store_settings_of_another_cloud() {
    let Some(helm) = helm("the_render_refuses_store_settings_of_another_cloud") else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let staging = root().join("helm/config/staging.yaml").to_string_lossy().into_owned();
    let gcs = format!("store.url={GCS_URL}");
    let azure = format!("store.url={AZURE_URL}");
    let cases: &[(&[&str], &str)] = &[
        // The schema's pattern first; the template's message where the schema is skipped.
        (&["-f", &prod, "--set", "store.url=ftp://backups/prod"], "/store/url"),
        (&["-f", &prod, "--set", "store.url=ftp://backups/prod", "--skip-schema-validation"], "has an unknown scheme"),
        (&["-f", &prod, "--set", "gcs.existingSecret=ingest-backup-gcs"], "gcs.existingSecret is set but the store is not on Google Cloud Storage"),
        (&["-f", &prod, "--set", &format!("{azure},gcs.existingSecret=ingest-backup-gcs")], "the store is not on Google Cloud Storage"),
        (&["-f", &prod, "--set", "azure.existingSecret=ingest-backup-azure"], "the store is not on Azure Blob Storage"),
        (&["-f", &prod, "--set", &format!("{gcs},azure.storageAccount=acmebackups")], "the store is not on Azure Blob Storage"),
        (&["-f", &prod, "--set", "store.url=s3://other-bucket/prod,azure.workloadIdentity=true"], "the store is not on Azure Blob Storage"),
        (&["-f", &prod, "--set", &format!("{azure},azure.workloadIdentity=true")], "azure.workloadIdentity needs azure.storageAccount"),
        (
            &["-f", &prod, "--set", &format!("{gcs},secrets.awsAccessKeyId={KEY_ID},secrets.awsSecretAccessKey={SECRET_KEY}")],
            "is not on S3, but S3 settings are set",
        ),
        (&["-f", &prod, "--set", &format!("{azure},aws.roleArn={ROLE_ARN}")], "is not on S3, but S3 settings are set"),
        (&["-f", &prod, "--set", &format!("{gcs},retention.existingSecret=ingest-backup-prune-keys")], "is not on S3, but S3 settings are set"),
        (&["-f", &staging, "--set", &azure], "lock.mode is S3 Object Lock"),
    ];
    for (args, message) in cases {
        let output = template(&helm, args);
        assert!(!output.status.success(), "{args:?} rendered");
        let err = text(&output);
        assert!(err.contains(message), "{args:?}: expected {message:?} in {err}");
        assert!(!err.contains(SECRET_KEY), "a secret was printed: {err}");
    }
}

/// `store.*Timeout` and `store.maxAttempts` reach every Job that touches the store, as
/// `S3_*` on S3 and as `STORE_*` on Google Cloud Storage and Azure; unset, neither is.
#[test]
fn store_timeouts_and_attempts_reach_every_job_under_the_store_s_names() {
    let test = "store_timeouts_and_attempts_reach_every_job_under_the_store_s_names";
    let (Some(helm), Some(python)) = (helm(test), python(test)) else { return };
    let prod = root().join("helm/config/prod.yaml").to_string_lossy().into_owned();
    let tuning = "store.connectTimeout=2s,store.attemptTimeout=10m,store.operationTimeout=1h,store.maxAttempts=7";
    for (url, prefix, other) in [("s3://mongo-backups/prod", "S3_", "STORE_"), (GCS_URL, "STORE_", "S3_"), (AZURE_URL, "STORE_", "S3_")] {
        let set = format!("store.url={url},{tuning}");
        for (name, template, _) in store_jobs(&helm, &python, &["-f", &prod, "--set", &set]) {
            let (_, env) = pod_container(&template);
            for (variable, value) in [("CONNECT_TIMEOUT", "2s"), ("ATTEMPT_TIMEOUT", "10m"), ("OPERATION_TIMEOUT", "1h"), ("MAX_ATTEMPTS", "7")] {
                assert_eq!(env[&format!("{prefix}{variable}")]["value"], value, "{url} {name}");
                assert!(!env.contains_key(&format!("{other}{variable}")), "{url} {name}: {env:?}");
            }
        }
        let set = format!("store.url={url}");
        for (name, template, _) in store_jobs(&helm, &python, &["-f", &prod, "--set", &set]) {
            let (_, env) = pod_container(&template);
            assert!(env.keys().all(|k| !k.ends_with("_TIMEOUT") && !k.ends_with("MAX_ATTEMPTS")), "{url} {name}: {env:?}");
        }
    }
}
