//! Each balancer's refresher: a task on the runtime it was built on, or a thread of its own
//! without one; it ends with its balancer, and a balancer that outlives its runtime goes on
//! refreshing and re-admitting on a thread.

mod common;

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use common::{make, settle, SharedSource, TestMember};
use croupier::{Balancer, Ejection, Outcome};

/// The tests here count the process's refresher threads: one at a time, and each once the
/// threads of the balancers an earlier test dropped have ended (a thread ends a moment after
/// its balancer is dropped, so without this a count could fall under a test's feet).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(target_os = "linux")]
    until("the earlier tests' refresher threads end", || {
        refresher_threads() == 0
    });
    one
}

/// Live threads named `croupier-refresh` (Linux keeps 15 bytes of a name), once they have
/// started: a thread names itself.
#[cfg(target_os = "linux")]
fn refresher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("croupier-refres"))
        .count()
}

/// Waits (bounded, in real time) until `cond` holds.
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::yield_now();
    }
}

fn balancer(source: &SharedSource) -> Balancer<TestMember> {
    Balancer::builder()
        .min_alive_ratio(0.8)
        .outlier_ejection(
            Ejection::default()
                .consecutive_failures(1)
                .max_share(0.5)
                .base_time(Duration::from_millis(50)),
        )
        .source(source.clone())
        .build()
        .unwrap()
}

/// Kills member 0 of `members` and picks until the ratio refresh that asks for has landed.
fn refresh_by_ratio(b: &Balancer<TestMember>, members: &[TestMember]) {
    let generation = b.stats().generation;
    members[0].kill();
    for _ in 0..100 {
        drop(b.pick());
    }
    settle(b);
    assert_eq!(
        b.stats().generation,
        generation + 1,
        "the ratio refresh landed"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_balancer_without_a_runtime_has_a_thread_of_its_own_until_dropped() {
    let _one = serial();
    let before = refresher_threads();
    let (a, b) = (
        balancer(&SharedSource::new(make(4))),
        balancer(&SharedSource::new(make(4))),
    );
    // A thread names itself once it runs.
    until("one thread per balancer", || {
        refresher_threads() == before + 2
    });
    drop(a);
    until("the first thread's end", || {
        refresher_threads() == before + 1
    });
    drop(b);
    until("the second thread's end", || refresher_threads() == before);
}

#[test]
fn a_balancer_built_on_a_runtime_refreshes_on_a_task_that_ends_with_it() {
    let _one = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks = tokio::runtime::Handle::current().metrics();
        let before = tasks.num_alive_tasks();
        #[cfg(target_os = "linux")]
        let threads = refresher_threads();
        let members = make(4);
        let b = balancer(&SharedSource::new(members.clone()));
        assert_eq!(tasks.num_alive_tasks(), before + 1, "a task of its own");
        #[cfg(target_os = "linux")]
        assert_eq!(refresher_threads(), threads, "and no thread");

        members[0].kill();
        for _ in 0..100 {
            drop(b.pick());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.stats().generation == 0 {
            assert!(Instant::now() < deadline, "the ratio refresh never landed");
            tokio::task::yield_now().await;
        }

        drop(b);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tasks.num_alive_tasks() != before {
            assert!(Instant::now() < deadline, "the task outlived its balancer");
            tokio::task::yield_now().await;
        }
    });
}

/// The runtime a balancer was built on shuts down first: a thread takes over, on the system
/// clock, and no refresh or re-admission is lost, not even one asked for while the runtime
/// was still there.
#[test]
fn a_balancer_that_outlives_its_runtime_goes_on_refreshing_and_readmitting() {
    let _one = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let members = make(10);
    let source = SharedSource::new(members.clone());
    let b = runtime.block_on(async { balancer(&source) });
    // Asked for while the runtime lives, but the runtime never runs again to serve it.
    let p = b.pick().unwrap();
    let ejected = p.id;
    p.report(Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);
    // Three of the nine others die: 7 of 10 is below the ratio.
    for m in members.iter().filter(|m| m.id != ejected).take(3) {
        m.kill();
    }
    for _ in 0..100 {
        drop(b.pick());
    }
    assert!(b.is_refreshing());
    #[cfg(target_os = "linux")]
    let threads = refresher_threads();

    drop(runtime);
    #[cfg(target_os = "linux")]
    until("a thread's taking over", || {
        refresher_threads() == threads + 1
    });
    settle(&b);
    assert_eq!(b.stats().generation, 1, "the refresh asked for landed");
    until("the re-admission", || b.stats().ejected == 0);

    // And the thread goes on serving.
    let members = make(4);
    source.set(members.clone());
    b.refresh();
    refresh_by_ratio(&b, &members);
}

/// A balancer that outlives a paused runtime whose clock had run an hour ahead times its
/// ejections on the system's clock from then on: a member ejected for 50 ms comes back in
/// about 50 ms of real time, not an hour after the gone runtime's frozen clock.
#[test]
fn a_balancer_that_outlives_a_paused_runtime_times_ejections_on_the_systems_clock() {
    let _one = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let source = SharedSource::new(make(4));
    let b = runtime.block_on(async {
        let b = balancer(&source);
        tokio::time::advance(Duration::from_secs(3600)).await;
        b
    });
    drop(runtime);
    let p = b.pick().unwrap();
    p.report(Outcome::Failure);
    assert_eq!(b.stats().ejected, 1);
    until(
        "the re-admission, 50 ms later by the system's clock",
        || b.stats().ejected == 0,
    );
}

/// A flight the refresher task took up and queued on a busy blocking pool (its one thread
/// waits) when the runtime shuts down still lands once the pool's thread is free: a refresh
/// asked for is never lost. (tokio runs what was queued before its shutdown began; a flight
/// it refuses, spawned after, is handed back by `Flight`'s drop.)
#[test]
fn a_flight_queued_on_a_busy_pool_at_shutdown_still_lands() {
    let _one = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let members = make(10);
    let source = SharedSource::new(members.clone());
    let b = runtime.block_on(async { balancer(&source) });
    // The blocking pool's only thread waits until released.
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    drop(runtime.spawn_blocking(move || {
        started_tx.send(()).unwrap();
        released.recv().ok();
    }));
    started.recv().unwrap();
    // Three of ten die: below the ratio, so a pick hands a flight to the refresher task,
    // which queues it on the busy pool.
    for m in members.iter().take(3) {
        m.kill();
    }
    for _ in 0..100 {
        drop(b.pick());
    }
    assert!(b.is_refreshing());
    runtime.block_on(async {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(
        b.stats().generation,
        0,
        "the flight waits in the pool's queue"
    );
    runtime.shutdown_background();
    release.send(()).unwrap();
    settle(&b);
    assert_eq!(b.stats().generation, 1, "the refresh asked for landed");
}
