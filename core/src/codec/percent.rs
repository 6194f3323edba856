//! `grpc-message` percent-encoding (`doc/PROTOCOL-HTTP2.md`).

/// Decodes a `grpc-message` value. `%XX` sequences become bytes; an invalid
/// sequence is passed through unchanged (the spec forbids dropping the
/// message); the result is read as UTF-8 with invalid bytes replaced.
pub fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Encodes text for `grpc-message`: bytes 0x20-0x7E except `%` pass through.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_special() {
        let s = "\t\ttest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n";
        assert_eq!(decode(encode(s).as_bytes()), s);
        assert_eq!(encode("100%"), "100%25");
    }

    #[test]
    fn invalid_passes_through() {
        assert_eq!(decode(b"50%"), "50%");
        assert_eq!(decode(b"%zz ok"), "%zz ok");
        assert_eq!(decode(b"%4"), "%4");
        assert_eq!(decode(b"%41%42"), "AB");
        assert_eq!(decode(b"%FF"), "\u{FFFD}");
    }
}
