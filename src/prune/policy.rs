//! The retention policy of `ingest-backup prune`: which complete backups of a store to keep,
//! and which rules keep each one. Pure: no I/O, the current time is passed in.
//!
//! The rules, in the spirit of restic's `forget`:
//!
//! - **Trust.** A backup whose latest verification failed ([`Health::Failed`]) is not trusted for a
//!   restore: it never fills a `last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly` or `pitr` slot
//!   and never counts toward their N. Only `within` (and the newest-complete guarantee) keeps it. A bucket
//!   whose newest backup failed is therefore filled by the newest trusted backup in the same bucket.
//! - **`keep_last N`** keeps the N newest trusted backups.
//! - **`keep_hourly`/`daily`/`weekly`/`monthly`/`yearly N`** each walk the trusted backups newest to
//!   oldest and keep the first one seen in each new bucket until N buckets are used. Buckets are the local
//!   hour, day, ISO week (ISO year and week, Monday start), month and year of the backup's time in
//!   [`Policy::timezone`], read from the converted date and time: the hour skipped when clocks go forward
//!   has no backups, and the hour repeated when they go back is one bucket. Every rule is independent; one
//!   backup can be kept by several. N = 0 keeps nothing.
//! - **`keep_within D`** keeps every backup, failed ones included, whose time is at or after `now - D`.
//! - **Clock skew.** A backup whose time is after `now` is always kept, as `within`, even when
//!   `keep_within` is not given: its age cannot be judged.
//! - **`keep_pitr D`** keeps what a point-in-time restore to any moment of `[now - D, now]` needs: the
//!   newest trusted backup at or before `now - D` (the base) and every backup after it, failed ones
//!   too (the oplog slices after a backup chain from it). With no trusted backup at or before
//!   `now - D`, every backup is kept.
//! - **Guarantees.** Whatever the policy, as long as it is not empty, the newest backup (any health) is
//!   kept as `newest complete` and the newest one that passed verification as `newest verified`.
//! - **Empty policy.** [`Policy::is_empty`] (no `keep_*` at all) makes `prune` refuse; [`decide`] still
//!   answers, keeping nothing but clock-skewed backups, so the caller can show what would have gone.
//!
//! A duration too large to subtract from `now` reaches back to the earliest representable time.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// The `keep_*` options of `prune`; `None` means the rule was not given, `Some(0)` that it keeps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Keep the N newest trusted backups.
    pub keep_last: Option<u32>,
    /// Keep the newest trusted backup of each of the N newest local hours that have one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest trusted backup of each of the N newest local days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest trusted backup of each of the N newest ISO weeks (Monday start) that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest trusted backup of each of the N newest local months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest trusted backup of each of the N newest local years that have one.
    pub keep_yearly: Option<u32>,
    /// Keep every backup, failed ones too, taken at or after `now - D`.
    pub keep_within: Option<Duration>,
    /// Keep the base and the later trusted backups needed to restore to any time of the last D.
    pub keep_pitr: Option<Duration>,
    /// The zone in which hours, days, weeks, months and years are counted; UTC by default.
    pub timezone: Tz,
}

impl Default for Policy {
    /// An empty policy counted in UTC.
    fn default() -> Self {
        Policy {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            keep_within: None,
            keep_pitr: None,
            timezone: Tz::UTC,
        }
    }
}

impl Policy {
    /// True when no keep rule at all is given (`prune` must then refuse, exit 2).
    pub fn is_empty(&self) -> bool {
        let counts = [self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly];
        counts.iter().all(Option::is_none) && self.keep_within.is_none() && self.keep_pitr.is_none()
    }
}

/// The latest verification result of a complete backup ("passed with warnings" counts as passed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Its latest verification passed.
    Passed,
    /// It was never verified.
    NotVerified,
    /// Its latest verification failed: not trusted for a restore.
    Failed,
}

/// A complete backup of the store, as `prune` sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The backup's name in the store.
    pub name: String,
    /// When the backup was taken.
    pub time: DateTime<Utc>,
    /// Its latest verification result.
    pub health: Health,
}

impl Candidate {
    /// Whether the backup may fill a slot of a counting rule or of `pitr`.
    fn is_trusted(&self) -> bool {
        self.health != Health::Failed
    }
}

/// A reason to keep a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// One of the `keep_last` newest trusted backups.
    Last,
    /// The newest trusted backup of one of the `keep_hourly` newest hours.
    Hourly,
    /// The newest trusted backup of one of the `keep_daily` newest days.
    Daily,
    /// The newest trusted backup of one of the `keep_weekly` newest ISO weeks.
    Weekly,
    /// The newest trusted backup of one of the `keep_monthly` newest months.
    Monthly,
    /// The newest trusted backup of one of the `keep_yearly` newest years.
    Yearly,
    /// Taken within `keep_within` of now, or after now (clock skew).
    Within,
    /// Needed to restore to any time of the `keep_pitr` window.
    Pitr,
    /// The newest complete backup, kept by any non-empty policy.
    NewestComplete,
    /// The newest backup that passed verification, kept by any non-empty policy.
    NewestVerified,
}

impl Rule {
    /// Every rule, in the order a [`Decision`] lists them.
    const ALL: [Rule; 10] = [
        Rule::Last,
        Rule::Hourly,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Yearly,
        Rule::Within,
        Rule::Pitr,
        Rule::NewestComplete,
        Rule::NewestVerified,
    ];

    /// The rule's name for people: "last", "hourly", ..., "newest complete", "newest verified".
    pub fn label(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::Within => "within",
            Rule::Pitr => "pitr",
            Rule::NewestComplete => "newest complete",
            Rule::NewestVerified => "newest verified",
        }
    }
}

/// What the policy does with one backup.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// The backup's name.
    pub name: String,
    /// Whether it is kept.
    pub keep: bool,
    /// The rules that keep it, in [`Rule`] order; empty when it is removed.
    pub rules: Vec<Rule>,
}

