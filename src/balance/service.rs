//! [`Balance`]: a tower `Service` that picks a member service with a croupier balancer.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    task::{Context, Poll},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::endpoint::{Common, Endpoint, Load, State};
use crate::{
    balancer::{Balancer, Ejection, Outcome},
    config::ConfigError,
    member::Source,
    policy::error::PickError,
    policy::Policy,
    snapshot::affinity::hash_key,
};

/// A tower `Service` over member services `S`, chosen by a croupier
/// [`Balancer`](crate::Balancer). See the [module documentation](super).
///
/// `K` is the key members are known by: their index for [`Balance::new`], the `Discover`
/// key for [`BalanceBuilder::discover`].
pub struct Balance<S, K = usize> {
    inner: Arc<Inner<S, K>>,
}

impl<S, K> Clone for Balance<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(super) struct Inner<S, K> {
    balancer: Balancer<Endpoint<K, S>>,
    /// The members, as the balancer's source reads them. Slow path only.
    members: Arc<Mutex<Vec<Endpoint<K, S>>>>,
    /// Load state by key: members present, and removed ones with requests still in flight
    /// (forgotten when the last of those ends).
    states: Arc<States<K>>,
    settings: Settings,
    common: Arc<Common>,
    /// Set while a discover task feeds this balance; it stops when the last handle goes.
    stop: tokio_util::sync::CancellationToken,
}

impl<S, K> Drop for Inner<S, K> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    policy: Policy,
    max_load: Option<usize>,
    seed: Option<u64>,
    load: Load,
    cooldown: Duration,
    tries: usize,
    name: Option<&'static str>,
    ejection: Option<Ejection>,
    bounded: Option<f64>,
}

/// Configures a [`Balance`]; made by [`Balance::builder`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until .build()"]
pub struct BalanceBuilder {
    settings: Settings,
}

/// Why a [`Balance`] gave no response of a member's.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BalanceError {
    /// The balancer refused to pick: no member, every member over `max_load`, or draining.
    /// The request was not sent.
    Refused(PickError),
    /// Every member tried failed its `poll_ready` (each is out of rotation for the cooldown);
    /// the request was not sent, so it is safe to retry.
    NoReadyMember {
        /// How many members were tried.
        tries: usize,
    },
}

impl fmt::Display for BalanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "no member was picked: {e}"),
            Self::NoReadyMember { tries } => write!(
                f,
                "{tries} member(s) tried and none was ready; the request was not sent (retry later)"
            ),
        }
    }
}

impl std::error::Error for BalanceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Refused(e) => Some(e),
            Self::NoReadyMember { .. } => None,
        }
    }
}

impl Default for BalanceBuilder {
    fn default() -> Self {
        Self {
            settings: Settings {
                policy: Policy::LeastLoaded,
                max_load: None,
                seed: None,
                load: Load::peak_ewma(),
                cooldown: Duration::from_secs(1),
                tries: 3,
                name: None,
                ejection: None,
                bounded: None,
            },
        }
    }
}

impl BalanceBuilder {
    /// How a member is picked; [`Policy::LeastLoaded`] by default: in the arena it keeps p99
    /// closest to one shared queue (tower's balancer uses power of two, which reads two
    /// loads whatever the size; see [choosing a policy](crate::docs::choosing_a_policy)).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Members whose load is at least `n` are passed over; when all are, the request fails
    /// with [`BalanceError::Refused`] (`Overloaded`).
    pub fn max_load(mut self, n: usize) -> Self {
        self.settings.max_load = Some(n);
        self
    }

