//! The one background tokio runtime, built lazily on first use, in one of
//! two modes chosen before that with [`set_worker_threads`] or the
//! `RGRPC_WORKER_THREADS` environment variable:
//!
//! * **0 — caller-driven (the default).** A single-threaded runtime. A
//!   thread blocked in an rgrpc call drives the connections itself: it
//!   reads and writes the sockets and runs the timers while it waits, as
//!   C-core's pollers do, so a blocking call involves no hand-off between
//!   threads; it even polls its call's connection itself (see [`Lend`]),
//!   so a response is read and returned in one poll. When no caller is
//!   blocked, one background thread
//!   (`rgrpc-driver`) drives instead, for callbacks, async calls,
//!   keepalive and reconnects.
//! * **N ≥ 1 — N worker threads.** A multi-threaded runtime; blocking
//!   callers wait for the workers.
//!
//! Its life: not started, running, stopping, shut down — for good: nothing
//! starts it again ([`crate::shutdown()`] walks the last two steps). While
//! it runs, finding it costs one atomic load of the state; a blocked
//! caller also holds the read lock on it while it drives it.
//!
//! Library threads block SIGPIPE (see `sys::block_sigpipe_on_this_thread`).

#![forbid(unsafe_code)]

use crate::sync::lock;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::{Condvar, Mutex, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

/// The runtime's life, in [`STATE`]: not started yet...
const UNSTARTED: u8 = 0;
/// ... running ...
const RUNNING: u8 = 1;
/// ... stopping (shutdown is closing the channels and delivering the last
/// notifications: library code may still spawn; applications start
/// nothing) ...
const STOPPING: u8 = 2;
/// ... and gone.
const SHUT_DOWN: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(UNSTARTED);

/// The runtime. A blocked caller and the background driver hold the read
/// lock while they drive it; [`stop`] takes it out under the write lock
/// once they have left, and drops it, which joins its threads.
static RUNTIME: RwLock<Option<Runtime>> = RwLock::new(None);
/// A handle to spawn with, cloned out (this lock is never held while other
/// code runs, so no thread takes it twice).
static HANDLE: Mutex<Option<Handle>> = Mutex::new(None);
/// The background driver of the caller-driven runtime, joined by [`stop`].
static DRIVER_THREAD: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
/// usize::MAX = not chosen yet.
static WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);
static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// Hand-over between blocked callers and the background driver.
///
/// The hot path (a caller entering and leaving `block_on`) touches two
/// atomics and nothing else: the driver is woken only when the last caller
/// leaves while it sleeps without a deadline, or when a caller arrives
/// while it drives.
struct Driver {
    /// Callers currently inside `block_on`.
    callers: AtomicUsize,
    /// Bumped by every caller leaving: tells the lingering driver that the
    /// runtime was driven meanwhile.
    departures: AtomicUsize,
    /// True while the driver sleeps until the last caller leaves; cleared
    /// by the caller that wakes it.
    parked: Mutex<bool>,
    /// Signalled (under `parked`) when the last caller leaves.
    idle: Condvar,
    /// Tells the driving driver to step aside for a caller.
    step_aside: Notify,
    /// True while the driver runs the runtime.
    driving: AtomicBool,
    /// Tells the driver to end its thread (shutdown).
    stop: AtomicBool,
}

/// How long the background driver waits after the last caller left before
/// driving again.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

static DRIVER: Driver = Driver {
    callers: AtomicUsize::new(0),
    departures: AtomicUsize::new(0),
    parked: Mutex::new(false),
    idle: Condvar::new(),
    step_aside: Notify::const_new(),
    driving: AtomicBool::new(false),
    stop: AtomicBool::new(false),
};

