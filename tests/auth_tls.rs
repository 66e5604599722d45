//! Credentials and TLS: backup, verify and restore against a SecantusDB that demands
//! SCRAM-SHA-256 (`--auth`) and one that speaks only TLS (a test CA made here with
//! rcgen). A wrong password, a user that does not exist and a CA that did not sign the
//! server's certificate each exit 1 with a message naming the cause, and the password
//! never appears in any output.
//!
//! Peer: SecantusDB (`--auth`, `--tls-cert-file/--tls-key-file/--tls-ca-file`).

mod common;

use std::path::Path;

use bson::doc;
use common::Server;
use ingest_backup::sample::{self, SampleSpec};

const USER: &str = "backup-operator";
const PASSWORD: &str = "Pa55-never-PRINTED-7q";

/// A SecantusDB with `--auth` whose `admin` database holds [`USER`] (role `root`),
/// loaded with a small sample data set. SecantusDB provisions users only without
/// `--auth`, so the user and data are created first and the server restarted on the
/// same storage directory.
async fn server_with_user(storage: &Path) -> Server {
    let mut setup = Server::start_with(Some(storage), &[]);
    let client = setup.client().await;
    client.database("admin").run_command(doc! { "createUser": USER, "pwd": PASSWORD, "roles": ["root"] }).await.unwrap();
    sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed: 11 }).await.unwrap();
    drop(client);
    setup.stop();
    drop(setup);
    Server::start_with(Some(storage), &["--auth"])
}

fn with_credentials(server: &Server, user: &str, password: &str) -> String {
    format!("mongodb://{user}:{password}@127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=3000&authSource=admin", server.port)
}