    /// A fixed seed for the power of two choices and least loaded's starting place, for
    /// repeatable tests (see [`BalancerBuilder::seed`](crate::BalancerBuilder::seed)).
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = Some(seed);
        self
    }

    /// How a member's load is measured; [`Load::peak_ewma`] by default (requests in flight
    /// times the member's peak-EWMA latency: in the arena it keeps p99 closest to one shared
    /// queue when members differ in speed); [`Load::InFlight`] counts requests alone.
    pub fn load(mut self, load: Load) -> Self {
        self.settings.load = load;
        self
    }

    /// How long a member whose `poll_ready` failed stays out of rotation; 1 s by default.
    /// `Duration::MAX` keeps it out for ever; `Duration::ZERO` lets it back at the next request.
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.settings.cooldown = d;
        self
    }

    /// How many members one request may try before it fails; 3 by default (at least 1).
    pub fn tries(mut self, n: usize) -> Self {
        self.settings.tries = n.max(1);
        self
    }

    /// The name in the `name` label of the balancer's metrics (with the `metrics` feature;
    /// see [the table](crate::docs::metrics)). `"unnamed"` if unset.
    pub fn name(mut self, name: &'static str) -> Self {
        self.settings.name = Some(name);
        self
    }

    /// Outlier ejection: a member whose responses fail too many times in a row leaves
    /// rotation for a while (see [`Ejection`]). `Balance` reports every response itself: an
    /// `Err` from the member is a failure, an `Ok` a success. Off if unset.
    pub fn outlier_ejection(mut self, ejection: Ejection) -> Self {
        self.settings.ejection = Some(ejection);
        self
    }

    /// Key affinity with bounded loads for [`Balance::call_for`] and
    /// [`Balance::with_affinity`]: a key's member takes it only while its load (requests in
    /// flight) is below `(1 + epsilon)` times the average plus one; otherwise the key goes to
    /// the next member of its order, so one hot key cannot pile up on one member (see
    /// [`BalancerBuilder::bounded_loads`](crate::BalancerBuilder::bounded_loads)). Must be
    /// positive and finite.
    pub fn bounded_loads(mut self, epsilon: f64) -> Self {
        self.settings.bounded = Some(epsilon);
        self
    }

    fn balancer<K, S>(
        &self,
        source: impl Source<Endpoint<K, S>>,
    ) -> Result<Balancer<Endpoint<K, S>>, ConfigError>
    where
        K: Clone + PartialEq + Hash + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        let mut b = Balancer::builder()
            .policy(self.settings.policy)
            .source(source);
        if let Some(n) = self.settings.max_load {
            b = b.max_load(n);
        }
        if let Some(seed) = self.settings.seed {
            b = b.seed(seed);
        }
        if let Some(name) = self.settings.name {
            b = b.name(name);
        }
        if let Some(e) = self.settings.ejection {
            b = b.outlier_ejection(e);
        }
        if let Some(epsilon) = self.settings.bounded {
            b = b.bounded_loads(epsilon);
        }
        b.build()
    }

    pub(super) fn make<K, S>(self, members: Vec<(K, S, u32)>) -> Result<Balance<S, K>, ConfigError>
    where
        K: Clone + Eq + Hash + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        let common = Common::new();
        let mut states = HashMap::new();
        let endpoints: Vec<_> = members
            .into_iter()
            .map(|(key, service, weight)| {
                let state = State::new(self.settings.load, &common);
                state.set_weight(weight);
                states.insert(key.clone(), Arc::clone(&state));
                Endpoint {
                    key,
                    service,
                    state,
                    load: self.settings.load,
                }
            })
            .collect();
        let members = Arc::new(Mutex::new(endpoints));
        let source = Arc::clone(&members);
        let balancer = self.balancer(move || source.lock().clone())?;
        Ok(Balance::assemble(
            balancer,
            members,
            Arc::new(Mutex::new(states)),
            self.settings,
            common,
        ))
    }

    /// A balance over `services`, known by their index.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad setting (`max_load(0)`).
    pub fn build<S>(self, services: Vec<S>) -> Result<Balance<S>, ConfigError>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.make(
            services
                .into_iter()
                .enumerate()
                .map(|(i, s)| (i, s, 1))
                .collect(),
        )
    }

    /// A balance over `services` with their weights, known by their index: round robin
    /// becomes smooth weighted round robin, the load-aware policies compare load per unit of
    /// weight, and a member of weight 0 gets nothing (see [`Member::weight`](crate::Member::weight)).
    /// [`Balance::set_weight`] changes a weight later.
    ///
    /// ```
    /// use croupier::{balance::Balance, Policy};
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// let backend = |name: &'static str| service_fn(move |()| async move { Ok::<_, tower::BoxError>(name) });
    /// let mut balance = Balance::builder()
    ///     .policy(Policy::RoundRobin)
    ///     .build_weighted(vec![(backend("big"), 3), (backend("small"), 1)])?;
    /// let mut answers = Vec::new();
    /// for _ in 0..4 {
    ///     answers.push(balance.ready().await?.call(()).await?);
    /// }
    /// assert_eq!(answers, ["big", "big", "small", "big"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad setting (`max_load(0)`).
    pub fn build_weighted<S>(self, services: Vec<(S, u32)>) -> Result<Balance<S>, ConfigError>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.make(
            services
                .into_iter()
                .enumerate()
                .map(|(i, (s, w))| (i, s, w))
                .collect(),
        )
    }

    /// A balance whose members come from a croupier [`Source`], read again on every
    /// [`refresh`](Balance::refresh) and whenever the balancer's live share falls below its
    /// ratio. Members are known by their index in what the source returns.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad setting.
    pub fn from_source<S>(self, source: impl Source<S>) -> Result<Balance<S>, ConfigError>
    where
        S: Clone + Send + Sync + 'static,
    {
        let common = Common::new();
        let load = self.settings.load;
        let members: Arc<Mutex<Vec<Endpoint<usize, S>>>> = Arc::default();
        let states: Arc<Mutex<HashMap<usize, Arc<State>>>> = Arc::default();
        // The balancer reads the source; what it read becomes the members list, with each
        // index's load state kept.
        let fresh = {
            let (members, states) = (Arc::clone(&members), Arc::clone(&states));
            let common = Arc::clone(&common);
            move || {
                let services = source.members();
                let mut states = states.lock();
                let n = services.len();
                // Indices past the end are removed: forgotten now, or by their last request.
                states.retain(|&key, s| key < n || !s.mark_removed());
                let endpoints: Vec<_> = services
                    .into_iter()
                    .enumerate()
                    .map(|(key, service)| {
                        let state = states
                            .entry(key)
                            .or_insert_with(|| State::new(load, &common));
                        state.restore();
                        Endpoint {
                            key,
                            service,
                            state: Arc::clone(state),
                            load,
                        }
                    })
                    .collect();
                drop(states);
                members.lock().clone_from(&endpoints);
                endpoints
            }
        };
        let balancer = self.balancer(fresh)?;
        Ok(Balance::assemble(
            balancer,
            members,
            states,
            self.settings,
            common,
        ))
    }

    /// A [`BalanceLayer`] that makes a balance with these settings over a `Vec` of services.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad setting, found now rather than when the layer is used.
    pub fn into_layer(self) -> Result<BalanceLayer, ConfigError> {
        self.build::<()>(Vec::new())?;
        Ok(BalanceLayer { builder: self })
    }
}

