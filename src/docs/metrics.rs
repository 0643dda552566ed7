//! The metrics croupier records, with the `metrics` feature, through the
//! [`metrics`](https://docs.rs/metrics) facade: any recorder (Prometheus, StatsD, OpenTelemetry
//! exporters) installed **before** a balancer, supervisor or pool is built receives them.
//!
//! Every metric carries a `name` label: the name given to
//! [`BalancerBuilder::name`](crate::BalancerBuilder::name),
//! [`SupervisorBuilder::name`](crate::SupervisorBuilder::name) or
//! [`PoolBuilder::name`](crate::PoolBuilder::name) (a pool gives its name to both its
//! balancer and its supervisor), `"unnamed"` if none was set. Balancers that share a name add
//! up in one series: the gauges are sent as differences, and a dropped balancer takes its
//! share back.
//!
//! | metric | kind | labels | recorded |
//! | --- | --- | --- | --- |
//! | `croupier_picks_total` | counter | `name` | members handed out, refused picks included; published (see below) |
//! | `croupier_refusals_total` | counter | `name`, `kind` = `no_members` / `overloaded` / `draining` | at each refused pick |
//! | `croupier_refreshes_total` | counter | `name` | at each refresh from the source |
//! | `croupier_dead_found_total` | counter | `name` | members found dead, by a pick or `notify_dead`, each once |
//! | `croupier_live_members` | gauge | `name` | live, enabled members of the current snapshot; published |
//! | `croupier_run_queue` | gauge | `name` | the live members' loads added up: a pool's messages queued or in progress; published |
//! | `croupier_drain_seconds` | histogram | `name` | at the end of each `apply_within`, from the stop of dealing to its resumption |
//! | `croupier_ejections_total` | counter | `name` | a member ejected for failures in a row ([outlier ejection](crate::Ejection)) |
//! | `croupier_readmissions_total` | counter | `name` | an ejected member back in rotation |
//! | `croupier_restarts_total` | counter | `name` | a supervisor restarted a worker |
//! | `croupier_deaths_total` | counter | `name` | a worker's incarnation panicked or finished (shutdown not counted) |
//! | `croupier_dropped_total` | counter | `name` | accepted messages that will never be handled ([`SupervisorStats::dropped`](crate::SupervisorStats::dropped)) |
//!
//! **Published** values are sent when something else is recorded (a refresh, a death found,
//! the end of a drain), on [`Balancer::stats`](crate::Balancer::stats), and on
//! [`Balancer::publish_metrics`](crate::Balancer::publish_metrics) /
//! [`Pool::publish_metrics`](crate::Pool::publish_metrics): call one before a scrape, or from
//! an interval. A plain pick writes nothing for metrics: picks are counted by the cursor that
//! every pick moves anyway, and published as the difference since the last publication.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use croupier::{Balancer, Member};
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! # #[derive(Clone)] struct W;
//! # impl Member for W { fn is_alive(&self) -> bool { true } }
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let b = metrics::with_local_recorder(&recorder, || {
//!     Balancer::builder().name("frontends").source(vec![W, W]).build()
//! })?;
//! for _ in 0..3 {
//!     b.pick().unwrap();
//! }
//! b.publish_metrics();
//! let picks = snapshotter
//!     .snapshot()
//!     .into_vec()
//!     .into_iter()
//!     .find(|(key, ..)| key.key().name() == "croupier_picks_total")
//!     .map(|(.., value)| value);
//! assert_eq!(picks, Some(DebugValue::Counter(3)));
//! # }
//! # Ok::<(), croupier::ConfigError>(())
//! ```
