//! The task behind each slot: runs incarnation after incarnation over one mailbox.

use std::{
    future::{poll_fn, Future},
    panic::AssertUnwindSafe,
    pin::{pin, Pin},
    sync::{atomic::Ordering::Relaxed, Arc},
    task::Poll,
};

use futures_util::FutureExt;

use super::Core;
use crate::{
    worker::{Envelope, Outbox, Outcome, Returned, Slot, ENDED},
    Worker, WorkerId, WorkerRef,
};

/// How an incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Its factory, a hook or `handle` panicked.
    Panicked,
    /// It said it [finished](Worker::is_finished).
    Finished,
    /// Graceful shutdown: the mailbox is closed and empty.
    Drained,
    /// Hard stop: give-up or the supervisor was dropped.
    Stopped,
}

/// Runs slot `slot` until shutdown, give-up, or an end that is not restarted.
pub(super) async fn run_slot<W: Worker>(core: Arc<Core<W>>, slot: Arc<Slot<W>>, mut rx: Outbox<W>) {
    let mut incarnation = 0_u64;
    let mut crashes_in_a_row = 0_u32;
    loop {
        let id = WorkerId::new(slot.index, incarnation);
        let (exit, handled_any) = run_incarnation(&core, &slot, &mut rx, id).await;
        if handled_any {
            crashes_in_a_row = 0;
        }
        match exit {
            Exit::Drained => return,
            Exit::Stopped => return return_queued(&core, &slot, &mut rx, Returned::Shutdown),
            Exit::Panicked | Exit::Finished => {}
        }
        core.deaths.fetch_add(1, Relaxed);
        let old = WorkerRef::new(Arc::clone(&slot), incarnation);
        // `run_incarnation` has already retired the incarnation (see `retire`).
        if !core.restart.restarts(exit == Exit::Panicked) {
            tracing::debug!(worker = %id, ?exit, "croupier worker ended; not restarted");
            core.notify_dead(&old);
            return return_queued(&core, &slot, &mut rx, Returned::Dead);
        }
        if !core.allow_restart() {
            core.give_up(id);
            return return_queued(&core, &slot, &mut rx, Returned::Shutdown);
        }
        incarnation += 1;
        slot.last.store(incarnation, Relaxed);
        core.restarts.fetch_add(1, Relaxed);
        tracing::warn!(worker = %id, ?exit, successor = %WorkerId::new(slot.index, incarnation),
            "croupier worker ended; restarting");
        core.refresh_watchers();
        let delay = core.backoff.delay(crashes_in_a_row);
        crashes_in_a_row = crashes_in_a_row.saturating_add(1);
        if !delay.is_zero() {
            tokio::select! {
                () = core.stop.fired() => {
                    return return_queued(&core, &slot, &mut rx, Returned::Shutdown);
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Makes one incarnation and feeds it messages until it ends. Also says whether it handled
/// any message successfully (which resets the backoff).
async fn run_incarnation<W: Worker>(
    core: &Core<W>,
    slot: &Slot<W>,
    rx: &mut Outbox<W>,
    id: WorkerId,
) -> (Exit, bool) {
    let Ok(mut worker) = std::panic::catch_unwind(AssertUnwindSafe(|| (core.factory)(id))) else {
        retire(core, slot, id, Exit::Panicked);
        return (Exit::Panicked, false);
    };
    if AssertUnwindSafe(worker.started())
        .catch_unwind()
        .await
        .is_err()
    {
        retire(core, slot, id, Exit::Panicked);
        return (Exit::Panicked, false);
    }
    let mut handled_any = false;
    loop {
        let Some(next) = next_message(core, rx).await else {
            // Graceful shutdown reached the end of the queue (or a hard stop came first).
            let exit = if core.stop.is_fired() {
                Exit::Stopped
            } else {
                Exit::Drained
            };
            return (finish(&mut worker, exit).await, handled_any);
        };
        let Envelope { msg, reply } = next;
        let handled = if core.stop.is_fired() {
            None
        } else {
            // Most handlers finish on their first poll: only one that waits is raced against
            // the stop signal, which saves registering with it for every message.
            let mut handling = pin!(AssertUnwindSafe(worker.handle(msg)).catch_unwind());
            match poll_once(handling.as_mut()).await {
                Poll::Ready(r) => Some(r),
                Poll::Pending => tokio::select! {
                    biased;
                    () = core.stop.fired() => None,
                    r = handling => Some(r),
                },
            }
        };
        slot.load.fetch_sub(1, Relaxed);
        match handled {
            // Hard stop mid-message: the reply channel drops, the caller reads WorkerDied.
            None => return (Exit::Stopped, handled_any),
            Some(Err(_panic)) => {
                // Retire before the reply channel drops: once the caller hears WorkerDied,
                // the old handle must already read dead.
                retire(core, slot, id, Exit::Panicked);
                drop(reply);
                return (Exit::Panicked, handled_any);
            }
            Some(Ok(answer)) => {
                handled_any = true;
                if let Some(reply) = reply {
                    // The caller may have stopped waiting; the reply is then discarded.
                    let _ = reply.send(Outcome::Reply(answer));
                }
                if worker.is_finished() {
                    let exit = finish(&mut worker, Exit::Finished).await;
                    retire(core, slot, id, exit);
                    return (exit, handled_any);
                }
            }
        }
    }
}

/// Turns the handles of incarnation `id` dead at once: the slot moves on to the successor
/// when the restart rule will start one, or ends. A shutdown or give-up that already marked the
/// slot `SHUT` wins; so does a give-up that comes after (it overwrites with `SHUT`).
fn retire<W: Worker>(core: &Core<W>, slot: &Slot<W>, id: WorkerId, exit: Exit) {
    let incarnation = id.incarnation();
    let next = if core.restart.restarts(exit == Exit::Panicked) {
        incarnation + 1
    } else {
        ENDED
    };
    let _ = slot
        .current
        .compare_exchange(incarnation, next, Relaxed, Relaxed);
}

/// The next message, or `None` once a hard stop came or a shutdown emptied the mailbox.
async fn next_message<W: Worker>(core: &Core<W>, rx: &mut Outbox<W>) -> Option<Envelope<W>> {
    if core.stop.is_fired() {
        return None;
    }
    if !core.drain.is_fired() {
        let mut recv = pin!(rx.recv());
        // A queued message is taken without registering with the signals.
        if let Poll::Ready(env) = poll_once(recv.as_mut()).await {
            return env;
        }
        tokio::select! {
            biased;
            () = core.stop.fired() => return None,
            () = core.drain.fired() => {}
            env = recv => return env,
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

/// Polls `fut` once, with this task's waker.
async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
}

/// Runs the `stopping` hook; a panic there turns the exit into a crash.
async fn finish<W: Worker>(worker: &mut W, exit: Exit) -> Exit {
    match AssertUnwindSafe(worker.stopping()).catch_unwind().await {
        Ok(()) => exit,
        Err(_) => Exit::Panicked,
    }
}

/// Closes the mailbox and hands every queued message back to its caller; messages nobody
/// waits for (sent with `send`) are counted as dropped.
fn return_queued<W: Worker>(core: &Core<W>, slot: &Slot<W>, rx: &mut Outbox<W>, why: Returned) {
    rx.close();
    let mut dropped = 0_u64;
    while let Some(Envelope { msg, reply }) = rx.try_recv() {
        slot.load.fetch_sub(1, Relaxed);
        match reply {
            Some(reply) => {
                let _ = reply.send(Outcome::Returned(msg, why));
            }
            None => dropped += 1,
        }
    }
    if dropped > 0 {
        core.dropped.fetch_add(dropped, Relaxed);
        tracing::warn!(
            slot = slot.index,
            dropped,
            ?why,
            "croupier worker stopped with sent messages still queued; they were not handled"
        );
    }
}
