//! A completion queue: operations finish into it and the application takes
//! their completions out, from a foreign event loop or by waiting.
//!
//! * A file descriptor (one end of a Unix socket pair) is **readable exactly
//!   while a completion waits or the queue has finished** (shut down, every
//!   operation completed and taken): level-triggered. One byte sits in the
//!   socket while that holds and none otherwise, so an event loop can
//!   watch it with `poll`, epoll (level or edge: the byte is taken out
//!   only when the queue runs empty, and put back on the next completion),
//!   libuv's `uv_poll` or asyncio's `add_reader`, and drain the queue with
//!   [`CompletionQueue::next`] until it says [`Next::Empty`].
//! * An operation takes a [`Ticket`] when it starts ([`CompletionQueue::ticket`])
//!   and completes through it exactly once: by [`Ticket::complete`], or,
//!   when the ticket is dropped unused (its task dropped at shutdown), with
//!   the fallback value given when it was taken. So nothing started is
//!   lost.
//! * [`CompletionQueue::shutdown`] refuses new tickets; [`Next::Shutdown`]
//!   comes once the outstanding operations have completed and every
//!   completion has been taken.

#![forbid(unsafe_code)]

use crate::sync::lock;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What [`CompletionQueue::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The oldest completion.
    Item(T),
    /// Nothing waits now; operations are outstanding, or more may start.
    Empty,
    /// Shut down, every operation completed and every completion taken:
    /// nothing will come any more.
    Shutdown,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueShutDown;

impl std::fmt::Display for QueueShutDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the completion queue is shut down: it takes no new operations")
    }
}

struct State<T> {
    items: VecDeque<T>,
    /// Tickets taken and not yet completed.
    outstanding: usize,
    shutdown: bool,
    /// True while the signalling byte sits in the socket.
    signalled: bool,
    /// True once the descriptor was handed out: until then nobody can poll
    /// it, so no system call keeps it up to date (a queue used only with
    /// [`CompletionQueue::wait`] costs none).
    fd_used: bool,
}

impl<T> State<T> {
    /// Whether the descriptor must be readable.
    fn readable(&self) -> bool {
        !self.items.is_empty() || self.finished()
    }

    fn finished(&self) -> bool {
        self.shutdown && self.outstanding == 0 && self.items.is_empty()
    }
}

/// A queue of completions of type `T`, with a pollable descriptor.
pub struct CompletionQueue<T> {
    state: Mutex<State<T>>,
    /// Wakes [`CompletionQueue::wait`]ers on every change.
    changed: Notify,
    /// The end the application polls.
    read_end: UnixStream,
    /// The end the library writes the signalling byte to.
    write_end: UnixStream,
}

impl<T: Send + 'static> CompletionQueue<T> {
    /// A new, empty queue (fails only when the system refuses a socket
    /// pair: out of descriptors).
    pub fn new() -> std::io::Result<Arc<CompletionQueue<T>>> {
        let (read_end, write_end) = UnixStream::pair()?;
        read_end.set_nonblocking(true)?;
        write_end.set_nonblocking(true)?;
        Ok(Arc::new(CompletionQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                outstanding: 0,
                shutdown: false,
                signalled: false,
                fd_used: false,
            }),
            changed: Notify::new(),
            read_end,
            write_end,
        }))
    }

    /// The descriptor to poll for reading (owned by the queue: do not
    /// close it; valid until the queue is dropped).
    pub fn fd(&self) -> RawFd {
        let mut st = lock(&self.state);
        if !st.fd_used {
            st.fd_used = true;
            self.signal(&mut st);
        }
        self.read_end.as_raw_fd()
    }

    /// Starts an operation: its completion will come exactly once, as
    /// given to [`Ticket::complete`], or as `fallback` if the ticket is
    /// dropped first. Refused after [`CompletionQueue::shutdown`].
    pub fn ticket(self: &Arc<Self>, fallback: T) -> Result<Ticket<T>, QueueShutDown> {
        let mut st = lock(&self.state);
        if st.shutdown {
            return Err(QueueShutDown);
        }
        st.outstanding += 1;
        Ok(Ticket {
            queue: self.clone(),
            fallback: Some(fallback),
        })
    }

    /// Takes the oldest completion, without waiting.
    pub fn next(&self) -> Next<T> {
        let mut st = lock(&self.state);
        let r = match st.items.pop_front() {
            Some(t) => Next::Item(t),
            None if st.finished() => Next::Shutdown,
            None => Next::Empty,
        };
        self.signal(&mut st);
        r
    }

    /// Waits for a completion (or for the queue to finish). Run it inside
    /// the runtime (`rt::block_on`): in caller-driven mode the waiting
    /// thread drives the connections meanwhile.
    pub async fn wait(&self) -> Next<T> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.next() {
                Next::Empty => changed.await,
                r => return r,
            }
        }
    }

    /// Refuses new operations from now on; those outstanding still
    /// complete. Idempotent.
    pub fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.shutdown = true;
        self.signal(&mut st);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Whether [`CompletionQueue::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        lock(&self.state).shutdown
    }

    /// Completions waiting and operations outstanding.
    pub fn counts(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.items.len(), st.outstanding)
    }

    fn push(&self, item: T) {
        let mut st = lock(&self.state);
        st.outstanding -= 1;
        st.items.push_back(item);
        self.signal(&mut st);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Puts the signalling byte in or takes it out so that the descriptor
    /// is readable exactly when it should be. Called under the state lock.
    fn signal(&self, st: &mut State<T>) {
        if !st.fd_used {
            return;
        }
        let want = st.readable();
        if want == st.signalled {
            return;
        }
        if want {
            // A non-blocking write of one byte to an empty socket buffer:
            // it cannot block; if the system refuses it (out of memory),
            // waiters still wake through `changed`, only the descriptor
            // stays quiet until the next change.
            st.signalled = (&self.write_end).write(&[1]).is_ok();
        } else {
            let mut b = [0u8; 1];
            if (&self.read_end).read(&mut b).is_ok() {
                st.signalled = false;
            }
        }
    }
}

