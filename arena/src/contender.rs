//! The contenders: croupier's `Pool`, `Balance` and `Balancer` (late loads), tower's p2c,
//! uniform random, and the ideal shared queue — each set up over a scenario's members.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use croupier::{
    balance::{Balance, BalanceError, Load},
    Balancer, Ejection, FailurePenalty, Member, Outcome as Report, Policy, Pool, PoolCallError,
    SlowStart,
};
use parking_lot::Mutex;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;
use tower::{
    balance::p2c,
    buffer::Buffer,
    discover::Change,
    load::{CompleteOnResponse, PeakEwma, PendingRequests},
    BoxError, Service, ServiceExt,
};

use crate::{
    clock,
    scenario::{Fault, MemberSpec, Params, Request, Scenario},
    world::{discover, ArenaWorker, Done, Failed, Job, Ledger, Server, SharedQueue, Svc},
};

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served.
    Ok(Done),
    /// The caller got an error from a member (after any retries).
    Failed,
    /// The balancer refused it before sending.
    Refused,
}

/// Which family a contender belongs to (the JSON's `layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// croupier's `Pool`.
    Pool,
    /// croupier's `Balance` (tower services).
    Balance,
    /// croupier's `Balancer` over members whose loads are reported late.
    Remote,
    /// tower's `p2c::Balance`.
    Tower,
    /// A model of a client that is not croupier's or tower's own behaviour.
    Model,
    /// The shared queue.
    Ideal,
    /// Uniform random.
    Random,
}

impl Layer {
    /// The JSON name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Pool => "pool",
            Self::Balance => "balance",
            Self::Remote => "remote",
            Self::Tower => "tower",
            Self::Model => "model",
            Self::Ideal => "ideal",
            Self::Random => "random",
        }
    }
}

/// How a `Balance` contender measures load: the builder's default, or one set.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BalanceLoad {
    Default,
    InFlight,
    PeakEwma,
}

/// A `Pool` contender's settings beyond the builder's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PoolKind {
    policy: Option<Policy>,
    ejection: bool,
    bounded: bool,
    no_hand_back: bool,
    slow_start: bool,
    max_load: Option<usize>,
}

/// The builder's defaults: what `pool` runs, and what the other pool contenders change.
const POOL: PoolKind = PoolKind {
    policy: None,
    ejection: false,
    bounded: false,
    no_hand_back: false,
    slow_start: false,
    max_load: None,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Pool(PoolKind),
    Balance {
        policy: Option<Policy>,
        load: BalanceLoad,
        ejection: bool,
        bounded: bool,
    },
    Remote {
        policy: Option<Policy>,
        ejection: bool,
    },
    Tower {
        ewma: bool,
        ready_when_down: bool,
    },
    Random,
    Ideal,
}

/// One contender: a row per scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contender {
    /// Its name (`--contender`).
    pub name: &'static str,
    /// Its layer.
    pub layer: Layer,
    /// Whether it is what its builder gives with only the seed set.
    pub default: bool,
    kind: Kind,
}

const fn pool(name: &'static str, policy: Option<Policy>, ejection: bool) -> Contender {
    Contender {
        name,
        layer: Layer::Pool,
        default: policy.is_none() && !ejection,
        kind: Kind::Pool(PoolKind {
            policy,
            ejection,
            ..POOL
        }),
    }
}

const fn remote(name: &'static str, policy: Option<Policy>, ejection: bool) -> Contender {
    Contender {
        name,
        layer: Layer::Remote,
        default: policy.is_none() && !ejection,
        kind: Kind::Remote { policy, ejection },
    }
}

const fn balance(
    name: &'static str,
    policy: Option<Policy>,
    load: BalanceLoad,
    ejection: bool,
) -> Contender {
    Contender {
        name,
        layer: Layer::Balance,
        default: policy.is_none() && matches!(load, BalanceLoad::Default) && !ejection,
        kind: Kind::Balance {
            policy,
            load,
            ejection,
            bounded: false,
        },
    }
}

/// `pool-shed`'s `max_load`: a worker with this many jobs queued or in hand takes no more, and
/// a call that finds every worker so is refused at once.
const SHED: usize = 4;

/// Key affinity with bounded loads: S8's contenders that keep a hot key from piling on one
/// member. ε = 0.55 keeps 80 % of the other keys at their member with p99 under 2× the ideal
/// for both layers over seeds 1 to 3 (`bounded_loads` documents the trade).
const BOUNDED: f64 = 0.55;

