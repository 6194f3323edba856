//! [`Call`], the handle the application holds, and `Channel::start_call`.

use super::error::{CallError, StartError};
use super::options::{CallOptions, CallSpec, Message, SendFlags};
use super::protocol;
use super::state::CallShared;
pub use super::state::DoneCallback;
use crate::channel::Channel;
use crate::metadata::Metadata;
use crate::status::{Code, Status};
use crate::sync::lock;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl Channel {
    /// Starts a call. Nothing is sent until the first operation.
    pub fn start_call(&self, method: &str, opts: CallOptions) -> Result<Call, StartError> {
        let inner = &self.inner;
        if inner.is_closed() {
            return Err(StartError::ChannelClosed);
        }
        let handle = inner
            .rt_handle()
            .map_err(|e| StartError::Runtime(e.to_string()))?;
        let spec = build_spec(inner, method, opts)?;
        let shared = Arc::new_cyclic(|me| CallShared::new(me.clone(), spec));
        let as_active: Arc<dyn crate::channel::ActiveCall> = shared.clone();
        let id = inner
            .register(Arc::downgrade(&as_active))
            .map_err(|_| StartError::ChannelClosed)?;
        let _ = shared.id.set(id);
        crate::trace!(
            crate::log::Tracer::Call,
            crate::log::Level::Debug,
            "call {method} started{}",
            match shared.spec.opts.deadline {
                Some(d) => format!(
                    " (deadline in {} ms)",
                    d.saturating_duration_since(Instant::now()).as_millis()
                ),
                None => String::new(),
            }
        );
        if let Some(deadline) = shared.spec.opts.deadline {
            arm_deadline(&shared, handle, deadline);
        }
        Ok(Call {
            shared,
            cancel_on_drop: true,
        })
    }
}

/// The call's definition from its method and options, with the service
/// config's method settings applied.
#[inline]
pub(super) fn build_spec(
    inner: &Arc<crate::channel::ChannelInner>,
    method: &str,
    mut opts: CallOptions,
) -> Result<CallSpec, StartError> {
    protocol::validate_method(method).map_err(StartError::InvalidMethod)?;
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(inner.authority.clone())
        .path_and_query(method)
        .build()
        .map_err(|e| StartError::InvalidMethod(format!("{method:?}: {e}")))?;
    let compression = opts.compression.unwrap_or(inner.opts.default_compression);
    // The service config's method settings (gRPC's service_config.md):
    // the smaller deadline and limits win; the call's wait_for_ready,
    // when it set one, wins.
    let mc = inner.method_config(method);
    if let Some(t) = mc.and_then(|m| m.timeout) {
        let d = Instant::now() + t;
        opts.deadline = Some(opts.deadline.map_or(d, |x| x.min(d)));
    }
    let lower = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(CallSpec {
        wait_for_ready: opts
            .wait_for_ready
            .or(mc.and_then(|m| m.wait_for_ready))
            .unwrap_or(false),
        max_send: lower(
            inner.opts.max_send_message_length,
            mc.and_then(|m| m.max_request_message_bytes),
        ),
        max_recv: lower(
            inner.opts.max_receive_message_length,
            mc.and_then(|m| m.max_response_message_bytes),
        ),
        retry: mc
            .filter(|m| {
                inner.opts.enable_retries
                    && (m.retry_policy.is_some() || m.hedging_policy.is_some())
            })
            .cloned(),
        channel: inner.clone(),
        uri,
        opts,
        compression,
    })
}

/// Ends the call at `deadline` (replacing an earlier timer).
pub(super) fn arm_deadline(
    shared: &Arc<CallShared>,
    handle: &tokio::runtime::Handle,
    deadline: Instant,
) {
    if deadline <= Instant::now() {
        shared.terminate_local(protocol::deadline_status());
        return;
    }
    let weak = Arc::downgrade(shared);
    let task = handle.spawn(async move {
        tokio::time::sleep_until(deadline).await;
        if let Some(s) = weak.upgrade() {
            s.terminate_local(protocol::deadline_status());
        }
    });
    if let Some(old) = lock(&shared.deadline_task).replace(task.abort_handle()) {
        old.abort();
    }
    // The call may have terminated between the check and now.
    if shared.status().is_some() {
        task.abort();
    }
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
        if self.shared.hooks().send_message {
            return self.shared.send_intercepted(msg, flags).await;
        }
        self.shared
            .send(self.shared.encode(msg, flags)?, flags)
            .await
    }

    /// Opens the call's stream now: picks a connection (waiting for one
    /// as the call's wait-for-ready says) and hands the request headers to
    /// HTTP/2. Otherwise the first send does it. `Err(Ended)` when the call
    /// ended first (its status says why).
    pub async fn open(&self) -> Result<(), CallError> {
        self.shared.open().await
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

    /// The server's initial metadata if it has arrived, or empty metadata
    /// if the call ended without any; `None` while it may still come.
    pub fn initial_metadata_now(&self) -> Option<&Metadata> {
        match self.shared.initial_md.get() {
            Some(md) => Some(md),
            None if self.shared.status().is_some() => {
                Some(self.shared.initial_md.get_or_init(Metadata::new))
            }
            None => None,
        }
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
            .spec_now()
            .opts
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The `grpc-encoding` of the response ("identity" when the server sent
    /// none), once the response headers have arrived.
    pub fn response_encoding(&self) -> Option<&str> {
        self.response_encoding_with_nul().map(|s| &s[..s.len() - 1])
    }

    /// [`Call::response_encoding`] followed by one NUL byte, for callers
    /// that lend it out NUL-terminated.
    pub fn response_encoding_with_nul(&self) -> Option<&str> {
        self.shared.response_encoding.get().map(|s| &**s)
    }

    /// The address the call went to, as C-core's `grpc_call_get_peer`
    /// writes it (`ipv4:127.0.0.1:50051`, `ipv6:[::1]:50051`,
    /// `unix:/path`); None until its stream has been opened.
    pub fn peer(&self) -> Option<&str> {
        self.peer_with_nul().map(|s| &s[..s.len() - 1])
    }

    /// The call's statistics so far (final once it has ended): attempts,
    /// messages and bytes each way (as sent and received by the
    /// application, and in gRPC frames on the wire), time waiting for a
    /// connection, time to the response headers, total time.
    pub fn stats(&self) -> super::CallStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// [`Call::peer`] followed by one NUL byte.
    pub fn peer_with_nul(&self) -> Option<&str> {
        self.shared.attempt.peer_with_nul()
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
