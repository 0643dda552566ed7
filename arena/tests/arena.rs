//! The arena checks itself (determinism, queueing theory, accounting) and pins what croupier
//! achieves today in each scenario, so that later work cannot make it worse unnoticed.
//!
//! Every figure is exact: virtual time and seeded randomness make a run the same on every
//! machine, so these are not timed tests. The floors are today's figures (seed 1, the
//! scenarios' own parameters) with their last digit rounded up.

use arena::{contender, report, run::run, run_all, Case, Row, Scenario, Service};

fn case(scenario: Scenario, seconds_divisor: f64, name: &str) -> Case {
    let mut params = scenario.defaults();
    params.seconds /= seconds_divisor;
    Case {
        scenario,
        params,
        contender: contender::by_name(name).expect("a contender"),
    }
}

/// Every scenario and each of its contenders, at `1 / divisor` of the scenario's length.
fn every_case(divisor: f64) -> Vec<Case> {
    Scenario::ALL
        .into_iter()
        .flat_map(|s| {
            contender::for_scenario(s)
                .into_iter()
                .map(move |c| case(s, divisor, c.name))
        })
        .collect()
}

#[test]
fn arena_is_deterministic() {
    let cases = every_case(20.0);
    let one = report::json(&run_all(&cases, 2));
    let two = report::json(&run_all(&cases, 1));
    assert_eq!(
        one, two,
        "one seed, two runs (on 2 threads, then 1): the same JSON"
    );
    assert!(one.starts_with("{\"rows\":["));
    assert!(!one.contains("null"));
    // Compact: about 100 kB with the S7 ramp fields every row carries.
    assert!(one.len() < 110_000, "{} bytes", one.len());
    // The seed matters: another one gives other figures.
    let mut other = cases.clone();
    other.iter_mut().for_each(|c| c.params.seed = 2);
    assert_ne!(report::json(&run_all(&other, 2)), one);
}

/// Erlang C: the probability that an arrival waits in an M/M/c queue with offered load `a`
/// (in servers), and the mean wait in units of the mean service time.
fn erlang_c_mean_wait(c: u32, a: f64) -> f64 {
    let mut term = 1.0; // a^k / k!
    let mut below = 0.0;
    for k in 0..c {
        below += term;
        term *= a / f64::from(k + 1);
    }
    let top = term * f64::from(c) / (f64::from(c) - a);
    let waits = top / (below + top);
    waits / (f64::from(c) - a)
}

#[test]
fn ideal_matches_erlang_c() {
    for (load, seconds) in [(0.8, 120.0), (0.95, 300.0)] {
        let mut p = Scenario::S1.defaults();
        p.service = Service::Exp;
        p.members = 16;
        p.load = load;
        p.seconds = seconds;
        let row = run(Scenario::S1, &p, &contender::by_name("ideal").unwrap());
        let theory = erlang_c_mean_wait(16, 16.0 * load); // in ms: mean service is 1 ms
        let ratio = row.mean_wait_ms / theory;
        assert!(
            (0.95..=1.05).contains(&ratio),
            "load {load}: mean wait {} ms, Erlang C {theory:.4} ms (x{ratio:.3})",
            row.mean_wait_ms
        );
        assert!((row.mean_service_ms - 1.0).abs() < 0.01, "{row:?}");
    }
}

#[test]
fn every_request_is_accounted_for() {
    let rows = run_all(&every_case(10.0), 2);
    for r in &rows {
        assert!(r.sent > 0, "{r:?}");
        assert_eq!(
            r.lost, 0,
            "{} {}: unanswered requests",
            r.scenario, r.contender
        );
        assert_eq!(
            r.completed + r.failed + r.refused,
            r.sent,
            "{} {}",
            r.scenario,
            r.contender
        );
    }
    // One default row per croupier layer in every scenario.
    for s in Scenario::ALL {
        for layer in ["pool", "balance", "remote"] {
            let defaults = rows
                .iter()
                .filter(|r| r.scenario == s.name() && r.layer == layer && r.default)
                .count();
            let expected = usize::from(!(s == Scenario::S9 && layer == "pool"));
            assert_eq!(defaults, expected, "{} {layer}", s.name());
        }
    }
}

/// The full-length rows of `names` and of the ideal in `scenario`.
fn full(scenario: Scenario, names: &[&str]) -> (Vec<Row>, Row) {
    let mut cases: Vec<Case> = names.iter().map(|n| case(scenario, 1.0, n)).collect();
    cases.push(case(scenario, 1.0, "ideal"));
    let mut rows = run_all(&cases, 2);
    let ideal = rows.pop().unwrap();
    (rows, ideal)
}

fn p99_ratio(row: &Row, ideal: &Row) -> f64 {
    row.p99_ms / ideal.p99_ms
}

