//! Events: the typed records of an event log, and their `MessagePack` encoding.
//!
//! This layer never touches files. It defines [`Event`] (what a caller appends), its builder
//! [`EventBuilder`], [`EventEnvelope`] (what replay hands back, with the offset and timestamp the
//! log assigned), helpers that put a serde value into a payload and take it out again, and the
//! record codec that the event log stores inside its frames.
//!
//! # Record layout
//!
//! A record is one `MessagePack` array of exactly six elements, in field order:
//!
//! | # | field            | `MessagePack` type                 |
//! |---|------------------|------------------------------------|
//! | 0 | `event_type`     | str                                |
//! | 1 | `namespace`      | str                                |
//! | 2 | `schema_id`      | str                                |
//! | 3 | `schema_version` | unsigned integer (fits in 32 bits) |
//! | 4 | `aggregate_id`   | unsigned integer (64 bits), or nil |
//! | 5 | `payload`        | bin (bin8, bin16 or bin32)         |
//!
//! Nothing may follow the array: the record is exactly the array. Encoding goes through
//! rmp-serde's default serializer, which writes structs as arrays and picks the shortest form
//! of every length and integer. Decoding is a small hand-written reader that accepts exactly this
//! shape, because rmp-serde's derived struct decoding is more lenient than a storage format
//! should be: it also takes a map keyed by field names, a payload written as an array of
//! integers, and stops without complaint before trailing bytes.

// Decoders see bytes from disk and from fuzzers, so they must not panic on any input.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// The namespace an [`EventBuilder`] uses unless told otherwise.
const NAMESPACE_DEFAULT: &str = "default";

/// The schema version an [`EventBuilder`] uses unless told otherwise.
const SCHEMA_VERSION_DEFAULT: u32 = 1;

/// The number of elements in an encoded event: one per field of [`Event`].
const EVENT_FIELD_COUNT: usize = 6;

/// One event, as a caller appends it.
///
/// The log adds the offset and the write timestamp when it stores the event; replay returns both
/// in an [`EventEnvelope`]. Build events with [`Event::builder`], which fills in documented
/// defaults. Note that [`Event::default`] is the all-empty event (empty strings, schema version
/// 0, no aggregate, empty payload), not the builder's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Event {
    /// What happened, e.g. `"order.placed"`. Indexes and filters match on it.
    pub event_type: String,
    /// The group the event belongs to, e.g. a bounded context or tenant. The builder's default
    /// is `"default"`.
    pub namespace: String,
    /// The name of the schema that describes the payload. The builder's default is the empty
    /// string, meaning "no declared schema".
    pub schema_id: String,
    /// The version of that schema the payload was written with, so readers can upcast old
    /// events. The builder's default is 1.
    pub schema_version: u32,
    /// The aggregate (entity) the event belongs to, if any. The aggregate index maps each id to
    /// the offsets of its events. The builder's default is `None`.
    pub aggregate_id: Option<u64>,
    /// The event's data, opaque to the log. Use [`EventBuilder::payload_serde`] and
    /// [`Event::decode_payload`] to store a serde value as `MessagePack`. It is encoded as a
    /// `MessagePack` byte string, not as an array of integers. The builder's default is empty.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl Event {
    /// Starts building an event of the given type.
    ///
    /// Until set, the other fields take these defaults: namespace `"default"`, schema id `""`,
    /// schema version 1, no aggregate id, empty payload.
    ///
    /// ```
    /// use chronicle::Event;
    ///
    /// let event = Event::builder("order.placed")
    ///     .namespace("shop")
    ///     .schema("order", 2)
    ///     .aggregate_id(42)
    ///     .payload(b"raw bytes".to_vec())
    ///     .build();
    /// assert_eq!(event.schema_version, 2);
    /// ```
    pub fn builder(event_type: impl Into<String>) -> EventBuilder {
        EventBuilder {
            event: Event {
                event_type: event_type.into(),
                namespace: NAMESPACE_DEFAULT.to_owned(),
                schema_id: String::new(),
                schema_version: SCHEMA_VERSION_DEFAULT,
                aggregate_id: None,
                payload: Vec::new(),
            },
        }
    }

    /// Decodes the payload as a `MessagePack` value of type `T`; the inverse of
    /// [`EventBuilder::payload_serde`] and [`encode_payload`].
    ///
    /// An event on its own has no offset, so the error reports offset 0; prefer
    /// [`EventEnvelope::decode_payload`] on replayed events, which reports the real offset.
    ///
    /// # Errors
    ///
    /// [`StorageError::Decode`] if the payload is not a valid `MessagePack` encoding of `T`, or if
    /// bytes remain after the value.
    pub fn decode_payload<T: DeserializeOwned>(&self) -> Result<T> {
        decode_payload_at(&self.payload, 0)
    }
}

