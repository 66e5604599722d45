//! `s3_fault_proxy.py` in front of a [`Minio`] (or, with [`Dialect::Gcs`] or
//! [`Dialect::Azure`], fake-gcs-server or Azurite): an HTTP reverse proxy on a free
//! loopback port that forwards requests verbatim (so SigV4 and Shared Key signatures
//! still verify) and answers chosen ones with a fault (503 SlowDown, 500 InternalError,
//! a connection cut mid-body, a request never answered). Rules are
//! `KIND:ACTION[:COUNT]` as the script documents; [`S3FaultProxy::stats`] reads what it
//! did. Killed on drop.
//!
//! Included with `#[path = "common/s3_fault_proxy.rs"] mod s3_fault_proxy;` beside
//! `mod common;`.

#![allow(dead_code)] // each test binary uses a different part of the proxy

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::minio::Minio;

/// What the proxy counted: requests seen and faults injected per `KIND:ACTION`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ProxyStats {
    /// Requests received (faulted or forwarded).
    pub requests: u64,
    /// Faults injected, keyed `part:slowdown`, `complete:internal`, ...
    pub faults: BTreeMap<String, u64>,
}

impl ProxyStats {
    /// Faults injected by rule `kind_action` (`"part:cut"`); 0 when it never fired.
    pub fn fired(&self, kind_action: &str) -> u64 {
        self.faults.get(kind_action).copied().unwrap_or(0)
    }
}

/// Per namespace `db.collection` of a sidecar: documents, SHA-256 of the `.bson` file,
/// content hash; equal for two backups of the same data.
pub type Digests = BTreeMap<String, (u64, String, String)>;

/// The [`Digests`] of a sidecar manifest's bytes.
pub fn sidecar_digests(sidecar: &[u8]) -> Digests {
    let sidecar: serde_json::Value = serde_json::from_slice(sidecar).expect("the sidecar is JSON");
    sidecar["namespaces"]
        .as_array()
        .expect("the sidecar lists its namespaces")
        .iter()
        .map(|ns| {
            let text = |field: &str| ns[field].as_str().unwrap().to_string();
            (format!("{}.{}", text("database"), text("collection")), (ns["documents"].as_u64().unwrap(), text("sha256"), text("content_hash")))
        })
        .collect()
}

/// The outcome of one run of the tool through a proxy.
pub struct FaultedRun {
    /// Its exit status.
    pub code: Option<i32>,
    /// Its `--json` output (null when there was none).
    pub json: serde_json::Value,
    /// Everything it printed.
    pub output: String,
    /// What the proxy did meanwhile.
    pub stats: ProxyStats,
    /// How long it ran.
    pub elapsed: Duration,
}

impl FaultedRun {
    /// Runs `tool` (the tool, reaching its store through `proxy`), timing it and
    /// printing a line about it labelled `label`.
    pub fn of(proxy: &S3FaultProxy, label: &str, tool: impl FnOnce() -> std::process::Output) -> Self {
        let started = Instant::now();
        let output = tool();
        let run = Self {
            code: output.status.code(),
            json: serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null),
            output: crate::common::all_output(&output),
            stats: proxy.stats(),
            elapsed: started.elapsed(),
        };
        eprintln!("{label}: exit {:?} after {:.1?}, proxy {:?}", run.code, run.elapsed, run.stats);
        run
    }
}

/// How the store behind the proxy spells its requests (the script's `--dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// S3 (MinIO, versitygw).
    S3,
    /// The Cloud Storage JSON API (fake-gcs-server): resumable sessions.
    Gcs,
    /// Azure Blob Storage (Azurite): blocks and block lists.
    Azure,
}

impl Dialect {
    fn flag(self) -> &'static str {
        match self {
            Dialect::S3 => "s3",
            Dialect::Gcs => "gcs",
            Dialect::Azure => "azure",
        }
    }
}

/// A running fault proxy.
pub struct S3FaultProxy {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    upstream_env: Vec<(String, String)>,
}

/// The script beside this file.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/s3_fault_proxy.py")
}

impl S3FaultProxy {
    /// Starts the proxy in front of `minio` with `rules` (`"part:slowdown:2"`, ...),
    /// waiting until it prints `ready`.
    pub fn start(minio: &Minio, rules: &[&str]) -> Self {
        let mut proxy = Self::in_front_of(minio.port, Dialect::S3, rules);
        proxy.upstream_env = minio.env();
        proxy
    }

    /// Starts the proxy in front of the server on `upstream_port`, which speaks `dialect`.
    /// [`S3FaultProxy::env`] is then empty: the caller builds the store's variables
    /// around [`S3FaultProxy::endpoint`].
    pub fn in_front_of(upstream_port: u16, dialect: Dialect, rules: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::common::free_port();
        let mut command = Command::new(crate::common::python());
        command
            .arg(script())
            .args(["--port", &port.to_string(), "--upstream", &format!("127.0.0.1:{upstream_port}"), "--dialect", dialect.flag()])
            .arg("--stats")
            .arg(dir.path().join("stats.json"));
        for rule in rules {
            command.args(["--rule", rule]);
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start s3_fault_proxy.py");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        if line.trim() != "ready" {
            let _ = child.kill();
            panic!("s3_fault_proxy.py did not become ready on port {port} (printed {line:?})");
        }
        Self { child, port, dir, upstream_env: Vec::new() }
    }

    /// The endpoint URL to give the tool (`S3_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The MinIO environment with `S3_ENDPOINT` pointing at the proxy.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.upstream_env.iter().filter(|(key, _)| key != "S3_ENDPOINT").cloned().collect();
        env.push(("S3_ENDPOINT".into(), self.endpoint()));
        env
    }

    /// What the proxy did so far (from its `--stats` file).
    pub fn stats(&self) -> ProxyStats {
        let text = std::fs::read_to_string(self.dir.path().join("stats.json")).expect("the proxy writes its stats file at start");
        serde_json::from_str(&text).expect("the stats file is JSON")
    }

    /// Clears every rule (SIGUSR1): from now on every request passes through.
    pub fn clear_rules(&self) {
        let status = Command::new("kill").args(["-USR1", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "signalling the proxy");
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Waits until the proxy has seen at least `requests` requests, or `timeout`.
    pub fn wait_for_requests(&self, requests: u64, timeout: Duration) -> ProxyStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if stats.requests >= requests || Instant::now() >= deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
