//! TestServer lifecycle (kill, restart, Unix socket) and the standalone binary.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect, connect_unix, params};
use rgrpc_tonic_interop::pb::test_service_client::TestServiceClient;
use rgrpc_tonic_interop::pb::{Empty, SimpleRequest, StreamingOutputCallRequest};
use rgrpc_tonic_interop::{ServerOptions, TestServer};
use tonic::Request;

/// The tests here check that ports close; they run one at a time so that no
/// other test of this file can take a port a test just freed.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn socket_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "rgrpc-tonic-interop-{}-{name}.sock",
        std::process::id()
    ))
}

#[tokio::test]
async fn target_and_addr() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start();
    let addr = server.addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(server.target(), format!("127.0.0.1:{}", addr.port()));
    assert!(server.unix_path().is_none());
}

#[tokio::test]
async fn kill_drops_in_flight_stream() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start();
    let addr = server.addr();
    let mut client = connect(&server).await;
    let mut stream = client
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: (0..50).map(|_| params(10, 100_000)).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());

    let start = Instant::now();
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "kill took {:?}",
        start.elapsed()
    );

    // The stream must end in an error (not a clean end of stream), promptly:
    // the server went away mid-stream.
    let mut received = 1;
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("client did not notice the connection drop")
        {
            Ok(Some(_)) => received += 1,
            other => break other,
        }
    };
    assert!(received < 50);
    let err = outcome.expect_err("stream should fail, not end cleanly");
    eprintln!("in-flight stream after kill: {err:?}");

    // The listener is gone too.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "listener still accepting after kill");
}

#[tokio::test]
async fn drop_kills_too() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start();
    let addr = server.addr();
    drop(server);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn restart_on_same_port() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start();
    let port = server.addr().port();
    let mut client = connect(&server).await;
    client.empty_call(Empty {}).await.unwrap();
    server.kill();

    let server = TestServer::start_with(ServerOptions {
        port: Some(port),
        ..Default::default()
    });
    assert_eq!(server.addr().port(), port);
    let mut client = connect(&server).await;
    client.empty_call(Empty {}).await.unwrap();

    // Taken port: try_start_with reports it.
    let taken = TestServer::try_start_with(ServerOptions {
        port: Some(port),
        ..Default::default()
    });
    assert!(taken.is_err());
}

#[tokio::test]
async fn unix_socket() {
    let _serial = SERIAL.lock().await;
    let path = socket_path("unix");
    let server = TestServer::start_with(ServerOptions {
        unix_path: Some(path.clone()),
        ..Default::default()
    });
    assert_eq!(server.addr(), "0.0.0.0:0".parse::<SocketAddr>().unwrap());
    assert_eq!(server.unix_path(), Some(path.as_path()));
    assert_eq!(server.target(), format!("unix:{}", path.display()));
    let mut client = connect(&server).await;
    let resp = client
        .unary_call(SimpleRequest {
            response_size: 1234,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.payload.unwrap().body.len(), 1234);
    server.kill();
    assert!(!path.exists(), "socket file left behind");
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_binary(args: &[&str]) -> (Child, String) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_tonic-interop-server"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn tonic-interop-server"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn terminate(mut child: Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let mut rest = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert_eq!(rest, "", "binary printed more than one line");
}

#[tokio::test]
async fn binary_tcp() {
    let _serial = SERIAL.lock().await;
    let (child, line) = spawn_binary(&["--port", "0"]);
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0);
    let mut client = TestServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut req = Request::new(SimpleRequest {
        response_size: 42,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-grpc-test-echo-initial", "hi".parse().unwrap());
    let resp = client.unary_call(req).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-grpc-test-echo-initial").unwrap(),
        "hi"
    );
    assert_eq!(resp.into_inner().payload.unwrap().body.len(), 42);
    terminate(child, "-TERM");
}

#[tokio::test]
async fn binary_uds_and_sigint() {
    let _serial = SERIAL.lock().await;
    let path = socket_path("bin");
    let (child, line) = spawn_binary(&["--uds", path.to_str().unwrap()]);
    assert_eq!(line, "LISTENING 0\n");
    let mut client = connect_unix(path.clone()).await;
    client.empty_call(Empty {}).await.unwrap();
    terminate(child, "-INT");
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn binary_rejects_bad_arguments() {
    let _serial = SERIAL.blocking_lock();
    let out = Command::new(env!("CARGO_BIN_EXE_tonic-interop-server"))
        .args(["--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn usable_without_a_runtime() {
    let _serial = SERIAL.blocking_lock();
    // Plain #[test]: TestServer brings its own runtime.
    let server = TestServer::start();
    let addr = server.addr();
    std::net::TcpStream::connect(addr).expect("listening");
    server.kill();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
