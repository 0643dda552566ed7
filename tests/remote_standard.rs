//! What other gRPC tools see of a croupier node: grpc.health.v1 through tonic-health's own
//! client, and ORCA load reports through the xDS types.
#![cfg(feature = "remote")]

mod common_remote;

use std::{sync::Arc, time::Duration};

use common_remote::{start, within, worker};
use croupier::remote::{
    proto::xds::{
        data::orca::v3::OrcaLoadReport,
        service::orca::v3::{open_rca_service_client::OpenRcaServiceClient, OrcaLoadReportRequest},
    },
    Handler,
};
use tokio::sync::{Notify, Semaphore};
use tonic::transport::{Channel, Endpoint};
use tonic_health::{
    pb::{health_client::HealthClient, HealthCheckRequest},
    ServingStatus,
};

const WAIT: Handler<(), ()> = Handler::new("test.wait");

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The overall status and croupier's service's, as a health probe reads them.
async fn statuses(client: &mut HealthClient<Channel>) -> (i32, i32) {
    let one = |service: &str| {
        let req = HealthCheckRequest {
            service: service.to_owned(),
        };
        let mut client = client.clone();
        async move { within(client.check(req)).await.unwrap().into_inner().status }
    };
    (one("").await, one("croupier.v1.Croupier").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving_then_not_serving_while_draining() {
    let w = start(worker("healthy")).await;
    let mut client = HealthClient::new(channel(w.local_addr().unwrap()).await);
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(statuses(&mut client).await, (serving, serving));

    // Watch sees the change as it happens.
    let mut watch = within(client.watch(HealthCheckRequest {
        service: String::new(),
    }))
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        within(watch.message()).await.unwrap().unwrap().status,
        serving
    );

    let in_maintenance = Arc::new(Notify::new());
    let done = Arc::new(Notify::new());
    let drain = {
        let (w, in_maintenance, done) = (w.clone(), Arc::clone(&in_maintenance), Arc::clone(&done));
        tokio::spawn(async move {
            w.apply_within(Duration::from_secs(5), || async move {
                in_maintenance.notify_one();
                done.notified().await;
            })
            .await
        })
    };
    within(in_maintenance.notified()).await;
    assert_eq!(statuses(&mut client).await, (not_serving, not_serving));
    assert_eq!(
        within(watch.message()).await.unwrap().unwrap().status,
        not_serving
    );
    done.notify_one();
    within(drain).await.unwrap().unwrap();
    assert_eq!(statuses(&mut client).await, (serving, serving));
    assert_eq!(
        within(watch.message()).await.unwrap().unwrap().status,
        serving
    );

    // Shutting down: NOT_SERVING is the last word a watcher hears.
    w.shutdown().await;
    let mut last = None;
    while let Ok(Ok(Some(m))) = tokio::time::timeout(Duration::from_secs(5), watch.message()).await
    {
        last = Some(m.status);
    }
    assert_eq!(last, Some(not_serving));
}

fn run_queue(r: &OrcaLoadReport) -> f64 {
    r.named_metrics["croupier.run_queue"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_stream_reports_the_run_queue() {
    let gate = Arc::new(Semaphore::new(0));
    let w = {
        let gate = Arc::clone(&gate);
        start(
            worker("reporting")
                .report_interval(Duration::from_millis(20), Duration::from_millis(500))
                .handle(WAIT, move |()| {
                    let gate = Arc::clone(&gate);
                    async move { gate.acquire().await.unwrap().forget() }
                }),
        )
        .await
    };
    let addr = w.local_addr().unwrap();
    // A plain xDS ORCA client, as Envoy or another language's gRPC would open it.
    let mut orca = OpenRcaServiceClient::new(channel(addr).await);
    let mut reports = within(orca.stream_core_metrics(OrcaLoadReportRequest {
        report_interval: Some(prost_types::Duration {
            seconds: 0,
            nanos: 20_000_000,
        }),
        request_cost_names: Vec::new(),
    }))
    .await
    .unwrap()
    .into_inner();
    let first = within(reports.message()).await.unwrap().unwrap();
    assert_eq!(run_queue(&first), 0.0);
    assert_eq!(first.named_metrics["croupier.pool_size"], 2.0);
    assert_eq!(first.application_utilization, 0.0);

    // Six jobs on a pool of two: a run queue of 6, utilisation capped at 1.
    let m = start(common_remote::master()).await;
    within(m.connect(addr)).await.unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.call_least_loaded(WAIT, ()).await })
        })
        .collect();
    let loaded = within(async {
        loop {
            let r = reports.message().await.unwrap().unwrap();
            if run_queue(&r) == 6.0 {
                return r;
            }
        }
    })
    .await;
    assert_eq!(loaded.application_utilization, 1.0);
    assert_eq!(loaded.named_metrics["croupier.draining"], 0.0);
    // The croupier master reads the same stream: 6 jobs on 2 workers is a load of 3.
    common_remote::until(&m, |m| m.workers().first().is_some_and(|w| w.load == 3.0)).await;

    gate.add_permits(6);
    for c in calls {
        within(c).await.unwrap().unwrap();
    }
    let idle = within(async {
        loop {
            let r = reports.message().await.unwrap().unwrap();
            if run_queue(&r) == 0.0 {
                return r;
            }
        }
    })
    .await;
    assert_eq!(idle.application_utilization, 0.0);
    // The six completed calls show as a positive rate in a report (for gRFC A58's weights)
    // within a heartbeat or two.
    let rate = within(async {
        let mut r = idle;
        while r.rps_fractional == 0.0 {
            r = reports.message().await.unwrap().unwrap();
        }
        r.rps_fractional
    })
    .await;
    assert!(rate > 0.0);
}
