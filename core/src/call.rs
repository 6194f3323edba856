//! The call: one gRPC stream on a channel's connection and its state
//! machine. All four RPC patterns are this object used differently.
//!
//! Life of a call: `Channel::start_call` registers it (and a deadline timer);
//! the first operation opens the HTTP/2 stream (connecting if needed);
//! `send`/`close_send` drive the request half; `recv` drives the response
//! half (headers, messages, trailers); the call *terminates* exactly once,
//! when its status becomes known — from the server's trailers, or locally
//! (cancel, deadline, channel close, a protocol violation, a size limit).
//! Termination wakes every waiter, resets the stream if it is still open and
//! runs the done callbacks on a runtime thread.

#![forbid(unsafe_code)]

use crate::channel::{Channel, ChannelInner};
use crate::codec::compression::{self, Compression, DecompressError};
use crate::codec::framing::{self, DecodeError, Decoder, Prefixed};
use crate::codec::{percent, timeout};
use crate::credentials::CallCredentials;
use crate::metadata::Metadata;
use crate::rt::{self, Lend};
use crate::status::{self, Code, Status};
use crate::sync::{lock, AsyncMutex};
use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, TE, USER_AGENT};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

// Header names as constants: no parsing per call.
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
static GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
static GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");

/// Per-call settings.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Absolute deadline (None = no deadline).
    pub deadline: Option<Instant>,
    /// Custom metadata sent with the request headers.
    pub metadata: Metadata,
    /// Queue the call until the channel is ready instead of failing fast.
    pub wait_for_ready: bool,
    /// Credentials for this call, added to the channel's.
    pub credentials: Option<CallCredentials>,
    /// Compression of this call's messages (None = the channel default).
    pub compression: Option<Compression>,
    /// The method returns exactly one response (unary / client streaming):
    /// zero or two responses end the call with UNIMPLEMENTED.
    pub unary_response: bool,
    /// Run done callbacks on the thread driving the I/O (a runtime task)
    /// instead of the blocking pool: no thread hand-off, but a callback
    /// must not block.
    pub inline_callbacks: bool,
}

impl CallOptions {
    /// Sets the deadline to now + `t`.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.deadline = Some(Instant::now() + t);
        self
    }
}

/// Flags for [`Call::send`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SendFlags {
    /// Half-close after this message (saves a frame).
    pub last: bool,
    /// Do not compress this message even if the call compresses (the
    /// CRIME/BEAST mitigation of the compression spec).
    pub no_compress: bool,
    /// The message may wait in the call's send buffer (up to
    /// [`CORK_LIMIT`]) and leave with a later message: many small messages
    /// then cost one write (gRPC's buffer hint). Flushed by the next send
    /// without the hint, `close_send`, or a full buffer.
    pub buffer_hint: bool,
}

impl SendFlags {
    /// Only `last`: the one message of a unary request.
    pub const LAST: SendFlags = SendFlags {
        last: true,
        no_compress: false,
        buffer_hint: false,
    };
}

/// Most bytes [`SendFlags::buffer_hint`] messages wait in a call's buffer.
pub const CORK_LIMIT: usize = 64 << 10;

/// Why a call operation did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The call has ended (or the server has closed the stream); the status
    /// is available from `finish`.
    Ended,
    /// `close_send` (or a send with `last`) was already done.
    SendClosed,
    /// Another thread is in the same kind of operation on this call, or
    /// messages are delivered to a message callback.
    Busy(&'static str),
    /// The runtime could not be used (e.g. blocking from a foreign
    /// single-threaded tokio runtime).
    Runtime(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ended => {
                f.write_str("the call has ended; its status is available from finish")
            }
            CallError::SendClosed => f.write_str("the sending side of the call is already closed"),
            CallError::Busy(what) => write!(f, "{what}"),
            CallError::Runtime(m) => write!(f, "runtime error: {m}"),
        }
    }
}

/// Why a call could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The channel was closed.
    ChannelClosed,
    /// The method name is not a valid gRPC path (`/package.Service/Method`).
    InvalidMethod(String),
    /// The runtime could not start.
    Runtime(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::ChannelClosed => f.write_str("the channel is closed"),
            StartError::InvalidMethod(m) => write!(f, "invalid method: {m}"),
            StartError::Runtime(m) => write!(f, "runtime error: {m}"),
        }
    }
}

/// A callback run once when the call terminates.
pub type DoneCallback = Box<dyn FnOnce(&Arc<Status>) + Send + 'static>;

enum RecvPhase {
    NotStarted,
    Headers(ResponseFuture),
    Body(RecvStream),
    Done,
}

struct RecvState {
    phase: RecvPhase,
    decoder: Decoder,
    received: u64,
    /// Value of the response's `grpc-encoding`, if any.
    encoding: Option<String>,
}

struct SendState {
    stream: Option<SendStream<Bytes>>,
    closed: bool,
    /// A message has been handed to h2 on this stream.
    sent_any: bool,
    /// Encoded messages sent with the buffer hint, not yet handed to h2.
    corked: BytesMut,
}

