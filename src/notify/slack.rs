//! The Slack message: a plain `text` (what notifications and old clients show) and
//! Block Kit `blocks` with the facts as fields. Slack limits a section to 10 fields and
//! a text to 3000 characters, and treats `&`, `<` and `>` as markup, so every value is
//! escaped and long ones are shortened.

use serde_json::{json, Value};

use super::{Event, Outcome, MAX_DETAILS};

/// The longest text put in one block; Slack refuses more than 3000 characters.
const MAX_TEXT: usize = 2900;

/// The JSON body posted to a Slack incoming webhook for `event`.
pub(super) fn message(event: &Event) -> Value {
    let (icon, title) = match event.outcome {
        Outcome::Succeeded => (":white_check_mark:", format!("{} succeeded", capitalized(event.operation.name()))),
        Outcome::Failed => (":x:", format!("{} FAILED", capitalized(event.operation.name()))),
    };
    let mut text = format!("{icon} {}", escape(&event.headline()));
    if let Some(reason) = &event.reason {
        text.push_str(": ");
        text.push_str(&escape(&shorten(reason, 500)));
    }

    let mut fields = Vec::new();
    let mut field = |label: &str, value: String| fields.push(json!({ "type": "mrkdwn", "text": format!("*{label}*\n{}", escape(&value)) }));
    field("Operation", event.operation.name().to_string());
    if let Some(backup) = &event.backup {
        field("Backup", backup.clone());
    }
    field("Store", shorten(&event.store, 200));
    if let Some(stage) = &event.stage {
        field("Stage", stage.clone());
    }
    let counts = &event.counts;
    for (label, value) in [("Namespaces", counts.namespaces), ("Documents", counts.documents)] {
        if let Some(value) = value {
            field(label, value.to_string());
        }
    }
    if let Some(bytes) = counts.bytes {
        field("BSON size", mebibytes(bytes));
    }
    if let Some(bytes) = counts.archive_bytes {
        field("Archive size", mebibytes(bytes));
    }
    if let Some(seconds) = event.duration_seconds {
        field("Duration", format!("{seconds:.1} s"));
    }
    fields.truncate(10);

    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": format!("ingest-backup: {title}"), "emoji": true } }),
        json!({ "type": "section", "fields": fields }),
    ];
    if let Some(reason) = &event.reason {
        blocks.push(section(&format!("*Reason*\n```{}```", escape(&shorten(reason, MAX_TEXT - 20)))));
    }
    if !event.details.is_empty() {
        let mut lines: Vec<String> = event.details.iter().take(MAX_DETAILS).map(|d| format!("• {}", escape(&shorten(d, 250)))).collect();
        if event.details.len() > MAX_DETAILS {
            lines.push(format!("… and {} more", event.details.len() - MAX_DETAILS));
        }
        blocks.push(section(&format!("*Details*\n{}", lines.join("\n"))));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": concat!("ingest-backup ", env!("CARGO_PKG_VERSION")) }]
    }));
    json!({ "text": text, "blocks": blocks })
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": shorten(text, MAX_TEXT) } })
}

/// Escapes the three characters Slack reads as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `text` cut to at most `max` characters, marked with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Counts, Operation};

    fn failure() -> Event {
        Event {
            operation: Operation::Backup,
            outcome: Outcome::Failed,
            backup: Some("2018-04-04T11_37".into()),
            store: "s3://ingest-backups/prod".into(),
            stage: Some("reading from MongoDB".into()),
            reason: Some("MongoDB: reading ingest.project: <connection reset> & gone".into()),
            counts: Counts { namespaces: Some(7), documents: Some(1200), bytes: None, archive_bytes: None },
            duration_seconds: Some(12.34),
            details: Vec::new(),
        }
    }

    fn field_texts(message: &Value) -> Vec<String> {
        message["blocks"][1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn failure_names_operation_backup_stage_and_reason() {
        let message = message(&failure());
        let text = message["text"].as_str().unwrap();
        assert!(text.starts_with(":x: ingest-backup backup 2018-04-04T11_37 FAILED at stage reading from MongoDB"), "{text}");
        assert!(text.contains("&lt;connection reset&gt; &amp; gone"), "markup is escaped: {text}");
        assert_eq!(message["blocks"][0]["text"]["text"], "ingest-backup: Backup FAILED");
        assert_eq!(
            field_texts(&message),
            [
                "*Operation*\nbackup",
                "*Backup*\n2018-04-04T11_37",
                "*Store*\ns3://ingest-backups/prod",
                "*Stage*\nreading from MongoDB",
                "*Namespaces*\n7",
                "*Documents*\n1200",
                "*Duration*\n12.3 s",
            ]
        );
        let reason = message["blocks"][2]["text"]["text"].as_str().unwrap();
        assert_eq!(reason, "*Reason*\n```MongoDB: reading ingest.project: &lt;connection reset&gt; &amp; gone```");
    }

    #[test]
    fn success_has_counts_and_no_reason() {
        let event = Event {
            outcome: Outcome::Succeeded,
            stage: None,
            reason: None,
            counts: Counts { namespaces: Some(3), documents: Some(42), bytes: Some(3 << 20), archive_bytes: Some(1024) },
            ..failure()
        };
        let message = message(&event);
        assert_eq!(message["text"], ":white_check_mark: ingest-backup backup 2018-04-04T11_37 succeeded (s3://ingest-backups/prod)");
        let fields = field_texts(&message);
        assert!(fields.contains(&"*Documents*\n42".to_string()), "{fields:?}");
        assert!(fields.contains(&"*BSON size*\n3.0 MiB (3145728 bytes)".to_string()), "{fields:?}");
        assert!(!fields.iter().any(|f| f.starts_with("*Stage*")));
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 3, "header, fields, context: {blocks:?}");
    }

    #[test]
    fn details_are_capped_and_long_text_is_shortened() {
        let event = Event { reason: Some("x".repeat(10_000)), details: (1..=25).map(|n| format!("finding {n}")).collect(), ..failure() };
        let message = message(&event);
        let reason = message["blocks"][2]["text"]["text"].as_str().unwrap();
        assert!(reason.chars().count() <= 3000, "Slack's limit");
        assert!(reason.contains('…'));
        let details = message["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(details.contains("• finding 10\n… and 15 more"), "{details}");
        assert!(!details.contains("finding 11"), "{details}");
        assert!(message["text"].as_str().unwrap().chars().count() < 1000);
    }
}
