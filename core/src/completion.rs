//! The one way the library tells the application that something finished:
//! every notification — a call's done callbacks, connectivity subscribers,
//! a ready future's callback — is a [`Job`] handed to a [`Notifier`],
//! which decides where it runs:
//!
//! * [`Notifier::Pool`] — on the runtime's blocking pool (the job may
//!   block);
//! * [`Notifier::Inline`] — as a task on the thread driving the I/O (no
//!   thread hand-off; the job must not block);
//! * [`Notifier::Sink`] — handed to a sink of the application's, such as a
//!   completion queue that a foreign event loop drains (the event-loop
//!   issue adds one); the job then runs on the completing thread and only
//!   enqueues.
//!
//! [`Serial`] runs jobs one at a time in the order given (for subscribers,
//! who must see changes in order), on the pool.

#![forbid(unsafe_code)]

use crate::rt;
use crate::sync::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Jobs handed to the runtime ([`Notifier::Pool`], [`Notifier::Inline`])
/// that have not run (or been dropped) yet: shutdown waits for them.
static PENDING: AtomicUsize = AtomicUsize::new(0);
static IDLE_LOCK: Mutex<()> = Mutex::new(());
static IDLE: Condvar = Condvar::new();

/// Counts one pending job until dropped (after the job ran, or when the
/// runtime drops it unrun). Also held by what will deliver a job from a
/// task of its own (a ready future's callback), so that shutdown waits for
/// that task to run too.
pub(crate) struct Pending;

impl Pending {
    pub(crate) fn new() -> Pending {
        PENDING.fetch_add(1, Ordering::SeqCst);
        Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if PENDING.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _g = lock(&IDLE_LOCK);
            IDLE.notify_all();
        }
    }
}

/// Waits until every job handed to the runtime has run: the callbacks that
/// shutdown's closing of the channels caused (and any they cause in turn,
/// or that tasks woken by it deliver).
/// A job that never returns keeps it waiting.
pub(crate) fn wait_idle() {
    let mut g = lock(&IDLE_LOCK);
    while PENDING.load(Ordering::SeqCst) > 0 {
        g = IDLE
            .wait_timeout(g, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A notification for the application: runs once.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Takes jobs for the application and delivers them its own way (a
/// completion queue, say). `deliver` is called on a library thread and
/// must not block.
pub trait CompletionSink: Send + Sync {
    fn deliver(&self, job: Job);
}

/// Where notifications run.
#[derive(Clone, Default)]
pub enum Notifier {
    /// The runtime's blocking pool: jobs may block.
    #[default]
    Pool,
    /// A task on the thread driving the I/O: jobs must not block.
    Inline,
    /// The application's sink.
    Sink(Arc<dyn CompletionSink>),
}

impl Notifier {
    /// The notifier of done callbacks: inline or on the pool.
    pub fn callbacks(inline: bool) -> Notifier {
        if inline {
            Notifier::Inline
        } else {
            Notifier::Pool
        }
    }

    /// Runs each job at once on the thread that completes it: for jobs
    /// that only enqueue (a completion queue's).
    pub fn immediate() -> Notifier {
        struct Immediate;
        impl CompletionSink for Immediate {
            fn deliver(&self, job: Job) {
                job()
            }
        }
        Notifier::Sink(Arc::new(Immediate))
    }

    /// Delivers `job`. A job that panics is caught (it must not unwind
    /// into the library). Without a runtime (it failed to start) the job
    /// runs on the calling thread.
    pub fn deliver(&self, job: impl FnOnce() + Send + 'static) {
        let guarded = move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        };
        match self {
            Notifier::Sink(s) => s.deliver(Box::new(guarded)),
            Notifier::Pool | Notifier::Inline => {
                let Ok(h) = rt::handle() else {
                    return guarded();
                };
                let pending = Pending::new();
                let counted = move || {
                    guarded();
                    drop(pending);
                };
                if matches!(self, Notifier::Inline) {
                    h.spawn(async move { counted() });
                } else {
                    h.spawn_blocking(counted);
                }
            }
        }
    }
}

/// Runs jobs one at a time, in the order they were queued, on one pool
/// thread at a time (no thread while nothing is queued).
pub(crate) struct Serial {
    queue: Mutex<VecDeque<Job>>,
    draining: AtomicBool,
}

impl Serial {
    pub(crate) fn new() -> Arc<Serial> {
        Arc::new(Serial {
            queue: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
        })
    }

    /// Queues `job` behind every job queued before it.
    pub(crate) fn push(self: &Arc<Self>, job: Job) {
        lock(&self.queue).push_back(job);
        if !self.draining.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            Notifier::Pool.deliver(move || me.drain());
        }
    }

    fn drain(&self) {
        loop {
            let job = lock(&self.queue).pop_front();
            let Some(job) = job else {
                self.draining.store(false, Ordering::Release);
                // A job queued after the pop and before the store found
                // `draining` set and left it to us.
                if lock(&self.queue).is_empty() || self.draining.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn serial_keeps_order_across_threads() {
        let s = Serial::new();
        let (tx, rx) = mpsc::channel();
        for i in 0..500 {
            let tx = tx.clone();
            s.push(Box::new(move || {
                if i % 97 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                tx.send(i).unwrap();
            }));
        }
        let got: Vec<i32> = (0..500)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn notifiers_run_jobs_and_survive_panics() {
        struct Queue(Mutex<Vec<Job>>);
        impl CompletionSink for Queue {
            fn deliver(&self, job: Job) {
                lock(&self.0).push(job);
            }
        }
        let (tx, rx) = mpsc::channel();
        for n in [Notifier::Pool, Notifier::Inline] {
            n.deliver(|| panic!("a job that panics"));
            let tx = tx.clone();
            n.deliver(move || tx.send(1).unwrap());
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        }
        // A sink gets the job and runs it when it likes.
        let q = Arc::new(Queue(Mutex::new(Vec::new())));
        let n = Notifier::Sink(q.clone());
        let tx2 = tx.clone();
        n.deliver(move || tx2.send(2).unwrap());
        assert!(rx.try_recv().is_err());
        let jobs = std::mem::take(&mut *lock(&q.0));
        assert_eq!(jobs.len(), 1);
        for j in jobs {
            j();
        }
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 2);
    }
}
