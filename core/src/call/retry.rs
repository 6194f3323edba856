//! Retries (gRFC A6): when a failed attempt is tried again, how long to
//! wait first, and the channel's retry throttle.
//!
//! Two kinds of retry:
//! * transparent: the request never reached the server's application (a
//!   stream refused with `REFUSED_STREAM`, or above a GOAWAY's last stream
//!   id; the connection failing before the request left is retried where
//!   the stream is opened). Always on (unless `grpc.enable_retries` is 0),
//!   not counted as an attempt, no backoff; a refused stream once per call,
//!   then the retry policy decides.
//! * by the service config's `retryPolicy`: a retryable status code before
//!   the call committed (response headers, or a replay buffer overflow),
//!   with A6's randomised exponential backoff, the server's
//!   `grpc-retry-pushback-ms`, `maxAttempts` and the channel's throttle.
//!
//! This module decides; `attempt.rs` does (it keeps the sent frames and
//! opens the next stream).

use super::options::CallSpec;
use crate::channel::service_config::{RetryPolicy, RetryThrottling};
use crate::status::{Code, Status};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The trailing metadata key a server sets to ask for a delay (or, with a
/// negative or unreadable value, for no retry).
pub(crate) const PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";

/// The request header telling the server how many attempts came before.
pub(crate) const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// Most transparent retries of a stream that never left the client (A6
/// allows them until the deadline; a bound keeps a broken connection that
/// keeps being picked from spinning).
pub(crate) const MAX_UNSENT_RETRIES: u32 = 16;

/// A channel's retry throttle (A6 `retryThrottling`): tokens in
/// thousandths, from `max_tokens` down to 0; a failure takes one token, a
/// success gives `token_ratio`; retries (and hedges after the first) go only
/// while more than half the tokens are left.
pub(crate) struct Throttle {
    milli: AtomicU32,
    max_milli: u32,
    ratio_milli: u32,
}

impl Throttle {
    pub(crate) fn new(cfg: &RetryThrottling) -> Throttle {
        let max_milli = cfg.max_tokens * 1000;
        Throttle {
            milli: AtomicU32::new(max_milli),
            max_milli,
            ratio_milli: (cfg.token_ratio * 1000.0).round() as u32,
        }
    }

    /// A retryable failure (or a pushback saying not to retry).
    pub(crate) fn failure(&self) {
        let _ = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(1000))
            });
    }

    /// A call that succeeded.
    pub(crate) fn success(&self) {
        let max = self.max_milli;
        let add = self.ratio_milli;
        let _ = self
            .milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some((t + add).min(max))
            });
    }

    /// More than half the tokens are left: a retry may go.
    pub(crate) fn allows(&self) -> bool {
        self.milli.load(Ordering::Acquire) > self.max_milli / 2
    }

    /// The tokens left, in thousandths (for the channel snapshot and tests).
    pub(crate) fn milli_tokens(&self) -> u32 {
        self.milli.load(Ordering::Acquire)
    }
}

/// Why an attempt ended before the call committed.
pub(crate) enum Failure {
    /// The server refused the stream before its application saw it
    /// (`REFUSED_STREAM`, or the stream was above a GOAWAY's last stream
    /// id): the status it maps to, if it is not retried.
    Refused(Status),
    /// Any other failure: the server's status, or one made locally (a
    /// failed pick, a broken connection, an HTTP error).
    Status(Status),
}

/// What comes after a failed attempt.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Open another stream after `delay`. `counted`: it counts against
    /// `maxAttempts` (false for a transparent retry).
    Retry { delay: Duration, counted: bool },
    /// The call ends with this status.
    Stop(Status),
}

/// The retry history of one call.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Attempts counted against `maxAttempts` so far (the first included,
    /// once it has been opened).
    pub(crate) counted: u32,
    /// The one transparent retry of a refused stream has been used.
    pub(crate) refused_retried: bool,
    /// Backoff steps since the start or the last pushback.
    backoff_step: u32,
}

impl Progress {
    /// The value of `grpc-previous-rpc-attempts` for the next stream: the
    /// counted attempts before it (none for the first).
    pub(crate) fn previous_attempts(&self) -> u32 {
        self.counted
    }
}

