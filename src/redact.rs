//! Keeps secrets out of logs, errors and JSON: a MongoDB URI is only ever shown with
//! its password replaced.

/// Returns `uri` with any password in its user-info replaced by `***`.
///
/// Works on malformed input too (it never fails), because it is used to build the
/// error message that reports the malformation.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return uri.to_string();
    };
    let user_info = &authority[..at];
    let user = user_info.split(':').next().unwrap_or("");
    let redacted_user_info = if user_info.contains(':') { format!("{user}:***") } else { user.to_string() };
    format!("{}://{}{}", &uri[..scheme_end], redacted_user_info, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn password_is_replaced() {
        assert_eq!(redact_uri("mongodb://admin:s3cret@db1:27017,db2/?replicaSet=rs"), "mongodb://admin:***@db1:27017,db2/?replicaSet=rs");
    }

    #[test]
    fn password_with_at_sign_is_replaced_whole() {
        assert_eq!(redact_uri("mongodb://u:p@ss@h/"), "mongodb://u:***@h/");
    }

    #[test]
    fn uri_without_credentials_is_unchanged() {
        assert_eq!(redact_uri("mongodb://mongo-service:27017"), "mongodb://mongo-service:27017");
        assert_eq!(redact_uri("not a uri"), "not a uri");
    }
}
