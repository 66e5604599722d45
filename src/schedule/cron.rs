//! Cron expressions: parsed once at start (a bad one is a usage error before anything
//! runs), evaluated in UTC like the backup names and the Helm chart's `timeZone: Etc/UTC`.
//!
//! Parsing is croner's (Vixie-cron semantics: day-of-month OR day-of-week); this
//! module only fixes the accepted shapes (5 fields, or 6 with leading seconds, or an
//! `@daily`-style alias) and works out which ticks are due after a sleep.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::error::{Error, Result};

/// The default schedule: every day at midnight UTC, as the original ingest backup scripts' CronJob.
pub const DEFAULT_CRON: &str = "0 0 * * *";

/// A validated cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
}

impl CronSchedule {
    /// Parses `text`: 5 fields (minute hour day-of-month month day-of-week), 6 fields
    /// with a leading seconds field, or an alias such as `@daily`. Surrounding spaces
    /// are ignored (the original ingest backup scripts' `'0 0 * * * '`).
    ///
    /// # Errors
    /// A usage error naming the expression, saying what is wrong and giving a valid example.
    pub fn parse(text: &str) -> Result<CronSchedule> {
        let trimmed = text.trim();
        let invalid = |why: String| {
            Error::usage(format!(
                "--cron / CRON_SCHEDULE {text:?} is not a valid cron expression: {why}; \
                 give 5 fields (minute hour day-of-month month day-of-week), e.g. '0 0 * * *' for every day at midnight UTC, \
                 or 6 with leading seconds, e.g. '*/30 * * * * *'"
            ))
        };
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!("it has {fields} field(s)")));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(trimmed).map_err(|error| invalid(error.to_string()))?;
        // A pattern that can never fire (say, February 30th) is as wrong as a typo.
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).expect("the epoch is a valid time");
        if cron.find_next_occurrence(&epoch, false).is_err() {
            return Err(invalid("it never fires".to_string()));
        }
        Ok(CronSchedule { text: trimmed.to_string(), cron })
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after`, or `None` when there is none (a pattern
    /// that stops matching, which `parse` already rejects for the common cases).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    /// The ticks in `(last, now]`: the latest is due to fire, the earlier ones were
    /// missed (the process was asleep or the clock jumped). `missed` is exact up to
    /// `limit`; beyond it the walk stops and `missed` is a lower bound.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> Due {
        let mut due = Due::default();
        let mut cursor = last;
        while let Some(tick) = self.next_after(cursor).filter(|tick| *tick <= now) {
            if let Some(previous) = due.fire.replace(tick) {
                due.missed += 1;
                if due.first_missed.is_none() {
                    due.first_missed = Some(previous);
                }
            }
            cursor = tick;
            if due.missed as usize >= limit {
                // Jump ahead: only the latest tick fires, and the count stays exact
                // enough for a log line without walking years of seconds.
                if let Some(latest) = self.latest_at_or_before(now, cursor) {
                    if latest > tick {
                        due.missed += 1;
                        due.fire = Some(latest);
                    }
                }
                break;
            }
        }
        due
    }

    /// The latest tick in `(after, at]`.
    fn latest_at_or_before(&self, at: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tick = self.cron.find_previous_occurrence(&at, true).ok()?;
        (tick > after).then_some(tick)
    }
}

/// The ticks that passed since the last one handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// The tick to act on now (the latest one that passed).
    pub fire: Option<DateTime<Utc>>,
    /// Ticks that passed before it, unhandled.
    pub missed: u64,
    /// The first of them.
    pub first_missed: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_original_default_fires_at_midnight_utc() {
        let schedule = CronSchedule::parse(DEFAULT_CRON).unwrap();
        assert_eq!(schedule.next_after(at("2018-04-04T11:37:00Z")), Some(at("2018-04-05T00:00:00Z")));
        assert_eq!(schedule.next_after(at("2018-04-05T00:00:00Z")), Some(at("2018-04-06T00:00:00Z")), "strictly after");
    }

    #[test]
    fn the_original_trailing_space_is_accepted() {
        let schedule = CronSchedule::parse("0 0 * * * ").unwrap();
        assert_eq!(schedule.as_str(), "0 0 * * *");
        assert_eq!(schedule.next_after(at("2018-04-04T11:37:00Z")), Some(at("2018-04-05T00:00:00Z")));
    }

    #[test]
    fn six_fields_lead_with_seconds() {
        let schedule = CronSchedule::parse("*/4 * * * * *").unwrap();
        assert_eq!(schedule.next_after(at("2024-01-01T00:00:01Z")), Some(at("2024-01-01T00:00:04Z")));
        let five = CronSchedule::parse("*/5 * * * *").unwrap();
        assert_eq!(five.next_after(at("2024-01-01T00:00:01Z")), Some(at("2024-01-01T00:05:00Z")), "5 fields: minutes");
        assert!(CronSchedule::parse("@daily").is_ok());
    }

    #[test]
    fn malformed_expressions_are_usage_errors_with_an_example() {
        for bad in ["", "0 0 * *", "0 0 * * * * *", "61 * * * *", "0 25 * * *", "every day", "0 0 30 2 *"] {
            let error = CronSchedule::parse(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
            let message = error.to_string();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
            assert!(message.contains("'0 0 * * *'"), "{message}");
        }
    }

    #[test]
    fn due_fires_the_latest_tick_and_counts_the_missed_ones() {
        let schedule = CronSchedule::parse("0 * * * *").unwrap();
        let nothing = schedule.due(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:59:59Z"), 100);
        assert_eq!(nothing, Due::default());
        let one = schedule.due(at("2024-01-01T00:00:00Z"), at("2024-01-01T01:00:00Z"), 100);
        assert_eq!((one.fire, one.missed), (Some(at("2024-01-01T01:00:00Z")), 0));
        let slept = schedule.due(at("2024-01-01T00:00:00Z"), at("2024-01-01T03:30:00Z"), 100);
        assert_eq!(slept.fire, Some(at("2024-01-01T03:00:00Z")));
        assert_eq!((slept.missed, slept.first_missed), (2, Some(at("2024-01-01T01:00:00Z"))));
    }

    #[test]
    fn a_long_sleep_does_not_walk_every_tick() {
        let schedule = CronSchedule::parse("* * * * * *").unwrap();
        let due = schedule.due(at("2024-01-01T00:00:00Z"), at("2024-03-01T00:00:00Z"), 10);
        assert_eq!(due.fire, Some(at("2024-03-01T00:00:00Z")));
        assert_eq!(due.first_missed, Some(at("2024-01-01T00:00:01Z")));
        assert!(due.missed >= 10);
    }
}
