//! Message compression (`doc/compression.md` in grpc/grpc): identity, deflate (zlib
//! format, as gRPC's "deflate") and gzip, with flate2.
//!
//! Decompression enforces the receive limit on the *decompressed* size
//! while inflating, so a small message that would expand without bound
//! (a "zip bomb") fails after at most `limit + 1` bytes of output.

use flate2::read::{GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use std::io::{Read, Write};

/// A message compression algorithm.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    Identity,
    /// zlib (RFC 1950), named "deflate" in gRPC.
    Deflate,
    /// gzip (RFC 1952).
    Gzip,
}

/// What the client sends in `grpc-accept-encoding`.
pub const ACCEPT_ENCODING: &str = "identity,deflate,gzip";
/// The algorithms this client can decompress, for error messages.
pub const SUPPORTED: &str = "identity, deflate, gzip";

impl Compression {
    /// The algorithm for C-core's numbering (`grpc_compression_algorithm`):
    /// 0 none, 1 deflate, 2 gzip.
    pub fn from_u32(v: u32) -> Option<Compression> {
        match v {
            0 => Some(Compression::Identity),
            1 => Some(Compression::Deflate),
            2 => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// The `grpc-encoding` name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Identity => "identity",
            Compression::Deflate => "deflate",
            Compression::Gzip => "gzip",
        }
    }

    /// The algorithm for a `grpc-encoding` name.
    pub fn from_name(name: &str) -> Option<Compression> {
        match name.trim() {
            "identity" => Some(Compression::Identity),
            "deflate" => Some(Compression::Deflate),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// Compresses `data` (a fresh context per message, as the spec says).
    pub fn compress(self, data: &[u8]) -> Vec<u8> {
        let level = flate2::Compression::default();
        let out = Vec::with_capacity(data.len() / 2 + 16);
        match self {
            Compression::Identity => data.to_vec(),
            Compression::Deflate => {
                let mut e = ZlibEncoder::new(out, level);
                e.write_all(data).expect("write to Vec");
                e.finish().expect("finish to Vec")
            }
            Compression::Gzip => {
                let mut e = GzEncoder::new(out, level);
                e.write_all(data).expect("write to Vec");
                e.finish().expect("finish to Vec")
            }
        }
    }

    /// Decompresses `data`, failing as soon as the output would exceed
    /// `limit` bytes (None = unlimited).
    pub fn decompress(self, data: &[u8], limit: Option<usize>) -> Result<Vec<u8>, DecompressError> {
        match self {
            Compression::Identity => match limit {
                Some(l) if data.len() > l => Err(DecompressError::TooLarge { limit: l }),
                _ => Ok(data.to_vec()),
            },
            Compression::Deflate => read_limited(ZlibDecoder::new(data), limit),
            Compression::Gzip => read_limited(GzDecoder::new(data), limit),
        }
    }
}

/// Why a message could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// The output would exceed the receive limit.
    TooLarge { limit: usize },
    /// The data is not a valid stream for the algorithm.
    Corrupt(String),
}

fn read_limited(r: impl Read, limit: Option<usize>) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    match limit {
        Some(l) => {
            let cap = l as u64 + 1;
            r.take(cap)
                .read_to_end(&mut out)
                .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
            if out.len() > l {
                return Err(DecompressError::TooLarge { limit: l });
            }
        }
        None => {
            let mut r = r;
            r.read_to_end(&mut out)
                .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        for c in [
            Compression::Identity,
            Compression::Deflate,
            Compression::Gzip,
        ] {
            let z = c.compress(&data);
            if c != Compression::Identity {
                assert!(z.len() < data.len() / 5);
            }
            assert_eq!(c.decompress(&z, None).unwrap(), data);
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::Gzip.compress(b"x")[..2], [0x1f, 0x8b]);
    }

    #[test]
    fn limit_is_enforced_while_inflating() {
        let zeros = vec![0u8; 8 << 20];
        let z = Compression::Gzip.compress(&zeros);
        assert!(z.len() < 64 << 10);
        assert_eq!(
            Compression::Gzip.decompress(&z, Some(1 << 20)),
            Err(DecompressError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            Compression::Gzip
                .decompress(&z, Some(8 << 20))
                .unwrap()
                .len(),
            8 << 20
        );
    }

    #[test]
    fn corrupt_data() {
        assert!(matches!(
            Compression::Gzip.decompress(b"not gzip at all", None),
            Err(DecompressError::Corrupt(_))
        ));
        let mut z = Compression::Deflate.compress(b"hello hello hello");
        let n = z.len();
        z[n - 3] ^= 0xff;
        assert!(matches!(
            Compression::Deflate.decompress(&z, None),
            Err(DecompressError::Corrupt(_))
        ));
    }
}