/// An event as replay returns it: the event plus what the log recorded when it stored it.
///
/// The offset and the timestamp are assigned by the log at append time, never by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    /// The logical offset of the record that holds the event; a valid start for replay.
    pub offset: u64,
    /// Milliseconds since the Unix epoch at which the log appended the event. The log keeps it
    /// non-decreasing in offset order, so it is metadata for time lookups, not an ordering key.
    pub write_timestamp_ms: u64,
    /// The event as it was appended.
    pub event: Event,
}

impl EventEnvelope {
    /// Decodes the event's payload as a `MessagePack` value of type `T`, like
    /// [`Event::decode_payload`], but reports this envelope's offset in errors.
    ///
    /// # Errors
    ///
    /// [`StorageError::Decode`] with this envelope's offset if the payload is not a valid
    /// `MessagePack` encoding of `T`, or if bytes remain after the value.
    pub fn decode_payload<T: DeserializeOwned>(&self) -> Result<T> {
        decode_payload_at(&self.event.payload, self.offset)
    }
}

/// Builds an [`Event`] field by field; made by [`Event::builder`].
///
/// Defaults for the fields not set: namespace `"default"`, schema id `""`, schema version 1, no
/// aggregate id, empty payload.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EventBuilder {
    /// The event under construction, already holding the defaults.
    event: Event,
}

impl EventBuilder {
    /// Sets the namespace. Default: `"default"`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.event.namespace = namespace.into();
        self
    }

    /// Sets the schema id and version of the payload. Defaults: `""` and 1.
    pub fn schema(mut self, schema_id: impl Into<String>, schema_version: u32) -> Self {
        self.event.schema_id = schema_id.into();
        self.event.schema_version = schema_version;
        self
    }

    /// Sets the aggregate the event belongs to. Default: none.
    pub fn aggregate_id(mut self, aggregate_id: u64) -> Self {
        self.event.aggregate_id = Some(aggregate_id);
        self
    }

    /// Sets the payload to the given bytes, replacing any earlier payload. Default: empty.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.event.payload = payload.into();
        self
    }

    /// Sets the payload to the `MessagePack` encoding of `value`, as [`encode_payload`] makes it,
    /// replacing any earlier payload. Read it back with [`Event::decode_payload`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Encode`] if `value`'s `Serialize` implementation fails.
    pub fn payload_serde<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        self.event.payload = encode_payload(value)?;
        Ok(self)
    }

    /// Finishes the event.
    #[must_use]
    pub fn build(self) -> Event {
        self.event
    }
}

/// Encodes `value` as `MessagePack`, for use as an event payload; the inverse of
/// [`Event::decode_payload`].
///
/// Structs are written as maps keyed by field name rather than as positional arrays. Events are
/// kept for good, and with names a later version of the struct can reorder fields or add
/// `#[serde(default)]` ones and still read old payloads, where positional arrays would silently
/// shift values between fields of the same type.
///
/// # Errors
///
/// [`StorageError::Encode`] if `value`'s `Serialize` implementation fails.
pub fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(value)
        .map_err(|error| StorageError::Encode { reason: format!("payload: {error}") })
}

