//! The application's view of one call: the send and receive sides (one
//! thread each at a time; messages kept for `recv` by internal readers),
//! the final status (set exactly once, locally or from the server),
//! deadline, cancel and the done callbacks. The HTTP/2 stream itself is
//! the call's [`Attempt`].

use super::attempt::{Attempt, AttemptOwner, Encoded};
use super::error::CallError;
use super::options::{CallSpec, Message, SendFlags};
use super::protocol;
use crate::channel::ActiveCall;
use crate::codec::compression::Compression;
use crate::codec::framing;
use crate::completion::Notifier;
use crate::metadata::Metadata;
use crate::status::{Code, Status};
use crate::sync::lock;
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// A callback run once when the call terminates.
pub type DoneCallback = Box<dyn FnOnce(&Arc<Status>) + Send + 'static>;

/// Shared state of one call; the user's `Call` handle and any driver task
/// hold it.
pub(crate) struct CallShared {
    pub(super) me: std::sync::Weak<CallShared>,
    pub(super) spec: CallSpec,
    /// The channel's registration id, once registered.
    pub(super) id: OnceLock<u64>,
    /// The response's `grpc-encoding` ("identity" when absent), with a
    /// trailing NUL.
    pub(super) response_encoding: OnceLock<Box<str>>,
    status_tx: watch::Sender<Option<Arc<Status>>>,
    /// True once the call has ended and its done callbacks have run.
    pub(super) finished_tx: watch::Sender<bool>,
    pub(crate) attempt: Attempt,
    send_busy: AtomicBool,
    recv_busy: AtomicBool,
    pub(super) push_mode: AtomicBool,
    /// A reader is advancing the response (`ensure_progress` or a unary
    /// driver).
    pub(super) driving: AtomicBool,
    pub(super) initial_md: OnceLock<Metadata>,
    initial_notify: Notify,
    callbacks: Mutex<Vec<DoneCallback>>,
    pub(super) deadline_task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Messages read by internal readers, kept for `recv`.
    pub(super) stash: Mutex<VecDeque<Bytes>>,
    /// Counts and times for `Call::stats`.
    pub(super) stats: super::stats::CallStats,
    /// The channel's interceptors for this call (None without any).
    pub(super) icept: Option<Box<super::intercept::Intercepted>>,
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

impl AttemptOwner for CallShared {
    #[inline]
    fn spec(&self) -> &CallSpec {
        self.spec_now()
    }

    async fn before_first_attempt(&self) -> Result<(), Status> {
        match &self.icept {
            Some(i) if i.hooks.start => self.started(i).await,
            _ => Ok(()),
        }
    }

    fn end(&self, status: Status, from_server: bool) {
        self.terminate(status, from_server);
    }

    fn stats(&self) -> &super::stats::CallStats {
        &self.stats
    }

    fn has_ended(&self) -> bool {
        self.ended()
            || self
                .icept
                .as_ref()
                .is_some_and(|i| i.ending.load(Ordering::Acquire))
    }

    fn read_on(&self) {
        self.ensure_progress();
    }

    fn headers_arrived(&self, metadata: Metadata, raw_encoding: &str) {
        self.stats.first_response();
        let _ = self
            .response_encoding
            .set(crate::status::with_nul(raw_encoding));
        let _ = self.initial_md.set(metadata);
        self.initial_notify.notify_waiters();
    }
}

impl Drop for CallShared {
    fn drop(&mut self) {
        // Frames kept after the end (a send racing it) leave the channel's
        // retry buffer here.
        self.attempt.release_kept(&*self);
    }
}

impl ActiveCall for CallShared {
    fn cancel_for_close(&self) {
        let why = if crate::rt::is_shut_down() {
            "channel closed: the library was shut down"
        } else {
            "channel closed"
        };
        self.terminate(Status::new(Code::Cancelled, why), false);
    }
}

impl CallShared {
    pub(super) fn new(me: std::sync::Weak<CallShared>, spec: CallSpec) -> CallShared {
        let max_recv = spec.max_recv;
        let retries = spec.channel.opts.enable_retries;
        let icept = spec.channel.opts.interceptors.for_call(spec.uri.path());
        CallShared {
            me,
            spec,
            id: OnceLock::new(),
            response_encoding: OnceLock::new(),
            status_tx: watch::channel(None).0,
            finished_tx: watch::channel(false).0,
            attempt: Attempt::new(max_recv, retries),
            send_busy: AtomicBool::new(false),
            recv_busy: AtomicBool::new(false),
            push_mode: AtomicBool::new(false),
            driving: AtomicBool::new(false),
            initial_md: OnceLock::new(),
            initial_notify: Notify::new(),
            callbacks: Mutex::new(Vec::new()),
            deadline_task: Mutex::new(None),
            stash: Mutex::new(VecDeque::new()),
            stats: super::stats::CallStats::new(),
            icept,
        }
    }

