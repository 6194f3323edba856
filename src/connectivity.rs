//! Connectivity: the channel's state, change subscriptions, waiting for
//! READY (blocking and as a future), and resetting the reconnect backoff.

use super::boundary::boundary;
use super::callback::UserData;
use super::channel::rgrpc_channel;
use super::error::rgrpc_result;
use super::handle::{
    block, block_failure, free_boxed, to_boxed, try_ref, try_ref_or_null, with_timeout, write_out,
    Castable,
};
use super::names::lend_nul_terminated;
use super::runtime::{runtime_failure, shut_down, SHUT_DOWN};
use rgrpc_core::channel::ConnectivityState;
use rgrpc_core::channel::{ReadyCallback, ReadyFuture, ReadyOutcome};
use rgrpc_core::completion::Notifier;
use rgrpc_core::Channel;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

/// Called with each connectivity state: first the current one, then every
/// change, in order, one call at a time, on a library thread. Must not
/// unwind; should not block for long. It may call any rgrpc function,
/// including `rgrpc_channel_unsubscribe` for its own subscription.
pub type rgrpc_connectivity_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, state: rgrpc_connectivity_state)>;

/// A channel's connectivity state (`doc/connectivity-semantics-and-api.md`
/// in the grpc/grpc repository), numbered as C-core's
/// `grpc_connectivity_state`. Names: `rgrpc_connectivity_state_name`.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_connectivity_state {
    /// Not trying to connect; the next call (or a connect request) starts.
    Idle = 0,
    /// Establishing a connection (TCP, TLS, HTTP/2 preface).
    Connecting = 1,
    /// Connected; calls go out at once.
    Ready = 2,
    /// A connection attempt failed or a connection broke; the next attempt
    /// comes after a backoff. Fail-fast calls end with UNAVAILABLE.
    TransientFailure = 3,
    /// Closed by the application; final.
    Shutdown = 4,
}

impl From<ConnectivityState> for rgrpc_connectivity_state {
    /// Exhaustive: a state added to the core fails to compile here.
    fn from(s: ConnectivityState) -> Self {
        use rgrpc_connectivity_state as C;
        match s {
            ConnectivityState::Idle => C::Idle,
            ConnectivityState::Connecting => C::Connecting,
            ConnectivityState::Ready => C::Ready,
            ConnectivityState::TransientFailure => C::TransientFailure,
            ConnectivityState::Shutdown => C::Shutdown,
        }
    }
}

/// The connectivity state of a channel; SHUTDOWN for NULL. With
/// `try_to_connect`, an IDLE channel starts connecting (like grpcio's
/// `subscribe(..., try_to_connect=True)`). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_get_state(
    channel: *mut rgrpc_channel,
    try_to_connect: bool,
) -> rgrpc_connectivity_state {
    boundary(|| {
        // SAFETY: channel is NULL or a live channel.
        match unsafe { try_ref::<rgrpc_channel>(channel) } {
            Some(ch) => ch.channel.state(try_to_connect).into(),
            None => rgrpc_connectivity_state::Shutdown,
        }
    })
}

/// The name of a connectivity state, e.g. `"TRANSIENT_FAILURE"`;
/// `"UNKNOWN"` for other numbers. Static; never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_connectivity_state_name(state: u32) -> *const c_char {
    boundary(|| match ConnectivityState::from_u32(state) {
        Some(s) => lend_nul_terminated(s.name_with_nul()),
        None => c"UNKNOWN".as_ptr(),
    })
}

/// Subscribes `cb` to the channel's state: it is called with the current
/// state, then with every change (see `rgrpc_connectivity_cb`). With
/// `try_to_connect`, an IDLE channel starts connecting.
///
/// Writes the subscription's id to `*subscription_out` (for
/// `rgrpc_channel_unsubscribe`). Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER` (the reason in
/// `rgrpc_channel_last_error` when channel is not NULL). Thread-safe.
/// `user_data` must stay valid until unsubscribed (or the channel is
/// gone).
#[no_mangle]
pub extern "C" fn rgrpc_channel_subscribe(
    channel: *mut rgrpc_channel,
    cb: rgrpc_connectivity_cb,
    user_data: *mut c_void,
    try_to_connect: bool,
    subscription_out: *mut u64,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let Some(f) = cb else {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"cb is NULL");
        };
        if subscription_out.is_null() {
            return ch
                .last_error
                .fail(rgrpc_result::NullParameter, c"subscription_out is NULL");
        }
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let ud = UserData(user_data);
        let id = ch.channel.subscribe(
            Arc::new(move |st| {
                let ud = ud;
                // SAFETY: the caller's callback with its own user_data.
                unsafe { f(ud.0, st.into()) }
            }),
            try_to_connect,
        );
        write_out!(subscription_out, id);
        rgrpc_result::Ok
    })
}

