/// The hand-written encoder must produce exactly what rmp-serde's default (struct as
/// array) serializer produces for `Event`, at every length and integer width boundary.
#[test]
fn hand_encoder_matches_rmp_serde() {
    let lengths = [0usize, 1, 31, 32, 255, 256, 65_535, 65_536];
    let ints = [0u64, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xffff_ffff, 1 << 32, u64::MAX];
    let mut buf = Vec::new();
    for &len in &lengths {
        for (i, &int) in ints.iter().enumerate() {
            let event = Event {
                event_type: "t".repeat(len),
                namespace: "n".repeat(lengths[i % lengths.len()]),
                schema_id: "s".repeat(len / 2),
                schema_version: u32::try_from(int).unwrap_or(u32::MAX),
                aggregate_id: (i % 3 != 0).then_some(int),
                payload: vec![0xab; lengths[(i + len) % lengths.len()]],
            };
            encode_event_into(&event, &mut buf).unwrap();
            let reference = rmp_serde::to_vec(&event).unwrap();
            assert_eq!(buf, reference, "len {len}, int {int}");
            assert_eq!(decode_event(&buf, 0).unwrap(), event);
        }
    }
}

use super::codec::{checked_len, encoded_len};
use super::*;

/// Encodes into a fresh buffer.
fn encode(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    encode_event_into(event, &mut out).unwrap();
    out
}

/// Encodes, decodes, and checks that nothing changed and that rmp-serde reads the same.
fn assert_round_trip(event: &Event) {
    let bytes = encode(event);
    assert_eq!(bytes.len(), encoded_len(event).unwrap(), "length prediction");
    assert_eq!(&decode_event(&bytes, 7).unwrap(), event);
    // The hand-written decoder must agree with rmp-serde's derived decoder on every record
    // the encoder makes, so that the two can never drift apart.
    assert_eq!(&rmp_serde::from_slice::<Event>(&bytes).unwrap(), event);
}

fn sample() -> Event {
    Event::builder("order.placed")
        .namespace("shop")
        .schema("order", 3)
        .aggregate_id(42)
        .payload(vec![0xde, 0xad, 0xbe, 0xef])
        .build()
}

/// Asserts a decode error that carries the record's offset, and returns its reason.
fn decode_error(bytes: &[u8]) -> String {
    match decode_event(bytes, 99) {
        Err(StorageError::Decode { offset: 99, reason }) => reason,
        other => panic!("expected a decode error at offset 99, got {other:?}"),
    }
}

/// A tiny deterministic generator, so the never-panics tests need no extra crate and replay
/// the same inputs on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }
}

#[test]
fn builder_defaults() {
    let event = Event::builder("created").build();
    assert_eq!(event.event_type, "created");
    assert_eq!(event.namespace, "default");
    assert_eq!(event.schema_id, "");
    assert_eq!(event.schema_version, 1);
    assert_eq!(event.aggregate_id, None);
    assert!(event.payload.is_empty());
}

#[test]
fn builder_sets_every_field() {
    let event = sample();
    let expected = Event {
        event_type: "order.placed".to_owned(),
        namespace: "shop".to_owned(),
        schema_id: "order".to_owned(),
        schema_version: 3,
        aggregate_id: Some(42),
        payload: vec![0xde, 0xad, 0xbe, 0xef],
    };
    assert_eq!(event, expected);
}

#[test]
fn round_trip_with_aggregate_id() {
    assert_round_trip(&sample());
}

#[test]
fn round_trip_without_aggregate_id() {
    let mut event = sample();
    event.aggregate_id = None;
    assert_round_trip(&event);
}

#[test]
fn round_trip_empty_strings_and_payload() {
    assert_round_trip(&Event::default());
    assert_round_trip(&Event::builder("").namespace("").build());
}

#[test]
fn round_trip_large_payload() {
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| i.to_le_bytes()[0]).collect();
    let event = Event::builder("blob").payload(payload).build();
    let bytes = encode(&event);
    // A 1 MiB payload needs the bin32 form: marker 0xc6 and a 4-byte length.
    let header_at = bytes.len() - (1 << 20) - 5;
    assert_eq!(bytes[header_at], 0xc6);
    assert_round_trip(&event);
}

