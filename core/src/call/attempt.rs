//! The call's HTTP/2 stream, and the streams that replace it on a retry:
//! opening one on a connection the channel's picker chose (credentials,
//! request headers, transparent retries while the request never left),
//! sending frames under flow control, and the response state machine
//! (headers, messages, trailers).
//!
//! Retries (gRFC A6, decided in `retry.rs`): until the call commits (the
//! response headers arrive, or the frames sent no longer fit the replay
//! buffer) every frame handed to h2 is also kept; when the stream fails
//! before the response headers and a retry is decided, the reader of the
//! response opens the next stream, replays the kept frames (and the end of
//! the request, if it was sent) and goes on reading from it. A sender whose
//! stream failed meanwhile waits for the replacement: its frame is already
//! kept. One stream at a time (hedging adds attempts beside it).
//!
//! The stream reports to the call that owns it through [`AttemptOwner`]:
//! it knows nothing of the call's waiters, callbacks or status.

use super::error::CallError;
use super::options::{CallSpec, SendFlags, CORK_LIMIT};
use super::protocol::{self, OpenFailure, ResponseHead};
use super::retry::{self, Decision, Failure, Progress};
use crate::codec::framing::{self, Decoder};
use crate::metadata::Metadata;
use crate::rt::{self, Lend};
use crate::status::{self, Code, Status};
use crate::sync::{lock, AsyncMutex, AsyncMutexGuard};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use smallvec::SmallVec;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What an attempt tells the call that owns it.
pub(crate) trait AttemptOwner {
    /// The call's fixed definition.
    fn spec(&self) -> &CallSpec;
    /// Ends the call with `status` (the first end wins). `from_server`:
    /// the status came from the server's stream.
    fn end(&self, status: Status, from_server: bool);
    /// The response headers arrived: the initial metadata and the
    /// response's `grpc-encoding` as sent.
    fn headers_arrived(&self, metadata: Metadata, raw_encoding: &str);
    /// The call's statistics, which the attempt adds to.
    fn stats(&self) -> &super::stats::CallStats;
    /// True once the call has its final status.
    fn has_ended(&self) -> bool;
    /// Makes sure somebody reads the response (a sender whose stream
    /// failed needs the reader to decide on a retry).
    fn read_on(&self);
    /// Runs once before the first attempt (the interceptors' start hooks);
    /// an error ends the call without a stream.
    fn before_first_attempt(&self) -> impl std::future::Future<Output = Result<(), Status>> + Send;
}

enum RecvPhase {
    NotStarted,
    Headers(ResponseFuture),
    Body(RecvStream),
    Done,
}

/// The response half of the stream.
pub(crate) struct RecvState {
    phase: RecvPhase,
    decoder: Decoder,
    received: u64,
    /// The response's `grpc-encoding` when not identity.
    encoding: Option<String>,
}

impl RecvState {
    /// True until the response headers have been read.
    pub(crate) fn before_body(&self) -> bool {
        matches!(self.phase, RecvPhase::NotStarted | RecvPhase::Headers(_))
    }
}

struct SendState {
    stream: Option<SendStream<Bytes>>,
    closed: bool,
    /// A message has been handed to h2 on this stream.
    sent_any: bool,
    /// Encoded messages sent with the buffer hint, not yet handed to h2.
    corked: BytesMut,
}

/// What the call keeps for retries and hedges until it commits.
#[derive(Default)]
struct Kept {
    /// Every frame handed to h2, to replay on the next stream. The first
    /// is kept inline: a unary request costs no allocation here.
    frames: SmallVec<[Bytes; 1]>,
    /// The end of the request was sent (a replay ends it too).
    closed: bool,
    /// Hedging before the commit: every stream in flight, by attempt
    /// number. Senders write only here (each frame to every stream, without
    /// waiting for flow control: the replay buffer's limit bounds what
    /// waits); the call's own send half is empty until a stream wins.
    hedging: bool,
    hedges: Vec<(u32, SendStream<Bytes>)>,
    /// A sender committed a hedged call (its request outgrew the buffer)
    /// to this attempt; the reader follows.
    chosen: Option<u32>,
}

/// A message ready to send: framed already, or uncompressed bytes the
/// sender keeps, framed only where they go (the attempt's buffer for a
/// [`SendFlags::buffer_hint`] send, else a frame of their own): one copy.
pub(crate) enum Encoded<'a> {
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

/// A stream just opened.
struct Opened {
    conn: Arc<dyn Lend>,
    peer: Arc<str>,
    send: SendStream<Bytes>,
    resp: ResponseFuture,
}

