//! Standalone tonic interop `grpc.testing.TestService` server.
//!
//! Usage: tonic-interop-server [--port N] [--host H] [--uds PATH]
//!
//! * `--port N`: TCP port (default 10000; 0 picks a free one).
//! * `--host H`: address or name to bind (default 127.0.0.1).
//! * `--uds PATH`: listen on this Unix socket instead of TCP.
//!
//! Once listening it prints exactly one line, `LISTENING <port>` (`LISTENING 0`
//! for a Unix socket), to stdout and flushes it; it then serves until it gets
//! SIGTERM or SIGINT, and exits with status 0.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use rgrpc_tonic_interop::{bind_tcp, bind_unix, serve_tcp, serve_unix, ServerOptions};
use tokio::signal::unix::{signal, SignalKind};

struct Args {
    port: u16,
    host: String,
    uds: Option<PathBuf>,
}

const USAGE: &str = "usage: tonic-interop-server [--port N] [--host H] [--uds PATH]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 10000,
        host: "127.0.0.1".to_string(),
        uds: None,
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
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(args)
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
    let opts = ServerOptions::default();

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
