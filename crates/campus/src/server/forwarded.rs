//! Where a request came from: its scheme, host and client address, from the
//! connection or, only on a connection from a trusted proxy, from the
//! `X-Forwarded-*` headers that proxy wrote (SPEC §5.13).
//!
//! Behind a TLS-terminating proxy (`deploy/nginx.conf`) every connection comes
//! from the proxy: without these headers DRF's absolute page links would say
//! `http://` and send clients over plaintext, and the login throttle would count
//! every client as the proxy's one address. But anyone can send the headers, so
//! they are believed only when the connection's peer is in `TRUSTED_PROXIES`
//! (empty by default, like Django's `SECURE_PROXY_SSL_HEADER` and
//! `USE_X_FORWARDED_HOST`, off unless set); from anyone else they are ignored.
//!
//! A proxy appends to a header a client already sent, so of
//! `X-Forwarded-Proto` and `X-Forwarded-Host` only the last value counts (the
//! one the nearest proxy, which is trusted, wrote), and `X-Forwarded-For` is
//! read from the right: the client is the first address no trusted proxy
//! claims. An address a client wrote further left is never reached.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, header, request::Parts};
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-*` headers are believed: addresses and
/// networks, parsed from `TRUSTED_PROXIES` (`127.0.0.1,10.0.0.0/8,::1`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match part.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "`{part}` is not an address or a network (such as 10.0.0.0/8)"
                        ));
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets.into()))
    }
}

/// The scheme and host a client used, for absolute links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub scheme: &'static str,
    pub host: &'a str,
}

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A DNS name is at most 253 bytes; with a port, an address fits in this.
const MAX_HOST: usize = 255;

/// Most `X-Forwarded-For` hops looked at: past them the client is taken to be
/// the last one reached (a chain of more trusted proxies is not a deployment).
const MAX_HOPS: usize = 16;

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether this request's connection comes from a trusted proxy. A request
    /// routed in process (tests, no connection) comes from nobody.
    fn via_proxy(&self, parts: &Parts) -> bool {
        !self.is_empty() && peer(parts).is_some_and(|ip| self.trusts(ip))
    }

    /// The scheme and host the client used. `Host` (or `localhost` when it is
    /// missing or not a plain host name or address of at most 255 bytes: it
    /// ends up in page links and in the list memo's keys) and `http`, unless a
    /// trusted proxy says otherwise with a valid value.
    pub fn origin<'a>(&self, parts: &'a Parts) -> Origin<'a> {
        let direct = Origin {
            scheme: "http",
            host: valid_host(
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok()),
            )
            .unwrap_or("localhost"),
        };
        if !self.via_proxy(parts) {
            return direct;
        }
        let scheme = match last_value(&parts.headers, &X_FORWARDED_PROTO) {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ => direct.scheme,
        };
        let host = valid_host(last_value(&parts.headers, &X_FORWARDED_HOST)).unwrap_or(direct.host);
        Origin { scheme, host }
    }

    /// The client's address: the connection's peer, or behind trusted proxies
    /// the first address from the right of `X-Forwarded-For` that is not one
    /// of them. `None` when routed in process.
    pub fn client(&self, parts: &Parts) -> Option<IpAddr> {
        let peer = peer(parts)?;
        if self.is_empty() || !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let hops = parts
            .headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','))
            .take(MAX_HOPS);
        for hop in hops {
            // A hop that is not an address ends the chain: what is left of it
            // was not written by a trusted proxy in a form it could check.
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The last comma-separated value of the last `name` header, trimmed.
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    Some(value.rsplit(',').next()?.trim())
}

/// `host` if it is a plain host name or address (with a port) of at most 255 bytes.
fn valid_host(host: Option<&str>) -> Option<&str> {
    host.filter(|h| {
        !h.is_empty()
            && h.len() <= MAX_HOST
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: Option<&str>, headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder().uri("/api/faculty/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        if let Some(p) = peer {
            parts
                .extensions
                .insert(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
        }
        parts
    }

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    const FORWARDED: [(&str, &str); 4] = [
        ("host", "10.0.0.5:8001"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example.edu"),
        ("x-forwarded-for", "203.0.113.9"),
    ];

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let trusted = proxies("127.0.0.1, 10.0.0.0/8");
        let from_proxy = parts(Some("10.1.2.3:5000"), &FORWARDED);
        assert_eq!(
            trusted.origin(&from_proxy),
            Origin {
                scheme: "https",
                host: "api.example.edu"
            }
        );
        assert_eq!(trusted.client(&from_proxy), "203.0.113.9".parse().ok());
        // The same headers from a client, or with no proxy configured.
        for (set, peer) in [
            (&trusted, "198.51.100.7:5000"),
            (&proxies(""), "10.1.2.3:5000"),
        ] {
            let direct = parts(Some(peer), &FORWARDED);
            assert_eq!(
                set.origin(&direct),
                Origin {
                    scheme: "http",
                    host: "10.0.0.5:8001"
                }
            );
            assert_eq!(
                set.client(&direct),
                Some(peer.parse::<SocketAddr>().unwrap().ip())
            );
        }
    }

    #[test]
    fn a_client_cannot_prepend_its_way_past_the_proxy() {
        let trusted = proxies("127.0.0.1");
        let spoofed = parts(
            Some("127.0.0.1:40000"),
            &[
                ("x-forwarded-proto", "http, https"),
                ("x-forwarded-for", "127.0.0.1, 192.0.2.1, 203.0.113.9"),
            ],
        );
        // The proxy wrote the last value of each; the client wrote the rest.
        assert_eq!(trusted.origin(&spoofed).scheme, "https");
        assert_eq!(trusted.client(&spoofed), "203.0.113.9".parse().ok());
        // A chain of trusted proxies is walked through.
        let chain = parts(
            Some("127.0.0.1:40000"),
            &[("x-forwarded-for", "203.0.113.9, 127.0.0.1")],
        );
        assert_eq!(trusted.client(&chain), "203.0.113.9".parse().ok());
    }

    #[test]
    fn invalid_forwarded_values_fall_back_to_the_connection() {
        let trusted = proxies("::1, 127.0.0.1");
        let bad = parts(
            Some("[::ffff:127.0.0.1]:40000"),
            &[
                ("host", "campus.local"),
                ("x-forwarded-proto", "gopher"),
                ("x-forwarded-host", "evil.example/path?x"),
                ("x-forwarded-for", "not-an-address"),
            ],
        );
        assert_eq!(
            trusted.origin(&bad),
            Origin {
                scheme: "http",
                host: "campus.local"
            }
        );
        assert_eq!(trusted.client(&bad), "::ffff:127.0.0.1".parse().ok());
        let long = "a".repeat(256);
        let too_long = parts(None, &[("host", long.as_str())]);
        assert_eq!(trusted.origin(&too_long).host, "localhost");
        assert_eq!(trusted.client(&too_long), None);
    }

    #[test]
    fn the_setting_names_what_it_cannot_read() {
        let err = "10.0.0.0/8, proxy.local"
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert!(err.contains("`proxy.local`"), "{err}");
        assert!(proxies("").is_empty());
        assert!(proxies("10.1.2.3/8").trusts("10.200.0.1".parse().unwrap()));
    }
}
