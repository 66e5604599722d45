//! Oplog timestamps: the `Timestamp` every module shares (manifest consistency points,
//! slice ranges, replay limits), its `T.I` label and its wall time. Pure: nothing here
//! talks to a server or a store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A BSON timestamp: seconds and an increment within the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub t: u32,
    /// Ordinal within the second.
    pub i: u32,
}

impl From<bson::Timestamp> for Timestamp {
    fn from(ts: bson::Timestamp) -> Self {
        Timestamp { t: ts.time, i: ts.increment }
    }
}

impl From<Timestamp> for bson::Timestamp {
    fn from(ts: Timestamp) -> Self {
        bson::Timestamp { time: ts.t, increment: ts.i }
    }
}

impl Timestamp {
    /// Parses `T.I` (`1764584400.3`, zero-padded or not); `None` for anything else.
    pub fn parse_label(text: &str) -> Option<Timestamp> {
        let (t, i) = text.split_once('.')?;
        Some(Timestamp { t: t.parse().ok()?, i: i.parse().ok()? })
    }
}

/// `T.I`, zero-padded so that names sort in time order.
pub fn timestamp_label(ts: Timestamp) -> String {
    format!("{:010}.{:010}", ts.t, ts.i)
}

/// The wall time of a timestamp's second.
pub fn wall_time(ts: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(ts.t), 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_in_time_order_and_parse_back() {
        let (early, late) = (Timestamp { t: 999, i: 12 }, Timestamp { t: 1000, i: 1 });
        assert!(timestamp_label(early) < timestamp_label(late));
        assert_eq!(Timestamp::parse_label(&timestamp_label(early)), Some(early));
        assert_eq!(Timestamp::parse_label("100.7"), Some(Timestamp { t: 100, i: 7 }));
        assert_eq!(Timestamp::parse_label("yesterday"), None);
        assert_eq!(wall_time(late).to_rfc3339(), "1970-01-01T00:16:40+00:00");
    }
}