    /// The call's definition: as it started, or as the interceptors' start
    /// hooks changed it once they have run.
    #[inline]
    pub(super) fn spec_now(&self) -> &CallSpec {
        match &self.icept {
            Some(i) => i.started.get().unwrap_or(&self.spec),
            None => &self.spec,
        }
    }

    /// The hooks of the channel's interceptors (none without any).
    #[inline]
    pub(super) fn hooks(&self) -> super::intercept::Hooks {
        match &self.icept {
            Some(i) => i.hooks,
            None => super::intercept::Hooks::default(),
        }
    }

    /// Runs the start hooks once (before the first attempt, or before the
    /// send hooks see the first message).
    async fn started(&self, i: &super::intercept::Intercepted) -> Result<(), Status> {
        i.start_done
            .get_or_init(|| self.run_start_hooks(i))
            .await
            .clone()
    }

    /// Runs the start hooks before the first attempt and applies what they
    /// changed: a new definition (method, metadata, compression,
    /// wait-for-ready, the service config's settings for the method) and
    /// a new deadline timer.
    async fn run_start_hooks(&self, i: &super::intercept::Intercepted) -> Result<(), Status> {
        let start = super::intercept::CallStart {
            method: self.spec.uri.path().to_string(),
            opts: self.spec.opts.clone(),
        };
        let s = i.start(start).await?;
        let old_deadline = self.spec.opts.deadline;
        let spec = if s.method == self.spec.uri.path() {
            // Same method: its path and the service config's settings
            // stay; the hooks' deadline, compression and wait-for-ready
            // replace the call's.
            let sp = &self.spec;
            CallSpec {
                channel: sp.channel.clone(),
                uri: sp.uri.clone(),
                compression: s
                    .opts
                    .compression
                    .unwrap_or(sp.channel.opts.default_compression),
                wait_for_ready: s.opts.wait_for_ready.unwrap_or(sp.wait_for_ready),
                max_send: sp.max_send,
                max_recv: sp.max_recv,
                retry: sp.retry.clone(),
                opts: s.opts,
            }
        } else {
            super::handle::build_spec(&self.spec.channel, &s.method, s.opts).map_err(|e| {
                Status::new(Code::Internal, format!("an interceptor's start hook: {e}"))
            })?
        };
        let deadline = spec.opts.deadline;
        let _ = i.started.set(spec);
        if deadline != old_deadline {
            match deadline {
                Some(d) => {
                    if let (Some(me), Ok(h)) = (self.me.upgrade(), self.spec.channel.rt_handle()) {
                        super::handle::arm_deadline(&me, h, d);
                    }
                }
                None => {
                    if let Some(t) = crate::sync::lock(&self.deadline_task).take() {
                        t.abort();
                    }
                }
            }
            if self.ended() {
                return Err(protocol::deadline_status());
            }
        }
        Ok(())
    }

    /// Sends one message through the interceptors' send hooks.
    pub(super) async fn send_intercepted(
        &self,
        msg: Message<'_>,
        flags: SendFlags,
    ) -> Result<(), CallError> {
        if self.ended() {
            return Err(CallError::Ended);
        }
        let Some(i) = &self.icept else {
            return self.send(self.encode(msg, flags)?, flags).await;
        };
        let payload = match &msg {
            Message::Copy(b) => Bytes::copy_from_slice(b),
            Message::InPlace(p) => Bytes::copy_from_slice(p.payload()),
        };
        // Bounded by the call's end (its deadline, a cancel) like any
        // operation.
        let m = self
            .guarded(pin!(async {
                let r = match i.hooks.start {
                    true => self.started(i).await,
                    false => Ok(()),
                };
                let r = match r {
                    Ok(()) => i.send_message(payload).await,
                    Err(st) => Err(st),
                };
                r.map_err(|st| {
                    self.terminate_local(st);
                    CallError::Ended
                })
            }))
            .await?;
        self.send(self.encode(Message::Copy(&m), flags)?, flags)
            .await
    }

