//! The target server side of a restore: dropping and creating collections with their
//! options, inserting document batches with bounded parallelism, then building
//! indexes and creating views.

use std::sync::Arc;

use bson::{doc, Bson, Document, RawDocumentBuf};
use futures::StreamExt;
use mongodb::error::ErrorKind;
use mongodb::Client;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::info;

use super::plan::PlannedNamespace;
use crate::error::{Error, Result};
use crate::server_codes::{server_code, DUPLICATE_KEY, NAMESPACE_EXISTS, NAMESPACE_NOT_FOUND};

/// Documents bound for one namespace of the plan.
pub struct Batch {
    /// Index of the namespace in the plan.
    pub namespace: usize,
    /// Raw documents, in file order.
    pub documents: Vec<RawDocumentBuf>,
}

/// What the inserts into one namespace did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InsertTally {
    /// Documents inserted.
    pub inserted: u64,
    /// Documents refused because one with the same `_id` (or unique key) exists.
    pub duplicates: u64,
    /// Other refused documents, with the server's first message.
    pub failed: u64,
    /// The first failure message.
    pub first_failure: Option<String>,
}

/// Drops (with `drop`) and creates every collection of the plan, so options such as
/// capped sizes, validators and collations are in place before the first insert.
/// Views are dropped here and created at the end. `parallel` namespaces are prepared
/// at once (as mongorestore's parallel collections), which matters for backups of
/// many small collections.
///
/// # Errors
/// The target refused a drop or a create (the first such refusal in plan order).
pub async fn prepare(client: &Client, namespaces: &[PlannedNamespace], drop: bool, parallel: usize) -> Result<()> {
    each_namespace(namespaces, parallel, |planned| prepare_one(client, planned, drop)).await?;
    Ok(())
}

