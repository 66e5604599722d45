//! What the sidecar of an encrypted backup shows. By default it keeps what `list`,
//! `prune` and point-in-time recovery need (name, times, consistency point, totals,
//! compression, recipients, the ciphertext's size and SHA-256) and seals the rest
//! (namespace names, options, indexes, per-namespace digests, the selection patterns)
//! with age to the same recipients, as an ASCII-armored copy of the whole manifest:
//! the same manifest the archive holds, so `verify` and `restore` with the identity
//! work from it exactly as from a plain sidecar, before reading the archive.

use std::io::{Read, Write};

use super::{describe, Identities, Recipients};
use crate::manifest::{ArchiveInfo, Manifest, Selection};

/// How much of an encrypted backup's manifest its sidecar shows in the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SidecarDetail {
    /// Totals only; namespace details sealed (the default).
    #[default]
    Summary,
    /// Everything, as for an unencrypted backup (`--sidecar-detail full`).
    Full,
}

/// The sidecar of a finished backup whose archive holds `manifest`. Unencrypted, or
/// with [`SidecarDetail::Full`], it is the manifest with the archive's digest added.
///
/// # Errors
/// The encryption of the sealed copy failed.
pub fn sidecar_for(manifest: &Manifest, archive: ArchiveInfo, detail: SidecarDetail, recipients: Option<&Recipients>) -> std::io::Result<Manifest> {
    let mut sidecar = manifest.clone();
    sidecar.archive = Some(archive);
    let (Some(recipients), SidecarDetail::Summary) = (recipients, detail) else {
        return Ok(sidecar);
    };
    let sealed = seal_text(&manifest.to_json(), recipients)?;
    sidecar.namespaces.clear();
    sidecar.selection = Selection::default();
    if let Some(encryption) = sidecar.encryption.as_mut() {
        encryption.sealed_manifest = Some(sealed);
    }
    Ok(sidecar)
}

/// Whether `sidecar` keeps its namespace details sealed (an identity is needed to read them).
pub fn is_sealed(sidecar: &Manifest) -> bool {
    sidecar.encryption.as_ref().is_some_and(|e| e.sealed_manifest.is_some())
}

/// The whole manifest of a sidecar whose details are sealed, opened with
/// `identities`, with the sidecar's archive digest: the manifest and its JSON, as a
/// plain sidecar would read.
///
/// # Errors
/// Why it cannot be opened (a wrong identity, damage), or the sidecar's readable
/// fields differ from the sealed manifest (one was altered).
pub fn open_details(sidecar: &Manifest, identities: &Identities) -> Result<(Manifest, serde_json::Value), String> {
    let Some(sealed) = sidecar.encryption.as_ref().and_then(|e| e.sealed_manifest.as_deref()) else {
        return Err("the sidecar holds no sealed manifest".into());
    };
    let bytes = open_text(sealed, identities).map_err(|e| format!("its sealed manifest cannot be opened: {e}"))?;
    let mut full: Manifest = serde_json::from_slice(&bytes).map_err(|e| format!("its sealed manifest is unreadable: {e}"))?;
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("its sealed manifest is unreadable: {e}"))?;
    full.archive = sidecar.archive.clone();
    if let (Some(object), Some(archive)) = (json.as_object_mut(), &sidecar.archive) {
        object.insert("archive".into(), serde_json::to_value(archive).expect("an archive digest serializes"));
    }
    let mut readable = full.clone();
    readable.namespaces.clear();
    readable.selection = Selection::default();
    // The recipients may have changed since the backup: an archive re-encrypted to new
    // keys (README "Key rotation") lists them in its sidecar; the sealed copy keeps those
    // the backup was made for, as the archive's own manifest does.
    if let (Some(encryption), Some(now)) = (readable.encryption.as_mut(), sidecar.encryption.as_ref()) {
        encryption.sealed_manifest = Some(sealed.to_string());
        encryption.recipients = now.recipients.clone();
    }
    if &readable != sidecar {
        return Err("the sidecar's readable fields differ from its sealed manifest: the sidecar was altered after the backup; do not trust it".into());
    }
    Ok((full, json))
}

