//! Interceptors against a real tonic server: what they change reaches the
//! server and the application; chain order; per-call data; answers from
//! other threads; ending a call early; a hook dropped without an answer.
mod support;
use bytes::Bytes;
use prost::Message;
use rgrpc_core::call::{CallContext, CallStart, Hooks, Interceptor, Interceptors, Reply};
use rgrpc_core::{CallOptions, Channel, ChannelOptions, Code, Status};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

type StartFn = dyn Fn(CallStart) -> Result<CallStart, Status> + Send + Sync;
type MsgFn = dyn Fn(Bytes) -> Result<Bytes, Status> + Send + Sync;
type StatusFn = dyn Fn(Status) -> Status + Send + Sync;

/// An interceptor made of closures; each hook also logs "<name>.<hook>".
/// `later`: answer from another thread after 20 ms.
#[derive(Default)]
struct Fns {
    name: &'static str,
    log: Option<Arc<Mutex<Vec<String>>>>,
    start: Option<Box<StartFn>>,
    send: Option<Box<MsgFn>>,
    recv: Option<Box<MsgFn>>,
    status: Option<Box<StatusFn>>,
    later: bool,
    drop_start: bool,
}

impl Fns {
    fn note(&self, hook: &str) {
        if let Some(l) = &self.log {
            l.lock().unwrap().push(format!("{}.{hook}", self.name));
        }
    }
}

fn answer<T: Send + 'static>(later: bool, reply: Reply<T>, v: T) {
    if later {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            reply.send(v)
        });
    } else {
        reply.send(v)
    }
}

impl Interceptor for Fns {
    fn hooks(&self) -> Hooks {
        Hooks {
            start: self.start.is_some() || self.drop_start,
            send_message: self.send.is_some(),
            recv_message: self.recv.is_some(),
            status: self.status.is_some(),
        }
    }
    fn start(&self, _c: &Arc<CallContext>, s: CallStart, reply: Reply<Result<CallStart, Status>>) {
        self.note("start");
        if self.drop_start {
            drop(reply);
            return;
        }
        answer(self.later, reply, (self.start.as_ref().unwrap())(s));
    }
    fn send_message(&self, _c: &Arc<CallContext>, m: Bytes, reply: Reply<Result<Bytes, Status>>) {
        self.note("send");
        answer(self.later, reply, (self.send.as_ref().unwrap())(m));
    }
    fn recv_message(&self, _c: &Arc<CallContext>, m: Bytes, reply: Reply<Result<Bytes, Status>>) {
        self.note("recv");
        answer(self.later, reply, (self.recv.as_ref().unwrap())(m));
    }
    fn status(&self, _c: &Arc<CallContext>, s: Status, reply: Reply<Status>) {
        self.note("status");
        answer(self.later, reply, (self.status.as_ref().unwrap())(s));
    }
}

fn with(target: &str, list: Vec<Arc<dyn Interceptor>>) -> Channel {
    let opts = ChannelOptions {
        interceptors: Interceptors::new(list),
        ..ChannelOptions::default()
    };
    channel_with(target, opts)
}

fn unary_opts() -> CallOptions {
    CallOptions {
        unary_response: true,
        ..timeout(10_000)
    }
}

fn payload_len(resp: &Bytes) -> usize {
    body_len_simple(resp)
}

#[test]
fn start_hook_changes_method_metadata_and_what_the_server_gets() {
    for later in [false, true] {
        let srv = TestServer::start();
        let ic = Fns {
            start: Some(Box::new(|mut s: CallStart| {
                assert_eq!(s.method, "/grpc.testing.TestService/NoSuchMethod");
                s.method = UNARY.to_string();
                s.opts
                    .metadata
                    .add("x-grpc-test-echo-initial", b"from-interceptor")
                    .unwrap();
                Ok(s)
            })),
            later,
            ..Fns::default()
        };
        let ch = with(&srv.target(), vec![Arc::new(ic)]);
        let call = ch
            .start_call("/grpc.testing.TestService/NoSuchMethod", unary_opts())
            .unwrap();
        block(call.send(&simple(3, 5), last())).unwrap();
        let init = block(call.initial_metadata()).unwrap().clone();
        assert_eq!(
            init.find("x-grpc-test-echo-initial").unwrap(),
            b"from-interceptor",
            "the server got the interceptor's metadata"
        );
        let (msgs, st) = drain(&call);
        assert_code(&st, Code::Ok);
        assert_eq!(payload_len(&msgs[0]), 5, "answered by UnaryCall");
        assert_eq!(srv.requests(), 1);
    }
}