impl<S> Balance<S> {
    /// A balance over `services` with the default settings: least loaded over peak-EWMA
    /// load (requests in flight weighted by latency).
    ///
    /// # Errors
    ///
    /// None with the default settings; the `Result` is [`BalanceBuilder::build`]'s.
    pub fn new(services: Vec<S>) -> Result<Self, ConfigError>
    where
        S: Clone + Send + Sync + 'static,
    {
        BalanceBuilder::default().build(services)
    }
}

impl Balance<()> {
    /// Starts configuring a balance (the member type comes with
    /// [`build`](BalanceBuilder::build), [`discover`](BalanceBuilder::discover) or
    /// [`from_source`](BalanceBuilder::from_source)).
    pub fn builder() -> BalanceBuilder {
        BalanceBuilder::default()
    }
}

impl<S, K> Balance<S, K> {
    fn assemble(
        balancer: Balancer<Endpoint<K, S>>,
        members: Arc<Mutex<Vec<Endpoint<K, S>>>>,
        states: Arc<Mutex<HashMap<K, Arc<State>>>>,
        settings: Settings,
        common: Arc<Common>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                balancer,
                members,
                states,
                settings,
                common,
                stop: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }
}

impl<S, K> Balance<S, K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    /// The croupier balancer that picks the members.
    #[must_use]
    pub fn balancer(&self) -> &Balancer<impl crate::member::Member> {
        &self.inner.balancer
    }

    /// Reads the members again (from the source, or the current list).
    pub fn refresh(&self) -> usize {
        self.inner.balancer.refresh()
    }

    /// The members' keys and their requests in flight now, in membership order.
    pub fn in_flight(&self) -> Vec<(K, usize)> {
        self.inner
            .members
            .lock()
            .iter()
            .map(|e| (e.key.clone(), e.state.in_flight.load(Relaxed)))
            .collect()
    }

    /// The keys of members removed while requests to them were in flight, with how many are
    /// still in flight, in no particular order: what the balance keeps beyond its members.
    /// A key leaves the list when its last request ends (its load state is then forgotten)
    /// or when it is inserted again (it gets its load state back). It tells when a removed
    /// backend has no more requests and can be shut down.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use croupier::balance::Balance;
    /// use tokio::sync::Semaphore;
    /// use tower::{service_fn, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// // A backend that answers once the gate lets it.
    /// let gate = Arc::new(Semaphore::new(0));
    /// let backend = {
    ///     let gate = Arc::clone(&gate);
    ///     service_fn(move |()| {
    ///         let gate = Arc::clone(&gate);
    ///         async move {
    ///             gate.acquire().await?.forget();
    ///             Ok::<_, tower::BoxError>(())
    ///         }
    ///     })
    /// };
    /// let balance = Balance::new(vec![backend])?;
    /// let request = tokio::spawn(balance.clone().oneshot(()));
    /// while balance.in_flight() != [(0, 1)] {
    ///     tokio::task::yield_now().await;
    /// }
    /// balance.remove(&0);
    /// assert_eq!(balance.removed_in_flight(), [(0, 1)]);
    /// gate.add_permits(1);
    /// request.await??;
    /// assert!(balance.removed_in_flight().is_empty(), "its last request has ended");
    /// # Ok(()) }
    /// ```
    pub fn removed_in_flight(&self) -> Vec<(K, usize)> {
        let members: HashSet<K> = self
            .inner
            .members
            .lock()
            .iter()
            .map(|e| e.key.clone())
            .collect();
        self.inner
            .states
            .lock()
            .iter()
            .filter(|(key, _)| !members.contains(*key))
            .map(|(key, state)| (key.clone(), state.in_flight.load(Relaxed)))
            .collect()
    }

    /// Adds `service` under `key`, or replaces the service of a member of that key (keeping
    /// its load state: requests in flight, latency estimate, weight). A new member has
    /// weight 1.
    pub fn insert(&self, key: K, service: S) {
        self.put(key, service, None);
    }

    /// Adds `service` under `key` with `weight`, or replaces the service and the weight of a
    /// member of that key (keeping its requests in flight and latency estimate).
    pub fn insert_weighted(&self, key: K, service: S, weight: u32) {
        self.put(key, service, Some(weight));
    }

    /// Sets the weight of the member of `key` (0: it gets nothing until its weight rises);
    /// `false` if no member has that key.
    ///
    /// ```
    /// use croupier::{balance::Balance, Member, Policy};
    /// use tower::service_fn;
    ///
    /// let backends: Vec<_> = (0..2)
    ///     .map(|i| service_fn(move |()| async move { Ok::<_, tower::BoxError>(i) }))
    ///     .collect();
    /// let balance = Balance::builder().policy(Policy::RoundRobin).build(backends)?;
    /// assert!(balance.set_weight(&0, 0));
    /// assert!(!balance.set_weight(&7, 1), "no member has key 7");
    /// for _ in 0..4 {
    ///     assert_eq!(balance.balancer().pick()?.weight(), 1, "member 0 gets nothing");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_weight(&self, key: &K, weight: u32) -> bool {
        let inner = &self.inner;
        let found = inner
            .members
            .lock()
            .iter()
            .find(|e| &e.key == key)
            .map(|e| e.state.set_weight(weight))
            .is_some();
        if found {
            inner.balancer.refresh();
        }
        found
    }

    fn put(&self, key: K, service: S, weight: Option<u32>) {
        let inner = &self.inner;
        let state = {
            let mut states = inner.states.lock();
            let state = states
                .entry(key.clone())
                .or_insert_with(|| State::new(inner.settings.load, &inner.common));
            state.restore();
            Arc::clone(state)
        };
        if let Some(w) = weight {
            state.set_weight(w);
        }
        {
            let mut members = inner.members.lock();
            let endpoint = Endpoint {
                key: key.clone(),
                service,
                state,
                load: inner.settings.load,
            };
            match members.iter_mut().find(|e| e.key == key) {
                Some(slot) => *slot = endpoint,
                None => members.push(endpoint),
            }
        }
        inner.balancer.refresh();
    }

    /// Removes the member of `key`. Its load state is kept while requests to it are in
    /// flight, so that it comes back with it if the key returns meanwhile, and forgotten when
    /// the last of them ends (see [`removed_in_flight`](Balance::removed_in_flight)).
    pub fn remove(&self, key: &K) {
        let inner = &self.inner;
        inner.members.lock().retain(|e| &e.key != key);
        {
            let mut states = inner.states.lock();
            if states.get(key).is_some_and(|s| s.mark_removed()) {
                states.remove(key);
            }
        }
        inner.balancer.refresh();
    }

    pub(super) fn stop_token(&self) -> tokio_util::sync::CancellationToken {
        self.inner.stop.clone()
    }

    pub(super) fn downgrade(&self) -> std::sync::Weak<Inner<S, K>> {
        Arc::downgrade(&self.inner)
    }

    pub(super) fn upgrade(weak: &std::sync::Weak<Inner<S, K>>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }
}

