//! tonic_client: the tonic reference client of the benchmark suite.
//! Same command line, output and exit codes as `rgrpc_bench`
//! (bench/bench_common.h), plus `--current-thread` to run on tokio's
//! current-thread runtime instead of the default multi-thread one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

pub mod pb {
    tonic::include_proto!("grpc.testing");
}
use pb::benchmark_service_client::BenchmarkServiceClient;
use pb::{Payload, SimpleRequest, SimpleResponse};

const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_UNIMPLEMENTED: i32 = 3;

const SCENARIOS: [&str; 6] = [
    "unary_lat",
    "pingpong_lat",
    "unary_tput",
    "server_stream",
    "large_unary",
    "client_stream",
];

#[derive(Clone)]
struct Args {
    host: String,
    port: u16,
    scenario: String,
    calls: u64,
    warmup: u64,
    duration: f64,
    concurrency: u64,
    req_size: u64,
    resp_size: u64,
    current_thread: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: tonic_client [--host H] [--port N] [--scenario S] [--calls N] [--warmup N]\n\
         \x20         [--duration SEC] [--concurrency N] [--req-size BYTES] [--resp-size BYTES]\n\
         \x20         [--current-thread]\n\
         scenarios: {}",
        SCENARIOS.join(" ")
    );
    std::process::exit(EXIT_USAGE)
}

fn val<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("tonic_client: bad value for {flag}: {v}");
        std::process::exit(EXIT_USAGE)
    })
}

fn parse_args() -> Args {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 50051,
        scenario: "unary_lat".into(),
        calls: 10000,
        warmup: 1000,
        duration: 10.0,
        concurrency: 0,
        req_size: u64::MAX,
        resp_size: u64::MAX,
        current_thread: false,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let f = argv[i].as_str();
        if f == "--current-thread" {
            a.current_thread = true;
            i += 1;
            continue;
        }
        if f == "--help" || f == "-h" {
            usage();
        }
        let Some(v) = argv.get(i + 1) else {
            eprintln!("tonic_client: {f} needs a value");
            usage();
        };
        match f {
            "--host" => a.host = v.clone(),
            "--port" => a.port = val(f, v),
            "--scenario" => a.scenario = v.clone(),
            "--calls" => a.calls = val(f, v),
            "--warmup" => a.warmup = val(f, v),
            "--duration" => a.duration = val(f, v),
            "--concurrency" => a.concurrency = val(f, v),
            "--req-size" => a.req_size = val(f, v),
            "--resp-size" => a.resp_size = val(f, v),
            _ => {
                eprintln!("tonic_client: unknown flag {f}");
                usage();
            }
        }
        i += 2;
    }
    if a.calls == 0 || !(a.duration > 0.0) {
        eprintln!("tonic_client: --calls and --duration must be positive");
        std::process::exit(EXIT_USAGE);
    }
    let dflt = if a.scenario == "large_unary" { 1 << 20 } else { 0 };
    if a.req_size == u64::MAX {
        a.req_size = dflt;
    }
    if a.resp_size == u64::MAX {
        a.resp_size = dflt;
    }
    if a.concurrency == 0 {
        a.concurrency = if a.scenario == "unary_tput" { 64 } else { 1 };
    }
    a
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    }
}

fn tv_s(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// The measured phase (as `bench_result` in bench_common.h).
struct Measure {
    t_start: u64,
    t_end: u64,
    ru_start: libc::rusage,
    ru_end: libc::rusage,
    lat_ns: Vec<u64>,
    ops: u64,
}

impl Measure {
    fn new(cap: u64) -> Self {
        Measure {
            t_start: 0,
            t_end: 0,
            ru_start: rusage(),
            ru_end: rusage(),
            lat_ns: Vec::with_capacity(cap as usize),
            ops: 0,
        }
    }
    fn start(&mut self) {
        self.ru_start = rusage();
        self.t_start = now_ns();
    }
    fn stop(&mut self) {
        self.t_end = now_ns();
        self.ru_end = rusage();
    }
    fn expired(&self, a: &Args, now: u64) -> bool {
        (now - self.t_start) as f64 >= a.duration * 1e9
    }
}

fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1] as f64 / 1000.0)
}

fn num(v: Option<f64>, dec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.dec$}"),
        _ => "null".into(),
    }
}

