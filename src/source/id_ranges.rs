//! Splitting one large collection into `_id` ranges read on parallel cursors.
//!
//! The boundaries come from the server: a `$sample` of `_id`s sorted by the server
//! (`{$sort: {_id: 1}}`), so they follow BSON's cross-type order (MinKey, numbers,
//! strings, objects, ..., ObjectId, booleans, dates, ..., MaxKey) whatever mix of types
//! the collection holds. Each range is read with `find` bounded by `min`/`max` on the
//! `_id` index (`hint: {_id: 1}`): index bounds use the same order, cover every type,
//! and adjacent ranges share their boundary (min inclusive, max exclusive), so every
//! document is read exactly once, in `_id` order. An `_id` range query
//! (`{_id: {$gte: a, $lt: b}}`) would not do: it only matches values of `a`'s type.
//!
//! A collection is read whole when splitting cannot be trusted: views and time-series
//! collections, capped collections (their natural order is their meaning), clustered
//! collections, collections with a default collation (the index orders strings by
//! collation keys), no `{_id: 1}` index, fewer than two distinct sampled `_id`s, or a
//! server that refuses `$sample` or ignores `min`/`max` (probed on the collection
//! itself: a cursor bounded above by `MinKey` must return nothing), or whose `_id`
//! index orders the sampled boundaries differently from `$sort` (each inner range must
//! hold its lower boundary), or whose plan for a range shows no index bounds (it would
//! scan the whole collection for every range: SecantusDB does, so splitting there makes
//! a backup slower, and is declined).

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::options::{FindOptions, Hint};
use mongodb::Client;

use super::CollectionInfo;

/// `_id`s sampled per range to place the boundaries.
const SAMPLES_PER_RANGE: u64 = 64;

/// MongoDB answers `$sample` with a random cursor only when it asks for under 5% of the
/// documents; above that it scans and sorts the whole collection. Beyond this size such
/// a scan is not worth it: the sample shrinks to 5%, or the collection is read whole.
const SAMPLE_SCAN_LIMIT_BYTES: u64 = 64 << 20;

/// One `_id` range: from `min` (inclusive; `None`: the lowest `_id`) up to `max`
/// (exclusive; `None`: past the highest).
#[derive(Debug, Clone, PartialEq)]
pub struct IdRange {
    /// The lowest `_id` of the range, inclusive.
    pub min: Option<Bson>,
    /// The first `_id` past the range.
    pub max: Option<Bson>,
}

impl IdRange {
    /// The whole collection, read by a plain collection scan (natural order).
    pub fn whole() -> Self {
        Self { min: None, max: None }
    }

    /// Whether this is the whole collection.
    pub fn is_whole(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }

    /// The find options reading this range on the `_id` index: `min`/`max` bounds and
    /// `hint: {_id: 1}`; none for the whole collection.
    pub fn find_options(&self) -> FindOptions {
        let mut options = FindOptions::default();
        if !self.is_whole() {
            options.hint = Some(Hint::Keys(doc! { "_id": 1 }));
            options.min = self.min.clone().map(|id| doc! { "_id": id });
            options.max = self.max.clone().map(|id| doc! { "_id": id });
        }
        options
    }
}

/// Why a collection is read by one cursor whatever its size, or `None` when it may be
/// split. `indexes` are its index specs as `listIndexes` returned them.
pub fn unsplittable_reason(info: &CollectionInfo, indexes: &[Document]) -> Option<&'static str> {
    let options = &info.options;
    if info.is_view() {
        Some("a view has no documents of its own")
    } else if info.is_timeseries() {
        Some("a time-series collection is read as its buckets")
    } else if options.get_bool("capped").unwrap_or(false) {
        Some("a capped collection is dumped in natural order")
    } else if options.contains_key("clusteredIndex") {
        Some("a clustered collection has no separate _id index")
    } else if options.contains_key("collation") {
        Some("its default collation orders string _ids by collation keys")
    } else if !indexes.iter().any(is_simple_id_index) {
        Some("it has no {_id: 1} index")
    } else {
        None
    }
}

/// Whether an index spec is the plain ascending `_id` index (no collation of its own).
fn is_simple_id_index(spec: &Document) -> bool {
    let key_is_id = spec.get_document("key").is_ok_and(|key| {
        key.len() == 1 && key.get("_id").is_some_and(|direction| matches!(direction, Bson::Int32(1) | Bson::Int64(1) | Bson::Double(1.0)))
    });
    key_is_id && !spec.contains_key("collation")
}

