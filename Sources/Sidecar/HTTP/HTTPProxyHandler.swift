import NIOCore
import NIOHTTP1
import NIOPosix

/// One downstream HTTP/1.1 connection. It routes each request, forwards it on a pooled upstream
/// connection of its own event loop, and streams both bodies with backpressure: downstream reads stop
/// while the upstream cannot take more, and upstream reads stop while the downstream cannot.
///
/// Requests on one connection are handled one at a time. Pipelined requests that arrive while a
/// response is in flight wait in `queued` (bounded: reads stop when it is full) and are replayed in
/// order once the response has ended. Keeping reads on between requests avoids re-arming epoll twice
/// per request, which `HTTPServerPipelineHandler` would do.
///
///     idle ──head──▶ connecting ──connected──▶ forwarding ──response end──▶ idle
///       │                │                         │
///       └─local reply────┴──connect failure────────┴──timeout/upstream reset──▶ discarding ──request end──▶ idle
final class HTTPProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Phase {
        /// Between requests.
        case idle
        /// Waiting for an upstream connection; request parts wait in `pending`.
        case connecting
        /// An upstream connection carries the request.
        case forwarding(UpstreamConnection)
        /// The response is decided (or sent); the rest of the request body is dropped.
        case discarding
    }

    private let worker: Worker
    private let listener: ListenerRuntime
    private var context: ChannelHandlerContext!
    private var phase = Phase.idle

    // The request in flight.
    private var keepAlive = true
    private var requestComplete = false
    private var responseStarted = false
    private var responseComplete = false
    private var ignoringInformational = false
    private var requestActive = false
    private var pending: [HTTPClientRequestPart] = []
    private var timer: Scheduled<Void>?
    private var upstreamStart = NIODeadline.uptimeNanoseconds(0)
    private var cluster: ClusterManager.Entry?
    /// `cluster.upstream_rq_active` counts this request; every ending must take it back exactly once.
    private var upstreamRequestActive = false
    private var responseMutations: [HeaderMutations] = []
    private var downstreamVersion = HTTPVersion.http1_1
    private var routeTimeout = ProtoDuration.seconds(15)

    private var readPending = false
    private var draining = false
    /// Parts of pipelined requests received while the previous response was still in flight.
    private var queued = CircularBuffer<HTTPServerRequestPart>()
    private var replaying = false
    private static let maxQueuedParts = 64

    /// Where the downstream connection was going before capture (original_dst listener filter).
    private var originalDestination: SocketAddress?

    /// `originalDestination`: what a listener filter already found (e.g. before a use_original_dst hand-off).
    init(worker: Worker, listener: ListenerRuntime, originalDestination: SocketAddress? = nil) {
        self.worker = worker
        self.listener = listener
        self.originalDestination = originalDestination
    }

    private var stats: WorkerStats { worker.stats }
    var downstreamWritable: Bool { context.channel.isWritable }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if originalDestination == nil && (listener.config.originalDestination || listener.config.transparent) {
            originalDestination = OriginalDestination.lookup(context.channel, listener: listener.config)
        }
        stats.inc(listener.stats.cxTotal)
        stats.inc(listener.stats.cxActive)
        worker.register(self)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stats.dec(listener.stats.cxActive)
        stats.inc(listener.stats.cxDestroy)
        timer?.cancel()
        timer = nil
        if case .forwarding(let up) = phase {
            // The client went away: cancel its upstream request.
            up.close()
        }
        phase = .discarding
        pending.removeAll()
        queued.removeAll()
        endRequestStats()
        worker.unregister(self)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
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
            switch phase {
            case .connecting: pending.append(.body(.byteBuffer(buffer)))
            case .forwarding(let up): up.send(.body(.byteBuffer(buffer)))
            case .idle, .discarding: break
            }
        case .end(let trailers):
            requestComplete = true
            switch phase {
            case .connecting:
                pending.append(.end(trailers))
                startTimer()
            case .forwarding(let up):
                up.send(.end(trailers))
                up.flush()
                startTimer()
            case .discarding:
                if responseComplete { finishRequest() }
            case .idle:
                break
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
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
        case .connecting:
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
        stats.inc(listener.stats.cxProtocolError)
        if !responseStarted, let parse = error as? HTTPParserError {
            let status: HTTPResponseStatus = parse == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            if case .forwarding(let up) = phase { up.close() }
            phase = .discarding
            if !requestActive { beginRequestStats() }
            writeLocalReply(status: status, body: status.reasonPhrase, close: true)
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

    /// Graceful drain: close now if idle, else after the response in flight.
    func drain() {
        draining = true
        keepAlive = false
        if case .idle = phase { context.close(promise: nil) }
    }

    // MARK: Request

    private func beginRequestStats() {
        requestActive = true
        stats.inc(listener.stats.rqTotal)
        stats.inc(listener.stats.rqActive)
    }

    private func endRequestStats() {
        guard requestActive else { return }
        requestActive = false
        stats.dec(listener.stats.rqActive)
        endUpstreamRequest()
    }

    private func endUpstreamRequest() {
        guard upstreamRequestActive else { return }
        upstreamRequestActive = false
        if let cluster { stats.dec(cluster.stats.rqActive) }
    }

    private func receivedHead(_ head: HTTPRequestHead) {
        requestComplete = false
        responseStarted = false
        responseComplete = false
        ignoringInformational = false
        cluster = nil
        responseMutations = []
        downstreamVersion = head.version
        keepAlive = head.isKeepAlive && !draining
        beginRequestStats()

        if head.version.major != 1 || (head.version.minor == 0 && !listener.hcm.acceptHTTP10) {
            keepAlive = false
            phase = .discarding
            writeLocalReply(status: .upgradeRequired, body: "Upgrade Required", close: true)
            return
        }
        var headerBytes = head.uri.utf8.count
        for (n, v) in head.headers { headerBytes += n.utf8.count + v.utf8.count + 4 }
        if headerBytes > listener.maxHeaderBytes {
            keepAlive = false
            phase = .discarding
            writeLocalReply(status: .requestHeaderFieldsTooLarge, body: "Request Header Fields Too Large", close: true)
            return
        }
        let hostValues = head.headers[canonicalForm: "host"]
        var authority: String
        if hostValues.count == 1 {
            authority = String(hostValues[0])
        } else if hostValues.isEmpty && head.version.minor == 0 {
            authority = listener.hcm.defaultHostForHTTP10 ?? ""
        } else {
            keepAlive = false
            phase = .discarding
            writeLocalReply(status: .badRequest, body: "Bad Request", close: true)
            return
        }
        if authority.isEmpty && head.version.minor == 1 {
            keepAlive = false
            phase = .discarding
            writeLocalReply(status: .badRequest, body: "Bad Request", close: true)
            return
        }
        let scheme = head.headers.first(name: "x-forwarded-proto") ?? "http"
        let request = RouteRequest(
            method: head.method.rawValue, path: head.uri, authority: authority, scheme: scheme,
            isInternal: false, headers: head.headers, randomValue: worker.random.next())
        switch listener.routes.route(request) {
        case .noRoute:
            stats.inc(listener.stats.noRoute)
            phase = .discarding
            writeLocalReply(status: .notFound, body: "", close: !keepAlive)
        case .directResponse(let d, let mutations, _):
            stats.inc(listener.stats.directResponse)
            phase = .discarding
            responseMutations = mutations
            writeLocalReply(status: HTTPResponseStatus(statusCode: d.status), body: d.body ?? [], close: !keepAlive,
                            isHead: head.method == .HEAD)
        case .redirect(let location, let status, let mutations, _):
            phase = .discarding
            responseMutations = mutations
            var extra = HTTPHeaders()
            extra.add(name: "location", value: location)
            writeLocalReply(status: HTTPResponseStatus(statusCode: status), body: "", close: !keepAlive, extra: extra)
        case .forward(let target):
            forward(head, target: target, request: request)
        }
    }

    private func forward(_ head: HTTPRequestHead, target: ForwardTarget, request: RouteRequest) {
        guard let ci = listener.clusters.index(of: target.cluster) else {
            // cluster_header named a cluster that does not exist: Envoy's cluster_not_found_response_code.
            phase = .discarding
            writeLocalReply(status: .serviceUnavailable, body: "", close: !keepAlive)
            return
        }
        let entry = listener.clusters.clusters[ci]
        cluster = entry
        responseMutations = target.mutations
        routeTimeout = target.timeout
        let picked: UpstreamHost?
        if entry.config.type == .ORIGINAL_DST {
            // CLUSTER_PROVIDED: the host is where this connection was going before capture.
            picked = originalDestination.map { UpstreamHost(address: $0, hostname: $0.ipAddress ?? "", weight: 1) }
        } else {
            picked = worker.pickHost(cluster: ci)
        }
        guard let host = picked else {
            phase = .discarding
            writeLocalReply(status: .serviceUnavailable, body: "no healthy upstream", close: !keepAlive)
            return
        }

        var headers = head.headers
        let expectContinue = headers.first(name: "expect")?.lowercased() == "100-continue"
        if expectContinue { headers.remove(name: "expect") }
        HopByHop.strip(&headers)
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "x-forwarded-proto", value: "http") }
        if !headers.contains(name: "x-request-id") { headers.add(name: "x-request-id", value: worker.random.uuid()) }
        if target.timeout.isZero {
            headers.remove(name: "x-envoy-expected-rq-timeout-ms")
        } else {
            headers.replaceOrAdd(name: "x-envoy-expected-rq-timeout-ms", value: String(target.timeout.milliseconds))
        }
        if let literal = target.hostRewrite {
            headers.replaceOrAdd(name: "host", value: literal)
        } else if target.autoHostRewrite, entry.config.type.resolvesNames {
            headers.replaceOrAdd(name: "host", value: host.hostname)
        }
        if target.mutations.contains(where: { !$0.isEmpty }) {
            let ctx = formatContext()
            for m in target.mutations { m.applyRequest(to: &headers, context: ctx) }
        }
        if head.version.minor == 0 && !headers.contains(name: "host") {
            headers.add(name: "host", value: request.authority)
        }
        let upstreamHead = HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path, headers: headers)

        if expectContinue {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))),
                                  promise: nil)
        }
        upstreamStart = .now()
        let source = UpstreamSource.choose(
            listener: listener.config, downstream: context.channel, clusterSource: worker.pools[ci].clusterSource)
        if let conn = worker.pools[ci].takeIdle(host, source: source) {
            startUpstreamRequest(entry)
            attach(conn, head: upstreamHead)
            return
        }
        phase = .connecting
        pending = [.head(upstreamHead)]
        stats.inc(entry.stats.rqPendingTotal)
        stats.inc(entry.stats.rqPendingActive)
        worker.pools[ci].connect(host, source: source).whenComplete { [self] result in
            stats.dec(entry.stats.rqPendingActive)
            guard case .connecting = phase else {
                // The client left, or the request timed out, while we connected.
                if case .success(let conn) = result { worker.pools[ci].release(conn) }
                return
            }
            switch result {
            case .success(let conn):
                startUpstreamRequest(entry)
                let parts = pending
                pending = []
                conn.stream = self
                phase = .forwarding(conn)
                for p in parts { conn.send(p) }
                conn.flush()
                if readPending && conn.isWritable {
                    readPending = false
                    context.read()
                }
            case .failure(let error):
                upstreamFailed(reason: Self.connectFailureReason(error))
            }
        }
    }

    /// Envoy counts `upstream_rq_total` and `upstream_rq_active` when the request gets a connection
    /// (`attachStreamToClient`): a request whose connect fails was only pending.
    private func startUpstreamRequest(_ entry: ClusterManager.Entry) {
        stats.inc(entry.stats.rqTotal)
        stats.inc(entry.stats.rqActive)
        upstreamRequestActive = true
    }

    private func attach(_ conn: UpstreamConnection, head: HTTPRequestHead) {
        conn.stream = self
        phase = .forwarding(conn)
        conn.send(.head(head))
        conn.flush()
    }

    private static func connectFailureReason(_ error: Error) -> String {
        if case ChannelError.connectTimeout = error as? ChannelError ?? .ioOnClosedChannel {
            return "connection timeout"
        }
        return "remote connection failure"
    }

    private func startTimer() {
        guard !routeTimeout.isZero, timer == nil, !responseComplete else { return }
        timer = context.eventLoop.scheduleTask(in: routeTimeout.timeAmount) { [self] in
            timer = nil
            routeTimedOut()
        }
    }

    private func routeTimedOut() {
        if let cluster { stats.inc(cluster.stats.rqTimeout) }
        stats.inc(listener.stats.rqTimeout)
        if case .forwarding(let up) = phase { up.close() }
        endUpstreamRequest()
        if responseStarted {
            context.close(promise: nil)
            return
        }
        if let cluster { countUpstreamStatus(504, cluster) }
        phase = .discarding
        writeLocalReply(status: .gatewayTimeout, body: LocalReply.timeout, close: !keepAlive)
    }

    // MARK: Upstream events

    func upstreamRead(_ part: HTTPClientResponsePart) {
        switch part {
        case .head(let head):
            if head.status.code < 200 && head.status.code != 101 {
                ignoringInformational = true
                return
            }
            respond(head)
        case .body(let buffer):
            if ignoringInformational { return }
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        case .end(let trailers):
            if ignoringInformational {
                ignoringInformational = false
                return
            }
            upstreamResponseEnded(trailers)
        }
    }

    private func respond(_ head: HTTPResponseHead) {
        responseStarted = true
        let elapsedMs = (NIODeadline.now() - upstreamStart).nanoseconds / 1_000_000
        var headers = head.headers
        HopByHop.strip(&headers)
        headers.replaceOrAdd(name: "x-envoy-upstream-service-time", value: String(elapsedMs))
        headers.replaceOrAdd(name: "server", value: listener.hcm.serverName)
        applyResponseMutations(&headers)
        if !keepAlive { headers.replaceOrAdd(name: "connection", value: "close") }
        if let cluster { countUpstreamStatus(Int(head.status.code), cluster) }
        stats.inc(listener.stats.responseClass(Int(head.status.code)))
        let out = HTTPResponseHead(version: downstreamVersion, status: head.status, headers: headers)
        context.write(wrapOutboundOut(.head(out)), promise: nil)
    }

    private func countUpstreamStatus(_ code: Int, _ cluster: ClusterManager.Entry) {
        stats.inc(cluster.stats.responseClass(code))
        if let slot = cluster.stats.code(code) { stats.inc(slot) }
    }

    private func upstreamResponseEnded(_ trailers: HTTPHeaders?) {
        responseComplete = true
        timer?.cancel()
        timer = nil
        guard case .forwarding(let up) = phase else { return }
        endUpstreamRequest()
        if !requestComplete { up.reusable = false }
        worker.pools[up.clusterIndex].release(up)
        phase = .discarding
        context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
        if requestComplete { finishRequest() }
    }

    func upstreamReadComplete() {
        context.flush()
    }

    func upstreamBecameWritable() {
        if readPending {
            readPending = false
            context.read()
        }
    }

    /// The upstream connection closed under us.
    func upstreamClosed() {
        guard case .forwarding = phase else { return }
        endUpstreamRequest()
        phase = .discarding
        if responseStarted {
            // Mid-response: the only honest signal left is to reset the downstream.
            timer?.cancel()
            context.close(promise: nil)
            return
        }
        upstreamFailed(reason: "connection termination")
    }

    private func upstreamFailed(reason: String) {
        timer?.cancel()
        timer = nil
        pending.removeAll()
        endUpstreamRequest()
        if let cluster { countUpstreamStatus(503, cluster) }
        phase = .discarding
        writeLocalReply(status: .serviceUnavailable, body: LocalReply.connectFailure(reason), close: !keepAlive)
    }

    // MARK: Responses

    private func formatContext() -> FormatContext {
        let remote = context.channel.remoteAddress
        let local = context.channel.localAddress
        return FormatContext(
            downstreamRemote: remote.map(Self.addressWithPort) ?? "",
            downstreamRemoteWithoutPort: remote?.ipAddress ?? "",
            downstreamLocal: local.map(Self.addressWithPort) ?? "",
            downstreamLocalWithoutPort: local?.ipAddress ?? "",
            proto: downstreamVersion.minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
            hostname: listener.hostname)
    }

    private static func addressWithPort(_ a: SocketAddress) -> String {
        guard let ip = a.ipAddress, let port = a.port else { return "" }
        if case .v6 = a { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }

    private func applyResponseMutations(_ headers: inout HTTPHeaders) {
        guard responseMutations.contains(where: { !$0.isEmpty }) else { return }
        let ctx = formatContext()
        for m in responseMutations { m.applyResponse(to: &headers, context: ctx) }
    }

    private func writeLocalReply(status: HTTPResponseStatus, body: String, close: Bool, extra: HTTPHeaders = HTTPHeaders()) {
        writeLocalReply(status: status, body: Array(body.utf8), close: close, extra: extra)
    }

    private func writeLocalReply(status: HTTPResponseStatus, body: [UInt8], close: Bool,
                                 extra: HTTPHeaders = HTTPHeaders(), isHead: Bool = false) {
        responseStarted = true
        responseComplete = true
        timer?.cancel()
        timer = nil
        if close { keepAlive = false }
        var head = LocalReply.head(status: status, bodyLength: body.count, server: listener.hcm.serverName,
                                   close: close, extra: extra)
        head.version = downstreamVersion.major == 1 ? downstreamVersion : .http1_1
        applyResponseMutations(&head.headers)
        stats.inc(listener.stats.responseClass(Int(status.code)))
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !body.isEmpty && !isHead {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if requestComplete || close { finishRequest() }
    }

    private func finishRequest() {
        endRequestStats()
        phase = .idle
        requestComplete = false
        if !keepAlive || draining {
            queued.removeAll()
            context.close(promise: nil)
            return
        }
        replayQueued()
        if readPending, case .idle = phase {
            readPending = false
            context.read()
        }
    }

    /// Feeds held-back pipelined requests in order, until one is waiting for its response.
    private func replayQueued() {
        guard !replaying else { return }
        replaying = true
        defer { replaying = false }
        while let next = queued.first {
            if case .head = next, !isIdle { return }
            queued.removeFirst()
            handle(next)
        }
    }

    private var isIdle: Bool {
        if case .idle = phase { return true }
        return false
    }
}

@available(*, unavailable) extension HTTPProxyHandler: Sendable {}
