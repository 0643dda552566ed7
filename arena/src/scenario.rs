//! The scenarios S1–S10, their parameters, and the requests each one offers.

use std::{fmt, str::FromStr};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

/// One millisecond in nanoseconds.
pub const MS: u64 = 1_000_000;
/// One second in nanoseconds.
pub const SEC: u64 = 1_000_000_000;

/// How long jobs take at speed 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Every job 1 ms.
    Fixed,
    /// Exponential, mean 1 ms.
    Exp,
    /// 95 % of jobs 1 ms, 5 % 20 ms (mean 1.95 ms).
    Bimodal,
}

impl Service {
    /// The mean job size in nanoseconds.
    #[must_use]
    pub fn mean_ns(self) -> f64 {
        match self {
            Self::Fixed | Self::Exp => MS as f64,
            Self::Bimodal => 0.95 * MS as f64 + 0.05 * 20.0 * MS as f64,
        }
    }

    fn sample(self, rng: &mut ChaCha8Rng, exp: &Exp<f64>) -> u64 {
        match self {
            Self::Fixed => MS,
            Self::Exp => (exp.sample(rng) * MS as f64).round().max(1.0) as u64,
            Self::Bimodal => {
                if rng.random_bool(0.05) {
                    20 * MS
                } else {
                    MS
                }
            }
        }
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(Self::Fixed),
            "exp" => Ok(Self::Exp),
            "bimodal" => Ok(Self::Bimodal),
            _ => Err(format!("unknown service '{s}': use fixed, exp or bimodal")),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fixed => "fixed",
            Self::Exp => "exp",
            Self::Bimodal => "bimodal",
        })
    }
}

/// The ten scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Uneven jobs: 95 % short, 5 % 20× longer.
    S1,
    /// Half the members 2× faster.
    S2,
    /// One member 8× slower.
    S3,
    /// One member failing fast: an error in 0.1 ms for every call.
    S4,
    /// One member dead: refuses at once.
    S5,
    /// One member that crashes every 3 s and takes 0.5 s to come back.
    S6,
    /// Cold start: a member joins, 5× slower for its first 30 s.
    S7,
    /// A hot key: 10 % of requests carry one key (`call_for`).
    S8,
    /// Stale load: 16 callers over 8 members whose loads are reported every 100 ms.
    S9,
    /// Overload at 120 % of capacity.
    S10,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Self; 10] = [
        Self::S1,
        Self::S2,
        Self::S3,
        Self::S4,
        Self::S5,
        Self::S6,
        Self::S7,
        Self::S8,
        Self::S9,
        Self::S10,
    ];

    /// `"s1"` … `"s10"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::S1 => "s1",
            Self::S2 => "s2",
            Self::S3 => "s3",
            Self::S4 => "s4",
            Self::S5 => "s5",
            Self::S6 => "s6",
            Self::S7 => "s7",
            Self::S8 => "s8",
            Self::S9 => "s9",
            Self::S10 => "s10",
        }
    }

    /// A line saying what the scenario does.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::S1 => "uneven jobs (95 % 1 ms, 5 % 20 ms)",
            Self::S2 => "half the members 2x faster",
            Self::S3 => "one member 8x slower",
            Self::S4 => "one member failing fast (error in 0.1 ms)",
            Self::S5 => "one member dead (refuses at once)",
            Self::S6 => "one member crashing every 3 s (0.5 s to restart)",
            Self::S7 => "cold start: a member joins 5x slower for 30 s",
            Self::S8 => "hot key: 10 % of requests one key",
            Self::S9 => "stale load: 16 callers, 8 members, reports every 100 ms",
            Self::S10 => "overload at 120 % of capacity",
        }
    }

    /// The scenario's own parameters, before the command line's overrides.
    #[must_use]
    pub fn defaults(self) -> Params {
        let mut p = Params {
            members: 16,
            load: 0.85,
            seconds: 30.0,
            service: Service::Exp,
            callers: 1,
            report_every_ns: 100 * MS,
            seed: 1,
        };
        match self {
            Self::S1 => p.service = Service::Bimodal,
            Self::S7 => p.seconds = 40.0,
            Self::S9 => {
                p.members = 8;
                p.callers = 16;
            }
            Self::S10 => p.load = 1.2,
            _ => {}
        }
        p
    }

    /// The member the scenario makes faulty (slow, failing, dead, crashing or cold), if any.
    #[must_use]
    pub fn faulty(self, members: usize) -> Option<usize> {
        match self {
            Self::S3 | Self::S4 | Self::S5 | Self::S6 => Some(0),
            Self::S7 => Some(members - 1),
            _ => None,
        }
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown scenario '{s}': use s1 … s10"))
    }
}

/// What a run is made of: the scenario's values, or the command line's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Members (workers, services, nodes).
    pub members: usize,
    /// Offered load as a fraction of capacity: arrival rate × mean job ÷ the members' total
    /// speed (a member 2× faster counts 2, one 8× slower 1/8; a failing, dead, crashing or
    /// cold member counts at its healthy speed, 1).
    pub load: f64,
    /// Virtual seconds of arrivals.
    pub seconds: f64,
    /// The job-size distribution.
    pub service: Service,
    /// Callers, each with a balancer of its own (S9: 16); 1 elsewhere.
    pub callers: usize,
    /// How often members' loads are reported to the remote layer.
    pub report_every_ns: u64,
    /// The seed of every random choice: arrivals, sizes, keys, and each contender's own.
    pub seed: u64,
}