#[test]
fn round_trip_unicode() {
    let event = Event::builder("commande.passée ✓")
        .namespace("日本語")
        .schema("схема-🦀", 9)
        .payload("ünïcödé".as_bytes())
        .build();
    assert_round_trip(&event);
}

#[test]
fn round_trip_every_length_and_integer_width() {
    // Each length and value sits on a boundary between two MessagePack forms, so every
    // branch of the decoder and of the length prediction is exercised.
    for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
        let text = "x".repeat(len);
        let event = Event::builder(text.clone())
            .namespace(text.clone())
            .schema(text, 0)
            .payload(vec![7; len])
            .build();
        assert_round_trip(&event);
    }
    let versions = [0, 127, 128, 255, 256, 65_535, 65_536, u32::MAX];
    for version in versions {
        assert_round_trip(&Event::builder("v").schema("s", version).build());
    }
    let ids = [0, 127, 128, 255, 256, 65_535, 65_536, u64::from(u32::MAX), 1 << 32, u64::MAX];
    for id in ids {
        assert_round_trip(&Event::builder("a").aggregate_id(id).build());
    }
}

#[test]
fn exact_byte_layout_of_small_event() {
    let event = Event {
        event_type: "ab".to_owned(),
        namespace: "n".to_owned(),
        schema_id: String::new(),
        schema_version: 200,
        aggregate_id: Some(5),
        payload: vec![1, 2, 3],
    };
    let expected = [
        0x96, // fixarray of 6
        0xa2, b'a', b'b', // fixstr "ab"
        0xa1, b'n', // fixstr "n"
        0xa0, // fixstr ""
        0xcc, 200,  // uint8 200
        0x05, // positive fixint 5
        0xc4, 3, 1, 2, 3, // bin8 of 3 bytes, not an array of integers
    ];
    assert_eq!(encode(&event), expected);

    let without_aggregate = Event { aggregate_id: None, ..event };
    let bytes = encode(&without_aggregate);
    assert_eq!(bytes[9], 0xc0, "a missing aggregate id is nil");
}

#[test]
fn encode_reuses_the_buffer() {
    let event = sample();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"left over from an earlier record");
    let buffer = out.as_ptr();
    encode_event_into(&event, &mut out).unwrap();
    assert_eq!(out, encode(&event), "the buffer is cleared first");
    assert_eq!(out.as_ptr(), buffer, "enough capacity means no reallocation");
    assert_eq!(out.capacity(), 256);
}

#[test]
fn encode_rejects_lengths_messagepack_cannot_describe() {
    // A real 4 GiB payload is too big for a unit test, so the check is tested directly.
    assert!(checked_len("the payload", usize::try_from(u32::MAX).unwrap()).is_ok());
    let too_long = usize::try_from(u64::from(u32::MAX) + 1).unwrap();
    match checked_len("the payload", too_long) {
        Err(StorageError::Encode { reason }) => assert!(reason.contains("the payload")),
        other => panic!("expected an encode error, got {other:?}"),
    }
}

#[test]
fn decode_rejects_every_truncation() {
    let bytes = encode(&sample());
    for len in 0..bytes.len() {
        let reason = decode_error(&bytes[..len]);
        assert!(reason.contains("ends in the middle"), "cut at {len}: {reason}");
    }
}

#[test]
fn decode_rejects_trailing_bytes() {
    let mut bytes = encode(&sample());
    let end = bytes.len();
    bytes.extend_from_slice(&[0x00, 0xff]);
    let reason = decode_error(&bytes);
    assert!(reason.contains("2 trailing bytes"), "{reason}");
    assert!(reason.contains(&format!("at byte {end}")), "{reason}");
}

#[test]
fn decode_rejects_map_form() {
    // rmp-serde's named form is what a derived decoder would also accept; the record
    // format is the array only.
    let bytes = rmp_serde::to_vec_named(&sample()).unwrap();
    assert_eq!(bytes[0], 0x86, "fixmap of 6");
    assert!(decode_error(&bytes).contains("expected an array"));
}

