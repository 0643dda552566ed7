//! Named handlers: what a master can ask a worker node to run (Cloud Haskell's RemoteTable).

use std::{collections::HashMap, fmt, future::Future, marker::PhantomData, pin::Pin, sync::Arc};

use serde::{de::DeserializeOwned, Serialize};

use super::error::Cause;

/// A typed name for remote work, declared once in a crate both sides share.
///
/// Rust cannot ship closures between processes, so a worker node registers a function under
/// the handler's name at start, and a master calls it by that name; the types keep both
/// sides' arguments and results in step. Only registered names can be called.
///
/// # Example
///
/// ```
/// use croupier::remote::Handler;
///
/// /// Resizes an image to the given width; returns the new size in bytes.
/// pub const RESIZE: Handler<(Vec<u8>, u32), usize> = Handler::new("img.resize");
/// assert_eq!(RESIZE.name(), "img.resize");
/// ```
pub struct Handler<A, O> {
    name: &'static str,
    _types: PhantomData<fn(A) -> O>,
}

impl<A, O> Handler<A, O> {
    /// The handler called `name`.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// Its name on the wire.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<A, O> Clone for Handler<A, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, O> Copy for Handler<A, O> {}

impl<A, O> fmt::Debug for Handler<A, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handler({:?})", self.name)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A registered handler with its types erased: bytes in, bytes out.
pub(crate) type Erased = Arc<dyn Fn(Vec<u8>) -> BoxFuture<Result<Vec<u8>, JobError>> + Send + Sync>;

/// Why a job gave no result, as the node answers it.
#[derive(Debug)]
pub(crate) enum JobError {
    /// The arguments did not decode as the handler's type.
    Decode(String),
    /// The result could not be encoded.
    Failed(String),
    /// The caller went away (or its deadline passed) before the job finished.
    Cancelled,
}

pub(crate) fn erase<A, O, F, Fut>(f: F) -> Erased
where
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |bytes: Vec<u8>| {
        let f = Arc::clone(&f);
        Box::pin(async move {
            let args: A = decode_exact(&bytes).map_err(|e| JobError::Decode(e.to_string()))?;
            let out = f(args).await;
            postcard::to_stdvec(&out)
                .map_err(|e| JobError::Failed(format!("encoding the result: {e}")))
        })
    })
}

/// [`erase`] for a blocking function: it runs on tokio's blocking pool, so a long computation
/// holds a blocking thread instead of one of the runtime's. A panic in it fails its call.
pub(crate) fn erase_blocking<A, O, F>(f: F) -> Erased
where
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(A) -> O + Send + Sync + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |bytes: Vec<u8>| {
        let f = Arc::clone(&f);
        Box::pin(async move {
            let args: A = decode_exact(&bytes).map_err(|e| JobError::Decode(e.to_string()))?;
            let out = tokio::task::spawn_blocking(move || f(args))
                .await
                .map_err(|e| JobError::Failed(format!("the handler panicked: {e}")))?;
            postcard::to_stdvec(&out)
                .map_err(|e| JobError::Failed(format!("encoding the result: {e}")))
        })
    })
}

/// The handlers a node serves, by name.
pub(crate) type Registry = HashMap<&'static str, Erased>;

/// Decodes a whole postcard value: bytes left over mean the two sides disagree on the type
/// (postcard alone would stop where the type ends, reading a `String` as a `u64` as its
/// length).
pub(crate) fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Cause> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| Cause::new(e.to_string(), e))?;
    if !rest.is_empty() {
        return Err(Cause::from(format!(
            "{} bytes left over: the two sides disagree on the type",
            rest.len()
        )));
    }
    Ok(value)
}