    /// Where the call's done callbacks run (never under the call's locks).
    pub(super) fn notifier(&self) -> Notifier {
        Notifier::callbacks(self.spec.opts.inline_callbacks)
    }

    pub(crate) fn status(&self) -> Option<Arc<Status>> {
        self.status_tx.borrow().clone()
    }

    /// True once the call has its final status (no reference taken).
    #[inline]
    fn ended(&self) -> bool {
        self.status_tx.borrow().is_some()
    }

    /// Runs `op` until it finishes or the call terminates. `op` comes
    /// pinned by the caller: passed by value, the operation's future (the
    /// largest part of every send and receive) was copied twice more per
    /// operation.
    async fn guarded<T>(
        &self,
        mut op: Pin<&mut impl Future<Output = Result<T, CallError>>>,
    ) -> Result<T, CallError> {
        if self.ended() {
            return Err(CallError::Ended);
        }
        // Most operations complete at the first poll (a message already
        // received, room to send): only a waiting one watches the status.
        // A status set in between is seen by `wait_for`, which checks the
        // current value first.
        let first = std::future::poll_fn(|cx| match op.as_mut().poll(cx) {
            std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        if let Some(r) = first {
            return r;
        }
        let mut rx = self.status_tx.subscribe();
        // The deadline task ends the call on time, unless the thread that
        // would run its timer is kept busy (a peer flooding the connection
        // this caller drives): each time the operation is polled, the
        // deadline is also checked here.
        let overdue = std::future::poll_fn(|_| match self.spec_now().opts.deadline {
            Some(d) if Instant::now() >= d => std::task::Poll::Ready(()),
            _ => std::task::Poll::Pending,
        });
        tokio::select! {
            biased;
            r = op.as_mut() => r,
            _ = rx.wait_for(|s| s.is_some()) => Err(CallError::Ended),
            _ = overdue => {
                self.terminate_local(protocol::deadline_status());
                Err(CallError::Ended)
            }
        }
    }

    /// Checks the send limit (on the uncompressed size, ending the call
    /// when it is exceeded) and frames the message, compressed when the
    /// call compresses, the message does not opt out, and compression makes
    /// it smaller (the flag says which).
    pub(super) fn encode<'a>(
        &self,
        msg: Message<'a>,
        flags: SendFlags,
    ) -> Result<Encoded<'a>, CallError> {
        let payload = match &msg {
            Message::Copy(b) => *b,
            Message::InPlace(p) => p.payload(),
        };
        let spec = self.spec_now();
        if let Some(max) = spec.max_send {
            if payload.len() > max {
                self.terminate(protocol::send_too_large(payload.len(), max), false);
                return Err(CallError::Ended);
            }
        }
        let compression = spec.compression;
        if compression != Compression::Identity && !flags.no_compress {
            let z = compression.compress(payload);
            crate::trace!(
                crate::log::Tracer::Compression,
                crate::log::Level::Debug,
                "{}: compressed a {}-byte message to {} bytes with {}{}",
                self.spec.uri.path(),
                payload.len(),
                z.len(),
                compression.name(),
                if z.len() < payload.len() {
                    ""
                } else {
                    " (sent uncompressed: no smaller)"
                }
            );
            if z.len() < payload.len() {
                self.stats
                    .sent(payload.len(), z.len() + framing::HEADER_LEN);
                return Ok(Encoded::Framed(framing::encode(&z, true)));
            }
        }
        self.stats
            .sent(payload.len(), payload.len() + framing::HEADER_LEN);
        Ok(match msg {
            Message::Copy(b) => Encoded::Plain(b),
            Message::InPlace(p) => Encoded::Framed(p.into_frame()),
        })
    }

    pub(super) async fn send(&self, msg: Encoded<'_>, flags: SendFlags) -> Result<(), CallError> {
        let _busy = BusyGuard::acquire(&self.send_busy, "another thread is sending on this call")?;
        let op = pin!(self.attempt.send(self, msg, flags));
        let r = self.guarded(op).await;
        if r.is_ok() {
            self.spec.channel.note_sent();
        }
        r
    }

    pub(super) async fn close_send(&self) -> Result<(), CallError> {
        let _busy = BusyGuard::acquire(&self.send_busy, "another thread is sending on this call")?;
        let op = pin!(self.attempt.close_send(self));
        let r = self.guarded(op).await;
        if r.is_ok() {
            self.spec.channel.note_sent();
        }
        r
    }

