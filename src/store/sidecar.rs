//! A stored backup's sidecar read into its manifest: the one place where a sidecar is
//! parsed and a sealed one (an encrypted backup's) is opened. `verify` turns a
//! [`SidecarProblem`] into a finding, `restore` into a refusal; `list`, `prune` and
//! point-in-time recovery read the readable part with [`parse_sidecar`].

use crate::crypto::sidecar::{is_sealed, open_details};
use crate::crypto::Identities;
use crate::manifest::Manifest;

use super::catalog::StoredBackup;

/// A sidecar read, and opened when it was sealed and an identity was given.
#[derive(Debug, Clone)]
pub struct OpenedSidecar {
    /// The manifest (the whole one when a sealed sidecar was opened).
    pub manifest: Manifest,
    /// The same manifest as JSON, as the archive's copy is compared with it.
    pub json: serde_json::Value,
}

/// Why a backup's sidecar gives no manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarProblem {
    /// There is none: the backup is incomplete.
    Missing,
    /// It does not parse as a manifest.
    Unreadable(String),
    /// Its sealed manifest could not be opened with the identity given, or differs
    /// from the readable fields.
    Sealed(String),
}

impl SidecarProblem {
    /// The sidecar's object name for `backup`.
    pub fn object(backup: &str) -> String {
        super::keys::sidecar_key(backup)
    }
}

/// The manifest in `bytes`, as stored (a sealed sidecar stays sealed).
///
/// # Errors
/// The bytes are not a manifest.
pub fn parse_sidecar(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// The manifest of `backup`; a sealed sidecar is opened with `identities`, and without
/// them its readable part is returned (enough to check the stored bytes).
///
/// # Errors
/// A [`SidecarProblem`] saying why there is no manifest to use.
pub fn open_sidecar(backup: &StoredBackup, identities: Option<&Identities>) -> Result<OpenedSidecar, SidecarProblem> {
    let bytes = backup.sidecar.as_deref().ok_or(SidecarProblem::Missing)?;
    let manifest = parse_sidecar(bytes).map_err(|error| SidecarProblem::Unreadable(error.to_string()))?;
    match identities {
        Some(identities) if is_sealed(&manifest) => {
            let (manifest, json) = open_details(&manifest, identities).map_err(SidecarProblem::Sealed)?;
            Ok(OpenedSidecar { manifest, json })
        }
        _ => {
            let json = serde_json::from_slice(bytes).map_err(|error| SidecarProblem::Unreadable(error.to_string()))?;
            Ok(OpenedSidecar { manifest, json })
        }
    }
}
