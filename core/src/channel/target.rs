//! Target strings (`doc/naming.md` in grpc/grpc): `host:port`, `dns:///host:port`,
//! `dns://dnsserver:port/host:port`, `ipv4:a:p[,b:p]`, `ipv6:[a]:p[,...]`,
//! `unix:/path`, `unix:///path`, `unix-abstract:name`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// gRPC's default port when a target names none.
pub const DEFAULT_PORT: u16 = 443;

/// One address to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A literal socket address.
    Ip(SocketAddr),
    /// A host name (or literal) to resolve through the system resolver.
    Dns { host: String, port: u16 },
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (without the leading NUL).
    UnixAbstract(Vec<u8>),
}

/// A parsed target: the addresses to try, in order, and the default
/// `:authority`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Addresses in the order they are tried.
    pub addresses: Vec<Address>,
    /// The `:authority` sent unless overridden by `grpc.default_authority`.
    pub authority: String,
    /// The DNS server to ask (`dns://server:port/...`); None: the system's.
    pub dns_server: Option<SocketAddr>,
}

/// Parses a target string; the error text says what is wrong.
pub fn parse(target: &str) -> Result<Target, String> {
    let t = target.trim();
    if t.is_empty() {
        return Err("target is empty".into());
    }
    if let Some(name) = t.strip_prefix("unix-abstract:") {
        return Ok(Target {
            addresses: vec![Address::UnixAbstract(name.as_bytes().to_vec())],
            authority: "localhost".into(),
            dns_server: None,
        });
    }
    if let Some(rest) = t.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(format!("target {target:?}: unix: needs a socket path"));
        }
        if rest.starts_with("//") && !path.starts_with('/') {
            return Err(format!(
                "target {target:?}: unix:// needs an absolute path (unix:///path), or use unix:relative/path"
            ));
        }
        return Ok(Target {
            addresses: vec![Address::Unix(PathBuf::from(path))],
            authority: "localhost".into(),
            dns_server: None,
        });
    }
    if let Some(rest) = t.strip_prefix("ipv4:") {
        return parse_ip_list(target, rest, false);
    }
    if let Some(rest) = t.strip_prefix("ipv6:") {
        return parse_ip_list(target, rest, true);
    }
    let mut dns_server = None;
    let host_port = if let Some(rest) = t.strip_prefix("dns:") {
        if let Some(after) = rest.strip_prefix("//") {
            // dns://[dnsserver[:port]]/host:port
            let slash = after
                .find('/')
                .ok_or_else(|| format!("target {target:?}: expected dns:///host:port"))?;
            if slash != 0 {
                dns_server = Some(parse_dns_server(target, &after[..slash])?);
            }
            &after[slash + 1..]
        } else {
            rest
        }
    } else if let Some(scheme_end) = t.find("://") {
        return Err(format!(
            "target {target:?}: unsupported scheme {:?} (supported: dns, ipv4, ipv6, unix)",
            &t[..scheme_end]
        ));
    } else {
        t
    };
    let (host, port) = split_host_port(target, host_port)?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(SocketAddr::new(ip, port)),
        Err(_) => Address::Dns {
            host: host.to_string(),
            port,
        },
    };
    Ok(Target {
        addresses: vec![address],
        authority,
        dns_server,
    })
}

/// The DNS server of `dns://server[:port]/`: an IP address (port 53 by
/// default), as C-core takes it.
fn parse_dns_server(target: &str, s: &str) -> Result<SocketAddr, String> {
    let with_port = |ip: IpAddr| SocketAddr::new(ip, 53);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(with_port(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if let Ok(ip) = v6.parse::<IpAddr>() {
            return Ok(with_port(ip));
        }
    }
    Err(format!(
        "target {target:?}: the DNS server {s:?} must be an IP address with an optional port (dns://127.0.0.1:53/host:port)"
    ))
}

fn parse_ip_list(target: &str, list: &str, v6: bool) -> Result<Target, String> {
    let mut addresses = Vec::new();
    let mut authority = String::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("target {target:?}: empty address in list"));
        }
        let (host, port) = split_host_port(target, item)?;
        let ip: IpAddr = host
            .parse()
            .map_err(|_| format!("target {target:?}: {host:?} is not an IP address"))?;
        if ip.is_ipv6() != v6 {
            return Err(format!(
                "target {target:?}: {host:?} is not an {} address",
                if v6 { "IPv6" } else { "IPv4" }
            ));
        }
        let sa = SocketAddr::new(ip, port);
        if authority.is_empty() {
            authority = sa.to_string();
        }
        addresses.push(Address::Ip(sa));
    }
    Ok(Target {
        addresses,
        authority,
        dns_server: None,
    })
}

