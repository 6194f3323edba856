//! Interceptors: application code wrapped around every call of a channel.
//!
//! A channel's interceptors ([`crate::ChannelOptions::interceptors`]) form
//! a chain. For each call, each interceptor gets a [`CallContext`] (its
//! per-call data) and, for the hooks it declares ([`Hooks`]):
//!
//! * `start`, once, before the call's first attempt (when its first
//!   operation opens the stream): may change the method, metadata,
//!   deadline, compression and wait-for-ready, or end the call;
//! * `send_message` for each message the application sends, before it is
//!   compressed and framed: may replace it or end the call;
//! * `recv_message` for each message the application receives: may
//!   replace it or end the call;
//! * `status`, once, with the final status and trailing metadata before the
//!   application sees them: may replace them.
//!
//! Each hook answers through a [`Reply`], now or later from any thread;
//! the call waits for it. Start and send hooks run first to last (the
//! first interceptor is the outermost, as with grpcio's
//! `intercept_channel(ch, a, b)`: `a` sees the application's request
//! first); receive and status hooks run last to first. Retries and hedges
//! happen inside the chain: a hook sees the call, never an attempt.
//!
//! A hook that is dropped without an answer ends the call with INTERNAL.
//! A channel without interceptors pays one branch per operation.

use super::options::CallOptions;
use crate::status::{Code, Status};
use bytes::Bytes;
use std::any::Any;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Which hooks an interceptor has; the others are skipped without cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub start: bool,
    pub send_message: bool,
    pub recv_message: bool,
    pub status: bool,
}

impl Hooks {
    fn union(self, o: Hooks) -> Hooks {
        Hooks {
            start: self.start || o.start,
            send_message: self.send_message || o.send_message,
            recv_message: self.recv_message || o.recv_message,
            status: self.status || o.status,
        }
    }
}

/// What a start hook sees and may change.
#[derive(Clone, Debug)]
pub struct CallStart {
    /// `/package.Service/Method`.
    pub method: String,
    /// The call's options: metadata, deadline, compression,
    /// wait-for-ready (the other fields are the library's and ignored).
    pub opts: CallOptions,
}

/// The answer to one hook: send it once, from any thread.
pub struct Reply<T>(oneshot::Sender<T>);

impl<T> Reply<T> {
    /// Answers the hook; the call goes on with `v`.
    pub fn send(self, v: T) {
        let _ = self.0.send(v);
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// One interceptor's view of one call: the method as the call started and
/// a slot for the interceptor's per-call data (dropped with the call).
pub struct CallContext {
    method: Box<str>,
    data: Mutex<Option<Box<dyn Any + Send>>>,
}

impl CallContext {
    /// The call's method as the application started it, followed by one
    /// NUL byte (for the C API; see [`CallContext::method`]).
    pub fn method_with_nul(&self) -> &str {
        &self.method
    }

    /// The call's method as the application started it.
    pub fn method(&self) -> &str {
        &self.method[..self.method.len() - 1]
    }

    /// The interceptor's per-call data (None until it sets some).
    pub fn data(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        crate::sync::lock(&self.data)
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("method", &self.method())
            .finish()
    }
}

/// Code wrapped around every call of a channel (see the module docs).
/// Hooks are called on the thread running the operation (the
/// application's, or a library thread): they must not block for long —
/// answer later instead.
pub trait Interceptor: Send + Sync + 'static {
    /// The hooks this interceptor has.
    fn hooks(&self) -> Hooks;
    /// Before the first attempt: answer with the (changed) start, or an
    /// error status to end the call without sending anything.
    fn start(
        &self,
        call: &Arc<CallContext>,
        start: CallStart,
        reply: Reply<Result<CallStart, Status>>,
    ) {
        let _ = call;
        reply.send(Ok(start));
    }
    /// Each sent message, uncompressed: answer with the message to send,
    /// or an error status to end the call.
    fn send_message(
        &self,
        call: &Arc<CallContext>,
        msg: Bytes,
        reply: Reply<Result<Bytes, Status>>,
    ) {
        let _ = call;
        reply.send(Ok(msg));
    }
    /// Each received message, decompressed: answer with the message the
    /// application gets, or an error status to end the call.
    fn recv_message(
        &self,
        call: &Arc<CallContext>,
        msg: Bytes,
        reply: Reply<Result<Bytes, Status>>,
    ) {
        let _ = call;
        reply.send(Ok(msg));
    }
    /// The final status with its trailing metadata: answer with the status
    /// the application sees.
    fn status(&self, call: &Arc<CallContext>, status: Status, reply: Reply<Status>) {
        let _ = call;
        reply.send(status);
    }
}

/// A channel's interceptor chain (cheap to clone).
#[derive(Clone, Default)]
pub struct Interceptors {
    chain: Arc<[Arc<dyn Interceptor>]>,
    hooks: Hooks,
}

impl Interceptors {
    /// A chain of `list`, the first the outermost.
    pub fn new(list: Vec<Arc<dyn Interceptor>>) -> Interceptors {
        let hooks = list
            .iter()
            .fold(Hooks::default(), |h, i| h.union(i.hooks()));
        Interceptors {
            chain: list.into(),
            hooks,
        }
    }

