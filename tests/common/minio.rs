//! A real S3 server for the tests: MinIO (built from its Go module by
//! `scripts/test-peers.sh`), on free loopback ports, with a bucket created through the
//! S3 API. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;

/// The root user of every test server.
pub const ACCESS_KEY: &str = "ingestadmin";
/// The root password; tests assert it never appears in any output.
pub const SECRET_KEY: &str = "s3cret-Never-Printed-42";
/// The bucket each test server starts with.
pub const BUCKET: &str = "ingest-backups";

/// The MinIO binary, if the test-peer script could build it.
pub fn binary() -> Option<PathBuf> {
    super::peer_binary("INGEST_TEST_MINIO")
}

/// Returns the binary, or prints why the calling test cannot run here.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    super::peer_binary_or_skip("INGEST_TEST_MINIO", test, "MinIO is not installed (scripts/test-peers.sh install minio reports why)")
}

/// The environment the tool needs to reach the S3 server at `endpoint` with these keys.
pub fn s3_env(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), access_key.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret_key.into()),
        ("AWS_REGION".into(), region.into()),
        ("S3_ENDPOINT".into(), endpoint.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// An SDK client (path-style) for the S3 server at `endpoint`, for test setup and checks.
pub fn s3_client(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// A MinIO server with one bucket.
pub struct Minio {
    binary: PathBuf,
    region: String,
    child: Option<Child>,
    data: tempfile::TempDir,
    /// The S3 API port.
    pub port: u16,
}

impl Minio {
    /// Starts a server and creates [`BUCKET`].
    pub async fn start(binary: PathBuf) -> Self {
        Self::start_in_region(binary, "us-east-1").await
    }

    /// Starts a server whose site region is `region` and creates [`BUCKET`] there.
    pub async fn start_in_region(binary: PathBuf, region: &str) -> Self {
        let mut minio = Minio { binary, region: region.to_string(), child: None, data: tempfile::tempdir().unwrap(), port: super::free_port() };
        minio.spawn();
        minio.client().create_bucket().bucket(BUCKET).send().await.expect("create the test bucket");
        minio
    }

    fn spawn(&mut self) {
        let console = super::free_port();
        let child = Command::new(&self.binary)
            .args(["server", "--quiet", "--address", &format!("127.0.0.1:{}", self.port), "--console-address", &format!("127.0.0.1:{console}")])
            .arg(self.data.path())
            .env("MINIO_ROOT_USER", ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", SECRET_KEY)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off")
            .env("MINIO_SITE_REGION", &self.region)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start MinIO");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let request = format!("GET /minio/health/ready HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.port);
                let _ = stream.write_all(request.as_bytes());
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "MinIO did not become ready on port {}", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The endpoint URL (`S3_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment the tool needs to reach this server with the root user.
    pub fn env(&self) -> Vec<(String, String)> {
        s3_env(&self.endpoint(), &self.region, ACCESS_KEY, SECRET_KEY)
    }

    /// An SDK client for test setup and checks.
    pub fn client(&self) -> Client {
        s3_client(&self.endpoint(), &self.region, ACCESS_KEY, SECRET_KEY)
    }

    /// Creates `bucket` with S3 Object Lock enabled (and so versioning).
    pub async fn create_locked_bucket(&self, bucket: &str) {
        self.client().create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await.expect("create a bucket with Object Lock");
    }

    /// Creates a user whose only policy is the JSON document in `policy`, through
    /// MinIO's admin API (the `minio` Python package of the test-peer virtualenv).
    pub fn add_user(&self, user: &str, secret: &str, policy: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), policy).unwrap();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/minio_admin.py");
        let output = Command::new(super::python())
            .arg(script)
            .args([&format!("127.0.0.1:{}", self.port), user])
            .arg(file.path())
            .env("MINIO_ROOT_USER", ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", SECRET_KEY)
            .env("NEW_USER_SECRET", secret)
            .output()
            .expect("run the MinIO admin helper");
        assert!(output.status.success(), "creating MinIO user {user}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// [`Minio::env`] with another user's keys.
    pub fn env_as(&self, user: &str, secret: &str) -> Vec<(String, String)> {
        s3_env(&self.endpoint(), &self.region, user, secret)
    }

    /// An SDK client with another user's keys.
    pub fn client_as(&self, user: &str, secret: &str) -> Client {
        s3_client(&self.endpoint(), &self.region, user, secret)
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        self.kill();
    }
}
