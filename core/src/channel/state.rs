//! The five connectivity states (`doc/connectivity-semantics-and-api.md` in grpc/grpc),
//! numbered as C-core's `grpc_connectivity_state`.

/// A channel's connectivity state.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnectivityState {
    /// Not trying to connect; the next call (or a connect request) starts.
    Idle = 0,
    /// Establishing a connection (TCP, TLS, HTTP/2 preface).
    Connecting = 1,
    /// Connected; calls go out at once.
    Ready = 2,
    /// A connection attempt failed or a connection broke; the next attempt
    /// comes after a backoff. Fail-fast calls end with UNAVAILABLE.
    TransientFailure = 3,
    /// Closed by the application; final.
    Shutdown = 4,
}

impl ConnectivityState {
    /// All states, in numeric order.
    pub const ALL: [ConnectivityState; 5] = [
        ConnectivityState::Idle,
        ConnectivityState::Connecting,
        ConnectivityState::Ready,
        ConnectivityState::TransientFailure,
        ConnectivityState::Shutdown,
    ];

    /// The state for a number, or `None` when it is out of range.
    pub fn from_u32(n: u32) -> Option<ConnectivityState> {
        Self::ALL.get(n as usize).copied()
    }

    /// The upper-case name, e.g. `"TRANSIENT_FAILURE"`.
    pub fn name(self) -> &'static str {
        let s = self.name_with_nul();
        &s[..s.len() - 1]
    }

    /// [`ConnectivityState::name`] followed by a NUL byte (static: a C
    /// string needs no allocation).
    pub fn name_with_nul(self) -> &'static str {
        match self {
            ConnectivityState::Idle => "IDLE\0",
            ConnectivityState::Connecting => "CONNECTING\0",
            ConnectivityState::Ready => "READY\0",
            ConnectivityState::TransientFailure => "TRANSIENT_FAILURE\0",
            ConnectivityState::Shutdown => "SHUTDOWN\0",
        }
    }

    /// True when the spec's table allows going from `self` to `to`.
    pub fn may_become(self, to: ConnectivityState) -> bool {
        use ConnectivityState::*;
        matches!(
            (self, to),
            (Connecting, Ready | TransientFailure | Idle | Shutdown)
                | (Ready, TransientFailure | Idle | Shutdown)
                | (TransientFailure, Connecting | Shutdown)
                | (Idle, Connecting | Shutdown)
        )
    }
}

impl std::fmt::Display for ConnectivityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
