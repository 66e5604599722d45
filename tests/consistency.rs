//! Consistency under write load: a backup taken while a writer inserts, updates and
//! deletes documents and commits multi-document transactions restores, with its oplog
//! replayed, to exactly the state at the backup's recorded consistency point; and oplog
//! slices taken under the same load restore (`restore --to-time`) to exactly the state
//! at points picked inside them.
//!
//! The expected state is not read from the server: it is computed from the writer's own
//! log (each committed operation, the document's full new state or its deletion, and
//! the cluster time of the commit), applied to the state before the writer started.
//! SecantusDB's `operationTime` is the newest cluster time it has minted when it replies
//! (a `hello` from any client mints one too), so it is an upper bound of the commit's
//! oplog time, and the previous commit's is a strict lower bound: at most one commit is
//! in doubt at a point that is not itself a logged time, and the source's oplog settles it.
//! An update's new state is read back by `_id` in the writer's session right after it
//! (the writer is the only one writing), so its logged time is that read's, still
//! before the next commit.
//!
//! The backup pauses (a test hook) after reading every collection and before taking its
//! oplog end until the writer has committed ten more times, so the replay always has
//! changes made after the data was read, however fast the machine reads it.
//!
//! A failure names the first document whose content differs, with what the writer did
//! to it. Documents that hold the expected fields and values in another field order are
//! reported and pass (they fail with `INGEST_CONSISTENCY_STRICT_ORDER=1`): SecantusDB
//! logs an update as `updatedFields` sorted by name, while its `$set` appends new fields
//! in the order the update names them, so a replayed update that adds fields adds them in
//! name order, and no replay of that oplog entry could do otherwise.
//!
//! `INGEST_CONSISTENCY_MB` sizes the data set (default 10 MiB), `INGEST_CONSISTENCY_RATE`
//! the writer's target commits per second (default 50). The figures (the rate held, the
//! backup's time idle and under load) are printed to stderr.
//!
//! Peers: SecantusDB (replica set: source and restore targets).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Bson, DateTime, Document, RawDocumentBuf};
use common::Server;
use ingest_backup::sample::{self, SampleSpec};
use mongodb::{Client, ClientSession, Collection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The namespaces the writer works on: a collection of its own and one of the sample's.
const ORDERS: &str = "shop.orders";
const SAMPLES: &str = "ingest.biomaterial";
const WRITTEN: [&str; 2] = [ORDERS, SAMPLES];
/// Commits the writer makes while the backup waits before taking its oplog end.
const PAUSED_COMMITS: usize = 10;

/// A cluster time as `(t, i)`, which orders as the server's timestamps do.
type Ts = (u32, u32);

/// Documents by namespace (`db.coll`), then by `_id` (canonical Extended JSON): raw bytes.
type State = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// What one committed operation did to one document.
#[derive(Debug, Clone)]
struct Change {
    namespace: &'static str,
    id: String,
    /// The document's full new state, or `None` for its deletion.
    after: Option<Vec<u8>>,
}

/// One commit of the writer: a single operation, or a transaction's operations.
#[derive(Debug, Clone)]
struct Commit {
    /// The `operationTime` of the reply (after a transaction, the commit's).
    time: Ts,
    at: Instant,
    kind: &'static str,
    changes: Vec<Change>,
}

fn ts_of(value: &serde_json::Value) -> Ts {
    (value["t"].as_u64().unwrap() as u32, value["i"].as_u64().unwrap() as u32)
}

fn label((t, i): Ts) -> String {
    format!("{t}.{i}")
}

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn key_of(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

fn split_namespace(namespace: &str) -> (&str, &str) {
    namespace.split_once('.').unwrap()
}

/// The timestamp of the server's newest oplog entry.
async fn newest_oplog_entry(client: &Client) -> Ts {
    let oplog = client.database("local").collection::<Document>("oplog.rs");
    let newest = oplog.find_one(doc! {}).sort(doc! { "$natural": -1 }).await.unwrap().unwrap();
    let ts = newest.get_timestamp("ts").unwrap();
    (ts.time, ts.increment)
}

/// Every document of `namespaces`.
async fn read_state(client: &Client, namespaces: &[String]) -> State {
    let mut state = State::new();
    for namespace in namespaces {
        let (db, coll) = split_namespace(namespace);
        state.insert(namespace.clone(), common::documents_by_id(client, db, coll).await);
    }
    state
}

/// The writer: at `rate` commits per second until `stop`, inserts, updates and deletes
/// orders, updates and deletes sample documents, and commits transactions touching both.
struct Writer {
    session: ClientSession,
    orders: Collection<RawDocumentBuf>,
    samples: Collection<RawDocumentBuf>,
    live_orders: Vec<i32>,
    live_samples: Vec<Bson>,
    next_order: i32,
    rng: StdRng,
    sequence: i32,
    /// Writes the driver retried whose first attempt had committed.
    retried: u32,
}

fn order(id: i32, sequence: i32, rng: &mut StdRng) -> RawDocumentBuf {
    let lines: Vec<Bson> =
        (0..rng.random_range(1..4)).map(|line| Bson::Document(doc! { "sku": format!("sku-{}", (id + line) % 97), "qty": line + 1 })).collect();
    let document = doc! {
        "_id": id,
        "state": "new",
        "placed": DateTime::from_millis(1_764_806_400_000 + i64::from(sequence)),
        "lines": lines,
        "note": "x".repeat(rng.random_range(20..400)),
        "revision": 0,
    };
    RawDocumentBuf::from_document(&document).unwrap()
}

impl Writer {
    fn time(&self) -> Ts {
        let ts = self.session.operation_time().expect("a replica-set reply carries operationTime");
        (ts.time, ts.increment)
    }

    fn change(namespace: &'static str, raw: &RawDocumentBuf) -> Change {
        Change { namespace, id: common::id_key(raw), after: Some(raw.as_bytes().to_vec()) }
    }

    /// Updates one document and reads its new state back in the same session (inside a
    /// transaction, the transaction's own view). The writer is the only one writing, so
    /// that is the state the update left. (SecantusDB's `findAndModify` scans the whole
    /// collection; `update` and `find` use the `_id` index.)
    async fn update(collection: &Collection<RawDocumentBuf>, session: &mut ClientSession, filter: Document, update: Document) -> RawDocumentBuf {
        let result = collection.update_one(filter.clone(), update).session(&mut *session).await;
        let result = result.unwrap_or_else(|e| panic!("the writer's update of {filter} in {} failed: {e}", collection.namespace()));
        assert_eq!(result.matched_count, 1, "{filter} is in {}", collection.namespace());
        let found = collection.find_one(filter.clone()).session(&mut *session).await;
        found.unwrap_or_else(|e| panic!("reading back {filter} from {} failed: {e}", collection.namespace())).expect("the updated document")
    }

    /// A delete that found nothing was a driver's retry of a delete whose first attempt
    /// the server was still running: the document, there before, must be gone.
    async fn check_deleted(&mut self, collection: &Collection<RawDocumentBuf>, deleted: u64, id: Bson) {
        if deleted == 1 {
            return;
        }
        let found = collection.find_one(doc! { "_id": id.clone() }).session(&mut self.session).await.unwrap();
        assert!(deleted == 0 && found.is_none(), "the writer's delete of {id} from {} deleted {deleted}", collection.namespace());
        self.retried += 1;
    }

    async fn insert_order(&mut self, in_transaction: bool) -> Change {
        let id = self.next_order;
        self.next_order += 1;
        let raw = order(id, self.sequence, &mut self.rng);
        let result = self.orders.insert_one(&raw).session(&mut self.session).await;
        if let Err(error) = result {
            // A driver's retry of an insert whose first attempt the server was still
            // running (its reply not yet recorded for the retry) finds the document there:
            // the first attempt committed it. Nobody else writes this `_id`.
            let duplicate =
                matches!(*error.kind, mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref e)) if e.code == 11000);
            assert!(duplicate && !in_transaction, "the writer's insert of order {id} (transaction: {in_transaction}) failed: {error}");
            let found = self.orders.find_one(doc! { "_id": id }).session(&mut self.session).await.unwrap();
            assert_eq!(found.as_ref(), Some(&raw), "order {id}, reported a duplicate on a retry, is the one this insert sent");
            self.retried += 1;
        }
        self.live_orders.push(id);
        Self::change(ORDERS, &raw)
    }

    async fn update_order(&mut self) -> Option<Change> {
        let id = *self.live_orders.get(self.rng.random_range(0..self.live_orders.len().max(1)))?;
        let states = ["paid", "packed", "shipped", "delivered"];
        let update = doc! {
            "$set": { "state": states[self.rng.random_range(0..states.len())], "touched": self.sequence },
            "$max": { "revision": self.sequence },
            "$addToSet": { "history": self.sequence },
        };
        let raw = Self::update(&self.orders, &mut self.session, doc! { "_id": id }, update).await;
        Some(Self::change(ORDERS, &raw))
    }

    async fn update_sample(&mut self) -> Option<Change> {
        let id = self.live_samples.get(self.rng.random_range(0..self.live_samples.len().max(1)))?.clone();
        let mut update = doc! {
            "$set": {
                "validationState": if self.rng.random_bool(0.5) { "Valid" } else { "Invalid" },
                "updateDate": DateTime::from_millis(1_764_806_400_000 + i64::from(self.sequence)),
                "edits": self.sequence,
            },
        };
        if self.rng.random_bool(0.3) {
            update.insert("$unset", doc! { "isUpdate": "" });
        }
        let raw = Self::update(&self.samples, &mut self.session, doc! { "_id": id.clone() }, update).await;
        Some(Self::change(SAMPLES, &raw))
    }

    async fn delete_order(&mut self) -> Option<Change> {
        if self.live_orders.is_empty() {
            return None;
        }
        let id = self.live_orders.swap_remove(self.rng.random_range(0..self.live_orders.len()));
        let deleted = self.orders.delete_one(doc! { "_id": id }).session(&mut self.session).await;
        let deleted = deleted.unwrap_or_else(|e| panic!("the writer's delete of order {id} failed: {e}"));
        self.check_deleted(&self.orders.clone(), deleted.deleted_count, Bson::Int32(id)).await;
        Some(Change { namespace: ORDERS, id: key_of(&Bson::Int32(id)), after: None })
    }

    async fn delete_sample(&mut self) -> Option<Change> {
        if self.live_samples.is_empty() {
            return None;
        }
        let id = self.live_samples.swap_remove(self.rng.random_range(0..self.live_samples.len()));
        let deleted = self.samples.delete_one(doc! { "_id": id.clone() }).session(&mut self.session).await;
        let deleted = deleted.unwrap_or_else(|e| panic!("the writer's delete of sample {id} failed: {e}"));
        self.check_deleted(&self.samples.clone(), deleted.deleted_count, id.clone()).await;
        Some(Change { namespace: SAMPLES, id: key_of(&id), after: None })
    }

    /// One transaction: an order placed, a sample document updated, an order deleted.
    async fn transaction(&mut self) -> Vec<Change> {
        self.session.start_transaction().await.unwrap();
        let mut changes = vec![self.insert_order(true).await];
        changes.extend(self.update_sample().await);
        changes.extend(self.delete_order().await);
        self.session.commit_transaction().await.unwrap_or_else(|e| panic!("the writer's transaction failed to commit: {e}"));
        changes
    }

    async fn step(&mut self) -> Commit {
        self.sequence += 1;
        let (kind, changes) = match self.sequence % 10 {
            0 | 1 | 2 | 8 => ("insert", vec![self.insert_order(false).await]),
            3 | 4 => ("update", self.update_order().await.into_iter().collect()),
            5 if self.sequence % 20 == 5 => ("delete", self.delete_sample().await.into_iter().collect()),
            5 => ("update", self.update_sample().await.into_iter().collect()),
            6 => ("delete", self.delete_order().await.into_iter().collect()),
            7 => ("transaction", self.transaction().await),
            _ => ("update", self.update_sample().await.into_iter().collect()),
        };
        Commit { time: self.time(), at: Instant::now(), kind, changes }
    }

    async fn run(mut self, rate: f64, stop: Arc<AtomicBool>, committed: Arc<AtomicUsize>) -> (Vec<Commit>, u32) {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let commit = self.step().await;
            if commit.changes.is_empty() {
                continue;
            }
            if let Some(previous) = log.last().map(|c: &Commit| c.time) {
                assert!(commit.time > previous, "cluster times of one session's commits increase: {previous:?} then {:?}", commit.time);
            }
            log.push(commit);
            committed.fetch_add(1, Ordering::Relaxed);
        }
        (log, self.retried)
    }
}