    /// Adds `i` inside the others (it sees the request after them).
    pub fn push(&mut self, i: Arc<dyn Interceptor>) {
        let mut v: Vec<_> = self.chain.iter().cloned().collect();
        v.push(i);
        *self = Interceptors::new(v);
    }

    /// Number of interceptors.
    pub fn len(&self) -> usize {
        self.chain.len()
    }

    /// True without interceptors.
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// Per-call state, None for an empty chain.
    pub(crate) fn for_call(&self, method: &str) -> Option<Box<Intercepted>> {
        if self.chain.is_empty() {
            return None;
        }
        let ctx = self
            .chain
            .iter()
            .map(|_| {
                Arc::new(CallContext {
                    method: crate::status::with_nul(method),
                    data: Mutex::new(None),
                })
            })
            .collect();
        Some(Box::new(Intercepted {
            chain: self.chain.clone(),
            hooks: self.hooks,
            ctx,
            started: std::sync::OnceLock::new(),
            start_done: tokio::sync::OnceCell::new(),
            ending: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

impl std::fmt::Debug for Interceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interceptors({})", self.chain.len())
    }
}

impl PartialEq for Interceptors {
    fn eq(&self, o: &Interceptors) -> bool {
        Arc::ptr_eq(&self.chain, &o.chain) || (self.chain.is_empty() && o.chain.is_empty())
    }
}

/// One kind of hook, called with the value it may change.
type HookFn<T> = fn(&dyn Interceptor, &Arc<CallContext>, T, Reply<Result<T, Status>>);

/// One call's interceptor state.
pub(crate) struct Intercepted {
    chain: Arc<[Arc<dyn Interceptor>]>,
    pub(super) hooks: Hooks,
    ctx: Vec<Arc<CallContext>>,
    /// The call's definition after the start hooks changed it.
    pub(super) started: std::sync::OnceLock<super::options::CallSpec>,
    /// The start hooks' outcome, once they have run.
    pub(super) start_done: tokio::sync::OnceCell<Result<(), Status>>,
    /// The call has its final status from below and the status hooks are
    /// running (the first end wins, as without interceptors).
    pub(super) ending: std::sync::atomic::AtomicBool,
}

fn dropped() -> Status {
    Status::new(
        Code::Internal,
        "an interceptor dropped its hook without answering",
    )
}

impl Intercepted {
    /// The `k`th interceptor with its call context, counting from the
    /// first or (`rev`, for the response side) from the last.
    fn at(&self, k: usize, rev: bool) -> (&dyn Interceptor, &Arc<CallContext>) {
        let j = if rev { self.chain.len() - 1 - k } else { k };
        (&*self.chain[j], &self.ctx[j])
    }

    /// Passes `v` through the hooks that `wants` selects, first to last
    /// (or last to first, `rev`); a hook's error ends the chain.
    async fn chain<T>(
        &self,
        rev: bool,
        wants: fn(&Hooks) -> bool,
        hook: HookFn<T>,
        mut v: T,
    ) -> Result<T, Status> {
        for k in 0..self.chain.len() {
            let (i, c) = self.at(k, rev);
            if !wants(&i.hooks()) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            hook(i, c, v, Reply(tx));
            v = rx.await.unwrap_or_else(|_| Err(dropped()))?;
        }
        Ok(v)
    }

    pub(super) async fn start(&self, s: CallStart) -> Result<CallStart, Status> {
        self.chain(false, |h| h.start, |i, c, v, r| i.start(c, v, r), s)
            .await
    }

    pub(super) async fn send_message(&self, m: Bytes) -> Result<Bytes, Status> {
        self.chain(
            false,
            |h| h.send_message,
            |i, c, v, r| i.send_message(c, v, r),
            m,
        )
        .await
    }

    pub(super) async fn recv_message(&self, m: Bytes) -> Result<Bytes, Status> {
        self.chain(
            true,
            |h| h.recv_message,
            |i, c, v, r| i.recv_message(c, v, r),
            m,
        )
        .await
    }

    pub(super) async fn status(&self, mut s: Status) -> Status {
        for k in 0..self.chain.len() {
            let (i, c) = self.at(k, true);
            if !i.hooks().status {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            i.status(c, s, Reply(tx));
            s = rx.await.unwrap_or_else(|_| dropped());
        }
        s
    }
}
