import NIOCore
import NIOHTTP1
import NIOHTTP2

/// One HTTP/1.1 connection to an upstream host, or one stream of an HTTP/2 connection (`parent`). It carries one
/// request at a time for the stream that holds it; an HTTP/1.1 connection goes back to its worker's pool when both
/// directions finished cleanly, a stream is done after its request.
package final class UpstreamConnection: ChannelDuplexHandler {
    package typealias InboundIn = HTTPClientResponsePart
    package typealias OutboundIn = HTTPClientRequestPart
    package typealias OutboundOut = HTTPClientRequestPart

    package let host: UpstreamHost
    /// The pool it belongs to, where a stream releases it (the pool of the cluster in the stream's snapshot).
    package let pool: ConnectionPool
    package private(set) var context: ChannelHandlerContext?
    /// The stream using this connection; nil while pooled.
    package var stream: (any UpstreamResponseReceiver)?
    private var readPending = false
    /// Set when the upstream said `connection: close` or the exchange ended uncleanly.
    package var reusable = true

    package let poolKey: ConnectionPool.Key
    /// When it last went back to the pool.
    package var idleSince = NIODeadline.now()
    /// When it connected (max_connection_duration) and how many requests it finished.
    package var connectedAt = NIODeadline.now()
    package var requests = 0

    /// The HTTP/2 connection this stream is on; nil for an HTTP/1.1 connection.
    package let parent: HTTP2UpstreamConnection?
    /// The response's end was read.
    package private(set) var responseEnded = false
    /// The RST_STREAM code the upstream reset this stream with (`refused_stream` retries read it).
    package private(set) var resetCode: HTTP2ErrorCode?
    /// A stream's response head, until the next part shows whether the head ended the stream.
    private var heldHead: HTTPResponseHead?

    package init(host: UpstreamHost, pool: ConnectionPool, poolKey: ConnectionPool.Key,
                 parent: HTTP2UpstreamConnection? = nil) {
        self.host = host
        self.pool = pool
        self.poolKey = poolKey
        self.parent = parent
    }

    package var channel: Channel? { context?.channel }
    package var isActive: Bool { context?.channel.isActive ?? false }
    package var isWritable: Bool { context?.channel.isWritable ?? false }

    package func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    /// Breaks the handler <-> context cycle, or every closed upstream connection stayed in memory.
    package func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let stream else {
            // Bytes from an idle upstream: it broke the protocol, so drop it.
            reusable = false
            context.close(promise: nil)
            return
        }
        let part = unwrapInboundIn(data)
        if case .end = part { responseEnded = true }
        if parent != nil {
            // The HTTP/2 translation gives a header block that ends the stream as a head and an end, one after the
            // other in one read: the head waits for what follows, so the receiver learns the stream ended with it.
            if let head = heldHead {
                heldHead = nil
                if case .end(let trailers) = part, trailers == nil {
                    stream.upstreamHeadEndedStream(head)
                    return
                }
                stream.upstreamRead(.head(head))
            } else if case .head(let head) = part, head.status.code >= 200 {
                heldHead = head
                return
            }
        }
        if parent == nil, case .head(let head) = part, !head.isKeepAlive {
            // `connection: close` (or HTTP/1.0 without keep-alive): never hand this connection out again,
            // even if its FIN has not been read yet when the response ends.
            reusable = false
        }
        stream.upstreamRead(part)
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        if let head = heldHead {
            heldHead = nil
            stream?.upstreamRead(.head(head))
        }
        stream?.upstreamReadComplete()
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { stream?.upstreamBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        reusable = false
        let s = stream
        stream = nil
        s?.upstreamClosed()
        if let parent { parent.pool.streamClosed(on: parent) }
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let reset = error as? NIOHTTP2Errors.StreamClosed { resetCode = reset.errorCode }
        reusable = false
        context.close(promise: nil)
    }

    /// Backpressure: hold upstream reads while the downstream cannot take more.
    package func read(context: ChannelHandlerContext) {
        if let stream, !stream.downstreamWritable {
            readPending = true
            return
        }
        context.read()
    }

    package func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }

    package func send(_ part: HTTPClientRequestPart) {
        context?.write(wrapOutboundOut(part), promise: nil)
    }

    package func flush() { context?.flush() }

    package func close() {
        reusable = false
        stream = nil
        context?.close(promise: nil)
    }
}

@available(*, unavailable) extension UpstreamConnection: Sendable {}
