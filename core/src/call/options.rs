//! Per-call settings, send flags, messages to send, and the call's fixed
//! definition.

use crate::channel::service_config::{HedgingPolicy, MethodConfig, RetryPolicy};
use crate::channel::ChannelInner;
use crate::codec::compression::Compression;
use crate::codec::framing::Prefixed;
use crate::credentials::CallCredentials;
use crate::metadata::Metadata;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Per-call settings.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Absolute deadline (None = no deadline).
    pub deadline: Option<Instant>,
    /// Custom metadata sent with the request headers.
    pub metadata: Metadata,
    /// Queue the call until the channel is ready instead of failing fast
    /// (None: as the service config says, else fail fast).
    pub wait_for_ready: Option<bool>,
    /// Credentials for this call, added to the channel's.
    pub credentials: Option<CallCredentials>,
    /// Compression of this call's messages (None = the channel default).
    pub compression: Option<Compression>,
    /// The method returns exactly one response (unary / client streaming):
    /// zero or two responses end the call with UNIMPLEMENTED.
    pub unary_response: bool,
    /// Run done callbacks on the thread driving the I/O (a runtime task)
    /// instead of the blocking pool: no thread hand-off, but a callback
    /// must not block.
    pub inline_callbacks: bool,
}

impl CallOptions {
    /// Sets the deadline to now + `t`.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.deadline = Some(Instant::now() + t);
        self
    }
}

/// Flags for [`Call::send`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SendFlags {
    /// Half-close after this message (saves a frame).
    pub last: bool,
    /// Do not compress this message even if the call compresses (the
    /// CRIME/BEAST mitigation of the compression spec).
    pub no_compress: bool,
    /// The message may wait in the call's send buffer (up to
    /// [`CORK_LIMIT`]) and leave with a later message: many small messages
    /// then cost one write (gRPC's buffer hint). Flushed by the next send
    /// without the hint, `close_send`, or a full buffer.
    pub buffer_hint: bool,
}

impl SendFlags {
    /// Only `last`: the one message of a unary request.
    pub const LAST: SendFlags = SendFlags {
        last: true,
        no_compress: false,
        buffer_hint: false,
    };
}

/// Most bytes [`SendFlags::buffer_hint`] messages wait in a call's buffer.
pub const CORK_LIMIT: usize = 64 << 10;

/// A message to send.
pub enum Message<'a> {
    /// Bytes the sender keeps: copied into the frame.
    Copy(&'a [u8]),
    /// Written in place after room for the prefix: the buffer becomes the
    /// frame (no copy) unless the message is compressed.
    InPlace(Prefixed),
}

/// What a call is, fixed when it starts: shared by the call's state and
/// its attempts.
pub(crate) struct CallSpec {
    /// The channel the call runs on (its picker, settings and credentials).
    pub(crate) channel: Arc<ChannelInner>,
    /// `http://authority/method`.
    pub(crate) uri: http::Uri,
    pub(crate) opts: CallOptions,
    /// The algorithm messages are sent with.
    pub(crate) compression: Compression,
    /// The call's choice, else the service config's, else fail fast.
    pub(crate) wait_for_ready: bool,
    /// Message limits: the channel's, lowered by the service config's
    /// `maxRequestMessageBytes` / `maxResponseMessageBytes`.
    pub(crate) max_send: Option<usize>,
    pub(crate) max_recv: Option<usize>,
    /// The service config's settings for the method when they ask for
    /// retries or hedging and retries are on.
    pub(crate) retry: Option<Arc<MethodConfig>>,
}

impl CallSpec {
    /// The method's `retryPolicy`, when retries are on.
    #[inline]
    pub(crate) fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref().and_then(|m| m.retry_policy.as_ref())
    }

    /// The method's `hedgingPolicy`, when retries are on.
    #[inline]
    pub(crate) fn hedging_policy(&self) -> Option<&HedgingPolicy> {
        self.retry.as_ref().and_then(|m| m.hedging_policy.as_ref())
    }
}
