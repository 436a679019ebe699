import NIOCore
import NIOHTTP1

/// One HTTP/1.1 connection to an upstream host. It carries one request at a time for the stream that
/// holds it, and goes back to its worker's pool when both directions finished cleanly.
final class UpstreamConnection: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    let host: UpstreamHost
    /// The pool it belongs to, where a stream releases it (the pool of the cluster in the stream's snapshot).
    let pool: ConnectionPool
    private(set) var context: ChannelHandlerContext?
    /// The stream using this connection; nil while pooled.
    var stream: (any UpstreamResponseReceiver)?
    private var readPending = false
    /// Set when the upstream said `connection: close` or the exchange ended uncleanly.
    var reusable = true

    let poolKey: ConnectionPool.Key
    /// When it last went back to the pool.
    var idleSince = NIODeadline.now()
    /// When it connected (max_connection_duration) and how many requests it finished.
    var connectedAt = NIODeadline.now()
    var requests = 0

    init(host: UpstreamHost, pool: ConnectionPool, poolKey: ConnectionPool.Key) {
        self.host = host
        self.pool = pool
        self.poolKey = poolKey
    }

    var channel: Channel? { context?.channel }
    var isActive: Bool { context?.channel.isActive ?? false }
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    /// Breaks the handler <-> context cycle, or every closed upstream connection stayed in memory.
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let stream else {
            // Bytes from an idle upstream: it broke the protocol, so drop it.
            reusable = false
            context.close(promise: nil)
            return
        }
        let part = unwrapInboundIn(data)
        if case .head(let head) = part, !head.isKeepAlive {
            // `connection: close` (or HTTP/1.0 without keep-alive): never hand this connection out again,
            // even if its FIN has not been read yet when the response ends.
            reusable = false
        }
        stream.upstreamRead(part)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        stream?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { stream?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        reusable = false
        let s = stream
        stream = nil
        s?.upstreamClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        reusable = false
        context.close(promise: nil)
    }

    /// Backpressure: hold upstream reads while the downstream cannot take more.
    func read(context: ChannelHandlerContext) {
        if let stream, !stream.downstreamWritable {
            readPending = true
            return
        }
        context.read()
    }

    func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    func send(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context?.flush() }

    func close() {
        reusable = false
        stream = nil
        context?.close(promise: nil)
    }
}

@available(*, unavailable) extension UpstreamConnection: Sendable {}
