//! TLS for a node: its certificate and key, and the certificate authority its peers'
//! certificates must chain to. Both directions are authenticated (mutual TLS): a node refuses
//! a peer that presents no certificate or one from another authority.

use std::{fmt, io, net::SocketAddr, path::Path, sync::Arc};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A node's TLS settings ([`NodeBuilder::tls`](super::NodeBuilder::tls)): its certificate
/// chain and private key (PEM), and the certificate authority (PEM) that every peer's
/// certificate must chain to.
///
/// The same settings serve both sides: as a server the node requires a client certificate
/// signed by the authority; as a client it presents its own and checks the server's against
/// the authority and a name. That name is the address's IP by default (so node certificates
/// carry their IPs as subject alternative names), or one name for the whole cluster set with
/// [`server_name`](Tls::server_name).
///
/// # Example
///
/// ```no_run
/// use croupier::remote::{Mode, Node, Tls};
///
/// # #[allow(dead_code)] async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = Tls::from_dir("certs")?.server_name("croupier.internal");
/// let worker = Node::builder("w1")
///     .mode(Mode::Worker)
///     .listen("0.0.0.0:7001")
///     .tls(tls)
///     .start()
///     .await?;
/// # let _ = worker; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    cert_pem: Arc<[u8]>,
    key_pem: Arc<[u8]>,
    ca_pem: Arc<[u8]>,
    server_name: Option<String>,
}

impl Tls {
    /// Settings from PEM text: the node's certificate chain, its private key, and the
    /// authority's certificate.
    ///
    /// # Errors
    ///
    /// An `InvalidData` error naming what could not be read.
    pub fn from_pem(
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        ca: impl AsRef<[u8]>,
    ) -> io::Result<Self> {
        let tls = Self {
            cert_pem: cert_chain.as_ref().into(),
            key_pem: key.as_ref().into(),
            ca_pem: ca.as_ref().into(),
            server_name: None,
        };
        // Refuse bad PEM now, not at the first connection.
        tls.server_config()?;
        Ok(tls)
    }

    /// Settings from a folder holding `node.pem` (certificate chain), `node.key` (private key)
    /// and `ca.pem` (the authority), as the `cluster` example's `certs` command writes them.
    ///
    /// # Errors
    ///
    /// The file that could not be read, or what in it is not valid.
    pub fn from_dir(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        };
        Self::from_pem(read("node.pem")?, read("node.key")?, read("ca.pem")?)
    }

    /// The name a node checks servers' certificates against, for every server; by default the
    /// IP address connected to.
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    fn certs(&self) -> io::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the node's certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("the node's certificate chain holds no certificate"));
        }
        Ok(certs)
    }

    /// The server side: our certificate, and client certificates required from the authority.
    pub(crate) fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| invalid(format!("the node's private key: {e}")))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let ca = ca.map_err(|e| invalid(format!("the authority's certificate: {e}")))?;
            roots
                .add(ca)
                .map_err(|e| invalid(format!("the authority's certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("the authority's PEM holds no certificate"));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| invalid(format!("the authority's certificate: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.certs()?, key)
            .map_err(|e| invalid(format!("the node's certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The client side, for a connection to `addr`.
    pub(crate) fn client_config(&self, addr: SocketAddr) -> ClientTlsConfig {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(name)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}
