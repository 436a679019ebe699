import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import SidecarCore
import SidecarUpstream
import SidecarTracing

/// One downstream HTTP/1.1 connection. It routes each request, forwards it on a pooled upstream
/// connection of its own event loop, and streams both bodies with backpressure: downstream reads stop
/// while the upstream cannot take more, and upstream reads stop while the downstream cannot.
///
/// Requests on one connection are handled one at a time. Pipelined requests that arrive while a
/// response is in flight wait in `queued` (bounded: reads stop when it is full) and are replayed in
/// order once the response has ended. Keeping reads on between requests avoids re-arming epoll twice
/// per request, which `HTTPServerPipelineHandler` would do.
///
/// A request whose route has a retry policy keeps its body (up to the buffer limit) so that a failed attempt
/// can be replayed on another host after a back-off; see `HTTPProxyHandler+Upstream.swift`. The phases below are
/// the connection's view (where request parts go, when reads are held); the attempts themselves are
/// `RouterAttemptStateMachine`'s.
///
///     idle ──head──▶ connecting ──connected──▶ forwarding ──response end──▶ idle
///       │              ▲    │                     │
///       │              │    └──connect failure────┤ retriable failure
///       │              └────── backoff ◀──────────┘
///       └─local reply / not retried / timeout──▶ discarding ──request end──▶ idle
final class HTTPProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    enum Phase {
        /// Between requests.
        case idle
        /// The request's HTTP filters run; the router has not acted on it yet (a filter may hold it, e.g. a
        /// fault delay).
        case decoding
        /// Waiting for an upstream connection; request parts wait in `pending`.
        case connecting
        /// An upstream connection carries the request.
        case forwarding(UpstreamConnection)
        /// A failed attempt will be retried when the back-off timer fires.
        case backoff
        /// The response is decided (or sent); the rest of the request body is dropped.
        case discarding
    }

    let worker: Worker
    let listener: ListenerRuntime
    var context: ChannelHandlerContext!
    var phase = Phase.idle

    // The request in flight.
    /// Whether the request and response in flight have ended, and whether the connection is kept alive.
    var lifecycle = HTTP1StreamLifecycle()
    var keepAlive: Bool { lifecycle.keepAlive }
    var requestComplete: Bool { lifecycle.requestComplete }
    var responseStarted: Bool { lifecycle.responseStarted }
    var responseComplete: Bool { lifecycle.responseComplete }
    var closeAfterResponse: Bool { lifecycle.closeAfterResponse }
    var ignoringInformational = false
    /// The request asks for an HTTP/1.1 upgrade the connection manager tunnels (its `Upgrade` value); the 101 that
    /// accepts it is on its way (`upgradeAccepted`), or was sent and the connections are a tunnel (`upgraded`).
    var upgradeRequested: String?
    /// The upstream's response head ended its stream (HTTP/2): the head goes down with the end, after the upstream
    /// side is released (`pendingEndHead` holds it meanwhile).
    var headEndsStream = false
    var pendingEndHead: HTTPResponseHead?
    var upgradeAccepted = false
    var upgraded = false
    var requestActive = false
    /// The route timeout (see `LazyDeadlineTimer`).
    var routeTimer = LazyDeadlineTimer()
    var upstreamStart = NIODeadline.uptimeNanoseconds(0)
    var cluster: ClusterInfo?
    var responseMutations: [HeaderMutations] = []
    var downstreamVersion = HTTPVersion.http1_1
    var routeTimeout = ProtoDuration.seconds(15)
    /// The request being forwarded, its attempts and retry state.
    var upstream: UpstreamRequest?
    /// `stream_idle_timeout` (or the route's `idle_timeout`) of the request in flight; nil: disabled.
    var streamIdleTimeout: TimeAmount?
    /// Bumped by every read in either direction. Reading the clock per read costs a syscall where the
    /// clock source has no vDSO, so idleness is judged by this counter at quarter-timeout ticks instead.
    var streamActivity: UInt32 = 0
    /// One timer per connection ticking every quarter of the idle timeout while a request is active.
    var idleTimer: ArmedTimer?
    var idleTick = TimeAmount.zero
    /// The HTTP/2 connection's timers, for a stream's handler (see `StreamTimerHub`).
    var timerHub: StreamTimerHub?
    var idleQuietTicks = 0
    var idleActivitySeen: UInt32 = 0

    var readPending = false
    var draining = false
    /// Requests this connection has carried (max_requests_per_connection), and when it was accepted.
    var requestsOnConnection = 0
    var connectedAt = NIODeadline.uptimeNanoseconds(0)
    /// When the request in flight's head arrived (`downstream_rq_time`), and when the router saw its end
    /// (`upstream_rq_time` runs from there, as Envoy's does; nil until then).
    var requestStartedAt = NIODeadline.uptimeNanoseconds(0)
    var requestSentAt: NIODeadline?
    /// `request_timeout`: the whole request must arrive within it.
    var requestTimer: Scheduled<Void>?
    /// `request_headers_timeout`: armed when bytes of a request's headers arrive, disarmed by its head.
    var headersTimer: Scheduled<Void>?
    /// Request heads that arrived on this connection (the headers timer checks none came since it was armed).
    var headsReceived = 0
    /// The connection idle timeout's quarter ticks (common_http_protocol_options.idle_timeout).
    var connectionIdleTimer: Scheduled<Void>?
    var connectionIdleQuietTicks = 0
    var connectionIdleSeen = 0
    /// What `%…%` format commands read about the request in flight (see `streamInfo()`); the start is noted only
    /// when the route table's header values read the clock.
    var streamStart: StreamStartTime?
    var requestEndTime: NIODeadline?
    var upstreamResponseStartTime: NIODeadline?
    var responseCode: Int?
    var responseFlags: ResponseFlags = []
    var bytesReceived: UInt64 = 0
    var bytesSent: UInt64 = 0
    var upstreamHostAddress: SocketAddress?
    /// `%RESPONSE_CODE_DETAILS%`: set where the response is decided, in Envoy's words.
    var responseCodeDetails: String?
    /// The local address of the upstream connection that carried the request.
    var upstreamLocalAddress: SocketAddress?
    /// Why the last upstream connect failed (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    var upstreamTransportFailureReason: String?
    /// The downstream connection's number (`%CONNECTION_ID%`), given by `ChainInstaller`.
    var connectionID: UInt64 = 0
    /// The listener's connection log, when the listener has an `access_log`: the handler tells it the protocol.
    var connectionLog: DownstreamConnectionLog?
    /// What the HTTP/1 request decoder is parsing, for answering its errors as Envoy does (`CodecErrorStatus`).
    var decoderInput: DecoderInputTap?
    /// The response head as sent, kept only when the connection manager has access logs (`%RESP(...)%`).
    var loggedResponseHeaders: HTTPHeaders?
    /// Tries made so far (the upstream request is gone by the time a local reply reports them).
    var attemptCount = 0
    /// The text of the upstream addresses `streamInfo()` reports, kept while requests reuse a pooled connection:
    /// inet_ntop per request and address was a tenth of an access-logged request's instructions.
    var addressTexts = AddressTextCache()
    /// The downstream connection's peer and local (original destination) addresses as text: fixed for the
    /// connection, made on first use (no address lookup or comparison per request).
    /// Separate fields, not an optional pair: copying the pair out cost some 400 instructions a read.
    var downstreamTextsMade = false
    var downstreamRemoteText: StreamAddress?
    var downstreamLocalText: StreamAddress?
    /// Between a downstream read's first part and its `channelReadComplete`, which flushes the upstream: what
    /// the read sends upstream is flushed once, there (a flush per head and per end was three a request).
    var inDownstreamRead = false
    /// The request's span while it is traced; the decorator operation its response names (ingress).
    var activeSpan: Span?
    var traceDecoratorResponse: String?
    /// Mirrored copies of the request in flight (request_mirror_policies) that still take its body.
    var shadows: [ShadowRequest] = []
    /// The request's trip through the listener's `http_filters`; reused for every request of the connection.
    lazy var stream = HTTPFilterStream(codec: self, worker: worker, router: RouterFilter(connection: self))
    lazy var connectionFilterState = ConnectionFilterState()
    /// Parts of pipelined requests received while the previous response was still in flight (rare: room for one
    /// until more arrive).
    private var queued = CircularBuffer<HTTPServerRequestPart>(initialCapacity: 1)
    private var replaying = false
    /// The downstream connection closed (channelInactive): no request starts on it any more.
    private var downstreamClosed = false
    private static let maxQueuedParts = 64
    /// The request decoder failed on bytes behind complete requests: those are answered, then the connection ends.
    private var codecFailed = false

    /// Where the downstream connection was going before capture (original_dst listener filter).
    var originalDestination: SocketAddress?
    /// What the downstream's TLS handshake established; nil for plaintext. RBAC reads it when the connection
    /// becomes active and for each request, so it must be set before the connection is active.
    var security: ConnectionSecurity?
    /// The SNI tls_inspector read, for RBAC's `requested_server_name`.
    var requestedServerName: String?
    /// Envoy's downstream local address (the original destination when restored), looked up once when the
    /// connection starts and only for chains with RBAC filters.
    var rbacDestination: SocketAddress?
    /// A network RBAC filter refused the connection: it is closing and nothing it sent is handled (bytes a
    /// listener filter already read are replayed to this handler after the refusal).
    private var accessDenied = false

    /// One stream of an HTTP/2 connection (see `HTTP2DownstreamConnection`): the handler carries one request on a
    /// child channel, and the connection's own work (its stats, timeouts, drain, network RBAC) is the parent's.
    let multiplexed: Bool
    /// `downstream_cx_total` / `_active` were counted before the codec was chosen (`HTTPCodecSelector`).
    var connectionCounted = false

    /// `originalDestination`: what a listener filter already found (e.g. before a use_original_dst hand-off).
    init(worker: Worker, listener: ListenerRuntime, originalDestination: SocketAddress? = nil, multiplexed: Bool = false) {
        self.worker = worker
        self.listener = listener
        self.originalDestination = originalDestination
        self.multiplexed = multiplexed
    }

    var stats: WorkerStats { worker.stats }

    /// `%PROTOCOL%`: the downstream request's HTTP version.
    var protocolName: String {
        if multiplexed { return "HTTP/2" }
        return downstreamVersion == .http1_0 ? "HTTP/1.0" : "HTTP/1.1"
    }
    var downstreamWritable: Bool { context.channel.isWritable }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// The context holds this handler and this handler holds the context: without letting go here every
    /// connection's handler, pipeline and buffers stayed in memory after it closed (about 3 KB each).
    /// Nothing reaches `context` after this: channelInactive cancelled the timers, detached the upstream
    /// connection and set the phase that makes late pool callbacks return early.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if multiplexed {
            context.fireChannelActive()
            return
        }
        if originalDestination == nil && (listener.config.originalDestination || listener.config.transparent) {
            originalDestination = OriginalDestination.lookup(context.channel, listener: listener.config)
        }
        if !connectionCounted {
            stats.inc(listener.stats.cxTotal)
            stats.inc(listener.stats.cxActive)
        }
        stats.inc(listener.stats.cxHTTP1Total)
        stats.inc(listener.stats.cxHTTP1Active)
        connectedAt = .now()
        armConnectionIdleTimer()
        worker.register(self)
        if !listener.networkRBAC.isEmpty || listener.filtersReadConnection {
            rbacDestination = RBACRequest.downstreamLocalAddress(
                context.channel, listener: listener.config, known: originalDestination)
        }
        if !listener.networkRBAC.isEmpty && !networkRBACAllows() {
            accessDenied = true
            RefusedConnection.install(on: context.channel)
            return
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // First: what runs below calls back into this handler (closing the upstream connection, the filters'
        // stream end), and nothing may start a request for a connection that is gone: no pipelined request is
        // replayed, no part read.
        downstreamClosed = true
        queued.removeAll()
        if !multiplexed {
            stats.dec(listener.stats.cxActive)
            stats.dec(listener.stats.cxHTTP1Active)
            stats.inc(listener.stats.cxDestroy)
            if connectedAt.uptimeNanoseconds > 0 { stats.record(listener.stats.cxLengthMs, from: connectedAt, to: .now()) }
        }
        routeTimer.stop()
        idleTimer?.cancel()
        idleTimer = nil
        requestTimer?.cancel()
        requestTimer = nil
        headersTimer?.cancel()
        headersTimer = nil
        connectionIdleTimer?.cancel()
        connectionIdleTimer = nil
        // The client went away: cancel its upstream request.
        abandonUpstream(closeConnection: true)
        phase = .discarding
        releaseShadows()
        if requestActive && !lifecycle.responseComplete && !upgraded {
            responseFlags.insert(.downstreamConnectionTermination)
        }
        logAccess()
        finishTracing()
        stream.end()
        endRequestStats()
        if !multiplexed { worker.unregister(self) }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if accessDenied || downstreamClosed { return }
        inDownstreamRead = true
        let part = unwrapInboundIn(data)
        streamActivity &+= 1
        if case .head = part {
            headsReceived &+= 1
            if let t = headersTimer {
                t.cancel()
                headersTimer = nil
            }
        }
        if !queued.isEmpty {
            queued.append(part)
            return
        }
        if case .head = part {
            if case .idle = phase {} else {
                // The previous request is complete but its response is not: hold this one back.
                queued.append(part)
                return
            }
        }
        handle(part)
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            receivedHead(head)
        case .body(let buffer):
            bytesReceived &+= UInt64(buffer.readableBytes)
            switch phase {
            case .decoding, .connecting, .forwarding, .backoff: stream.decodeData(buffer, endStream: false)
            case .idle, .discarding: break
            }
        case .end(let trailers):
            let action = lifecycle.requestEnded()
            if streamStart != nil { requestEndTime = .now() }
            if let t = requestTimer {
                t.cancel()
                requestTimer = nil
            }
            switch phase {
            case .decoding, .connecting, .forwarding, .backoff:
                if let trailers { stream.decodeTrailers(trailers) } else { stream.decodeData(ByteBuffer(), endStream: true) }
            case .discarding:
                if action == .finishStream { finishRequest() }
            case .idle:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // One flush for everything this read sent upstream (the head, the body parts, the end).
        inDownstreamRead = false
        if case .forwarding(let up) = phase { up.flush() }

        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .forwarding(let up) = phase { up.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    /// Backpressure on the request body: hold downstream reads while connecting or while the upstream
    /// socket's buffer is full.
    func read(context: ChannelHandlerContext) {
        if queued.count >= Self.maxQueuedParts {
            readPending = true
            return
        }
        switch phase {
        case .connecting, .backoff:
            readPending = true
            return
        case .decoding where stream.decodeHeld:
            readPending = true
            return
        case .forwarding(let up) where !up.isWritable:
            readPending = true
            return
        default:
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if accessDenied {
            context.close(promise: nil)
            return
        }
        if multiplexed {
            // A stream's error is the stream's: the client reset it, or its frames broke the rules (the codec
            // reset it). The connection's errors are HTTP2DownstreamConnection's.
            if error is NIOHTTP2Errors.StreamClosed { stats.inc(listener.stats.rqRxReset) }
            context.close(promise: nil)
            return
        }
        if codecFailed {
            // The decoder's later complaints (more bytes after its failure) change nothing: the requests before
            // the malformed one are still being answered.
            if error is HTTPParserError || error is ByteToMessageDecoderError { return }
        } else if error is HTTPParserError, lifecycle.isOpen, requestComplete || !queued.isEmpty {
            // Malformed bytes behind a complete request are the next request's. As Envoy does, the requests before
            // them are answered and the connection then ends, with no answer to the malformed one. Its own parts
            // (a head and body that came before the error) are dropped.
            stats.inc(listener.stats.cxProtocolError)
            codecFailed = true
            while let last = queued.last {
                if case .end = last { break }
                queued.removeLast()
            }
            if queued.isEmpty { lifecycle.disableKeepAlive() }
            return
        }
        stats.inc(listener.stats.cxProtocolError)
        if !responseStarted, let parse = error as? HTTPParserError {
            let status = CodecErrorStatus.status(for: parse, input: decoderInput?.parsing)
            abandonUpstream(closeConnection: true)
            phase = .discarding
            stream.end()
            if !requestActive { beginRequestStats() }
            writeCodecReply(status: status, body: status.reasonPhrase, close: true)
            return
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            drain()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    var listenerGeneration: Int { listener.generation }

    /// Its listener drains: the next response says `Connection: close` and the connection closes after it; an
    /// idle connection stays open until then (or the drain time's end), so a request already on its way is served.
    func drainGently() {
        if multiplexed { return }
        draining = true
        lifecycle.disableKeepAlive()
    }

    /// Graceful drain: close now if idle, else after the response in flight.
    func drain() {
        // A stream is not drained: its connection sends GOAWAY and lets it finish.
        if multiplexed { return }
        draining = true
        lifecycle.disableKeepAlive()
        if case .idle = phase { context.close(promise: nil) }
    }

    // MARK: Request

    private func beginRequestStats() {
        requestActive = true
        requestStartedAt = .now()
        stats.inc(listener.stats.rqTotal)
        stats.inc(listener.stats.rqActive)
    }

    /// The stream's end, complete or reset: `downstream_rq_time` covers both, as Envoy's does.
    private func endRequestStats() {
        guard requestActive else { return }
        requestActive = false
        stats.record(listener.stats.rqTime, from: requestStartedAt, to: .now())
        stats.dec(listener.stats.rqActive)
        abandonUpstream(closeConnection: true)
    }

    /// The connection manager's part of a new request: the checks the codec owns, then the route, then the
    /// request's HTTP filters (the router last).
    func receivedHead(_ head: HTTPRequestHead) {
        var head = head
        ignoringInformational = false
        upgradeRequested = nil
        upgradeAccepted = false
        pendingEndHead = nil
        cluster = nil
        responseMutations = []
        downstreamVersion = head.version
        if let log = connectionLog, log.protocolName == nil { log.protocolName = protocolName }
        // The stream runs on the config current now, to its end (a snapshot installed meanwhile is for the next).
        let snapshot = worker.current
        let routes = snapshot.config.routeTables[listener.routeTable]
        streamStart = routes.config.formatsReadTiming || !listener.hcm.accessLogs.isEmpty ? .now() : nil
        requestEndTime = nil
        requestSentAt = nil
        upstreamResponseStartTime = nil
        responseCode = nil
        responseFlags = []
        bytesReceived = 0
        bytesSent = 0
        upstreamHostAddress = nil
        responseCodeDetails = nil
        upstreamLocalAddress = nil
        upstreamTransportFailureReason = nil
        loggedResponseHeaders = nil
        attemptCount = 0
        if multiplexed {
            // One request per stream; a reply that would close an HTTP/1 connection ends only the stream.
            lifecycle.requestHead(keepAlive: true)
            stats.inc(listener.stats.rqHTTP2Total)
        } else {
            lifecycle.requestHead(keepAlive: head.isKeepAlive && !draining && !(codecFailed && isLastQueuedRequest))
            requestsOnConnection += 1
            let common = listener.hcm.commonProtocolOptions
            if let max = common.maxRequestsPerConnection, requestsOnConnection >= max { lifecycle.disableKeepAlive() }
            if let limit = common.maxConnectionDuration, NIODeadline.now() - connectedAt >= limit.timeAmount {
                lifecycle.disableKeepAlive()
            }
            stats.inc(listener.stats.rqHTTP1Total)
        }
        beginRequestStats()
        if let timeout = listener.hcm.requestTimeout { startRequestTimer(timeout) }
        setStreamIdleTimeout(listener.hcm.streamIdleTimeout)

        // Envoy's codec speaks HTTP/1.1 and (when allowed) 1.0: any other version the parser lets through (1.2) is 426.
        if (!multiplexed && head.version != .http1_1 && head.version != .http1_0)
            || (head.version == .http1_0 && !listener.hcm.acceptHTTP10) {
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .upgradeRequired, body: "Upgrade Required", close: true)
            return
        }
        if !multiplexed, !Self.acceptTarget(&head) {
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .badRequest, body: "Bad Request", close: true)
            return
        }
        var headerBytes = head.uri.utf8.count
        var transferEncodings = 0
        var chunked = true
        for (n, v) in head.headers {
            headerBytes += n.utf8.count + v.utf8.count + 4
            if !multiplexed, n.utf8.count == 17, HopByHop.equalsLowercased(n, "transfer-encoding") {
                transferEncodings += 1
                chunked = chunked && HopByHop.equalsLowercased(Self.trimmingBlanks(v), "chunked")
            }
        }
        // Envoy's codec knows one transfer coding, `chunked`, alone: any other, or a list (`gzip, chunked`, which
        // the parser takes), is 501 Not Implemented (RFC 9112 6.1).
        if transferEncodings > 0 && (transferEncodings > 1 || !chunked) {
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .notImplemented, body: "Not Implemented", close: true)
            return
        }
        // max_request_headers_kb and common_http_protocol_options.max_headers_count: the same refusal, as in Envoy.
        if headerBytes > listener.maxHeaderBytes
            || head.headers.count > listener.hcm.commonProtocolOptions.maxHeadersCount {
            if multiplexed {
                // Envoy's HTTP/2 codec resets the stream (INTERNAL_ERROR); the connection's other streams go on.
                phase = .discarding
                resetMultiplexedStream(.internalError)
                return
            }
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .requestHeaderFieldsTooLarge, body: "Request Header Fields Too Large", close: true)
            return
        }
        // One host value (a comma-separated list counts as several), found without allocating the split list.
        var hostCount = 0
        var host = ""
        // As the split list counted them: an empty value is no value, surrounding blanks are not part of it.
        for (name, value) in head.headers where HopByHop.equalsLowercased(name, "host") {
            let trimmed = Self.trimmingBlanks(value)
            if trimmed.isEmpty { continue }
            hostCount += trimmed.utf8.contains(UInt8(ascii: ",")) ? 2 : 1
            host = trimmed
        }
        var authority: String
        if hostCount == 1 {
            authority = host
        } else if hostCount == 0 && head.version == .http1_0 {
            authority = listener.hcm.defaultHostForHTTP10 ?? ""
        } else {
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .badRequest, body: "Bad Request", close: true)
            return
        }
        if authority.isEmpty && head.version != .http1_0 {
            lifecycle.disableKeepAlive()
            phase = .discarding
            writeCodecReply(status: .badRequest, body: "Bad Request", close: true)
            return
        }
        // An HTTP/1.1 upgrade (WebSocket and the like); `Upgrade: h2c` is not one the proxy takes (Envoy drops it).
        // On an HTTP/2 stream, a CONNECT or an extended CONNECT arrives translated into these (HTTP2StreamCodec:
        // HTTP/2 forbids the upgrade headers, so only the translation puts them there) and ends only its stream.
        if multiplexed {
            if head.method == .CONNECT {
                upgradeRequested = "connect"
            } else if let type = Self.upgradeType(head.headers) {
                upgradeRequested = type
            }
        } else if head.method == .CONNECT {
            // CONNECT is an upgrade of its own kind (`upgrade_type: CONNECT`); the connection ends with it.
            upgradeRequested = "connect"
            lifecycle.disableKeepAlive()
        } else if let type = Self.upgradeType(head.headers) {
            // The HTTP/1 decoder reads nothing after an upgrade request: one not tunnelled ends the connection (for
            // an ignored `Upgrade: h2c` Envoy keeps it; the client reconnects here).
            if type != "h2c" { upgradeRequested = type }
            lifecycle.disableKeepAlive()
        }
        // The connection manager's header rules (x-forwarded-for, x-request-id, sanitising, via) run before any
        // filter, as in Envoy, so filters see what the upstream will.
        // With tracing, a request id the connection manager makes is made with its tracing decision in it, not made
        // and then rewritten (see startTracing).
        let tracer = listener.tracer
        var decidedTrace: TraceReason?
        // Read once, before internal-only headers go (an x-client-trace-id among them does not count).
        let hasClientTraceID = tracer != nil && head.headers.contains(name: "x-client-trace-id")
            && !routes.config.internalOnlyHeaders.contains { equalsIgnoringASCIICase($0, "x-client-trace-id") }
        listener.requestHeaders.mutateRequest(
            &head.headers, peer: listener.requestHeaders.useRemoteAddress ? context.channel.remoteAddress : nil,
            random: &worker.random
        ) { random in
            guard let tracer else { return random.uuid() }
            let bits = random.uuidBits()
            let reason = TracingDecision.decide(
                newRequestID: bits, hasClientTraceID: hasClientTraceID, forceTrace: false, config: tracer.config,
                runtime: worker.server.runtime.snapshot, random: random.next())
            decidedTrace = reason
            return FastRandom.uuid(bits, version: reason.digit)
        }
        // internal_only_headers: every request is external (no internal_address_config), so they go before any
        // filter sees the request, as in Envoy's connection manager.
        for name in routes.config.internalOnlyHeaders { head.headers.remove(name: name) }
        // normalize_path / merge_slashes / path_with_escaped_slashes_action, before routing (Envoy's order): the
        // route, the filters and the upstream see the normalised path.
        var normalizationRedirect: String?
        let normalization = listener.hcm.pathNormalization
        if !normalization.isIdentity, head.method != .CONNECT {
            switch normalization.apply(head.uri) {
            case .continue(let path):
                head.uri = path
            case .reject:
                responseCodeDetails = "path_normalization_failed"
                phase = .discarding
                writeCodecReply(status: .badRequest, body: "", close: true)
                return
            case .redirect(let path):
                normalizationRedirect = path
            }
        }
        let scheme = head.headers.first(name: "x-forwarded-proto") ?? (security != nil ? "https" : "http")
        var request = RouteRequest(
            method: head.method.rawValue, path: head.uri, authority: authority, scheme: scheme,
            isInternal: false, headers: head.headers, randomValue: worker.random.next())
        // The route is chosen before the filters run, as Envoy's connection manager caches it for them: filters
        // read its per-filter config, and local replies carry its response header mutations.
        var (route, perFilter) = routes.config.resolve(request)
        if let location = normalizationRedirect {
            // UNESCAPE_AND_REDIRECT: a 307 to the unescaped (and normalised) path, as Envoy answers it.
            route = .redirect(location: location, status: 307, mutations: [], virtualHost: "", routeName: nil)
        }
        if let tracer {
            // The route is chosen: the request lets go of the headers so the trace stage edits them in place
            // rather than copying them all.
            request.headers = HTTPHeaders()
            startTracing(tracer, &head.headers, route: route, authority: authority, decided: decidedTrace,
                         hasClientTraceID: hasClientTraceID)
            request.headers = head.headers
        }
        // A filter's local reply carries the route's response headers only on a forwarding route (Envoy has a
        // route entry only there); the router puts a direct response's or redirect's own on its reply.
        if case .forward(let target) = route { responseMutations = target.mutations } else { responseMutations = [] }
        // A CONNECT no route takes is the router's 404, upgrade config or not (Envoy's order).
        if let type = upgradeRequested, !upgradeAllowed(type, route: route),
           !(type == "connect" && Self.isNoRoute(route)) {
            // Envoy's connection manager refuses an upgrade no config enables before any filter runs.
            responseCodeDetails = "upgrade_failed"
            phase = .discarding
            writeCodecReply(status: .forbidden, body: "", close: true)
            return
        }
        phase = .decoding
        stream.begin(factories: listener.httpFilters, request: request, route: route, perFilterConfig: perFilter,
                     isHead: head.method == .HEAD, hasBody: Self.hasRequestBody(head), snapshot: snapshot)
        stream.decodeHeaders(head, endStream: false)
    }

    /// The request target as Envoy's HTTP/1 codec takes it: an absolute-form target becomes its path, and its
    /// authority the Host (whatever Host said); a CONNECT's target must be host:port, and `*` is for OPTIONS only.
    /// False when the request is a 400.
    static func acceptTarget(_ head: inout HTTPRequestHead) -> Bool {
        let first = head.uri.utf8.first
        if head.method == .CONNECT { return RequestTarget.isAuthorityForm(head.uri) }
        if first == UInt8(ascii: "/") { return true }
        if first == UInt8(ascii: "*") { return head.uri == "*" && head.method == .OPTIONS }
        guard let (authority, path) = RequestTarget.absoluteForm(head.uri) else { return true }
        head.uri = path
        head.headers.replaceOrAdd(name: "host", value: authority)
        return true
    }

    private static func isNoRoute(_ route: RouteDecision) -> Bool {
        if case .noRoute = route { return true }
        return false
    }

    /// `value` without leading and trailing spaces and tabs (the value itself when it has none).
    static func trimmingBlanks(_ value: String) -> String {
        let utf8 = value.utf8
        guard let first = utf8.first, let last = utf8.last,
              first == 32 || first == 9 || last == 32 || last == 9 else { return value }
        let start = utf8.firstIndex(where: { $0 != 32 && $0 != 9 }) ?? utf8.endIndex
        let end = utf8.lastIndex(where: { $0 != 32 && $0 != 9 }).map { utf8.index(after: $0) } ?? start
        return start < end ? String(Substring(utf8[start..<end])) : ""
    }

    // MARK: Stream idle timeout

    /// Envoy's `stream_idle_timeout` / route `idle_timeout`: a request with no activity in either direction
    /// for this long is ended: before the response started with "stream timeout", 504 once the whole request
    /// was received and 408 while it was still arriving (Envoy's `maybeRequestTimeoutCode`); a reset after.
    /// Zero disables it.
    /// The stream counts as idle once four consecutive quarter-timeout ticks saw no read, so it ends between
    /// 1 and 1.25 times the timeout after the last activity.
    func setStreamIdleTimeout(_ timeout: ProtoDuration) {
        streamIdleTimeout = timeout.isZero ? nil : timeout.timeAmount
        idleQuietTicks = 0
        idleActivitySeen = streamActivity
        guard let timeout = streamIdleTimeout else { return }
        let tick = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 1_000_000))
        if idleTimer != nil {
            // A route's shorter idle_timeout needs a faster tick; a longer one keeps the armed tick.
            if idleTick <= tick { return }
            idleTimer?.cancel()
        }
        idleTick = tick
        armIdleTimer()
    }

    private func armIdleTimer() {
        idleTimer = scheduleTimer(at: .now() + idleTick, .streamIdle)
    }

    /// Arms one of the stream's timers: on its HTTP/2 connection's hub when it has one, else on the event loop. Nil
    /// when the event loop is shutting down.
    func scheduleTimer(at deadline: NIODeadline, _ timer: HTTPProxyTimerCallback.Timer) -> ArmedTimer? {
        let callback = HTTPProxyTimerCallback(handler: self, timer: timer)
        if let timerHub {
            return timerHub.schedule(at: deadline, callback).map { .hub(timerHub, $0) }
        }
        return (try? context.eventLoop.assumeIsolated().scheduleCallback(at: deadline, handler: callback)).map { .loop($0) }
    }

    func idleTimerFired() {
        idleTimer = nil
        guard requestActive, !responseComplete || !requestComplete, let timeout = streamIdleTimeout else { return }
        if streamActivity != idleActivitySeen {
            idleActivitySeen = streamActivity
            idleQuietTicks = 0
        } else {
            idleQuietTicks += 1
        }
        if idleQuietTicks * Int(idleTick.nanoseconds) < Int(timeout.nanoseconds) {
            armIdleTimer()
            return
        }
        stats.inc(listener.stats.rqIdleTimeout)
        responseFlags.insert(.streamIdleTimeout)
        abandonUpstream(closeConnection: true)
        if responseStarted {
            context.close(promise: nil)
            return
        }
        let status: HTTPResponseStatus = requestComplete ? .gatewayTimeout : .requestTimeout
        if !requestComplete { lifecycle.disableKeepAlive() }
        if stream.active {
            stream.sendLocalReply(status: status, body: "stream timeout", closeConnection: !keepAlive)
        } else {
            phase = .discarding
            writeCodecReply(status: status, body: "stream timeout", close: !keepAlive)
        }
    }

    // MARK: Responses

    /// What `%…%` commands read: the request as routed (its headers as they leave when the router has built
    /// them), the stream's facts so far; the caller adds the headers being mutated.
    func formatContext() -> FormatContext {
        var c = FormatContext()
        fillFormatContext(&c)
        return c
    }

    /// `formatContext()` written into a context in place (the access log fills its batch entry with it).
    func fillFormatContext(_ c: inout FormatContext) {
        c.requestHeaders = upstream?.head.headers ?? stream.request.headers
        c.method = stream.request.method
        c.path = stream.request.path
        c.scheme = stream.request.scheme
        fillStreamInfo(&c.stream)
    }

    /// Writes the stream's facts into `info` in place: built into the context that carries it, a StreamInfo is
    /// not copied (a copy is some thirty reference-count operations).
    func fillStreamInfo(_ info: inout StreamInfo) {
        info.startTime = streamStart
        info.requestEnd = requestEndTime
        info.upstreamResponseStart = upstreamResponseStartTime
        info.responseCode = responseCode
        info.responseFlags = responseFlags
        info.bytesReceived = bytesReceived
        info.bytesSent = bytesSent
        info.protocolName = protocolName
        info.upstreamHost = addressTexts.text(upstreamHostAddress, slot: 0)
        // Envoy knows the cluster as soon as the route is chosen (a filter's local reply still logs it), when the
        // cluster exists.
        if let cluster {
            info.upstreamCluster = cluster.config.name
        } else if case .forward(let target) = stream.route, target.clusterSlot != nil {
            info.upstreamCluster = target.cluster
        }
        // Envoy counts the first try as soon as the router has a cluster for the request.
        info.upstreamRequestAttemptCount = attemptCount > 0 ? attemptCount : (cluster != nil ? 1 : 0)
        info.routeName = stream.route.routeName
        makeDownstreamAddressTexts()
        let direct = downstreamRemoteText
        info.downstreamDirectRemoteAddress = direct
        if let forwarded = listener.requestHeaders.forwardedAddressText(stream.request.headers) {
            info.downstreamRemoteAddress = StreamAddress(ip: forwarded, port: 0)
        } else {
            info.downstreamRemoteAddress = direct
        }
        info.downstreamLocalAddress = downstreamLocalText
        info.requestedServerName = requestedServerName
        info.hostname = listener.hostname
        info.responseCodeDetails = responseCodeDetails
        info.upstreamLocalAddress = addressTexts.text(upstreamLocalAddress, slot: 1)
        info.upstreamTransportFailureReason = upstreamTransportFailureReason
        info.connectionID = connectionID
        if let sans = security?.peerURISANs, !sans.isEmpty { info.downstreamPeerURISAN = sans.joined(separator: ",") }
        info.healthCheck = stream.isHealthCheck
    }

    /// Resets this HTTP/2 stream with `code` (counted in `downstream_rq_tx_reset`).
    func resetMultiplexedStream(_ code: HTTP2ErrorCode) {
        stats.inc(listener.stats.rqTxReset)
        if let frames = try? context.pipeline.syncOperations.handler(type: HTTP2StreamCodec.self) {
            frames.reset(code)
        } else {
            context.close(promise: nil)
        }
    }

    /// Makes the downstream address texts on first use (`downstreamRemoteText`, `downstreamLocalText`).
    func makeDownstreamAddressTexts() {
        guard !downstreamTextsMade else { return }
        downstreamTextsMade = true
        downstreamRemoteText = context.channel.remoteAddress.flatMap { StreamAddress($0) }
        downstreamLocalText = (originalDestination ?? context.channel.localAddress).flatMap { StreamAddress($0) }
    }

    /// `status`: the response's `:status`.
    func applyResponseMutations(_ headers: inout HTTPHeaders, status: HTTPResponseStatus) {
        for m in responseMutations where !m.isEmpty {
            m.applyResponse(to: &headers, context: {
                var c = formatContext()
                c.responseStatus = Int(status.code)
                return c
            }())
        }
    }

    /// A reply the codec sends on its own, outside any stream's filters: the request could not become a stream
    /// (426, 431, 400 for a malformed request).
    func writeCodecReply(status: HTTPResponseStatus, body: String, close: Bool) {
        // A malformed request between two others never opened a stream: this reply is its stream.
        if !lifecycle.isOpen { lifecycle.requestHead(keepAlive: false) }
        lifecycle.localReply(closeConnection: close)
        lifecycle.responseHeadCommitted()
        routeTimer.clear()
        responseCode = Int(status.code)
        var head = LocalReply.head(status: status, bodyLength: body.utf8.count, server: listener.hcm.serverName,
                                   close: close)
        head.version = downstreamVersion == .http1_0 ? .http1_0 : .http1_1
        stats.inc(listener.stats.responseClass(Int(status.code)))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if lifecycle.responseEnded() == .finishStream { finishRequest() }
    }

    func finishRequest() {
        if !shadows.isEmpty { releaseShadows() }
        requestTimer?.cancel()
        requestTimer = nil
        logAccess()
        finishTracing()
        stream.end()
        endRequestStats()
        phase = .idle
        if multiplexed {
            // The stream is done when both ends are; a response that ended before the request did resets the rest.
            let resetRest = !lifecycle.requestComplete
            _ = lifecycle.streamFinished(draining: false)
            phase = .discarding
            if resetRest {
                stats.inc(listener.stats.rqTxReset)
                context.close(promise: nil)
            }
            return
        }
        switch lifecycle.streamFinished(draining: draining) {
        case .closeConnection:
            queued.removeAll()
            context.close(promise: nil)
            return
        case .readNextRequest:
            break
        }
        replayQueued()
        if codecFailed, queued.isEmpty, case .idle = phase {
            // What followed the requests answered was malformed (see errorCaught): nothing more can be read.
            context.close(promise: nil)
            return
        }
        if readPending, case .idle = phase {
            readPending = false
            context.read()
        }
    }

    /// Feeds held-back pipelined requests in order, until one is waiting for its response.
    private func replayQueued() {
        guard !replaying, !downstreamClosed else { return }
        replaying = true
        defer { replaying = false }
        while let next = queued.first {
            if case .head = next, !isIdle { return }
            queued.removeFirst()
            handle(next)
        }
    }

    /// Whether no other request head waits behind the one being handled.
    private var isLastQueuedRequest: Bool {
        !queued.contains { if case .head = $0 { return true } else { return false } }
    }

    private var isIdle: Bool {
        if case .idle = phase { return true }
        return false
    }
}

@available(*, unavailable) extension HTTPProxyHandler: Sendable {}

/// The last `StreamAddress` made for each of a few addresses (see `HTTPProxyHandler.addressTexts`).
struct AddressTextCache {
    private var entries: [(address: SocketAddress, text: StreamAddress)?] = [nil, nil]

    mutating func text(_ address: SocketAddress?, slot: Int) -> StreamAddress? {
        guard let address else { return nil }
        if let e = entries[slot], e.address == address { return e.text }
        guard let text = StreamAddress(address) else { return nil }
        entries[slot] = (address, text)
        return text
    }
}