/// The slow start of the `-ss` contenders, and the ramp S7's share is measured against:
/// gRPC A100's defaults over the 30 s a cold member stays slow.
#[must_use]
pub fn ramp() -> SlowStart {
    SlowStart::new(Duration::from_secs(30))
}

const RR: Option<Policy> = Some(Policy::RoundRobin);
const LL: Option<Policy> = Some(Policy::LeastLoaded);
const P2C: Option<Policy> = Some(Policy::PowerOfTwo);

/// Every contender, in table order.
pub const ALL: &[Contender] = &[
    pool("pool", None, false),
    pool("pool-rr", RR, false),
    pool("pool-ll", LL, false),
    pool("pool-p2c", P2C, false),
    pool("pool-rr-ej", RR, true),
    pool("pool-ll-ej", LL, true),
    pool("pool-p2c-ej", P2C, true),
    balance("balance", None, BalanceLoad::Default, false),
    balance("balance-ll", LL, BalanceLoad::InFlight, false),
    balance("balance-p2c", P2C, BalanceLoad::InFlight, false),
    balance("balance-ewma", None, BalanceLoad::PeakEwma, false),
    balance("balance-ej", None, BalanceLoad::Default, true),
    Contender {
        name: "pool-bounded",
        layer: Layer::Pool,
        default: false,
        kind: Kind::Pool(PoolKind {
            bounded: true,
            ..POOL
        }),
    },
    Contender {
        name: "pool-nohb",
        layer: Layer::Pool,
        default: false,
        kind: Kind::Pool(PoolKind {
            no_hand_back: true,
            ..POOL
        }),
    },
    Contender {
        name: "pool-rr-ss",
        layer: Layer::Pool,
        default: false,
        kind: Kind::Pool(PoolKind {
            policy: RR,
            slow_start: true,
            ..POOL
        }),
    },
    Contender {
        name: "pool-shed",
        layer: Layer::Pool,
        default: false,
        kind: Kind::Pool(PoolKind {
            max_load: Some(SHED),
            ..POOL
        }),
    },
    Contender {
        name: "pool-ss",
        layer: Layer::Pool,
        default: false,
        kind: Kind::Pool(PoolKind {
            slow_start: true,
            ..POOL
        }),
    },
    Contender {
        name: "balance-bounded",
        layer: Layer::Balance,
        default: false,
        kind: Kind::Balance {
            policy: None,
            load: BalanceLoad::Default,
            ejection: false,
            bounded: true,
        },
    },
    remote("remote", None, false),
    remote("remote-rr", RR, false),
    remote("remote-ll", LL, false),
    remote("remote-p2c", P2C, false),
    remote("remote-ej", None, true),
    Contender {
        name: "tower-pending",
        layer: Layer::Tower,
        default: false,
        kind: Kind::Tower {
            ewma: false,
            ready_when_down: false,
        },
    },
    Contender {
        name: "tower-ewma",
        layer: Layer::Tower,
        default: false,
        kind: Kind::Tower {
            ewma: true,
            ready_when_down: false,
        },
    },
    Contender {
        name: "model-ready-when-down",
        layer: Layer::Model,
        default: false,
        kind: Kind::Tower {
            ewma: false,
            ready_when_down: true,
        },
    },
    Contender {
        name: "random",
        layer: Layer::Random,
        default: false,
        kind: Kind::Random,
    },
    Contender {
        name: "ideal",
        layer: Layer::Ideal,
        default: false,
        kind: Kind::Ideal,
    },
];

/// The contenders that take part in `scenario`: no `Pool` in S9 (a pool owns its workers, so
/// sixteen callers over eight shared members is a remote case); the model of a client that
/// stays ready over a dead backend only in S5; bounded loads only where keys are (S8).
#[must_use]
pub fn for_scenario(scenario: Scenario) -> Vec<Contender> {
    ALL.iter()
        .copied()
        .filter(|c| !(scenario == Scenario::S9 && c.layer == Layer::Pool))
        .filter(|c| c.layer != Layer::Model || scenario == Scenario::S5)
        .filter(|c| !c.is_bounded() || scenario == Scenario::S8)
        .collect()
}

impl Contender {
    fn is_bounded(&self) -> bool {
        matches!(
            self.kind,
            Kind::Pool(PoolKind { bounded: true, .. }) | Kind::Balance { bounded: true, .. }
        )
    }
}