/// The call's HTTP/2 stream (replaced on a retry).
pub(crate) struct Attempt {
    /// Set once the first stream is open: the connection it runs on.
    opened: tokio::sync::OnceCell<Arc<dyn Lend>>,
    /// Where the first stream went (`ipv4:127.0.0.1:50051`), followed by a
    /// NUL.
    peer: OnceLock<Arc<str>>,
    /// After a retry: the connection of the current stream, and every later
    /// stream's peer (kept until the call is freed: `peer_with_nul` lends
    /// them out).
    replaced: AtomicBool,
    current_conn: Mutex<Option<Arc<dyn Lend>>>,
    later_peers: OnceLock<Box<boxcar::Vec<Arc<str>>>>,
    /// The call committed (response headers, or a replay buffer
    /// overflow): no more retries, no more frames kept. Set from the start
    /// when retries are off.
    committed: AtomicBool,
    /// Bytes kept in the replay (also counted in the channel's total).
    kept_bytes: AtomicUsize,
    /// The replay, and the hedges' send halves.
    kept: Mutex<Kept>,
    /// The retry history (locked only when a stream fails or opens).
    progress: Mutex<Progress>,
    /// A replacement is being made: senders keep their frame for it and
    /// wait. `generation` counts replacements; `replaced_notify` wakes the
    /// senders waiting for one.
    swapping: AtomicBool,
    generation: AtomicU32,
    replaced_notify: Notify,
    /// The channel's count of open streams: 0 not counted, 1 counted,
    /// 2 the call ended.
    counted: std::sync::atomic::AtomicU8,
    /// The stream's halves between opening and first use.
    pending: Mutex<(Option<SendStream<Bytes>>, Option<ResponseFuture>)>,
    send: AsyncMutex<SendState>,
    recv: AsyncMutex<RecvState>,
}

impl Attempt {
    /// The call ended: true when its open stream was counted (the caller
    /// takes it off the channel's count).
    pub(crate) fn uncount(&self) -> bool {
        self.counted.swap(2, std::sync::atomic::Ordering::AcqRel) == 1
    }

    /// Where the current stream went, followed by a NUL; None before the
    /// first opened.
    pub(crate) fn peer_with_nul(&self) -> Option<&str> {
        if self.replaced.load(Ordering::Acquire) {
            if let Some(v) = self.later_peers.get() {
                if let Some(p) = v.count().checked_sub(1).and_then(|i| v.get(i)) {
                    return Some(&**p);
                }
            }
        }
        self.peer.get().map(|p| &**p)
    }

    /// `retries`: the call may be retried (retries are on); false commits
    /// it from the start.
    pub(crate) fn new(max_recv: Option<usize>, retries: bool) -> Attempt {
        Attempt {
            opened: tokio::sync::OnceCell::new(),
            peer: OnceLock::new(),
            replaced: AtomicBool::new(false),
            current_conn: Mutex::new(None),
            later_peers: OnceLock::new(),
            committed: AtomicBool::new(!retries),
            kept_bytes: AtomicUsize::new(0),
            kept: Mutex::new(Kept::default()),
            progress: Mutex::new(Progress::default()),
            swapping: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            replaced_notify: Notify::new(),
            counted: std::sync::atomic::AtomicU8::new(0),
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
        }
    }

    /// Opens the first stream once (connecting if needed, retrying as the
    /// retry policy says when no stream can be opened). A failure ends the
    /// call.
    pub(crate) async fn ensure_open(&self, owner: &impl AttemptOwner) -> Result<(), CallError> {
        if let Some(conn) = self.opened.get() {
            if self.replaced.load(Ordering::Acquire) {
                if let Some(c) = lock(&self.current_conn).as_ref() {
                    rt::offer(c);
                }
            } else {
                rt::offer(conn);
            }
            return Ok(());
        }
        let r = self
            .opened
            .get_or_try_init(|| async {
                // Boxed: every send and recv future embeds this one, and
                // the opening state machine is large and needed once.
                Box::pin(self.open_first(owner)).await.map_err(|st| {
                    owner.end(st, false);
                    CallError::Ended
                })
            })
            .await;
        r.map(|_| ())
    }

    async fn open_first(&self, owner: &impl AttemptOwner) -> Result<Arc<dyn Lend>, Status> {
        owner.before_first_attempt().await?;
        lock(&self.progress).counted = 1;
        loop {
            match self.open_stream(owner, 0).await {
                Ok(o) => {
                    let _ = self.peer.set(o.peer);
                    if owner.spec().hedging_policy().is_some() {
                        // Hedged: senders write to every stream through
                        // `kept`; the reader starts the next ones on time.
                        let mut k = lock(&self.kept);
                        k.hedging = true;
                        k.hedges.push((1, o.send));
                        drop(k);
                        *lock(&self.pending) = (None, Some(o.resp));
                        owner.read_on();
                    } else {
                        *lock(&self.pending) = (Some(o.send), Some(o.resp));
                    }
                    return Ok(o.conn);
                }
                // No stream could be opened (a failed pick, a connection
                // that kept failing): the retry policy may try again.
                Err(st) => match self.decide(owner, Failure::Status(st)) {
                    Decision::Stop(st) => return Err(st),
                    Decision::Retry { delay, counted } => {
                        self.note_retry(owner, delay, counted);
                        tokio::time::sleep(delay).await;
                    }
                },
            }
        }
    }