/// Runs the binary and returns (exit status, all output), asserting that no secret is in
/// the output.
fn run_checked(args: &[&str], secrets: &[&str]) -> (i32, String) {
    let output = common::run(args);
    let text = common::all_output(&output);
    for secret in secrets {
        assert!(!text.contains(secret), "a secret leaked into the output of {args:?}: {text}");
    }
    assert!(!text.contains("panicked"), "{args:?} panicked: {text}");
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn scram_credentials_back_up_verify_and_restore_and_bad_ones_fail_naming_the_cause() {
    let work = tempfile::tempdir().unwrap();
    let server = server_with_user(&work.path().join("source-db")).await;
    let uri = with_credentials(&server, USER, PASSWORD);
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();

    let (status, text) = run_checked(&["backup", "--uri", &uri, "--store", store_arg, "--json"], &[PASSWORD]);
    assert_eq!(status, 0, "backup with SCRAM credentials: {text}");
    let name = common::file_names(&store).into_iter().find_map(|f| f.strip_suffix(".manifest.json").map(str::to_string)).unwrap();
    let manifest = common::sidecar(&store, &name);
    assert!(manifest["totals"]["documents"].as_u64().unwrap() > 0, "the sample data was backed up");
    assert!(!manifest.to_string().contains(PASSWORD) && !manifest.to_string().contains(USER), "the manifest holds hosts only");

    let (status, text) = run_checked(&["verify", "--store", store_arg, &name, "--uri", &uri, "--json"], &[PASSWORD]);
    assert_eq!(status, 0, "verify (archive and live) with SCRAM credentials: {text}");

    let (status, text) =
        run_checked(&["restore", "--store", store_arg, &name, "--uri", &uri, "--ns-from", "ingest", "--ns-to", "restored", "--json"], &[PASSWORD]);
    assert_eq!(status, 0, "restore with SCRAM credentials: {text}");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let compared =
        common::assert_restored_identical(&client, &client, &manifest, |db| if db == "ingest" { "restored".into() } else { db.into() }).await;
    assert!(compared > 0);

    // A wrong password, a user that does not exist, and no credentials at all: exit 1,
    // the cause named, no password printed (neither the right nor the wrong one).
    let wrong = "Wr0ng-pa55word-also-secret";
    for (case, bad_uri) in
        [("wrong password", with_credentials(&server, USER, wrong)), ("missing user", with_credentials(&server, "nobody-here", wrong))]
    {
        for args in [
            vec!["backup", "--uri", &bad_uri, "--store", store_arg],
            vec!["verify", "--store", store_arg, &name, "--uri", &bad_uri],
            vec!["restore", "--store", store_arg, &name, "--uri", &bad_uri, "--ns-from", "ingest", "--ns-to", "other"],
        ] {
            let (status, text) = run_checked(&args, &[PASSWORD, wrong]);
            assert_eq!(status, 1, "{case}, {}: {text}", args[0]);
            let lower = text.to_lowercase();
            assert!(lower.contains("authentication failed"), "{case}, {}: the cause is named: {text}", args[0]);
            assert!(text.contains("authSource") && text.contains("password"), "{case}, {}: the fix is named: {text}", args[0]);
        }
    }
    let anonymous = format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=3000", server.port);
    let (status, text) = run_checked(&["backup", "--uri", &anonymous, "--store", store_arg], &[PASSWORD]);
    assert_eq!(status, 1, "no credentials against --auth: {text}");
    assert!(text.contains("requires authentication") && text.contains("user:password@"), "the cause and fix are named: {text}");
    assert_only_backup(&store, &name);
}

/// The failed runs left no other backup, partial or complete, in the store: only
/// `name`'s archive, sidecar and its (latest, failed) verification record.
fn assert_only_backup(store: &Path, name: &str) {
    let files = common::file_names(store);
    assert!(files.iter().all(|f| f.starts_with(name) && !f.ends_with(".partial")), "no failed run left anything in the store: {files:?}");
    assert!(files.contains(&format!("{name}.manifest.json")) && files.contains(&format!("{name}.tar.gz")), "{files:?}");
}

/// A certificate authority and a server certificate for 127.0.0.1 signed by it, as PEM
/// files in `dir`: `ca.pem`, `server.pem` (certificate), `server.key`.
fn make_ca_and_server_certificate(dir: &Path, prefix: &str) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    std::fs::write(dir.join(format!("{prefix}-ca.pem")), ca_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{prefix}-server.pem")), server_cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{prefix}-server.key")), server_key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_servers_ca_backs_up_verifies_and_restores_and_a_wrong_ca_fails() {
    let work = tempfile::tempdir().unwrap();
    make_ca_and_server_certificate(work.path(), "good");
    make_ca_and_server_certificate(work.path(), "other");
    let file = |name: &str| work.path().join(name).display().to_string();
    let server = Server::start_with(
        None,
        &["--tls-cert-file", &file("good-server.pem"), "--tls-key-file", &file("good-server.key"), "--tls-ca-file", &file("good-ca.pem")],
    );
    let uri_with_ca = |ca: &str| {
        format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=5000&tls=true&tlsCAFile={}", server.port, file(ca))
    };
    let uri = uri_with_ca("good-ca.pem");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: 1 << 20, seed: 12 }).await.unwrap();

    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let (status, text) = run_checked(&["backup", "--uri", &uri, "--store", store_arg, "--json"], &[]);
    assert_eq!(status, 0, "backup over TLS: {text}");
    let name = common::file_names(&store).into_iter().find_map(|f| f.strip_suffix(".manifest.json").map(str::to_string)).unwrap();
    let manifest = common::sidecar(&store, &name);
    let (status, text) = run_checked(&["verify", "--store", store_arg, &name, "--uri", &uri], &[]);
    assert_eq!(status, 0, "verify over TLS: {text}");
    let (status, text) = run_checked(&["restore", "--store", store_arg, &name, "--uri", &uri, "--ns-from", "ingest", "--ns-to", "restored"], &[]);
    assert_eq!(status, 0, "restore over TLS: {text}");
    let compared =
        common::assert_restored_identical(&client, &client, &manifest, |db| if db == "ingest" { "restored".into() } else { db.into() }).await;
    assert!(compared > 0);

    // A CA that did not sign the server's certificate, and plain TCP to a TLS server.
    let wrong_ca = uri_with_ca("other-ca.pem");
    for args in [vec!["backup", "--uri", &wrong_ca, "--store", store_arg], vec!["verify", "--store", store_arg, &name, "--uri", &wrong_ca]] {
        let (status, text) = run_checked(&args, &[]);
        assert_eq!(status, 1, "{} with the wrong CA: {text}", args[0]);
        assert!(text.contains("TLS") && text.contains("tlsCAFile"), "{} with the wrong CA names TLS and the fix: {text}", args[0]);
    }
    let missing_ca = uri.replace("good-ca.pem", "no-such-ca.pem");
    let (status, text) = run_checked(&["backup", "--uri", &missing_ca, "--store", store_arg], &[]);
    assert_ne!(status, 0, "a missing CA file: {text}");
    assert!(text.contains("no-such-ca.pem"), "the missing CA file is named: {text}");
    assert_only_backup(&store, &name);
}
