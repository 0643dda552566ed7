//! Supervisor behaviour: restarts, incarnations, restart rules, intensity, mailboxes, shutdown,
//! resizing and configuration errors.
//!
//! Every test runs on a current-thread runtime unless it says otherwise, so that "the worker
//! task runs when the test yields" is a fact rather than a hope; nothing waits on a timer.

mod common_workers;

use std::{sync::Mutex, time::Duration};

use croupier::{
    Backoff, Balancer, CallError, ConfigError, Mailbox, Member, Pool, PoolCallError, PoolSendError,
    Restart, SendError, Supervisor, Worker, WorkerId, WorkerRef,
};

use crate::common_workers::{until, within, Event, Msg, Probe, Reply, TestWorker};

fn id(slot: usize, incarnation: u64) -> WorkerId {
    WorkerId::new(slot, incarnation)
}

#[tokio::test]
async fn worker_panic_restarts_with_new_incarnation() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .start()
        .unwrap();
    let old = sup.children()[0].clone();
    let neighbour = sup.children()[1].clone();
    assert_eq!(old.id(), id(0, 0));
    assert_eq!(old.id().to_string(), "0.0");

    let crash = within(old.call(Msg::Panic)).await;
    assert!(matches!(crash, Err(CallError::WorkerDied)), "{crash:?}");
    assert_eq!(crash.unwrap_err().into_inner(), None);

    // The old handle is dead at once, and never reaches the successor.
    assert!(!old.is_alive());
    assert_eq!(old.send(Msg::Work(1)), Err(SendError::Dead(Msg::Work(1))));
    let stale = within(old.call(Msg::Work(2))).await;
    assert!(
        matches!(stale, Err(CallError::Dead(Msg::Work(2)))),
        "{stale:?}"
    );

    // Same slot, next incarnation; the neighbour is untouched.
    let children = sup.children();
    assert_eq!(children.len(), 2);
    let new = &children[0];
    assert_eq!(new.id(), id(0, 1));
    assert_eq!((new.id().slot(), new.id().incarnation()), (0, 1));
    assert_eq!(new.id().to_string(), "0.1");
    assert!(new.is_alive());
    assert_ne!(*new, old);
    assert_eq!(children[1], neighbour);
    assert_eq!(children[1].id().to_string(), "1.0");

    let reply = within(new.call(Msg::Work(5))).await.unwrap();
    assert_eq!(reply, Reply { by: id(0, 1), n: 5 });

    let stats = sup.stats();
    assert_eq!((stats.restarts, stats.deaths, stats.gave_up), (1, 1, false));
    assert_eq!(stats.workers[0].id, id(0, 1));
    assert!(stats.workers[0].alive);
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 3);

    // A panic skips the `stopping` hook, but the crashed worker is dropped.
    let seen = events.drain();
    assert!(seen.contains(&Event::Dropped(id(0, 0))), "{seen:?}");
    assert!(seen.contains(&Event::Started(id(0, 1))), "{seen:?}");
    assert!(!seen.contains(&Event::Stopping(id(0, 0))), "{seen:?}");

    within(sup.shutdown()).await;
}

#[tokio::test]
async fn queued_messages_survive_a_crash() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory()).start().unwrap();
    let w = sup.children()[0].clone();

    // The worker takes a message that will panic once the gate opens...
    let crash = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(id(0, 0))).await;

    // ...and sends and calls queue up behind it, in a known order.
    w.send(Msg::Work(1)).unwrap();
    let call2 = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(2)).await }
    });
    until("call 2 queued", || w.load() == 3).await;
    w.send(Msg::Work(3)).unwrap();
    let call4 = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(4)).await }
    });
    until("call 4 queued", || w.load() == 5).await;
    w.send(Msg::Work(5)).unwrap();
    assert_eq!(w.load(), 6);
    assert!(probe.handled().is_empty());

    probe.open(1);
    let crash = within(crash).await.unwrap();
    assert!(matches!(crash, Err(CallError::WorkerDied)), "{crash:?}");

    let successor = sup.children()[0].clone();
    assert_eq!(successor.id(), id(0, 1));
    // A call after them all returns once they have all been handled (one mailbox, FIFO).
    let last = within(successor.call(Msg::Work(6))).await.unwrap();
    assert_eq!(last.by, id(0, 1));

    assert_eq!(
        within(call2).await.unwrap().unwrap(),
        Reply { by: id(0, 1), n: 2 }
    );
    assert_eq!(
        within(call4).await.unwrap().unwrap(),
        Reply { by: id(0, 1), n: 4 }
    );
    let log = probe.log.lock().clone();
    let expected: Vec<_> = (1..=6).map(|n| (id(0, 1), n)).collect();
    assert_eq!(
        log, expected,
        "every queued message, in order, by the successor"
    );
    let stats = sup.stats();
    assert_eq!((stats.deaths, stats.restarts, stats.dropped), (1, 1, 0));
    assert_eq!(stats.workers[0].load, 0);

    within(sup.shutdown()).await;
}

