//! The only unsafe code of the core, each block with its SAFETY comment:
//! the socket calls libc offers no safe form of (`sendmsg` with
//! `MSG_NOSIGNAL`, `shutdown`), the library threads' signal mask, and the
//! cell inside [`AsyncMutex`]. Every other module of the crate has
//! `#![forbid(unsafe_code)]`.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// `sendmsg(fd, bufs, MSG_NOSIGNAL)`: a write that gives EPIPE instead of
/// raising SIGPIPE when the peer has gone.
pub(crate) fn send_nosignal(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let n = bufs.len().min(libc::UIO_MAXIOV as usize);
    // SAFETY: a zeroed msghdr is valid; its iovec array points at `bufs`
    // (IoSlice is ABI-compatible with iovec), alive for the call.
    let r = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = n as _;
        libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Shuts down the write half of a socket the caller owns.
pub(crate) fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown takes no pointers; `fd` is the caller's open socket.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Blocks SIGPIPE on the calling (library) thread, as a second line of
/// defence: socket writes already use MSG_NOSIGNAL. Application threads are
/// never touched.
pub(crate) fn block_sigpipe_on_this_thread() {
    // SAFETY: a local signal set; only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A small async mutex for per-call state held across awaits. An
/// uncontended lock and unlock are a few atomic operations (tokio's Mutex
/// takes an internal lock on every release, which shows on the per-message
/// path). Waiters are woken through a `Notify` and retry, in no particular
/// order; a cancelled waiter passes its wake-up on (tokio's `Notify` does).
pub(crate) struct AsyncMutex<T> {
    locked: AtomicBool,
    notify: Notify,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and `locked` makes
// guards exclusive; T: Send is enough for the value to move between threads.
unsafe impl<T: Send> Send for AsyncMutex<T> {}
// SAFETY: as above: shared access hands out at most one guard at a time.
unsafe impl<T: Send> Sync for AsyncMutex<T> {}

/// Exclusive access to an [`AsyncMutex`]'s value; unlocks on drop.
pub(crate) struct AsyncMutexGuard<'a, T> {
    m: &'a AsyncMutex<T>,
}

impl<T> AsyncMutex<T> {
    pub(crate) fn new(value: T) -> Self {
        AsyncMutex {
            locked: AtomicBool::new(false),
            notify: Notify::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// The guard, if nobody holds it now.
    pub(crate) fn try_lock(&self) -> Option<AsyncMutexGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| AsyncMutexGuard { m: self })
    }

    /// Waits for the guard.
    pub(crate) async fn lock(&self) -> AsyncMutexGuard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the second try: an unlock after it wakes us.
            notified.as_mut().enable();
            if let Some(g) = self.try_lock() {
                return g;
            }
            notified.await;
        }
    }
}

impl<T> std::ops::Deref for AsyncMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `try_lock`).
        unsafe { &*self.m.value.get() }
    }
}

impl<T> std::ops::DerefMut for AsyncMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one, and borrowed mutably.
        unsafe { &mut *self.m.value.get() }
    }
}

impl<T> Drop for AsyncMutexGuard<'_, T> {
    fn drop(&mut self) {
        self.m.locked.store(false, Ordering::Release);
        // Without waiters this stores a permit (no lock taken); the next
        // waiter then retries once more than needed.
        self.m.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exclusive_under_contention() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let m = Arc::new(AsyncMutex::new((0u64, false)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                rt.spawn(async move {
                    for _ in 0..2000 {
                        let mut g = m.lock().await;
                        assert!(!g.1, "two guards at once");
                        g.1 = true;
                        tokio::task::yield_now().await;
                        g.0 += 1;
                        g.1 = false;
                    }
                })
            })
            .collect();
        rt.block_on(async {
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(m.try_lock().unwrap().0, 16000);
    }

    #[test]
    fn cancelled_waiter_does_not_strand_others() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let m = Arc::new(AsyncMutex::new(0u32));
            let g = m.lock().await;
            // A waiter that gives up, and one that stays.
            let m1 = m.clone();
            let quitter = tokio::spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_millis(5), m1.lock()).await;
            });
            let m2 = m.clone();
            let stayer = tokio::spawn(async move {
                *m2.lock().await += 1;
            });
            tokio::task::yield_now().await;
            quitter.await.unwrap();
            drop(g);
            tokio::time::timeout(std::time::Duration::from_secs(5), stayer)
                .await
                .expect("the remaining waiter got the lock")
                .unwrap();
            assert_eq!(*m.lock().await, 1);
            assert!(m.try_lock().is_some());
        });
    }
}
