//! Shared helpers for the integration tests: real SecantusDB servers on free ports,
//! the release binary, the official mongo-tools, and archive readers.
//!
//! `scripts/test.sh` installs the peers and exports `INGEST_TEST_PYTHON` (the
//! virtualenv with SecantusDB and pymongo) and, when the official tools could be built,
//! `INGEST_TEST_MONGO_TOOLS`.
#![allow(dead_code)]

pub mod azurite;
pub mod dataset;
pub mod fake_gcs;
pub mod ferretdb;
pub mod http_sink;
pub mod minio;
pub mod s3_server;
pub mod versitygw;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::Client;

/// The Python interpreter of the test-peer virtualenv.
pub fn python() -> PathBuf {
    if let Ok(path) = std::env::var("INGEST_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let cached = dirs_cache().join("venv/bin/python");
    assert!(cached.exists(), "SecantusDB is not installed: run ./scripts/test.sh (or scripts/test-peers.sh install)");
    cached
}

fn dirs_cache() -> PathBuf {
    std::env::var("INGEST_BACKUP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/ingest-backup"))
}

/// Whether the tests run under CI (`CI=true`), where no peer may be missing.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false)
}

/// Reports that `test` cannot run its part that needs a missing peer. Under `CI=true`
/// this fails the test with `reason`; elsewhere it prints `SKIPPED` and records the skip
/// in `$INGEST_TEST_SKIP_LOG`, which `scripts/test.sh` summarises in one line at the end.
pub fn skip_or_fail(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test}: {reason} (CI=true: a missing test peer fails the test; run scripts/test-peers.sh install)");
    }
    eprintln!("SKIPPED {test}: {reason}");
    if let Ok(log) = std::env::var("INGEST_TEST_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(file, "{test} ({reason})");
        }
    }
}

/// The executable a test-peer variable names (`scripts/test-peers.sh env` exports it),
/// if it exists.
pub fn peer_binary(var: &str) -> Option<PathBuf> {
    let path = std::env::var(var).map(PathBuf::from).ok()?;
    path.exists().then_some(path)
}

/// [`peer_binary`]; when it is missing, fails the test under CI and otherwise reports
/// the skip ([`skip_or_fail`]) with `reason`.
pub fn peer_binary_or_skip(var: &str, test: &str, reason: &str) -> Option<PathBuf> {
    let found = peer_binary(var);
    if found.is_none() {
        skip_or_fail(test, reason);
    }
    found
}

/// The directory holding the official mongodump, mongorestore and bsondump, if installed.
pub fn mongo_tools() -> Option<PathBuf> {
    let dir = std::env::var("INGEST_TEST_MONGO_TOOLS").map(PathBuf::from).ok()?;
    ["mongodump", "mongorestore", "bsondump"].iter().all(|t| dir.join(t).exists()).then_some(dir)
}

/// Returns the tools directory; when they are missing, fails the test under CI and
/// otherwise reports the skip ([`skip_or_fail`]).
pub fn mongo_tools_or_skip(test: &str) -> Option<PathBuf> {
    let tools = mongo_tools();
    if tools.is_none() {
        skip_or_fail(test, "the official mongo-tools are not installed (scripts/test-peers.sh install mongo-tools reports why)");
    }
    tools
}

/// A SecantusDB server process on a free loopback port, killed on drop.
pub struct Server {
    child: Child,
    /// Its port.
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// A replica-set server (with an oplog).
    pub fn start() -> Self {
        Self::spawn(&[])
    }

    /// A standalone server (no replica set, no oplog).
    pub fn start_standalone() -> Self {
        Self::spawn(&["--standalone"])
    }

    /// A server with extra command-line flags (`--auth`, `--tls-cert-file ...`), its data
    /// in `storage` (a directory that outlives a restart) or in memory when `None`.
    pub fn start_with(storage: Option<&Path>, extra: &[&str]) -> Self {
        let storage = storage.map_or_else(|| ":memory:".to_string(), |path| path.display().to_string());
        Self::spawn_on(&storage, extra)
    }

    fn spawn(extra: &[&str]) -> Self {
        Self::spawn_on(":memory:", extra)
    }

