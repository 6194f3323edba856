//! gRPC metadata: an ordered list of key/value pairs, validation of keys and
//! values, and conversion to and from HTTP/2 headers (base64 for `-bin`).

#![forbid(unsafe_code)]

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// An ordered list of metadata entries. Keys are lowercase ASCII; values of
/// keys ending in `-bin` are arbitrary bytes, other values printable ASCII.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Keys are stored with a trailing NUL (not part of the key) so the C
    /// API can lend them out as C strings without copying.
    entries: Vec<(String, Bytes)>,
}

fn with_nul(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 1);
    k.push_str(key);
    k.push('\0');
    k
}

fn strip(k: &str) -> &str {
    &k[..k.len() - 1]
}

/// Why a key or value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataError(pub String);

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Keys the library sets itself or that carry protocol meaning; users may
/// not send them as custom metadata. (`user-agent` is allowed: its value
/// goes in front of the library's own user agent, see [`USER_AGENT`].)
const RESERVED: &[&str] = &["te", "content-type", "host", "connection"];

/// The `user-agent` key: values an application sends under it are put,
/// space-separated and in order, in front of the channel's user agent in
/// the one `user-agent` header of the request.
pub const USER_AGENT: &str = "user-agent";

/// True when `key` ends in `-bin` (a binary-valued key).
pub fn is_binary_key(key: &str) -> bool {
    key.ends_with("-bin")
}

