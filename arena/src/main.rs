//! The arena's command line: `cargo run --release --manifest-path arena/Cargo.toml -- --help`.

use std::{path::PathBuf, process::ExitCode};

use arena::{contender, report, run_all, Case, Scenario, Service};
use clap::Parser;

/// Every croupier policy against tower's p2c, random and the ideal shared queue, under
/// faults, in deterministic virtual time. Prints a Markdown table (or, with --json, one JSON
/// document).
#[derive(Debug, Parser)]
#[command(name = "arena", version)]
struct Args {
    /// Only this scenario (s1 … s10).
    #[arg(long)]
    scenario: Option<Scenario>,
    /// Only this contender's rows (e.g. pool, pool-ll, balance, remote, tower-pending, ideal).
    #[arg(long)]
    contender: Option<String>,
    /// Members, instead of the scenario's own.
    #[arg(long)]
    members: Option<usize>,
    /// Offered load as a fraction of capacity (0.85 = 85 %), instead of the scenario's.
    #[arg(long)]
    load: Option<f64>,
    /// Virtual seconds of arrivals, instead of the scenario's.
    #[arg(long)]
    seconds: Option<f64>,
    /// The seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Job sizes: fixed (1 ms), exp (mean 1 ms) or bimodal (95 % 1 ms, 5 % 20 ms).
    #[arg(long)]
    service: Option<Service>,
    /// A tenth of each scenario's length (for CI).
    #[arg(long)]
    quick: bool,
    /// Print one compact JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw p99 ÷ ideal per scenario and contender to this SVG file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Threads to run cases on (each case on a runtime of its own); the output does not
    /// depend on it.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let wanted = match &args.contender {
        None => None,
        Some(name) => match contender::by_name(name) {
            Some(c) => Some(c),
            None => {
                let names: Vec<_> = contender::ALL.iter().map(|c| c.name).collect();
                eprintln!(
                    "arena: unknown contender '{name}'; one of: {}",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        },
    };
    if let Some(load) = args.load {
        if !(load.is_finite() && load > 0.0 && load <= 10.0) {
            eprintln!("arena: --load must be in (0, 10] (a fraction of capacity: 0.85 = 85 %)");
            return ExitCode::from(2);
        }
    }
    if let Some(s) = args.seconds {
        if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
            eprintln!("arena: --seconds must be in (0, 86400]");
            return ExitCode::from(2);
        }
    }
    if let Some(m) = args.members {
        if !(1..=4096).contains(&m) {
            eprintln!("arena: --members must be in 1 ..= 4096");
            return ExitCode::from(2);
        }
    }
    let scenarios: Vec<Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => Scenario::ALL.to_vec(),
    };
    let mut cases = Vec::new();
    for s in scenarios {
        let mut p = s.defaults();
        p.seed = args.seed;
        if args.quick {
            p.seconds /= 10.0;
        }
        if let Some(m) = args.members {
            p.members = m;
        }
        if let Some(l) = args.load {
            p.load = l;
        }
        if let Some(x) = args.seconds {
            p.seconds = x;
        }
        if let Some(x) = args.service {
            p.service = x;
        }
        if s == Scenario::S7 && p.members < 2 {
            eprintln!("arena: s7 needs at least 2 members (one joins)");
            return ExitCode::from(2);
        }
        for c in contender::for_scenario(s) {
            if wanted.is_none_or(|w| w.name == c.name) {
                cases.push(Case {
                    scenario: s,
                    params: p,
                    contender: c,
                });
            }
        }
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let rows = run_all(&cases, threads);
    if args.json {
        println!("{}", report::json(&rows));
    } else {
        print!("{}", report::markdown(&rows));
    }
    if let Some(path) = &args.svg {
        if let Err(e) = report::svg(&rows, path) {
            eprintln!("arena: could not draw {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
