//! The cookie check on each request, which also authenticates the connection it came on.

use tonic::{service::Interceptor, Request, Status};

use super::listener::ConnInfo;
use crate::remote::auth::{Cookie, COOKIE_KEY};

/// Checks each request's cookie before its body is read: both absent passes, one absent or a
/// different one is `UNAUTHENTICATED`.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) cookie: Option<Cookie>,
}

impl Interceptor for Gate {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let presented = req
            .metadata()
            .get_bin(COOKIE_KEY)
            .map(|v| v.to_bytes().map(|b| b.to_vec()));
        let ok = match (&self.cookie, presented) {
            (None, None) => true,
            (Some(c), Some(Ok(p))) => c.matches(&p),
            _ => false,
        };
        if ok {
            // A connection that presented the node's cookie is authenticated: it may stay.
            if self.cookie.is_some() {
                if let Some(conn) = req.extensions().get::<ConnInfo>() {
                    conn.state.authenticate();
                }
            }
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "the cluster cookie is missing or wrong (or this node has none)",
            ))
        }
    }
}