/// The right and the duty to complete one operation into a queue.
pub struct Ticket<T: Send + 'static> {
    queue: Arc<CompletionQueue<T>>,
    /// The completion given if the ticket is dropped unused.
    fallback: Option<T>,
}

impl<T: Send + 'static> Ticket<T> {
    /// Delivers the operation's completion.
    pub fn complete(mut self, item: T) {
        self.fallback = None;
        self.queue.push(item);
    }
}

impl<T: Send + 'static> Ticket<T> {
    /// Gives the ticket back with no completion: the operation was refused
    /// before it started.
    pub fn cancel(mut self) {
        self.fallback = None;
        let mut st = lock(&self.queue.state);
        st.outstanding -= 1;
        self.queue.signal(&mut st);
        drop(st);
        self.queue.changed.notify_waiters();
    }
}

impl<T: Send + 'static> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let Some(f) = self.fallback.take() {
            self.queue.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// Whether the descriptor polls readable (within 20 ms), as an event
    /// loop sees it: a duplicate of it in a poller of its own.
    fn readable(q: &CompletionQueue<u32>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dup = UnixStream::from(q.read_end.as_fd().try_clone_to_owned().unwrap());
            dup.set_nonblocking(true).unwrap();
            let s = tokio::net::UnixStream::from_std(dup).unwrap();
            tokio::time::timeout(std::time::Duration::from_millis(20), s.readable())
                .await
                .is_ok()
        })
    }

    #[test]
    fn descriptor_is_level_triggered() {
        let q = CompletionQueue::<u32>::new().unwrap();
        q.fd();
        assert!(!readable(&q));
        let a = q.ticket(0).unwrap();
        let b = q.ticket(0).unwrap();
        assert!(!readable(&q), "outstanding operations alone do not signal");
        a.complete(1);
        assert!(readable(&q));
        b.complete(2);
        assert!(readable(&q));
        assert_eq!(q.next(), Next::Item(1));
        assert!(readable(&q), "one left");
        assert_eq!(q.next(), Next::Item(2));
        assert!(!readable(&q), "drained");
        assert_eq!(q.next(), Next::Empty);
        assert!(!readable(&q));
    }

    #[test]
    fn dropped_ticket_delivers_its_fallback() {
        let q = CompletionQueue::<u32>::new().unwrap();
        drop(q.ticket(7).unwrap());
        assert_eq!(q.next(), Next::Item(7));
        assert_eq!(q.counts(), (0, 0));
    }

    #[test]
    fn descriptor_handed_out_late_shows_what_waits() {
        let q = CompletionQueue::<u32>::new().unwrap();
        q.ticket(0).unwrap().complete(3);
        assert!(!readable(&q), "not kept up to date before it is handed out");
        q.fd();
        assert!(readable(&q), "brought up to date when handed out");
        assert_eq!(q.next(), Next::Item(3));
        assert!(!readable(&q));
    }

    #[test]
    fn shutdown_waits_for_outstanding_and_untaken() {
        let q = CompletionQueue::<u32>::new().unwrap();
        q.fd();
        let t = q.ticket(0).unwrap();
        q.shutdown();
        assert!(q.ticket(0).is_err());
        assert_eq!(q.next(), Next::Empty, "one outstanding");
        assert!(!readable(&q));
        t.complete(5);
        assert!(readable(&q));
        assert_eq!(q.next(), Next::Item(5));
        assert!(readable(&q), "finished: readable so the loop learns it");
        assert_eq!(q.next(), Next::Shutdown);
        assert_eq!(q.next(), Next::Shutdown);
        assert!(readable(&q));
    }

    #[test]
    fn wait_wakes_on_completion_from_another_thread() {
        let q = CompletionQueue::<u32>::new().unwrap();
        let t = q.ticket(0).unwrap();
        let th = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            t.complete(9);
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(q.wait()), Next::Item(9));
        th.join().unwrap();
        q.shutdown();
        assert_eq!(rt.block_on(q.wait()), Next::Shutdown);
    }
}
