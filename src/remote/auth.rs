//! Mutual challenge-response over a shared cookie that is never sent: each side proves it
//! knows the cookie with an HMAC-SHA256 over both nonces, both names and the protocol version,
//! checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::wire::VERSION;

/// A shared secret that nodes of one cluster prove they know.
///
/// `Debug` does not print it.
#[derive(Clone)]
pub struct Cookie(Vec<u8>);

impl Cookie {
    /// A cookie from any bytes; use at least 16 random ones.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(secret.as_ref().to_vec())
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

/// Which side a proof is from: the two proofs differ even over the same transcript.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Connector,
    Listener,
}

/// What both sides know once the hellos are exchanged.
pub(crate) struct Transcript<'a> {
    pub(crate) connector_nonce: &'a [u8; 32],
    pub(crate) listener_nonce: &'a [u8; 32],
    pub(crate) connector_name: &'a str,
    pub(crate) listener_name: &'a str,
}

impl Cookie {
    pub(crate) fn prove(&self, side: Side, t: &Transcript<'_>) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(match side {
            Side::Connector => b"croupier connector",
            Side::Listener => b"croupier listener\0",
        });
        mac.update(&VERSION.to_be_bytes());
        mac.update(t.connector_nonce);
        mac.update(t.listener_nonce);
        for name in [t.connector_name, t.listener_name] {
            mac.update(&(name.len() as u64).to_be_bytes());
            mac.update(name.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `proof` is what `side` would send: compared in constant time.
    pub(crate) fn verify(&self, side: Side, t: &Transcript<'_>, proof: &[u8; 32]) -> bool {
        self.prove(side, t).ct_eq(proof).into()
    }
}

/// Checks a proof against an optional cookie: both absent passes, one absent fails.
pub(crate) fn check(
    cookie: Option<&Cookie>,
    side: Side,
    t: &Transcript<'_>,
    proof: Option<&[u8; 32]>,
) -> bool {
    match (cookie, proof) {
        (None, None) => true,
        (Some(c), Some(p)) => c.verify(side, t, p),
        _ => false,
    }
}

/// A fresh random nonce.
pub(crate) fn nonce() -> [u8; 32] {
    let mut n = [0; 32];
    getrandom::fill(&mut n).expect("the operating system's random source is available");
    n
}
