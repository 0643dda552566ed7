//! The task behind each slot: runs incarnation after incarnation over one mailbox.
//!
//! Every call into user code runs inside the guard ([`guard`], [`run_guarded`]): the factory,
//! `started`, `handle` (both the making of its future and every poll of it), `is_finished`,
//! `stopping`, and the `Drop` of the worker, of the futures it returns and of the messages and
//! replies this task disposes of. A panic there is a crash that this file handles like any
//! other. The slot task as a whole is caught once more as the last line ([`run_slot`]): if
//! anything else unwinds, the slot ends visibly (its handles read dead) and its queued
//! messages come back, so no slot is ever left reading alive with nobody serving it.
//!
//! A slot that a shrink removes moves its queued messages to the slots that remain
//! ([`forward_queued`]) as soon as it hears of the removal, even while its worker is still in
//! the middle of a message, which it then finishes before it stops.

use std::{
    future::{poll_fn, Future},
    panic::{catch_unwind, AssertUnwindSafe},
    pin::{pin, Pin},
    sync::{atomic::Ordering::Relaxed, Arc},
    task::{Context, Poll},
};

use futures_util::FutureExt;

use super::{Core, Signal};
use crate::worker::{
    mailbox::{Envelope, MailboxRx, Outcome},
    slot::Slot,
    state::Closed,
    Worker, WorkerId, WorkerRef,
};

/// How an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Its factory, a hook, `handle`, `is_finished` or a `Drop` of its panicked.
    Panicked,
    /// It said it [finished](Worker::is_finished).
    Finished,
    /// Graceful shutdown: the mailbox is closed and empty.
    Drained,
    /// Hard stop: give-up or the supervisor was dropped.
    Stopped,
    /// A shrink removed the slot; its queue has moved to the slots that remain.
    Removed,
}

/// What one incarnation did.
#[derive(Debug, Clone, Copy)]
struct Run {
    exit: Exit,
    /// It handled a message to the end (which resets the backoff).
    handled_any: bool,
    /// It took a message out of the mailbox, whatever became of it.
    took_any: bool,
}

/// Runs slot `slot` until shutdown, give-up, or an end that is not restarted; then hands back
/// whatever is still queued.
pub(super) async fn run_slot<W: Worker>(
    core: Arc<Core<W>>,
    slot: Arc<Slot<W>>,
    mut rx: MailboxRx<W>,
) {
    let served = AssertUnwindSafe(serve(&core, &slot, &mut rx))
        .catch_unwind()
        .await;
    let why = served.unwrap_or_else(|_| {
        tracing::error!(
            slot = slot.index,
            "croupier slot task panicked outside the worker's own code; the slot ends"
        );
        slot.state.end();
        if let Some(incarnation) = slot.state.serving() {
            // `end` lost to nothing but a shut; keep the books straight anyway.
            core.notify_dead(&WorkerRef::new(Arc::clone(&slot), incarnation));
        }
        core.refresh_watchers();
        if slot.state.is_shut() {
            Closed::Shutdown
        } else {
            Closed::Dead
        }
    });
    if slot.state.is_removed() {
        forward_queued(&core, &slot, &mut rx).await;
    } else {
        return_queued(&core, &slot, &mut rx, why).await;
    }
}

