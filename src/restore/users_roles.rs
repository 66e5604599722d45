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

use super::plan::{TEMP_ROLES, TEMP_USERS};
use crate::error::{Error, Result};
use crate::filter::NamespaceFilter;
use crate::server_codes::{server_code, COMMAND_NOT_FOUND, NAMESPACE_NOT_FOUND};

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

/// Which users and roles a restore brings back.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Whether the backup holds users (then `admin.tempusers` is merged).
    pub users: bool,
    /// Whether the backup holds roles (then `admin.temproles` is merged).
    pub roles: bool,
    /// Whose users and roles.
    pub databases: DatabaseScope,
}

/// Whose users and roles a restore brings back.
#[derive(Debug, Clone)]
pub enum DatabaseScope {
    /// Every database's: a full dump's `admin.system.users`, restored unfiltered.
    All,
    /// These databases' only: one database's `$admin.system.*` files.
    Only(Vec<String>),
    /// A filtered restore of a full dump: the restored databases', and those of any
    /// database the filter keeps (`admin`'s too unless the filter leaves it out).
    Filtered {
        /// Databases with restored collections.
        restored: Vec<String>,
        /// The restore's filter.
        filter: NamespaceFilter,
    },
}

impl DatabaseScope {
    /// `None` for every database, else the databases whose users and roles are merged,
    /// given the documents found.
    fn resolve<'a>(&self, documents: impl Iterator<Item = &'a Document>) -> Option<Vec<String>> {
        match self {
            Self::All => None,
            Self::Only(databases) => Some(databases.clone()),
            Self::Filtered { restored, filter } => {
                let mut databases: Vec<String> = documents
                    .filter_map(|document| document.get_str("db").ok())
                    .filter(|db| restored.iter().any(|r| r == db) || filter.keeps(db, "system.users"))
                    .map(str::to_string)
                    .collect();
                databases.sort();
                databases.dedup();
                Some(databases)
            }
        }
    }
}

/// Merges the temporary collections into the server's users and roles, then drops them.
/// A collection the backup does not hold is never named to the merge (with `--drop`,
/// naming an empty one would remove every role or user in scope).
///
/// # Errors
/// The server refused the merge or a command, or went away. The temporary collections
/// are dropped whatever happens.
pub async fn merge(client: &Client, scope: &Scope, drop: bool) -> Result<UsersAndRoles> {
    let admin = client.database("admin");
    let merged = merge_temporary(&admin, scope, drop).await;
    drop_temporary(client).await;
    let report = merged?;
    info!(users = report.users, roles = report.roles, method = %report.method, "Restored users and roles.");
    Ok(report)
}

async fn merge_temporary(admin: &Database, scope: &Scope, drop: bool) -> Result<UsersAndRoles> {
    let users = if scope.users { read_all(admin, TEMP_USERS).await? } else { Vec::new() };
    let roles = if scope.roles { read_all(admin, TEMP_ROLES).await? } else { Vec::new() };
    let databases = scope.databases.resolve(users.iter().chain(&roles));
    if databases.as_ref().is_some_and(Vec::is_empty) {
        info!("--users-and-roles: no user or role of the restored databases in the backup.");
        return Ok(UsersAndRoles { method: "_mergeAuthzCollections".into(), ..UsersAndRoles::default() });
    }
    let kept =
        |document: &Document| databases.as_ref().is_none_or(|databases| document.get_str("db").is_ok_and(|db| databases.iter().any(|d| d == db)));
    let users: Vec<Document> = users.into_iter().filter(|u| kept(u)).collect();
    let roles: Vec<Document> = roles.into_iter().filter(|r| kept(r)).collect();
    let mut report =
        UsersAndRoles { method: "_mergeAuthzCollections".into(), users: users.len() as u64, roles: roles.len() as u64, problems: Vec::new() };
    let scopes: Vec<&str> = match &databases {
        None => vec![""],
        Some(databases) => databases.iter().map(String::as_str).collect(),
    };
    let mut merged = Ok(());
    for database in &scopes {
        let mut command = doc! { "_mergeAuthzCollections": 1 };
        if scope.users {
            command.insert("tempUsersCollection", format!("admin.{TEMP_USERS}"));
        }
        if scope.roles {
            command.insert("tempRolesCollection", format!("admin.{TEMP_ROLES}"));
        }
        command.insert("drop", drop);
        command.insert("db", *database);
        if let Err(error) = admin.run_command(command).await {
            merged = Err(error);
            break;
        }
    }
    match merged {
        Ok(()) => Ok(report),
        Err(error) if server_code(&error) == Some(COMMAND_NOT_FOUND) => {
            info!("The target has no _mergeAuthzCollections: restoring each role and user with createRole/createUser.");
            report = one_by_one(admin, users, roles, scope, drop).await?;
            Ok(report)
        }
        Err(error) => Err(Error::mongo("merging the restored users and roles (_mergeAuthzCollections)")(error)),
    }
}