/// Finds a contender by name.
#[must_use]
pub fn by_name(name: &str) -> Option<Contender> {
    ALL.iter().copied().find(|c| c.name == name)
}

type Answer = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Sends requests the contender's way.
pub trait Dispatch: Send + Sync {
    /// Sends `job` (request `req`) and resolves to what became of it.
    fn dispatch(&self, job: Job, req: &Request) -> Answer;
}

/// What a run holds while it lasts: the contender's dispatcher and the tasks it started.
pub struct Setup {
    /// The dispatcher.
    pub dispatch: Arc<dyn Dispatch>,
    /// Tasks to stop at the end of the run (reporters, joins).
    pub tasks: Vec<JoinHandle<()>>,
}

/// Builds `contender` over the scenario's members, on the current (arena) runtime.
///
/// # Panics
/// If croupier refuses a builder's settings (the arena's are valid).
pub fn setup(
    contender: &Contender,
    scenario: Scenario,
    p: &Params,
    specs: &[MemberSpec],
    ledger: &Arc<Ledger>,
) -> Setup {
    let seed = p.seed;
    let join = specs.iter().find_map(|m| match m.fault {
        Fault::Cold { joins_at } => Some((m.index, joins_at)),
        _ => None,
    });
    let _ = scenario;
    match contender.kind {
        Kind::Pool(PoolKind {
            policy,
            ejection,
            bounded,
            no_hand_back,
            slow_start,
            max_load,
        }) => {
            let n = specs.len();
            let first = if join.is_some() { n - 1 } else { n };
            let shared: Arc<[MemberSpec]> = specs.into();
            let l = Arc::clone(ledger);
            let mut b = Pool::builder(move |id| ArenaWorker::new(id, &shared, Arc::clone(&l)))
                .size(first)
                .seed(seed);
            if let Some(policy) = policy {
                b = b.policy(policy);
            }
            if ejection {
                b = b.outlier_ejection(Ejection::default());
            }
            if bounded {
                b = b.bounded_loads(BOUNDED);
            }
            if no_hand_back {
                b = b.hand_back_after(Duration::MAX);
            }
            if let Some(n) = max_load {
                b = b.max_load(n);
            }
            if slow_start {
                // S7's member is cold for 30 s.
                b = b.slow_start(ramp());
            }
            let pool = b.start().expect("arena pool settings");
            let mut tasks = Vec::new();
            if let Some((_, at)) = join {
                let pool = pool.clone();
                tasks.push(tokio::spawn(async move {
                    clock::sleep_until(at).await;
                    let _ = pool.resize(n).await;
                }));
            }
            Setup {
                dispatch: Arc::new(PoolD(pool)),
                tasks,
            }
        }
        Kind::Balance {
            policy,
            load,
            ejection,
            bounded,
        } => {
            let servers = start_servers(specs, join, ledger);
            let balances: Vec<Balance<Svc>> = (0..p.callers)
                .map(|c| {
                    let mut b = Balance::builder().seed(seed.wrapping_add(c as u64));
                    if let Some(policy) = policy {
                        b = b.policy(policy);
                    }
                    match load {
                        BalanceLoad::Default => {}
                        BalanceLoad::InFlight => b = b.load(Load::InFlight),
                        BalanceLoad::PeakEwma => b = b.load(Load::peak_ewma()),
                    }
                    if ejection {
                        b = b.outlier_ejection(Ejection::default());
                    }
                    if bounded {
                        b = b.bounded_loads(BOUNDED);
                    }
                    let svcs = servers
                        .lock()
                        .iter()
                        .map(|s| Svc::new(Arc::clone(s)))
                        .collect();
                    b.build(svcs).expect("arena balance settings")
                })
                .collect();
            let mut tasks = Vec::new();
            if let Some((i, at)) = join {
                let balances = balances.clone();
                let (specs, ledger, servers) = (specs[i], Arc::clone(ledger), Arc::clone(&servers));
                tasks.push(tokio::spawn(async move {
                    clock::sleep_until(at).await;
                    let s = Server::start(specs, ledger);
                    servers.lock().push(Arc::clone(&s));
                    for b in &balances {
                        b.insert(i, Svc::new(Arc::clone(&s)));
                    }
                }));
            }
            Setup {
                dispatch: Arc::new(BalanceD(balances)),
                tasks,
            }
        }
        Kind::Remote { policy, ejection } => {
            let servers = start_servers(specs, join, ledger);
            // Each caller has its own view of the members (as each master has its own links):
            // the load the member last reported, plus what this caller sent it since.
            let views: Vec<Arc<Mutex<Vec<RemoteMember>>>> = (0..p.callers)
                .map(|_| {
                    Arc::new(Mutex::new(
                        servers
                            .lock()
                            .iter()
                            .map(|s| RemoteMember::new(Arc::clone(s)))
                            .collect(),
                    ))
                })
                .collect();
            let balancers: Vec<Balancer<RemoteMember>> = views
                .iter()
                .enumerate()
                .map(|(c, view)| {
                    let m = Arc::clone(view);
                    // The remote layer's default: `NodeBuilder` builds its master's balancer
                    // with least loaded unless told otherwise.
                    let mut b = Balancer::builder()
                        .source(move || m.lock().clone())
                        .seed(seed.wrapping_add(c as u64))
                        .policy(policy.unwrap_or(Policy::LeastLoaded));
                    if ejection {
                        b = b.outlier_ejection(Ejection::default());
                    }
                    b.build().expect("arena balancer settings")
                })
                .collect();
            let mut tasks = Vec::new();
            let every = p.report_every_ns;
            let reported = views.clone();
            tasks.push(tokio::spawn(async move {
                // Each server's completions at the last report, for its jobs per second.
                let mut before: Vec<(Arc<Server>, u64)> = Vec::new();
                loop {
                    clock::sleep_ns(every).await;
                    for view in &reported {
                        for m in view.lock().iter() {
                            let done = m.server.completed();
                            let last =
                                match before.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &m.server)) {
                                    Some((_, last)) => last,
                                    None => {
                                        before.push((Arc::clone(&m.server), 0));
                                        &mut before.last_mut().expect("just pushed").1
                                    }
                                };
                            let rps = (done - *last) as f64 * 1e9 / every as f64;
                            m.apply(m.server.load(), rps);
                        }
                    }
                    for (s, last) in &mut before {
                        *last = s.completed();
                    }
                }
            }));
            if let Some((i, at)) = join {
                let balancers = balancers.clone();
                let (spec, ledger) = (specs[i], Arc::clone(ledger));
                tasks.push(tokio::spawn(async move {
                    clock::sleep_until(at).await;
                    let s = Server::start(spec, ledger);
                    servers.lock().push(Arc::clone(&s));
                    for view in &views {
                        view.lock().push(RemoteMember::new(Arc::clone(&s)));
                    }
                    for b in &balancers {
                        b.refresh();
                    }
                }));
            }
            Setup {
                dispatch: Arc::new(RemoteD(balancers)),
                tasks,
            }
        }
        Kind::Tower {
            ewma,
            ready_when_down,
        } => {
            let wrap = move |s: &Arc<Server>| {
                if ready_when_down {
                    Svc::always_ready(Arc::clone(s))
                } else {
                    Svc::new(Arc::clone(s))
                }
            };
            if ewma {
                tower_setup(p, specs, join, ledger, move |s| {
                    PeakEwma::new(
                        wrap(s),
                        Duration::from_millis(30),
                        Duration::from_secs(10).as_nanos() as f64,
                        CompleteOnResponse::default(),
                    )
                })
            } else {
                tower_setup(p, specs, join, ledger, move |s| {
                    PendingRequests::new(wrap(s), CompleteOnResponse::default())
                })
            }
        }
        Kind::Random => {
            let servers = start_servers(specs, join, ledger);
            let mut tasks = Vec::new();
            if let Some((i, at)) = join {
                let (spec, ledger, servers) = (specs[i], Arc::clone(ledger), Arc::clone(&servers));
                tasks.push(tokio::spawn(async move {
                    clock::sleep_until(at).await;
                    servers.lock().push(Server::start(spec, ledger));
                }));
            }
            Setup {
                dispatch: Arc::new(RandomD {
                    servers,
                    rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x007A_2D0B)),
                }),
                tasks,
            }
        }
        Kind::Ideal => {
            let queue = SharedQueue::new(Arc::clone(ledger));
            let mut tasks = Vec::new();
            for m in specs {
                match (join, m.fault) {
                    (Some((i, at)), _) if i == m.index => {
                        let (spec, queue) = (*m, Arc::clone(&queue));
                        tasks.push(tokio::spawn(async move {
                            clock::sleep_until(at).await;
                            queue.add(spec);
                        }));
                    }
                    _ => queue.add(*m),
                }
            }
            Setup {
                dispatch: Arc::new(IdealD(queue)),
                tasks,
            }
        }
    }
}