/// Checks that `key` is a legal custom metadata key: non-empty, at most 1024
/// bytes, only `0-9 a-z _ - .`, not starting with `grpc-` or `:`, not one of
/// the headers the library sets itself.
pub fn validate_key(key: &str) -> Result<(), MetadataError> {
    if key.is_empty() {
        return Err(MetadataError("metadata key is empty".into()));
    }
    if key.len() > 1024 {
        return Err(MetadataError(
            "metadata key is longer than 1024 bytes".into(),
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_digit() || c.is_ascii_lowercase() || matches!(c, '_' | '-' | '.')))
    {
        return Err(MetadataError(format!(
            "metadata key {key:?} has the character {c:?}; keys may only contain 0-9 a-z _ - . (lowercase ASCII)"
        )));
    }
    if key.starts_with("grpc-") {
        return Err(MetadataError(format!(
            "metadata key {key:?} is reserved: keys starting with \"grpc-\" belong to the gRPC protocol"
        )));
    }
    if RESERVED.contains(&key) {
        return Err(MetadataError(format!(
            "metadata key {key:?} is set by the library and cannot be sent as metadata"
        )));
    }
    Ok(())
}

/// Checks a value for `key`: any bytes for `-bin` keys, otherwise printable
/// ASCII (0x20-0x7E).
pub fn validate_value(key: &str, value: &[u8]) -> Result<(), MetadataError> {
    if is_binary_key(key) {
        return Ok(());
    }
    if let Some(pos) = value.iter().position(|b| !(0x20..=0x7e).contains(b)) {
        return Err(MetadataError(format!(
            "metadata value for {key:?} has byte 0x{:02x} at offset {pos}; values of keys not ending in \"-bin\" must be printable ASCII (0x20-0x7E)",
            value[pos]
        )));
    }
    Ok(())
}

impl Metadata {
    /// An empty list.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Adds an entry after validating key and value.
    pub fn add(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        validate_key(key)?;
        validate_value(key, value)?;
        self.entries
            .push((with_nul(key), Bytes::copy_from_slice(value)));
        Ok(())
    }

    /// Adds an entry without validation (for metadata received from a peer).
    pub(crate) fn push_unchecked(&mut self, key: &str, value: Bytes) {
        self.entries.push((with_nul(key), value));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `index`.
    pub fn get(&self, index: usize) -> Option<(&str, &[u8])> {
        self.entries.get(index).map(|(k, v)| (strip(k), v.as_ref()))
    }

    /// The key at `index` with its trailing NUL (for the C API).
    pub fn key_with_nul(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(|(k, _)| k.as_str())
    }

    /// The first value for `key`.
    pub fn find(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| strip(k) == key)
            .map(|(_, v)| v.as_ref())
    }

    /// All values for `key`, in order.
    pub fn find_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| strip(k) == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Iterates over `(key, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (strip(k), v.as_ref()))
    }

    /// Removes every entry with `key`; returns how many there were.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| strip(k) != key);
        before - self.entries.len()
    }

    /// Appends every entry of `other`.
    pub fn extend_from(&mut self, other: &Metadata) {
        self.entries.extend(other.entries.iter().cloned());
    }

    /// Appends the entries as HTTP/2 headers (binary values base64-encoded
    /// without padding). The entries were validated when added.
    /// `user-agent` entries are left out (the request's user agent is built
    /// from them, see [`USER_AGENT`]).
    pub(crate) fn append_to_headers(&self, headers: &mut HeaderMap) -> Result<(), MetadataError> {
        for (k, v) in &self.entries {
            let k = strip(k);
            if k == USER_AGENT {
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| MetadataError(format!("metadata key {k:?}: {e}")))?;
            let value = if is_binary_key(k) {
                HeaderValue::from_str(&STANDARD_NO_PAD.encode(v))
            } else {
                HeaderValue::from_bytes(v)
            }
            .map_err(|e| MetadataError(format!("metadata value for {k:?}: {e}")))?;
            headers.append(name, value);
        }
        Ok(())
    }

    /// Converts received headers to metadata, skipping the headers the
    /// protocol itself uses. `-bin` values are base64-decoded (padded or
    /// unpadded, comma-separated values split); a value that does not decode
    /// is kept as received.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Metadata {
        let mut md = Metadata::new();
        for (name, value) in headers.iter() {
            let key = name.as_str();
            if is_protocol_header(key) {
                continue;
            }
            if is_binary_key(key) {
                for part in value.as_bytes().split(|b| *b == b',') {
                    let part = trim_ascii(part);
                    md.push_unchecked(key, decode_base64(part));
                }
            } else {
                md.push_unchecked(key, Bytes::copy_from_slice(value.as_bytes()));
            }
        }
        md
    }
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn decode_base64(s: &[u8]) -> Bytes {
    let unpadded: &[u8] = {
        let mut end = s.len();
        while end > 0 && s[end - 1] == b'=' {
            end -= 1;
        }
        &s[..end]
    };
    match STANDARD_NO_PAD.decode(unpadded) {
        Ok(v) => Bytes::from(v),
        Err(_) => match STANDARD.decode(s) {
            Ok(v) => Bytes::from(v),
            Err(_) => Bytes::copy_from_slice(s),
        },
    }
}

/// Headers that are part of the protocol, not application metadata.
fn is_protocol_header(key: &str) -> bool {
    matches!(
        key,
        "content-type"
            | "grpc-status"
            | "grpc-message"
            | "grpc-encoding"
            | "grpc-accept-encoding"
            | "te"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("x-custom").is_ok());
        assert!(validate_key("a.b_c-1").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("X-Upper").is_err());
        assert!(validate_key("grpc-timeout").is_err());
        assert!(validate_key(":path").is_err());
        assert!(validate_key("sp ace").is_err());
        assert!(validate_key("user-agent").is_ok());
        assert!(validate_key("content-type").is_err());
    }

    #[test]
    fn values() {
        assert!(validate_value("k", b"hello world").is_ok());
        assert!(validate_value("k", b"tab\t").is_err());
        assert!(validate_value("k", &[0xc3, 0xa9]).is_err());
        assert!(validate_value("k-bin", &[0, 1, 2, 0xff]).is_ok());
    }

    #[test]
    fn header_round_trip() {
        let mut md = Metadata::new();
        md.add("a", b"1").unwrap();
        md.add("b-bin", &[0xab, 0xab, 0xab]).unwrap();
        md.add("a", b"2").unwrap();
        let mut h = HeaderMap::new();
        md.append_to_headers(&mut h).unwrap();
        assert_eq!(h.get("b-bin").unwrap(), "q6ur");
        let back = Metadata::from_headers(&h);
        assert_eq!(back.find("b-bin").unwrap(), &[0xab, 0xab, 0xab]);
        assert_eq!(back.find_all("a").collect::<Vec<_>>(), vec![b"1", b"2"]);
    }

    #[test]
    fn binary_decoding_variants() {
        let mut h = HeaderMap::new();
        h.append("x-bin", HeaderValue::from_static("AAE="));
        h.append("y-bin", HeaderValue::from_static("AAE,AgM="));
        let md = Metadata::from_headers(&h);
        assert_eq!(md.find("x-bin").unwrap(), &[0, 1]);
        assert_eq!(
            md.find_all("y-bin").collect::<Vec<_>>(),
            vec![&[0u8, 1][..], &[2u8, 3][..]]
        );
    }
}
