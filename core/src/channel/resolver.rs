//! Name resolution: a parsed target to the list of endpoints to dial, in
//! order (`doc/naming.md` in the grpc/grpc repository). Literal `ipv4:` /
//! `ipv6:` addresses and `unix:` paths resolve to themselves; host names
//! through the system resolver (getaddrinfo, on the runtime's blocking
//! pool, off the caller's thread). Resolution runs again before every
//! connection attempt. (The backends issue puts a DNS client here, with
//! re-resolution on its own schedule and the `dns://server/` form.)

use super::target::{Address, Target};
use crate::status::{Code, Status};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One address to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A TCP address; `host` is the name it was resolved from, if any.
    Tcp {
        addr: SocketAddr,
        host: Option<String>,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
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
        Status::new(
            Code::Unavailable,
            format!(
                "failed to connect to all addresses: name resolution for {target} found no addresses: {}",
                self.errors.join("; ")
            ),
        )
    }
}

/// Resolves every address of `target`.
pub(crate) async fn resolve(target: &Target) -> Resolution {
    let mut out = Resolution::default();
    for addr in &target.addresses {
        match addr {
            Address::Ip(sa) => out.endpoints.push(Endpoint::Tcp {
                addr: *sa,
                host: None,
            }),
            Address::Unix(p) => out.endpoints.push(Endpoint::Unix(p.clone())),
            Address::Dns { host, port } => {
                match tokio::net::lookup_host((host.as_str(), *port)).await {
                    Ok(found) => {
                        let before = out.endpoints.len();
                        out.endpoints.extend(found.map(|addr| Endpoint::Tcp {
                            addr,
                            host: Some(host.clone()),
                        }));
                        if out.endpoints.len() == before {
                            out.errors.push(format!("resolving {host}: no addresses"));
                        }
                    }
                    Err(e) => out.errors.push(format!("resolving {host}: {e}")),
                }
            }
        }
    }
    out
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
        rt.block_on(resolve(&target::parse(t).unwrap()))
    }

    #[test]
    fn literals_resolve_to_themselves_in_order() {
        let r = resolve_now("ipv4:127.0.0.2:5,127.0.0.1:6");
        assert!(r.errors.is_empty());
        let shown: Vec<String> = r.endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown, ["127.0.0.2:5", "127.0.0.1:6"]);
        let r = resolve_now("unix:/tmp/x.sock");
        assert_eq!(r.endpoints, [Endpoint::Unix("/tmp/x.sock".into())]);
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
