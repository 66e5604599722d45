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
    child: Child,
    _data: tempfile::TempDir,
    /// The S3 port.
    pub port: u16,
}

impl Versitygw {
    /// Starts the gateway and creates `bucket`.
    pub async fn start(binary: PathBuf, bucket: &str) -> Self {
        let port = super::free_port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY, "--port", &format!("127.0.0.1:{port}"), "--quiet", "posix"])
            .arg(data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start versitygw");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "versitygw did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let gateway = Versitygw { child, _data: data, port };
        gateway.client().create_bucket().bucket(bucket).send().await.expect("create the test bucket");
        gateway
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

    /// Object keys in `bucket`.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let listed = self.client().list_objects_v2().bucket(bucket).send().await.unwrap();
        listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
    }

    /// Multipart uploads still open in `bucket`.
    pub async fn open_uploads(&self, bucket: &str) -> usize {
        self.client().list_multipart_uploads().bucket(bucket).send().await.unwrap().uploads().len()
    }
}

impl Drop for Versitygw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
