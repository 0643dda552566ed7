//! The quality benchmark: what least-loaded selection buys when job costs are uneven.
//!
//! 16 workers serve an open-loop stream of jobs, 95 % short (1 ms) and 5 % twenty times longer
//! (20 ms), arriving as a Poisson process at 88 % of their capacity. One precomputed schedule
//! (same arrival times, same costs) is played against a croupier `Pool` under each policy,
//! then against the ideal: as many plain tokio tasks pulling from one shared queue. A job's
//! latency runs from its *scheduled* arrival to the end of its service, so a generator running
//! late counts against the system. Service is a timer sleep, as an I/O-bound handler waits, so
//! that 16 workers share the runtime's 2 threads without spinning.
//!
//! Run it with `cargo run --release --example quality` (about 50 s), or pick the parameters:
//! `cargo run --release --example quality -- --secs 5 --load 0.88 --workers 16`;
//! `--svg docs/quality-cdf.svg` also draws the latency CDFs (the chart in the README).

use std::{
    error::Error,
    process::ExitCode,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, Mutex},
    task::JoinError,
    time::Instant,
};

use croupier::{Policy, Pool, Worker, WorkerId};

const SHORT: Duration = Duration::from_millis(1);
const LONG: Duration = Duration::from_millis(20);
const LONG_SHARE: f64 = 0.05;
const SEED: u64 = 0x5eed_c0de_2024_0001;
/// tokio fires a timer on the first 1 ms tick after its deadline, and a job starts just after
/// a tick (a timer or the generator woke its worker), so a sleep lasts about a tick longer
/// than asked. Asking a tick less makes a service last its cost; [`calibrate`] checks how well.
const TICK: Duration = Duration::from_millis(1);
/// How long after setup the schedule starts, so that every worker task is up first.
const LEAD: Duration = Duration::from_millis(20);
const USAGE: &str = "usage: quality [--secs N (0 < N <= 600)] [--load U (0 < U < 1)] \
                     [--workers N (1..=256)] [--svg PATH (a latency CDF chart)]";

/// The run's parameters, from the command line.
struct Config {
    secs: f64,
    load: f64,
    workers: usize,
    /// Where to write the latency CDF chart, if anywhere.
    svg: Option<String>,
}

/// Reads `--secs`, `--load` and `--workers`; `Ok(None)` asks for the usage line.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut cfg = Config {
        secs: 5.0,
        load: 0.88,
        workers: 16,
        svg: None,
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => cfg.secs = parse(&flag, &value?, |s: &f64| *s > 0.0 && *s <= 600.0)?,
            "--load" => cfg.load = parse(&flag, &value?, |u: &f64| *u > 0.0 && *u < 1.0)?,
            "--workers" => cfg.workers = parse(&flag, &value?, |n| (1..=256).contains(n))?,
            "--svg" => cfg.svg = Some(value?),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(cfg))
}

/// Parses `value` for `flag` and checks that `ok` accepts it.
fn parse<T: FromStr>(flag: &str, value: &str, ok: impl Fn(&T) -> bool) -> Result<T, String> {
    match value.parse() {
        Ok(v) if ok(&v) => Ok(v),
        _ => Err(format!("bad value {value:?} for {flag}")),
    }
}

/// splitmix64: the next 64 bits of a tiny deterministic generator, so that every contender
/// sees the same jobs.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (*state ^ (*state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Waits out a job of `cost`, as an I/O-bound handler would (see [`TICK`]).
async fn service(cost: Duration) {
    tokio::time::sleep(cost.saturating_sub(TICK)).await;
}

/// The mean service time in seconds of a short and of a long job on this runtime's timer, each
/// of `workers` tasks serving a few of each back to back.
async fn calibrate(workers: usize) -> Result<[f64; 2], JoinError> {
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(async {
                let mut took = [0.0; 2];
                for (mean, (cost, n)) in took.iter_mut().zip([(SHORT, 40), (LONG, 4)]) {
                    let start = Instant::now();
                    for _ in 0..n {
                        service(cost).await;
                    }
                    *mean = start.elapsed().as_secs_f64() / f64::from(n);
                }
                took
            })
        })
        .collect();
    let mut means = [0.0; 2];
    for task in tasks {
        for (mean, took) in means.iter_mut().zip(task.await?) {
            *mean += took / workers as f64;
        }
    }
    Ok(means)
}

