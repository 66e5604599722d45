//! `.metadata.json` files as every mongodump release wrote them: canonical and relaxed
//! Extended JSON v2, the legacy (v1 "strict") forms older releases wrote (`{"$date":
//! <millis>}`, `{"$binary": "...", "$type": "00"}`, `{"$regex": "...", "$options":
//! "..."}`), and the mongo shell's constructors (`NumberLong(5)`, `ObjectId("...")`,
//! `ISODate("...")`, `Timestamp(1, 2)`, `BinData(0, "...")`, `NumberDecimal("...")`,
//! `NumberInt(5)`, `UUID("...")`), all read into one BSON document.

use base64::Engine as _;
use bson::{Bson, Document};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Parses a metadata file of any of the formats above; `path` names it in errors.
///
/// # Errors
/// A consistency error naming the file when it is none of them.
pub fn parse_metadata(bytes: &[u8], path: &str) -> Result<Document> {
    let text = String::from_utf8_lossy(bytes);
    let value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => match shell_to_json(&text).and_then(|converted| serde_json::from_str(&converted).ok()) {
            Some(value) => value,
            None => return Err(Error::Damaged(format!("{path} is not valid JSON: {error}"))),
        },
    };
    match Bson::try_from(upgrade_legacy(value)) {
        Ok(Bson::Document(document)) => Ok(document),
        Ok(other) => Err(Error::Damaged(format!("{path} is not a JSON object: {other}"))),
        Err(error) => Err(Error::Damaged(format!("{path} is not valid Extended JSON: {error}"))),
    }
}

/// Rewrites the legacy Extended JSON forms into their v2 equivalents, recursively.
fn upgrade_legacy(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(upgrade_legacy).collect()),
        Value::Object(map) => upgrade_object(map),
        other => other,
    }
}

fn upgrade_object(map: Map<String, Value>) -> Value {
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    match keys.as_slice() {
        ["$date"] if map["$date"].is_number() => {
            let millis = map["$date"].as_i64().unwrap_or_else(|| map["$date"].as_f64().unwrap_or(0.0) as i64);
            json!({ "$date": { "$numberLong": millis.to_string() } })
        }
        ["$binary", "$type"] | ["$type", "$binary"] if map["$binary"].is_string() => {
            let subtype = map["$type"].as_str().map(|t| format!("{:0>2}", t.to_ascii_lowercase())).unwrap_or_else(|| "00".into());
            json!({ "$binary": { "base64": map["$binary"], "subType": subtype } })
        }
        ["$regex", "$options"] | ["$options", "$regex"] if map["$regex"].is_string() => {
            json!({ "$regularExpression": { "pattern": map["$regex"], "options": map["$options"] } })
        }
        _ => Value::Object(map.into_iter().map(|(key, value)| (key, upgrade_legacy(value))).collect()),
    }
}