/// Incarnation after incarnation; returns why the slot takes no more messages.
async fn serve<W: Worker>(core: &Core<W>, slot: &Arc<Slot<W>>, rx: &mut MailboxRx<W>) -> Closed {
    let mut incarnation = slot.first;
    let mut crashes_in_a_row = 0_u32;
    loop {
        let id = WorkerId::new(slot.index, incarnation);
        let run = run_incarnation(core, slot, rx, id).await;
        if run.handled_any {
            crashes_in_a_row = 0;
        }
        match run.exit {
            Exit::Drained | Exit::Stopped => return Closed::Shutdown,
            Exit::Removed => return Closed::Dead,
            Exit::Panicked | Exit::Finished => {}
        }
        core.deaths.fetch_add(1, Relaxed);
        core.meter.died();
        if slot.state.is_removed() {
            // Its handles read dead and the balancers no longer hold it: nothing to restart.
            // The state says so after `retire`, which a removal makes fail, so that a
            // successor never starts past what `SlotState::remove` promised.
            tracing::debug!(worker = %id, exit = ?run.exit,
                "croupier worker of a removed slot ended; not restarted");
            return Closed::Dead;
        }
        // `run_incarnation` has already retired the incarnation.
        if !core.restart.restarts(run.exit == Exit::Panicked) {
            tracing::debug!(worker = %id, exit = ?run.exit, "croupier worker ended; not restarted");
            core.notify_dead(&WorkerRef::new(Arc::clone(slot), incarnation));
            return Closed::Dead;
        }
        if core.stop.is_fired() {
            return Closed::Shutdown;
        }
        let shutting_down = core.drain.is_fired();
        if shutting_down && !run.took_any {
            // During a graceful shutdown a successor is started only to finish the queue; one
            // that crashed before taking a message would only crash again.
            tracing::warn!(worker = %id, "croupier worker crashed during shutdown before taking \
                a message; not restarted, its queued messages are handed back");
            return Closed::Shutdown;
        }
        if !core.allow_restart() {
            core.give_up(id);
            return Closed::Shutdown;
        }
        incarnation += 1;
        slot.started(incarnation);
        core.restarts.fetch_add(1, Relaxed);
        core.meter.restarted();
        tracing::warn!(worker = %id, exit = ?run.exit, successor = %WorkerId::new(slot.index, incarnation),
            "croupier worker ended; restarting");
        core.refresh_watchers();
        if !shutting_down {
            let delay = core.backoff.delay(crashes_in_a_row);
            crashes_in_a_row = crashes_in_a_row.saturating_add(1);
            if !delay.is_zero() {
                tokio::select! {
                    biased;
                    () = core.stop.fired() => return Closed::Shutdown,
                    // A graceful shutdown cuts the delay short: the successor starts at once
                    // to finish the queue.
                    () = core.drain.fired() => {}
                    // So does a removal: the queue moves on at once.
                    () = slot.removed.cancelled() => {}
                    () = tokio::time::sleep(delay) => {}
                }
            }
            if slot.state.is_removed() {
                return Closed::Dead;
            }
        }
        // However fast a slot crashes, the runtime's other tasks get their turn.
        tokio::task::yield_now().await;
    }
}

/// Makes one incarnation and feeds it messages until it ends. Retires it (its handles read
/// dead) before returning.
async fn run_incarnation<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut MailboxRx<W>,
    id: WorkerId,
) -> Run {
    let mut run = Run {
        exit: Exit::Panicked,
        handled_any: false,
        took_any: false,
    };
    if let Some(mut worker) = guard(|| (core.factory)(id)) {
        run.exit = feed(core, slot, rx, id, &mut worker, &mut run).await;
        if guard(move || drop(worker)).is_none() {
            match run.exit {
                Exit::Finished => run.exit = Exit::Panicked,
                Exit::Panicked => {}
                Exit::Drained | Exit::Stopped | Exit::Removed => tracing::error!(worker = %id,
                    "croupier worker panicked in Drop while stopping; stopping goes on"),
            }
        }
    }
    retire(core, slot, id, run.exit);
    run
}