#[test]
fn start_hook_sets_a_deadline_and_ends_calls_early() {
    let srv = TestServer::start();
    // A 200 ms deadline on a call that had none: a stream with 1 s gaps ends
    // DEADLINE_EXCEEDED.
    let ic = Fns {
        start: Some(Box::new(|mut s: CallStart| {
            if s.method == SERVER_STREAM {
                assert!(s.opts.deadline.is_none());
                s.opts.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(200));
                Ok(s)
            } else if s.method == EMPTY {
                Err(Status::new(Code::PermissionDenied, "not for you"))
            } else {
                Ok(s)
            }
        })),
        later: true,
        ..Fns::default()
    };
    let ch = with(&srv.target(), vec![Arc::new(ic)]);
    let t0 = Instant::now();
    let call = ch
        .start_call(SERVER_STREAM, CallOptions::default())
        .unwrap();
    block(call.send(&stream_req(&[1, 1, 1], 1_000_000), last())).unwrap();
    let (_, st) = drain(&call);
    assert_code(&st, Code::DeadlineExceeded);
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(900), "{took:?}");
    assert!(call.time_remaining().is_some());
    // Ended by the hook: the server never hears of it.
    let before = srv.requests();
    let (resp, st) = unary(&ch, EMPTY, timeout(5000), &[]);
    assert!(resp.is_none());
    assert_code(&st, Code::PermissionDenied);
    assert_eq!(st.message(), "not for you");
    assert_eq!(srv.requests(), before);
}