/// The backends present at the start (all but a member that joins later).
fn start_servers(
    specs: &[MemberSpec],
    join: Option<(usize, u64)>,
    ledger: &Arc<Ledger>,
) -> Arc<Mutex<Vec<Arc<Server>>>> {
    Arc::new(Mutex::new(
        specs
            .iter()
            .filter(|m| join.is_none_or(|(i, _)| i != m.index))
            .map(|m| Server::start(*m, Arc::clone(ledger)))
            .collect(),
    ))
}

fn tower_setup<L>(
    p: &Params,
    specs: &[MemberSpec],
    join: Option<(usize, u64)>,
    ledger: &Arc<Ledger>,
    wrap: impl Fn(&Arc<Server>) -> L + Send + Sync + 'static,
) -> Setup
where
    L: Service<Job, Response = Done, Error = BoxError> + tower::load::Load + Send + 'static,
    L::Future: Send + 'static,
    <L as tower::load::Load>::Metric: std::fmt::Debug,
{
    let servers = start_servers(specs, join, ledger);
    let mut senders = Vec::new();
    let mut callers = Vec::new();
    for c in 0..p.callers {
        let (tx, changes) = discover::<L>();
        for s in servers.lock().iter() {
            let _ = tx.send(Change::Insert(s.spec.index, wrap(s)));
        }
        let rng = SeededRng(ChaCha8Rng::seed_from_u64(
            p.seed.wrapping_add(c as u64) ^ 0x0070_3E12,
        ));
        let balance = p2c::Balance::from_rng(changes, rng);
        callers.push(Buffer::new(balance, 1024));
        senders.push(tx);
    }
    let mut tasks = Vec::new();
    let senders = Arc::new(senders);
    if let Some((i, at)) = join {
        let (spec, ledger, senders) = (specs[i], Arc::clone(ledger), Arc::clone(&senders));
        tasks.push(tokio::spawn(async move {
            clock::sleep_until(at).await;
            let s = Server::start(spec, ledger);
            servers.lock().push(Arc::clone(&s));
            for tx in senders.iter() {
                let _ = tx.send(Change::Insert(i, wrap(&s)));
            }
        }));
    } else {
        // Keep the discover streams open for the whole run (a closed one ends the balancer).
        tasks.push(tokio::spawn(async move {
            let _keep = senders;
            std::future::pending::<()>().await;
        }));
    }
    Setup {
        dispatch: Arc::new(TowerD(callers)),
        tasks,
    }
}

