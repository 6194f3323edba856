//! `rgrpc_result` (did the API call work?) and its one table of names and
//! messages; `rgrpc_error`, the message object for failures where no
//! object exists yet; and `LastError`, the per-thread message slot of the
//! shared objects (calls, channels).

use super::boundary::boundary;
use super::handle::{free_boxed, to_boxed, try_ref, Castable};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::ThreadId;

/// Whether an API function itself worked. `RGRPC_RESULT_OK` is 0 so
/// `if (rc)` tests for failure; every other value is 7000 or above so it
/// cannot be mistaken for a gRPC status code (`rgrpc_status_code`, 0..16),
/// which is the outcome of an RPC and a separate code space.
///
/// Functions taking a result value accept it as `uint32_t`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum rgrpc_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullParameter = 7001,
    /// An argument is out of range or malformed (see the function's doc).
    InvalidArgument = 7002,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 7003,
    /// The channel target could not be parsed.
    InvalidTarget = 7004,
    /// The method is not a valid gRPC path (`/package.Service/Method`, printable ASCII, no spaces).
    InvalidMethod = 7005,
    /// A metadata key or value was refused.
    InvalidMetadata = 7006,
    /// A channel option key is not known.
    UnknownOption = 7007,
    /// A channel option was given a value of the wrong type or range.
    InvalidOptionValue = 7008,
    /// A known gRPC feature that this version does not support.
    Unsupported = 7009,
    /// The channel is closed.
    ChannelClosed = 7010,
    /// The call has ended (or the server closed the stream); get its status with `rgrpc_call_finish`.
    CallEnded = 7011,
    /// No more messages: the response stream ended (normally or not); get the status with `rgrpc_call_finish`.
    EndOfStream = 7012,
    /// The sending side of the call is already closed.
    SendClosed = 7013,
    /// Another thread is in the same kind of operation on this call, or messages go to a message callback.
    Busy = 7014,
    /// A wait timed out.
    Timeout = 7015,
    /// The RPC ended with a non-OK status; the status object says which.
    RpcFailed = 7016,
    /// The requested item does not exist.
    NotFound = 7017,
    /// The runtime already runs; its settings can no longer change.
    AlreadyStarted = 7018,
    /// The runtime could not start, or a blocking call was made where blocking is impossible.
    Runtime = 7019,
    /// A bug inside rgrpc was caught at the API boundary (a Rust panic).
    Panic = 7020,
    /// The operation was cancelled by the application.
    Cancelled = 7021,
    /// The library was shut down (`rgrpc_shutdown`): nothing that needs its runtime works any more.
    Shutdown = 7022,
    /// `rgrpc_completion_queue_next`: no completion is waiting now.
    QueueEmpty = 7023,
    /// The completion queue was shut down: it takes no new operations, and
    /// (from `rgrpc_completion_queue_next` and `_wait`) every completion
    /// has been delivered.
    QueueShutdown = 7024,
}

use rgrpc_result as R;

