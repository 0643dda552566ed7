//! How a master finds worker nodes: a static list, a hosts file, DNS (re-resolved, as a
//! Kubernetes headless service lists its pods), or mDNS on the local network.

use std::{
    collections::BTreeSet,
    future::Future,
    io,
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use tokio::sync::mpsc;

use crate::remote::error::HostsError;

/// A worker node appearing or disappearing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// A node to connect to, with the tags the source knows it by.
    Added {
        /// Where it listens.
        addr: SocketAddr,
        /// Tags from the source (a hosts file's, say); the node's own come with its hello.
        tags: Vec<String>,
    },
    /// A node that went away: disconnect and stop retrying it.
    Removed {
        /// Where it listened.
        addr: SocketAddr,
    },
}

/// A source of node added/removed events for a master
/// ([`NodeBuilder::discovery`](crate::remote::NodeBuilder::discovery)).
pub trait Discovery: Send + 'static {
    /// Starts discovering; events arrive on the returned channel until it closes.
    ///
    /// # Errors
    ///
    /// A message saying why discovery could not start.
    fn start(self: Box<Self>) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, String>;
}

/// A fixed list of addresses.
///
/// # Example
///
/// ```
/// use croupier::remote::StaticList;
///
/// let list = StaticList::new(["127.0.0.1:7001".parse().unwrap()]);
/// # let _ = list;
/// ```
#[derive(Debug, Clone)]
pub struct StaticList(Vec<SocketAddr>);

impl StaticList {
    /// The nodes at these addresses.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(addrs.into_iter().collect())
    }
}

impl Discovery for StaticList {
    fn start(self: Box<Self>) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        for addr in self.0 {
            let _ = tx.send(DiscoveryEvent::Added {
                addr,
                tags: Vec::new(),
            });
        }
        Ok(rx)
    }
}

/// Nodes listed in a file, one `host:port [tag,tag]` a line, like Erlang's `.hosts.erlang`.
/// Blank lines and lines starting with `#` are skipped.
///
/// # Example
///
/// ```
/// use croupier::remote::HostsFile;
///
/// let hosts = HostsFile::parse("hosts.txt", "# workers\n127.0.0.1:7001 gpu,big\n127.0.0.1:7002\n")?;
/// assert_eq!(hosts.entries().len(), 2);
/// assert_eq!(hosts.entries()[0].1, ["gpu", "big"]);
///
/// let bad = HostsFile::parse("hosts.txt", "127.0.0.1:7001\nnot-an-address\n").unwrap_err();
/// assert!(bad.to_string().starts_with("hosts.txt:2:"));
/// # Ok::<(), croupier::remote::HostsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HostsFile {
    entries: Vec<(SocketAddr, Vec<String>)>,
}

impl HostsFile {
    /// Reads and parses the file.
    ///
    /// # Errors
    ///
    /// [`HostsError::Read`] if the file cannot be read, [`HostsError::Malformed`] naming the
    /// first bad line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, HostsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| HostsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of the file at `path` (named in errors).
    ///
    /// # Errors
    ///
    /// [`HostsError::Malformed`] naming the first bad line.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<Self, HostsError> {
        let path: PathBuf = path.as_ref().to_owned();
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = |reason: String| HostsError::Malformed {
                path: path.clone(),
                line: i + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let host = words.next().unwrap_or_default();
            let addr = host
                .to_socket_addrs()
                .map_err(|e| malformed(format!("{host:?} is not host:port ({e})")))?
                .next()
                .ok_or_else(|| malformed(format!("{host:?} resolves to no address")))?;
            let tags = match words.next() {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|t| {
                        if t.is_empty() {
                            Err(malformed("an empty tag".into()))
                        } else {
                            Ok(t.to_owned())
                        }
                    })
                    .collect::<Result<_, _>>()?,
            };
            if let Some(extra) = words.next() {
                return Err(malformed(format!(
                    "unexpected {extra:?}: tags are one comma-separated word"
                )));
            }
            entries.push((addr, tags));
        }
        Ok(Self { entries })
    }

    /// The nodes listed, with their tags, in file order.
    #[must_use]
    pub fn entries(&self) -> &[(SocketAddr, Vec<String>)] {
        &self.entries
    }
}

