//! `grpc-timeout` encoding: at most 8 ASCII digits and a unit (H M S m u n).

use std::time::Duration;

/// Encodes a timeout for the `grpc-timeout` header, choosing the finest unit
/// whose value fits in 8 digits and rounding up so the server never sees a
/// deadline earlier than the client's.
pub fn encode(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos().max(1);
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (div, unit) in units {
        let v = nanos.div_ceil(div);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Parses a `grpc-timeout` value (used by tests and for symmetry).
pub fn decode(s: &str) -> Option<Duration> {
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    // By bytes: the last character may be more than one byte long.
    let (unit, digits) = s.as_bytes().split_last()?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(v * 3600),
        b'M' => Duration::from_secs(v * 60),
        b'S' => Duration::from_secs(v),
        b'm' => Duration::from_millis(v),
        b'u' => Duration::from_micros(v),
        b'n' => Duration::from_nanos(v),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_finest_fitting_unit() {
        assert_eq!(encode(Duration::from_nanos(5)), "5n");
        assert_eq!(encode(Duration::from_millis(1)), "1000000n");
        assert_eq!(encode(Duration::from_millis(100)), "100000u");
        assert_eq!(encode(Duration::from_secs(10)), "10000000u");
        assert_eq!(encode(Duration::from_secs(1000)), "1000000m");
        assert_eq!(encode(Duration::from_secs(200_000)), "200000S");
        assert_eq!(encode(Duration::ZERO), "1n");
        assert_eq!(encode(Duration::from_secs(u64::MAX / 4)), "99999999H");
        for d in [1u64, 999, 123_456_789, 86_400_000] {
            let s = encode(Duration::from_millis(d));
            assert!(s.len() <= 9, "{s}");
            assert!(decode(&s).unwrap() >= Duration::from_millis(d));
        }
    }

    #[test]
    fn decodes() {
        assert_eq!(decode("10S"), Some(Duration::from_secs(10)));
        assert_eq!(decode("S"), None);
        assert_eq!(decode("123456789S"), None);
        assert_eq!(decode("1x"), None);
    }

    /// Found by the `status` fuzz target: a value ending in a character of
    /// more than one byte panicked (split inside the character).
    #[test]
    fn multibyte_unit_is_refused() {
        assert_eq!(decode("\u{1}\u{f8}"), None);
        assert_eq!(decode("12\u{20ac}"), None);
        assert_eq!(decode("\u{20ac}S"), None);
    }
}