/// The one table of result codes: each value with its C name (as the
/// header spells it) and a one-sentence English message.
/// `rgrpc_result_name`, `rgrpc_result_str` and the conversion from a number
/// read it; the test below checks that it has every variant exactly once.
const RESULTS: [(rgrpc_result, &CStr, &CStr); 25] = [
    (R::Ok, c"RGRPC_RESULT_OK", c"success"),
    (R::NullParameter, c"RGRPC_RESULT_NULL_PARAMETER", c"a required pointer argument was NULL"),
    (R::InvalidArgument, c"RGRPC_RESULT_INVALID_ARGUMENT", c"an argument is out of range or malformed"),
    (R::InvalidUtf8, c"RGRPC_RESULT_INVALID_UTF8", c"a string argument is not valid UTF-8"),
    (R::InvalidTarget, c"RGRPC_RESULT_INVALID_TARGET", c"the channel target could not be parsed"),
    (R::InvalidMethod, c"RGRPC_RESULT_INVALID_METHOD", c"the method is not a valid gRPC path: it must start with '/' and contain only printable ASCII without spaces, e.g. \"/package.Service/Method\""),
    (R::InvalidMetadata, c"RGRPC_RESULT_INVALID_METADATA", c"a metadata key or value was refused"),
    (R::UnknownOption, c"RGRPC_RESULT_UNKNOWN_OPTION", c"unknown channel option key"),
    (R::InvalidOptionValue, c"RGRPC_RESULT_INVALID_OPTION_VALUE", c"a channel option was given a value of the wrong type or out of range"),
    (R::Unsupported, c"RGRPC_RESULT_UNSUPPORTED", c"a gRPC feature that this version of rgrpc does not support yet"),
    (R::ChannelClosed, c"RGRPC_RESULT_CHANNEL_CLOSED", c"the channel is closed"),
    (R::CallEnded, c"RGRPC_RESULT_CALL_ENDED", c"the call has ended; rgrpc_call_finish gives its status"),
    (R::EndOfStream, c"RGRPC_RESULT_END_OF_STREAM", c"no more messages; rgrpc_call_finish gives the call's status"),
    (R::SendClosed, c"RGRPC_RESULT_SEND_CLOSED", c"the sending side of the call is already closed"),
    (R::Busy, c"RGRPC_RESULT_BUSY", c"another thread is in the same operation on this call, or its messages go to a message callback"),
    (R::Timeout, c"RGRPC_RESULT_TIMEOUT", c"timed out"),
    (R::RpcFailed, c"RGRPC_RESULT_RPC_FAILED", c"the RPC ended with a non-OK status"),
    (R::NotFound, c"RGRPC_RESULT_NOT_FOUND", c"not found"),
    (R::AlreadyStarted, c"RGRPC_RESULT_ALREADY_STARTED", c"the runtime is already running"),
    (R::Runtime, c"RGRPC_RESULT_RUNTIME", c"the runtime could not start, or blocking is impossible on this thread"),
    (R::Panic, c"RGRPC_RESULT_PANIC", c"internal error in rgrpc (caught panic)"),
    (R::Cancelled, c"RGRPC_RESULT_CANCELLED", c"cancelled by the application"),
    (R::Shutdown, c"RGRPC_RESULT_SHUTDOWN", c"the library was shut down (rgrpc_shutdown); it cannot be used again"),
    (R::QueueEmpty, c"RGRPC_RESULT_QUEUE_EMPTY", c"no completion is waiting in the completion queue"),
    (R::QueueShutdown, c"RGRPC_RESULT_QUEUE_SHUTDOWN", c"the completion queue is shut down (and drained, when returned by next or wait)"),
];

impl rgrpc_result {
    /// The table row of the result code numbered `v`.
    fn row(v: u32) -> Option<&'static (rgrpc_result, &'static CStr, &'static CStr)> {
        RESULTS.iter().find(|(r, _, _)| *r as u32 == v)
    }
}

/// The name of a result code, e.g. `"RGRPC_RESULT_TIMEOUT"`; `"UNKNOWN"`
/// for a number that is not a result code.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_result_name(result: u32) -> *const c_char {
    boundary(|| match rgrpc_result::row(result) {
        Some((_, name, _)) => name.as_ptr(),
        None => c"UNKNOWN".as_ptr(),
    })
}

/// A one-sentence English description of a result code, for messages.
///
/// Returns a static string: never NULL, never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_result_str(result: u32) -> *const c_char {
    boundary(|| match rgrpc_result::row(result) {
        Some((_, _, message)) => message.as_ptr(),
        None => c"not an rgrpc_result value".as_ptr(),
    })
}

/// Details of a failure reported by a function that creates an object
/// (there is no object yet to hold the message).
///
/// Owned by the caller: free with `rgrpc_error_free`. Immutable; may be read
/// from any thread.
///
/// Methods: `rgrpc_error_result`, `rgrpc_error_message`, `rgrpc_error_free`.
pub struct rgrpc_error {
    _private: [u8; 0],
}

pub(crate) struct ErrorObj {
    result: rgrpc_result,
    message: CString,
}

impl Castable for rgrpc_error {
    type Rust = ErrorObj;
}

/// Makes a C string from a message, dropping any NUL bytes.
pub(crate) fn cstring(msg: &str) -> CString {
    CString::new(msg.replace('\0', "")).unwrap_or_default()
}

