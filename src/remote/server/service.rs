//! The serving side: croupier's gRPC service, ORCA load reports and grpc.health.v1, on one
//! bounded listener.

use std::{
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use futures_util::Stream;
use tokio::{net::TcpListener, sync::broadcast, time::Instant};
use tonic::{service::interceptor::InterceptedService, Request, Response, Status};

use super::{
    gate::Gate,
    jobs::Job,
    listener::{self, Bounds, Open},
    served::{Accepted, Load, Served},
};
use crate::{
    pool::error::PoolCallError,
    remote::{
        handler::JobError,
        identity::MAX_NAME_LEN,
        logs,
        proto::{
            croupier::v1::{
                croupier_server::{Croupier, CroupierServer},
                HelloReply, HelloRequest, InvokeReply, InvokeRequest, LogRecord, LogsRequest,
                TerminateReply, TerminateRequest,
            },
            xds::{
                data::orca::v3::OrcaLoadReport,
                service::orca::v3::{
                    open_rca_service_server::{OpenRcaService, OpenRcaServiceServer},
                    OrcaLoadReportRequest,
                },
            },
        },
        wire::{mode_to_wire, DEADLINE_KEY, VERSION},
    },
};

/// The services a node serves, from its shared state.
struct Svc {
    node: Arc<Served>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Croupier for Svc {
    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let _open = open(&req);
        let node = &self.node;
        let peer = req.extensions().get::<listener::ConnInfo>().cloned();
        let hello = req.into_inner();
        if let Some(peer) = peer {
            tracing::debug!(master = %hello.name, remote = %peer.remote, tls = peer.tls, "croupier node said hello to a master");
        }
        if hello.name.len() > MAX_NAME_LEN {
            return Err(Status::invalid_argument(format!(
                "a node name is at most {MAX_NAME_LEN} bytes, not {}",
                hello.name.len()
            )));
        }
        if hello.name == node.common.local.name {
            return Err(Status::already_exists(format!(
                "a node named {:?} cannot connect to itself, or to another node of its name",
                hello.name
            )));
        }
        if hello.version == VERSION {
            node.greeted_by(&hello.name);
        }
        Ok(Response::new(HelloReply {
            name: node.common.local.name.clone(),
            mode: mode_to_wire(node.common.local.mode),
            version: VERSION,
            tags: node.common.local.tags.clone(),
            pool_size: node.pool_size(),
            heartbeat_ms: u64::try_from(node.common.cfg.report_max.as_millis()).unwrap_or(u64::MAX),
        }))
    }

    async fn invoke(&self, req: Request<InvokeRequest>) -> Result<Response<InvokeReply>, Status> {
        let node = &self.node;
        let _accepted = Accepted::new(&node.accepted);
        let _open = open(&req);
        let deadline = req
            .metadata()
            .get(DEADLINE_KEY)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(|ms| crate::remote::deadline::after(Duration::from_millis(ms)));
        let InvokeRequest { handler, args } = req.into_inner();
        let Some(h) = node.registry.get(handler.as_str()).cloned() else {
            return Err(Status::not_found(format!(
                "no handler named {handler:?} is registered on node {}",
                node.common.local.name
            )));
        };
        let Some(pool) = &node.pool else {
            return Err(Status::unimplemented("this node serves no pool"));
        };
        // Dropped with this future (the caller cancelled, or its deadline passed): the job
        // does not start, or its handler's future is dropped.
        let cancel = tokio_util::sync::CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let job = Job {
            handler: h,
            args,
            cancel: cancel.clone(),
        };
        let call = pool.call(job);
        let done = match deadline {
            None => call.await,
            Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                Ok(done) => done,
                Err(_) => {
                    // Cancelled before the answer goes out: a caller told DEADLINE_EXCEEDED
                    // knows the job will not start (or has been dropped).
                    cancel.cancel();
                    return Err(Status::deadline_exceeded(format!(
                        "handler {handler:?} did not answer within the caller's deadline"
                    )));
                }
            },
        };
        let answer = match done {
            Ok(Ok(result)) => Ok(Response::new(InvokeReply { result })),
            Ok(Err(JobError::Decode(e))) => Err(Status::invalid_argument(e)),
            Ok(Err(JobError::Failed(e))) => Err(Status::internal(e)),
            Ok(Err(JobError::Cancelled)) => Err(Status::cancelled("the call was cancelled")),
            Err(PoolCallError::WorkerDied) => Err(Status::internal(format!(
                "handler {handler:?} panicked (or its worker was stopped while running it)"
            ))),
            Err(e @ PoolCallError::Shutdown(_)) => Err(Status::unavailable(e.to_string())),
            Err(e) => Err(Status::resource_exhausted(e.to_string())),
        };
        node.completed.fetch_add(1, Relaxed);
        answer
    }

    async fn terminate(
        &self,
        req: Request<TerminateRequest>,
    ) -> Result<Response<TerminateReply>, Status> {
        let _open = open(&req);
        tracing::info!(node = %self.node.common.local.name, "croupier node terminated by a master");
        let stop = self.node.common.stop.clone();
        // After this reply is on its way: a graceful stop lets it finish.
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            stop.cancel();
        });
        Ok(Response::new(TerminateReply {}))
    }

    type LogsStream = BoxStream<LogRecord>;

    async fn logs(&self, req: Request<LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let open = open(&req);
        let rx = logs::records().subscribe();
        let stop = self.node.common.stop.clone();
        let stream = futures_util::stream::unfold((rx, stop), |(mut rx, stop)| async move {
            let next = tokio::select! {
                () = stop.cancelled() => return None,
                next = rx.recv() => next,
            };
            let record = match next {
                Ok(r) => r,
                Err(broadcast::error::RecvError::Lagged(n)) => LogRecord {
                    level: "WARN".into(),
                    target: "croupier::remote".into(),
                    message: format!("{n} log records were dropped: the master read too slowly"),
                    unix_micros: 0,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(record), (rx, stop)))
        });
        Ok(Response::new(holding(Box::pin(stream), open)))
    }
}

