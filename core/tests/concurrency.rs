//! Many calls at once on one channel, and calls from many threads; all share
//! one HTTP/2 connection.
mod support;
use rgrpc_core::{CallOptions, Code};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

/// A TCP forwarder in front of the server that counts connections.
struct CountingProxy {
    addr: std::net::SocketAddr,
    conns: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl CountingProxy {
    fn start(upstream: std::net::SocketAddr) -> CountingProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        CountingProxy {
            addr,
            conns,
            _rt: rt,
        }
    }
}

#[test]
fn thousand_concurrent_calls_one_connection() {
    let srv = TestServer::start();
    let proxy = CountingProxy::start(srv.addr());
    let ch = channel(&proxy.addr.to_string());
    let results = block(async {
        let futs = (0..1000).map(|i| {
            let ch = ch.clone();
            async move {
                ch.unary(
                    UNARY,
                    CallOptions::default(),
                    &simple(i % 100, (i % 50) as i32),
                )
                .await
            }
        });
        futures_util::future::join_all(futs).await
    });
    for (i, r) in results.into_iter().enumerate() {
        let (resp, st) = r.unwrap();
        assert_code(&st, Code::Ok);
        assert_eq!(body_len_simple(&resp.unwrap()), i % 50);
    }
    assert_eq!(
        proxy.conns.load(Ordering::SeqCst),
        1,
        "all calls share one connection"
    );
    assert_eq!(ch.active_calls(), 0);
}

#[test]
fn calls_from_many_threads() {
    let srv = TestServer::start();
    let proxy = CountingProxy::start(srv.addr());
    let ch = channel(&proxy.addr.to_string());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let ch = ch.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let (resp, st) = unary(&ch, UNARY, CallOptions::default(), &simple(t, i));
                    assert_code(&st, Code::Ok);
                    assert_eq!(body_len_simple(&resp.unwrap()), i as usize);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(proxy.conns.load(Ordering::SeqCst), 1);
}

#[test]
fn async_unary_callbacks_from_many_calls() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let done = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let d = done.clone();
            ch.unary_async(
                UNARY,
                CallOptions::default(),
                simple(0, i).into(),
                move |st, resp| {
                    assert!(st.is_ok(), "{st}");
                    assert_eq!(body_len_simple(resp.unwrap()), i as usize);
                    d.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap()
        })
        .collect();
    for c in &calls {
        block(c.wait());
    }
    assert_eq!(done.load(Ordering::SeqCst), 200);
}
