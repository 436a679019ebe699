/// The request in flight on an HTTP/1 connection, as a pure value: whether its request and its response have
/// ended, whether the connection may carry another request, and when the stream is finished. The connection
/// handler feeds it the codec's events and runs the action it returns; nothing here touches a channel.
///
///     idle ──requestHead──▶ open(request: receiving, response: none)
///     open: requestEnded ─▶ request complete        responseHeadCommitted ─▶ response started
///           responseEnded ─▶ response complete
///     open ──(request complete or closeAfterResponse) and response complete──▶ finishStream
///     finishStream ──streamFinished──▶ idle, then readNextRequest (keep-alive) or closeConnection
///
/// `closeAfterResponse` is set by a local reply on a connection that will not be kept alive: such a response
/// ends the stream (and the connection) without waiting for the rest of the request, as Envoy's HTTP/1 codec
/// does when it answers early.
struct HTTP1StreamLifecycle {
    enum RequestSide: Equatable { case receiving, complete }
    enum ResponseSide: Equatable { case none, started, complete }

    private enum State: Equatable {
        case idle
        case open(request: RequestSide, response: ResponseSide)
    }

    enum Action: Equatable {
        case none
        /// Both directions are done: finish the stream (then call `streamFinished`).
        case finishStream
    }

    enum AfterStream: Equatable {
        case readNextRequest
        case closeConnection
    }

    private var state = State.idle
    /// The connection may carry another request after this one.
    private(set) var keepAlive = true
    private(set) var closeAfterResponse = false

    var isOpen: Bool { state != .idle }

    var requestComplete: Bool {
        switch state {
        case .idle: return false
        case .open(let request, _): return request == .complete
        }
    }

    var responseStarted: Bool {
        switch state {
        case .idle: return false
        case .open(_, let response): return response != .none
        }
    }

    var responseComplete: Bool {
        switch state {
        case .idle: return false
        case .open(_, let response): return response == .complete
        }
    }

    /// A request head arrived; `keepAlive`: what its headers and the connection's drain allow.
    mutating func requestHead(keepAlive: Bool) {
        state = .open(request: .receiving, response: .none)
        self.keepAlive = keepAlive
        closeAfterResponse = false
    }

    /// Something decided this is the connection's last request.
    mutating func disableKeepAlive() {
        keepAlive = false
    }

    mutating func requestEnded() -> Action {
        switch state {
        case .idle:
            return .none
        case .open(_, let response):
            state = .open(request: .complete, response: response)
            return response == .complete ? .finishStream : .none
        }
    }

    /// The response head is committed (sent, or decided by the router); idempotent.
    mutating func responseHeadCommitted() {
        switch state {
        case .idle:
            return
        case .open(let request, let response):
            if response == .none { state = .open(request: request, response: .started) }
        }
    }

    mutating func responseEnded() -> Action {
        switch state {
        case .idle:
            return .none
        case .open(let request, _):
            state = .open(request: request, response: .complete)
            return request == .complete || closeAfterResponse ? .finishStream : .none
        }
    }

    /// The proxy answers the request itself; `closeConnection`: this answer must end the connection.
    mutating func localReply(closeConnection: Bool) {
        if closeConnection { keepAlive = false }
        closeAfterResponse = !keepAlive
    }

    /// The stream is over: what the connection does next.
    mutating func streamFinished(draining: Bool) -> AfterStream {
        state = .idle
        return !keepAlive || draining ? .closeConnection : .readNextRequest
    }
}