    /// Opens the call's stream now (picking a connection, waiting for one
    /// if needed) instead of with the first send.
    pub(super) async fn open(&self) -> Result<(), CallError> {
        self.guarded(pin!(self.attempt.ensure_open(self))).await
    }

    pub(super) async fn recv(&self) -> Result<Option<Bytes>, CallError> {
        self.recv_inner(true).await
    }

    /// A message just read from the stream, through the interceptors'
    /// receive hooks (each message once: what readers keep for `recv` has
    /// been through them). A hook's error ends the call.
    #[inline]
    async fn received(&self, m: Option<Bytes>) -> Result<Option<Bytes>, CallError> {
        match (&self.icept, m) {
            (Some(i), Some(m)) if i.hooks.recv_message => match i.recv_message(m).await {
                Ok(m) => Ok(Some(m)),
                Err(st) => {
                    self.terminate_local(st);
                    Err(CallError::Ended)
                }
            },
            (_, m) => Ok(m),
        }
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
            .guarded(pin!(async {
                self.attempt.ensure_open(self).await?;
                let mut st = self.attempt.lock_recv().await;
                if use_stash {
                    if let Some(m) = lock(&self.stash).pop_front() {
                        return Ok(Some(m));
                    }
                }
                let m = self.attempt.recv_locked(self, &mut st, false).await?;
                if self.icept.is_none() {
                    return Ok(m);
                }
                self.received(m).await
            }))
            .await
        {
            Err(CallError::Ended) => Ok(None),
            other => other,
        }
    }

    /// Makes sure the response side advances when nobody reads, so that a
    /// call whose status needs no message reading (Trailers-Only, errors,
    /// an ended stream) ends on its own: a background task reads until the
    /// call ends or one message arrives, which it keeps for `recv`. It
    /// never buffers more than one message, so flow control still applies.
    pub(super) fn ensure_progress(&self) {
        if self.ended()
            || self.push_mode.load(Ordering::Acquire)
            || self.driving.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (Some(me), Ok(h)) = (self.me.upgrade(), self.spec.channel.rt_handle()) else {
            self.driving.store(false, Ordering::Release);
            return;
        };
        h.spawn(async move {
            let _ = me
                .guarded(pin!(async {
                    me.attempt.ensure_open(&*me).await?;
                    let mut st = me.attempt.lock_recv().await;
                    if lock(&me.stash).is_empty() {
                        let m = me.attempt.recv_locked(&*me, &mut st, false).await?;
                        if let Some(m) = me.received(m).await? {
                            lock(&me.stash).push_back(m);
                        }
                    }
                    Ok(())
                }))
                .await;
            me.driving.store(false, Ordering::Release);
        });
    }

    pub(super) async fn finish(&self) -> Result<Arc<Status>, CallError> {
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

    pub(super) async fn initial_metadata(&self) -> Result<&Metadata, CallError> {
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
            // Drive the response headers ourselves, unless a receiver
            // holds the response side: then its reading brings them (the
            // notification), and it is not refused for our sake.
            let r = self
                .guarded(pin!(async {
                    self.attempt.ensure_open(self).await?;
                    let mut st = tokio::select! {
                        biased;
                        _ = notified.as_mut() => return Ok(()),
                        st = self.attempt.lock_recv() => st,
                    };
                    // Only as far as the headers: a message that comes
                    // later is left for recv.
                    while st.before_body() {
                        self.attempt.recv_locked(self, &mut st, true).await?;
                    }
                    Ok(())
                }))
                .await;
            if let Err(e) = r {
                if e != CallError::Ended {
                    return Err(e);
                }
            }
        }
    }

