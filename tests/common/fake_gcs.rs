//! Google Cloud Storage for the tests: fake-gcs-server (built from its Go module by
//! `scripts/test-peers.sh`), in memory, plain HTTP on a free loopback port. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Returns the binary, or prints why the calling test cannot run here.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    super::peer_binary_or_skip("INGEST_TEST_FAKE_GCS", test, "fake-gcs-server is not installed (scripts/test-peers.sh install fake-gcs reports why)")
}

/// A running fake-gcs-server.
pub struct FakeGcs {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl FakeGcs {
    /// Starts the server and waits until it answers the bucket listing. A port taken
    /// between choosing it and the server's bind (tests start servers in parallel) makes
    /// the server exit, or another process answer: it is started again on another port.
    pub fn start(binary: PathBuf) -> Self {
        for _ in 0..5 {
            let port = super::free_port();
            let address = format!("127.0.0.1:{port}");
            let mut child = Command::new(&binary)
                .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory"])
                .args(["-public-host", &address, "-external-url", &format!("http://{address}"), "-log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start fake-gcs-server");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if lists_buckets(port) {
                    return FakeGcs { child, port };
                }
                assert!(Instant::now() < deadline, "fake-gcs-server did not answer on {port}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("fake-gcs-server exited at start five times (each on a fresh port)");
    }

    /// `STORAGE_EMULATOR_HOST` for this server.
    pub fn host(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/storage/v1/b?project=test", self.host()))
            .header("Content-Type", "application/json")
            .body(format!("{{\"name\":\"{bucket}\"}}"))
            .send()
            .await
            .expect("reach fake-gcs-server");
        assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether fake-gcs-server answers `GET /storage/v1/b` on `port` with 200.
fn lists_buckets(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /storage/v1/b?project=test HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok() && stream.read_to_string(&mut response).is_ok() && response.starts_with("HTTP/1.1 200")
}
