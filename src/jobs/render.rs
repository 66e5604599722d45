//! How a report reaches the person or the script that asked for it: a human text
//! (on stderr, or stdout for the commands whose text is the result, such as `list`),
//! and with `--json` one JSON document on stdout. Every report renders through the
//! same trait, so `--json` means the same thing for every command.

use serde::Serialize;

use crate::error::Error;

/// Where a report's human text goes without `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTarget {
    /// Standard error: a summary of work done (backup, verify, restore).
    Stderr,
    /// Standard output: the text is the result (list, prune's table).
    Stdout,
}

/// A report that can be shown as text and as JSON.
pub trait Render: Serialize {
    /// The human text, ending with a newline when not empty.
    fn text(&self) -> String;

    /// Warnings shown on stderr before the text (empty: none), with the text.
    fn warnings(&self) -> String {
        String::new()
    }

    /// Where [`Render::text`] goes without `--json`.
    fn text_target(&self) -> TextTarget {
        TextTarget::Stderr
    }

    /// Whether the text is still shown (on stderr) beside the JSON document.
    fn text_beside_json(&self) -> bool {
        true
    }

    /// Whether the command exits 0 (false: exit 1, the operation ran and failed).
    fn succeeded(&self) -> bool {
        true
    }
}

/// A report rendered both ways, ready to print.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The human text.
    pub text: String,
    /// Warnings shown on stderr before the text.
    pub warnings: String,
    /// Where the text goes without `--json`.
    pub target: TextTarget,
    /// Whether the text is shown beside the JSON.
    pub text_beside_json: bool,
    /// The JSON document.
    pub json: serde_json::Value,
    /// Exit 0 (true) or 1 (false).
    pub succeeded: bool,
}

impl Rendered {
    /// Renders `report`.
    pub fn of<R: Render>(report: &R) -> Rendered {
        Rendered {
            text: report.text(),
            warnings: report.warnings(),
            target: report.text_target(),
            text_beside_json: report.text_beside_json(),
            json: serde_json::to_value(report).expect("a report always serializes"),
            succeeded: report.succeeded(),
        }
    }

    /// Prints the report: the text where it belongs, and with `json` the document on stdout.
    pub fn print(&self, json: bool) {
        match (json, self.target) {
            (true, _) if !self.text_beside_json => {}
            (true, _) | (false, TextTarget::Stderr) => eprint!("{}{}", self.warnings, self.text),
            (false, TextTarget::Stdout) => {
                eprint!("{}", self.warnings);
                print!("{}", self.text);
            }
        }
        if json {
            println!("{}", self.json);
        }
    }
}

/// The `--json` document of a command that failed with `error`.
pub fn error_document(error: &Error) -> serde_json::Value {
    let mut document = serde_json::json!({ "status": "error", "error": error.to_string(), "exit_code": error.exit_code() });
    if let Error::RestoreInterrupted { written, .. } = error {
        let written: serde_json::Map<String, serde_json::Value> = written.iter().map(|(ns, n)| (ns.clone(), serde_json::json!(n))).collect();
        document["written"] = serde_json::Value::Object(written);
    }
    document
}