/// Writes an error object to `out` when `out` is not NULL.
pub(crate) fn set_error(
    out: *mut *mut rgrpc_error,
    result: rgrpc_result,
    msg: &str,
) -> rgrpc_result {
    if !out.is_null() {
        let e = to_boxed::<rgrpc_error>(ErrorObj {
            result,
            message: cstring(msg),
        });
        // SAFETY: out is non-NULL and, per the header, points to writable storage.
        unsafe { *out = e };
    }
    result
}

/// The result code of an error. `RGRPC_RESULT_NULL_PARAMETER` for NULL.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_error_result(error: *const rgrpc_error) -> rgrpc_result {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error.
        match unsafe { try_ref::<rgrpc_error>(error) } {
            Some(e) => e.result,
            None => rgrpc_result::NullParameter,
        }
    })
}

/// The message of an error (UTF-8, NUL-terminated).
///
/// Borrowed: valid until `rgrpc_error_free(error)`. Returns `""` for NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_error_message(error: *const rgrpc_error) -> *const c_char {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error.
        match unsafe { try_ref::<rgrpc_error>(error) } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an error. NULL is a no-op; freeing twice is undefined.
#[no_mangle]
pub extern "C" fn rgrpc_error_free(error: *mut rgrpc_error) {
    boundary(|| {
        // SAFETY: error is NULL or a live rgrpc_error owned by the caller.
        unsafe { free_boxed::<rgrpc_error>(error) }
    })
}

