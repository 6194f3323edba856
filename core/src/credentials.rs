//! Credentials: how a channel secures its connections (insecure, local,
//! TLS with rustls) and what each call adds for authentication (access
//! tokens, metadata plugins, composites).

#![forbid(unsafe_code)]

use crate::metadata::Metadata;
use crate::status::{Code, Status};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The environment variable C-core reads for a default root bundle.
pub const ROOTS_ENV: &str = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH";

/// A TLS client configuration (ALPN `h2`, certificates always verified).
pub struct TlsCredentials {
    pub(crate) config: Arc<ClientConfig>,
    /// Where the trust roots came from, for messages.
    pub roots_source: String,
}

impl std::fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsCredentials(roots: {})", self.roots_source)
    }
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate found"));
    }
    Ok(certs)
}

fn load_roots(root_pem: Option<&[u8]>) -> Result<(RootCertStore, String), String> {
    let mut roots = RootCertStore::empty();
    let add_all = |roots: &mut RootCertStore, certs: Vec<CertificateDer<'static>>, what: &str| {
        let (ok, _bad) = roots.add_parsable_certificates(certs);
        if ok == 0 {
            Err(format!("{what}: no usable root certificate"))
        } else {
            Ok(())
        }
    };
    if let Some(pem) = root_pem {
        add_all(
            &mut roots,
            parse_certs(pem, "root certificates")?,
            "root certificates",
        )?;
        return Ok((roots, "the given root certificates".into()));
    }
    if let Ok(path) = std::env::var(ROOTS_ENV) {
        if !path.is_empty() {
            let pem = std::fs::read(&path).map_err(|e| format!("{ROOTS_ENV}={path}: {e}"))?;
            let what = format!("{ROOTS_ENV}={path}");
            add_all(&mut roots, parse_certs(&pem, &what)?, &what)?;
            return Ok((roots, what));
        }
    }
    let native = rustls_native_certs::load_native_certs();
    let (ok, _) = roots.add_parsable_certificates(native.certs);
    if ok > 0 {
        return Ok((roots, "the system trust store".into()));
    }
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok((
        roots,
        "the built-in Mozilla roots (the system trust store could not be read)".into(),
    ))
}

impl TlsCredentials {
    /// Builds TLS credentials. `root_pem`: trusted roots (None = the
    /// `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` file, else the system store, else
    /// the built-in Mozilla roots). `identity`: a client certificate chain
    /// and its private key (PEM; RSA, ECDSA or Ed25519) for mutual TLS.
    pub fn new(
        root_pem: Option<&[u8]>,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<TlsCredentials, String> {
        let (roots, roots_source) = load_roots(root_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let chain = parse_certs(chain, "client certificate chain")?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    format!("client private key: {e} (expected a PEM RSA, ECDSA or Ed25519 key)")
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate and key: {e}"))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsCredentials {
            config: Arc::new(config),
            roots_source,
        })
    }
}

/// How a channel's connections are made.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Plaintext HTTP/2.
    Insecure,
    /// Plaintext HTTP/2 to a loopback address or Unix socket, where call
    /// credentials are allowed (grpcio's `local_channel_credentials`).
    Local,
    /// HTTP/2 over TLS.
    Tls(Arc<TlsCredentials>),
}

/// Channel credentials: the transport, plus call credentials applied to
/// every call (a composite).
#[derive(Clone, Debug)]
pub struct ChannelCredentials {
    pub transport: Transport,
    pub call: Option<CallCredentials>,
}

impl ChannelCredentials {
    pub fn insecure() -> ChannelCredentials {
        ChannelCredentials {
            transport: Transport::Insecure,
            call: None,
        }
    }

    pub fn local() -> ChannelCredentials {
        ChannelCredentials {
            transport: Transport::Local,
            call: None,
        }
    }

    pub fn tls(tls: TlsCredentials) -> ChannelCredentials {
        ChannelCredentials {
            transport: Transport::Tls(Arc::new(tls)),
            call: None,
        }
    }