thread_local! {
    /// True on the driver thread, and on a caller thread inside `block_on`:
    /// such a thread runs the runtime and cannot block on it again.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// True on the runtime's own threads (workers, blocking pool, the
    /// background driver).
    static LIBRARY_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Runs first on every thread the library starts.
fn library_thread_start() {
    crate::sys::block_sigpipe_on_this_thread();
    LIBRARY_THREAD.with(|l| l.set(true));
}

/// Why the runtime could not be configured or started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The runtime is already running; its mode is fixed.
    AlreadyStarted,
    /// A worker count above 1024.
    InvalidWorkerCount(usize),
    /// The operating system refused to start the threads.
    Start(String),
    /// The library was shut down ([`crate::shutdown()`]); it cannot be used
    /// again.
    ShutDown,
}

/// What operations refused after shutdown say.
pub const SHUT_DOWN_MESSAGE: &str =
    "the library was shut down (rgrpc_shutdown); it cannot be used again";

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::AlreadyStarted => f.write_str(
                "the runtime is already running; choose the worker threads before the first call",
            ),
            RuntimeError::InvalidWorkerCount(n) => {
                write!(f, "worker thread count {n} is out of range (0..=1024)")
            }
            RuntimeError::Start(e) => write!(f, "could not start the runtime: {e}"),
            RuntimeError::ShutDown => f.write_str(SHUT_DOWN_MESSAGE),
        }
    }
}

/// Chooses the runtime: 0 = caller-driven, N = N worker threads. Must be
/// called before the runtime starts (the first call).
pub fn set_worker_threads(n: usize) -> Result<(), RuntimeError> {
    if n > 1024 {
        return Err(RuntimeError::InvalidWorkerCount(n));
    }
    let _g = lock(&CONFIG_LOCK);
    match STATE.load(Ordering::Acquire) {
        UNSTARTED => {
            WORKERS.store(n, Ordering::SeqCst);
            Ok(())
        }
        RUNNING => Err(RuntimeError::AlreadyStarted),
        _ => Err(RuntimeError::ShutDown),
    }
}

