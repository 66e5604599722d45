//! The credentials GCS and Azure users configure, against the emulators: an Azure account
//! SAS token (Azurite checks its signature, permissions and expiry) given in a connection
//! string or in `AZURE_STORAGE_SAS_TOKEN`; a GCS token from the metadata server (GKE
//! Workload Identity) and a self-signed token from a service-account key file
//! (`GOOGLE_APPLICATION_CREDENTIALS`), seen on every request by a recording proxy in
//! front of fake-gcs-server. Refused, forged, expired and malformed credentials are named
//! without printing them, before the database is read.
//!
//! Peers: SecantusDB (source), Azurite, fake-gcs-server.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine;
use bson::{doc, Document};
use common::azurite::{self, Azurite};
use common::fake_gcs::{self, FakeGcs};
use common::Server;

/// A source with a few documents.
async fn small_source() -> Server {
    let source = Server::start();
    let orders = source.client().await.database("shop").collection::<Document>("orders");
    orders.insert_many((0..20).map(|i| doc! { "_id": i, "qty": i })).await.unwrap();
    source
}

/// An account SAS token for Azurite's development account.
fn sas_token(permissions: &str, expiry: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/azurite_sas.py");
    let output = Command::new(common::python()).arg(script).args([permissions, expiry]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// The `sig` value of a SAS token (what must never be printed).
fn signature_of(token: &str) -> String {
    let sig = token.split('&').find_map(|pair| pair.strip_prefix("sig=")).unwrap();
    urlencoding_decode(sig)
}

fn urlencoding_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes()).next().unwrap().1.into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_azure_sas_token_works_and_a_read_only_forged_or_expired_one_is_refused() {
    let Some(binary) = azurite::binary_or_skip("an_azure_sas_token_works_and_a_read_only_forged_or_expired_one_is_refused") else { return };
    let azurite = Azurite::start(binary);
    azurite.create_container("backups");
    let source = small_source().await;
    let in_connection_string = |token: &str| {
        let text = format!("BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;SharedAccessSignature={token}", azurite.port);
        vec![("AZURE_STORAGE_CONNECTION_STRING".to_string(), text)]
    };
    let in_variables = |token: &str| {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".to_string(), "true".to_string()),
            ("AZURITE_BLOB_STORAGE_URL".to_string(), format!("http://127.0.0.1:{}", azurite.port)),
            ("AZURE_STORAGE_ACCOUNT".to_string(), "devstoreaccount1".to_string()),
            ("AZURE_STORAGE_SAS_TOKEN".to_string(), token.to_string()),
        ]
    };
    let run = |args: &[&str], env: &[(String, String)], token: &str| {
        let output = common::run_with_env(args, env);
        let text = common::all_output(&output);
        assert!(!text.contains(&signature_of(token)) && !text.contains(azurite::ACCOUNT_KEY), "a secret was printed: {text}");
        (output.status.code(), text)
    };

    let full = sas_token("racwdl", "2099-01-01T00:00:00Z");
    for (how, env) in [("connection string", in_connection_string(&full)), ("AZURE_STORAGE_SAS_TOKEN", in_variables(&full))] {
        let store = format!("az://backups/{}", if how.starts_with("AZURE") { "variables" } else { "string" });
        let (code, text) = run(&["backup", "--uri", &source.uri(), "--store", &store], &env, &full);
        assert_eq!(code, Some(0), "backup with a SAS token in the {how}: {text}");
        let (code, text) = run(&["verify", "latest", "--uri", &source.uri(), "--store", &store], &env, &full);
        assert_eq!(code, Some(0), "verify with a SAS token in the {how}: {text}");
    }

    // Read and list only: the store opens and lists, the backup's first write is denied.
    let read_only = sas_token("rl", "2099-01-01T00:00:00Z");
    let listed = common::run_with_env(&["list", "--store", "az://backups/string", "--json"], &in_connection_string(&read_only));
    assert!(listed.status.success(), "list with a read-only token: {}", common::all_output(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["backups"].as_array().map(Vec::len), Some(1), "{listed}");
    let (code, text) = run(&["backup", "--uri", &source.uri(), "--store", "az://backups/denied"], &in_connection_string(&read_only), &read_only);
    assert!(matches!(code, Some(1 | 2)), "{text}");
    assert!(text.contains("denied") && text.contains("AZURE_STORAGE"), "the cause and the variables to fix: {text}");

    let forged = full.replace(&urlencode(&signature_of(&full)), &urlencode("Zm9yZ2VkLXNpZ25hdHVyZS1mb3JnZWQtc2lnbmF0dXJlMTI="));
    assert_ne!(forged, full);
    let expired = sas_token("racwdl", "2020-01-01T00:00:00Z");
    for (what, token) in [("a forged signature", forged), ("an expired token", expired)] {
        let (code, text) = run(&["list", "--store", "az://backups/string"], &in_connection_string(&token), &token);
        assert_eq!(code, Some(2), "{what}: {text}");
        assert!(text.contains("AZURE_STORAGE_CONNECTION_STRING") && text.contains("az://backups"), "{what}: {text}");
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A metadata server and recording proxy in front of fake-gcs-server
/// (tests/common/gcp_metadata.py). Killed on drop.
struct MetadataProxy {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl MetadataProxy {
    /// Starts it; `token` is what the metadata server hands out, or `--refuse`.
    fn start(upstream: &FakeGcs, token: &str) -> Self {
        let port = common::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/gcp_metadata.py");
        let child = Command::new(common::python())
            .arg(script)
            .args([&port.to_string(), &upstream.host(), log.path().to_str().unwrap(), token])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the metadata stand-in did not listen");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        MetadataProxy { child, port, log }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests seen: token requests as `TOKEN <Metadata-Flavor>`, the rest as
    /// `METHOD PATH AUTHORIZATION`.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path()).unwrap().lines().map(str::to_string).collect()
    }

    /// The environment that sends the tool's GCS requests through the proxy.
    fn emulator_env(&self) -> Vec<(String, String)> {
        vec![("STORAGE_EMULATOR_HOST".to_string(), format!("http://{}", self.address()))]
    }
}

impl Drop for MetadataProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The storage requests the proxy saw (not the token requests).
fn storage_requests(proxy: &MetadataProxy) -> Vec<String> {
    proxy.requests().into_iter().filter(|line| !line.starts_with("TOKEN ")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gcs_token_from_the_metadata_server_is_sent_with_every_request_and_a_refusal_is_named() {
    let Some(binary) = fake_gcs::binary_or_skip("a_gcs_token_from_the_metadata_server_is_sent_with_every_request_and_a_refusal_is_named") else {
        return;
    };
    let server = FakeGcs::start(binary);
    server.create_bucket("backups").await;
    let source = small_source().await;
    let token = "ya29.workload-identity-token-41";
    let proxy = MetadataProxy::start(&server, token);
    let mut env = proxy.emulator_env();
    env.push(("GCE_METADATA_HOST".to_string(), proxy.address()));
    env.push(("GCE_METADATA_IP".to_string(), proxy.address()));
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", "gs://backups/wi", "--json"], &env);
    let text = common::all_output(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains(token), "the token was printed: {text}");
    let requests = proxy.requests();
    assert!(requests.iter().any(|line| line == "TOKEN Google"), "the token was asked of the metadata server: {requests:?}");
    let storage = storage_requests(&proxy);
    assert!(storage.iter().any(|line| line.starts_with("POST /upload/storage/v1/b/backups/o")), "uploads went through: {storage:?}");
    assert!(storage.iter().any(|line| line.starts_with("GET /backups")), "listings went through: {storage:?}");
    for line in &storage {
        assert!(line.ends_with(&format!("Bearer {token}")), "a request without the workload's token: {line}");
    }

    // A pod without a service account: the metadata server refuses; named, nothing read.
    let refusing = MetadataProxy::start(&server, "--refuse");
    let mut env = refusing.emulator_env();
    env.push(("GCE_METADATA_HOST".to_string(), refusing.address()));
    env.push(("GCE_METADATA_IP".to_string(), refusing.address()));
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", "gs://backups/refused"], &env);
    let text = common::all_output(&output);
    assert!(matches!(output.status.code(), Some(1 | 2)), "{text}");
    assert!(text.contains("gs://backups") && text.contains("metadata server"), "the cause and the fix: {text}");
    assert!(storage_requests(&refusing).iter().all(|line| line.ends_with('-')), "no request carried a token");
}

/// A service-account key file with a fresh RSA key (what `gcloud iam service-accounts
/// keys create` writes), and the key's PEM.
fn service_account_file(dir: &Path) -> (std::path::PathBuf, String) {
    let pem = dir.join("key.pem");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&pem)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let key = std::fs::read_to_string(&pem).unwrap();
    let file = dir.join("backup-sa.json");
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "ingest-test",
        "private_key_id": "0123456789abcdef",
        "private_key": key,
        "client_email": "backup@ingest-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(&file, json.to_string()).unwrap();
    (file, key)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gcs_service_account_key_file_signs_every_request_and_a_bad_file_is_named() {
    let Some(binary) = fake_gcs::binary_or_skip("a_gcs_service_account_key_file_signs_every_request_and_a_bad_file_is_named") else { return };
    let server = FakeGcs::start(binary);
    server.create_bucket("backups").await;
    let source = small_source().await;
    let work = tempfile::tempdir().unwrap();
    let (key_file, key_pem) = service_account_file(work.path());
    let proxy = MetadataProxy::start(&server, "--refuse");
    let mut env = proxy.emulator_env();
    env.push(("GOOGLE_APPLICATION_CREDENTIALS".to_string(), key_file.to_str().unwrap().to_string()));
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", "gs://backups/sa", "--json"], &env);
    let text = common::all_output(&output);
    assert!(output.status.success(), "{text}");
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!text.contains(key_body), "the private key was printed: {text}");
    let storage = storage_requests(&proxy);
    assert!(storage.iter().any(|line| line.starts_with("POST /upload/storage/v1/b/backups/o")), "{storage:?}");
    for line in &storage {
        // A self-signed JWT whose issuer is the key file's service account.
        let jwt = line.rsplit_once("Bearer ").unwrap_or_else(|| panic!("a request without a token: {line}")).1;
        let claims = jwt.split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["iss"], "backup@ingest-test.iam.gserviceaccount.com", "{line}");
    }
    assert!(!proxy.requests().iter().any(|line| line.starts_with("TOKEN")), "the key file, not the metadata server, gave the token");

    let broken = work.path().join("broken.json");
    let secret_part = "MIIEvQIBADANBgkqhkiG9w0-not-a-key-Secret-Part";
    std::fs::write(
        &broken,
        serde_json::json!({ "type": "service_account", "private_key_id": "1", "client_email": "x@y", "private_key": secret_part }).to_string(),
    )
    .unwrap();
    let not_json = work.path().join("not-json.json");
    std::fs::write(&not_json, "{ this is not a key file").unwrap();
    let missing = work.path().join("missing.json");
    for file in [&broken, &not_json, &missing] {
        let mut env = proxy.emulator_env();
        env.push(("GOOGLE_APPLICATION_CREDENTIALS".to_string(), file.to_str().unwrap().to_string()));
        let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", "gs://backups/bad"], &env);
        let text = common::all_output(&output);
        assert_eq!(output.status.code(), Some(2), "{}: {text}", file.display());
        assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS") && text.contains("gs://backups"), "{}: {text}", file.display());
        assert!(!text.contains(secret_part), "the key file's contents were printed: {text}");
    }
}