/// Runs `started`, then hands the worker messages until its incarnation ends.
async fn feed<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut MailboxRx<W>,
    id: WorkerId,
    worker: &mut W,
    run: &mut Run,
) -> Exit {
    match run_guarded(&core.stop, || worker.started()).await {
        Ran::Done { clean: true, .. } => {}
        // A hard stop came while it waited: abandoned like a message in hand, so `stopping`
        // does not run either.
        Ran::Stopped => return Exit::Stopped,
        Ran::Done { clean: false, .. } | Ran::Panicked => return Exit::Panicked,
    }
    loop {
        let Some(Envelope { msg, reply, .. }) = next_message(core, slot, rx).await else {
            // A graceful shutdown reached the end of the queue, a hard stop came while the
            // worker was idle, or a shrink removed the slot (its queue has moved on).
            return stop_idle(core, slot, id, worker).await;
        };
        run.took_any = true;
        if core.stop.is_fired() {
            // Taken but not started: it goes back to its caller.
            slot.unload();
            if hand_back(slot, msg, reply, Closed::Shutdown) {
                count_dropped(core, slot, 1, Closed::Shutdown);
            }
            return stop_idle(core, slot, id, worker).await;
        }
        let handled = handle(core, slot, rx, worker, msg).await;
        slot.unload();
        match handled {
            Ran::Stopped => {
                // Abandoned mid-message: a caller reads WorkerDied as its reply channel drops;
                // a sent message nobody waits for is counted.
                if reply.is_none() {
                    count_dropped(core, slot, 1, Closed::Shutdown);
                }
                return Exit::Stopped;
            }
            Ran::Panicked => {
                // Retire before the reply channel drops: once the caller hears WorkerDied,
                // the old handle must already read dead.
                retire(core, slot, id, Exit::Panicked);
                drop(reply);
                return Exit::Panicked;
            }
            Ran::Done { value, clean } => {
                run.handled_any = true;
                // A failure weighs on the slot's load for a while (see `Slot::failed`). A
                // panic in `failed` is a crash, once the reply is on its way.
                let failed = guard(|| W::failed(&value));
                match failed {
                    Some(true) => slot.failed(),
                    Some(false) => slot.succeeded(),
                    None => {}
                }
                if let Some(reply) = reply {
                    // The caller may have stopped waiting; the reply is then discarded.
                    if let Err(unsent) = reply.send(Outcome::Reply(value, slot.index)) {
                        if guard(move || drop(unsent)).is_none() {
                            return Exit::Panicked;
                        }
                    }
                }
                if !clean || failed.is_none() {
                    return Exit::Panicked;
                }
            }
        }
        match guard(|| worker.is_finished()) {
            Some(false) => {}
            Some(true) => {
                return match run_guarded(&core.stop, || worker.stopping()).await {
                    Ran::Done { clean: true, .. } => Exit::Finished,
                    Ran::Stopped => Exit::Stopped,
                    Ran::Done { clean: false, .. } | Ran::Panicked => Exit::Panicked,
                };
            }
            None => return Exit::Panicked,
        }
    }
}

/// Runs the worker's `handle` on `msg`. Should a shrink remove the slot while the handler
/// waits, the queue moves on to the remaining slots meanwhile, so that the messages behind
/// this one do not wait for it.
async fn handle<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut MailboxRx<W>,
    worker: &mut W,
    msg: W::Msg,
) -> Ran<W::Reply> {
    let mut handling = pin!(run_guarded(&core.stop, || worker.handle(msg)));
    // Most handlers finish on their first poll: only one that waits listens for a removal.
    if let Poll::Ready(ran) = poll_once(handling.as_mut()).await {
        return ran;
    }
    let Some(after) = core.hand_back else {
        return tokio::select! {
            biased;
            ran = handling.as_mut() => ran,
            () = slot.removed.cancelled() => {
                let (ran, ()) = tokio::join!(handling, forward_queued(core, slot, rx));
                ran
            }
        };
    };
    // Hand-back: once the message has run `after`, and again whenever some worker's load
    // falls, the messages queued behind it that came through the pool move to free workers.
    let late = tokio::time::sleep(after);
    let mut late = pin!(late);
    let mut capacity: Option<crate::worker::capacity::CapacityWait> = None;
    loop {
        tokio::select! {
            biased;
            ran = handling.as_mut() => return ran,
            () = slot.removed.cancelled() => {
                let (ran, ()) = tokio::join!(handling, forward_queued(core, slot, rx));
                return ran;
            }
            () = late.as_mut(), if capacity.is_none() => {}
            () = async { capacity.as_mut().expect("armed").notified.as_mut().await },
                if capacity.is_some() => {}
        }
        // Listen before looking, so that a worker freed meanwhile still wakes this one.
        capacity = Some(core.capacity.wait());
        move_to_free(core, slot, rx).await;
    }
}