impl Discovery for HostsFile {
    fn start(self: Box<Self>) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        for (addr, tags) in self.entries {
            let _ = tx.send(DiscoveryEvent::Added { addr, tags });
        }
        Ok(rx)
    }
}

/// The mDNS service type croupier worker nodes advertise.
pub const MDNS_SERVICE: &str = "_croupier._tcp.local.";

/// Zero-configuration discovery on the local network (SimpleLocalnet's multicast), through
/// the `mdns-sd` crate: finds worker nodes started with
/// [`NodeBuilder::advertise`](crate::remote::NodeBuilder::advertise).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mdns;

impl Discovery for Mdns {
    fn start(self: Box<Self>) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, String> {
        let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
        let events = daemon.browse(MDNS_SERVICE).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut known = MdnsKnown::default();
            loop {
                // The daemon runs until the node stops following (it drops the receiver).
                let event = tokio::select! {
                    () = tx.closed() => break,
                    e = events.recv_async() => match e { Ok(e) => e, Err(_) => break },
                };
                match event {
                    mdns_sd::ServiceEvent::ServiceResolved(info) => {
                        let port = info.get_port();
                        let mut addrs: Vec<SocketAddr> = info
                            .get_addresses()
                            .iter()
                            .map(|ip| SocketAddr::new(ip.to_ip_addr(), port))
                            .collect();
                        // Whatever order the answers came in: IPv4 first, then by address.
                        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
                        let tags = info
                            .get_property_val_str("tags")
                            .map(|t| {
                                t.split(',')
                                    .filter(|t| !t.is_empty())
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default();
                        let events = known.resolved(info.get_fullname(), addrs, tags);
                        if events.into_iter().any(|e| tx.send(e).is_err()) {
                            break;
                        }
                    }
                    mdns_sd::ServiceEvent::ServiceRemoved(_, fullname) => {
                        // Anyone on the network can send a goodbye: a node that still
                        // accepts connections at its address is not forgotten for one.
                        let Some(addr) = known.addr_of(&fullname) else {
                            continue;
                        };
                        if still_accepts(addr).await {
                            tracing::warn!(%addr, name = %fullname, "croupier ignored an mDNS goodbye from a node that still answers");
                            continue;
                        }
                        if known
                            .removed(&fullname)
                            .into_iter()
                            .any(|e| tx.send(e).is_err())
                        {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let _ = daemon.shutdown();
        });
        Ok(rx)
    }
}

/// The nodes an [`Mdns`] discovery has announced, by service instance name, with the
/// address it announced for each.
#[derive(Debug, Default)]
struct MdnsKnown(std::collections::HashMap<String, SocketAddr>);

impl MdnsKnown {
    /// A node (re)resolved at `addrs` (sorted, the first used): it is added, and if it was
    /// known at another address, that one is removed.
    fn resolved(
        &mut self,
        name: &str,
        addrs: Vec<SocketAddr>,
        tags: Vec<String>,
    ) -> Vec<DiscoveryEvent> {
        let Some(&addr) = addrs.first() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        match self.0.insert(name.to_owned(), addr) {
            Some(old) if old == addr => return events,
            Some(old) => events.push(DiscoveryEvent::Removed { addr: old }),
            None => {}
        }
        events.push(DiscoveryEvent::Added { addr, tags });
        events
    }

    /// The address announced for `name`.
    fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.0.get(name).copied()
    }

    /// A node said goodbye: it is removed.
    fn removed(&mut self, name: &str) -> Vec<DiscoveryEvent> {
        self.0
            .remove(name)
            .map(|addr| DiscoveryEvent::Removed { addr })
            .into_iter()
            .collect()
    }
}

/// Whether something still accepts TCP connections at `addr` (within a second).
async fn still_accepts(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// What a [`Dns`] discovery resolves its name with.
pub type Resolve = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync,
>;

/// Worker nodes behind a DNS name, re-resolved periodically: every address the name
/// resolves to is a node; an address that stops resolving is removed. This is how a
/// Kubernetes headless service lists its pods.
///
/// A failed lookup changes nothing (the nodes known stay), so a DNS hiccup does not drop the
/// cluster.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use croupier::remote::Dns;
///
/// let workers = Dns::new("croupier-workers.default.svc.cluster.local:7001")
///     .every(Duration::from_secs(10));
/// # let _ = workers;
/// ```
#[derive(Clone)]
pub struct Dns {
    name: String,
    every: Duration,
    resolve: Resolve,
}

impl Dns {
    /// Resolves `host:port` with the system resolver, every 5 s by default.
    pub fn new(host_port: impl Into<String>) -> Self {
        let name: String = host_port.into();
        let query = name.clone();
        Self {
            name,
            every: Duration::from_secs(5),
            resolve: Arc::new(move || {
                let query = query.clone();
                Box::pin(async move { Ok(tokio::net::lookup_host(query).await?.collect()) })
            }),
        }
    }

    /// Resolves with `resolve` instead of the system resolver (a resolver of your own, or a
    /// test's); `name` is only for logs.
    pub fn with_resolver(name: impl Into<String>, resolve: Resolve) -> Self {
        Self {
            name: name.into(),
            every: Duration::from_secs(5),
            resolve,
        }
    }

    /// How often the name is resolved again.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(10));
        self
    }
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("name", &self.name)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Discovery for Dns {
    fn start(self: Box<Self>) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut known = BTreeSet::new();
            let mut tick = tokio::time::interval(self.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    _ = tick.tick() => {}
                }
                let found: BTreeSet<SocketAddr> = match (self.resolve)().await {
                    Ok(addrs) => addrs.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(name = %self.name, error = %e, "croupier could not resolve its workers' name; keeping the nodes known");
                        continue;
                    }
                };
                for &addr in found.difference(&known) {
                    let tags = Vec::new();
                    if tx.send(DiscoveryEvent::Added { addr, tags }).is_err() {
                        return;
                    }
                }
                for &addr in known.difference(&found) {
                    if tx.send(DiscoveryEvent::Removed { addr }).is_err() {
                        return;
                    }
                }
                known = found;
            }
        });
        Ok(rx)
    }
}

