//! HTTP CONNECT proxies, chosen and used by gRPC C-core's rules
//! (`src/core/handshaker/http_connect/` in grpc/grpc):
//!
//! * Which proxy: the channel option `grpc.http_proxy`, else the first of
//!   the environment variables `grpc_proxy`, `https_proxy`, `http_proxy`
//!   that is set (lower-case names only: C-core reads no others). An empty
//!   value means no proxy (the variables after it are not read); so does
//!   `grpc.enable_http_proxy` = 0.
//! * Its form: `http://[user:password@]host[:port]`; the scheme must be
//!   `http`, a bare `host:port` is not a proxy URL. Without a port the
//!   proxy's port is 443: C-core resolves the proxy's name as it resolves
//!   targets, with gRPC's default port. C-core logs a malformed value and
//!   connects directly; rgrpc refuses to create the channel instead, so a
//!   typo never bypasses the proxy unseen.
//! * Who bypasses it: `no_grpc_proxy`, else `no_proxy` (environment only),
//!   a comma-separated list. A target's host bypasses the proxy when it
//!   ends with an entry, compared without case (C-core's rule: `example.com`
//!   covers `api.example.com`, and also `myexample.com`), or when the host is
//!   an IP address inside an entry written as a CIDR block (`10.0.0.0/8`).
//!   `*` is not special. Unix-socket targets are never proxied.
//! * The tunnel: `CONNECT host:port HTTP/1.1` with `Host` and, when the URL
//!   has user info, `Proxy-Authorization: Basic` of it percent-decoded; a
//!   2xx answer makes the connection the server's, and TLS (to the server's
//!   name) and HTTP/2 run inside it. The CONNECT target is the channel's
//!   target as written (the proxy resolves it); for literal addresses, the
//!   address being dialled.

use super::options::ChannelOptions;
use super::target::{Address, Target};
use crate::status::{Code, Status};
use base64::Engine;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The environment variables naming the proxy, in C-core's order.
const PROXY_ENV: [&str; 3] = ["grpc_proxy", "https_proxy", "http_proxy"];
/// The environment variables listing who bypasses it, in C-core's order.
const NO_PROXY_ENV: [&str; 2] = ["no_grpc_proxy", "no_proxy"];
/// The proxy's port when its URL has none (C-core: gRPC's default port).
const DEFAULT_PROXY_PORT: u16 = 443;
/// The longest answer head to CONNECT accepted, in bytes.
const MAX_RESPONSE_HEAD: usize = 8 << 10;

/// An HTTP proxy from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpProxy {
    /// A name or an IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Proxy-Authorization` value (`Basic ...`), from the URL's user info.
    pub(crate) auth: Option<String>,
}

impl std::fmt::Display for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How a channel's connections go through its proxy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProxyRoute {
    pub(crate) proxy: HttpProxy,
    /// `Some(host:port)`: the target is a name, which the proxy resolves;
    /// the channel resolves the proxy's name in its place (as C-core
    /// does), so every endpoint is an address of the proxy, and CONNECT
    /// asks for this. `None`: the endpoints are the target's literal
    /// addresses; the proxy is resolved at each dial and CONNECT asks for
    /// the endpoint's `ip:port`.
    pub(crate) connect_to: Option<String>,
}

impl ProxyRoute {
    /// TCP to the proxy, for a connection to `endpoint`. Errors say which
    /// proxy could not be reached and why.
    pub(crate) async fn dial(&self, endpoint: SocketAddr) -> Result<TcpStream, String> {
        let p = &self.proxy;
        if self.connect_to.is_some() {
            return TcpStream::connect(endpoint)
                .await
                .map_err(|e| format!("HTTP proxy {p} at {endpoint}: {e}"));
        }
        let addrs = tokio::net::lookup_host((p.host.as_str(), p.port))
            .await
            .map_err(|e| format!("HTTP proxy {p}: resolving {}: {e}", p.host))?;
        let mut errors = Vec::new();
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => errors.push(format!("{a}: {e}")),
            }
        }
        if errors.is_empty() {
            return Err(format!(
                "HTTP proxy {p}: resolving {}: no addresses",
                p.host
            ));
        }
        Err(format!("HTTP proxy {p}: {}", errors.join("; ")))
    }

    /// CONNECT through the proxy on `io` (dialled by [`ProxyRoute::dial`])
    /// to the server at `endpoint`; a failure is UNAVAILABLE, in words.
    pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        endpoint: SocketAddr,
    ) -> Result<(), Status> {
        let to = match &self.connect_to {
            Some(t) => t.clone(),
            None => endpoint.to_string(),
        };
        tunnel(io, &to, self.proxy.auth.as_deref())
            .await
            .map_err(|m| Status::new(Code::Unavailable, format!("{m} (proxy {})", self.proxy)))
    }
}