/// Ends a subscription. When this returns, its callback is not running
/// and will not run again — except when called from that very callback,
/// which then returns normally and is not called again.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NOT_FOUND` (unknown or already
/// ended; the reason in `rgrpc_channel_last_error`) or
/// `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_unsubscribe(
    channel: *mut rgrpc_channel,
    subscription: u64,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if ch.channel.unsubscribe(subscription) {
            rgrpc_result::Ok
        } else {
            ch.last_error.fail(
                rgrpc_result::NotFound,
                format!(
                    "no subscription {subscription} on this channel (unknown or already ended)"
                ),
            )
        }
    })
}

/// Blocks until the channel is READY, connecting if needed (like grpcio's
/// `channel_ready_future(ch).result(timeout)`). `timeout_ms` < 0 waits
/// without limit.
///
/// Returns `RGRPC_RESULT_OK` (READY), `RGRPC_RESULT_TIMEOUT`,
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` or
/// `RGRPC_RESULT_NULL_PARAMETER`; the reason of a failure is
/// `rgrpc_channel_last_error(channel)`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_wait_for_ready(
    channel: *mut rgrpc_channel,
    timeout_ms: i64,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        match block(with_timeout(timeout_ms, ch.channel.wait_for_ready())) {
            Ok(Some(ConnectivityState::Ready)) => rgrpc_result::Ok,
            Ok(Some(_)) => ch
                .last_error
                .fail(rgrpc_result::ChannelClosed, c"the channel was closed"),
            Ok(None) => ch.last_error.fail(
                rgrpc_result::Timeout,
                format!(
                    "the channel did not become READY within {timeout_ms} ms (state {})",
                    ch.channel.state(false).name()
                ),
            ),
            Err(r) => ch.last_error.fail(r, block_failure()),
        }
    })
}

/// Blocks until the state differs from `last_observed` (a
/// `rgrpc_connectivity_state` value), like C++'s `WaitForStateChange`;
/// writes the new state to `*state_out` (may be NULL). `timeout_ms` < 0
/// waits without limit.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_TIMEOUT`,
/// `RGRPC_RESULT_INVALID_ARGUMENT` (not a state), `RGRPC_RESULT_RUNTIME`, `RGRPC_RESULT_SHUTDOWN` or
/// `RGRPC_RESULT_NULL_PARAMETER`; the reason of a failure is
/// `rgrpc_channel_last_error(channel)`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_wait_for_state_change(
    channel: *mut rgrpc_channel,
    last_observed: u32,
    timeout_ms: i64,
    state_out: *mut rgrpc_connectivity_state,
) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        let Some(from) = ConnectivityState::from_u32(last_observed) else {
            return ch.last_error.fail(
                rgrpc_result::InvalidArgument,
                format!("{last_observed} is not an rgrpc_connectivity_state value"),
            );
        };
        match block(with_timeout(
            timeout_ms,
            ch.channel.wait_for_state_change(from),
        )) {
            Ok(Some(s)) => {
                if !state_out.is_null() {
                    write_out!(state_out, rgrpc_connectivity_state::from(s));
                }
                rgrpc_result::Ok
            }
            Ok(None) => ch.last_error.fail(
                rgrpc_result::Timeout,
                format!("the state stayed {} for {timeout_ms} ms", from.name()),
            ),
            Err(r) => ch.last_error.fail(r, block_failure()),
        }
    })
}

/// Ends a reconnect backoff early: a channel in TRANSIENT_FAILURE tries to
/// connect now (an IDLE one starts connecting). Returns `RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_NULL_PARAMETER` or `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_reset_connect_backoff(channel: *mut rgrpc_channel) -> rgrpc_result {
    boundary(|| {
        let ch = try_ref_or_null!(rgrpc_channel, channel);
        if shut_down() {
            return ch.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        ch.channel.reset_connect_backoff();
        rgrpc_result::Ok
    })
}

/// Called once when a ready future completes: `result` is
/// `RGRPC_RESULT_OK` (READY), `RGRPC_RESULT_CHANNEL_CLOSED` or
/// `RGRPC_RESULT_CANCELLED`. Runs on a library thread; must not unwind.
pub type rgrpc_ready_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, result: rgrpc_result)>;

