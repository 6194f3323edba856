//! The panic boundary: every exported function runs its body inside
//! [`boundary`], so a panic becomes `RGRPC_RESULT_PANIC` (or a typed default:
//! NULL, false, 0) instead of unwinding into C.

use super::error::rgrpc_result;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The value returned to C when a function body panics.
pub(crate) trait PanicDefault {
    fn panic_value() -> Self;
}

impl PanicDefault for rgrpc_result {
    fn panic_value() -> Self {
        rgrpc_result::Panic
    }
}

impl PanicDefault for () {
    fn panic_value() -> Self {}
}

impl PanicDefault for bool {
    fn panic_value() -> Self {
        false
    }
}

impl PanicDefault for usize {
    fn panic_value() -> Self {
        0
    }
}

impl PanicDefault for i64 {
    fn panic_value() -> Self {
        -1
    }
}

impl PanicDefault for i32 {
    /// -1: not a file descriptor.
    fn panic_value() -> Self {
        -1
    }
}

impl PanicDefault for u32 {
    fn panic_value() -> Self {
        0
    }
}

impl<T> PanicDefault for *const T {
    fn panic_value() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_value() -> Self {
        std::ptr::null_mut()
    }
}

impl PanicDefault for crate::intercept::rgrpc_hook_kind {
    fn panic_value() -> Self {
        crate::intercept::rgrpc_hook_kind::Start
    }
}

impl PanicDefault for crate::status::rgrpc_status_code {
    fn panic_value() -> Self {
        crate::status::rgrpc_status_code::Unknown
    }
}

/// Runs `f`, turning a panic into the type's default failure value.
pub(crate) fn boundary<R: PanicDefault>(f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| R::panic_value())
}

impl PanicDefault for crate::connectivity::rgrpc_connectivity_state {
    fn panic_value() -> Self {
        crate::connectivity::rgrpc_connectivity_state::Shutdown
    }
}