#[test]
fn decode_rejects_wrong_arity() {
    let event = sample();
    let five = rmp_serde::to_vec(&(
        &event.event_type,
        &event.namespace,
        &event.schema_id,
        event.schema_version,
        event.aggregate_id,
    ))
    .unwrap();
    assert!(decode_error(&five).contains("found 5"));

    let mut eight = encode(&event);
    eight[0] = 0x98;
    eight.extend_from_slice(&[0x01, 0x02]);
    assert!(decode_error(&eight).contains("found 8"));

    // Seven elements hold an aggregate version, which must be an integer, not nil.
    let mut seven = encode(&event);
    seven[0] = 0x97;
    seven.push(0xc0);
    let error = decode_error(&seven);
    assert!(
        error.contains("non-negative integer") || error.contains("without an aggregate id"),
        "{error}"
    );

    // The same arity in the array16 form is accepted, the wrong one still refused.
    let mut wide = vec![0xdc, 0x00, 0x06];
    wide.extend_from_slice(&encode(&event)[1..]);
    assert_eq!(decode_event(&wide, 0).unwrap(), event);
    wide[2] = 0x05;
    assert!(decode_error(&wide).contains("found 5"));
}

#[test]
fn decode_rejects_wrong_types() {
    let event = sample();
    let base = encode(&event);
    // Byte 1 is event_type's fixstr marker; as bin8 of the same bytes it must be refused.
    let mut bin_string = base.clone();
    bin_string.splice(1..2, [0xc4, 12]);
    assert!(decode_error(&bin_string).contains("expected a str"));

    // The payload written as an array of integers, which serde_bytes would accept.
    let as_array = rmp_serde::to_vec(&(
        &event.event_type,
        &event.namespace,
        &event.schema_id,
        event.schema_version,
        event.aggregate_id,
        &event.payload, // A Vec<u8> without serde_bytes is an array of integers.
    ))
    .unwrap();
    assert!(decode_error(&as_array).contains("expected a bin"));

    // A negative schema version, and one that needs more than 32 bits.
    let version_at = 1 + 13 + 5 + 6;
    assert_eq!(base[version_at], 0x03);
    let mut negative = base.clone();
    negative[version_at] = 0xff; // Negative fixint -1.
    assert!(decode_error(&negative).contains("non-negative integer"));
    let mut huge = base.clone();
    huge.splice(version_at..=version_at, [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(decode_error(&huge).contains("32 bits"));

    // A non-negative value in a signed form is still a valid version.
    let mut signed = base.clone();
    signed.splice(version_at..=version_at, [0xd0, 0x03]);
    assert_eq!(decode_event(&signed, 0).unwrap(), event);

    // An aggregate id that is a string.
    let mut string_id = base.clone();
    string_id[version_at + 1] = 0xa0;
    assert!(decode_error(&string_id).contains("non-negative integer"));

    // A string that is not UTF-8.
    let mut bad_utf8 = base;
    bad_utf8[2] = 0xff;
    assert!(decode_error(&bad_utf8).contains("UTF-8"));
}

#[test]
fn decode_never_panics_on_random_bytes() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[0]).collect();
        let _ = decode_event(&bytes, 0);
    }
    // Random bytes rarely get past the first marker, so also mangle valid records, where
    // the interesting branches are.
    let valid = encode(&sample());
    for _ in 0..20_000 {
        let mut bytes = valid.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next().to_le_bytes()[0];
        }
        bytes.truncate(rng.below(bytes.len() + 1));
        let _ = decode_event(&bytes, 0);
    }
}

