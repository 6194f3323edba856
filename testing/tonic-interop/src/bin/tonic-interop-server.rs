//! Standalone tonic interop `grpc.testing.TestService` server.
//!
//! Usage: tonic-interop-server [--port N] [--host H] [--uds PATH]
//!            [--use_tls[=true|false] --tls_cert_file PATH --tls_key_file PATH
//!             [--tls_client_ca_file PATH]]
//!
//! * `--port N`: TCP port (default 10000; 0 picks a free one).
//! * `--host H`: address or name to bind (default 127.0.0.1).
//! * `--uds PATH`: listen on this Unix socket instead of TCP.
//! * `--use_tls`: serve TLS (ALPN `h2`) with the certificate chain and key
//!   of `--tls_cert_file` and `--tls_key_file` (PEM, both required).
//! * `--tls_client_ca_file PATH`: also require a client certificate signed
//!   by a CA in this PEM file (mutual TLS).
//!
//! Bad arguments (including unreadable or unusable TLS files) exit with 2.
//!
//! Once listening it prints exactly one line, `LISTENING <port>` (`LISTENING 0`
//! for a Unix socket), to stdout and flushes it; it then serves until it gets
//! SIGTERM or SIGINT, and exits with status 0.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rgrpc_tonic_interop::{
    bind_tcp, bind_unix, serve_tcp, serve_unix, ServerOptions, TlsServerOptions,
};
use tokio::signal::unix::{signal, SignalKind};

struct Args {
    port: u16,
    host: String,
    uds: Option<PathBuf>,
    use_tls: bool,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_client_ca_file: Option<PathBuf>,
}

const USAGE: &str = "usage: tonic-interop-server [--port N] [--host H] [--uds PATH] \
[--use_tls[=true|false] --tls_cert_file PATH --tls_key_file PATH [--tls_client_ca_file PATH]]";

fn parse_bool(flag: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("bad {flag} value {other:?} (true or false)")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 10000,
        host: "127.0.0.1".to_string(),
        uds: None,
        use_tls: false,
        tls_cert_file: None,
        tls_key_file: None,
        tls_client_ca_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                args.port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--host" => args.host = value()?,
            "--uds" => args.uds = Some(PathBuf::from(value()?)),
            // A boolean flag: alone means true; never takes the next argument.
            "--use_tls" => args.use_tls = parse_bool(&flag, inline.as_deref())?,
            "--tls_cert_file" => args.tls_cert_file = Some(PathBuf::from(value()?)),
            "--tls_key_file" => args.tls_key_file = Some(PathBuf::from(value()?)),
            "--tls_client_ca_file" => args.tls_client_ca_file = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(args)
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// The TLS settings the arguments ask for (None: plaintext).
fn tls_options(args: &Args) -> Result<Option<TlsServerOptions>, String> {
    if !args.use_tls {
        if args.tls_cert_file.is_some()
            || args.tls_key_file.is_some()
            || args.tls_client_ca_file.is_some()
        {
            return Err("--tls_* files given without --use_tls".to_string());
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) else {
        return Err("--use_tls needs --tls_cert_file and --tls_key_file".to_string());
    };
    Ok(Some(TlsServerOptions {
        cert_chain_pem: read("--tls_cert_file", cert)?,
        key_pem: read("--tls_key_file", key)?,
        client_ca_pem: args
            .tls_client_ca_file
            .as_deref()
            .map(|p| read("--tls_client_ca_file", p))
            .transpose()?,
        no_alpn: false,
    }))
}

fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tonic-interop-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let opts = match tls_options(&args) {
        Ok(tls) => ServerOptions {
            tls,
            ..ServerOptions::default()
        },
        Err(e) => {
            eprintln!("tonic-interop-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Unusable certificates or keys are bad arguments too: find out before
    // listening (serve_* would only fail once started).
    if let Some(tls) = &opts.tls {
        if let Err(e) = tls.check() {
            eprintln!("tonic-interop-server: {e}");
            return ExitCode::from(2);
        }
    }

    let (serve, port) = match &args.uds {
        Some(path) => match bind_unix(path) {
            Ok(l) => (tokio::spawn(serve_unix(l, opts)), 0),
            Err(e) => {
                eprintln!(
                    "tonic-interop-server: cannot listen on {}: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        None => {
            let bound = resolve(&args.host, args.port).and_then(|addr| {
                let l = bind_tcp(addr)?;
                let port = l.local_addr()?.port();
                Ok((l, port))
            });
            match bound {
                Ok((l, port)) => (tokio::spawn(serve_tcp(l, opts)), port),
                Err(e) => {
                    eprintln!(
                        "tonic-interop-server: cannot listen on {}:{}: {e}",
                        args.host, args.port
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    };

    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("tonic-interop-server: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTENING {port}");
        let _ = out.flush();
    }

    let code = tokio::select! {
        _ = sigterm.recv() => ExitCode::SUCCESS,
        _ = sigint.recv() => ExitCode::SUCCESS,
        res = serve => {
            match res {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("tonic-interop-server: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tonic-interop-server: server task failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    };
    if let Some(path) = &args.uds {
        let _ = std::fs::remove_file(path);
    }
    code
}
