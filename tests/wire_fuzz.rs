//! The call decoder (a croupier.v1 `InvokeRequest`, protobuf) survives any input: garbage,
//! truncations, and mutations of well-formed prefixes.
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
        // A valid-looking field key followed by arbitrary bytes, cut anywhere.
        let mut bytes = vec![tag];
        bytes.extend(body);
        bytes.truncate(cut);
        let _ = decode_any(&bytes);
    }
}

#[test]
fn empty_and_huge_length_fields_are_errors_not_panics() {
    // An empty message is a valid protobuf message (every field at its default).
    assert!(decode_any(&[]));
    // The handler name (field 1, length-delimited) with a length of u64::MAX in varint.
    let mut call = vec![0x0a_u8];
    call.extend([0xff; 9]);
    call.push(0x01);
    assert!(!decode_any(&call));
    // A length longer than what follows.
    assert!(!decode_any(&[0x0a, 0x05, b'a']));
    // A well-formed one.
    assert!(decode_any(&[0x0a, 0x01, b'a', 0x12, 0x00]));
}
