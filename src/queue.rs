//! `rgrpc_completion_queue`: operations that complete into a queue with a
//! caller tag, for event loops (epoll, libuv, asyncio) that poll its file
//! descriptor. The operations themselves (`rgrpc_call_*_cq`,
//! `rgrpc_channel_*_cq`) are here too, beside the queue they feed.

use super::boundary::boundary;
use super::buffer::{self, rgrpc_buffer, Outgoing};
use super::call::{call_handle, rgrpc_call, send_flags, start_error, CallHandle};
use super::call_options::{options_of, rgrpc_call_options};
use super::callback::UserData;
use super::channel::rgrpc_channel;
use super::connectivity::{ready_result, rgrpc_connectivity_state, rgrpc_ready_future};
use super::error::{rgrpc_error, rgrpc_result, set_error};
use super::handle::{
    block, bytes_arg, clone_arc, take_arc, to_arc, to_boxed, try_arc_or_null, try_ref_or_null,
    with_timeout, write_out, Castable,
};
use super::runtime::{shut_down, SHUT_DOWN};
use super::status::rgrpc_status;
use bytes::Bytes;
use rgrpc_core::channel::ready::ReadyCallback;
use rgrpc_core::channel::ConnectivityState;
use rgrpc_core::completion::Notifier;
use rgrpc_core::queue::{CompletionQueue, Next, Ticket};
use rgrpc_core::{CallError, Status};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A completion queue: asynchronous operations (`rgrpc_call_start_cq`,
/// `rgrpc_call_send_cq`, `rgrpc_call_recv_cq`, ...) complete into it with
/// the `tag` the caller gave, and the caller takes the completions out on
/// its own thread, typically from its event loop:
///
/// ```c
/// int fd = rgrpc_completion_queue_fd(cq);   // watch it for reading
/// ...when fd is readable:
/// rgrpc_completion c;
/// while (rgrpc_completion_queue_next(cq, &c) == RGRPC_RESULT_OK) {
///   handle(c.tag, c.op, c.result, c.message, c.status, c.state);
/// }
/// ```
///
/// The descriptor is **level-triggered**: it is readable exactly while at
/// least one completion waits (or the queue has finished, see below), so
/// `poll`, `select`, epoll in either mode, libuv's `uv_poll` and asyncio's
/// `add_reader` all work. Drain with `rgrpc_completion_queue_next` until it
/// returns `RGRPC_RESULT_QUEUE_EMPTY`; with edge-triggered epoll you must
/// drain that far before waiting again. Never read from or close the
/// descriptor yourself.
///
/// Or block: `rgrpc_completion_queue_wait(cq, timeout_ms, &c)`. With the
/// default caller-driven runtime a thread blocked there does the
/// connections' I/O itself while it waits, as a blocking call does.
///
/// Who does the I/O while an event loop sleeps in `epoll_wait`: the
/// library's one background thread (`rgrpc-driver` in the caller-driven
/// mode, the workers with `rgrpc_runtime_set_worker_threads(n)`). The
/// sockets' readiness is watched by the runtime's own poller, which cannot
/// be nested in the application's, so the queue carries completions and
/// that thread carries the I/O; it hands over to any thread that blocks in
/// rgrpc (including `rgrpc_completion_queue_wait`).
///
/// Every operation started on a queue completes exactly once, also when
/// its call is cancelled or freed, its channel closed or the library shut
/// down (then with `RGRPC_RESULT_SHUTDOWN`). An operation refused when
/// started (its function returned a failure) never completes.
///
/// Ending: `rgrpc_completion_queue_shutdown` refuses new operations; the
/// ones started before still complete. Once every one has completed and
/// been taken, `next` and `wait` return `RGRPC_RESULT_QUEUE_SHUTDOWN` and
/// the descriptor stays readable; then free the queue. Freeing it earlier
/// is safe: completions not yet taken (and those still to come) are
/// dropped with their messages and statuses, their tags never seen.
///
/// Threads: every function is thread-safe; several threads may take
/// completions from one queue (each completion goes to one of them).
/// Lifetime: reference-counted; `rgrpc_completion_queue_free` releases the
/// application's reference, operations hold their own.
///
/// Methods: `rgrpc_completion_queue_new`, `rgrpc_completion_queue_fd`,
/// `rgrpc_completion_queue_next`, `rgrpc_completion_queue_wait`,
/// `rgrpc_completion_queue_shutdown`, `rgrpc_completion_queue_free`.
pub struct rgrpc_completion_queue {
    _private: [u8; 0],
}

pub(crate) type Queue = CompletionQueue<Done>;

impl Castable for rgrpc_completion_queue {
    type Rust = Queue;
}

/// Which operation a completion is for.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_op {
    /// `rgrpc_call_start_cq`: the call's stream is open (its request
    /// headers handed to HTTP/2); `RGRPC_RESULT_CALL_ENDED` if the call
    /// ended first.
    Start = 1,
    /// `rgrpc_call_send_cq`, `rgrpc_call_send_buffer_cq`: the message was
    /// accepted (as `rgrpc_call_send` returns).
    Send = 2,
    /// `rgrpc_call_close_send_cq`: the call is half-closed.
    CloseSend = 3,
    /// `rgrpc_call_recv_cq`: `message` holds the next message (result OK),
    /// or the stream ended (`RGRPC_RESULT_END_OF_STREAM`).
    Recv = 4,
    /// `rgrpc_call_initial_metadata_cq`: the server's initial metadata has
    /// arrived (or the call ended without any); read it with
    /// `rgrpc_call_initial_metadata`, which no longer waits.
    InitialMetadata = 5,
    /// `rgrpc_call_finish_cq`: `status` holds the final status; the result
    /// is OK for an OK status, `RGRPC_RESULT_RPC_FAILED` otherwise.
    Finish = 6,
    /// `rgrpc_call_unary_cq`: `status` holds the status and, when it is OK,
    /// `message` the response (result OK or `RGRPC_RESULT_RPC_FAILED`).
    Unary = 7,
    /// `rgrpc_channel_watch_state_cq`: `state` is the channel's new state
    /// (result OK), or the timeout passed first (`RGRPC_RESULT_TIMEOUT`,
    /// `state` the current one).
    StateChange = 8,
    /// `rgrpc_channel_ready_future_cq`: the ready future's outcome in
    /// `result` (OK, `RGRPC_RESULT_CHANNEL_CLOSED`,
    /// `RGRPC_RESULT_CANCELLED`).
    Ready = 9,
}

