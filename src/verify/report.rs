//! The human rendering of a verification: a per-namespace table and the findings,
//! for stderr. (`--json` prints the report itself.)

use std::fmt::Write as _;

use super::VerifyReport;

/// Renders `report` as the table printed on stderr.
pub fn render(report: &VerifyReport) -> String {
    let mut out = String::new();
    let archive = &report.archive;
    let _ = writeln!(
        out,
        "verify {} ({}): archive {} - {} members, {} documents, {:.1} MiB of BSON walked, {} bytes stored",
        report.name,
        report.store,
        if archive.intact { "intact" } else { "DAMAGED" },
        archive.members,
        archive.documents,
        archive.bson_bytes as f64 / (1 << 20) as f64,
        archive.archive_bytes
    );
    if !archive.content_checked && !archive.archive_sha256.is_empty() {
        let _ = writeln!(
            out,
            "content NOT checked: the archive is encrypted and no identity was given, so only its stored bytes were compared with the \
             sidecar's size and SHA-256 (give --identity to check every document)"
        );
    }
    if let Some(live) = &report.live {
        let _ = writeln!(
            out,
            "live comparison against {}: oplog {}",
            live.hosts.join(","),
            if live.oplog_reaches_back {
                format!("reaches back to the backup ({} entries since)", live.oplog_entries)
            } else {
                format!("does not reach back: {}", live.oplog_reason.as_deref().unwrap_or("unknown"))
            }
        );
        let width = live.namespaces.iter().map(|n| n.namespace.len()).max().unwrap_or(9).max(9);
        let _ = writeln!(out, "{:<width$}  {:<12}  {:>12}  {:>12}  {:>8}  NOTE", "NAMESPACE", "STATUS", "BACKUP DOCS", "LIVE DOCS", "DELTA");
        for row in &live.namespaces {
            let _ = writeln!(
                out,
                "{:<width$}  {:<12}  {:>12}  {:>12}  {:>+8}  {}",
                row.namespace,
                row.status.label(),
                row.backup_documents,
                row.live_documents.map_or("-".to_string(), |d| d.to_string()),
                row.delta,
                row.note
            );
        }
    }
    for finding in &report.findings {
        let _ = writeln!(out, "{finding}");
    }
    let _ = writeln!(out, "verification {} in {:.1}s", report.status.label(), report.duration_seconds);
    out
}
