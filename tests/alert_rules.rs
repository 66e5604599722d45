//! The chart's alert rules, judged by Prometheus' own `promtool`. The PrometheusRule is
//! rendered with the exporter, drills and point-in-time slices enabled, its `spec.groups`
//! written out as a rules file, and:
//!
//! - `promtool check rules` accepts it (every expression parses, every annotation
//!   template compiles, no two rules alike), for every stage and every combination of the
//!   optional alerts;
//! - `promtool test rules` runs `tests/alert_rules/store_alerts.test.yaml` against it:
//!   synthetic series in which every alert on the exporter's series stays silent on a
//!   healthy store and fires, with its labels and annotations, on a broken one;
//! - that fixture covers every such alert, both ways, so a new alert cannot go untested.
//!
//! Tools come from `scripts/test-peers.sh env` (`INGEST_TEST_HELM`, `INGEST_TEST_DEPLOY_PYTHON`,
//! `INGEST_TEST_PROMTOOL`), else from its cache. A missing tool fails the test when
//! `CI=true` and skips it (printing `SKIPPED: ...`) otherwise.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    std::env::var("INGEST_BACKUP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/ingest-backup"))
}

/// A tool named by `var`, else found at `fallback` in the peer cache. `None` (after
/// printing SKIPPED) outside CI; a failure in CI.
fn tool(var: &str, fallback: PathBuf, test: &str, peer: &str) -> Option<PathBuf> {
    let named = std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_file());
    let found = named.or_else(|| Some(fallback).filter(|p| p.is_file()));
    if found.is_none() {
        common::skip_or_fail(test, &format!("{var} is not set and the tool is not in the peer cache: run scripts/test-peers.sh install {peer}"));
    }
    found
}

fn helm(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_HELM", cache().join("helm/v3.22.0/helm"), test, "deploy")
}

fn python(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_DEPLOY_PYTHON", cache().join("deploy-venv/bin/python"), test, "deploy")
}

fn promtool(test: &str) -> Option<PathBuf> {
    tool("INGEST_TEST_PROMTOOL", cache().join("promtool/v0.316.0/promtool"), test, "promtool")
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs a Python script of the checkers' virtualenv (PyYAML) over `input`; its stdout.
fn python_filter(python: &Path, script: &str, input: &[u8]) -> String {
    let mut child =
        Command::new(python).args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run python");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python failed: {}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The rendered PrometheusRule's `spec.groups` as a Prometheus rules file (`groups:`).
const EXTRACT_RULES: &str = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
assert len(rules) == 1, f"{len(rules)} PrometheusRules rendered"
yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sys.stdout, sort_keys=False)
"#;

/// One YAML document as JSON.
const YAML_TO_JSON: &str = "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";

/// The image every render uses (the chart refuses to render without one).
const IMAGE: &str = "image.repository=registry.example.com/ingest-backup";

/// What the fixture's series and thresholds assume: namespace `backups`, every optional
/// alert on, the thresholds written out (so a new default does not silently change
/// what the fixture tests).
const FIXTURE_RENDER: &[&str] = &[
    "--namespace",
    "backups",
    "--set",
    "s3.bucket=ingest-backups",
    "--set",
    "monitoring.prometheusRule.enabled=true,exporter.enabled=true,drill.enabled=true,pitr.enabled=true",
    "--set",
    "drill.scratchUri.existingSecret=ingest-backup-drill-scratch",
    "--set",
    "monitoring.prometheusRule.verifiedMaxAgeHours=30,monitoring.prometheusRule.pitrMaxLagMinutes=30,monitoring.prometheusRule.drillMaxAgeDays=8",
];

/// `helm template ingest-backup <chart> --set IMAGE <args>`, its PrometheusRule written to
/// `<dir>/rules.yaml`; returns the path.
fn rules_file(helm: &Path, python: &Path, args: &[&str], dir: &Path) -> PathBuf {
    let output = run(Command::new(helm).args(["template", "ingest-backup"]).arg(root().join("helm/ingest-backup")).args(["--set", IMAGE]).args(args));
    assert!(output.status.success(), "helm template {args:?} failed: {}", text(&output));
    let rules = python_filter(python, EXTRACT_RULES, &output.stdout);
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules).unwrap();
    path
}

/// `promtool check rules` on a rules file: accepted, and no lint finding.
fn check_rules(promtool: &Path, rules: &Path, label: &str) {
    let output = run(Command::new(promtool).args(["check", "rules"]).arg(rules));
    let report = text(&output);
    assert!(output.status.success() && report.contains("SUCCESS") && !report.contains("FAILED"), "{label}: promtool check rules:\n{report}");
}

