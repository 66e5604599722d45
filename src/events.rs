//! Finding the operations an operator restores to just before: drops of collections and
//! databases, renames, index drops, and bursts of deletes or updates, read from oplog
//! entries in timestamp order. Pure: the entries come from the caller (the stored oplog
//! slices, in `jobs::events`).
//!
//! A burst is a run of deletes (or updates) in one namespace in which every entry comes
//! at most one second after the one before (the writes of a batched `applyOps` without a
//! session count as single entries), or the writes of one transaction (every `applyOps`
//! of the same `lsid` and `txnNumber`), holding at least `burst` documents. Each event carries the `--to-time` value that restores the state
//! just before it: one tick before its first entry.

use std::collections::HashMap;

use bson::RawDocument;
use serde::Serialize;

use crate::filter::{wildcard_match, NamespaceFilter};
use crate::oplog::timestamp::{wall_time, Timestamp};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A collection (or view) was dropped.
    Drop,
    /// A database was dropped.
    DropDatabase,
    /// A collection was renamed (`ns` is the old name).
    Rename,
    /// An index was dropped.
    DropIndexes,
    /// Many documents were deleted at once.
    Deletes,
    /// Many documents were updated at once.
    Updates,
}

impl EventKind {
    /// The name in text and JSON (`drop`, `dropDatabase`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Drop => "drop",
            EventKind::DropDatabase => "dropDatabase",
            EventKind::Rename => "rename",
            EventKind::DropIndexes => "dropIndexes",
            EventKind::Deletes => "deletes",
            EventKind::Updates => "updates",
        }
    }
}

/// One event found in the oplog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened (RFC 3339, to the second).
    pub time: String,
    /// Its oplog timestamp (`T.I`).
    pub ts: String,
    /// What happened.
    pub op: EventKind,
    /// The namespace (`db.collection`; the database alone for `dropDatabase`).
    pub ns: String,
    /// Documents deleted or updated (bursts only).
    pub documents: Option<u64>,
    /// The new name (`rename`) or the index dropped (`dropIndexes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The `restore --to-time` value that restores the state just before the event.
    pub to_time: String,
    #[serde(skip)]
    at: Timestamp,
}

/// The `--to-time` value one tick before `ts`.
pub fn just_before(ts: Timestamp) -> Timestamp {
    match ts.i {
        0 => Timestamp { t: ts.t.saturating_sub(1), i: u32::MAX },
        i => Timestamp { t: ts.t, i: i - 1 },
    }
}

fn event(at: Timestamp, op: EventKind, ns: String, documents: Option<u64>, detail: Option<String>) -> Event {
    Event {
        time: wall_time(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ts: format!("{}.{}", at.t, at.i),
        op,
        ns,
        documents,
        detail,
        to_time: format!("{}.{}", just_before(at).t, just_before(at).i),
        at,
    }
}

/// What a run of writes is grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RunKey {
    /// Writes outside a transaction, one after another.
    Sequence,
    /// The writes of one transaction.
    Transaction(String),
}

/// A run of deletes or updates being counted.
#[derive(Debug, Clone)]
struct Run {
    first: Timestamp,
    last: Timestamp,
    documents: u64,
}

/// Reads oplog entries in order and collects the events among them.
#[derive(Debug)]
pub struct Detector {
    burst: u64,
    filter: NamespaceFilter,
    runs: HashMap<(EventKind, String, RunKey), Run>,
    events: Vec<Event>,
}

impl Detector {
    /// A detector reporting bursts of at least `burst` documents in the namespaces
    /// `filter` keeps.
    pub fn new(burst: u64, filter: NamespaceFilter) -> Self {
        Detector { burst: burst.max(1), filter, runs: HashMap::new(), events: Vec::new() }
    }

    /// Reads one oplog entry.
    pub fn entry(&mut self, entry: &RawDocument) {
        let Some(ts) = entry.get_timestamp("ts").ok().map(Timestamp::from) else { return };
        let op = entry.get_str("op").ok().unwrap_or_default();
        let ns = entry.get_str("ns").ok().unwrap_or_default();
        let Some(object) = entry.get_document("o").ok() else { return };
        if op == "c" && object.get_array("applyOps").ok().is_some() {
            self.transaction(entry, ts, object);
        } else {
            self.operation(ts, op, ns, object, RunKey::Sequence);
        }
    }