/// tower's random-number trait over a seeded generator.
struct SeededRng(ChaCha8Rng);

impl tower::util::rng::Rng for SeededRng {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

struct PoolD(Pool<ArenaWorker>);

impl Dispatch for PoolD {
    fn dispatch(&self, job: Job, req: &Request) -> Answer {
        let pool = self.0.clone();
        let key = req.key;
        Box::pin(async move {
            let answer = match key {
                Some(k) => pool.call_for(&k, job).await,
                None => pool.call(job).await,
            };
            match answer {
                Ok(Ok(done)) => Outcome::Ok(done),
                Ok(Err(Failed)) | Err(PoolCallError::WorkerDied) => Outcome::Failed,
                Err(_) => Outcome::Refused,
            }
        })
    }
}

struct BalanceD(Vec<Balance<Svc>>);

impl Dispatch for BalanceD {
    fn dispatch(&self, job: Job, req: &Request) -> Answer {
        let b = &self.0[req.caller % self.0.len()];
        let answer: Pin<Box<dyn Future<Output = Result<Done, BoxError>> + Send>> = match req.key {
            Some(k) => Box::pin(b.call_for(&k, job)),
            None => Box::pin(b.clone().oneshot(job)),
        };
        Box::pin(async move {
            match answer.await {
                Ok(done) => Outcome::Ok(done),
                Err(e) if e.is::<BalanceError>() => Outcome::Refused,
                Err(_) => Outcome::Failed,
            }
        })
    }
}

/// A backend as one caller of the remote layer sees it: alive, with the load it last
/// reported plus the calls this caller sent it since. A model of croupier's `RemoteNode`
/// (`src/remote/link.rs`, its `Member::load`): when that changes, this must follow.
#[derive(Clone)]
struct RemoteMember {
    server: Arc<Server>,
    /// This caller's requests to it not answered yet.
    calls: Arc<AtomicU64>,
    /// The last report's queue less this caller's calls then, in thousandths.
    others: Arc<AtomicU64>,
    /// Jobs per second the last report said it completed, in thousandths.
    drain_rate: Arc<AtomicU64>,
    /// When the last report came (virtual ns).
    reported_at: Arc<AtomicU64>,
    penalty: Arc<FailurePenalty>,
}

impl RemoteMember {
    fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            calls: Arc::default(),
            others: Arc::default(),
            drain_rate: Arc::default(),
            reported_at: Arc::default(),
            penalty: Arc::new(FailurePenalty::new()),
        }
    }

    /// A report of `queue` jobs, `rps` completed a second (as `Link::apply`; one worker).
    fn apply(&self, queue: usize, rps: f64) {
        let reported = queue as u64 * 1000;
        let mine = self.calls.load(Relaxed) * 1000;
        self.others.store(reported.saturating_sub(mine), Relaxed);
        self.drain_rate.store((rps * 1000.0) as u64, Relaxed);
        self.reported_at.store(clock::now(), Relaxed);
    }
}

