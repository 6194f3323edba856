//! The unary helpers: one request, one response, as one blocking future
//! or driven by a runtime task with a done callback.

use super::error::StartError;
use super::handle::{Call, DoneCallback};
use super::options::{CallOptions, Message, SendFlags};
use super::state::CallShared;
use crate::channel::Channel;
use crate::status::{Code, Status};
use crate::sync::lock;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The response of a unary call (only when its status is OK) and its status.
pub type UnaryOutcome = (Option<Bytes>, Arc<Status>);

impl Channel {
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
        let handle = call
            .shared
            .spec
            .channel
            .rt_handle()
            .map_err(|e| StartError::Runtime(e.to_string()))?
            .clone();
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
            call.shared.notifier().deliver(move || {
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
    if shared.hooks().send_message {
        let _ = shared
            .send_intercepted(Message::Copy(&request), SendFlags::LAST)
            .await;
    } else if let Ok(frame) = shared.encode(Message::Copy(&request), SendFlags::default()) {
        let _ = shared.send(frame, SendFlags::LAST).await;
    }
    if let Ok(Some(m)) = shared.recv().await {
        lock(&shared.stash).push_front(m);
    }
    let _ = shared.finish().await;
}
