//! What the `metrics` feature records, read back through `metrics-util`'s debugging recorder:
//! every counter, gauge and histogram of `croupier::docs::metrics`, with exact values.
#![cfg(feature = "metrics")]

mod common;
mod common_workers;

use std::{collections::HashMap, time::Duration};

use common::{make, SharedSource};
use common_workers::{within, Event, Msg, Probe};
use croupier::{Balancer, PickError, Pool, Wait};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Everything recorded so far. The debugging recorder hands out each value once (a snapshot
/// resets counters and gauges to 0 and empties histograms), and croupier sends gauges as
/// differences, so adding every snapshot up gives the values an exporter would show.
struct Totals {
    snapshotter: Snapshotter,
    seen: HashMap<(String, Vec<(String, String)>), DebugValue>,
}

impl Totals {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            seen: HashMap::new(),
        }
    }

    fn take(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let total = self
                .seen
                .entry((key.name().to_owned(), labels))
                .or_insert(match value {
                    DebugValue::Counter(_) => DebugValue::Counter(0),
                    DebugValue::Gauge(_) => DebugValue::Gauge(0.0.into()),
                    DebugValue::Histogram(_) => DebugValue::Histogram(Vec::new()),
                });
            match (total, value) {
                (DebugValue::Counter(t), DebugValue::Counter(n)) => *t += n,
                (DebugValue::Gauge(t), DebugValue::Gauge(g)) => *t += g,
                (DebugValue::Histogram(t), DebugValue::Histogram(h)) => t.extend(h),
                (t, v) => panic!("{t:?} then {v:?} under one key"),
            }
        }
    }

    /// The metric `name` with exactly `labels` (in any order).
    fn get(&mut self, name: &str, labels: &[(&str, &str)]) -> &DebugValue {
        self.take();
        let mut labels: Vec<_> = labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        labels.sort();
        self.seen
            .get(&(name.to_owned(), labels.clone()))
            .unwrap_or_else(|| panic!("{name} {labels:?} was never registered"))
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            DebugValue::Gauge(g) => g.into_inner(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(name, labels) {
            DebugValue::Histogram(h) => h.iter().map(|v| v.into_inner()).collect(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let mut s = Totals::new(&recorder);
    let edge = [("name", "edge")];

    // A bare balancer: picks, refusals of each kind, deaths, refreshes, gauges, a drain.
    let members = make(2);
    let source = SharedSource::new(members.clone());
    let (b, empty) = metrics::with_local_recorder(&recorder, || {
        let b = Balancer::builder()
            .name("edge")
            .max_load(5)
            .min_alive_ratio(0.8)
            .source(source.clone())
            .build()
            .unwrap();
        let empty = Balancer::<common::TestMember>::builder()
            .name("empty")
            .source(Vec::new())
            .build()
            .unwrap();
        (b, empty)
    });
    assert_eq!(b.name(), "edge");
    assert_eq!(s.gauge("croupier_live_members", &edge), 2.0);

    for _ in 0..4 {
        b.pick().unwrap();
    }
    members[0].set_load(2);
    members[1].set_load(5);
    b.publish_metrics();
    assert_eq!(s.counter("croupier_picks_total", &edge), 4);
    // Both live members count towards the load total, the one at max_load too.
    assert_eq!(s.gauge("croupier_run_queue", &edge), 7.0);

    members[0].set_load(5);
    assert_eq!(b.pick().unwrap_err(), PickError::Overloaded);
    assert_eq!(empty.pick().unwrap_err(), PickError::NoMembers);
    let overloaded = [("name", "edge"), ("kind", "overloaded")];
    assert_eq!(s.counter("croupier_refusals_total", &overloaded), 1);
    let no_members = [("name", "empty"), ("kind", "no_members")];
    assert_eq!(s.counter("croupier_refusals_total", &no_members), 1);

    // A death below the ratio (1 of 2 < 0.8): counted, and the refresh it runs publishes.
    members[0].set_load(0);
    members[1].set_load(0);
    members[1].kill();
    assert!(b.notify_dead(&members[1]));
    assert_eq!(s.counter("croupier_dead_found_total", &edge), 1);
    assert_eq!(s.counter("croupier_refreshes_total", &edge), 1);
    assert_eq!(s.gauge("croupier_live_members", &edge), 1.0);
    assert_eq!(
        s.counter("croupier_picks_total", &edge),
        b.stats().picks,
        "a refresh publishes the picks so far"
    );

    // A drain: a pick inside it is refused, and its length is recorded once it ends.
    let refused = b
        .apply_within(Wait::duration(Duration::from_millis(1)), || async {
            b.pick().unwrap_err()
        })
        .await
        .unwrap();
    assert_eq!(refused, PickError::Draining);
    let draining = [("name", "edge"), ("kind", "draining")];
    assert_eq!(s.counter("croupier_refusals_total", &draining), 1);
    let drains = s.histogram("croupier_drain_seconds", &edge);
    assert_eq!(drains.len(), 1);
    assert!(drains[0] >= 0.001, "the drain waited 1 ms: {drains:?}");

    // A second balancer under the same name adds to the gauge; dropping one takes its share.
    let twin = metrics::with_local_recorder(&recorder, || {
        Balancer::builder()
            .name("edge")
            .source(make(3))
            .build()
            .unwrap()
    });
    assert_eq!(s.gauge("croupier_live_members", &edge), 4.0);
    drop(twin);
    assert_eq!(s.gauge("croupier_live_members", &edge), 1.0);
    drop(b);
    assert_eq!(s.gauge("croupier_live_members", &edge), 0.0);
}

#[tokio::test]
async fn pool_metrics_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let mut s = Totals::new(&recorder);
    let resize = [("name", "resize")];
    let (probe, mut events) = Probe::new(2);
    let pool = metrics::with_local_recorder(&recorder, || {
        Pool::builder(probe.factory())
            .size(2)
            .name("resize")
            .intensity(1, Duration::from_secs(3600))
            .start()
            .unwrap()
    });
    let w0 = pool.supervisor().children()[0].clone();

    // The run-queue total: one message in hand on slot 0 and one queued behind it.
    let blocked = tokio::spawn({
        let w0 = w0.clone();
        async move { w0.call(Msg::Block(1)).await }
    });
    within(events.wait_for(Event::Entered(w0.id()))).await;
    w0.send(Msg::Work(2)).unwrap();
    pool.publish_metrics();
    assert_eq!(s.gauge("croupier_run_queue", &resize), 2.0);
    assert_eq!(s.gauge("croupier_live_members", &resize), 2.0);
    probe.open(1);
    within(blocked).await.unwrap().unwrap();

    // A crash: a death and a restart (the restart refreshes the pool's balancer).
    assert!(pool.call(Msg::Panic).await.is_err());
    let stats = within(async {
        loop {
            let stats = pool.supervisor().stats();
            if stats.restarts == 1 {
                return stats;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(s.counter("croupier_restarts_total", &resize), 1);
    assert_eq!(s.counter("croupier_deaths_total", &resize), stats.deaths);
    assert_eq!(stats.deaths, 1);
    assert!(s.counter("croupier_refreshes_total", &resize) >= 1);

    // A second crash within the intensity window: the supervisor gives up, and the two
    // messages queued behind the crashing one are dropped.
    let w = pool.supervisor().children()[0].clone();
    // Forget the events so far: the wait below must see the crashing message enter, not an
    // earlier one (which slot the first crash took depends on least loaded's seed).
    events.drain();
    let crash = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::BlockThenPanic).await }
    });
    within(events.wait_for(Event::Entered(w.id()))).await;
    w.send(Msg::Work(3)).unwrap();
    w.send(Msg::Work(4)).unwrap();
    probe.open(1);
    assert!(within(crash).await.unwrap().is_err());
    within(async {
        while !pool.supervisor().stats().gave_up {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(s.counter("croupier_dropped_total", &resize), 2);
    assert_eq!(s.counter("croupier_deaths_total", &resize), 2);
    assert_eq!(s.counter("croupier_restarts_total", &resize), 1);
    pool.publish_metrics();
    assert_eq!(s.gauge("croupier_live_members", &resize), 0.0);
}

/// A drain's length is measured on tokio's clock, as every duration croupier measures: on a
/// paused clock a drain that waits 10 virtual seconds records 10 s, not the few microseconds
/// of wall-clock time it took.
#[tokio::test(start_paused = true)]
async fn drain_seconds_follow_tokios_paused_clock() {
    let recorder = DebuggingRecorder::new();
    let mut s = Totals::new(&recorder);
    let b = metrics::with_local_recorder(&recorder, || {
        Balancer::builder()
            .name("paused")
            .source(make(2))
            .build()
            .unwrap()
    });
    b.apply_within(Wait::duration(Duration::from_secs(10)), || async {})
        .await
        .unwrap();
    let drains = s.histogram("croupier_drain_seconds", &[("name", "paused")]);
    assert_eq!(drains.len(), 1);
    assert!((drains[0] - 10.0).abs() < 1e-3, "{drains:?}");
}
