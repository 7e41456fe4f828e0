//! Events: the typed records of an event log, and their `MessagePack` encoding.
//!
//! This layer never touches files. It defines [`Event`] (what a caller appends), its builder
//! [`EventBuilder`], [`EventEnvelope`] (what replay hands back, with the offset and timestamp the
//! log assigned), helpers that put a serde value into a payload and take it out again, and the
//! record codec that the event log stores inside its frames.

// Decoders see bytes from disk and from fuzzers, so they must not panic on any input.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

mod codec;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "internals"))]
pub(crate) use codec::encode_event_into;
pub(crate) use codec::{decode_event, decode_versioned_event, encode_versioned_event_into};

use crate::error::{Result, StorageError};

/// The namespace an [`EventBuilder`] uses unless told otherwise.
const NAMESPACE_DEFAULT: &str = "default";

/// The schema version an [`EventBuilder`] uses unless told otherwise.
const SCHEMA_VERSION_DEFAULT: u32 = 1;

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
    /// The event's version within its aggregate: the number of the aggregate's events before
    /// it, so its first event has version 0. Assigned by the log and stored in the record.
    /// `None` for an event without an aggregate id, and for one read from a record written
    /// before versions were stored (`FORMAT.md` 7) by a replay; the aggregate queries of
    /// [`EventLog`](crate::EventLog) fill it in from the index for those.
    pub aggregate_version: Option<u64>,
}

impl EventEnvelope {
    /// Decodes a raw [`Record`](crate::Record) of the log (as [`Log::replay`](crate::Log::replay)
    /// yields it) as an event.
    ///
    /// # Errors
    /// [`StorageError::Decode`](crate::StorageError::Decode) naming the record's offset if its
    /// payload is not an event record (`FORMAT.md` section 7).
    pub fn from_record(record: &crate::Record) -> crate::Result<EventEnvelope> {
        let (event, aggregate_version) =
            codec::decode_versioned_event(&record.payload, record.offset)?;
        Ok(EventEnvelope {
            offset: record.offset,
            write_timestamp_ms: record.write_timestamp_ms,
            event,
            aggregate_version,
        })
    }

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

/// What an append with an expected version requires of the aggregate's current version (the
/// version of its last event; see [`EventEnvelope::aggregate_version`]), as in `KurrentDB`.
/// The append writes nothing and fails with
/// [`StorageError::WrongExpectedVersion`] if the aggregate does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No requirement: the events are appended after whatever the aggregate holds.
    Any,
    /// The aggregate has no events yet: the first appended event gets version 0.
    NoStream,
    /// The aggregate's last event has version `n` (it has `n + 1` events, unless a repair took
    /// some out): the first appended event gets version `n + 1`.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether an aggregate whose current version is `actual` (`None`: no events) meets this.
    #[must_use]
    pub fn is_met_by(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::Exact(n) => actual == Some(n),
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no events"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
        }
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
