//! Name resolution: a parsed target to the list of endpoints to dial, in
//! order (`doc/naming.md` in the grpc/grpc repository). Literal `ipv4:` /
//! `ipv6:` addresses and `unix:` / `unix-abstract:` sockets resolve to
//! themselves; host names through a DNS client (hickory-resolver): the
//! system's servers and hosts file, or the server of a
//! `dns://server:port/host:port` target. Every address of the answer is
//! kept (IPv6 and IPv4). The channel's control task (`control.rs`) runs
//! resolutions off the callers' threads, again on its policy's request,
//! no more often than `grpc.dns_min_time_between_resolutions_ms`.

use super::target::{Address, Target};
use crate::status::{Code, Status};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One address to dial.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    /// A TCP address; `host` is the name it was resolved from, if any.
    Tcp {
        addr: SocketAddr,
        host: Option<String>,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name.
    UnixAbstract(Vec<u8>),
}

impl Endpoint {
    /// The endpoint as C-core names peers: `ipv4:127.0.0.1:50051`,
    /// `ipv6:[::1]:50051`, `unix:/path`, `unix-abstract:name`.
    pub(crate) fn peer(&self) -> String {
        match self {
            Endpoint::Tcp { addr, .. } if addr.is_ipv4() => format!("ipv4:{addr}"),
            Endpoint::Tcp { addr, .. } => format!("ipv6:{addr}"),
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::UnixAbstract(n) => format!("unix-abstract:{}", String::from_utf8_lossy(n)),
        }
    }

    /// The same address, ignoring the name it was resolved from.
    pub(crate) fn same_address(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Tcp { addr: a, .. }, Endpoint::Tcp { addr: b, .. }) => a == b,
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { addr, host: None } => write!(f, "{addr}"),
            Endpoint::Tcp {
                addr,
                host: Some(h),
            } => write!(f, "{addr} ({h})"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::UnixAbstract(_) => f.write_str(&self.peer()),
        }
    }
}

/// The outcome of resolving a target: the endpoints found, in the
/// target's order, and what could not be resolved (in words).
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) errors: Vec<String>,
}

impl Resolution {
    /// UNAVAILABLE naming the target when nothing resolved.
    pub(crate) fn failure(&self, target: &str) -> Status {
        let why = if self.errors.is_empty() {
            "no addresses".to_string()
        } else {
            self.errors.join("; ")
        };
        Status::new(
            Code::Unavailable,
            format!("name resolution for {target} found no addresses: {why}"),
        )
    }
}

/// Resolves a channel's target; keeps its DNS client between resolutions.
pub(crate) struct Resolver {
    target: Target,
    dns: Mutex<Option<Arc<TokioResolver>>>,
}

impl Resolver {
    pub(crate) fn new(target: Target) -> Resolver {
        Resolver {
            target,
            dns: Mutex::new(None),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The DNS client: built on first use from the system's configuration
    /// (`/etc/resolv.conf`, `/etc/hosts`) or for the target's DNS server.
    /// No cache: every resolution asks again (re-resolution exists to see
    /// changes). None when the system's configuration cannot be read (then
    /// the system resolver answers).
    fn dns(&self) -> Option<Arc<TokioResolver>> {
        let mut g = crate::sync::lock(&self.dns);
        if let Some(r) = g.as_ref() {
            return Some(r.clone());
        }
        let provider = TokioRuntimeProvider::default();
        let mut builder = match self.target.dns_server {
            Some(server) => {
                let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                for c in &mut ns.connections {
                    c.port = server.port();
                }
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    provider,
                );
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => {
                let mut b = TokioResolver::builder(provider).ok()?;
                b.options_mut().use_hosts_file = ResolveHosts::Always;
                b
            }
        };
        let o = builder.options_mut();
        o.cache_size = 0;
        o.attempts = 2;
        o.timeout = std::time::Duration::from_secs(5);
        let r = Arc::new(builder.build().ok()?);
        *g = Some(r.clone());
        Some(r)
    }

    /// Resolves every address of the target.
    pub(crate) async fn resolve(&self) -> Resolution {
        let mut out = Resolution::default();
        for addr in &self.target.addresses {
            match addr {
                Address::Ip(sa) => out.endpoints.push(Endpoint::Tcp {
                    addr: *sa,
                    host: None,
                }),
                Address::Unix(p) => out.endpoints.push(Endpoint::Unix(p.clone())),
                Address::UnixAbstract(n) => out.endpoints.push(Endpoint::UnixAbstract(n.clone())),
                Address::Dns { host, port } => {
                    let before = out.endpoints.len();
                    match self.lookup(host, *port).await {
                        Ok(found) => {
                            out.endpoints
                                .extend(found.into_iter().map(|addr| Endpoint::Tcp {
                                    addr,
                                    host: Some(host.clone()),
                                }))
                        }
                        Err(e) => out.errors.push(format!("resolving {host}: {e}")),
                    }
                    if out.endpoints.len() == before && out.errors.is_empty() {
                        out.errors.push(format!("resolving {host}: no addresses"));
                    }
                }
            }
        }
        dedupe(&mut out.endpoints);
        out
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        match self.dns() {
            Some(dns) => match dns.lookup_ip(host).await {
                Ok(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            },
            None => tokio::net::lookup_host((host, port))
                .await
                .map(|a| a.collect())
                .map_err(|e| e.to_string()),
        }
    }
}

/// Drops repeated addresses, keeping the first of each.
fn dedupe(eps: &mut Vec<Endpoint>) {
    let mut seen = std::collections::HashSet::new();
    eps.retain(|e| {
        let key = match e {
            Endpoint::Tcp { addr, .. } => format!("{addr}"),
            other => other.peer(),
        };
        seen.insert(key)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::target;

    fn resolve_now(t: &str) -> Resolution {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(Resolver::new(target::parse(t).unwrap()).resolve())
    }

    #[test]
    fn literals_resolve_to_themselves_in_order() {
        let r = resolve_now("ipv4:127.0.0.2:5,127.0.0.1:6");
        assert!(r.errors.is_empty());
        let shown: Vec<String> = r.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["127.0.0.2:5", "127.0.0.1:6"]);
        let r = resolve_now("unix:/tmp/x.sock");
        assert_eq!(r.endpoints, [Endpoint::Unix("/tmp/x.sock".into())]);
        // Repeats are dropped; peers are written as C-core writes them.
        let r = resolve_now("ipv6:[::1]:5,[::1]:5,[::2]:6");
        let peers: Vec<String> = r.endpoints.iter().map(|e| e.peer()).collect();
        assert_eq!(peers, ["ipv6:[::1]:5", "ipv6:[::2]:6"]);
    }

    #[test]
    fn localhost_resolves_through_the_system() {
        let r = resolve_now("localhost:50051");
        assert!(!r.endpoints.is_empty(), "{:?}", r.errors);
        for e in &r.endpoints {
            match e {
                Endpoint::Tcp { addr, host } => {
                    assert!(addr.ip().is_loopback());
                    assert_eq!(addr.port(), 50051);
                    assert_eq!(host.as_deref(), Some("localhost"));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn nothing_resolved_is_unavailable_naming_the_target() {
        let r = Resolution {
            endpoints: vec![],
            errors: vec!["resolving db.example: no addresses".into()],
        };
        let st = r.failure("dns:///db.example:1");
        assert_eq!(st.code(), Code::Unavailable);
        assert!(st.message().contains("dns:///db.example:1"));
        assert!(st.message().contains("resolving db.example: no addresses"));
    }
}
