/// The lifecycle of one tcp_proxy connection pair, without channels: the session feeds it events and
/// runs the actions it returns.
///
///     connecting ──upstreamConnected──▶ proxying(downstream input open?, upstream input open?)
///         │                                  │  inputClosed(side): half-close the other side's output
///         │                                  │  last input closed, a side closed: finish (flush, close)
///         │                                  │  idle timeout: close at once
///         └──connect failed, downstream gone─┴─────────────────────────────▶ closed
///            or access denied (network RBAC: no upstream, the downstream is refused)
struct TCPProxyStateMachine {
    enum Side: Equatable {
        case downstream, upstream
        var other: Side { self == .downstream ? .upstream : .downstream }
    }

    enum Action: Equatable {
        case none
        /// The upstream is ready: start moving bytes (resume the downstream's held read); when the client
        /// already finished sending (FIN read with its first bytes), pass that on once they are written.
        case startProxying(downstreamAlreadyFinished: Bool)
        /// The peer of `side` finished sending: shut down the output towards `side`'s partner.
        case shutdownOutput(towards: Side)
        /// Deliver what is already queued towards `side`, then close both channels (the other side ended).
        case finish(flushing: Side)
        /// Close both channels at once (each close is idempotent).
        case closeAll
        /// End the downstream as a refused connection (`RefusedConnection`); there is no upstream.
        case refuseDownstream
    }

    private enum State: Equatable {
        case connecting(downstreamInputClosed: Bool)
        case proxying(downstreamInputOpen: Bool, upstreamInputOpen: Bool)
        case closed
    }

    private var state = State.connecting(downstreamInputClosed: false)

    var isProxying: Bool {
        if case .proxying = state { return true }
        return false
    }

    var isClosed: Bool { state == .closed }

    mutating func upstreamConnected() -> Action {
        switch state {
        case .connecting(let finished):
            state = .proxying(downstreamInputOpen: !finished, upstreamInputOpen: true)
            return .startProxying(downstreamAlreadyFinished: finished)
        case .proxying, .closed:
            // The downstream left while we were connecting: drop the new upstream too.
            return .closeAll
        }
    }

    /// A network RBAC filter denied the connection before any upstream connection was made.
    mutating func accessDenied() -> Action {
        switch state {
        case .connecting:
            state = .closed
            return .refuseDownstream
        case .proxying, .closed:
            return .none
        }
    }

    mutating func upstreamConnectFailed() -> Action {
        switch state {
        case .connecting, .proxying:
            state = .closed
            return .closeAll
        case .closed:
            return .none
        }
    }

    /// A side's peer sent FIN.
    mutating func inputClosed(_ side: Side) -> Action {
        switch state {
        case .connecting:
            // The client sent everything (a listener filter may already hold its bytes) before the
            // upstream was there: forward the FIN after them once connected. Only the downstream reads
            // while connecting.
            state = .connecting(downstreamInputClosed: true)
            return .none
        case .proxying(var down, var up):
            switch side {
            case .downstream: down = false
            case .upstream: up = false
            }
            if !down && !up {
                state = .closed
                return .finish(flushing: side.other)
            }
            state = .proxying(downstreamInputOpen: down, upstreamInputOpen: up)
            return .shutdownOutput(towards: side.other)
        case .closed:
            return .none
        }
    }

    /// A channel closed (reset, error, or our own close).
    mutating func channelInactive(_ side: Side) -> Action {
        switch state {
        case .connecting:
            state = .closed
            return .closeAll
        case .proxying:
            state = .closed
            return .finish(flushing: side.other)
        case .closed:
            return .none
        }
    }

    mutating func idleTimeoutFired() -> Action {
        switch state {
        case .connecting, .closed:
            return .none
        case .proxying:
            state = .closed
            return .closeAll
        }
    }
}