/// Splits `host:port`, `[v6]:port`, `host` (default port) or a bare IPv6.
fn split_host_port<'a>(target: &str, s: &'a str) -> Result<(&'a str, u16), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("target {target:?}: missing ']' in {s:?}"))?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let port = if after.is_empty() {
            DEFAULT_PORT
        } else {
            let p = after
                .strip_prefix(':')
                .ok_or_else(|| format!("target {target:?}: unexpected {after:?} after ']'"))?;
            parse_port(target, p)?
        };
        if host.is_empty() {
            return Err(format!("target {target:?}: empty host"));
        }
        return Ok((host, port));
    }
    match s.matches(':').count() {
        0 => {
            if s.is_empty() {
                return Err(format!("target {target:?}: empty host"));
            }
            Ok((s, DEFAULT_PORT))
        }
        1 => {
            let (h, p) = s.split_once(':').expect("one colon");
            if h.is_empty() {
                return Err(format!("target {target:?}: empty host"));
            }
            Ok((h, parse_port(target, p)?))
        }
        _ => {
            // A bare IPv6 literal without brackets and port.
            if s.parse::<std::net::Ipv6Addr>().is_ok() {
                Ok((s, DEFAULT_PORT))
            } else {
                Err(format!(
                    "target {target:?}: cannot split {s:?} into host and port (write IPv6 as [addr]:port)"
                ))
            }
        }
    }
}

fn parse_port(target: &str, p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("target {target:?}: port {p:?} is not a number"));
    }
    p.parse::<u16>()
        .map_err(|_| format!("target {target:?}: port {p} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Address {
        Address::Ip(s.parse().unwrap())
    }

    #[test]
    fn forms() {
        let t = parse("localhost:50051").unwrap();
        assert_eq!(
            t.addresses,
            vec![Address::Dns {
                host: "localhost".into(),
                port: 50051
            }]
        );
        assert_eq!(t.authority, "localhost:50051");
        let t = parse("dns:///example.com:8080").unwrap();
        assert_eq!(t.authority, "example.com:8080");
        let t = parse("dns:example.com").unwrap();
        assert_eq!(t.authority, "example.com:443");
        let t = parse("127.0.0.1:1").unwrap();
        assert_eq!(t.addresses, vec![ip("127.0.0.1:1")]);
        let t = parse("ipv4:127.0.0.1:1,10.0.0.1:2").unwrap();
        assert_eq!(t.addresses, vec![ip("127.0.0.1:1"), ip("10.0.0.1:2")]);
        assert_eq!(t.authority, "127.0.0.1:1");
        let t = parse("ipv6:[::1]:5").unwrap();
        assert_eq!(t.addresses, vec![ip("[::1]:5")]);
        assert_eq!(t.authority, "[::1]:5");
        let t = parse("[::1]:7").unwrap();
        assert_eq!(t.addresses, vec![ip("[::1]:7")]);
        let t = parse("unix:/tmp/s.sock").unwrap();
        assert_eq!(t.addresses, vec![Address::Unix("/tmp/s.sock".into())]);
        assert_eq!(t.authority, "localhost");
        let t = parse("unix:///tmp/s.sock").unwrap();
        assert_eq!(t.addresses, vec![Address::Unix("/tmp/s.sock".into())]);
        let t = parse("unix:rel.sock").unwrap();
        assert_eq!(t.addresses, vec![Address::Unix("rel.sock".into())]);
        let t = parse("unix-abstract:grpc-test").unwrap();
        assert_eq!(
            t.addresses,
            vec![Address::UnixAbstract(b"grpc-test".to_vec())]
        );
        let t = parse("dns://127.0.0.1:5353/svc.test:50051").unwrap();
        assert_eq!(t.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(t.authority, "svc.test:50051");
        let t = parse("dns://[::1]/svc.test:1").unwrap();
        assert_eq!(t.dns_server, Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse("dns:///svc.test:1").unwrap().dns_server, None);
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "host:",
            "host:99999",
            "host:abc",
            "ipv4:::1:5",
            "ipv6:127.0.0.1:5",
            "ipv4:1.2.3.4:5,",
            "unix:",
            "unix://relative",
            "http://x:1",
            "dns://dnsserver/x:1",
            "dns://127.0.0.1:99999/x:1",
            "a:b:c",
            "[::1",
            ":80",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
