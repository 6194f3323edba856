//! Reconnect backoff (`doc/connection-backoff.md` in grpc/grpc): exponential with jitter,
//! and a minimum connect timeout.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Distinguishes generators seeded in the same nanosecond.
static SEQ: AtomicU64 = AtomicU64::new(0x9E37_79B9);

/// Backoff settings (C-core option names in brackets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// First backoff (`grpc.initial_reconnect_backoff_ms`, default 1 s).
    pub initial: Duration,
    /// Growth per failed attempt (1.6).
    pub multiplier: f64,
    /// Random spread, as a fraction of the backoff (0.2).
    pub jitter: f64,
    /// Largest backoff (`grpc.max_reconnect_backoff_ms`, default 120 s).
    pub max: Duration,
    /// Least time a connection attempt is given
    /// (`grpc.min_reconnect_backoff_ms`, default 20 s).
    pub min_connect_timeout: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            multiplier: 1.6,
            jitter: 0.2,
            max: Duration::from_secs(120),
            min_connect_timeout: Duration::from_secs(20),
        }
    }
}

/// The state of one sequence of connection attempts.
#[derive(Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    /// The un-jittered backoff of the next attempt; None before the first.
    current: Option<Duration>,
    rng: u64,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ SEQ.fetch_add(0x2545_F491_4F6C_DD1D, std::sync::atomic::Ordering::Relaxed);
        Backoff {
            cfg,
            current: None,
            rng: seed | 1,
        }
    }

    /// Starts a new sequence (after a successful connection, or a reset).
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// For the attempt about to start: how long after its start the next
    /// attempt may begin, and how long this attempt may take to connect
    /// (`max(backoff, min_connect_timeout)`).
    pub fn next_attempt(&mut self) -> (Duration, Duration) {
        let base = match self.current {
            None => self.cfg.initial,
            Some(c) => c.mul_f64(self.cfg.multiplier).min(self.cfg.max),
        };
        self.current = Some(base);
        let spread = base.as_secs_f64() * self.cfg.jitter;
        let delta = (self.unit() * 2.0 - 1.0) * spread;
        let wait = Duration::from_secs_f64((base.as_secs_f64() + delta).max(0.0));
        (wait, wait.max(self.cfg.min_connect_timeout))
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_and_caps() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut base = 1.0f64;
        for i in 0..20 {
            let (wait, timeout) = b.next_attempt();
            let w = wait.as_secs_f64();
            assert!(
                w >= base * 0.8 - 1e-9 && w <= base * 1.2 + 1e-9,
                "attempt {i}: {w} vs {base}"
            );
            assert!(timeout >= Duration::from_secs(20) && timeout >= wait);
            base = (base * 1.6).min(120.0);
        }
        b.reset();
        let (w, _) = b.next_attempt();
        assert!(w <= Duration::from_secs_f64(1.2));
    }

    #[test]
    fn attempts_started_together_spread_out() {
        let mut waits: Vec<u128> = (0..50)
            .map(|_| {
                let mut b = Backoff::new(BackoffConfig::default());
                b.next_attempt();
                b.next_attempt().0.as_micros()
            })
            .collect();
        waits.sort();
        waits.dedup();
        assert!(
            waits.len() > 40,
            "jitter must spread backoffs: {} distinct",
            waits.len()
        );
    }
}
