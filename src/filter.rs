//! Which namespaces, under which names: `--ns-include` / `--ns-exclude`, `db.collection`
//! patterns where `*` matches any run of characters (as mongorestore's `--nsInclude`),
//! and `--ns-from` / `--ns-to` ([`NamespaceMap`]). A namespace is kept when it
//! matches some include pattern (or there are none) and no exclude pattern.
//!
//! The matcher is a few lines of hand-written code on purpose: glob crates give `?`,
//! `[` and `{` special meanings that are legal characters in collection names.

use crate::error::{Error, Result};

/// A validated set of include and exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl NamespaceFilter {
    /// Validates the patterns.
    ///
    /// # Errors
    /// A usage error naming the first pattern that is not of the form `db.collection`.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        for pattern in include.iter().chain(exclude) {
            validate_pattern(pattern)?;
        }
        Ok(Self { include: include.to_vec(), exclude: exclude.to_vec() })
    }

    /// Whether the namespace `db.collection` is to be kept.
    pub fn keeps(&self, db: &str, collection: &str) -> bool {
        let ns = format!("{db}.{collection}");
        let included = self.include.is_empty() || self.include.iter().any(|p| wildcard_match(p, &ns));
        included && !self.exclude.iter().any(|p| wildcard_match(p, &ns))
    }

    /// The include patterns, as given.
    pub fn include(&self) -> &[String] {
        &self.include
    }

    /// The exclude patterns, as given.
    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }

    /// Whether any pattern is set (a filtered backup is not a whole-deployment backup).
    pub fn is_filtering(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }
}

fn validate_pattern(pattern: &str) -> Result<()> {
    match pattern.split_once('.') {
        Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok(()),
        _ => Err(Error::usage(format!(
            "namespace pattern {pattern:?} is not of the form db.collection; \
             use for example 'ingest.*' for a whole database or '*.project' for one collection in every database"
        ))),
    }
}

/// Matches `text` against `pattern`, where `*` matches any (possibly empty) run of
/// characters and every other character matches itself.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// `--ns-from` / `--ns-to`: restore one database under another name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseRename {
    /// Source database name.
    pub from: String,
    /// Target database name.
    pub to: String,
}

impl DatabaseRename {
    /// Parses the flags; both or neither must be given. `db` and `db.*` are accepted.
    ///
    /// # Errors
    /// A usage error naming the bad flag.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Option<Self>> {
        let database = |flag: &str, value: &str| -> Result<String> {
            let name = value.strip_suffix(".*").unwrap_or(value);
            if name.is_empty() || name.contains(['.', '/', '\\', ' ', '"', '$', '*']) {
                return Err(Error::usage(format!("{flag} {value:?} is not a database name: give a database such as ingest (or ingest.*)")));
            }
            Ok(name.to_string())
        };
        match (from, to) {
            (None, None) => Ok(None),
            (Some(from), Some(to)) => Ok(Some(Self { from: database("--ns-from", from)?, to: database("--ns-to", to)? })),
            _ => Err(Error::usage("--ns-from and --ns-to go together: give both, for example --ns-from ingest --ns-to ingest_copy")),
        }
    }
}

/// Maps source namespaces to target namespaces.
#[derive(Debug, Clone, Default)]
pub struct NamespaceMap {
    rename: Option<DatabaseRename>,
}

impl NamespaceMap {
    /// A map applying `rename`, if any.
    pub fn new(rename: Option<DatabaseRename>) -> Self {
        Self { rename }
    }

    /// The target database of source database `database`.
    pub fn database<'a>(&'a self, database: &'a str) -> &'a str {
        match &self.rename {
            Some(rename) if rename.from == database => &rename.to,
            _ => database,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("ingest.*", "ingest.project"));
        assert!(wildcard_match("*.project", "ingest.project"));
        assert!(wildcard_match("in*st.pro*t", "ingest.project"));
        assert!(wildcard_match("a.b", "a.b"));
        assert!(!wildcard_match("a.b", "a.bc"));
        assert!(!wildcard_match("ingest.*", "other.project"));
        assert!(!wildcard_match("*.ab*ba", "x.aba"));
        assert!(wildcard_match("x.[weird]?", "x.[weird]?"));
    }

    #[test]
    fn include_and_exclude_combine() {
        let f = NamespaceFilter::new(&["ingest.*".into()], &["ingest.file".into()]).unwrap();
        assert!(f.keeps("ingest", "project"));
        assert!(!f.keeps("ingest", "file"));
        assert!(!f.keeps("other", "project"));
        assert!(NamespaceFilter::default().keeps("any", "thing"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_fix() {
        let err = NamespaceFilter::new(&["ingest".into()], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("db.collection"), "{err}");
        assert!(NamespaceFilter::new(&[], &[".x".into()]).is_err());
    }

    #[test]
    fn renames_need_both_flags_and_plain_database_names() {
        assert_eq!(DatabaseRename::parse(None, None).unwrap(), None);
        assert_eq!(DatabaseRename::parse(Some("ingest.*"), Some("copy")).unwrap(), Some(DatabaseRename { from: "ingest".into(), to: "copy".into() }));
        assert_eq!(DatabaseRename::parse(Some("ingest"), None).unwrap_err().exit_code(), 2);
        assert_eq!(DatabaseRename::parse(Some("a.b"), Some("c")).unwrap_err().exit_code(), 2);
        let map = NamespaceMap::new(DatabaseRename::parse(Some("ingest"), Some("copy")).unwrap());
        assert_eq!(map.database("ingest"), "copy");
        assert_eq!(map.database("other"), "other");
    }
}