/// The text of a failure: static (no allocation) or made for it.
pub(crate) enum Text {
    Static(&'static CStr),
    Owned(CString),
}

impl Text {
    fn as_ptr(&self) -> *const c_char {
        match self {
            Text::Static(s) => s.as_ptr(),
            Text::Owned(s) => s.as_ptr(),
        }
    }
}

impl From<&'static CStr> for Text {
    fn from(s: &'static CStr) -> Text {
        Text::Static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::Owned(cstring(&s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::Owned(cstring(s))
    }
}

/// One thread's message on one object.
type Slots = Mutex<Vec<(ThreadId, Text)>>;

/// The message of the last failing function on a shared object (a call, a
/// channel), kept per thread: each thread reads the message of its own
/// last failure on the object, so a failure in one thread never replaces
/// (and frees) a string that another thread is reading. Nothing is
/// allocated until the first failure. A thread's entry goes when the
/// thread exits (or with the object).
#[derive(Default)]
pub(crate) struct LastError(OnceLock<Arc<Slots>>);

/// The objects the current thread has an entry in, to remove its entries
/// when it exits (the `Drop` of this thread-local).
struct ThreadEntries {
    id: ThreadId,
    objects: RefCell<Vec<Weak<Slots>>>,
}

impl Drop for ThreadEntries {
    fn drop(&mut self) {
        for w in self.objects.get_mut().drain(..) {
            if let Some(slots) = w.upgrade() {
                lock(&slots).retain(|(t, _)| *t != self.id);
            }
        }
    }
}

thread_local! {
    static ENTRIES: ThreadEntries = ThreadEntries {
        id: std::thread::current().id(),
        objects: RefCell::new(Vec::new()),
    };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn this_thread() -> ThreadId {
    ENTRIES
        .try_with(|e| e.id)
        .unwrap_or_else(|_| std::thread::current().id())
}

impl LastError {
    /// Records `text` as the current thread's last failure and returns
    /// `result`, so that `return obj.last_error.fail(code, text)` reports
    /// both.
    pub(crate) fn fail(&self, result: rgrpc_result, text: impl Into<Text>) -> rgrpc_result {
        self.set(text.into());
        result
    }

    fn set(&self, text: Text) {
        let slots = self.0.get_or_init(Arc::default);
        let id = this_thread();
        {
            let mut v = lock(slots);
            if let Some(entry) = v.iter_mut().find(|(t, _)| *t == id) {
                entry.1 = text;
                return;
            }
            v.push((id, text));
        }
        // First entry of this thread: have it removed when the thread exits
        // (forgetting objects that are gone).
        let _ = ENTRIES.try_with(|e| {
            let mut objects = e.objects.borrow_mut();
            objects.retain(|w| w.strong_count() > 0);
            objects.push(Arc::downgrade(slots));
        });
    }

    /// The current thread's last message (`""` if none). Valid until this
    /// thread's next failure on the object, the thread's exit, or the
    /// object's end: the string is only ever replaced or freed by them.
    pub(crate) fn get(&self) -> *const c_char {
        let Some(slots) = self.0.get() else {
            return c"".as_ptr();
        };
        let id = this_thread();
        lock(slots)
            .iter()
            .find(|(t, _)| *t == id)
            .map_or(c"".as_ptr(), |(_, text)| text.as_ptr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of a variant: exhaustive, so a new variant does not
    /// compile until it is added here, and then the test below requires a
    /// row for it.
    fn ordinal(r: rgrpc_result) -> usize {
        match r {
            R::Ok => 0,
            R::NullParameter => 1,
            R::InvalidArgument => 2,
            R::InvalidUtf8 => 3,
            R::InvalidTarget => 4,
            R::InvalidMethod => 5,
            R::InvalidMetadata => 6,
            R::UnknownOption => 7,
            R::InvalidOptionValue => 8,
            R::Unsupported => 9,
            R::ChannelClosed => 10,
            R::CallEnded => 11,
            R::EndOfStream => 12,
            R::SendClosed => 13,
            R::Busy => 14,
            R::Timeout => 15,
            R::RpcFailed => 16,
            R::NotFound => 17,
            R::AlreadyStarted => 18,
            R::Runtime => 19,
            R::Panic => 20,
            R::Cancelled => 21,
            R::Shutdown => 22,
            R::QueueEmpty => 23,
            R::QueueShutdown => 24,
        }
    }
    const VARIANTS: usize = 25;

    #[test]
    fn table_has_every_variant_once() {
        let mut seen = [0; VARIANTS];
        for (r, _, _) in RESULTS {
            seen[ordinal(r)] += 1;
        }
        assert_eq!(seen, [1; VARIANTS], "rows per variant, in ordinal order");
    }

    /// The names are the header's: `RGRPC_RESULT_` and the variant in
    /// SCREAMING_SNAKE_CASE (cbindgen's renaming); messages are not empty.
    #[test]
    fn names_are_the_header_spelling() {
        for (r, name, message) in RESULTS {
            let mut want = String::from("RGRPC_RESULT");
            for c in format!("{r:?}").chars() {
                if c.is_ascii_uppercase() {
                    want.push('_');
                }
                want.push(c.to_ascii_uppercase());
            }
            assert_eq!(name.to_str().unwrap(), want);
            assert!(!message.is_empty(), "{want} has no message");
        }
    }

    #[test]
    fn conversions_read_the_table() {
        for (r, name, message) in RESULTS {
            assert_eq!(rgrpc_result::row(r as u32).map(|row| row.0), Some(r));
            // SAFETY: the functions return static NUL-terminated strings.
            unsafe {
                assert_eq!(CStr::from_ptr(rgrpc_result_name(r as u32)), name);
                assert_eq!(CStr::from_ptr(rgrpc_result_str(r as u32)), message);
            }
        }
        assert!(rgrpc_result::row(1).is_none());
        // SAFETY: as above.
        unsafe { assert_eq!(CStr::from_ptr(rgrpc_result_name(6999)), c"UNKNOWN") };
    }

    #[test]
    fn last_error_is_per_thread() {
        // SAFETY: get returns a NUL-terminated string valid until the next
        // failure of this thread on `e`.
        let read = |e: &LastError| unsafe { CStr::from_ptr(e.get()) }.to_owned();
        let e = Arc::new(LastError::default());
        assert_eq!(read(&e), c"");
        assert_eq!(e.fail(R::Busy, "first"), R::Busy);
        let p = e.get();
        let e2 = e.clone();
        // A plain thread: its join waits for the thread's exit, after its
        // thread-locals are gone.
        std::thread::spawn(move || {
            assert_eq!(read(&e2), c"");
            e2.fail(R::Timeout, c"other thread");
            assert_eq!(read(&e2), c"other thread");
        })
        .join()
        .unwrap();
        // The other thread's failure left this thread's string in place,
        // and its entry went when it exited.
        assert_eq!(e.get(), p);
        assert_eq!(read(&e), c"first");
        assert_eq!(lock(e.0.get().unwrap()).len(), 1);
        e.fail(R::Busy, String::from("second"));
        assert_eq!(read(&e), c"second");
    }
}