#[tokio::test]
async fn call_in_flight_on_crash_gets_worker_died() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory()).start().unwrap();
    let w = sup.children()[0].clone();

    let in_flight = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(id(0, 0))).await;
    let behind = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(7)).await }
    });
    until("second call queued", || w.load() == 2).await;

    probe.open(1);
    let died = within(in_flight).await.unwrap();
    assert!(matches!(died, Err(CallError::WorkerDied)), "{died:?}");
    assert_eq!(
        died.unwrap_err().into_inner(),
        None,
        "the message was taken"
    );

    // The call queued behind it is not lost: the successor answers it.
    let ok = within(behind).await.unwrap().unwrap();
    assert_eq!(ok, Reply { by: id(0, 1), n: 7 });

    // A call that panics at once gets the same answer.
    let again = within(sup.children()[0].call(Msg::Panic)).await;
    assert!(matches!(again, Err(CallError::WorkerDied)), "{again:?}");
    let stats = sup.stats();
    assert_eq!((stats.deaths, stats.restarts), (2, 2));
    assert_eq!(stats.workers[0].load, 0);

    within(sup.shutdown()).await;
}

/// Intensity 2: two restarts are allowed within the window, the third crash makes the
/// supervisor give up. Paused time: all restarts happen at the same instant, and a hang would
/// trip the hang guard at once instead of blocking.
#[tokio::test(start_paused = true)]
async fn intensity_exceeded_gives_up_cleanly() {
    let (probe, mut events) = Probe::new(2);
    let pool = Pool::builder(probe.factory())
        .size(2)
        .intensity(2, Duration::from_secs(60))
        .start()
        .unwrap();
    let sup = pool.supervisor().clone();

    for incarnation in 0..2 {
        let w0 = sup.children()[0].clone();
        assert_eq!(w0.id(), id(0, incarnation));
        let r = within(w0.call(Msg::Panic)).await;
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let stats = sup.stats();
        assert!(!stats.gave_up);
        assert_eq!(stats.restarts, incarnation + 1);
    }

    // Slot 0's third incarnation takes a message that will panic, with a call and a send
    // queued behind it. The gate is fair, so it gets the first permit.
    let w0 = sup.children()[0].clone();
    assert_eq!(w0.id(), id(0, 2));
    let fatal = tokio::spawn({
        let w0 = w0.clone();
        async move { w0.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(id(0, 2))).await;
    let q0 = tokio::spawn({
        let w0 = w0.clone();
        async move { w0.call(Msg::Work(1)).await }
    });
    until("call queued on slot 0", || w0.load() == 2).await;
    w0.send(Msg::Work(2)).unwrap();

    // Slot 1 is busy on a healthy message, with calls and a send queued behind it.
    let w1 = sup.children()[1].clone();
    let busy = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Block(100)).await }
    });
    events.wait_for(Event::Entered(id(1, 0))).await;
    let q1 = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Work(101)).await }
    });
    until("call queued on slot 1", || w1.load() == 2).await;
    w1.send(Msg::Work(102)).unwrap();
    let q2 = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Work(103)).await }
    });
    until("second call queued on slot 1", || w1.load() == 4).await;

    // The third crash in the window: the supervisor gives up.
    probe.open(1);
    let r = within(fatal).await.unwrap();
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");

    // Every queued call comes back with its message inside `Shutdown`.
    let r = within(q0).await.unwrap();
    assert!(matches!(r, Err(CallError::Shutdown(Msg::Work(1)))), "{r:?}");
    let r = within(q1).await.unwrap();
    assert!(
        matches!(r, Err(CallError::Shutdown(Msg::Work(101)))),
        "{r:?}"
    );
    let r = within(q2).await.unwrap();
    assert!(
        matches!(r, Err(CallError::Shutdown(Msg::Work(103)))),
        "{r:?}"
    );
    // The healthy worker is stopped in the middle of its message (the gate's only permit
    // went to slot 0): its caller hears WorkerDied and does not hang.
    let r = within(busy).await.unwrap();
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");

    let stats = sup.stats();
    assert!(stats.gave_up);
    assert!(sup.is_stopped());
    assert_eq!((stats.restarts, stats.deaths), (2, 3));
    assert_eq!(stats.dropped, 2, "the two queued sends were never handled");
    assert!(stats.workers.iter().all(|w| !w.alive && w.load == 0));
    assert!(sup.children().is_empty());
    assert!(!w0.is_alive() && !w1.is_alive());

    // The pool refuses at once with Shutdown (it has given up: no other answer is right),
    // message inside, and never hangs.
    let r = within(pool.call(Msg::Work(9))).await;
    assert!(
        matches!(r, Err(PoolCallError::Shutdown(Msg::Work(9)))),
        "{r:?}"
    );
    let r = pool.send(Msg::Work(10));
    assert!(
        matches!(r, Err(PoolSendError::Shutdown(Msg::Work(10)))),
        "{r:?}"
    );
    assert_eq!(
        w1.send(Msg::Work(11)),
        Err(SendError::Shutdown(Msg::Work(11)))
    );

    // No restart after giving up, and shutting down afterwards still returns.
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 4);
    within(pool.shutdown()).await;
    assert!(probe.handled().is_empty());
}

/// Paused time: the clock moves only when the test advances it (yields do not move it).
#[tokio::test(start_paused = true)]
async fn backoff_delays_the_restart_and_messages_wait_for_the_successor() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory())
        .backoff(Backoff::fixed(Duration::from_secs(10)))
        .start()
        .unwrap();
    events.wait_for(Event::Started(id(0, 0))).await;
    let r = within(sup.children()[0].call(Msg::Panic)).await;
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");

    // The successor's handle is live at once; what it is sent waits for it.
    let next = sup.children()[0].clone();
    assert_eq!(next.id(), id(0, 1));
    assert!(next.is_alive());
    next.send(Msg::Work(1)).unwrap();
    let call = tokio::spawn({
        let next = next.clone();
        async move { next.call(Msg::Work(2)).await }
    });
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!call.is_finished());
    assert!(probe.handled().is_empty());
    assert!(!events.drain().contains(&Event::Started(id(0, 1))));
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 1);

    tokio::time::advance(Duration::from_secs(10)).await;
    events.wait_for(Event::Started(id(0, 1))).await;
    let reply = within(call).await.unwrap().unwrap();
    assert_eq!(reply, Reply { by: id(0, 1), n: 2 });
    assert_eq!(probe.handled(), vec![1, 2]);
    within(sup.shutdown()).await;
}