    /// These credentials with `call` applied to every call (after any call
    /// credentials they already carry).
    pub fn compose(&self, call: CallCredentials) -> ChannelCredentials {
        let call = match &self.call {
            None => call,
            Some(prev) => CallCredentials::Composite(vec![prev.clone(), call]),
        };
        ChannelCredentials {
            transport: self.transport.clone(),
            call: Some(call),
        }
    }

    /// True when call credentials may be sent.
    pub fn allows_call_credentials(&self) -> bool {
        !matches!(self.transport, Transport::Insecure)
    }
}

/// Completes a metadata plugin's request, once, from any thread.
pub struct PluginResponder {
    tx: Option<oneshot::Sender<Result<Metadata, Status>>>,
}

impl PluginResponder {
    /// Succeeds with metadata to add to the call.
    pub fn complete(mut self, md: Metadata) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Ok(md));
        }
    }

    /// Fails the call. A code of OK (or none given) becomes UNAUTHENTICATED.
    pub fn fail(mut self, code: Code, message: &str) {
        let code = if code == Code::Ok {
            Code::Unauthenticated
        } else {
            code
        };
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(Status::new(
                code,
                format!("call credentials plugin failed: {message}"),
            )));
        }
    }
}

/// A source of per-call metadata (the C metadata plugin callback).
pub trait MetadataPlugin: Send + Sync {
    /// Asked once per call with the method path and the `:authority`;
    /// answers through `responder`, now or later, from any thread.
    fn get_metadata(&self, method: &str, authority: &str, responder: PluginResponder);
}

/// Per-call credentials.
#[derive(Clone)]
pub enum CallCredentials {
    /// Sends `authorization: Bearer <token>`.
    AccessToken(Arc<str>),
    /// Asks a plugin for metadata on every call.
    Plugin(Arc<dyn MetadataPlugin>),
    /// Several, applied in order.
    Composite(Vec<CallCredentials>),
}

impl std::fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallCredentials::AccessToken(_) => f.write_str("AccessToken(..)"),
            CallCredentials::Plugin(_) => f.write_str("Plugin(..)"),
            CallCredentials::Composite(v) => f.debug_list().entries(v).finish(),
        }
    }
}

impl CallCredentials {
    /// Access-token credentials; the token must be printable ASCII.
    pub fn access_token(token: &str) -> Result<CallCredentials, String> {
        if token.is_empty() || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err("access token must be non-empty printable ASCII without spaces".into());
        }
        Ok(CallCredentials::AccessToken(Arc::from(token)))
    }

    /// Adds this call's authentication metadata to `out`.
    pub(crate) fn apply<'a>(
        &'a self,
        method: &'a str,
        authority: &'a str,
        out: &'a mut Metadata,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Status>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                CallCredentials::AccessToken(t) => {
                    out.push_unchecked("authorization", format!("Bearer {t}").into());
                    Ok(())
                }
                CallCredentials::Plugin(p) => {
                    let (tx, rx) = oneshot::channel();
                    let p = p.clone();
                    let (m, a) = (method.to_string(), authority.to_string());
                    // The plugin may block or call back into the library:
                    // never run it on a runtime worker's async context.
                    tokio::task::spawn_blocking(move || {
                        p.get_metadata(&m, &a, PluginResponder { tx: Some(tx) })
                    });
                    match rx.await {
                        Ok(Ok(md)) => {
                            out.extend_from(&md);
                            Ok(())
                        }
                        Ok(Err(st)) => Err(st),
                        Err(_) => Err(Status::new(
                            Code::Unauthenticated,
                            "call credentials plugin dropped the request without answering",
                        )),
                    }
                }
                CallCredentials::Composite(list) => {
                    for c in list {
                        c.apply(method, authority, out).await?;
                    }
                    Ok(())
                }
            }
        })
    }
}