/// Up to `ranges` `_id` ranges covering `info`'s collection in `_id` order, or one
/// [`IdRange::whole`] (with the reason, for the log) when the server cannot split it.
/// The first range has no `min`, the last no `max`, so `_id`s outside the sample (and
/// documents inserted while reading) still fall in exactly one range. A server that
/// cannot sample or bound a cursor leaves the collection whole: splitting is an
/// optimisation, never a reason for a backup to fail.
pub async fn plan_id_ranges(client: &Client, info: &CollectionInfo, ranges: usize, documents: u64, bytes: u64) -> (Vec<IdRange>, Option<String>) {
    if ranges < 2 {
        return (vec![IdRange::whole()], Some("one cursor (--parallel 1)".into()));
    }
    let Some(samples) = sample_size(ranges, documents, bytes) else {
        return (vec![IdRange::whole()], Some("too few documents to sample without reading the whole collection".into()));
    };
    // A range is only cheaper than the whole collection where the server scans the
    // index between the bounds; a server that filters a full scan instead would read
    // the collection once per range. Asked first: a plan costs nothing, a sample may not.
    if !crate::test_hooks::split_unbounded_scans() && !plans_bounded_index_scan(client, info).await {
        return (
            vec![IdRange::whole()],
            Some("the server's plan for an _id range shows no index bounds, so each range would scan the whole collection".into()),
        );
    }
    let collection = client.database(&info.database).collection::<Document>(&info.data_collection());
    let pipeline = [doc! { "$sample": { "size": samples as i64 } }, doc! { "$project": { "_id": 1 } }, doc! { "$sort": { "_id": 1 } }];
    let sampled: Vec<Bson> = match collection.aggregate(pipeline).allow_disk_use(true).await {
        Ok(cursor) => match cursor.try_collect::<Vec<Document>>().await {
            Ok(documents) => documents.into_iter().filter_map(|mut d| d.remove("_id")).collect(),
            Err(error) => return (vec![IdRange::whole()], Some(format!("the server could not sample _ids ({error})"))),
        },
        Err(error) => return (vec![IdRange::whole()], Some(format!("the server could not sample _ids ({error})"))),
    };
    let boundaries = boundaries(&sampled, ranges);
    if boundaries.is_empty() {
        return (vec![IdRange::whole()], Some("too few distinct _ids to split".into()));
    }
    // A server that ignores min/max would read the whole collection once per range.
    let probe = FindOptions::builder().hint(Hint::Keys(doc! { "_id": 1 })).max(doc! { "_id": Bson::MinKey }).limit(1).build();
    match collection.find(doc! {}).with_options(probe).await {
        Ok(mut cursor) => match cursor.try_next().await {
            Ok(None) => {}
            Ok(Some(_)) => return (vec![IdRange::whole()], Some("the server ignores a cursor's min/max bounds".into())),
            Err(error) => return (vec![IdRange::whole()], Some(format!("the server refused a cursor bounded by min/max ({error})"))),
        },
        Err(error) => return (vec![IdRange::whole()], Some(format!("the server refused a cursor bounded by min/max ({error})"))),
    }
    // The boundaries were ordered by $sort; the ranges are read in the _id index's
    // order. They agree on MongoDB, but a server whose index orders some values
    // differently would make two ranges overlap: every range must be non-empty (each
    // holds a sampled _id), and one starting at a boundary must start with it (min is
    // inclusive), or the collection is read whole.
    let ranges = ranges_between(boundaries);
    for range in &ranges {
        let mut probe = range.find_options();
        probe.projection = Some(doc! { "_id": 1 });
        probe.limit = Some(1);
        let first = match collection.find(doc! {}).with_options(probe).await {
            Ok(mut cursor) => cursor.try_next().await.ok().flatten().and_then(|mut d| d.remove("_id")),
            Err(_) => None,
        };
        let starts_right = match (&first, &range.min) {
            (None, _) => false,
            (Some(found), Some(min)) => found == min,
            (Some(_), None) => true,
        };
        if !starts_right {
            return (vec![IdRange::whole()], Some("the _id index does not order the sampled boundaries as $sort did (or they were deleted)".into()));
        }
    }
    (ranges, None)
}