#[test]
fn message_hooks_replace_messages_both_ways_in_all_patterns() {
    let srv = TestServer::start();
    let sent = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    let (s2, g2) = (sent.clone(), got.clone());
    let ic = Fns {
        // Every request asks for 9-byte responses instead.
        send: Some(Box::new(move |m: Bytes| {
            s2.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut r) = pb::SimpleRequest::decode(m.clone()) {
                if r.response_size > 0 {
                    r.response_size = 9;
                    return Ok(r.encode_to_vec().into());
                }
            }
            if let Ok(mut r) = pb::StreamingOutputCallRequest::decode(m.clone()) {
                for p in &mut r.response_parameters {
                    p.size = 9;
                }
                return Ok(r.encode_to_vec().into());
            }
            Ok(m)
        })),
        recv: Some(Box::new(move |m: Bytes| {
            g2.fetch_add(1, Ordering::SeqCst);
            // The application sees the length of what came, as text.
            Ok(Bytes::from(format!("len={}", m.len())))
        })),
        ..Fns::default()
    };
    let ch = with(&srv.target(), vec![Arc::new(ic)]);
    // Unary (both the call and the unary helper).
    let (resp, st) = unary(&ch, UNARY, unary_opts(), &simple(1, 100));
    assert_code(&st, Code::Ok);
    let want = pb::SimpleResponse {
        payload: payload(9),
        ..Default::default()
    }
    .encoded_len();
    assert_eq!(resp.unwrap(), format!("len={want}"));
    // Server streaming: three responses, each 9 bytes.
    let call = ch.start_call(SERVER_STREAM, timeout(10_000)).unwrap();
    block(call.send(&stream_req(&[1, 200, 300], 0), last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let want = pb::StreamingOutputCallResponse {
        payload: payload(9),
    }
    .encoded_len();
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m == &format!("len={want}")));
    // Client streaming: the server sums what it received (unchanged: not
    // a SimpleRequest with a size).
    let call = ch
        .start_call(
            CLIENT_STREAM,
            CallOptions {
                unary_response: true,
                ..timeout(10_000)
            },
        )
        .unwrap();
    let req = pb::StreamingInputCallRequest {
        payload: payload(10),
        ..Default::default()
    }
    .encode_to_vec();
    block(call.send(&req, Default::default())).unwrap();
    block(call.send(&req, last())).unwrap();
    let (msgs, st) = drain(&call);
    assert_code(&st, Code::Ok);
    let want = pb::StreamingInputCallResponse {
        aggregated_payload_size: 20,
    }
    .encoded_len();
    assert_eq!(msgs, vec![Bytes::from(format!("len={want}"))]);
    // Bidi: one response per request.
    let call = ch.start_call(FULL_DUPLEX, timeout(10_000)).unwrap();
    for _ in 0..3 {
        block(call.send(&stream_req(&[50], 0), Default::default())).unwrap();
        let m = block(call.recv()).unwrap().unwrap();
        assert!(m.starts_with(b"len="));
    }
    block(call.close_send()).unwrap();
    let (_, st) = drain(&call);
    assert_code(&st, Code::Ok);
    assert_eq!(sent.load(Ordering::SeqCst), 1 + 1 + 2 + 3);
    assert_eq!(got.load(Ordering::SeqCst), 1 + 3 + 1 + 3);
    // A unary future: its done callback and a later `recv` see the changed
    // response, which went through the hook once.
    let (tx, rx) = std::sync::mpsc::channel();
    let call = ch
        .unary_async(
            UNARY,
            timeout(10_000),
            simple(1, 100).into(),
            move |st: &Arc<Status>, r: Option<&Bytes>| {
                tx.send((st.code(), r.cloned())).unwrap();
            },
        )
        .unwrap();
    let (code, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(code, Code::Ok);
    let want = pb::SimpleResponse {
        payload: payload(9),
        ..Default::default()
    }
    .encoded_len();
    assert_eq!(r.unwrap(), format!("len={want}"));
    assert_eq!(block(call.recv()).unwrap().unwrap(), format!("len={want}"));
    assert_eq!(got.load(Ordering::SeqCst), 1 + 3 + 1 + 3 + 1);
    assert_eq!(sent.load(Ordering::SeqCst), 1 + 1 + 2 + 3 + 1);
}

#[test]
fn status_hook_replaces_status_and_trailers() {
    let srv = TestServer::start();
    let ic = Fns {
        status: Some(Box::new(|s: Status| {
            let mut md = s.trailers().clone();
            md.add("x-seen-by", b"interceptor").unwrap();
            if s.code() == Code::NotFound {
                Status::with_trailers(Code::Ok, "", md)
            } else {
                Status::with_trailers(s.code(), format!("[{}]", s.message()), md)
            }
        })),
        later: true,
        ..Fns::default()
    };
    let ch = with(&srv.target(), vec![Arc::new(ic)]);
    let (_, st) = unary(&ch, UNARY, unary_opts(), &with_status(5, "missing"));
    assert_code(&st, Code::Ok);
    assert_eq!(st.trailers().find("x-seen-by").unwrap(), b"interceptor");
    let (_, st) = unary(&ch, UNARY, unary_opts(), &with_status(9, "late"));
    assert_code(&st, Code::FailedPrecondition);
    assert_eq!(st.message(), "[late]");
    // The unary future's done callback sees the changed status too.
    let (tx, rx) = std::sync::mpsc::channel();
    let call = ch
        .unary_async(
            UNARY,
            timeout(10_000),
            simple(1, 1).into(),
            move |st: &Arc<Status>, _r: Option<&Bytes>| {
                tx.send((st.code(), st.message().to_string())).unwrap();
            },
        )
        .unwrap();
    call.detach();
    let (code, msg) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((code, msg.as_str()), (Code::Ok, "[]"));
    // Cancelled by the application: the hook still has the last word.
    let call = ch.start_call(FULL_DUPLEX, timeout(10_000)).unwrap();
    block(call.send(&stream_req(&[1], 0), Default::default())).unwrap();
    assert!(call.cancel());
    let st = block(call.finish()).unwrap();
    assert_code(&st, Code::Cancelled);
    assert!(st.message().starts_with('['), "{}", st.message());
}

