//! The gRPC length-prefixed message framing: 1-byte compressed flag,
//! 4-byte big-endian length, payload. DATA frame boundaries are unrelated to
//! message boundaries, so the decoder buffers across chunks.

use super::pool;
use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the message prefix.
pub const HEADER_LEN: usize = 5;

/// The prefix of a message of `len` bytes (callers keep `len` within
/// `u32`: the send limit, or [`Prefixed::new`]).
fn prefix(compressed: bool, len: usize) -> [u8; HEADER_LEN] {
    let mut p = [compressed as u8, 0, 0, 0, 0];
    p[1..].copy_from_slice(&(len as u32).to_be_bytes());
    p
}

/// Frames one message (a copy of it; large ones in a pooled buffer).
pub fn encode(payload: &[u8], compressed: bool) -> Bytes {
    let mut v = pool::vec(HEADER_LEN + payload.len());
    v.extend_from_slice(&prefix(compressed, payload.len()));
    v.extend_from_slice(payload);
    pool::into_bytes(v)
}

/// Appends one uncompressed message, framed, to `buf` (one copy).
pub fn append(buf: &mut BytesMut, payload: &[u8]) {
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&prefix(false, payload.len()));
    buf.extend_from_slice(payload);
}

/// A message written in place after room for its prefix: framed without
/// copying the payload (the application serializes straight into it).
#[derive(Debug)]
pub struct Prefixed(Vec<u8>);

impl Prefixed {
    /// `buf`: [`HEADER_LEN`] bytes of room (any content), then the payload.
    /// `None` when `buf` is shorter than the room or the payload is longer
    /// than the 4-byte length allows.
    pub fn new(buf: Vec<u8>) -> Option<Prefixed> {
        let len = buf.len().checked_sub(HEADER_LEN)?;
        u32::try_from(len).ok()?;
        Some(Prefixed(buf))
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.0[HEADER_LEN..]
    }

    /// The framed, uncompressed message (the same allocation).
    pub fn into_frame(mut self) -> Bytes {
        let p = prefix(false, self.0.len() - HEADER_LEN);
        self.0[..HEADER_LEN].copy_from_slice(&p);
        pool::into_bytes(self.0)
    }
}

/// One decoded message.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The compressed flag of the prefix.
    pub compressed: bool,
    /// The payload as received (still compressed if `compressed`).
    pub data: Bytes,
}

/// A decoding failure; the call ends with the status given by the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The prefix announces a message longer than the receive limit.
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The flag byte is neither 0 nor 1.
    BadFlag(u8),
}

/// Incremental decoder: push received chunks, pop complete messages.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max_len: Option<usize>,
    /// A large message being gathered in a pooled buffer.
    large: Option<Large>,
}

/// A message of at least `pool::MIN_POOLED` bytes, gathered straight into
/// its own (pooled) buffer.
#[derive(Debug)]
struct Large {
    data: Vec<u8>,
    len: usize,
    compressed: bool,
}