/// Whether the server plans a range read (below `_id` 0) as an `_id` index scan with
/// bounds (`explain` at `queryPlanner` verbosity: an `IXSCAN` stage with `indexBounds`,
/// as MongoDB reports it). Plans only: nothing is read. The bound is a plain number:
/// FerretDB v1 drops the connection on a `MaxKey` bound, and with it every cursor the
/// connection holds (other collections' reads).
async fn plans_bounded_index_scan(client: &Client, info: &CollectionInfo) -> bool {
    let command = doc! {
        "explain": { "find": info.data_collection(), "filter": {}, "max": { "_id": 0 }, "hint": { "_id": 1 } },
        "verbosity": "queryPlanner",
    };
    // Asked of the member the reads go to (the URI's read preference), not always the primary.
    let database = client.database(&info.database);
    let mut explain = database.run_command(command);
    if let Some(criteria) = database.selection_criteria() {
        explain = explain.selection_criteria(criteria.clone());
    }
    match explain.await {
        Ok(explained) => explained.get_document("queryPlanner").and_then(|planner| planner.get_document("winningPlan")).is_ok_and(has_bounded_ixscan),
        Err(_) => false,
    }
}

/// Whether a plan stage, or one of its input stages, is an `IXSCAN` with `indexBounds`
/// (also inside the `queryPlan` of a slot-based plan and the per-shard plans mongos
/// reports).
fn has_bounded_ixscan(stage: &Document) -> bool {
    if stage.get_str("stage") == Ok("IXSCAN") && stage.get_document("indexBounds").is_ok_and(|bounds| !bounds.is_empty()) {
        return true;
    }
    let nested = ["inputStage", "queryPlan", "winningPlan"].iter().any(|key| stage.get_document(key).is_ok_and(has_bounded_ixscan));
    let listed = |key: &str| stage.get_array(key).is_ok_and(|stages| stages.iter().filter_map(Bson::as_document).any(has_bounded_ixscan));
    nested || listed("inputStages") || listed("shards")
}

/// How many `_id`s to sample for `ranges` ranges, or `None` when a useful sample would
/// make the server read the whole (large) collection.
fn sample_size(ranges: usize, documents: u64, bytes: u64) -> Option<u64> {
    let wanted = ranges as u64 * SAMPLES_PER_RANGE;
    if bytes < SAMPLE_SCAN_LIMIT_BYTES || wanted < documents / 20 {
        return Some(wanted);
    }
    let affordable = documents / 20;
    (affordable >= 2 * ranges as u64).then_some(affordable)
}

/// `ranges - 1` boundaries at even quantiles of `sorted` (already in BSON order),
/// skipping repeats, so no range is empty by construction.
fn boundaries(sorted: &[Bson], ranges: usize) -> Vec<Bson> {
    let mut chosen: Vec<Bson> = Vec::with_capacity(ranges.saturating_sub(1));
    for k in 1..ranges {
        let Some(candidate) = sorted.get(k * sorted.len() / ranges) else { continue };
        if k * sorted.len() / ranges == 0 {
            continue; // the first sampled _id: the first range would hold nothing sampled
        }
        if chosen.last().is_some_and(|last| same_id(last, candidate)) {
            continue;
        }
        chosen.push(candidate.clone());
    }
    chosen
}

/// Whether two `_id`s are equal in BSON order (numbers compare by value across types).
fn same_id(a: &Bson, b: &Bson) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn number(value: &Bson) -> Option<f64> {
    match value {
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        Bson::Double(n) => Some(*n),
        _ => None,
    }
}

