//! croupier's arena: its `Pool`, `Balance` and `Balancer` beside tower's p2c, uniform random
//! and the ideal shared queue, under the faults real services see, in deterministic virtual
//! time.
//!
//! Every run is a scenario (S1–S10, [`Scenario`]) and a contender ([`contender::ALL`]) on a
//! current-thread tokio runtime whose clock is paused; arrivals, service times, faults and
//! reports are seeded, and virtual time moves to the nanosecond ([`clock`]), so the same seed
//! gives the same figures on every machine. croupier's own code is measured, not a model of
//! it: real `Pool`s of real workers whose `handle` waits the job's virtual service time, real
//! `Balance`s over tower services, real `Balancer`s over members whose load is reported late.
//!
//! ```
//! use arena::{contender, run, Scenario};
//!
//! let mut p = Scenario::S1.defaults();
//! p.seconds = 0.2;
//! let ideal = contender::by_name("ideal").unwrap();
//! let row = run::run(Scenario::S1, &p, &ideal);
//! assert_eq!(row.completed + row.failed + row.refused, row.sent);
//! ```

pub mod clock;
pub mod contender;
pub mod report;
pub mod run;
pub mod scenario;
pub mod world;

pub use crate::{
    contender::Contender,
    run::Row,
    scenario::{Params, Scenario, Service},
};

/// One run to make: a scenario, its parameters and a contender.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// The scenario.
    pub scenario: Scenario,
    /// Its parameters.
    pub params: Params,
    /// The contender.
    pub contender: Contender,
}

/// Runs every case on `threads` threads (each run on a runtime of its own); the rows come
/// back in the cases' order, whatever the threads.
#[must_use]
pub fn run_all(cases: &[Case], threads: usize) -> Vec<Row> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let next = AtomicUsize::new(0);
    let rows = parking_lot::Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(c) = cases.get(i) else { return };
                let row = run::run(c.scenario, &c.params, &c.contender);
                rows.lock()[i] = Some(row);
            });
        }
    });
    rows.into_inner()
        .into_iter()
        .map(|r| r.expect("every case ran"))
        .collect()
}
