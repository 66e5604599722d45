//! The container engine and the image under test, and the hardened way to run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The user the image runs as, and the chart's `runAsUser`.
pub const UID: &str = "65532:65532";

/// The chart's memory limit (`resources.limits.memory` in values.yaml).
pub const MEMORY_LIMIT: &str = "384m";

/// The image's spool directory (`INGEST_BACKUP_SPOOL_DIR`).
pub const SPOOL: &str = "/var/spool/ingest-backup";

/// A container engine (podman or docker) and the image `scripts/test-container.sh` built.
pub struct Engine {
    program: PathBuf,
    /// The image reference.
    pub image: String,
}

impl Engine {
    /// The engine and image of `INGEST_TEST_CONTAINER_ENGINE` and `INGEST_TEST_IMAGE`,
    /// or `None` after reporting the skip (a failure under `CI=true`).
    pub fn or_skip(test: &str) -> Option<Engine> {
        let image = std::env::var("INGEST_TEST_IMAGE").ok().filter(|i| !i.is_empty());
        let program = std::env::var("INGEST_TEST_CONTAINER_ENGINE").unwrap_or_else(|_| "podman".into());
        match image {
            Some(image) => Some(Engine { program: PathBuf::from(program), image }),
            None => {
                super::common::skip_or_fail(test, "no container image: INGEST_TEST_IMAGE is unset (scripts/test-container.sh builds it)");
                None
            }
        }
    }

    /// Whether the engine is podman (kube play and podman-compose need it).
    pub fn is_podman(&self) -> bool {
        self.program.file_name().is_some_and(|n| n.to_string_lossy().contains("podman"))
    }

    /// A command of the engine.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.stdin(Stdio::null());
        command
    }

    /// Runs the engine with `args`, returning its output.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap_or_else(|e| panic!("run {} {args:?}: {e}", self.program.display()))
    }

    /// Runs the engine with `args` and returns its stdout, failing the test when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(output.status.success(), "{} {args:?} failed: {}", self.program.display(), super::common::all_output(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The arguments of `run` that give a container the chart's hardening: read-only
    /// root, uid 65532, every capability dropped, no new privileges, the chart's memory
    /// limit, the spool on a tmpfs owned by the user, and the host's network (the
    /// servers listen on its loopback).
    pub fn hardened(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["--network", "host", "--read-only", "--user", UID, "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--memory", MEMORY_LIMIT]
                .map(String::from)
                .to_vec();
        let spool = if self.is_podman() {
            format!("type=tmpfs,destination={SPOOL},tmpfs-mode=0700,U=true")
        } else {
            format!("type=tmpfs,destination={SPOOL},tmpfs-mode=0700")
        };
        args.extend(["--mount".to_string(), spool]);
        args
    }

    /// Runs the tool in a hardened, removed-on-exit container: `env` as `-e`, `extra`
    /// engine arguments (mounts), then the tool's `args`.
    pub fn run_tool(&self, env: &[(String, String)], extra: &[String], args: &[&str]) -> Output {
        let mut command = self.command();
        command.args(["run", "--rm"]).args(self.hardened()).args(extra);
        for (key, value) in env {
            command.arg("-e").arg(format!("{key}={value}"));
        }
        command.arg(&self.image).args(args);
        command.output().unwrap()
    }

    /// Starts the tool in a named, detached hardened container.
    pub fn start_tool(&self, name: &str, env: &[(String, String)], extra: &[String], args: &[&str]) {
        let _ = self.output(&["rm", "-f", name]);
        let mut command = self.command();
        command.args(["run", "-d", "--name", name]).args(self.hardened()).args(extra);
        for (key, value) in env {
            command.arg("-e").arg(format!("{key}={value}"));
        }
        command.arg(&self.image).args(args);
        let output = command.output().unwrap();
        assert!(output.status.success(), "start container {name}: {}", super::common::all_output(&output));
    }

    /// Waits for a container to exit and returns its exit code, failing after `limit`.
    pub fn wait_exit(&self, name: &str, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.ok(&["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name]);
            let mut parts = state.split_whitespace();
            if parts.next() == Some("false") {
                return parts.next().unwrap().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "container {name} still running after {limit:?}: {}", self.logs(name));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `done` every 200 ms until it holds, failing the test after `limit` with
    /// `what` and container `name`'s log.
    pub fn wait_until(&self, name: &str, limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: {}", self.logs(name));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A container's log (stdout and stderr).
    pub fn logs(&self, name: &str) -> String {
        let output = self.output(&["logs", name]);
        super::common::all_output(&output)
    }

    /// Removes a container, running or not.
    pub fn remove(&self, name: &str) {
        let _ = self.output(&["rm", "-f", "-t", "0", name]);
    }
}

/// A mount of a host file or directory, read-only, in the engine's `--mount` syntax.
pub fn read_only_mount(source: &Path, destination: &str) -> Vec<String> {
    vec!["--mount".into(), format!("type=bind,source={},destination={destination},readonly=true", source.display())]
}

/// `GET path` on 127.0.0.1:`port`: the status code and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