/// One job of the schedule: when it is due after the start, and how long it takes to serve.
struct Arrival {
    at: Duration,
    cost: Duration,
}

/// Poisson arrivals for `secs` seconds at `load × workers / mean` jobs a second, `mean` being
/// the mean service time in seconds.
fn schedule(cfg: &Config, mean: f64) -> Vec<Arrival> {
    let rate = cfg.load * cfg.workers as f64 / mean;
    let mut state = SEED;
    // Uniform in [0, 1).
    let mut unit = || (splitmix64(&mut state) >> 11) as f64 / (1_u64 << 53) as f64;
    let mut jobs = Vec::with_capacity((rate * cfg.secs * 1.1) as usize + 16);
    let mut t = 0.0;
    loop {
        t += -(1.0 - unit()).ln() / rate;
        if t >= cfg.secs {
            return jobs;
        }
        let cost = if unit() < LONG_SHARE { LONG } else { SHORT };
        let at = Duration::from_secs_f64(t);
        jobs.push(Arrival { at, cost });
    }
}

/// What a worker is sent: the job's number, its scheduled arrival, and its cost.
struct Job {
    index: usize,
    due: Instant,
    cost: Duration,
}

/// Where workers record each job's latency in a slot of its own, and count completions.
struct Recorder {
    latency_ns: Vec<AtomicU64>,
    completed: AtomicU64,
    busy_ns: AtomicU64,
}

impl Recorder {
    /// A recorder for `jobs` jobs; a slot left at `u64::MAX` is a job never completed.
    fn new(jobs: usize) -> Arc<Self> {
        Arc::new(Self {
            latency_ns: (0..jobs).map(|_| AtomicU64::new(u64::MAX)).collect(),
            completed: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
        })
    }

    /// Serves `job` and records its latency and service time.
    async fn serve(&self, job: Job) {
        let start = Instant::now();
        service(job.cost).await;
        let end = Instant::now();
        let busy = (end - start).as_nanos() as u64;
        self.busy_ns.fetch_add(busy, Relaxed);
        let latency = end.saturating_duration_since(job.due).as_nanos() as u64;
        self.latency_ns[job.index].store(latency.min(u64::MAX - 1), Relaxed);
        self.completed.fetch_add(1, Relaxed);
    }
}

/// A croupier worker that serves its jobs through the run's recorder; a slow one takes
/// [`SLOWDOWN`] times as long over each.
struct Server {
    recorder: Arc<Recorder>,
    slow: bool,
}

impl Worker for Server {
    type Msg = Job;
    type Reply = ();

    async fn handle(&mut self, mut job: Job) {
        if self.slow {
            job.cost *= SLOWDOWN;
        }
        self.recorder.serve(job).await;
    }
}

/// How much slower the slow worker of [`Contender::SlowWorker`] serves.
const SLOWDOWN: u32 = 8;
/// The share of jobs that carry the one hot key in [`Contender::Keys`]: 1.5 workers' worth.
fn hot_share(workers: usize) -> f64 {
    1.5 / workers as f64
}

/// The key of job `index`: the hot key 0 for a [`hot_share`] of the jobs, else one of 10 000.
fn key_of(index: usize, workers: usize) -> u64 {
    let mut state = SEED ^ index as u64;
    let r = splitmix64(&mut state);
    if ((r >> 11) as f64 / (1_u64 << 53) as f64) < hot_share(workers) {
        0
    } else {
        1 + r % 10_000
    }
}

/// Walks the schedule from `t0`: at each wake-up dispatches every job already due (several
/// fall within one timer tick), then sleeps until the next is due. Returns how many were taken.
async fn generate(
    arrivals: Arc<Vec<Arrival>>,
    t0: Instant,
    mut dispatch: impl FnMut(Job) -> bool,
) -> u64 {
    let mut dispatched = 0;
    let mut index = 0;
    while let Some(next) = arrivals.get(index) {
        let now = Instant::now();
        if t0 + next.at > now {
            tokio::time::sleep_until(t0 + next.at).await;
            continue;
        }
        for a in arrivals[index..].iter().take_while(|a| t0 + a.at <= now) {
            let (due, cost) = (t0 + a.at, a.cost);
            dispatched += u64::from(dispatch(Job { index, due, cost }));
            index += 1;
        }
    }
    dispatched
}

