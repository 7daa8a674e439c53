//! Query strings: a malformed one is a problem like any other, and times in them are
//! RFC 3339.

use actix_web::web;

use super::error::ApiError;

/// A query string that does not parse (a repeated or malformed parameter) is a problem
/// like any other, not actix's plain-text 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        ApiError::InvalidField {
            field: "query",
            detail: format!("the query string does not parse: {e}"),
        }
        .into()
    })
}

/// An RFC 3339 time from a query parameter, or `default` when absent.
pub(crate) fn query_time(
    field: &'static str,
    raw: Option<&str>,
    default: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    match raw {
        None => Ok(default),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| ApiError::InvalidField {
                field,
                detail: format!("{field} must be an RFC 3339 time"),
            }),
    }
}
