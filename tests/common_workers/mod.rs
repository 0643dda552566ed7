//! A scriptable worker for the integration tests, and small helpers to wait without sleeping.
//!
//! Every worker made by [`Probe::factory`] reports what happens to it (started, each message
//! entered, stopping, dropped) on an unbounded channel, so tests can wait for an exact event
//! instead of guessing with timers. [`Msg::Block`] and [`Msg::BlockThenPanic`] wait on a shared
//! gate (a semaphore with no permits) that the test opens one permit at a time, which lets a
//! test build up a queue behind a worker deterministically.
#![allow(dead_code)]

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use croupier::{Worker, WorkerId};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};

/// What a test sends a [`TestWorker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Logged in [`Probe::log`], counted in the slot's [`Probe::per_slot`], answered.
    Work(u64),
    /// Waits for one gate permit, then is handled as `Work(n)`.
    Block(u64),
    /// Waits for one gate permit, then panics.
    BlockThenPanic,
    /// Panics at once.
    Panic,
    /// Handled; then the worker says it has finished (`is_finished` turns true).
    Finish,
}

/// What a [`TestWorker`] answers: who handled the message, and its number (0 for `Finish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub by: WorkerId,
    pub n: u64,
}

/// What a [`TestWorker`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Started(WorkerId),
    /// Took a message out of its mailbox: `Block`/`BlockThenPanic` send it before waiting.
    Entered(WorkerId),
    Stopping(WorkerId),
    Dropped(WorkerId),
}

/// State shared by a test and all the workers its factory makes.
pub struct Probe {
    /// `Work` and `Block` messages handled, in the order handled, with who handled them.
    pub log: Mutex<Vec<(WorkerId, u64)>>,
    /// `Work` and `Block` messages handled, per slot.
    pub per_slot: Vec<AtomicU64>,
    /// How many workers the factory has made.
    pub made: AtomicU64,
    /// `Block` and `BlockThenPanic` each take one permit.
    pub gate: Semaphore,
    events: mpsc::UnboundedSender<Event>,
}

impl Probe {
    /// A probe for up to `slots` slots, and the receiving end of its events.
    pub fn new(slots: usize) -> (Arc<Self>, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Arc::new(Self {
            log: Mutex::new(Vec::new()),
            per_slot: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            made: AtomicU64::new(0),
            gate: Semaphore::new(0),
            events: tx,
        });
        (probe, Events(rx))
    }

    /// A factory for a supervisor or pool: every worker it makes shares this probe.
    pub fn factory(self: &Arc<Self>) -> impl Fn(WorkerId) -> TestWorker + Send + Sync + 'static {
        let probe = Arc::clone(self);
        move |id| {
            probe.made.fetch_add(1, Relaxed);
            TestWorker {
                id,
                probe: Arc::clone(&probe),
                finished: false,
            }
        }
    }

    /// Lets `n` blocked messages through.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// The numbers of the messages handled so far, in order.
    pub fn handled(&self) -> Vec<u64> {
        self.log.lock().iter().map(|&(_, n)| n).collect()
    }

    pub fn counts(&self) -> Vec<u64> {
        self.per_slot.iter().map(|c| c.load(Relaxed)).collect()
    }

    fn event(&self, e: Event) {
        // The test may have stopped listening; that is fine.
        let _ = self.events.send(e);
    }

    fn record(&self, id: WorkerId, n: u64) {
        self.log.lock().push((id, n));
        self.per_slot[id.slot()].fetch_add(1, Relaxed);
    }
}

/// The receiving end of a probe's events.
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// Waits (with a hang guard) for `want`, discarding the events before it.
    pub async fn wait_for(&mut self, want: Event) {
        within(async {
            loop {
                match self.0.recv().await {
                    Some(e) if e == want => return,
                    Some(_) => {}
                    None => panic!("event channel closed before {want:?}"),
                }
            }
        })
        .await;
    }

    /// Waits (with a hang guard) until every sender is gone, i.e. the factory and every
    /// worker have been dropped; returns the events seen on the way.
    pub async fn until_closed(&mut self) -> Vec<Event> {
        within(async {
            let mut seen = Vec::new();
            while let Some(e) = self.0.recv().await {
                seen.push(e);
            }
            seen
        })
        .await
    }

    /// The events already reported, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Ok(e) = self.0.try_recv() {
            seen.push(e);
        }
        seen
    }
}

/// A worker scripted by its messages; see [`Msg`].
pub struct TestWorker {
    id: WorkerId,
    probe: Arc<Probe>,
    finished: bool,
}

impl Worker for TestWorker {
    type Msg = Msg;
    type Reply = Reply;

    async fn started(&mut self) {
        self.probe.event(Event::Started(self.id));
    }

    async fn handle(&mut self, msg: Msg) -> Reply {
        self.probe.event(Event::Entered(self.id));
        let n = match msg {
            Msg::Work(n) => n,
            Msg::Block(n) => {
                self.probe
                    .gate
                    .acquire()
                    .await
                    .expect("gate closed")
                    .forget();
                n
            }
            Msg::BlockThenPanic => {
                self.probe
                    .gate
                    .acquire()
                    .await
                    .expect("gate closed")
                    .forget();
                panic!("intentional panic in {} after the gate", self.id);
            }
            Msg::Panic => panic!("intentional panic in {}", self.id),
            Msg::Finish => {
                self.finished = true;
                return Reply { by: self.id, n: 0 };
            }
        };
        self.probe.record(self.id, n);
        Reply { by: self.id, n }
    }

    async fn stopping(&mut self) {
        self.probe.event(Event::Stopping(self.id));
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.probe.event(Event::Dropped(self.id));
    }
}

/// The hang guard every await that might never end goes through. Under paused time it fires
/// as soon as the runtime has nothing left to do; under real time it is a generous bound.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("hang guard: this should have finished long ago")
}

/// Yields to the other tasks until `cond` holds; panics after a bounded number of yields.
/// On a current-thread runtime every yield lets every ready task run once, so this is a
/// deterministic way to wait for a state the tasks are about to reach.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never reached: {what}");
}