fn ranges_between(boundaries: Vec<Bson>) -> Vec<IdRange> {
    let mut ranges = Vec::with_capacity(boundaries.len() + 1);
    let mut min = None;
    for boundary in boundaries {
        ranges.push(IdRange { min: min.take(), max: Some(boundary.clone()) });
        min = Some(boundary);
    }
    ranges.push(IdRange { min, max: None });
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(options: Document) -> CollectionInfo {
        CollectionInfo { database: "d".into(), name: "c".into(), kind: "collection".into(), options, uuid: None }
    }

    fn id_index() -> Document {
        doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_" }
    }

    #[test]
    fn ranges_chain_from_no_min_to_no_max() {
        let sampled: Vec<Bson> = (0..100).map(Bson::Int32).collect();
        let ranges = ranges_between(boundaries(&sampled, 4));
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0], IdRange { min: None, max: Some(Bson::Int32(25)) });
        assert_eq!(ranges[1], IdRange { min: Some(Bson::Int32(25)), max: Some(Bson::Int32(50)) });
        assert_eq!(ranges[3], IdRange { min: Some(Bson::Int32(75)), max: None });
        let options = ranges[1].find_options();
        assert_eq!(options.min, Some(doc! { "_id": 25 }));
        assert_eq!(options.max, Some(doc! { "_id": 50 }));
        assert!(matches!(options.hint, Some(Hint::Keys(ref keys)) if keys == &doc! { "_id": 1 }));
        assert!(IdRange::whole().find_options().hint.is_none());
    }

    #[test]
    fn repeated_and_numerically_equal_ids_make_no_empty_range() {
        let sampled = vec![Bson::Int32(1), Bson::Double(1.0), Bson::Int64(1), Bson::Int32(1), Bson::String("a".into()), Bson::String("b".into())];
        let chosen = boundaries(&sampled, 6);
        assert_eq!(chosen, vec![Bson::Double(1.0), Bson::String("a".into()), Bson::String("b".into())]);
        assert!(boundaries(&[Bson::Int32(7)], 4).is_empty(), "one sampled _id cannot split");
        assert!(boundaries(&[], 4).is_empty(), "an empty collection is read whole");
    }

    #[test]
    fn only_a_plan_with_index_bounds_counts_as_a_bounded_scan() {
        let mongod =
            doc! { "stage": "FETCH", "inputStage": { "stage": "IXSCAN", "keyPattern": { "_id": 1 }, "indexBounds": { "_id": ["[MinKey, 25600)"] } } };
        assert!(has_bounded_ixscan(&mongod));
        let unbounded = doc! { "stage": "FETCH", "inputStage": { "stage": "IXSCAN", "keyPattern": { "_id": 1 } } };
        assert!(!has_bounded_ixscan(&unbounded), "an IXSCAN without bounds (SecantusDB's plan)");
        assert!(!has_bounded_ixscan(&doc! { "stage": "COLLSCAN" }));
        let nested = doc! { "stage": "SHARD_MERGE", "inputStages": [{ "stage": "LIMIT" }, mongod.clone()] };
        assert!(has_bounded_ixscan(&nested));
        let mongos = doc! { "stage": "SINGLE_SHARD", "shards": [{ "shardName": "s0", "winningPlan": mongod.clone() }] };
        assert!(has_bounded_ixscan(&mongos));
        assert!(has_bounded_ixscan(&doc! { "queryPlan": mongod }), "a slot-based plan wraps the stages");
    }

    #[test]
    fn large_collections_are_sampled_without_a_whole_collection_scan() {
        assert_eq!(sample_size(4, 50, 1 << 20), Some(256), "a small collection may be scanned for its sample");
        assert_eq!(sample_size(4, 10_000_000, 10 << 30), Some(256), "a random cursor: far under 5% of the documents");
        assert_eq!(sample_size(4, 4_000, 1 << 30), Some(200), "1 GiB of 256 KiB documents: 5% of them");
        assert_eq!(sample_size(4, 100, 1 << 30), None, "too few documents to place the boundaries");
    }

    #[test]
    fn only_plain_collections_with_a_simple_id_index_are_split() {
        assert_eq!(unsplittable_reason(&info(doc! {}), &[id_index()]), None);
        assert!(unsplittable_reason(&info(doc! { "capped": true, "size": 4096 }), &[id_index()]).is_some());
        assert!(unsplittable_reason(&info(doc! { "collation": { "locale": "fr" } }), &[id_index()]).is_some());
        assert!(unsplittable_reason(&info(doc! { "clusteredIndex": { "key": { "_id": 1 }, "unique": true } }), &[]).is_some());
        assert!(unsplittable_reason(&info(doc! {}), &[]).is_some(), "no _id index");
        let mut view = info(doc! { "viewOn": "c" });
        view.kind = "view".into();
        assert!(unsplittable_reason(&view, &[]).is_some());
        let with_collation = doc! { "v": 2, "key": { "_id": 1 }, "name": "_id_", "collation": { "locale": "fr" } };
        assert!(unsplittable_reason(&info(doc! {}), &[with_collation]).is_some());
    }
}
