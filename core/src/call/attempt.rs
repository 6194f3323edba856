//! One attempt of a call: one HTTP/2 stream on a connection the channel's
//! picker chose. Opening it (credentials, request headers, the transparent
//! retry when the connection went away before the request left), sending
//! frames under flow control, and the response state machine (headers,
//! messages, trailers).
//!
//! An attempt reports to the call that owns it through [`AttemptOwner`]:
//! the attempt knows nothing of the call's waiters, callbacks or status.

use super::error::CallError;
use super::options::{CallSpec, SendFlags, CORK_LIMIT};
use super::protocol::{self, OpenFailure, ResponseHead};
use crate::codec::framing::{self, Decoder};
use crate::metadata::Metadata;
use crate::rt::{self, Lend};
use crate::status::{self, Code, Status};
use crate::sync::{lock, AsyncMutex, AsyncMutexGuard};
use bytes::{Bytes, BytesMut};
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
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

/// One HTTP/2 stream of a call.
pub(crate) struct Attempt {
    /// Set once the stream is open: the connection it runs on.
    opened: tokio::sync::OnceCell<Arc<dyn Lend>>,
    /// Where the stream went (`ipv4:127.0.0.1:50051`), followed by a NUL.
    peer: std::sync::OnceLock<Arc<str>>,
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

    /// Where the stream went, followed by a NUL; None before it opened.
    pub(crate) fn peer_with_nul(&self) -> Option<&str> {
        self.peer.get().map(|p| &**p)
    }

    pub(crate) fn new(max_recv: Option<usize>) -> Attempt {
        Attempt {
            opened: tokio::sync::OnceCell::new(),
            peer: std::sync::OnceLock::new(),
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

    /// Opens the stream once (connecting if needed). A failure ends the
    /// call.
    pub(crate) async fn ensure_open(&self, owner: &impl AttemptOwner) -> Result<(), CallError> {
        if let Some(conn) = self.opened.get() {
            rt::offer(conn);
            return Ok(());
        }
        let r = self
            .opened
            .get_or_try_init(|| async {
                // Boxed: every send and recv future embeds this one, and
                // the opening state machine is large and needed once.
                Box::pin(self.open(owner)).await.map_err(|st| {
                    owner.end(st, false);
                    CallError::Ended
                })
            })
            .await;
        r.map(|_| ())
    }

    async fn open(&self, owner: &impl AttemptOwner) -> Result<Arc<dyn Lend>, Status> {
        let spec = owner.spec();
        let mut retried = false;
        loop {
            let auth = auth_metadata(spec).await?;
            let pick = spec.channel.pick(spec.wait_for_ready).await?;
            owner.stats().picked();
            rt::offer(&pick.conn);
            let timeout = spec
                .opts
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            let req = protocol::build_request(
                &spec.uri,
                timeout,
                spec.compression,
                &spec.channel.user_agent,
                &[&spec.opts.metadata, &auth],
            )?;
            protocol::sent_metadata_status(req.headers(), spec.channel.opts.metadata_limits())?;
            let result = async {
                let mut sender = pick.send.ready().await?;
                sender.send_request(req, false)
            }
            .await;
            match result {
                Ok((resp, stream)) => {
                    let _ = self.peer.set(pick.peer);
                    owner.stats().attempt_opened();
                    // Counted once, unless the call has already ended.
                    if self
                        .counted
                        .compare_exchange(
                            0,
                            1,
                            std::sync::atomic::Ordering::AcqRel,
                            std::sync::atomic::Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        spec.channel.stream_opened();
                    }
                    spec.channel.note_sent();
                    *lock(&self.pending) = (Some(stream), Some(resp));
                    return Ok(pick.conn);
                }
                Err(e) => match protocol::open_failure(&e) {
                    // Nothing reached the server: one retry on a fresh
                    // connection is safe (the retries issue makes this A6's
                    // transparent retry).
                    OpenFailure::NotSent { goaway } if !retried => {
                        retried = true;
                        pick.killer.mark_dead(&e.to_string(), goaway);
                    }
                    _ => return Err(status::from_h2_error(&e)),
                },
            }
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
        // buffered yet, and h2 can then write it with the request headers
        // (one write for a unary request).
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
        st.closed = true;
        let corked = st.corked.split().freeze();
        let stream = st.stream.as_mut().ok_or(CallError::Ended)?;
        stream.send_data(corked, true).map_err(|_| CallError::Ended)
    }

    /// Resets what can be reset without waiting: the unopened halves and
    /// the send half when nobody holds it. False when a send holds it (it
    /// is unwinding; call [`Attempt::reset_when_free`] then).
    pub(crate) fn reset_now(&self, reason: h2::Reason) -> bool {
        let pending = lock(&self.pending).0.take();
        if let Some(mut s) = pending {
            s.send_reset(reason);
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
                RecvPhase::Headers(fut) => {
                    let resp = match fut.await {
                        Ok(r) => r,
                        Err(e) => {
                            st.phase = RecvPhase::Done;
                            owner.end(status::from_h2_error(&e), true);
                            return Ok(None);
                        }
                    };
                    let (parts, body) = resp.into_parts();
                    if let Some(s) = metadata_over_limits(spec, &parts.headers) {
                        st.phase = RecvPhase::Done;
                        owner.end(s, false);
                        return Ok(None);
                    }
                    match protocol::response_head(&parts, body.is_end_stream()) {
                        ResponseHead::TrailersOnly(s) => {
                            st.phase = RecvPhase::Done;
                            let unary = spec.opts.unary_response;
                            owner.end(protocol::expect_response(s, unary, 0), true);
                            return Ok(None);
                        }
                        ResponseHead::Fail(s) => {
                            st.phase = RecvPhase::Done;
                            owner.end(s, true);
                            return Ok(None);
                        }
                        ResponseHead::Ok {
                            metadata,
                            raw_encoding,
                            encoding,
                        } => {
                            st.encoding = encoding;
                            owner.headers_arrived(metadata, &raw_encoding);
                            st.phase = RecvPhase::Body(body);
                            if headers_only {
                                return Ok(None);
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
