//! The cluster's optional shared secret: sent in each request's metadata and compared in
//! constant time. A node refuses to run without TLS anywhere but loopback, so a cookie never
//! crosses a network in the clear.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{metadata::MetadataValue, Request};

/// The metadata key the cookie travels under (binary metadata: base64 on the wire).
pub(crate) const COOKIE_KEY: &str = "croupier-cookie-bin";

/// A shared secret that nodes of one cluster present to each other.
///
/// Each request a master makes carries it; a worker node compares it in constant time and
/// refuses a request without it, with another, or with one when it has none itself. It is
/// sent, so it is allowed over plaintext on loopback only: anywhere else the nodes need
/// [`Tls`](super::tls::Tls), which also authenticates both ends by certificate.
///
/// `Debug` does not print it.
#[derive(Clone)]
pub struct Cookie(Arc<[u8]>);

impl Cookie {
    /// A cookie from any bytes; use at least 16 random ones.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(secret.as_ref().into())
    }

    /// Whether `presented` is this cookie: compared in constant time.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cookie(..)")
    }
}

impl From<&str> for Cookie {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Cookie {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Puts `cookie`, if any, in a request's metadata.
pub(crate) fn present<T>(cookie: Option<&Cookie>, req: &mut Request<T>) {
    if let Some(c) = cookie {
        req.metadata_mut()
            .insert_bin(COOKIE_KEY, MetadataValue::from_bytes(&c.0));
    }
}