/// Shared state of one call; the user's [`Call`] handle and any driver task
/// hold it.
pub(crate) struct CallShared {
    me: std::sync::Weak<CallShared>,
    channel: Arc<ChannelInner>,
    id: OnceLock<u64>,
    uri: http::Uri,
    opts: CallOptions,
    /// The algorithm messages are sent with.
    compression: Compression,
    /// The response's `grpc-encoding` ("identity" when absent).
    response_encoding: OnceLock<std::ffi::CString>,
    status_tx: watch::Sender<Option<Arc<Status>>>,
    finished_tx: watch::Sender<bool>,
    /// Set once the stream is open: the connection it runs on.
    opened: tokio::sync::OnceCell<Arc<dyn Lend>>,
    pending: Mutex<(Option<SendStream<Bytes>>, Option<ResponseFuture>)>,
    send: AsyncMutex<SendState>,
    recv: AsyncMutex<RecvState>,
    send_busy: AtomicBool,
    recv_busy: AtomicBool,
    push_mode: AtomicBool,
    /// An `ensure_progress` reader is running.
    driving: AtomicBool,
    initial_md: OnceLock<Metadata>,
    initial_notify: Notify,
    callbacks: Mutex<Vec<DoneCallback>>,
    deadline_task: Mutex<Option<tokio::task::AbortHandle>>,
    stash: Mutex<VecDeque<Bytes>>,
}

/// Clears a busy flag when dropped.
struct BusyGuard<'a>(&'a AtomicBool);

impl<'a> BusyGuard<'a> {
    fn acquire(flag: &'a AtomicBool, what: &'static str) -> Result<Self, CallError> {
        if flag.swap(true, Ordering::AcqRel) {
            return Err(CallError::Busy(what));
        }
        Ok(BusyGuard(flag))
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Validates a method path: `/` followed by printable ASCII without spaces,
/// `?` or `#`.
pub fn validate_method(method: &str) -> Result<(), String> {
    if !method.starts_with('/') || method.len() < 2 {
        return Err(format!(
            "{method:?} must start with '/' (e.g. \"/package.Service/Method\")"
        ));
    }
    if let Some(c) = method
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '?' || *c == '#')
    {
        return Err(format!("{method:?} contains the character {c:?}"));
    }
    Ok(())
}

impl Channel {
    /// Starts a call. Nothing is sent until the first operation.
    pub fn start_call(&self, method: &str, opts: CallOptions) -> Result<Call, StartError> {
        validate_method(method).map_err(StartError::InvalidMethod)?;
        let inner = &self.inner;
        if inner.is_closed() {
            return Err(StartError::ChannelClosed);
        }
        let handle = rt::handle().map_err(|e| StartError::Runtime(e.to_string()))?;
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(inner.authority.clone())
            .path_and_query(method)
            .build()
            .map_err(|e| StartError::InvalidMethod(format!("{method:?}: {e}")))?;
        let max_recv = inner.opts.max_receive_message_length;
        let compression = opts.compression.unwrap_or(inner.opts.default_compression);
        let shared = Arc::new_cyclic(|me| CallShared {
            me: me.clone(),
            channel: inner.clone(),
            id: OnceLock::new(),
            uri,
            opts,
            compression,
            response_encoding: OnceLock::new(),
            status_tx: watch::channel(None).0,
            finished_tx: watch::channel(false).0,
            opened: tokio::sync::OnceCell::new(),
            pending: Mutex::new((None, None)),
            send: AsyncMutex::new(SendState {
                stream: None,
                closed: false,
                sent_any: false,
                corked: BytesMut::new(),
            }),
            recv: AsyncMutex::new(RecvState {
                phase: RecvPhase::NotStarted,
                decoder: Decoder::new(max_recv),
                received: 0,
                encoding: None,
            }),
            send_busy: AtomicBool::new(false),
            recv_busy: AtomicBool::new(false),
            push_mode: AtomicBool::new(false),
            driving: AtomicBool::new(false),
            initial_md: OnceLock::new(),
            initial_notify: Notify::new(),
            callbacks: Mutex::new(Vec::new()),
            deadline_task: Mutex::new(None),
            stash: Mutex::new(VecDeque::new()),
        });
        let id = inner
            .register(&shared)
            .map_err(|_| StartError::ChannelClosed)?;
        let _ = shared.id.set(id);
        if let Some(deadline) = shared.opts.deadline {
            if deadline <= Instant::now() {
                shared.terminate_local(deadline_status());
            } else {
                let weak = Arc::downgrade(&shared);
                let task = handle.spawn(async move {
                    tokio::time::sleep_until(deadline).await;
                    if let Some(s) = weak.upgrade() {
                        s.terminate_local(deadline_status());
                    }
                });
                *lock(&shared.deadline_task) = Some(task.abort_handle());
                // The call may have terminated between the check and now.
                if shared.status().is_some() {
                    task.abort();
                }
            }
        }
        Ok(Call {
            shared,
            cancel_on_drop: true,
        })
    }

    /// Makes a unary call and waits for it: one request, one response.
    /// Returns the response (only when the status is OK) and the status.
    pub async fn unary(
        &self,
        method: &str,
        opts: CallOptions,
        request: &[u8],
    ) -> Result<UnaryOutcome, StartError> {
        self.unary_message(method, opts, Message::Copy(request))
            .await
    }