fn report(a: &Args, m: &mut Measure) {
    let secs = (m.t_end - m.t_start) as f64 / 1e9;
    let stream = a.scenario == "server_stream" || a.scenario == "client_stream";
    m.lat_ns.sort_unstable();
    let rate = if secs > 0.0 { Some(m.ops as f64 / secs) } else { None };
    let per_op = match a.scenario.as_str() {
        "server_stream" => a.resp_size,
        "client_stream" => a.req_size,
        _ => a.req_size + a.resp_size,
    } as f64;
    let mb = if secs > 0.0 { Some(m.ops as f64 * per_op / 1e6 / secs) } else { None };
    println!(
        "{{\"scenario\":\"{}\",\"calls\":{},\"seconds\":{:.6},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\
         \"qps\":{},\"msgs_per_s\":{},\"MB_per_s\":{},\"cpu_user_s\":{:.6},\"cpu_sys_s\":{:.6},\
         \"max_rss_kb\":{},\"concurrency\":{},\"req_size\":{},\"resp_size\":{}}}",
        a.scenario,
        m.ops,
        secs,
        num(pct(&m.lat_ns, 50.0), 1),
        num(pct(&m.lat_ns, 90.0), 1),
        num(pct(&m.lat_ns, 99.0), 1),
        num(if stream { None } else { rate }, 1),
        num(if stream { rate } else { None }, 1),
        num(mb, 3),
        tv_s(m.ru_end.ru_utime) - tv_s(m.ru_start.ru_utime),
        tv_s(m.ru_end.ru_stime) - tv_s(m.ru_start.ru_stime),
        m.ru_end.ru_maxrss,
        a.concurrency,
        a.req_size,
        a.resp_size
    );
}

type Client = BenchmarkServiceClient<Channel>;