/// Moves the messages at the head of this slot's queue that came through the pool to free
/// workers (serving, nothing queued or in hand, no failure penalty, not ejected: a worker that
/// fails fast looks free otherwise), one each, while there are both; stops at
/// the first message addressed to this worker, which keeps its place.
async fn move_to_free<W: Worker>(core: &Core<W>, slot: &Slot<W>, rx: &mut MailboxRx<W>) {
    if core.stop.is_fired() || core.drain.is_fired() {
        return;
    }
    loop {
        let slots = core.slots.load();
        let Some(free) = slots
            .iter()
            .find(|s| s.index != slot.index && s.state.serving().is_some() && s.is_free())
        else {
            return;
        };
        let Some(env) = rx.try_recv() else { return };
        if !env.movable {
            rx.put_front(env);
            return;
        }
        match free.push(env).await {
            Ok(()) => slot.unload(),
            Err(env) => {
                rx.put_front(env);
                return;
            }
        }
    }
}

/// Ends an idle incarnation at shutdown, a hard stop or a removal: runs its `stopping` hook,
/// whose panic is logged and changes nothing (stopping goes on, nothing restarts). A hard
/// stop, whether it came before (the hook then runs up to its first wait) or while the hook
/// waits, abandons the hook where it waits.
async fn stop_idle<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    id: WorkerId,
    worker: &mut W,
) -> Exit {
    match run_guarded(&core.stop, || worker.stopping()).await {
        Ran::Done { clean: true, .. } => {}
        Ran::Stopped => tracing::debug!(worker = %id,
            "croupier worker's stopping hook abandoned at a hard stop"),
        Ran::Done { clean: false, .. } | Ran::Panicked => tracing::error!(worker = %id,
            "croupier worker's stopping hook panicked while stopping; stopping goes on"),
    }
    if core.stop.is_fired() {
        Exit::Stopped
    } else if core.drain.is_fired() || !slot.state.is_removed() {
        Exit::Drained
    } else {
        Exit::Removed
    }
}

/// Turns the handles of incarnation `id` dead at once: the slot moves on to the successor
/// when the restart rule will start one, or ends. A slot already shut stays shut, and a retire
/// repeated for the same incarnation changes nothing.
fn retire<W: Worker>(core: &Core<W>, slot: &Slot<W>, id: WorkerId, exit: Exit) {
    let successor = core.restart.restarts(exit == Exit::Panicked);
    slot.state.retire(id.incarnation(), successor);
}