    /// Opens one stream: call credentials, a pick, the request headers
    /// (`previous`: the value of `grpc-previous-rpc-attempts`, 0 = none).
    /// A connection that fails before the request left is marked dead and
    /// another one picked (transparently, a bounded number of times).
    async fn open_stream(
        &self,
        owner: &impl AttemptOwner,
        previous: u32,
    ) -> Result<Opened, Status> {
        let spec = owner.spec();
        let mut unsent = 0;
        loop {
            let auth = auth_metadata(spec).await?;
            let pick = spec.channel.pick(spec.wait_for_ready).await?;
            owner.stats().picked();
            rt::offer(&pick.conn);
            let timeout = spec
                .opts
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            let mut req = protocol::build_request(
                &spec.uri,
                timeout,
                spec.compression,
                &spec.channel.user_agent,
                &[&spec.opts.metadata, &auth],
            )?;
            if previous > 0 {
                req.headers_mut().insert(
                    http::HeaderName::from_static(retry::PREVIOUS_ATTEMPTS),
                    http::HeaderValue::from(previous),
                );
            }
            protocol::sent_metadata_status(req.headers(), spec.channel.opts.metadata_limits())?;
            let result = async {
                let mut sender = pick.send.ready().await?;
                sender.send_request(req, false)
            }
            .await;
            match result {
                Ok((resp, send)) => {
                    owner.stats().attempt_opened();
                    // Counted once, unless the call has already ended.
                    if self
                        .counted
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        spec.channel.stream_opened();
                    }
                    spec.channel.note_sent();
                    return Ok(Opened {
                        conn: pick.conn,
                        peer: pick.peer,
                        send,
                        resp,
                    });
                }
                Err(e) => match protocol::open_failure(&e) {
                    // Nothing reached the server: safe on another
                    // connection (A6's transparent retry).
                    OpenFailure::NotSent { goaway }
                        if spec.channel.opts.enable_retries
                            && unsent < retry::MAX_UNSENT_RETRIES =>
                    {
                        unsent += 1;
                        pick.killer.mark_dead(&e.to_string(), goaway);
                        count_retry(owner, false);
                        crate::trace!(
                            crate::log::Tracer::Retry,
                            crate::log::Level::Debug,
                            "{}: the connection failed before the request left ({e}); trying another (transparent retry {unsent})",
                            spec.uri.path()
                        );
                    }
                    _ => return Err(status::from_h2_error(&e)),
                },
            }
        }
    }

    /// What follows a failure before the call committed.
    fn decide(&self, owner: &impl AttemptOwner, failure: Failure) -> Decision {
        if self.committed.load(Ordering::Acquire) || owner.has_ended() {
            return Decision::Stop(match failure {
                Failure::Refused(s) | Failure::Status(s) => s,
            });
        }
        let d = retry::decide(owner.spec(), &mut lock(&self.progress), failure);
        if let Decision::Stop(s) = &d {
            let n = lock(&self.progress).counted;
            if n > 1 {
                crate::trace!(
                    crate::log::Tracer::Retry,
                    crate::log::Level::Debug,
                    "{}: no retry after attempt {n}: {s}",
                    owner.spec().uri.path()
                );
            }
        }
        d
    }

    /// Counts and traces a retry about to be made.
    fn note_retry(&self, owner: &impl AttemptOwner, delay: Duration, counted: bool) {
        let spec = owner.spec();
        let n = {
            let mut p = lock(&self.progress);
            if counted {
                p.counted += 1;
            }
            p.counted
        };
        count_retry(owner, counted);
        crate::trace!(
            crate::log::Tracer::Retry,
            crate::log::Level::Debug,
            "{}: {} in {} ms",
            spec.uri.path(),
            if counted {
                format!("retry, attempt {n}")
            } else {
                "transparent retry (the server refused the stream)".to_string()
            },
            delay.as_millis()
        );
    }

    /// The call commits to the current stream: no more retries; the kept
    /// frames are released (by the sender, which owns them, on its next
    /// send, or when the call is freed).
    pub(crate) fn commit(&self) {
        self.committed.store(true, Ordering::Release);
    }

    /// Releases the kept frames' share of the channel's retry buffer.
    pub(crate) fn release_kept(&self, owner: &impl AttemptOwner) {
        let n = self.kept_bytes.swap(0, Ordering::AcqRel);
        if n > 0 {
            owner
                .spec()
                .channel
                .retry_buffered
                .fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Keeps `frame` for a replay, unless the call has committed or the
    /// frame does not fit the call's or the channel's buffer (which commits
    /// the call).
    fn keep(&self, owner: &impl AttemptOwner, k: &mut Kept, frame: &Bytes) {
        if self.committed.load(Ordering::Acquire) {
            if !k.frames.is_empty() {
                k.frames = SmallVec::new();
                self.release_kept(owner);
            }
            return;
        }
        let opts = &owner.spec().channel.opts;
        let n = frame.len();
        let fits_call =
            self.kept_bytes.load(Ordering::Acquire) + n <= opts.per_rpc_retry_buffer_size;
        let total = &owner.spec().channel.retry_buffered;
        if fits_call && total.fetch_add(n, Ordering::AcqRel) + n <= opts.retry_buffer_size {
            self.kept_bytes.fetch_add(n, Ordering::AcqRel);
            k.frames.push(frame.clone());
            return;
        }
        if fits_call {
            total.fetch_sub(n, Ordering::AcqRel);
        }
        crate::trace!(
            crate::log::Tracer::Retry,
            crate::log::Level::Debug,
            "{}: committed: the request no longer fits the retry buffer",
            owner.spec().uri.path()
        );
        self.commit();
        k.frames = SmallVec::new();
        self.release_kept(owner);
    }

    /// True when frames must go through [`Kept`] (not committed yet, or
    /// kept frames still to release).
    #[inline]
    fn keeping(&self) -> bool {
        !self.committed.load(Ordering::Acquire) || self.kept_bytes.load(Ordering::Relaxed) > 0
    }

    /// A hedged call's send before it commits: keeps `frame` and writes it
    /// to every stream in flight. Returns the frame back when the call is
    /// no longer hedging (committed meanwhile, to the stream now in `st`).
    fn send_hedged(
        &self,
        owner: &impl AttemptOwner,
        st: &mut SendState,
        k: &mut Kept,
        frame: Bytes,
        last: bool,
    ) -> Option<Bytes> {
        self.keep(owner, k, &frame);
        if !k.hedging {
            return Some(frame);
        }
        if self.committed.load(Ordering::Acquire) {
            // Outgrew the buffer: A6 keeps the stream with the most
            // messages; every stream has them all, so the oldest.
            self.choose_hedge(st, k, None);
            return Some(frame);
        }
        for (_, s) in k.hedges.iter_mut() {
            let _ = s.send_data(frame.clone(), last);
        }
        if last {
            k.closed = true;
        }
        None
    }

    /// Ends hedging: `winner` (or the oldest stream in flight) becomes the
    /// call's send half; the others are reset with CANCEL.
    fn choose_hedge(&self, st: &mut SendState, k: &mut Kept, winner: Option<u32>) -> Option<u32> {
        k.hedging = false;
        let pos = match winner {
            Some(w) => k.hedges.iter().position(|(n, _)| *n == w),
            None => (!k.hedges.is_empty()).then_some(0),
        };
        let chosen = pos.map(|p| k.hedges.remove(p));
        for (_, mut s) in k.hedges.drain(..) {
            s.send_reset(h2::Reason::CANCEL);
        }
        let n = chosen.as_ref().map(|(n, _)| *n);
        st.stream = chosen.map(|(_, s)| s);
        st.sent_any = true;
        st.closed |= k.closed;
        k.chosen = n;
        self.replaced_notify.notify_waiters();
        n
    }

    /// A send failed because the stream did: if the call may still be
    /// retried, wait for the replacement stream (the frame is kept and will
    /// be replayed on it), else the call is ending.
    async fn wait_replacement(
        &self,
        owner: &impl AttemptOwner,
        generation: u32,
    ) -> Result<(), CallError> {
        if self.committed.load(Ordering::Acquire) {
            return Err(CallError::Ended);
        }
        owner.read_on();
        loop {
            let notified = self.replaced_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.generation.load(Ordering::Acquire) != generation {
                return Ok(());
            }
            if owner.has_ended() {
                return Err(CallError::Ended);
            }
            notified.await;
        }
    }

    /// Sends one encoded message (opening the stream first if needed),
    /// waiting while flow control gives no room (at most one message is
    /// buffered in h2). One future for the whole send: it is moved on every
    /// operation, so nesting a second one would copy both.
    pub(crate) async fn send(
        &self,
        owner: &impl AttemptOwner,
        msg: Encoded<'_>,
        flags: SendFlags,
    ) -> Result<(), CallError> {
        self.ensure_open(owner).await?;
        let mut st = self.send.lock().await;
        if st.closed {
            return Err(CallError::SendClosed);
        }
        if st.stream.is_none() {
            st.stream = lock(&self.pending).0.take();
        }
        let frame = if flags.buffer_hint && !flags.last {
            msg.append_to(&mut st.corked);
            if st.corked.len() < CORK_LIMIT {
                return Ok(());
            }
            st.corked.split().freeze()
        } else if !st.corked.is_empty() {
            msg.append_to(&mut st.corked);
            st.corked.split().freeze()
        } else {
            msg.into_frame()
        };
        let generation = self.generation.load(Ordering::Acquire);
        let frame = if self.keeping() {
            let mut k = lock(&self.kept);
            let frame = if k.hedging {
                match self.send_hedged(owner, &mut st, &mut k, frame, flags.last) {
                    Some(f) => f,
                    None => {
                        if flags.last {
                            st.closed = true;
                        }
                        return Ok(());
                    }
                }
            } else {
                self.keep(owner, &mut k, &frame);
                frame
            };
            if flags.last {
                k.closed = true;
            }
            frame
        } else {
            frame
        };
        if flags.last {
            st.closed = true;
        }
        if self.swapping.load(Ordering::Acquire) {
            // The stream is being replaced: the replay will carry it.
            drop(st);
            return self.wait_replacement(owner, generation).await;
        }
        let SendState {
            stream, sent_any, ..
        } = &mut *st;
        let Some(stream) = stream.as_mut() else {
            return Err(CallError::Ended);
        };
        let first = !*sent_any;
        // Wait until the previous message has left the buffer and the
        // window has room. The first message goes at once: nothing is
        // buffered yet, and h2 can then write it with the request headers
        // (one write for a unary request).
        stream.reserve_capacity(1);
        let mut failed = false;
        if !first && stream.capacity() == 0 {
            // A reader replacing the stream wakes this wait. One waiter for
            // the whole wait: h2 wakes it on every frame that may change
            // the capacity (a SETTINGS flood is thousands).
            let replacing = self.replaced_notify.notified();
            tokio::pin!(replacing);
            replacing.as_mut().enable();
            failed = self.swapping.load(Ordering::Acquire);
            while !failed && stream.capacity() == 0 {
                tokio::select! {
                    biased;
                    r = poll_fn(|cx| stream.poll_capacity(cx)) => match r {
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => failed = true,
                    },
                    _ = &mut replacing => failed = true,
                }
            }
        }
        if !failed {
            failed = stream.send_data(frame, flags.last).is_err();
        }
        if failed {
            drop(st);
            return self.wait_replacement(owner, generation).await;
        }
        *sent_any = true;
        Ok(())
    }

    /// Half-closes the stream (opening it first if needed), flushing
    /// messages waiting in the buffer.
    pub(crate) async fn close_send(&self, owner: &impl AttemptOwner) -> Result<(), CallError> {
        self.ensure_open(owner).await?;
        let mut st = self.send.lock().await;
        if st.closed {
            return Ok(());
        }
        if st.stream.is_none() {
            st.stream = lock(&self.pending).0.take();
        }
        let corked = st.corked.split().freeze();
        if self.keeping() {
            let mut k = lock(&self.kept);
            if k.hedging {
                let left = self.send_hedged(owner, &mut st, &mut k, corked.clone(), true);
                if left.is_none() {
                    st.closed = true;
                    return Ok(());
                }
            } else if !corked.is_empty() {
                self.keep(owner, &mut k, &corked);
            }
            k.closed = true;
        }
        st.closed = true;
        if self.swapping.load(Ordering::Acquire) {
            return Ok(());
        }
        let stream = st.stream.as_mut().ok_or(CallError::Ended)?;
        // A failed stream: the replacement (if any) ends the request too.
        let _ = stream.send_data(corked, true);
        Ok(())
    }

    /// Replaces the failed stream after `delay`: opens the next one, replays
    /// the kept frames (and the end of the request when it was sent) and
    /// makes it the stream the response is read from. Called by the reader,
    /// which holds the response half (`st`).
    async fn replace(
        &self,
        owner: &impl AttemptOwner,
        st: &mut RecvState,
        delay: Duration,
        counted: bool,
    ) -> Result<(), Status> {
        self.swapping.store(true, Ordering::Release);
        // Senders waiting for room on the failed stream give up and wait
        // for this one.
        self.replaced_notify.notify_waiters();
        self.note_retry(owner, delay, counted);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let previous = lock(&self.progress).previous_attempts();
        let o = self.open_stream(owner, previous.saturating_sub(1)).await?;
        let mut g = self.send.lock().await;
        let pending = lock(&self.pending).0.take();
        for mut old in pending.into_iter().chain(g.stream.take()) {
            old.send_reset(h2::Reason::CANCEL);
        }
        let mut stream = o.send;
        let n = replay(&lock(&self.kept), &mut stream);
        g.sent_any = n > 0;
        g.stream = Some(stream);
        self.switch_to(o.conn, o.peer);
        st.phase = RecvPhase::Headers(o.resp);
        st.decoder = Decoder::new(owner.spec().max_recv);
        st.received = 0;
        st.encoding = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.swapping.store(false, Ordering::Release);
        if owner.has_ended() {
            // Ended while the stream was being opened: the reset of the
            // call's end may have missed it.
            if let Some(s) = g.stream.as_mut() {
                s.send_reset(h2::Reason::CANCEL);
            }
        }
        drop(g);
        self.replaced_notify.notify_waiters();
        Ok(())
    }

    /// A hedged call before it commits (gRFC A6 `hedgingPolicy`), run by
    /// the reader: the first stream is in flight; another is opened every
    /// `hedgingDelay` (at once after a non-fatal failure, after the delay a
    /// pushback asks for) up to `maxAttempts`, each given every kept frame
    /// and, through [`Kept::hedges`], every later one. The first stream to
    /// answer with response headers wins: the call commits to it and the
    /// others are reset with CANCEL. An OK or fatal status ends the call
    /// at once (cancelling the others); when every stream has failed and
    /// no more may go, the last failure is the call's status.
    async fn hedge(&self, owner: &impl AttemptOwner, st: &mut RecvState, first: ResponseFuture) {
        let spec = owner.spec();
        let Some(policy) = spec.hedging_policy() else {
            return;
        };
        let throttle = spec.channel.retry_throttle();
        let head = |n: u32, f: ResponseFuture| async move { (n, f.await) };
        let open = |n: u32| async move { (n, self.open_stream(owner, n - 1).await) };
        let mut heads = FuturesUnordered::new();
        heads.push(head(1, first));
        let mut opening = FuturesUnordered::new();
        // Connections and peers of the attempts after the first.
        let mut conns: Vec<(u32, Arc<dyn Lend>, Arc<str>)> = Vec::new();
        let mut started = 1u32;
        let mut in_flight = 1u32;
        let mut limit = policy.max_attempts;
        let mut next_at = (started < limit).then(|| Instant::now() + policy.hedging_delay);
        let mut no_more = false;
        let mut only: Option<u32> = None;
        let mut last_failure: Option<Status> = None;
        enum Ev {
            Head(u32, Result<http::Response<RecvStream>, h2::Error>),
            Opened(u32, Result<Opened, Status>),
            Timer,
            Chosen,
        }
        loop {
            let chosen = self.replaced_notify.notified();
            tokio::pin!(chosen);
            chosen.as_mut().enable();
            if only.is_none() {
                if let Some(n) = lock(&self.kept).chosen {
                    // A sender committed the call to stream n.
                    only = Some(n);
                    next_at = None;
                }
            }
            let timer = async {
                match next_at {
                    Some(t) if !no_more && only.is_none() && started < limit => {
                        tokio::time::sleep_until(t).await
                    }
                    _ => std::future::pending().await,
                }
            };
            let ev = tokio::select! {
                Some((n, r)) = heads.next() => Ev::Head(n, r),
                Some((n, r)) = opening.next() => Ev::Opened(n, r),
                _ = timer => Ev::Timer,
                _ = &mut chosen, if only.is_none() => Ev::Chosen,
            };
            let failure = match ev {
                Ev::Chosen => continue,
                Ev::Timer => {
                    if throttle.is_some_and(|t| !t.allows()) {
                        no_more = true;
                        next_at = None;
                    } else {
                        started += 1;
                        in_flight += 1;
                        opening.push(open(started));
                        count_retry(owner, true);
                        crate::trace!(
                            crate::log::Tracer::Retry,
                            crate::log::Level::Debug,
                            "{}: hedged attempt {started}",
                            spec.uri.path()
                        );
                        next_at = (started < limit).then(|| Instant::now() + policy.hedging_delay);
                    }
                    None
                }
                Ev::Opened(n, Ok(o)) => {
                    let mut send = o.send;
                    let mut k = lock(&self.kept);
                    if k.hedging && only.is_none() && !owner.has_ended() {
                        replay(&k, &mut send);
                        k.hedges.push((n, send));
                        drop(k);
                        conns.push((n, o.conn, o.peer));
                        heads.push(head(n, o.resp));
                    } else {
                        send.send_reset(h2::Reason::CANCEL);
                        in_flight -= 1;
                    }
                    None
                }
                Ev::Opened(n, Err(s)) => Some((n, Failure::Status(s))),
                Ev::Head(n, r) => {
                    if only.is_some_and(|o| o != n) {
                        in_flight -= 1;
                        continue;
                    }
                    match classify(spec, r) {
                        Head::Failed(f) => Some((n, f)),
                        Head::End(s, from_server) => {
                            self.end_hedging(None).await;
                            st.phase = RecvPhase::Done;
                            owner.end(s, from_server);
                            return;
                        }
                        Head::Headers {
                            metadata,
                            raw_encoding,
                            encoding,
                            body,
                        } => {
                            self.commit();
                            self.end_hedging(Some(n)).await;
                            if let Some((_, conn, peer)) = conns.into_iter().find(|c| c.0 == n) {
                                self.switch_to(conn, peer);
                            }
                            self.generation.fetch_add(1, Ordering::AcqRel);
                            self.replaced_notify.notify_waiters();
                            st.encoding = encoding;
                            owner.headers_arrived(metadata, &raw_encoding);
                            st.phase = RecvPhase::Body(body);
                            return;
                        }
                    }
                }
            };
            if let Some((n, failure)) = failure {
                in_flight -= 1;
                if let Some(mut s) = {
                    let mut k = lock(&self.kept);
                    k.hedges
                        .iter()
                        .position(|h| h.0 == n)
                        .map(|p| k.hedges.remove(p).1)
                } {
                    s.send_reset(h2::Reason::CANCEL);
                }
                let status = match failure {
                    Failure::Refused(s) => {
                        // Never reached the server's application: one more
                        // attempt, not counted.
                        let mut p = lock(&self.progress);
                        if !p.refused_retried && only.is_none() {
                            p.refused_retried = true;
                            limit += 1;
                            next_at = Some(Instant::now());
                        }
                        s
                    }
                    Failure::Status(s) => s,
                };
                let fatal = only.is_some()
                    || owner.has_ended()
                    || !policy.non_fatal_status_codes.contains(&status.code());
                if fatal {
                    self.end_hedging(None).await;
                    st.phase = RecvPhase::Done;
                    owner.end(status, true);
                    return;
                }
                if let Some(t) = throttle {
                    t.failure();
                }
                match retry::pushback(&status) {
                    Some(None) => no_more = true,
                    Some(Some(d)) => next_at = Some(Instant::now() + d),
                    None => next_at = Some(Instant::now()),
                }
                last_failure = Some(status);
            }
            let more = !no_more
                && only.is_none()
                && started < limit
                && next_at.is_some()
                && throttle.is_none_or(|t| t.allows());
            if in_flight == 0 && !more {
                self.end_hedging(None).await;
                st.phase = RecvPhase::Done;
                owner.end(
                    last_failure.unwrap_or_else(|| {
                        Status::new(Code::Unavailable, "no hedged attempt could be made")
                    }),
                    true,
                );
                return;
            }
        }
    }

    /// Ends hedging: stream `winner` becomes the call's send half, every
    /// other stream is reset with CANCEL.
    async fn end_hedging(&self, winner: Option<u32>) {
        if !lock(&self.kept).hedging {
            return;
        }
        let mut g = self.send.lock().await;
        let mut k = lock(&self.kept);
        if k.hedging {
            self.choose_hedge(&mut g, &mut k, winner);
            if winner.is_none() {
                g.stream = None;
            }
        }
    }

    /// The call's stream is now one on `conn` to `peer` (a retry or a
    /// hedge).
    fn switch_to(&self, conn: Arc<dyn Lend>, peer: Arc<str>) {
        *lock(&self.current_conn) = Some(conn);
        let peers = self
            .later_peers
            .get_or_init(|| Box::new(boxcar::Vec::new()));
        peers.push(peer);
        self.replaced.store(true, Ordering::Release);
    }

    /// Resets what can be reset without waiting: the unopened halves and
    /// the send half when nobody holds it. False when a send holds it (it
    /// is unwinding; call [`Attempt::reset_when_free`] then).
    pub(crate) fn reset_now(&self, reason: h2::Reason) -> bool {
        let pending = lock(&self.pending).0.take();
        if let Some(mut s) = pending {
            s.send_reset(reason);
        }
        {
            let mut k = lock(&self.kept);
            if !k.hedges.is_empty() {
                for (_, mut s) in std::mem::take(&mut k.hedges) {
                    s.send_reset(h2::Reason::CANCEL);
                }
            }
        }
        match self.send.try_lock() {
            Some(mut g) => {
                reset_send(&mut g, reason);
                true
            }
            None => false,
        }
    }

    /// Resets the send half once the send holding it lets go.
    pub(crate) async fn reset_when_free(&self, reason: h2::Reason) {
        let mut g = self.send.lock().await;
        reset_send(&mut g, reason);
    }

    /// The response half, for one reader at a time.
    pub(crate) async fn lock_recv(&self) -> AsyncMutexGuard<'_, RecvState> {
        self.recv.lock().await
    }

    /// Advances the response half until a message, the end, or a failure
    /// (which ends the call through the owner); with `headers_only`, no
    /// further than the response headers (`Ok(None)` once they are in).
    pub(crate) async fn recv_locked(
        &self,
        owner: &impl AttemptOwner,
        st: &mut RecvState,
        headers_only: bool,
    ) -> Result<Option<Bytes>, CallError> {
        let spec = owner.spec();
        loop {
            match &mut st.phase {
                RecvPhase::NotStarted => {
                    st.phase = match lock(&self.pending).1.take() {
                        Some(f) => RecvPhase::Headers(f),
                        None => RecvPhase::Done,
                    };
                }
                RecvPhase::Headers(_) if lock(&self.kept).hedging => {
                    let RecvPhase::Headers(first) =
                        std::mem::replace(&mut st.phase, RecvPhase::Done)
                    else {
                        unreachable!()
                    };
                    self.hedge(owner, st, first).await;
                    if headers_only && !st.before_body() {
                        return Ok(None);
                    }
                }
                RecvPhase::Headers(fut) => {
                    let failure = match classify(spec, fut.await) {
                        Head::End(s, from_server) => {
                            st.phase = RecvPhase::Done;
                            owner.end(s, from_server);
                            return Ok(None);
                        }
                        Head::Headers {
                            metadata,
                            raw_encoding,
                            encoding,
                            body,
                        } => {
                            // Response headers commit the call.
                            self.commit();
                            st.encoding = encoding;
                            owner.headers_arrived(metadata, &raw_encoding);
                            st.phase = RecvPhase::Body(body);
                            if headers_only {
                                return Ok(None);
                            }
                            continue;
                        }
                        Head::Failed(f) => f,
                    };
                    // The stream failed before the response headers: the
                    // call may be retried on a new stream.
                    let mut failure = failure;
                    loop {
                        match self.decide(owner, failure) {
                            Decision::Stop(s) => {
                                st.phase = RecvPhase::Done;
                                owner.end(s, true);
                                return Ok(None);
                            }
                            Decision::Retry { delay, counted } => {
                                match self.replace(owner, st, delay, counted).await {
                                    Ok(()) => break,
                                    Err(s) => failure = Failure::Status(s),
                                }
                            }
                        }
                    }
                }
                RecvPhase::Body(body) => {
                    match st.decoder.next_frame() {
                        Ok(Some(frame)) => {
                            let wire = frame.data.len() + framing::HEADER_LEN;
                            let data = if frame.compressed {
                                let limit = spec.max_recv;
                                match protocol::decompress(
                                    st.encoding.as_deref(),
                                    &frame.data,
                                    limit,
                                ) {
                                    Ok(d) => {
                                        crate::trace!(
                                            crate::log::Tracer::Compression,
                                            crate::log::Level::Debug,
                                            "{}: decompressed a {}-byte {} message to {} bytes",
                                            spec.uri.path(),
                                            frame.data.len(),
                                            st.encoding.as_deref().unwrap_or("?"),
                                            d.len()
                                        );
                                        d
                                    }
                                    Err(status) => {
                                        st.phase = RecvPhase::Done;
                                        owner.end(status, false);
                                        return Ok(None);
                                    }
                                }
                            } else {
                                frame.data
                            };
                            st.received += 1;
                            owner.stats().received(data.len(), wire);
                            if spec.opts.unary_response && st.received > 1 {
                                st.phase = RecvPhase::Done;
                                owner.end(protocol::too_many_responses(), false);
                                return Ok(None);
                            }
                            return Ok(Some(data));
                        }
                        Ok(None) => {}
                        Err(e) => {
                            st.phase = RecvPhase::Done;
                            owner.end(protocol::decode_error_status(e), false);
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
                            owner.end(status::from_h2_error(&e), true);
                            return Ok(None);
                        }
                        None => {
                            let trailers = body.trailers().await;
                            if let Some(s) = trailers
                                .as_ref()
                                .ok()
                                .and_then(|t| t.as_ref())
                                .and_then(|t| metadata_over_limits(spec, t))
                            {
                                st.phase = RecvPhase::Done;
                                owner.end(s, false);
                                return Ok(None);
                            }
                            let s = protocol::end_of_stream_status(
                                trailers,
                                st.decoder.has_partial(),
                                spec.opts.unary_response,
                                st.received,
                            );
                            st.phase = RecvPhase::Done;
                            owner.end(s, true);
                            return Ok(None);
                        }
                    }
                }
                RecvPhase::Done => return Ok(None),
            }
        }
    }
}

