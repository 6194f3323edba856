//! gRPC status codes, the status object, and every mapping from transport
//! events (HTTP status, RST_STREAM, connection errors) to a gRPC status.

#![forbid(unsafe_code)]

use crate::metadata::Metadata;

/// A gRPC status code, numbered exactly as the gRPC specification
/// (`doc/statuscodes.md` in grpc/grpc): 0 OK ... 16 UNAUTHENTICATED.
///
/// This is the outcome of an RPC. It is a separate code space from
/// `rgrpc_result`, which says whether an API function itself worked.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Not an error; returned on success.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error (also: a status that could not be parsed).
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission to execute the operation.
    PermissionDenied = 7,
    /// Some resource has been exhausted (also: a message exceeded a size limit).
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or not supported.
    Unimplemented = 12,
    /// Internal error (also: protocol violations by the server).
    Internal = 13,
    /// The service is currently unavailable (also: connection failures).
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// All codes, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a number, or `None` when it is out of range.
    pub fn from_u32(n: u32) -> Option<Code> {
        Code::ALL.get(n as usize).copied()
    }

    /// The canonical upper-case name, e.g. `"DEADLINE_EXCEEDED"`.
    pub fn name(self) -> &'static str {
        let s = self.name_with_nul();
        &s[..s.len() - 1]
    }

    /// [`Code::name`] followed by a NUL byte (static: a C string needs no
    /// allocation).
    pub fn name_with_nul(self) -> &'static str {
        match self {
            Code::Ok => "OK\0",
            Code::Cancelled => "CANCELLED\0",
            Code::Unknown => "UNKNOWN\0",
            Code::InvalidArgument => "INVALID_ARGUMENT\0",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED\0",
            Code::NotFound => "NOT_FOUND\0",
            Code::AlreadyExists => "ALREADY_EXISTS\0",
            Code::PermissionDenied => "PERMISSION_DENIED\0",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED\0",
            Code::FailedPrecondition => "FAILED_PRECONDITION\0",
            Code::Aborted => "ABORTED\0",
            Code::OutOfRange => "OUT_OF_RANGE\0",
            Code::Unimplemented => "UNIMPLEMENTED\0",
            Code::Internal => "INTERNAL\0",
            Code::Unavailable => "UNAVAILABLE\0",
            Code::DataLoss => "DATA_LOSS\0",
            Code::Unauthenticated => "UNAUTHENTICATED\0",
        }
    }

    /// Parses a `grpc-status` header value. Anything that is not a decimal
    /// number in range maps to `None` (the caller reports UNKNOWN).
    pub fn parse_header(value: &[u8]) -> Option<Code> {
        if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u32 = std::str::from_utf8(value).ok()?.parse().ok()?;
        Code::from_u32(n)
    }

    /// gRPC status for an HTTP status when `grpc-status` is missing
    /// (`doc/http-grpc-status-mapping.md` in grpc/grpc).
    pub fn from_http_status(http: u16) -> Code {
        match http {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            431 => Code::Internal,
            _ => Code::Unknown,
        }
    }

    /// gRPC status for an RST_STREAM error code received from the server
    /// (`doc/PROTOCOL-HTTP2.md`, "Errors").
    pub fn from_rst_stream(reason: u32) -> Code {
        match reason {
            0x7 => Code::Unavailable,       // REFUSED_STREAM
            0x8 => Code::Cancelled,         // CANCEL
            0xb => Code::ResourceExhausted, // ENHANCE_YOUR_CALM
            0xc => Code::PermissionDenied,  // INADEQUATE_SECURITY
            _ => Code::Internal,            // NO_ERROR, PROTOCOL, INTERNAL, FLOW_CONTROL, ...
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The final status of an RPC: code, details text and trailing metadata.
#[derive(Clone, Debug)]
pub struct Status {
    code: Code,
    message: String,
    trailers: Metadata,
    /// The message with a trailing NUL, made on first request.
    message_nul: std::sync::OnceLock<Box<str>>,
}

impl Status {
    /// A status with a code and a message and no trailing metadata.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status::with_trailers(code, message, Metadata::new())
    }

    /// A status with trailing metadata.
    pub fn with_trailers(code: Code, message: impl Into<String>, trailers: Metadata) -> Status {
        Status {
            code,
            message: message.into(),
            trailers,
            message_nul: std::sync::OnceLock::new(),
        }
    }

    /// The status code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The details text (UTF-8, percent-decoded from `grpc-message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details followed by one NUL byte, for callers that lend the
    /// text out NUL-terminated (an embedded NUL, possible only from a `%00`
    /// in `grpc-message`, becomes U+FFFD). Made once, on first request.
    pub fn message_with_nul(&self) -> &str {
        self.message_nul.get_or_init(|| with_nul(&self.message))
    }

    /// The trailing metadata (without `grpc-status` and `grpc-message`).
    pub fn trailers(&self) -> &Metadata {
        &self.trailers
    }

    /// True when the code is OK.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// `s` with every NUL replaced by U+FFFD, then one NUL at the end.
pub fn with_nul(s: &str) -> Box<str> {
    let mut t = s.replace('\0', "\u{FFFD}");
    t.push('\0');
    t.into_boxed_str()
}

/// Maps an h2 error seen on a stream to the status the client reports.
pub(crate) fn from_h2_error(e: &h2::Error) -> Status {
    if e.is_go_away() {
        let r = e.reason().map(u32::from).unwrap_or(0);
        if e.is_library() && r == 0xb {
            // h2 closed the connection because the server flooded it:
            // CONTINUATION frames past the header list limit, tiny DATA
            // frames past the budget, or RST_STREAM past the limit.
            return Status::new(
                Code::ResourceExhausted,
                format!(
                    "the server sent more than the client accepts (a header block over the metadata limit, or a frame flood); the client closed the connection: {e}"
                ),
            );
        }
        if e.is_remote() && r == 0xb {
            return Status::new(
                Code::Unavailable,
                format!("server sent GOAWAY ENHANCE_YOUR_CALM: {e}"),
            );
        }
        return Status::new(
            Code::Unavailable,
            format!("connection closed by GOAWAY: {e}"),
        );
    }
    if e.is_reset() && e.is_remote() {
        let r = e.reason().map(u32::from).unwrap_or(0);
        return Status::new(
            Code::from_rst_stream(r),
            format!("stream reset by the server (RST_STREAM {})", reason_name(r)),
        );
    }
    if e.is_io() {
        return Status::new(Code::Unavailable, format!("connection broken: {e}"));
    }
    if e.is_reset() {
        // We reset the stream ourselves (cancel / protocol error we detected).
        let r = e.reason().map(u32::from).unwrap_or(0);
        if r == 0x8 {
            return Status::new(Code::Cancelled, "call cancelled");
        }
        return Status::new(Code::Internal, format!("HTTP/2 protocol error: {e}"));
    }
    let msg = e.to_string();
    if msg.contains("connection closed") || msg.contains("broken pipe") {
        return Status::new(Code::Unavailable, format!("connection closed: {e}"));
    }
    Status::new(Code::Internal, format!("HTTP/2 error: {e}"))
}

fn reason_name(r: u32) -> &'static str {
    match r {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "unknown error code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
            assert_eq!(Code::from_u32(i as u32), Some(*c));
        }
        assert_eq!(Code::from_u32(17), None);
        assert_eq!(Code::Unauthenticated.name(), "UNAUTHENTICATED");
    }

    #[test]
    fn grpc_status_header() {
        assert_eq!(Code::parse_header(b"0"), Some(Code::Ok));
        assert_eq!(Code::parse_header(b"14"), Some(Code::Unavailable));
        assert_eq!(Code::parse_header(b"17"), None);
        assert_eq!(Code::parse_header(b"-1"), None);
        assert_eq!(Code::parse_header(b""), None);
        assert_eq!(Code::parse_header(b"1 "), None);
    }

    #[test]
    fn http_mapping() {
        assert_eq!(Code::from_http_status(400), Code::Internal);
        assert_eq!(Code::from_http_status(401), Code::Unauthenticated);
        assert_eq!(Code::from_http_status(403), Code::PermissionDenied);
        assert_eq!(Code::from_http_status(404), Code::Unimplemented);
        for s in [429, 502, 503, 504] {
            assert_eq!(Code::from_http_status(s), Code::Unavailable);
        }
        assert_eq!(Code::from_http_status(431), Code::Internal);
        assert_eq!(Code::from_http_status(200), Code::Unknown);
        assert_eq!(Code::from_http_status(500), Code::Unknown);
    }

    #[test]
    fn rst_mapping() {
        assert_eq!(Code::from_rst_stream(0), Code::Internal);
        assert_eq!(Code::from_rst_stream(7), Code::Unavailable);
        assert_eq!(Code::from_rst_stream(8), Code::Cancelled);
        assert_eq!(Code::from_rst_stream(0xb), Code::ResourceExhausted);
        assert_eq!(Code::from_rst_stream(0xc), Code::PermissionDenied);
        assert_eq!(Code::from_rst_stream(1), Code::Internal);
    }
}