/// The next message, or `None` once a hard stop came, a shutdown emptied the mailbox, or a
/// shrink removed the slot (its queue then moves to the remaining slots first).
async fn next_message<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut MailboxRx<W>,
) -> Option<Envelope<W>> {
    if core.stop.is_fired() {
        return None;
    }
    if !core.drain.is_fired() {
        if slot.state.is_removed() {
            forward_queued(core, slot, rx).await;
            return None;
        }
        let removed = {
            let mut recv = pin!(rx.recv());
            // A queued message is taken without registering with the signals.
            if let Poll::Ready(env) = poll_once(recv.as_mut()).await {
                return env;
            }
            // An idle worker waits for a message or a signal. The three signals wake the
            // slot's `idle` waker once raised (`Core::wake_idle`, `remove_slots`), so one
            // registration, two atomic operations and no lock, serves all of them: waiting
            // on each signal's own future took a lock to register and one to deregister,
            // for every message that found the worker idle. Registered before the flags are
            // read, so that a signal raised in between still wakes this task.
            poll_fn(|cx| {
                slot.idle.register(cx.waker());
                if core.stop.is_fired() {
                    Poll::Ready(Idle::Stop)
                } else if core.drain.is_fired() {
                    Poll::Ready(Idle::Drain)
                } else if slot.state.is_removed() {
                    Poll::Ready(Idle::Removed)
                } else {
                    recv.as_mut().poll(cx).map(Idle::Message)
                }
            })
            .await
        };
        let removed = match removed {
            Idle::Stop => return None,
            Idle::Message(env) => return env,
            Idle::Drain => false,
            Idle::Removed => true,
        };
        if removed {
            forward_queued(core, slot, rx).await;
            return None;
        }
    }
    // Shutting down: take no more, hand out what is queued.
    rx.close();
    tokio::select! {
        biased;
        () = core.stop.fired() => None,
        env = rx.recv() => env,
    }
}

/// What ended an idle worker's wait, in the order they are looked at.
enum Idle<T> {
    /// A hard stop.
    Stop,
    /// A shutdown: the queue drains.
    Drain,
    /// A shrink removed the slot.
    Removed,
    /// The next message (`None`: the mailbox closed).
    Message(Option<T>),
}

/// Polls `fut` once, with this task's waker.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// What became of a call into user code that returns a future.
enum Ran<T> {
    /// It completed; `clean` is false if dropping its future afterwards panicked.
    Done { value: T, clean: bool },
    /// Making it, polling it or dropping it panicked.
    Panicked,
    /// A hard stop came while it waited; it was dropped unfinished.
    Stopped,
}

/// Runs a synchronous call into user code inside the guard; `None` if it panicked.
fn guard<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// Makes a future of the user's and runs it to the end inside the guard: the call that makes
/// it, every poll, and its drop. A hard stop (`stop`) that comes while it waits, or came
/// before its first wait, drops it unfinished, so that no hook or handler keeps a task alive
/// past a hard stop. Most handlers finish on their first poll, so only one that waits is
/// raced against the stop signal, which saves registering with it for every message.
async fn run_guarded<F: Future>(stop: &Signal, make: impl FnOnce() -> F) -> Ran<F::Output> {
    let Some(fut) = guard(make) else {
        return Ran::Panicked;
    };
    let mut fut = pin!(Some(fut));
    let first = poll_fn(|cx| Poll::Ready(poll_user(fut.as_mut(), cx))).await;
    let outcome = match first {
        Poll::Ready(out) => Some(out),
        Poll::Pending => tokio::select! {
            biased;
            () = stop.fired() => None,
            out = poll_fn(|cx| poll_user(fut.as_mut(), cx)) => Some(out),
        },
    };
    let clean = guard(|| fut.as_mut().set(None)).is_some();
    match outcome {
        None => {
            if clean {
                Ran::Stopped
            } else {
                Ran::Panicked
            }
        }
        Some(None) => Ran::Panicked,
        Some(Some(value)) => Ran::Done { value, clean },
    }
}

/// Polls a user's future inside the guard: `Ready(None)` if the poll panicked (it is not
/// polled again).
fn poll_user<F: Future>(fut: Pin<&mut Option<F>>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
    let Some(f) = fut.as_pin_mut() else {
        return Poll::Ready(None);
    };
    match catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
        Ok(Poll::Ready(value)) => Poll::Ready(Some(value)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(_) => Poll::Ready(None),
    }
}

/// Gives an unhandled message back to its caller; true when nobody waits for it (sent with
/// `send`, or a caller that stopped waiting), so that it counts as dropped.
fn hand_back<W: Worker>(
    slot: &Slot<W>,
    msg: W::Msg,
    reply: Option<tokio::sync::oneshot::Sender<Outcome<W>>>,
    why: Closed,
) -> bool {
    let unsent = match reply {
        Some(reply) => match reply.send(Outcome::Returned(msg, why)) {
            Ok(()) => return false,
            Err(unsent) => unsent,
        },
        None => Outcome::Returned(msg, why),
    };
    if guard(move || drop(unsent)).is_none() {
        tracing::error!(
            slot = slot.index,
            "croupier: a message's Drop panicked while it was handed back"
        );
    }
    true
}