/// Decides keep or remove for every candidate, newest first (by time, then name, descending).
pub fn decide(candidates: &[Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<Decision> {
    let sorted = newest_first(candidates);
    let mut rules = vec![Vec::new(); sorted.len()];
    for rule in Rule::ALL {
        for (kept_by, selected) in rules.iter_mut().zip(selected_by(rule, &sorted, policy, now)) {
            if selected {
                kept_by.push(rule);
            }
        }
    }
    sorted.into_iter().zip(rules).map(|(candidate, rules)| Decision { name: candidate.name.clone(), keep: !rules.is_empty(), rules }).collect()
}

/// The candidates by time, then name, newest first.
fn newest_first(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    sorted
}

/// For each of the sorted candidates, whether `rule` keeps it.
fn selected_by(rule: Rule, sorted: &[&Candidate], policy: &Policy, now: DateTime<Utc>) -> Vec<bool> {
    let guaranteed = !policy.is_empty();
    let calendar = |count: Option<u32>, period: Period| count.map(|n| newest_per_bucket(sorted, n, period, policy.timezone));
    let selection = match rule {
        Rule::Last => policy.keep_last.map(|n| newest_trusted(sorted, n)),
        Rule::Hourly => calendar(policy.keep_hourly, Period::Hour),
        Rule::Daily => calendar(policy.keep_daily, Period::Day),
        Rule::Weekly => calendar(policy.keep_weekly, Period::Week),
        Rule::Monthly => calendar(policy.keep_monthly, Period::Month),
        Rule::Yearly => calendar(policy.keep_yearly, Period::Year),
        Rule::Within => Some(within(sorted, policy.keep_within, now)),
        Rule::Pitr => policy.keep_pitr.map(|window| pitr_chain(sorted, window_start(now, window))),
        Rule::NewestComplete => guaranteed.then(|| first_where(sorted, |_| true)),
        Rule::NewestVerified => guaranteed.then(|| first_where(sorted, |c| c.health == Health::Passed)),
    };
    selection.unwrap_or_else(|| vec![false; sorted.len()])
}

/// `now - window`, or the earliest representable time when that does not fit.
fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The `n` newest trusted candidates.
fn newest_trusted(sorted: &[&Candidate], n: u32) -> Vec<bool> {
    let mut taken = 0;
    sorted
        .iter()
        .map(|candidate| {
            let keep = candidate.is_trusted() && taken < n;
            taken += u32::from(keep);
            keep
        })
        .collect()
}

/// The calendar periods of the counting rules.
#[derive(Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// Which bucket of this period a local time falls in; equal keys mean the same bucket.
    fn bucket(self, local: DateTime<Tz>) -> (i32, u32, u32) {
        match self {
            Period::Hour => (local.year(), local.ordinal(), local.hour()),
            Period::Day => (local.year(), local.ordinal(), 0),
            Period::Week => (local.iso_week().year(), local.iso_week().week(), 0),
            Period::Month => (local.year(), local.month(), 0),
            Period::Year => (local.year(), 0, 0),
        }
    }
}

/// Restic's bucket walk: newest to oldest, the first trusted candidate of each new bucket, until `n` buckets are used.
fn newest_per_bucket(sorted: &[&Candidate], n: u32, period: Period, timezone: Tz) -> Vec<bool> {
    let limit = n as usize;
    let mut used = HashSet::new();
    sorted
        .iter()
        .map(|candidate| candidate.is_trusted() && used.len() < limit && used.insert(period.bucket(candidate.time.with_timezone(&timezone))))
        .collect()
}

/// Every candidate after `now` (clock skew), and with `keep_within`, every one at or after `now - within`.
fn within(sorted: &[&Candidate], keep_within: Option<Duration>, now: DateTime<Utc>) -> Vec<bool> {
    let start = keep_within.map(|window| window_start(now, window));
    sorted.iter().map(|candidate| candidate.time > now || start.is_some_and(|start| candidate.time >= start)).collect()
}

/// The newest trusted candidate at or before `start` (the restore base) and every one
/// after it, whatever its verification: the oplog slices after a backup chain from it,
/// so removing a failed one would cut the window.
fn pitr_chain(sorted: &[&Candidate], start: DateTime<Utc>) -> Vec<bool> {
    let mut base_found = false;
    sorted
        .iter()
        .map(|candidate| {
            if base_found {
                return false;
            }
            base_found = candidate.time <= start && candidate.is_trusted();
            true
        })
        .collect()
}

/// Only the first sorted candidate for which `wanted` holds.
fn first_where(sorted: &[&Candidate], wanted: impl Fn(&Candidate) -> bool) -> Vec<bool> {
    let first = sorted.iter().position(|candidate| wanted(candidate));
    (0..sorted.len()).map(|index| Some(index) == first).collect()
}

/// How long the policy keeps backups, for Object Lock: the first lock of a new backup
/// and the end of the tier slot a kept backup fills.
impl Policy {
    /// The shortest time this policy is sure to keep a new backup, the lock it is written
    /// with: `keep_within`, else the shortest of the `keep_hourly` (N hours), `keep_daily`
    /// (N days) and `keep_last` (N times `interval`, the time between backups, when known)
    /// windows. `None` when no rule says anything about time.
    pub fn first_lock_window(&self, interval: Option<Duration>) -> Option<Duration> {
        if let Some(within) = self.keep_within {
            return Some(within);
        }
        let windows = [
            self.keep_hourly.map(|n| Duration::hours(i64::from(n))),
            self.keep_daily.map(|n| Duration::days(i64::from(n))),
            self.keep_last.zip(interval).map(|(n, every)| every * n as i32),
        ];
        windows.into_iter().flatten().filter(|window| *window > Duration::zero()).min()
    }

    /// The longest this policy keeps any backup (a month counted as 31 days, a year as
    /// 366), or `None` when only `keep_last` is given and the time between backups is unknown.
    pub fn longest_keep(&self, interval: Option<Duration>) -> Option<Duration> {
        let days = |count: Option<u32>, per: i64| count.map(|n| Duration::days(i64::from(n) * per));
        [
            self.keep_within,
            self.keep_pitr,
            self.keep_hourly.map(|n| Duration::hours(i64::from(n))),
            days(self.keep_daily, 1),
            days(self.keep_weekly, 7),
            days(self.keep_monthly, 31),
            days(self.keep_yearly, 366),
            self.keep_last.zip(interval).map(|(n, every)| every * n as i32),
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// For each kept backup, the end of the longest tier slot it fills that is already known
/// at `now`: a calendar rule's slot of a finished hour, day, week, month or year lasts
/// until N periods after that period began (then N newer periods exist, at the earliest);
/// `within` keeps a backup until its time plus the window. A slot of the period still
/// running is not counted (a newer backup of the same period may take it), nor
/// `last`, `pitr` or the guarantees (they end when newer backups come, not at a time).
pub fn slot_ends(
    candidates: &[Candidate],
    decisions: &[Decision],
    policy: &Policy,
    now: DateTime<Utc>,
) -> std::collections::HashMap<String, DateTime<Utc>> {
    let mut ends = std::collections::HashMap::new();
    for decision in decisions.iter().filter(|d| d.keep) {
        let Some(candidate) = candidates.iter().find(|c| c.name == decision.name) else { continue };
        let end = decision
            .rules
            .iter()
            .filter_map(|rule| {
                let calendar = |count: Option<u32>, period: Period| count.and_then(|n| period.slot_end(candidate.time, n, policy.timezone, now));
                match rule {
                    Rule::Hourly => calendar(policy.keep_hourly, Period::Hour),
                    Rule::Daily => calendar(policy.keep_daily, Period::Day),
                    Rule::Weekly => calendar(policy.keep_weekly, Period::Week),
                    Rule::Monthly => calendar(policy.keep_monthly, Period::Month),
                    Rule::Yearly => calendar(policy.keep_yearly, Period::Year),
                    Rule::Within => policy.keep_within.and_then(|window| candidate.time.checked_add_signed(window)),
                    _ => None,
                }
            })
            .max();
        if let Some(end) = end {
            ends.insert(decision.name.clone(), end);
        }
    }
    ends
}

impl Period {
    /// When the local period holding `time` began.
    fn start(self, time: DateTime<Utc>, timezone: Tz) -> Option<DateTime<Utc>> {
        use chrono::{NaiveDate, TimeZone};
        let local = time.with_timezone(&timezone);
        let midnight = |date: NaiveDate| timezone.from_local_datetime(&date.and_hms_opt(0, 0, 0)?).earliest().map(|t| t.with_timezone(&Utc));
        match self {
            Period::Hour => time.with_minute(0)?.with_second(0)?.with_nanosecond(0),
            Period::Day => midnight(local.date_naive()),
            Period::Week => midnight(local.date_naive() - Duration::days(i64::from(local.weekday().num_days_from_monday()))),
            Period::Month => midnight(local.date_naive().with_day(1)?),
            Period::Year => midnight(NaiveDate::from_ymd_opt(local.year(), 1, 1)?),
        }
    }

    /// `count` periods after `start`, in local time for days and longer.
    fn after(self, start: DateTime<Utc>, count: u32, timezone: Tz) -> Option<DateTime<Utc>> {
        use chrono::{Months, TimeZone};
        let local = start.with_timezone(&timezone).naive_local();
        let shifted = match self {
            Period::Hour => return start.checked_add_signed(Duration::hours(i64::from(count))),
            Period::Day => local.checked_add_signed(Duration::days(i64::from(count)))?,
            Period::Week => local.checked_add_signed(Duration::weeks(i64::from(count)))?,
            Period::Month => local.checked_add_months(Months::new(count))?,
            Period::Year => local.checked_add_months(Months::new(count.checked_mul(12)?))?,
        };
        timezone.from_local_datetime(&shifted).earliest().map(|t| t.with_timezone(&Utc))
    }

    /// The end of the slot of a backup taken at `time` kept by a rule of `count`
    /// periods, once its period has ended at `now`.
    fn slot_end(self, time: DateTime<Utc>, count: u32, timezone: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.start(time, timezone)?;
        let finished = self.after(start, 1, timezone)? <= now;
        if finished {
            self.after(start, count, timezone)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono_tz::{America::New_York, Europe::Berlin};

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// Backup names are their UTC time, `YYYYMMDDTHHMMZ`.
    fn name_of(time: DateTime<Utc>) -> String {
        time.format("%Y%m%dT%H%MZ").to_string()
    }

    fn candidate(time: DateTime<Utc>, health: Health) -> Candidate {
        Candidate { name: name_of(time), time, health }
    }

    fn named(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn kept(decisions: &[Decision]) -> BTreeSet<String> {
        decisions.iter().filter(|d| d.keep).map(|d| d.name.clone()).collect()
    }

    fn kept_by(decisions: &[Decision], rule: Rule) -> BTreeSet<String> {
        decisions.iter().filter(|d| d.rules.contains(&rule)).map(|d| d.name.clone()).collect()
    }

    fn rules_of(decisions: &[Decision], name: &str) -> Vec<Rule> {
        decisions.iter().find(|d| d.name == name).unwrap().rules.clone()
    }

    /// A reference written differently: group the trusted candidates by a strftime label of their local time,
    /// newest per label, and take the `n` greatest labels.
    fn reference(candidates: &[Candidate], n: usize, label: &str, timezone: Tz) -> BTreeSet<String> {
        let mut newest: BTreeMap<String, &Candidate> = BTreeMap::new();
        for candidate in candidates.iter().filter(|c| c.health != Health::Failed) {
            let key = candidate.time.with_timezone(&timezone).format(label).to_string();
            let slot = newest.entry(key).or_insert(candidate);
            if candidate.time > slot.time {
                *slot = candidate;
            }
        }
        newest.values().rev().take(n).map(|c| c.name.clone()).collect()
    }

    const HOUR: &str = "%Y-%m-%dT%H";
    const DAY: &str = "%Y-%m-%d";
    const WEEK: &str = "%G-W%V";
    const MONTH: &str = "%Y-%m";
    const YEAR: &str = "%Y";

    fn nightly_now() -> DateTime<Utc> {
        at("2026-12-01T06:00:00Z")
    }

    fn in_nightly_gap(day: &str) -> bool {
        let gaps = [
            ("2026-11-27", "2026-11-28"), // two days inside the daily window
            ("2026-11-09", "2026-11-15"), // all of ISO week 2026-W46
            ("2026-07-01", "2026-07-31"), // all of July
            ("2026-05-29", "2026-06-03"), // across a month boundary
            ("2026-01-10", "2026-01-20"),
        ];
        gaps.iter().any(|(first, last)| (*first..=*last).contains(&day))
    }

    fn nightly_health(day: &str) -> Health {
        match day {
            // 11-29 is its week's newest; 10-31 and 2025-12-31 are their month's (and year's) newest.
            "2026-11-29" | "2026-10-31" | "2025-12-31" | "2026-03-15" | "2025-11-02" => Health::Failed,
            _ if day < "2026-11-01" => Health::Passed,
            _ => Health::NotVerified,
        }
    }

    /// 400 nights at 00:00 UTC up to the night of `nightly_now`, with gaps and failed verifications, oldest first.
    fn nightly_history() -> Vec<Candidate> {
        let last = at("2026-12-01T00:00:00Z");
        let mut history: Vec<Candidate> = (0..400)
            .map(|days_back| last - Duration::days(days_back))
            .map(|time| (time, time.format(DAY).to_string()))
            .filter(|(_, day)| !in_nightly_gap(day))
            .map(|(time, day)| candidate(time, nightly_health(&day)))
            .collect();
        history.reverse();
        history
    }

    fn nightly(day: &str) -> String {
        format!("{}T0000Z", day.replace('-', ""))
    }

    fn nightlies(days: &[&str]) -> BTreeSet<String> {
        days.iter().map(|day| nightly(day)).collect()
    }

    #[test]
    fn nightly_history_keeps_exact_restic_buckets() {
        let history = nightly_history();
        assert_eq!(history.first().unwrap().name, "20251028T0000Z");
        let policy = Policy { keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(12), keep_yearly: Some(3), ..Policy::default() };
        let decisions = decide(&history, &policy, nightly_now());
        assert_eq!(decisions.len(), history.len());

        let daily = nightlies(&["2026-12-01", "2026-11-30", "2026-11-26", "2026-11-25", "2026-11-24", "2026-11-23", "2026-11-22"]);
        let weekly = nightlies(&["2026-12-01", "2026-11-26", "2026-11-22", "2026-11-08"]);
        let monthly = nightlies(&[
            "2026-12-01",
            "2026-11-30",
            "2026-10-30",
            "2026-09-30",
            "2026-08-31",
            "2026-06-30",
            "2026-05-28",
            "2026-04-30",
            "2026-03-31",
            "2026-02-28",
            "2026-01-31",
            "2025-12-30",
        ]);
        let yearly = nightlies(&["2026-12-01", "2025-12-30"]);
        assert_eq!(kept_by(&decisions, Rule::Daily), daily);
        assert_eq!(kept_by(&decisions, Rule::Weekly), weekly);
        assert_eq!(kept_by(&decisions, Rule::Monthly), monthly);
        assert_eq!(kept_by(&decisions, Rule::Yearly), yearly);
        assert_eq!(kept_by(&decisions, Rule::NewestComplete), nightlies(&["2026-12-01"]));
        assert_eq!(kept_by(&decisions, Rule::NewestVerified), nightlies(&["2026-10-30"]));

        assert_eq!(kept_by(&decisions, Rule::Daily), reference(&history, 7, DAY, Tz::UTC));
        assert_eq!(kept_by(&decisions, Rule::Weekly), reference(&history, 4, WEEK, Tz::UTC));
        assert_eq!(kept_by(&decisions, Rule::Monthly), reference(&history, 12, MONTH, Tz::UTC));
        assert_eq!(kept_by(&decisions, Rule::Yearly), reference(&history, 3, YEAR, Tz::UTC));

        let all: BTreeSet<String> = [daily, weekly, monthly, yearly].into_iter().flatten().collect();
        assert_eq!(all.len(), 18);
        assert_eq!(kept(&decisions), all);
        assert!(decisions.iter().all(|d| d.keep != d.rules.is_empty()));

        assert_eq!(rules_of(&decisions, "20261201T0000Z"), vec![Rule::Daily, Rule::Weekly, Rule::Monthly, Rule::Yearly, Rule::NewestComplete]);
        assert_eq!(rules_of(&decisions, "20261030T0000Z"), vec![Rule::Monthly, Rule::NewestVerified]);
        assert_eq!(rules_of(&decisions, "20261031T0000Z"), vec![]);
        assert_eq!(rules_of(&decisions, "20251231T0000Z"), vec![]);
    }

    #[test]
    fn weekly_buckets_are_iso_weeks_across_the_year_boundary() {
        let history = nightly_history();
        let policy = Policy { keep_weekly: Some(100), ..Policy::default() };
        let weekly = kept_by(&decide(&history, &policy, nightly_now()), Rule::Weekly);
        assert_eq!(weekly, reference(&history, 100, WEEK, Tz::UTC));
        // 2025-12-29 (Mon) to 2026-01-04 (Sun) is 2026-W01; 2025-12-28 ends 2025-W52.
        assert!(weekly.contains(&nightly("2026-01-04")));
        assert!(weekly.contains(&nightly("2025-12-28")));
        assert!(!weekly.contains(&nightly("2025-12-30")));
        // 2025-11-02 (Sun) failed, so its week 2025-W44 goes to Saturday; W46 2026 has no backup at all.
        assert!(weekly.contains(&nightly("2025-11-01")));
        assert!(!weekly.contains(&nightly("2025-11-02")));
        // 2025-W44..W52 and 2026-W01..W49, less the weeks wholly in a gap: 2026-W03, W28, W29, W30 and W46.
        assert_eq!(weekly.len(), 9 + 49 - 5);
    }

    #[test]
    fn keep_last_counts_only_trusted_backups() {
        let history = nightly_history();
        let policy = Policy { keep_last: Some(3), ..Policy::default() };
        let decisions = decide(&history, &policy, nightly_now());
        assert_eq!(kept_by(&decisions, Rule::Last), nightlies(&["2026-12-01", "2026-11-30", "2026-11-26"]));
        assert_eq!(kept(&decisions), nightlies(&["2026-12-01", "2026-11-30", "2026-11-26", "2026-10-30"]));
    }

    #[test]
    fn zero_counts_keep_nothing_by_their_rule() {
        let history = nightly_history();
        let policy = Policy { keep_daily: Some(0), keep_monthly: Some(0), ..Policy::default() };
        assert!(!policy.is_empty());
        let decisions = decide(&history, &policy, nightly_now());
        assert!(kept_by(&decisions, Rule::Daily).is_empty());
        assert!(kept_by(&decisions, Rule::Monthly).is_empty());
        assert_eq!(kept(&decisions), nightlies(&["2026-12-01", "2026-10-30"]));
    }

    /// Hourly backups at :00 UTC from `first` to `last` inclusive, oldest first.
    fn hourly(first: &str, last: &str, failed: &[&str]) -> Vec<Candidate> {
        let (first, last) = (at(first), at(last));
        let failed: Vec<DateTime<Utc>> = failed.iter().map(|time| at(time)).collect();
        let hours = (last - first).num_hours();
        (0..=hours)
            .map(|hour| first + Duration::hours(hour))
            .map(|time| candidate(time, if failed.contains(&time) { Health::Failed } else { Health::NotVerified }))
            .collect()
    }

    fn names(times: &[&str]) -> BTreeSet<String> {
        times.iter().map(|time| name_of(at(time))).collect()
    }

    #[test]
    fn hourly_backups_keep_24_hours_and_7_days() {
        let history = hourly("2026-11-25T00:00:00Z", "2026-12-01T05:00:00Z", &["2026-11-30T23:00:00Z", "2026-11-28T12:00:00Z"]);
        let policy = Policy { keep_hourly: Some(24), keep_daily: Some(7), ..Policy::default() };
        let decisions = decide(&history, &policy, at("2026-12-01T06:00:00Z"));

        let hourly_kept = kept_by(&decisions, Rule::Hourly);
        assert_eq!(hourly_kept.len(), 24);
        assert!(hourly_kept.contains("20261201T0500Z"));
        assert!(hourly_kept.contains("20261130T0500Z"));
        assert!(!hourly_kept.contains("20261130T2300Z"));
        assert!(!hourly_kept.contains("20261130T0400Z"));
        assert_eq!(hourly_kept, reference(&history, 24, HOUR, Tz::UTC));

        let daily = names(&[
            "2026-12-01T05:00:00Z",
            "2026-11-30T22:00:00Z",
            "2026-11-29T23:00:00Z",
            "2026-11-28T23:00:00Z",
            "2026-11-27T23:00:00Z",
            "2026-11-26T23:00:00Z",
            "2026-11-25T23:00:00Z",
        ]);
        assert_eq!(kept_by(&decisions, Rule::Daily), daily);
        assert_eq!(kept_by(&decisions, Rule::Daily), reference(&history, 7, DAY, Tz::UTC));
        // 2026-11-30T22:00Z is also an hourly keep; the union has one backup fewer than the sum.
        assert_eq!(kept(&decisions).len(), 24 + 7 - 2);
    }

    /// The same instants around a month boundary, all not verified.
    fn month_boundary() -> Vec<Candidate> {
        ["2026-01-30T12:00:00Z", "2026-01-31T12:00:00Z", "2026-01-31T23:30:00Z", "2026-02-01T03:00:00Z", "2026-02-01T12:00:00Z"]
            .iter()
            .map(|time| candidate(at(time), Health::NotVerified))
            .collect()
    }

    fn kept_in(candidates: &[Candidate], policy: Policy, timezone: Tz, rule: Rule) -> BTreeSet<String> {
        kept_by(&decide(candidates, &Policy { timezone, ..policy }, at("2026-02-02T00:00:00Z")), rule)
    }

    #[test]
    fn days_and_months_are_counted_in_the_policy_timezone() {
        let history = month_boundary();
        let monthly = Policy { keep_monthly: Some(2), ..Policy::default() };
        // 23:30Z on Jan 31 is Feb 1 00:30 in Berlin; 03:00Z on Feb 1 is still Jan 31 22:00 in New York.
        assert_eq!(kept_in(&history, monthly, Tz::UTC, Rule::Monthly), names(&["2026-02-01T12:00:00Z", "2026-01-31T23:30:00Z"]));
        assert_eq!(kept_in(&history, monthly, Berlin, Rule::Monthly), names(&["2026-02-01T12:00:00Z", "2026-01-31T12:00:00Z"]));
        assert_eq!(kept_in(&history, monthly, New_York, Rule::Monthly), names(&["2026-02-01T12:00:00Z", "2026-02-01T03:00:00Z"]));

        let daily = Policy { keep_daily: Some(3), ..Policy::default() };
        let utc = names(&["2026-02-01T12:00:00Z", "2026-01-31T23:30:00Z", "2026-01-30T12:00:00Z"]);
        let berlin = names(&["2026-02-01T12:00:00Z", "2026-01-31T12:00:00Z", "2026-01-30T12:00:00Z"]);
        let new_york = names(&["2026-02-01T12:00:00Z", "2026-02-01T03:00:00Z", "2026-01-30T12:00:00Z"]);
        assert_eq!(kept_in(&history, daily, Tz::UTC, Rule::Daily), utc);
        assert_eq!(kept_in(&history, daily, Berlin, Rule::Daily), berlin);
        assert_eq!(kept_in(&history, daily, New_York, Rule::Daily), new_york);
        for timezone in [Tz::UTC, Berlin, New_York] {
            assert_eq!(kept_in(&history, daily, timezone, Rule::Daily), reference(&history, 3, DAY, timezone));
            assert_eq!(kept_in(&history, monthly, timezone, Rule::Monthly), reference(&history, 2, MONTH, timezone));
        }
    }

    #[test]
    fn nightly_utc_backups_fall_on_the_previous_day_in_new_york() {
        let history = nightly_history();
        let policy = Policy { keep_monthly: Some(3), ..Policy::default() };
        // 00:00Z is 19:00 or 20:00 the evening before in New York, so each local month ends with the 1st's backup.
        assert_eq!(kept_in(&history, policy, Tz::UTC, Rule::Monthly), nightlies(&["2026-12-01", "2026-11-30", "2026-10-30"]));
        assert_eq!(kept_in(&history, policy, New_York, Rule::Monthly), nightlies(&["2026-12-01", "2026-11-01", "2026-10-01"]));
        assert_eq!(kept_in(&history, policy, Berlin, Rule::Monthly), nightlies(&["2026-12-01", "2026-11-30", "2026-10-30"]));
    }

    #[test]
    fn berlin_spring_forward_day_has_23_hours() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z.
        let history = hourly("2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z", &[]);
        let policy = Policy { keep_hourly: Some(24), keep_daily: Some(3), timezone: Berlin, ..Policy::default() };
        let decisions = decide(&history, &policy, at("2026-03-30T01:00:00Z"));
        let hourly_kept = kept_by(&decisions, Rule::Hourly);
        assert_eq!(hourly_kept.len(), 24);
        assert!(hourly_kept.contains("20260329T0100Z") && !hourly_kept.contains("20260329T0000Z"));
        assert_eq!(hourly_kept, reference(&history, 24, HOUR, Berlin));
        // The local day of Mar 28 ends at 23:00Z (CET), that of Mar 29 at 22:00Z (CEST).
        assert_eq!(kept_by(&decisions, Rule::Daily), names(&["2026-03-30T00:00:00Z", "2026-03-29T21:00:00Z", "2026-03-28T22:00:00Z"]));
        assert_eq!(kept_in(&history, policy, Tz::UTC, Rule::Daily), names(&["2026-03-30T00:00:00Z", "2026-03-29T23:00:00Z", "2026-03-28T23:00:00Z"]));
        let local_march_29 = history.iter().filter(|c| c.time.with_timezone(&Berlin).format(DAY).to_string() == "2026-03-29").count();
        assert_eq!(local_march_29, 23);
    }

    #[test]
    fn new_york_spring_forward_day() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z.
        let history = hourly("2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z", &[]);
        let policy = Policy { keep_hourly: Some(24), keep_daily: Some(3), timezone: New_York, ..Policy::default() };
        let decisions = decide(&history, &policy, at("2026-03-09T13:00:00Z"));
        assert_eq!(kept_by(&decisions, Rule::Hourly), reference(&history, 24, HOUR, New_York));
        assert_eq!(kept_by(&decisions, Rule::Hourly).len(), 24);
        // Mar 7 ends at 05:00Z on Mar 8 (EST), Mar 8 ends at 04:00Z on Mar 9 (EDT).
        assert_eq!(kept_by(&decisions, Rule::Daily), names(&["2026-03-09T12:00:00Z", "2026-03-09T03:00:00Z", "2026-03-08T04:00:00Z"]));
    }

    #[test]
    fn berlin_fall_back_repeated_hour_is_one_bucket() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z, so 00:00Z to 02:00Z is local hour 2 twice.
        let history: Vec<Candidate> = (0..=10)
            .map(|half_hours| at("2026-10-24T22:00:00Z") + Duration::minutes(30 * half_hours))
            .map(|time| candidate(time, Health::Passed))
            .collect();
        let policy = Policy { keep_hourly: Some(4), timezone: Berlin, ..Policy::default() };
        let now = at("2026-10-25T04:00:00Z");
        let berlin = kept_by(&decide(&history, &policy, now), Rule::Hourly);
        assert_eq!(berlin, names(&["2026-10-25T03:00:00Z", "2026-10-25T02:30:00Z", "2026-10-25T01:30:00Z", "2026-10-24T23:30:00Z"]));
        assert_eq!(berlin, reference(&history, 4, HOUR, Berlin));
        let utc = kept_in(&history, policy, Tz::UTC, Rule::Hourly);
        assert_eq!(utc, names(&["2026-10-25T03:00:00Z", "2026-10-25T02:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T00:30:00Z"]));
    }

    #[test]
    fn newest_complete_is_kept_even_when_failed_and_keep_last_is_zero() {
        let history = vec![
            candidate(at("2026-11-30T00:00:00Z"), Health::Failed),
            candidate(at("2026-11-29T00:00:00Z"), Health::NotVerified),
            candidate(at("2026-11-28T00:00:00Z"), Health::Passed),
            candidate(at("2026-11-27T00:00:00Z"), Health::Passed),
        ];
        let policy = Policy { keep_last: Some(0), ..Policy::default() };
        let decisions = decide(&history, &policy, nightly_now());
        assert_eq!(rules_of(&decisions, "20261130T0000Z"), vec![Rule::NewestComplete]);
        assert_eq!(rules_of(&decisions, "20261128T0000Z"), vec![Rule::NewestVerified]);
        assert_eq!(kept(&decisions), names(&["2026-11-30T00:00:00Z", "2026-11-28T00:00:00Z"]));
    }

    #[test]
    fn newest_passed_is_kept_however_old() {
        let mut history = hourly("2026-11-01T00:00:00Z", "2026-11-30T00:00:00Z", &[]);
        history.push(candidate(at("2024-01-01T00:00:00Z"), Health::Passed));
        history.push(candidate(at("2023-01-01T00:00:00Z"), Health::Passed));
        let policy = Policy { keep_last: Some(2), ..Policy::default() };
        let decisions = decide(&history, &policy, nightly_now());
        assert_eq!(rules_of(&decisions, "20240101T0000Z"), vec![Rule::NewestVerified]);
        assert_eq!(rules_of(&decisions, "20261130T0000Z"), vec![Rule::Last, Rule::NewestComplete]);
        assert_eq!(kept(&decisions), names(&["2026-11-30T00:00:00Z", "2026-11-29T23:00:00Z", "2024-01-01T00:00:00Z"]));
    }

    #[test]
    fn within_keeps_failed_backups_and_its_boundary() {
        let now = nightly_now();
        let history = vec![
            candidate(now - Duration::hours(1), Health::Passed),
            candidate(now - Duration::hours(30), Health::Failed),
            candidate(now - Duration::hours(48), Health::Failed),
            candidate(now - Duration::hours(48) - Duration::seconds(1), Health::Failed),
            candidate(now - Duration::hours(72), Health::NotVerified),
        ];
        let policy = Policy { keep_within: Some(Duration::days(2)), ..Policy::default() };
        let decisions = decide(&history, &policy, now);
        let within = names(&["2026-12-01T05:00:00Z", "2026-11-30T00:00:00Z", "2026-11-29T06:00:00Z"]);
        assert_eq!(kept_by(&decisions, Rule::Within), within);
        assert_eq!(kept(&decisions), within);
        assert_eq!(rules_of(&decisions, "20261130T0000Z"), vec![Rule::Within]);
        assert_eq!(rules_of(&decisions, "20261201T0500Z"), vec![Rule::Within, Rule::NewestComplete, Rule::NewestVerified]);
    }

    #[test]
    fn failed_backups_fill_no_slot_outside_within() {
        let now = nightly_now();
        let history = vec![candidate(now - Duration::days(10), Health::Failed), candidate(now - Duration::days(11), Health::NotVerified)];
        let policy = Policy { keep_last: Some(5), keep_daily: Some(5), keep_pitr: Some(Duration::days(30)), ..Policy::default() };
        let decisions = decide(&history, &policy, now);
        // No count slot; kept by the point-in-time window (slices chain from it).
        assert_eq!(rules_of(&decisions, "20261121T0600Z"), vec![Rule::Pitr, Rule::NewestComplete]);
        assert_eq!(rules_of(&decisions, "20261120T0600Z"), vec![Rule::Last, Rule::Daily, Rule::Pitr]);
    }

    #[test]
    fn pitr_keeps_the_newest_trusted_base_and_everything_after_it() {
        let now = nightly_now();
        let days_ago = |days: i64, health| candidate(now - Duration::days(days), health);
        let history = vec![
            days_ago(6, Health::Passed),
            days_ago(5, Health::NotVerified),
            days_ago(3, Health::Failed),
            days_ago(2, Health::Passed),
            days_ago(1, Health::Failed),
            days_ago(0, Health::NotVerified),
        ];
        let pitr = |days: i64| {
            let policy = Policy { keep_pitr: Some(Duration::days(days)), ..Policy::default() };
            kept_by(&decide(&history, &policy, now), Rule::Pitr)
        };
        // Window start 4 days ago: the failed backup 3 days ago is not a base, 5 days ago
        // is; the failed ones inside the window are kept (later slices chain from them).
        let window_4 =
            names(&["2026-11-26T06:00:00Z", "2026-11-28T06:00:00Z", "2026-11-29T06:00:00Z", "2026-11-30T06:00:00Z", "2026-12-01T06:00:00Z"]);
        assert_eq!(pitr(4), window_4);
        // A backup exactly at the window start is the base.
        assert_eq!(pitr(5), window_4);
        // Window start 3 days ago: its backup failed, so the base is 5 days ago still.
        assert_eq!(pitr(3), window_4);
        assert_eq!(pitr(2), names(&["2026-11-29T06:00:00Z", "2026-11-30T06:00:00Z", "2026-12-01T06:00:00Z"]));
        // Nothing trusted at or before the window start: every backup.
        let all = names(&[
            "2026-11-25T06:00:00Z",
            "2026-11-26T06:00:00Z",
            "2026-11-28T06:00:00Z",
            "2026-11-29T06:00:00Z",
            "2026-11-30T06:00:00Z",
            "2026-12-01T06:00:00Z",
        ]);
        assert_eq!(pitr(30), all);
        // A window reaching before the earliest representable time does not overflow.
        assert_eq!(pitr(i64::MAX / 86_400_000), all);
    }

    #[test]
    fn future_dated_backups_are_kept_as_within() {
        let now = nightly_now();
        let history = vec![
            candidate(now + Duration::hours(2), Health::Failed),
            candidate(now + Duration::minutes(1), Health::NotVerified),
            candidate(now, Health::NotVerified),
            candidate(now - Duration::days(1), Health::Passed),
        ];
        let policy = Policy { keep_last: Some(0), ..Policy::default() };
        let decisions = decide(&history, &policy, now);
        assert_eq!(kept_by(&decisions, Rule::Within), names(&["2026-12-01T08:00:00Z", "2026-12-01T06:01:00Z"]));
        assert_eq!(rules_of(&decisions, "20261201T0800Z"), vec![Rule::Within, Rule::NewestComplete]);
        assert_eq!(rules_of(&decisions, "20261201T0600Z"), vec![]);
        assert_eq!(rules_of(&decisions, "20261130T0600Z"), vec![Rule::NewestVerified]);
        // Even under an empty policy, which otherwise keeps nothing.
        let decisions = decide(&history, &Policy::default(), now);
        assert_eq!(kept(&decisions), names(&["2026-12-01T08:00:00Z", "2026-12-01T06:01:00Z"]));
        assert!(kept_by(&decisions, Rule::NewestVerified).is_empty());
    }

    #[test]
    fn output_is_newest_first_whatever_the_input_order() {
        let time = at("2026-11-30T00:00:00Z");
        let history = vec![
            Candidate { name: "b".into(), time, health: Health::Passed },
            Candidate { name: "old".into(), time: time - Duration::days(1), health: Health::Passed },
            Candidate { name: "new".into(), time: time + Duration::days(1), health: Health::Passed },
            Candidate { name: "c".into(), time, health: Health::Passed },
            Candidate { name: "a".into(), time, health: Health::Passed },
        ];
        let policy = Policy { keep_last: Some(2), ..Policy::default() };
        let decisions = decide(&history, &policy, nightly_now());
        let order: Vec<&str> = decisions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(order, ["new", "c", "b", "a", "old"]);
        assert_eq!(kept(&decisions), named(&["new", "c"]));
    }

    #[test]
    fn no_candidates_no_decisions() {
        let policy = Policy { keep_last: Some(3), keep_within: Some(Duration::days(1)), ..Policy::default() };
        assert!(decide(&[], &policy, nightly_now()).is_empty());
    }

    #[test]
    fn empty_policy_keeps_nothing_but_still_decides() {
        let history = nightly_history();
        let decisions = decide(&history, &Policy::default(), nightly_now());
        assert_eq!(decisions.len(), history.len());
        assert!(decisions.iter().all(|d| !d.keep && d.rules.is_empty()));
    }

    #[test]
    fn is_empty_only_without_any_keep_option() {
        assert!(Policy::default().is_empty());
        assert!(Policy { timezone: Berlin, ..Policy::default() }.is_empty());
        let one_rule = [
            Policy { keep_last: Some(0), ..Policy::default() },
            Policy { keep_hourly: Some(1), ..Policy::default() },
            Policy { keep_daily: Some(0), ..Policy::default() },
            Policy { keep_weekly: Some(2), ..Policy::default() },
            Policy { keep_monthly: Some(0), ..Policy::default() },
            Policy { keep_yearly: Some(3), ..Policy::default() },
            Policy { keep_within: Some(Duration::zero()), ..Policy::default() },
            Policy { keep_pitr: Some(Duration::hours(1)), ..Policy::default() },
        ];
        assert!(one_rule.iter().all(|policy| !policy.is_empty()));
    }

    #[test]
    fn labels() {
        let labels: Vec<&str> = Rule::ALL.iter().map(|rule| rule.label()).collect();
        assert_eq!(labels, ["last", "hourly", "daily", "weekly", "monthly", "yearly", "within", "pitr", "newest complete", "newest verified"]);
    }

    #[test]
    fn a_finished_month_kept_by_keep_monthly_is_locked_until_its_slot_expires() {
        let policy = Policy { keep_monthly: Some(12), keep_daily: Some(7), ..Policy::default() };
        let now = at("2026-12-04T10:00:00Z");
        let november = candidate(at("2026-11-30T23:00:00Z"), Health::Passed);
        let today = candidate(at("2026-12-04T09:00:00Z"), Health::Passed);
        let candidates = vec![november.clone(), today.clone()];
        let decisions = decide(&candidates, &policy, now);
        let ends = slot_ends(&candidates, &decisions, &policy, now);
        // November's slot ends when the 12th month after it begins; its daily slot (7 days) ends sooner.
        assert_eq!(ends[&november.name], at("2027-11-01T00:00:00Z"));
        // Today's day and month are still running: a newer backup may take their slots.
        assert!(!ends.contains_key(&today.name), "{ends:?}");
    }

    #[test]
    fn slots_are_counted_in_the_policy_time_zone() {
        let policy = Policy { keep_daily: Some(3), timezone: Berlin, ..Policy::default() };
        let now = at("2026-07-10T12:00:00Z");
        // 23:30 UTC on July 1st is July 2nd in Berlin: the slot ends at Berlin midnight three days later.
        let backup = candidate(at("2026-07-01T23:30:00Z"), Health::Passed);
        let decisions = vec![Decision { name: backup.name.clone(), keep: true, rules: vec![Rule::Daily] }];
        let ends = slot_ends(std::slice::from_ref(&backup), &decisions, &policy, now);
        assert_eq!(ends[&backup.name], at("2026-07-04T22:00:00Z"));
    }

    #[test]
    fn the_first_lock_follows_keep_within_else_the_shortest_window() {
        let within = Policy { keep_within: Some(Duration::days(3)), keep_daily: Some(1), ..Policy::default() };
        assert_eq!(within.first_lock_window(None), Some(Duration::days(3)));
        let counted = Policy { keep_daily: Some(7), keep_hourly: Some(24), keep_last: Some(100), ..Policy::default() };
        assert_eq!(counted.first_lock_window(None), Some(Duration::hours(24)));
        assert_eq!(counted.first_lock_window(Some(Duration::minutes(5))), Some(Duration::minutes(500)));
        let yearly = Policy { keep_yearly: Some(5), ..Policy::default() };
        assert_eq!(yearly.first_lock_window(None), None);
        assert_eq!(yearly.longest_keep(None), Some(Duration::days(5 * 366)));
        assert_eq!(Policy { keep_last: Some(3), ..Policy::default() }.longest_keep(None), None);
    }
}