/// One completion, written by `rgrpc_completion_queue_next` / `_wait`.
///
/// `message` and `status` are owned by the caller when not NULL: free
/// them with `rgrpc_buffer_free` and `rgrpc_status_free` (both accept
/// NULL, so freeing both is always right).
#[repr(C)]
pub struct rgrpc_completion {
    /// The tag given when the operation started.
    pub tag: *mut c_void,
    /// The operation.
    pub op: rgrpc_op,
    /// `RGRPC_RESULT_OK` when it succeeded; otherwise the result the
    /// blocking function would have returned (`RGRPC_RESULT_CALL_ENDED`,
    /// `RGRPC_RESULT_END_OF_STREAM`, `RGRPC_RESULT_RPC_FAILED`,
    /// `RGRPC_RESULT_BUSY`, `RGRPC_RESULT_TIMEOUT`,
    /// `RGRPC_RESULT_SHUTDOWN`...). For a call, `rgrpc_call_finish_cq`
    /// gives the status that says why.
    pub result: rgrpc_result,
    /// `RGRPC_OP_RECV` and `RGRPC_OP_UNARY`: the message, or NULL.
    pub message: *mut rgrpc_buffer,
    /// `RGRPC_OP_FINISH` and `RGRPC_OP_UNARY`: the status, or NULL.
    pub status: *const rgrpc_status,
    /// `RGRPC_OP_STATE_CHANGE`: the channel's state.
    pub state: rgrpc_connectivity_state,
}

/// A completion as the queue keeps it (Rust values; made into C handles
/// when taken).
pub(crate) struct Done {
    tag: UserData,
    op: rgrpc_op,
    result: rgrpc_result,
    message: Option<Bytes>,
    status: Option<Arc<Status>>,
    state: ConnectivityState,
}

impl Done {
    fn new(tag: UserData, op: rgrpc_op, result: rgrpc_result) -> Done {
        Done {
            tag,
            op,
            result,
            message: None,
            status: None,
            state: ConnectivityState::Idle,
        }
    }

    fn into_c(self) -> rgrpc_completion {
        rgrpc_completion {
            tag: self.tag.0,
            op: self.op,
            result: self.result,
            message: self.message.map_or(std::ptr::null_mut(), buffer::received),
            status: self.status.map_or(std::ptr::null(), to_arc::<rgrpc_status>),
            state: self.state.into(),
        }
    }
}