/// The worker count the runtime has or will have (0 = caller-driven).
pub fn worker_threads() -> usize {
    let n = WORKERS.load(Ordering::SeqCst);
    if n != usize::MAX {
        return n;
    }
    std::env::var("RGRPC_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n <= 1024)
        .unwrap_or(0)
}

/// Starts the runtime unless it runs (or is stopping: library code may
/// still use it then). One atomic load when it runs.
#[inline]
pub fn ensure_started() -> Result<(), RuntimeError> {
    match STATE.load(Ordering::Acquire) {
        RUNNING | STOPPING => Ok(()),
        SHUT_DOWN => Err(RuntimeError::ShutDown),
        _ => start(),
    }
}

/// True once shutdown has begun: applications may start nothing more.
/// One atomic load.
#[inline]
pub fn is_shut_down() -> bool {
    STATE.load(Ordering::Acquire) >= STOPPING
}

/// True on a thread where shutting down would wait for the thread itself:
/// one of the runtime's threads (a callback on a worker or on the blocking
/// pool, the background driver), or a caller's thread while it drives the
/// runtime (an inline or message callback run inside a blocking call).
pub fn on_library_thread() -> bool {
    LIBRARY_THREAD.with(|l| l.get()) || DRIVING.with(|d| d.get())
}

#[cold]
fn start() -> Result<(), RuntimeError> {
    let _g = lock(&CONFIG_LOCK);
    match STATE.load(Ordering::Acquire) {
        UNSTARTED => {}
        RUNNING | STOPPING => return Ok(()),
        _ => return Err(RuntimeError::ShutDown),
    }
    let n = worker_threads();
    let rt = if n == 0 {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("rgrpc-blocking")
            .on_thread_start(library_thread_start)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .thread_name("rgrpc-worker")
            .on_thread_start(library_thread_start)
            .enable_all()
            .build()
    }
    .map_err(|e| RuntimeError::Start(e.to_string()))?;
    *lock(&HANDLE) = Some(rt.handle().clone());
    *RUNTIME.write().unwrap_or_else(|e| e.into_inner()) = Some(rt);
    if n == 0 {
        let spawned = std::thread::Builder::new()
            .name("rgrpc-driver".into())
            .spawn(drive_in_background);
        match spawned {
            Ok(j) => *lock(&DRIVER_THREAD) = Some(j),
            Err(e) => {
                *lock(&HANDLE) = None;
                let rt = RUNTIME.write().unwrap_or_else(|e| e.into_inner()).take();
                drop(rt);
                return Err(RuntimeError::Start(e.to_string()));
            }
        }
    }
    STATE.store(RUNNING, Ordering::Release);
    Ok(())
}

/// First step of shutdown: from now on applications start nothing
/// ([`is_shut_down`]); library code may still spawn until [`stop`]. False
/// when shutdown had already begun.
pub(crate) fn begin_shutdown() -> bool {
    let _g = lock(&CONFIG_LOCK);
    if STATE.load(Ordering::Acquire) >= STOPPING {
        return false;
    }
    STATE.store(STOPPING, Ordering::Release);
    true
}

/// Last step of shutdown: ends the background driver, waits for the
/// callers still driving the runtime to leave, and drops the runtime,
/// which stops its tasks and joins its threads. Must not run on a library
/// thread ([`on_library_thread`]).
pub(crate) fn stop() {
    DRIVER.stop.store(true, Ordering::SeqCst);
    DRIVER.step_aside.notify_one();
    {
        let _parked = lock(&DRIVER.parked);
        DRIVER.idle.notify_all();
    }
    let driver = lock(&DRIVER_THREAD).take();
    if let Some(j) = driver {
        let _ = j.join();
    }
    *lock(&HANDLE) = None;
    // Waits for blocked callers (their calls ended when the channels
    // closed).
    let rt = RUNTIME.write().unwrap_or_else(|e| e.into_inner()).take();
    STATE.store(SHUT_DOWN, Ordering::Release);
    // Outside the lock: a worker in a callback that tries to block finds
    // no runtime and returns, so that the drop can join it.
    drop(rt);
    // Futures submitted but never started: dropping them lets what they
    // hold report the end (a completion queue's tickets complete).
    let unstarted = std::mem::take(&mut *lock(&SUBMITTED));
    drop(unstarted);
}

/// A future handed in from outside the runtime by [`spawn_batched`].
type Submitted = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Futures handed in from outside the runtime, not yet started by the pump.
static SUBMITTED: Mutex<Vec<Submitted>> = Mutex::new(Vec::new());
/// Wakes the pump when [`SUBMITTED`] stops being empty.
static PUMP: Notify = Notify::const_new();
static PUMP_STARTED: AtomicBool = AtomicBool::new(false);

/// Spawns `fut` on the runtime, batching what threads outside the runtime
/// submit: tokio runs tasks spawned from outside one by one between the
/// tasks they wake (the connection's writer among them), so each would
/// cost a write of its own. Futures submitted in a burst (an event loop
/// starting the next operations for a batch of completions) are instead
/// started together by one pump task, inside the runtime: their frames
/// leave in one write, and the runtime is woken once per burst, not once
/// per operation. From inside the runtime it is a plain spawn.
pub fn spawn_batched(fut: impl Future<Output = ()> + Send + 'static) -> Result<(), RuntimeError> {
    let h = handle()?;
    if Handle::try_current().is_ok() {
        h.spawn(fut);
        return Ok(());
    }
    let first = {
        let mut v = lock(&SUBMITTED);
        v.push(Box::pin(fut));
        v.len() == 1
    };
    if !PUMP_STARTED.swap(true, Ordering::AcqRel) {
        h.spawn(async {
            loop {
                PUMP.notified().await;
                let batch = std::mem::take(&mut *lock(&SUBMITTED));
                for f in batch {
                    tokio::spawn(f);
                }
            }
        });
    }
    if first {
        PUMP.notify_one();
    }
    Ok(())
}

/// The background driver of the caller-driven runtime: drives it whenever
/// no caller is blocked in `block_on`, and steps aside when one arrives.
fn drive_in_background() {
    library_thread_start();
    DRIVING.with(|d| d.set(true));
    let stopping = || DRIVER.stop.load(Ordering::SeqCst);
    loop {
        // Wait until no caller drives, then until none has driven for a
        // whole LINGER: a caller making blocking calls back to back is not
        // interrupted by the driver stepping in and out between them, and
        // the callers never wake the driver meanwhile (background work waits
        // at most about LINGER).
        loop {
            if stopping() {
                return;
            }
            if DRIVER.callers.load(Ordering::SeqCst) > 0 {
                let mut parked = lock(&DRIVER.parked);
                *parked = true;
                // The last caller to leave clears `parked`: one wake-up per
                // park, however many calls follow.
                while *parked && DRIVER.callers.load(Ordering::SeqCst) > 0 && !stopping() {
                    parked = DRIVER.idle.wait(parked).unwrap_or_else(|e| e.into_inner());
                }
                *parked = false;
            }
            let seen = DRIVER.departures.load(Ordering::SeqCst);
            std::thread::sleep(LINGER);
            if DRIVER.callers.load(Ordering::SeqCst) == 0
                && DRIVER.departures.load(Ordering::SeqCst) == seen
            {
                break;
            }
        }
        let guard = RUNTIME.read().unwrap_or_else(|e| e.into_inner());
        let Some(rt) = guard.as_ref() else {
            return;
        };
        DRIVER.driving.store(true, Ordering::SeqCst);
        rt.block_on(async {
            loop {
                let aside = DRIVER.step_aside.notified();
                tokio::pin!(aside);
                aside.as_mut().enable();
                if DRIVER.callers.load(Ordering::SeqCst) > 0 || stopping() {
                    return;
                }
                aside.await;
            }
        });
        DRIVER.driving.store(false, Ordering::SeqCst);
    }
}

/// Marks the calling thread as a driving caller for its lifetime: the
/// background driver steps aside; undone on drop (also when the future
/// panics). Socket writes use MSG_NOSIGNAL (see `channel::nosigpipe`), so
/// the caller's signal mask is left alone.
struct CallerGuard;

impl CallerGuard {
    fn enter() -> CallerGuard {
        DRIVER.callers.fetch_add(1, Ordering::SeqCst);
        if DRIVER.driving.load(Ordering::SeqCst) {
            DRIVER.step_aside.notify_one();
        }
        DRIVING.with(|d| d.set(true));
        CallerGuard
    }
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        DRIVING.with(|d| d.set(false));
        DRIVER.departures.fetch_add(1, Ordering::SeqCst);
        if DRIVER.callers.fetch_sub(1, Ordering::SeqCst) == 1 {
            let mut parked = lock(&DRIVER.parked);
            if *parked {
                *parked = false;
                DRIVER.idle.notify_one();
            }
        }
    }
}