    fn spawn_on(storage: &str, extra: &[&str]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("secantus-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(python())
            .args(["-m", "secantus", "--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path", storage])
            .args(extra)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start SecantusDB");
        let mut server = Server { child, port, log };
        server.wait_until_ready();
        server
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // A server that exited (its port taken by another process) must not be
            // mistaken for whatever else answers on that port.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("SecantusDB on port {} exited ({status}); log: {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("SecantusDB did not start on port {}; log: {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// A URI for this server that fails fast when it is gone.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=3000", self.port)
    }

    /// A driver client for test setup and checks.
    pub async fn client(&self) -> Client {
        Client::with_uri_str(self.uri()).await.unwrap()
    }

    /// Stops the server as an operator would (SIGTERM, then waits), so that data in a
    /// storage directory is flushed for the next start.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port nothing listens on right now, and never handed out before in this test
/// process: tests run in parallel threads, and two servers given the same port made
/// one test talk to the other's server (regression: restore tests that saw each
/// other's data).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(port) {
            return port;
        }
    }
}

/// The `ingest-backup` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ingest-backup"))
}

/// Runs `ingest-backup` with `args` and waits for it.
pub fn run(args: &[&str]) -> Output {
    Command::new(binary()).args(args).env_remove("MONGO_URI").env_remove("S3_BUCKET").output().unwrap()
}

/// Runs `ingest-backup` with `args` and the given environment and waits for it.
pub fn run_with_env(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(binary());
    command.args(args).env_remove("MONGO_URI").env_remove("S3_BUCKET").env_remove("BACKUP_DIR").env_remove("AWS_ROLE_ARN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Starts `ingest-backup` with `args` and the given environment, without waiting.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(binary());
    command.args(args).env_remove("MONGO_URI").env_remove("S3_BUCKET").stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Runs `ingest-backup backup --json` into `store` and returns the parsed JSON result,
/// failing the test with the process's stderr if the backup failed.
pub fn backup(uri: &str, store: &Path, extra: &[&str]) -> serde_json::Value {
    let store = store.to_str().unwrap();
    let mut args = vec!["backup", "--uri", uri, "--store", store, "--json"];
    args.extend_from_slice(extra);
    let output = run(&args);
    assert!(output.status.success(), "backup failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON document")
}

/// Text of a process's stdout and stderr together.
pub fn all_output(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Extracts `archive` with the system `tar -xf` into `into` (the original ingest backup scripts' restore step).
pub fn untar(archive: &str, into: &Path) {
    let flag = if archive.ends_with(".tar.zst") { "--zstd" } else { "-z" };
    let status = Command::new("tar").args(["-x", flag, "-f", archive, "-C"]).arg(into).status().unwrap();
    assert!(status.success(), "tar could not extract {archive}");
}

/// Every regular member of an archive: path -> bytes.
pub fn archive_members(archive: &str) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(archive).unwrap();
    let reader: Box<dyn Read> = if archive.ends_with(".tar.zst") {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    };
    let mut members = BTreeMap::new();
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            members.insert(path, bytes);
        }
    }
    members
}

/// Splits a `.bson` file into its raw documents, checking each length prefix.
pub fn split_bson(bytes: &[u8]) -> Vec<RawDocumentBuf> {
    let mut documents = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let length = i32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        documents.push(RawDocumentBuf::from_bytes(rest[..length].to_vec()).expect("well-formed BSON"));
        rest = &rest[length..];
    }
    documents
}

/// Every document of a collection, keyed by its `_id` rendered as canonical
/// Extended JSON, as raw bytes.
pub async fn documents_by_id(client: &Client, database: &str, collection: &str) -> BTreeMap<String, Vec<u8>> {
    let mut cursor = client.database(database).collection::<RawDocumentBuf>(collection).find(doc! {}).await.unwrap();
    let mut by_id = BTreeMap::new();
    while cursor.advance().await.unwrap() {
        let raw = cursor.current();
        by_id.insert(id_key(raw), raw.as_bytes().to_vec());
    }
    by_id
}

