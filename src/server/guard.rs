//! Who may call the service, from where, and how often: the `Host` allow-list,
//! refusal of browser requests from other origins, API keys, JSON bodies only, rate
//! limits, request ids. One middleware ([`guard`]) applies them in that order, before
//! any handler.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::AppState;

/// Who a request is charged to: `key:<n>` (the n-th API key) or the client address.
#[derive(Clone, Debug)]
pub struct Client(pub String);

/// The API key a request presented (its index in `--api-key`'s list): what is kept
/// for a key (a stored response) is that key's alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(pub usize);

/// The refusal of a client whose bucket is empty: 429 `RATE_LIMITED` with the wait.
fn rate_limited(limiter: &super::limits::RateLimiter, wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!(
            "rate limit reached ({} requests or generated tokens per second, burst {}): retry in {secs} s",
            limiter.limit().per_second,
            limiter.limit().burst
        ),
    )
    .retry_after(secs)
}

impl AppState {
    /// Take one request's unit from the client's bucket (a WebSocket message that
    /// starts work, as an HTTP request does at the guard); no-op without a limit.
    pub fn take_request(&self, client: Option<&Client>) -> Result<(), ApiError> {
        match (&self.limiter, client) {
            (Some(l), Some(c)) => l.take(&c.0).map_err(|wait| rate_limited(l, wait)),
            _ => Ok(()),
        }
    }

    /// Charge generated tokens to the client's rate limit (no-op without a limit).
    pub fn charge_tokens(&self, client: Option<&Client>, tokens: usize) {
        if let (Some(l), Some(c)) = (&self.limiter, client) {
            l.charge(&c.0, tokens as f64);
        }
    }
}

/// `Host` names served when bound to `addr`: the loopback names when bound to
/// loopback (so a web page cannot reach the service through DNS rebinding); `None`
/// (any host) when bound elsewhere.
pub fn default_allowed_hosts(addr: &SocketAddr) -> Option<Vec<String>> {
    if !addr.ip().is_loopback() {
        return None;
    }
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let own = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    if !hosts.contains(&own) {
        hosts.push(own);
    }
    Some(hosts)
}

/// The host part of a `Host` value, lower case, without port or trailing dot.
fn host_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    let name = if v.starts_with('[') {
        v.split_inclusive(']').next().unwrap_or("").to_string()
    } else {
        v.rsplit_once(':').map_or(v.clone(), |(h, _)| h.to_string())
    };
    name.trim_end_matches('.').to_string()
}

/// Whether a request id may be echoed and logged as given.
pub fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Drop an `X-Request-Id` that is not `[A-Za-z0-9._:-]{1,128}`; the next layer then
/// makes one.
pub async fn sanitize_request_id(mut req: Request) -> Request {
    let ok = req
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().is_ok_and(valid_request_id));
    if ok == Some(false) {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Routes that stay open without a key: health for load balancers, and `/metrics`
/// unless `--metrics-require-key`.
pub(super) fn open_route(path: &str, metrics_require_key: bool) -> bool {
    path.starts_with("/api/v1/health/") || (path == "/metrics" && !metrics_require_key)
}

/// The key a request presents: `Authorization: Bearer <key>`; on the WebSocket
/// route also a subprotocol `bearer.<key>` or the query parameter `api_key`
/// (browsers cannot set headers on a WebSocket).
fn presented_key(req: &Request) -> Option<String> {
    let h = req.headers();
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string());
    }
    // Anthropic's clients send the key as `x-api-key`
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    if req.uri().path() != "/ws/inference" {
        return None;
    }
    let from_protocol = h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(String::from));
    from_protocol.or_else(|| {
        req.uri().query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "api_key").then(|| v.to_string())
        })
    })
}

/// Index of the configured key equal to `given`, compared in constant time (every
/// key is compared; only a length difference shows in the timing).
fn key_index(keys: &[String], given: &str) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        if bool::from(k.as_bytes().ct_eq(given.as_bytes())) {
            found = Some(i);
        }
    }
    found
}

fn forbidden(detail: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", detail).into_response()
}

/// Whether a browser `Origin` may call the service cross-site.
pub fn origin_allowed(origins: &[String], origin: Option<&str>) -> bool {
    match origin {
        Some(o) => origins.iter().any(|a| a == "*" || a == o),
        None => false,
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin this request was sent to:
/// its host and port are the request's `Host` (a TLS proxy in front changes only the
/// scheme). An opaque origin (`null`) is no one's.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    norm(authority) == norm(host)
}

/// Pages a browser may open from a link on another site (what they load comes back
/// from their own origin, so it passes the origin check).
const PAGES: &[&str] = &["/", "/explorer", "/docs"];

/// Why a browser request from another origin is refused, or `None` when it may go
/// on. Clients that are not browsers send neither `Origin` nor `Sec-Fetch-Site` and
/// always pass; a page of this service sends its own origin.
fn foreign_origin(req: &Request, allowed: &[String]) -> Option<String> {
    let h = req.headers();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let fetch_site = h
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    match h.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null")) {
        Some(o) if same_origin(o, host.as_deref()) || origin_allowed(allowed, Some(o)) => None,
        Some(o) => {
            let shown: String = o.chars().take(100).collect();
            Some(format!(
                "requests from the origin {shown:?} are refused: only pages of this service, and origins the operator allows (--cors-origin), may call it from a browser"
            ))
        }
        // no Origin: a navigation (a link, a form GET) from another site or another
        // origin of this site may open a page, and nothing else
        None if matches!(fetch_site.as_str(), "cross-site" | "same-site")
            && !PAGES.contains(&req.uri().path()) =>
        {
            Some(
                "browser requests from another site are refused unless their origin is allowed (--cors-origin)"
                    .into(),
            )
        }
        None => None,
    }
}