/// The server's pushback in `status`'s trailers: None when absent,
/// `Some(None)` for "do not retry" (a negative or unreadable value),
/// `Some(Some(delay))` otherwise.
pub(crate) fn pushback(status: &Status) -> Option<Option<Duration>> {
    let v = status.trailers().find(PUSHBACK_KEY)?;
    let parsed = std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    Some(match parsed {
        Some(ms) if ms >= 0 => Some(Duration::from_millis(ms as u64)),
        _ => None,
    })
}

/// A6's backoff before the retry after `step` earlier backoffs:
/// `min(initial * multiplier^step, max)` times a random factor in
/// [0.8, 1.2).
fn backoff(policy: &RetryPolicy, step: u32) -> Duration {
    let base = policy.initial_backoff.as_secs_f64()
        * policy.backoff_multiplier.powi(step.min(1024) as i32);
    let capped = base.min(policy.max_backoff.as_secs_f64());
    Duration::from_secs_f64(capped * (0.8 + 0.4 * fastrand::f64()))
}

/// Decides what follows a failed attempt of a call that has not committed.
pub(crate) fn decide(spec: &CallSpec, progress: &mut Progress, failure: Failure) -> Decision {
    if !spec.channel.opts.enable_retries {
        return Decision::Stop(match failure {
            Failure::Refused(s) | Failure::Status(s) => s,
        });
    }
    let status = match failure {
        Failure::Refused(s) => {
            if !progress.refused_retried {
                progress.refused_retried = true;
                return Decision::Retry {
                    delay: Duration::ZERO,
                    counted: false,
                };
            }
            s
        }
        Failure::Status(s) => s,
    };
    let Some(policy) = spec.retry_policy() else {
        return Decision::Stop(status);
    };
    if status.code() == Code::Ok || !policy.retryable_status_codes.contains(&status.code()) {
        return Decision::Stop(status);
    }
    let throttle = spec.channel.retry_throttle();
    let push = pushback(&status);
    // A retryable failure, or a pushback saying not to retry, counts
    // against the throttle (A6: other failures do not).
    if let Some(t) = throttle {
        t.failure();
    }
    let delay = match push {
        Some(None) => return Decision::Stop(status),
        Some(Some(d)) => {
            progress.backoff_step = 0;
            d
        }
        None => {
            let d = backoff(policy, progress.backoff_step);
            progress.backoff_step += 1;
            d
        }
    };
    if progress.counted >= policy.max_attempts {
        return Decision::Stop(status);
    }
    if throttle.is_some_and(|t| !t.allows()) {
        return Decision::Stop(status);
    }
    Decision::Retry {
        delay,
        counted: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Metadata;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![Code::Unavailable],
        }
    }

    #[test]
    fn backoff_stays_within_a6_bounds() {
        let p = policy();
        for (step, base) in [(0u32, 100.0), (1, 200.0), (2, 300.0), (9, 300.0)] {
            for _ in 0..200 {
                let d = backoff(&p, step).as_secs_f64() * 1000.0;
                assert!(d >= base * 0.8 - 1e-9 && d < base * 1.2, "{step}: {d}");
            }
        }
    }

    #[test]
    fn pushback_values() {
        let with = |v: &str| {
            let mut md = Metadata::new();
            md.push_unchecked(PUSHBACK_KEY, bytes::Bytes::copy_from_slice(v.as_bytes()));
            pushback(&Status::with_trailers(Code::Unavailable, "", md))
        };
        assert_eq!(with("250"), Some(Some(Duration::from_millis(250))));
        assert_eq!(with("0"), Some(Some(Duration::ZERO)));
        assert_eq!(with("-1"), Some(None));
        assert_eq!(with("abc"), Some(None));
        assert_eq!(with("99999999999"), Some(None));
        assert_eq!(pushback(&Status::new(Code::Unavailable, "")), None);
    }

    #[test]
    fn throttle_follows_a6_arithmetic() {
        let t = Throttle::new(&RetryThrottling {
            max_tokens: 10,
            token_ratio: 0.1,
        });
        assert!(t.allows());
        for _ in 0..5 {
            t.failure();
        }
        // 5 tokens left: not more than half of 10.
        assert_eq!(t.milli_tokens(), 5000);
        assert!(!t.allows());
        t.success();
        assert_eq!(t.milli_tokens(), 5100);
        assert!(t.allows());
        for _ in 0..100 {
            t.success();
        }
        assert_eq!(t.milli_tokens(), 10_000);
        for _ in 0..20 {
            t.failure();
        }
        assert_eq!(t.milli_tokens(), 0);
    }
}