/// The load state kept by key: the members', and that of removed members with requests in
/// flight.
type States<K> = Mutex<HashMap<K, Arc<State>>>;

/// Counts a request in flight from the pick until it is answered or dropped. The last to end
/// for a member whose key was removed forgets the member's load state.
struct InFlight<'a, K: Eq + Hash> {
    state: &'a Arc<State>,
    key: &'a K,
    states: &'a States<K>,
}

impl<'a, K: Eq + Hash> InFlight<'a, K> {
    fn new(state: &'a Arc<State>, key: &'a K, states: &'a States<K>) -> Self {
        state.in_flight.fetch_add(1, Relaxed);
        Self { state, key, states }
    }
}

impl<K: Eq + Hash> Drop for InFlight<'_, K> {
    fn drop(&mut self) {
        if self.state.end_request() {
            forget(&mut self.states.lock(), self.key, self.state);
        }
    }
}

/// Forgets `state`, kept under `key` for a removed member, if it is still the one kept there
/// (not a newer member's of the same key), its key is still removed and no request to it is
/// in flight.
fn forget<K: Eq + Hash>(states: &mut HashMap<K, Arc<State>>, key: &K, state: &Arc<State>) {
    if states
        .get(key)
        .is_some_and(|kept| Arc::ptr_eq(kept, state) && kept.is_forgettable())
    {
        states.remove(key);
    }
}

