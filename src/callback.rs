//! What callbacks share: the `user_data` pointer carried to library threads.

use std::ffi::c_void;

/// A `void *user_data` that may move to the runtime threads. The header
/// makes the caller responsible for it being usable from the thread that
/// runs the callback; the library only passes it back.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);
// SAFETY: the pointer is only handed back to the caller's own callback,
// under the threading contract stated in the header.
unsafe impl Send for UserData {}
// SAFETY: as above; it is never dereferenced by the library.
unsafe impl Sync for UserData {}
