//! The HTTP client behind `http-send`: the host, not the plugin, talks to the network.
//!
//! Rules, checked at every send:
//! - the URL is `http` or `https` and its host is on the binding's allow-list (`example.com`,
//!   `*.example.com` for subdomains, `*` for any host);
//! - the host resolves (here, never in the guest) only to public addresses: loopback, private,
//!   shared (CGNAT), link-local (which includes cloud metadata at 169.254.169.254), multicast,
//!   documentation and reserved ranges are refused, also inside the IPv6 forms that embed an
//!   IPv4 address (mapped, compatible, translated, NAT64, 6to4); Teredo and local-use NAT64,
//!   which tunnel to any IPv4 address, are refused whole. The check runs in the resolver the connection uses, so DNS rebinding between a
//!   check and the connect is impossible. `allow_private_networks` lifts it (tests, on-premise
//!   receivers);
//! - redirects are not followed, proxies from the environment are not used;
//! - connect timeout 3 s, total timeout the plugin's (at most 10 s);
//! - request bodies up to 1 MiB; response bodies are cut at 64 KiB.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use crate::sandbox::bindings::channel_host::{HttpError, HttpRequest, HttpResponse};

/// Longest a request may take, whatever the plugin asks for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to establish a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest request body a plugin may send.
pub const MAX_REQUEST_BODY: usize = 1 << 20;
/// Response bytes returned to the plugin; the rest is cut.
pub const MAX_RESPONSE_BODY: usize = 64 << 10;

/// Headers the host sets itself; a plugin that sets them gets `invalid-request`.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// The HTTP client shared by all channel calls.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    allow_private: bool,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client that refuses non-public addresses unless `allow_private` is set.
    pub fn new(allow_private: bool) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()
            .expect("the HTTP client configuration is valid");
        Self {
            client,
            allow_private,
        }
    }

    /// Sends `request` under the rules in the module docs.
    pub async fn send(
        &self,
        allowed_hosts: &[String],
        request: HttpRequest,
    ) -> Result<HttpResponse, HttpError> {
        // Errors never quote the URL: they are recorded on the message, which its sender
        // reads, and a receiver's path or query often holds a token.
        let url = Url::parse(&request.url)
            .map_err(|error| HttpError::InvalidRequest(format!("not a valid URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "the URL scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        let host = match url.host() {
            Some(Host::Domain(domain)) => domain.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(HttpError::InvalidRequest("the URL has no host".into())),
        };
        if !host_allowed(allowed_hosts, &host) {
            return Err(HttpError::NotAllowed(format!(
                "{host} is not on this binding's allow-list"
            )));
        }
        if !self.allow_private
            && let Ok(ip) = host.parse::<IpAddr>()
            && let Some(kind) = blocked_kind(ip)
        {
            return Err(HttpError::BlockedAddress(format!(
                "{ip} is a {kind} address"
            )));
        }
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            other => {
                return Err(HttpError::InvalidRequest(format!(
                    "method {other} is not allowed; use GET, POST, PUT, PATCH or DELETE"
                )));
            }
        };
        if request.body.len() > MAX_REQUEST_BODY {
            return Err(HttpError::InvalidRequest(format!(
                "the body is {} bytes; the limit is {MAX_REQUEST_BODY}",
                request.body.len()
            )));
        }
        let headers = headers(&request.headers)?;
        let timeout = request
            .timeout_ms
            .map_or(MAX_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)))
            .min(MAX_TIMEOUT);

        let mut response = self
            .client
            .request(method, url)
            .headers(headers)
            .body(request.body)
            .timeout(timeout)
            .send()
            .await
            .map_err(transport_error)?;

        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|value| (name.as_str().to_owned(), value.to_owned()))
            })
            .collect();
        let mut body = Vec::new();
        let mut body_truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = MAX_RESPONSE_BODY - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                body_truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
            body_truncated,
        })
    }
}

fn headers(pairs: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::InvalidRequest(format!("invalid header name {name:?}")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(HttpError::InvalidRequest(format!(
                "header {header} is set by the host"
            )));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| HttpError::InvalidRequest(format!("invalid value for header {header}")))?;
        headers.append(header, value);
    }
    Ok(headers)
}

/// Whether `host` (lowercase) matches an entry of the allow-list.
pub fn host_allowed(allowed_hosts: &[String], host: &str) -> bool {
    allowed_hosts.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        match entry.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            None => entry == host,
        }
    })
}