/// Rewrites the mongo shell's constructors outside strings into Extended JSON; `None`
/// when one cannot be read.
fn shell_to_json(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let (literal, next) = read_string(&chars, i)?;
            out.push_str(&serde_json::to_string(&literal).ok()?);
            i = next;
        } else if c.is_ascii_alphabetic() && !out.ends_with(|p: char| p.is_ascii_digit() || p == '.') {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match word.as_str() {
                "true" | "false" | "null" => out.push_str(&word),
                "new" => {}
                _ => {
                    let (arguments, next) = read_arguments(&chars, i)?;
                    out.push_str(&constructor(&word, &arguments)?.to_string());
                    i = next;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

/// A quoted string starting at `start`; returns its text and the index after it.
fn read_string(chars: &[char], start: usize) -> Option<(String, usize)> {
    let quote = chars[start];
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let escaped = *chars.get(i + 1)?;
                text.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
                i += 2;
            }
            c if c == quote => return Some((text, i + 1)),
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    None
}

/// The comma-separated arguments of a call whose `(` follows `start` (after spaces).
fn read_arguments(chars: &[char], start: usize) -> Option<(Vec<String>, usize)> {
    let mut i = start;
    while chars.get(i)?.is_whitespace() {
        i += 1;
    }
    if chars[i] != '(' {
        return None;
    }
    i += 1;
    let mut arguments = Vec::new();
    let mut current = String::new();
    loop {
        match *chars.get(i)? {
            ')' => {
                if !current.trim().is_empty() {
                    arguments.push(current.trim().to_string());
                }
                return Some((arguments, i + 1));
            }
            ',' => {
                arguments.push(current.trim().to_string());
                current.clear();
                i += 1;
            }
            '"' | '\'' => {
                let (literal, next) = read_string(chars, i)?;
                current.push_str(&literal);
                i = next;
            }
            c => {
                current.push(c);
                i += 1;
            }
        }
    }
}

/// The Extended JSON of one shell constructor call.
fn constructor(name: &str, arguments: &[String]) -> Option<Value> {
    let first = arguments.first().map(String::as_str);
    Some(match (name, first) {
        ("NumberLong", Some(n)) => json!({ "$numberLong": n.parse::<i64>().ok()?.to_string() }),
        ("NumberInt", Some(n)) => json!({ "$numberInt": n.parse::<i32>().ok()?.to_string() }),
        ("NumberDecimal", Some(n)) => json!({ "$numberDecimal": n }),
        ("ObjectId", Some(hex)) => json!({ "$oid": hex }),
        ("ISODate" | "Date", Some(when)) => match when.parse::<i64>() {
            Ok(millis) => json!({ "$date": { "$numberLong": millis.to_string() } }),
            Err(_) => json!({ "$date": when }),
        },
        ("Timestamp", Some(t)) => json!({ "$timestamp": { "t": t.parse::<u32>().ok()?, "i": arguments.get(1)?.parse::<u32>().ok()? } }),
        ("BinData", Some(subtype)) => {
            json!({ "$binary": { "base64": arguments.get(1)?, "subType": format!("{:02x}", subtype.parse::<u8>().ok()?) } })
        }
        ("UUID", Some(hex)) => {
            let bytes = hex::decode(hex.replace('-', "")).ok()?;
            json!({ "$binary": { "base64": base64::engine::general_purpose::STANDARD.encode(bytes), "subType": "04" } })
        }
        ("MinKey", _) => json!({ "$minKey": 1 }),
        ("MaxKey", _) => json!({ "$maxKey": 1 }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn expected() -> Document {
        doc! {
            "options": { "capped": true, "size": 4096_i64, "max": 10, "validator": { "at": { "$gt": bson::DateTime::from_millis(1_500_000_000_000) } } },
            "indexes": [{ "v": 1, "key": { "_id": 1 }, "name": "_id_", "ns": "db.c" }],
        }
    }

    #[test]
    fn canonical_legacy_and_shell_metadata_read_alike() {
        let canonical = r#"{"options":{"capped":true,"size":{"$numberLong":"4096"},"max":{"$numberInt":"10"},"validator":{"at":{"$gt":{"$date":{"$numberLong":"1500000000000"}}}}},"indexes":[{"v":{"$numberInt":"1"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","ns":"db.c"}]}"#;
        let legacy = r#"{"options":{"capped":true,"size":{"$numberLong":"4096"},"max":10,"validator":{"at":{"$gt":{"$date":1500000000000}}}},"indexes":[{"v":1,"key":{"_id":1},"name":"_id_","ns":"db.c"}]}"#;
        let shell = r#"{ "options" : { "capped" : true, "size" : NumberLong(4096), "max" : 10, "validator" : { "at" : { "$gt" : ISODate("2017-07-14T02:40:00Z") } } }, "indexes" : [ { "v" : 1, "key" : { "_id" : 1 }, "name" : "_id_", "ns" : "db.c" } ] }"#;
        for text in [canonical, legacy, shell] {
            assert_eq!(parse_metadata(text.as_bytes(), "m").unwrap(), expected(), "{text}");
        }
    }

    #[test]
    fn legacy_binary_regex_and_shell_constructors_convert() {
        let legacy = r#"{"b":{"$binary":"AQI=","$type":"0"},"r":{"$regex":"^a","$options":"i"}}"#;
        let parsed = parse_metadata(legacy.as_bytes(), "m").unwrap();
        assert_eq!(parsed.get_binary_generic("b").unwrap(), &vec![1, 2]);
        assert!(matches!(parsed.get("r"), Some(Bson::RegularExpression(r)) if r.pattern == "^a"));
        let shell = r#"{"t": Timestamp(5, 1), "o": ObjectId("5a0000000000000000000001"), "u": UUID("00112233-4455-6677-8899-aabbccddeeff"), "d": NumberDecimal("1.5"), "bin": BinData(0,"AQI="), "s": "NumberLong(1) stays text"}"#;
        let parsed = parse_metadata(shell.as_bytes(), "m").unwrap();
        assert_eq!(parsed.get_timestamp("t").unwrap(), bson::Timestamp { time: 5, increment: 1 });
        assert_eq!(parsed.get_object_id("o").unwrap().to_hex(), "5a0000000000000000000001");
        assert_eq!(parsed.get_str("s").unwrap(), "NumberLong(1) stays text");
        assert!(matches!(parsed.get("u"), Some(Bson::Binary(b)) if b.bytes.len() == 16));
    }

    #[test]
    fn what_is_no_json_at_all_is_named() {
        let error = parse_metadata(b"{ options: Nonsense(", "db/c.metadata.json").unwrap_err();
        assert!(error.to_string().contains("db/c.metadata.json is not valid JSON"), "{error}");
    }
}