/// Restarts older than the window no longer count towards the intensity.
#[tokio::test(start_paused = true)]
async fn intensity_window_slides() {
    let (probe, _events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory())
        .intensity(1, Duration::from_secs(10))
        .start()
        .unwrap();
    let crash = || async {
        let r = within(sup.children()[0].call(Msg::Panic)).await;
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    };
    crash().await;
    tokio::time::advance(Duration::from_secs(11)).await;
    crash().await;
    let stats = sup.stats();
    assert!(!stats.gave_up, "the first restart left the window");
    assert_eq!(stats.restarts, 2);

    // A second restart within the window is one too many.
    crash().await;
    until("gave up", || sup.stats().gave_up).await;
    assert!(sup.children().is_empty());
    assert_eq!(sup.stats().restarts, 2);
    within(sup.shutdown()).await;
}

#[tokio::test]
async fn transient_and_temporary_restart_rules() {
    // Transient: restarted after a panic, not after it finished.
    {
        let (probe, mut events) = Probe::new(1);
        let sup = Supervisor::builder(probe.factory())
            .restart(Restart::Transient)
            .start()
            .unwrap();
        let r = within(sup.children()[0].call(Msg::Panic)).await;
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let w = sup.children()[0].clone();
        assert_eq!(w.id(), id(0, 1), "restarted after a panic");

        let blocked = tokio::spawn({
            let w = w.clone();
            async move { w.call(Msg::Block(1)).await }
        });
        events.wait_for(Event::Entered(id(0, 1))).await;
        w.send(Msg::Finish).unwrap();
        let behind = tokio::spawn({
            let w = w.clone();
            async move { w.call(Msg::Work(2)).await }
        });
        until("call queued behind Finish", || w.load() == 3).await;
        probe.open(1);

        assert_eq!(within(blocked).await.unwrap().unwrap().n, 1);
        let r = within(behind).await.unwrap();
        assert!(matches!(r, Err(CallError::Dead(Msg::Work(2)))), "{r:?}");
        events.wait_for(Event::Stopping(id(0, 1))).await;
        assert!(sup.children().is_empty(), "not restarted after finishing");
        assert!(!w.is_alive());
        assert_eq!(w.send(Msg::Work(3)), Err(SendError::Dead(Msg::Work(3))));
        let stats = sup.stats();
        assert_eq!((stats.restarts, stats.deaths, stats.gave_up), (1, 2, false));
        assert!(!stats.workers[0].alive);
        assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 2);
        within(sup.shutdown()).await;
    }

    // Temporary: never restarted; calls queued behind the crash come back as `Dead`.
    {
        let (probe, mut events) = Probe::new(2);
        let sup = Supervisor::builder(probe.factory())
            .size(2)
            .restart(Restart::Temporary)
            .start()
            .unwrap();
        let w0 = sup.children()[0].clone();
        let w1 = sup.children()[1].clone();
        let crash = tokio::spawn({
            let w0 = w0.clone();
            async move { w0.call(Msg::BlockThenPanic).await }
        });
        events.wait_for(Event::Entered(id(0, 0))).await;
        let behind = tokio::spawn({
            let w0 = w0.clone();
            async move { w0.call(Msg::Work(1)).await }
        });
        until("call queued behind the crash", || w0.load() == 2).await;
        w0.send(Msg::Work(2)).unwrap();
        probe.open(1);

        let r = within(crash).await.unwrap();
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let r = within(behind).await.unwrap();
        assert!(matches!(r, Err(CallError::Dead(Msg::Work(1)))), "{r:?}");
        assert!(!w0.is_alive());
        assert_eq!(w0.send(Msg::Work(3)), Err(SendError::Dead(Msg::Work(3))));
        assert_eq!(sup.children(), vec![w1.clone()]);
        let stats = sup.stats();
        assert_eq!((stats.restarts, stats.deaths, stats.dropped), (0, 1, 1));

        // Finishing ends a temporary worker too.
        assert_eq!(within(w1.call(Msg::Finish)).await.unwrap().by, id(1, 0));
        events.wait_for(Event::Stopping(id(1, 0))).await;
        until("slot 1 ended", || sup.children().is_empty()).await;
        let stats = sup.stats();
        assert_eq!((stats.restarts, stats.deaths), (0, 2));
        assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 2);
        within(sup.shutdown()).await;
    }

    // Permanent: restarted after it finished, too, once its `stopping` hook has run.
    {
        let (probe, mut events) = Probe::new(1);
        let sup = Supervisor::builder(probe.factory())
            .restart(Restart::Permanent)
            .start()
            .unwrap();
        let w = sup.children()[0].clone();
        let r = within(w.call(Msg::Finish)).await.unwrap();
        assert_eq!(r.by, id(0, 0));
        events.wait_for(Event::Stopping(id(0, 0))).await;
        events.wait_for(Event::Started(id(0, 1))).await;
        assert!(!w.is_alive());
        let children = sup.children();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].id(), id(0, 1));
        assert_eq!(
            within(children[0].call(Msg::Work(4))).await.unwrap().by,
            id(0, 1)
        );
        let stats = sup.stats();
        assert_eq!((stats.restarts, stats.deaths), (1, 1));
        within(sup.shutdown()).await;
    }
}