/// Whether a `Content-Type` value names JSON (`application/json`, `application/*+json`,
/// any parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|s| s.ends_with("+json"))
}

/// Routes whose POST body is a JSON object.
pub const JSON_ROUTES: &[&str] = &[
    "/api/v1/forward",
    "/api/v1/generate",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/score",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/responses/input_tokens",
    "/v1/tokenize",
    "/v1/detokenize",
    "/tokenize",
    "/detokenize",
];

/// The checks every request passes before its handler.
pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let cfg = &st.config;
    // 1. Host allow-list (HTTP/2 carries it in the URI's authority)
    if let Some(hosts) = &cfg.allowed_hosts {
        let given = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let name = host_name(&given);
        if !hosts.iter().any(|h| host_name(h) == name) {
            let shown: String = given.chars().take(100).collect();
            return forbidden(format!(
                "Host {shown:?} is not served here: use one of [{}] or ask the operator to add it (--allowed-hosts)",
                hosts.join(", ")
            ));
        }
    }
    // 2. Browser requests from other origins, WebSocket upgrades included (curl and
    // SDKs send no Origin)
    if let Some(why) = foreign_origin(&req, &cfg.cors_origins) {
        return forbidden(why);
    }
    let path = req.uri().path().to_string();
    // OPTIONS is not open: a CORS preflight from an allowed origin is answered by the
    // CORS layer outside this guard, and any other OPTIONS needs the key like every
    // method (so routes cannot be enumerated without one)
    let open = open_route(&path, cfg.metrics_require_key);
    let address = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| format!("ip:{}", c.0.ip()));
    // 3. API keys
    let mut client = None;
    if !cfg.api_keys.is_empty() && !open {
        match presented_key(&req).and_then(|k| key_index(&cfg.api_keys, &k)) {
            Some(i) => {
                client = Some(format!("key:{i}"));
                req.extensions_mut().insert(Key(i));
            }
            None => {
                // guessing keys costs what a request costs, from the address's bucket
                if let Some(limiter) = &st.limiter {
                    if let Err(wait) = limiter.take(&address) {
                        return rate_limited(limiter, wait).into_response();
                    }
                }
                let mut resp = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "a valid API key is required: send `Authorization: Bearer <key>` (WebSocket: also the subprotocol `bearer.<key>` or `?api_key=<key>`)",
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return resp;
            }
        }
    }
    // 4. JSON bodies only: a form or text/plain POST (what a page on another site can
    // send without a CORS preflight) never reaches a handler
    if req.method() == axum::http::Method::POST && JSON_ROUTES.contains(&path.as_str()) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?"));
        if !ct.is_some_and(is_json) {
            let given = ct.map_or("none".to_string(), |c| {
                format!("{:?}", c.chars().take(100).collect::<String>())
            });
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!(
                    "the body must be JSON: send `Content-Type: application/json` (given: {given})"
                ),
            )
            .into_response();
        }
    }
    // 5. Rate limit, per key or per client address
    if let Some(limiter) = &st.limiter {
        if !open {
            let who = client.unwrap_or(address);
            if let Err(wait) = limiter.take(&who) {
                return rate_limited(limiter, wait).into_response();
            }
            req.extensions_mut().insert(Client(who));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(valid_request_id("abc-DEF_1.2:3"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id("a=b"));
        assert!(!valid_request_id("\"x\""));
        assert!(!valid_request_id(&"a".repeat(129)));
        assert!(valid_request_id(&"a".repeat(128)));
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("LocalHost:8000"), "localhost");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("example.com."), "example.com");
        let d = default_allowed_hosts(&"127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(d.contains(&"localhost".to_string()));
        assert!(default_allowed_hosts(&"0.0.0.0:9".parse().unwrap()).is_none());
    }

    #[test]
    fn origins_and_content_types() {
        assert!(same_origin("http://127.0.0.1:8000", Some("127.0.0.1:8000")));
        assert!(same_origin("https://Example.com", Some("example.com")));
        assert!(!same_origin(
            "http://localhost:3000",
            Some("localhost:8000")
        ));
        assert!(!same_origin("http://localhost", Some("localhost:8000")));
        assert!(!same_origin("null", Some("localhost:8000")));
        assert!(!same_origin("http://a", None));
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("multipart/form-data; boundary=x"));
        assert!(!is_json("text/json+x"));
    }

    #[test]
    fn keys_compare_whole() {
        let keys = vec!["alpha".to_string(), "beta".to_string()];
        assert_eq!(key_index(&keys, "beta"), Some(1));
        assert_eq!(key_index(&keys, "bet"), None);
        assert_eq!(key_index(&keys, "betaa"), None);
        assert_eq!(key_index(&keys, ""), None);
    }
}