/// `bytes` encrypted to `recipients`, ASCII-armored (what `age -a` writes; `age -d`
/// reads it back).
///
/// # Errors
/// The encryption failed.
pub fn seal_text(bytes: &[u8], recipients: &Recipients) -> std::io::Result<String> {
    let encryptor = age::Encryptor::with_recipients(recipients.as_dyn()).map_err(|e| std::io::Error::other(format!("age: {e}")))?;
    let armor = age::armor::ArmoredWriter::wrap_output(Vec::new(), age::armor::Format::AsciiArmor)?;
    let mut writer = encryptor.wrap_output(armor)?;
    writer.write_all(bytes)?;
    let armored = writer.finish()?.finish()?;
    String::from_utf8(armored).map_err(std::io::Error::other)
}

/// The plaintext of armored age `text`, decrypted with `identities`.
///
/// # Errors
/// A wrong identity, or text that is not an intact age file; each named.
pub fn open_text(text: &str, identities: &Identities) -> std::io::Result<Vec<u8>> {
    let armored = age::armor::ArmoredReader::new(text.as_bytes());
    let decryptor = age::Decryptor::new(armored).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, describe(&e)))?;
    let mut reader = decryptor.decrypt(identities.as_dyn()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, describe(&e)))?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("it does not authenticate ({e})")))?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(recipients: &Recipients) -> Manifest {
        let text = r#"{"format_version":1,"tool":{"name":"ingest-backup","version":"0"},"name":"2018-04-04T11_37",
            "source":{"hosts":["h:1"],"replica_set":null},"started_at":"a","finished_at":"b","compression":"gzip",
            "dump_root":"data/db/dump/2018-04-04T11_37/","consistency":{"oplog":false,"start":null,"end":null,"oplog_entries":0,"oplog_bytes":0},
            "selection":{"include":["secret_db.*"],"exclude":[]},
            "namespaces":[{"database":"secret_db","collection":"people","type":"collection","uuid":null,"options":{},"indexes":[],
            "bson_file":"secret_db/people.bson","metadata_file":"secret_db/people.metadata.json","documents":1,"bytes":5,"sha256":"x","content_hash":"y"}],
            "totals":{"namespaces":1,"documents":1,"bytes":5}}"#;
        let mut manifest: Manifest = serde_json::from_str(text).unwrap();
        manifest.encryption =
            Some(crate::manifest::EncryptionInfo { format: "age".into(), recipients: recipients.public_keys(), sealed_manifest: None });
        manifest
    }

    #[test]
    fn a_summary_sidecar_names_no_namespace_and_opens_to_the_whole_manifest() {
        let key = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&[key.to_public().to_string()], None, None).unwrap().unwrap();
        let identities = Identities(vec![key]);
        let embedded = manifest(&recipients);
        let archive = ArchiveInfo { file: "2018-04-04T11_37.tar.gz.age".into(), size: 10, sha256: "z".into() };
        let sidecar = sidecar_for(&embedded, archive.clone(), SidecarDetail::Summary, Some(&recipients)).unwrap();
        let text = String::from_utf8(sidecar.to_json()).unwrap();
        assert!(!text.contains("secret_db") && !text.contains("people"), "{text}");
        assert!(is_sealed(&sidecar));
        let (full, json) = open_details(&sidecar, &identities).unwrap();
        assert_eq!(full.namespaces, embedded.namespaces);
        assert_eq!(full.archive.as_ref(), Some(&archive));
        assert_eq!(json["selection"]["include"][0], "secret_db.*");

        let mut altered = sidecar.clone();
        altered.totals.documents += 1;
        assert!(open_details(&altered, &identities).unwrap_err().contains("altered"));
        let full_detail = sidecar_for(&embedded, archive, SidecarDetail::Full, Some(&recipients)).unwrap();
        assert!(!is_sealed(&full_detail) && full_detail.namespaces.len() == 1);
    }

    #[test]
    fn sealed_text_opens_with_the_identity_only() {
        let key = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&[key.to_public().to_string()], None, None).unwrap().unwrap();
        let text = seal_text(b"{\"secret\":1}", &recipients).unwrap();
        assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert_eq!(open_text(&text, &Identities(vec![key])).unwrap(), b"{\"secret\":1}");
        let error = open_text(&text, &Identities(vec![age::x25519::Identity::generate()])).unwrap_err();
        assert!(error.to_string().contains("not one of the recipients"), "{error}");
    }
}