/// Closes the mailbox and hands every queued message back to its caller; messages nobody
/// waits for are counted as dropped. Waits for sends already under way (their permits taken)
/// to land, so that none slips in behind the last look.
async fn return_queued<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut MailboxRx<W>,
    why: Closed,
) {
    rx.close();
    let mut dropped = 0_u64;
    // After `close`, `recv` answers `None` only once no message is queued and no send is
    // still in progress: unlike `try_recv`, it never misses one that is about to land.
    while let Some(Envelope { msg, reply, .. }) = rx.recv().await {
        slot.unload();
        if hand_back(slot, msg, reply, why) {
            dropped += 1;
        }
    }
    count_dropped(core, slot, dropped, why);
}

/// Closes the mailbox of a removed slot and moves every queued message, one after the other
/// in queue order, to the slots that remain, with its caller. Like [`return_queued`], waits
/// for sends already under way to land. A message no slot takes goes back to its caller (or
/// is counted as dropped). Running it again finds the mailbox closed and empty.
async fn forward_queued<W: Worker>(core: &Core<W>, slot: &Slot<W>, rx: &mut MailboxRx<W>) {
    rx.close();
    let mut moved = 0_u64;
    let mut dropped = 0_u64;
    let mut why = Closed::Dead;
    while let Some(env) = rx.recv().await {
        slot.unload();
        match forward(core, env).await {
            Ok(()) => moved += 1,
            Err((Envelope { msg, reply, .. }, closed)) => {
                why = closed;
                if hand_back(slot, msg, reply, closed) {
                    dropped += 1;
                }
            }
        }
    }
    if moved > 0 {
        tracing::debug!(
            slot = slot.index,
            moved,
            "croupier: a removed slot's queued messages moved to the remaining slots"
        );
    }
    count_dropped(core, slot, dropped, why);
}

/// Queues `env` in a remaining slot, the least loaded first, waiting for room in a bounded
/// mailbox. At a graceful shutdown the remaining slots still finish their queues, so they take
/// it as well while their mailboxes are open. Hands it back, with why, when none will.
async fn forward<W: Worker>(
    core: &Core<W>,
    mut env: Envelope<W>,
) -> Result<(), (Envelope<W>, Closed)> {
    let slots = core.slots.load_full();
    let draining = core.drain.is_fired();
    let mut targets: Vec<&Slot<W>> = slots
        .iter()
        .map(|slot| &**slot)
        .filter(|slot| slot.state.serving().is_some() || (draining && slot.state.is_shut()))
        .collect();
    // Stable: the lowest slot among the least loaded.
    targets.sort_by_key(|slot| slot.load());
    for target in targets {
        if core.stop.is_fired() {
            break;
        }
        // A target that closed since (it ended, or a shrink removed it too) hands it back.
        match target.push(env).await {
            Ok(()) => return Ok(()),
            Err(back) => env = back,
        }
    }
    let why = if core.is_stopped() {
        Closed::Shutdown
    } else {
        Closed::Dead
    };
    Err((env, why))
}

/// Counts messages that were accepted and will never be handled, and says so.
fn count_dropped<W: Worker>(core: &Core<W>, slot: &Slot<W>, dropped: u64, why: Closed) {
    if dropped == 0 {
        return;
    }
    core.dropped.fetch_add(dropped, Relaxed);
    core.meter.dropped(dropped);
    tracing::warn!(
        slot = slot.index,
        dropped,
        ?why,
        "croupier worker stopped with messages nobody waits for still unhandled; they were dropped"
    );
}