/// The `_id` of a raw document as canonical Extended JSON (a map key).
pub fn id_key(raw: &bson::RawDocument) -> String {
    let id: bson::Bson = raw.get("_id").unwrap().expect("every document has an _id").to_raw_bson().try_into().unwrap();
    id.into_canonical_extjson().to_string()
}

/// Index specs of a collection keyed by name, without the `ns` field old servers add.
pub async fn index_specs(client: &Client, database: &str, collection: &str) -> BTreeMap<String, Document> {
    let cursor = client.database(database).collection::<Document>(collection).list_indexes().await.unwrap();
    let specs: Vec<Document> = cursor.with_type::<Document>().try_collect().await.unwrap();
    specs
        .into_iter()
        .map(|mut spec| {
            spec.remove("ns");
            (spec.get_str("name").unwrap().to_string(), spec)
        })
        .collect()
}

/// `listCollections` of a database: name -> (type, options).
pub async fn collection_specs(client: &Client, database: &str) -> BTreeMap<String, (String, Document)> {
    let cursor = client.database(database).list_collections().await.unwrap();
    let specs: Vec<Document> = cursor.with_type::<Document>().try_collect().await.unwrap();
    specs
        .into_iter()
        .map(|spec| {
            let name = spec.get_str("name").unwrap().to_string();
            let kind = spec.get_str("type").unwrap_or("collection").to_string();
            (name, (kind, spec.get_document("options").cloned().unwrap_or_default()))
        })
        .collect()
}

/// Waits until `path` exists (a test-hook marker), failing after a minute.
pub fn wait_for_file(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("the backup exited ({status}) before reaching the pause point: {stderr}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Files in `dir` (names only), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Asserts that every namespace of a backup's manifest was restored into `target`
/// (database `database_map(source db)`) with byte-identical documents, the same type
/// and options, and the same indexes as in `source`. Returns the collections compared.
pub async fn assert_restored_identical(
    source: &Client,
    target: &Client,
    manifest: &serde_json::Value,
    database_map: impl Fn(&str) -> String,
) -> usize {
    let mut compared = 0;
    for entry in manifest["namespaces"].as_array().unwrap() {
        let (db, coll) = (entry["database"].as_str().unwrap(), entry["collection"].as_str().unwrap());
        let target_db = database_map(db);
        let source_specs = collection_specs(source, db).await;
        let target_specs = collection_specs(target, &target_db).await;
        assert_eq!(target_specs.get(coll), source_specs.get(coll), "type and options of {db}.{coll}");
        if entry["type"] == "view" {
            continue;
        }
        let expected = documents_by_id(source, db, coll).await;
        let restored = documents_by_id(target, &target_db, coll).await;
        assert_eq!(restored.len(), expected.len(), "document count of {db}.{coll}");
        for (id, bytes) in &expected {
            assert!(restored.get(id) == Some(bytes), "document {id} of {db}.{coll} is not byte-identical after restore");
        }
        assert_eq!(index_specs(target, &target_db, coll).await, index_specs(source, db, coll).await, "indexes of {db}.{coll}");
        compared += 1;
    }
    compared
}

/// The sidecar manifest of a backup made into a local store, parsed.
pub fn sidecar(store: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(store.join(format!("{name}.manifest.json"))).unwrap()).unwrap()
}

/// Runs a command of the binary that prints `--json`, returning its exit status and
/// parsed JSON (Null when stdout held none) and the whole output for messages.
pub fn run_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let output = run(args);
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), json, all_output(&output))
}

/// Rewrites a gzip archive, passing each regular member's bytes through `edit`
/// (return `None` to leave the member out).
pub fn repack(archive: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let members = archive_members(archive.to_str().unwrap());
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()));
    for (path, bytes) in members {
        let Some(bytes) = edit(&path, bytes) else { continue };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, &path, &bytes[..]).unwrap();
    }
    let bytes = builder.into_inner().unwrap().finish().unwrap();
    std::fs::write(archive, bytes).unwrap();
}

/// Flips the first occurrence of `needle` in `bytes` by replacing its first byte.
pub fn flip_first(bytes: &mut [u8], needle: &[u8]) {
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the text is in the member");
    bytes[at] ^= 0x02;
}
