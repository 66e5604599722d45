//! Backup names. A backup is named after the UTC minute it started
//! (`2018-04-04T11_37`, the original ingest backup scripts' format); a second backup in the same minute gets
//! the seconds appended, and a third in the same second a counter, so that nothing is
//! ever overwritten.

use chrono::{DateTime, Utc};

/// The name a backup started at `start` would get if its minute is free.
pub fn minute_name(start: DateTime<Utc>) -> String {
    start.format("%Y-%m-%dT%H_%M").to_string()
}

/// Picks the first free name for a backup started at `start`: the minute name, else
/// the minute name with `_SS` seconds, else that with `-2`, `-3`, ...
///
/// `taken` answers whether any object of a given backup name already exists.
///
/// # Errors
/// Returns the error `taken` returns.
#[cfg(test)]
pub fn choose_name<E>(start: DateTime<Utc>, mut taken: impl FnMut(&str) -> Result<bool, E>) -> Result<String, E> {
    for candidate in candidate_names(start) {
        if !taken(&candidate)? {
            return Ok(candidate);
        }
    }
    unreachable!("the candidates never run out")
}

/// The names a backup may take (`Store::choose_name` takes the first free one), in order: the UTC minute, then with seconds, then
/// with seconds and a counter from 2 (endless).
pub fn candidate_names(start: DateTime<Utc>) -> impl Iterator<Item = String> {
    let second = start.format("%Y-%m-%dT%H_%M_%S").to_string();
    let counted = (2u32..).map(move |n| format!("{second}-{n}"));
    [minute_name(start), start.format("%Y-%m-%dT%H_%M_%S").to_string()].into_iter().chain(counted)
}

/// Whether `name` looks like a backup name this tool writes (used by listings to skip
/// unrelated objects).
pub fn is_backup_name(name: &str) -> bool {
    let base = name.split('-').take(3).collect::<Vec<_>>().join("-");
    let head = base.get(..16).unwrap_or("");
    chrono::NaiveDateTime::parse_from_str(&format!("{head}_00"), "%Y-%m-%dT%H_%M_%S").is_ok()
}

/// The UTC time backup `name` was started at, to the minute (or the second when the
/// name carries seconds); `None` for a name this tool does not write.
pub fn time_of(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.split('-').take(3).collect::<Vec<_>>().join("-");
    let with_seconds = if stamp.len() >= 19 { stamp[..19].to_string() } else { format!("{}_00", stamp.get(..16)?) };
    let parsed = chrono::NaiveDateTime::parse_from_str(&with_seconds, "%Y-%m-%dT%H_%M_%S").ok()?;
    Some(parsed.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2018, 4, 4, h, m, s).unwrap()
    }

    #[test]
    fn first_backup_of_a_minute_gets_the_original_scripts_name() {
        let name = choose_name(at(11, 37, 5), |_| Ok::<_, ()>(false)).unwrap();
        assert_eq!(name, "2018-04-04T11_37");
    }

    #[test]
    fn second_backup_in_the_same_minute_gets_seconds() {
        let name = choose_name(at(11, 37, 5), |n| Ok::<_, ()>(n == "2018-04-04T11_37")).unwrap();
        assert_eq!(name, "2018-04-04T11_37_05");
    }

    #[test]
    fn third_backup_in_the_same_second_gets_a_counter() {
        let taken = ["2018-04-04T11_37", "2018-04-04T11_37_05", "2018-04-04T11_37_05-2"];
        let name = choose_name(at(11, 37, 5), |n| Ok::<_, ()>(taken.contains(&n))).unwrap();
        assert_eq!(name, "2018-04-04T11_37_05-3");
    }

    #[test]
    fn recognises_backup_names() {
        assert!(is_backup_name("2018-04-04T11_37"));
        assert!(is_backup_name("2018-04-04T11_37_05"));
        assert!(is_backup_name("2018-04-04T11_37_05-2"));
        assert!(!is_backup_name("notes"));
        assert!(!is_backup_name("2018-13-04T11_37"));
    }

    #[test]
    fn a_name_gives_back_its_start_time() {
        assert_eq!(time_of("2018-04-04T11_37"), Some(at(11, 37, 0)));
        assert_eq!(time_of("2018-04-04T11_37_05"), Some(at(11, 37, 5)));
        assert_eq!(time_of("2018-04-04T11_37_05-3"), Some(at(11, 37, 5)));
        assert_eq!(time_of("notes"), None);
        assert_eq!(time_of("2018-13-04T11_37"), None);
    }
}