impl<S, K> Inner<S, K>
where
    K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
    S: Clone + Send + Sync + 'static,
{
    /// Puts members whose cooldown is over back in rotation.
    fn readmit_due(&self) {
        if !self.common.any_out() {
            return;
        }
        let mut any = false;
        for e in self.members.lock().iter() {
            any |= e.state.readmit_if_due();
        }
        if any {
            self.balancer.refresh();
        }
    }

    /// Sends `req` to a member: the one `key` (a hash) has affinity with, if any.
    async fn call<Req>(&self, req: Req, key: Option<u64>) -> Result<S::Response, BoxError>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        self.readmit_due();
        let tries = self.settings.tries;
        for _ in 0..tries {
            let picked = match key {
                Some(hash) => self.balancer.pick_for(&hash),
                None => self.balancer.pick(),
            };
            let (ticket, endpoint) = match picked {
                Ok(picked) => (picked.ticket(), picked.cloned()),
                Err(e) => return Err(BalanceError::Refused(e).into()),
            };
            let Endpoint {
                key,
                mut service,
                state,
                ..
            } = endpoint;
            let counted = InFlight::new(&state, &key, &self.states);
            let ready: Result<(), BoxError> = service.ready().await.map(|_| ()).map_err(Into::into);
            match ready {
                Ok(()) => {
                    let response = match self.settings.load {
                        Load::InFlight => service.call(req).await,
                        Load::PeakEwma { decay, .. } => {
                            let start = Instant::now();
                            let response = service.call(req).await;
                            state.observe(start.elapsed(), decay);
                            response
                        }
                    };
                    state.responded(response.is_ok());
                    drop(counted);
                    if self.settings.ejection.is_some() {
                        let outcome = match &response {
                            Ok(_) => Outcome::Success,
                            Err(_) => Outcome::Failure,
                        };
                        self.balancer.report(ticket, outcome);
                    }
                    return response.map_err(Into::into);
                }
                Err(e) => {
                    tracing::warn!(member = ?key, error = %e, "croupier balance: a member failed poll_ready; out of rotation for its cooldown");
                    state.eject(self.settings.cooldown);
                    drop(counted);
                }
            }
        }
        Err(BalanceError::NoReadyMember { tries }.into())
    }
}

