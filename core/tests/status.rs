//! Status codes and details from the server, and UNIMPLEMENTED paths.
mod support;
use rgrpc_core::{CallOptions, Code};
use support::*;

#[test]
fn every_code_and_message_round_trips() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    for code in 1..=16u32 {
        let msg = format!("status {code}: tab\there, newline\r\n, café ☺ 😈 100%");
        let (resp, st) = unary(
            &ch,
            UNARY,
            CallOptions::default(),
            &with_status(code as i32, &msg),
        );
        assert!(resp.is_none());
        assert_eq!(st.code() as u32, code, "{st}");
        assert_eq!(st.message(), msg);
    }
}

#[test]
fn special_status_message_over_bidi() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let text = "\t\ttest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";
    let call = ch.start_call(FULL_DUPLEX, CallOptions::default()).unwrap();
    let req = {
        use prost::Message;
        pb::StreamingOutputCallRequest {
            response_status: Some(pb::EchoStatus {
                code: 2,
                message: text.into(),
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    block(call.send(&req, Default::default())).unwrap();
    block(call.close_send()).unwrap();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Unknown);
    assert_eq!(st.message(), text);
}

#[test]
fn unimplemented_method_and_service() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    for m in [
        "/grpc.testing.TestService/UnimplementedCall",
        "/grpc.testing.UnimplementedService/UnimplementedCall",
        "/no.such.Service/Nothing",
    ] {
        let (_, st) = unary(&ch, m, CallOptions::default(), &[]);
        assert_code(&st, Code::Unimplemented);
    }
}

#[test]
fn invalid_method_is_refused_at_start() {
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    for m in ["", "noslash", "/with space", "/q?x"] {
        assert!(ch.start_call(m, CallOptions::default()).is_err(), "{m:?}");
    }
}

#[test]
fn a_call_nobody_reads_still_ends() {
    // Trailers-Only answer: waiting (or an on-done callback) is enough for
    // the call to end; no recv or finish needed.
    let srv = TestServer::start();
    let ch = channel(&srv.target());
    let call = ch
        .start_call(
            "/grpc.testing.TestService/UnimplementedCall",
            CallOptions::default(),
        )
        .unwrap();
    block(call.send(&[], last())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    assert!(call
        .on_done(Box::new(move |st| tx.send(st.code()).unwrap()))
        .is_ok());
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(),
        Code::Unimplemented
    );
    block(call.wait());
    assert!(!call.is_active());
    // A unary response read by the background reader stays for recv.
    let call = ch.start_call(UNARY, CallOptions::default()).unwrap();
    block(call.send(&simple(0, 7), last())).unwrap();
    let _ = call.on_done(Box::new(|_| {}));
    let m = block(call.recv())
        .unwrap()
        .expect("the response is kept for recv");
    assert_eq!(body_len_simple(&m), 7);
    assert_code(&block(call.finish()).unwrap(), Code::Ok);
}
