//! The frame decoder survives any input: garbage, truncations, and mutations of real frames.
#![cfg(feature = "remote")]

use croupier::remote::decode_any;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_any(&bytes);
    }

    #[test]
    fn decoding_mutated_frames_never_panics(
        tag in 0_u8..12,
        body in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0_usize..80,
    ) {
        // A valid-looking variant tag followed by arbitrary fields, cut anywhere.
        let mut bytes = vec![tag];
        bytes.extend(body);
        bytes.truncate(cut);
        let _ = decode_any(&bytes);
    }
}

#[test]
fn empty_and_huge_length_fields_are_errors_not_panics() {
    assert!(!decode_any(&[]));
    // A Call with a string length of u64::MAX in varint.
    let mut call = vec![3_u8, 1];
    call.extend([0xff; 10]);
    assert!(!decode_any(&call));
}
