//! Canonical forms that must not depend on how serde_json was built: JSON with object keys
//! sorted at every level, and lower-case hex of bytes and SHA-256 digests. Snapshot files,
//! frame ids and idempotency keys are compared byte for byte, so they all use these.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `value` with object keys sorted at every level. Rebuilding the map in sorted order is
/// right whatever map serde_json uses (a `BTreeMap`, or an insertion-ordered map when a
/// `preserve_order` feature is on anywhere in the build).
pub fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sorted_keys(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level() {
        let value = json!({"b": [{"z": 1, "a": 2}], "a": {"y": true, "x": null}});
        assert_eq!(
            serde_json::to_string(&sorted_keys(value)).unwrap(),
            r#"{"a":{"x":null,"y":true},"b":[{"a":2,"z":1}]}"#
        );
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