fn request(a: &Args) -> SimpleRequest {
    SimpleRequest {
        response_size: a.resp_size as i32,
        payload: Some(Payload { r#type: 0, body: vec![0u8; a.req_size as usize] }),
        ..Default::default()
    }
}

fn check(a: &Args, r: &SimpleResponse) -> Result<(), String> {
    let got = r.payload.as_ref().map_or(0, |p| p.body.len()) as u64;
    if got != a.resp_size {
        return Err(format!("response payload {got} bytes, expected {}", a.resp_size));
    }
    Ok(())
}

async fn unary_blocking(a: &Args, mut c: Client, m: &mut Measure) -> Result<(), String> {
    let req = request(a);
    for i in 0..a.warmup + a.calls {
        if i == a.warmup {
            m.start();
        }
        let t0 = now_ns();
        let r = c.unary_call(req.clone()).await.map_err(|s| format!("UnaryCall: {s}"))?;
        check(a, r.get_ref())?;
        let t1 = now_ns();
        if i >= a.warmup {
            m.lat_ns.push(t1 - t0);
            m.ops += 1;
            if m.expired(a, t1) {
                break;
            }
        }
    }
    m.stop();
    Ok(())
}

async fn pingpong(a: &Args, mut c: Client, m: &mut Measure) -> Result<(), String> {
    let req = request(a);
    let (tx, rx) = tokio::sync::mpsc::channel::<SimpleRequest>(1);
    // tonic returns from streaming_call only once the response headers are
    // in, and gRPC C++ servers send them with the first response: queue the
    // first request (a warmup one when --warmup > 0) before the call.
    tx.send(req.clone()).await.map_err(|_| "StreamingCall: send failed".to_string())?;
    let mut inbound = c
        .streaming_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("StreamingCall: {s}"))?
        .into_inner();
    for i in 0..a.warmup + a.calls {
        if i == a.warmup {
            m.start();
        }
        let t0 = now_ns();
        if i > 0 {
            tx.send(req.clone()).await.map_err(|_| "StreamingCall: send failed".to_string())?;
        }
        let r = inbound
            .message()
            .await
            .map_err(|s| format!("StreamingCall: {s}"))?
            .ok_or("StreamingCall: stream ended early")?;
        check(a, &r)?;
        let t1 = now_ns();
        if i >= a.warmup {
            m.lat_ns.push(t1 - t0);
            m.ops += 1;
            if m.expired(a, t1) {
                break;
            }
        }
    }
    m.stop();
    drop(tx);
    while let Some(_) = inbound.message().await.map_err(|s| format!("StreamingCall: {s}"))? {}
    Ok(())
}

struct Tput {
    m: Measure,
    issued: u64,
    completed: u64,
    measuring: bool,
    done: bool,
    error: Option<String>,
}

async fn unary_tput(a: &Args, c: Client, m: Measure) -> Result<Measure, String> {
    let st = Arc::new(Mutex::new(Tput { m, issued: 0, completed: 0, measuring: false, done: false, error: None }));
    if a.warmup == 0 {
        let mut s = st.lock().unwrap();
        s.measuring = true;
        s.m.start();
    }
    let req = request(a);
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (st, a, req, mut c) = (st.clone(), a.clone(), req.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                {
                    let mut s = st.lock().unwrap();
                    if s.done || s.issued >= a.warmup + a.calls {
                        return;
                    }
                    s.issued += 1;
                }
                let t0 = now_ns();
                let r = c.unary_call(req.clone()).await;
                let err = match &r {
                    Ok(r) => check(&a, r.get_ref()).err(),
                    Err(s) => Some(format!("UnaryCall: {s}")),
                };
                let now = now_ns();
                let mut s = st.lock().unwrap();
                s.completed += 1;
                if let Some(e) = err {
                    s.error.get_or_insert(e);
                    s.done = true;
                }
                if s.done {
                    continue;
                }
                if s.measuring {
                    s.m.lat_ns.push(now - t0);
                    s.m.ops += 1;
                    if s.m.ops >= a.calls || s.m.expired(&a, now) {
                        s.done = true;
                        s.m.stop();
                    }
                } else if s.completed >= a.warmup {
                    s.measuring = true;
                    s.m.start();
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let mut s = Arc::try_unwrap(st).map_err(|_| "tasks outlived".to_string())?.into_inner().unwrap();
    if let Some(e) = s.error {
        return Err(e);
    }
    if !s.done {
        s.m.stop();
    }
    Ok(s.m)
}

async fn server_stream(a: &Args, mut c: Client, m: &mut Measure) -> Result<(), String> {
    let mut inbound = c
        .streaming_from_server(request(a))
        .await
        .map_err(|s| format!("StreamingFromServer: {s}"))?
        .into_inner();
    if a.warmup == 0 {
        m.start();
    }
    for i in 0..a.warmup + a.calls {
        let r = inbound
            .message()
            .await
            .map_err(|s| format!("StreamingFromServer: {s}"))?
            .ok_or("StreamingFromServer: stream ended early")?;
        check(a, &r)?;
        if i + 1 == a.warmup {
            m.start();
        } else if i >= a.warmup {
            m.ops += 1;
            if m.ops & 255 == 0 && m.expired(a, now_ns()) {
                break;
            }
        }
    }
    m.stop();
    drop(inbound); // cancels the endless stream
    Ok(())
}

/// One StreamingFromClient call of `count` messages (fewer once `deadline`
/// passes). Returns the number sent.
async fn client_stream_call(a: &Args, c: &mut Client, count: u64, deadline: Option<u64>) -> Result<u64, String> {
    let req = request(a);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent2 = sent.clone();
    let out = tokio_stream::iter(0..count)
        .take_while(move |i| {
            *i & 255 != 255 || deadline.is_none_or(|d| now_ns() < d)
        })
        .map(move |_| {
            sent2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            req.clone()
        });
    let r = c.streaming_from_client(out).await.map_err(|s| format!("StreamingFromClient: {s}"))?;
    check(a, r.get_ref())?;
    Ok(sent.load(std::sync::atomic::Ordering::Relaxed))
}

async fn client_stream(a: &Args, mut c: Client, m: &mut Measure) -> Result<(), String> {
    if a.warmup > 0 {
        client_stream_call(a, &mut c, a.warmup, None).await?;
    }
    m.start();
    let deadline = m.t_start + (a.duration * 1e9) as u64;
    let n = client_stream_call(a, &mut c, a.calls, Some(deadline)).await?;
    m.stop();
    m.ops = n;
    Ok(())
}

async fn run(a: Args) -> Result<Measure, String> {
    let ep = Endpoint::from_shared(format!("http://{}:{}", a.host, a.port))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let ch = ep.connect().await.map_err(|e| format!("connect: {e}"))?;
    let c = BenchmarkServiceClient::new(ch)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let mut m = Measure::new(a.calls);
    match a.scenario.as_str() {
        "unary_lat" | "large_unary" => unary_blocking(&a, c, &mut m).await?,
        "pingpong_lat" => pingpong(&a, c, &mut m).await?,
        "unary_tput" => m = unary_tput(&a, c, m).await?,
        "server_stream" => server_stream(&a, c, &mut m).await?,
        "client_stream" => client_stream(&a, c, &mut m).await?,
        _ => unreachable!(),
    }
    Ok(m)
}

fn main() {
    let a = parse_args();
    if !SCENARIOS.contains(&a.scenario.as_str()) {
        eprintln!("tonic_client: scenario {} not implemented", a.scenario);
        std::process::exit(EXIT_UNIMPLEMENTED);
    }
    let rt = if a.current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
    .expect("tokio runtime");
    match rt.block_on(run(a.clone())) {
        Ok(mut m) => report(&a, &mut m),
        Err(e) => {
            eprintln!("tonic_client: {e}");
            std::process::exit(EXIT_FAILED);
        }
    }
}