#[test]
fn chain_order_per_call_data_and_a_dropped_hook() {
    let srv = TestServer::start();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mk = |name| {
        Arc::new(Fns {
            name,
            log: Some(log.clone()),
            start: Some(Box::new(Ok)),
            send: Some(Box::new(Ok)),
            recv: Some(Box::new(Ok)),
            status: Some(Box::new(|s| s)),
            ..Fns::default()
        }) as Arc<dyn Interceptor>
    };
    let ch = with(&srv.target(), vec![mk("a"), mk("b")]);
    let (resp, st) = unary(&ch, UNARY, unary_opts(), &simple(1, 1));
    assert_code(&st, Code::Ok);
    assert!(resp.is_some());
    assert_eq!(
        *log.lock().unwrap(),
        ["a.start", "b.start", "a.send", "b.send", "b.recv", "a.recv", "b.status", "a.status"]
    );

    // Per-call data lives as long as the call.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    struct Data(Arc<AtomicUsize>);
    impl Interceptor for Data {
        fn hooks(&self) -> Hooks {
            Hooks {
                start: true,
                status: true,
                ..Hooks::default()
            }
        }
        fn start(&self, c: &Arc<CallContext>, s: CallStart, r: Reply<Result<CallStart, Status>>) {
            *c.data() = Some(Box::new(Counted(self.0.clone())));
            r.send(Ok(s))
        }
        fn status(&self, c: &Arc<CallContext>, s: Status, r: Reply<Status>) {
            let has = c.data().as_ref().is_some_and(|d| d.is::<Counted>());
            r.send(Status::new(s.code(), format!("{} data={has}", c.method())))
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let ch = with(&srv.target(), vec![Arc::new(Data(drops.clone()))]);
    for i in 0..5 {
        let (_, st) = unary(&ch, EMPTY, timeout(5000), &[]);
        assert_eq!(st.message(), format!("{EMPTY} data=true"));
        // Dropped with the call (the unary helper's call is gone by now,
        // but its last reference may sit in a runtime task a moment more).
        let t0 = Instant::now();
        while drops.load(Ordering::SeqCst) < i + 1 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(drops.load(Ordering::SeqCst), i + 1);
    }

    // A hook dropped without an answer ends the call INTERNAL, unsent.
    let ch = with(
        &srv.target(),
        vec![Arc::new(Fns {
            drop_start: true,
            ..Fns::default()
        })],
    );
    let before = srv.requests();
    let (_, st) = unary(&ch, EMPTY, timeout(5000), &[]);
    assert_code(&st, Code::Internal);
    assert!(st.message().contains("without answering"), "{st}");
    assert_eq!(srv.requests(), before);
}

#[test]
fn a_failing_message_hook_ends_the_call_with_its_status() {
    let srv = TestServer::start();
    let ic = Fns {
        send: Some(Box::new(|m: Bytes| {
            if m.len() > 100 {
                Err(Status::new(Code::InvalidArgument, "too big for policy"))
            } else {
                Ok(m)
            }
        })),
        recv: Some(Box::new(|m: Bytes| {
            if m.len() > 1000 {
                Err(Status::new(Code::ResourceExhausted, "response over policy"))
            } else {
                Ok(m)
            }
        })),
        ..Fns::default()
    };
    let ch = with(&srv.target(), vec![Arc::new(ic)]);
    let (_, st) = unary(&ch, UNARY, unary_opts(), &simple(500, 1));
    assert_code(&st, Code::InvalidArgument);
    let (_, st) = unary(&ch, UNARY, unary_opts(), &simple(1, 5000));
    assert_code(&st, Code::ResourceExhausted);
    let (resp, st) = unary(&ch, UNARY, unary_opts(), &simple(1, 50));
    assert_code(&st, Code::Ok);
    assert_eq!(payload_len(&resp.unwrap()), 50);
}