impl<S, K, Req> Service<Req> for Balance<S, K>
where
    K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Responding<S::Response>;

    /// Always ready: the member is picked, and waited for, in `call`.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.respond(req, None)
    }
}

/// The future of one request through a [`Balance`]: boxed, as the member is picked and
/// waited for inside it.
type Responding<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S, K> Balance<S, K> {
    /// Sends `req` to the member the policy picks, or to the one `key` (a hash) has affinity
    /// with: what both `Service` impls' `call` does.
    fn respond<Req>(&self, req: Req, key: Option<u64>) -> Responding<S::Response>
    where
        K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        S::Response: Send + 'static,
        Req: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.call(req, key).await })
    }
}

impl<S, K> Balance<S, K>
where
    K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
{
    /// Sends `req` to the member `key` has affinity with ([`Balancer::pick_for`]): the same
    /// key goes to the same member while it is usable, and about 1/n of keys move when a
    /// member comes or goes. Members are placed by their keys (`K`), so a member that leaves
    /// and returns under its key gets its requests back. With
    /// [`bounded_loads`](BalanceBuilder::bounded_loads) (or
    /// [`max_load`](BalanceBuilder::max_load)), a key whose member is too busy goes to the
    /// next member of its order. A member that fails `poll_ready` is passed over as by
    /// `call`.
    ///
    /// ```
    /// use croupier::balance::Balance;
    /// use tower::service_fn;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// let backends: Vec<_> = (0..4)
    ///     .map(|i| service_fn(move |()| async move { Ok::<_, tower::BoxError>(i) }))
    ///     .collect();
    /// let balance = Balance::new(backends)?;
    /// let first = balance.call_for("user-42", ()).await?;
    /// for _ in 0..10 {
    ///     assert_eq!(balance.call_for("user-42", ()).await?, first);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Service::call`]: a [`BalanceError`] or the member's error, boxed.
    pub fn call_for<Q, Req>(
        &self,
        key: &Q,
        req: Req,
    ) -> impl Future<Output = Result<S::Response, BoxError>> + Send + 'static
    where
        Q: Hash + ?Sized,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        S::Response: Send + 'static,
        Req: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let hash = hash_key(key);
        async move { inner.call(req, Some(hash)).await }
    }

    /// This balance as a `Service` that sends each request to the member its key has
    /// affinity with, as [`call_for`](Balance::call_for) does; `key` reads the key from the
    /// request (`None`: no affinity, the policy picks). Shares the members and their load
    /// with `self`.
    ///
    /// ```
    /// use croupier::balance::Balance;
    /// use tower::{service_fn, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
    /// let backends: Vec<_> = (0..4)
    ///     .map(|i| service_fn(move |user: String| async move { Ok::<_, tower::BoxError>((user, i)) }))
    ///     .collect();
    /// let mut sticky = Balance::new(backends)?.with_affinity(|user: &String| Some(user.clone()));
    /// let (_, first) = sticky.ready().await?.call("ada".to_owned()).await?;
    /// for _ in 0..10 {
    ///     assert_eq!(sticky.ready().await?.call("ada".to_owned()).await?.1, first);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn with_affinity<F>(self, key: F) -> AffinityBalance<S, K, F> {
        AffinityBalance { balance: self, key }
    }
}

