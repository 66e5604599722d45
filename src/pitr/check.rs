//! `ingest-backup verify --pitr`: every slice's stored bytes against its sidecar (size,
//! SHA-256), its framing (whole BSON documents, gzip), its entries (count, timestamps
//! inside its range), the chains' continuity (each slice starting where the previous
//! ended, no overlap, no hole) and each chain's link to a backup in the store.

use serde::Serialize;

use super::replay::{fetch_checked, read_entries};
use super::{bases, chains, Chain, TargetTime};
use crate::error::{Error, Result};
use crate::oplog::timestamp::{timestamp_label, wall_time, Timestamp};
use crate::store::Store;

/// What `verify --pitr` found.
#[derive(Debug, Clone, Serialize)]
pub struct PitrCheck {
    /// The chains, with their restorable ranges.
    pub chains: Vec<Chain>,
    /// Slices checked.
    pub slices_checked: u64,
    /// Every problem, naming the slice.
    pub findings: Vec<String>,
}

impl PitrCheck {
    /// Whether the command should exit 0.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Parses `FROM..TO` (either side may be empty; each RFC 3339 or `T.I`).
///
/// # Errors
/// A usage error for a malformed bound.
pub fn parse_range(text: &str) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
    let (from, to) = text.split_once("..").ok_or_else(|| Error::usage(format!("--pitr {text:?} is not FROM..TO (either side may be empty)")))?;
    let bound = |side: &str| (!side.trim().is_empty()).then(|| TargetTime::parse(side).map(|t| t.0)).transpose();
    Ok((bound(from)?, bound(to)?))
}

/// Checks the slices whose range meets `[from, to]` and every chain.
///
/// # Errors
/// The store could not be listed or read (a damaged slice is a finding, not an error).
pub async fn check_pitr(
    store: &Store,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    identities: Option<std::sync::Arc<crate::crypto::Identities>>,
    spool_dir: &std::path::Path,
) -> Result<PitrCheck> {
    let backups = store.list().await?;
    let bases = bases(&backups);
    let (slices, mut findings) = super::list_slices_and_problems(store).await?;
    let chains = chains(&bases, &slices);
    for chain in &chains {
        if let Some(broken) = &chain.broken_at {
            findings.push(format!(
                "{broken}: does not start where the chain of backup {} ends ({}): a hole or an overlap; restores reach only {}",
                chain.base,
                timestamp_label(chain.to),
                wall_time(chain.to).to_rfc3339()
            ));
        }
    }
    for chain in &chains {
        for overlapping in &chain.overlaps {
            findings.push(format!(
                "{overlapping}: overlaps the chain of backup {} (it starts before the previous slice's end: two runs read the same window); \
                 restores apply each entry once",
                chain.base
            ));
        }
    }
    for slice in slices.iter().filter(|s| !bases.iter().any(|b| b.name == s.base_backup)) {
        findings.push(format!("{}: chains from backup {}, which is not a complete backup in the store", slice.file, slice.base_backup));
    }
    let mut checked = 0;
    for slice in slices.iter().filter(|s| from.is_none_or(|f| s.end >= f) && to.is_none_or(|t| s.start <= t)) {
        checked += 1;
        let file = match fetch_checked(store, slice, spool_dir).await {
            Ok(file) => file,
            Err(error @ Error::Damaged(_)) => {
                findings.push(error.to_string());
                continue;
            }
            Err(error) => return Err(error),
        };
        let (start, end, name, identities) = (slice.start, slice.end, slice.file.clone(), identities.clone());
        let counted = tokio::task::spawn_blocking(move || {
            let (mut count, mut outside) = (0u64, 0u64);
            read_entries(file, &name, identities.as_deref(), |entry| {
                count += 1;
                let ts = entry.get_timestamp("ts").ok().map(Timestamp::from);
                if !ts.is_some_and(|ts| ts > start && ts <= end) {
                    outside += 1;
                }
                Ok(true)
            })
            .map(|()| (count, outside))
        })
        .await
        .expect("the slice reader does not panic");
        match counted {
            Ok((count, _)) if count != slice.entries => {
                findings.push(format!("{}: holds {count} entries, its sidecar says {}", slice.file, slice.entries));
            }
            Ok((_, outside)) if outside > 0 => {
                findings.push(format!(
                    "{}: {outside} entries lie outside its range ({} .. {})",
                    slice.file,
                    timestamp_label(start),
                    timestamp_label(end)
                ));
            }
            Ok(_) => {}
            Err(error) => findings.push(error.to_string()),
        }
    }
    Ok(PitrCheck { chains, slices_checked: checked, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_with_open_ends() {
        assert_eq!(parse_range("..").unwrap(), (None, None));
        assert_eq!(parse_range("100.1..").unwrap(), (Some(Timestamp { t: 100, i: 1 }), None));
        assert_eq!(parse_range("..1970-01-01T00:01:40Z").unwrap().1, Some(Timestamp { t: 100, i: u32::MAX }));
        assert_eq!(parse_range("100").unwrap_err().exit_code(), 2);
    }
}