/// A future that completes when its channel becomes READY, like grpcio's
/// `channel_ready_future`: wait on it with a timeout, or get a callback;
/// cancel it. Made by `rgrpc_channel_ready_future`. Box-owned; `wait` and
/// `cancel` are thread-safe.
///
/// Methods: `rgrpc_ready_future_wait`, `rgrpc_ready_future_cancel`,
/// `rgrpc_ready_future_free`.
pub struct rgrpc_ready_future {
    _private: [u8; 0],
}

impl Castable for rgrpc_ready_future {
    type Rust = ReadyFuture;
}

pub(crate) fn ready_result(o: ReadyOutcome) -> rgrpc_result {
    match o {
        ReadyOutcome::Ready => rgrpc_result::Ok,
        ReadyOutcome::ChannelClosed => rgrpc_result::ChannelClosed,
        ReadyOutcome::Cancelled => rgrpc_result::Cancelled,
    }
}

/// Starts a ready future on `channel` (the channel starts connecting if
/// IDLE). `cb` (may be NULL) runs exactly once when it completes, is
/// cancelled or freed (see `rgrpc_ready_cb`).
///
/// Writes the future to `*future_out` (owned: `rgrpc_ready_future_free`).
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER`,
/// `RGRPC_RESULT_RUNTIME` or `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`); the reason of a failure is
/// `rgrpc_channel_last_error(channel)`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_channel_ready_future(
    channel: *mut rgrpc_channel,
    cb: rgrpc_ready_cb,
    user_data: *mut c_void,
    future_out: *mut *mut rgrpc_ready_future,
) -> rgrpc_result {
    boundary(|| {
        let handle = try_ref_or_null!(rgrpc_channel, channel);
        if future_out.is_null() {
            return handle
                .last_error
                .fail(rgrpc_result::NullParameter, c"future_out is NULL");
        }
        if shut_down() {
            return handle.last_error.fail(rgrpc_result::Shutdown, SHUT_DOWN);
        }
        let ch: &Channel = &handle.channel;
        let ud = UserData(user_data);
        let callback: Option<ReadyCallback> = cb.map(|f| {
            Box::new(move |o| {
                let ud = ud;
                // SAFETY: the caller's callback with its own user_data.
                unsafe { f(ud.0, ready_result(o)) }
            }) as ReadyCallback
        });
        let f = match ch.ready_future(callback, Notifier::Pool) {
            Ok(f) => f,
            Err(e) => return handle.last_error.fail(runtime_failure(), e.to_string()),
        };
        write_out!(future_out, to_boxed::<rgrpc_ready_future>(f));
        rgrpc_result::Ok
    })
}

/// Waits for the future: returns its outcome (`RGRPC_RESULT_OK`,
/// `RGRPC_RESULT_CHANNEL_CLOSED`, `RGRPC_RESULT_CANCELLED`), or
/// `RGRPC_RESULT_TIMEOUT` when `timeout_ms` passes first (< 0: no limit),
/// `RGRPC_RESULT_NULL_PARAMETER`, `RGRPC_RESULT_RUNTIME` (blocking is
/// impossible on this thread) or `RGRPC_RESULT_SHUTDOWN` (after
/// `rgrpc_shutdown`).
#[no_mangle]
pub extern "C" fn rgrpc_ready_future_wait(
    future: *mut rgrpc_ready_future,
    timeout_ms: i64,
) -> rgrpc_result {
    boundary(|| {
        let f = try_ref_or_null!(rgrpc_ready_future, future);
        match block(with_timeout(timeout_ms, f.wait())) {
            Ok(Some(o)) => ready_result(o),
            Ok(None) => rgrpc_result::Timeout,
            Err(r) => r,
        }
    })
}

/// Cancels the future if it has not completed: its callback runs with
/// `RGRPC_RESULT_CANCELLED`. Idempotent. Returns `RGRPC_RESULT_OK` or
/// `RGRPC_RESULT_NULL_PARAMETER`. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_ready_future_cancel(future: *mut rgrpc_ready_future) -> rgrpc_result {
    boundary(|| {
        let f = try_ref_or_null!(rgrpc_ready_future, future);
        f.cancel();
        rgrpc_result::Ok
    })
}

/// Frees the future, cancelling it if still pending. NULL is a no-op.
#[no_mangle]
pub extern "C" fn rgrpc_ready_future_free(future: *mut rgrpc_ready_future) {
    boundary(|| {
        // SAFETY: future is NULL or a live future owned by the caller.
        unsafe { free_boxed::<rgrpc_ready_future>(future) }
    })
}