#[tokio::test]
async fn bounded_mailbox_returns_full() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory())
        .mailbox(Mailbox::Bounded(2))
        .start()
        .unwrap();
    let w = sup.children()[0].clone();

    // One message in progress leaves the two places of the mailbox free...
    let blocked = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Block(0)).await }
    });
    events.wait_for(Event::Entered(id(0, 0))).await;
    w.send(Msg::Work(1)).unwrap();
    w.send(Msg::Work(2)).unwrap();
    // ...and the third is refused, handed back, and not counted in the load.
    let full = w.send(Msg::Work(3));
    assert_eq!(full, Err(SendError::Full(Msg::Work(3))));
    assert_eq!(full.unwrap_err().into_inner(), Msg::Work(3));
    assert_eq!(w.load(), 3);

    // A call waits for room instead.
    let waiting = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(4)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "no room while the worker is held");
    assert!(probe.handled().is_empty());

    probe.open(1);
    assert_eq!(within(waiting).await.unwrap().unwrap().n, 4);
    assert_eq!(within(blocked).await.unwrap().unwrap().n, 0);
    assert_eq!(probe.handled(), vec![0, 1, 2, 4]);
    assert_eq!(w.load(), 0);
    within(sup.shutdown()).await;

    // Through a pool, too.
    let (probe, mut events) = Probe::new(1);
    let pool = Pool::builder(probe.factory())
        .mailbox(Mailbox::Bounded(1))
        .start()
        .unwrap();
    pool.send(Msg::Block(10)).unwrap();
    events.wait_for(Event::Entered(id(0, 0))).await;
    pool.send(Msg::Work(11)).unwrap();
    assert_eq!(
        pool.send(Msg::Work(12)),
        Err(PoolSendError::Full(Msg::Work(12)))
    );
    probe.open(1);
    within(pool.shutdown()).await;
    assert_eq!(probe.handled(), vec![10, 11]);
}

#[tokio::test]
async fn shutdown_finishes_queued_work() {
    let (probe, mut events) = Probe::new(2);
    let pool = Pool::builder(probe.factory()).size(2).start().unwrap();
    let w0 = pool.supervisor().children()[0].clone();
    let w1 = pool.supervisor().children()[1].clone();

    // Both workers held at the gate, with sends and calls queued behind them.
    let mut calls = Vec::new();
    for w in [&w0, &w1] {
        let w = w.clone();
        calls.push(tokio::spawn(async move {
            w.call(Msg::Block(0)).await.map_err(PoolCallError::from)
        }));
    }
    events.wait_for(Event::Entered(id(0, 0))).await;
    events.wait_for(Event::Entered(id(1, 0))).await;
    for n in 10..20 {
        pool.send(Msg::Work(n)).unwrap();
    }
    for n in 100..104 {
        let pool = pool.clone();
        calls.push(tokio::spawn(async move { pool.call(Msg::Work(n)).await }));
    }
    until("every call queued", || w0.load() + w1.load() == 16).await;

    let shutdown = tokio::spawn({
        let pool = pool.clone();
        async move { pool.shutdown().await }
    });
    until("shutdown begun", || pool.supervisor().is_stopped()).await;

    // New work is refused at once, message inside.
    let r = within(pool.call(Msg::Work(900))).await;
    assert!(
        matches!(r, Err(PoolCallError::Shutdown(Msg::Work(900)))),
        "{r:?}"
    );
    assert_eq!(
        pool.send(Msg::Work(901)),
        Err(PoolSendError::Shutdown(Msg::Work(901)))
    );
    assert_eq!(
        w0.send(Msg::Work(902)),
        Err(SendError::Shutdown(Msg::Work(902)))
    );
    let r = within(w1.call(Msg::Work(903))).await;
    assert!(
        matches!(r, Err(CallError::Shutdown(Msg::Work(903)))),
        "{r:?}"
    );

    // Shutdown waits for the queued work.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !shutdown.is_finished(),
        "shutdown returned with work queued"
    );

    probe.open(2);
    within(shutdown).await.unwrap();
    // Everything queued was handled before shutdown returned.
    let mut handled = probe.handled();
    handled.sort_unstable();
    let mut expected: Vec<u64> = [0, 0].into_iter().chain(10..20).chain(100..104).collect();
    expected.sort_unstable();
    assert_eq!(handled, expected);
    for call in calls {
        assert!(call.is_finished());
        within(call).await.unwrap().unwrap();
    }
    let seen = events.drain();
    assert!(seen.contains(&Event::Stopping(id(0, 0))), "{seen:?}");
    assert!(seen.contains(&Event::Stopping(id(1, 0))), "{seen:?}");
    let stats = pool.stats().supervisor;
    assert_eq!((stats.dropped, stats.deaths, stats.restarts), (0, 0, 0));
    assert!(!stats.gave_up);
    assert!(pool.supervisor().children().is_empty());

    // Later calls are refused too, and shutting down again returns at once.
    let r = within(pool.call(Msg::Work(904))).await;
    assert!(
        matches!(r, Err(PoolCallError::Shutdown(Msg::Work(904)))),
        "{r:?}"
    );
    within(pool.shutdown()).await;
}

