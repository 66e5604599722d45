//! Alerts: tell a person when a run fails (and, if asked, when it succeeds).
//!
//! Two channels, each configured by one secret URL in the environment: a Slack incoming
//! webhook (`SLACK_WEBHOOK_URL`, a formatted message) and a generic JSON webhook
//! (`ALERT_WEBHOOK_URL`, a machine-readable document). An alert is a side effect of the
//! run, never part of its result: delivery is retried within a bounded time, and a
//! failed delivery is logged and otherwise ignored, so the exit status always describes
//! the operation itself. The URLs carry the credentials of the channels, so they are
//! kept in [`SecretUrl`], which cannot be displayed, and no HTTP client error is ever
//! formatted (they embed the URL): only the channel name, the HTTP status or the kind of
//! error reach a log line.
//!
//! Beside the alerts, a success calls the heartbeat (`HEARTBEAT_URL`, [`heartbeat`]): a
//! dead-man's switch whose silence reveals the failures the tool never sees.

mod delivery;
pub mod heartbeat;
mod slack;
mod webhook;

use std::fmt;

use serde::Serialize;
use tracing::{info, warn};

use crate::backup::{BackupReport, ProgressSnapshot};
use crate::error::{Error, Result};
use crate::verify::VerifyReport;

pub use delivery::{DeliveryFailure, RetryPolicy};
pub use heartbeat::{Heartbeat, HEARTBEAT_METHOD, HEARTBEAT_URL};

/// The environment variable holding the Slack incoming-webhook URL.
pub const SLACK_WEBHOOK_URL: &str = "SLACK_WEBHOOK_URL";
/// The environment variable holding the generic JSON webhook URL.
pub const ALERT_WEBHOOK_URL: &str = "ALERT_WEBHOOK_URL";
/// The environment variable that, when `true`, reports successes too.
pub const NOTIFY_SUCCESS: &str = "NOTIFY_SUCCESS";

/// The command an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `ingest-backup backup`.
    Backup,
    /// `ingest-backup verify`.
    Verify,
    /// `ingest-backup restore`.
    Restore,
    /// `ingest-backup prune`.
    Prune,
    /// `ingest-backup oplog`.
    Oplog,
    /// `ingest-backup drill`.
    Drill,
}

impl Operation {
    /// The command's name, as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Verify => "verify",
            Operation::Restore => "restore",
            Operation::Prune => "prune",
            Operation::Oplog => "oplog",
            Operation::Drill => "drill",
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The operation did what it was asked.
    Succeeded,
    /// The operation failed (exit status 1 or 2).
    Failed,
}

/// What the run had counted when it ended; `None` where it never got that far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Namespaces (collections and views).
    pub namespaces: Option<u64>,
    /// Documents.
    pub documents: Option<u64>,
    /// Bytes of BSON.
    pub bytes: Option<u64>,
    /// Bytes of the compressed archive.
    pub archive_bytes: Option<u64>,
}

/// One thing worth telling someone about: a finished or failed run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The command.
    pub operation: Operation,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// The backup concerned, when it is known.
    pub backup: Option<String>,
    /// The store, as displayed to users (never carries a secret).
    pub store: String,
    /// Where a failure happened (see [`failure_stage`]).
    pub stage: Option<String>,
    /// Why it failed: the error message, as printed on stderr (already free of secrets).
    pub reason: Option<String>,
    /// What was counted.
    pub counts: Counts,
    /// Wall time of the run.
    pub duration_seconds: Option<f64>,
    /// Further lines, such as verification findings; channels show the first
    /// [`MAX_DETAILS`] and say how many more there are.
    pub details: Vec<String>,
}

/// How many [`Event::details`] a message shows.
pub const MAX_DETAILS: usize = 10;

impl Event {
    /// A failed run of `operation` on `store`, described by the error that ended it.
    pub fn failed(operation: Operation, store: impl Into<String>, error: &Error) -> Event {
        Event {
            operation,
            outcome: Outcome::Failed,
            backup: None,
            store: store.into(),
            stage: Some(failure_stage(error).to_string()),
            reason: Some(error.to_string()),
            counts: Counts::default(),
            duration_seconds: None,
            details: Vec::new(),
        }
    }