/// Makes a completion queue.
///
/// On success writes it to `*cq_out` (the application's reference,
/// released with `rgrpc_completion_queue_free`). Returns
/// `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` (cq_out NULL) or
/// `RGRPC_RESULT_RUNTIME` (the system refused a socket pair: out of file
/// descriptors); on failure `*error_out` (when error_out is not NULL)
/// receives an `rgrpc_error` saying why (free with `rgrpc_error_free`).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_new(
    cq_out: *mut *mut rgrpc_completion_queue,
    error_out: *mut *mut rgrpc_error,
) -> rgrpc_result {
    boundary(|| {
        if cq_out.is_null() {
            return set_error(error_out, rgrpc_result::NullParameter, "cq_out is NULL");
        }
        match Queue::new() {
            Ok(q) => {
                write_out!(cq_out, to_arc::<rgrpc_completion_queue>(q) as *mut _);
                rgrpc_result::Ok
            }
            Err(e) => set_error(
                error_out,
                rgrpc_result::Runtime,
                &format!("could not make the queue's socket pair: {e}"),
            ),
        }
    })
}

/// The queue's file descriptor: readable exactly while a completion waits
/// or the queue has finished (level-triggered; see
/// `rgrpc_completion_queue`). It is kept up to date from the first call of
/// this function on (a queue only used with `rgrpc_completion_queue_wait`
/// never asks for it and costs no system calls for it). Owned by the
/// queue: do not read, write or close it; valid until
/// `rgrpc_completion_queue_free`. -1 for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_fd(cq: *const rgrpc_completion_queue) -> c_int {
    boundary(|| {
        // SAFETY: cq is NULL or a live queue handle.
        unsafe { super::handle::try_ref::<rgrpc_completion_queue>(cq) }.map_or(-1, |q| q.fd())
    })
}

/// Takes the oldest completion without waiting.
///
/// Returns `RGRPC_RESULT_OK` (`*out` written; free its message and
/// status), `RGRPC_RESULT_QUEUE_EMPTY` (nothing waits now),
/// `RGRPC_RESULT_QUEUE_SHUTDOWN` (shut down and every completion
/// delivered: free the queue) or `RGRPC_RESULT_NULL_PARAMETER`. `*out` is
/// written only on OK. Thread-safe; never blocks, never does I/O.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_next(
    cq: *mut rgrpc_completion_queue,
    out: *mut rgrpc_completion,
) -> rgrpc_result {
    boundary(|| {
        let q = try_ref_or_null!(rgrpc_completion_queue, cq);
        if out.is_null() {
            return rgrpc_result::NullParameter;
        }
        deliver(q.next(), out)
    })
}

fn deliver(n: Next<Done>, out: *mut rgrpc_completion) -> rgrpc_result {
    match n {
        Next::Item(d) => {
            write_out!(out, d.into_c());
            rgrpc_result::Ok
        }
        Next::Empty => rgrpc_result::QueueEmpty,
        Next::Shutdown => rgrpc_result::QueueShutdown,
    }
}

