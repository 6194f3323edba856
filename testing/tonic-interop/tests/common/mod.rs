//! Helpers shared by the integration tests: tonic clients for a TestServer.

#![allow(dead_code)]

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use rgrpc_tonic_interop::pb::test_service_client::TestServiceClient;
use rgrpc_tonic_interop::pb::{Payload, ResponseParameters};
use rgrpc_tonic_interop::TestServer;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = TestServiceClient<Channel>;

pub async fn connect(server: &TestServer) -> Client {
    if let Some(path) = server.unix_path() {
        return connect_unix(path.to_path_buf()).await;
    }
    let channel = Endpoint::from_shared(format!("http://{}", server.target()))
        .unwrap()
        .connect()
        .await
        .expect("connect to test server");
    TestServiceClient::new(channel)
}

pub async fn connect_unix(path: PathBuf) -> Client {
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to test server over a Unix socket");
    TestServiceClient::new(channel)
}

pub fn zero_payload(size: usize) -> Option<Payload> {
    Some(Payload {
        r#type: 0,
        body: vec![0; size],
    })
}

pub fn params(size: i32, interval_us: i32) -> ResponseParameters {
    ResponseParameters {
        size,
        interval_us,
        compressed: None,
    }
}