    /// The writes of a transaction (or of an `applyOps` command), counted together.
    fn transaction(&mut self, entry: &RawDocument, ts: Timestamp, object: &RawDocument) {
        let lsid = entry.get_document("lsid").ok().and_then(|l| l.get("id").ok().flatten()).map(|id| format!("{id:?}"));
        let txn = entry.get_i64("txnNumber").ok();
        // Without a session and transaction number, an `applyOps` is a batch of
        // ordinary writes (MongoDB 6.1+ logs a large deleteMany as batches of about
        // 100): its writes join the one-second runs like single entries.
        let key = match (lsid, txn) {
            (Some(lsid), Some(txn)) => RunKey::Transaction(format!("{lsid}:{txn}")),
            _ => RunKey::Sequence,
        };
        let Some(operations) = object.get_array("applyOps").ok() else { return };
        for inner in operations.into_iter().flatten() {
            let Some(inner) = inner.as_document() else { continue };
            let op = inner.get_str("op").ok().unwrap_or_default();
            let ns = inner.get_str("ns").ok().unwrap_or_default();
            if let Ok(object) = inner.get_document("o") {
                self.operation(ts, op, ns, object, key.clone());
            }
        }
        // The last applyOps of a transaction (neither `partialTxn` nor `prepare`) ends
        // its runs: closed now, so that a long range of small transactions does not
        // keep one open run per transaction until the end.
        let continues = object.get_bool("partialTxn").unwrap_or(false) || object.get_bool("prepare").unwrap_or(false);
        if matches!(key, RunKey::Transaction(_)) && !continues {
            let ended: Vec<_> = self.runs.keys().filter(|slot| slot.2 == key).cloned().collect();
            for slot in ended {
                let run = self.runs.remove(&slot).expect("present");
                self.close(&slot, run);
            }
        }
    }

    fn operation(&mut self, ts: Timestamp, op: &str, ns: &str, object: &RawDocument, key: RunKey) {
        match op {
            "d" => self.count(EventKind::Deletes, ns, ts, key),
            "u" => self.count(EventKind::Updates, ns, ts, key),
            "c" => self.command(ts, ns, object),
            _ => {}
        }
    }

    /// Counts one delete or update into its run, closing the run before it when this
    /// write comes more than a second after it.
    fn count(&mut self, kind: EventKind, ns: &str, ts: Timestamp, key: RunKey) {
        if !self.keeps(ns) {
            return;
        }
        let slot = (kind, ns.to_string(), key);
        if let Some(run) = self.runs.get(&slot) {
            if slot.2 == RunKey::Sequence && ts.t > run.last.t.saturating_add(1) {
                let closed = self.runs.remove(&slot).expect("present");
                self.close(&slot, closed);
            }
        }
        let run = self.runs.entry(slot).or_insert(Run { first: ts, last: ts, documents: 0 });
        run.last = ts;
        run.documents += 1;
    }

    fn close(&mut self, (kind, ns, _): &(EventKind, String, RunKey), run: Run) {
        if run.documents >= self.burst {
            self.events.push(event(run.first, *kind, ns.clone(), Some(run.documents), None));
        }
    }

    /// Drops, renames and index drops.
    fn command(&mut self, ts: Timestamp, ns: &str, object: &RawDocument) {
        let database = ns.split_once('.').map_or(ns, |(db, _)| db);
        let text = |field: &str| object.get_str(field).ok().map(str::to_string);
        if let Some(collection) = text("drop") {
            self.push_if_kept(event(ts, EventKind::Drop, format!("{database}.{collection}"), None, None));
        } else if object.get("dropDatabase").ok().flatten().is_some() {
            if self.keeps_database(database) {
                self.events.push(event(ts, EventKind::DropDatabase, database.to_string(), None, None));
            }
        } else if let (Some(from), Some(to)) = (text("renameCollection"), text("to")) {
            if self.keeps(&from) || self.keeps(&to) {
                self.events.push(event(ts, EventKind::Rename, from, None, Some(to)));
            }
        } else if let Some(collection) = text("dropIndexes").or_else(|| text("deleteIndexes")) {
            let index = text("index").unwrap_or_else(|| "*".to_string());
            self.push_if_kept(event(ts, EventKind::DropIndexes, format!("{database}.{collection}"), None, Some(index)));
        }
    }

    fn push_if_kept(&mut self, found: Event) {
        if self.keeps(&found.ns) {
            self.events.push(found);
        }
    }

    fn keeps(&self, ns: &str) -> bool {
        let (db, collection) = ns.split_once('.').unwrap_or((ns, ""));
        self.filter.keeps(db, collection)
    }

    /// A database drop concerns a filter that includes any of its collections and
    /// does not exclude all of them.
    fn keeps_database(&self, db: &str) -> bool {
        let database_part = |pattern: &String| pattern.split_once('.').map_or(pattern.clone(), |(d, _)| d.to_string());
        let included = self.filter.include().is_empty() || self.filter.include().iter().any(|p| wildcard_match(&database_part(p), db));
        included && !self.filter.exclude().iter().any(|p| wildcard_match(p, &format!("{db}.*")) && p.ends_with(".*"))
    }