    /// A failed backup: the error, and the name and counts it had reached.
    pub fn backup_failed(store: impl Into<String>, error: &Error, progress: &ProgressSnapshot, duration_seconds: f64) -> Event {
        let mut event = Event::failed(Operation::Backup, store, error);
        event.backup = progress.name.clone();
        event.duration_seconds = Some(duration_seconds);
        if let Some(found) = progress.namespaces_found {
            event.counts = Counts {
                namespaces: Some(progress.namespaces_dumped),
                documents: Some(progress.documents),
                bytes: Some(progress.bytes),
                archive_bytes: None,
            };
            event.details.push(format!(
                "{} of {found} namespaces ({} documents) were read before the failure; nothing was kept in the store",
                progress.namespaces_dumped, progress.documents
            ));
        }
        event
    }

    /// A successful backup, with the counts of its manifest.
    pub fn backup_succeeded(report: &BackupReport, store: impl Into<String>) -> Event {
        let manifest = &report.manifest;
        Event {
            operation: Operation::Backup,
            outcome: Outcome::Succeeded,
            backup: Some(manifest.name.clone()),
            store: store.into(),
            stage: None,
            reason: None,
            counts: Counts {
                namespaces: Some(manifest.totals.namespaces),
                documents: Some(manifest.totals.documents),
                bytes: Some(manifest.totals.bytes),
                archive_bytes: manifest.archive.as_ref().map(|a| a.size),
            },
            duration_seconds: Some(report.duration_seconds),
            details: Vec::new(),
        }
    }

    /// A verification that ran to the end, passed or not: the failing stage is the
    /// archive when it is damaged, else the live comparison; the findings are the details.
    pub fn verify_finished(report: &VerifyReport) -> Event {
        let errors = report.errors();
        let (outcome, stage, reason) = if report.passed() {
            (Outcome::Succeeded, None, None)
        } else {
            let stage = if report.archive.intact { "live comparison" } else { "archive integrity" };
            let first = report.findings.iter().find(|f| f.severity == crate::verify::Severity::Error).map(ToString::to_string);
            let reason = match first {
                Some(first) => format!("{errors} error(s); first: {first}"),
                None => "warnings failed a --strict verification".to_string(),
            };
            (Outcome::Failed, Some(stage.to_string()), Some(reason))
        };
        Event {
            operation: Operation::Verify,
            outcome,
            backup: Some(report.name.clone()),
            store: report.store.clone(),
            stage,
            reason,
            counts: Counts {
                namespaces: report.live.as_ref().map(|live| live.namespaces.len() as u64),
                documents: Some(report.archive.documents),
                bytes: Some(report.archive.bson_bytes),
                archive_bytes: Some(report.archive.archive_bytes),
            },
            duration_seconds: Some(report.duration_seconds),
            details: report.findings.iter().map(ToString::to_string).collect(),
        }
    }

    /// The event for a `backup` run that ended either way: its report, or the error
    /// with the progress it had made.
    pub fn backup_ended(result: &Result<BackupReport>, store: &str, progress: &ProgressSnapshot, duration_seconds: f64) -> Event {
        match result {
            Ok(report) => Event::backup_succeeded(report, store),
            Err(error) => Event::backup_failed(store, error, progress, duration_seconds),
        }
    }

    /// The event for a `verify` run of `backup` that ended either way: its report, or
    /// the error that stopped it before there was one.
    pub fn verify_ended(result: &Result<VerifyReport>, store: &str, backup: &str) -> Event {
        match result {
            Ok(report) => Event::verify_finished(report),
            Err(error) => Event::verify_refused(store, backup, error),
        }
    }

    /// A `verify` of `backup` refused before it started (bad flags).
    pub fn verify_refused(store: &str, backup: &str, error: &Error) -> Event {
        let mut event = Event::failed(Operation::Verify, store, error);
        event.backup = Some(backup.to_string());
        event
    }