fn failed_share(row: &Row) -> f64 {
    row.failed as f64 / row.sent as f64
}

#[track_caller]
fn within(row: &Row, ideal: &Row, floor: f64) {
    let x = p99_ratio(row, ideal);
    assert!(
        x <= floor,
        "{} {}: p99 {} ms = {x:.3}x the ideal's {} ms, over today's {floor}",
        row.scenario,
        row.contender,
        row.p99_ms,
        ideal.p99_ms
    );
}

#[test]
fn arena_s1_least_loaded_p99_within_1_09_of_ideal() {
    // `pool` and `balance`: their builders' defaults, least loaded since issue #24 (and a
    // pool hands a slow worker's queue back after 1 ms).
    let (rows, ideal) = full(
        Scenario::S1,
        &["pool", "balance", "pool-p2c", "balance-ewma", "remote"],
    );
    within(&rows[0], &ideal, 1.04);
    within(&rows[1], &ideal, 1.09);
    within(&rows[2], &ideal, 2.03);
    within(&rows[3], &ideal, 1.09);
    // The remote layer's load is the caller's own calls in flight: with one caller, exact.
    within(&rows[4], &ideal, 1.09);
}

#[test]
fn arena_s2_least_loaded_p99_within_1_28_of_ideal() {
    // `balance`'s default weighs requests in flight by latency: it sees the speeds.
    let (rows, ideal) = full(Scenario::S2, &["pool", "balance", "balance-ll", "remote"]);
    within(&rows[0], &ideal, 1.08);
    within(&rows[1], &ideal, 1.09);
    within(&rows[2], &ideal, 1.28);
    within(&rows[3], &ideal, 1.28);
}

#[test]
fn arena_s3_least_loaded_p99_within_1_29_of_ideal_and_the_slow_member_gets_under_1_percent() {
    let (rows, ideal) = full(Scenario::S3, &["pool", "balance", "balance-ll", "remote"]);
    within(&rows[0], &ideal, 1.07);
    within(&rows[1], &ideal, 1.11);
    within(&rows[2], &ideal, 1.29);
    within(&rows[3], &ideal, 1.28);
    for r in &rows {
        assert!(r.share_to_faulty < 0.01, "{r:?}");
    }
}

#[test]
fn arena_s4_a_failing_member_costs_a_pool_or_a_balance_under_0_012_percent_of_calls() {
    let (rows, ideal) = full(
        Scenario::S4,
        &[
            "pool",
            "balance",
            "balance-ej",
            "remote-ej",
            "pool-rr",
            "remote",
        ],
    );
    // Failure-aware load: the failing member carries a penalty and draws almost nothing.
    for r in [&rows[0], &rows[1], &rows[5]] {
        assert!(failed_share(r) <= 0.00012, "{r:?}");
        assert!(r.share_to_faulty <= 0.00012, "{r:?}");
        within(r, &ideal, 1.29);
    }
    within(&rows[0], &ideal, 1.16);
    // Five failures in a row eject it; it fails five again each time it is let back (a few
    // more for the remote layer: calls already on their way when the fifth comes back).
    assert!(rows[2].failed <= 10, "{:?}", rows[2]);
    assert!(rows[3].failed <= 14, "{:?}", rows[3]);
    // Round robin ignores load: a sixteenth of the calls fail.
    assert!(failed_share(&rows[4]) <= 0.0626, "{:?}", rows[4]);
}

#[test]
fn arena_s5_a_dead_member_costs_a_pool_under_0_01_percent_of_calls_and_a_balance_none() {
    let (rows, ideal) = full(Scenario::S5, &["pool", "balance", "remote-ej", "remote"]);
    for r in [&rows[0], &rows[3]] {
        assert!(failed_share(r) < 0.0001, "{r:?}");
        within(r, &ideal, 1.29);
    }
    within(&rows[0], &ideal, 1.16);
    // `Balance` finds it refusing in `poll_ready` and tries another member: no caller sees it.
    assert_eq!(rows[1].failed, 0, "{:?}", rows[1]);
    within(&rows[1], &ideal, 1.29);
    // The remote layer sends to it and ejects it after five failures in a row.
    assert!(rows[2].failed <= 10, "{:?}", rows[2]);
}

#[test]
fn arena_s6_least_loaded_pool_p99_within_1_09_of_ideal_through_a_crash_loop() {
    let (rows, ideal) = full(Scenario::S6, &["pool", "balance", "balance-ej", "remote"]);
    within(&rows[0], &ideal, 1.09);
    within(&rows[3], &ideal, 1.22);
    assert!(failed_share(&rows[3]) < 0.0001, "{:?}", rows[3]);
    assert!(failed_share(&rows[0]) < 0.0001, "{:?}", rows[0]);
    within(&rows[1], &ideal, 1.23);
    assert!(failed_share(&rows[1]) < 0.0002, "{:?}", rows[1]);
    // Ejection after five failures in a row, each time the member crashes.
    assert!(rows[2].failed <= 24, "{:?}", rows[2]);
}

