//! SETTINGS_MAX_FRAME_SIZE against a real tonic server: by default the
//! server keeps to HTTP/2's 16 KiB frames; with `grpc.http2.max_frame_size`
//! it sends larger ones, which the client reads straight into h2's buffer
//! (the messages must come out whole either way). Frame sizes are read from
//! the `http` tracer's "received DATA frame" lines. One test: the tracer is
//! global to the process.
mod support;
use rgrpc_core::log::{self, Level};
use rgrpc_core::Code;
use std::sync::{Arc, Mutex};
use support::*;

/// Sizes of the DATA frames the tracer saw since the last call.
fn data_frames(lines: &Mutex<Vec<String>>) -> Vec<usize> {
    std::mem::take(&mut *lines.lock().unwrap())
        .iter()
        .filter(|l| l.starts_with("received DATA frame"))
        .map(|l| {
            let n = l.rsplit(", ").next().unwrap();
            n.trim_end_matches(" bytes").parse().unwrap()
        })
        .collect()
}

/// A 1 MiB unary response and a stream of three 300,000-byte messages,
/// each checked whole.
fn large_messages(target: &str, max_frame: Option<i64>) {
    let ints: Vec<(&str, i64)> = max_frame
        .map(|v| vec![("grpc.http2.max_frame_size", v)])
        .unwrap_or_default();
    let ch = channel_with(target, opts(&ints, &[]));
    let (body, st) = unary(&ch, UNARY, timeout(10_000), &simple(1 << 20, 1 << 20));
    assert_code(&st, Code::Ok);
    assert_eq!(body_len_simple(&body.unwrap()), 1 << 20);
    let call = ch.start_call(SERVER_STREAM, timeout(10_000)).unwrap();
    block(call.send(&stream_req(&[300_000; 3], 0), last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(msgs.len(), 3);
    for m in &msgs {
        assert_eq!(body_len_stream(m), 300_000);
    }
    ch.close();
}

#[test]
fn server_keeps_to_the_frame_size_announced() {
    let srv = TestServer::start();
    let target = format!("127.0.0.1:{}", srv.addr().port());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    log::set_sink(Some(Arc::new(move |_: Level, tracer: &str, msg: &str| {
        if tracer == "http" {
            l.lock().unwrap().push(msg.to_string());
        }
    })));
    log::set_trace("http").unwrap();

    // Default: HTTP/2's 16 KiB.
    large_messages(&target, None);
    let sizes = data_frames(&lines);
    assert!(sizes.len() > 100, "{} DATA frames", sizes.len());
    let max = sizes.iter().copied().max().unwrap();
    assert!(max <= 16_384, "largest DATA frame {max} bytes");

    // The option: larger frames, none above it; messages still whole
    // (read past the read-ahead, straight into h2's buffer).
    large_messages(&target, Some(256 << 10));
    let sizes = data_frames(&lines);
    let max = sizes.iter().copied().max().unwrap();
    assert!(max > 64 << 10, "largest DATA frame {max} bytes: {sizes:?}");
    assert!(
        max <= 256 << 10,
        "largest DATA frame {max} bytes: {sizes:?}"
    );
    let total: usize = sizes.iter().sum();
    assert!(total > (1 << 20) + 900_000, "{total} bytes of DATA seen");

    log::set_trace("none").unwrap();
    log::set_sink(None);

    // Outside HTTP/2's range: refused, naming the range.
    for v in [16_383, 1 << 24, -1] {
        let mut o = rgrpc_core::ChannelOptions::default();
        let e = o
            .set(
                "grpc.http2.max_frame_size",
                rgrpc_core::channel::OptionValue::Int(v),
            )
            .unwrap_err();
        assert!(e.to_string().contains("16384 to 16777215"), "{v}: {e}");
    }
}
