//! # Coming from Erlang: ballermann, revolver, OTP `pool`, Skitter, SimpleLocalnet
//!
//! croupier's names follow the tools it learned from. What each call becomes:
//!
//! | you wrote | in croupier | note |
//! | --- | --- | --- |
//! | `ballermann:balance(Sup, Name)` | [`Pool::builder(factory).start()`](crate::Pool::builder), or [`Balancer::builder().source(supervisor)`](crate::Balancer::builder) + [`Supervisor::attach`](crate::Supervisor::attach) | a `Supervisor` is a [`Source`](crate::Source) of its children |
//! | `ballermann:balance(Sup, Name, 0.8)` (ratio) | [`.min_alive_ratio(0.8)`](crate::BalancerBuilder::min_alive_ratio) | 0.8 is the default here too |
//! | `ballermann:pid(Name)` | [`balancer.pick()`](crate::Balancer::pick) / [`pool.call(msg)`](crate::Pool::call) | a guard; `.cloned()` for an owned handle |
//! | `ballermann:apply_within(Name, {M, F, A}, Time)` | [`apply_within(Wait::duration(t), ..)`](crate::Balancer::apply_within) | also `Wait::idle`, `Wait::each(f)`, like its fun form |
//! | `revolver:balance(Sup, Name, #{min_alive_ratio, max_message_queue_length})` | [`.min_alive_ratio(r).max_load(n)`](crate::BalancerBuilder::max_load) | over the limit: [`PickError::Overloaded`](crate::PickError::Overloaded) |
//! | `revolver:pid(Name)` with `least_loaded` | [`Policy::LeastLoaded`](crate::Policy::LeastLoaded) | the run queue is [`Member::load`](crate::Member::load) |
//! | `revolver:map(Name, Fun)` | [`pool.map(f)`](crate::Pool::map) / [`pool.broadcast(msg)`](crate::Pool::broadcast) | one result per live worker, with its id |
//! | `supervisor:start_link` + restart strategy | [`Supervisor::builder(..).restart(..).intensity(..)`](crate::SupervisorBuilder) | `Permanent` / `Transient` / `Temporary`, intensity and period |
//! | `pool:start(Name)` / `pool:start(Name, Args)` | [`Node::builder(name).mode(Mode::Master)`](crate::remote::Node) (feature `remote`) | workers are `Mode::Worker` nodes |
//! | `pool:attach(Node)` | [`node.attach(addr)`](crate::remote::Node::attach) / `connect(addr)` | |
//! | `pool:get_nodes()` | [`node.get_nodes()`](crate::remote::Node::get_nodes) | |
//! | `pool:get_node()` | [`node.get_node()`](crate::remote::Node::get_node) | lowest load as this master sees it: its calls in flight (+ failure penalty); the node's report is in `NodeInfo::reported`, not steered by (stale reports herd masters) |
//! | `pool:pspawn(M, F, A)` | [`node.call_least_loaded(handler, args)`](crate::remote::Node::call_least_loaded) | handlers are typed [`Handler`](crate::remote::Handler) keys, not funs |
//! | `pool:stop()` | [`node.shutdown()`](crate::remote::Node::shutdown) | |
//! | `Skitter.Remote.connect/1`, `connected?/1` | [`connect`](crate::remote::Node::connect), [`is_connected`](crate::remote::Node::is_connected) | typed [`ConnectError`](crate::remote::ConnectError)s: not a croupier node, incompatible, mode mismatch |
//! | `on/3`, `on_many/3` | [`call`](crate::remote::Node::call), [`on_many`](crate::remote::Node::on_many) | |
//! | `on_all_workers/2`, `on_tagged_workers/3` | [`on_all_workers`](crate::remote::Node::on_all_workers), [`on_tagged_workers`](crate::remote::Node::on_tagged_workers) | tags from [`NodeBuilder::tags`](crate::remote::NodeBuilder::tags) |
//! | `on_all_worker_cores/2` | [`on_all_worker_cores`](crate::remote::Node::on_all_worker_cores) | once per pool slot of every worker |
//! | `on_n/3`, `n_times_on_all_workers/3` | [`on_n`](crate::remote::Node::on_n), [`n_times_on_all_workers`](crate::remote::Node::n_times_on_all_workers) | |
//! | `master/0` | [`masters`](crate::remote::Node::masters) | |
//! | SimpleLocalnet `startMaster` / `startSlave` | `Mode::Master` / `Mode::Worker` | discovery: static, hosts file, DNS, mDNS |
//! | `findSlaves` | [`workers()`](crate::remote::Node::workers) | |
//! | `terminateSlave`, `terminateAllSlaves` | [`terminate_worker`](crate::remote::Node::terminate_worker), [`terminate_all_workers`](crate::remote::Node::terminate_all_workers) | |
//! | `redirectLogsHere` | [`redirect_logs_here`](crate::remote::Node::redirect_logs_here) | worker `tracing` events, tagged by node |
//!
//! What is different:
//!
//! - **No process per pick.** ballermann and revolver hand out pids from a gen_server: one
//!   message round trip per pick. A croupier pick is a function call on the caller's thread
//!   (an atomic load and one `fetch_add`), so picking never queues behind other pickers.
//! - **Messages are typed.** A [`Worker`](crate::Worker) has one `Msg` and one `Reply` type;
//!   a crash in `handle` reaches the caller as
//!   [`CallError::WorkerDied`](crate::CallError::WorkerDied), the message still queued move to
//!   the restarted worker.
//! - **Nodes talk gRPC.** The remote layer is not Erlang distribution: mutual TLS, a cookie in
//!   metadata, standard health checks and ORCA load reports that other tools read.
