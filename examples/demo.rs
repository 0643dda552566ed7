//! Deals picks from a `Balancer` over simple members under each policy, kills some members on
//! the way, and prints what each policy did: picks per second, how evenly it dealt, refreshes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use croupier::{Balancer, Member, Policy};

/// A member with a liveness flag and a load that the demo sets by hand.
#[derive(Clone, Debug)]
struct Seat {
    id: usize,
    up: Arc<AtomicBool>,
    load: Arc<AtomicUsize>,
}

impl Member for Seat {
    fn is_alive(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }
}

fn seats(n: usize) -> Vec<Seat> {
    (0..n)
        .map(|id| Seat {
            id,
            up: Arc::new(AtomicBool::new(true)),
            load: Arc::new(AtomicUsize::new(id % 4)),
        })
        .collect()
}

const PICKS: usize = 2_000_000;
const SIZE: usize = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "{:<12} {:>14} {:>10} {:>10} {:>10}  dealt per member",
        "policy", "picks/s", "ns/pick", "dead", "refreshes"
    );
    for policy in [Policy::RoundRobin, Policy::LeastLoaded, Policy::PowerOfTwo] {
        // The source hands out a fresh set of 8 whenever it is asked, as a supervisor would
        // after restarting its children.
        let generation = Arc::new(std::sync::Mutex::new(seats(SIZE)));
        let source = {
            let generation = Arc::clone(&generation);
            move || {
                let mut current = generation.lock().unwrap();
                if current.iter().any(|s| !s.is_alive()) {
                    *current = seats(SIZE);
                }
                current.clone()
            }
        };
        let balancer = Balancer::builder()
            .policy(policy)
            .seed(1)
            .source(source)
            .build()?;

        let mut dealt = [0_usize; SIZE];
        let start = Instant::now();
        for i in 0..PICKS {
            // Kill one member every 250k picks: the third death crosses the 0.8 ratio.
            if i % 250_000 == 0 && i > 0 {
                let members = balancer.members();
                if let Some(victim) = members.iter().find(|s| s.is_alive()) {
                    victim.up.store(false, Ordering::Relaxed);
                }
            }
            dealt[balancer.pick()?.id] += 1;
        }
        let elapsed = start.elapsed();
        let stats = balancer.stats();
        println!(
            "{:<12} {:>14.0} {:>10.1} {:>10} {:>10}  {:?}",
            format!("{policy:?}"),
            PICKS as f64 / elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 / PICKS as f64,
            stats.skipped_dead,
            stats.refreshes,
            dealt
        );
    }
    Ok(())
}
