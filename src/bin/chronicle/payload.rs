//! How the tool shows a payload and reads one back: as JSON when it is MessagePack that JSON
//! can carry exactly, as text when it is UTF-8, else as bytes. `replay --json` and `append`
//! use the same three field names, so a log's events copy through them unchanged.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::output::hex_prefix;

/// A payload as the tool shows it.
pub enum Shown {
    /// MessagePack whose JSON form encodes back to the same bytes (`payload`).
    Json(Value),
    /// UTF-8 text that is not such MessagePack (`payload_text`).
    Text(String),
    /// Anything else (`payload_base64`, or hex in tables).
    Bytes,
}

/// Classifies `payload` (see [`Shown`]). A MessagePack payload is shown as JSON only if
/// `append` would store that JSON as exactly these bytes, so nothing is lost in a copy.
pub fn show(payload: &[u8]) -> Shown {
    if let Ok(value) = rmp_serde::from_slice::<Value>(payload) {
        if rmp_serde::to_vec(&value).is_ok_and(|again| again == payload) {
            return Shown::Json(value);
        }
    }
    match std::str::from_utf8(payload) {
        Ok(text) => Shown::Text(text.to_owned()),
        Err(_) => Shown::Bytes,
    }
}

/// Adds the payload to a JSON object under the field its kind uses.
pub fn put_json(object: &mut Map<String, Value>, payload: &[u8]) {
    let (field, value) = match show(payload) {
        Shown::Json(value) => ("payload", value),
        Shown::Text(text) => ("payload_text", Value::String(text)),
        Shown::Bytes => (
            "payload_base64",
            Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
    };
    object.insert(field.to_string(), value);
}

/// Characters of a payload shown in a table row.
const TABLE_CHARS: usize = 60;

/// The payload as a table cell: compact JSON, quoted text, or hex, shortened with `…`.
pub fn table_cell(payload: &[u8]) -> String {
    let full = match show(payload) {
        Shown::Json(value) => value.to_string(),
        Shown::Text(text) => format!("{text:?}"),
        Shown::Bytes => return format!("0x{}", hex_prefix(payload, TABLE_CHARS / 2)),
    };
    if full.chars().count() <= TABLE_CHARS {
        full
    } else {
        let mut cut: String = full.chars().take(TABLE_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// Why an event's payload fields could not be read.
pub type PayloadError = String;

/// Reads the payload from an object as `append` accepts it: `payload` (any JSON value, stored
/// as MessagePack), `payload_text` (stored as UTF-8) or `payload_base64` (raw bytes); at most
/// one of them, none meaning empty.
pub fn from_json(
    payload: Option<&Value>,
    text: Option<&str>,
    base64: Option<&str>,
) -> Result<Vec<u8>, PayloadError> {
    match (payload, text, base64) {
        (None, None, None) => Ok(Vec::new()),
        (Some(value), None, None) => rmp_serde::to_vec(value)
            .map_err(|err| format!("`payload` cannot be stored as MessagePack: {err}")),
        (None, Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|err| format!("`payload_base64` is not base64: {err}")),
        _ => Err("give at most one of `payload`, `payload_text` and `payload_base64`".into()),
    }
}
