//! Connecting to a worker node: the channel, the hello, and the load stream, each within the
//! handshake timeout.

use std::{error::Error as _, io, net::SocketAddr};

use tonic::{
    transport::{Channel, Endpoint},
    Code, Request, Status, Streaming,
};

use crate::remote::{
    auth,
    config::NodeConfig,
    error::ConnectError,
    identity::Local,
    proto::{
        croupier::v1::{croupier_client::CroupierClient, HelloReply, HelloRequest},
        xds::{
            data::orca::v3::OrcaLoadReport,
            service::orca::v3::{
                open_rca_service_client::OpenRcaServiceClient, OrcaLoadReportRequest,
            },
        },
    },
    wire::{mode_from_wire, mode_to_wire, VERSION},
};

/// A connection that said hello, before its load stream is open.
pub(crate) struct Hello {
    pub(crate) channel: Channel,
    pub(crate) reply: HelloReply,
}

/// Connects to `addr` and says hello, within the handshake timeout.
pub(crate) async fn hello(
    addr: SocketAddr,
    local: &Local,
    cfg: &NodeConfig,
) -> Result<Hello, ConnectError> {
    if !addr.ip().is_loopback() && local.tls.is_none() {
        return Err(ConnectError::Insecure(addr));
    }
    let attempt = async {
        let scheme = if local.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?
            .connect_timeout(cfg.handshake_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(cfg.keepalive)
            .keep_alive_timeout(cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(2 << 20);
        if let Some(tls) = &local.tls {
            endpoint = endpoint
                .tls_config(tls.client_config(addr))
                .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::NotConnected(io::Error::other(chain(&e))))?;
        let mut req = Request::new(HelloRequest {
            name: local.name.clone(),
            mode: mode_to_wire(local.mode),
            version: VERSION,
        });
        auth::present(local.cookie.as_ref(), &mut req);
        let reply = CroupierClient::new(channel.clone())
            .hello(req)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        if reply.version != VERSION {
            return Err(ConnectError::Incompatible {
                ours: VERSION,
                theirs: reply.version,
            });
        }
        let mode = mode_from_wire(reply.mode).ok_or(ConnectError::NotCroupier)?;
        if !mode.serves() {
            return Err(ConnectError::ModeMismatch);
        }
        if reply.name == local.name {
            return Err(ConnectError::Rejected(format!(
                "the node at {addr} has this node's own name, {:?}",
                reply.name
            )));
        }
        Ok(Hello { channel, reply })
    };
    tokio::time::timeout(cfg.handshake_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// Opens the node's ORCA stream and reads its first report, within the handshake timeout.
pub(crate) async fn open_reports(
    channel: &Channel,
    local: &Local,
    cfg: &NodeConfig,
) -> Result<(Streaming<OrcaLoadReport>, OrcaLoadReport), ConnectError> {
    let attempt = async {
        let mut req = Request::new(OrcaLoadReportRequest {
            report_interval: prost_types::Duration::try_from(cfg.report_min).ok(),
            request_cost_names: Vec::new(),
        });
        auth::present(local.cookie.as_ref(), &mut req);
        let mut reports = OpenRcaServiceClient::new(channel.clone())
            .stream_core_metrics(req)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        match reports.message().await {
            Ok(Some(first)) => Ok((reports, first)),
            Ok(None) => Err(ConnectError::NotCroupier),
            Err(s) => Err(refusal(&s)),
        }
    };
    tokio::time::timeout(cfg.handshake_timeout, attempt)
        .await
        .unwrap_or(Err(ConnectError::Timeout))
}

/// What a refused hello means.
fn refusal(s: &Status) -> ConnectError {
    match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => ConnectError::Unauthenticated,
        Code::AlreadyExists | Code::FailedPrecondition => {
            ConnectError::Rejected(s.message().to_owned())
        }
        Code::Unavailable => ConnectError::NotConnected(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            status_chain(s),
        )),
        _ => ConnectError::NotCroupier,
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

pub(super) fn status_chain(s: &Status) -> String {
    match s.source() {
        Some(inner) => format!("{}: {}", s.message(), chain(inner)),
        None => s.message().to_owned(),
    }
}
