//! Small synchronisation helpers shared by the core.

#![forbid(unsafe_code)]

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every critical section in the core leaves
/// its data consistent, and a panic is caught at the FFI boundary.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) use crate::sys::{AsyncMutex, AsyncMutexGuard};
