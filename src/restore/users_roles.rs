//! `restore --users-and-roles`: the backup's `admin.system.users` and
//! `admin.system.roles` brought back as `mongorestore --restoreDbUsersAndRoles` does.
//! Their documents are inserted into two temporary collections of `admin` by the
//! ordinary insert path, then merged into the server's users and roles with
//! `_mergeAuthzCollections` (all databases for an unfiltered restore, else each restored
//! database); `--drop` replaces the users and roles merged. Where the server has no
//! `_mergeAuthzCollections`, each role is created or updated with `createRole` /
//! `updateRole` and each user with `createUser` / `updateUser`; a user whose stored
//! credentials only the merge can restore is named, never its credentials.

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::{Client, Database};
use serde::Serialize;
use tracing::{info, warn};

use super::oplog_replay::server_code;
use crate::error::{Error, Result};

/// Plan kind of the backup's `admin.system.users`.
pub const USERS_KIND: &str = "users";
/// Plan kind of the backup's `admin.system.roles`.
pub const ROLES_KIND: &str = "roles";
/// The temporary collection of `admin` the users are inserted into (mongorestore's name).
pub const TEMP_USERS: &str = "tempusers";
/// The temporary collection of `admin` the roles are inserted into (mongorestore's name).
pub const TEMP_ROLES: &str = "temproles";

const COMMAND_NOT_FOUND: i32 = 59;
const NAMESPACE_NOT_FOUND: i32 = 26;

/// What restoring the users and roles did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsersAndRoles {
    /// `_mergeAuthzCollections`, or `createUser/createRole` on a server without it.
    pub method: String,
    /// Users restored.
    pub users: u64,
    /// Roles restored.
    pub roles: u64,
    /// Users and roles that could not be restored, each with the reason (names only).
    pub problems: Vec<String>,
}

/// Merges the temporary collections into the server's users and roles, then drops them.
/// `databases` is `None` for an unfiltered restore (every database's users and roles),
/// else the databases restored.
///
/// # Errors
/// The server refused the merge or a command, or went away.
pub async fn merge(client: &Client, databases: Option<&[String]>, drop: bool) -> Result<UsersAndRoles> {
    let admin = client.database("admin");
    let users = read_all(&admin, TEMP_USERS).await?;
    let roles = read_all(&admin, TEMP_ROLES).await?;
    let kept = |document: &Document| databases.is_none_or(|databases| document.get_str("db").is_ok_and(|db| databases.iter().any(|d| d == db)));
    let mut report = UsersAndRoles {
        method: "_mergeAuthzCollections".into(),
        users: users.iter().filter(|u| kept(u)).count() as u64,
        roles: roles.iter().filter(|r| kept(r)).count() as u64,
        problems: Vec::new(),
    };
    let scopes: Vec<&str> = match databases {
        None => vec![""],
        Some(databases) => databases.iter().map(String::as_str).collect(),
    };
    let mut merged = Ok(());
    for scope in &scopes {
        let command = doc! {
            "_mergeAuthzCollections": 1,
            "tempUsersCollection": format!("admin.{TEMP_USERS}"),
            "tempRolesCollection": format!("admin.{TEMP_ROLES}"),
            "drop": drop,
            "db": *scope,
        };
        if let Err(error) = admin.run_command(command).await {
            merged = Err(error);
            break;
        }
    }
    match merged {
        Ok(()) => {}
        Err(error) if server_code(&error) == Some(COMMAND_NOT_FOUND) => {
            info!("The target has no _mergeAuthzCollections: restoring each role and user with createRole/createUser.");
            report =
                one_by_one(&admin, users.into_iter().filter(|u| kept(u)).collect(), roles.into_iter().filter(|r| kept(r)).collect(), drop).await?;
        }
        Err(error) => {
            drop_temporary(&admin).await;
            return Err(Error::mongo("merging the restored users and roles (_mergeAuthzCollections)")(error));
        }
    }
    drop_temporary(&admin).await;
    info!(users = report.users, roles = report.roles, method = %report.method, "Restored users and roles.");
    Ok(report)
}

async fn read_all(admin: &Database, collection: &str) -> Result<Vec<Document>> {
    let context = || format!("reading the restored {collection}");
    let cursor = admin.collection::<Document>(collection).find(doc! {}).await.map_err(Error::mongo(context()))?;
    cursor.try_collect().await.map_err(Error::mongo(context()))
}

async fn drop_temporary(admin: &Database) {
    for collection in [TEMP_USERS, TEMP_ROLES] {
        if let Err(error) = admin.collection::<Document>(collection).drop().await {
            if server_code(&error) != Some(NAMESPACE_NOT_FOUND) {
                warn!(collection = %format!("admin.{collection}"), "Could not drop a temporary collection of the users and roles restore; drop it by hand.");
            }
        }
    }
}

/// `role@db` or `user@db`, the only thing ever printed of a user or role.
fn label(document: &Document, name_field: &str) -> String {
    format!("{}@{}", document.get_str(name_field).unwrap_or("?"), document.get_str("db").unwrap_or("?"))
}

/// The fields of a role or user document a `create*`/`update*` command takes.
fn copy_fields(from: &Document, fields: &[&str], into: &mut Document) {
    for field in fields {
        if let Some(value) = from.get(*field) {
            into.insert(*field, value.clone());
        }
    }
}

/// Whether the stored user has password credentials (SCRAM), which `createUser` cannot take.
fn has_password_credentials(user: &Document) -> bool {
    user.get_document("credentials").is_ok_and(|credentials| credentials.keys().any(|mechanism| mechanism.starts_with("SCRAM")))
}