/// Decodes a payload as `T`, reporting `offset` in errors.
fn decode_payload_at<T: DeserializeOwned>(payload: &[u8], offset: u64) -> Result<T> {
    let payload_error = |reason: String| StorageError::Decode { offset, reason };
    // Reading through `&mut &[u8]` advances the slice, which is how the leftover bytes are found;
    // rmp-serde's slice deserializer offers no way to see them.
    let mut rest = payload;
    let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
    let value = T::deserialize(&mut deserializer)
        .map_err(|error| payload_error(format!("payload: {error}")))?;
    if !rest.is_empty() {
        return Err(payload_error(format!(
            "payload: {} trailing bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

/// Writes `event` into `out` as a record (see the module docs for the layout), replacing what
/// `out` held. Read it back with [`decode_event`].
///
/// `out` is reserved once for the whole record, so nothing is allocated when its capacity is
/// already large enough: reuse one buffer across appends.
///
/// # Errors
///
/// [`StorageError::Encode`] if a string or the payload is longer than `MessagePack` can describe
/// (`u32::MAX` bytes). `out` is left empty in that case.
pub(crate) fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.reserve(encoded_len(event)?);
    // Written by hand rather than through rmp-serde: this is on the append path, and the
    // layout is fixed. Every length was checked by `encoded_len`, so the casts below are
    // exact. A unit test keeps the bytes identical to rmp-serde's for the same struct.
    out.push(0x96);
    for string in [&event.event_type, &event.namespace, &event.schema_id] {
        put_str_header(out, string.len() as u32);
        out.extend_from_slice(string.as_bytes());
    }
    put_uint(out, u64::from(event.schema_version));
    match event.aggregate_id {
        Some(id) => put_uint(out, id),
        None => out.push(0xc0),
    }
    put_bin_header(out, event.payload.len() as u32);
    out.extend_from_slice(&event.payload);
    Ok(())
}

/// Writes the shortest `MessagePack` str header for `len` bytes.
fn put_str_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Writes the shortest `MessagePack` bin header for `len` bytes.
fn put_bin_header(out: &mut Vec<u8>, len: u32) {
    match len {
        0..=0xff => out.extend_from_slice(&[0xc4, len as u8]),
        0x100..=0xffff => {
            out.push(0xc5);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xc6);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// Writes the shortest `MessagePack` encoding of the unsigned integer `value`.
fn put_uint(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=0x7f => out.push(value as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, value as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

/// The exact length of `event`'s record, checking every length against `MessagePack`'s limit.
///
/// The check matters because rmp-serde casts lengths to `u32` without checking, so a 4 GiB
/// payload would otherwise be written with a wrapped-around length: a corrupt record.
fn encoded_len(event: &Event) -> Result<usize> {
    let strings = [&event.event_type, &event.namespace, &event.schema_id];
    let mut len = 1; // The fixarray marker.
    for string in strings {
        len += str_header_len(checked_len("a string field", string.len())?) + string.len();
    }
    len += uint_len(u64::from(event.schema_version));
    len += event.aggregate_id.map_or(1, uint_len);
    len += bin_header_len(checked_len("the payload", event.payload.len())?) + event.payload.len();
    Ok(len)
}

/// `len` as a `MessagePack` length, or an encode error naming `what` if it does not fit.
fn checked_len(what: &str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| StorageError::Encode {
        reason: format!("{what} is {len} bytes; MessagePack allows at most {} bytes", u32::MAX),
    })
}

/// The bytes that the shortest `MessagePack` str header for `len` bytes takes.
fn str_header_len(len: u32) -> usize {
    match len {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes that the shortest `MessagePack` bin header for `len` bytes takes.
fn bin_header_len(len: u32) -> usize {
    match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes that the shortest `MessagePack` encoding of the unsigned integer `value` takes.
fn uint_len(value: u64) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Decodes a record written by [`encode_event_into`]; `offset` is the record's log offset and
/// only goes into errors.
///
/// The decode is strict: `bytes` must be exactly one array of the six fields with the types in
/// the module docs, and nothing after it. Lengths and integers may use any `MessagePack` width,
/// not only the shortest, and integers may use the signed forms when they are not negative, so
/// records from other `MessagePack` writers decode too. It never panics and never allocates more
/// than `bytes.len()` in total, whatever the lengths inside claim.
///
/// # Errors
///
/// [`StorageError::Decode`] with `offset` if the bytes are truncated, hold anything other than
/// that array (a map, another arity, a field of the wrong type, a string that is not UTF-8, a
/// schema version above `u32::MAX`), or have bytes left after it. The reason names what was
/// wrong and at which byte of the record.
pub(crate) fn decode_event(bytes: &[u8], offset: u64) -> Result<Event> {
    decode_event_fields(bytes)
        .map_err(|malformed| StorageError::Decode { offset, reason: malformed.to_string() })
}

/// The body of [`decode_event`], with a cheap error type so that the happy path builds no
/// strings.
fn decode_event_fields(bytes: &[u8]) -> std::result::Result<Event, Malformed> {
    let mut reader = Reader { bytes, position: 0 };
    let field_count = reader.array_len()?;
    if field_count != EVENT_FIELD_COUNT {
        return Err(Malformed { position: 0, problem: Problem::FieldCount(field_count) });
    }
    let event_type = reader.str()?.to_owned();
    let namespace = reader.str()?.to_owned();
    let schema_id = reader.str()?.to_owned();
    let version_position = reader.position;
    let schema_version = u32::try_from(reader.uint()?)
        .map_err(|_| Malformed { position: version_position, problem: Problem::VersionRange })?;
    let aggregate_id = if reader.nil()? { None } else { Some(reader.uint()?) };
    let payload = reader.bin()?.to_vec();
    if !reader.bytes.is_empty() {
        return Err(Malformed {
            position: reader.position,
            problem: Problem::TrailingBytes(reader.bytes.len()),
        });
    }
    Ok(Event { event_type, namespace, schema_id, schema_version, aggregate_id, payload })
}

/// What was wrong with a record, and at which byte of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed {
    /// The byte of the record where the problem starts.
    position: usize,
    /// What the problem is.
    problem: Problem,
}

/// The ways a record can be malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// The record ended in the middle of a value.
    Truncated,
    /// A value had a different `MessagePack` type than the layout requires here.
    UnexpectedMarker {
        /// The type the layout requires.
        expected: &'static str,
        /// The marker byte found.
        found: u8,
    },
    /// The top-level array had this many elements instead of six.
    FieldCount(usize),
    /// The schema version does not fit in 32 bits.
    VersionRange,
    /// A string field is not valid UTF-8.
    Utf8,
    /// This many bytes followed the array.
    TrailingBytes(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::Truncated => write!(f, "record ends in the middle of a value")?,
            Problem::UnexpectedMarker { expected, found } => {
                write!(f, "expected {expected}, found marker byte 0x{found:02x}")?;
            }
            Problem::FieldCount(count) => {
                write!(f, "expected an array of {EVENT_FIELD_COUNT} fields, found {count}")?;
            }
            Problem::VersionRange => write!(f, "schema version does not fit in 32 bits")?,
            Problem::Utf8 => write!(f, "string is not valid UTF-8")?,
            Problem::TrailingBytes(count) => write!(f, "{count} trailing bytes after the event")?,
        }
        write!(f, " (at byte {} of the record)", self.position)
    }
}

/// A cursor over a record that reads the few `MessagePack` forms the layout uses.
///
/// Every read checks the length first and borrows from the record, so no input can make it
/// panic or allocate.
struct Reader<'a> {
    /// The bytes not read yet.
    bytes: &'a [u8],
    /// How many bytes of the record have been read, for error messages.
    position: usize,
}

impl<'a> Reader<'a> {
    /// An error for a value that starts at the current position.
    fn malformed(&self, problem: Problem) -> Malformed {
        Malformed { position: self.position, problem }
    }

    /// Takes the next `len` bytes.
    fn take(&mut self, len: usize) -> std::result::Result<&'a [u8], Malformed> {
        let (taken, rest) =
            self.bytes.split_at_checked(len).ok_or(self.malformed(Problem::Truncated))?;
        self.bytes = rest;
        self.position += len;
        Ok(taken)
    }

    /// Takes the next `N` bytes as an array, for big-endian integers.
    fn take_array<const N: usize>(&mut self) -> std::result::Result<[u8; N], Malformed> {
        let (taken, rest) =
            self.bytes.split_first_chunk::<N>().ok_or(self.malformed(Problem::Truncated))?;
        self.bytes = rest;
        self.position += N;
        Ok(*taken)
    }

    /// Takes one byte.
    fn byte(&mut self) -> std::result::Result<u8, Malformed> {
        self.take_array::<1>().map(|[byte]| byte)
    }

    /// Takes a big-endian `u16` as a length.
    fn len_u16(&mut self) -> std::result::Result<usize, Malformed> {
        self.take_array().map(|bytes| usize::from(u16::from_be_bytes(bytes)))
    }

    /// Takes a big-endian `u32` as a length.
    ///
    /// A length that does not fit in `usize` cannot fit in the record either, so it is reported
    /// as truncation; `usize::MAX` makes the following `take` fail.
    fn len_u32(&mut self) -> std::result::Result<usize, Malformed> {
        self.take_array()
            .map(|bytes| usize::try_from(u32::from_be_bytes(bytes)).unwrap_or(usize::MAX))
    }

    /// Reads an array header and returns the number of elements.
    fn array_len(&mut self) -> std::result::Result<usize, Malformed> {
        let start = self.position;
        match self.byte()? {
            marker @ 0x90..=0x9f => Ok(usize::from(marker & 0x0f)),
            0xdc => self.len_u16(),
            0xdd => self.len_u32(),
            found => Err(Malformed {
                position: start,
                problem: Problem::UnexpectedMarker { expected: "an array", found },
            }),
        }
    }

    /// Reads a str and borrows its text.
    fn str(&mut self) -> std::result::Result<&'a str, Malformed> {
        let start = self.position;
        let len = match self.byte()? {
            marker @ 0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.len_u16()?,
            0xdb => self.len_u32()?,
            found => {
                return Err(Malformed {
                    position: start,
                    problem: Problem::UnexpectedMarker { expected: "a str", found },
                });
            }
        };
        let text_start = self.position;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|_| Malformed { position: text_start, problem: Problem::Utf8 })
    }

    /// Reads a bin and borrows its bytes.
    fn bin(&mut self) -> std::result::Result<&'a [u8], Malformed> {
        let start = self.position;
        let len = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => self.len_u16()?,
            0xc6 => self.len_u32()?,
            found => {
                return Err(Malformed {
                    position: start,
                    problem: Problem::UnexpectedMarker { expected: "a bin", found },
                });
            }
        };
        self.take(len)
    }

    /// Reads a non-negative integer of any width, signed or unsigned form.
    fn uint(&mut self) -> std::result::Result<u64, Malformed> {
        let start = self.position;
        let not_uint = |found| Malformed {
            position: start,
            problem: Problem::UnexpectedMarker { expected: "a non-negative integer", found },
        };
        let marker = self.byte()?;
        let value = match marker {
            0x00..=0x7f => Some(u64::from(marker)),
            0xcc => Some(u64::from(self.byte()?)),
            0xcd => Some(u64::from(u16::from_be_bytes(self.take_array()?))),
            0xce => Some(u64::from(u32::from_be_bytes(self.take_array()?))),
            0xcf => Some(u64::from_be_bytes(self.take_array()?)),
            // The signed forms hold a usable value only when it is not negative.
            0xd0 => u64::try_from(i8::from_be_bytes(self.take_array()?)).ok(),
            0xd1 => u64::try_from(i16::from_be_bytes(self.take_array()?)).ok(),
            0xd2 => u64::try_from(i32::from_be_bytes(self.take_array()?)).ok(),
            0xd3 => u64::try_from(i64::from_be_bytes(self.take_array()?)).ok(),
            _ => None,
        };
        value.ok_or(not_uint(marker))
    }

    /// Consumes a nil if one comes next and says whether it did.
    fn nil(&mut self) -> std::result::Result<bool, Malformed> {
        match self.bytes.first() {
            Some(0xc0) => self.take(1).map(|_| true),
            Some(_) => Ok(false),
            None => Err(self.malformed(Problem::Truncated)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {

    /// The hand-written encoder must produce exactly what rmp-serde's default (struct as
    /// array) serializer produces for `Event`, at every length and integer width boundary.
    #[test]
    fn hand_encoder_matches_rmp_serde() {
        let lengths = [0usize, 1, 31, 32, 255, 256, 65_535, 65_536];
        let ints =
            [0u64, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xffff_ffff, 1 << 32, u64::MAX];
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

        let mut seven = encode(&event);
        seven[0] = 0x97;
        seven.push(0xc0);
        assert!(decode_error(&seven).contains("found 7"));

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
}
