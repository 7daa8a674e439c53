//! Reading JSON request bodies with a size bound and typed errors (never actix's
//! plain-text defaults).

use actix_web::{http::header, web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads at most `limit` bytes and parses them as `T`. An empty body parses as `{}`
/// when `empty_ok`.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    empty_ok: bool,
) -> Result<T, ApiError> {
    // A body's media type is checked before it is read; an empty body, where one may be
    // (`empty_ok`), has none to check.
    let json_type = match req.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => {
            let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim().to_owned();
            essence == "application/json" || essence.ends_with("+json")
        }
    };
    if !json_type && !empty_ok {
        return Err(ApiError::UnsupportedMediaType);
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if super::deadline::is_body_timeout(&e) {
                ApiError::RequestTimeout {
                    seconds: req
                        .app_data::<web::Data<crate::http::state::AppState>>()
                        .map(|s| s.settings.server.body_timeout.as_secs_f64())
                        .unwrap_or_default(),
                }
            } else {
                ApiError::MalformedJson(format!("cannot read body: {e}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    if !json_type && !body.is_empty() {
        return Err(ApiError::UnsupportedMediaType);
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        if empty_ok {
            return serde_json::from_str("{}").map_err(|e| ApiError::MalformedJson(e.to_string()));
        }
        return Err(ApiError::MalformedJson("request body is empty".into()));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// An optional integer field that also takes a number with a zero fraction (`7.0`), as
/// JSON Schema counts integers. Use with `#[serde(default, deserialize_with = ...)]`.
pub fn opt_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an integer, got {n}")))
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::opt_integer")]
        n: Option<i64>,
    }

    fn n(json: &str) -> Result<Option<i64>, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_with_a_zero_fraction_count_as_integers() {
        assert_eq!(n(r#"{"n": 7}"#), Ok(Some(7)));
        assert_eq!(n(r#"{"n": 7.0}"#), Ok(Some(7)));
        assert_eq!(n(r#"{"n": -2e2}"#), Ok(Some(-200)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n(r#"{}"#), Ok(None));
        assert!(n(r#"{"n": 7.5}"#)
            .unwrap_err()
            .contains("expected an integer"));
        assert!(n(r#"{"n": 1e300}"#).is_err());
        assert!(n(r#"{"n": "7"}"#).is_err());
    }
}