/// A channel's proxy route, and the target its resolver resolves (the
/// proxy's name in place of a target name; see [`ProxyRoute::connect_to`]).
/// `env` reads an environment variable. Errors describe a malformed
/// proxy setting and where it came from.
pub(crate) fn route(
    target: Target,
    opts: &ChannelOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Target, Option<Arc<ProxyRoute>>), String> {
    if target
        .addresses
        .iter()
        .any(|a| matches!(a, Address::Unix(_) | Address::UnixAbstract(_)))
    {
        return Ok((target, None));
    }
    let host = host_of(&target.authority);
    let Some(proxy) = choose(
        host,
        opts.http_proxy.as_deref(),
        opts.enable_http_proxy,
        env,
    )?
    else {
        return Ok((target, None));
    };
    if target.addresses.iter().all(|a| matches!(a, Address::Ip(_))) {
        let route = ProxyRoute {
            proxy,
            connect_to: None,
        };
        return Ok((target, Some(Arc::new(route))));
    }
    let at = match proxy.host.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(SocketAddr::new(ip, proxy.port)),
        Err(_) => Address::Dns {
            host: proxy.host.clone(),
            port: proxy.port,
        },
    };
    let route = ProxyRoute {
        proxy,
        connect_to: Some(target.authority.clone()),
    };
    let resolved = Target {
        addresses: vec![at],
        authority: target.authority,
        // The proxy's name is the system's to resolve.
        dns_server: None,
    };
    Ok((resolved, Some(Arc::new(route))))
}

/// The host of a target's authority (`host:port` or `[v6]:port`).
fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The proxy for a target whose host is `target_host` (an IPv6 address
/// without brackets), from `option` (`grpc.http_proxy`) or the environment
/// read through `env`, or None. See the module's docs for the rules.
pub(crate) fn choose(
    target_host: &str,
    option: Option<&str>,
    enabled: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HttpProxy>, String> {
    if !enabled {
        return Ok(None);
    }
    let (from, value) = match option {
        Some(v) => ("channel option grpc.http_proxy".to_string(), v.to_string()),
        None => match PROXY_ENV.iter().find_map(|k| env(k).map(|v| (k, v))) {
            Some((k, v)) => (format!("environment variable {k}"), v),
            None => return Ok(None),
        },
    };
    if value.is_empty() {
        return Ok(None);
    }
    let proxy = parse_url(&value).map_err(|e| format!("{from}: {e}"))?;
    if let Some(list) = NO_PROXY_ENV.iter().find_map(|k| env(k)) {
        if bypasses(target_host, &list) {
            return Ok(None);
        }
    }
    Ok(Some(proxy))
}

/// Parses `http://[user:password@]host[:port][/...]`; the user info and
/// the host are percent-decoded (as C-core's URI parser does).
pub(crate) fn parse_url(value: &str) -> Result<HttpProxy, String> {
    let bad = |why: &str| {
        format!("{value:?} is not an HTTP proxy URL (http://[user:password@]host[:port]): {why}")
    };
    let (scheme, rest) = value
        .split_once(':')
        .ok_or_else(|| bad("it does not start with http://"))?;
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(bad("it does not start with http://"));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad(&format!(
            "the scheme is {scheme:?}; only http proxies are supported"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((u, hp)) => (Some(u), hp),
        None => (None, authority),
    };
    let host_port =
        String::from_utf8(percent_decode(host_port)).map_err(|_| bad("the host is not UTF-8"))?;
    let (host, port) = match host_port.strip_prefix('[') {
        Some(r) => {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("'[' without ']'"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad(&format!("{h:?} in brackets is not an IPv6 address")));
            }
            let port = match after {
                "" => None,
                a => Some(
                    a.strip_prefix(':')
                        .ok_or_else(|| bad(&format!("unexpected {a:?} after ']'")))?,
                ),
            };
            (h, port)
        }
        None => match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port.as_str(), None),
        },
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(bad(&format!("{host:?} is not a host name")));
    }
    let port = match port {
        None | Some("") => DEFAULT_PROXY_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(&format!("port {p:?} is not a port number")))?,
    };
    let auth = user_info.filter(|u| !u.is_empty()).map(|u| {
        let plain = percent_decode(u);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        )
    });
    Ok(HttpProxy {
        host: host.to_string(),
        port,
        auth,
    })
}

