//! Compression on the wire, observed by a raw HTTP/2 server: what the
//! client sends (grpc-encoding, per-message flags), what it accepts, bombs
//! and corrupt data. (Real-server round trips: tests/compression_tonic.rs,
//! the C tests and the interop client.)
mod support;
use bytes::Bytes;
use flate2::write::GzEncoder;
use rgrpc_core::channel::OptionValue;
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::{CallOptions, ChannelOptions, Code, SendFlags};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::raw::*;
use support::*;

/// 1 GiB of zeros, gzip-compressed (about 1 MiB).
fn bomb() -> &'static Bytes {
    static B: OnceLock<Bytes> = OnceLock::new();
    B.get_or_init(|| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&chunk).unwrap();
        }
        Bytes::from(e.finish().unwrap())
    })
}

/// Echo server: replies with one message describing the request
/// ("<grpc-encoding>|<flag>:<decompressed len>,..."), uncompressed; or,
/// for /c/Reply*, sends special responses.
fn server() -> RawServer {
    start_raw(|req, mut tx| async move {
        let enc = req
            .headers
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| "-".into());
        let accept = req
            .headers
            .get("grpc-accept-encoding")
            .map(|v| v.to_str().unwrap().to_string());
        let (hdrs, body): (Vec<(&str, &str)>, Bytes) = match req.path.as_str() {
            "/c/ReplyGzip" => (
                vec![("grpc-encoding", "gzip")],
                frame(1, &Compression::Gzip.compress(&[7u8; 5000])),
            ),
            "/c/ReplyDeflate" => (
                vec![("grpc-encoding", "deflate")],
                frame(1, &Compression::Deflate.compress(&[7u8; 5000])),
            ),
            "/c/ReplyMixed" => {
                let mut b = frame(1, &Compression::Gzip.compress(&[1u8; 3000])).to_vec();
                b.extend_from_slice(&frame(0, &[2u8; 10]));
                (vec![("grpc-encoding", "gzip")], Bytes::from(b))
            }
            "/c/ReplyBomb" => (vec![("grpc-encoding", "gzip")], frame(1, bomb())),
            "/c/ReplyCorrupt" => (
                vec![("grpc-encoding", "gzip")],
                frame(1, b"\x1f\x8b\x08\x00garbage-not-gzip"),
            ),
            "/c/ReplyIdentityFlagged" => (vec![("grpc-encoding", "identity")], frame(1, b"abc")),
            _ => {
                let desc: Vec<String> = messages(&req.body)
                    .into_iter()
                    .map(|(flag, p)| {
                        let len = if flag == 1 {
                            let alg = Compression::from_name(&enc)
                                .expect("flagged message needs grpc-encoding");
                            alg.decompress(&p, None)
                                .expect("valid compressed data")
                                .len()
                        } else {
                            p.len()
                        };
                        format!("{flag}:{len}")
                    })
                    .collect();
                let text = format!("{enc}|{}|{}", desc.join(","), accept.unwrap_or_default());
                (vec![], frame(0, text.as_bytes()))
            }
        };
        let Ok(mut s) = tx.send_response(grpc_headers(&hdrs), false) else {
            return;
        };
        let _ = s.send_data(body, false);
        let _ = s.send_trailers(trailers(&[("grpc-status", "0")]));
    })
}

fn describe(ch: &rgrpc_core::Channel, opts: CallOptions, msgs: &[(usize, bool)]) -> String {
    let call = ch.start_call("/c/Echo", opts).unwrap();
    for (n, no_compress) in msgs {
        let flags = SendFlags {
            no_compress: *no_compress,
            ..SendFlags::default()
        };
        block(call.send(&vec![b'a'; *n], flags)).unwrap();
    }
    block(call.close_send()).unwrap();
    let (m, st) = drain(&call);
    assert_code(&st, Code::Ok);
    String::from_utf8(m[0].to_vec()).unwrap()
}

fn gzip_channel(srv: &RawServer) -> rgrpc_core::Channel {
    let mut o = ChannelOptions::default();
    o.set("grpc.default_compression_algorithm", OptionValue::Int(2))
        .unwrap();
    channel_with(&srv.addr.to_string(), o)
}