#[test]
fn config_errors() {
    let (probe, _events) = Probe::new(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = Supervisor::builder(probe.factory())
            .size(0)
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroSize);
        let e = Supervisor::builder(probe.factory())
            .mailbox(Mailbox::Bounded(0))
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroMailbox);
        let e = Supervisor::builder(probe.factory())
            .intensity(5, Duration::ZERO)
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroIntensityWindow);

        let e = Pool::builder(probe.factory()).size(0).start().unwrap_err();
        assert_eq!(e, ConfigError::ZeroSize);
        let e = Pool::builder(probe.factory())
            .mailbox(Mailbox::Bounded(0))
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroMailbox);
        let e = Pool::builder(probe.factory())
            .intensity(1, Duration::ZERO)
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroIntensityWindow);
        // The balancer's settings are checked before any worker starts.
        let e = Pool::builder(probe.factory())
            .max_load(0)
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::ZeroMaxLoad);
        let e = Pool::builder(probe.factory())
            .min_alive_ratio(0.0)
            .start()
            .unwrap_err();
        assert_eq!(e, ConfigError::InvalidRatio(0.0));
        assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 0);

        // Intensity 0 is allowed (give up at the first crash); so is Bounded(1).
        let sup = Supervisor::builder(probe.factory())
            .intensity(0, Duration::from_secs(1))
            .mailbox(Mailbox::Bounded(1))
            .start()
            .unwrap();
        sup.shutdown().await;
    });

    // Outside a runtime: refused before anything is made.
    let (probe, _events) = Probe::new(1);
    let e = Supervisor::builder(probe.factory()).start().unwrap_err();
    assert_eq!(e, ConfigError::NoRuntime);
    assert!(!e.to_string().is_empty());
    let e = Pool::builder(probe.factory()).size(3).start().unwrap_err();
    assert_eq!(e, ConfigError::NoRuntime);
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 0);
}

/// `WorkerStats::id` is documented as "the slot's current (or last) incarnation". Once a slot
/// has ended, or the supervisor has shut down, it should still name the last incarnation.
#[tokio::test]
async fn stats_report_the_last_incarnation_of_a_stopped_slot() {
    let (probe, _events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .restart(Restart::Transient)
        .start()
        .unwrap();
    let r = within(sup.children()[0].call(Msg::Panic)).await;
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    within(sup.children()[0].call(Msg::Finish)).await.unwrap();
    until("slot 0 ended", || sup.children().len() == 1).await;

    let ended = sup.stats().workers[0];
    assert!(!ended.alive);
    assert_eq!(ended.id, id(0, 1), "slot 0 ended with incarnation 1");

    within(sup.shutdown()).await;
    let after = sup.stats().workers[1];
    assert!(!after.alive);
    assert_eq!(
        after.id,
        id(1, 0),
        "slot 1 was shut down with incarnation 0"
    );
}

/// A worker that panics on `true`. The first incarnation's `Drop` holds its task until the
/// test says so, which keeps open (deterministically) the moment between the panic being
/// reported to the caller and the slot moving on to the successor.
struct Fragile {
    hold: Option<std::sync::mpsc::Receiver<()>>,
}

impl Worker for Fragile {
    type Msg = bool;
    type Reply = ();

    async fn handle(&mut self, panic: bool) {
        assert!(!panic, "intentional panic");
    }
}

impl Drop for Fragile {
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            // Released by the test once it has looked. The bound only matters for a crate
            // that answers the caller after dropping the worker: there nobody releases it.
            let _ = hold.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// "`is_alive` turns false the moment the incarnation dies ... a stale handle never reaches
/// the successor by mistake." A caller that has been told `WorkerDied` has seen the death, so
/// the handle must already be dead, and a send through it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_ref_is_dead_once_its_caller_hears_worker_died() {
    let (release, hold) = std::sync::mpsc::channel();
    let hold = Mutex::new(Some(hold));
    let sup = Supervisor::builder(move |_| Fragile {
        hold: hold.lock().unwrap().take(),
    })
    .start()
    .unwrap();
    let old = sup.children()[0].clone();

    let r = within(old.call(true)).await;
    let alive_after_worker_died = old.is_alive();
    let sent = old.send(false);
    // The worker may have stopped waiting (a crate that drops it later than it updates the
    // slot keeps the caller waiting until then, and the hold times out).
    let _ = release.send(());

    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    assert!(
        !alive_after_worker_died,
        "the caller was told WorkerDied while the old handle still said it was alive"
    );
    assert_eq!(sent, Err(SendError::Dead(false)));
    within(sup.shutdown()).await;
}

/// `Backoff::exponential` doubles the delay for each crash in a row of a slot, up to its
/// maximum, and starts again from the first delay once an incarnation has handled a message.
/// Paused time makes the delays exact.
#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_and_resets() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory())
        .backoff(Backoff::exponential(
            Duration::from_millis(100),
            Duration::from_millis(300),
        ))
        .intensity(100, Duration::from_secs(3600))
        .start()
        .unwrap();
    events.wait_for(Event::Started(id(0, 0))).await;

    // Crashes the current incarnation and measures how long its successor takes to start.
    async fn crash_and_time(
        sup: &Supervisor<common_workers::TestWorker>,
        events: &mut common_workers::Events,
        next: croupier::WorkerId,
    ) -> Duration {
        let w = sup.children()[0].clone();
        let r = within(w.call(Msg::Panic)).await;
        assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
        let crashed = tokio::time::Instant::now();
        events.wait_for(Event::Started(next)).await;
        crashed.elapsed()
    }

    let mut delays = Vec::new();
    for incarnation in 1..=4 {
        delays.push(crash_and_time(&sup, &mut events, id(0, incarnation)).await);
    }
    let ms = |d: &Duration| d.as_millis();
    assert_eq!(
        delays.iter().map(ms).collect::<Vec<_>>(),
        [100, 200, 300, 300],
        "doubled for each crash in a row, held at the maximum"
    );

    // A message handled to the end resets the count.
    let w = sup.children()[0].clone();
    within(w.call(Msg::Work(1))).await.unwrap();
    let after_reset = crash_and_time(&sup, &mut events, id(0, 5)).await;
    assert_eq!(
        ms(&after_reset),
        100,
        "the backoff starts again after a handled message"
    );
    within(sup.shutdown()).await;
}

