//! S3 Object Lock calls of [`S3Store`]: the bucket's lock configuration, an object's
//! retention and legal hold (read with one HEAD), `PutObjectRetention`,
//! `PutObjectLegalHold`, and the versions of a versioned bucket.

use aws_sdk_s3::types::{
    ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use chrono::{DateTime, Utc};

use super::errors::describe;
use super::{to_utc, S3Store};
use crate::store::error::{StoreError, StoreErrorKind};
use crate::store::object::ObjectStore;
use crate::store::retention::{BucketLock, LockMode, ObjectLock, ObjectVersion};

/// The SDK's mode for a write.
pub fn sdk_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

/// The SDK's time (whole seconds: S3 keeps no more).
pub fn sdk_time(time: DateTime<Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(time.timestamp())
}

fn mode_of(text: &str) -> Option<LockMode> {
    LockMode::parse(text)
}

/// `GetObjectLockConfiguration`; a bucket without one answers with an error code that means "not enabled".
pub async fn bucket_lock(store: &S3Store) -> Result<BucketLock, StoreError> {
    let answer = store.client.get_object_lock_configuration().bucket(&store.bucket).send().await;
    let configuration = match answer {
        Ok(answer) => answer.object_lock_configuration,
        Err(error) => {
            use aws_sdk_s3::error::ProvideErrorMetadata;
            if error.code().is_some_and(|code| code == "ObjectLockConfigurationNotFoundError") {
                return Ok(BucketLock::default());
            }
            return Err(describe(&error, &store.location(""), "reading the Object Lock configuration of", store.assumes_role()));
        }
    };
    let Some(configuration) = configuration else { return Ok(BucketLock::default()) };
    let enabled = configuration.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled);
    let default_retention = configuration.rule().and_then(|rule| rule.default_retention()).and_then(|retention| {
        let mode = mode_of(retention.mode()?.as_str())?;
        let days = match (retention.days(), retention.years()) {
            (Some(days), _) => i64::from(days),
            (None, Some(years)) => i64::from(years) * 365,
            (None, None) => return None,
        };
        Some((mode, chrono::Duration::days(days)))
    });
    Ok(BucketLock { enabled, default_retention })
}

/// One HEAD: the retention mode, date and legal hold of the current version or `version_id`.
pub async fn object_lock(store: &S3Store, key: &str, version_id: Option<&str>) -> Result<ObjectLock, StoreError> {
    let head = store
        .client
        .head_object()
        .bucket(&store.bucket)
        .key(store.key(key))
        .set_version_id(version_id.map(str::to_string))
        .send()
        .await
        .map_err(|e| describe(&e, &store.location(key), "reading the lock of", store.assumes_role()))?;
    Ok(ObjectLock {
        mode: head.object_lock_mode().and_then(|mode| mode_of(mode.as_str())),
        retain_until: to_utc(head.object_lock_retain_until_date()),
        legal_hold: head.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On),
    })
}

/// `PutObjectRetention` on the current version.
pub async fn set_retention(store: &S3Store, key: &str, mode: LockMode, retain_until: DateTime<Utc>) -> Result<(), StoreError> {
    let mode = match mode {
        LockMode::Governance => ObjectLockRetentionMode::Governance,
        LockMode::Compliance => ObjectLockRetentionMode::Compliance,
    };
    let retention = ObjectLockRetention::builder().mode(mode).retain_until_date(sdk_time(retain_until)).build();
    store
        .client
        .put_object_retention()
        .bucket(&store.bucket)
        .key(store.key(key))
        .retention(retention)
        .send()
        .await
        .map_err(|e| describe(&e, &store.location(key), "extending the lock of", store.assumes_role()))?;
    Ok(())
}

/// `PutObjectLegalHold` on the current version.
pub async fn set_legal_hold(store: &S3Store, key: &str, on: bool) -> Result<(), StoreError> {
    let status = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
    store
        .client
        .put_object_legal_hold()
        .bucket(&store.bucket)
        .key(store.key(key))
        .legal_hold(ObjectLockLegalHold::builder().status(status).build())
        .send()
        .await
        .map_err(|e| {
            describe(&e, &store.location(key), if on { "setting the legal hold of" } else { "releasing the legal hold of" }, store.assumes_role())
        })?;
    Ok(())
}

/// `ListObjectVersions` under `prefix`, every page.
pub async fn list_versions(store: &S3Store, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
    let mut found = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = store
            .client
            .list_object_versions()
            .bucket(&store.bucket)
            .prefix(store.key(prefix))
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| describe(&e, &store.location(prefix), "listing the object versions under", store.assumes_role()))?;
        for version in page.versions() {
            if let (Some(key), Some(id)) = (version.key(), version.version_id()) {
                let key = store.relative(key).to_string();
                found.push(ObjectVersion { key, version_id: id.to_string(), is_latest: version.is_latest() == Some(true), delete_marker: false });
            }
        }
        for marker in page.delete_markers() {
            if let (Some(key), Some(id)) = (marker.key(), marker.version_id()) {
                let key = store.relative(key).to_string();
                found.push(ObjectVersion { key, version_id: id.to_string(), is_latest: marker.is_latest() == Some(true), delete_marker: true });
            }
        }
        if page.is_truncated() != Some(true) {
            return Ok(found);
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() {
            return Ok(found);
        }
    }
}

/// Deletes one version for good (refused while it is locked).
pub async fn delete_version(store: &S3Store, key: &str, version_id: &str) -> Result<(), StoreError> {
    store.client.delete_object().bucket(&store.bucket).key(store.key(key)).version_id(version_id).send().await.map_err(|e| {
        let error = describe(&e, &store.location(key), "deleting a version of", store.assumes_role());
        if error.kind() == StoreErrorKind::Other && error.to_string().contains("WORM") {
            StoreError::new(StoreErrorKind::Denied, format!("deleting a version of {}: it is locked (Object Lock)", store.location(key)))
        } else {
            error
        }
    })?;
    Ok(())
}