#[tonic::async_trait]
impl OpenRcaService for Svc {
    type StreamCoreMetricsStream = BoxStream<OrcaLoadReport>;

    /// Reports when the load changes, at most every `report_min` (or the interval the client
    /// asked for, if longer, up to `report_max`), and at least every `report_max`.
    async fn stream_core_metrics(
        &self,
        req: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<Self::StreamCoreMetricsStream>, Status> {
        let node = Arc::clone(&self.node);
        let open = open(&req);
        let asked = req
            .into_inner()
            .report_interval
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        let min = asked.clamp(node.common.cfg.report_min, node.common.cfg.report_max);
        let max = node.common.cfg.report_max;
        let mut tick = tokio::time::interval(min);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = Reporter {
            node,
            tick,
            max,
            last: None,
        };
        let stream = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                tokio::select! {
                    () = st.node.common.stop.cancelled() => return None,
                    _ = st.tick.tick() => {}
                }
                let now = Instant::now();
                let load = st.node.load();
                let due = match &st.last {
                    None => true,
                    Some((at, last, _)) => *last != load || now - *at >= st.max,
                };
                if due {
                    let completed = st.node.completed.load(Relaxed);
                    let report = st.node.report(load, completed, st.last.as_ref(), now);
                    st.last = Some((now, load, completed));
                    return Some((Ok(report), st));
                }
            }
        });
        Ok(Response::new(holding(Box::pin(stream), open)))
    }
}

/// One ORCA stream's state.
struct Reporter {
    node: Arc<Served>,
    tick: tokio::time::Interval,
    max: Duration,
    /// When the last report went, the load it carried, and the calls completed by then.
    last: Option<(Instant, Load, u64)>,
}

/// Counts a call or stream open on the connection `req` came on, while the guard lives: a
/// connection with one open is not idle.
fn open<T>(req: &Request<T>) -> Option<Open> {
    req.extensions()
        .get::<listener::ConnInfo>()
        .map(|c| c.state.open())
}

/// `stream`, keeping `open` as long as it lives.
fn holding<T: Send + 'static>(stream: BoxStream<T>, open: Option<Open>) -> BoxStream<T> {
    use futures_util::StreamExt as _;
    Box::pin(stream.map(move |item| {
        let _ = &open;
        item
    }))
}

/// grpc.health.v1 over the node's statuses, whose `Watch` streams end when the node stops:
/// a watcher must not hold the server's graceful shutdown for its whole grace period.
struct Health {
    inner: tonic_health::server::HealthService,
    stop: tokio_util::sync::CancellationToken,
}

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    type WatchStream = BoxStream<tonic_health::pb::HealthCheckResponse>;

    async fn check(
        &self,
        req: Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<Response<tonic_health::pb::HealthCheckResponse>, Status> {
        let _open = open(&req);
        self.inner.check(req).await
    }

    async fn watch(
        &self,
        req: Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        use futures_util::StreamExt as _;
        let open = open(&req);
        let stream = self.inner.watch(req).await?.into_inner();
        let stop = self.stop.clone();
        // A status set before the stop (NOT_SERVING, as `shutdown` sets it) still goes out:
        // the stream is read first, and ends once it has nothing more and the node stops.
        let until_stopped =
            futures_util::stream::unfold((stream, stop), |(mut stream, stop)| async move {
                tokio::select! {
                    biased;
                    item = stream.next() => item.map(|item| (item, (stream, stop))),
                    () = stop.cancelled() => None,
                }
            });
        Ok(Response::new(holding(Box::pin(until_stopped), open)))
    }
}

/// Serves until the node stops; then ends gracefully within the grace period, and cuts
/// every connection left after it.
pub(crate) async fn serve(node: Arc<Served>, listener: TcpListener, bounds: Bounds) {
    let incoming = listener::incoming(listener, bounds.clone(), &node.common.tracker);
    let cfg = &node.common.cfg;
    let gate = Gate {
        cookie: node.common.local.cookie.clone(),
    };
    let croupier = CroupierServer::new(Svc {
        node: Arc::clone(&node),
    })
    .max_decoding_message_size(cfg.max_message)
    .max_encoding_message_size(cfg.max_message);
    let orca = OpenRcaServiceServer::new(Svc {
        node: Arc::clone(&node),
    });
    let health = tonic_health::pb::health_server::HealthServer::new(Health {
        inner: tonic_health::server::HealthService::from_health_reporter(node.health.clone()),
        stop: node.common.stop.clone(),
    });
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(cfg.keepalive))
        .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
        .max_concurrent_streams(cfg.max_streams)
        .concurrency_limit_per_connection(cfg.max_streams as usize)
        .http2_max_header_list_size(16 << 10)
        .http2_max_pending_accept_reset_streams(Some(64))
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(2 << 20)
        .add_service(health)
        .add_service(InterceptedService::new(croupier, gate.clone()))
        .add_service(InterceptedService::new(orca, gate))
        .serve_with_incoming_shutdown(incoming, node.common.stop.clone().cancelled_owned());
    if let Err(e) = server.await {
        tracing::warn!(node = %node.common.local.name, error = %e, "croupier node's server failed");
    }
}