/// Runs `work` for every namespace, `parallel` at once (a slow one does not hold back
/// the others), and returns the results in plan order, or the first error in plan order.
async fn each_namespace<'a, T, F, Fut>(namespaces: &'a [PlannedNamespace], parallel: usize, work: F) -> Result<Vec<T>>
where
    F: Fn(&'a PlannedNamespace) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut done: Vec<(usize, Result<T>)> = futures::stream::iter(namespaces.iter().enumerate())
        .map(|(index, planned)| {
            let future = work(planned);
            async move { (index, future.await) }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

async fn prepare_one(client: &Client, planned: &PlannedNamespace, drop: bool) -> Result<()> {
    if planned.is_users_or_roles() {
        // A temporary collection, emptied of anything an earlier restore left behind.
        let temporary = planned.data_collection();
        return client
            .database(&planned.target_database)
            .collection::<Document>(&temporary)
            .drop()
            .await
            .or_else(|e| if server_code(&e) == Some(NAMESPACE_NOT_FOUND) { Ok(()) } else { Err(e) })
            .map_err(Error::mongo(format!("emptying admin.{temporary}")));
    }
    if drop {
        client
            .database(&planned.target_database)
            .collection::<Document>(&planned.collection)
            .drop()
            .await
            .or_else(|e| if server_code(&e) == Some(NAMESPACE_NOT_FOUND) { Ok(()) } else { Err(e) })
            .map_err(Error::mongo(format!("dropping {}", planned.target())))?;
    }
    if planned.is_view() {
        return Ok(());
    }
    create(client, planned).await
}

async fn create(client: &Client, planned: &PlannedNamespace) -> Result<()> {
    let mut command = doc! { "create": &planned.collection };
    command.extend(planned.options.clone());
    match client.database(&planned.target_database).run_command(command).await {
        Ok(_) => Ok(()),
        Err(error) if server_code(&error) == Some(NAMESPACE_EXISTS) && planned.is_timeseries() => Err(Error::Refused(format!(
            "the time-series collection {} already exists on the target, and buckets cannot be merged into it: restore with --drop to \
             replace it (mongorestore refuses it too)",
            planned.target()
        ))),
        Err(error) if server_code(&error) == Some(NAMESPACE_EXISTS) => {
            info!(namespace = %planned.target(), "Restoring into an existing collection (no --drop): its options are kept.");
            Ok(())
        }
        Err(error) => Err(Error::Mongo { context: format!("creating {} with its options", planned.target()), source: error }),
    }
}

/// What the inserts did: the tally per namespace and, when they stopped early, why.
#[derive(Debug, Default)]
pub struct InsertOutcome {
    /// Per namespace of the plan, the acknowledged inserts (also when `error` is set:
    /// what the target holds from this restore).
    pub tallies: Vec<InsertTally>,
    /// The failure that stopped the inserts (the server went away), if one did.
    pub error: Option<Error>,
}

/// Inserts every batch received, `parallel` at a time, unordered within a batch (as
/// mongorestore). Duplicate keys are counted, not fatal; any other refusal is counted
/// with its first message. A failure that is not a per-document refusal (the server
/// went away) stops taking batches; the inserts in flight are still awaited, so the
/// tallies returned with the error count every acknowledged insert.
pub async fn insert_batches(
    client: Client,
    namespaces: Arc<Vec<PlannedNamespace>>,
    mut batches: mpsc::Receiver<Batch>,
    parallel: usize,
) -> InsertOutcome {
    let permits = Arc::new(Semaphore::new(parallel.max(1)));
    let mut outcome = InsertOutcome { tallies: vec![InsertTally::default(); namespaces.len()], error: None };
    let mut inserts = JoinSet::new();
    let record = |outcome: &mut InsertOutcome, done: Result<(usize, InsertTally)>| {
        let (index, tally) = match done {
            Ok(done) => done,
            Err(error) => {
                outcome.error.get_or_insert(error);
                return;
            }
        };
        let total = &mut outcome.tallies[index];
        total.inserted += tally.inserted;
        total.duplicates += tally.duplicates;
        total.failed += tally.failed;
        if total.first_failure.is_none() {
            total.first_failure = tally.first_failure;
        }
    };
    while let Some(batch) = batches.recv().await {
        if outcome.error.is_some() {
            break;
        }
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let planned = &namespaces[batch.namespace];
        let collection = client.database(&planned.target_database).collection::<RawDocumentBuf>(&planned.data_collection());
        let target = planned.target();
        inserts.spawn(async move {
            let tally = insert(&collection, &target, batch.documents).await;
            drop(permit);
            tally.map(|tally| (batch.namespace, tally))
        });
        while let Some(done) = inserts.try_join_next() {
            record(&mut outcome, done.expect("an insert does not panic"));
        }
    }
    drop(batches);
    while let Some(done) = inserts.join_next().await {
        record(&mut outcome, done.expect("an insert does not panic"));
    }
    outcome
}

async fn insert(collection: &mongodb::Collection<RawDocumentBuf>, target: &str, documents: Vec<RawDocumentBuf>) -> Result<InsertTally> {
    let count = documents.len() as u64;
    match collection.insert_many(documents).ordered(false).await {
        Ok(_) => Ok(InsertTally { inserted: count, ..InsertTally::default() }),
        Err(error) => {
            let ErrorKind::InsertMany(failure) = &*error.kind else {
                return Err(Error::Mongo { context: format!("inserting into {target}"), source: error });
            };
            if failure.write_concern_error.is_some() {
                return Err(Error::Mongo { context: format!("inserting into {target}"), source: error });
            }
            let errors = failure.write_errors.as_deref().unwrap_or_default();
            let duplicates = errors.iter().filter(|e| e.code == DUPLICATE_KEY).count() as u64;
            let others: Vec<_> = errors.iter().filter(|e| e.code != DUPLICATE_KEY).collect();
            Ok(InsertTally {
                inserted: count - errors.len() as u64,
                duplicates,
                failed: others.len() as u64,
                first_failure: others
                    .first()
                    .map(|e| format!("{target}: {} (code {})", crate::error::truncate_message(&e.message, crate::error::MAX_QUOTED_MESSAGE), e.code)),
            })
        }
    }
}

/// Builds the indexes of every restored collection, `parallel` collections at once;
/// returns the number built per namespace, in plan order.
///
/// # Errors
/// The target refused an index (the first such refusal in plan order).
pub async fn build_all_indexes(client: &Client, namespaces: &[PlannedNamespace], parallel: usize) -> Result<Vec<usize>> {
    each_namespace(namespaces, parallel, |planned| build_indexes(client, planned)).await
}

/// Builds the indexes of a restored collection (all but `_id_`, which the server makes).
///
/// # Errors
/// The target refused an index.
async fn build_indexes(client: &Client, planned: &PlannedNamespace) -> Result<usize> {
    let inherits_a_collation = planned.options.get_document("collation").is_ok_and(|collation| collation.get_str("locale") != Ok("simple"));
    let specs: Vec<Bson> = planned
        .indexes
        .iter()
        .filter(|spec| spec.get_str("name").ok() != Some("_id_"))
        .map(|spec| {
            let mut spec = spec.clone();
            spec.remove("ns");
            // listIndexes shows no collation for an index with the simple collation; on a
            // collection with a default collation such an index would inherit it, so it is
            // given the simple one back (as mongorestore; version 1 indexes have none).
            let version_one = spec.get("v").and_then(|v| v.as_i32().or(v.as_i64().map(|v| v as i32))) == Some(1);
            if inherits_a_collation && !version_one && !spec.contains_key("collation") {
                spec.insert("collation", doc! { "locale": "simple" });
            }
            Bson::Document(spec)
        })
        .collect();
    if specs.is_empty() || planned.is_view() || planned.is_users_or_roles() {
        return Ok(0);
    }
    let count = specs.len();
    let database = client.database(&planned.target_database);
    let context = || format!("building the indexes of {}", planned.target());
    match database.run_command(doc! { "createIndexes": &planned.collection, "indexes": &specs }).await {
        Ok(_) => {}
        Err(error) if refuses_index_version(&error) => {
            // FerretDB v1 refuses the `v` option that every MongoDB lists and accepts; the
            // server then builds its own default version, which is what it lists back.
            tracing::warn!(namespace = %planned.target(), "The target refuses the index option \"v\"; building the indexes without it.");
            let specs: Vec<Bson> = specs
                .into_iter()
                .map(|spec| match spec {
                    Bson::Document(mut spec) => {
                        spec.remove("v");
                        Bson::Document(spec)
                    }
                    other => other,
                })
                .collect();
            database.run_command(doc! { "createIndexes": &planned.collection, "indexes": specs }).await.map_err(Error::mongo(context()))?;
        }
        Err(error) => return Err(Error::mongo(context())(error)),
    }
    Ok(count)
}

/// Whether a `createIndexes` failed only because the server does not know the index
/// option `v` (FerretDB v1: `BadValue`, `Index option "v" is unknown`).
fn refuses_index_version(error: &mongodb::error::Error) -> bool {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(command) => command.code == 2 && command.message.contains("\"v\" is unknown"),
        _ => false,
    }
}

/// Creates a view (after every collection exists).
///
/// # Errors
/// The target refused the view.
pub async fn create_view(client: &Client, planned: &PlannedNamespace) -> Result<()> {
    create(client, planned).await
}