async fn read_all(admin: &Database, collection: &str) -> Result<Vec<Document>> {
    let context = || format!("reading the restored {collection}");
    let cursor = admin.collection::<Document>(collection).find(doc! {}).await.map_err(Error::mongo(context()))?;
    cursor.try_collect().await.map_err(Error::mongo(context()))
}

/// Drops the temporary collections (they hold password hashes): after the merge, and
/// on every path a restore that filled them ends by.
pub async fn drop_temporary(client: &Client) {
    let admin = client.database("admin");
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
async fn one_by_one(admin: &Database, users: Vec<Document>, roles: Vec<Document>, scope: &Scope, drop: bool) -> Result<UsersAndRoles> {
    let client = admin.client();
    let mut report = UsersAndRoles { method: "createUser/createRole".into(), ..UsersAndRoles::default() };
    // Roles first: users refer to them, and roles to each other (created without their
    // inherited roles, then given them, so the order of the file does not matter).
    for role in &roles {
        let (Ok(name), Ok(db)) = (role.get_str("role"), role.get_str("db")) else { continue };
        let database = client.database(db);
        let exists = is_listed(&database, "rolesInfo", "roles", name).await?;
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
        let exists = is_listed(&database, "usersInfo", "users", name).await?;
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
        drop_others(client, &users, &roles, scope, &mut report).await?;
    }
    Ok(report)
}

/// With `--drop`: the users (when the backup holds users) and roles (when it holds
/// roles) of the restored databases that the backup does not hold.
async fn drop_others(client: &Client, users: &[Document], roles: &[Document], scope: &Scope, report: &mut UsersAndRoles) -> Result<()> {
    let mut databases: Vec<&str> = users.iter().chain(roles).filter_map(|d| d.get_str("db").ok()).collect();
    databases.sort_unstable();
    databases.dedup();
    for db in databases {
        let database = client.database(db);
        if scope.users {
            for name in listed_names(&database, "usersInfo", "users", "user").await? {
                if !users.iter().any(|u| u.get_str("user") == Ok(name.as_str()) && u.get_str("db") == Ok(db)) {
                    if let Err(error) = database.run_command(doc! { "dropUser": &name }).await {
                        report.problems.push(format!("user {name}@{db}: not dropped: {}", crate::error::truncate_message(&error.to_string(), 200)));
                    }
                }
            }
        }
        if scope.roles {
            for name in listed_names(&database, "rolesInfo", "roles", "role").await? {
                if !roles.iter().any(|r| r.get_str("role") == Ok(name.as_str()) && r.get_str("db") == Ok(db)) {
                    if let Err(error) = database.run_command(doc! { "dropRole": &name }).await {
                        report.problems.push(format!("role {name}@{db}: not dropped: {}", crate::error::truncate_message(&error.to_string(), 200)));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The names `usersInfo: 1` or `rolesInfo: 1` lists for a database.
async fn listed_names(database: &Database, command: &str, list: &str, field: &str) -> Result<Vec<String>> {
    let listed = database.run_command(doc! { command: 1 }).await.map_err(Error::mongo(format!("listing the {list} of {}", database.name())))?;
    Ok(listed
        .get_array(list)
        .map(|found| found.iter().filter_map(Bson::as_document).filter_map(|d| d.get_str(field).ok().map(str::to_string)).collect())
        .unwrap_or_default())
}

/// Whether `usersInfo: name` or `rolesInfo: name` finds the user or role in `database`.
async fn is_listed(database: &Database, command: &str, list: &str, name: &str) -> Result<bool> {
    let found = database
        .run_command(doc! { command: name })
        .await
        .map_err(Error::mongo(format!("looking up {name} in the {list} of {}", database.name())))?;
    Ok(found.get_array(list).is_ok_and(|listed| !listed.is_empty()))
}
