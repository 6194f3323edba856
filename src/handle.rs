//! Conversions between opaque C handles and the Rust objects behind them.
//!
//! Each C type is an empty marker struct (`rgrpc_call`, ...) that cbindgen
//! emits as an incomplete type; [`Castable`] names the Rust type a pointer
//! to it really points to, and whether it is owned through a `Box` or an
//! `Arc`.

use std::ffi::{c_char, CStr};
use std::sync::Arc;

/// Links a C handle type to the Rust type behind it.
pub(crate) trait Castable {
    type Rust;
}

/// Moves `value` to the heap and returns it as a C handle (Box-owned).
pub(crate) fn to_boxed<C: Castable>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)) as *mut C
}

/// Returns an `Arc` as a C handle (one strong reference owned by C).
pub(crate) fn to_arc<C: Castable>(value: Arc<C::Rust>) -> *const C {
    Arc::into_raw(value) as *const C
}

/// Borrows the Rust object behind a C handle; `None` for NULL.
///
/// # Safety
/// `p` must be NULL or a live handle of type `C` made by this library.
pub(crate) unsafe fn try_ref<'a, C: Castable>(p: *const C) -> Option<&'a C::Rust> {
    // SAFETY: the caller guarantees p is NULL or points to a live C::Rust.
    unsafe { (p as *const C::Rust).as_ref() }
}

/// Mutably borrows the Rust object behind a Box-owned C handle.
///
/// # Safety
/// `p` must be NULL or a live Box-owned handle not used concurrently.
pub(crate) unsafe fn try_mut<'a, C: Castable>(p: *mut C) -> Option<&'a mut C::Rust> {
    // SAFETY: the caller guarantees exclusive access to a live C::Rust.
    unsafe { (p as *mut C::Rust).as_mut() }
}

/// Takes back a Box-owned handle (`None` for NULL).
///
/// # Safety
/// `p` must be NULL or a live Box-owned handle that is not used afterwards.
pub(crate) unsafe fn take_boxed<C: Castable>(p: *mut C) -> Option<C::Rust> {
    if p.is_null() {
        return None;
    }
    // SAFETY: p came from to_boxed::<C> and ownership returns to Rust here.
    Some(*unsafe { Box::from_raw(p as *mut C::Rust) })
}

/// Frees a Box-owned handle; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a live Box-owned handle that is not used afterwards.
pub(crate) unsafe fn free_boxed<C: Castable>(p: *mut C) {
    if !p.is_null() {
        // SAFETY: p came from to_boxed::<C> and ownership returns to Rust here.
        drop(unsafe { Box::from_raw(p as *mut C::Rust) });
    }
}

/// Releases one reference of an Arc-owned handle; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a handle made by `to_arc::<C>` not used afterwards.
pub(crate) unsafe fn free_arc<C: Castable>(p: *const C) {
    if !p.is_null() {
        // SAFETY: p came from to_arc::<C>; this gives back its reference.
        drop(unsafe { Arc::from_raw(p as *const C::Rust) });
    }
}

/// Takes a new reference to the object behind an Arc-owned handle (`None`
/// for NULL): an operation holds it until it returns, so the object
/// outlives the operation even if the caller's reference is released
/// meanwhile.
///
/// # Safety
/// `p` must be NULL or a handle made by `to_arc::<C>` whose reference is
/// still held by the caller.
pub(crate) unsafe fn clone_arc<C: Castable>(p: *const C) -> Option<Arc<C::Rust>> {
    if p.is_null() {
        return None;
    }
    let p = p as *const C::Rust;
    // SAFETY: p came from to_arc::<C> and its reference is alive, so the
    // count is at least 1; the new reference is owned by the result.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Takes back the caller's reference of an Arc-owned handle (`None` for
/// NULL).
///
/// # Safety
/// `p` must be NULL or a handle made by `to_arc::<C>` not used afterwards.
pub(crate) unsafe fn take_arc<C: Castable>(p: *const C) -> Option<Arc<C::Rust>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: p came from to_arc::<C>; its reference returns to Rust here.
    Some(unsafe { Arc::from_raw(p as *const C::Rust) })
}

/// Reads a NUL-terminated UTF-8 string argument.
pub(crate) enum StrArg<'a> {
    Null,
    NotUtf8,
    Ok(&'a str),
}

/// Borrows a C string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char) -> StrArg<'a> {
    if p.is_null() {
        return StrArg::Null;
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    match unsafe { CStr::from_ptr(p) }.to_str() {
        Ok(s) => StrArg::Ok(s),
        Err(_) => StrArg::NotUtf8,
    }
}

