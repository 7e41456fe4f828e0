//! The record codec that the event log stores inside its frames: a hand-written `MessagePack`
//! encoder and a strict decoder for [`Event`]s.
//!
//! # Record layout
//!
//! A record is one `MessagePack` array of six elements, in field order:
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
//! An event with an aggregate id is written with a seventh element, `aggregate_version` (an
//! unsigned integer): the number of the aggregate's events before this one (`FORMAT.md` 7).
//! Records of six elements (written before versions were stored, or of events without an
//! aggregate) decode with no version.
//!
//! Nothing may follow the array: the record is exactly the array. Encoding goes through
//! rmp-serde's default serializer, which writes structs as arrays and picks the shortest form
//! of every length and integer. Decoding is a small hand-written reader that accepts exactly this
//! shape, because rmp-serde's derived struct decoding is more lenient than a storage format
//! should be: it also takes a map keyed by field names, a payload written as an array of
//! integers, and stops without complaint before trailing bytes.

use std::fmt;

use super::Event;
use crate::error::{Result, StorageError};

/// The number of elements in an encoded event without a stored version: one per field of
/// [`Event`].
const EVENT_FIELD_COUNT: usize = 6;

/// The number of elements in an encoded event with its aggregate version.
const VERSIONED_FIELD_COUNT: usize = 7;

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
#[cfg(any(test, feature = "internals"))]
pub(crate) fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<()> {
    encode_versioned_event_into(event, None, out)
}

/// [`encode_event_into`], with the aggregate version as a seventh element when `version` is
/// given and the event has an aggregate id (it is ignored otherwise: a version belongs to an
/// aggregate). Read it back with [`decode_versioned_event`].
///
/// # Errors
/// As [`encode_event_into`].
pub(crate) fn encode_versioned_event_into(
    event: &Event,
    version: Option<u64>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let version = version.filter(|_| event.aggregate_id.is_some());
    out.clear();
    out.reserve(encoded_len(event)? + version.map_or(0, uint_len));
    // Written by hand rather than through rmp-serde: this is on the append path, and the
    // layout is fixed. Every length was checked by `encoded_len`, so the casts below are
    // exact. A unit test keeps the bytes identical to rmp-serde's for the same struct.
    out.push(if version.is_some() { 0x97 } else { 0x96 });
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
    if let Some(version) = version {
        put_uint(out, version);
    }
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
pub(super) fn encoded_len(event: &Event) -> Result<usize> {
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
pub(super) fn checked_len(what: &str, len: usize) -> Result<u32> {
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
/// The decode is strict: `bytes` must be exactly one array of the six (or seven) fields with the types in
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
    decode_versioned_event(bytes, offset).map(|(event, _)| event)
}

/// [`decode_event`], also returning the aggregate version stored in the record (`None` for a
/// six-element record).
///
/// # Errors
/// As [`decode_event`]; a seventh element is accepted only after a non-nil aggregate id, and
/// must be a non-negative integer.
pub(crate) fn decode_versioned_event(bytes: &[u8], offset: u64) -> Result<(Event, Option<u64>)> {
    decode_event_fields(bytes)
        .map_err(|malformed| StorageError::Decode { offset, reason: malformed.to_string() })
}

/// The body of [`decode_versioned_event`], with a cheap error type so that the happy path
/// builds no strings.
fn decode_event_fields(bytes: &[u8]) -> std::result::Result<(Event, Option<u64>), Malformed> {
    let mut reader = Reader { bytes, position: 0 };
    let field_count = reader.array_len()?;
    if field_count != EVENT_FIELD_COUNT && field_count != VERSIONED_FIELD_COUNT {
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
    let version = if field_count == VERSIONED_FIELD_COUNT {
        if aggregate_id.is_none() {
            return Err(Malformed { position: 0, problem: Problem::VersionWithoutAggregate });
        }
        Some(reader.uint()?)
    } else {
        None
    };
    if !reader.bytes.is_empty() {
        return Err(Malformed {
            position: reader.position,
            problem: Problem::TrailingBytes(reader.bytes.len()),
        });
    }
    let event = Event { event_type, namespace, schema_id, schema_version, aggregate_id, payload };
    Ok((event, version))
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
    /// The top-level array had this many elements instead of six or seven.
    FieldCount(usize),
    /// A seventh element (the aggregate version) followed a nil aggregate id.
    VersionWithoutAggregate,
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
                write!(
                    f,
                    "expected an array of {EVENT_FIELD_COUNT} or {VERSIONED_FIELD_COUNT} fields, \
                     found {count}"
                )?;
            }
            Problem::VersionWithoutAggregate => {
                write!(f, "an aggregate version without an aggregate id")?;
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
