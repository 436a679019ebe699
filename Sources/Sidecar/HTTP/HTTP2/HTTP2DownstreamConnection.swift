import NIOCore
import NIOHTTP1
import NIOHTTP2
import SidecarCore

/// One downstream HTTP/2 connection: what belongs to the connection rather than to its streams. It sits behind
/// `NIOHTTP2Handler` on the connection's pipeline and sees the connection's events and its root-stream frames.
///
/// Each stream is a child channel of the multiplexer with the HTTP/1 part translation (`HTTP2StreamCodec`) and its
/// own `HTTPProxyHandler` in stream mode (see `install`): the same stream model, filters and router as an HTTP/1
/// request, with per-stream flow control (a stream whose upstream cannot take more stops reading, which stops
/// its window updates, and the other streams go on).
///
/// Here: the connection's stats (`downstream_cx_*`, `downstream_cx_http2_*`), network RBAC as the connection
/// starts, the connection idle timeout (`common_http_protocol_options.idle_timeout`: no stream for that long),
/// `max_connection_duration` and `max_requests_per_connection`, and graceful drain: GOAWAY (NO_ERROR) naming the
/// last stream taken, then close once the open streams ended.
final class HTTP2DownstreamConnection: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    let worker: Worker
    let listener: ListenerRuntime
    /// What every stream of the connection shares (given to each stream's handler).
    var originalDestination: SocketAddress?
    let security: ConnectionSecurity?
    let requestedServerName: String?
    let connectionID: UInt64
    let connectionLog: DownstreamConnectionLog?
    /// Envoy's downstream local address for RBAC, looked up once when the chain has RBAC filters.
    private(set) var rbacDestination: SocketAddress?

    private var context: ChannelHandlerContext?
    /// The streams' route and idle timers (made with the connection's context).
    private var timerHub: StreamTimerHub?
    private var connectedAt = NIODeadline.uptimeNanoseconds(0)
    private var openStreams = 0
    /// Streams the connection has carried, and the highest stream id the peer opened (named by GOAWAY).
    private(set) var streamsOpened = 0
    private var lastStreamID = HTTP2StreamID(0)
    private var draining = false
    private var closing = false
    private var counted = false
    /// `downstream_cx_total` / `_active` were counted before the codec was chosen (`HTTPCodecSelector`).
    var connectionCounted = false
    private var idleTimer: Scheduled<Void>?
    private var idleQuietTicks = 0
    private var idleSeen = 0

    init(worker: Worker, listener: ListenerRuntime, originalDestination: SocketAddress?, security: ConnectionSecurity?,
         requestedServerName: String?, connectionID: UInt64, connectionLog: DownstreamConnectionLog?) {
        self.worker = worker
        self.listener = listener
        self.originalDestination = originalDestination
        self.security = security
        self.requestedServerName = requestedServerName
        self.connectionID = connectionID
        self.connectionLog = connectionLog
    }

    /// Puts the HTTP/2 codec, this handler and the per-stream pipelines on a connection.
    static func install(on ops: ChannelPipeline.SynchronousOperations, listener: ListenerRuntime, worker: Worker,
                        originalDestination: SocketAddress?, security: ConnectionSecurity?, serverName: String?,
                        id: UInt64, log: DownstreamConnectionLog?, counted: Bool) throws {
        let options = listener.hcm.http2Options
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: options.maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: options.initialStreamWindowSize),
            HTTP2Setting(parameter: .headerTableSize, value: options.hpackTableSize),
            // Advertised either way, as Envoy does.
            HTTP2Setting(parameter: .enableConnectProtocol, value: options.allowConnect ? 1 : 0),
            // The codec's own bound, past which it ends the connection; max_request_headers_kb is enforced per stream
            // below it (a request past it resets only its stream, as in Envoy: see HTTPProxyHandler.receivedHead).
            HTTP2Setting(parameter: .maxHeaderListSize, value: 2 * listener.maxHeaderBytes + 4096),
        ]
        connection.targetWindowSize = options.initialConnectionWindowSize
        // Each stream's codec checks the client's header blocks (HTTP2FieldRules) and makes the proxy's valid; NIOHTTP2
        // checking both ways again was 9 % of a stream's instructions. Content lengths are still NIOHTTP2's to check.
        connection.headerBlockValidation = .disabled
        connection.maximumSequentialEmptyDataFrames = options.maxConsecutiveEmptyFrames
        connection.maximumBufferedControlFrames = options.maxOutboundControlFrames
        // Header blocks up to the codec's bound above arrive in 16 KiB frames: enough CONTINUATIONs for them.
        connection.maximumSequentialContinuationFrames = max(5, (2 * listener.maxHeaderBytes + 4096) / 16384 + 2)
        var stream = NIOHTTP2Handler.StreamConfiguration()
        // Envoy ends a connection on resets only when at least half of 500 or more streams were reset early
        // (`overload.premature_reset_*`); a rate this high lets a normal client cancel plenty of calls and still
        // ends a rapid-reset flood.
        stream.streamResetFrameRateLimit.maximumCount = 1000
        stream.streamResetFrameRateLimit.windowLength = .seconds(30)
        stream.targetWindowSize = options.initialStreamWindowSize
        let handler = HTTP2DownstreamConnection(
            worker: worker, listener: listener, originalDestination: originalDestination, security: security,
            requestedServerName: serverName, connectionID: id, connectionLog: log)
        handler.connectionCounted = counted
        let boxed = NIOLoopBound(handler, eventLoop: ops.eventLoop)
        // Below the codec: one socket write per event-loop turn, not one per stream that answered in it.
        try ops.addHandler(LoopFlushCoalescer())
        _ = try ops.configureHTTP2Pipeline(
            mode: .server, connectionConfiguration: connection, streamConfiguration: stream
        ) { channel in
            channel.eventLoop.makeCompletedFuture {
                let connection = boxed.value
                connection.streamOpened(channel)
                let ops = channel.pipeline.syncOperations
                try ops.addHandler(HTTP2StreamCodec(extendedConnect: options.allowConnect))
                try ops.addHandler(connection.makeStreamHandler())
            }
        }
        try ops.addHandler(handler)
    }

    /// A stream's handler: the connection manager for one request, with the connection's facts.
    private func makeStreamHandler() -> HTTPProxyHandler {
        let h = HTTPProxyHandler(worker: worker, listener: listener, originalDestination: originalDestination,
                                 multiplexed: true)
        h.security = security
        h.requestedServerName = requestedServerName
        h.connectionID = connectionID
        h.connectionLog = connectionLog
        h.rbacDestination = rbacDestination
        h.timerHub = timerHub
        return h
    }

    private var stats: WorkerStats { worker.stats }

    /// Added to a connection that is already active (after TLS or the codec selector), the codec swallows the
    /// channelActive that follows, so the connection starts here.
    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        timerHub = StreamTimerHub(eventLoop: context.eventLoop)
        if context.channel.isActive { start(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard connectedAt.uptimeNanoseconds == 0 else { return }
        if originalDestination == nil && (listener.config.originalDestination || listener.config.transparent) {
            originalDestination = OriginalDestination.lookup(context.channel, listener: listener.config)
        }
        connectionLog?.protocolName = "HTTP/2"
        counted = true
        if !connectionCounted {
            stats.inc(listener.stats.cxTotal)
            stats.inc(listener.stats.cxActive)
        }
        stats.inc(listener.stats.cxHTTP2Total)
        stats.inc(listener.stats.cxHTTP2Active)
        connectedAt = .now()
        worker.register(self)
        if !listener.networkRBAC.isEmpty || listener.filtersReadConnection {
            rbacDestination = RBACRequest.downstreamLocalAddress(
                context.channel, listener: listener.config, known: originalDestination)
        }
        if !listener.networkRBAC.isEmpty {
            let request = RBACRequest(source: context.channel.remoteAddress, destination: rbacDestination,
                                      security: security, requestedServerName: requestedServerName)
            if !RBACFilter.allow(listener.networkRBAC, request, counting: stats) {
                RefusedConnection.install(on: context.channel)
                return
            }
        }
        armIdleTimer()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        timerHub?.stop()
        if counted {
            counted = false
            stats.dec(listener.stats.cxActive)
            stats.dec(listener.stats.cxHTTP2Active)
            stats.inc(listener.stats.cxDestroy)
            stats.record(listener.stats.cxLengthMs, from: connectedAt, to: .now())
            worker.unregister(self)
        }
        context.fireChannelInactive()
    }

    /// A stream the peer opened got its channel (the multiplexer does not pass stream events down the
    /// connection's pipeline with an inline multiplexer, so the streams are counted here).
    private func streamOpened(_ channel: Channel) {
        openStreams += 1
        streamsOpened += 1
        if let id = try? channel.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID), id > lastStreamID {
            lastStreamID = id
        }
        channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
            openStreams -= 1
            if draining && openStreams == 0 { closeAfterPendingWrites() }
        }
        // max_requests_per_connection: the connection takes this stream and then goes away (GOAWAY names it).
        if let max = listener.hcm.commonProtocolOptions.maxRequestsPerConnection, streamsOpened >= max { goAway() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // The streams are not told: each finishes its request, and the connection closes after the last.
            drain()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // NIOHTTP2Handler already answered a connection error with GOAWAY; count it, as Envoy's codec does.
        if error is NIOHTTP2Errors.StreamError { return }
        stats.inc(listener.stats.cxProtocolError)
        context.close(promise: nil)
    }

    // MARK: Drain and idle timeout

    /// GOAWAY (NO_ERROR) naming the last stream the connection took; it closes when its open streams end.
    private func goAway() {
        guard let context, !draining else { return }
        draining = true
        let frame = HTTP2Frame(streamID: .rootStream,
                               payload: .goAway(lastStreamID: lastStreamID, errorCode: .noError, opaqueData: nil))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        if openStreams == 0 { closeAfterPendingWrites() }
    }

    /// Closes the drained connection once what its last streams wrote is on the wire. A stream closes as the codec
    /// takes its last frame, before the connection flushed it, and a channel's close drops what it has not written:
    /// so the close waits for the current event to end, then for an empty write queued below the codec behind
    /// everything the codec wrote (as Envoy closes a drained connection with FlushWrite).
    private func closeAfterPendingWrites() {
        guard let context, !closing else { return }
        closing = true
        context.eventLoop.assumeIsolated().execute { [self] in
            guard let context = self.context else { return }
            guard let codec = try? context.pipeline.syncOperations.context(handlerType: NIOHTTP2Handler.self) else {
                context.close(promise: nil)
                return
            }
            context.flush()
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            codec.writeAndFlush(NIOAny(ByteBuffer()), promise: written)
        }
    }

    /// The connection idle timeout: no open stream for `idle_timeout` (`downstream_cx_idle_timeout`), or idle and
    /// older than `max_connection_duration` (`downstream_cx_max_duration_reached`); ticks at a quarter of it.
    private func armIdleTimer() {
        let common = listener.hcm.commonProtocolOptions
        guard let context,
              let period = [common.idleTimeout, common.maxConnectionDuration].compactMap({ $0?.nanoseconds }).min()
        else { return }
        let tick = TimeAmount.nanoseconds(max(period / 4, 1_000_000))
        idleTimer = context.eventLoop.scheduleTask(in: tick) { [self] in
            idleTimer = nil
            idleTicked(tick)
        }
    }

    private func idleTicked(_ tick: TimeAmount) {
        guard let context, context.channel.isActive, !draining else { return }
        let common = listener.hcm.commonProtocolOptions
        let idle = openStreams == 0
        if idle && streamsOpened == idleSeen {
            idleQuietTicks += 1
        } else {
            idleSeen = streamsOpened
            idleQuietTicks = 0
        }
        if let limit = common.maxConnectionDuration, NIODeadline.now() - connectedAt >= limit.timeAmount {
            stats.inc(listener.stats.cxMaxDurationReached)
            goAway()
            return
        }
        if idle, let timeout = common.idleTimeout, Int64(idleQuietTicks) * tick.nanoseconds >= timeout.nanoseconds {
            stats.inc(listener.stats.cxIdleTimeout)
            goAway()
            return
        }
        armIdleTimer()
    }
}

extension HTTP2DownstreamConnection: DrainableConnection {
    func drain() { goAway() }
    var listenerGeneration: Int { listener.generation }
    func drainGently() { goAway() }
}

@available(*, unavailable) extension HTTP2DownstreamConnection: Sendable {}
