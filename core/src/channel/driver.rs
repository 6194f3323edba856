//! Who polls a connection's HTTP/2 state machine: its own runtime task, and
//! also, while it waits, a caller blocked on one of the connection's calls
//! (see [`crate::rt::Lend`]).
//!
//! Without the second, a blocked `recv` is woken twice per message: the
//! socket wakes the connection task, which reads the frame and then wakes
//! the caller's future, and tokio polls its I/O driver once more before it
//! polls that future. A caller that polls the connection itself reads the
//! frame and finds its message in the same poll.
//!
//! Every poll, whoever makes it, hands h2 and the socket one waker (the
//! [`Hub`]'s): it wakes the caller that is lending itself, if there is one,
//! and otherwise the task. So a caller that stops lending never leaves a
//! registration behind: it tells the hub, and the task is scheduled to
//! take over.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use crate::rt::Lend;
use crate::sync::lock;

/// The lock if it is free (a poisoned one is taken as it is).
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Where wake-ups for the connection go.
#[derive(Default)]
struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// The connection task's waker (from its latest poll).
    task: Option<Waker>,
    /// The caller driving the connection while it waits, if any.
    caller: Option<Waker>,
}

impl Wake for Hub {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let s = lock(&self.state);
        // Before the task's first poll nobody needs waking: it polls first.
        if let Some(w) = s.caller.as_ref().or(s.task.as_ref()) {
            w.wake_by_ref();
        }
    }
}

/// A connection future (`h2::client::Connection`) shared between its task
/// and lending callers.
pub(crate) struct Driver<C: Future> {
    conn: Mutex<Slot<C>>,
    hub: Arc<Hub>,
    waker: Waker,
    /// The task is gone (finished or aborted): nobody polls any more.
    closed: AtomicBool,
    /// The task found the connection busy (a caller polling it): the
    /// caller wakes it as soon as it lets go.
    task_missed: AtomicBool,
}

enum Slot<C: Future> {
    Live(C),
    /// Ended; the outcome until the task takes it (when a caller polled the
    /// connection to its end).
    Ended(Option<C::Output>),
}

impl<C> Driver<C>
where
    C: Future + Unpin + Send + 'static,
    C::Output: Send,
{
    pub(crate) fn new(conn: C) -> Arc<Self> {
        let hub = Arc::new(Hub::default());
        Arc::new(Driver {
            conn: Mutex::new(Slot::Live(conn)),
            waker: Waker::from(hub.clone()),
            hub,
            closed: AtomicBool::new(false),
            task_missed: AtomicBool::new(false),
        })
    }

    /// The connection's own task: polls until the connection ends. Dropping
    /// it (abort) drops the connection, whoever else holds the driver.
    pub(crate) fn run(self: Arc<Self>) -> impl Future<Output = C::Output> + Send {
        let guard = TaskGuard(self);
        std::future::poll_fn(move |cx| guard.0.poll_task(cx))
    }

    fn poll_task(&self, cx: &mut Context<'_>) -> Poll<C::Output> {
        {
            let mut s = lock(&self.hub.state);
            if !s.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                s.task = Some(cx.waker().clone());
            }
        }
        // Set before trying: a caller that holds the lock sees it when it
        // lets go, and wakes us then.
        self.task_missed.store(true, Ordering::SeqCst);
        let Some(mut slot) = try_lock(&self.conn) else {
            return Poll::Pending;
        };
        self.task_missed.store(false, Ordering::SeqCst);
        match &mut *slot {
            Slot::Live(conn) => {
                let r = Pin::new(conn).poll(&mut Context::from_waker(&self.waker));
                if r.is_ready() {
                    *slot = Slot::Ended(None);
                }
                r
            }
            Slot::Ended(out) => out.take().map_or(Poll::Pending, Poll::Ready),
        }
    }

    fn wake_task(&self) {
        if let Some(t) = &lock(&self.hub.state).task {
            t.wake_by_ref();
        }
    }
}