/// `%XY` to the byte; anything else, including a `%` not followed by two
/// hex digits, as it is (C-core's permissive decoding).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// True when `host` matches an entry of a `no_proxy` list: it ends with
/// the entry (without case), or it is an IP address inside an entry that
/// is a CIDR block.
fn bypasses(host: &str, list: &str) -> bool {
    let ip = host.parse::<IpAddr>().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|e| ends_with_ignore_case(host, e) || ip.is_some_and(|ip| in_cidr(ip, e)))
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `ip` is inside `block` (`address/bits`, same address family).
fn in_cidr(ip: IpAddr, block: &str) -> bool {
    let Some((net, bits)) = block.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.trim().parse::<IpAddr>(), bits.trim().parse::<u32>()) else {
        return false;
    };
    let (a, n, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a) as u128, u32::from(n) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let bits = bits.min(width);
    bits == 0 || a >> (width - bits) == n >> (width - bits)
}

/// Asks the proxy on `io` for a tunnel to `connect_to` (`host:port`) and
/// reads its answer head, one byte at a time so that nothing after the
/// head (which belongs to the tunnel) is consumed. Ok on a 2xx status.
/// The caller bounds the time it takes.
pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    connect_to: &str,
    auth: Option<&str>,
) -> Result<(), String> {
    let mut req = format!("CONNECT {connect_to} HTTP/1.1\r\nHost: {connect_to}\r\n");
    if let Some(a) = auth {
        req.push_str("Proxy-Authorization: ");
        req.push_str(a);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let sent = async {
        io.write_all(req.as_bytes()).await?;
        io.flush().await
    };
    sent.await
        .map_err(|e| format!("sending CONNECT to {connect_to} to the HTTP proxy: {e}"))?;
    let mut head = Vec::with_capacity(128);
    while !(head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n")) {
        if head.len() == MAX_RESPONSE_HEAD {
            return Err(format!(
                "the HTTP proxy's answer to CONNECT to {connect_to} has no end of headers in its first {MAX_RESPONSE_HEAD} bytes"
            ));
        }
        let mut byte = [0u8];
        let n = io.read(&mut byte).await.map_err(|e| {
            format!("reading the HTTP proxy's answer to CONNECT to {connect_to}: {e}")
        })?;
        if n == 0 {
            return Err(if head.is_empty() {
                format!("the HTTP proxy closed the connection without answering CONNECT to {connect_to}")
            } else {
                format!("the HTTP proxy closed the connection in the middle of its answer to CONNECT to {connect_to}")
            });
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text
        .trim_start_matches(['\r', '\n'])
        .lines()
        .next()
        .unwrap_or("");
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let reason = printable(parts.next().unwrap_or("").trim());
    if !version.starts_with("HTTP/") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "the HTTP proxy's answer to CONNECT to {connect_to} is not an HTTP response: {:?}",
            printable(line)
        ));
    }
    if code.starts_with('2') {
        return Ok(());
    }
    let sep = if reason.is_empty() { "" } else { " " };
    Err(format!(
        "the HTTP proxy refused CONNECT to {connect_to}: {code}{sep}{reason}"
    ))
}