/// Waits up to `timeout_ms` (< 0: no limit; 0: do not wait) for a
/// completion. In the caller-driven runtime the waiting thread does the
/// library's I/O meanwhile (no thread hand-off).
///
/// Returns `RGRPC_RESULT_OK` (`*out` written), `RGRPC_RESULT_TIMEOUT`,
/// `RGRPC_RESULT_QUEUE_SHUTDOWN` (shut down and drained),
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_RUNTIME` (called on a
/// library thread, where blocking is impossible) or
/// `RGRPC_RESULT_SHUTDOWN` (after `rgrpc_shutdown`, once nothing is left to
/// take). Thread-safe; holds its own reference to the queue while it
/// waits.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_wait(
    cq: *mut rgrpc_completion_queue,
    timeout_ms: i64,
    out: *mut rgrpc_completion,
) -> rgrpc_result {
    boundary(|| {
        let q = try_arc_or_null!(rgrpc_completion_queue, cq);
        if out.is_null() {
            return rgrpc_result::NullParameter;
        }
        match q.next() {
            Next::Empty => {}
            n => return deliver(n, out),
        }
        if timeout_ms == 0 {
            return rgrpc_result::Timeout;
        }
        // Once a completion is in, one more turn of the runtime lets the
        // tasks woken with it (a read often ends many calls) complete too,
        // so the caller drains them with `next` and starts its next
        // operations together: their frames then leave in one write.
        let waited = async {
            let n = q.wait().await;
            tokio::task::yield_now().await;
            n
        };
        match block(with_timeout(timeout_ms, waited)) {
            Ok(Some(n)) => deliver(n, out),
            Ok(None) => rgrpc_result::Timeout,
            Err(r) => r,
        }
    })
}

/// Refuses new operations on the queue from now on (they fail with
/// `RGRPC_RESULT_QUEUE_SHUTDOWN`); those already started still complete.
/// Once the last has been taken, `next` and `wait` return
/// `RGRPC_RESULT_QUEUE_SHUTDOWN`. Idempotent. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_shutdown(cq: *mut rgrpc_completion_queue) -> rgrpc_result {
    boundary(|| {
        let q = try_ref_or_null!(rgrpc_completion_queue, cq);
        q.shutdown();
        rgrpc_result::Ok
    })
}

/// Releases the application's reference to the queue and shuts it down.
/// Completions not taken yet, and those of operations still running, are
/// dropped (messages and statuses freed by the library). NULL is a no-op;
/// using the handle afterwards (also its descriptor) is undefined.
#[no_mangle]
pub extern "C" fn rgrpc_completion_queue_free(cq: *mut rgrpc_completion_queue) {
    boundary(|| {
        // SAFETY: cq is NULL or a live queue whose reference the caller
        // gives up here.
        if let Some(q) = unsafe { take_arc::<rgrpc_completion_queue>(cq) } {
            q.shutdown();
        }
    })
}

/// The queue argument of an operation: a ticket for one completion, or
/// the result refusing the operation.
fn ticket(
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
    op: rgrpc_op,
) -> Result<Ticket<Done>, rgrpc_result> {
    // SAFETY: cq is NULL or a live queue handle whose reference the caller
    // holds (header contract).
    let q =
        unsafe { clone_arc::<rgrpc_completion_queue>(cq) }.ok_or(rgrpc_result::NullParameter)?;
    q.ticket(Done::new(UserData(tag), op, rgrpc_result::Shutdown))
        .map_err(|_| rgrpc_result::QueueShutdown)
}

/// The result code of a call operation's failure (no per-thread message:
/// it completes on a library thread).
pub(crate) fn call_error_code(e: &CallError) -> rgrpc_result {
    match e {
        CallError::Ended => rgrpc_result::CallEnded,
        CallError::SendClosed => rgrpc_result::SendClosed,
        CallError::Busy(_) => rgrpc_result::Busy,
        CallError::Runtime(_) => super::runtime::runtime_failure(),
    }
}

/// Spawns `op` on the runtime (batched with the other operations the
/// application starts in a burst: `rt::spawn_batched`); its output becomes
/// the ticket's completion.
fn spawn_op<F>(t: Ticket<Done>, op: F)
where
    F: std::future::Future<Output = Done> + Send + 'static,
{
    // Without a runtime (shut down) the future is dropped, and with it
    // the ticket: it completes with SHUTDOWN.
    let _ = rgrpc_core::rt::spawn_batched(async move { t.complete(op.await) });
}

/// [`spawn_op`] for operations that often have their result already (a
/// message received ahead, a status in): from a thread outside the
/// runtime `op` is first polled once right here, and when it is ready its
/// completion is queued at once, with no task and no hand-off to the
/// thread driving the I/O (a server stream's messages then cost no wake-up
/// each). Otherwise it goes on as a task.
fn start_op<F>(t: Ticket<Done>, op: F)
where
    F: std::future::Future<Output = Done> + Send + 'static,
{
    use std::task::{Context, Poll, Waker};
    let Ok(h) = rgrpc_core::rt::handle() else {
        return drop(t);
    };
    let mut op = Box::pin(op);
    if tokio::runtime::Handle::try_current().is_err() {
        // Inside the runtime's context (timers, spawns), on this thread; a
        // pending operation registers the no-op waker, then the task's.
        let _in = h.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(d) = op.as_mut().poll(&mut cx) {
            return t.complete(d);
        }
    }
    let _ = rgrpc_core::rt::spawn_batched(async move { t.complete(op.await) });
}

/// Which side of a call an operation on the queue holds: one send-side
/// (send, close-send) and one receive-side (receive) operation at a time.
#[derive(Clone, Copy)]
enum Side {
    Send,
    Recv,
}

/// Clears the call's flag for its side when the operation ends (before it
/// completes, so the next one may start from the completion's handler).
struct SideGuard(Arc<CallHandle>, Side);

impl Drop for SideGuard {
    fn drop(&mut self) {
        self.0
            .cq_side(matches!(self.1, Side::Send))
            .store(false, Ordering::Release);
    }
}

/// A call operation about to start: the call, its ticket, the side taken.
type CallOp = (Arc<CallHandle>, Ticket<Done>, Option<SideGuard>);

/// The common start of a call operation: the call, a ticket, the side
/// taken. On failure, the result (and the call's last error).
fn call_op(
    call: *mut rgrpc_call,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
    op: rgrpc_op,
    side: Option<Side>,
) -> Result<CallOp, rgrpc_result> {
    // SAFETY: call is NULL or a live call whose reference the caller
    // holds (header contract).
    let c = unsafe { clone_arc::<rgrpc_call>(call) }.ok_or(rgrpc_result::NullParameter)?;
    if shut_down() {
        return Err(c.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN));
    }
    let t = ticket(cq, tag, op).map_err(|r| c.last_error.fail(r, queue_refusal(r)))?;
    let guard = match side {
        Some(s) => {
            if c.cq_side(matches!(s, Side::Send))
                .swap(true, Ordering::AcqRel)
            {
                // A refused operation never completes: give the ticket back.
                t.cancel();
                return Err(c.last_error.fail(
                    rgrpc_result::Busy,
                    match s {
                        Side::Send => "a send or close-send of this call is still in progress on a completion queue",
                        Side::Recv => "a receive of this call is still in progress on a completion queue",
                    },
                ));
            }
            Some(SideGuard(c.clone(), s))
        }
        None => None,
    };
    Ok((c, t, guard))
}

/// Starts a call like `rgrpc_call_start` and opens its stream at once:
/// an `RGRPC_OP_START` completion with `tag` comes when the stream is
/// open (a connection picked, waiting for one as the call's
/// wait-for-ready says, and the request headers handed to HTTP/2), with
/// `RGRPC_RESULT_CALL_ENDED` if the call ended first. The call's other
/// operations may be started before that completion.
///
/// Writes the call to `*call_out` (the application's reference: see
/// `rgrpc_call`). Returns `RGRPC_RESULT_OK` (the completion will come) or
/// a failure as `rgrpc_call_start` does, or `RGRPC_RESULT_QUEUE_SHUTDOWN`
/// (cq shut down), `RGRPC_RESULT_NULL_PARAMETER` (cq NULL) — then no
/// completion comes; the reason is `rgrpc_channel_last_error(channel)`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_start_cq(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
    call_out: *mut *mut rgrpc_call,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let method = match ch.method_arg(method) {
            Ok(m) => m,
            Err(r) => return r,
        };
        if call_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"call_out is NULL");
        }
        let t = match ticket(cq, tag, rgrpc_op::Start) {
            Ok(t) => t,
            Err(r) => return ch.last_error.fail(r, queue_refusal(r)),
        };
        match ch.channel.start_call(method, options_of(opts)) {
            Ok(call) => {
                let p = call_handle(call);
                // SAFETY: p was just made and its reference is held here.
                let c = unsafe { clone_arc::<rgrpc_call>(p) }.expect("not NULL");
                let tag = UserData(tag);
                spawn_op(t, async move {
                    let r = match c.call().open().await {
                        Ok(()) => rgrpc_result::Ok,
                        Err(e) => call_error_code(&e),
                    };
                    Done::new(tag, rgrpc_op::Start, r)
                });
                write_out!(call_out, p);
                rgrpc_result::Ok
            }
            Err(e) => {
                t.cancel();
                start_error(ch, e)
            }
        }
    })
}

/// Why a queue refused an operation, for last-error messages.
fn queue_refusal(r: rgrpc_result) -> &'static str {
    match r {
        rgrpc_result::NullParameter => "cq is NULL",
        _ => "the completion queue is shut down",
    }
}

/// Sends one message (`data`/`len`, copied now) like `rgrpc_call_send`,
/// completing into `cq` (`RGRPC_OP_SEND`) instead of blocking. Flags as
/// `rgrpc_call_send`. One send-side operation (send or close-send) at a
/// time per call: start the next from the completion of the previous.
///
/// Returns `RGRPC_RESULT_OK` (the completion will come: OK, or the result
/// `rgrpc_call_send` would have given), or without a completion:
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_ARGUMENT` (flags),
/// `RGRPC_RESULT_BUSY` (a send-side operation of this call is still in
/// progress), `RGRPC_RESULT_QUEUE_SHUTDOWN`, `RGRPC_RESULT_SHUTDOWN`; the
/// reason is `rgrpc_call_last_error(call)`. Holds its own reference to the
/// call until it completes. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_send_cq(
    call: *mut rgrpc_call,
    data: *const u8,
    len: usize,
    flags: u32,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        // SAFETY: data is NULL or points to len readable bytes.
        let msg = unsafe { bytes_arg(data, len) };
        start_send(
            call,
            msg.map(|m| Outgoing::Copy(Bytes::copy_from_slice(m))),
            flags,
            cq,
            tag,
        )
    })
}

