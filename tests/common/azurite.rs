//! Azure Blob Storage for the tests: Azurite (the npm package, installed by
//! `scripts/test-peers.sh`), its blob service on a free loopback port, in memory, with
//! the well-known development account. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The development account's published key (not a secret; tests check it is never printed anyway).
pub const ACCOUNT_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Returns the `azurite-blob` binary, or prints why the calling test cannot run here.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    super::peer_binary_or_skip("INGEST_TEST_AZURITE", test, "Azurite is not installed (scripts/test-peers.sh install azurite reports why)")
}

/// A running Azurite blob service.
pub struct Azurite {
    child: Child,
    _work: tempfile::TempDir,
    /// The blob service port.
    pub port: u16,
}

impl Azurite {
    /// Starts the blob service and waits until it answers.
    pub fn start(binary: PathBuf) -> Self {
        let port = super::free_port();
        let work = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"])
            .current_dir(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Azurite");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Azurite did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Azurite { child, _work: work, port }
    }

    /// The connection string of the development account on this server.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            self.port
        )
    }

    /// Creates `container`.
    pub fn create_container(&self, container: &str) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/azurite_container.py");
        let output = Command::new(super::python()).arg(script).args([&self.port.to_string(), container]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