/// How many of the log's commits are at or before `point` in the oplog. A commit's
/// oplog time lies in (previous commit's logged time, its own logged time]; when
/// `point` falls strictly inside that interval the source's oplog says whether the
/// commit's entries are at or before it.
async fn commits_at(source: &Client, log: &[Commit], writer_start: Ts, point: Ts) -> usize {
    let certain = log.partition_point(|c| c.time <= point);
    if certain == log.len() {
        return certain;
    }
    let lower = if certain == 0 { writer_start } else { log[certain - 1].time };
    if lower >= point {
        return certain;
    }
    let oplog = source.database("local").collection::<Document>("oplog.rs");
    let filter = doc! {
        "ts": { "$gt": bson::Timestamp { time: lower.0, increment: lower.1 }, "$lte": bson::Timestamp { time: point.0, increment: point.1 } },
        "ns": { "$in": WRITTEN.to_vec() },
    };
    let in_doubt = oplog.find_one(filter).await.unwrap();
    certain + usize::from(in_doubt.is_some())
}

/// The state of the written namespaces after the first `count` commits.
fn expected_written(initial: &State, log: &[Commit], count: usize) -> State {
    let mut state = initial.clone();
    for commit in &log[..count] {
        for change in &commit.changes {
            let documents = state.get_mut(change.namespace).unwrap();
            match &change.after {
                Some(bytes) => documents.insert(change.id.clone(), bytes.clone()),
                None => documents.remove(&change.id),
            };
        }
    }
    state
}