    /// [`Channel::unary`] with the request as a [`Message`] (one written in
    /// place goes out without a copy).
    pub async fn unary_message(
        &self,
        method: &str,
        mut opts: CallOptions,
        request: Message<'_>,
    ) -> Result<UnaryOutcome, StartError> {
        opts.unary_response = true;
        let call = self.start_call(method, opts)?;
        let _ = call.send_message(request, SendFlags::LAST).await;
        let msg = call.recv().await.ok().flatten();
        let status = match call.finish().await {
            Ok(s) => s,
            Err(e) => Arc::new(Status::new(Code::Internal, e.to_string())),
        };
        Ok((if status.is_ok() { msg } else { None }, status))
    }

    /// Starts a unary call driven by a runtime task (a future). `done`
    /// runs once on a runtime thread with the status and, when the status
    /// is OK, the response. The returned call can be waited on, cancelled,
    /// or dropped (which cancels it; use [`Call::detach`] to let it run).
    pub fn unary_async(
        &self,
        method: &str,
        opts: CallOptions,
        request: Bytes,
        done: impl FnOnce(&Arc<Status>, Option<&Bytes>) + Send + 'static,
    ) -> Result<Call, StartError> {
        self.unary_async_opt(method, opts, request, Some(done))
    }

    /// [`Channel::unary_async`] with an optional callback. Without one, no
    /// done callback is registered: the call ends as soon as its status is
    /// in (no hop to a callback thread), and the response waits for `recv`.
    pub fn unary_async_opt(
        &self,
        method: &str,
        mut opts: CallOptions,
        request: Bytes,
        done: Option<impl FnOnce(&Arc<Status>, Option<&Bytes>) + Send + 'static>,
    ) -> Result<Call, StartError> {
        opts.unary_response = true;
        let call = self.start_call(method, opts)?;
        // `drive_unary` reads to the end: `ensure_progress` need not start
        // another reader for `wait` or the done callback.
        call.shared.driving.store(true, Ordering::Release);
        let handle = rt::handle().map_err(|e| StartError::Runtime(e.to_string()))?;
        let Some(done) = done else {
            handle.spawn(drive_unary(call.shared.clone(), request));
            return Ok(call);
        };
        // The response is the first message kept for `recv` (by the driver
        // below, or by the background reader that registering a done
        // callback starts): read it from there when the call ends.
        // A strong reference: the call may be detached and released before
        // the callback runs. The cycle (the callback is stored in the call)
        // ends when the call terminates and its callbacks are taken out;
        // every unary future terminates (its driver reads to the end).
        let me = call.shared.clone();
        let cb: DoneCallback = Box::new(move |st: &Arc<Status>| {
            let r = lock(&me.stash).front().cloned();
            done(st, if st.is_ok() { r.as_ref() } else { None })
        });
        if let Err(cb) = call.on_done(cb) {
            // Already ended (e.g. a deadline in the past): report it anyway,
            // and let `wait` return only after the callback ran (nobody can
            // be waiting yet: the caller has not got the call).
            let st = call.status().expect("ended");
            let finished = call.shared.finished_tx.clone();
            finished.send_replace(false);
            run_callbacks(handle, call.shared.opts.inline_callbacks, move || {
                cb(&st);
                finished.send_replace(true);
            });
            return Ok(call);
        }
        handle.spawn(drive_unary(call.shared.clone(), request));
        Ok(call)
    }
}

/// Runs a unary future: sends the request, keeps the response for `recv`,
/// reads to the end.
async fn drive_unary(shared: Arc<CallShared>, request: Bytes) {
    if let Ok(frame) = encode_message(&shared, Message::Copy(&request), SendFlags::default()) {
        let _ = shared.send(frame, SendFlags::LAST).await;
    }
    if let Ok(Some(m)) = shared.recv().await {
        lock(&shared.stash).push_front(m);
    }
    let _ = shared.finish().await;
}

fn deadline_status() -> Status {
    Status::new(Code::DeadlineExceeded, "Deadline Exceeded")
}

/// A call in progress. Dropping it cancels the call if it is still active.
///
/// Methods take `&self`: a call may be shared between threads; at most one
/// thread at a time may send and one may receive (a second gets
/// [`CallError::Busy`]); `cancel` may be called from anywhere at any time.
pub struct Call {
    pub(crate) shared: Arc<CallShared>,
    cancel_on_drop: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.cancel_on_drop && self.shared.status().is_none() {
            self.shared
                .terminate_local(Status::new(Code::Cancelled, "call released while active"));
        }
    }
}

impl Call {
    /// Sends one message. Waits while HTTP/2 flow control gives no room
    /// (at most one message is buffered).
    pub async fn send(&self, msg: &[u8], flags: SendFlags) -> Result<(), CallError> {
        self.send_message(Message::Copy(msg), flags).await
    }

    /// [`Call::send`] with the message as a [`Message`] (one written in
    /// place goes out without a copy).
    pub async fn send_message(&self, msg: Message<'_>, flags: SendFlags) -> Result<(), CallError> {
        self.shared
            .send(encode_message(&self.shared, msg, flags)?, flags)
            .await
    }

    /// Half-closes: tells the server no more messages follow.
    pub async fn close_send(&self) -> Result<(), CallError> {
        self.shared.close_send().await
    }

    /// The next message, or `None` at the end of the stream (normal end or
    /// failure: see [`Call::finish`]).
    pub async fn recv(&self) -> Result<Option<Bytes>, CallError> {
        if self.shared.push_mode.load(Ordering::Acquire) {
            return Err(CallError::Busy(
                "messages of this call are delivered to its message callback",
            ));
        }
        self.shared.recv().await
    }

