//! Tracers and the log sink, against a real tonic server: each tracer's
//! lines appear when it is on and only then, the verbosity lets lines of a
//! level through without their tracer, nothing is written when nothing is
//! on, and lines come from more than one thread. One test: the tracer set
//! is global to the process.
mod support;
use rgrpc_core::codec::compression::Compression;
use rgrpc_core::log::{self, Level, Tracer};
use rgrpc_core::{CallOptions, Code};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

type Lines = Arc<Mutex<Vec<(Level, String, String, std::thread::ThreadId)>>>;

fn take(lines: &Lines) -> Vec<(Level, String, String, std::thread::ThreadId)> {
    std::mem::take(&mut *lines.lock().unwrap())
}

fn tracers_of(v: &[(Level, String, String, std::thread::ThreadId)]) -> HashSet<String> {
    v.iter().map(|l| l.1.clone()).collect()
}

/// Everything that makes lines: a channel by name (resolver), with a
/// policy, a unary call and a compressed one, a stream that outlives two
/// keepalive pings, then close.
fn workload(target: &str, lb: &str) {
    let ch = channel_with(
        target,
        opts(
            &[
                ("grpc.keepalive_time_ms", 100),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
            &[("grpc.lb_policy_name", lb)],
        ),
    );
    let (_, st) = unary(&ch, EMPTY, timeout(5000), b"");
    assert_code(&st, Code::Ok);
    let gz = CallOptions {
        compression: Some(Compression::Gzip),
        ..timeout(5000)
    };
    let (_, st) = unary(&ch, UNARY, gz, &simple(2000, 10));
    assert_code(&st, Code::Ok);
    let (_, st) = unary(&ch, UNARY, timeout(5000), &simple(1, 10));
    assert_code(&st, Code::Ok);
    std::thread::sleep(Duration::from_millis(350));
    ch.close();
}

#[test]
fn tracers_write_when_on_and_only_then() {
    let srv = TestServer::start();
    let target = format!("localhost:{}", srv.addr().port());
    let lines: Lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    log::set_sink(Some(Arc::new(move |level, tracer: &str, msg: &str| {
        l.lock().unwrap().push((
            level,
            tracer.to_string(),
            msg.to_string(),
            std::thread::current().id(),
        ))
    })));

    // Nothing on: nothing written.
    log::set_trace("none").unwrap();
    log::set_verbosity(None);
    workload(&target, "pick_first");
    assert!(take(&lines).is_empty());

    // Each tracer alone: its lines, no other's.
    let expect: &[(Tracer, &str, &str)] = &[
        (Tracer::ConnectivityState, "pick_first", "is READY"),
        (Tracer::Subchannel, "pick_first", "is READY"),
        (Tracer::Resolver, "pick_first", "resolved localhost"),
        (Tracer::PickFirst, "pick_first", "pick_first: using"),
        (Tracer::RoundRobin, "round_robin", "address(es)"),
        (Tracer::Http, "pick_first", "received SETTINGS frame"),
        (
            Tracer::HttpKeepalive,
            "pick_first",
            "keepalive ping answered",
        ),
        (Tracer::Call, "pick_first", "ended: OK"),
        (Tracer::Compression, "pick_first", "with gzip"),
    ];
    for (tracer, lb, needle) in expect {
        log::set_trace(&format!("none,{}", tracer.name())).unwrap();
        workload(&target, lb);
        let got = take(&lines);
        let names = tracers_of(&got);
        assert_eq!(
            names,
            HashSet::from([tracer.name().to_string()]),
            "{tracer:?}: {got:?}"
        );
        assert!(
            got.iter().any(|l| l.2.contains(needle)),
            "{tracer:?}: no line with {needle:?} in {got:?}"
        );
        assert!(got.iter().all(|l| !l.2.is_empty()));
    }

    // -name turns one off again; every line comes from some thread, and
    // more than one thread writes (callers and the library's driver).
    log::set_trace("all,-http,-http_keepalive").unwrap();
    let t2 = {
        let target = target.clone();
        std::thread::spawn(move || workload(&target, "pick_first"))
    };
    workload(&target, "round_robin");
    t2.join().unwrap();
    let got = take(&lines);
    let names = tracers_of(&got);
    assert!(
        !names.contains("http") && !names.contains("http_keepalive"),
        "{names:?}"
    );
    assert!(
        names.contains("call") && names.contains("round_robin"),
        "{names:?}"
    );
    let threads: HashSet<_> = got.iter().map(|l| l.3).collect();
    assert!(threads.len() >= 2, "all lines from one thread");

    // Verbosity INFO without tracers: INFO lines of any tracer, no DEBUG.
    log::set_trace("none").unwrap();
    log::set_verbosity(Some(Level::Info));
    workload(&target, "pick_first");
    let got = take(&lines);
    assert!(got.iter().all(|l| l.0 >= Level::Info), "{got:?}");
    assert!(tracers_of(&got).contains("connectivity_state"), "{got:?}");
    log::set_verbosity(None);

    // Unknown names are refused, naming the known ones; nothing changes.
    log::set_trace("call").unwrap();
    let e = log::set_trace("call,nonsense").unwrap_err();
    assert!(e.contains("nonsense") && e.contains("pick_first"), "{e}");
    assert!(log::on(Tracer::Call));
    log::set_trace("none").unwrap();
    log::set_sink(None);
}