/// Who serves the jobs: a croupier pool under a policy, or tasks sharing one queue; then two
/// more cases: keyed jobs with one hot key sent by `call_for` (plain consistent hashing, or
/// with bounded loads), and round robin over a pool with one slow worker (with or without
/// outlier ejection, the callers reporting a reply later than 4× its cost a failure).
#[derive(Clone, Copy)]
enum Contender {
    Pool(Policy),
    SharedQueue,
    Keys { bounded: bool },
    SlowWorker { eject: bool },
}

/// One contender's figures.
struct Row {
    name: String,
    /// p50, p99, p99.9, max and mean latency, in ms.
    latency: [f64; 5],
    /// Mean service time in ms, and the busy fraction of the workers over the schedule.
    service: f64,
    load: f64,
    completed: u64,
    dispatched: u64,
    /// The latency distribution: (latency in ms, share of jobs at or below it).
    cdf: Vec<(f64, f64)>,
}

/// Plays the whole schedule against `contender`, waits for every job, and measures.
async fn run(
    contender: Contender,
    cfg: &Config,
    arrivals: &Arc<Vec<Arrival>>,
) -> Result<Row, Box<dyn Error>> {
    let recorder = Recorder::new(arrivals.len());
    let t0 = Instant::now() + LEAD;
    let (name, dispatched) = match contender {
        Contender::Pool(policy) => {
            let r = Arc::clone(&recorder);
            let factory = move |_: WorkerId| Server {
                recorder: Arc::clone(&r),
                slow: false,
            };
            let pool = Pool::builder(factory)
                .size(cfg.workers)
                .policy(policy)
                .seed(SEED)
                .start()?;
            let sender = pool.clone();
            let generator = generate(Arc::clone(arrivals), t0, move |j| sender.send(j).is_ok());
            let dispatched = tokio::spawn(generator).await?;
            // Lets every worker finish its queue, then joins them all.
            pool.shutdown().await;
            (format!("{policy:?}"), dispatched)
        }
        Contender::SharedQueue => {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(Mutex::new(rx));
            let tasks: Vec<_> = (0..cfg.workers)
                .map(|_| {
                    let (rx, recorder) = (Arc::clone(&rx), Arc::clone(&recorder));
                    tokio::spawn(async move {
                        loop {
                            // Its own statement: the lock is held while waiting, not serving.
                            let next = rx.lock().await.recv().await;
                            let Some(job) = next else { break };
                            recorder.serve(job).await;
                        }
                    })
                })
                .collect();
            // The generator owns the sender: once it ends, the tasks empty the queue and stop.
            let generator = generate(Arc::clone(arrivals), t0, move |j| tx.send(j).is_ok());
            let dispatched = tokio::spawn(generator).await?;
            for task in tasks {
                task.await?;
            }
            ("shared queue".to_owned(), dispatched)
        }
        Contender::Keys { bounded } => {
            let r = Arc::clone(&recorder);
            let factory = move |_: WorkerId| Server {
                recorder: Arc::clone(&r),
                slow: false,
            };
            let builder = Pool::builder(factory).size(cfg.workers).seed(SEED);
            let pool = if bounded {
                builder.bounded_loads(0.25)
            } else {
                builder
            }
            .start()?;
            let tracker = tokio_util::task::TaskTracker::new();
            let (sender, calls, workers) = (pool.clone(), tracker.clone(), cfg.workers);
            let generator = generate(Arc::clone(arrivals), t0, move |j| {
                let pool = sender.clone();
                calls.spawn(async move { pool.call_for(&key_of(j.index, workers), j).await });
                true
            });
            let dispatched = tokio::spawn(generator).await?;
            tracker.close();
            tracker.wait().await;
            pool.shutdown().await;
            let name = if bounded {
                "keys, bounded"
            } else {
                "keys, plain"
            };
            (name.to_owned(), dispatched)
        }
        Contender::SlowWorker { eject } => {
            let r = Arc::clone(&recorder);
            let factory = move |id: WorkerId| Server {
                recorder: Arc::clone(&r),
                slow: id.slot() == 0,
            };
            let builder = Pool::builder(factory)
                .size(cfg.workers)
                .policy(Policy::RoundRobin);
            let ejection = croupier::Ejection::default()
                .consecutive_failures(2)
                .base_time(Duration::from_millis(500))
                .max_share(0.1);
            let pool = if eject {
                builder.outlier_ejection(ejection)
            } else {
                builder
            }
            .start()?;
            let tracker = tokio_util::task::TaskTracker::new();
            let (sender, calls) = (pool.clone(), tracker.clone());
            let generator = generate(Arc::clone(arrivals), t0, move |j| {
                let pool = sender.clone();
                calls.spawn(async move {
                    // The guard goes before the await; its ticket stays for the report.
                    let (ticket, worker) = match pool.pick() {
                        Ok(p) => (p.ticket(), p.cloned()),
                        Err(_) => return,
                    };
                    let (start, late) = (Instant::now(), j.cost * 4);
                    if worker.call(j).await.is_ok() {
                        let outcome = if start.elapsed() > late {
                            croupier::Outcome::Failure
                        } else {
                            croupier::Outcome::Success
                        };
                        pool.balancer().report(ticket, outcome);
                    }
                });
                true
            });
            let dispatched = tokio::spawn(generator).await?;
            tracker.close();
            tracker.wait().await;
            pool.shutdown().await;
            let name = if eject {
                "slow, ejection"
            } else {
                "slow, no eject"
            };
            (name.to_owned(), dispatched)
        }
    };
    let slots = recorder.latency_ns.iter().map(|l| l.load(Relaxed));
    let mut ns: Vec<u64> = slots.filter(|&l| l != u64::MAX).collect();
    ns.sort_unstable();
    if ns.is_empty() {
        return Err(format!("{name}: no job completed").into());
    }
    let ms = |v: u64| v as f64 / 1e6;
    // Nearest rank: the least latency that a fraction `q` of the jobs do not exceed.
    let rank = |q: f64| ms(ns[((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1]);
    let mean = ns.iter().map(|&v| ms(v)).sum::<f64>() / ns.len() as f64;
    let max = ms(ns[ns.len() - 1]);
    let busy = recorder.busy_ns.load(Relaxed);
    let completed = recorder.completed.load(Relaxed);
    let cdf = (1..=400)
        .map(|k| {
            let q = f64::from(k) / 400.0;
            (rank(q), q)
        })
        .collect();
    Ok(Row {
        cdf,
        latency: [rank(0.5), rank(0.99), rank(0.999), max, mean],
        service: ms(busy) / completed as f64,
        load: busy as f64 / 1e9 / (cfg.workers as f64 * cfg.secs),
        name,
        completed,
        dispatched,
    })
}

/// Runs every contender over one schedule and prints the table; `Ok(false)` if a job was lost.
async fn bench(cfg: Config) -> Result<bool, Box<dyn Error>> {
    let [short, long] = calibrate(cfg.workers).await?;
    let mean = short * (1.0 - LONG_SHARE) + long * LONG_SHARE;
    let arrivals = Arc::new(schedule(&cfg, mean));
    let (jobs, rate) = (arrivals.len(), cfg.load * cfg.workers as f64 / mean);
    let longs = arrivals.iter().filter(|a| a.cost == LONG).count();
    println!(
        "croupier quality: {} workers on 2 runtime threads, utilisation {:.2}\n\
         jobs: {:.0} % short ({SHORT:?}), {:.0} % long ({LONG:?}), served as timer sleeps measured at \
         {:.2} / {:.2} ms (mean {:.2} ms)\n\
         {jobs} jobs ({longs} long): Poisson arrivals at {rate:.0}/s for {} s, the same for all\n",
        cfg.workers,
        cfg.load,
        100.0 * (1.0 - LONG_SHARE),
        100.0 * LONG_SHARE,
        short * 1e3,
        long * 1e3,
        mean * 1e3,
        cfg.secs,
    );
    let contenders = [
        Contender::Pool(Policy::RoundRobin),
        Contender::Pool(Policy::LeastLoaded),
        Contender::Pool(Policy::PowerOfTwo),
        Contender::SharedQueue,
    ];
    let mut rows = Vec::with_capacity(contenders.len());
    for contender in contenders {
        rows.push(run(contender, &cfg, &arrivals).await?);
    }
    println!(
        "latency (ms) from scheduled arrival to completion; service: measured mean (ms);\n\
         load: time the workers were busy / (workers × duration of the schedule)\n\
         contender          p50      p99    p99.9      max     mean p99/shared  service  load     \
         done/sent"
    );
    let shared = rows[3].latency[1];
    for r in &rows {
        print!("{:<13}", r.name);
        for ms in r.latency {
            print!(" {ms:>8.2}");
        }
        let (ratio, service, load) = (r.latency[1] / shared, r.service, r.load);
        let done = format!("{}/{}", r.completed, r.dispatched);
        println!(" {ratio:>9.2}× {service:>8.2} {load:>5.2} {done:>13}");
    }
    if let Some(path) = &cfg.svg {
        chart(path, &rows, &cfg)?;
        println!("latency CDF chart written to {path}");
    }
    let (rr, ll, p2c) = (rows[0].latency[1], rows[1].latency[1], rows[2].latency[1]);
    println!("\ntargets:");
    let verdict = |target: &str, p99: f64, factor: f64, base: f64| {
        let met = if p99 <= factor * base {
            "met"
        } else {
            "NOT met"
        };
        let bound = format!("{factor} × {base:.2} = {:.2} ms", factor * base);
        println!("  {target}: {met} (p99 {p99:.2} ms vs {bound})");
    };
    verdict("LeastLoaded p99 ≤ 1.5× shared queue", ll, 1.5, shared);
    verdict("PowerOfTwo p99 ≤ 3× shared queue", p2c, 3.0, shared);
    let both = "LeastLoaded and PowerOfTwo p99 ≤ half of RoundRobin's (the worse of the two)";
    verdict(both, ll.max(p2c), 0.5, rr);

    println!(
        "\nkeyed jobs through call_for, {:.1} % of them with one hot key (1.5 workers' worth);\n\
         then round robin with worker 0 serving {SLOWDOWN}× slower:",
        100.0 * hot_share(cfg.workers)
    );
    let extras = [
        Contender::Keys { bounded: false },
        Contender::Keys { bounded: true },
        Contender::SlowWorker { eject: false },
        Contender::SlowWorker { eject: true },
    ];
    let first_extra = rows.len();
    for contender in extras {
        let r = run(contender, &cfg, &arrivals).await?;
        print!("{:<15}", r.name);
        for ms in r.latency {
            print!(" {ms:>8.2}");
        }
        println!(" {:>9.2}×", r.latency[1] / shared);
        rows.push(r);
    }
    let (plain, bounded) = (
        rows[first_extra].latency[1],
        rows[first_extra + 1].latency[1],
    );
    let (slow, ejected) = (
        rows[first_extra + 2].latency[1],
        rows[first_extra + 3].latency[1],
    );
    println!(
        "  bounded loads: p99 {bounded:.2} ms against plain consistent hashing's {plain:.2} ms \
         ({:.1}× lower)\n  outlier ejection: p99 {ejected:.2} ms against {slow:.2} ms without \
         ({:.1}× lower)",
        plain / bounded,
        slow / ejected
    );
    let whole = |r: &Row| r.completed == jobs as u64 && r.dispatched == jobs as u64;
    let lost = !rows.iter().all(whole);
    if lost {
        println!("  JOBS LOST: see done/sent ({jobs} scheduled)");
    } else {
        println!("  no job lost: every contender completed all {jobs} jobs");
    }
    Ok(!lost)
}

/// Draws the latency CDF of every contender (log latency axis) as an SVG at `path`.
fn chart(path: &str, rows: &[Row], cfg: &Config) -> Result<(), Box<dyn Error>> {
    use plotters::prelude::*;
    let most = rows
        .iter()
        .flat_map(|r| r.cdf.last())
        .map(|&(ms, _)| ms)
        .fold(1.0, f64::max);
    let least = rows
        .iter()
        .flat_map(|r| r.cdf.first())
        .map(|&(ms, _)| ms)
        .fold(f64::INFINITY, f64::min)
        .max(0.1);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "latency CDF: {} workers at {:.0} % load, 95 % 1 ms / 5 % 20 ms jobs",
        cfg.workers,
        cfg.load * 100.0
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((least * 0.9..most * 1.1).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency from scheduled arrival (ms, log scale)")
        .y_desc("share of jobs")
        .draw()?;
    let colours = [RED, BLUE, GREEN, BLACK];
    for (row, colour) in rows.iter().take(4).zip(colours) {
        chart
            .draw_series(LineSeries::new(
                row.cdf.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(row.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Parses the arguments, builds the 2-thread runtime and runs the benchmark.
fn main() -> ExitCode {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("quality: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let outcome = runtime
        .map_err(Box::from)
        .and_then(|rt| rt.block_on(bench(cfg)));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quality: {e}");
            ExitCode::FAILURE
        }
    }
}