/// At most 200 characters, control characters dropped (a peer's text in
/// our messages).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::target;
    use std::collections::HashMap;
    use tokio::io::duplex;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn chosen(host: &str, option: Option<&str>, env: &[(&str, &str)]) -> Option<HttpProxy> {
        choose(host, option, true, &env_of(env)).unwrap()
    }

    fn proxy(host: &str, port: u16) -> HttpProxy {
        HttpProxy {
            host: host.into(),
            port,
            auth: None,
        }
    }

    #[test]
    fn where_the_proxy_comes_from() {
        let all = [
            ("grpc_proxy", "http://g:1"),
            ("https_proxy", "http://s:2"),
            ("http_proxy", "http://h:3"),
        ];
        assert_eq!(chosen("x", None, &[]), None);
        assert_eq!(chosen("x", None, &all), Some(proxy("g", 1)));
        assert_eq!(chosen("x", None, &all[1..]), Some(proxy("s", 2)));
        assert_eq!(chosen("x", None, &all[2..]), Some(proxy("h", 3)));
        // The option first; upper-case names are not read (nor by C-core).
        assert_eq!(chosen("x", Some("http://o:4"), &all), Some(proxy("o", 4)));
        assert_eq!(chosen("x", None, &[("HTTPS_PROXY", "http://u:5")]), None);
        assert_eq!(chosen("x", None, &[("HTTP_PROXY", "http://u:5")]), None);
        // Empty = no proxy, and the next source is not read.
        assert_eq!(chosen("x", Some(""), &all), None);
        assert_eq!(
            chosen(
                "x",
                None,
                &[("grpc_proxy", ""), ("http_proxy", "http://h:3")]
            ),
            None
        );
        // Disabled: nothing is read, not even a malformed value.
        assert_eq!(
            choose("x", Some("nonsense"), false, &env_of(&all)).unwrap(),
            None
        );
    }

    #[test]
    fn url_forms() {
        let p = parse_url("http://proxy.example:3128").unwrap();
        assert_eq!(p, proxy("proxy.example", 3128));
        // No port: gRPC's default port, as C-core resolves the proxy name.
        assert_eq!(parse_url("http://proxy").unwrap(), proxy("proxy", 443));
        assert_eq!(parse_url("HTTP://p:8/ignored?x#y").unwrap(), proxy("p", 8));
        assert_eq!(
            parse_url("http://10.1.2.3:8").unwrap(),
            proxy("10.1.2.3", 8)
        );
        assert_eq!(parse_url("http://[::1]:8").unwrap(), proxy("::1", 8));
        assert_eq!(parse_url("http://[::1]").unwrap(), proxy("::1", 443));
        assert_eq!(parse_url("http://[::1]:8").unwrap().to_string(), "[::1]:8");
    }

    #[test]
    fn user_info_becomes_basic_auth_percent_decoded() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let p = parse_url("http://user:pass@p:1").unwrap();
        assert_eq!(p.auth, Some(format!("Basic {}", b64("user:pass"))));
        assert_eq!((p.host.as_str(), p.port), ("p", 1));
        // %40 is '@', %3A ':', %25 '%'; a bad escape stays as it is; the
        // last '@' ends the user info.
        let p = parse_url("http://us%40er:p%3Aa%25ss%zz@p:1").unwrap();
        assert_eq!(p.auth, Some(format!("Basic {}", b64("us@er:p:a%ss%zz"))));
        let p = parse_url("http://a@b:c@p:1").unwrap();
        assert_eq!(p.auth, Some(format!("Basic {}", b64("a@b:c"))));
        assert_eq!(p.host, "p");
        // A name alone is user info too; an empty one is none.
        let p = parse_url("http://token@p:1").unwrap();
        assert_eq!(p.auth, Some(format!("Basic {}", b64("token"))));
        assert_eq!(parse_url("http://@p:1").unwrap().auth, None);
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("a%41"), b"aA");
    }

    #[test]
    fn malformed_urls_name_their_source() {
        for bad in [
            "proxy:3128",
            "127.0.0.1:3128",
            "proxy",
            "https://p:1",
            "socks5://p:1",
            "http://",
            "http://:80",
            "http://user@",
            "http://p:99999",
            "http://p:0",
            "http://p:x",
            "http://p:+1",
            "http://[::1",
            "http://[nope]:1",
            "http://[::1]x",
            "http://pr oxy:1",
            "http://::1:3128",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} was accepted");
        }
        let e = choose("x", None, true, &env_of(&[("https_proxy", "p:1")])).unwrap_err();
        assert!(e.contains("environment variable https_proxy"), "{e}");
        assert!(e.contains("\"p:1\""), "{e}");
        let e = choose("x", Some("ftp://p"), true, &env_of(&[])).unwrap_err();
        assert!(e.contains("channel option grpc.http_proxy"), "{e}");
        assert!(e.contains("only http"), "{e}");
    }

    #[test]
    fn no_proxy_lists() {
        let p = Some(proxy("p", 1));
        let with = |host: &str, list: &str| chosen(host, Some("http://p:1"), &[("no_proxy", list)]);
        // Suffixes without case, as C-core compares.
        assert_eq!(with("api.example.com", "example.com"), None);
        assert_eq!(with("API.Example.COM", "example.com"), None);
        assert_eq!(with("api.example.com", ".example.com"), None);
        assert_eq!(with("example.com", "example.com"), None);
        assert_eq!(with("myexample.com", "example.com"), None);
        assert_eq!(with("example.org", "example.com"), p);
        // Lists: spaces and empty entries are skipped.
        assert_eq!(with("b.test", " a.test , ,b.test"), None);
        assert_eq!(with("c.test", " a.test , ,b.test"), p);
        // CIDR blocks for IP targets.
        assert_eq!(with("10.1.2.3", "10.0.0.0/8"), None);
        assert_eq!(with("11.1.2.3", "10.0.0.0/8"), p);
        assert_eq!(with("192.168.1.77", "192.168.1.64/26"), None);
        assert_eq!(with("192.168.1.128", "192.168.1.64/26"), p);
        assert_eq!(with("1.2.3.4", "0.0.0.0/0"), None);
        assert_eq!(with("2001:db8::5", "2001:db8::/32"), None);
        assert_eq!(with("2001:db9::5", "2001:db8::/32"), p);
        assert_eq!(with("10.1.2.3", "::/0"), p, "families differ");
        assert_eq!(with("10.1.2.3", "10.0.0.0/x"), p);
        assert_eq!(with("host.test", "10.0.0.0/8"), p);
        // An exact IP, by suffix; '*' is not special (nor in C-core).
        assert_eq!(with("127.0.0.1", "127.0.0.1"), None);
        assert_eq!(with("host.test", "*"), p);
        // no_grpc_proxy first (even when it does not match).
        let env = [("no_grpc_proxy", "a.test"), ("no_proxy", "b.test")];
        assert_eq!(chosen("a.test", Some("http://p:1"), &env), None);
        assert_eq!(chosen("b.test", Some("http://p:1"), &env), p);
        // The proxy's own URL is checked even for a bypassed target.
        assert!(choose(
            "a.test",
            Some("nonsense"),
            true,
            &env_of(&[("no_proxy", "a.test")])
        )
        .is_err());
    }

    fn route_of(
        t: &str,
        proxy_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> (Target, Option<Arc<ProxyRoute>>) {
        let o = ChannelOptions {
            http_proxy: proxy_url.map(str::to_string),
            ..Default::default()
        };
        route(target::parse(t).unwrap(), &o, &env_of(env)).unwrap()
    }

    #[test]
    fn routes_by_target_form() {
        let url = Some("http://proxy.test:3128");
        // A name: the channel resolves the proxy instead; CONNECT to the name.
        let (t, r) = route_of("dns:///svc.test:50051", url, &[]);
        assert_eq!(
            t.addresses,
            vec![Address::Dns {
                host: "proxy.test".into(),
                port: 3128
            }]
        );
        assert_eq!(t.authority, "svc.test:50051");
        assert_eq!(r.unwrap().connect_to.as_deref(), Some("svc.test:50051"));
        // No port in the target: gRPC's default, 443.
        let (_, r) = route_of("svc.test", url, &[]);
        assert_eq!(r.unwrap().connect_to.as_deref(), Some("svc.test:443"));
        // An IP proxy is resolved to itself.
        let (t, _) = route_of("svc.test:1", Some("http://[::1]:8"), &[]);
        assert_eq!(t.addresses, vec![Address::Ip("[::1]:8".parse().unwrap())]);
        // Literal addresses stay; CONNECT goes to each.
        let (t, r) = route_of("ipv4:10.0.0.1:1,10.0.0.2:2", url, &[]);
        assert_eq!(t.addresses.len(), 2);
        let r = r.unwrap();
        assert_eq!(r.connect_to, None);
        assert_eq!(r.proxy, proxy("proxy.test", 3128));
        // An IPv6 target's host is matched without brackets.
        let (_, r) = route_of("[::1]:5", url, &[("no_proxy", "::1")]);
        assert!(r.is_none());
        // Unix sockets are never proxied; the environment is read too.
        let (_, r) = route_of("unix:/tmp/s", url, &[]);
        assert!(r.is_none());
        let (_, r) = route_of("svc.test:1", None, &[("http_proxy", "http://e:9")]);
        assert_eq!(r.unwrap().proxy, proxy("e", 9));
        // Disabled by the option.
        let o = ChannelOptions {
            http_proxy: url.map(str::to_string),
            enable_http_proxy: false,
            ..Default::default()
        };
        let (t, r) = route(target::parse("svc.test:1").unwrap(), &o, &env_of(&[])).unwrap();
        assert!(r.is_none());
        assert_eq!(t, target::parse("svc.test:1").unwrap());
    }

    #[test]
    fn options_take_the_proxy_keys() {
        use crate::channel::options::{OptionError, OptionValue};
        let mut o = ChannelOptions::default();
        assert!(o.enable_http_proxy);
        o.set("grpc.http_proxy", OptionValue::Str("http://p:1".into()))
            .unwrap();
        assert_eq!(o.http_proxy.as_deref(), Some("http://p:1"));
        o.set("grpc.http_proxy", OptionValue::Str(String::new()))
            .unwrap();
        assert_eq!(o.http_proxy.as_deref(), Some(""));
        assert!(matches!(
            o.set("grpc.http_proxy", OptionValue::Str("p:1".into())),
            Err(OptionError::InvalidValue { .. })
        ));
        o.set("grpc.enable_http_proxy", OptionValue::Int(0))
            .unwrap();
        assert!(!o.enable_http_proxy);
    }

    /// Runs `tunnel` against a peer that reads the request and answers
    /// `answer`, then closes; returns the outcome, the request it read and
    /// what the client side can still read after the tunnel.
    fn against(answer: &'static [u8], auth: Option<&str>) -> (Result<(), String>, String, Vec<u8>) {
        crate::rt::block_on(async move {
            let (mut client, mut server) = duplex(64 << 10);
            let peer = tokio::spawn(async move {
                let mut req = Vec::new();
                let mut b = [0u8];
                while !req.ends_with(b"\r\n\r\n") {
                    if server.read(&mut b).await.unwrap() == 0 {
                        break;
                    }
                    req.push(b[0]);
                }
                server.write_all(answer).await.unwrap();
                String::from_utf8(req).unwrap()
            });
            let r = tunnel(&mut client, "svc.test:443", auth).await;
            let req = peer.await.unwrap();
            let mut rest = Vec::new();
            if r.is_ok() {
                client.read_to_end(&mut rest).await.unwrap();
            }
            (r, req, rest)
        })
        .unwrap()
    }

    #[test]
    fn tunnel_request_and_success() {
        let (r, req, rest) = against(b"HTTP/1.1 200 Connection established\r\n\r\n", None);
        r.unwrap();
        assert_eq!(
            req,
            "CONNECT svc.test:443 HTTP/1.1\r\nHost: svc.test:443\r\n\r\n"
        );
        assert!(rest.is_empty());
        // The bytes after the head belong to the tunnel: none is consumed.
        let (r, req, rest) = against(
            b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\n\x16\x03tls bytes",
            Some("Basic dTpw"),
        );
        r.unwrap();
        assert_eq!(
            req,
            "CONNECT svc.test:443 HTTP/1.1\r\nHost: svc.test:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert_eq!(rest, b"\x16\x03tls bytes");
        // Bare LF line ends are taken too.
        let (r, _, _) = against(b"HTTP/1.1 204 No Content\n\n", None);
        r.unwrap();
    }

    #[test]
    fn tunnel_refusals_and_odd_peers() {
        let err = |answer: &'static [u8]| against(answer, None).0.unwrap_err();
        let e = err(b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n<html>");
        assert_eq!(
            e,
            "the HTTP proxy refused CONNECT to svc.test:443: 407 Proxy Authentication Required"
        );
        assert_eq!(
            err(b"HTTP/1.1 403\r\n\r\n"),
            "the HTTP proxy refused CONNECT to svc.test:443: 403"
        );
        assert!(err(b"HTTP/1.1 302 Found\r\nLocation: x\r\n\r\n").contains("302 Found"));
        let e = err(b"");
        assert!(e.contains("closed the connection without answering"), "{e}");
        let e = err(b"HTTP/1.1 200 OK\r\nX: y\r\n");
        assert!(e.contains("in the middle of its answer"), "{e}");
        let e = err(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
        assert!(e.contains("not an HTTP response"), "{e}");
        assert!(e.contains("SSH-2.0"), "{e}");
        assert!(err(b"HTTP/1.1 2000 OK\r\n\r\n").contains("not an HTTP response"));
        assert!(err(b"HTTP/1.1 abc OK\r\n\r\n").contains("not an HTTP response"));
        // A head that never ends is cut at 8 KiB.
        static LONG: once_cell::sync::Lazy<Vec<u8>> = once_cell::sync::Lazy::new(|| {
            let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
            v.resize(20 << 10, b'a');
            v
        });
        let e = against(&LONG, None).0.unwrap_err();
        assert!(e.contains("first 8192 bytes"), "{e}");
    }
}