/// The restore on a server without `_mergeAuthzCollections`.
async fn one_by_one(admin: &Database, users: Vec<Document>, roles: Vec<Document>, drop: bool) -> Result<UsersAndRoles> {
    let client = admin.client();
    let mut report = UsersAndRoles { method: "createUser/createRole".into(), ..UsersAndRoles::default() };
    // Roles first: users refer to them, and roles to each other (created without their
    // inherited roles, then given them, so the order of the file does not matter).
    for role in &roles {
        let (Ok(name), Ok(db)) = (role.get_str("role"), role.get_str("db")) else { continue };
        let database = client.database(db);
        let exists = role_exists(&database, name).await?;
        let mut command = if exists {
            doc! { "updateRole": name }
        } else {
            doc! { "createRole": name, "roles": [] }
        };
        copy_fields(role, &["privileges", "authenticationRestrictions"], &mut command);
        if !command.contains_key("privileges") {
            command.insert("privileges", Bson::Array(Vec::new()));
        }
        if let Err(error) = database.run_command(command).await {
            report.problems.push(format!("role {}: {}", label(role, "role"), crate::error::truncate_message(&error.to_string(), 200)));
            continue;
        }
        report.roles += 1;
    }
    for role in &roles {
        let (Ok(name), Ok(db), Ok(inherited)) = (role.get_str("role"), role.get_str("db"), role.get_array("roles")) else { continue };
        if inherited.is_empty() {
            continue;
        }
        if let Err(error) = client.database(db).run_command(doc! { "updateRole": name, "roles": inherited.clone() }).await {
            report.problems.push(format!(
                "role {}: its inherited roles: {}",
                label(role, "role"),
                crate::error::truncate_message(&error.to_string(), 200)
            ));
        }
    }
    for user in &users {
        let (Ok(name), Ok(db)) = (user.get_str("user"), user.get_str("db")) else { continue };
        let database = client.database(db);
        let exists = user_exists(&database, name).await?;
        let mut command = if exists {
            doc! { "updateUser": name }
        } else {
            doc! { "createUser": name }
        };
        copy_fields(user, &["roles", "customData", "authenticationRestrictions"], &mut command);
        if !command.contains_key("roles") {
            command.insert("roles", Bson::Array(Vec::new()));
        }
        if !exists && has_password_credentials(user) {
            report.problems.push(format!(
                "user {}: not restored: the target has no _mergeAuthzCollections and createUser takes a password, not the stored credentials; \
                 create the user with its password, then restore again to give it its roles",
                label(user, "user")
            ));
            continue;
        }
        if exists && has_password_credentials(user) {
            warn!(user = %label(user, "user"), "The user exists: its roles and custom data are restored, its password is left as it is.");
        }
        if let Err(error) = database.run_command(command).await {
            report.problems.push(format!("user {}: {}", label(user, "user"), crate::error::truncate_message(&error.to_string(), 200)));
            continue;
        }
        report.users += 1;
    }
    if drop {
        drop_others(client, &users, &roles, &mut report).await?;
    }
    Ok(report)
}

/// With `--drop`: the users and roles of the restored databases that the backup does not hold.
async fn drop_others(client: &Client, users: &[Document], roles: &[Document], report: &mut UsersAndRoles) -> Result<()> {
    let mut databases: Vec<&str> = users.iter().chain(roles).filter_map(|d| d.get_str("db").ok()).collect();
    databases.sort_unstable();
    databases.dedup();
    for db in databases {
        let database = client.database(db);
        let listed = database.run_command(doc! { "usersInfo": 1 }).await.map_err(Error::mongo(format!("listing the users of {db}")))?;
        for existing in listed.get_array("users").map(|a| a.as_slice()).unwrap_or_default().iter().filter_map(Bson::as_document) {
            let name = existing.get_str("user").unwrap_or_default();
            if !users.iter().any(|u| u.get_str("user") == Ok(name) && u.get_str("db") == Ok(db)) {
                if let Err(error) = database.run_command(doc! { "dropUser": name }).await {
                    report.problems.push(format!("user {name}@{db}: not dropped: {}", crate::error::truncate_message(&error.to_string(), 200)));
                }
            }
        }
        let listed = database.run_command(doc! { "rolesInfo": 1 }).await.map_err(Error::mongo(format!("listing the roles of {db}")))?;
        for existing in listed.get_array("roles").map(|a| a.as_slice()).unwrap_or_default().iter().filter_map(Bson::as_document) {
            let name = existing.get_str("role").unwrap_or_default();
            if !roles.iter().any(|r| r.get_str("role") == Ok(name) && r.get_str("db") == Ok(db)) {
                if let Err(error) = database.run_command(doc! { "dropRole": name }).await {
                    report.problems.push(format!("role {name}@{db}: not dropped: {}", crate::error::truncate_message(&error.to_string(), 200)));
                }
            }
        }
    }
    Ok(())
}

async fn role_exists(database: &Database, name: &str) -> Result<bool> {
    let found = database.run_command(doc! { "rolesInfo": name }).await.map_err(Error::mongo(format!("looking up role {name}")))?;
    Ok(found.get_array("roles").is_ok_and(|roles| !roles.is_empty()))
}

async fn user_exists(database: &Database, name: &str) -> Result<bool> {
    let found = database.run_command(doc! { "usersInfo": name }).await.map_err(Error::mongo(format!("looking up user {name}")))?;
    Ok(found.get_array("users").is_ok_and(|users| !users.is_empty()))
}
