//! Responses no real server sends, from a raw HTTP/2 server (the h2 crate):
//! Trailers-Only, non-gRPC HTTP statuses, bad trailers, RST_STREAM codes,
//! bad framing, cardinality violations. Each must end the call with the
//! status the gRPC spec names, never a panic or a hang.
mod support;
use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use http::Response;
use rgrpc_core::{CallOptions, Code};
use support::raw::*;
use support::*;

/// Answers according to the method name.
async fn respond(path: String, mut tx: SendResponse<Bytes>) {
    let path = path.as_str();
    let ok = [("grpc-status", "0")];
    match path {
        "/t/TrailersOnly" => {
            let r = grpc_headers(&[("grpc-status", "7"), ("grpc-message", "no%20way")]);
            let _ = tx.send_response(r, true);
        }
        "/t/Http503" | "/t/Http404" | "/t/Http401" | "/t/Http500" => {
            let code: u16 = path[7..].parse().unwrap();
            let r = Response::builder()
                .status(code)
                .header("content-type", "text/plain")
                .body(())
                .unwrap();
            let _ = tx.send_response(r, true);
        }
        "/t/Html" => {
            let r = Response::builder()
                .status(200)
                .header("content-type", "text/html")
                .body(())
                .unwrap();
            let mut s = tx.send_response(r, false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"<html></html>"), true);
        }
        "/t/NoGrpcStatus" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(frame(0, b"x"), false);
            let _ = s.send_trailers(trailers(&[("x-other", "1")]));
        }
        "/t/NoTrailers" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(frame(0, b"x"), true);
        }
        "/t/BadStatus" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_trailers(trailers(&[("grpc-status", "abc")]));
        }
        "/t/CompressedNoEncoding" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(frame(1, b"zzzz"), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/UnsupportedEncoding" => {
            let mut s = tx
                .send_response(grpc_headers(&[("grpc-encoding", "snappy")]), false)
                .unwrap();
            let _ = s.send_data(frame(1, b"zzzz"), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        p if p.starts_with("/t/Rst") => {
            let reason = match &p[6..] {
                "Refused" => h2::Reason::REFUSED_STREAM,
                "Cancel" => h2::Reason::CANCEL,
                "Calm" => h2::Reason::ENHANCE_YOUR_CALM,
                "Security" => h2::Reason::INADEQUATE_SECURITY,
                _ => h2::Reason::PROTOCOL_ERROR,
            };
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            s.send_reset(reason);
        }
        "/t/Fragmented" => {
            // Two messages: the first in 1-byte DATA frames, the second
            // sharing a frame with the start of a third.
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            for b in frame(0, b"hello").iter() {
                let _ = s.send_data(Bytes::copy_from_slice(&[*b]), false);
            }
            let mut two = BytesMut::new();
            two.put_slice(&frame(0, b"world"));
            let third = frame(0, b"!");
            two.put_slice(&third[..3]);
            let _ = s.send_data(two.freeze(), false);
            let _ = s.send_data(third.slice(3..), false);
            let _ = s.send_trailers(trailers(&[
                ("grpc-status", "0"),
                ("grpc-message", "bad%zzenc%"),
            ]));
        }
        "/t/TwoResponses" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(frame(0, b"a"), false);
            let _ = s.send_data(frame(0, b"b"), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/BigHeaders" => {
            let big = "v".repeat(20_000);
            let mut s = tx
                .send_response(grpc_headers(&[("x-big", &big)]), false)
                .unwrap();
            let _ = s.send_data(frame(0, b"x"), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/BigTrailers" => {
            let big = "v".repeat(20_000);
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(frame(0, b"x"), false);
            let _ = s.send_trailers(trailers(&[("grpc-status", "0"), ("x-big", &big)]));
        }
        "/t/SoftHeaders" => {
            // 12 KB: between the soft (8 KiB) and the hard (16 KiB) limit.
            let v = "v".repeat(12_000);
            let mut s = tx
                .send_response(grpc_headers(&[("x-mid", &v)]), false)
                .unwrap();
            let _ = s.send_data(frame(0, b"x"), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/HugeHeaders" => {
            // 1 MiB of metadata: HEADERS and many CONTINUATION frames.
            let mut r = grpc_headers(&[]);
            for i in 0..256 {
                let name = http::HeaderName::from_bytes(format!("x-huge-{i}").as_bytes()).unwrap();
                r.headers_mut()
                    .insert(name, "v".repeat(4096).parse().unwrap());
            }
            if let Ok(mut s) = tx.send_response(r, false) {
                let _ = s.send_data(frame(0, b"x"), false);
                let _ = s.send_trailers(trailers(&ok));
            }
        }
        "/t/TrailersOnlyOk" => {
            let _ = tx.send_response(grpc_headers(&ok), true);
        }
        "/t/ZeroResponses" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/Truncated" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let f = frame(0, b"0123456789");
            let _ = s.send_data(f.slice(..8), false);
            let _ = s.send_trailers(trailers(&ok));
        }
        "/t/HugePrefix" => {
            let mut s = tx.send_response(grpc_headers(&[]), false).unwrap();
            let _ = s.send_data(
                Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
                false,
            );
            // Never finishes on its own: the client must give up by itself.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
        _ => {
            let _ = tx.send_response(grpc_headers(&[("grpc-status", "12")]), true);
        }
    }
}

fn start() -> RawServer {
    start_raw(|req, tx| respond(req.path, tx))
}

fn call(srv: &RawServer, path: &str) -> (Vec<Bytes>, std::sync::Arc<rgrpc_core::Status>) {
    let ch = channel(&srv.addr.to_string());
    let c = ch.start_call(path, timeout(5000)).unwrap();
    block(c.send(b"req", last())).unwrap();
    drain(&c)
}

/// Metadata over the limits (C-core's defaults: soft 8 KiB, hard 16 KiB)
/// ends the call RESOURCE_EXHAUSTED naming the limit; a flood past what h2
/// accepts ends it with a status too, never a hang.
#[test]
fn metadata_over_the_limits() {
    let srv = start();
    for p in ["/t/BigHeaders", "/t/BigTrailers"] {
        let (_, st) = call(&srv, p);
        assert_code(&st, Code::ResourceExhausted);
        assert!(
            st.message()
                .contains("grpc.absolute_max_metadata_size (16384 bytes)"),
            "{p}: {st}"
        );
    }
    // Raising the limit lets the same response through.
    let mut o = rgrpc_core::ChannelOptions::default();
    o.set(
        "grpc.absolute_max_metadata_size",
        rgrpc_core::channel::OptionValue::Int(64 << 10),
    )
    .unwrap();
    let ch = channel_with(&srv.addr.to_string(), o);
    let c = ch.start_call("/t/BigHeaders", timeout(5000)).unwrap();
    block(c.send(b"req", last())).unwrap();
    let (msgs, st) = drain(&c);
    assert_code(&st, Code::Ok);
    assert_eq!(msgs.len(), 1);
    // Between the limits: refused with a probability (about 1/2 here), so
    // over 40 calls some pass and some do not.
    let ch = channel(&srv.addr.to_string());
    let mut refused = 0;
    for _ in 0..40 {
        let c = ch.start_call("/t/SoftHeaders", timeout(5000)).unwrap();
        block(c.send(b"req", last())).unwrap();
        let st = drain(&c).1;
        match st.code() {
            Code::Ok => {}
            Code::ResourceExhausted => {
                assert!(st.message().contains("grpc.max_metadata_size"), "{st}");
                refused += 1
            }
            other => panic!("{other:?}: {st}"),
        }
    }
    assert!((3..=37).contains(&refused), "{refused} of 40 refused");
    // A flood: 1 MiB of metadata over HEADERS and CONTINUATION frames.
    let t0 = std::time::Instant::now();
    let (msgs, st) = call(&srv, "/t/HugeHeaders");
    assert!(msgs.is_empty());
    assert_code(&st, Code::ResourceExhausted);
    assert!(
        st.message().contains("more than the client accepts"),
        "{st}"
    );
    assert!(t0.elapsed() < std::time::Duration::from_secs(3));
}

/// An HPACK bomb: a 4,000-byte header entered once into the HPACK dynamic
/// table, then referenced 200 times by a one-byte index: about 4 KB on the
/// wire, 800 KB decoded. h2 stops decoding at its bound (four times the
/// hard limit) and the call ends with a status, at once.
#[test]
fn hpack_bomb() {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let frame = h2_frame;
        if !h2_accept_preface(&mut s) {
            return;
        }
        while let Some((h, p)) = h2_read_frame(&mut s) {
            match h[3] {
                4 if h[4] & 1 == 0 => {
                    let _ = s.write_all(&frame(4, 1, 0, &[])); // SETTINGS ACK
                }
                6 if h[4] & 1 == 0 => {
                    let _ = s.write_all(&frame(6, 1, 0, &p)); // PING ACK
                }
                1 => {
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    // :status 200 (static index 8), then content-type:
                    // application/grpc as a literal without indexing
                    // (static name index 31).
                    let mut block = vec![0x88];
                    block.push(0x0f);
                    block.push(31 - 15);
                    block.push(16);
                    block.extend_from_slice(b"application/grpc");
                    // x-bomb: 4000 x 'b', literal with incremental indexing,
                    // new name: it becomes dynamic index 62.
                    block.push(0x40);
                    block.push(6);
                    block.extend_from_slice(b"x-bomb");
                    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // 4000 = 127 + 3873
                    block.extend(std::iter::repeat_n(b'b', 4000));
                    // 200 references to it.
                    block.extend(std::iter::repeat_n(0x80 | 62, 200));
                    let _ = s.write_all(&frame(1, 0x4, stream, &block)); // END_HEADERS
                }
                _ => {}
            }
        }
    });
    let ch = channel(&addr.to_string());
    let t0 = std::time::Instant::now();
    let c = ch.start_call("/t/Bomb", timeout(5000)).unwrap();
    let _ = block(c.send(b"req", last()));
    let (msgs, st) = drain(&c);
    assert!(msgs.is_empty());
    assert!(
        matches!(st.code(), Code::ResourceExhausted | Code::Internal),
        "{st}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
    eprintln!("hpack bomb: {st}");
}

/// Request metadata over the hard limit is not sent.
#[test]
fn request_metadata_over_the_limit() {
    let srv = start();
    let ch = channel(&srv.addr.to_string());
    let mut o = timeout(5000);
    o.metadata
        .add("x-big", "v".repeat(20_000).as_bytes())
        .unwrap();
    let c = ch.start_call("/t/TwoResponses", o).unwrap();
    let _ = block(c.send(b"req", last()));
    let (_, st) = drain(&c);
    assert_code(&st, Code::ResourceExhausted);
    assert!(st.message().contains("request metadata"), "{st}");
}

#[test]
fn trailers_only_response() {
    let srv = start();
    let (msgs, st) = call(&srv, "/t/TrailersOnly");
    assert!(msgs.is_empty());
    assert_code(&st, Code::PermissionDenied);
    assert_eq!(st.message(), "no way");
}

#[test]
fn http_status_without_grpc_status() {
    let srv = start();
    for (p, code) in [
        ("/t/Http503", Code::Unavailable),
        ("/t/Http404", Code::Unimplemented),
        ("/t/Http401", Code::Unauthenticated),
        ("/t/Http500", Code::Unknown),
        ("/t/Html", Code::Unknown),
    ] {
        let (_, st) = call(&srv, p);
        assert_code(&st, code);
    }
}

#[test]
fn bad_or_missing_trailers() {
    let srv = start();
    for p in ["/t/NoGrpcStatus", "/t/BadStatus"] {
        let (_, st) = call(&srv, p);
        assert_code(&st, Code::Unknown);
    }
    let (msgs, st) = call(&srv, "/t/NoTrailers");
    assert_eq!(msgs.len(), 1);
    assert_code(&st, Code::Internal);
}

#[test]
fn compressed_flag_rules() {
    let srv = start();
    let (msgs, st) = call(&srv, "/t/CompressedNoEncoding");
    assert!(msgs.is_empty());
    assert_code(&st, Code::Internal);
    assert!(st.message().contains("grpc-encoding"), "{st}");
    let (_, st) = call(&srv, "/t/UnsupportedEncoding");
    assert_code(&st, Code::Internal);
    assert!(
        st.message().contains("snappy") && st.message().contains("supported"),
        "{st}"
    );
}

#[test]
fn rst_stream_codes() {
    let srv = start();
    for (p, code) in [
        ("/t/RstRefused", Code::Unavailable),
        ("/t/RstCancel", Code::Cancelled),
        ("/t/RstCalm", Code::ResourceExhausted),
        ("/t/RstSecurity", Code::PermissionDenied),
        ("/t/RstProtocol", Code::Internal),
    ] {
        let (_, st) = call(&srv, p);
        assert_code(&st, code);
    }
}

#[test]
fn framing_across_data_frames_and_invalid_percent_encoding() {
    let srv = start();
    let (msgs, st) = call(&srv, "/t/Fragmented");
    assert_code(&st, Code::Ok);
    let v: Vec<&[u8]> = msgs.iter().map(|b| b.as_ref()).collect();
    assert_eq!(v, vec![b"hello".as_slice(), b"world", b"!"]);
    assert_eq!(st.message(), "bad%zzenc%");
}

#[test]
fn unary_cardinality() {
    let srv = start();
    let ch = channel(&srv.addr.to_string());
    let (resp, st) = unary(&ch, "/t/TwoResponses", CallOptions::default(), b"x");
    assert!(resp.is_none());
    assert_code(&st, Code::Unimplemented);
    let (resp, st) = unary(&ch, "/t/ZeroResponses", CallOptions::default(), b"x");
    assert!(resp.is_none());
    assert_code(&st, Code::Unimplemented);
    // Trailers-Only with OK and no message: no response either (as C++).
    let (resp, st) = unary(&ch, "/t/TrailersOnlyOk", CallOptions::default(), b"x");
    assert!(resp.is_none());
    assert_code(&st, Code::Unimplemented);
    assert!(st.message().contains("no response message"), "{st}");
    // A streaming call may end that way with OK.
    let (msgs, st) = call(&srv, "/t/TrailersOnlyOk");
    assert!(msgs.is_empty());
    assert_code(&st, Code::Ok);
    // A streaming call may get any number of messages.
    let (msgs, st) = call(&srv, "/t/TwoResponses");
    assert_eq!(msgs.len(), 2);
    assert_code(&st, Code::Ok);
}

#[test]
fn truncated_message_and_huge_prefix() {
    let srv = start();
    let (msgs, st) = call(&srv, "/t/Truncated");
    assert!(msgs.is_empty());
    assert_code(&st, Code::Internal);
    let t0 = std::time::Instant::now();
    let (_, st) = call(&srv, "/t/HugePrefix");
    assert_code(&st, Code::ResourceExhausted);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(2),
        "must not wait for 4 GiB"
    );
}

/// Response headers at once, the one message 1.5 s later: the initial
/// metadata is readable before the message.
#[test]
fn initial_metadata_before_a_late_message() {
    let srv = start_raw(|_req, mut tx| async move {
        let mut s = tx
            .send_response(grpc_headers(&[("x-early", "1")]), false)
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let _ = s.send_data(frame(0, b"late"), false);
        let _ = s.send_trailers(trailers(&[("grpc-status", "0")]));
    });
    let ch = channel(&srv.addr.to_string());
    let c = ch.start_call("/t/Late", timeout(5000)).unwrap();
    block(c.send(b"req", last())).unwrap();
    let t0 = std::time::Instant::now();
    let md = block(c.initial_metadata()).unwrap().clone();
    let waited = t0.elapsed();
    assert_eq!(md.find("x-early"), Some(&b"1"[..]));
    assert!(
        waited < std::time::Duration::from_millis(1000),
        "initial metadata took {waited:?}"
    );
    let (msgs, st) = drain(&c);
    assert_eq!(msgs.len(), 1);
    assert_code(&st, Code::Ok);
}