    pub(super) fn on_done(&self, cb: DoneCallback) -> Result<(), DoneCallback> {
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

    pub(super) fn on_message(
        self: Arc<Self>,
        mut f: impl FnMut(Bytes) + Send + 'static,
    ) -> Result<(), CallError> {
        if self.push_mode.swap(true, Ordering::AcqRel) {
            return Err(CallError::Busy("a message callback is already set"));
        }
        let handle = self
            .spec
            .channel
            .rt_handle()
            .map_err(|e| CallError::Runtime(e.to_string()))?
            .clone();
        handle.spawn(async move {
            while let Ok(Some(m)) = self.recv().await {
                f(m);
            }
        });
        Ok(())
    }

    /// Terminates the call from the client side (cancel, deadline, channel
    /// close, local limit): resets the stream with CANCEL.
    pub(crate) fn terminate_local(&self, status: Status) -> bool {
        self.terminate(status, false)
    }

    /// Sets the final status once. `from_server` says the status came from
    /// the server's stream, so any reset is RST_STREAM(NO_ERROR) instead of
    /// CANCEL.
    fn terminate(&self, mut status: Status, from_server: bool) -> bool {
        if status.code() == Code::Cancelled {
            if let Some(d) = self.spec_now().opts.deadline {
                if Instant::now() >= d {
                    status = protocol::deadline_status();
                }
            }
        }
        if let Some(i) = self.icept.as_ref().filter(|i| i.hooks.status) {
            return self.terminate_intercepted(i, status, from_server);
        }
        self.stats.ended();
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
        self.stop_wire(&st, from_server);
        self.announce(st);
        true
    }

    /// `terminate` with status hooks: the wire side stops now; the status
    /// the hooks answer becomes the call's.
    fn terminate_intercepted(
        &self,
        i: &super::intercept::Intercepted,
        status: Status,
        from_server: bool,
    ) -> bool {
        if i.ending.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.stats.ended();
        self.stop_wire(&status, from_server);
        let (Some(me), Ok(h)) = (self.me.upgrade(), self.spec.channel.rt_handle()) else {
            // Being dropped (nobody can see the status any more), or the
            // library was shut down: no hook can run.
            let st = Arc::new(status);
            self.status_tx.send_replace(Some(st.clone()));
            self.announce(st);
            return true;
        };
        let mut run = Box::pin(async move {
            let st = match &me.icept {
                Some(i) => i.status(status).await,
                None => status,
            };
            let st = Arc::new(st);
            me.status_tx.send_replace(Some(st.clone()));
            me.announce(st);
        });
        // Hooks that answer at once finish here, on this thread (no hop to
        // a runtime thread); one that answers later resumes in a task.
        if futures_util::FutureExt::now_or_never(&mut run).is_none() {
            h.spawn(run);
        }
        true
    }

    /// The wire side of the end: the deadline timer, the kept frames, the
    /// retry throttle, the channel's registration and the stream.
    #[inline]
    fn stop_wire(&self, st: &Status, from_server: bool) {
        if let Some(t) = lock(&self.deadline_task).take() {
            t.abort();
        }
        self.attempt.release_kept(self);
        if st.is_ok() {
            if let Some(t) = self.spec.channel.retry_throttle() {
                t.success();
            }
        }
        if let Some(id) = self.id.get() {
            let had_stream = self.attempt.uncount();
            self.spec.channel.unregister(*id, st.is_ok(), had_stream);
        }
        // Reset the stream if our half is still open.
        let reason = if from_server && st.is_ok() {
            h2::Reason::NO_ERROR
        } else {
            h2::Reason::CANCEL
        };
        if !self.attempt.reset_now(reason) {
            // A send is in progress; it is unwinding now (its guard saw the
            // status). Reset once it has let go.
            if let (Some(me), Ok(h)) = (self.me.upgrade(), self.spec.channel.rt_handle()) {
                h.spawn(async move { me.attempt.reset_when_free(reason).await });
            }
        }
    }

    /// The application's side of the end (the status is set): waiters
    /// wake, done callbacks run.
    #[inline]
    fn announce(&self, st: Arc<Status>) {
        crate::trace!(
            crate::log::Tracer::Call,
            crate::log::Level::Debug,
            "call {} ended: {}{}",
            self.spec_now().uri.path(),
            st,
            match self.attempt.peer_with_nul() {
                Some(p) => format!(" (peer {})", &p[..p.len() - 1]),
                None => " (never sent)".to_string(),
            }
        );
        let _ = self.initial_md.get_or_init(Metadata::new);
        self.initial_notify.notify_waiters();
        // Done callbacks run on a runtime thread, never under our locks.
        let cbs = std::mem::take(&mut *lock(&self.callbacks));
        if cbs.is_empty() {
            self.finished_tx.send_replace(true);
        } else {
            let finished = self.finished_tx.clone();
            self.notifier().deliver(move || {
                for cb in cbs {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&st)));
                }
                finished.send_replace(true);
            });
        }
    }
}