    /// Waits for the final status, discarding unread messages.
    pub async fn finish(&self) -> Result<Arc<Status>, CallError> {
        self.shared.finish().await
    }

    /// Waits for the server's initial metadata (empty if the call ended
    /// without any).
    pub async fn initial_metadata(&self) -> Result<&Metadata, CallError> {
        self.shared.initial_metadata().await
    }

    /// Cancels the call (idempotent; safe from any thread). Returns true if
    /// this call ended it.
    pub fn cancel(&self) -> bool {
        self.shared
            .terminate_local(Status::new(Code::Cancelled, "Cancelled by the application"))
    }

    /// The status, if the call has terminated.
    pub fn status(&self) -> Option<Arc<Status>> {
        self.shared.status()
    }

    /// True until the call terminates.
    pub fn is_active(&self) -> bool {
        self.shared.status().is_none()
    }

    /// Time left before the deadline (None = no deadline; zero when passed).
    pub fn time_remaining(&self) -> Option<Duration> {
        self.shared
            .opts
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The `grpc-encoding` of the response ("identity" when the server sent
    /// none), once the response headers have arrived.
    pub fn response_encoding(&self) -> Option<&std::ffi::CStr> {
        self.shared.response_encoding.get().map(|c| c.as_c_str())
    }

    /// Releases the handle without cancelling the call: it runs to its end
    /// (its driver task and callbacks keep it alive).
    pub fn detach(mut self) {
        self.cancel_on_drop = false;
    }

    /// Waits until the call has terminated and its done callbacks have run.
    pub async fn wait(&self) {
        self.shared.ensure_progress();
        let mut rx = self.shared.finished_tx.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Registers a callback run once, on a runtime thread, when the call
    /// terminates. If it already has, the callback is handed back.
    pub fn on_done(&self, cb: DoneCallback) -> Result<(), DoneCallback> {
        self.shared.on_done(cb)
    }

    /// Delivers every message to `f` on a runtime thread (push-style
    /// streaming); the call then terminates as usual and done callbacks run
    /// after the last message. `recv` is refused afterwards.
    pub fn on_message(&self, f: impl FnMut(Bytes) + Send + 'static) -> Result<(), CallError> {
        self.shared.clone().on_message(f)
    }
}

/// The response of a unary call (only when its status is OK) and its status.
pub type UnaryOutcome = (Option<Bytes>, Arc<Status>);

/// A message to send.
pub enum Message<'a> {
    /// Bytes the sender keeps: copied into the frame.
    Copy(&'a [u8]),
    /// Written in place after room for the prefix: the buffer becomes the
    /// frame (no copy) unless the message is compressed.
    InPlace(Prefixed),
}

/// Checks the send limit (on the uncompressed size, ending the call when it
/// is exceeded) and frames the message, compressed when the call
/// compresses, the message does not opt out, and compression makes it
/// smaller (the flag says which).
fn encode_message<'a>(
    shared: &Arc<CallShared>,
    msg: Message<'a>,
    flags: SendFlags,
) -> Result<Encoded<'a>, CallError> {
    let payload = match &msg {
        Message::Copy(b) => *b,
        Message::InPlace(p) => p.payload(),
    };
    if let Some(max) = shared.channel.opts.max_send_message_length {
        if payload.len() > max {
            shared.terminate_local(Status::new(
                Code::ResourceExhausted,
                format!(
                    "Sent message larger than max ({} vs. {})",
                    payload.len(),
                    max
                ),
            ));
            return Err(CallError::Ended);
        }
    }
    if shared.compression != Compression::Identity && !flags.no_compress {
        let z = shared.compression.compress(payload);
        if z.len() < payload.len() {
            return Ok(Encoded::Framed(framing::encode(&z, true)));
        }
    }
    Ok(match msg {
        Message::Copy(b) => Encoded::Plain(b),
        Message::InPlace(p) => Encoded::Framed(p.into_frame()),
    })
}

/// A message ready to send: framed already, or uncompressed bytes the
/// sender keeps, framed only where they go (the call's buffer for a
/// [`SendFlags::buffer_hint`] send, else a frame of their own): one copy.
enum Encoded<'a> {
    Framed(Bytes),
    Plain(&'a [u8]),
}

impl Encoded<'_> {
    fn append_to(self, buf: &mut BytesMut) {
        match self {
            Encoded::Framed(f) => buf.extend_from_slice(&f),
            Encoded::Plain(p) => framing::append(buf, p),
        }
    }

    fn into_frame(self) -> Bytes {
        match self {
            Encoded::Framed(f) => f,
            Encoded::Plain(p) => framing::encode(p, false),
        }
    }
}

impl CallShared {
    pub(crate) fn status(&self) -> Option<Arc<Status>> {
        self.status_tx.borrow().clone()
    }

    /// True once the call has its final status (no reference taken).
    fn ended(&self) -> bool {
        self.status_tx.borrow().is_some()
    }

