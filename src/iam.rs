//! `ingest-backup iam-policy`: the least-privilege IAM policy of each job, in the AWS
//! policy language (which MinIO speaks too). The `backup` role cannot delete anything
//! (it leaves its run lock as "released" for prune to delete) nor bypass governance
//! locks; `prune` deletes and extends locks; `verify` reads and writes only its
//! verification records; `drill` reads and writes only its drill records; `restore`
//! only reads.

use serde::Serialize;
use serde_json::{json, Value};

/// The job a policy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `backup` and `oplog` (and `schedule` without `--prune`).
    Backup,
    /// `prune`.
    Prune,
    /// `verify`.
    Verify,
    /// `restore` (and `list`, `events`, `exporter`).
    Restore,
    /// `drill`.
    Drill,
}

impl Role {
    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "backup" => Some(Role::Backup),
            "prune" => Some(Role::Prune),
            "verify" => Some(Role::Verify),
            "restore" => Some(Role::Restore),
            "drill" => Some(Role::Drill),
            _ => None,
        }
    }
}

/// Bucket-level reads every job needs to find and list its backups.
const LIST: [&str; 3] = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"];
/// Reading an object and its lock.
const READ: [&str; 3] = ["s3:GetObject", "s3:GetObjectRetention", "s3:GetObjectLegalHold"];

/// The policy document of `role` on `bucket` under `prefix` (empty: the whole bucket).
pub fn policy(role: Role, bucket: &str, prefix: &str) -> Value {
    let prefix = prefix.trim_matches('/');
    let objects = |pattern: &str| {
        if prefix.is_empty() {
            format!("arn:aws:s3:::{bucket}/{pattern}")
        } else {
            format!("arn:aws:s3:::{bucket}/{prefix}/{pattern}")
        }
    };
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let statement =
        |sid: &str, actions: &[&str], resources: Vec<String>| json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources });
    let mut bucket_actions: Vec<&str> = LIST.to_vec();
    let mut statements = Vec::new();
    match role {
        Role::Backup => {
            bucket_actions.push("s3:GetBucketObjectLockConfiguration");
            let write = [&READ[..], &["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]].concat();
            statements.push(statement("WriteBackupsAndTheirLocks", &write, vec![objects("*")]));
        }
        Role::Prune => {
            bucket_actions.extend(["s3:GetBucketObjectLockConfiguration", "s3:ListBucketVersions"]);
            let remove = [
                &READ[..],
                &["s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:AbortMultipartUpload"],
            ]
            .concat();
            statements.push(statement("RemoveAndExtendLocks", &remove, vec![objects("*")]));
            statements.push(statement("WriteItsRunLock", &["s3:PutObject"], vec![objects("locks/*")]));
        }
        Role::Verify => {
            statements.push(statement("ReadBackups", &READ, vec![objects("*")]));
            statements.push(statement(
                "WriteVerificationRecords",
                &["s3:PutObject", "s3:PutObjectRetention"],
                vec![objects(&format!("*{}", crate::store::VERIFICATION_SUFFIX))],
            ));
        }
        Role::Restore => {
            // `list`, `events` and `exporter` show each backup's lock when the bucket has Object Lock.
            bucket_actions.push("s3:GetBucketObjectLockConfiguration");
            statements.push(statement("ReadBackups", &READ, vec![objects("*")]));
        }
        Role::Drill => {
            statements.push(statement("ReadBackups", &READ, vec![objects("*")]));
            statements.push(statement(
                "WriteDrillRecords",
                &["s3:PutObject", "s3:PutObjectRetention"],
                vec![objects(&format!("*{}", crate::store::DRILL_SUFFIX))],
            ));
        }
    }
    statements.insert(0, statement("ListTheStore", &bucket_actions, vec![bucket_arn]));
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Every action a policy allows, for tests and checks.
#[cfg(test)]
fn actions(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_role_can_neither_delete_nor_bypass_a_lock() {
        let backup = actions(&policy(Role::Backup, "b", "prod"));
        assert!(backup.iter().all(|a| !a.contains("Delete") && !a.contains("Bypass")), "{backup:?}");
        assert!(backup.contains(&"s3:PutObjectRetention".to_string()));
        let prune = actions(&policy(Role::Prune, "b", "prod"));
        assert!(prune.contains(&"s3:DeleteObjectVersion".to_string()) && !prune.iter().any(|a| a.contains("Bypass")));
        let restore = actions(&policy(Role::Restore, "b", ""));
        assert!(restore.iter().all(|a| a.starts_with("s3:Get") || a.starts_with("s3:List")), "{restore:?}");
    }

    #[test]
    fn resources_stay_under_the_prefix() {
        let verify = policy(Role::Verify, "b", "/prod/db/");
        let text = verify.to_string();
        assert!(text.contains("arn:aws:s3:::b/prod/db/*.verify.json"), "{text}");
        assert!(!text.contains("arn:aws:s3:::b/*\""), "{text}");
        let drill = policy(Role::Drill, "b", "prod").to_string();
        assert!(drill.contains("arn:aws:s3:::b/prod/*.drill.json") && !drill.contains("Delete"), "{drill}");
        assert!(policy(Role::Backup, "b", "").to_string().contains("arn:aws:s3:::b/*"));
    }
}