impl PartialEq for RemoteMember {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.server, &other.server)
    }
}

/// `RemoteNode::load`: this caller's calls in flight plus their failure penalty, plus what
/// others queued as of the last report drained since at the reported rate; thousandths.
impl Member for RemoteMember {
    fn is_alive(&self) -> bool {
        true
    }

    fn load(&self) -> usize {
        let own = (self.calls.load(Relaxed) + self.penalty.value() as u64) * 1000;
        let others = self.others.load(Relaxed);
        let left = if others == 0 {
            0
        } else {
            let age = clock::now().saturating_sub(self.reported_at.load(Relaxed));
            let drained =
                u128::from(self.drain_rate.load(Relaxed)) * u128::from(age) / 1_000_000_000;
            others.saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX))
        };
        usize::try_from(own + left).unwrap_or(usize::MAX)
    }
}

struct RemoteD(Vec<Balancer<RemoteMember>>);

impl Dispatch for RemoteD {
    fn dispatch(&self, job: Job, req: &Request) -> Answer {
        let b = self.0[req.caller % self.0.len()].clone();
        let picked = match req.key {
            Some(k) => b.pick_for(&k),
            None => b.pick(),
        };
        let (ticket, member) = match picked {
            Ok(p) => (p.ticket(), p.cloned()),
            Err(_) => return Box::pin(async { Outcome::Refused }),
        };
        member.calls.fetch_add(1, Relaxed);
        let answer = member.server.submit(job);
        Box::pin(async move {
            let answer = answer.await;
            member.calls.fetch_sub(1, Relaxed);
            match &answer {
                Ok(_) => member.penalty.succeeded(),
                Err(Failed) => member.penalty.failed(),
            }
            b.report(
                ticket,
                if answer.is_ok() {
                    Report::Success
                } else {
                    Report::Failure
                },
            );
            match answer {
                Ok(done) => Outcome::Ok(done),
                Err(Failed) => Outcome::Failed,
            }
        })
    }
}

struct TowerD<T>(Vec<T>);

impl<T> Dispatch for TowerD<T>
where
    T: Service<Job, Response = Done, Error = BoxError> + Clone + Send + Sync + 'static,
    T::Future: Send,
{
    fn dispatch(&self, job: Job, req: &Request) -> Answer {
        let svc = self.0[req.caller % self.0.len()].clone();
        Box::pin(async move {
            match svc.oneshot(job).await {
                Ok(done) => Outcome::Ok(done),
                Err(_) => Outcome::Failed,
            }
        })
    }
}

struct RandomD {
    servers: Arc<Mutex<Vec<Arc<Server>>>>,
    rng: Mutex<ChaCha8Rng>,
}

impl Dispatch for RandomD {
    fn dispatch(&self, job: Job, _req: &Request) -> Answer {
        let server = {
            let servers = self.servers.lock();
            let i = self.rng.lock().random_range(0..servers.len());
            Arc::clone(&servers[i])
        };
        let answer = server.submit(job);
        Box::pin(async move {
            match answer.await {
                Ok(done) => Outcome::Ok(done),
                Err(Failed) => Outcome::Failed,
            }
        })
    }
}

struct IdealD(Arc<SharedQueue>);

impl Dispatch for IdealD {
    fn dispatch(&self, job: Job, _req: &Request) -> Answer {
        let answer = self.0.submit(job);
        Box::pin(async move {
            match answer.await {
                Ok(done) => Outcome::Ok(done),
                Err(Failed) => Outcome::Failed,
            }
        })
    }
}