fn render(bytes: Option<&Vec<u8>>) -> String {
    let Some(bytes) = bytes else { return "(absent)".into() };
    let document = RawDocumentBuf::from_bytes(bytes.clone()).unwrap().to_document().unwrap();
    let text = Bson::Document(document).into_relaxed_extjson().to_string();
    if text.len() > 600 {
        format!("{}... ({} bytes)", &text[..600], bytes.len())
    } else {
        text
    }
}

/// A document with the fields of every embedded document in name order (arrays keep
/// theirs), as bytes: equal for documents that differ in field order only.
fn field_order_free(bytes: &[u8]) -> Vec<u8> {
    fn sorted(document: &Document) -> Document {
        let mut fields: Vec<(&String, &Bson)> = document.iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        fields.into_iter().map(|(name, value)| (name.clone(), sorted_value(value))).collect()
    }
    fn sorted_value(value: &Bson) -> Bson {
        match value {
            Bson::Document(document) => Bson::Document(sorted(document)),
            Bson::Array(items) => Bson::Array(items.iter().map(sorted_value).collect()),
            other => other.clone(),
        }
    }
    let document = RawDocumentBuf::from_bytes(bytes.to_vec()).unwrap().to_document().unwrap();
    RawDocumentBuf::from_document(&sorted(&document)).unwrap().into_bytes()
}