impl Decoder {
    /// A decoder enforcing `max_len` (None = unlimited) on announced lengths.
    pub fn new(max_len: Option<usize>) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            max_len,
            large: None,
        }
    }

    /// Appends a received chunk.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if let Some(l) = &mut self.large {
            let n = (l.len - l.data.len()).min(chunk.len());
            l.data.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
        }
        if chunk.is_empty() {
            return;
        }
        if self.large.is_none() && self.buf.len() < HEADER_LEN {
            // A large message whose prefix ends in this chunk goes straight
            // to its own buffer: its first bytes are not copied twice.
            let need = HEADER_LEN - self.buf.len();
            if chunk.len() > need {
                let mut p = [0; HEADER_LEN];
                p[..self.buf.len()].copy_from_slice(&self.buf);
                p[self.buf.len()..].copy_from_slice(&chunk[..need]);
                let rest = &chunk[need..];
                if let Some(mut l) = self.large_from(p, rest.len()) {
                    l.data.extend_from_slice(rest);
                    self.buf.clear();
                    self.large = Some(l);
                    return;
                }
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The buffer for a message announced by prefix `p` when it is large,
    /// acceptable (flag and limit; [`next_frame`](Self::next_frame) reports
    /// the others) and longer than the `have` bytes at hand.
    fn large_from(&self, p: [u8; HEADER_LEN], have: usize) -> Option<Large> {
        let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
        let ok = p[0] <= 1 && self.max_len.is_none_or(|m| len <= m);
        (ok && len >= pool::MIN_POOLED && len > have).then(|| Large {
            // Room for at most 16 MiB up front: a length announced by the
            // peer is only believed as far as bytes arrive.
            data: pool::vec(len.min(16 << 20)),
            len,
            compressed: p[0] == 1,
        })
    }

    /// True when bytes of an incomplete message are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.large.is_some()
    }

    /// Pops the next complete message, checking the limit as soon as the
    /// prefix is known (before the payload is buffered).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(l) = &self.large {
            if l.data.len() < l.len {
                return Ok(None);
            }
            let l = self.large.take().expect("checked above");
            return Ok(Some(Frame {
                compressed: l.compressed,
                data: pool::into_bytes(l.data),
            }));
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let flag = self.buf[0];
        if flag > 1 {
            return Err(DecodeError::BadFlag(flag));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if let Some(max) = self.max_len {
            if len > max {
                return Err(DecodeError::TooLarge { len, max });
            }
        }
        if self.buf.len() < HEADER_LEN + len {
            let p = [flag, self.buf[1], self.buf[2], self.buf[3], self.buf[4]];
            if let Some(mut l) = self.large_from(p, self.buf.len() - HEADER_LEN) {
                // Gathered in a buffer of its own from here on.
                l.data.extend_from_slice(&self.buf[HEADER_LEN..]);
                self.buf.clear();
                self.large = Some(l);
            } else {
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
            }
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let data = self.buf.split_to(len).freeze();
        Ok(Some(Frame {
            compressed: flag == 1,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_across_chunks() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(b"hello", false));
        wire.extend_from_slice(&encode(b"", false));
        wire.extend_from_slice(&encode(&[7u8; 300], false));
        let mut d = Decoder::new(None);
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.data);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][..], b"hello");
        assert!(got[1].is_empty());
        assert_eq!(got[2].len(), 300);
        assert!(!d.has_partial());
    }

    #[test]
    fn large_messages_split_anywhere() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(b"a", false));
        wire.extend_from_slice(&encode(&big, true));
        wire.extend_from_slice(&encode(b"bc", false));
        wire.extend_from_slice(&encode(&big[..pool::MIN_POOLED], false));
        for chunk_len in [1usize, 7, 16384, 65536, 1 << 20] {
            let mut d = Decoder::new(None);
            let mut got = Vec::new();
            for chunk in wire.chunks(chunk_len) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 4, "chunks of {chunk_len}");
            assert_eq!(&got[0].data[..], b"a");
            assert!(got[1].compressed && got[1].data == big);
            assert!(!got[2].compressed && &got[2].data[..] == b"bc");
            assert_eq!(&got[3].data[..], &big[..pool::MIN_POOLED]);
            assert!(!d.has_partial());
        }
        // Cut short inside a large message: partial.
        let mut d = Decoder::new(None);
        d.push(&wire[..100_000]);
        while d.next_frame().unwrap().is_some() {}
        assert!(d.has_partial());
    }

    #[test]
    fn limit_checked_on_prefix() {
        let mut d = Decoder::new(Some(10));
        d.push(&[0, 0, 0, 0, 11]);
        assert_eq!(
            d.next_frame(),
            Err(DecodeError::TooLarge { len: 11, max: 10 })
        );
        let mut d = Decoder::new(Some(10));
        d.push(&encode(&[1; 10], true));
        let f = d.next_frame().unwrap().unwrap();
        assert!(f.compressed);
    }

    #[test]
    fn prefixed_frames_in_place() {
        let mut buf = vec![9u8; HEADER_LEN];
        buf.extend_from_slice(b"hello");
        let p = Prefixed::new(buf).unwrap();
        assert_eq!(p.payload(), b"hello");
        let ptr = p.payload().as_ptr();
        let f = p.into_frame();
        assert_eq!(&f[..], &encode(b"hello", false)[..]);
        assert_eq!(f[HEADER_LEN..].as_ptr(), ptr, "no copy");
        assert!(Prefixed::new(vec![0; HEADER_LEN - 1]).is_none());
        assert_eq!(
            Prefixed::new(vec![0; HEADER_LEN])
                .unwrap()
                .into_frame()
                .len(),
            HEADER_LEN
        );
    }

    #[test]
    fn large_message_from_its_first_chunk() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let wire = encode(&big, false);
        // The prefix within the first chunk, split across the first two,
        // alone in the first, and the whole message in one chunk.
        for first in [3usize, 5, 6, 4096, wire.len()] {
            let mut d = Decoder::new(Some(big.len()));
            d.push(&wire[..first]);
            let mut got = d.next_frame().unwrap();
            for chunk in wire[first..].chunks(16384) {
                assert!(got.is_none());
                d.push(chunk);
                got = d.next_frame().unwrap();
            }
            assert_eq!(got.expect("complete").data, big, "first chunk {first}");
            assert!(!d.has_partial());
        }
        // What the shortcut does not take is still refused by next_frame.
        let mut d = Decoder::new(Some(100_000));
        d.push(&wire[..4096]);
        assert_eq!(
            d.next_frame(),
            Err(DecodeError::TooLarge {
                len: big.len(),
                max: 100_000
            })
        );
        let mut bad = wire[..4096].to_vec();
        bad[0] = 2;
        let mut d = Decoder::new(None);
        d.push(&bad);
        assert_eq!(d.next_frame(), Err(DecodeError::BadFlag(2)));
    }

    #[test]
    fn bad_flag() {
        let mut d = Decoder::new(None);
        d.push(&[2, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(DecodeError::BadFlag(2)));
    }
}
