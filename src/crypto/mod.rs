//! Client-side encryption with age (X25519 recipients), so that whoever can read the
//! bucket cannot read the backups. Writing needs only public keys ([`Recipients`]);
//! reading takes a private key ([`Identities`]), which never reaches a log, an error,
//! a manifest or `--json` output: values are named by their position, never echoed.
//!
//! [`stream`] seals and opens the archive stream (the file format the stock `age`
//! command reads); [`sidecar`] seals the manifest's namespace details inside the
//! sidecar, so the sidecar of an encrypted backup shows only what `list` needs.

pub mod sidecar;
pub mod stream;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The suffix an encrypted archive or slice carries after its compression's.
pub const AGE_SUFFIX: &str = ".age";

/// Whether `file_name` is an encrypted object (`.tar.gz.age`, `.bson.gz.age`).
pub fn is_encrypted(file_name: &str) -> bool {
    file_name.ends_with(AGE_SUFFIX)
}

/// The public keys a backup is encrypted to (at least one).
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.public_keys()).finish()
    }
}

impl Recipients {
    /// The recipients given by `--encrypt-to` (each one key), `--recipients-file` (one
    /// key per line; blank lines and `#` comments skipped, as `age -R` reads it) and
    /// `AGE_RECIPIENTS` (keys separated by commas or white space), all together;
    /// `None` when none is given (the backup is not encrypted).
    ///
    /// # Errors
    /// A usage error naming the position of a value that is not an age X25519 public
    /// key (never the value: a private key pasted by mistake must not be printed), or
    /// an unreadable recipients file.
    pub fn parse(flags: &[String], file: Option<&Path>, env: Option<&str>) -> Result<Option<Self>> {
        let mut keys = Vec::new();
        for (index, value) in flags.iter().enumerate() {
            keys.push(parse_recipient(value, || format!("--encrypt-to number {}", index + 1))?);
        }
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::usage(format!("cannot read --recipients-file {}: {e}", path.display())))?;
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(parse_recipient(line, || format!("line {} of --recipients-file {}", number + 1, path.display()))?);
            }
        }
        if let Some(env) = env {
            let values = env.split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty());
            for (index, value) in values.enumerate() {
                keys.push(parse_recipient(value, || format!("entry {} of AGE_RECIPIENTS", index + 1))?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        keys.retain(|key| seen.insert(key.to_string()));
        Ok((!keys.is_empty()).then_some(Self(keys)))
    }

    /// The recipients' public keys (`age1...`), as recorded in the sidecar.
    pub fn public_keys(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.0.iter().map(|r| r as &dyn age::Recipient)
    }
}

fn parse_recipient(value: &str, position: impl FnOnce() -> String) -> Result<age::x25519::Recipient> {
    let value = value.trim();
    age::x25519::Recipient::from_str(value).map_err(|_| {
        let hint = if value.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
            "it is a private key, which the backup must never be given: give its public key instead (`age-keygen -y key.txt`)"
        } else {
            "give an age X25519 public key, age1 followed by 58 characters (`age-keygen` prints one)"
        };
        Error::usage(format!("{} is not an age public key: {hint}", position()))
    })
}

/// The private keys `verify` and `restore` decrypt with. Its `Debug` shows only how
/// many there are.
pub struct Identities(Vec<age::x25519::Identity>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} keys)", self.0.len())
    }
}

