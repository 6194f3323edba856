//! The one background tokio runtime. Built lazily on first use; the worker
//! count can be chosen before that with [`set_worker_threads`] or the
//! `RGRPC_WORKER_THREADS` environment variable.

use once_cell::sync::OnceCell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::runtime::{Handle, Runtime};

static RUNTIME: OnceCell<Runtime> = OnceCell::new();
static WORKERS: AtomicUsize = AtomicUsize::new(0);
static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// Why the runtime could not be configured or started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// The runtime is already running; its worker count is fixed.
    AlreadyStarted,
    /// A worker count of 0 or above 1024.
    InvalidWorkerCount(usize),
    /// The operating system refused to start the threads.
    Start(String),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::AlreadyStarted => f.write_str(
                "the runtime is already running; set the worker count before the first channel is created",
            ),
            RuntimeError::InvalidWorkerCount(n) => {
                write!(f, "worker thread count {n} is out of range (1..=1024)")
            }
            RuntimeError::Start(e) => write!(f, "could not start the runtime: {e}"),
        }
    }
}

/// Sets the number of runtime worker threads. Must be called before the
/// runtime starts (before the first channel is created).
pub fn set_worker_threads(n: usize) -> Result<(), RuntimeError> {
    if n == 0 || n > 1024 {
        return Err(RuntimeError::InvalidWorkerCount(n));
    }
    let _g = CONFIG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if RUNTIME.get().is_some() {
        return Err(RuntimeError::AlreadyStarted);
    }
    WORKERS.store(n, Ordering::SeqCst);
    Ok(())
}

/// The worker count the runtime has or will have.
pub fn worker_threads() -> usize {
    let n = WORKERS.load(Ordering::SeqCst);
    if n != 0 {
        return n;
    }
    if let Some(n) = std::env::var("RGRPC_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=1024).contains(n))
    {
        return n;
    }
    std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2)
}

/// True once the runtime has been started.
pub fn is_started() -> bool {
    RUNTIME.get().is_some()
}

/// The runtime, started on first use.
pub fn runtime() -> Result<&'static Runtime, RuntimeError> {
    RUNTIME.get_or_try_init(|| {
        let _g = CONFIG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("rgrpc-worker")
            .on_thread_start(ignore_sigpipe_on_this_thread)
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Start(e.to_string()))
    })
}

/// Blocks SIGPIPE on the calling (library) thread. All socket writes run
/// on runtime threads; without this a peer closing a connection mid-write
/// would kill a C program that keeps the default SIGPIPE action. The
/// application's own threads and signal settings are left alone.
fn ignore_sigpipe_on_this_thread() {
    #[cfg(unix)]
    // SAFETY: a local, zero-initialised signal set; only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A handle to the runtime, starting it if needed.
pub fn handle() -> Result<&'static Handle, RuntimeError> {
    runtime().map(|r| r.handle())
}

/// Runs `fut` to completion on the calling thread.
///
/// From an ordinary thread this polls the future right here (no hand-off
/// to a worker for the caller's own work). From inside a runtime worker (a
/// callback), the worker is first marked as blocking so the runtime keeps
/// running other tasks. Returns `None` when called from a thread that runs
/// a different, single-threaded tokio runtime, where blocking is impossible.
pub fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let h = handle().ok()?;
    match Handle::try_current() {
        Err(_) => Some(h.block_on(fut)),
        Ok(cur) => {
            if cur.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                return None;
            }
            Some(tokio::task::block_in_place(|| h.block_on(fut)))
        }
    }
}
