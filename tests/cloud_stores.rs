//! Stores beyond S3, against their emulators: Azure Blob Storage (`az://`) on Azurite.
//! The store passes the same conformance suite as the local, memory and S3 stores
//! (multipart in several parts, abort, conditional create, listing of open uploads); a
//! backup goes there and comes back: listed, verified against the source, restored
//! document for document; a missing container and a wrong key are named, without the key.
//!
//! Peers: SecantusDB (source and restore target), Azurite.

mod common;

use common::azurite::{self, Azurite, ACCOUNT_KEY};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use ingest_backup::store::cloud::azure::{self as azure_store, AzureSettings};
use ingest_backup::store::conformance;

fn settings(azurite: &Azurite) -> AzureSettings {
    AzureSettings { connection_string: Some(azurite.connection_string()), ..AzureSettings::default() }
}

/// The official `mongorestore` judges a backup read back from a cloud store: the archive
/// is fetched through the store, unpacked with `tar`, restored into a fresh server and
/// compared document for document with the source.
async fn official_mongorestore_restores(store: &dyn ingest_backup::store::ObjectStore, name: &str, source: &Server) {
    let Some(tools) = common::mongo_tools_or_skip("mongorestore of a cloud backup") else { return };
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join(format!("{name}.tar.gz"));
    std::fs::write(&archive, ingest_backup::store::object::get_bytes(store, &format!("{name}.tar.gz")).await.unwrap()).unwrap();
    common::untar(archive.to_str().unwrap(), work.path());
    let target = Server::start();
    let dump = work.path().join(format!("data/db/dump/{name}"));
    let output = std::process::Command::new(tools.join("mongorestore")).arg(format!("--uri={}", target.uri())).arg(&dump).output().unwrap();
    assert!(output.status.success(), "mongorestore: {}", common::all_output(&output));
    let (source, target) = (source.client().await, target.client().await);
    for collection in sample::COLLECTIONS {
        let expected = common::documents_by_id(&source, "ingest", collection).await;
        assert!(!expected.is_empty());
        assert_eq!(common::documents_by_id(&target, "ingest", collection).await, expected, "ingest.{collection} by mongorestore");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_azure_store_conforms() {
    let Some(binary) = azurite::binary_or_skip("the_azure_store_conforms") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("conformance");
    let store = azure_store::open("conformance", "under/a/prefix", &settings(&azurite)).await.expect("open the container");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_on_azure_lists_verifies_and_restores() {
    let Some(binary) = azurite::binary_or_skip("a_backup_on_azure_lists_verifies_and_restores") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("backups");
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 2 << 20, seed: 27 }).await.unwrap();
    let env = vec![("AZURE_STORAGE_CONNECTION_STRING".to_string(), azurite.connection_string())];
    let store = "az://backups/prod";

    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", store, "--json"], &env);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let name = result["name"].as_str().unwrap().to_string();
    assert_eq!(result["archive"], format!("az://backups/prod/{name}.tar.gz"));

    let (code, listed, text) = common::run_json(&["list", "--store", store, "--json"]);
    assert_eq!(code, 2, "without credentials the store is refused: {text}");
    assert!(text.contains("AZURE_STORAGE_CONNECTION_STRING"), "{text}");
    let _ = listed;
    let output = common::run_with_env(&["list", "--store", store, "--json"], &env);
    assert!(output.status.success(), "list: {}", common::all_output(&output));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed["backups"][0]["name"], name.as_str());
    assert_eq!(listed["backups"][0]["complete"], true);

    let output = common::run_with_env(&["verify", "latest", "--uri", &source.uri(), "--store", store, "--json"], &env);
    assert!(output.status.success(), "verify: {}", common::all_output(&output));

    let target = Server::start();
    let output = common::run_with_env(&["restore", "latest", "--uri", &target.uri(), "--store", store, "--json"], &env);
    assert!(output.status.success(), "restore: {}", common::all_output(&output));
    let sidecar = common::run_with_env(&["list", "--store", store, "--json"], &env);
    assert!(sidecar.status.success());
    let manifest = {
        let settings = settings(&azurite);
        let store = azure_store::open("backups", "prod", &settings).await.unwrap();
        let bytes = ingest_backup::store::object::get_bytes(&store, &format!("{name}.manifest.json")).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let compared = common::assert_restored_identical(&source.client().await, &target.client().await, &manifest, |db| db.to_string()).await;
    assert!(compared >= 3, "{compared} collections compared");
    let store = azure_store::open("backups", "prod", &settings(&azurite)).await.unwrap();
    official_mongorestore_restores(&store, &name, &source).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_container_and_a_wrong_key_are_named_without_the_key() {
    let Some(binary) = azurite::binary_or_skip("a_missing_container_and_a_wrong_key_are_named_without_the_key") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("present");
    let env = vec![("AZURE_STORAGE_CONNECTION_STRING".to_string(), azurite.connection_string())];
    let output = common::run_with_env(&["list", "--store", "az://absent/prod"], &env);
    let text = common::all_output(&output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("az://absent") && text.contains("does not exist"), "{text}");

    let wrong = azurite.connection_string().replace(ACCOUNT_KEY, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=");
    let output = common::run_with_env(&["list", "--store", "az://present/prod"], &[("AZURE_STORAGE_CONNECTION_STRING".to_string(), wrong)]);
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("AZURE_STORAGE_CONNECTION_STRING") && !text.contains("d3Jvbmcta2V5"), "{text}");
    for bad in ["az://Bad--Container/x", "az://ab"] {
        let output = common::run_with_env(&["list", "--store", bad], &env);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert!(common::all_output(&output).contains("container name"), "{}", common::all_output(&output));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_upload_to_azure_leaves_no_object_and_no_open_upload() {
    let Some(binary) = azurite::binary_or_skip("sigterm_mid_upload_to_azure_leaves_no_object_and_no_open_upload") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("backups");
    let source = Server::start();
    sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 12 << 20, seed: 28 }).await.unwrap();
    let connection = azurite.connection_string();
    let store = "az://backups/prod";
    let work = tempfile::tempdir().unwrap();
    // Paused after every collection went into the archive: blocks are uploaded, the upload is open.
    let hook = format!("before-oplog-end:{}", work.path().join("release").display());
    let env = [("AZURE_STORAGE_CONNECTION_STRING", connection.as_str()), ("INGEST_BACKUP_TEST_PAUSE", hook.as_str())];
    let mut child = common::spawn(&["backup", "--uri", &source.uri(), "--store", store, "--level", "0"], &env);
    common::wait_for_file(&work.path().join("release.waiting"), &mut child);
    let objects = azure_store::open("backups", "prod", &settings(&azurite)).await.unwrap();
    use ingest_backup::store::ObjectStore;
    assert_eq!(objects.list_multipart_uploads("").await.unwrap().len(), 1, "the archive is being uploaded");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let text = common::all_output(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains(ACCOUNT_KEY), "the account key was printed");
    assert!(objects.list_multipart_uploads("").await.unwrap().is_empty(), "the upload was aborted");
    assert!(objects.list("").await.unwrap().is_empty(), "no object of the backup is left");
}

mod gcs {
    use super::common::fake_gcs::{self, FakeGcs};
    use super::common::{self, Server};
    use ingest_backup::sample::{self, SampleSpec};
    use ingest_backup::store::cloud::gcs::{self as gcs_store, GcsSettings};
    use ingest_backup::store::conformance;

    fn settings(server: &FakeGcs) -> GcsSettings {
        GcsSettings { emulator_host: Some(server.host()), ..Default::default() }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_gcs_store_conforms() {
        let Some(binary) = fake_gcs::binary_or_skip("the_gcs_store_conforms") else { return };
        let server = FakeGcs::start(binary);
        server.create_bucket("conformance").await;
        let store = gcs_store::open("conformance", "under/a/prefix", &settings(&server)).await.expect("open the bucket");
        conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_backup_on_gcs_in_several_parts_lists_verifies_and_restores() {
        let Some(binary) = fake_gcs::binary_or_skip("a_backup_on_gcs_in_several_parts_lists_verifies_and_restores") else { return };
        let server = FakeGcs::start(binary);
        server.create_bucket("backups").await;
        let source = Server::start();
        sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 20 << 20, seed: 29 }).await.unwrap();
        let env = vec![("STORAGE_EMULATOR_HOST".to_string(), server.host())];
        let store = "gs://backups/prod";
        // Level 0: the archive is larger than two 8 MiB chunks.
        let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", store, "--level", "0", "--json"], &env);
        assert!(output.status.success(), "backup: {}", common::all_output(&output));
        let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(result["archive_bytes"].as_u64().unwrap() > 16 << 20, "{result}");
        let output = common::run_with_env(&["list", "--store", store, "--json"], &env);
        assert!(output.status.success(), "list: {}", common::all_output(&output));
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(listed["backups"][0]["complete"], true, "{listed}");
        let output = common::run_with_env(&["verify", "latest", "--uri", &source.uri(), "--store", store], &env);
        assert!(output.status.success(), "verify: {}", common::all_output(&output));
        let target = Server::start();
        let output = common::run_with_env(&["restore", "latest", "--uri", &target.uri(), "--store", store, "--json"], &env);
        assert!(output.status.success(), "restore: {}", common::all_output(&output));
        let name = result["name"].as_str().unwrap();
        let objects = gcs_store::open("backups", "prod", &settings(&server)).await.unwrap();
        let bytes = ingest_backup::store::object::get_bytes(&objects, &format!("{name}.manifest.json")).await.unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let compared = common::assert_restored_identical(&source.client().await, &target.client().await, &manifest, |db| db.to_string()).await;
        assert!(compared >= 3, "{compared} collections compared");
        super::official_mongorestore_restores(&objects, name, &source).await;

        // fake-gcs-server answers a missing bucket with HTTP 500 (GCS: 404, "does not exist"):
        // after the retries, the store is still named and nothing is presented as done.
        let output = common::run_with_env(&["list", "--store", "gs://absent-bucket/prod"], &env);
        let text = common::all_output(&output);
        assert_ne!(output.status.code(), Some(0), "{text}");
        assert!(text.contains("gs://absent-bucket"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sigterm_mid_upload_to_gcs_leaves_no_object_and_no_open_upload() {
        use ingest_backup::store::ObjectStore;
        let Some(binary) = fake_gcs::binary_or_skip("sigterm_mid_upload_to_gcs_leaves_no_object_and_no_open_upload") else { return };
        let server = FakeGcs::start(binary);
        server.create_bucket("backups").await;
        let source = Server::start();
        sample::load(&source.client().await, &SampleSpec { database: "ingest".into(), target_bytes: 20 << 20, seed: 32 }).await.unwrap();
        let work = tempfile::tempdir().unwrap();
        let hook = format!("before-oplog-end:{}", work.path().join("release").display());
        let host = server.host();
        let env = [("STORAGE_EMULATOR_HOST", host.as_str()), ("INGEST_BACKUP_TEST_PAUSE", hook.as_str())];
        let mut child = common::spawn(&["backup", "--uri", &source.uri(), "--store", "gs://backups/prod", "--level", "0"], &env);
        common::wait_for_file(&work.path().join("release.waiting"), &mut child);
        let objects = gcs_store::open("backups", "prod", &settings(&server)).await.unwrap();
        assert_eq!(objects.list_multipart_uploads("").await.unwrap().len(), 1, "the archive is being uploaded");
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
        assert!(objects.list_multipart_uploads("").await.unwrap().is_empty(), "the upload was cancelled");
        assert!(objects.list("").await.unwrap().is_empty(), "no object of the backup is left");
    }
}

/// Every command on a cloud store (`store`, reached with `env`): an encrypted backup, an
/// oplog slice, a second backup, `list` with the restorable range, `verify --pitr`,
/// `restore --to-time` of the encrypted chain, `prune`, `hold` refused (no Object Lock).
async fn every_command_on(store: &str, env: &[(String, String)]) {
    use bson::{doc, Document};
    let source = Server::start();
    let client = source.client().await;
    let orders = client.database("shop").collection::<Document>("orders");
    orders.insert_many((0..50).map(|i| doc! { "_id": i, "qty": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let key_file = work.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    }
    let recipient = identity.to_public().to_string();
    let run = |args: &[&str]| {
        let output = common::run_with_env(args, env);
        let text = common::all_output(&output);
        assert!(!text.contains("AGE-SECRET-KEY-") && !text.contains(ACCOUNT_KEY), "{text}");
        (output.status.code(), text, serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default())
    };
    let (code, text, _) = run(&["backup", "--uri", &source.uri(), "--store", store, "--encrypt-to", &recipient]);
    assert_eq!(code, Some(0), "encrypted backup: {text}");
    orders.insert_many((50..60).map(|i| doc! { "_id": i, "qty": i })).await.unwrap();
    orders.delete_many(doc! { "_id": { "$lt": 5 } }).await.unwrap();
    let newest = client.database("local").collection::<Document>("oplog.rs").find_one(doc! {}).sort(doc! { "$natural": -1 }).await.unwrap().unwrap();
    let ts = newest.get_timestamp("ts").unwrap();
    let point = format!("{}.{}", ts.time, ts.increment);
    let (code, text, _) = run(&["oplog", "--uri", &source.uri(), "--store", store, "--encrypt-to", &recipient]);
    assert_eq!(code, Some(0), "oplog: {text}");
    let (code, text, listed) = run(&["list", "--store", store, "--json"]);
    assert_eq!(code, Some(0), "list: {text}");
    assert_eq!(listed["pitr"].as_array().map(Vec::len), Some(1), "{listed}");
    let key = key_file.to_str().unwrap();
    let (code, text, _) = run(&["verify", "--pitr", "--store", store, "--identity", key]);
    assert_eq!(code, Some(0), "verify --pitr: {text}");
    let target = Server::start();
    let (code, text, _) = run(&["restore", "--to-time", &point, "--uri", &target.uri(), "--store", store, "--identity", key]);
    assert_eq!(code, Some(0), "restore --to-time: {text}");
    let restored = target.client().await.database("shop").collection::<Document>("orders").count_documents(doc! {}).await.unwrap();
    assert_eq!(restored, 55, "the state at the point: 60 inserted, 5 deleted");
    let (code, text, _) = run(&["backup", "--uri", &source.uri(), "--store", store]);
    assert_eq!(code, Some(0), "second backup: {text}");
    let (code, text, pruned) = run(&["prune", "--store", store, "--keep-last", "1", "--json"]);
    assert_eq!(code, Some(0), "prune: {text}");
    assert_eq!(pruned["removed_backups"], 1, "{pruned}");
    let (code, text, _) = run(&["hold", "latest", "--store", store]);
    assert_eq!(code, Some(2), "hold needs S3 Object Lock: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_works_on_azure() {
    let Some(binary) = azurite::binary_or_skip("every_command_works_on_azure") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("backups");
    every_command_on("az://backups/all", &[("AZURE_STORAGE_CONNECTION_STRING".to_string(), azurite.connection_string())]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_works_on_gcs() {
    let Some(binary) = common::fake_gcs::binary_or_skip("every_command_works_on_gcs") else { return };
    let server = common::fake_gcs::FakeGcs::start(binary);
    server.create_bucket("backups").await;
    every_command_on("gs://backups/all", &[("STORAGE_EMULATOR_HOST".to_string(), server.host())]).await;
}

/// `schedule` on a cloud store: the backup made at start is verified and followed by
/// oplog slices, all listed through the store; SIGTERM stops it with exit 0.
async fn schedule_runs_on(store: &str, env: &[(String, String)]) {
    use bson::{doc, Document};
    let source = Server::start();
    let orders = source.client().await.database("shop").collection::<Document>("orders");
    orders.insert_many((0..20).map(|i| doc! { "_id": i })).await.unwrap();
    let listen = format!("127.0.0.1:{}", common::free_port());
    let uri = source.uri();
    // A yearly cron: only --run-now makes the backup during the test.
    let args = ["schedule", "--uri", &uri, "--store", store, "--listen", &listen, "--cron", "0 0 1 1 *", "--run-now"];
    let args = [&args[..], &["--verify-delay", "1s", "--oplog-every", "1s"]].concat();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = common::spawn(&args, &env_refs);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let listed = loop {
        assert!(child.try_wait().unwrap().is_none(), "schedule exited early");
        orders.insert_one(doc! { "tick": 1 }).await.unwrap();
        let output = common::run_with_env(&["list", "--store", store, "--json"], env);
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let verified = listed["backups"][0]["verification"]["status"] == "passed";
        let sliced = listed["pitr"][0]["slices"].as_u64().unwrap_or(0) >= 1;
        if verified && sliced {
            break listed;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{store}: no verified backup with oplog slices within 120 s: {listed}\n{}",
                common::all_output(&child.wait_with_output().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(listed["backups"].as_array().unwrap().len(), 1, "{listed}");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{store}: {}", common::all_output(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_backs_up_verifies_and_slices_on_azure_and_gcs() {
    let Some(azurite_binary) = azurite::binary_or_skip("schedule_backs_up_verifies_and_slices_on_azure_and_gcs") else { return };
    let Some(gcs_binary) = common::fake_gcs::binary_or_skip("schedule_backs_up_verifies_and_slices_on_azure_and_gcs") else { return };
    let azurite = Azurite::start(azurite_binary);
    azurite.create_container("backups");
    schedule_runs_on("az://backups/sched", &[("AZURE_STORAGE_CONNECTION_STRING".to_string(), azurite.connection_string())]).await;
    let server = common::fake_gcs::FakeGcs::start(gcs_binary);
    server.create_bucket("backups").await;
    schedule_runs_on("gs://backups/sched", &[("STORAGE_EMULATOR_HOST".to_string(), server.host())]).await;
}
