//! The wire protocol: a fixed preamble, then length-delimited postcard frames.
//!
//! ```text
//! connector                         listener
//!   preamble "CROUPIER" + version ─►
//!                                 ◄─ preamble
//!   Hello { name, mode, tags, nonce_c, heartbeat } ─►
//!                  ◄─ HelloAck { name, mode, tags, pool size, nonce_s, proof_s, heartbeat }
//!   Proof { proof_c } ─►
//!                                 ◄─ Load (the first report: the connection is up)
//!   Call / Cancel / Ping / Goodbye ─►
//!                                 ◄─ Reply / Load / Goodbye
//! ```
//!
//! Each side announces its heartbeat (how often, at least, it sends a frame: pings one way,
//! load reports the other) and is marked down after three of them pass in silence.
//!
//! The preamble is raw bytes so that a peer of another protocol version is told apart from one
//! that is not croupier at all, whatever later versions do to the frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::Mode;

/// The protocol version this build speaks.
pub(crate) const VERSION: u32 = 2;

/// What a node announces as its heartbeat: `every` in ms, as carried in the hello frames.
pub(crate) fn heartbeat_ms(every: Duration) -> u64 {
    u64::try_from(every.as_millis()).unwrap_or(u64::MAX)
}

/// How long a peer that announced a heartbeat of `heartbeat_ms` may stay silent before it is
/// marked down: three of its heartbeats, the announced one held between 1 ms and 10 minutes.
pub(crate) fn silence_limit(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(heartbeat_ms.clamp(1, 600_000)) * 3
}

/// The first eight bytes of every croupier connection, each way.
pub(crate) const MAGIC: &[u8; 8] = b"CROUPIER";

/// The preamble: magic then the version, big-endian.
pub(crate) fn preamble() -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.freeze()
}

/// What a received preamble says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Preamble {
    Ok,
    NotCroupier,
    Incompatible(u32),
}

pub(crate) fn check_preamble(frame: &[u8]) -> Preamble {
    match frame {
        [magic @ .., a, b, c, d] if magic == MAGIC => {
            let theirs = u32::from_be_bytes([*a, *b, *c, *d]);
            if theirs == VERSION {
                Preamble::Ok
            } else {
                Preamble::Incompatible(theirs)
            }
        }
        _ => Preamble::NotCroupier,
    }
}

/// Why the handshake refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    Unauthenticated,
    Rejected(String),
}

/// Why a call failed on the serving side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireError {
    UnknownHandler(String),
    Decode(String),
    Failed(String),
}

/// Every frame after the preamble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Frame {
    Hello {
        name: String,
        mode: Mode,
        tags: Vec<String>,
        nonce: [u8; 32],
        has_cookie: bool,
        /// How often, at least, the connector sends a frame (its pings), in ms.
        heartbeat_ms: u64,
    },
    HelloAck {
        name: String,
        mode: Mode,
        tags: Vec<String>,
        pool_size: u32,
        nonce: [u8; 32],
        proof: Option<[u8; 32]>,
        refusal: Option<Refusal>,
        /// How often, at least, the listener sends a frame (its load reports), in ms.
        heartbeat_ms: u64,
    },
    Proof {
        proof: Option<[u8; 32]>,
    },
    Call {
        id: u64,
        handler: String,
        args: Vec<u8>,
    },
    Reply {
        id: u64,
        result: Result<Vec<u8>, WireError>,
    },
    Cancel {
        id: u64,
    },
    /// The serving node's load: the sum of its pool's run-queue lengths per worker, in
    /// thousandths.
    Load {
        milli: u64,
    },
    Ping,
    Goodbye {
        terminate: bool,
    },
}

/// Why a frame could not be read: not a frame of this protocol (garbage, truncated, or an
/// unknown kind).
#[derive(Debug)]
pub(crate) struct FrameError(postcard::Error);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}

impl Frame {
    pub(crate) fn encode(&self) -> Bytes {
        postcard::to_stdvec(self)
            .expect("frames hold only strings, bytes and numbers, which always encode")
            .into()
    }

    /// Decodes one frame; never panics, whatever the bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        postcard::from_bytes(bytes).map_err(FrameError)
    }
}

/// Decodes a handler's arguments or result, all of the bytes: postcard alone stops where the
/// type ends, so a `String` read as a `u64` would answer its length. Bytes left over mean the
/// two sides disagree on the type.
pub(crate) fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes left over: the two sides disagree on the type",
            rest.len()
        ));
    }
    Ok(value)
}

/// A TCP stream cut into length-delimited frames of at most `max_frame` bytes.
pub(crate) type Transport = Framed<TcpStream, LengthDelimitedCodec>;

pub(crate) fn transport(stream: TcpStream, max_frame: usize) -> Transport {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec();
    Framed::new(stream, codec)
}

/// Fuzz entry point for the decoder: exposed (hidden) so that property tests outside the
/// crate can throw arbitrary bytes at it.
#[doc(hidden)]
pub fn decode_any(bytes: &[u8]) -> bool {
    Frame::decode(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame of every kind, with fields that are not all defaults.
    fn every_kind() -> Vec<Frame> {
        let tags = vec!["gpu".to_string(), "eu-west".to_string()];
        vec![
            Frame::Hello {
                name: "master".into(),
                mode: Mode::Master,
                tags: tags.clone(),
                nonce: [7; 32],
                has_cookie: true,
                heartbeat_ms: 1_000,
            },
            Frame::HelloAck {
                name: "w1".into(),
                mode: Mode::Worker,
                tags,
                pool_size: 8,
                nonce: [9; 32],
                proof: Some([1; 32]),
                refusal: Some(Refusal::Rejected("name taken".into())),
                heartbeat_ms: 100,
            },
            Frame::Proof { proof: None },
            Frame::Call {
                id: u64::MAX,
                handler: "resize".into(),
                args: vec![0, 1, 2, 255],
            },
            Frame::Reply {
                id: 3,
                result: Ok(vec![42; 17]),
            },
            Frame::Reply {
                id: 4,
                result: Err(WireError::UnknownHandler("nope".into())),
            },
            Frame::Cancel { id: 5 },
            Frame::Load { milli: 12_345 },
            Frame::Ping,
            Frame::Goodbye { terminate: true },
        ]
    }

    #[test]
    fn every_frame_kind_survives_an_encode_decode_round_trip() {
        for frame in every_kind() {
            let bytes = frame.encode();
            let back = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{frame:?}: {e}"));
            assert_eq!(back, frame);
        }
    }

    /// Mutations of real frames: every strict prefix is refused, and every single-byte
    /// change decodes to something or is refused, never a panic.
    #[test]
    fn truncated_and_mutated_real_frames_are_refused_or_decoded_never_panic() {
        for frame in every_kind() {
            let bytes = frame.encode().to_vec();
            for cut in 0..bytes.len() {
                assert!(
                    Frame::decode(&bytes[..cut]).is_err(),
                    "{frame:?} cut to {cut} of {} bytes decoded",
                    bytes.len()
                );
            }
            for i in 0..bytes.len() {
                for flip in [0x01_u8, 0x80, 0xff] {
                    let mut mutated = bytes.clone();
                    mutated[i] ^= flip;
                    let _ = Frame::decode(&mutated);
                }
            }
        }
    }
}
