//! Reuse of large message buffers.
//!
//! A large message costs a large allocation on each side of every call: the
//! request's frame and the received message. Freed back to the C library,
//! such blocks sit at the top of the heap, and glibc's trimming then hands
//! them to the kernel and faults them back in on the next call (hundreds of
//! page faults per megabyte, doubling the CPU time of a 1 MiB call on some
//! runs). Buffers of [`MIN_POOLED`] bytes or more are therefore kept here
//! when freed, a few at a time, and reused by the next message of a
//! similar size. Small buffers are left to the allocator.

use crate::sync::lock;
use bytes::Bytes;
use std::sync::Mutex;

/// Buffers at least this large are pooled.
pub(crate) const MIN_POOLED: usize = 64 << 10;
/// Buffers above this are never kept.
const MAX_POOLED: usize = 8 << 20;
/// At most this many buffers are kept...
const MAX_COUNT: usize = 4;
/// ... holding at most this many bytes together.
const MAX_TOTAL: usize = 16 << 20;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `cap` bytes: a pooled one when one fits
/// (at least `cap`, at most twice that), else a new one. `None` when
/// memory for it cannot be had.
pub fn take(cap: usize) -> Option<Vec<u8>> {
    if cap >= MIN_POOLED {
        let mut pool = lock(&POOL);
        let fit = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= cap && v.capacity() / 2 <= cap)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        if let Some(i) = fit {
            let mut v = pool.swap_remove(i);
            v.clear();
            return Some(v);
        }
    }
    let mut v = Vec::new();
    v.try_reserve_exact(cap).ok()?;
    Some(v)
}

/// [`take`], for callers that treat running out of memory as fatal (as
/// `Vec` does).
pub fn vec(cap: usize) -> Vec<u8> {
    take(cap).unwrap_or_else(|| Vec::with_capacity(cap))
}

/// Keeps `v` for reuse when it is large and the pool has room; frees it
/// otherwise.
pub fn give(v: Vec<u8>) {
    let cap = v.capacity();
    // After shutdown nothing is kept: the pool was emptied for good.
    if !(MIN_POOLED..=MAX_POOLED).contains(&cap) || crate::rt::is_shut_down() {
        return;
    }
    let mut pool = lock(&POOL);
    let total: usize = pool.iter().map(Vec::capacity).sum();
    if pool.len() < MAX_COUNT && total + cap <= MAX_TOTAL {
        pool.push(v);
    }
}

/// Frees every pooled buffer (shutdown; [`give`] keeps none afterwards).
pub(crate) fn clear() {
    let pool = std::mem::take(&mut *lock(&POOL));
    drop(pool);
}

/// Owner of a pooled buffer behind a `Bytes`: the buffer goes back to the
/// pool when the last `Bytes` referring to it is dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// The bytes of `v`, without a copy; a large buffer returns to the pool
/// once no `Bytes` refers to it any more.
pub fn into_bytes(v: Vec<u8>) -> Bytes {
    if v.capacity() >= MIN_POOLED {
        Bytes::from_owner(Pooled(v))
    } else {
        Bytes::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back() {
        // Sizes unique to this test: other tests share the pool.
        let cap = MIN_POOLED * 3 + 17;
        let v = take(cap).unwrap();
        assert!(v.capacity() >= cap && v.is_empty());
        let mut v = v;
        v.extend_from_slice(&[7; 100]);
        let ptr = v.as_ptr();
        let b = into_bytes(v);
        let part = b.slice(10..20);
        drop(b);
        assert_eq!(&part[..], &[7; 10]);
        drop(part);
        // Returned when the last reference went: reused for a similar size.
        let again = take(cap - 1).unwrap();
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        give(again);
        // Not for a size it would waste more than half of.
        let small = take(MIN_POOLED).unwrap();
        assert_ne!(small.as_ptr(), ptr);
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept() {
        let small = Vec::with_capacity(100);
        give(small);
        let huge: Vec<u8> = Vec::with_capacity(MAX_POOLED + 1);
        give(huge);
        assert!(lock(&POOL)
            .iter()
            .all(|v| v.capacity() <= MAX_POOLED && v.capacity() >= MIN_POOLED));
    }
}