#[test]
fn arena_s7_least_loaded_p99_within_1_33_of_ideal_with_a_cold_member() {
    let (rows, ideal) = full(Scenario::S7, &["pool", "balance", "balance-ll", "remote"]);
    within(&rows[0], &ideal, 1.13);
    within(&rows[1], &ideal, 1.21);
    within(&rows[2], &ideal, 1.33);
    within(&rows[3], &ideal, 1.33);
}

/// The new member's share of what was served, second by second through its first 30 s,
/// against gRPC A100's ramp (10 % of its weight rising to all of it): the member is 5× slower
/// all that time, so any load-aware pool serves about what it can (1.2–1.6 % of sixteen
/// members' work), within 5 points of the ramp's 0.7 → 6.2 %. The requests that arrive during
/// the ramp wait longer than those after it even in the ideal shared queue (1.22×), since a
/// sixteenth of the capacity is a fifth of itself; the default pool stays within 1.33×.
#[test]
fn arena_s7_the_new_members_share_stays_within_5_points_of_the_ramp() {
    let (rows, ideal) = full(Scenario::S7, &["pool", "pool-ss", "balance"]);
    for r in &rows {
        assert!(r.ramp_error_pp > 0.0 && r.ramp_error_pp <= 5.6, "{r:?}");
    }
    assert!(rows[0].ramp_error_pp <= 4.72, "{:?}", rows[0]);
    assert!(rows[0].ramp_p99_ratio <= 1.33, "{:?}", rows[0]);
    assert!(rows[2].ramp_p99_ratio <= 1.18, "{:?}", rows[2]);
    assert!(ideal.ramp_p99_ratio >= 1.2, "{ideal:?}");
}

#[test]
fn arena_s8_bounded_loads_keep_p99_within_2_of_ideal_and_80_percent_of_keys_home() {
    let (rows, ideal) = full(Scenario::S8, &["pool-bounded", "balance-bounded", "pool"]);
    within(&rows[0], &ideal, 1.78);
    within(&rows[1], &ideal, 1.98);
    // The other keys mostly stay with their member: a key over the bound goes to the
    // lightest member, not along the table (which kept 66 % and 70 % home at ε = 0.25 with
    // p99 at 1.75× and 1.89×; at ε = 0.5, 79 % and 83 % home, 2.18× and 2.41×).
    assert!(rows[0].keys_at_home >= 0.82, "{:?}", rows[0]);
    assert!(rows[1].keys_at_home >= 0.86, "{:?}", rows[1]);
    // ...all of them without a bound, where the hot key's member drowns.
    assert!((rows[2].keys_at_home - 1.0).abs() < 1e-9, "{:?}", rows[2]);
}

#[test]
fn arena_s9_stale_loads_balance_p99_within_2_13_and_remote_within_2_67_of_ideal() {
    let (rows, ideal) = full(Scenario::S9, &["balance", "remote-rr", "remote"]);
    within(&rows[0], &ideal, 2.13);
    within(&rows[1], &ideal, 3.68);
    // The remote layer's default: least loaded over this caller's calls in flight plus the
    // last report drained at the member's reported pace. (Over the last report plus the calls
    // sent since, sixteen callers herded onto the member that reported least: 82.9× the
    // ideal, and one member took every request of a 100 ms window.)
    within(&rows[2], &ideal, 2.67);
    assert!(rows[0].peak_window_share <= 1.45, "{:?}", rows[0]);
    assert!(rows[1].peak_window_share <= 1.09, "{:?}", rows[1]);
    assert!(rows[2].peak_window_share <= 1.21, "{:?}", rows[2]);
}

#[test]
fn arena_s10_overload_goodput_at_least_99_percent_of_capacity() {
    let (rows, _) = full(Scenario::S10, &["pool", "balance", "remote", "pool-shed"]);
    for r in &rows {
        assert!(r.goodput >= 0.99, "{r:?}");
    }
    // With `max_load`, a pool sheds the excess at once (a sixth of 120 %) and keeps the
    // admitted calls' p99 within 3× the unloaded one (exponential jobs of mean 1 ms: their own
    // p99 is ln 100 ms).
    let shed = &rows[3];
    let unloaded_p99 = 100f64.ln();
    assert!(shed.p99_ms <= 3.0 * unloaded_p99, "{shed:?}");
    let refused = shed.refused as f64 / shed.sent as f64;
    assert!(refused <= 0.17, "{shed:?}");
}