/// A [`Balance`] that sends each request to the member its key has affinity with; made by
/// [`Balance::with_affinity`].
pub struct AffinityBalance<S, K, F> {
    balance: Balance<S, K>,
    key: F,
}

impl<S, K, F: Clone> Clone for AffinityBalance<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            balance: self.balance.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, K, F> AffinityBalance<S, K, F> {
    /// The balance the requests go through.
    #[must_use]
    pub fn balance(&self) -> &Balance<S, K> {
        &self.balance
    }
}

impl<S, K, F, H, Req> Service<Req> for AffinityBalance<S, K, F>
where
    K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    S::Response: Send + 'static,
    Req: Send + 'static,
    F: Fn(&Req) -> Option<H>,
    H: Hash,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Responding<S::Response>;

    /// Always ready: the member is picked, and waited for, in `call`.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let hash = (self.key)(&req).map(|k| hash_key(&k));
        self.balance.respond(req, hash)
    }
}

impl<S, K: fmt::Debug, F> fmt::Debug for AffinityBalance<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AffinityBalance")
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}

impl<S, K: fmt::Debug> fmt::Debug for Balance<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("members", &self.inner.members.lock().len())
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A tower [`Layer`] that balances over a `Vec` of services with fixed settings; made by
/// [`BalanceBuilder::into_layer`].
#[derive(Debug, Clone, Copy)]
pub struct BalanceLayer {
    builder: BalanceBuilder,
}

impl<S> Layer<Vec<S>> for BalanceLayer
where
    S: Clone + Send + Sync + 'static,
{
    type Service = Balance<S>;

    fn layer(&self, services: Vec<S>) -> Balance<S> {
        self.builder
            .build(services)
            .expect("the settings were checked by BalanceBuilder::into_layer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to a removed member that ends after its key came back under a new state
    /// (the old state forgotten, then a new member inserted) leaves the new state alone.
    #[test]
    fn forgetting_an_old_state_leaves_a_newer_one_of_the_same_key() {
        let common = Common::new();
        let (old, new) = (
            State::new(Load::InFlight, &common),
            State::new(Load::InFlight, &common),
        );
        assert!(old.mark_removed(), "no request in flight");
        let mut states = HashMap::from([("k", Arc::clone(&new))]);
        forget(&mut states, &"k", &old);
        assert!(states.contains_key("k"), "the newer state was kept");
        // The same, once the newer state's key is removed too: only it is forgotten, by
        // itself.
        assert!(new.mark_removed());
        forget(&mut states, &"k", &old);
        assert!(states.contains_key("k"));
        forget(&mut states, &"k", &new);
        assert!(states.is_empty());
    }
}