    /// The one-line summary used as the Slack notification text and the webhook's `summary`.
    pub fn headline(&self) -> String {
        let subject = match &self.backup {
            Some(name) => format!("{} {name}", self.operation.name()),
            None => self.operation.name().to_string(),
        };
        match self.outcome {
            Outcome::Succeeded => format!("ingest-backup {subject} succeeded ({})", self.store),
            Outcome::Failed => format!("ingest-backup {subject} FAILED at stage {} ({})", self.stage.as_deref().unwrap_or("unknown"), self.store),
        }
    }
}

/// The stage a failure happened in, named for the person reading the alert.
pub fn failure_stage(error: &Error) -> &'static str {
    match error {
        Error::Usage { .. } => "configuration",
        Error::Mongo { .. } => "reading from MongoDB",
        Error::Io { .. } => "local disk",
        Error::Archive { .. } => "archive",
        Error::Store { .. } => "store",
        Error::Damaged(_) => "damaged data",
        Error::Refused(_) => "refused",
        Error::Inconsistent(_) => "consistency",
        Error::Locked(_) => "store lock",
        Error::OplogGap(_) => "pitr",
        Error::Cancelled => "cancelled",
        Error::GaveUp { source, .. } | Error::RestoreInterrupted { source, .. } => failure_stage(source),
    }
}

/// A webhook URL. It is the channel's credential, so it has no `Display` and its
/// `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(url::Url);

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretUrl(***)")
    }
}

impl SecretUrl {
    /// Parses `text` as an http(s) URL with a host. The error never contains `text`.
    ///
    /// # Errors
    /// A usage error naming `variable` when the text is not such a URL.
    pub fn parse(variable: &str, text: &str) -> Result<SecretUrl> {
        let malformed = |why: &str| {
            Error::usage(format!(
                "{variable} is not a usable webhook URL: {why} (the value is not shown because it is a secret); \
                 set it to the full https:// URL the service gave you, or unset it"
            ))
        };
        let url = url::Url::parse(text.trim()).map_err(|_| malformed("it cannot be parsed as a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(malformed("its scheme is not http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(malformed("it has no host"));
        }
        Ok(SecretUrl(url))
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// An alert channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A Slack incoming webhook.
    Slack,
    /// A generic JSON webhook.
    Webhook,
    /// The heartbeat (`HEARTBEAT_URL`), called on success only.
    Heartbeat,
}

impl ChannelKind {
    /// The name used in log lines.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Heartbeat => "heartbeat",
        }
    }