/// How `got` differs from `expected`: documents missing, unexpected or with other
/// content, and documents with the same fields and values in another order.
#[derive(Default)]
struct Differences {
    content: usize,
    first_content: Option<String>,
    order_only: usize,
    first_order_only: Option<String>,
}

fn describe(namespace: &str, id: &str, want: Option<&Vec<u8>>, have: Option<&Vec<u8>>, log: &[Commit]) -> String {
    let history: Vec<String> = log
        .iter()
        .filter(|c| c.changes.iter().any(|change| change.namespace == namespace && change.id == id))
        .map(|c| format!("{} at {}", c.kind, label(c.time)))
        .collect();
    format!(
        "{namespace} _id {id}\n  expected: {}\n  got:      {}\n  the writer's commits on it: [{}]",
        render(want),
        render(have),
        history.join(", ")
    )
}

fn differences(expected: &State, got: &State, log: &[Commit]) -> Differences {
    let mut namespaces: Vec<&String> = expected.keys().chain(got.keys()).collect();
    namespaces.sort();
    namespaces.dedup();
    let empty = BTreeMap::new();
    let mut found = Differences::default();
    for namespace in namespaces {
        let (want, have) = (expected.get(namespace).unwrap_or(&empty), got.get(namespace).unwrap_or(&empty));
        let mut ids: Vec<&String> = want.keys().chain(have.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let (w, h) = (want.get(id), have.get(id));
            if w == h {
                continue;
            }
            let order_only = matches!((w, h), (Some(w), Some(h)) if field_order_free(w) == field_order_free(h));
            let (count, first) =
                if order_only { (&mut found.order_only, &mut found.first_order_only) } else { (&mut found.content, &mut found.first_content) };
            *count += 1;
            if first.is_none() {
                *first = Some(describe(namespace, id, w, h, log));
            }
        }
    }
    found
}

