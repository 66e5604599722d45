//! The generic webhook's document: the event's facts as plain JSON for any receiver
//! (an incident tool, a chat bridge, a script), plus the time it was sent and the one-line
//! summary the Slack message leads with.

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{Event, MAX_DETAILS};

/// The JSON body posted to `ALERT_WEBHOOK_URL` for `event`.
pub(super) fn document(event: &Event) -> Value {
    json!({
        "source": "ingest-backup",
        "version": env!("CARGO_PKG_VERSION"),
        "sent_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "summary": event.headline(),
        "operation": event.operation,
        "outcome": event.outcome,
        "backup": event.backup,
        "store": event.store,
        "stage": event.stage,
        "reason": event.reason,
        "counts": event.counts,
        "duration_seconds": event.duration_seconds,
        "details": event.details.iter().take(MAX_DETAILS).collect::<Vec<_>>(),
        "details_total": event.details.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::notify::Operation;

    #[test]
    fn document_has_the_facts() {
        let mut event = Event::failed(Operation::Backup, "/srv/backups", &Error::Cancelled);
        event.details = (0..12).map(|n| n.to_string()).collect();
        let document = document(&event);
        assert_eq!(document["operation"], "backup");
        assert_eq!(document["outcome"], "failed");
        assert_eq!(document["stage"], "cancelled");
        assert_eq!(document["store"], "/srv/backups");
        assert_eq!(document["backup"], Value::Null);
        assert_eq!(document["counts"]["documents"], Value::Null);
        assert_eq!(document["details"].as_array().unwrap().len(), MAX_DETAILS);
        assert_eq!(document["details_total"], 12);
        assert!(document["reason"].as_str().unwrap().starts_with("interrupted by a signal"));
    }
}