/// How a member behaves in a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Serves at its speed.
    None,
    /// Answers every call with an error after 0.1 ms.
    FailFast,
    /// Refuses at once (for tower services: `poll_ready` fails).
    Dead,
    /// Up 3 s, then crashes (what it holds fails) and is down 0.5 s, again and again.
    CrashLoop,
    /// Joins `joins_at` into the run, 5× slower for its first 30 s.
    Cold {
        /// When it joins, in virtual nanoseconds.
        joins_at: u64,
    },
}

/// How long a crash-looping member stays up.
pub const UP_NS: u64 = 3 * SEC;
/// How long it takes to come back.
pub const DOWN_NS: u64 = SEC / 2;
/// A failing member's time to fail.
pub const FAIL_NS: u64 = MS / 10;
/// How long a cold member stays slow.
pub const COLD_NS: u64 = 30 * SEC;
/// How much slower a cold member is.
pub const COLD_FACTOR: f64 = 5.0;

/// One member of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberSpec {
    /// Its index.
    pub index: usize,
    /// Its speed (jobs of size 1 ms take 1 ms ÷ speed).
    pub speed: f64,
    /// Its fault.
    pub fault: Fault,
    /// Whether requests it gets count in `share_to_faulty`.
    pub faulty: bool,
}

impl MemberSpec {
    /// How long a job of `size` takes when it starts at `start`, for a member that came up
    /// at `born`.
    #[must_use]
    pub fn service_ns(&self, size: u64, start: u64, born: u64) -> u64 {
        let mut speed = self.speed;
        if matches!(self.fault, Fault::Cold { .. }) && start < born.saturating_add(COLD_NS) {
            speed /= COLD_FACTOR;
        }
        ((size as f64) / speed).round().max(1.0) as u64
    }

    /// Whether a crash-looping member is down at `t`, and if up, when it next crashes.
    #[must_use]
    pub fn crash_cycle(t: u64) -> (bool, u64) {
        let period = UP_NS + DOWN_NS;
        let k = t / period;
        let into = t % period;
        (into >= UP_NS, k * period + UP_NS)
    }
}

/// The members of a scenario run.
#[must_use]
pub fn members(scenario: Scenario, p: &Params) -> Vec<MemberSpec> {
    let n = p.members;
    let faulty = scenario.faulty(n);
    (0..n)
        .map(|i| {
            let mut m = MemberSpec {
                index: i,
                speed: 1.0,
                fault: Fault::None,
                faulty: Some(i) == faulty,
            };
            match scenario {
                Scenario::S2 if i % 2 == 0 => m.speed = 2.0,
                Scenario::S3 if i == 0 => m.speed = 1.0 / 8.0,
                Scenario::S4 if i == 0 => m.fault = Fault::FailFast,
                Scenario::S5 if i == 0 => m.fault = Fault::Dead,
                Scenario::S6 if i == 0 => m.fault = Fault::CrashLoop,
                Scenario::S7 if i == n - 1 => {
                    m.fault = Fault::Cold {
                        joins_at: join_time(p),
                    };
                }
                _ => {}
            }
            m
        })
        .collect()
}

/// When S7's member joins: an eighth into the run (5 s of 40).
#[must_use]
pub fn join_time(p: &Params) -> u64 {
    (p.seconds * SEC as f64 / 8.0) as u64
}

/// The total speed load is measured against.
#[must_use]
pub fn capacity(members: &[MemberSpec]) -> f64 {
    members.iter().map(|m| m.speed).sum()
}

/// The key every hot request of S8 carries.
pub const HOT_KEY: u64 = 0;
/// S8's other keys: 1 ..= this.
pub const KEYS: u64 = 10_000;

/// One request of the offered load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Arrival, virtual nanoseconds.
    pub at: u64,
    /// Its size at speed 1, nanoseconds.
    pub size: u64,
    /// Its key (S8 only: `Some`).
    pub key: Option<u64>,
    /// Which caller sends it.
    pub caller: usize,
}

/// The requests of a run: open-loop Poisson arrivals at the rate the load asks for, the
/// same for every contender.
#[must_use]
pub fn workload(scenario: Scenario, p: &Params, members: &[MemberSpec]) -> Vec<Request> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x5EED_0A2E_4A00);
    let rate_per_ns = p.load * capacity(members) / p.service.mean_ns();
    let gaps = Exp::new(rate_per_ns).expect("a positive arrival rate");
    let sizes = Exp::new(1.0).expect("rate 1");
    let end = (p.seconds * SEC as f64) as u64;
    let mut t = 0.0_f64;
    let mut out = Vec::new();
    loop {
        t += gaps.sample(&mut rng);
        let at = t as u64;
        if at >= end {
            return out;
        }
        let size = p.service.sample(&mut rng, &sizes);
        let key = (scenario == Scenario::S8).then(|| {
            if rng.random_bool(0.1) {
                HOT_KEY
            } else {
                rng.random_range(1..=KEYS)
            }
        });
        let caller = if p.callers > 1 {
            rng.random_range(0..p.callers)
        } else {
            0
        };
        out.push(Request {
            at,
            size,
            key,
            caller,
        });
    }
}