/// Why `ip` may not be reached by plugins, or `None` when it is a public address.
pub fn blocked_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => blocked_v4(ip),
        IpAddr::V6(ip) => blocked_v6(ip),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    ];
    RANGES.iter().find_map(|(net, kind)| {
        let net: Ipv4Net = net.parse().expect("valid IPv4 network");
        net.contains(&ip).then_some(*kind)
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    const RANGES: &[(&str, &str)] = &[
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("100::/64", "discard"),
        // Teredo tunnels to any IPv4 address through a relay; the client address inside is
        // obfuscated, so the whole range is refused rather than unpacked.
        ("2001::/32", "Teredo (tunnelled IPv4)"),
        // Local-use NAT64 (RFC 8215): the operator's own translator, to any IPv4 address.
        ("64:ff9b:1::/48", "local-use NAT64"),
    ];
    if let Some(kind) = RANGES.iter().find_map(|(net, kind)| {
        let net: Ipv6Net = net.parse().expect("valid IPv6 network");
        net.contains(&ip).then_some(*kind)
    }) {
        return Some(kind);
    }
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    let within = |net: &str| {
        let net: Ipv6Net = net.parse().expect("valid IPv6 network");
        net.contains(&ip)
    };
    let segments = ip.segments();
    let last_32 = embedded(segments[6], segments[7]);
    // NAT64 (64:ff9b::/96): the IPv4 address in the last 32 bits is what the connection reaches.
    if within("64:ff9b::/96") {
        return blocked_v4(last_32);
    }
    // 6to4 (2002::/16): a relay reaches the IPv4 address in bits 16 to 48.
    if within("2002::/16") {
        return blocked_v4(embedded(segments[1], segments[2]));
    }
    // IPv4-compatible (::a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d): deprecated forms no
    // public receiver uses; refused whatever they embed.
    if within("::/96") || within("::ffff:0:0:0/96") {
        return Some(blocked_v4(last_32).unwrap_or("IPv4-compatible (deprecated)"));
    }
    None
}

/// A name that resolved to a refused address; carried through reqwest's error chain.
#[derive(Debug)]
struct BlockedAddress {
    host: String,
    ip: IpAddr,
    kind: &'static str,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, a {} address",
            self.host, self.ip, self.kind
        )
    }
}

impl StdError for BlockedAddress {}

/// Resolves names for the client and refuses them when any address is not public.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private
                && let Some((ip, kind)) = addrs
                    .iter()
                    .find_map(|addr| blocked_kind(addr.ip()).map(|kind| (addr.ip(), kind)))
            {
                return Err(
                    Box::new(BlockedAddress { host, ip, kind }) as Box<dyn StdError + Send + Sync>
                );
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn transport_error(error: reqwest::Error) -> HttpError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(blocked) = cause.downcast_ref::<BlockedAddress>() {
            return HttpError::BlockedAddress(blocked.to_string());
        }
        source = cause.source();
    }
    if error.is_timeout() {
        return HttpError::Timeout;
    }
    // reqwest names the whole URL ("error sending request for url (…)"); the causes say what
    // went wrong without it.
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    HttpError::Connection(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(ip: &str) -> Option<&'static str> {
        blocked_kind(ip.parse().unwrap())
    }

    #[test]
    fn refuses_non_public_ipv4() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.100.100.200", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
        ] {
            assert_eq!(blocked(ip), Some(kind), "{ip}");
        }
    }

    #[test]
    fn accepts_public_addresses() {
        for ip in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(blocked(ip), None, "{ip}");
        }
    }

    #[test]
    fn refuses_non_public_ipv6_including_embedded_ipv4() {
        for ip in [
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            // IPv4-compatible, IPv4-translated, 6to4 of private addresses, Teredo, local NAT64.
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
            "fec0::1",
        ] {
            assert!(blocked(ip).is_some(), "{ip}");
        }
        assert_eq!(blocked("::127.0.0.1"), Some("loopback"));
        assert_eq!(blocked("2002:7f00:1::"), Some("loopback"));
        assert_eq!(blocked("64:ff9b::808:808"), None);
        // 6to4 of a public address is public.
        assert_eq!(blocked("2002:808:808::1"), None);
    }

    #[test]
    fn allow_list_matches_exact_hosts_subdomains_and_star() {
        let list = |entries: &[&str]| entries.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert!(host_allowed(&list(&["example.com"]), "example.com"));
        assert!(!host_allowed(&list(&["example.com"]), "api.example.com"));
        assert!(host_allowed(&list(&["*.example.com"]), "api.example.com"));
        assert!(!host_allowed(&list(&["*.example.com"]), "example.com"));
        assert!(!host_allowed(&list(&["*.example.com"]), "evilexample.com"));
        assert!(host_allowed(&list(&["*"]), "anything.test"));
        assert!(host_allowed(&list(&["Example.COM"]), "example.com"));
        assert!(!host_allowed(&[], "example.com"));
    }

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: Some(1_000),
        }
    }

    #[tokio::test]
    async fn send_refuses_before_touching_the_network() {
        let client = HttpClient::new(false);
        let any = vec!["*".to_string()];
        assert!(matches!(
            client.send(&[], request("https://example.com/")).await,
            Err(HttpError::NotAllowed(_))
        ));
        assert_eq!(
            client
                .send(&any, request("http://127.0.0.1:9/"))
                .await
                .unwrap_err(),
            HttpError::BlockedAddress("127.0.0.1 is a loopback address".into())
        );
        assert!(matches!(
            client.send(&any, request("http://[::1]:9/")).await,
            Err(HttpError::BlockedAddress(_))
        ));
        assert!(matches!(
            client.send(&any, request("ftp://example.com/")).await,
            Err(HttpError::InvalidRequest(_))
        ));
        let mut with_host = request("https://example.com/");
        with_host.headers.push(("Host".into(), "evil".into()));
        assert_eq!(
            client.send(&any, with_host).await.unwrap_err(),
            HttpError::InvalidRequest("header host is set by the host".into())
        );
        let mut big = request("https://example.com/");
        big.body = vec![0; MAX_REQUEST_BODY + 1];
        assert!(matches!(
            client.send(&any, big).await,
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect() {
        let client = HttpClient::new(false);
        let error = client
            .send(&["localhost".to_string()], request("http://localhost:9/"))
            .await
            .unwrap_err();
        let HttpError::BlockedAddress(reason) = error else {
            panic!("expected a blocked address, got {error:?}");
        };
        assert!(reason.starts_with("localhost resolves to "), "{reason}");
    }
}
