//! The sample-data job: the sample ingest data set loaded into a server, for demos,
//! tests and benchmarks.

use serde::Serialize;

use super::Render;
use crate::error::{Error, Result};
use crate::sample::{self, Compat, SampleSpec};
use crate::source;

/// What `sample-data` loaded.
#[derive(Debug, Clone, Serialize)]
pub struct SampleDataReport {
    /// The database loaded into.
    pub database: String,
    /// Documents inserted (0 when nothing was loaded).
    pub documents: u64,
    /// BSON bytes inserted.
    pub bytes: u64,
    /// Why nothing was loaded, when nothing was.
    pub skipped: Option<String>,
}

/// `sample-data`: `size_mb` MiB of the data set `spec` into the server at `uri`;
/// with `if_empty`, nothing when it already holds a database of its own.
///
/// # Errors
/// Server errors.
pub async fn run(uri: &str, spec: &SampleSpec, if_empty: bool, compat: Compat) -> Result<SampleDataReport> {
    let skipped = |reason: String| SampleDataReport { database: spec.database.clone(), documents: 0, bytes: 0, skipped: Some(reason) };
    if spec.target_bytes == 0 {
        return Ok(skipped("--size-mb 0: no sample data loaded".to_string()));
    }
    let source = source::connect(uri).await?;
    if if_empty {
        let names = source.client.list_database_names().await.map_err(Error::mongo("listing the databases"))?;
        if let Some(existing) = names.iter().find(|name| !matches!(name.as_str(), "admin" | "config" | "local")) {
            return Ok(skipped(format!("the server already holds database {existing:?}: no sample data loaded (--if-empty)")));
        }
    }
    let summary = sample::load_for(&source.client, spec, compat).await?;
    Ok(SampleDataReport { database: spec.database.clone(), documents: summary.documents, bytes: summary.bytes, skipped: None })
}

impl Render for SampleDataReport {
    fn text(&self) -> String {
        match &self.skipped {
            Some(reason) => format!("{reason}\n"),
            None => format!(
                "loaded {} sample documents ({:.1} MiB) into database {}\n",
                self.documents,
                self.bytes as f64 / (1 << 20) as f64,
                self.database
            ),
        }
    }
}
