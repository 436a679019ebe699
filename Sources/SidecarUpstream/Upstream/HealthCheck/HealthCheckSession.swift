import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore

/// One host's active checks: its health state, its (possibly reused) connection, the check in flight and
/// the timers. Lives on its checker's event loop and reports each finished check to the checker, which keeps
/// the stats and decides when the next one runs. Envoy's `ActiveHealthCheckSession` with its HTTP and TCP
/// subclasses (source/extensions/health_checkers/{common,http,tcp}/).
///
/// ```
///   idle ──probe──▶ connecting ──connected──▶ awaiting answer ──answer judged──▶ idle (connection kept
///    ▲  (no link)        │                        │    │                          when reuse_connection
///    │                   └─refused──▶ network     │    └─closed/reset──▶ network   and the host agreed)
///    │                                failure     └──timeout──▶ close, timeout failure
///    └─ with a kept connection, probe sends the next check on it directly
/// ```
package final class HealthCheckSession {
    /// How one check ended.
    package enum Outcome: Equatable {
        case passed(degraded: Bool)
        case failed(HostHealthCheckState.FailureType, immediateFailHeader: Bool)
    }

    /// The connection: none, being made, or open. Each gets a fresh id, so late events from a connection
    /// this session already gave up on (after a timeout) are told apart and ignored.
    private enum Link {
        case none
        case connecting(id: UInt64)
        case connected(id: UInt64, channel: Channel)
    }

    /// What an HTTP answer said, kept from its head to its end.
    private struct ResponseHead {
        var status: Int
        var keepAlive: Bool
        var immediateFail: Bool
        var degraded: Bool
    }

    package var host: UpstreamHost
    package var state: HostHealthCheckState
    /// The host's position in the checker's list, as reported in transitions.
    package var index: Int
    package weak var checker: ActiveHealthChecker?

    private let eventLoop: EventLoop
    private let config: HealthCheckConfig
    /// The HTTP `host` header: the configured `host`, else the cluster name (Envoy's
    /// `HealthCheckerFactory::getHostname`; per-endpoint `health_check_config.hostname` is not supported).
    private let authority: String
    private var link = Link.none
    private var nextLinkID: UInt64 = 0
    private var inFlight = false
    private var response: ResponseHead?
    private var received: [UInt8] = []
    private var intervalTimer: Scheduled<Void>?
    private var timeoutTimer: Scheduled<Void>?

    package init(host: UpstreamHost, index: Int, eventLoop: EventLoop, config: HealthCheckConfig, clusterName: String) {
        self.host = host
        self.index = index
        self.eventLoop = eventLoop
        self.config = config
        self.state = HostHealthCheckState(
            healthyThreshold: config.healthyThreshold, unhealthyThreshold: config.unhealthyThreshold)
        if case .http(let http) = config.kind, let h = http.host, !h.isEmpty {
            authority = h
        } else {
            authority = clusterName
        }
    }

    /// Runs `action` after `nanoseconds` (the interval timer). Replaces a pending one.
    package func schedule(in nanoseconds: Int64, _ action: @escaping () -> Void) {
        intervalTimer?.cancel()
        intervalTimer = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanoseconds)) { action() }
    }

    /// Starts one check (Envoy's `onIntervalBase`): send on the kept connection, or connect first, and give
    /// the whole exchange `timeout`.
    package func probe() {
        eventLoop.assertInEventLoop()
        guard !inFlight else { return }
        inFlight = true
        response = nil
        received.removeAll(keepingCapacity: true)
        timeoutTimer = eventLoop.assumeIsolated().scheduleTask(in: config.timeout.timeAmount) { [self] in
            timedOut()
        }
        switch link {
        case .connected(_, let channel) where channel.isActive:
            sendCheck(on: channel)
        case .connected, .none:
            connect()
        case .connecting:
            // A connect this session still waits for (cannot happen: a check ends only once its connect
            // ended or was given up); keep waiting for it rather than opening a second one.
            break
        }
    }

    /// Ends the session: no more checks, the connection closed (Envoy's `onDeferredDeleteBase`).
    package func stop() {
        intervalTimer?.cancel()
        intervalTimer = nil
        timeoutTimer?.cancel()
        timeoutTimer = nil
        inFlight = false
        closeLink()
    }

    // MARK: - Connection

    private func connect() {
        nextLinkID &+= 1
        let id = nextLinkID
        link = .connecting(id: id)
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let isHTTP: Bool
        switch config.kind {
        case .http: isHTTP = true
        case .tcp: isHTTP = false
        }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(config.timeout.timeAmount)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = bound.value
                    if isHTTP {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers(leftOverBytesStrategy: .fireError)
                        try channel.pipeline.syncOperations.addHandler(HTTPHealthCheckHandler(session: session, id: id))
                    } else {
                        try channel.pipeline.syncOperations.addHandler(TCPHealthCheckHandler(session: session, id: id))
                    }
                }
            }
            .connect(to: host.healthCheckAddress)
            .whenComplete { result in bound.value.connectCompleted(id: id, result) }
    }

    private func connectCompleted(id: UInt64, _ result: Result<Channel, Error>) {
        guard case .connecting(let current) = link, current == id else {
            // Given up on (timeout, stop): the connection is not wanted any more.
            if case .success(let channel) = result { channel.close(promise: nil) }
            return
        }
        switch result {
        case .failure:
            // Refused, unreachable, or connect timeout: a network failure (Envoy: the codec client's
            // connection closes, the stream is reset, `onResetStream` -> `handleFailure(NETWORK)`).
            link = .none
            finish(.failed(.network, immediateFailHeader: false))
        case .success(let channel):
            link = .connected(id: id, channel: channel)
            if case .tcp(let tcp) = config.kind, tcp.receive.isEmpty {
                // Connect-only check: connected is healthy; close at once, and `send` is not written
                // (Envoy's `TcpActiveHealthCheckSession::onEvent(Connected)` with no receive bytes).
                closeLink()
                finish(.passed(degraded: false))
                return
            }
            sendCheck(on: channel)
        }
    }

    /// Closes the connection on purpose. The link is cleared first: closing fires `channelInactive` at once,
    /// and that close must not count as the host dropping the connection.
    private func closeLink() {
        let old = link
        link = .none
        if case .connected(_, let channel) = old { channel.close(promise: nil) }
    }

    private func isCurrent(_ id: UInt64) -> Bool {
        switch link {
        case .none: false
        case .connecting(let current), .connected(let current, _): current == id
        }
    }

    // MARK: - The check

    private func sendCheck(on channel: Channel) {
        switch config.kind {
        case .http(let http):
            // Exactly Envoy's request (HttpActiveHealthCheckSession::onInterval, observed on Envoy 1.40):
            // `GET <path> HTTP/1.1`, `host`, `user-agent: Envoy/HC`, no body and no `connection` header;
            // HTTP/1.1 keeps the connection by default, and Envoy closes it itself when it does not reuse it.
            var headers = HTTPHeaders()
            headers.add(name: "host", value: authority)
            headers.add(name: "user-agent", value: "Envoy/HC")
            let head = HTTPRequestHead(
                version: .http1_1, method: HTTPMethod(rawValue: http.method), uri: http.path, headers: headers)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        case .tcp(let tcp):
            // Written on every check, also on a kept connection (TcpActiveHealthCheckSession::onInterval).
            if !tcp.send.isEmpty {
                channel.writeAndFlush(ByteBuffer(bytes: tcp.send), promise: nil)
            }
        }
    }

    fileprivate func responseHeadReceived(id: UInt64, _ head: HTTPResponseHead) {
        guard isCurrent(id), inFlight else { return }
        response = ResponseHead(
            status: Int(head.status.code),
            keepAlive: head.isKeepAlive,
            immediateFail: head.headers.contains(name: "x-envoy-immediate-health-check-fail"),
            degraded: head.headers.contains(name: "x-envoy-degraded"))
    }

    /// A complete HTTP answer (Envoy's `onResponseComplete`).
    fileprivate func responseEnded(id: UInt64) {
        guard isCurrent(id) else { return }
        guard inFlight else {
            // An answer nobody asked for: the connection is out of step, start afresh next time.
            closeLink()
            return
        }
        // The end of a 1xx answer: the real one is still to come.
        guard let r = response else { return }
        // `shouldClose`: not reusing, or the host said `connection: close` (or HTTP/1.0 without keep-alive).
        // The check's result stands either way; only the next check opens a new connection.
        if !config.reuseConnection || !r.keepAlive { closeLink() }
        guard case .http(let http) = config.kind else { return }
        if HealthCheckVerdict.http(status: r.status, config: http) {
            finish(.passed(degraded: r.degraded))
        } else {
            // A wrong status (a 503 too) is an ACTIVE failure: the host answered, and said no.
            finish(.failed(.active, immediateFailHeader: r.immediateFail))
        }
    }

    fileprivate func bytesReceived(id: UInt64, _ buffer: ByteBuffer) {
        guard isCurrent(id), inFlight, case .tcp(let tcp) = config.kind else { return }
        received.append(contentsOf: buffer.readableBytesView)
        guard HealthCheckVerdict.tcp(received: received, config: tcp) else { return }
        if !config.reuseConnection { closeLink() }
        finish(.passed(degraded: false))
    }

    /// The connection closed without us closing it. During a check that is a network failure (HTTP:
    /// `onResetStream`; TCP: `onEvent(RemoteClose)`). Between checks the connection is just dropped and the
    /// next check opens a new one. Envoy's TCP checker counts that case as a network failure too (a host that
    /// answers and then closes a reused connection scores a success and a failure per check, envoyproxy/envoy
    /// #28050); we deliberately do not, as its HTTP checker does not.
    fileprivate func connectionClosed(id: UInt64) {
        guard isCurrent(id) else { return }
        link = .none
        if inFlight { finish(.failed(.network, immediateFailHeader: false)) }
    }

    /// No complete answer in time: close the connection and fail (`onTimeoutBase` -> `onTimeout` closes,
    /// `handleFailure(NETWORK_TIMEOUT)`).
    private func timedOut() {
        timeoutTimer = nil
        guard inFlight else { return }
        closeLink()
        finish(.failed(.networkTimeout, immediateFailHeader: false))
    }

    private func finish(_ outcome: Outcome) {
        inFlight = false
        timeoutTimer?.cancel()
        timeoutTimer = nil
        checker?.checkFinished(self, outcome)
    }
}