/// Cancel safety of `WorkerRef::call`: dropped while it waits for room in a full bounded
/// mailbox, it leaves nothing behind (the message is never handled, the load is as before);
/// dropped once its message is queued, the message is still handled.
#[tokio::test]
async fn worker_ref_call_is_cancel_safe() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory())
        .mailbox(Mailbox::Bounded(1))
        .start()
        .unwrap();
    let w = sup.children()[0].clone();
    w.send(Msg::Block(1)).unwrap();
    events.wait_for(Event::Entered(id(0, 0))).await;

    // Queued, then dropped: still handled.
    let queued = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(2)).await }
    });
    until("the call is queued", || w.load() == 2).await;
    queued.abort();
    assert!(within(queued).await.unwrap_err().is_cancelled());

    // Waiting for room (the mailbox is full), then dropped: gone without a trace.
    let waiting = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Work(3)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "no room while the worker is held");
    waiting.abort();
    assert!(within(waiting).await.unwrap_err().is_cancelled());
    assert_eq!(w.load(), 2, "the dropped call left its message counted");

    probe.open(1);
    within(sup.shutdown()).await;
    assert_eq!(
        probe.handled(),
        vec![1, 2],
        "only the queued call's message was handled"
    );
}

/// `Supervisor::attach` to a balancer of the user's own: it learns of a restart (it
/// refreshes) and of a worker that ends for good (it counts the death) without a pick.
#[tokio::test]
async fn attached_balancer_of_ones_own_learns_of_restarts_and_deaths() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .restart(Restart::Transient)
        .start()
        .unwrap();
    // A low ratio, so that one death does not trigger a refresh and stays visible.
    let b: Balancer<_> = Balancer::builder()
        .min_alive_ratio(0.1)
        .source(sup.clone())
        .build()
        .unwrap();
    sup.attach(&b);
    let w0 = sup.children()[0].clone();
    let w1 = sup.children()[1].clone();

    // A crash: the successor is in the balancer at once.
    let r = within(w0.call(Msg::Panic)).await;
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    events.wait_for(Event::Started(id(0, 1))).await;
    until("the balancer was refreshed", || {
        b.members().iter().any(|w| w.id() == id(0, 1))
    })
    .await;
    assert!(b.stats().refreshes >= 1);
    assert!(!b.members().contains(&w0));

    // A transient worker that finishes ends for good: the balancer is told of the death.
    let before = b.stats().skipped_dead;
    within(w1.call(Msg::Finish)).await.unwrap();
    until("the death was noticed", || {
        b.stats().skipped_dead == before + 1
    })
    .await;
    assert!(
        b.members().contains(&w1),
        "still in the snapshot, known dead"
    );
    assert!((0..10).all(|_| b.pick().unwrap().id().slot() == 0));
    within(sup.shutdown()).await;
}

#[tokio::test]
async fn size_reports_the_slot_count_whatever_the_slots_do() {
    let (probe, _events) = Probe::new(3);
    let sup = Supervisor::builder(probe.factory())
        .size(3)
        .restart(Restart::Temporary)
        .start()
        .unwrap();
    assert_eq!(sup.size(), 3);
    let w = sup.children()[1].clone();
    let _ = within(w.call(Msg::Panic)).await;
    until("the slot ended", || sup.children().len() == 2).await;
    assert_eq!(sup.size(), 3, "an ended slot is still a slot");
    within(sup.shutdown()).await;
    assert_eq!(sup.size(), 3);
}

/// A worker's refusals say what happened to the message and what to do next, and hand it
/// back (all but `WorkerDied`, whose message was taken).
#[test]
fn worker_errors_say_what_to_do_and_hand_the_message_back() {
    let sends = [
        (SendError::Dead(7_u32), "pick a live worker and resend"),
        (SendError::Full(7), "use call, which waits for room"),
        (SendError::Shutdown(7), "the supervisor has shut down"),
    ];
    for (e, says) in sends {
        let text = e.to_string();
        assert!(text.contains(says), "{e:?} displays {text:?}");
        assert!(text.contains("not queued"), "{e:?} displays {text:?}");
        assert_eq!(e.into_inner(), 7);
    }
    let calls = [
        (
            CallError::Dead(7_u32),
            "pick a live worker and retry",
            Some(7),
        ),
        (
            CallError::WorkerDied,
            "retry only if it is idempotent",
            None,
        ),
        (
            CallError::Shutdown(7),
            "the supervisor has shut down",
            Some(7),
        ),
    ];
    for (e, says, back) in calls {
        let text = e.to_string();
        assert!(text.contains(says), "{e:?} displays {text:?}");
        assert_eq!(e.into_inner(), back);
    }
}