/// A handle to the runtime, starting it if needed (a clone: hot paths keep
/// one, as each channel does).
pub fn handle() -> Result<Handle, RuntimeError> {
    ensure_started()?;
    lock(&HANDLE).clone().ok_or(RuntimeError::ShutDown)
}

/// Runs `fut` to completion on the calling thread.
///
/// Caller-driven runtime: the calling thread drives the runtime (its
/// connections and timers) until `fut` completes. Multi-threaded runtime:
/// `fut` is polled here while the workers drive I/O; from inside a worker
/// (a callback) the worker is first marked as blocking.
///
/// Returns `None` where blocking is impossible: on a thread that is
/// already driving the runtime (e.g. inside a message callback in
/// caller-driven mode), inside a foreign single-threaded tokio runtime, or
/// once shutdown has begun ([`is_shut_down`]).
pub fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    // First: a driving thread holds the read lock already and must not ask
    // for it twice (behind a waiting shutdown that would never return).
    if DRIVING.with(|d| d.get()) {
        return None;
    }
    if STATE.load(Ordering::Acquire) != RUNNING {
        if is_shut_down() {
            return None;
        }
        start().ok()?;
    }
    // Held while this thread drives: shutdown waits for it.
    let guard = RUNTIME.read().unwrap_or_else(|e| e.into_inner());
    let rt = guard.as_ref()?;
    if rt.handle().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        if let Ok(cur) = Handle::try_current() {
            // Our own blocking-pool threads (callbacks) may drive; a thread
            // of some other runtime may not.
            if cur.id() != rt.handle().id() {
                return None;
            }
        }
        let fut = std::pin::pin!(fut);
        let mut lending = Lending {
            fut,
            conn: None,
            lent: false,
        };
        // Fast path: an operation that can complete at once (a message
        // already received) needs no driving at all. This first poll also
        // learns which connection the caller may drive while it waits.
        {
            let _ctx = rt.enter();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if let Poll::Ready(out) = lending.poll_fut(&mut cx) {
                return Some(out);
            }
        }
        let _guard = CallerGuard::enter();
        return Some(rt.block_on(lending));
    }
    match Handle::try_current() {
        Err(_) => Some(rt.handle().block_on(fut)),
        Ok(cur) => {
            if cur.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                return None;
            }
            Some(tokio::task::block_in_place(|| rt.handle().block_on(fut)))
        }
    }
}

