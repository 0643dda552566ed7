//! One run (a scenario and a contender) on its own paused runtime, and what it measured.

use std::sync::{
    atomic::{AtomicUsize, Ordering::Relaxed},
    Arc, Once,
};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;

use crate::{
    clock,
    contender::{self, Contender, Outcome},
    scenario::{self, Params, Scenario, SEC},
    world::{Job, Ledger, PLANNED_CRASH},
};

/// How long a run waits for its last answers after the arrivals end, in virtual seconds;
/// requests still unanswered then are counted `lost`.
pub const GRACE_SECONDS: u64 = 600;

/// What one contender did in one scenario: a row of the table and of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `"s1"` … `"s10"`.
    pub scenario: &'static str,
    /// The contender's name.
    pub contender: &'static str,
    /// `"pool"`, `"balance"`, `"remote"`, `"tower"`, `"model"`, `"ideal"` or `"random"`.
    pub layer: &'static str,
    /// Whether this row is its builder with only the seed set.
    pub default: bool,
    /// Median latency from arrival, over requests that succeeded (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// 99.9th percentile (ms).
    pub p999_ms: f64,
    /// Mean time from arrival to start of service (ms).
    pub mean_wait_ms: f64,
    /// Mean service time (ms).
    pub mean_service_ms: f64,
    /// Requests offered.
    pub sent: u64,
    /// Served.
    pub completed: u64,
    /// The caller got a member's error (after any retries).
    pub failed: u64,
    /// The balancer refused before sending.
    pub refused: u64,
    /// Unanswered after the grace period (always 0 unless a contender hangs).
    pub lost: u64,
    /// Share of requests that reached the faulty member at least once.
    pub share_to_faulty: f64,
    /// Attempts beyond each request's first (retries and hedges), summed.
    pub extra_attempts: u64,
    /// Requests served within the arrival window, as a fraction of what the members could
    /// serve in it.
    pub goodput: f64,
    /// The most any member received in one 100 ms window of arrivals, as a multiple of an
    /// even share of that window (requests ÷ members); windows of fewer than 10 requests a
    /// member are skipped. 1 is perfectly even; herding on one member shows as a high value.
    pub peak_window_share: f64,
    /// With keys (S8): the share of the requests of keys other than the hot one that went to
    /// their key's usual member (the one that received most of that key's requests); 0
    /// without keys.
    pub keys_at_home: f64,
    /// With a member joining (S7): the most the new member's share of arrivals in one
    /// second of its first 30 strayed from the share [`contender::ramp`] gives it, in
    /// percentage points; 0 without one.
    pub ramp_error_pp: f64,
    /// With a member joining (S7): p99 of the requests that arrived in the new member's first
    /// 30 s ÷ p99 of those that arrived after; 0 without one.
    pub ramp_p99_ratio: f64,
    /// Members.
    pub members: u64,
    /// Offered load (fraction of capacity).
    pub load: f64,
    /// Virtual seconds of arrivals.
    pub seconds: f64,
}

/// Rounds to 1/10 000 (of a millisecond or of a share): the JSON stays short, and exact.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn quiet_planned_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() == Some(&PLANNED_CRASH) {
                return;
            }
            previous(info);
        }));
    });
}

