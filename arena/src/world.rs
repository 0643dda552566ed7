//! What the contenders balance over: jobs, the ledger of attempts, simulated backends (one
//! FIFO server each) and their tower services, and the pool's worker.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
};

use croupier::{Worker, WorkerId};
use tokio::sync::{mpsc, oneshot};
use tower::BoxError;

use crate::{
    clock,
    scenario::{Fault, MemberSpec, DOWN_NS, FAIL_NS},
};

/// A request as a member sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Its index in the workload.
    pub id: u32,
    /// Its size at speed 1, nanoseconds.
    pub size: u64,
}

/// A job served: when its service started and ended (virtual nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Start of service.
    pub start: u64,
    /// End of service.
    pub end: u64,
}

/// The error a member answers with (failing, dead, crashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the member failed the request")
    }
}
impl std::error::Error for Failed {}

/// What each request met: how many members received it, whether the faulty one did, and
/// which member received it last.
pub struct Ledger {
    attempts: Vec<AtomicU32>,
    faulty: Vec<AtomicBool>,
    last: Vec<AtomicU32>,
}

/// No member received the request.
pub const NOBODY: u32 = u32::MAX;

impl Ledger {
    /// A ledger for `n` requests.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self {
            attempts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            faulty: (0..n).map(|_| AtomicBool::new(false)).collect(),
            last: (0..n).map(|_| AtomicU32::new(NOBODY)).collect(),
        }
    }

    /// Member `by` received request `id`.
    pub fn attempt(&self, id: u32, by: &MemberSpec) {
        let i = id as usize;
        self.attempts[i].fetch_add(1, Relaxed);
        self.last[i].store(u32::try_from(by.index).unwrap_or(NOBODY), Relaxed);
        if by.faulty {
            self.faulty[i].store(true, Relaxed);
        }
    }

    /// The member that received request `id` last, if any.
    #[must_use]
    pub fn last(&self, id: usize) -> Option<usize> {
        match self.last[id].load(Relaxed) {
            NOBODY => None,
            m => Some(m as usize),
        }
    }

    /// Attempts beyond the first, over every request.
    #[must_use]
    pub fn extra_attempts(&self) -> u64 {
        self.attempts
            .iter()
            .map(|a| u64::from(a.load(Relaxed).saturating_sub(1)))
            .sum()
    }

    /// Requests that reached the faulty member at least once.
    #[must_use]
    pub fn to_faulty(&self) -> u64 {
        self.faulty.iter().filter(|f| f.load(Relaxed)).count() as u64
    }
}

type Reply = oneshot::Sender<Result<Done, Failed>>;

/// A backend: one FIFO queue served one job at a time at its member's speed.
pub struct Server {
    /// What it is.
    pub spec: MemberSpec,
    tx: mpsc::UnboundedSender<(Job, Reply)>,
    /// Jobs queued or in service.
    load: AtomicUsize,
    /// Jobs answered so far (failed or not).
    completed: AtomicU64,
    /// When it came up (virtual nanoseconds).
    born: u64,
    ledger: Arc<Ledger>,
}

impl Server {
    /// Starts a backend now.
    pub fn start(spec: MemberSpec, ledger: Arc<Ledger>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let server = Arc::new(Self {
            spec,
            tx,
            load: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            born: clock::now(),
            ledger,
        });
        tokio::spawn(serve(Arc::downgrade(&server), rx));
        server
    }

    /// Jobs queued or in service.
    pub fn load(&self) -> usize {
        self.load.load(Relaxed)
    }

    /// Jobs answered so far (failed or not).
    pub fn completed(&self) -> u64 {
        self.completed.load(Relaxed)
    }

    /// Whether it refuses connections (dead): a tower service over it fails `poll_ready`.
    pub fn is_dead(&self) -> bool {
        self.spec.fault == Fault::Dead
    }

    /// Sends a job and waits for its answer.
    pub fn submit(&self, job: Job) -> impl Future<Output = Result<Done, Failed>> + Send + 'static {
        self.ledger.attempt(job.id, &self.spec);
        let (reply, answer) = oneshot::channel();
        self.load.fetch_add(1, Relaxed);
        let sent = self.tx.send((job, reply)).is_ok();
        async move {
            if !sent {
                return Err(Failed);
            }
            answer.await.unwrap_or(Err(Failed))
        }
    }
}

async fn serve(server: std::sync::Weak<Server>, mut rx: mpsc::UnboundedReceiver<(Job, Reply)>) {
    while let Some((job, reply)) = rx.recv().await {
        let Some(s) = server.upgrade() else { return };
        let answer = run_job(&s.spec, job, s.born).await;
        s.load.fetch_sub(1, Relaxed);
        s.completed.fetch_add(1, Relaxed);
        let _ = reply.send(answer);
    }
}

/// Serves one job as `spec` says, starting now; a crash fails it at the crash's instant.
async fn run_job(spec: &MemberSpec, job: Job, born: u64) -> Result<Done, Failed> {
    let start = clock::now();
    match spec.fault {
        Fault::Dead => Err(Failed),
        Fault::FailFast => {
            clock::sleep_ns(FAIL_NS).await;
            Err(Failed)
        }
        Fault::CrashLoop => {
            let (down, crash) = MemberSpec::crash_cycle(start);
            if down {
                return Err(Failed);
            }
            let end = start + spec.service_ns(job.size, start, born);
            if end > crash {
                clock::sleep_until(crash).await;
                return Err(Failed);
            }
            clock::sleep_until(end).await;
            Ok(Done { start, end })
        }
        Fault::None | Fault::Cold { .. } => {
            let end = start + spec.service_ns(job.size, start, born);
            clock::sleep_until(end).await;
            Ok(Done { start, end })
        }
    }
}

