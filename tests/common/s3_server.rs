//! What the S3 tests need from an S3 server, so that the same test runs against MinIO
//! and versitygw: its endpoint and the tool's environment, an SDK client, the objects
//! and open uploads in [`BUCKET`], and a kill and a restart on the same port and data.

use std::future::Future;

use aws_sdk_s3::Client;

pub use super::minio::BUCKET;

/// A running S3 server holding [`BUCKET`].
pub trait S3Server {
    /// The server's name in assertion messages.
    fn name(&self) -> &'static str;
    /// The endpoint URL (`S3_ENDPOINT`).
    fn endpoint(&self) -> String;
    /// The environment the tool needs to reach this server.
    fn env(&self) -> Vec<(String, String)>;
    /// An SDK client for test setup and checks.
    fn client(&self) -> Client;
    /// The secret key; tests assert it never appears in any output.
    fn secret(&self) -> &'static str;
    /// Kills the server at once (SIGKILL).
    fn kill(&mut self);
    /// Starts the server again on the same port and data directory.
    fn restart(&mut self);

    /// Object keys in [`BUCKET`].
    fn keys(&self) -> impl Future<Output = Vec<String>> {
        let client = self.client();
        async move {
            let listed = client.list_objects_v2().bucket(BUCKET).send().await.unwrap();
            listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
        }
    }

    /// Multipart uploads still open in [`BUCKET`].
    fn open_uploads(&self) -> impl Future<Output = usize> {
        let client = self.client();
        async move { client.list_multipart_uploads().bucket(BUCKET).send().await.unwrap().uploads().len() }
    }
}

impl S3Server for super::minio::Minio {
    fn name(&self) -> &'static str {
        "MinIO"
    }
    fn endpoint(&self) -> String {
        super::minio::Minio::endpoint(self)
    }
    fn env(&self) -> Vec<(String, String)> {
        super::minio::Minio::env(self)
    }
    fn client(&self) -> Client {
        super::minio::Minio::client(self)
    }
    fn secret(&self) -> &'static str {
        super::minio::SECRET_KEY
    }
    fn kill(&mut self) {
        super::minio::Minio::kill(self)
    }
    fn restart(&mut self) {
        super::minio::Minio::restart(self)
    }
}

impl S3Server for super::versitygw::Versitygw {
    fn name(&self) -> &'static str {
        "versitygw"
    }
    fn endpoint(&self) -> String {
        super::versitygw::Versitygw::endpoint(self)
    }
    fn env(&self) -> Vec<(String, String)> {
        super::versitygw::Versitygw::env(self)
    }
    fn client(&self) -> Client {
        super::versitygw::Versitygw::client(self)
    }
    fn secret(&self) -> &'static str {
        super::versitygw::SECRET_KEY
    }
    fn kill(&mut self) {
        super::versitygw::Versitygw::kill(self)
    }
    fn restart(&mut self) {
        super::versitygw::Versitygw::restart(self)
    }
}