#[test]
fn uncompressed_by_default_but_accepts_all() {
    let srv = server();
    let ch = channel(&srv.addr.to_string());
    assert_eq!(
        describe(&ch, CallOptions::default(), &[(1000, false)]),
        "-|0:1000|identity,deflate,gzip"
    );
}

#[test]
fn channel_default_and_per_call_override() {
    let srv = server();
    let ch = gzip_channel(&srv);
    assert_eq!(
        describe(&ch, CallOptions::default(), &[(1000, false)]),
        "gzip|1:1000|identity,deflate,gzip"
    );
    let deflate = CallOptions {
        compression: Some(Compression::Deflate),
        ..Default::default()
    };
    assert_eq!(
        describe(&ch, deflate, &[(1000, false)]),
        "deflate|1:1000|identity,deflate,gzip"
    );
    let none = CallOptions {
        compression: Some(Compression::Identity),
        ..Default::default()
    };
    assert_eq!(
        describe(&ch, none, &[(1000, false)]),
        "-|0:1000|identity,deflate,gzip"
    );
}

#[test]
fn per_message_no_compress_and_small_messages() {
    let srv = server();
    let ch = gzip_channel(&srv);
    // The second message opts out; the third is too small to gain from
    // compression and goes uncompressed, with the flag saying so.
    assert_eq!(
        describe(
            &ch,
            CallOptions::default(),
            &[(2000, false), (2000, true), (3, false), (500, false)]
        ),
        "gzip|1:2000,0:2000,0:3,1:500|identity,deflate,gzip"
    );
}

#[test]
fn compressed_responses_are_inflated() {
    let srv = server();
    let ch = channel(&srv.addr.to_string());
    for (path, enc) in [("/c/ReplyGzip", "gzip"), ("/c/ReplyDeflate", "deflate")] {
        let call = ch.start_call(path, CallOptions::default()).unwrap();
        block(call.send(b"x", last())).unwrap();
        let (m, st) = drain(&call);
        assert_code(&st, Code::Ok);
        assert_eq!(m[0], vec![7u8; 5000]);
        assert_eq!(call.response_encoding().unwrap(), enc);
    }
    let call = ch
        .start_call("/c/ReplyMixed", CallOptions::default())
        .unwrap();
    block(call.send(b"x", last())).unwrap();
    let (m, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!((m[0].len(), m[1].len()), (3000, 10));
}

#[test]
fn bomb_fails_fast_without_inflating_it() {
    let srv = server();
    let compressed_len = bomb().len();
    assert!(compressed_len < 2 << 20, "{compressed_len}");
    let ch = channel(&srv.addr.to_string());
    let t0 = Instant::now();
    let call = ch.start_call("/c/ReplyBomb", timeout(20_000)).unwrap();
    block(call.send(b"x", last())).unwrap();
    let (m, st) = drain(&call);
    assert!(m.is_empty());
    assert_code(&st, Code::ResourceExhausted);
    assert!(st.message().contains("decompressed"), "{st}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // With a limit above the compressed size but far below 1 GiB, same.
    let mut o = ChannelOptions::default();
    o.set("grpc.max_receive_message_length", OptionValue::Int(8 << 20))
        .unwrap();
    let ch = channel_with(&srv.addr.to_string(), o);
    let call = ch.start_call("/c/ReplyBomb", timeout(20_000)).unwrap();
    block(call.send(b"x", last())).unwrap();
    assert_code(&drain(&call).1, Code::ResourceExhausted);
}

#[test]
fn corrupt_and_mislabelled_data_is_internal() {
    let srv = server();
    let ch = channel(&srv.addr.to_string());
    for path in ["/c/ReplyCorrupt", "/c/ReplyIdentityFlagged"] {
        let call = ch.start_call(path, CallOptions::default()).unwrap();
        block(call.send(b"x", last())).unwrap();
        let (m, st) = drain(&call);
        assert!(m.is_empty());
        assert_code(&st, Code::Internal);
    }
}