#[test]
fn every_store_alert_stays_silent_on_a_healthy_store_and_fires_on_a_broken_one() {
    let test = "every_store_alert_stays_silent_on_a_healthy_store_and_fires_on_a_broken_one";
    let (Some(helm), Some(python), Some(promtool)) = (helm(test), python(test), promtool(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_file(&helm, &python, FIXTURE_RENDER, dir.path());
    check_rules(&promtool, &rules, "the fixture's render");

    // The test file names rules.yaml beside it: promtool resolves rule_files from there.
    let fixture = root().join("tests/alert_rules/store_alerts.test.yaml");
    std::fs::copy(&fixture, dir.path().join("store_alerts.test.yaml")).unwrap();
    let output = run(Command::new(&promtool).current_dir(dir.path()).args(["test", "rules", "store_alerts.test.yaml"]));
    assert!(output.status.success(), "promtool test rules {}:\n{}", fixture.display(), text(&output));
    assert!(text(&output).contains("SUCCESS"), "{}", text(&output));

    // Every rule of the exporter's group is tested both ways: silent somewhere, and firing
    // (with the reason label of each of an alert's rules).
    let groups: Value = serde_json::from_str(&python_filter(&python, YAML_TO_JSON, &std::fs::read(&rules).unwrap())).unwrap();
    let store = groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "ingest-backup-store").expect("the group of the exporter's alerts");
    let tests: Value = serde_json::from_str(&python_filter(&python, YAML_TO_JSON, &std::fs::read(&fixture).unwrap())).unwrap();
    let mut silent = BTreeSet::new();
    let mut firing = BTreeSet::new();
    for case in tests["tests"].as_array().unwrap() {
        for expectation in case["alert_rule_test"].as_array().into_iter().flatten() {
            let alert = expectation["alertname"].as_str().unwrap().to_string();
            let expected = expectation["exp_alerts"].as_array().cloned().unwrap_or_default();
            if expected.is_empty() {
                silent.insert(alert.clone());
            }
            for fired in expected {
                firing.insert((alert.clone(), fired["exp_labels"]["reason"].as_str().map(str::to_string)));
            }
        }
    }
    let alerts: Vec<(String, Option<String>)> = store["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["alert"].as_str().unwrap().to_string(), r["labels"]["reason"].as_str().map(str::to_string)))
        .collect();
    for name in [
        "IngestBackupVerifiedBackupStale",
        "IngestBackupPitrLagging",
        "IngestBackupPitrGap",
        "IngestBackupDrillFailed",
        "IngestBackupDrillStale",
        "IngestBackupStoreUnreadable",
        "IngestBackupExporterAbsent",
    ] {
        assert!(alerts.iter().any(|(alert, _)| alert == name), "{name} is not rendered: {alerts:?}");
    }
    for (alert, reason) in &alerts {
        assert!(silent.contains(alert), "{}: {alert} is never shown silent", fixture.display());
        assert!(firing.contains(&(alert.clone(), reason.clone())), "{}: {alert} (reason {reason:?}) is never shown firing", fixture.display());
    }
    // The drill CronJob's failed Jobs are caught by the kube-state-metrics rule too.
    assert!(silent.contains("IngestBackupJobFailed") && firing.contains(&("IngestBackupJobFailed".to_string(), None)));
}

#[test]
fn every_rendered_rule_file_passes_promtool_check_rules() {
    let test = "every_rendered_rule_file_passes_promtool_check_rules";
    let (Some(helm), Some(python), Some(promtool)) = (helm(test), python(test), promtool(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut stages: Vec<PathBuf> = std::fs::read_dir(root().join("helm/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    stages.sort();
    assert!(!stages.is_empty(), "no stage files in helm/config");
    let variants: [(&str, &[&str]); 5] = [
        ("kube-state-metrics alone", &["--set", "monitoring.prometheusRule.enabled=true"]),
        (
            "drills without the exporter",
            &["--set", "monitoring.prometheusRule.enabled=true,drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch"],
        ),
        ("the exporter without drills", &["--set", "monitoring.prometheusRule.enabled=true,exporter.enabled=true"]),
        (
            "the exporter, drills and the prune CronJob",
            &[
                "--set",
                "monitoring.prometheusRule.enabled=true,exporter.enabled=true,drill.enabled=true,drill.scratchUri.existingSecret=ingest-backup-drill-scratch",
                "--set",
                "retention.afterBackup=false",
            ],
        ),
        (
            "the exporter scraped under another job label",
            &[
                "--set",
                "monitoring.prometheusRule.enabled=true,exporter.enabled=true,pitr.enabled=true",
                "--set-string",
                "monitoring.prometheusRule.exporterSelector=job=\"ingest-backup-exporter\"",
            ],
        ),
    ];
    for stage in &stages {
        let name = stage.file_stem().unwrap().to_string_lossy().into_owned();
        let file = stage.to_string_lossy().into_owned();
        for &(label, extra) in &variants {
            let mut args = vec!["-f", file.as_str()];
            args.extend_from_slice(extra);
            let rules = rules_file(&helm, &python, &args, dir.path());
            check_rules(&promtool, &rules, &format!("{name} with {label}"));
        }
    }
}