    /// Runs `op` until it finishes or the call terminates.
    async fn guarded<T>(
        &self,
        op: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        if self.ended() {
            return Err(CallError::Ended);
        }
        // Most operations complete at the first poll (a message already
        // received, room to send): only a waiting one watches the status.
        // A status set in between is seen by `wait_for`, which checks the
        // current value first.
        let mut op = std::pin::pin!(op);
        let first = std::future::poll_fn(|cx| match op.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        if let Some(r) = first {
            return r;
        }
        let mut rx = self.status_tx.subscribe();
        tokio::select! {
            biased;
            r = op => r,
            _ = rx.wait_for(|s| s.is_some()) => Err(CallError::Ended),
        }
    }

    /// Opens the HTTP/2 stream once (connecting if needed).
    async fn ensure_open(&self) -> Result<(), CallError> {
        if let Some(conn) = self.opened.get() {
            rt::offer(conn);
            return Ok(());
        }
        let r = self
            .opened
            .get_or_try_init(|| async {
                // Boxed: every send and recv future embeds this one, and
                // the opening state machine is large and needed once.
                Box::pin(self.open()).await.map_err(|st| {
                    self.terminate(st, false);
                    CallError::Ended
                })
            })
            .await;
        r.map(|_| ())
    }

    async fn open(&self) -> Result<Arc<dyn Lend>, Status> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = self.auth_metadata().await?;
            let (sender, conn) = self.channel.connection(self.opts.wait_for_ready).await?;
            rt::offer(&conn);
            let req = self.build_request(&auth)?;
            let result = async {
                let mut sender = sender.ready().await?;
                sender.send_request(req, false)
            }
            .await;
            match result {
                Ok((resp, stream)) => {
                    *lock(&self.pending) = (Some(stream), Some(resp));
                    return Ok(conn);
                }
                Err(e) => {
                    // The connection went away before the stream was opened:
                    // nothing reached the server, so one retry on a fresh
                    // connection is safe.
                    if (e.is_go_away() || e.is_io() || e.to_string().contains("closed"))
                        && attempt == 1
                    {
                        self.channel
                            .connection_failed(&e.to_string(), e.is_go_away());
                        continue;
                    }
                    return Err(status::from_h2_error(&e));
                }
            }
        }
    }

    /// Metadata from the channel's and the call's credentials, in that
    /// order. Refused on insecure channels.
    async fn auth_metadata(&self) -> Result<Metadata, Status> {
        let chan = self.channel.creds.call.as_ref();
        let call = self.opts.credentials.as_ref();
        let mut md = Metadata::new();
        if chan.is_none() && call.is_none() {
            return Ok(md);
        }
        if !self.channel.creds.allows_call_credentials() {
            return Err(Status::new(
                Code::Unauthenticated,
                "call credentials need a secure channel: use TLS credentials, or local credentials for a loopback or Unix socket target",
            ));
        }
        let (method, authority) = (self.uri.path(), self.channel.authority.as_str());
        for c in [chan, call].into_iter().flatten() {
            c.apply(method, authority, &mut md).await?;
        }
        Ok(md)
    }

    fn build_request(&self, auth: &Metadata) -> Result<http::Request<()>, Status> {
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.uri.clone())
            .version(http::Version::HTTP_2)
            .body(())
            .map_err(|e| Status::new(Code::Internal, format!("building request: {e}")))?;
        let h = req.headers_mut();
        h.insert(TE, HeaderValue::from_static("trailers"));
        if let Some(d) = self.opts.deadline {
            let left = d.saturating_duration_since(Instant::now());
            let v = HeaderValue::from_str(&timeout::encode(left)).expect("ascii timeout");
            h.insert(GRPC_TIMEOUT.clone(), v);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        if self.compression != Compression::Identity {
            h.insert(
                GRPC_ENCODING.clone(),
                HeaderValue::from_static(self.compression.name()),
            );
        }
        h.insert(
            GRPC_ACCEPT_ENCODING.clone(),
            HeaderValue::from_static(compression::ACCEPT_ENCODING),
        );
        h.insert(USER_AGENT, self.channel.user_agent.clone());
        for md in [&self.opts.metadata, auth] {
            md.append_to_headers(h)
                .map_err(|e| Status::new(Code::Internal, e.0))?;
        }
        Ok(req)
    }

    async fn send(&self, msg: Encoded<'_>, flags: SendFlags) -> Result<(), CallError> {
        let _busy = BusyGuard::acquire(&self.send_busy, "another thread is sending on this call")?;
        self.guarded(async {
            self.ensure_open().await?;
            let mut st = self.send.lock().await;
            if st.closed {
                return Err(CallError::SendClosed);
            }
            if st.stream.is_none() {
                st.stream = lock(&self.pending).0.take();
            }
            let SendState {
                stream,
                corked,
                sent_any,
                closed,
            } = &mut *st;
            let stream = stream.as_mut().ok_or(CallError::Ended)?;
            let frame = if flags.buffer_hint && !flags.last {
                msg.append_to(corked);
                if corked.len() < CORK_LIMIT {
                    return Ok(());
                }
                corked.split().freeze()
            } else if !corked.is_empty() {
                msg.append_to(corked);
                corked.split().freeze()
            } else {
                msg.into_frame()
            };
            let first = !*sent_any;
            // Wait until the previous message has left the buffer and the
            // window has room. The first message goes at once: nothing is
            // buffered yet, and h2 can then write it with the request
            // headers (one write for a unary request).
            stream.reserve_capacity(1);
            while !first && stream.capacity() == 0 {
                match poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(CallError::Ended),
                }
            }
            stream
                .send_data(frame, flags.last)
                .map_err(|_| CallError::Ended)?;
            *sent_any = true;
            if flags.last {
                *closed = true;
            }
            Ok(())
        })
        .await
    }

    async fn close_send(&self) -> Result<(), CallError> {
        let _busy = BusyGuard::acquire(&self.send_busy, "another thread is sending on this call")?;
        self.guarded(async {
            self.ensure_open().await?;
            let mut st = self.send.lock().await;
            if st.closed {
                return Ok(());
            }
            if st.stream.is_none() {
                st.stream = lock(&self.pending).0.take();
            }
            st.closed = true;
            let corked = st.corked.split().freeze();
            let stream = st.stream.as_mut().ok_or(CallError::Ended)?;
            stream.send_data(corked, true).map_err(|_| CallError::Ended)
        })
        .await
    }

    async fn recv(&self) -> Result<Option<Bytes>, CallError> {
        self.recv_inner(true).await
    }

    /// The next message. `use_stash`: first take messages that internal
    /// readers kept for the application (false when `finish` drains the
    /// stream: those stay for `recv`). After the call has ended there are
    /// no more messages from the stream.
    async fn recv_inner(&self, use_stash: bool) -> Result<Option<Bytes>, CallError> {
        if use_stash {
            if let Some(m) = lock(&self.stash).pop_front() {
                return Ok(Some(m));
            }
        }
        if self.ended() {
            return Ok(None);
        }
        let _busy =
            BusyGuard::acquire(&self.recv_busy, "another thread is receiving on this call")?;
        match self
            .guarded(async {
                self.ensure_open().await?;
                let mut st = self.recv.lock().await;
                if use_stash {
                    if let Some(m) = lock(&self.stash).pop_front() {
                        return Ok(Some(m));
                    }
                }
                self.recv_locked(&mut st).await
            })
            .await
        {
            Err(CallError::Ended) => Ok(None),
            other => other,
        }
    }

    /// Makes sure the response side advances when nobody reads, so that a
    /// call whose status needs no message reading (Trailers-Only, errors,
    /// an ended stream) ends on its own: a background task reads until the
    /// call ends or one message arrives, which it keeps for `recv`. It never
    /// buffers more than one message, so flow control still applies.
    fn ensure_progress(&self) {
        if self.ended()
            || self.push_mode.load(Ordering::Acquire)
            || self.driving.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (Some(me), Ok(h)) = (self.me.upgrade(), rt::handle()) else {
            self.driving.store(false, Ordering::Release);
            return;
        };
        h.spawn(async move {
            let _ = me
                .guarded(async {
                    me.ensure_open().await?;
                    let mut st = me.recv.lock().await;
                    if lock(&me.stash).is_empty() {
                        if let Some(m) = me.recv_locked(&mut st).await? {
                            lock(&me.stash).push_back(m);
                        }
                    }
                    Ok(())
                })
                .await;
            me.driving.store(false, Ordering::Release);
        });
    }

    /// Advances the response half until a message, the end, or termination.
    async fn recv_locked(&self, st: &mut RecvState) -> Result<Option<Bytes>, CallError> {
        loop {
            match &mut st.phase {
                RecvPhase::NotStarted => {
                    st.phase = match lock(&self.pending).1.take() {
                        Some(f) => RecvPhase::Headers(f),
                        None => RecvPhase::Done,
                    };
                }
                RecvPhase::Headers(fut) => {
                    let resp = match fut.await {
                        Ok(r) => r,
                        Err(e) => {
                            st.phase = RecvPhase::Done;
                            self.terminate(status::from_h2_error(&e), true);
                            return Ok(None);
                        }
                    };
                    let (parts, body) = resp.into_parts();
                    match self.check_headers(&parts, body.is_end_stream()) {
                        Headers::TrailersOnly(s) | Headers::Fail(s) => {
                            st.phase = RecvPhase::Done;
                            self.terminate(s, true);
                            return Ok(None);
                        }
                        Headers::Ok(md, enc) => {
                            st.encoding = enc;
                            let _ = self.initial_md.set(md);
                            self.initial_notify.notify_waiters();
                            st.phase = RecvPhase::Body(body);
                        }
                    }
                }
                RecvPhase::Body(body) => {
                    match st.decoder.next_frame() {
                        Ok(Some(frame)) => {
                            let data = if frame.compressed {
                                match self.decompress(st.encoding.as_deref(), &frame.data) {
                                    Ok(d) => d,
                                    Err(status) => {
                                        st.phase = RecvPhase::Done;
                                        self.terminate(status, false);
                                        return Ok(None);
                                    }
                                }
                            } else {
                                frame.data
                            };
                            st.received += 1;
                            if self.opts.unary_response && st.received > 1 {
                                st.phase = RecvPhase::Done;
                                self.terminate(
                                    Status::new(
                                        Code::Unimplemented,
                                        "received more than one response message for a call that expects one",
                                    ),
                                    false,
                                );
                                return Ok(None);
                            }
                            return Ok(Some(data));
                        }
                        Ok(None) => {}
                        Err(DecodeError::TooLarge { len, max }) => {
                            st.phase = RecvPhase::Done;
                            self.terminate(
                                Status::new(
                                    Code::ResourceExhausted,
                                    format!("Received message larger than max ({len} vs. {max})"),
                                ),
                                false,
                            );
                            return Ok(None);
                        }
                        Err(DecodeError::BadFlag(f)) => {
                            st.phase = RecvPhase::Done;
                            self.terminate(
                                Status::new(
                                    Code::Internal,
                                    format!("invalid message prefix: compressed flag byte {f}"),
                                ),
                                false,
                            );
                            return Ok(None);
                        }
                    }
                    match body.data().await {
                        Some(Ok(chunk)) => {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            st.decoder.push(&chunk);
                        }
                        Some(Err(e)) => {
                            st.phase = RecvPhase::Done;
                            self.terminate(status::from_h2_error(&e), true);
                            return Ok(None);
                        }
                        None => {
                            let trailers = body.trailers().await;
                            let mut s = match trailers {
                                Ok(Some(t)) => status_from_trailers(&t),
                                Ok(None) => Status::new(
                                    Code::Internal,
                                    "server closed the stream without sending trailers",
                                ),
                                Err(e) => status::from_h2_error(&e),
                            };
                            if s.is_ok() && st.decoder.has_partial() {
                                s = Status::new(
                                    Code::Internal,
                                    "stream ended in the middle of a message",
                                );
                            }
                            if s.is_ok() && self.opts.unary_response && st.received == 0 {
                                s = Status::new(
                                    Code::Unimplemented,
                                    "received no response message for a call that expects one",
                                );
                            }
                            st.phase = RecvPhase::Done;
                            self.terminate(s, true);
                            return Ok(None);
                        }
                    }
                }
                RecvPhase::Done => return Ok(None),
            }
        }
    }

    /// Inflates a message flagged as compressed, with the limit applied to
    /// the decompressed size.
    fn decompress(&self, encoding: Option<&str>, data: &[u8]) -> Result<Bytes, Status> {
        let Some(name) = encoding else {
            return Err(Status::new(
                Code::Internal,
                "received a compressed message but the response has no grpc-encoding header",
            ));
        };
        let Some(alg) = Compression::from_name(name) else {
            return Err(Status::new(
                Code::Internal,
                format!(
                    "received a message compressed with {name:?}, which this client does not support (supported: {})",
                    compression::SUPPORTED
                ),
            ));
        };
        let limit = self.channel.opts.max_receive_message_length;
        match alg.decompress(data, limit) {
            Ok(v) => Ok(Bytes::from(v)),
            Err(DecompressError::TooLarge { limit }) => Err(Status::new(
                Code::ResourceExhausted,
                format!(
                    "Received message larger than max: decompressed size exceeds {limit} bytes"
                ),
            )),
            Err(DecompressError::Corrupt(e)) => Err(Status::new(
                Code::Internal,
                format!("could not decompress a {name} message: {e}"),
            )),
        }
    }

    fn check_headers(&self, parts: &http::response::Parts, end_stream: bool) -> Headers {
        let http_status = parts.status.as_u16();
        let h = &parts.headers;
        if end_stream {
            if h.contains_key(&GRPC_STATUS) {
                let _ = self.initial_md.set(Metadata::new());
                return Headers::TrailersOnly(status_from_trailers(h));
            }
            return Headers::Fail(http_status_to_status(http_status, h));
        }
        if http_status != 200 {
            return Headers::Fail(http_status_to_status(http_status, h));
        }
        let ct = h.get(CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or(b"");
        let is_grpc = ct == b"application/grpc"
            || ct.starts_with(b"application/grpc+")
            || ct.starts_with(b"application/grpc;");
        if !is_grpc {
            return Headers::Fail(Status::new(
                Code::Unknown,
                format!(
                    "server answered with content-type {:?}, not application/grpc",
                    String::from_utf8_lossy(ct)
                ),
            ));
        }
        let raw_enc = h
            .get(&GRPC_ENCODING)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| "identity".into());
        let _ = self
            .response_encoding
            .set(crate::status::c_string(&raw_enc));
        let enc = h
            .get(&GRPC_ENCODING)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .filter(|e| e != "identity");
        Headers::Ok(Metadata::from_headers(h), enc)
    }

    async fn finish(&self) -> Result<Arc<Status>, CallError> {
        if let Some(s) = self.status() {
            return Ok(s);
        }
        if !self.push_mode.load(Ordering::Acquire) {
            loop {
                match self.recv_inner(false).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    // Another thread is receiving: just wait for the status.
                    Err(CallError::Busy(_)) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut rx = self.status_tx.subscribe();
        let r = rx
            .wait_for(|s| s.is_some())
            .await
            .map_err(|_| CallError::Runtime("status channel closed".into()))?;
        Ok(r.clone().expect("status set"))
    }

    async fn initial_metadata(&self) -> Result<&Metadata, CallError> {
        loop {
            if let Some(md) = self.initial_md.get() {
                return Ok(md);
            }
            let notified = self.initial_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(md) = self.initial_md.get() {
                return Ok(md);
            }
            if self.ended() {
                return Ok(self.initial_md.get_or_init(Metadata::new));
            }
            // Drive the response headers ourselves if no one is receiving.
            if let Ok(_busy) = BusyGuard::acquire(&self.recv_busy, "") {
                let r = self
                    .guarded(async {
                        self.ensure_open().await?;
                        let mut st = self.recv.lock().await;
                        while matches!(st.phase, RecvPhase::NotStarted | RecvPhase::Headers(_)) {
                            // Headers arrive before any message, so at most the
                            // first message is read; keep it for recv.
                            if let Some(m) = self.recv_locked(&mut st).await? {
                                lock(&self.stash).push_back(m);
                            }
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = r {
                    if e != CallError::Ended {
                        return Err(e);
                    }
                }
                continue;
            }
            let mut rx = self.status_tx.subscribe();
            tokio::select! {
                _ = notified => {}
                _ = rx.wait_for(|s| s.is_some()) => {}
            }
        }
    }

    fn on_done(&self, cb: DoneCallback) -> Result<(), DoneCallback> {
        {
            let mut cbs = lock(&self.callbacks);
            if self.ended() {
                return Err(cb);
            }
            cbs.push(cb);
        }
        self.ensure_progress();
        Ok(())
    }

    fn on_message(
        self: Arc<Self>,
        mut f: impl FnMut(Bytes) + Send + 'static,
    ) -> Result<(), CallError> {
        if self.push_mode.swap(true, Ordering::AcqRel) {
            return Err(CallError::Busy("a message callback is already set"));
        }
        let handle = rt::handle().map_err(|e| CallError::Runtime(e.to_string()))?;
        handle.spawn(async move {
            while let Ok(Some(m)) = self.recv().await {
                f(m);
            }
        });
        Ok(())
    }

    /// Terminates the call from the client side (cancel, deadline, channel
    /// close, local limit): resets the stream with CANCEL.
    pub(crate) fn terminate_local(self: &Arc<Self>, status: Status) -> bool {
        self.terminate(status, false)
    }

    /// Sets the final status once. `from_server` says the status came from
    /// the server's stream, so any reset is RST_STREAM(NO_ERROR) instead of
    /// CANCEL.
    fn terminate(&self, mut status: Status, from_server: bool) -> bool {
        if status.code() == Code::Cancelled {
            if let Some(d) = self.opts.deadline {
                if Instant::now() >= d {
                    status = deadline_status();
                }
            }
        }
        let st = Arc::new(status);
        let first = self.status_tx.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(st.clone());
                true
            } else {
                false
            }
        });
        if !first {
            return false;
        }
        if let Some(t) = lock(&self.deadline_task).take() {
            t.abort();
        }
        if let Some(id) = self.id.get() {
            self.channel.unregister(*id);
        }
        let _ = self.initial_md.get_or_init(Metadata::new);
        self.initial_notify.notify_waiters();
        // Reset the stream if our half is still open.
        let reason = if from_server && st.is_ok() {
            h2::Reason::NO_ERROR
        } else {
            h2::Reason::CANCEL
        };
        let pending = lock(&self.pending).0.take();
        if let Some(mut s) = pending {
            s.send_reset(reason);
        }
        match self.send.try_lock() {
            Some(mut g) => reset_send(&mut g, reason),
            None => {
                // A send is in progress; it is unwinding now (its guard saw
                // the status). Reset once it has let go.
                if let (Some(me), Ok(h)) = (self.me.upgrade(), rt::handle()) {
                    h.spawn(async move {
                        let mut g = me.send.lock().await;
                        reset_send(&mut g, reason);
                    });
                }
            }
        }
        // Done callbacks run on a runtime thread, never under our locks.
        let cbs = std::mem::take(&mut *lock(&self.callbacks));
        if cbs.is_empty() {
            self.finished_tx.send_replace(true);
        } else {
            let finished = self.finished_tx.clone();
            let run = move || {
                for cb in cbs {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&st)));
                }
                finished.send_replace(true);
            };
            match rt::handle() {
                Ok(h) => run_callbacks(h, self.opts.inline_callbacks, run),
                Err(_) => run(),
            }
        }
        true
    }
}