/// `rgrpc_call_send_cq` with the message in a buffer, which the call takes
/// in every case (one written in place goes out without a copy, as with
/// `rgrpc_call_send_buffer`). Do not use `msg` afterwards.
#[no_mangle]
pub extern "C" fn rgrpc_call_send_buffer_cq(
    call: *mut rgrpc_call,
    msg: *mut rgrpc_buffer,
    flags: u32,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let msg = buffer::take(msg);
        start_send(call, msg.map(|b| b.outgoing()), flags, cq, tag)
    })
}

fn start_send(
    call: *mut rgrpc_call,
    msg: Option<Outgoing>,
    flags: u32,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    if call.is_null() {
        return rgrpc_result::NullParameter;
    }
    // SAFETY: call is a live call whose reference the caller holds.
    let check = unsafe { super::handle::try_ref::<rgrpc_call>(call) }.expect("not NULL");
    let f = match send_flags(flags) {
        Ok(f) => f,
        Err(text) => return check.last_error.fail(rgrpc_result::InvalidArgument, text),
    };
    let Some(msg) = msg else {
        return check.last_error.fail(
            rgrpc_result::NullParameter,
            c"the message is NULL (data NULL but len not 0, or msg NULL)",
        );
    };
    let (c, t, guard) = match call_op(call, cq, tag, rgrpc_op::Send, Some(Side::Send)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tag = UserData(tag);
    spawn_op(t, async move {
        let r = msg.send(c.call(), f).await;
        drop(guard);
        let r = match r {
            Ok(()) => rgrpc_result::Ok,
            Err(e) => call_error_code(&e),
        };
        Done::new(tag, rgrpc_op::Send, r)
    });
    rgrpc_result::Ok
}

/// Half-closes the call like `rgrpc_call_close_send`, completing into `cq`
/// (`RGRPC_OP_CLOSE_SEND`). A send-side operation: not beside a send still
/// in progress (`RGRPC_RESULT_BUSY`). Results and references as
/// `rgrpc_call_send_cq`.
#[no_mangle]
pub extern "C" fn rgrpc_call_close_send_cq(
    call: *mut rgrpc_call,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let (c, t, guard) = match call_op(call, cq, tag, rgrpc_op::CloseSend, Some(Side::Send)) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tag = UserData(tag);
        spawn_op(t, async move {
            let r = c.call().close_send().await;
            drop(guard);
            let r = match r {
                Ok(()) => rgrpc_result::Ok,
                Err(e) => call_error_code(&e),
            };
            Done::new(tag, rgrpc_op::CloseSend, r)
        });
        rgrpc_result::Ok
    })
}