@available(*, unavailable) extension HealthCheckSession: Sendable {}

/// Hands an HTTP health check connection's events to its session.
package final class HTTPHealthCheckHandler: ChannelInboundHandler {
    package typealias InboundIn = HTTPClientResponsePart

    private let session: HealthCheckSession
    private let id: UInt64

    package init(session: HealthCheckSession, id: UInt64) {
        self.session = session
        self.id = id
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            // 1xx heads announce the real answer; wait for it.
            if head.status.code >= 200 { session.responseHeadReceived(id: id, head) }
        case .body:
            break
        case .end:
            session.responseEnded(id: id)
        }
    }

    package func channelInactive(context: ChannelHandlerContext) {
        session.connectionClosed(id: id)
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A malformed answer: close, which fails the check as a network failure, as Envoy's codec does.
        context.close(promise: nil)
    }
}

@available(*, unavailable) extension HTTPHealthCheckHandler: Sendable {}

/// Hands a TCP health check connection's bytes and close to its session.
package final class TCPHealthCheckHandler: ChannelInboundHandler {
    package typealias InboundIn = ByteBuffer

    private let session: HealthCheckSession
    private let id: UInt64

    package init(session: HealthCheckSession, id: UInt64) {
        self.session = session
        self.id = id
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.bytesReceived(id: id, unwrapInboundIn(data))
    }

    package func channelInactive(context: ChannelHandlerContext) {
        session.connectionClosed(id: id)
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable) extension TCPHealthCheckHandler: Sendable {}
