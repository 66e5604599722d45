//! Client-side encryption against real servers: a backup encrypted to two age
//! recipients is decrypted by each identity alone, by the stock `age -d`, then
//! `tar -xzf` and the official `mongorestore` restore every document byte-identical;
//! native `restore` and `verify` with the identity pass; without it `verify
//! --archive-only` checks the stored bytes only and says so; a wrong identity, an
//! altered or truncated ciphertext and a missing identity each fail naming the cause,
//! and a restore writes nothing before the archive's first chunk authenticates; the
//! sidecar names no namespace unless `--sidecar-detail full`; the same on S3 (MinIO);
//! no private key appears in any output.
//!
//! Peers: SecantusDB (source and targets), the stock age v1.2.1 (`INGEST_TEST_AGE_BIN`,
//! from scripts/test-peers.sh), the official mongorestore, MinIO.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;
use bson::{doc, Document};
use common::minio::{self, Minio, BUCKET};
use common::{dataset, Server};
use sha2::{Digest, Sha256};

/// An age key pair written as `age-keygen -o` writes it.
struct Key {
    public: String,
    secret: String,
    file: PathBuf,
}

fn key(dir: &Path, label: &str) -> Key {
    let identity = age::x25519::Identity::generate();
    let (public, secret) = (identity.to_public().to_string(), identity.to_string().expose_secret().to_string());
    let file = dir.join(format!("{label}.txt"));
    std::fs::write(&file, format!("# created: test\n# public key: {public}\n{secret}\n")).unwrap();
    Key { public, secret, file }
}