/// Advertises a worker node over mDNS; keeps the registration while alive.
pub(crate) fn advertise(
    name: &str,
    addr: SocketAddr,
    tags: &[String],
) -> Result<mdns_sd::ServiceDaemon, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
    let host = format!("{name}.local.");
    let joined = tags.join(",");
    let props = [("tags", joined.as_str())];
    let info = mdns_sd::ServiceInfo::new(
        MDNS_SERVICE,
        name,
        &host,
        addr.ip(),
        addr.port(),
        &props[..],
    )
    .map_err(|e| e.to_string())?;
    daemon.register(info).map_err(|e| e.to_string())?;
    Ok(daemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A node re-resolved at another address: the old one is removed as the new one is
    /// added (the old address stayed for ever); the same address again changes nothing.
    #[test]
    fn an_mdns_re_resolve_removes_the_old_address() {
        let mut known = MdnsKnown::default();
        let added = |port| DiscoveryEvent::Added {
            addr: addr(port),
            tags: Vec::new(),
        };
        assert_eq!(known.resolved("w", vec![addr(1)], Vec::new()), [added(1)]);
        assert_eq!(known.resolved("w", vec![addr(1), addr(9)], Vec::new()), []);
        assert_eq!(
            known.resolved("w", vec![addr(2)], Vec::new()),
            [DiscoveryEvent::Removed { addr: addr(1) }, added(2)]
        );
        assert_eq!(known.resolved("x", Vec::new(), Vec::new()), []);
        assert_eq!(
            known.removed("w"),
            [DiscoveryEvent::Removed { addr: addr(2) }]
        );
        assert_eq!(known.removed("w"), []);
    }

    /// A goodbye is believed only when nothing accepts connections at the node's address.
    #[tokio::test]
    async fn a_goodbye_is_checked_against_the_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        assert!(still_accepts(live).await);
        drop(listener);
        assert!(!still_accepts(live).await);
    }
}