/// Runs `contender` through `scenario` with parameters `p`.
#[must_use]
pub fn run(scenario: Scenario, p: &Params, contender: &Contender) -> Row {
    quiet_planned_crashes();
    let specs = scenario::members(scenario, p);
    let requests = Arc::new(scenario::workload(scenario, p, &specs));
    let n = requests.len();
    let rt = clock::runtime();
    let (outcomes, ledger) = rt.block_on(async {
        clock::install();
        let driver = tokio::spawn(clock::drive());
        let ledger = Arc::new(Ledger::new(n));
        let setup = contender::setup(contender, scenario, p, &specs, &ledger);
        let outcomes: Arc<Mutex<Vec<Option<Outcome>>>> = Arc::new(Mutex::new(vec![None; n]));
        let remaining = Arc::new(AtomicUsize::new(n));
        let all_done = Arc::new(Notify::new());
        let arrivals = {
            let (requests, outcomes) = (Arc::clone(&requests), Arc::clone(&outcomes));
            let (remaining, all_done) = (Arc::clone(&remaining), Arc::clone(&all_done));
            let dispatch = Arc::clone(&setup.dispatch);
            tokio::spawn(async move {
                for (i, req) in requests.iter().enumerate() {
                    clock::sleep_until(req.at).await;
                    let job = Job {
                        id: u32::try_from(i).expect("under 2^32 requests"),
                        size: req.size,
                    };
                    let answer = dispatch.dispatch(job, req);
                    let (outcomes, remaining, all_done) = (
                        Arc::clone(&outcomes),
                        Arc::clone(&remaining),
                        Arc::clone(&all_done),
                    );
                    tokio::spawn(async move {
                        let out = answer.await;
                        outcomes.lock()[i] = Some(out);
                        if remaining.fetch_sub(1, Relaxed) == 1 {
                            all_done.notify_one();
                        }
                    });
                }
            })
        };
        let end = (p.seconds * SEC as f64) as u64;
        let waited = async {
            while remaining.load(Relaxed) > 0 {
                all_done.notified().await;
            }
        };
        tokio::select! {
            biased;
            () = waited => {}
            () = clock::sleep_until(end + GRACE_SECONDS * SEC) => {}
        }
        arrivals.abort();
        for t in setup.tasks {
            t.abort();
        }
        drop(setup.dispatch);
        driver.abort();
        clock::uninstall();
        let outcomes = std::mem::take(&mut *outcomes.lock());
        (outcomes, ledger)
    });
    drop(rt);
    measure(
        scenario, p, contender, &specs, &requests, &outcomes, &ledger,
    )
}

fn measure(
    scenario: Scenario,
    p: &Params,
    contender: &Contender,
    specs: &[scenario::MemberSpec],
    requests: &[scenario::Request],
    outcomes: &[Option<Outcome>],
    ledger: &Ledger,
) -> Row {
    let end = (p.seconds * SEC as f64) as u64;
    let mut latencies = Vec::with_capacity(outcomes.len());
    let (mut failed, mut refused, mut lost, mut in_window) = (0, 0, 0, 0_u64);
    let (mut wait, mut service) = (0_u128, 0_u128);
    for (req, out) in requests.iter().zip(outcomes) {
        match out {
            Some(Outcome::Ok(done)) => {
                latencies.push(done.end - req.at);
                wait += u128::from(done.start.saturating_sub(req.at));
                service += u128::from(done.end - done.start);
                if done.end <= end {
                    in_window += 1;
                }
            }
            Some(Outcome::Failed) => failed += 1,
            Some(Outcome::Refused) => refused += 1,
            None => lost += 1,
        }
    }
    latencies.sort_unstable();
    let ms = |ns: f64| round(ns / 1e6);
    let pct = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        ms(latencies[rank - 1] as f64)
    };
    let completed = latencies.len() as u64;
    let mean = |sum: u128| {
        if completed == 0 {
            0.0
        } else {
            ms(sum as f64 / completed as f64)
        }
    };
    let ramp = ramp(specs, requests, outcomes, ledger);
    let sent = requests.len() as u64;
    let could_serve = scenario::capacity(specs) * end as f64 / p.service.mean_ns();
    Row {
        scenario: scenario.name(),
        contender: contender.name,
        layer: contender.layer.name(),
        default: contender.default,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        mean_wait_ms: mean(wait),
        mean_service_ms: mean(service),
        sent,
        completed,
        failed,
        refused,
        lost,
        share_to_faulty: if sent == 0 {
            0.0
        } else {
            round(ledger.to_faulty() as f64 / sent as f64)
        },
        extra_attempts: ledger.extra_attempts(),
        goodput: if could_serve > 0.0 {
            round(in_window as f64 / could_serve)
        } else {
            0.0
        },
        peak_window_share: round(peak_window_share(requests, ledger, specs.len())),
        keys_at_home: round(keys_at_home(requests, ledger)),
        ramp_error_pp: ramp.map_or(0.0, |r| round(r.error_pp)),
        ramp_p99_ratio: ramp.map_or(0.0, |r| round(r.p99_ratio)),
        members: specs.len() as u64,
        load: p.load,
        seconds: p.seconds,
    }
}

