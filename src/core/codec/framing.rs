//! The gRPC length-prefixed message framing: 1-byte compressed flag,
//! 4-byte big-endian length, payload. DATA frame boundaries are unrelated to
//! message boundaries, so the decoder buffers across chunks.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the message prefix.
pub const HEADER_LEN: usize = 5;

/// Frames one message.
pub fn encode(payload: &[u8], compressed: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + payload.len());
    b.put_u8(compressed as u8);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
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
}

impl Decoder {
    /// A decoder enforcing `max_len` (None = unlimited) on announced lengths.
    pub fn new(max_len: Option<usize>) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            max_len,
        }
    }

    /// Appends a received chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// True when bytes of an incomplete message are buffered.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Pops the next complete message, checking the limit as soon as the
    /// prefix is known (before the payload is buffered).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
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
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
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
    fn bad_flag() {
        let mut d = Decoder::new(None);
        d.push(&[2, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(DecodeError::BadFlag(2)));
    }
}
