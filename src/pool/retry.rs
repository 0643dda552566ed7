//! The retry budget that [`Pool::call_idempotent`](super::Pool::call_idempotent) and
//! [`Pool::call_hedged`](super::Pool::call_hedged) spend: retries and hedges stay a bounded
//! share of the calls, so that a failing worker cannot make every call several.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::time::Instant;

/// How many extra attempts (retries and hedges) a pool may make: a share of its calls plus a
/// few a second (Finagle's retry budget, as a token bucket).
///
/// Each call of `call_idempotent` or `call_hedged` deposits [`ratio`](RetryBudget::ratio) of
/// a token; a reserve adds
/// [`min_per_second`](RetryBudget::min_per_second) tokens a second (on tokio's clock), so that
/// a pool with few calls can still retry; each retry or hedge withdraws a whole token, and
/// none is made without one. The balance is capped at ten seconds' worth of the reserve plus
/// the deposits of `10 / ratio` calls, so that a long calm spell does not store up a storm.
/// Defaults, as Finagle's: 20 % of the calls plus 10 a second.
///
/// # Example
///
/// ```
/// use croupier::RetryBudget;
///
/// let budget = RetryBudget::default().ratio(0.1).min_per_second(0);
/// assert_eq!(budget.ratio_value(), 0.1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            per_second: 10,
        }
    }
}

impl RetryBudget {
    /// Extra attempts as a share of the calls, in `[0, 1000]` (NaN is 0).
    #[must_use]
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        self
    }

    /// Extra attempts allowed a second however few the calls (at most 10⁶).
    #[must_use]
    pub fn min_per_second(mut self, n: u32) -> Self {
        self.per_second = n.min(1_000_000);
        self
    }

    /// The share of the calls, as set.
    #[must_use]
    pub fn ratio_value(&self) -> f64 {
        self.ratio
    }
}

/// Thousandths of a token.
const TOKEN: i64 = 1000;

/// A pool's budget: its balance in thousandths of a token.
#[derive(Debug)]
pub(crate) struct Budget {
    deposit: i64,
    per_second: i64,
    cap: i64,
    balance: AtomicI64,
    /// When the reserve was last added to the balance.
    refilled: Mutex<Instant>,
}

impl Budget {
    pub(crate) fn new(config: RetryBudget) -> Self {
        let deposit = (config.ratio * TOKEN as f64) as i64;
        let per_second = i64::from(config.per_second) * TOKEN;
        // The deposits of 10 / ratio calls are ten tokens, whatever the ratio (computed as
        // such: `10 / ratio` calls truncated lose part of a token, and none at all above 10).
        let stored = if deposit > 0 { 10 * TOKEN } else { 0 };
        let cap = per_second * 10 + stored;
        Self {
            deposit,
            per_second,
            cap,
            // A second's reserve to start with.
            balance: AtomicI64::new(per_second.min(cap)),
            refilled: Mutex::new(Instant::now()),
        }
    }

    /// A call was made: its share of a token goes in.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.deposit != 0 {
            let before = self.balance.fetch_add(self.deposit, Relaxed);
            if before + self.deposit > self.cap {
                self.balance.fetch_min(self.cap, Relaxed);
            }
        }
    }

    /// Takes a token for a retry or a hedge; false when there is none.
    pub(crate) fn withdraw(&self) -> bool {
        self.refill();
        let mut balance = self.balance.load(Relaxed);
        while balance >= TOKEN {
            match self
                .balance
                .compare_exchange_weak(balance, balance - TOKEN, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => balance = now,
            }
        }
        false
    }

    /// Adds the reserve earned since the last refill.
    fn refill(&self) {
        if self.per_second == 0 {
            return;
        }
        let mut at = self.refilled.lock();
        let now = Instant::now();
        let earned = now.saturating_duration_since(*at).as_secs_f64() * self.per_second as f64;
        if earned >= 1.0 {
            *at = now;
            let before = self.balance.fetch_add(earned as i64, Relaxed);
            if before + earned as i64 > self.cap {
                self.balance.fetch_min(self.cap, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_a_share_of_the_calls_plus_a_reserve_a_second() {
        let b = Budget::new(RetryBudget::default().ratio(0.2).min_per_second(0));
        assert!(!b.withdraw(), "nothing earned yet");
        for _ in 0..10 {
            b.deposit();
        }
        assert!(b.withdraw() && b.withdraw());
        assert!(!b.withdraw(), "two tokens from ten calls at 20 %");
        // Capped at 10 / ratio calls' deposits: 10 tokens.
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!((0..20).filter(|_| b.withdraw()).count(), 10);

        // At 100 %, a whole token a call: still capped at 10 / ratio calls' deposits.
        let b = Budget::new(RetryBudget::default().ratio(1.0).min_per_second(0));
        for _ in 0..101 {
            b.deposit();
        }
        assert_eq!((0..20).filter(|_| b.withdraw()).count(), 10);
        // Ten tokens at any ratio: 30 % (33⅓ calls' worth), and 100 retries a call, where one
        // call's deposit is over the cap at once.
        for ratio in [0.3, 100.0] {
            let b = Budget::new(RetryBudget::default().ratio(ratio).min_per_second(0));
            for _ in 0..1_000 {
                b.deposit();
            }
            assert_eq!(
                (0..200).filter(|_| b.withdraw()).count(),
                10,
                "ratio {ratio}"
            );
            let b = Budget::new(RetryBudget::default().ratio(ratio).min_per_second(0));
            b.deposit();
            assert!(
                (0..200).filter(|_| b.withdraw()).count() <= 10,
                "ratio {ratio}"
            );
        }
        assert_eq!(RetryBudget::default().ratio_value(), 0.2);
        assert_eq!(RetryBudget::default().ratio(0.5).ratio_value(), 0.5);

        let b = Budget::new(RetryBudget::default().ratio(0.0).min_per_second(10));
        assert_eq!(
            (0..20).filter(|_| b.withdraw()).count(),
            10,
            "a second's reserve"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| b.withdraw()).count(), 5);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(
            (0..200).filter(|_| b.withdraw()).count(),
            100,
            "ten seconds' worth"
        );
    }
}