/// Counts a retry in the call's stats and the channel's totals (`counted`:
/// by the retry or hedging policy, else transparent).
fn count_retry(owner: &impl AttemptOwner, counted: bool) {
    let ch = &owner.spec().channel;
    if counted {
        owner.stats().retry();
        ch.retries.fetch_add(1, Ordering::Relaxed);
    } else {
        owner.stats().transparent_retry();
        ch.transparent_retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream's first answer, classified.
enum Head {
    /// Response headers: the call commits to this stream.
    Headers {
        metadata: Metadata,
        raw_encoding: String,
        encoding: Option<String>,
        body: RecvStream,
    },
    /// The call ends with this status (`true`: the server's), retried or
    /// not: an OK Trailers-Only response, headers over the limits.
    End(Status, bool),
    /// The stream failed before any response headers.
    Failed(Failure),
}

fn classify(spec: &CallSpec, r: Result<http::Response<RecvStream>, h2::Error>) -> Head {
    let resp = match r {
        Ok(r) => r,
        Err(e) if refused(&e) => return Head::Failed(Failure::Refused(status::from_h2_error(&e))),
        Err(e) => return Head::Failed(Failure::Status(status::from_h2_error(&e))),
    };
    let (parts, body) = resp.into_parts();
    if let Some(s) = metadata_over_limits(spec, &parts.headers) {
        return Head::End(s, false);
    }
    match protocol::response_head(&parts, body.is_end_stream()) {
        ResponseHead::TrailersOnly(s) => {
            let s = protocol::expect_response(s, spec.opts.unary_response, 0);
            if s.is_ok() {
                Head::End(s, true)
            } else {
                Head::Failed(Failure::Status(s))
            }
        }
        ResponseHead::Fail(s) => Head::Failed(Failure::Status(s)),
        ResponseHead::Ok {
            metadata,
            raw_encoding,
            encoding,
        } => Head::Headers {
            metadata,
            raw_encoding,
            encoding,
            body,
        },
    }
}

/// Sends the kept frames (and the end of the request when it was sent) on
/// a new stream; returns how many frames.
fn replay(k: &Kept, stream: &mut SendStream<Bytes>) -> usize {
    let n = k.frames.len();
    for (i, f) in k.frames.iter().enumerate() {
        let _ = stream.send_data(f.clone(), k.closed && i + 1 == n);
    }
    if k.closed && n == 0 {
        let _ = stream.send_data(Bytes::new(), true);
    }
    n
}

/// The server refused the stream before its application saw it: it reset
/// the stream with REFUSED_STREAM, or its GOAWAY's last stream id is below
/// the stream (h2 fails exactly those streams with the GOAWAY).
fn refused(e: &h2::Error) -> bool {
    e.is_remote() && (e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM))
}

/// A received header block over the channel's metadata limits, as a status.
fn metadata_over_limits(spec: &CallSpec, h: &http::HeaderMap) -> Option<Status> {
    let limits = spec.channel.opts.metadata_limits();
    let size = protocol::header_list_size(h);
    if size <= limits.soft {
        return None;
    }
    protocol::received_metadata_status(size, limits, fastrand::f64())
}

/// Metadata from the channel's and the call's credentials, in that order.
/// Refused on insecure channels.
async fn auth_metadata(spec: &CallSpec) -> Result<Metadata, Status> {
    let chan = spec.channel.creds.call.as_ref();
    let call = spec.opts.credentials.as_ref();
    let mut md = Metadata::new();
    if chan.is_none() && call.is_none() {
        return Ok(md);
    }
    if !spec.channel.creds.allows_call_credentials() {
        return Err(Status::new(
            Code::Unauthenticated,
            "call credentials need a secure channel: use TLS credentials, or local credentials for a loopback or Unix socket target",
        ));
    }
    let (method, authority) = (spec.uri.path(), spec.channel.authority.as_str());
    for c in [chan, call].into_iter().flatten() {
        c.apply(method, authority, &mut md).await?;
    }
    Ok(md)
}

fn reset_send(g: &mut SendState, reason: h2::Reason) {
    if let Some(mut s) = g.stream.take() {
        if !g.closed || reason != h2::Reason::NO_ERROR {
            s.send_reset(reason);
        }
    }
    g.closed = true;
}
