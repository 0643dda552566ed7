//! Handlers as pool jobs: each call a node accepts is a job for its pool, which runs the
//! handler the call names.

use tokio_util::sync::CancellationToken;

use crate::{
    remote::handler::{Erased, JobError},
    worker::Worker,
};

/// One remote call for the node's pool to run.
pub(crate) struct Job {
    pub(crate) handler: Erased,
    pub(crate) args: Vec<u8>,
    /// Fired when the caller goes away: a job that has not started never starts, and a
    /// running handler's future is dropped.
    pub(crate) cancel: CancellationToken,
}

/// The worker of a node's pool: runs whatever handler each job names.
pub(crate) struct HandlerWorker;

impl Worker for HandlerWorker {
    type Msg = Job;
    type Reply = Result<Vec<u8>, JobError>;

    async fn handle(&mut self, job: Job) -> Self::Reply {
        if job.cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let run = (job.handler)(job.args);
        tokio::select! {
            biased;
            () = job.cancel.cancelled() => Err(JobError::Cancelled),
            done = run => done,
        }
    }
}