#[test]
fn decode_does_not_trust_lengths() {
    // A bin32 header that claims 4 GiB on a tiny record must fail, not allocate.
    let mut bytes = encode(&Event::default());
    let payload_at = bytes.len() - 2;
    bytes.truncate(payload_at);
    bytes.extend_from_slice(&[0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    assert!(decode_error(&bytes).contains("ends in the middle"));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: u64,
    customer: String,
    lines: Vec<(String, u32)>,
}

fn order() -> OrderPlaced {
    OrderPlaced {
        order: 17,
        customer: "Ada".to_owned(),
        lines: vec![("tea".to_owned(), 2), ("scone".to_owned(), 1)],
    }
}

#[test]
fn payload_serde_round_trip() {
    let event = Event::builder("order.placed").payload_serde(&order()).unwrap().build();
    assert_eq!(event.payload, encode_payload(&order()).unwrap());
    assert_eq!(event.decode_payload::<OrderPlaced>().unwrap(), order());
    // The whole event round-trips too, and the payload still decodes afterwards.
    let replayed = decode_event(&encode(&event), 0).unwrap();
    assert_eq!(replayed.decode_payload::<OrderPlaced>().unwrap(), order());
}

#[test]
fn payload_structs_are_named_maps() {
    let bytes = encode_payload(&order()).unwrap();
    assert_eq!(bytes[0], 0x83, "fixmap of 3 fields");
    // Positional payloads from other writers still decode.
    let positional = rmp_serde::to_vec(&order()).unwrap();
    let event = Event::builder("t").payload(positional).build();
    assert_eq!(event.decode_payload::<OrderPlaced>().unwrap(), order());
}

#[test]
fn decode_payload_errors() {
    let envelope = EventEnvelope {
        offset: 4096,
        write_timestamp_ms: 1,
        event: Event::builder("t").payload_serde("not an order").unwrap().build(),
        aggregate_version: None,
    };
    assert!(matches!(
        envelope.decode_payload::<OrderPlaced>(),
        Err(StorageError::Decode { offset: 4096, .. })
    ));

    let mut trailing = encode_payload(&5_u32).unwrap();
    trailing.push(0x00);
    let event = Event::builder("t").payload(trailing).build();
    match event.decode_payload::<u32>() {
        Err(StorageError::Decode { offset: 0, reason }) => {
            assert!(reason.contains("1 trailing bytes"), "{reason}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }

    let empty = Event::builder("t").build();
    assert!(empty.decode_payload::<u32>().is_err());
}

proptest::proptest! {
    #[test]
    fn round_trip_any_event(
        event_type in ".{0,40}",
        namespace in ".{0,40}",
        schema_id in ".{0,300}",
        schema_version: u32,
        aggregate_id: Option<u64>,
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
    ) {
        let event = Event {
            event_type, namespace, schema_id, schema_version, aggregate_id, payload,
        };
        assert_round_trip(&event);
    }

    #[test]
    fn decode_any_bytes_without_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
    ) {
        let _ = decode_event(&bytes, 0);
    }
}

#[test]
fn aggregate_versions_are_a_seventh_element_after_an_aggregate_id() {
    use super::{decode_versioned_event, encode_versioned_event_into};
    let event = Event::builder("a").namespace("n").aggregate_id(7).payload(vec![1, 2]).build();
    let mut out = Vec::new();
    encode_versioned_event_into(&event, Some(300), &mut out).unwrap();
    // FORMAT.md 7's example with version 300 (uint 16) after the payload.
    let expected =
        [0x97, 0xa1, 0x61, 0xa1, 0x6e, 0xa0, 0x01, 0x07, 0xc4, 0x02, 0x01, 0x02, 0xcd, 0x01, 0x2c];
    assert_eq!(out, expected);
    assert_eq!(decode_versioned_event(&out, 0).unwrap(), (event.clone(), Some(300)));
    // Six elements: no version; the event decodes the same.
    encode_versioned_event_into(&event, None, &mut out).unwrap();
    assert_eq!(out[0], 0x96);
    assert_eq!(decode_versioned_event(&out, 0).unwrap(), (event, None));
    // A version is never written for an event without an aggregate...
    let loose = Event::builder("a").build();
    encode_versioned_event_into(&loose, Some(3), &mut out).unwrap();
    assert_eq!(out[0], 0x96);
    // ...and refused when a record holds one after a nil aggregate id.
    let mut bad = out.clone();
    bad[0] = 0x97;
    bad.push(0x03);
    let err = decode_versioned_event(&bad, 5).unwrap_err().to_string();
    assert!(err.contains("aggregate version without an aggregate id"), "{err}");
    // A version that is not a non-negative integer is refused.
    let mut negative = expected.to_vec();
    negative.truncate(12);
    negative.push(0xff); // negative fixint
    assert!(decode_versioned_event(&negative, 0).is_err());
    // Eight elements are refused.
    let mut eight = expected.to_vec();
    eight[0] = 0x98;
    eight.push(0x00);
    assert!(decode_versioned_event(&eight, 0).unwrap_err().to_string().contains("6 or 7"));
}
