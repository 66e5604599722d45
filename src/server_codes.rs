//! The MongoDB server error codes the restore and the oplog replay react to, in one
//! place, and [`server_code`] to read the code of a driver error. A leaf: it imports
//! nothing of the crate, so any module may use it without making a cycle.

/// `NamespaceNotFound`: the collection or database does not exist.
pub const NAMESPACE_NOT_FOUND: i32 = 26;
/// `IndexNotFound`: the index to drop or modify does not exist.
pub const INDEX_NOT_FOUND: i32 = 27;
/// `NamespaceExists`: the collection to create already exists.
pub const NAMESPACE_EXISTS: i32 = 48;
/// `CommandNotFound`: the server does not know the command.
pub const COMMAND_NOT_FOUND: i32 = 59;
/// `DuplicateKey`: a document with the same `_id` (or unique key) exists.
pub const DUPLICATE_KEY: i32 = 11000;

/// The server's error code, when it sent one (a command error or a single write error).
pub fn server_code(error: &mongodb::error::Error) -> Option<i32> {
    match &*error.kind {
        mongodb::error::ErrorKind::Command(command) => Some(command.code),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(write)) => Some(write.code),
        _ => None,
    }
}