impl<C> Lend for Driver<C>
where
    C: Future + Unpin + Send + 'static,
    C::Output: Send,
{
    /// Polls the connection for a blocked caller, with wake-ups sent to the
    /// caller until [`Lend::give_back`]. False when it could not (another
    /// thread is polling it, or it has ended).
    fn poll_lent(&self, cx: &mut Context<'_>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let Some(mut slot) = try_lock(&self.conn) else {
            return false;
        };
        let Slot::Live(conn) = &mut *slot else {
            return false;
        };
        {
            let mut s = lock(&self.hub.state);
            if !s.caller.as_ref().is_some_and(|c| c.will_wake(cx.waker())) {
                s.caller = Some(cx.waker().clone());
            }
        }
        let ended = match Pin::new(conn).poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(out) => {
                *slot = Slot::Ended(Some(out));
                true
            }
            Poll::Pending => false,
        };
        if self.closed.load(Ordering::Acquire) {
            *slot = Slot::Ended(None);
        }
        drop(slot);
        // The task reports an end, and takes over a poll it found busy.
        if self.task_missed.swap(false, Ordering::SeqCst) || ended {
            self.wake_task();
        }
        true
    }

    /// The caller stops driving: wake-ups go to the task again. The task is
    /// also scheduled now (on a caller's thread that is a queue push): it
    /// takes over whatever happened since the caller's last poll, and a
    /// send the caller makes next finds it
    /// scheduled already, so h2's wake-up for that send costs nothing (from
    /// outside the runtime it would cost an eventfd write to the I/O
    /// driver).
    fn give_back(&self) {
        lock(&self.hub.state).caller = None;
        self.wake_task();
    }
}

struct TaskGuard<C: Future>(Arc<Driver<C>>);

impl<C: Future> Drop for TaskGuard<C> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        // A lending caller that holds the lock drops it after its poll.
        if let Some(mut slot) = try_lock(&self.0.conn) {
            *slot = Slot::Ended(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    /// A driver over a oneshot receiver (the "connection") whose task has
    /// been polled once, with the task's wake-up counter and waker.
    #[allow(clippy::type_complexity)]
    fn started(
        rx: oneshot::Receiver<u32>,
    ) -> (
        Arc<Driver<oneshot::Receiver<u32>>>,
        Pin<Box<impl Future<Output = Result<u32, oneshot::error::RecvError>>>>,
        Arc<Count>,
        Waker,
    ) {
        let d = Driver::new(rx);
        let mut task = Box::pin(d.clone().run());
        let (task_wakes, task_waker) = waker();
        assert!(task
            .as_mut()
            .poll(&mut Context::from_waker(&task_waker))
            .is_pending());
        (d, task, task_wakes, task_waker)
    }

    #[test]
    fn wake_ups_follow_the_lender_and_return_to_the_task() {
        let (tx, rx) = oneshot::channel::<u32>();
        let (d, mut task, task_wakes, task_waker) = started(rx);
        let (caller_wakes, caller_waker) = waker();
        // A caller lends itself: the next wake-up is the caller's.
        assert!(d.poll_lent(&mut Context::from_waker(&caller_waker)));
        tx.send(7).unwrap();
        assert_eq!(caller_wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(task_wakes.0.load(Ordering::SeqCst), 0);
        // It stops lending: the task is scheduled to take over.
        d.give_back();
        assert_eq!(task_wakes.0.load(Ordering::SeqCst), 1);
        match task.as_mut().poll(&mut Context::from_waker(&task_waker)) {
            Poll::Ready(Ok(7)) => {}
            other => panic!("task saw {other:?}"),
        }
    }

    #[test]
    fn a_caller_that_polls_it_to_the_end_hands_the_outcome_to_the_task() {
        let (tx, rx) = oneshot::channel::<u32>();
        let (d, mut task, task_wakes, task_waker) = started(rx);
        let (_, caller_waker) = waker();
        tx.send(9).unwrap();
        let before = task_wakes.0.load(Ordering::SeqCst);
        assert!(d.poll_lent(&mut Context::from_waker(&caller_waker)));
        assert!(
            task_wakes.0.load(Ordering::SeqCst) > before,
            "task not woken"
        );
        // Nothing left to lend.
        assert!(!d.poll_lent(&mut Context::from_waker(&caller_waker)));
        d.give_back();
        match task.as_mut().poll(&mut Context::from_waker(&task_waker)) {
            Poll::Ready(Ok(9)) => {}
            other => panic!("task saw {other:?}"),
        }
    }

    #[test]
    fn dropping_the_task_drops_the_connection() {
        let (tx, rx) = oneshot::channel::<u32>();
        let d = Driver::new(rx);
        let task = d.clone().run();
        assert!(!tx.is_closed());
        drop(task);
        // The receiver (the "connection") is gone although `d` is alive.
        assert!(tx.is_closed());
        let (_, caller_waker) = waker();
        assert!(!d.poll_lent(&mut Context::from_waker(&caller_waker)));
    }
}
