//! Why a call operation, or a call start, did not do what was asked.

/// Why a call operation did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The call has ended (or the server has closed the stream); the status
    /// is available from `finish`.
    Ended,
    /// `close_send` (or a send with `last`) was already done.
    SendClosed,
    /// Another thread is in the same kind of operation on this call, or
    /// messages are delivered to a message callback.
    Busy(&'static str),
    /// The runtime could not be used (e.g. blocking from a foreign
    /// single-threaded tokio runtime).
    Runtime(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ended => {
                f.write_str("the call has ended; its status is available from finish")
            }
            CallError::SendClosed => f.write_str("the sending side of the call is already closed"),
            CallError::Busy(what) => write!(f, "{what}"),
            CallError::Runtime(m) => write!(f, "runtime error: {m}"),
        }
    }
}

/// Why a call could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The channel was closed.
    ChannelClosed,
    /// The method name is not a valid gRPC path (`/package.Service/Method`).
    InvalidMethod(String),
    /// The runtime could not start.
    Runtime(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::ChannelClosed => f.write_str("the channel is closed"),
            StartError::InvalidMethod(m) => write!(f, "invalid method: {m}"),
            StartError::Runtime(m) => write!(f, "runtime error: {m}"),
        }
    }
}