/// During a graceful shutdown, a worker that crashes after taking a message from its queue is
/// restarted to finish the rest of the queue: nothing queued is dropped.
#[tokio::test]
async fn a_worker_that_crashes_while_finishing_its_queue_at_shutdown_is_restarted_to_finish_it() {
    let (probe, mut events) = Probe::new(1);
    let sup = Supervisor::builder(probe.factory()).start().unwrap();
    let w = sup.children()[0].clone();
    let blocked = tokio::spawn({
        let w = w.clone();
        async move { w.call(Msg::Block(1)).await }
    });
    events.wait_for(Event::Entered(id(0, 0))).await;
    w.send(Msg::Panic).unwrap();
    w.send(Msg::Work(2)).unwrap();

    let shutdown = tokio::spawn({
        let sup = sup.clone();
        async move { sup.shutdown().await }
    });
    until("shutdown begun", || sup.is_stopped()).await;
    probe.open(1);
    within(shutdown).await.unwrap();

    assert_eq!(within(blocked).await.unwrap().unwrap().n, 1);
    assert_eq!(
        probe.handled(),
        vec![1, 2],
        "the successor finished the queue"
    );
    assert!(events.drain().contains(&Event::Started(id(0, 1))));
    let stats = sup.stats();
    assert_eq!((stats.deaths, stats.restarts, stats.dropped), (1, 1, 0));
}

/// A plain `Duration` given as a backoff is a fixed delay before every restart, however many
/// crashes came in a row; `Backoff::none` restarts at once.
#[test]
fn a_duration_is_a_fixed_backoff() {
    let d = Duration::from_millis(250);
    assert_eq!(Backoff::from(d), Backoff::fixed(d));
    for crashes in [0, 1, 5, 40] {
        assert_eq!(Backoff::from(d).delay(crashes), d);
        assert_eq!(Backoff::none().delay(crashes), Duration::ZERO);
    }
}

/// A handle hashes by the worker it points at: clones hash alike, and handles to another
/// slot or to a successor in the same slot hash apart (so they spread in a `HashMap`).
#[tokio::test]
async fn a_handle_hashes_by_the_worker_it_points_at() {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hash = |w: &WorkerRef<common_workers::TestWorker>| {
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(w)
    };
    let (probe, _events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .start()
        .unwrap();
    let first = sup.children()[0].clone();
    let neighbour = sup.children()[1].clone();
    assert_eq!(hash(&first), hash(&first.clone()));
    assert_ne!(hash(&first), hash(&neighbour));

    let crash = within(first.call(Msg::Panic)).await;
    assert!(matches!(crash, Err(CallError::WorkerDied)), "{crash:?}");
    let successor = sup.children()[0].clone();
    assert_eq!(successor.id(), id(0, 1));
    assert_ne!(hash(&first), hash(&successor));
    within(sup.shutdown()).await;
}

/// A shrink stops idle workers at once (their `stopping` hook runs), the supervisor and an
/// attached balancer of one's own show the new set, and growing again starts new workers in
/// the same places with incarnations past the removed ones.
#[tokio::test]
async fn a_supervisor_shrinks_and_grows_again() {
    let (probe, mut events) = Probe::new(3);
    let sup = Supervisor::builder(probe.factory())
        .size(3)
        .start()
        .unwrap();
    let b = Balancer::builder().source(sup.clone()).build().unwrap();
    sup.attach(&b);
    let removed = sup.children()[1..].to_vec();

    within(sup.resize(1)).await.unwrap();
    let seen = events.drain();
    for slot in [1, 2] {
        assert!(seen.contains(&Event::Stopping(id(slot, 0))), "{seen:?}");
        assert!(seen.contains(&Event::Dropped(id(slot, 0))), "{seen:?}");
    }
    assert!(!seen.contains(&Event::Stopping(id(0, 0))), "{seen:?}");
    assert_eq!(sup.size(), 1);
    let ids = |ws: Vec<WorkerRef<TestWorker>>| ws.iter().map(|w| w.id()).collect::<Vec<_>>();
    assert_eq!(ids(sup.children()), vec![id(0, 0)]);
    assert_eq!(ids(b.members()), vec![id(0, 0)]);
    let stats = sup.stats();
    assert_eq!(stats.workers.len(), 1);
    assert_eq!((stats.deaths, stats.restarts, stats.dropped), (0, 0, 0));
    for w in &removed {
        assert!(!w.is_alive());
        let r = within(w.call(Msg::Work(1))).await;
        assert!(matches!(r, Err(CallError::Dead(Msg::Work(1)))), "{r:?}");
    }

    within(sup.resize(3)).await.unwrap();
    assert_eq!(ids(sup.children()), vec![id(0, 0), id(1, 1), id(2, 1)]);
    assert_eq!(ids(b.members()), vec![id(0, 0), id(1, 1), id(2, 1)]);
    let reply = within(sup.children()[2].call(Msg::Work(2))).await.unwrap();
    assert_eq!(reply, Reply { by: id(2, 1), n: 2 });
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 5);
    // The same size again changes nothing.
    within(sup.resize(3)).await.unwrap();
    assert_eq!(ids(sup.children()), vec![id(0, 0), id(1, 1), id(2, 1)]);
    within(sup.shutdown()).await;
}