/// Fails when any private key appears in `output` (stdout or stderr).
fn assert_no_key_material(output: &Output, what: &str) {
    let text = common::all_output(output);
    assert!(!text.contains("AGE-SECRET-KEY-"), "{what} printed key material: {text}");
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let output = common::run_with_env(args, &env);
    assert_no_key_material(&output, &args.join(" "));
    output
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

fn age_bin(test: &str) -> Option<PathBuf> {
    common::peer_binary_or_skip("INGEST_TEST_AGE_BIN", test, "the stock age is not installed (scripts/test-peers.sh install age)")
}

/// `age -d -i identity input` into `output`, with the stock tool.
fn stock_decrypt(age_dir: &Path, identity: &Path, input: &Path, output: &Path) {
    let status = Command::new(age_dir.join("age")).arg("-d").arg("-i").arg(identity).arg("-o").arg(output).arg(input).output().unwrap();
    assert!(status.status.success(), "age -d: {}", common::all_output(&status));
}

/// The sidecar without its sealed copy: everything anyone who can read the bucket sees.
fn readable_sidecar(sidecar: &serde_json::Value) -> String {
    let mut readable = sidecar.clone();
    readable["encryption"].as_object_mut().unwrap().remove("sealed_manifest");
    readable.to_string()
}

/// A replica-set server holding `megabytes` of the sample data set, and a client of it.
async fn sample_source(megabytes: u64, seed: u64) -> (Server, mongodb::Client) {
    let source = Server::start();
    let client = source.client().await;
    let spec = ingest_backup::sample::SampleSpec { database: "ingest".into(), target_bytes: megabytes << 20, seed };
    ingest_backup::sample::load(&client, &spec).await.unwrap();
    (source, client)
}

async fn databases(server: &Server) -> Vec<String> {
    let mut names = server.client().await.list_database_names().await.unwrap();
    names.retain(|n| !matches!(n.as_str(), "admin" | "local" | "config"));
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn each_recipient_decrypts_and_stock_age_tar_and_mongorestore_restore_every_document() {
    let test = "each_recipient_decrypts_and_stock_age_tar_and_mongorestore_restore_every_document";
    let Some(age_dir) = age_bin(test) else { return };
    let source = Server::start();
    let client = source.client().await;
    dataset::load(&client, 1).await;
    let work = tempfile::tempdir().unwrap();
    let (alice, bob) = (key(work.path(), "alice"), key(work.path(), "bob"));
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();

    let output =
        run_env(&["backup", "--uri", &source.uri(), "--store", store_arg, "--encrypt-to", &alice.public, "--encrypt-to", &bob.public, "--json"], &[]);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    let result = json(&output);
    let name = result["name"].as_str().unwrap().to_string();
    assert_eq!(result["encrypted"], true);
    assert_eq!(result["recipients"], serde_json::json!([alice.public, bob.public]));
    let archive = store.join(format!("{name}.tar.gz.age"));
    assert!(result["archive"].as_str().unwrap().ends_with(".tar.gz.age"), "{result}");
    let ciphertext = std::fs::read(&archive).unwrap();
    assert!(ciphertext.starts_with(b"age-encryption.org/v1\n"), "the stored object is an age file");

    // The sidecar: the ciphertext's size and hash, the recipients, totals; no namespace.
    let sidecar = common::sidecar(&store, &name);
    assert_eq!(sidecar["archive"]["sha256"], hex::encode(Sha256::digest(&ciphertext)));
    assert_eq!(sidecar["archive"]["size"], ciphertext.len() as u64);
    assert_eq!(sidecar["encryption"]["recipients"], serde_json::json!([alice.public, bob.public]));
    assert_eq!(sidecar["compression"], "gzip");
    assert!(sidecar["totals"]["documents"].as_u64().unwrap() > 0);
    assert_eq!(sidecar["namespaces"], serde_json::json!([]));
    let sealed = sidecar["encryption"]["sealed_manifest"].as_str().unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));

    // The whole manifest, opened from the sidecar with the stock age (the key-rotation recipe).
    let sealed_file = work.path().join("sealed.age");
    std::fs::write(&sealed_file, sealed).unwrap();
    let manifest_file = work.path().join("manifest.json");
    stock_decrypt(&age_dir, &bob.file, &sealed_file, &manifest_file);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_file).unwrap()).unwrap();
    let readable = readable_sidecar(&sidecar);
    let namespaces = manifest["namespaces"].as_array().unwrap();
    assert!(namespaces.len() >= 12, "{} namespaces", namespaces.len());
    for entry in namespaces {
        for field in ["database", "collection"] {
            let value = entry[field].as_str().unwrap();
            assert!(!readable.contains(&format!(":\"{value}\"")), "the sidecar names {field} {value:?}: {readable}");
        }
    }

    // Each identity alone decrypts the archive with the stock age, to the same bytes.
    let (by_alice, by_bob) = (work.path().join("alice.tar.gz"), work.path().join("bob.tar.gz"));
    stock_decrypt(&age_dir, &alice.file, &archive, &by_alice);
    stock_decrypt(&age_dir, &bob.file, &archive, &by_bob);
    assert!(std::fs::read(&by_alice).unwrap() == std::fs::read(&by_bob).unwrap(), "both identities decrypt the same archive");

    // tar -xzf, then the official mongorestore: every document byte-identical.
    if let Some(tools) = common::mongo_tools_or_skip(test) {
        let unpacked = work.path().join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        common::untar(by_alice.to_str().unwrap(), &unpacked);
        let target = Server::start();
        let dump = unpacked.join(format!("data/db/dump/{name}"));
        let restored = Command::new(tools.join("mongorestore")).arg(format!("--uri={}", target.uri())).arg(&dump).output().unwrap();
        assert!(restored.status.success(), "mongorestore: {}", common::all_output(&restored));
        let compared = common::assert_restored_identical(&client, &target.client().await, &manifest, str::to_string).await;
        assert!(compared >= 10, "compared {compared} collections");
    }

    // The native restore with either identity (a file, then the key in AGE_IDENTITY).
    let target = Server::start();
    let output =
        run_env(&["restore", &name, "--store", store_arg, "--uri", &target.uri(), "--identity", alice.file.to_str().unwrap(), "--json"], &[]);
    assert!(output.status.success(), "restore: {}", common::all_output(&output));
    assert!(json(&output)["namespaces"].as_array().unwrap().iter().all(|n| n["checksum"] == "ok"), "{}", json(&output));
    common::assert_restored_identical(&client, &target.client().await, &manifest, str::to_string).await;

    // verify with the identity checks everything, live comparison included.
    let output = run_env(&["verify", &name, "--store", store_arg, "--uri", &source.uri(), "--json"], &[("AGE_IDENTITY", &bob.secret)]);
    assert!(output.status.success(), "verify: {}", common::all_output(&output));
    let report = json(&output);
    assert_eq!(report["status"], "passed", "{report}");
    assert_eq!(report["archive"]["content_checked"], true);
    assert!(report["archive"]["documents"].as_u64().unwrap() > 0);

    // Without it, --archive-only compares the stored bytes with the sidecar and says so.
    let output = run_env(&["verify", &name, "--store", store_arg, "--archive-only", "--json"], &[]);
    assert!(output.status.success(), "verify --archive-only: {}", common::all_output(&output));
    let report = json(&output);
    assert_eq!((report["archive"]["content_checked"].as_bool(), report["archive"]["intact"].as_bool()), (Some(false), Some(true)), "{report}");
    assert_eq!(report["archive"]["archive_sha256"], sidecar["archive"]["sha256"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("content NOT checked"), "{}", common::all_output(&output));
    // ... and refuses a live comparison it cannot make.
    let output = run_env(&["verify", &name, "--store", store_arg, "--uri", &source.uri()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("--identity"), "{}", common::all_output(&output));

    // list: encrypted, and to whom.
    let output = run_env(&["list", "--store", store_arg, "--json"], &[]);
    let listing = json(&output);
    assert_eq!(listing["backups"][0]["encrypted"], true);
    assert_eq!(listing["backups"][0]["recipients"], serde_json::json!([alice.public, bob.public]));
    let output = run_env(&["list", "--store", store_arg], &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("encrypted (age) to {}", alice.public)), "{}", common::all_output(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_identity_and_a_damaged_ciphertext_fail_naming_the_cause_and_restore_nothing() {
    let (source, _) = sample_source(2, 3).await;
    let work = tempfile::tempdir().unwrap();
    let (owner, stranger) = (key(work.path(), "owner"), key(work.path(), "stranger"));
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let output = run_env(&["backup", "--uri", &source.uri(), "--store", store_arg, "--json"], &[("AGE_RECIPIENTS", &owner.public)]);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    let name = json(&output)["name"].as_str().unwrap().to_string();
    let archive = store.join(format!("{name}.tar.gz.age"));
    let pristine = std::fs::read(&archive).unwrap();

    // A target holding a collection the restore would drop.
    let target = Server::start();
    let kept = target.client().await.database("ingest").collection::<Document>("project");
    kept.insert_one(doc! { "_id": "already-there" }).await.unwrap();
    let restore = |identity: Option<&Path>| {
        let uri = target.uri();
        let mut args = vec!["restore", &name, "--store", store_arg, "--uri", &uri, "--drop"];
        if let Some(identity) = identity {
            args.extend(["--identity", identity.to_str().unwrap()]);
        }
        run_env(&args, &[])
    };
    let untouched =
        || async { kept.find_one(doc! { "_id": "already-there" }).await.unwrap().is_some() && kept.count_documents(doc! {}).await.unwrap() == 1 };

    let output = restore(None);
    assert_eq!(output.status.code(), Some(2), "a missing identity is a configuration error, as in verify: {}", common::all_output(&output));
    assert!(common::all_output(&output).contains("is encrypted and no identity was given"), "{}", common::all_output(&output));
    assert!(untouched().await, "a restore without identity wrote nothing");

    let output = restore(Some(&stranger.file));
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("not one of the recipients"), "{}", common::all_output(&output));
    assert!(untouched().await, "a restore with a wrong identity wrote nothing");
    let output = run_env(&["verify", &name, "--store", store_arg, "--archive-only", "--identity", stranger.file.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("not one of the recipients"), "{}", common::all_output(&output));

    // The first chunk altered: nothing is written, not even the drop.
    let mut altered = pristine.clone();
    let header_end = altered.windows(4).position(|w| w == b"\n---").unwrap() + 60;
    altered[header_end + 1000] ^= 0x10;
    std::fs::write(&archive, &altered).unwrap();
    let output = restore(Some(&owner.file));
    assert_eq!(output.status.code(), Some(1), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("does not authenticate"), "{}", common::all_output(&output));
    assert!(untouched().await, "a restore whose first chunk does not authenticate wrote nothing");

    // Altered near the end, then truncated: verify with the identity names the damage,
    // and without it the size and SHA-256 no longer match the sidecar.
    for (label, damaged) in [
        ("altered", {
            let mut b = pristine.clone();
            let at = b.len() - 200;
            b[at] ^= 1;
            b
        }),
        ("truncated", pristine[..pristine.len() - 1000].to_vec()),
    ] {
        std::fs::write(&archive, &damaged).unwrap();
        let output = run_env(&["verify", &name, "--store", store_arg, "--archive-only", "--identity", owner.file.to_str().unwrap(), "--json"], &[]);
        assert_eq!(output.status.code(), Some(1), "{label}: {}", common::all_output(&output));
        assert!(common::all_output(&output).contains("truncated or altered"), "{label}: {}", common::all_output(&output));
        let output = run_env(&["verify", &name, "--store", store_arg, "--archive-only", "--json"], &[]);
        assert_eq!(output.status.code(), Some(1), "{label}: {}", common::all_output(&output));
        let fields: Vec<String> = json(&output)["findings"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap().to_string()).collect();
        assert!(fields.contains(&"sha256".to_string()), "{label}: {fields:?}");
    }
    std::fs::write(&archive, &pristine).unwrap();
    let output = run_env(&["verify", &name, "--store", store_arg, "--archive-only", "--identity", owner.file.to_str().unwrap()], &[]);
    assert!(output.status.success(), "the pristine archive verifies: {}", common::all_output(&output));

    // Bad recipients are usage errors naming the position, never the value.
    let output = run_env(&["backup", "--uri", &source.uri(), "--store", store_arg, "--encrypt-to", "age1notakey"], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("--encrypt-to number 1") && !common::all_output(&output).contains("age1notakey"));
    let mixed = format!("{}, {}", owner.public, stranger.secret);
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--store", store_arg], &[("AGE_RECIPIENTS".into(), mixed)]);
    assert_eq!(output.status.code(), Some(2), "{}", common::all_output(&output));
    assert!(common::all_output(&output).contains("entry 2 of AGE_RECIPIENTS"), "{}", common::all_output(&output));
    assert_no_key_material(&output, "a backup given a private key as recipient");
    assert_eq!(databases(&target).await, ["ingest"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_detail_full_keeps_the_namespaces_readable_and_zstd_archives_encrypt_too() {
    let (source, _) = sample_source(1, 4).await;
    let work = tempfile::tempdir().unwrap();
    let owner = key(work.path(), "owner");
    let recipients = work.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the backup team\n{}\n", owner.public)).unwrap();
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let args = ["backup", "--uri", &source.uri(), "--store", store_arg, "--compression", "zstd", "--recipients-file", recipients.to_str().unwrap()];
    let output = run_env(&[&args[..], &["--sidecar-detail", "full", "--json"]].concat(), &[]);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    let name = json(&output)["name"].as_str().unwrap().to_string();
    assert!(store.join(format!("{name}.tar.zst.age")).exists());
    let sidecar = common::sidecar(&store, &name);
    assert!(sidecar["encryption"].get("sealed_manifest").is_none(), "{sidecar}");
    assert!(sidecar["namespaces"].as_array().unwrap().iter().any(|n| n["collection"] == "project"), "{sidecar}");
    let output =
        run_env(&["verify", &name, "--store", store_arg, "--uri", &source.uri(), "--json"], &[("AGE_IDENTITY_FILE", owner.file.to_str().unwrap())]);
    assert!(output.status.success(), "verify: {}", common::all_output(&output));
    assert_eq!(json(&output)["status"], "passed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_backup_round_trips_through_s3() {
    let Some(binary) = minio::binary_or_skip("an_encrypted_backup_round_trips_through_s3") else { return };
    let minio = Minio::start(binary).await;
    let (source, client) = sample_source(12, 6).await;
    let work = tempfile::tempdir().unwrap();
    let owner = key(work.path(), "owner");
    let mut env = minio.env();
    env.extend([("S3_BUCKET".to_string(), BUCKET.to_string()), ("BACKUP_DIR".to_string(), "sealed".to_string())]);
    env.push(("AGE_RECIPIENTS".into(), owner.public.clone()));
    let output = common::run_with_env(&["backup", "--uri", &source.uri(), "--json", "--part-size-mb", "5", "--level", "1"], &env);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    assert_no_key_material(&output, "backup");
    let result = json(&output);
    let name = result["name"].as_str().unwrap().to_string();
    let key = format!("sealed/{name}.tar.gz.age");
    let object = minio.client().get_object().bucket(BUCKET).key(&key).send().await.unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(result["archive_sha256"], hex::encode(Sha256::digest(&bytes)));

    env.retain(|(k, _)| k != "AGE_RECIPIENTS");
    env.push(("AGE_IDENTITY".into(), owner.secret.clone()));
    let output = common::run_with_env(&["verify", "latest", "--uri", &source.uri(), "--json"], &env);
    assert!(output.status.success(), "verify: {}", common::all_output(&output));
    assert_no_key_material(&output, "verify");
    assert_eq!(json(&output)["status"], "passed");
    let target = Server::start();
    let output = common::run_with_env(&["restore", "latest", "--uri", &target.uri(), "--json"], &env);
    assert!(output.status.success(), "restore: {}", common::all_output(&output));
    assert_no_key_material(&output, "restore");
    for collection in ingest_backup::sample::COLLECTIONS {
        assert_eq!(
            common::documents_by_id(&target.client().await, "ingest", collection).await,
            common::documents_by_id(&client, "ingest", collection).await,
            "ingest.{collection} restored from an encrypted S3 backup"
        );
    }
    let listing = json(&common::run_with_env(&["list", "--json"], &env));
    assert_eq!(listing["backups"][0]["encrypted"], true, "{listing}");
    assert!(!listing.to_string().contains("AGE-SECRET-KEY-"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_re_encrypted_with_stock_age_verifies_with_the_new_key_once_its_sidecar_is_updated() {
    let test = "an_archive_re_encrypted_with_stock_age_verifies_with_the_new_key_once_its_sidecar_is_updated";
    let Some(age_dir) = age_bin(test) else { return };
    let (source, client) = sample_source(1, 8).await;
    let work = tempfile::tempdir().unwrap();
    let (old, new) = (key(work.path(), "old"), key(work.path(), "new"));
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let output = run_env(&["backup", "--uri", &source.uri(), "--store", store_arg, "--encrypt-to", &old.public, "--json"], &[]);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    let name = json(&output)["name"].as_str().unwrap().to_string();

    // README "Key rotation", as written there (bash, the stock age, jq).
    let script = r#"set -euo pipefail
cd "$STORE"
age -d -i "$OLD" "$NAME.tar.gz.age" | age -r "$NEW_PUBLIC" > "$NAME.tar.gz.age.new"
jq -r .encryption.sealed_manifest "$NAME.manifest.json" | age -d -i "$OLD" | age -a -r "$NEW_PUBLIC" > sealed.txt
jq --argjson size "$(stat -c %s "$NAME.tar.gz.age.new")" \
   --arg sha256 "$(sha256sum "$NAME.tar.gz.age.new" | cut -d' ' -f1)" \
   --arg recipient "$NEW_PUBLIC" --rawfile sealed sealed.txt \
   '.archive.size = $size | .archive.sha256 = $sha256 | .encryption.recipients = [$recipient] | .encryption.sealed_manifest = $sealed' \
   "$NAME.manifest.json" > "$NAME.manifest.json.new"
mv "$NAME.tar.gz.age.new" "$NAME.tar.gz.age"
mv "$NAME.manifest.json.new" "$NAME.manifest.json"
rm sealed.txt
"#;
    let path = format!("{}:{}", age_dir.display(), std::env::var("PATH").unwrap_or_default());
    let rotated = Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .env("STORE", &store)
        .env("OLD", &old.file)
        .env("NEW_PUBLIC", &new.public)
        .env("NAME", &name)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "the rotation recipe: {}", common::all_output(&rotated));

    let verify = |identity: &Key| {
        run_env(&["verify", &name, "--store", store_arg, "--uri", &source.uri(), "--identity", identity.file.to_str().unwrap(), "--json"], &[])
    };
    let output = verify(&new);
    assert!(output.status.success(), "verify with the new key: {}", common::all_output(&output));
    assert_eq!(json(&output)["status"], "passed");
    let output = verify(&old);
    assert_eq!(output.status.code(), Some(1), "the old key no longer opens it: {}", common::all_output(&output));
    let target = Server::start();
    let output = run_env(&["restore", &name, "--store", store_arg, "--uri", &target.uri(), "--identity", new.file.to_str().unwrap()], &[]);
    assert!(output.status.success(), "restore with the new key: {}", common::all_output(&output));
    for collection in ingest_backup::sample::COLLECTIONS {
        assert_eq!(
            common::documents_by_id(&target.client().await, "ingest", collection).await,
            common::documents_by_id(&client, "ingest", collection).await,
            "ingest.{collection}"
        );
    }
    let listing = json(&run_env(&["list", "--store", store_arg, "--json"], &[]));
    assert_eq!(listing["backups"][0]["recipients"], serde_json::json!([new.public]));
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_oplog_slices_replay_with_the_identity_and_decrypt_with_stock_age() {
    let test = "encrypted_oplog_slices_replay_with_the_identity_and_decrypt_with_stock_age";
    let Some(age_dir) = age_bin(test) else { return };
    let source = Server::start();
    let client = source.client().await;
    let orders = client.database("shop").collection::<Document>("orders");
    orders.insert_many((0..50).map(|i| doc! { "_id": i, "n": i })).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let owner = key(work.path(), "owner");
    let store = work.path().join("store");
    let store_arg = store.to_str().unwrap();
    let env = [("AGE_RECIPIENTS", owner.public.as_str())];
    let output = run_env(&["backup", "--uri", &source.uri(), "--store", store_arg], &env);
    assert!(output.status.success(), "backup: {}", common::all_output(&output));
    orders.insert_many((50..80).map(|i| doc! { "_id": i, "n": i })).await.unwrap();
    orders.update_one(doc! { "_id": 1 }, doc! { "$set": { "n": -1 } }).await.unwrap();
    let output = run_env(&["oplog", "--uri", &source.uri(), "--store", store_arg, "--json"], &env);
    assert!(output.status.success(), "oplog: {}", common::all_output(&output));
    let slice = json(&output)["slice"].clone();
    let file = slice["file"].as_str().unwrap();
    assert!(file.ends_with(".bson.gz.age"), "{slice}");
    assert_eq!(slice["recipients"], serde_json::json!([owner.public]));
    let stored = store.join(file);
    let bytes = std::fs::read(&stored).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(slice["sha256"], hex::encode(Sha256::digest(&bytes)), "the sidecar's hash is the stored ciphertext's");
    let plain = work.path().join("slice.bson.gz");
    stock_decrypt(&age_dir, &owner.file, &stored, &plain);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(std::fs::File::open(&plain).unwrap()), &mut decoded).unwrap();
    assert_eq!(common::split_bson(&decoded).len() as u64, slice["entries"].as_u64().unwrap(), "the stock age opens the slice");

    let output = run_env(&["verify", "--pitr", "--store", store_arg, "--identity", owner.file.to_str().unwrap(), "--json"], &[]);
    assert!(output.status.success(), "verify --pitr: {}", common::all_output(&output));
    let target = Server::start();
    let to = slice["end"].clone();
    let to = format!("{}.{}", to["t"], to["i"]);
    let restore = |identity: Option<&Path>| {
        let uri = target.uri();
        let mut args = vec!["restore", "--to-time", &to, "--store", store_arg, "--uri", &uri, "--drop"];
        if let Some(identity) = identity {
            args.extend(["--identity", identity.to_str().unwrap()]);
        }
        run_env(&args, &[])
    };
    let output = restore(None);
    assert_eq!(output.status.code(), Some(2), "no identity is a configuration error: {}", common::all_output(&output));
    let output = restore(Some(&owner.file));
    assert!(output.status.success(), "restore --to-time: {}", common::all_output(&output));
    assert_eq!(
        common::documents_by_id(&target.client().await, "shop", "orders").await,
        common::documents_by_id(&client, "shop", "orders").await,
        "the backup plus the encrypted slice reach the slice's end"
    );
}
