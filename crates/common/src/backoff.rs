//! Retry delays: doubling from a minimum to a maximum, with full jitter so that many clients
//! retrying the same service spread out.

use std::time::Duration;

/// Retry delays after a failure: doubling from `min` to `max`, with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { min: Duration::from_millis(200), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): uniformly in [ceiling/2, ceiling].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.min.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(2) };
        for attempt in 0..20 {
            let ceiling = Duration::from_millis(100 * (1u64 << attempt.min(16))).min(Duration::from_secs(2));
            let d = b.delay(attempt);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }
}