    fn body(self, event: &Event) -> serde_json::Value {
        match self {
            ChannelKind::Slack => slack::message(event),
            ChannelKind::Webhook => webhook::document(event),
            ChannelKind::Heartbeat => heartbeat::document(event.operation.name(), event.backup.as_deref()),
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to one event on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel.
    pub channel: ChannelKind,
    /// Requests made (1 when the first one was accepted).
    pub attempts: u32,
    /// The accepting HTTP status, or why the event was not delivered.
    pub result: std::result::Result<u16, DeliveryFailure>,
}

/// The configured alert channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    channels: Vec<(ChannelKind, SecretUrl)>,
    notify_success: bool,
    policy: RetryPolicy,
    heartbeat: Option<Heartbeat>,
}

impl Notifier {
    /// The channels named by the settings `lookup` returns (`SLACK_WEBHOOK_URL`,
    /// `ALERT_WEBHOOK_URL`, `NOTIFY_SUCCESS`, the heartbeat's `HEARTBEAT_URL` and
    /// `HEARTBEAT_METHOD`: the command line reads them from its flags or the
    /// environment); successes are reported when `notify_success_flag`
    /// (`--notify-success`) or `NOTIFY_SUCCESS` is true. An unset or empty URL leaves
    /// its channel off.
    ///
    /// # Errors
    /// A usage error (exit status 2) naming the variable, never showing a URL, for a
    /// malformed URL, a `NOTIFY_SUCCESS` that is not a boolean or a bad `HEARTBEAT_METHOD`.
    pub fn from_lookup(notify_success_flag: bool, lookup: impl Fn(&str) -> Option<String>) -> Result<Notifier> {
        let mut channels = Vec::new();
        for (kind, variable) in [(ChannelKind::Slack, SLACK_WEBHOOK_URL), (ChannelKind::Webhook, ALERT_WEBHOOK_URL)] {
            if let Some(text) = lookup(variable).filter(|text| !text.trim().is_empty()) {
                channels.push((kind, SecretUrl::parse(variable, &text)?));
            }
        }
        let from_env = match lookup(NOTIFY_SUCCESS).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "false" | "0" | "no" | "off") => false,
            Some("true" | "1" | "yes" | "on") => true,
            Some(other) => return Err(Error::usage(format!("{NOTIFY_SUCCESS}={other:?} is not a boolean: use true or false"))),
        };
        let heartbeat = Heartbeat::from_lookup(&lookup)?;
        Ok(Notifier { channels, notify_success: notify_success_flag || from_env, policy: RetryPolicy::default(), heartbeat })
    }

    /// The configured channels.
    pub fn channels(&self) -> Vec<ChannelKind> {
        self.channels.iter().map(|(kind, _)| *kind).collect()
    }

    /// Whether successes are reported too.
    pub fn notifies_success(&self) -> bool {
        self.notify_success
    }

    /// Whether a heartbeat is configured.
    pub fn has_heartbeat(&self) -> bool {
        self.heartbeat.is_some()
    }

    /// Replaces the retry and timeout policy (of the alerts and the heartbeat).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Notifier {
        self.heartbeat = self.heartbeat.map(|h| h.with_policy(policy.clone()));
        self.policy = policy;
        self
    }

    /// Delivers `event` to every configured channel at once, retrying within the policy's
    /// deadline; a success is skipped unless successes are reported. A success also calls
    /// the heartbeat, at the same time. Never fails: each channel's result is logged (a
    /// failure as a warning) and returned.
    pub async fn send(&self, event: &Event) -> Vec<Delivery> {
        let heartbeat = async {
            match (&self.heartbeat, event.outcome) {
                (Some(heartbeat), Outcome::Succeeded) => {
                    let (attempts, result) = heartbeat.ping(event.operation.name(), event.backup.as_deref()).await;
                    Some(log(Delivery { channel: ChannelKind::Heartbeat, attempts, result }))
                }
                _ => None,
            }
        };
        let (heartbeat, mut deliveries) = futures::join!(heartbeat, self.send_alerts(event));
        deliveries.extend(heartbeat);
        deliveries
    }

    async fn send_alerts(&self, event: &Event) -> Vec<Delivery> {
        if self.channels.is_empty() || (event.outcome == Outcome::Succeeded && !self.notify_success) {
            return Vec::new();
        }
        let client = match delivery::client(&self.policy) {
            Ok(client) => client,
            Err(failure) => {
                return self
                    .channels
                    .iter()
                    .map(|(channel, _)| log(Delivery { channel: *channel, attempts: 0, result: Err(failure.clone()) }))
                    .collect()
            }
        };
        let sends = self.channels.iter().map(|(channel, url)| {
            let client = &client;
            let body = channel.body(event);
            async move {
                let (attempts, result) = delivery::post_json(client, url.as_str(), &body, &self.policy).await;
                log(Delivery { channel: *channel, attempts, result })
            }
        });
        futures::future::join_all(sends).await
    }
}

