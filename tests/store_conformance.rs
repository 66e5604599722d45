//! The object-store conformance suite (`ingest_backup::store::conformance`) against a
//! real S3 server (MinIO), plus what only a real server can show: wrong credentials
//! are a `Denied` error that never carries the secret, and the backup-level listing
//! reads every sidecar of many backups.
//!
//! Peers: MinIO.

mod common;

use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use common::minio::{self, Minio, BUCKET, SECRET_KEY};
use common::s3_server::S3Server;
use ingest_backup::store::s3::{S3Settings, S3Store};
use ingest_backup::store::{conformance, ObjectStore, PutMode, Store, StoreErrorKind};

fn settings() -> S3Settings {
    S3Settings {
        endpoint: None,
        region: Some("us-east-1".into()),
        role_arn: None,
        role_session_name: "ingest-backup".into(),
        role_duration: std::time::Duration::from_secs(3600),
        sse: None,
        sse_kms_key_id: None,
        storage_class: None,
        part_size: 5 << 20,
        parts_in_flight: 2,
        write_lock: None,
        checksum: Default::default(),
        force_path_style: None,
    }
}

fn client_with_secret(minio: &Minio, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(minio.endpoint())
        .credentials_provider(Credentials::new(minio::ACCESS_KEY, secret, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_store_conforms() {
    let Some(binary) = minio::binary_or_skip("the_s3_store_conforms") else { return };
    let minio = Minio::start(binary).await;
    let store = S3Store::with_client(minio.client(), BUCKET, "conformance", settings()).await.unwrap();
    conformance::run_all(&store).await;
    assert_eq!(minio.open_uploads().await, 0, "no multipart upload is left open");
    assert!(minio.keys().await.iter().all(|key| key.starts_with("conformance/")), "every key is under the prefix");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_denied_without_the_secret() {
    let Some(binary) = minio::binary_or_skip("wrong_credentials_are_denied_without_the_secret") else { return };
    let minio = Minio::start(binary).await;
    let wrong = "not-the-secret-Never-Printed-7";
    let error = S3Store::with_client(client_with_secret(&minio, wrong), BUCKET, "p", settings()).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Denied, "{error}");
    assert!(!error.to_string().contains(wrong) && !error.to_string().contains(SECRET_KEY), "{error}");
    let as_crate_error: ingest_backup::Error = error.into();
    assert_eq!(as_crate_error.exit_code(), 2, "denied access is the user's to fix");

    let missing = S3Store::with_client(minio.client(), "no-such-bucket", "p", settings()).await.unwrap_err();
    assert_eq!(missing.kind(), StoreErrorKind::Misconfigured, "{missing}");
    assert!(missing.to_string().contains("the bucket does not exist"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_of_many_backups_reads_every_sidecar() {
    let Some(binary) = minio::binary_or_skip("a_listing_of_many_backups_reads_every_sidecar") else { return };
    let minio = Minio::start(binary).await;
    let objects: Arc<dyn ObjectStore> = Arc::new(S3Store::with_client(minio.client(), BUCKET, "many", settings()).await.unwrap());
    let names: Vec<String> = (0..120).map(|i| format!("2018-04-{:02}T{:02}_{:02}", 1 + i / 60, (i / 10) % 6, i % 60)).collect();
    let puts = names.iter().enumerate().map(|(i, name)| {
        let objects = objects.clone();
        async move {
            objects.put(&format!("{name}.tar.gz"), Bytes::from(vec![0u8; i]), PutMode::Create).await.unwrap();
            if i % 4 != 0 {
                objects.put(&format!("{name}.manifest.json"), Bytes::from(name.clone()), PutMode::Create).await.unwrap();
            }
            if i % 2 == 0 {
                objects.put(&format!("{name}.verify.json"), Bytes::from(format!("v{name}")), PutMode::Create).await.unwrap();
            }
        }
    });
    futures::future::join_all(puts).await;
    let listed = Store::new(objects).list().await.unwrap();
    assert_eq!(listed.len(), names.len());
    assert!(listed.windows(2).all(|w| w[0].name > w[1].name), "newest first");
    for backup in &listed {
        let i = names.iter().position(|n| n == &backup.name).unwrap();
        assert_eq!(backup.size, i as u64, "{}", backup.name);
        assert_eq!(backup.sidecar, (i % 4 != 0).then(|| backup.name.as_bytes().to_vec()), "{}", backup.name);
        assert_eq!(backup.verification, (i % 2 == 0).then(|| format!("v{}", backup.name).into_bytes()), "{}", backup.name);
    }
}