/// A worker of a removed slot that crashes on the message in hand is counted as a death, its
/// caller hears `WorkerDied`, and nothing restarts; the message queued behind it was already
/// answered by the slot that remains.
#[tokio::test]
async fn a_crash_in_the_last_message_of_a_removed_slot_restarts_nothing() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .start()
        .unwrap();
    let w1 = sup.children()[1].clone();
    let crashing = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::BlockThenPanic).await }
    });
    events.wait_for(Event::Entered(id(1, 0))).await;
    let queued = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Work(5)).await }
    });
    until("the call queued behind", || w1.load() == 2).await;

    let resize = tokio::spawn({
        let sup = sup.clone();
        async move { sup.resize(1).await }
    });
    let reply = within(queued).await.unwrap().unwrap();
    assert_eq!(reply, Reply { by: id(0, 0), n: 5 });
    assert!(!resize.is_finished());

    probe.open(1);
    let r = within(crashing).await.unwrap();
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    within(resize).await.unwrap().unwrap();
    let stats = sup.stats();
    assert_eq!((stats.deaths, stats.restarts, stats.dropped), (1, 0, 0));
    assert!(!events.drain().contains(&Event::Started(id(1, 1))));
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 2);
    within(sup.shutdown()).await;
}

/// A slot removed while it waits out a restart backoff moves its queue on at once: nothing
/// waits for the delay, and the successor is never started.
#[tokio::test(start_paused = true)]
async fn a_slot_removed_during_its_backoff_moves_its_queue_at_once() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .backoff(Backoff::fixed(Duration::from_secs(3600)))
        .start()
        .unwrap();
    events.wait_for(Event::Started(id(1, 0))).await;
    let r = within(sup.children()[1].call(Msg::Panic)).await;
    assert!(matches!(r, Err(CallError::WorkerDied)), "{r:?}");
    let next = sup.children()[1].clone();
    assert_eq!(next.id(), id(1, 1));
    next.send(Msg::Work(1)).unwrap();
    let call = tokio::spawn({
        let next = next.clone();
        async move { next.call(Msg::Work(2)).await }
    });
    until("the call queued", || next.load() == 2).await;

    // No clock advance: only the removal can cut the backoff short.
    within(sup.resize(1)).await.unwrap();
    let reply = within(call).await.unwrap().unwrap();
    assert_eq!(reply, Reply { by: id(0, 0), n: 2 });
    until("the sent message handled", || probe.handled().len() == 2).await;
    assert_eq!(probe.log.lock().clone(), vec![(id(0, 0), 1), (id(0, 0), 2)]);
    assert!(!events.drain().contains(&Event::Started(id(1, 1))));
    assert_eq!(probe.made.load(std::sync::atomic::Ordering::Relaxed), 2);
    let stats = sup.stats();
    assert_eq!((stats.restarts, stats.dropped), (1, 0));
    within(sup.shutdown()).await;
}

/// In bounded mailboxes a removed slot's queue waits for room in the slots that remain;
/// nothing is refused as `Full` or lost.
#[tokio::test]
async fn a_shrink_waits_for_room_in_bounded_mailboxes() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .mailbox(Mailbox::Bounded(1))
        .start()
        .unwrap();
    let (w0, w1) = (sup.children()[0].clone(), sup.children()[1].clone());
    // Slot 0 first at the gate (the gate lets waiters through in order), its one place taken.
    w0.send(Msg::Block(10)).unwrap();
    events.wait_for(Event::Entered(id(0, 0))).await;
    w0.send(Msg::Work(11)).unwrap();
    w1.send(Msg::Block(20)).unwrap();
    events.wait_for(Event::Entered(id(1, 0))).await;
    let queued = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Work(21)).await }
    });
    until("the call queued", || w1.load() == 2).await;

    let resize = tokio::spawn({
        let sup = sup.clone();
        async move { sup.resize(1).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!queued.is_finished(), "no room in slot 0 yet");
    probe.open(1);
    let reply = within(queued).await.unwrap().unwrap();
    assert_eq!(
        reply,
        Reply {
            by: id(0, 0),
            n: 21
        }
    );
    probe.open(1);
    within(resize).await.unwrap().unwrap();
    assert_eq!(
        probe.log.lock().clone(),
        vec![
            (id(0, 0), 10),
            (id(0, 0), 11),
            (id(0, 0), 21),
            (id(1, 0), 20)
        ]
    );
    assert_eq!(sup.stats().dropped, 0);
    within(sup.shutdown()).await;
}

/// When no slot that remains can take a removed slot's queue (each has ended for good), the
/// queued calls come back as `Dead` with their messages and the sent ones are counted.
#[tokio::test]
async fn a_shrink_with_no_live_slot_left_hands_the_queue_back() {
    let (probe, mut events) = Probe::new(2);
    let sup = Supervisor::builder(probe.factory())
        .size(2)
        .restart(Restart::Temporary)
        .start()
        .unwrap();
    let (w0, w1) = (sup.children()[0].clone(), sup.children()[1].clone());
    within(w0.call(Msg::Finish)).await.unwrap();
    until("slot 0 ended", || sup.children().len() == 1).await;
    w1.send(Msg::Block(1)).unwrap();
    events.wait_for(Event::Entered(id(1, 0))).await;
    w1.send(Msg::Work(2)).unwrap();
    let queued = tokio::spawn({
        let w1 = w1.clone();
        async move { w1.call(Msg::Work(3)).await }
    });
    until("the call queued", || w1.load() == 3).await;

    let resize = tokio::spawn({
        let sup = sup.clone();
        async move { sup.resize(1).await }
    });
    let r = within(queued).await.unwrap();
    assert!(matches!(r, Err(CallError::Dead(Msg::Work(3)))), "{r:?}");
    probe.open(1);
    within(resize).await.unwrap().unwrap();
    assert_eq!(probe.handled(), vec![1]);
    assert_eq!(sup.stats().dropped, 1, "the sent Work(2)");
    within(sup.shutdown()).await;
}