/// Something a caller blocked in [`block_on`] may drive while it waits: the
/// connection its call runs on. Driving it on the caller's thread saves a
/// wake-up per message: the caller reads the frame and finds its message in
/// the same poll, instead of the connection task reading it and waking the
/// caller, after which tokio polls its I/O driver once more.
pub(crate) trait Lend: Send + Sync {
    /// Polls it for the caller whose waker `cx` carries; wake-ups go to
    /// that caller until `give_back`. False when it could not be polled
    /// (another thread is polling it, or it has ended).
    fn poll_lent(&self, cx: &mut Context<'_>) -> bool;
    /// The caller has stopped driving it.
    fn give_back(&self);
}

thread_local! {
    /// True while a blocked caller polls its future (not while the runtime
    /// runs other tasks on the same thread).
    static OFFERS_OPEN: Cell<bool> = const { Cell::new(false) };
    /// The first connection offered during that poll.
    static OFFERED: RefCell<Option<Arc<dyn Lend>>> = const { RefCell::new(None) };
}

/// Called by a call's future as it is polled: when a caller blocked in
/// [`block_on`] (caller-driven runtime) is polling it, the caller will
/// drive `conn` itself while it waits. Does nothing otherwise.
pub(crate) fn offer(conn: &Arc<dyn Lend>) {
    if OFFERS_OPEN.with(|o| o.get()) {
        OFFERED.with(|o| {
            let mut o = o.borrow_mut();
            if o.is_none() {
                *o = Some(conn.clone());
            }
        });
    }
}

/// Closes the offer window on drop (also when the polled future panics).
struct OfferWindow;

impl OfferWindow {
    fn open() -> OfferWindow {
        OFFERS_OPEN.with(|o| o.set(true));
        OfferWindow
    }
}

impl Drop for OfferWindow {
    fn drop(&mut self) {
        OFFERS_OPEN.with(|o| o.set(false));
    }
}

/// A blocked caller's future, which also drives the connection its call
/// offered (see [`Lend`]) whenever the future cannot go on.
struct Lending<'a, F: Future> {
    fut: Pin<&'a mut F>,
    conn: Option<Arc<dyn Lend>>,
    lent: bool,
}

impl<F: Future> Lending<'_, F> {
    fn poll_fut(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        let r = {
            let _window = OfferWindow::open();
            self.fut.as_mut().poll(cx)
        };
        let offered = OFFERED.with(|o| o.borrow_mut().take());
        if self.conn.is_none() {
            self.conn = offered;
        }
        r
    }

    fn give_back(&mut self) {
        if std::mem::take(&mut self.lent) {
            if let Some(c) = &self.conn {
                c.give_back();
            }
        }
    }
}

impl<F: Future> Future for Lending<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = this.poll_fut(cx) {
            this.give_back();
            return Poll::Ready(v);
        }
        let lent = this.conn.as_ref().is_some_and(|c| c.poll_lent(cx));
        if lent {
            this.lent = true;
            if let Poll::Ready(v) = this.poll_fut(cx) {
                this.give_back();
                return Poll::Ready(v);
            }
        }
        Poll::Pending
    }
}

impl<F: Future> Drop for Lending<'_, F> {
    fn drop(&mut self) {
        self.give_back();
    }
}