/// A tower service over a backend, as a client library gives one.
#[derive(Clone)]
pub struct Svc {
    server: Arc<Server>,
    /// Reports ready even when the backend is dead, so calls fail instead (a client whose
    /// readiness does not see the backend, as tonic's `balance_list` per grpc-rust #2839).
    ready_when_down: bool,
}

impl Svc {
    /// A service whose `poll_ready` fails while the backend is dead.
    #[must_use]
    pub fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            ready_when_down: false,
        }
    }

    /// A service that is always ready (the "model" contender's members).
    #[must_use]
    pub fn always_ready(server: Arc<Server>) -> Self {
        Self {
            server,
            ready_when_down: true,
        }
    }
}

impl tower::Service<Job> for Svc {
    type Response = Done;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Done, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.server.is_dead() && !self.ready_when_down {
            Poll::Ready(Err("connection refused".into()))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, job: Job) -> Self::Future {
        let answer = self.server.submit(job);
        Box::pin(async move { answer.await.map_err(BoxError::from) })
    }
}

/// The shared queue of the ideal contender: every healthy member pulls from it.
pub struct SharedQueue {
    tx: mpsc::UnboundedSender<(Job, Reply)>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(Job, Reply)>>>,
    ledger: Arc<Ledger>,
}

impl SharedQueue {
    /// An empty queue.
    #[must_use]
    pub fn new(ledger: Arc<Ledger>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            ledger,
        })
    }

    /// Starts a member pulling from the queue now, unless it is failing or dead (the ideal
    /// sends nothing to those). A crash-looping member pulls while it is up and loses
    /// nothing.
    pub fn add(self: &Arc<Self>, spec: MemberSpec) {
        if matches!(spec.fault, Fault::Dead | Fault::FailFast) {
            return;
        }
        let rx = Arc::clone(&self.rx);
        let ledger = Arc::clone(&self.ledger);
        let born = clock::now();
        tokio::spawn(async move {
            loop {
                if spec.fault == Fault::CrashLoop {
                    let (down, _) = MemberSpec::crash_cycle(clock::now());
                    if down {
                        let now = clock::now();
                        let period = crate::scenario::UP_NS + DOWN_NS;
                        clock::sleep_until((now / period + 1) * period).await;
                    }
                }
                let next = { rx.lock().await.recv().await };
                let Some((job, reply)) = next else { return };
                ledger.attempt(job.id, &spec);
                let start = clock::now();
                let end = start + spec.service_ns(job.size, start, born);
                clock::sleep_until(end).await;
                let _ = reply.send(Ok(Done { start, end }));
            }
        });
    }

    /// Queues a job and waits for its answer.
    pub fn submit(&self, job: Job) -> impl Future<Output = Result<Done, Failed>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send((job, reply)).is_ok();
        async move {
            if !sent {
                return Err(Failed);
            }
            answer.await.unwrap_or(Err(Failed))
        }
    }
}

/// The marker of a planned crash, which the arena's panic hook keeps quiet.
pub const PLANNED_CRASH: &str = "arena: planned crash";

/// A croupier worker that serves jobs as its member spec says.
pub struct ArenaWorker {
    spec: MemberSpec,
    incarnation: u64,
    born: u64,
    ledger: Arc<Ledger>,
}

impl ArenaWorker {
    /// The worker for slot `id.slot()` of `specs`.
    #[must_use]
    pub fn new(id: WorkerId, specs: &[MemberSpec], ledger: Arc<Ledger>) -> Self {
        Self {
            spec: specs[id.slot().min(specs.len() - 1)],
            incarnation: id.incarnation(),
            born: clock::now(),
            ledger,
        }
    }
}

impl Worker for ArenaWorker {
    type Msg = Job;
    type Reply = Result<Done, Failed>;

    async fn started(&mut self) {
        // A crash-looping worker's successor takes the down time to boot (its queue waits).
        if self.spec.fault == Fault::CrashLoop && self.incarnation > 0 {
            clock::sleep_ns(DOWN_NS).await;
        }
        self.born = clock::now();
    }

    fn failed(reply: &Self::Reply) -> bool {
        reply.is_err()
    }

    async fn handle(&mut self, job: Job) -> Self::Reply {
        self.ledger.attempt(job.id, &self.spec);
        let start = clock::now();
        match self.spec.fault {
            Fault::Dead => Err(Failed),
            Fault::FailFast => {
                clock::sleep_ns(FAIL_NS).await;
                Err(Failed)
            }
            Fault::CrashLoop => {
                let crash = self.born + crate::scenario::UP_NS;
                let end = start + self.spec.service_ns(job.size, start, self.born);
                if start >= crash {
                    std::panic::panic_any(PLANNED_CRASH);
                }
                if end > crash {
                    clock::sleep_until(crash).await;
                    std::panic::panic_any(PLANNED_CRASH);
                }
                clock::sleep_until(end).await;
                Ok(Done { start, end })
            }
            Fault::None | Fault::Cold { .. } => {
                let end = start + self.spec.service_ns(job.size, start, self.born);
                clock::sleep_until(end).await;
                Ok(Done { start, end })
            }
        }
    }
}

/// A tower `Discover` fed by a channel (members can join mid-run).
pub type Changes<S> = Pin<
    Box<
        dyn futures_util::Stream<Item = Result<tower::discover::Change<usize, S>, Infallible>>
            + Send,
    >,
>;

/// A discover stream and the sender that feeds it.
#[must_use]
pub fn discover<S: Send + 'static>() -> (
    mpsc::UnboundedSender<tower::discover::Change<usize, S>>,
    Changes<S>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)));
    (tx, Box::pin(stream))
}
