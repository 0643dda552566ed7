//! Deadlines from durations a user or a peer gives, which may be as long as `Duration::MAX`.

use std::time::Duration;

use tokio::time::Instant;

/// Thirty years: a deadline further away than this is as good as none, and any clock can
/// count to it.
pub(crate) const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, with `d` capped at [`FAR`]: a `Duration::MAX` timeout, from a setting or from a
/// peer's request, never overflows the clock.
pub(crate) fn after(d: Duration) -> Instant {
    Instant::now() + d.min(FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_duration_is_a_far_deadline_not_a_panic() {
        let now = Instant::now();
        let far = after(Duration::MAX);
        assert!(far >= now + FAR);
        assert!(after(Duration::ZERO) >= now);
    }
}