/// Runs done callbacks away from the caller's locks: on the blocking pool
/// (they may block), or `inline` as a task on the thread driving the I/O
/// (no thread hand-off; they must not block).
fn run_callbacks(h: &tokio::runtime::Handle, inline: bool, run: impl FnOnce() + Send + 'static) {
    if inline {
        h.spawn(async move { run() });
    } else {
        h.spawn_blocking(run);
    }
}

fn reset_send(g: &mut SendState, reason: h2::Reason) {
    if let Some(mut s) = g.stream.take() {
        if !g.closed || reason != h2::Reason::NO_ERROR {
            s.send_reset(reason);
        }
    }
    g.closed = true;
}

enum Headers {
    Ok(Metadata, Option<String>),
    TrailersOnly(Status),
    Fail(Status),
}

fn http_status_to_status(http_status: u16, h: &HeaderMap) -> Status {
    let code = Code::from_http_status(http_status);
    let ct = h
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Status::new(
        code,
        format!(
            "server answered HTTP status {http_status} without a gRPC status (content-type {ct:?})"
        ),
    )
}

fn status_from_trailers(h: &HeaderMap) -> Status {
    let md = Metadata::from_headers(h);
    let message = h
        .get(&GRPC_MESSAGE)
        .map(|v| percent::decode(v.as_bytes()))
        .unwrap_or_default();
    match h.get(&GRPC_STATUS) {
        Some(v) => match Code::parse_header(v.as_bytes()) {
            Some(code) => Status::with_trailers(code, message, md),
            None => Status::with_trailers(
                Code::Unknown,
                format!(
                    "server sent an invalid grpc-status {:?}: {message}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
                md,
            ),
        },
        None => Status::with_trailers(
            Code::Unknown,
            "server sent trailers without grpc-status",
            md,
        ),
    }
}
