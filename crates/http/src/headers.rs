//! The connection-management headers of HTTP/1.1: `Connection` (RFC 9110 §7.6.1, RFC 9112
//! §9.3 and §9.6) and `Keep-Alive` (RFC 2068 §19.7.1.1, as servers still send it).

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};
use http::Version;

/// `Keep-Alive`, which `http` has no constant for.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Whether the `Connection` header lists `token` (case-insensitively, RFC 9110 §7.6.1).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a message of `version` with these headers asks to close the connection after it
/// (RFC 9112 §9.3: `close` in HTTP/1.1; HTTP/1.0 is persistent only with `keep-alive`).
pub fn wants_close(version: Version, headers: &HeaderMap) -> bool {
    if connection_has(headers, "close") {
        return true;
    }
    version <= Version::HTTP_10 && !connection_has(headers, "keep-alive")
}

/// The parameters of a `Keep-Alive` header: `timeout=T, max=N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepAlive {
    /// How long the server keeps the connection open while idle.
    pub timeout: Option<Duration>,
    /// How many more requests the server will take on the connection.
    pub max: Option<u64>,
}

impl KeepAlive {
    /// Reads every `Keep-Alive` header of `headers`; unknown or malformed parameters are
    /// ignored (a later valid one wins).
    pub fn parse(headers: &HeaderMap) -> Option<KeepAlive> {
        let mut ka = KeepAlive::default();
        let mut any = false;
        for v in headers.get_all(KEEP_ALIVE) {
            let Ok(s) = v.to_str() else { continue };
            any = true;
            for param in s.split(',') {
                let Some((k, val)) = param.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "timeout" => {
                        if let Ok(n) = val.parse::<u64>() {
                            ka.timeout = Some(Duration::from_secs(n));
                        }
                    }
                    "max" => {
                        if let Ok(n) = val.parse::<u64>() {
                            ka.max = Some(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        any.then_some(ka)
    }

    /// The header value: `timeout=T, max=N` (T in whole seconds, rounded down, as the
    /// header carries no fraction).
    pub fn to_value(self) -> HeaderValue {
        let mut parts = Vec::new();
        if let Some(t) = self.timeout {
            parts.push(format!("timeout={}", t.as_secs()));
        }
        if let Some(m) = self.max {
            parts.push(format!("max={m}"));
        }
        HeaderValue::from_str(&parts.join(", ")).unwrap_or(HeaderValue::from_static(""))
    }
}

/// Whether `method` is idempotent (RFC 9110 §9.2.2): repeating it has the effect of doing it
/// once, so a client may resend it when a connection fails before the response.
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keep_alive() {
        let mut h = HeaderMap::new();
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5, max=99"));
        assert_eq!(
            KeepAlive::parse(&h),
            Some(KeepAlive {
                timeout: Some(Duration::from_secs(5)),
                max: Some(99)
            })
        );
        h.insert(
            KEEP_ALIVE,
            HeaderValue::from_static("Max=3,junk, timeout=x"),
        );
        assert_eq!(
            KeepAlive::parse(&h),
            Some(KeepAlive {
                timeout: None,
                max: Some(3)
            })
        );
        assert_eq!(KeepAlive::parse(&HeaderMap::new()), None);
        let v = KeepAlive {
            timeout: Some(Duration::from_millis(2500)),
            max: Some(7),
        }
        .to_value();
        assert_eq!(v, "timeout=2, max=7");
    }

    #[test]
    fn connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade, Close"));
        assert!(wants_close(Version::HTTP_11, &h));
        assert!(!wants_close(Version::HTTP_11, &HeaderMap::new()));
        assert!(wants_close(Version::HTTP_10, &HeaderMap::new()));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!wants_close(Version::HTTP_10, &h));
        assert!(is_idempotent(&http::Method::PUT));
        assert!(!is_idempotent(&http::Method::POST));
        assert!(!is_idempotent(&http::Method::PATCH));
    }
}
