//! The console's session cookies, which the API takes as well as a bearer token.
//!
//! A console sign-in is an ordinary session (`POST /auth/login` underneath): its access token
//! rides in [`SESSION`] and its refresh token in [`REFRESH`], both `HttpOnly` and
//! `SameSite=Strict` (and `Secure` over TLS), so no script can read them. Cross-site requests
//! are refused twice over: the browser does not send a `Strict` cookie with them, and every
//! state-changing request that authenticates by cookie must also carry the [`CSRF`] cookie's
//! value in the [`CSRF_HEADER`] header (or, for a plain HTML form, the `csrf` field), which a
//! page of another origin can neither read nor set.

use axum::http::{HeaderMap, Method, header};
use cookie::{Cookie, SameSite};

use super::error::{ApiError, Code};

/// The access token of a console session.
pub const SESSION: &str = "dms_session";
/// The refresh token of a console session; sent only to the console's own paths.
pub const REFRESH: &str = "dms_refresh";
/// The anti-forgery token: random, readable by the console's pages, compared with the header.
pub const CSRF: &str = "dms_csrf";
/// The header a console page sends the anti-forgery token in.
pub const CSRF_HEADER: &str = "x-dms-csrf";
/// The path the refresh cookie is scoped to.
pub const REFRESH_PATH: &str = "/console/";

/// The value of the cookie `name` in the request, if any.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
        .filter(|value| !value.is_empty())
}

/// A `Set-Cookie` value: `HttpOnly` unless `script_readable`, `SameSite=Strict`, `Secure`
/// when served over TLS, living `max_age_seconds` (0 removes it).
pub fn set(
    name: &'static str,
    value: String,
    path: &'static str,
    max_age_seconds: u64,
    secure: bool,
    script_readable: bool,
) -> String {
    Cookie::build((name, value))
        .path(path)
        .http_only(!script_readable)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_seconds).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// Whether `method` changes state (everything but GET, HEAD and OPTIONS).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state-changing request authenticated by cookie unless `sent` (the header's or
/// the form field's value) matches the anti-forgery cookie.
pub fn check_csrf(headers: &HeaderMap, sent: Option<&str>) -> Result<(), ApiError> {
    let expected = get(headers, CSRF);
    match (expected, sent) {
        (Some(expected), Some(sent)) if constant_time_eq(expected.as_bytes(), sent.as_bytes()) => {
            Ok(())
        }
        _ => Err(ApiError::new(
            Code::CsrfRejected,
            "this request carries the console's session cookie but not its anti-forgery token; reload the console page and try again",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn cookies_are_read_by_name() {
        let headers = headers("a=1; dms_session=tok; dms_csrf=xyz");
        assert_eq!(get(&headers, SESSION).as_deref(), Some("tok"));
        assert_eq!(get(&headers, CSRF).as_deref(), Some("xyz"));
        assert_eq!(get(&headers, REFRESH), None);
    }

    #[test]
    fn the_anti_forgery_token_must_match_its_cookie() {
        let headers = headers("dms_csrf=xyz");
        assert!(check_csrf(&headers, Some("xyz")).is_ok());
        for sent in [None, Some(""), Some("xy"), Some("xyz ")] {
            let error = check_csrf(&headers, sent).unwrap_err();
            assert_eq!(error.code(), Code::CsrfRejected);
        }
        assert!(check_csrf(&HeaderMap::new(), Some("")).is_err());
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let cookie = set(SESSION, "t".into(), "/", 60, true, false);
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(cookie.contains("Secure"), "{cookie}");
        let readable = set(CSRF, "c".into(), "/", 60, false, true);
        assert!(!readable.contains("HttpOnly") && !readable.contains("Secure"));
    }
}
