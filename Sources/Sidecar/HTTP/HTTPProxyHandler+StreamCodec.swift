import NIOCore
import NIOHTTP1
import SidecarCore

/// The HTTP/1 connection as its streams' codec: where the last encoder's output is written, with what the
/// connection manager adds to every response (`server`, `connection: close`, `downstream_rq_Nxx`).
extension HTTPProxyHandler: HTTPStreamCodec {
    var eventLoop: EventLoop { context.eventLoop }

    var downstream: DownstreamInfo {
        DownstreamInfo(remoteAddress: context.channel.remoteAddress, localAddress: rbacDestination,
                       security: security, requestedServerName: requestedServerName, isHTTP2: multiplexed)
    }

    func encodeResponseHead(_ head: HTTPResponseHead, endStream: Bool) {
        lifecycle.responseHeadCommitted()
        responseCode = Int(head.status.code)
        var head = head
        head.version = downstreamVersion.major == 1 ? downstreamVersion : .http1_1
        // Envoy's connection manager adds these after every encoder (so they follow what filters added); an
        // upstream response already had its `server` replaced by the router.
        if !head.headers.contains(name: "date") { head.headers.add(name: "date", value: HTTPDate.now()) }
        if !head.headers.contains(name: "server") { head.headers.add(name: "server", value: listener.hcm.serverName) }
        if listener.requestHeaders.alwaysSetRequestIDInResponse || listener.requestHeaders.via != nil {
            listener.requestHeaders.mutateResponse(
                &head.headers, requestID: stream.request.headers.first(name: "x-request-id"))
        }
        // Ingress with a propagating route decorator: the caller learns the operation (for its egress span).
        if let operation = traceDecoratorResponse {
            head.headers.replaceOrAdd(name: "x-envoy-decorator-operation", value: operation)
        }
        // Envoy's drain close: while admin has failed the health check, every response ends its connection.
        if worker.server.healthCheckFailed { lifecycle.disableKeepAlive() }
        if endStream, !multiplexed, head.status.code >= 200, head.status.code != 204, head.status.code != 304,
           !head.headers.contains(name: "content-length") {
            // A response without a body: Envoy's HTTP/1 codec frames it with content-length 0, last (HTTP/2 ends the
            // stream with the header block instead).
            head.headers.add(name: "content-length", value: "0")
        }
        if !keepAlive && !upgradeAccepted { head.headers.replaceOrAdd(name: "connection", value: "close") }
        // Health checks are not counted by response class (Envoy's chargeStats skips them).
        if !stream.isHealthCheck { stats.inc(listener.stats.responseClass(Int(head.status.code))) }
        if !listener.hcm.accessLogs.isEmpty { loggedResponseHeaders = head.headers }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
    }

    func forwardedClientAddress(_ headers: HTTPHeaders) -> IPAddress? {
        listener.requestHeaders.forwardedAddress(headers)
    }

    func encodeResponseBody(_ buffer: ByteBuffer) {
        bytesSent &+= UInt64(buffer.readableBytes)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func encodeResponseEnd(_ trailers: HTTPHeaders?) {
        let action = lifecycle.responseEnded()
        routeTimer.clear()
        context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
        if action == .finishStream { finishRequest() }
    }

    func localReplyWillStart(closeConnection: Bool) {
        abandonUpstream(closeConnection: true)
        if !shadows.isEmpty { releaseShadows() }
        phase = .discarding
        routeTimer.clear()
        // A reply to a request whose connection is not kept alive ends the connection without waiting for the
        // rest of the request.
        lifecycle.localReply(closeConnection: closeConnection)
    }

    /// Envoy's order: the filter's own headers first, then the route's response header mutations, then the
    /// body's (observed on Envoy 1.40: mutations come before `content-length`, and `%RESP(content-type)%` does not
    /// see the body's); `date` and `server` come at the codec.
    func localReplyHead(status: HTTPResponseStatus, bodyLength: Int, extra: HTTPHeaders) -> HTTPResponseHead {
        var head = HTTPResponseHead(version: .http1_1, status: status, headers: extra)
        applyResponseMutations(&head.headers, status: status)
        LocalReply.addBodyHeaders(&head.headers, status: status, bodyLength: bodyLength)
        return head
    }

    func setResponseFlag(_ flag: ResponseFlag) {
        responseFlags.insert(flag)
    }

    func setResponseCodeDetails(_ details: String) {
        responseCodeDetails = details
    }

    func resetStream() {
        abandonUpstream(closeConnection: true)
        phase = .discarding
        context.close(promise: nil)
    }

    func decodingResumed() {
        guard readPending else { return }
        readPending = false
        read(context: context)
    }
}