/// Receives the next message like `rgrpc_call_recv`, completing into `cq`
/// (`RGRPC_OP_RECV`): result OK with the message in the completion's
/// `message` (owned by the caller), or `RGRPC_RESULT_END_OF_STREAM` (no
/// more messages; `rgrpc_call_finish_cq` gives the status), or
/// `RGRPC_RESULT_BUSY` (messages go to a message callback). One receive at
/// a time per call: start the next from the completion of the previous.
///
/// Returns `RGRPC_RESULT_OK` (the completion will come), or without one:
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_BUSY` (a receive of this
/// call is still in progress), `RGRPC_RESULT_QUEUE_SHUTDOWN`,
/// `RGRPC_RESULT_SHUTDOWN`; the reason is `rgrpc_call_last_error(call)`.
/// Holds its own reference to the call until it completes. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_call_recv_cq(
    call: *mut rgrpc_call,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let (c, t, guard) = match call_op(call, cq, tag, rgrpc_op::Recv, Some(Side::Recv)) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tag = UserData(tag);
        start_op(t, async move {
            let r = c.call().recv().await;
            drop(guard);
            let mut d = Done::new(tag, rgrpc_op::Recv, rgrpc_result::Ok);
            match r {
                Ok(Some(m)) => d.message = Some(m),
                Ok(None) => d.result = rgrpc_result::EndOfStream,
                Err(e) => d.result = call_error_code(&e),
            }
            d
        });
        rgrpc_result::Ok
    })
}

/// Completes into `cq` (`RGRPC_OP_INITIAL_METADATA`, result OK) once the
/// server's initial metadata has arrived or the call ended without any;
/// `rgrpc_call_initial_metadata` then returns it without waiting. Results
/// and references as `rgrpc_call_recv_cq` (it may run beside a receive).
#[no_mangle]
pub extern "C" fn rgrpc_call_initial_metadata_cq(
    call: *mut rgrpc_call,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let (c, t, _) = match call_op(call, cq, tag, rgrpc_op::InitialMetadata, None) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tag = UserData(tag);
        start_op(t, async move {
            let r = match c.call().initial_metadata().await {
                Ok(_) => rgrpc_result::Ok,
                Err(e) => call_error_code(&e),
            };
            Done::new(tag, rgrpc_op::InitialMetadata, r)
        });
        rgrpc_result::Ok
    })
}

/// Waits for the call's final status like `rgrpc_call_finish` (unread
/// messages are discarded), completing into `cq` (`RGRPC_OP_FINISH`) with
/// the status in the completion's `status` (owned by the caller) and
/// result OK for an OK status, `RGRPC_RESULT_RPC_FAILED` otherwise.
/// Results and references as `rgrpc_call_recv_cq` (it may run beside a
/// receive, which it then waits for).
#[no_mangle]
pub extern "C" fn rgrpc_call_finish_cq(
    call: *mut rgrpc_call,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let (c, t, _) = match call_op(call, cq, tag, rgrpc_op::Finish, None) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let tag = UserData(tag);
        start_op(t, async move {
            let mut d = Done::new(tag, rgrpc_op::Finish, rgrpc_result::Ok);
            match c.call().finish().await {
                Ok(st) => {
                    if !st.is_ok() {
                        d.result = rgrpc_result::RpcFailed;
                    }
                    d.status = Some(st);
                }
                Err(e) => d.result = call_error_code(&e),
            }
            d
        });
        rgrpc_result::Ok
    })
}

/// A unary call (`request`/`request_len`, copied now) completing into `cq`
/// (`RGRPC_OP_UNARY`) with the status in `status` and, when it is OK, the
/// response in `message` (both owned by the caller); result OK or
/// `RGRPC_RESULT_RPC_FAILED`.
///
/// When `call_out` is not NULL it receives the call (the application's
/// reference: cancel it with `rgrpc_call_cancel`, free it with
/// `rgrpc_call_free`, which cancels it if active; the completion comes
/// either way). Returns `RGRPC_RESULT_OK` (the completion will come), or
/// without one the failures of `rgrpc_call_start`, or
/// `RGRPC_RESULT_QUEUE_SHUTDOWN`; the reason is
/// `rgrpc_channel_last_error(channel)`. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn rgrpc_call_unary_cq(
    channel: *mut rgrpc_channel,
    method: *const c_char,
    opts: *const rgrpc_call_options,
    request: *const u8,
    request_len: usize,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
    call_out: *mut *mut rgrpc_call,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let method = match ch.method_arg(method) {
            Ok(m) => m,
            Err(r) => return r,
        };
        // SAFETY: request is NULL or points to request_len readable bytes.
        let Some(req) = (unsafe { bytes_arg(request, request_len) }) else {
            return ch.last_error.fail(
                rgrpc_result::NullParameter,
                c"request is NULL but request_len is not 0",
            );
        };
        let t = match ticket(cq, tag, rgrpc_op::Unary) {
            Ok(t) => t,
            Err(r) => return ch.last_error.fail(r, queue_refusal(r)),
        };
        let mut o = options_of(opts);
        o.unary_response = true;
        let call = match ch.channel.start_call(method, o) {
            Ok(c) => c,
            Err(e) => {
                t.cancel();
                return start_error(ch, e);
            }
        };
        let p = call_handle(call);
        // SAFETY: p was just made and its reference is held here.
        let c = unsafe { clone_arc::<rgrpc_call>(p) }.expect("not NULL");
        let req = Bytes::copy_from_slice(req);
        let tag = UserData(tag);
        spawn_op(t, async move {
            let call = c.call();
            let _ = call.send(&req, rgrpc_core::SendFlags::LAST).await;
            let msg = call.recv().await.ok().flatten();
            let st = match call.finish().await {
                Ok(s) => s,
                Err(e) => Arc::new(Status::new(rgrpc_core::Code::Internal, e.to_string())),
            };
            let mut d = Done::new(tag, rgrpc_op::Unary, rgrpc_result::Ok);
            if st.is_ok() {
                d.message = msg;
            } else {
                d.result = rgrpc_result::RpcFailed;
            }
            d.status = Some(st);
            d
        });
        if call_out.is_null() {
            // The task holds its own reference: the call runs to its end.
            // SAFETY: p's reference is the application's, given up here.
            drop(unsafe { take_arc::<rgrpc_call>(p) });
        } else {
            write_out!(call_out, p);
        }
        rgrpc_result::Ok
    })
}

/// Completes into `cq` (`RGRPC_OP_STATE_CHANGE`) when the channel's state
/// differs from `last_observed` (result OK, `state` the new state), or
/// with `RGRPC_RESULT_TIMEOUT` after `timeout_ms` (< 0: no limit), `state`
/// then the current one. Does not start connecting (read the state with
/// `rgrpc_channel_get_state(channel, true)` for that).
///
/// Returns `RGRPC_RESULT_OK` (the completion will come), or without one
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_INVALID_ARGUMENT`
/// (`last_observed` is not a state), `RGRPC_RESULT_QUEUE_SHUTDOWN`,
/// `RGRPC_RESULT_SHUTDOWN`; the reason is
/// `rgrpc_channel_last_error(channel)`. Thread-safe; the operation holds
/// its own reference to the channel.
#[no_mangle]
pub extern "C" fn rgrpc_channel_watch_state_cq(
    channel: *mut rgrpc_channel,
    last_observed: u32,
    timeout_ms: i64,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let Some(from) = ConnectivityState::from_u32(last_observed) else {
            return ch.last_error.fail(
                rgrpc_result::InvalidArgument,
                format!("{last_observed} is not an rgrpc_connectivity_state value"),
            );
        };
        let t = match ticket(cq, tag, rgrpc_op::StateChange) {
            Ok(t) => t,
            Err(r) => return ch.last_error.fail(r, queue_refusal(r)),
        };
        let channel = ch.channel.clone();
        let tag = UserData(tag);
        spawn_op(t, async move {
            let mut d = Done::new(tag, rgrpc_op::StateChange, rgrpc_result::Ok);
            match with_timeout(timeout_ms, channel.wait_for_state_change(from)).await {
                Some(s) => d.state = s,
                None => {
                    d.result = rgrpc_result::Timeout;
                    d.state = channel.state(false);
                }
            }
            d
        });
        rgrpc_result::Ok
    })
}