fn log(delivery: Delivery) -> Delivery {
    if delivery.channel == ChannelKind::Heartbeat {
        match &delivery.result {
            Ok(status) => info!(channel = %delivery.channel, status, attempts = delivery.attempts, "Heartbeat sent."),
            Err(failure) => warn!(
                channel = %delivery.channel,
                attempts = delivery.attempts,
                error = %failure,
                "Heartbeat not delivered; the run's own result is unaffected (the monitor will report the silence)."
            ),
        }
        return delivery;
    }
    match &delivery.result {
        Ok(status) => info!(channel = %delivery.channel, status, attempts = delivery.attempts, "Alert delivered."),
        Err(failure) => warn!(
            channel = %delivery.channel,
            attempts = delivery.attempts,
            error = %failure,
            "Alert not delivered; the run's own result is unaffected."
        ),
    }
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment lookup over `vars`, for the notify modules' tests.
    pub(super) fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn every_error_maps_to_a_stage() {
        let io = || std::io::Error::other("x");
        assert_eq!(failure_stage(&Error::usage("x")), "configuration");
        assert_eq!(failure_stage(&Error::io("x", "/p")(io())), "local disk");
        assert_eq!(failure_stage(&Error::Archive { context: "x".into(), source: io() }), "archive");
        assert_eq!(failure_stage(&Error::Store { message: "x".into(), retryable: true }), "store");
        assert_eq!(failure_stage(&Error::Damaged("x".into())), "damaged data");
        assert_eq!(failure_stage(&Error::Refused("x".into())), "refused");
        assert_eq!(failure_stage(&Error::Inconsistent("x".into())), "consistency");
        assert_eq!(failure_stage(&Error::Cancelled), "cancelled");
        let driver = mongodb::error::Error::custom("x");
        assert_eq!(failure_stage(&Error::mongo("x")(driver)), "reading from MongoDB");
    }

    #[test]
    fn failed_event_carries_stage_and_reason() {
        let event = Event::failed(Operation::Verify, "s3://b/p", &Error::Damaged("hash mismatch".into()));
        assert_eq!(event.outcome, Outcome::Failed);
        assert_eq!(event.stage.as_deref(), Some("damaged data"));
        assert_eq!(event.reason.as_deref(), Some("hash mismatch"));
        assert_eq!(event.headline(), "ingest-backup verify FAILED at stage damaged data (s3://b/p)");
    }

    #[test]
    fn failed_backup_reports_how_far_it_got() {
        let early = Event::backup_failed("/b", &Error::Cancelled, &ProgressSnapshot::default(), 1.5);
        assert_eq!((early.backup, early.counts, early.details.len()), (None, Counts::default(), 0));
        let progress =
            ProgressSnapshot { name: Some("2018-04-04T11_37".into()), namespaces_found: Some(7), namespaces_dumped: 3, documents: 120, bytes: 4096 };
        let late = Event::backup_failed("/b", &Error::Cancelled, &progress, 9.0);
        assert_eq!(late.backup.as_deref(), Some("2018-04-04T11_37"));
        assert_eq!((late.counts.namespaces, late.counts.documents), (Some(3), Some(120)));
        assert_eq!(late.duration_seconds, Some(9.0));
        assert!(late.details[0].starts_with("3 of 7 namespaces (120 documents)"), "{:?}", late.details);
    }

    #[test]
    fn unset_or_empty_urls_configure_nothing() {
        let notifier = Notifier::from_lookup(false, lookup(&[(SLACK_WEBHOOK_URL, "  ")])).unwrap();
        assert!(notifier.channels().is_empty());
        assert!(!notifier.notifies_success());
    }

    #[test]
    fn both_channels_and_success_from_env() {
        let vars = [
            (SLACK_WEBHOOK_URL, "https://hooks.slack.com/services/T0/B0/x"),
            (ALERT_WEBHOOK_URL, "http://127.0.0.1:9/hook"),
            (NOTIFY_SUCCESS, "TRUE"),
        ];
        let notifier = Notifier::from_lookup(false, lookup(&vars)).unwrap();
        assert_eq!(notifier.channels(), vec![ChannelKind::Slack, ChannelKind::Webhook]);
        assert!(notifier.notifies_success());
        assert!(!format!("{notifier:?}").contains("hooks.slack.com"), "Debug hides the URLs");
    }

    #[test]
    fn malformed_urls_are_usage_errors_that_hide_the_value() {
        for bad in ["hooks.slack.com/services/s3cret", "ftp://h/s3cret", "http://:80/s3cret", "http://[s3cret"] {
            let error = Notifier::from_lookup(false, lookup(&[(ALERT_WEBHOOK_URL, bad)])).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}");
            let message = error.to_string();
            assert!(message.contains(ALERT_WEBHOOK_URL), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        let error = Notifier::from_lookup(false, lookup(&[(NOTIFY_SUCCESS, "maybe")])).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
