//! Wire encodings: the 5-byte message framing, `grpc-timeout` and the
//! `grpc-message` percent-encoding.

#![forbid(unsafe_code)]

pub mod compression;
pub mod framing;
pub mod percent;
pub mod pool;
pub mod timeout;