/// Starts a ready future (as `rgrpc_channel_ready_future`) whose outcome
/// completes into `cq` (`RGRPC_OP_READY`; `result` OK,
/// `RGRPC_RESULT_CHANNEL_CLOSED` or, when cancelled or freed first,
/// `RGRPC_RESULT_CANCELLED`). The channel starts connecting if IDLE.
///
/// Writes the future to `*future_out` (owned: `rgrpc_ready_future_free`,
/// which cancels it if pending; the completion still comes). Returns
/// `RGRPC_RESULT_OK` (the completion will come), or without one
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_QUEUE_SHUTDOWN`,
/// `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN`; the reason is
/// `rgrpc_channel_last_error(channel)`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_ready_future_cq(
    channel: *mut rgrpc_channel,
    cq: *mut rgrpc_completion_queue,
    tag: *mut c_void,
    future_out: *mut *mut rgrpc_ready_future,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if future_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"future_out is NULL");
        }
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let t = match ticket(cq, tag, rgrpc_op::Ready) {
            Ok(t) => t,
            Err(r) => return ch.last_error.fail(r, queue_refusal(r)),
        };
        let tag = UserData(tag);
        let cb: ReadyCallback =
            Box::new(move |o| t.complete(Done::new(tag, rgrpc_op::Ready, ready_result(o))));
        // The callback only enqueues: it runs on the completing thread.
        match ch.channel.ready_future(Some(cb), Notifier::immediate()) {
            Ok(f) => {
                write_out!(future_out, to_boxed::<rgrpc_ready_future>(f));
                rgrpc_result::Ok
            }
            Err(e) => ch
                .last_error
                .fail(super::runtime::runtime_failure(), e.to_string()),
        }
    })
}