/// Fails naming the first document whose content differs; documents that differ in
/// field order only are reported, and fail the test with `INGEST_CONSISTENCY_STRICT_ORDER=1`.
fn assert_same(expected: &State, got: &State, log: &[Commit], what: &str) {
    let found = differences(expected, got, log);
    if let Some(first) = &found.first_content {
        panic!("{what}: {} document(s) differ in content; the first: {first}", found.content);
    }
    if let Some(first) = &found.first_order_only {
        let message =
            format!("{what}: {} document(s) hold the expected fields and values in another field order; the first: {first}", found.order_only);
        assert!(std::env::var("INGEST_CONSISTENCY_STRICT_ORDER").map_or(true, |v| v != "1"), "{message}");
        eprintln!("consistency: NOTE {message}");
    }
}

fn documents(state: &State) -> usize {
    state.values().map(BTreeMap::len).sum()
}

/// Restores into a fresh server with `args` (after `restore`), and compares every
/// namespace with `expected`.
async fn restore_and_compare(store: &Path, args: &[&str], expected: &State, log: &[Commit], what: &str) -> serde_json::Value {
    let target = Server::start();
    let uri = target.uri();
    let mut all = vec!["restore"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--uri", &uri, "--store", store.to_str().unwrap(), "--json"]);
    let (code, report, output) = common::run_json(&all);
    assert_eq!(code, 0, "{what}: the restore failed: {output}");
    let namespaces: Vec<String> = expected.keys().cloned().collect();
    let got = read_state(&target.client().await, &namespaces).await;
    assert_same(expected, &got, log, &format!("{what}: the restored data against the state at that point"));
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_and_slices_taken_under_write_load_restore_to_exact_points() {
    let megabytes = env_number("INGEST_CONSISTENCY_MB", 10.0) as u64;
    let rate = env_number("INGEST_CONSISTENCY_RATE", 50.0);
    let began = Instant::now();
    let source = Server::start();
    let client = source.client().await;
    let loading = Instant::now();
    let loaded = sample::load(&client, &SampleSpec { database: "ingest".into(), target_bytes: megabytes << 20, seed: 31 }).await.unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let initial_orders = (megabytes as i32 * 100).max(500);
    let orders = client.database("shop").collection::<RawDocumentBuf>("orders");
    for chunk in (0..initial_orders).collect::<Vec<_>>().chunks(1000) {
        orders.insert_many(chunk.iter().map(|&id| order(id, 0, &mut rng))).await.unwrap();
    }
    eprintln!(
        "consistency: loaded {megabytes} MiB ({} sample documents, {initial_orders} orders) in {:.1} s",
        loaded.documents,
        loading.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().unwrap();
    let idle_store = work.path().join("idle");
    let started = Instant::now();
    common::backup(&source.uri(), &idle_store, &[]);
    let idle_seconds = started.elapsed().as_secs_f64();

    // The state before the writer starts: the base the expected states are computed from.
    let initial = read_state(&client, &WRITTEN.map(String::from)).await;
    let writer_start = newest_oplog_entry(&client).await;
    let live_samples = {
        let samples = client.database("ingest").collection::<Document>("biomaterial");
        let ids: Vec<Document> =
            futures::TryStreamExt::try_collect(samples.find(doc! {}).projection(doc! { "_id": 1 }).await.unwrap()).await.unwrap();
        ids.into_iter().map(|d| d.get("_id").unwrap().clone()).collect()
    };
    // The writer's own client waits for a busy server rather than giving up on it.
    let patient = Client::with_uri_str(format!(
        "mongodb://127.0.0.1:{}/?directConnection=true&connectTimeoutMS=60000&serverSelectionTimeoutMS=60000",
        source.port
    ))
    .await
    .unwrap();
    let writer = Writer {
        session: patient.start_session().await.unwrap(),
        orders: patient.database("shop").collection("orders"),
        samples: patient.database("ingest").collection("biomaterial"),
        live_orders: (0..initial_orders).collect(),
        live_samples,
        next_order: initial_orders,
        rng: StdRng::seed_from_u64(9),
        sequence: 0,
        retried: 0,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicUsize::new(0));
    let writing = tokio::spawn(writer.run(rate, stop.clone(), committed.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The backup under load.
    let store = work.path().join("store");
    // The backup pauses after reading every collection, before it takes its oplog end,
    // until the writer has committed PAUSED_COMMITS more times: however fast the
    // machine reads the data, the replay has changes made after the data was read.
    let release = work.path().join("release-oplog-end");
    let pause = format!("before-oplog-end:{}", release.display());
    let backup_started = Instant::now();
    let mut child =
        common::spawn(&["backup", "--uri", &source.uri(), "--store", store.to_str().unwrap(), "--json"], &[("INGEST_BACKUP_TEST_PAUSE", &pause)]);
    let waiting = release.with_extension("waiting");
    let mut child = tokio::task::spawn_blocking(move || {
        common::wait_for_file(&waiting, &mut child);
        child
    })
    .await
    .unwrap();
    let paused_at = Instant::now();
    let before_pause = committed.load(Ordering::Relaxed);
    let deadline = paused_at + Duration::from_secs(120);
    while committed.load(Ordering::Relaxed) < before_pause + PAUSED_COMMITS {
        assert!(Instant::now() < deadline, "the writer committed fewer than {PAUSED_COMMITS} times in two minutes");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the backup exited ({status}) while paused before its oplog end");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&release, b"").unwrap();
    let released_at = Instant::now();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let backup_finished = Instant::now();
    assert!(output.status.success(), "the backup under load failed: {}", common::all_output(&output));
    let name = serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()["name"].as_str().unwrap().to_string();

    // Slices under the same load.
    let mut slice_ends = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let args = ["oplog", "--uri", &source.uri(), "--store", store.to_str().unwrap(), "--json"];
        let output = tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            move || common::run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        assert!(output.status.success(), "oplog slice under load: {}", common::all_output(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(!report["slice"].is_null(), "a slice under load holds entries: {report}");
        slice_ends.push(ts_of(&report["slice"]["end"]));
    }
    stop.store(true, Ordering::Relaxed);
    let (log, retried) = writing.await.unwrap();

    // The untouched namespaces as they are now; the log checked against the source.
    let manifest = common::sidecar(&store, &name);
    let namespaces: Vec<String> = manifest["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "view")
        .map(|n| format!("{}.{}", n["database"].as_str().unwrap(), n["collection"].as_str().unwrap()))
        .collect();
    for written in WRITTEN {
        assert!(namespaces.iter().any(|n| n == written), "{written} is in the backup: {namespaces:?}");
    }
    let now = read_state(&client, &namespaces).await;
    let final_written = expected_written(&initial, &log, log.len());
    let source_written: State = now.iter().filter(|(n, _)| WRITTEN.contains(&n.as_str())).map(|(n, d)| (n.clone(), d.clone())).collect();
    let found = differences(&final_written, &source_written, &log);
    if let Some(first) = found.first_content.or(found.first_order_only) {
        panic!("the writer's log does not account for the source's data (a fault of this test, not of the backup): {first}");
    }
    let expected_at = |count: usize| {
        let mut state = now.clone();
        state.extend(expected_written(&initial, &log, count));
        state
    };

    // The backup restored (oplog replayed) is the state at its consistency point.
    let end = ts_of(&manifest["consistency"]["end"]);
    let start = ts_of(&manifest["consistency"]["start"]);
    let during: Vec<&Commit> =
        log.iter().filter(|c| (c.at >= backup_started && c.at <= paused_at) || (c.at >= released_at && c.at <= backup_finished)).collect();
    // The backup's own time under load, without the pause.
    let loaded_seconds = (backup_finished - backup_started - (released_at - paused_at)).as_secs_f64();
    let in_window = log.iter().filter(|c| c.time > start && c.time <= end).count();
    assert!(in_window >= PAUSED_COMMITS, "the writer committed only {in_window} times between the backup's start and end: no load to speak of");
    let count = commits_at(&client, &log, writer_start, end).await;
    let expected = expected_at(count);
    let report =
        restore_and_compare(&store, &[&name], &expected, &log, &format!("the backup restored to its consistency point {}", label(end))).await;
    assert_eq!(ts_of(&report["oplog"]["reached"]), end, "the replay reaches the recorded point: {report}");
    eprintln!(
        "consistency: backup {name} at {}: {} collections, {} documents match the writer's state after {count} of {} commits ({} oplog entries replayed) [{:.0} s into the test]",
        label(end),
        namespaces.len(),
        documents(&expected),
        log.len(),
        report["oplog"]["applied"],
        began.elapsed().as_secs_f64()
    );

    let documents_during: usize = during.iter().map(|c| c.changes.len()).sum();
    eprintln!(
        "consistency: {megabytes} MiB; writer target {rate}/s, held {:.1} commits/s ({:.1} documents/s) during the backup; \
         backup idle {idle_seconds:.1} s, under load {loaded_seconds:.1} s ({:.2}x); {} commits in all, {} transactions, {retried} writes retried by the driver; slices ended at {:?}",
        during.len() as f64 / loaded_seconds,
        documents_during as f64 / loaded_seconds,
        loaded_seconds / idle_seconds,
        log.len(),
        log.iter().filter(|c| c.kind == "transaction").count(),
        slice_ends.iter().map(|&t| label(t)).collect::<Vec<_>>()
    );

    // Three points inside the slices, each restored with --to-time.
    let last_end = *slice_ends.last().unwrap();
    let inside: Vec<usize> = (0..log.len()).filter(|&k| log[k].time > end && log[k].time <= last_end).collect();
    assert!(inside.len() >= 3, "only {} commits fell inside the slices", inside.len());
    let mut picks = vec![inside[inside.len() / 4], inside[inside.len() / 2], inside[inside.len() * 3 / 4]];
    if let Some(&transaction) = inside.iter().skip(inside.len() / 2).find(|&&k| log[k].kind == "transaction") {
        picks[1] = transaction;
    }
    for k in picks {
        let point = log[k].time;
        let count = commits_at(&client, &log, writer_start, point).await;
        assert_eq!(count, k + 1, "a logged time includes its own commit and no later one");
        let what = format!("restore --to-time {} (after the writer's {} commit #{k})", label(point), log[k].kind);
        restore_and_compare(&store, &["--to-time", &label(point)], &expected_at(count), &log, &what).await;
        eprintln!("consistency: {what}: matches [{:.0} s into the test]", began.elapsed().as_secs_f64());
    }
}
