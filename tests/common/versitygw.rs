//! A second S3-compatible server for the tests: versitygw (the Versity S3 gateway, built
//! from its Go module by `scripts/test-peers.sh`) over a POSIX directory, on a free
//! loopback port, so that the S3 store is proven on more than MinIO. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;

/// The gateway's access key.
pub const ACCESS_KEY: &str = "versityadmin";
/// Its secret; tests check it never appears in any output.
pub const SECRET_KEY: &str = "Versity-Secret-Never-Printed-7";

/// Returns the binary, or prints why the calling test cannot run here.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    super::peer_binary_or_skip("INGEST_TEST_S3_SECOND", test, "versitygw is not installed (scripts/test-peers.sh install s3-second reports why)")
}

/// A running versitygw.
pub struct Versitygw {
    binary: PathBuf,
    child: Option<Child>,
    data: tempfile::TempDir,
    /// The S3 port.
    pub port: u16,
}

impl Versitygw {
    /// Starts the gateway and creates `bucket`.
    pub async fn start(binary: PathBuf, bucket: &str) -> Self {
        let mut gateway = Versitygw { binary, child: None, data: tempfile::tempdir().unwrap(), port: super::free_port() };
        gateway.spawn();
        gateway.client().create_bucket().bucket(bucket).send().await.expect("create the test bucket");
        gateway
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY, "--port", &format!("127.0.0.1:{}", self.port), "--quiet", "posix"])
            .arg(self.data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start versitygw");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "versitygw did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the gateway at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the gateway again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The endpoint URL (`S3_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment the tool needs to reach this gateway.
    pub fn env(&self) -> Vec<(String, String)> {
        super::minio::s3_env(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }

    /// An SDK client for test setup and checks.
    pub fn client(&self) -> Client {
        super::minio::s3_client(&self.endpoint(), "us-east-1", ACCESS_KEY, SECRET_KEY)
    }
}

impl Drop for Versitygw {
    fn drop(&mut self) {
        self.kill();
    }
}
