//! `rgrpc_buffer`: a message as bytes: received (owned by the caller), or
//! made by `rgrpc_buffer_new` for the application to write a request into
//! and hand to `rgrpc_call_send_buffer` / `rgrpc_call_unary_buffer`
//! without a copy.

use super::boundary::boundary;
use super::error::rgrpc_result;
use super::handle::{free_boxed, take_boxed, to_boxed, try_ref, Castable};
use bytes::Bytes;
use rgrpc_core::codec::framing::{Prefixed, HEADER_LEN};
use rgrpc_core::codec::pool;
use rgrpc_core::Message;

/// A message: bytes owned by the caller until `rgrpc_buffer_free`, or
/// until passed to a function that takes it (`rgrpc_call_send_buffer`,
/// `rgrpc_call_unary_buffer`).
///
/// Received messages are immutable and may be read from any thread. A
/// buffer from `rgrpc_buffer_new` is written through the pointer that
/// function returns, by one thread at a time.
///
/// Methods: `rgrpc_buffer_new`, `rgrpc_buffer_data`, `rgrpc_buffer_len`,
/// `rgrpc_buffer_free`.
pub struct rgrpc_buffer {
    _private: [u8; 0],
}

/// What an `rgrpc_buffer` holds.
pub(crate) enum Buffer {
    /// A received message.
    Received(Bytes),
    /// From `rgrpc_buffer_new`: room for the gRPC prefix (length
    /// HEADER_LEN, initialised), then `len` bytes of spare capacity that
    /// the application writes.
    Writable { buf: Vec<u8>, len: usize },
}

impl Castable for rgrpc_buffer {
    type Rust = Buffer;
}

impl Buffer {
    fn data(&self) -> *const u8 {
        match self {
            Buffer::Received(b) => b.as_ptr(),
            // In bounds: the capacity is at least HEADER_LEN + len.
            Buffer::Writable { buf, .. } => buf.as_ptr().wrapping_add(HEADER_LEN),
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::Received(b) => b.len(),
            Buffer::Writable { len, .. } => *len,
        }
    }

    /// Runs `f` with the buffer as a message to send: a written buffer
    /// becomes the frame itself, a received one is copied.
    pub(crate) fn with_message<R>(self, f: impl FnOnce(Message<'_>) -> R) -> R {
        match self.outgoing() {
            Outgoing::Copy(b) => f(Message::Copy(&b)),
            Outgoing::InPlace(p) => f(Message::InPlace(p)),
        }
    }

    /// The buffer as an owned message to send (for a task that sends it
    /// later).
    pub(crate) fn outgoing(self) -> Outgoing {
        match self {
            Buffer::Received(b) => Outgoing::Copy(b),
            Buffer::Writable { mut buf, len } => {
                // SAFETY: the capacity is at least HEADER_LEN + len
                // (rgrpc_buffer_new); the prefix room is initialised and the
                // header requires the application to have written all `len`
                // payload bytes through the pointer rgrpc_buffer_new gave it.
                unsafe { buf.set_len(HEADER_LEN + len) };
                Outgoing::InPlace(Prefixed::new(buf).expect("rgrpc_buffer_new checked the length"))
            }
        }
    }
}

/// A message to send, owned: bytes to copy into a frame, or a frame
/// written in place.
pub(crate) enum Outgoing {
    Copy(Bytes),
    InPlace(Prefixed),
}

impl Outgoing {
    /// Sends it on `call` (see `Call::send_message`).
    pub(crate) async fn send(
        self,
        call: &rgrpc_core::Call,
        flags: rgrpc_core::SendFlags,
    ) -> Result<(), rgrpc_core::CallError> {
        match self {
            Outgoing::Copy(b) => call.send_message(Message::Copy(&b), flags).await,
            Outgoing::InPlace(p) => call.send_message(Message::InPlace(p), flags).await,
        }
    }
}

/// Wraps a received message for the caller.
pub(crate) fn received(b: Bytes) -> *mut rgrpc_buffer {
    to_boxed::<rgrpc_buffer>(Buffer::Received(b))
}

/// Makes a buffer of `len` bytes for a message the application writes in
/// place (for example `protobuf_c_message_pack(msg, data)`), then sends
/// with `rgrpc_call_send_buffer` or `rgrpc_call_unary_buffer`, which take
/// the buffer and send it without copying it (a compressed message is
/// still compressed into a new one). Saves one copy of every request;
/// worth it for large messages.
///
/// On success writes the buffer to `*buffer_out` (owned by the caller
/// until a send function takes it, or `rgrpc_buffer_free`) and the address
/// of its `len` bytes to `*data_out`. The bytes are uninitialised, as from
/// `malloc`: write all `len` of them before sending. The address stays
/// valid until the buffer is sent or freed.
///
/// Returns `RGRPC_RESULT_OK`, `RGRPC_RESULT_NULL_PARAMETER` (an
/// out-pointer is NULL), or `RGRPC_RESULT_INVALID_ARGUMENT` (`len` above
/// the largest gRPC message, 4 GiB - 1, or memory for it could not be
/// allocated). Thread-safe.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_new(
    len: usize,
    buffer_out: *mut *mut rgrpc_buffer,
    data_out: *mut *mut u8,
) -> rgrpc_result {
    boundary(|| {
        if buffer_out.is_null() || data_out.is_null() {
            return rgrpc_result::NullParameter;
        }
        if u32::try_from(len).is_err() {
            return rgrpc_result::InvalidArgument;
        }
        // Large buffers come from the pool of message buffers.
        let Some(mut buf) = pool::take(HEADER_LEN + len) else {
            return rgrpc_result::InvalidArgument;
        };
        buf.extend_from_slice(&[0; HEADER_LEN]);
        // In bounds (capacity >= HEADER_LEN + len); the Vec never grows, so the
        // address stays put until the buffer is dropped.
        let data = buf.as_mut_ptr().wrapping_add(HEADER_LEN);
        let b = to_boxed::<rgrpc_buffer>(Buffer::Writable { buf, len });
        // SAFETY: both out-pointers were checked non-NULL.
        unsafe {
            *buffer_out = b;
            *data_out = data;
        }
        rgrpc_result::Ok
    })
}

/// The bytes of a buffer. Valid until `rgrpc_buffer_free(buffer)` (or the
/// buffer is sent). For an empty message or NULL, returns a
/// non-dereferenceable pointer or NULL; check `rgrpc_buffer_len` first.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_data(buffer: *const rgrpc_buffer) -> *const u8 {
    boundary(|| {
        // SAFETY: buffer is NULL or a live rgrpc_buffer.
        match unsafe { try_ref::<rgrpc_buffer>(buffer) } {
            Some(b) => b.data(),
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

/// Frees a buffer. NULL is a no-op; freeing twice, or freeing a buffer a
/// send function took, is undefined.
#[no_mangle]
pub extern "C" fn rgrpc_buffer_free(buffer: *mut rgrpc_buffer) {
    boundary(|| {
        // SAFETY: buffer is NULL or a live rgrpc_buffer owned by the caller.
        unsafe { free_boxed::<rgrpc_buffer>(buffer) }
    })
}

/// Takes a buffer passed to a function that consumes it (None for NULL).
pub(crate) fn take(buffer: *mut rgrpc_buffer) -> Option<Buffer> {
    // SAFETY: buffer is NULL or a live rgrpc_buffer owned by the caller,
    // who gives it up by passing it (header contract).
    unsafe { take_boxed::<rgrpc_buffer>(buffer) }
}
