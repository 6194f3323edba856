//! `rgrpc_buffer`: a received message, owned by the caller.

use super::boundary::boundary;
use super::handle::{free_boxed, try_ref, Castable};
use bytes::Bytes;

/// A received message: bytes owned by the library until
/// `rgrpc_buffer_free`. Immutable; may be read from any thread.
///
/// Methods: `rgrpc_buffer_data`, `rgrpc_buffer_len`, `rgrpc_buffer_free`.
pub struct rgrpc_buffer {
    _private: [u8; 0],
}

impl Castable for rgrpc_buffer {
    type Rust = Bytes;
}

/// The bytes of a buffer. Valid until `rgrpc_buffer_free(buffer)`. For an
/// empty message or NULL, returns a non-dereferenceable pointer or NULL;
/// check `rgrpc_buffer_len` first.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_data(buffer: *const rgrpc_buffer) -> *const u8 {
    boundary(|| {
        // SAFETY: buffer is NULL or a live rgrpc_buffer.
        match unsafe { try_ref::<rgrpc_buffer>(buffer) } {
            Some(b) => b.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// The length of a buffer in bytes; 0 for NULL.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_len(buffer: *const rgrpc_buffer) -> usize {
    boundary(|| {
        // SAFETY: buffer is NULL or a live rgrpc_buffer.
        unsafe { try_ref::<rgrpc_buffer>(buffer) }.map_or(0, |b| b.len())
    })
}

/// Frees a buffer. NULL is a no-op; freeing twice is undefined.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_free(buffer: *mut rgrpc_buffer) {
    boundary(|| {
        // SAFETY: buffer is NULL or a live rgrpc_buffer owned by the caller.
        unsafe { free_boxed::<rgrpc_buffer>(buffer) }
    })
}