/// Borrows `(data, len)` as a slice; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes valid for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if data.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees len readable bytes at data.
    Some(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Runs a future on the calling thread (see `rt::block_on`);
/// `RGRPC_RESULT_RUNTIME` where blocking is impossible,
/// `RGRPC_RESULT_SHUTDOWN` after `rgrpc_shutdown`. Inlined: a future
/// passed through one more function is one more copy of it per operation.
#[inline(always)]
pub(crate) fn block<F: std::future::Future>(f: F) -> Result<F::Output, super::error::rgrpc_result> {
    rgrpc_core::rt::block_on(f).ok_or_else(super::runtime::runtime_failure)
}

/// `f` bounded by `timeout_ms` (< 0: no bound); None when it ran out.
pub(crate) async fn with_timeout<F: std::future::Future>(
    timeout_ms: i64,
    f: F,
) -> Option<F::Output> {
    if timeout_ms < 0 {
        Some(f.await)
    } else {
        tokio::time::timeout(std::time::Duration::from_millis(timeout_ms as u64), f)
            .await
            .ok()
    }
}

/// Reads a string argument named `what`; on failure the result code and
/// a message saying why.
pub(crate) fn str_checked<'a>(
    p: *const c_char,
    what: &str,
) -> Result<&'a str, (super::error::rgrpc_result, String)> {
    use super::error::rgrpc_result;
    // SAFETY: p is NULL or a NUL-terminated string per the header.
    match unsafe { str_arg(p) } {
        StrArg::Ok(s) => Ok(s),
        StrArg::Null => Err((rgrpc_result::NullParameter, format!("{what} is NULL"))),
        StrArg::NotUtf8 => Err((
            rgrpc_result::InvalidUtf8,
            format!("{what} is not valid UTF-8"),
        )),
    }
}

/// Reads a string argument, recording why it is unusable in `last_error`
/// (the message slot of a single-threaded object the call concerns).
pub(crate) fn str_or_error<'a>(
    last_error: &mut std::ffi::CString,
    p: *const c_char,
    what: &str,
) -> Result<&'a str, super::error::rgrpc_result> {
    str_checked(p, what).map_err(|(r, text)| {
        *last_error = super::error::cstring(&text);
        r
    })
}

/// Why `block` could not run a future here, for the message of
/// `RGRPC_RESULT_RUNTIME` or `RGRPC_RESULT_SHUTDOWN`.
pub(crate) fn block_failure() -> String {
    if rgrpc_core::rt::is_shut_down() {
        return rgrpc_core::rt::SHUT_DOWN_MESSAGE.to_string();
    }
    match rgrpc_core::rt::handle() {
        Err(e) => e.to_string(),
        Ok(_) => "cannot block on this thread: it is driving the library's I/O (a message \
                  callback or an inline callback), or it runs a single-threaded tokio \
                  runtime of its own"
            .to_string(),
    }
}

/// Returns early with `NullParameter` when a handle pointer is NULL,
/// otherwise evaluates to the borrowed Rust object.
macro_rules! try_ref_or_null {
    ($t:ty, $p:expr) => {
        // SAFETY: handles passed by C are NULL or live objects of this type.
        match unsafe { $crate::handle::try_ref::<$t>($p) } {
            Some(r) => r,
            None => return $crate::error::rgrpc_result::NullParameter,
        }
    };
}

/// Takes a reference to an Arc-owned handle's object for the duration of
/// the function (see `clone_arc`), or returns `NullParameter` for NULL.
macro_rules! try_arc_or_null {
    ($t:ty, $p:expr) => {
        // SAFETY: handles passed by C are NULL or live objects of this type
        // whose reference the caller still holds (header contract).
        match unsafe { $crate::handle::clone_arc::<$t>($p) } {
            Some(r) => r,
            None => return $crate::error::rgrpc_result::NullParameter,
        }
    };
}

/// Like `try_ref_or_null!` for mutable (Box-owned) handles.
macro_rules! try_mut_or_null {
    ($t:ty, $p:expr) => {
        // SAFETY: handles passed by C are NULL or live objects of this type,
        // used by one thread at a time as the header requires.
        match unsafe { $crate::handle::try_mut::<$t>($p) } {
            Some(r) => r,
            None => return $crate::error::rgrpc_result::NullParameter,
        }
    };
}

/// Reads a required C string argument or returns NullParameter/InvalidUtf8.
macro_rules! try_str {
    ($p:expr) => {
        // SAFETY: string arguments are NULL or NUL-terminated per the header.
        match unsafe { $crate::handle::str_arg($p) } {
            $crate::handle::StrArg::Ok(s) => s,
            $crate::handle::StrArg::Null => return $crate::error::rgrpc_result::NullParameter,
            $crate::handle::StrArg::NotUtf8 => return $crate::error::rgrpc_result::InvalidUtf8,
        }
    };
}

/// Writes an out-parameter (checked non-NULL beforehand).
macro_rules! write_out {
    ($p:expr, $v:expr) => {
        // SAFETY: the out-pointer was checked to be non-NULL and the caller
        // guarantees it points to writable memory of the right type.
        unsafe { *$p = $v }
    };
}

pub(crate) use {try_arc_or_null, try_mut_or_null, try_ref_or_null, try_str, write_out};