/// See [`Row::peak_window_share`].
fn peak_window_share(requests: &[scenario::Request], ledger: &Ledger, members: usize) -> f64 {
    const WINDOW: u64 = SEC / 10;
    let mut peak = 0.0_f64;
    let mut counts = vec![0_u64; members];
    let mut window = 0;
    let mut total = 0_u64;
    let mut close = |counts: &mut [u64], total: u64| {
        if members > 0 && total >= 10 * members as u64 {
            let most = counts.iter().copied().max().unwrap_or(0);
            peak = peak.max(most as f64 * members as f64 / total as f64);
        }
        counts.iter_mut().for_each(|c| *c = 0);
    };
    for (i, req) in requests.iter().enumerate() {
        if req.at / WINDOW != window {
            close(&mut counts, total);
            total = 0;
            window = req.at / WINDOW;
        }
        if let Some(m) = ledger.last(i).filter(|&m| m < members) {
            counts[m] += 1;
            total += 1;
        }
    }
    close(&mut counts, total);
    peak
}

/// See [`Row::ramp_error_pp`] and [`Row::ramp_p99_ratio`].
#[derive(Clone, Copy)]
struct Ramp {
    error_pp: f64,
    p99_ratio: f64,
}

/// How the joining member's share followed [`contender::ramp`], and the p99 while it did.
fn ramp(
    specs: &[scenario::MemberSpec],
    requests: &[scenario::Request],
    outcomes: &[Option<Outcome>],
    ledger: &Ledger,
) -> Option<Ramp> {
    let (new, joins_at) = specs.iter().find_map(|m| match m.fault {
        scenario::Fault::Cold { joins_at } => Some((m.index, joins_at)),
        _ => None,
    })?;
    let window = u64::try_from(contender::ramp().window().as_nanos()).ok()?;
    let seconds = window / SEC;
    // Arrivals and the new member's, per second of the ramp.
    let mut per_second = vec![(0_u64, 0_u64); usize::try_from(seconds).ok()?];
    let (mut during, mut after) = (Vec::new(), Vec::new());
    for (i, (req, out)) in requests.iter().zip(outcomes).enumerate() {
        let Some(age) = req.at.checked_sub(joins_at) else {
            continue;
        };
        if age < window {
            let s = &mut per_second[usize::try_from(age / SEC).ok()?];
            s.0 += 1;
            s.1 += u64::from(ledger.last(i) == Some(new));
        }
        if let Some(Outcome::Ok(done)) = out {
            let latency = done.end - req.at;
            if age < window {
                during.push(latency);
            } else {
                after.push(latency);
            }
        }
    }
    let others = (specs.len() - 1) as f64;
    let ramp = contender::ramp();
    let error_pp = per_second
        .iter()
        .enumerate()
        .filter(|(_, (all, _))| *all > 0)
        .map(|(s, &(all, to_new))| {
            let mid = std::time::Duration::from_millis(s as u64 * 1_000 + 500);
            let w = ramp.factor(mid);
            let expected = w / (w + others);
            (to_new as f64 / all as f64 - expected).abs() * 100.0
        })
        .fold(0.0, f64::max);
    let p99 = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v.get((v.len() * 99).div_ceil(100).max(1) - 1).copied()
    };
    let p99_ratio = match (p99(&mut during), p99(&mut after)) {
        (Some(d), Some(a)) if a > 0 => d as f64 / a as f64,
        _ => 0.0,
    };
    Some(Ramp {
        error_pp,
        p99_ratio,
    })
}

/// See [`Row::keys_at_home`].
fn keys_at_home(requests: &[scenario::Request], ledger: &Ledger) -> f64 {
    let mut by_key: std::collections::HashMap<u64, std::collections::HashMap<usize, u64>> =
        std::collections::HashMap::new();
    for (i, req) in requests.iter().enumerate() {
        if let (Some(key), Some(m)) = (req.key, ledger.last(i)) {
            if key != scenario::HOT_KEY {
                *by_key.entry(key).or_default().entry(m).or_default() += 1;
            }
        }
    }
    let (home, all) = by_key
        .values()
        .fold((0_u64, 0_u64), |(home, all), members| {
            (
                home + members.values().copied().max().unwrap_or(0),
                all + members.values().sum::<u64>(),
            )
        });
    if all == 0 {
        0.0
    } else {
        home as f64 / all as f64
    }
}
