//! Shared fixtures for the remote-layer suites: nodes on 127.0.0.1, bounded waits, and
//! certificates made at run time (nothing committed).
#![allow(dead_code)]

use std::{future::Future, time::Duration};

use croupier::remote::{Handler, Mode, Node, NodeBuilder, Tls};

pub const ECHO: Handler<u64, u64> = Handler::new("test.echo");
pub const WHO: Handler<(), String> = Handler::new("test.who");

/// Everything a test waits for comes within this; a hang fails the test instead.
pub const GUARD: Duration = Duration::from_secs(10);

pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f).await.expect("hung")
}

/// A worker on 127.0.0.1 with ECHO and WHO, a pool of 2, reports every 10..500 ms.
pub fn worker(name: &str) -> NodeBuilder {
    let me = name.to_owned();
    Node::builder(name)
        .mode(Mode::Worker)
        .shutdown_grace(Duration::from_millis(200))
        .listen("127.0.0.1:0")
        .pool_size(2)
        .report_interval(Duration::from_millis(10), Duration::from_millis(500))
        .handle(ECHO, |n| async move { n })
        .handle(WHO, move |()| {
            let me = me.clone();
            async move { me }
        })
}

pub fn master() -> NodeBuilder {
    Node::builder("master")
        .mode(Mode::Master)
        .report_interval(Duration::from_millis(10), Duration::from_millis(500))
        .call_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(2))
}

pub async fn start(b: NodeBuilder) -> Node {
    b.start().await.expect("node starts")
}

/// Waits, by the master's change notifications, until `cond` holds.
pub async fn until(master: &Node, mut cond: impl FnMut(&Node) -> bool) {
    within(async {
        loop {
            let changed = master.changed();
            if cond(master) {
                return;
            }
            changed.await;
        }
    })
    .await;
}

/// A certificate authority made for one test, and the PEM of what it signs.
pub struct Authority {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, in PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A node certificate for 127.0.0.1, ::1 and localhost, usable as server and client.
    pub fn leaf(&self, name: &str) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Node TLS settings with a fresh certificate from this authority.
    pub fn tls(&self, name: &str) -> Tls {
        let leaf = self.leaf(name);
        Tls::from_pem(leaf.cert_pem, leaf.key_pem, &self.ca_pem).unwrap()
    }
}
