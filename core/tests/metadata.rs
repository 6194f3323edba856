//! Metadata both ways (ASCII and -bin) and the request headers the server sees.
mod support;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::{CallOptions, ChannelOptions, Code};
use support::*;

#[test]
fn ascii_and_binary_echoed_in_initial_and_trailing() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let bin: &[u8] = &[0xab, 0xab, 0xab];
    let raw: &[u8] = &[0, 1, 2, 0xff, b',', b'='];
    let opts = md_opts(&[
        ("x-grpc-test-echo-initial", b"test_initial_metadata_value"),
        ("x-grpc-test-echo-initial-bin", raw),
        ("x-grpc-test-echo-trailing-bin", bin),
        ("x-grpc-test-echo-trailing-ascii", b"one"),
        ("x-grpc-test-echo-trailing-ascii", b"two"),
    ]);
    let call = ch
        .start_call(
            UNARY,
            CallOptions {
                unary_response: true,
                ..opts
            },
        )
        .unwrap();
    block(call.send(&simple(1, 1), last())).unwrap();
    let init = block(call.initial_metadata()).unwrap().clone();
    assert_eq!(
        init.find("x-grpc-test-echo-initial").unwrap(),
        b"test_initial_metadata_value"
    );
    assert_eq!(init.find("x-grpc-test-echo-initial-bin").unwrap(), raw);
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        st.trailers().find("x-grpc-test-echo-trailing-bin").unwrap(),
        bin
    );
    let vals: Vec<&[u8]> = st
        .trailers()
        .find_all("x-grpc-test-echo-trailing-ascii")
        .collect();
    assert_eq!(vals, vec![b"one".as_slice(), b"two".as_slice()]);
    assert!(
        st.trailers().find("grpc-status").is_none(),
        "grpc-status is not metadata"
    );
}

#[test]
fn trailing_metadata_on_error_status() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let opts = md_opts(&[("x-grpc-test-echo-trailing-bin", &[1, 2, 3])]);
    let (resp, st) = unary(&ch, UNARY, opts, &with_status(5, "nope"));
    assert!(resp.is_none());
    assert_code(&st, Code::NotFound);
    assert_eq!(st.message(), "nope");
    assert_eq!(
        st.trailers().find("x-grpc-test-echo-trailing-bin").unwrap(),
        &[1, 2, 3]
    );
}

#[test]
fn bidi_metadata_echo() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let opts = md_opts(&[
        ("x-grpc-test-echo-initial", b"v"),
        ("x-grpc-test-echo-trailing-bin", &[0xab, 0xab, 0xab]),
    ]);
    let call = ch.start_call(FULL_DUPLEX, opts).unwrap();
    block(call.send(&stream_req(&[3], 0), Default::default())).unwrap();
    assert_eq!(
        block(call.initial_metadata())
            .unwrap()
            .find("x-grpc-test-echo-initial")
            .unwrap(),
        b"v"
    );
    block(call.close_send()).unwrap();
    let (msgs, st) = drain(&call);
    assert_eq!(msgs.len(), 1);
    assert_code(&st, Code::Ok);
    assert_eq!(
        st.trailers().find("x-grpc-test-echo-trailing-bin").unwrap(),
        &[0xab; 3]
    );
}

#[test]
fn request_headers_as_the_server_sees_them() {
    let srv = TestServer::start();
    let mut o = ChannelOptions::default();
    o.set(
        "grpc.primary_user_agent",
        OptionValue::Str("myapp/2.0".into()),
    )
    .unwrap();
    o.set(
        "grpc.default_authority",
        OptionValue::Str("foo.test.example:8443".into()),
    )
    .unwrap();
    let ch = channel_with(&srv.target(), o);
    let opts = md_opts(&[("x-rgrpc-echo-request-headers", b"1"), ("a-custom", b"x")])
        .with_timeout(std::time::Duration::from_secs(30));
    let call = ch.start_call(UNARY, opts).unwrap();
    block(call.send(&simple(0, 0), last())).unwrap();
    let md = block(call.initial_metadata()).unwrap().clone();
    let get = |k: &str| {
        String::from_utf8(md.find(k).unwrap_or_else(|| panic!("{k} missing")).to_vec()).unwrap()
    };
    assert_eq!(get("x-rgrpc-req-te"), "trailers");
    assert_eq!(get("x-rgrpc-req-content-type"), "application/grpc");
    let ua = get("x-rgrpc-req-user-agent");
    assert!(ua.starts_with("myapp/2.0 grpc-c-rgrpc/"), "{ua}");
    assert_eq!(get("x-rgrpc-req-authority"), "foo.test.example:8443");
    assert_eq!(get("x-rgrpc-req-path"), UNARY);
    let t = get("x-rgrpc-req-grpc-timeout");
    let d = rgrpc_core::codec::timeout::decode(&t).expect("valid grpc-timeout");
    assert!(
        d <= std::time::Duration::from_secs(30) && d > std::time::Duration::from_secs(25),
        "{t}"
    );
    // Order on the wire (pseudo-headers are not visible): te and grpc-timeout
    // first, then content-type, user-agent, then custom metadata.
    let order = get("x-rgrpc-req-header-order");
    let names: Vec<&str> = order.split(',').collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} not in {order}"))
    };
    assert!(pos("te") < pos("content-type"));
    assert!(pos("grpc-timeout") < pos("content-type"));
    assert!(pos("content-type") < pos("user-agent"));
    assert!(pos("user-agent") < pos("a-custom"));
    drain(&call);
}

/// grpcio accepts `('user-agent', ...)` as call metadata (its own examples
/// do it): the application's value goes first on the wire, then the
/// channel's user agent, in one `user-agent` header.
#[test]
fn user_agent_metadata_goes_first_in_the_header() {
    let srv = TestServer::start();
    let mut o = ChannelOptions::default();
    o.set(
        "grpc.primary_user_agent",
        OptionValue::Str("myapp/2.0".into()),
    )
    .unwrap();
    let ch = channel_with(&srv.target(), o);
    let opts = md_opts(&[
        ("x-rgrpc-echo-request-headers", b"1"),
        ("user-agent", b"my-client/1.0"),
    ])
    .with_timeout(std::time::Duration::from_secs(30));
    let call = ch.start_call(UNARY, opts).unwrap();
    block(call.send(&simple(0, 0), last())).unwrap();
    let md = block(call.initial_metadata()).unwrap().clone();
    let ua: Vec<String> = md
        .find_all("x-rgrpc-req-user-agent")
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    assert_eq!(ua.len(), 1, "{ua:?}");
    assert!(
        ua[0].starts_with("my-client/1.0 myapp/2.0 grpc-c-rgrpc/"),
        "{ua:?}"
    );
    let st = drain(&call).1;
    assert_code(&st, Code::Ok);
}