    /// The events found, in time order (open runs are closed).
    pub fn finish(mut self) -> Vec<Event> {
        let open: Vec<_> = self.runs.drain().collect();
        for (slot, run) in open {
            self.close(&slot, run);
        }
        self.events.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.ns.cmp(&b.ns)));
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    fn entry(t: u32, i: u32, op: &str, ns: &str, o: bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&doc! { "ts": bson::Timestamp { time: t, increment: i }, "op": op, "ns": ns, "o": o }).unwrap()
    }

    fn detect(burst: u64, filter: NamespaceFilter, entries: &[RawDocumentBuf]) -> Vec<Event> {
        let mut detector = Detector::new(burst, filter);
        for e in entries {
            detector.entry(e);
        }
        detector.finish()
    }

    #[test]
    fn drops_renames_index_drops_and_bursts_are_found_with_the_time_just_before() {
        let mut entries = vec![entry(100, 1, "i", "shop.orders", doc! { "_id": 1 })];
        entries.extend((0..5).map(|k| entry(101 + k / 3, 10 + k, "d", "shop.orders", doc! { "_id": k })));
        entries.push(entry(110, 1, "d", "shop.orders", doc! { "_id": 99 }));
        entries.push(entry(120, 4, "c", "shop.$cmd", doc! { "dropIndexes": "orders", "index": "v_1" }));
        entries.push(entry(121, 1, "c", "shop.$cmd", doc! { "renameCollection": "shop.orders", "to": "shop.old" }));
        entries.push(entry(122, 0, "c", "shop.$cmd", doc! { "drop": "old" }));
        entries.push(entry(123, 2, "c", "logs.$cmd", doc! { "dropDatabase": 1 }));
        let found = detect(5, NamespaceFilter::default(), &entries);
        let summary: Vec<(&str, &str, Option<u64>, &str)> =
            found.iter().map(|e| (e.op.as_str(), e.ns.as_str(), e.documents, e.to_time.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("deletes", "shop.orders", Some(5), "101.9"),
                ("dropIndexes", "shop.orders", None, "120.3"),
                ("rename", "shop.orders", None, "121.0"),
                ("drop", "shop.old", None, "121.4294967295"),
                ("dropDatabase", "logs", None, "123.1"),
            ],
            "the lone delete at 110 is no burst"
        );
        assert_eq!(found[2].detail.as_deref(), Some("shop.old"));
        assert_eq!(found[0].time, "1970-01-01T00:01:41Z");
    }

    #[test]
    fn a_transaction_is_one_run_and_filters_apply() {
        let ops: Vec<bson::Bson> =
            (0..4).map(|k| bson::Bson::Document(doc! { "op": "u", "ns": "shop.orders", "o": { "$v": 2, "diff": {} }, "o2": { "_id": k } })).collect();
        let mut txn = doc! { "ts": bson::Timestamp { time: 50, increment: 3 }, "op": "c", "ns": "admin.$cmd", "o": { "applyOps": ops } };
        txn.insert("lsid", doc! { "id": "session" });
        txn.insert("txnNumber", 7_i64);
        let entries = vec![RawDocumentBuf::from_document(&txn).unwrap(), entry(60, 1, "c", "other.$cmd", doc! { "drop": "x" })];
        let found = detect(4, NamespaceFilter::new(&["shop.*".into()], &[]).unwrap(), &entries);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].op, found[0].documents, found[0].to_time.as_str()), (EventKind::Updates, Some(4), "50.2"));
    }

    #[test]
    fn a_transaction_in_several_parts_is_one_run_ended_by_its_last_part() {
        let part = |t: u32, partial: bool, first: i32| {
            let ops: Vec<bson::Bson> =
                (first..first + 3).map(|k| bson::Bson::Document(doc! { "op": "d", "ns": "shop.orders", "o": { "_id": k } })).collect();
            let mut o = doc! { "applyOps": ops };
            if partial {
                o.insert("partialTxn", true);
            }
            let txn = doc! { "ts": bson::Timestamp { time: t, increment: 1 }, "op": "c", "ns": "admin.$cmd", "o": o, "lsid": { "id": "s" }, "txnNumber": 3_i64 };
            RawDocumentBuf::from_document(&txn).unwrap()
        };
        // Ten seconds apart: one transaction, not one second-run.
        let mut detector = Detector::new(6, NamespaceFilter::default());
        detector.entry(&part(300, true, 0));
        assert_eq!(detector.runs.len(), 1, "a partial transaction stays open");
        detector.entry(&part(310, false, 3));
        assert!(detector.runs.is_empty(), "its last part closed it");
        let found = detector.finish();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].documents, found[0].to_time.as_str()), (Some(6), "300.0"));
    }

    #[test]
    fn batched_deletes_without_a_session_join_one_run() {
        // MongoDB 6.1+ logs a large deleteMany as applyOps batches with no lsid.
        let batch = |t: u32, i: u32, first: i32| {
            let ops: Vec<bson::Bson> =
                (first..first + 100).map(|k| bson::Bson::Document(doc! { "op": "d", "ns": "shop.orders", "o": { "_id": k } })).collect();
            entry(t, i, "c", "admin.$cmd", doc! { "applyOps": ops })
        };
        let entries: Vec<RawDocumentBuf> = (0..12u32).map(|b| batch(200 + b / 5, 1 + b, b as i32 * 100)).collect();
        let found = detect(1000, NamespaceFilter::default(), &entries);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].op, found[0].documents, found[0].to_time.as_str()), (EventKind::Deletes, Some(1200), "200.0"));
    }
}
