//! A future that completes when the channel becomes READY, like grpcio's
//! `channel_ready_future`: wait on it, or get a callback (delivered
//! through [`crate::completion`]); cancel it. The channel starts
//! connecting if it is IDLE.

use super::channel::Channel;
use super::state::ConnectivityState;
use crate::completion::{Notifier, Pending};
use crate::rt::{self, RuntimeError};
use crate::sync::lock;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How a ready future ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReadyOutcome {
    /// The channel became READY.
    Ready,
    /// The channel was closed first.
    ChannelClosed,
    /// The future was cancelled (or dropped) first.
    Cancelled,
}

/// The callback of a ready future: runs once with the outcome.
pub type ReadyCallback = Box<dyn FnOnce(ReadyOutcome) + Send>;

struct Shared {
    result: watch::Sender<Option<ReadyOutcome>>,
    /// The callback, with a count that keeps shutdown waiting until it has
    /// run (the task that completes the future runs after the channels
    /// closed).
    cb: Mutex<Option<(ReadyCallback, Pending)>>,
    notifier: Notifier,
}

impl Shared {
    /// Sets the outcome once and delivers the callback.
    fn complete(&self, r: ReadyOutcome) {
        let first = self.result.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(r);
                true
            } else {
                false
            }
        });
        if !first {
            return;
        }
        let cb = lock(&self.cb).take();
        if let Some((cb, pending)) = cb {
            self.notifier.deliver(move || {
                cb(r);
                drop(pending);
            });
        }
    }
}

/// A pending or completed wait for READY. Dropping it cancels it.
pub struct ReadyFuture {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Channel {
    /// Starts a ready future; `cb` (if any) runs once, through `notifier`,
    /// when it completes, is cancelled or dropped.
    pub fn ready_future(
        &self,
        cb: Option<ReadyCallback>,
        notifier: Notifier,
    ) -> Result<ReadyFuture, RuntimeError> {
        let h = rt::handle()?;
        let shared = Arc::new(Shared {
            result: watch::channel(None).0,
            cb: Mutex::new(cb.map(|cb| (cb, Pending::new()))),
            notifier,
        });
        let (s2, ch) = (shared.clone(), self.clone());
        let task = h.spawn(async move {
            let r = match ch.wait_for_ready().await {
                ConnectivityState::Ready => ReadyOutcome::Ready,
                _ => ReadyOutcome::ChannelClosed,
            };
            s2.complete(r);
        });
        Ok(ReadyFuture {
            shared,
            task: task.abort_handle(),
        })
    }
}

impl ReadyFuture {
    /// Waits for the outcome.
    pub async fn wait(&self) -> ReadyOutcome {
        let mut rx = self.shared.result.subscribe();
        rx.wait_for(|v| v.is_some())
            .await
            .map(|v| v.unwrap_or(ReadyOutcome::Cancelled))
            .unwrap_or(ReadyOutcome::Cancelled)
    }

    /// The outcome, if the future has completed.
    pub fn outcome(&self) -> Option<ReadyOutcome> {
        *self.shared.result.borrow()
    }

    /// Cancels the future if it has not completed (idempotent).
    pub fn cancel(&self) {
        self.task.abort();
        self.shared.complete(ReadyOutcome::Cancelled);
    }
}

impl Drop for ReadyFuture {
    fn drop(&mut self) {
        self.cancel();
    }
}
