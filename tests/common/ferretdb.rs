//! FerretDB v1 (SQLite handler), the second MongoDB-compatible test server: one process
//! per test on free ports with its own temporary SQLite directory, killed on drop
//! (FerretDB uses CPU even when idle).
//!
//! `scripts/test-peers.sh install ferretdb` builds the binary and `env` exports
//! `INGEST_TEST_FERRETDB`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::Client;

/// The FerretDB binary, if installed.
pub fn binary() -> Option<PathBuf> {
    super::peer_binary("INGEST_TEST_FERRETDB")
}

/// Returns the FerretDB binary; when it is missing, fails the test under CI and
/// otherwise reports the skip ([`super::skip_or_fail`]).
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    super::peer_binary_or_skip(
        "INGEST_TEST_FERRETDB",
        test,
        "FerretDB is not installed (scripts/test-peers.sh install ferretdb; then export INGEST_TEST_FERRETDB)",
    )
}

/// The user FerretDB creates at start with [`FerretDb::start_with_scram_user`].
pub struct SetupUser {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Database the user is created in (the authentication database).
    pub database: String,
}

/// A FerretDB server process on a free loopback port, killed on drop.
pub struct FerretDb {
    child: Child,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl FerretDb {
    /// A server with no authentication (FerretDB's SQLite backend checks none).
    pub fn start(binary: &std::path::Path) -> Self {
        Self::spawn(binary, &[])
    }

    /// A server with FerretDB's new authentication (`--test-enable-new-auth`): SCRAM
    /// only, and `user` created at start.
    pub fn start_with_scram_user(binary: &std::path::Path, user: &SetupUser) -> Self {
        Self::spawn(
            binary,
            &[
                "--test-enable-new-auth".into(),
                format!("--setup-username={}", user.username),
                format!("--setup-password={}", user.password),
                format!("--setup-database={}", user.database),
            ],
        )
    }

    fn spawn(binary: &std::path::Path, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let port = super::free_port();
        let debug_port = loop {
            let candidate = super::free_port();
            if candidate != port {
                break candidate;
            }
        };
        let log = std::fs::File::create(dir.path().join("ferretdb.log")).unwrap();
        let child = Command::new(binary)
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", data.display()))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .arg(format!("--debug-addr=127.0.0.1:{debug_port}"))
            .arg(format!("--state-dir={}", dir.path().display()))
            .arg("--telemetry=disable")
            .arg("--log-level=warn")
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start FerretDB");
        let mut server = FerretDb { child, port, dir };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("FerretDB exited at start ({status}); log: {}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("FerretDB did not start on port {}; log: {}", self.port, self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ferretdb.log")).unwrap_or_default()
    }

    /// A URI for this server that fails fast when it is gone.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=5000", self.port)
    }

    /// The URI with credentials and options (`authSource=...&authMechanism=...`).
    pub fn uri_with(&self, user: &str, password: &str, options: &str) -> String {
        format!("mongodb://{user}:{password}@127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=5000&{options}", self.port)
    }

    /// A driver client for test setup and checks.
    pub async fn client(&self) -> Client {
        Client::with_uri_str(self.uri()).await.unwrap()
    }
}

impl Drop for FerretDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