impl Identities {
    /// The identity from `--identity FILE` / `AGE_IDENTITY_FILE` (an identity file as
    /// `age-keygen -o` writes it), else from `AGE_IDENTITY` (the key itself); `None`
    /// when neither is given.
    ///
    /// # Errors
    /// A usage error for an unreadable file or a line that is not an age X25519 private
    /// key, named by its position only.
    pub fn resolve(file: Option<&Path>, key: Option<&str>) -> Result<Option<Self>> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::usage(format!("cannot read the identity file {}: {e}", path.display())))?;
            return Self::parse(&text, &format!("the identity file {}", path.display())).map(Some);
        }
        match key {
            Some(text) if !text.trim().is_empty() => Self::parse(text, "AGE_IDENTITY").map(Some),
            _ => Ok(None),
        }
    }

    /// Parses identity lines (blank lines and `#` comments skipped); `source` names
    /// where they came from in errors.
    ///
    /// # Errors
    /// A usage error naming the line that is not a private key, or no key at all.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line).map_err(|_| {
                Error::usage(format!(
                    "line {} of {source} is not an age X25519 private key (AGE-SECRET-KEY-1...); give the file `age-keygen -o` wrote",
                    number + 1
                ))
            })?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(Error::usage(format!("{source} holds no age private key (AGE-SECRET-KEY-1...)")));
        }
        Ok(Self(keys))
    }

    /// The public keys of these identities (`age1...`).
    pub fn public_keys(&self) -> Vec<String> {
        self.0.iter().map(|k| k.to_public().to_string()).collect()
    }

    fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|k| k as &dyn age::Identity)
    }
}

/// Why an age header could not be opened, in words that name the cause and the fix.
fn describe(error: &age::DecryptError) -> String {
    match error {
        age::DecryptError::NoMatchingKeys => {
            "the identity given is not one of the recipients it was encrypted to (a wrong key): give the private key of one of the recipients the sidecar lists".into()
        }
        age::DecryptError::InvalidMac | age::DecryptError::InvalidHeader | age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            "its age header does not authenticate: it was altered or damaged after the backup; do not trust it".into()
        }
        age::DecryptError::UnknownFormat => "it is not an age-encrypted file (an unknown header)".into(),
        age::DecryptError::Io(error) => format!("its age header cannot be read ({error}): it is truncated or damaged"),
        _ => "it cannot be decrypted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_come_from_flags_file_and_environment_without_duplicates() {
        let (a, b) = (age::x25519::Identity::generate().to_public().to_string(), age::x25519::Identity::generate().to_public().to_string());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recipients.txt");
        std::fs::write(&file, format!("# team\n\n{b}\n")).unwrap();
        let parsed = Recipients::parse(std::slice::from_ref(&a), Some(&file), Some(&format!("{a}, {b}"))).unwrap().unwrap();
        assert_eq!(parsed.public_keys(), [a.clone(), b]);
        assert!(Recipients::parse(&[], None, Some(" ")).unwrap().is_none());
    }

    #[test]
    fn a_bad_recipient_is_named_by_position_and_never_echoed() {
        let secret = age::x25519::Identity::generate();
        let secret_text = age::secrecy::ExposeSecret::expose_secret(&secret.to_string()).to_string();
        let good = secret.to_public().to_string();
        let error = Recipients::parse(&[good.clone(), secret_text.clone()], None, None).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let message = error.to_string();
        assert!(message.contains("--encrypt-to number 2") && message.contains("private key"), "{message}");
        assert!(!message.contains(&secret_text), "{message}");
        let error = Recipients::parse(&[], None, Some(&format!("{good},age1nope"))).unwrap_err();
        assert!(error.to_string().contains("entry 2 of AGE_RECIPIENTS") && !error.to_string().contains("age1nope"), "{error}");
    }

    #[test]
    fn identities_parse_keygen_files_and_name_bad_lines_only_by_number() {
        let key = age::x25519::Identity::generate();
        let text = age::secrecy::ExposeSecret::expose_secret(&key.to_string()).to_string();
        let file = format!("# created: now\n# public key: {}\n{text}\n", key.to_public());
        let parsed = Identities::parse(&file, "key.txt").unwrap();
        assert_eq!(parsed.public_keys(), [key.to_public().to_string()]);
        assert!(!format!("{parsed:?}").contains("AGE-SECRET"));
        let broken = format!("{}x\n", &text[..text.len() - 1]);
        let error = Identities::parse(&broken, "key.txt").unwrap_err().to_string();
        assert!(error.contains("line 1 of key.txt") && !error.contains(&text[..20]), "{error}");
    }
}
